"""`ngfw lab migrate WORKLOAD --to HOST`: what a hypervisor does when a VM moves between two hosts.

- A VM workload: QEMU live migration. A QEMU started with `-incoming tcp:<dest mgmt ip>:<port>` in
  the destination host's namespace (same spec: MAC, TAP on its br-vm), QMP `migrate` on the source,
  the stream over the management network (10.79.0.21 -> .22); when `query-migrate` says completed
  the source QEMU quits and its TAP goes. QEMU announces the guest on arrival (RARP, and virtio-net's
  GUEST_ANNOUNCE makes the guest's kernel send a gratuitous ARP and an unsolicited NA).
- A namespace workload: its veth's bridge end moves from the source host namespace's br-vm to the
  destination's (pyroute2: set netns, then master and up), then the workload announces itself from
  inside its namespace with the frames a guest's kernel sends (`ngfw.lab.announce`).

Nothing here talks to ngfw: the dataplanes see only what a real network would show them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

from pyroute2 import IPRoute

from ngfw.lab.announce import announce_from
from ngfw.lab.netns import free_tcp_port, write_sysctl
from ngfw.lab.qemu import Guest, GuestError, MigrationFailed, MigrationStats
from ngfw.lab.topology import BR_VM, Endpoint, ifindex, wait_oper_up
from ngfw.lab.workloads import (
    LabHost,
    Placement,
    is_two_host_lab,
    lab_endpoints,
    lab_hosts,
    lab_is_up,
    load_placements,
    placement_lock,
    qemu_run_dir,
    save_placements,
)

MIGRATION_TIMEOUT = 120.0
MIGRATION_BANDWIDTH = 1 << 30  # bytes/s: QEMU 7.2's default cap of 32 MiB/s is for real networks
DEST_START_TIMEOUT = 15.0


class MigrateError(RuntimeError):
    """The move cannot be made; the message is one sentence for the user."""


@dataclass(frozen=True)
class MoveReport:
    workload: str
    kind: str  # "netns" or "vm"
    source: str
    destination: str
    seconds: float
    link_down_ms: float | None = None  # namespace: from leaving the source bridge to up on the destination's
    announcements: int = 0
    stats: MigrationStats | None = None  # VM: QEMU's own account

    def line(self) -> str:
        head = f"{self.workload} moved from {self.source} to {self.destination} in {self.seconds:.2f} s"
        if self.stats is not None:
            s = self.stats
            return (
                f"{head} (VM, QEMU live migration: total {s.total_time_ms} ms, downtime {s.downtime_ms} ms, "
                f"{s.transferred_bytes / 2**20:.1f} MiB sent)"
            )
        return (
            f"{head} (namespace: link down {self.link_down_ms:.0f} ms, {self.announcements} announcement frames sent)"
        )


def check_move(
    prefix: str, placements: dict[str, Placement], hosts: dict[str, LabHost], workload: str, to: str
) -> Placement:
    """The workload's current placement if it can move to `to`; MigrateError saying why not (pure)."""
    if "host-b" not in hosts:
        raise MigrateError(f"lab {prefix!r} is not a two-host lab: build it with `ngfw lab up --hosts 2`")
    if to not in hosts:
        raise MigrateError(f"unknown host {to!r}: the lab's hosts are {' and '.join(hosts)}")
    if workload not in placements:
        raise MigrateError(f"unknown workload {workload!r}: the lab's workloads are {', '.join(sorted(placements))}")
    place = placements[workload]
    if place.host == to:
        raise MigrateError(f"{workload} is already on {to}")
    return place


