"""The packaged dataplane unit: first start, restart to enforcing, and (with --vm) the ngfw VM's boot to
enforcing (root; network namespaces; the VM image of deploy/vm/, built first when missing or stale).

    sudo .venv/bin/python bench/deploy_restart.py [--restarts 9] [--vm] [--json]

Restarts: the image's own systemd in a container (systemd-nspawn, native speed) whose network is the fw
namespace of a lab of its own ("ndr"); `ngfw-dataplane.service` with the lab policy and signatures. Each run
pings web1 -> srv every 50 ms through it and runs `systemctl restart`: the time until `systemctl` returns
(the new process's READY=1: the policy is enforced) and until replies come back through the new process,
both from the moment the restart was asked. The caches (/var/cache/ngfw) are warm after the first start, as
on any host that ran ngfw before.

--vm: the same lab with the ngfw VM under QEMU in place of the fw namespace (ngfw.lab.fw_vm): the time from
QEMU's start to the unit's READY=1, and one restart inside the VM.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw.lab.artifacts import ensure_vm_image
from ngfw.lab.image_container import ImageContainer
from ngfw.lab.lock import lock_prefix, release
from ngfw.lab.netns import run_in
from ngfw.lab.topology import Lab, lab_down, lab_up

REPO = Path(__file__).resolve().parents[1]
UNIT = "ngfw-dataplane.service"
SETTINGS = """\
wires: [fw-vm:fw-up]
policy: /etc/ngfw/policy.yaml
rules: {lab: /etc/ngfw/rules/lab.rules}
metrics: 127.0.0.1:9650
"""


def reply_times(output: str) -> list[float]:
    return [float(m.group(1)) for m in re.finditer(r"^\[(\d+\.\d+)\] \d+ bytes from", output, re.M)]


def one_restart(lab: Lab, restart: Any, ping_seconds: int = 8) -> dict[str, float]:
    ping = run_in(
        lab.web1.ns,
        ["ping", "-D", "-n", "-i", "0.05", "-W", "1", "-w", str(ping_seconds), lab.srv.ipv4],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(2.0)
    asked = time.time()
    restart()
    ready = time.time() - asked
    output, _ = ping.communicate(timeout=ping_seconds + 30)
    times = reply_times(output)
    gaps = [(b - a, b) for a, b in zip(times, times[1:]) if b > asked]
    gap, first_after = max(gaps) if gaps else (float("nan"), float("nan"))
    return {"ready_s": ready, "replies_again_s": first_after - asked, "longest_gap_s": gap, "load": load()}


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)  # stdout is the result (--json)


def load() -> float:
    return os.getloadavg()[0]


def container_runs(lab: Lab, restarts: int) -> dict[str, Any]:
    image = ensure_vm_image(say=say)
    with ImageContainer(image.disk, f"ngfw-{lab.prefix}", netns=lab.fw_ns) as c:
        c.write("/etc/ngfw/policy.yaml", (REPO / "rules/examples/lab.yaml").read_text())
        c.write("/etc/ngfw/rules/lab.rules", (REPO / "rules/threats/lab.rules").read_text())
        c.write("/etc/ngfw/dataplane.yaml", SETTINGS)
        started = time.monotonic()
        c.run(["systemctl", "start", UNIT], timeout=300)
        first = time.monotonic() - started
        runs = [one_restart(lab, lambda: c.run(["systemctl", "restart", UNIT], timeout=120)) for _ in range(restarts)]
    return {"first_start_s": first, "restarts": runs}


def vm_run(lab: Lab) -> dict[str, Any]:
    from ngfw.lab.fw_vm import shutdown_lab_vm, start_fw_vm

    image = ensure_vm_image(say=say)
    vm = start_fw_vm(lab, image, say=say)
    try:
        # pings for longer than a restart takes in a TCG guest
        restart = one_restart(
            lab, lambda: vm.agent.run(["systemctl", "restart", UNIT], timeout=600, check=True), ping_seconds=120
        )
        return {"accel": vm.accel, "boot_to_enforcing_s": vm.boot_seconds, "restart": restart, "load": load()}
    finally:
        shutdown_lab_vm(lab.prefix)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=9)
    parser.add_argument("--vm", action="store_true", help="also boot the ngfw VM under QEMU (minutes under TCG)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/deploy_restart.py: run as root (namespaces, systemd-nspawn, QEMU)", file=sys.stderr)
        return 1
    prefix = "ndr"
    lock = lock_prefix(prefix)
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} vCPU {platform.machine()}",
    }
    try:
        lab = lab_up(prefix)
        try:
            result["container"] = container_runs(lab, args.restarts)
        finally:
            lab_down(prefix)
        if args.vm:
            lab = lab_up(prefix)
            try:
                result["vm"] = vm_run(lab)
            finally:
                from ngfw.lab.workloads import forget_workloads

                forget_workloads(prefix)
                lab_down(prefix)
    finally:
        release(lock)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    c = result["container"]
    ready = [r["ready_s"] for r in c["restarts"]]
    again = [r["replies_again_s"] for r in c["restarts"]]
    print(f"container (image's systemd, native speed): first start {c['first_start_s']:.2f} s (cold caches)")
    print(
        f"  {len(ready)} restarts: READY after median {statistics.median(ready):.2f} s (min {min(ready):.2f}, "
        f"max {max(ready):.2f}); pings through again after median {statistics.median(again):.2f} s "
        f"(max {max(again):.2f}); load average {statistics.median(r['load'] for r in c['restarts']):.1f}"
    )
    if "vm" in result:
        v = result["vm"]
        print(
            f"VM ({v['accel']}): boot to enforcing {v['boot_to_enforcing_s']:.1f} s; restart inside: READY after "
            f"{v['restart']['ready_s']:.1f} s, pings through again after {v['restart']['replies_again_s']:.1f} s; "
            f"load average {v['load']:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
