"""The lab's workloads as a hypervisor sees them: which host each runs on, as a namespace or a QEMU VM.

`ngfw lab up --vm-workloads` turns web1 and web2 into QEMU guests (`start_vm_workloads`): the same
MAC and addresses as their namespaces had, one virtio-net NIC on a TAP named like the namespace's
bridge port (`vm-web1` on host-a's br-vm), QEMU running in the host namespace. The placement of every
workload (host, kind, QEMU instance) is kept in `/run/ngfw-lab/<prefix>.workloads.json`, so that
`ngfw lab migrate` and `ngfw lab down` (`forget_workloads`) know where things are; QEMU's run files
live in `/run/ngfw-lab/<prefix>.qemu/`. A lab built without that file (the Python API) has only
namespace workloads, and their placement is read from the system (`load_placements`).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pyroute2 import IPRoute, netns

from ngfw.lab.guest_agent import GuestAgent
from ngfw.lab.guest_image import BOOT_MARKER, READY_MARKER, GuestImage, guest_image
from ngfw.lab.hosts import two_host_plan
from ngfw.lab.lock import LOCK_DIR
from ngfw.lab.qemu import Guest, GuestSpec, Nic, cleanup, select_accelerator
from ngfw.lab.topology import BR_VM, Endpoint, kill_leftovers

VM_MEMORY_MB = 128
VM_BOOT_TIMEOUT = 120.0  # two TCG guests booting at once on two busy cores
AGENT_SERIAL = "agent"
VM_WORKLOADS = ("web1", "web2")


class WorkloadError(RuntimeError):
    """A workload is unknown, or not in the state an operation needs."""


@dataclass(frozen=True)
class LabHost:
    """A simulated hypervisor: its name, the namespace holding its bridges, its management address."""

    name: str
    host_ns: str
    mgmt_ip: str | None


@dataclass(frozen=True)
class Placement:
    """Where a workload runs: `host` ("host-a"), `kind` ("netns" or "vm"), its QEMU instance if a VM."""

    host: str
    kind: str
    instance: str | None = None


def state_path(prefix: str) -> Path:
    return Path(LOCK_DIR) / f"{prefix}.workloads.json"


def qemu_run_dir(prefix: str) -> Path:
    return Path(LOCK_DIR) / f"{prefix}.qemu"


@contextlib.contextmanager
def placement_lock(prefix: str) -> Iterator[None]:
    """Held while a command changes where workloads are (two migrations never interleave)."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    with open(Path(LOCK_DIR) / f"{prefix}.workloads.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def lab_hosts(prefix: str, two_hosts: bool) -> dict[str, LabHost]:
    """The hosts of lab `prefix` by name (pure): host-a, and host-b in a two-host lab."""
    plan = two_host_plan(prefix)
    hosts = {"host-a": LabHost("host-a", plan.host_a.host_ns, plan.host_a.host_mgmt_ip if two_hosts else None)}
    if two_hosts:
        hosts["host-b"] = LabHost("host-b", plan.host_b.host_ns, plan.host_b.host_mgmt_ip)
    return hosts


def lab_endpoints(prefix: str) -> dict[str, Endpoint]:
    """Every workload of lab `prefix` by name (pure): web1, web2 (home: host-a), db1 (home: host-b)."""
    plan = two_host_plan(prefix)
    return {e.name: e for e in (*plan.lab.workloads, plan.db1)}


def home_host(name: str) -> str:
    return "host-b" if name == "db1" else "host-a"


def is_two_host_lab(prefix: str) -> bool:
    plan = two_host_plan(prefix)
    present = set(netns.listnetns())
    return plan.host_b.host_ns in present and plan.lab.host_ns in present


def lab_is_up(prefix: str) -> bool:
    return two_host_plan(prefix).lab.host_ns in netns.listnetns()


