#!/usr/bin/env python3
"""Label any captures with the installed nDPI, in the App-ID corpus' format, to measure beyond the corpus.

    python bench/appid_ndpi_labels.py --out /tmp/heldout CAPTURE_OR_DIR... [--reader ndpiReader]
    python bench/appid_accuracy.py --corpus /tmp/heldout --ngfw ".venv/bin/ngfw replay"

The corpus' labels are nDPI's own results on its regression captures; this writes the same kind of
labels for captures App-ID was never tuned on (the Suricata-verify cases, captures of the lab's real
clients), by running `ndpiReader -v 2` (Debian package `libndpi-bin`) on each and reading its flow
lines. nDPI names map to canonical app names as the corpus' labels map them (`TLS.Google` -> `tls`), else
to the catalogue app of the same name, else to null (outside the core set, not scored). `--out` gets
`labels.jsonl` and `pcaps/` (symbolic links to the captures).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
from ngfw.corpus import corpus

PCAP_SUFFIXES = (".pcap", ".pcapng", ".cap")
# "	3	UDP 10.0.0.1:138 -> 10.0.0.255:138 [VLAN: 6][proto: 10.16/NetBIOS.SMBv1][...][Hostname/SNI: name][...]"
FLOW_LINE = re.compile(r"^\s+\d+\s+(?P<l4>\S+) (?P<a>\S+) <?-> (?P<b>\S+) (?P<rest>\[.*)$")
PROTO_FIELD = re.compile(r"\[proto: [\d.]+/(?P<name>[^\]]+)\]")
HOST_FIELD = re.compile(r"\[Hostname/SNI: (?P<host>.*?)\](?:\[|$)")


def name_map(corpus_labels: Path, catalogue_names: Iterable[str]) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """nDPI master protocol name -> (canonical app, also-accepted names), as the corpus' labels map them."""
    seen: dict[str, Counter[tuple[str | None, tuple[str, ...]]]] = defaultdict(Counter)
    if corpus_labels.is_file():
        for line in corpus_labels.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                seen[row["ndpi"].split(".")[0]][(row.get("app"), tuple(row.get("also") or ()))] += 1
    mapping = {master: counts.most_common(1)[0][0] for master, counts in seen.items()}
    for name in catalogue_names:
        mapping.setdefault(name.upper(), (name, ()))
    return mapping


def canonical(ndpi: str, mapping: dict[str, tuple[str | None, tuple[str, ...]]]) -> tuple[str | None, tuple[str, ...]]:
    master = ndpi.split(".")[0]
    if master in mapping:
        return mapping[master]
    return mapping.get(master.upper(), (None, ()))


def parse_flow_lines(text: str, pcap: str, mapping: dict[str, tuple[str | None, tuple[str, ...]]]) -> list[dict]:
    """The corpus' label records for the flow lines of one `ndpiReader -v 2` run."""
    labels = []
    for line in text.splitlines():
        flow = FLOW_LINE.match(line)
        proto = PROTO_FIELD.search(line) if flow else None
        if flow is None or proto is None:
            continue
        ndpi = proto["name"]
        app, also = canonical(ndpi, mapping) if ndpi != "Unknown" else (None, ())
        host = HOST_FIELD.search(flow["rest"])
        labels.append(
            {
                "pcap": pcap,
                "l4": flow["l4"],
                "a": flow["a"],
                "b": flow["b"],
                "ndpi": ndpi,
                "app": app,
                "also": list(also),
                "host": host["host"] if host and host["host"] else None,
            }
        )
    return labels


def captures(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in PCAP_SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"appid_ndpi_labels: {path}: no such file or directory")
    return found


def unique_names(pcaps: Sequence[Path]) -> dict[Path, str]:
    """A file name per capture; Suricata-verify calls many of its captures `input.pcap`."""
    names: dict[Path, str] = {}
    used: set[str] = set()
    for pcap in pcaps:
        name = pcap.name if pcap.name not in used else f"{pcap.parent.name}__{pcap.name}"
        used.add(name)
        names[pcap] = name
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", type=Path, help="captures, or directories searched for them")
    parser.add_argument("--out", type=Path, required=True, help="directory for labels.jsonl and pcaps/")
    parser.add_argument("--reader", default="ndpiReader")
    parser.add_argument(
        "--corpus-labels",
        type=Path,
        default=corpus("appid") / "labels.jsonl",
        help="labels whose nDPI -> canonical names are reused (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    from ngfw.compiler.apps import load_catalogue

    mapping = name_map(args.corpus_labels, (app.name for app in load_catalogue().apps))
    pcaps = captures(args.paths)
    (args.out / "pcaps").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for pcap, name in unique_names(pcaps).items():
        done = subprocess.run([args.reader, "-i", str(pcap), "-v", "2"], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"appid_ndpi_labels: {pcap}: {args.reader} exited with {done.returncode}; skipped", file=sys.stderr)
            continue
        link = args.out / "pcaps" / name
        link.unlink(missing_ok=True)
        link.symlink_to(pcap.resolve())
        rows += parse_flow_lines(done.stdout, name, mapping)
    (args.out / "labels.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(
        f"{len(rows)} flows of {len(pcaps)} captures labelled, {sum(1 for r in rows if r['app'])} with a core app, "
        f"into {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
