#!/usr/bin/env python3
"""ngfw's `community_id` against Suricata 7's (`community-id: true`) on the same captures, flow by flow.

    python bench/community_id_parity.py [CAPTURE ...]     # default: the shared corpus (App-ID and suricata-verify)

Suricata reads every capture once (one process in unix-socket mode, flow records only, no rules); `ngfw
replay --json` reads the same files. A flow is the same flow in both when its protocol and endpoints are
(addresses and ports; for ICMP the addresses and the first packet's type, since Suricata keeps all of a
host pair's ICMP in one flow). For every ngfw flow that Suricata also logged, the two `community_id`s must
be equal; flows only one side has (tunnels' outer flows, ICMP errors Suricata files under the flow they
quote, ...) are counted apart. Exit status 1 when any matched flow's ID differs.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ngfw.wire import EVE_PROTO_NAMES  # noqa: E402

CORPUS = Path(os.environ.get("NGFW_SHARED", "/work/shared")) / "corpus"

# Suricata's protocol names (its known_proto table) for the numbers ngfw writes
SURICATA_PROTOS = {
    "TCP": 6,
    "UDP": 17,
    "ICMP": 1,
    "IPv6-ICMP": 58,
    "SCTP": 132,
    "GRE": 47,
    "ESP": 50,
    "AH": 51,
    "IGMP": 2,
    "IPV6": 41,
    "IPv6": 41,
    "IPIP": 4,
    "OSPF": 89,
    "VRRP": 112,
    "PIM": 103,
    "EIGRP": 88,
    "L2TP": 115,
    "PGM": 113,
    "RSVP": 46,
}
NGFW_PROTOS = {name: number for number, name in EVE_PROTO_NAMES.items()}  # as ngfw writes them (ngfw.wire)


def corpus_captures() -> list[Path]:
    found = sorted((CORPUS / "appid").rglob("*.pcap*")) + sorted((CORPUS / "suricata-verify").rglob("*.pcap*"))
    return [p for p in found if p.is_file()]


def proto_number(name: Any, table: dict[str, int]) -> int | None:
    if isinstance(name, int):
        return name
    if name in table:
        return table[name]
    return int(name) if isinstance(name, str) and name.isdigit() else None


def flow_key(rec: dict[str, Any], table: dict[str, int]) -> tuple[Any, ...] | None:
    """What makes a flow the same flow in both logs (None: a record that names no flow)."""
    proto = proto_number(rec.get("proto"), table)
    if proto is None or "src_ip" not in rec:
        return None
    # Suricata writes IPv6 addresses in full (0000:...:0001), ngfw as Python does (::1)
    src, dst = str(ipaddress.ip_address(rec["src_ip"])), str(ipaddress.ip_address(rec["dest_ip"]))
    if proto in (6, 17, 132):
        ends = frozenset({(src, rec.get("src_port")), (dst, rec.get("dest_port"))})
        return (proto, ends)
    ends = frozenset({src, dst})
    if proto in (1, 58):
        return (proto, ends, rec.get("icmp_type"))
    return (proto, ends)


@dataclass
class Comparison:
    captures: int = 0
    ngfw_flows: int = 0
    suricata_flows: int = 0
    matched: int = 0
    equal: int = 0
    ngfw_only: int = 0
    suricata_only: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)
    ngfw_only_examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, capture: str, ngfw: Iterable[dict[str, Any]], suricata: Iterable[dict[str, Any]]) -> None:
        """One capture's flow records from each side."""
        self.captures += 1
        theirs: dict[tuple[Any, ...], set[str]] = defaultdict(set)
        for rec in suricata:
            if rec.get("event_type") != "flow":
                continue
            key = flow_key(rec, SURICATA_PROTOS)
            if key is None:
                continue
            self.suricata_flows += 1
            theirs[key].add(rec.get("community_id", ""))
        seen: set[tuple[Any, ...]] = set()
        for rec in ngfw:
            if rec.get("event_type", "flow") != "flow":
                continue
            self.ngfw_flows += 1
            key = flow_key(rec, NGFW_PROTOS)
            if key is None or key not in theirs:
                self.ngfw_only += 1
                if len(self.ngfw_only_examples) < 20:
                    self.ngfw_only_examples.append({"capture": capture, **_brief(rec)})
                continue
            seen.add(key)
            self.matched += 1
            if rec.get("community_id") in theirs[key]:
                self.equal += 1
            else:
                self.mismatches.append({"capture": capture, **_brief(rec), "suricata": sorted(theirs[key])})
        self.suricata_only += sum(1 for key in theirs if key not in seen)

    def summary(self) -> dict[str, Any]:
        return {
            "captures": self.captures,
            "ngfw_flows": self.ngfw_flows,
            "suricata_flows": self.suricata_flows,
            "matched": self.matched,
            "equal": self.equal,
            "differ": len(self.mismatches),
            "ngfw_only": self.ngfw_only,
            "suricata_only_keys": self.suricata_only,
        }