def save_placements(prefix: str, placements: dict[str, Placement]) -> None:
    path = state_path(prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"prefix": prefix, "workloads": {name: asdict(p) for name, p in sorted(placements.items())}}
    tmp = path.with_name(path.name + f".{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def _port_host(prefix: str, endpoint: Endpoint, hosts: dict[str, LabHost]) -> str | None:
    """Which host namespace holds the workload's bridge port right now."""
    present = set(netns.listnetns())
    for host in hosts.values():
        if host.host_ns not in present:
            continue
        with IPRoute(netns=host.host_ns, flags=0) as ipr:
            if ipr.link_lookup(ifname=endpoint.host_port):
                return host.name
    return None


def load_placements(prefix: str) -> dict[str, Placement]:
    """The recorded placement of each workload; without a record, the namespace workloads found."""
    try:
        data = json.loads(state_path(prefix).read_text())
        return {name: Placement(**p) for name, p in data["workloads"].items()}
    except FileNotFoundError:
        pass
    hosts = lab_hosts(prefix, is_two_host_lab(prefix))
    present = set(netns.listnetns())
    found = {}
    for name, endpoint in lab_endpoints(prefix).items():
        if endpoint.ns in present:
            host = _port_host(prefix, endpoint, hosts)
            if host is not None:
                found[name] = Placement(host, "netns")
    return found


def forget_workloads(prefix: str) -> list[str]:
    """Stop every QEMU of lab `prefix` (by its run files: also after a crash), drop the placement record."""
    stopped = cleanup(qemu_run_dir(prefix))
    state_path(prefix).unlink(missing_ok=True)
    return stopped


def vm_spec(endpoint: Endpoint, host: LabHost, image: GuestImage) -> GuestSpec:
    """The QEMU guest standing in for `endpoint` on `host`: its MAC and addresses, a TAP on br-vm."""
    return GuestSpec(
        name=f"{endpoint.name}.{host.name}",
        kernel=image.kernel,
        initrd=image.initrd,
        append=GuestImage.cmdline(
            endpoint.name, f"{endpoint.ipv4}/{endpoint.prefixlen4}", f"{endpoint.ipv6}/{endpoint.prefixlen6}"
        ),
        netns=host.host_ns,
        nics=(Nic(endpoint.mac, BR_VM, endpoint.host_port),),
        memory_mb=VM_MEMORY_MB,
        cpus=1,
        serial_sockets=(AGENT_SERIAL,),
    )


def _remove_namespace_endpoint(endpoint: Endpoint, host: LabHost) -> None:
    """The namespace workload gives way to its VM: its veth pair and namespace go."""
    with IPRoute(netns=host.host_ns, flags=0) as ipr:
        for index in ipr.link_lookup(ifname=endpoint.host_port):
            ipr.link("del", index=index)  # the veth pair: its peer in the workload namespace goes too
    if endpoint.ns in netns.listnetns():
        kill_leftovers(endpoint.ns)
        netns.remove(endpoint.ns)


@dataclass(frozen=True)
class BootedVm:
    name: str
    guest: Guest
    boot_seconds: float


def start_vm_workloads(
    prefix: str,
    names: Sequence[str] = VM_WORKLOADS,
    progress: Callable[[str], None] | None = None,
    boot_timeout: float = VM_BOOT_TIMEOUT,
) -> list[BootedVm]:
    """Turn namespace workloads `names` of lab `prefix` into QEMU guests on the host they are on.

    Returns once each guest's agent answers. On failure the guests started are killed and the
    error is raised (the namespaces they replaced are gone: rebuild the lab).
    """
    say = progress or (lambda _msg: None)
    endpoints = lab_endpoints(prefix)
    unknown = [n for n in names if n not in endpoints]
    if unknown:
        raise WorkloadError(f"unknown workload {unknown[0]!r}: the lab's workloads are {', '.join(endpoints)}")
    image = guest_image(progress=say)
    # the probe guest has no NIC: it is enough that the kernel gets to /init
    accel = select_accelerator(
        image.kernel, image.initrd, append=GuestImage.cmdline("kvm-probe"), marker=BOOT_MARKER.encode()
    )
    hosts = lab_hosts(prefix, is_two_host_lab(prefix))
    with placement_lock(prefix):
        placements = load_placements(prefix)
        booted: list[tuple[str, Guest, float]] = []
        try:
            for name in names:
                place = placements.get(name)
                if place is None:
                    raise WorkloadError(f"workload {name} is not in lab {prefix!r}")
                if place.kind == "vm":
                    raise WorkloadError(f"workload {name} is a VM already")
                host = hosts[place.host]
                _remove_namespace_endpoint(endpoints[name], host)
                spec = vm_spec(endpoints[name], host, image)
                started = time.monotonic()
                booted.append((name, Guest.start(spec, qemu_run_dir(prefix), accel=accel), started))
                placements[name] = Placement(host.name, "vm", spec.name)
            result = _wait_booted(booted, boot_timeout)
        except BaseException:
            for _, guest, _ in booted:
                guest.kill()
            for name, _, _ in booted:
                placements.pop(name, None)
            save_placements(prefix, placements)
            raise
        save_placements(prefix, placements)
    return result


def _wait_booted(booted: list[tuple[str, Guest, float]], timeout: float) -> list[BootedVm]:
    """Wait for every guest's ready line (they boot at the same time), then for its agent."""
    pending = {name: (guest, started) for name, guest, started in booted}
    seconds: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while pending:
        for name, (guest, started) in list(pending.items()):
            if READY_MARKER in guest.console_text():
                seconds[name] = time.monotonic() - started
                del pending[name]
            elif not guest.alive() or time.monotonic() >= deadline:
                guest.wait_console(READY_MARKER, timeout=0)  # raises, with the console's and QEMU's last words
        time.sleep(0.05)
    for _, guest, _ in booted:
        GuestAgent(guest.serial_path(AGENT_SERIAL)).wait_ready(timeout=30)
    return [BootedVm(name, guest, seconds[name]) for name, guest, _ in booted]


def record_namespace_workloads(prefix: str) -> dict[str, Placement]:
    """Write the placement record of a freshly built lab: its namespace workloads where they are."""
    state_path(prefix).unlink(missing_ok=True)
    placements = load_placements(prefix)  # read from the system, without a record
    save_placements(prefix, placements)
    return placements


def workload_guest(prefix: str, name: str) -> Guest:
    """The running QEMU guest of VM workload `name`."""
    place = load_placements(prefix).get(name)
    if place is None or place.kind != "vm" or place.instance is None:
        raise WorkloadError(f"workload {name} of lab {prefix!r} is not a VM")
    return Guest.attach(qemu_run_dir(prefix), place.instance)


def workload_agent(prefix: str, name: str) -> GuestAgent:
    """The command agent of VM workload `name`, wherever it runs now."""
    return GuestAgent(workload_guest(prefix, name).serial_path(AGENT_SERIAL))
