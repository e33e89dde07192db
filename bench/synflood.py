#!/usr/bin/env python3
"""A SYN flood through `ngfw dataplane` with a small flow table, and what users see meanwhile (root).

    sudo .venv/bin/python bench/synflood.py [--flow-capacity 4096] [--rates max,20000] [--reps 1]
                                            [--flood-seconds 8] [--policy lab-no-rate|lab] [--source web1|srv]
                                            [--protection off,on,1000/s] [--dataplane-args ARGS] [--json PATH]

The lab under its own prefix ("nsf"), nginx on srv. Each run starts a dataplane on the lab wire (`--rules` the lab's
signatures, `--state-dir` on /dev/shm, the flow capacity given) and then (ngfw.lab.flood.run_flood):
  - web2 downloads the server's 10 MiB file again and again over one kept-alive connection: its rate over 3 s
    before the flood, during it and 3 s after it;
  - trafgen floods srv:80 with SYNs from web1's own address (`--source srv`: srv floods web1:22, which the lab
    policy allows from the server) with random source ports, at the rate given (`max`: as fast as one CPU
    sends them), bounded in time and count;
  - 1 s into the flood, web2 opens 10 new connections to srv:80, 0.3 s apart (curl, 8 s each);
  - the dataplane's resident memory (and its state file's) before, at the end of the flood, and once the flood's
    flows have ended and the sweep has given their memory back.
`--protection`: each flood rate is measured under each of these SYN flood protection settings, one after the
other (`off`: `--syn-limit-per-source off`; `on`: the dataplane's default; a rate: `--syn-limit-per-source RATE`).
`lab-no-rate` is the lab policy without tenant-a's newSessionsPerSecond (20,000): with it, the vsys' rate limit
refuses most of a flood before it reaches the table -- and legitimate new connections of the same vsys with it,
as they draw on the same bucket (`--policy lab` shows that).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from bench.lab_session import in_locked_lab, machine_info  # noqa: E402
from ngfw.lab import flood  # noqa: E402
from ngfw.lab.dataplane_process import DataplaneStartError, repo_path, start_dataplane  # noqa: E402
from ngfw.lab.lock import LabBusy  # noqa: E402
from ngfw.lab.netns import call_in, free_tcp_port  # noqa: E402
from ngfw.lab.services import lab_services  # noqa: E402
from ngfw.lab.topology import Lab  # noqa: E402

PREFIX = "nsf"
MiB = 1 << 20


def log(msg: str) -> None:
    print(f"[synflood {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def policy_file(name: str, workdir: Path) -> Path:
    text = repo_path("rules/examples/lab.yaml").read_text()
    if name == "lab-no-rate":
        text, n = re.subn(r"\n    newSessionsPerSecond: \d+", "", text)
        if n != 1:
            raise SystemExit("synflood: rules/examples/lab.yaml has no newSessionsPerSecond to lift")
    path = workdir / f"{name}.yaml"
    path.write_text(text)
    return path


def protection_args(protection: str) -> list[str]:
    """--protection's word -> the dataplane's options."""
    if protection == "on":
        return []
    return ["--syn-limit-per-source", "off" if protection == "off" else protection]


def one_run(
    lab: Lab, url: str, policy: Path, rate: int | None, args: argparse.Namespace, workdir: Path, protection: str = "on"
) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="ngfw-synflood-", dir="/dev/shm"))
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    extra = [
        "--flow-capacity",
        str(args.flow_capacity),
        "--rules",
        f"lab={repo_path('rules/threats/lab.rules')}",
        "--state-dir",
        str(state),
        *protection_args(protection),
        *shlex.split(args.dataplane_args),
    ]
    dp = start_dataplane(lab.fw_ns, policy, free_tcp_port(lab.fw_ns), workdir=run_dir, extra_args=extra)
    try:
        if args.nice:
            # the dataplane runs in a session of its own: with autogroup scheduling, its group's nice is what
            # weighs against the rest of the machine
            with contextlib.suppress(OSError):
                Path(f"/proc/{dp.pid}/autogroup").write_text(str(args.nice))
            for task in Path(f"/proc/{dp.pid}/task").iterdir():
                os.setpriority(os.PRIO_PROCESS, int(task.name), args.nice)
        for ns in (lab.web1.ns, lab.web2.ns):  # neighbours resolved, first flows seen
            call_in(ns, ["curl", "-s", "-o", "/dev/null", "--max-time", "5", url], timeout=10)
        time.sleep(1.0)
        if args.source == "srv":
            attacker, target, port = lab.srv, lab.web1, 22
        else:
            attacker, target, port = lab.web1, lab.srv, 80
        load = os.getloadavg()[0]
        report = flood.run_flood(
            dp,
            attacker,
            target,
            port,
            lab.web2,
            url,
            run_dir,
            flood_seconds=args.flood_seconds,
            rate_pps=rate,
            state_file=state / "flows.state",
            download_limit_bps=int(args.download_limit * 1e6) or None,
        )
        out = report.as_dict()
        out["rate"] = rate or "max"
        out["protection"] = protection
        out["dataplane_log"] = [
            line
            for line in dp.stderr_text(20000).splitlines()
            if "SYN flood protection" in line or "flow bypass" in line
        ][-6:]
        out["loadavg_before"] = load
        out["dataplane_alive"] = dp.running()
        return out
    finally:
        dp.stop()
        shutil.rmtree(state, ignore_errors=True)


def row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"| {r.get('protection', 'on')} | {r['rate']} | error: {r['error']} |" + " |" * 11
    m = r["memory"]
    c = r["counters"]
    kernel = c["ngfw_port_kernel_drops_total"]

    resumed = "never" if r["resumed_seconds"] is None else f"{r['resumed_seconds']:.1f} s after"
    cpu = " / ".join(
        f"{r['cpu'][p]['dataplane_cores']:.2f}, {r['cpu'][p]['machine_busy']:.0%}" for p in ("before", "during")
    )

    def mem(key: str) -> str:
        return " / ".join(f"{m[p].get(key, 0) / MiB:.0f}" for p in ("before", "during", "after"))

    def n(value: float) -> str:
        return f"{value:,.0f}".replace(",", " ")

    return (
        f"| {r.get('protection', 'on')} | {r['rate']} | {n(r['flood_pps'])} | "
        f"{n(c.get('ngfw_dos_dropped_total', 0))} | {n(kernel)} | {r['legit_ok']}/{len(r['legit'])} | "
        f"{r['unflooded_bps'] / 1e6:.0f} → {r['flooded_bps'] / 1e6:.0f} ({r['throughput_ratio']:.2f}×) | "
        f"{n(c['ngfw_flows_early_dropped_total'])} | {n(c['ngfw_flow_insert_failures_total'])} | "
        f"{mem('rss')} | {mem('file:flows.state')} | {resumed} | {n(c.get('ngfw_bypass_packets_total', 0))} | "
        f"{cpu} | {r['loadavg_before']:.1f} |"
    )


HEADER = (
    "| SYN protection | flood rate | SYN/s sent | SYNs dropped before the ring | kernel ring drops | "
    "new connections | download Mbit/s before → during | early drops | insert failures | "
    "RSS MiB before / during / after | state file MiB | download resumed | frames forwarded in bypass | "
    "dataplane cores, machine busy: before / during | load |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flow-capacity", type=int, default=4096)
    parser.add_argument("--rates", default="max", help="comma-separated SYN/s, or max (as fast as trafgen sends)")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--flood-seconds", type=float, default=8.0)
    parser.add_argument("--policy", choices=("lab-no-rate", "lab"), default="lab-no-rate")
    parser.add_argument("--source", choices=("web1", "srv"), default="web1")
    parser.add_argument(
        "--download-limit",
        type=float,
        default=0,
        metavar="MBITS",
        help="pace the established download at this many Mbit/s (0: as fast as it goes)",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the dataplane's threads at this nice value (-10: ahead of the rest of a shared "
        "machine, as a dedicated core would have it)",
    )
    parser.add_argument(
        "--protection",
        default="on",
        metavar="LIST",
        help="comma-separated SYN flood protection settings to measure each rate under: off, on "
        "(the dataplane's default) or a per-source rate such as 1000/s (on)",
    )
    parser.add_argument("--dataplane-args", default="", metavar="ARGS")
    parser.add_argument("--json", type=Path, help="write every run here")
    parser.add_argument("--prefix", default=PREFIX)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("synflood: needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    try:
        rates = [None if r.strip() == "max" else int(r) for r in args.rates.split(",")]
    except ValueError:
        print(f"synflood: --rates takes SYN/s numbers or max, got {args.rates!r}", file=sys.stderr)
        return 2
    protections = [p.strip() for p in args.protection.split(",") if p.strip()]
    from ngfw.dataplane.admission import parse_rate

    for p in protections:
        if p not in ("on", "off"):
            try:
                parse_rate(p)
            except ValueError as exc:
                print(f"synflood: --protection {exc}", file=sys.stderr)
                return 2
    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="ngfw-synflood-"))
    runs: list[dict[str, Any]] = []

    def flood_runs(lab: Lab) -> int:
        status = 0
        with lab_services(lab) as services:
            policy = policy_file(args.policy, workdir)
            for rep in range(args.reps):
                for rate in rates:
                    for protection in protections:
                        log(
                            f"rep {rep + 1}/{args.reps}: flood at {rate or 'max'} SYN/s, capacity "
                            f"{args.flow_capacity}, SYN protection {protection}"
                        )
                        try:
                            runs.append(one_run(lab, services.big_file_url, policy, rate, args, workdir, protection))
                        except (DataplaneStartError, OSError, RuntimeError) as exc:
                            runs.append({"rate": rate or "max", "protection": protection, "error": str(exc)[:300]})
                            status = 1
                        log(row(runs[-1]))
        return status

    try:
        status = in_locked_lab(args.prefix, flood_runs, log)
    except LabBusy as exc:
        print(f"synflood: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    machine = machine_info()
    doc = {
        "started": started.isoformat(),
        "machine": machine,
        "options": {k: str(v) for k, v in vars(args).items()},
        "runs": runs,
    }
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    paced = f", download paced at {args.download_limit:g} Mbit/s" if args.download_limit else ""
    paced += f", dataplane at nice {args.nice}" if args.nice else ""
    print(
        f"## SYN flood, {started:%Y-%m-%d %H:%M} UTC, flow capacity {args.flow_capacity}, policy {args.policy}, "
        f"flood from {args.source}{paced}, {machine['cpus']} CPUs\n"
    )
    print(HEADER)
    for r in runs:
        print(row(r))
    return status


if __name__ == "__main__":
    sys.exit(main())