def _brief(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: rec.get(k) for k in ("proto", "src_ip", "src_port", "dest_ip", "dest_port", "icmp_type", "community_id")}


def flow_outputs(eve_filename: str = "eve.json") -> list[dict[str, Any]]:
    """Flow records with their Community ID, nothing else."""
    return [
        {
            "eve-log": {
                "enabled": "yes",
                "filetype": "regular",
                "filename": eve_filename,
                "community-id": "yes",
                "community-id-seed": "0",
                "types": [{"flow": {}}],
            }
        }
    ]


def suricata_flows(captures: Sequence[Path], timeout: float = 900.0) -> dict[str, list[dict[str, Any]]]:
    """Suricata's flow records per capture (keyed by str(path))."""
    from bench.suricata_config import logging_to_file, render, suricata_binary
    from bench.suricata_offline import command_socket
    from bench.suricata_process import SuricataProcess

    out: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="community-id-") as tmp:
        work = Path(tmp)
        (work / "suricata.yaml").write_text(
            render(
                {
                    "outputs": flow_outputs(),
                    "logging": logging_to_file(),
                    "unix-command.enabled": False,
                    "runmode": "single",
                }
            )
        )
        (work / "empty.rules").write_text("")
        sock = work / "command.socket"
        argv = [
            suricata_binary(),
            "-c",
            str(work / "suricata.yaml"),
            "-S",
            str(work / "empty.rules"),
            "-k",
            "none",
            "--unix-socket=" + str(sock),
            "--set",
            "unix-command.enabled=yes",
            "-l",
            str(work),
        ]
        proc = SuricataProcess(argv).start()
        dirs: dict[str, Path] = {}
        try:
            if not proc.wait_started(timeout):
                raise RuntimeError(f"suricata did not start in unix-socket mode:\n{proc.tail()}")
            with command_socket(sock) as command:
                for i, capture in enumerate(captures):
                    outdir = work / f"out{i}"
                    outdir.mkdir()
                    answer = command("pcap-file", {"filename": str(Path(capture).resolve()), "output-dir": str(outdir)})
                    if answer.get("return") != "OK":
                        raise RuntimeError(f"suricata refused {capture}: {answer}")
                    dirs[str(capture)] = outdir
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if (
                        command("pcap-file-number").get("message") == 0
                        and command("pcap-current").get("message") == "None"
                    ):
                        break
                    time.sleep(0.1)
                else:
                    raise RuntimeError(f"suricata did not finish the captures in {timeout:.0f} s")
                command("shutdown")
            proc.wait(60)
        finally:
            proc.stop()
        for label, outdir in dirs.items():
            records = []
            eve = outdir / "eve.json"
            if eve.exists():
                for line in eve.read_text(errors="replace").splitlines():
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue
            out[label] = records
    return out


def ngfw_flows(captures: Sequence[Path]) -> dict[str, list[dict[str, Any]]]:
    """ngfw replay's flow records per capture (the JSON lines `ngfw replay --json` prints)."""
    from ngfw.dataplane.replay import Replayer

    replayer = Replayer()
    return {str(c): [json.loads(line) for line in replayer.replay_file_json(str(c)).splitlines()] for c in captures}


def compare(captures: Sequence[Path]) -> Comparison:
    theirs = suricata_flows(captures)
    ours = ngfw_flows(captures)
    result = Comparison()
    for capture in captures:
        result.add(str(capture), ours[str(capture)], theirs.get(str(capture), []))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="*", type=Path, help="capture files (default: the shared corpus)")
    parser.add_argument("--json", action="store_true", help="the whole comparison as JSON")
    args = parser.parse_args(argv)
    captures = args.captures or corpus_captures()
    if not captures:
        print("no captures given and none found in the shared corpus", file=sys.stderr)
        return 2
    started = time.monotonic()
    result = compare(captures)
    summary = result.summary()
    summary["seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        print(
            json.dumps(
                {**summary, "mismatches": result.mismatches, "ngfw_only_examples": result.ngfw_only_examples}, indent=1
            )
        )
    else:
        print(
            f"{summary['captures']} captures: {summary['ngfw_flows']} ngfw flows, {summary['suricata_flows']} "
            f"Suricata flows; {summary['matched']} flows in both, community_id equal on {summary['equal']} "
            f"({summary['differ']} differ); {summary['ngfw_only']} ngfw flows Suricata did not log as such "
            f"({summary['seconds']} s)"
        )
        for m in result.mismatches[:20]:
            print("  differs:", json.dumps(m))
    return 1 if result.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
