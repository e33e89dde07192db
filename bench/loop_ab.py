#!/usr/bin/env python3
"""Before/after of the packet loop in one run: two checkouts' dataplanes (and the bare forwarder) interleaved on
one lab, with the dataplane's CPU time per connection beside bench/run.py's own conn/s, pps and TCP loads.

    python bench/loop_ab.py --before /tmp/old-checkout [--reps 3] [--seconds 6]

`--before` is a checkout with its fastpath built (e.g. `git archive <commit> | tar -x -C DIR` plus its .so
files); this checkout is "after". A shared machine's throughput swings between repetitions; the CPU a
configuration spends per connection (from /proc/<pid>/task/*/stat over the conn/s test) is steadier.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import ngfw.lab.dataplane_process as dataplane_process  # noqa: E402
from bench import run as bench_run  # noqa: E402
from bench.lab_session import in_locked_lab  # noqa: E402
from ngfw.lab.services import lab_services  # noqa: E402
from ngfw.lab.topology import Lab  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of every thread of process `pid`."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def one(lab: Lab, label: str, tree: Path | None, seconds: int, workdir: Path) -> dict[str, Any]:
    result = bench_run.ConfigResult(label, label)
    if tree is not None:
        dataplane_process.REPO_ROOT = tree  # the dataplane child imports this checkout's ngfw
    d = bench_run.Durations(tcp=seconds, cps=seconds, pps=seconds)
    with bench_run.configuration("bare" if tree is None else "rules1000", lab, workdir, result) as dp:
        if dp is not None:
            pid = dp.pid
        else:
            pid = int(
                subprocess.run(["ip", "netns", "pids", lab.fw_ns], capture_output=True, text=True).stdout.split()[0]
            )
        time.sleep(0.5)
        before = cpu_seconds(pid)
        cps = bench_run.measure_cps(lab, d)
        cps_cpu = cpu_seconds(pid) - before
        time.sleep(0.5)
        pps = bench_run.measure_pps(lab, d, workdir)
        time.sleep(0.5)
        try:
            tcp = bench_run.measure_tcp(lab, d)["tcp_gbps"]
        except RuntimeError:
            tcp = math.nan
    return {
        "conn_per_s": cps["conn_per_s"],
        "cpu_us_per_conn": cps_cpu / (cps["conn_per_s"] * seconds) * 1e6,
        "pps_delivered": pps["pps_delivered"],
        "tcp_gbps": tcp,
        "drops": {reason: n for reason, n in (result.drops[0] if result.drops else {}).items() if n},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the build to compare against")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--prefix", default="na", help="lab namespace prefix")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("loop_ab: needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    variants: dict[str, Path | None] = {"bare": None, "before": args.before.resolve(), "after": HERE.parent}
    rows: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}

    def body(lab: Lab) -> int:
        workdir = Path(tempfile.mkdtemp(prefix="loop-ab-"))
        with lab_services(lab), bench_run._servers(lab):
            for rep in range(args.reps):
                for label in bench_run.interleaved(list(variants), rep):
                    row = one(lab, label, variants[label], args.seconds, workdir)
                    rows[label].append(row)
                    print(f"{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.1f} {label}: {row}", flush=True)
        return 0

    status = in_locked_lab(args.prefix, body, print)
    for label, samples in rows.items():
        if samples:
            medians = {k: statistics.median(r[k] for r in samples) for k in samples[0] if k != "drops"}
            print(f"median {label}: " + ", ".join(f"{k} {v:,.2f}" for k, v in medians.items()))
    return status


if __name__ == "__main__":
    sys.exit(main())
