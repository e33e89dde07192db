"""Sessions across a dataplane restart: time from the new process's start to forwarding, and whether a
download that was running when the old one died completes byte-exact (root; network namespaces).

    sudo .venv/bin/python bench/restart.py [--runs 5] [--json]

The lab under its own prefix ("nrs"), nginx on srv. Each run starts `ngfw dataplane --state-dir DIR` on the
lab wire, starts `curl --limit-rate 2M` of the lab's 10 MiB file in web1, and after 1 s ends the dataplane:
`kill -9` (crash) or SIGTERM (graceful: a snapshot with inspection streams). A new dataplane with the same
state directory starts at once; from its start, web1 opens a new connection every 5 ms until one completes
(ngfw.lab.probe.time_to_connect): "restart to forwarding". The download must then finish with the file's
sha256. The same start with `--state-dir none` (no sessions to take over) is the cold-start baseline of the
same run: the difference is what continuing the old table costs. The log line of the new process says how
many sessions it took over and how long that took.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw.lab.dataplane_process import DataplaneProcess, default_dataplane_argv
from ngfw.lab.lock import lock_prefix, release
from ngfw.lab.netns import free_tcp_port, run_in
from ngfw.lab.probe import time_to_connect
from ngfw.lab.services import BIG_FILE_SIZE, lab_services
from ngfw.lab.topology import lab_down, lab_up

POLICY = Path(__file__).resolve().parents[1] / "rules" / "examples" / "lab.yaml"
PREFIX = "nrs"
SERVER = ("10.77.0.100", 80)
EXPECTED = hashlib.sha256(bytes(range(256)) * 4096 * (BIG_FILE_SIZE // (256 * 4096))).hexdigest()
CONTINUED = re.compile(r"sessions of the previous dataplane continued from its (\w+) .* in ([0-9.]+) s: (.*)")


def launch(lab: Any, workdir: Path, state: str) -> DataplaneProcess:
    port = free_tcp_port(lab.fw_ns)
    argv = [*default_dataplane_argv(str(POLICY), f"127.0.0.1:{port}", str(workdir / "eve.json")), "--state-dir", state]
    return DataplaneProcess(lab.fw_ns, argv, "127.0.0.1", port, workdir / "eve.json", workdir)


def one_run(lab: Any, services: Any, root: Path, sig: int, n: int) -> dict[str, Any]:
    state = tempfile.mkdtemp(prefix="ngfw-restart-", dir="/dev/shm")
    first_dir, second_dir = root / f"{n}-first", root / f"{n}-second"
    first_dir.mkdir()
    second_dir.mkdir()
    first = launch(lab, first_dir, state)
    first.wait_ready()
    out = root / f"{n}.sha256"
    download = run_in(
        lab.web1.ns,
        ["sh", "-c", f"curl -sS -m 60 --limit-rate 2M {services.big_file_url} | sha256sum > {out}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    first.proc.send_signal(sig)
    first.proc.wait(timeout=20)
    started = time.monotonic()
    second = launch(lab, second_dir, state)
    try:
        forwarding = time_to_connect(lab.web1.ns, SERVER, since=started, limit=10.0)
        download.wait(timeout=60)
        digest = out.read_text().split()[0] if out.exists() else ""
        second.wait_ready()
        found = CONTINUED.search(second.stderr_text())
        return {
            "signal": signal.Signals(sig).name,
            "restart_to_forwarding_s": forwarding,
            "download_intact": digest == EXPECTED,
            "continued_from": found.group(1) if found else None,
            "continue_seconds": float(found.group(2)) if found else None,
            "continued": found.group(3) if found else None,
        }
    finally:
        second.stop()
        subprocess.run(["rm", "-rf", state], check=False)


def cold_start(lab: Any, root: Path, n: int) -> float | None:
    workdir = root / f"{n}-cold"
    workdir.mkdir()
    started = time.monotonic()
    dp = launch(lab, workdir, "none")
    try:
        return time_to_connect(lab.web1.ns, SERVER, since=started, limit=10.0)
    finally:
        dp.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/restart.py: run as root (network namespaces)", file=sys.stderr)
        return 2
    lock = lock_prefix(PREFIX)
    try:
        lab = lab_up(PREFIX)
        try:
            with lab_services(lab) as services, tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                cold = [cold_start(lab, root, i) for i in range(args.runs)]
                runs = [
                    one_run(lab, services, root, sig, i * 2 + j)
                    for i in range(args.runs)
                    for j, sig in enumerate((signal.SIGKILL, signal.SIGTERM))
                ]
        finally:
            lab_down(PREFIX)
    finally:
        release(lock)

    def med(values: list[Any]) -> float | None:
        values = [v for v in values if v is not None]
        return round(statistics.median(values), 3) if values else None

    summary: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} vCPU, {platform.release()}",
        "cold_start_to_forwarding_s": {"median": med(cold), "runs": cold},
    }
    for name in ("SIGKILL", "SIGTERM"):
        mine = [r for r in runs if r["signal"] == name]
        summary[name] = {
            "restart_to_forwarding_s": {
                "median": med([r["restart_to_forwarding_s"] for r in mine]),
                "max": max((r["restart_to_forwarding_s"] or 99) for r in mine),
            },
            "downloads_intact": f"{sum(r['download_intact'] for r in mine)}/{len(mine)}",
            "continue_seconds_median": med([r["continue_seconds"] for r in mine]),
            "runs": mine,
        }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"cold start to forwarding (no sessions): median {summary['cold_start_to_forwarding_s']['median']} s")
        for name in ("SIGKILL", "SIGTERM"):
            s = summary[name]
            print(
                f"{name}: restart to forwarding median {s['restart_to_forwarding_s']['median']} s "
                f"(max {s['restart_to_forwarding_s']['max']} s), downloads intact {s['downloads_intact']}, "
                f"taking over the sessions {s['continue_seconds_median']} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