def migrate_workload(prefix: str, workload: str, to: str, timeout: float = MIGRATION_TIMEOUT) -> MoveReport:
    """Move `workload` of lab `prefix` to host `to` as its hypervisor would; the new placement is recorded."""
    if not lab_is_up(prefix):
        raise MigrateError(f"there is no lab {prefix!r}: build one with `ngfw lab up --hosts 2`")
    hosts = lab_hosts(prefix, is_two_host_lab(prefix))
    with placement_lock(prefix):
        placements = load_placements(prefix)
        place = check_move(prefix, placements, hosts, workload, to)
        source, dest = hosts[place.host], hosts[to]
        endpoint = lab_endpoints(prefix)[workload]
        started = time.monotonic()
        if place.kind == "vm":
            instance, stats = _move_vm(prefix, place, dest, timeout)
            report = MoveReport(workload, "vm", source.name, dest.name, time.monotonic() - started, stats=stats)
            placements[workload] = Placement(dest.name, "vm", instance)
        else:
            down_ms = _move_veth(endpoint, source, dest)
            sent = announce_from(endpoint.ns, endpoint.ifname)
            report = MoveReport(
                workload,
                "netns",
                source.name,
                dest.name,
                time.monotonic() - started,
                link_down_ms=down_ms,
                announcements=sent,
            )
            placements[workload] = Placement(dest.name, "netns")
        save_placements(prefix, placements)
    return report


def _move_veth(endpoint: Endpoint, source: LabHost, dest: LabHost) -> float:
    """Move the workload's bridge port to the destination's br-vm; milliseconds until it forwards there."""
    with IPRoute(netns=source.host_ns, flags=0) as src, IPRoute(netns=dest.host_ns, flags=0) as dst:
        bridge = ifindex(dst, BR_VM)
        left = time.monotonic()
        src.link("set", index=ifindex(src, endpoint.host_port), net_ns_fd=dest.host_ns)  # leaves br-vm, goes down
        index = ifindex(dst, endpoint.host_port)
        dst.link("set", index=index, master=bridge)
        dst.link("set", index=index, state="up")
        deadline = left + 5.0
        while time.monotonic() < deadline:  # carrier back: both veth ends up, the bridge port forwarding
            if dst.link("get", index=index)[0].get_attr("IFLA_OPERSTATE") == "UP":
                break
            time.sleep(0.002)
        down_ms = (time.monotonic() - left) * 1000
    # an L2-only port, as on its first host (the namespace's default already says so; be explicit)
    write_sysctl(dest.host_ns, f"net.ipv6.conf.{endpoint.host_port}.disable_ipv6", 1)
    wait_oper_up(endpoint.ns, [endpoint.ifname])
    return down_ms


def _move_vm(prefix: str, place: Placement, dest: LabHost, timeout: float) -> tuple[str, MigrationStats]:
    run_dir = qemu_run_dir(prefix)
    if place.instance is None:
        raise MigrateError(f"the lab's record names no QEMU instance for a VM on {place.host}")
    try:
        source = Guest.attach(run_dir, place.instance)
    except GuestError:
        raise MigrateError(f"the QEMU of {place.instance} has no run files in {run_dir}: is the lab up?") from None
    if not source.alive():
        raise MigrateError(f"the QEMU of {place.instance} (pid {source.pid}) is not running")
    if dest.mgmt_ip is None:
        raise MigrateError(f"{dest.name} has no management address to receive a migration on")
    uri = f"tcp:{dest.mgmt_ip}:{free_tcp_port(dest.host_ns, dest.mgmt_ip)}"
    name = source.name.rsplit(".", 1)[0] + f".{dest.name}"
    spec = dataclasses.replace(source.spec, name=name, netns=dest.host_ns, incoming=uri)
    target = Guest.start(spec, run_dir, accel=source.accel, qmp_timeout=DEST_START_TIMEOUT)
    try:
        stats = source.migrate(uri, timeout=timeout, max_bandwidth=MIGRATION_BANDWIDTH)
        target.wait_running(timeout=10)
    except (MigrationFailed, GuestError) as exc:
        target.kill()
        raise MigrateError(f"{exc} (the workload stays on {place.host})") from None
    except BaseException:
        target.kill()
        raise
    source.quit()
    return name, stats
