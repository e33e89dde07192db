"""The lab's hypervisor moves, timed: VM workload boot, QEMU live migration, namespace workload move (root).

    sudo .venv/bin/python bench/lab_migrate_bench.py [--rounds 3] [--one-at-a-time] [--json]

Each round builds the two-host lab under its own prefix ("nmb"), Linux bridges in both fw
namespaces, nginx on srv, and boots web1 and web2 as QEMU guests at once (what
`ngfw lab up --hosts 2 --vm-workloads` does; `--one-at-a-time`: web1, then web2). Then web1 live-migrates host-a -> host-b -> host-a
idle, and again while it downloads srv's 10 MiB file paced at 2 MiB/s (the download is checked
byte-exact); db1 (a namespace) moves host-b -> host-a -> host-b. Reports the medians of the guest
boot time, QEMU's total time and downtime, and the whole move as `migrate_workload` times it
(the `ngfw lab migrate` command adds its own start, ~0.5 s).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw.lab.hosts import two_host_bridge_fw, two_host_up
from ngfw.lab.lock import lock_prefix, release
from ngfw.lab.migrate import MoveReport, migrate_workload
from ngfw.lab.services import lab_services
from ngfw.lab.topology import lab_down
from ngfw.lab.workloads import record_namespace_workloads, start_vm_workloads, workload_agent

PREFIX = "nmb"


def one_round(rounds_done: int, one_at_a_time: bool) -> dict[str, list[float]]:
    figures: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        figures.setdefault(key, []).append(value)

    def vm_move(to: str, label: str) -> MoveReport:
        report = migrate_workload(PREFIX, "web1", to)
        assert report.stats is not None
        add(f"{label}: whole move s", report.seconds)
        add(f"{label}: QEMU total ms", report.stats.total_time_ms)
        add(f"{label}: QEMU downtime ms", report.stats.downtime_ms)
        return report

    two = two_host_up(PREFIX)
    try:
        record_namespace_workloads(PREFIX)
        two_host_bridge_fw(two)
        with lab_services(two.lab) as services:
            batches = [("web1",), ("web2",)] if one_at_a_time else [("web1", "web2")]
            for batch in batches:
                for vm in start_vm_workloads(PREFIX, batch):
                    add(
                        f"guest boot s ({'one' if len(batch) == 1 else 'two'} at a time, {vm.guest.accel})",
                        vm.boot_seconds,
                    )
            for to in ("host-b", "host-a"):
                vm_move(to, "VM idle")
            expected = hashlib.sha256((services.workdir / "www" / "big.bin").read_bytes()).hexdigest()
            for to in ("host-b", "host-a"):
                job = workload_agent(PREFIX, "web1").start(
                    f"set -o pipefail; wget -q -O - '{services.big_file_url}?rate=2m' | sha256sum"
                )
                time.sleep(1.5)
                vm_move(to, "VM mid-download")
                result = workload_agent(PREFIX, "web1").wait(job, timeout=60)
                if result.returncode != 0 or result.output.split()[0] != expected:
                    raise SystemExit(f"round {rounds_done}: the download broke across the migration: {result}")
            for to in ("host-a", "host-b"):
                report = migrate_workload(PREFIX, "db1", to)
                add("namespace: whole move s", report.seconds)
                add("namespace: link down ms", report.link_down_ms or 0.0)
    finally:
        lab_down(PREFIX)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one-at-a-time", action="store_true", help="boot web1, then web2 (default: both at once)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lock = lock_prefix(PREFIX)
    try:
        figures: dict[str, list[float]] = {}
        for r in range(args.rounds):
            for key, values in one_round(r, args.one_at_a_time).items():
                figures.setdefault(key, []).extend(values)
    finally:
        release(lock)
    result: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {platform.release()}",
        "date": time.strftime("%Y-%m-%d"),
        "rounds": args.rounds,
        "figures": {
            k: {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)} for k, v in figures.items()
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, f in result["figures"].items():
            print(f"{key:40s} median {f['median']:8.2f}   min {f['min']:8.2f}   max {f['max']:8.2f}   (n={f['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
