"""The two-host lab: the lab's host (host-a) plus a second hypervisor host (host-b) with a tenant-b
workload, and a management network on which `ngfw control` reaches both hosts' dataplanes.

```
 {p}-web1 ─┐                                                         ┌─ {p}-srv
 {p}-web2 ─┴ br-vm [{p}-host]  ── fw-vm [{p}-fw] fw-up ──  br-up ────┤   (the lab's uplink bridge is
                                       mgmt0 10.79.0.11              │    the "physical network")
                                                                     └─ up-host2 == up-host1 ─┐
 {p}-db1 ── br-vm [{p}-host2] ── fw-vm [{p}-fw2] fw-up ── br-up ───────────────────────────────┘
                                       mgmt0 10.79.0.12
 {p}-mgmt: br-mgmt 10.79.0.1/24 (ports m-fw1, m-fw2) — where `ngfw control` and the CLI run;
           ports m-host1, m-host2 to mgmt0 in {p}-host (10.79.0.21) and {p}-host2 (10.79.0.22)
```
Every workload is in 10.77.0.0/24, so a flow from web1 (host-a) to db1 (host-b) crosses both
dataplanes; a flow to srv crosses the source host's only. The management network carries no
workload traffic and is not on any dataplane wire; the hosts' own addresses on it (.21, .22) carry
what hypervisors send each other, such as a QEMU live migration stream (`ngfw lab migrate`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from pyroute2 import IPRoute, netns

from ngfw.lab.netns import write_sysctl
from ngfw.lab.offload import disable_offloads
from ngfw.lab.topology import (
    BR_UP,
    BR_VM,
    FW_UP,
    FW_VM,
    IFA_F_NODAD,
    IFNAMSIZ,
    Endpoint,
    Lab,
    add_bridge,
    ifindex,
    lab_bridge_fw,
    lab_down,
    lab_plan,
    lab_unbridge_fw,
    lab_up,
    quiet_ipv6,
    wait_oper_up,
)

log = logging.getLogger(__name__)

BR_MGMT = "br-mgmt"
MGMT_IF = "mgmt0"  # in each fw namespace
MGMT_SUBNET = "10.79.0.0/24"
CONTROL_IP = "10.79.0.1"
CONTROL_PORT = 9660
UPLINK_A = "up-host2"  # on host-a's br-up, towards host-b
UPLINK_B = "up-host1"  # on host-b's br-up, towards host-a
HOST_MGMT_IF = "mgmt0"  # in each host (hypervisor) namespace: what a hypervisor's migration stream uses


@dataclass(frozen=True)
class DataplaneHost:
    """One simulated hypervisor host: its bridges' namespace, its firewall namespace, its name towards control."""

    name: str  # "host-a": what `ngfw dataplane --host` and Workload `spec.host` say
    host_ns: str
    fw_ns: str
    mgmt_ip: str  # of mgmt0 in fw_ns
    mgmt_peer: str  # mgmt0's peer on br-mgmt
    wire: str = f"{FW_VM}:{FW_UP}"
    host_mgmt_ip: str = ""  # of mgmt0 in host_ns (the hypervisor's own address)
    host_mgmt_peer: str = ""  # that mgmt0's peer on br-mgmt


