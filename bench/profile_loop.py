#!/usr/bin/env python3
"""Profile the dataplane's packet loop under one of bench/run.py's loads, on the same lab.

    python bench/profile_loop.py [--config rules1000] [--load cps,pps] [--seconds 8] [--out DIR]

For each load, `perf record -g` samples the dataplane process (every thread: the packet loop, the TX
thread, Python's) while bench/run.py's measurement drives traffic through it; then `perf report` writes
the top symbols (self time, per thread) and `perf trace -s` the loop's system calls per second of load.
The configuration and loads are bench/run.py's own, so a profile explains a row of its table.
Needs root and `perf` (Debian linux-perf). Results go to DIR (default bench/out/profile-<time>/).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bench import run as bench_run  # noqa: E402
from bench.lab_session import in_locked_lab  # noqa: E402
from ngfw.lab.services import lab_services  # noqa: E402
from ngfw.lab.topology import Lab  # noqa: E402

LOADS = ("cps", "pps", "tcp")


def log(msg: str) -> None:
    print(f"[profile {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def perf_start(argv: list[str], out: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=open(out, "wb"), start_new_session=True)


def perf_stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def drive(load: str, lab: Lab, seconds: int, workdir: Path) -> dict[str, object]:
    d = bench_run.Durations(tcp=seconds, cps=seconds, pps=seconds)
    if load == "cps":
        return bench_run.measure_cps(lab, d)
    if load == "pps":
        return bench_run.measure_pps(lab, d, workdir)
    return bench_run.measure_tcp(lab, d)


def profile(args: argparse.Namespace, lab: Lab, out: Path) -> int:
    result = bench_run.ConfigResult(args.config, bench_run.TITLES[args.config])
    with lab_services(lab), bench_run._servers(lab):
        with bench_run.configuration(args.config, lab, out, result) as dp:
            pid = dp.pid if dp is not None else None
            if pid is None and not args.all_cpus:
                raise SystemExit("profile: bridge and bare have no dataplane process: profile them with --all-cpus")
            for load in args.load.split(","):
                data = out / f"{load}.perf.data"
                target = ["-a"] if args.all_cpus else ["-p", str(pid)]
                rec = perf_start(
                    ["perf", "record", "-F", str(args.freq), "-g", *target, "-o", str(data)],
                    out / f"{load}.record.log",
                )
                time.sleep(0.5)
                figures = drive(load, lab, args.seconds, out)
                perf_stop(rec)
                log(f"{load}: {figures}")
                (out / f"{load}.figures.txt").write_text(f"{figures}\n")
                with open(out / f"{load}.top.txt", "w") as f:
                    subprocess.run(
                        ["perf", "report", "-i", str(data), "--no-children", "--sort", "comm,dso,sym",
                         "--stdio", "-g", "none", "--percent-limit", "0.3"],
                        stdout=f, stderr=subprocess.DEVNULL, check=False,
                    )  # fmt: skip
                # the loop's system calls under the same load (a second run: perf trace perturbs the sample)
                trace = perf_start(["perf", "trace", "-s", *target, "-o", str(out / f"{load}.syscalls.txt")],
                                   out / f"{load}.trace.log")  # fmt: skip
                time.sleep(0.5)
                figures = drive(load, lab, max(2, args.seconds // 2), out)
                perf_stop(trace)
                log(f"{load} under perf trace: {figures}")
                time.sleep(1)
            if dp is not None:
                drops = bench_run.metric_by_label(dp.metrics(), "ngfw_drops_total", "reason")
                log(f"drops: { {k: v for k, v in drops.items() if v} }")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="rules1000", choices=bench_run.CONFIGS)
    parser.add_argument("--load", default="cps,pps", help=f"comma-separated subset of {','.join(LOADS)}")
    parser.add_argument("--seconds", type=int, default=8, help="seconds of load per profile")
    parser.add_argument("--freq", type=int, default=1999, help="perf sampling frequency (Hz)")
    parser.add_argument(
        "--all-cpus",
        action="store_true",
        help="sample the whole machine (the client, the server and the kernel's softirqs beside the dataplane)",
    )
    parser.add_argument("--prefix", default="np", help="lab namespace prefix")
    parser.add_argument("--dataplane-args", default="", help="extra `ngfw dataplane` options")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("profile: needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    bad = [x for x in args.load.split(",") if x not in LOADS]
    if bad:
        print(f"profile: unknown load(s) {bad}; choose from {', '.join(LOADS)}", file=sys.stderr)
        return 2
    import shlex

    bench_run.DATAPLANE_ARGS[:] = shlex.split(args.dataplane_args)
    out = args.out or HERE / "out" / f"profile-{time.strftime('%Y%m%dT%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    log(f"{args.config}, loads {args.load}, results in {out}")
    return in_locked_lab(args.prefix, lambda lab: profile(args, lab, out), log)


if __name__ == "__main__":
    sys.exit(main())
