#!/usr/bin/env python3
"""App-ID accuracy: `ngfw replay` against nDPI's labels on the App-ID corpus.

    python bench/appid_accuracy.py [--corpus /work/shared/corpus/appid] [--ngfw "ngfw replay"]
                                   [--replay-output flows.jsonl] [--json out.json]

Runs `ngfw replay --json <every pcap>` (or reads its output from --replay-output), matches each
labelled flow to ours by capture file and unordered endpoint pair, and prints, as Markdown:
agreement per app and overall on flows whose label names an app (a label's `also` names are
accepted too), agreement on host names where the label has one, the labelled flows missing from
our output, and every disagreement. A labelled flow missing from our output counts as a
disagreement: leaving flows out must never raise the score.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import shlex
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from ngfw.corpus import corpus

DEFAULT_CORPUS = corpus("appid")
PCAP_SUFFIXES = (".pcap", ".pcapng", ".cap")

# Protocol names as nDPI's labels and our EVE output spell them -> IP protocol number.
PROTO_NUMBERS = {
    "TCP": 6,
    "UDP": 17,
    "ICMP": 1,
    "ICMPV6": 58,
    "IPV6-ICMP": 58,
    "IGMP": 2,
    "OSPF": 89,
    "SCTP": 132,
    "VRRP": 112,
    "AH": 51,
    "ESP": 50,
    "GRE": 47,
    "PIM": 103,
}
PORTED = (6, 17)  # protocols whose flows are told apart by ports; others match on addresses alone

Endpoint = tuple[str, int]
FlowKey = tuple[str, int, frozenset[Endpoint]]


def proto_number(name: str | int | None) -> int | None:
    """ "TCP" / "IPv6-ICMP" / "58" / 58 -> 58; None for names nobody maps."""
    if name is None:
        return None
    if isinstance(name, int):
        return name
    text = str(name).strip()
    if text.isdigit():
        return int(text)
    return PROTO_NUMBERS.get(text.upper())


def canonical_ip(text: str) -> str:
    """One spelling per address, so `2001:DB8::1` and `2001:db8:0::1` meet."""
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return text


def parse_endpoint(text: str) -> Endpoint:
    """`1.2.3.4:80`, `[2001:db8::1]:443`, `1.2.3.4` or `[fe80::1]` -> (ip, port); no port is 0."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:  # a bare IPv4 or an unbracketed IPv6 address
        host, port = text, ""
    return canonical_ip(host), int(port) if port.isdigit() else 0


def flow_key(pcap: str, proto: int | None, a: Endpoint, b: Endpoint) -> FlowKey:
    number = proto if proto is not None else -1
    if number not in PORTED:
        # nDPI prints port 0 for protocols without ports; ours may print real SCTP ports or none.
        a, b = (a[0], 0), (b[0], 0)
    return Path(pcap).name, number, frozenset((a, b))


@dataclass(frozen=True)
class Label:
    pcap: str
    l4: str
    a: str
    b: str
    app: str | None
    also: tuple[str, ...]
    host: str | None
    ndpi: str

    @property
    def key(self) -> FlowKey:
        return flow_key(self.pcap, proto_number(self.l4), parse_endpoint(self.a), parse_endpoint(self.b))

    def accepts(self, app: str | None) -> bool:
        return app is not None and self.app is not None and app.lower() in {self.app, *self.also}


def load_labels(path: Path) -> list[Label]:
    labels = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        labels.append(
            Label(
                pcap=row["pcap"],
                l4=str(row["l4"]),
                a=row["a"],
                b=row["b"],
                app=row.get("app"),
                also=tuple(row.get("also") or ()),
                host=row.get("host"),
                ndpi=row.get("ndpi", ""),
            )
        )
    return labels


def our_key(flow: dict[str, Any]) -> FlowKey:
    a = (canonical_ip(str(flow["src_ip"])), int(flow.get("src_port") or 0))
    b = (canonical_ip(str(flow["dest_ip"])), int(flow.get("dest_port") or 0))
    return flow_key(str(flow["pcap_file"]), proto_number(flow.get("proto")), a, b)


def index_flows(flows: Iterable[dict[str, Any]]) -> dict[FlowKey, dict[str, Any]]:
    """Our flows by key. When a key repeats (a flow that timed out and came back), the record
    with the most packets seen by App-ID speaks for it, the latest of those that tie: nDPI keeps
    one flow per 5-tuple for the whole capture, and its host is the last one the flow named."""
    index: dict[FlowKey, dict[str, Any]] = {}
    for flow in flows:
        key = our_key(flow)
        kept = index.get(key)
        if kept is None or int(flow.get("app_pkts") or 0) >= int(kept.get("app_pkts") or 0):
            index[key] = flow
    return index


