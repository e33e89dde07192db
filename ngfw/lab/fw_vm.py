"""The lab's firewall as a VM: the ngfw VM image (deploy/vm/build-image.sh) booted under QEMU in place of
the firewall namespace, its two virtio NICs on TAPs in the host's br-vm and br-up, configured by a NoCloud
seed (the lab policy and signatures), enforcing as the packaged unit `ngfw-dataplane.service` does on any
host. `ngfw lab up --fw-vm` and `ngfw demo --fw-vm` use it.

```
 web1, web2 -- br-vm --[fwvm-vm]== vmside0 (ngfw VM: systemd, ngfw-dataplane) uplink0 ==[fwvm-up]-- br-up -- srv
```
The VM has no management NIC: the lab reaches it through the QEMU guest agent (ngfw.lab.qga) for the
unit's state, /metrics and the EVE file. KVM when it boots a guest here, TCG (`-cpu max`: Hyperscan
needs SSSE3) otherwise.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from ngfw.lab.artifacts import VmImage
from ngfw.lab.dataplane_process import parse_metrics, repo_path
from ngfw.lab.qemu import Drive, Guest, GuestSpec, Nic, select_accelerator
from ngfw.lab.qga import AgentError, QemuGuestAgent, qga_qemu_args
from ngfw.lab.topology import Lab
from ngfw.lab.workloads import qemu_run_dir
from ngfw.vm.seed import Seed

log = logging.getLogger(__name__)

GUEST = "ngfw-fw"
VM_SIDE_MAC = "52:54:00:77:00:01"
UPLINK_MAC = "52:54:00:77:00:02"
VM_SIDE_TAP = "fwvm-vm"
UPLINK_TAP = "fwvm-up"
METRICS = ("127.0.0.1", 9650)  # inside the VM
EVE = "/var/log/ngfw/eve.json"
UNIT = "ngfw-dataplane.service"
LAB_FLOW_CAPACITY = 65536
APPEND = "root=LABEL=ngfw-root ro console=ttyS0,115200n8 quiet"
# Python in the guest: what reads /metrics there (the image has no curl)
METRICS_SCRIPT = (
    "import urllib.request, sys; sys.stdout.write(urllib.request.urlopen("
    f"'http://{METRICS[0]}:{METRICS[1]}/metrics', timeout=20).read().decode())"
)


class FwVmError(RuntimeError):
    pass


@dataclass
class FwVm:
    """The running ngfw VM of a lab; the demo reads it like a dataplane process."""

    guest: Guest
    agent: QemuGuestAgent
    accel: str
    boot_seconds: float  # QEMU started -> the unit is active (its READY=1: the policy is enforced)
    metrics_host: str = METRICS[0]
    metrics_port: int = METRICS[1]
    eve_path: str = f"{EVE} (in the VM)"

    @property
    def pid(self) -> int:
        return self.guest.pid

    def unit_state(self) -> str:
        return self.agent.run(["systemctl", "is-active", UNIT], timeout=60).stdout.strip()

    def running(self) -> bool:
        try:
            return self.guest.alive() and self.unit_state() == "active"
        except AgentError:
            return False

    def metrics_text(self, timeout: float = 120.0) -> str:
        done = self.agent.run(["/opt/ngfw/venv/bin/python", "-c", METRICS_SCRIPT], timeout=timeout)
        if done.returncode != 0:
            raise OSError(f"/metrics in the VM: {done.stderr.strip()[-300:]}")
        return done.stdout

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_metrics(self.metrics_text())

    def eve_records(self) -> list[dict[str, Any]]:
        try:
            text = self.agent.read_file(EVE).decode(errors="replace")
        except AgentError:
            return []
        records = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records

    def stderr_text(self, lines: int = 30) -> str:
        """The unit's journal (what `systemctl status` shows, and more)."""
        try:
            return self.agent.run(["journalctl", "-u", UNIT, "-n", str(lines), "--no-pager"], timeout=60).stdout
        except AgentError as exc:
            return f"(journal unreadable: {exc})\n{self.guest.console_text()[-2000:]}"

    def exit_description(self) -> str:
        return f"ngfw-dataplane.service is {self.unit_state()} in the VM"

    def stop(self) -> None:
        """Stop the unit (open flows are logged as ended by shutdown); the VM keeps running. Idempotent."""
        try:
            self.agent.run(["systemctl", "stop", UNIT], timeout=120)
        except AgentError as exc:
            log.warning("stopping %s in the VM: %s", UNIT, exc)

    def shutdown(self) -> None:
        self.guest.shutdown(timeout=30, powerdown=True)