@dataclass(frozen=True)
class TwoHostLab:
    """`lab` is the one-host lab (host-a, tenant-a's web1 and web2, srv); the rest is added by `two_host_up`."""

    lab: Lab
    host_a: DataplaneHost
    host_b: DataplaneHost
    db1: Endpoint  # tenant-b's workload, on host-b
    mgmt_ns: str
    control_ip: str = CONTROL_IP
    control_port: int = CONTROL_PORT

    @property
    def prefix(self) -> str:
        return self.lab.prefix

    @property
    def hosts(self) -> tuple[DataplaneHost, DataplaneHost]:
        return (self.host_a, self.host_b)

    @property
    def control_url(self) -> str:
        return f"http://{self.control_ip}:{self.control_port}"

    @property
    def added_namespaces(self) -> tuple[str, ...]:
        return (self.host_b.host_ns, self.host_b.fw_ns, self.db1.ns, self.mgmt_ns)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (*self.lab.namespaces, *self.added_namespaces)

    def interface_names(self) -> dict[str, list[str]]:
        """Interface names per namespace (lo excluded)."""
        names = self.lab.interface_names()
        names[self.lab.host_ns] = [*names[self.lab.host_ns], UPLINK_A, HOST_MGMT_IF]
        names[self.host_a.fw_ns] = [*names[self.host_a.fw_ns], MGMT_IF]
        names[self.host_b.host_ns] = [BR_VM, BR_UP, self.db1.host_port, "vm-fw", "up-fw", UPLINK_B, HOST_MGMT_IF]
        names[self.host_b.fw_ns] = [FW_VM, FW_UP, MGMT_IF]
        names[self.db1.ns] = [self.db1.ifname]
        names[self.mgmt_ns] = [BR_MGMT, *(h.mgmt_peer for h in self.hosts), *(h.host_mgmt_peer for h in self.hosts)]
        return names


def two_host_plan(prefix: str = "ngfw") -> TwoHostLab:
    """The `TwoHostLab` that `two_host_up(prefix)` builds; pure (no system calls)."""
    lab = lab_plan(prefix)
    plan = TwoHostLab(
        lab=lab,
        host_a=DataplaneHost(
            "host-a", lab.host_ns, lab.fw_ns, "10.79.0.11", "m-fw1", host_mgmt_ip="10.79.0.21", host_mgmt_peer="m-host1"
        ),
        host_b=DataplaneHost(
            "host-b",
            f"{prefix}-host2",
            f"{prefix}-fw2",
            "10.79.0.12",
            "m-fw2",
            host_mgmt_ip="10.79.0.22",
            host_mgmt_peer="m-host2",
        ),
        db1=Endpoint("db1", f"{prefix}-db1", "eth0", "02:00:00:00:03:01", "10.77.0.21", "fd77::21", BR_VM, "vm-db1"),
        mgmt_ns=f"{prefix}-mgmt",
    )
    for names in plan.interface_names().values():
        for name in names:
            if len(name) > IFNAMSIZ:
                raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
    return plan


def two_host_up(prefix: str = "ngfw") -> TwoHostLab:
    """Build the two-host lab (after removing leftovers of `prefix`). On failure, nothing is left behind."""
    plan = two_host_plan(prefix)
    lab_up(prefix)  # removes leftovers of both hosts first (lab_down knows the second host's namespaces)
    try:
        _build_host_b(plan)
    except BaseException:
        lab_down(prefix)
        raise
    return plan


def two_host_down(prefix: str = "ngfw") -> list[str]:
    """Same as `topology.lab_down`: it removes the second host's namespaces too."""
    return lab_down(prefix)


def two_host_bridge_fw(plan: TwoHostLab) -> None:
    """Baseline mode on both hosts: a Linux bridge `br-fw` in each fw namespace in place of a dataplane."""
    for host in plan.hosts:
        lab_bridge_fw(dataclasses.replace(plan.lab, fw_ns=host.fw_ns))


def two_host_unbridge_fw(plan: TwoHostLab) -> None:
    """Leave baseline mode on both hosts (idempotent)."""
    for host in plan.hosts:
        lab_unbridge_fw(dataclasses.replace(plan.lab, fw_ns=host.fw_ns))


def _veth(ipr: IPRoute, name: str, peer: str, peer_ns: str, master: int | None) -> None:
    ipr.link("add", ifname=name, kind="veth", peer={"ifname": peer, "net_ns_fd": peer_ns})
    idx = ifindex(ipr, name)
    if master is not None:
        ipr.link("set", index=idx, master=master)
    ipr.link("set", index=idx, state="up")