def reported_host(label: Label, ours: dict[str, Any]) -> str | None:
    """What of our record answers the label's host. nDPI's "Hostname/SNI" of an SSH flow is not a host but
    the first identification string it saw ("SSH-2.0-OpenSSH_7.4p1 Debian-10", the server's or the client's):
    ours are in `ssh`, where Suricata puts them (client and server), compared up to the software version's end
    (Suricata's software_version stops at the first space); either side's agrees."""
    if label.ndpi.split(".")[0] == "SSH" and label.host and label.host.startswith("SSH-"):
        sides = [f"SSH-{side['proto_version']}-{side['software_version']}" for side in (ours.get("ssh") or {}).values()]
        return label.host if label.host.split(" ", 1)[0] in sides else (sides[0] if sides else None)
    return ours.get("app_host")


def same_host(expected: str, got: str | None) -> bool:
    return got is not None and expected.lower().rstrip(".") == str(got).lower().rstrip(".")


@dataclass
class AppScore:
    flows: int = 0
    agree: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.agree / self.flows if self.flows else 0.0


@dataclass
class Disagreement:
    pcap: str
    a: str
    b: str
    l4: str
    expected: str  # the label's app, with its accepted alternatives
    got: str | None  # None: the flow is missing from our output
    ndpi: str


@dataclass
class Report:
    labelled: int = 0  # flows whose label names an app
    agree: int = 0
    per_app: dict[str, AppScore] = field(default_factory=dict)
    hosts: int = 0
    hosts_agree: int = 0
    missing: list[Label] = field(default_factory=list)  # labelled flows (any app, null too) not in our output
    disagreements: list[Disagreement] = field(default_factory=list)
    host_disagreements: list[Disagreement] = field(default_factory=list)
    unmatched_ours: int = 0  # our flows no label speaks of
    tcp_identified: int = 0  # labelled TCP flows we identified from payload (parser or signature)
    tcp_early: int = 0  # ... within their first 3 payload packets

    @property
    def early_percent(self) -> float:
        return 100.0 * self.tcp_early / self.tcp_identified if self.tcp_identified else 0.0

    @property
    def percent(self) -> float:
        return 100.0 * self.agree / self.labelled if self.labelled else 0.0

    @property
    def host_percent(self) -> float:
        return 100.0 * self.hosts_agree / self.hosts if self.hosts else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "labelled": self.labelled,
            "agree": self.agree,
            "agreement_percent": round(self.percent, 2),
            "per_app": {
                name: {"flows": s.flows, "agree": s.agree, "percent": round(s.percent, 2)}
                for name, s in sorted(self.per_app.items())
            },
            "hosts": self.hosts,
            "hosts_agree": self.hosts_agree,
            "host_agreement_percent": round(self.host_percent, 2),
            "missing": [{"pcap": m.pcap, "a": m.a, "b": m.b, "l4": m.l4, "app": m.app} for m in self.missing],
            "unmatched_ours": self.unmatched_ours,
            "tcp_identified": self.tcp_identified,
            "tcp_decided_within_3_payload_packets": self.tcp_early,
            "disagreements": [vars(d) for d in self.disagreements],
            "host_disagreements": [vars(d) for d in self.host_disagreements],
        }


# app_confidence of an identification from payload (100 parser, 80 signature; 30 is the port's guess)
IDENTIFIED_CONFIDENCE = 80


def score(labels: Sequence[Label], flows: Iterable[dict[str, Any]]) -> Report:
    index = index_flows(flows)
    report = Report()
    used: set[FlowKey] = set()
    for label in labels:
        key = label.key
        ours = index.get(key)
        if ours is None:
            report.missing.append(label)
        else:
            used.add(key)
        got = None if ours is None else ours.get("app_proto")
        if ours is not None and label.l4 == "TCP" and (ours.get("app_confidence") or 0) >= IDENTIFIED_CONFIDENCE:
            report.tcp_identified += 1
            report.tcp_early += (ours.get("app_pkts") or 0) <= 3
        if label.app is not None:
            report.labelled += 1
            app_score = report.per_app.setdefault(label.app, AppScore())
            app_score.flows += 1
            if label.accepts(got):
                report.agree += 1
                app_score.agree += 1
            else:
                expected = " | ".join((label.app, *label.also))
                report.disagreements.append(
                    Disagreement(label.pcap, label.a, label.b, label.l4, expected, got, label.ndpi)
                )
        if label.host:
            report.hosts += 1
            got_host = None if ours is None else reported_host(label, ours)
            if same_host(label.host, got_host):
                report.hosts_agree += 1
            else:
                report.host_disagreements.append(
                    Disagreement(label.pcap, label.a, label.b, label.l4, label.host, got_host, label.ndpi)
                )
    report.unmatched_ours = len(set(index) - used)
    return report


