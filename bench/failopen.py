"""Fail-open: time from `kill -9` of the dataplane (and from SIGSTOP of it) to the first TCP handshake the
kernel's wire program carries through the wire (root; network namespaces).

    sudo .venv/bin/python bench/failopen.py [--runs 9] [--json]

The lab under its own prefix ("nfo"), nginx on srv. Each run starts `ngfw dataplane --fail-mode open` on the
lab wire (it takes over the program the previous run left), makes one connection web1 -> srv:80 through it
(so web1 has the server's MAC: no ARP retry inside the timing) and sends the signal. Once the process is gone
(or every thread of it stopped), web1 sends a new SYN every 5 ms until one handshake completes
(ngfw.lab.probe.time_to_connect); the time counts from the signal. A stopped dataplane is continued and
stopped after its run. Expect the wire program's threshold (0.3 s without a heartbeat) plus the loop's last
turn (<= 10 ms) plus the probe's 5 ms resolution.

Then what the program costs while the dataplane runs: the kernel's BPF run-time statistics (BPF_ENABLE_STATS,
on only while this script holds the descriptor) over a 5 s iperf3 TCP stream web1 -> srv through an open wire,
read with `bpftool prog show -j`: nanoseconds per frame.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw.dataplane.failmode import STALE_AFTER_NS
from ngfw.lab.dataplane_process import start_dataplane
from ngfw.lab.lock import lock_prefix, release
from ngfw.lab.netns import call_in, free_tcp_port, run_in
from ngfw.lab.probe import connects, time_to_connect, wait_stopped
from ngfw.lab.services import lab_services
from ngfw.lab.topology import lab_down, lab_up

POLICY = Path(__file__).resolve().parents[1] / "rules" / "examples" / "lab.yaml"
ALLOW_ALL = Path(__file__).resolve().parents[1] / "rules" / "examples" / "allow-all.yaml"  # iperf3's port too
PREFIX = "nfo"
SERVER = ("10.77.0.100", 80)


def one_run(lab: Any, workdir: Path, sig: int) -> float | None:
    dp = start_dataplane(
        lab.fw_ns, POLICY, free_tcp_port(lab.fw_ns), workdir=workdir, extra_args=["--fail-mode", "open"]
    )
    try:
        deadline = time.monotonic() + 5
        while f"wire {lab.wire}: fail mode open" not in dp.stderr_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # /metrics answers before the wire is taken (after the loop's first turn)
        if not connects(lab.web1.ns, SERVER, timeout=2.0):
            raise RuntimeError(f"no connection through the dataplane before the signal:\n{dp.stderr_text()}")
        started = time.monotonic()
        os.kill(dp.pid, sig)
        # probe once it is gone (or stopped): a handshake the dataplane still forwarded would not count
        if sig == signal.SIGSTOP and not wait_stopped(dp.pid):
            raise RuntimeError("the dataplane did not stop within 1 s of SIGSTOP")
        if sig == signal.SIGKILL:
            dp.proc.wait(timeout=5)
        return time_to_connect(lab.web1.ns, SERVER, since=started, limit=3.0)
    finally:
        if sig == signal.SIGSTOP:
            os.kill(dp.pid, signal.SIGCONT)
        dp.stop()


def program_cost(lab: Any, workdir: Path) -> dict[str, Any]:
    """Run count and run time of the wire program over an iperf3 stream through a running open wire."""
    libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
    server = run_in(
        lab.srv.ns, ["iperf3", "-s", "-1", "-p", "5201"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    dp = start_dataplane(
        lab.fw_ns, ALLOW_ALL, free_tcp_port(lab.fw_ns), workdir=workdir, extra_args=["--fail-mode", "open"]
    )
    stats = -1
    try:
        time.sleep(0.5)
        prog_id = int(
            call_in(lab.fw_ns, ["tc", "filter", "show", "dev", lab.fw_vm, "ingress"], timeout=10)
            .stdout.split(" id ")[1]
            .split()[0]
        )
        stats = libbpf.bpf_enable_stats(0)  # BPF_STATS_RUN_TIME, on while the descriptor is open
        if stats < 0:
            raise OSError(ctypes.get_errno(), "BPF_ENABLE_STATS refused")
        r = call_in(
            lab.web1.ns,
            ["iperf3", "-c", SERVER[0], "-p", "5201", "-t", "5", "--connect-timeout", "3000", "-J"],
            timeout=30,
        )
        info = json.loads(
            subprocess.run(
                ["bpftool", "prog", "show", "id", str(prog_id), "-j"], check=True, capture_output=True, text=True
            ).stdout
        )
    finally:
        if stats >= 0:
            os.close(stats)
        dp.stop()
        server.kill()
        server.wait()
    gbps = json.loads(r.stdout)["end"]["sum_received"]["bits_per_second"] / 1e9
    return {
        "frames": info.get("run_cnt", 0),
        "run_time_ns": info.get("run_time_ns", 0),
        "ns_per_frame": info.get("run_time_ns", 0) / max(1, info.get("run_cnt", 0)),
        "tcp_gbps": gbps,
    }


def summary(values: list[float | None]) -> dict[str, Any]:
    done = [v for v in values if v is not None]
    return {
        "runs": len(values),
        "failed": len(values) - len(done),
        "median_s": statistics.median(done) if done else None,
        "min_s": min(done) if done else None,
        "max_s": max(done) if done else None,
        "all_s": [round(v, 4) if v is not None else None for v in values],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="runs per signal (9)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    lock = lock_prefix(PREFIX)
    workdir = Path(tempfile.mkdtemp(prefix="ngfw-failopen-bench-"))
    times: dict[str, list[float | None]] = {"kill -9": [], "SIGSTOP": []}
    try:
        lab = lab_up(PREFIX)
        with lab_services(lab):
            for i in range(args.runs):  # interleaved, so both meet the same machine
                for name, sig in (("kill -9", signal.SIGKILL), ("SIGSTOP", signal.SIGSTOP)):
                    run_dir = workdir / f"{name.replace(' ', '')}-{i}"
                    run_dir.mkdir()
                    times[name].append(one_run(lab, run_dir, sig))
            cost_dir = workdir / "cost"
            cost_dir.mkdir()
            cost = program_cost(lab, cost_dir)
            for ifname in (lab.fw_vm, lab.fw_up):  # the last run's program
                call_in(lab.fw_ns, ["tc", "qdisc", "del", "dev", ifname, "clsact"], timeout=10)
    finally:
        lab_down(PREFIX)
        release(lock)

    results = {
        "machine": f"{platform.node()} {platform.machine()} {multiprocessing.cpu_count()} cpu, kernel {platform.release()}",
        "date": time.strftime("%Y-%m-%d"),
        "stale_after_s": STALE_AFTER_NS / 1e9,
        "signal_to_first_handshake": {name: summary(values) for name, values in times.items()},
        "program_while_the_dataplane_runs": cost,
    }
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(
            f"{results['machine']}, {results['date']}; the wire opens {results['stale_after_s']:.1f} s after the "
            "loop's last heartbeat"
        )
        for name, s in results["signal_to_first_handshake"].items():
            if s["median_s"] is None:
                print(f"{name}: no handshake within 3 s in any of {s['runs']} runs")
                continue
            print(
                f"{name} -> first handshake through the kernel: median {s['median_s'] * 1000:.0f} ms, "
                f"min {s['min_s'] * 1000:.0f} ms, max {s['max_s'] * 1000:.0f} ms ({s['runs']} runs, "
                f"{s['failed']} without one within 3 s)"
            )
        print(
            f"the program while the dataplane runs: {cost['ns_per_frame']:.0f} ns per frame ({cost['frames']} frames "
            f"of an iperf3 stream, {cost['tcp_gbps']:.2f} Gbit/s)"
        )
    return 0 if all(s["failed"] == 0 for s in results["signal_to_first_handshake"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