def _build_host_b(plan: TwoHostLab) -> None:
    lab, b, db1 = plan.lab, plan.host_b, plan.db1
    for name in plan.added_namespaces:
        netns.create(name)
        with IPRoute(netns=name, flags=0) as ipr:
            ipr.link("set", index=ifindex(ipr, "lo"), state="up")
        if name != db1.ns:
            write_sysctl(name, "net.ipv6.conf.default.disable_ipv6", 1)

    # host-b: the same layout as host-a, with db1 on br-vm
    with IPRoute(netns=b.host_ns, flags=0) as ipr:
        br_vm, br_up = add_bridge(ipr, BR_VM), add_bridge(ipr, BR_UP)
        _veth(ipr, db1.host_port, db1.ifname, db1.ns, br_vm)
        _veth(ipr, "vm-fw", FW_VM, b.fw_ns, br_vm)
        _veth(ipr, "up-fw", FW_UP, b.fw_ns, br_up)
        for idx in (br_vm, br_up):
            ipr.link("set", index=idx, state="up")
    host_b_ports = [db1.host_port, "vm-fw", "up-fw"]
    quiet_ipv6(b.host_ns, [BR_VM, BR_UP, *host_b_ports])
    disable_offloads(b.host_ns, host_b_ports)

    # the uplink between the two hosts' br-up (the physical network)
    with IPRoute(netns=lab.host_ns, flags=0) as ipr:
        _veth(ipr, UPLINK_A, UPLINK_B, b.host_ns, ifindex(ipr, lab.br_up))
    with IPRoute(netns=b.host_ns, flags=0) as ipr:
        idx = ifindex(ipr, UPLINK_B)
        ipr.link("set", index=idx, master=ifindex(ipr, BR_UP))
        ipr.link("set", index=idx, state="up")
    quiet_ipv6(lab.host_ns, [UPLINK_A])
    quiet_ipv6(b.host_ns, [UPLINK_B])
    disable_offloads(lab.host_ns, [UPLINK_A])
    disable_offloads(b.host_ns, [UPLINK_B])

    with IPRoute(netns=b.fw_ns, flags=0) as ipr:
        for name in (FW_VM, FW_UP):
            ipr.link("set", index=ifindex(ipr, name), state="up")
    quiet_ipv6(b.fw_ns, [FW_VM, FW_UP])
    disable_offloads(b.fw_ns, [FW_VM, FW_UP])

    with IPRoute(netns=db1.ns, flags=0) as ipr:
        idx = ifindex(ipr, db1.ifname)
        ipr.link("set", index=idx, address=db1.mac)
        ipr.link("set", index=idx, state="up")
        ipr.addr("add", index=idx, address=db1.ipv4, prefixlen=db1.prefixlen4)
        ipr.addr("add", index=idx, address=db1.ipv6, prefixlen=db1.prefixlen6, flags=IFA_F_NODAD)
    disable_offloads(db1.ns, [db1.ifname])

    # management: br-mgmt in {p}-mgmt, a mgmt0 in each fw namespace (not on the dataplane's wire)
    with IPRoute(netns=plan.mgmt_ns, flags=0) as ipr:
        br = add_bridge(ipr, BR_MGMT)
        ipr.link("set", index=br, state="up")
        ipr.addr("add", index=br, address=plan.control_ip, prefixlen=24)
        for host in plan.hosts:
            _veth(ipr, host.mgmt_peer, MGMT_IF, host.fw_ns, br)
            _veth(ipr, host.host_mgmt_peer, HOST_MGMT_IF, host.host_ns, br)
    for host in plan.hosts:
        for ns, ifname, address in (
            (host.fw_ns, MGMT_IF, host.mgmt_ip),
            (host.host_ns, HOST_MGMT_IF, host.host_mgmt_ip),
        ):
            with IPRoute(netns=ns, flags=0) as ipr:
                idx = ifindex(ipr, ifname)
                ipr.addr("add", index=idx, address=address, prefixlen=24)
                ipr.link("set", index=idx, state="up")
            quiet_ipv6(ns, [ifname])
    mgmt_ports = [*(h.mgmt_peer for h in plan.hosts), *(h.host_mgmt_peer for h in plan.hosts)]
    quiet_ipv6(plan.mgmt_ns, [BR_MGMT, *mgmt_ports])

    wait_oper_up(b.host_ns, [*host_b_ports, UPLINK_B])
    wait_oper_up(plan.mgmt_ns, mgmt_ports)
    log.info("lab %s: second host up: %s", plan.prefix, ", ".join(plan.added_namespaces))