def lab_seed(lab: Lab, policy: Path, rules: dict[str, Path]) -> Seed:
    """The NoCloud seed of the lab's ngfw VM: the lab's policy and signatures, metrics on the VM's loopback."""
    return Seed(
        instance_id=f"{lab.prefix}-fw-{int(time.time())}",
        hostname=f"{lab.prefix}-fw",
        vm_side_mac=VM_SIDE_MAC,
        uplink_mac=UPLINK_MAC,
        policy={policy.name if policy.suffix in (".yaml", ".yml") else "policy.yaml": policy.read_text()},
        rules={name: path.read_text() for name, path in rules.items()},
        # the lab needs few flows; the session table (in the VM's /run) and its start are smaller
        settings={"metrics": f"{METRICS[0]}:{METRICS[1]}", "flow-capacity": LAB_FLOW_CAPACITY},
    )


def _remove_fw_namespace_wire(lab: Lab) -> None:
    """The VM takes the firewall's place: the namespace's veth pair leaves the bridges (deleting one end
    deletes both), so the VM's NICs are the only path between br-vm and br-up."""
    with IPRoute(netns=lab.host_ns, flags=0) as ipr:
        for name in (lab.fw_vm_peer, lab.fw_up_peer):
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)


def start_fw_vm(
    lab: Lab,
    image: VmImage,
    policy: Path | None = None,
    rules: dict[str, Path] | None = None,
    boot_timeout: float = 900.0,
    memory_mb: int = 1024,
    cpus: int = 2,
    say: Callable[[str], None] = lambda line: None,
) -> FwVm:
    """Boot the ngfw VM in lab `lab` and return once its dataplane unit is active (enforcing)."""
    policy = policy or repo_path("rules/examples/lab.yaml")
    rules = rules if rules is not None else {"lab": repo_path("rules/threats/lab.rules")}
    run_dir = qemu_run_dir(lab.prefix)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_path = lab_seed(lab, policy, rules).write_image(run_dir / f"{GUEST}.seed.img")
    _remove_fw_namespace_wire(lab)
    accel = select_accelerator(image.kernel, image.initrd)
    agent_socket = run_dir / f"{GUEST}.qga.sock"
    spec = GuestSpec(
        name=GUEST,
        netns=lab.host_ns,
        kernel=image.kernel,
        initrd=image.initrd,
        append=APPEND,
        disk=image.disk,
        disk_snapshot=True,
        drives=(Drive(seed_path, readonly=True),),
        nics=(Nic(VM_SIDE_MAC, lab.br_vm, VM_SIDE_TAP), Nic(UPLINK_MAC, lab.br_up, UPLINK_TAP)),
        memory_mb=memory_mb,
        cpus=cpus,
        extra_args=qga_qemu_args(agent_socket),
    )
    say(
        f"booting the ngfw VM ({accel}{', slow: minutes' if accel == 'tcg' else ''}; console log "
        f"{run_dir / (GUEST + '.console.log')})"
    )
    started = time.monotonic()
    guest = Guest.start(spec, run_dir, accel=accel)
    agent = QemuGuestAgent(agent_socket)
    try:
        deadline = started + boot_timeout
        agent.wait(max(1.0, deadline - time.monotonic()))
        state = ""
        while time.monotonic() < deadline:
            state = agent.run(["systemctl", "is-active", UNIT], timeout=120).stdout.strip()
            if state == "active":
                break
            if state == "failed":
                journal = agent.run(["journalctl", "-u", UNIT, "-n", "20", "--no-pager"], timeout=60).stdout
                raise FwVmError(f"{UNIT} failed in the ngfw VM:\n{journal}")
            time.sleep(2.0)
        else:
            raise FwVmError(
                f"{UNIT} in the ngfw VM is still {state or 'unknown'} after {boot_timeout:.0f} s; "
                f"console: {guest.console_text()[-1500:]}"
            )
    except BaseException:
        guest.kill()
        raise
    vm = FwVm(guest, agent, accel, time.monotonic() - started)
    say(f"ngfw VM enforcing {time.monotonic() - started:.1f} s after QEMU started ({accel}, pid {guest.pid})")
    return vm


def shutdown_lab_vm(prefix: str) -> None:
    """Power the lab's ngfw VM off (its TAPs and run files go too, and its seed); nothing when it does not run."""
    run_dir = qemu_run_dir(prefix)
    if (run_dir / f"{GUEST}.json").exists():
        try:
            Guest.attach(run_dir, GUEST).shutdown(timeout=30, powerdown=True)
        except Exception as exc:  # noqa: BLE001 - `ngfw lab down` cleans the run directory anyway
            log.warning("ngfw VM of lab %s: %s", prefix, exc)
    for leftover in (f"{GUEST}.seed.img", f"{GUEST}.qga.sock"):
        (run_dir / leftover).unlink(missing_ok=True)
