"""Control plane with real dataplanes: commits under load in the two-host lab (root; network namespaces).

    sudo .venv/bin/python bench/control_lab_bench.py [--commits 20] [--seconds 10] [--json]

`ngfw lab up --hosts 2` under its own prefix ("ncb"), nginx on srv, `ngfw control` (SQLite) in the
management namespace, and on each of the two hosts a real `ngfw dataplane --control` inline on
its wire. While a 100 pps ping runs through each host's dataplane and two rate-limited HTTP
downloads run (one through host-a's, one through both), `--commits` consecutive commits change a
rule of each tenant that the sessions do not use; each is timed from the commit call to the last
host's acknowledgement (the agent acknowledges after `Dataplane.load` swapped the new tables in).
Reports commit -> enforcement on both hosts (p50/p99/max) and what the clients lost.
bench/control_bench.py measures 10 agents (tables built, no ports); this one, real packets.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw.lab.commit_load import churn_rules, commits_under_load
from ngfw.lab.control_site import control_site
from ngfw.lab.hosts import two_host_up
from ngfw.lab.lock import lock_prefix, release
from ngfw.lab.services import lab_services
from ngfw.lab.topology import lab_down

POLICY = Path(__file__).resolve().parents[1] / "rules" / "examples" / "lab-two-hosts.yaml"
PREFIX = "ncb"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="how long the load runs (it must outlive the commits)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    documents = list(yaml.safe_load_all(POLICY.read_text()))
    policies = {d["metadata"]["vsys"]: d for d in documents if d["kind"] == "SecurityPolicy"}
    open_db = json.loads(json.dumps(policies["tenant-b"]))
    open_db["spec"]["rules"].insert(
        len(open_db["spec"]["rules"]) - 1,
        {
            "name": "tenant-a-web-to-db",
            "from": ["cidr:10.77.0.11/32", "cidr:10.77.0.12/32"],
            "to": ["group:db"],
            "services": ["tcp/8000"],
            "action": "allow",
        },
    )

    lock = lock_prefix(PREFIX)
    try:
        two = two_host_up(PREFIX)
        workdir = Path(tempfile.mkdtemp(prefix="ngfw-control-lab-bench-"))
        with lab_services(two.lab), control_site(two, workdir, POLICY) as site:
            site.wait_realized(site.commit_as("admin", [open_db], "tenant-b lets tenant-a's web in on 8000"))
            report = commits_under_load(
                site,
                churn_rules(policies["tenant-a"], open_db),
                commits=args.commits,
                pings=int(args.seconds * 100),
                seconds=args.seconds,
            )
    finally:
        lab_down(PREFIX)
        release(lock)

    lat = report.commit_seconds
    results: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()} {multiprocessing.cpu_count()} cpu",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "hosts": 2,
        "commits": len(lat),
        "commit_to_enforced_on_every_host_s": {
            "p50": statistics.median(lat),
            "p99": percentile(lat, 99),
            "max": max(lat),
        },
        "load_outlived_commits": sorted(report.outlived) == sorted(report.loads),
        "pings": report.pings,
        "lost_pings": report.lost_pings,
        "streams": {k: {"curl_exit": c, "seen": s, "size": n} for k, (c, s, n) in report.streams.items()},
        "broken_streams": report.broken_streams,
        "errors": report.errors,
    }
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        c = results["commit_to_enforced_on_every_host_s"]
        print(f"{results['machine']}, Python {results['python']}, {results['date']}")
        print(
            f"commit -> enforced on both hosts' dataplanes ({len(lat)} commits): p50 {c['p50'] * 1000:.0f} ms, "
            f"p99 {c['p99'] * 1000:.0f} ms, max {c['max'] * 1000:.0f} ms"
        )
        pings = ", ".join(f"{k} {r}/{s}" for k, (s, r) in report.pings.items())
        print(
            f"established sessions across the commits: pings received {pings}; lost {report.lost_pings}; "
            f"streams broken: {report.broken_streams or 'none'}"
            + ("" if results["load_outlived_commits"] else " (WARNING: the load ended before the commits did)")
        )
    ok = results["load_outlived_commits"] and report.lost_pings == 0 and not report.broken_streams
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