def render_markdown(report: Report) -> str:
    lines = [
        "## App-ID accuracy against nDPI",
        "",
        f"- apps: **{report.agree}/{report.labelled} = {report.percent:.1f}%** of flows whose label names an app",
        f"- hosts: **{report.hosts_agree}/{report.hosts} = {report.host_percent:.1f}%** of flows whose label has a host",
        f"- labelled flows missing from our output: {len(report.missing)}"
        f" ({sum(1 for m in report.missing if m.app)} of them name an app)",
        f"- our flows no label speaks of: {report.unmatched_ours}",
        f"- identified TCP flows (parser or signature) decided within their first 3 payload packets: "
        f"**{report.tcp_early}/{report.tcp_identified} = {report.early_percent:.1f}%**",
        "",
        "| app | flows | agree | % |",
        "|---|---:|---:|---:|",
    ]
    for name, s in sorted(report.per_app.items(), key=lambda item: (item[1].percent, -item[1].flows, item[0])):
        lines.append(f"| {name} | {s.flows} | {s.agree} | {s.percent:.1f} |")
    if report.disagreements:
        lines += [
            "",
            "### Disagreements",
            "",
            "| pcap | l4 | a | b | expected | got | nDPI |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in report.disagreements:
            got = "(missing)" if d.got is None else d.got
            lines.append(f"| {d.pcap} | {d.l4} | {d.a} | {d.b} | {d.expected} | {got} | {d.ndpi} |")
    if report.host_disagreements:
        lines += ["", "### Host disagreements", "", "| pcap | a | b | expected | got |", "|---|---|---|---|---|"]
        for d in report.host_disagreements:
            lines.append(f"| {d.pcap} | {d.a} | {d.b} | {d.expected} | {d.got or '(none)'} |")
    missing_unlabelled = [m for m in report.missing if not m.app]
    if missing_unlabelled:
        lines += ["", f"### Flows without an app label missing from our output ({len(missing_unlabelled)})", ""]
        for m in missing_unlabelled[:50]:
            lines.append(f"- {m.pcap} {m.l4} {m.a} {m.b} ({m.ndpi})")
        if len(missing_unlabelled) > 50:
            lines.append(f"- ... and {len(missing_unlabelled) - 50} more")
    return "\n".join(lines) + "\n"


def corpus_pcaps(corpus: Path) -> list[Path]:
    directory = corpus / "pcaps" if (corpus / "pcaps").is_dir() else corpus
    return sorted(p for p in directory.iterdir() if p.suffix in PCAP_SUFFIXES and p.is_file())


def run_replay(command: str, pcaps: Sequence[Path]) -> list[dict[str, Any]]:
    argv = [*shlex.split(command), "--json", *map(str, pcaps)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{' '.join(argv[:3])} ... exited with {done.returncode}")
    return parse_flows(done.stdout)


def parse_flows(text: str) -> list[dict[str, Any]]:
    """Flow records out of JSON lines; other records (alerts, stats) and blank lines are skipped."""
    flows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if "src_ip" in record and "pcap_file" in record and record.get("event_type", "flow") == "flow":
            flows.append(record)
    return flows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--ngfw", default="ngfw replay", help="command that replays captures (default: %(default)s)")
    parser.add_argument("--replay-output", type=Path, help="read `ngfw replay --json` output from this file instead")
    parser.add_argument("--json", type=Path, help="write the numbers and disagreements here")
    args = parser.parse_args(argv)

    labels = load_labels(args.corpus / "labels.jsonl")
    if args.replay_output:
        flows = parse_flows(args.replay_output.read_text())
    else:
        flows = run_replay(args.ngfw, corpus_pcaps(args.corpus))
    report = score(labels, flows)
    sys.stdout.write(render_markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
