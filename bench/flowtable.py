#!/usr/bin/env python3
"""What a new flow costs the fastpath when the flow table is full (every SYN makes room by early drop) and when it
is not, at C speed: no root, no lab.

    .venv/bin/python bench/flowtable.py [--syns 300000] [--reps 3] [--json PATH]

An engine with a memory port and a sink port, rules/examples/allow-all.yaml, and a capture of SYNs from web-01
(one per source and destination port, 100,000 a second of the capture's clock) replayed through it (`Engine.replay_capture` on a
live-mode engine: strict TCP, anti-spoofing, the packet path of a wire). A first pass fills the table (or, for
one that never fills, as many flows as the timed pass adds), a second one floods a full table for 2 s of the
capture's clock; the third, all new tuples, is timed. Median nanoseconds per SYN of --reps passes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw._fastpath import engine as fp
from ngfw.compiler.policy import load_policy
from ngfw.lab.dataplane_process import repo_path

WEB1_MAC, WEB1_IP = "02:00:00:00:01:01", "10.77.0.11"
SRV_MAC, SRV_IP = "02:00:00:00:02:01", "10.77.0.100"


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


SPACING_NS = 10_000  # 100,000 SYN/s: about the rate trafgen floods at in the lab (bench/synflood.py)


def syn_capture(first: int, count: int, start_ns: int) -> bytes:
    """A nanosecond pcap of `count` SYNs web-01 -> server, tuples numbered from `first`, SPACING_NS apart."""
    src, dst = bytes(map(int, WEB1_IP.split("."))), bytes(map(int, SRV_IP.split(".")))
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    l2 = bytes.fromhex(SRV_MAC.replace(":", "")) + bytes.fromhex(WEB1_MAC.replace(":", "")) + b"\x08\x00"
    pseudo = src + dst + struct.pack("!BBH", 0, 6, 20)
    zero_ports = struct.pack("!HHIIBBHHH", 0, 0, 1000, 0, 5 << 4, 0x02, 64240, 0, 0)
    unsummed = ~_checksum(pseudo + zero_ports) & 0xFFFF
    out = [struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)]
    for i in range(first, first + count):
        sport, dport = 1024 + i % 64_000, 1 + i // 64_000
        total = unsummed + sport + dport
        total = (total & 0xFFFF) + (total >> 16)
        segment = struct.pack("!HHIIBBHHH", sport, dport, 1000, 0, 5 << 4, 0x02, 64240, ~total & 0xFFFF, 0)
        ts = start_ns + (i - first) * SPACING_NS
        out.append(struct.pack("<IIII", ts // 10**9, ts % 10**9, 54, 54) + l2 + header + segment)
    return b"".join(out)


def measure(capacity: int, syns: int, full: bool, policy: Any) -> dict[str, Any]:
    engine = fp.Engine(flow_capacity=capacity)
    vm = engine.add_memory_port("vm", 0)
    up = engine.add_sink_port("up", 0)
    engine.set_tables(fp.Tables(policy, {"vm": vm, "up": up}))
    # the first pass fills the table (or, for a table that never fills, puts as many flows in it as the timed
    # pass will), the second floods it for 2 s of its clock (early drop learns the flood's rate): what is timed
    # is new flows in a warm table
    fill = capacity if full else syns
    engine.replay_capture(syn_capture(0, fill, 10 * 10**9), vm)
    warm = 200_000 if full else 0
    engine.replay_capture(syn_capture(fill, warm, 20 * 10**9), vm)
    first = fill + warm
    capture = syn_capture(first, syns, 30 * 10**9)
    dropped = engine.stats()["flows_early_dropped"]
    started = time.perf_counter()
    engine.replay_capture(capture, vm)
    elapsed = time.perf_counter() - started
    stats = engine.stats()
    return {
        "ns_per_syn": elapsed / syns * 1e9,
        "early_dropped": stats["flows_early_dropped"] - dropped,
        "insert_failures": stats["flow_insert_failures"],
        "flows_active": stats["flows_active"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--syns", type=int, default=300_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    policy = load_policy(repo_path("rules/examples/allow-all.yaml"))
    cases = [
        ("never full (capacity 1,048,576, 2 passes of SYNs in it)", 1 << 20, False),
        ("full, capacity 4,096: every SYN early-drops one", 4096, True),
        ("full, capacity 262,144 (the default): every SYN early-drops one", 262_144, True),
    ]
    results = []
    print(
        f"## New flows through the fastpath, {args.syns:,} SYNs per pass, median of {args.reps}; "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n"
    )
    print("| table | ns per SYN | early drops per pass | insert failures |\n|---|---|---|---|")
    for title, capacity, full in cases:
        runs = [measure(capacity, args.syns, full, policy) for _ in range(args.reps)]
        ns = statistics.median(r["ns_per_syn"] for r in runs)
        results.append({"case": title, "capacity": capacity, "full": full, "runs": runs, "median_ns_per_syn": ns})
        print(f"| {title} | {ns:,.0f} | {runs[0]['early_dropped']:,} | {runs[0]['insert_failures']:,} |")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": {"kernel": platform.release(), "cpus": os.cpu_count()},
                    "syns": args.syns,
                    "results": results,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
