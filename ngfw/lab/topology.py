"""The lab: one hypervisor host, two workloads, a firewall "VM" and a server, as network namespaces.

```
 {p}-web1 eth0 --vm-web1--+                                        +--up-srv-- eth0 {p}-srv
                          br-vm --vm-fw== fw-vm [{p}-fw] fw-up ==up-fw-- br-up
 {p}-web2 eth0 --vm-web2--+     (bridges and their ports: {p}-host)
```
All endpoints share one L2 subnet; the only path between br-vm and br-up runs through the
fw namespace (the dataplane, or the `br-fw` Linux bridge in baseline mode).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from ngfw.lab.netns import pids_in, write_sysctl
from ngfw.lab.offload import disable_offloads

log = logging.getLogger(__name__)

IFNAMSIZ = 15  # usable characters of a Linux interface name
IFA_F_NODAD = 0x02

BR_VM = "br-vm"
BR_UP = "br-up"
BR_FW = "br-fw"
FW_VM = "fw-vm"
FW_UP = "fw-up"
ROLES = ("host", "fw", "web1", "web2", "srv")
# the second host, its tenant-b workload and the management network of a two-host lab (ngfw.lab.hosts)
HOST_B_ROLES = ("host2", "fw2", "db1", "mgmt")


@dataclass(frozen=True)
class Endpoint:
    """A workload or the server: a namespace with one veth (`ifname`) whose peer sits on `bridge`."""

    name: str
    ns: str
    ifname: str
    mac: str
    ipv4: str
    ipv6: str
    bridge: str
    host_port: str  # the veth peer in the host namespace, enslaved to `bridge`
    prefixlen4: int = 24
    prefixlen6: int = 64


@dataclass(frozen=True)
class Lab:
    """Names and addresses of one lab instance (everything derives from `prefix`)."""

    prefix: str
    host_ns: str
    fw_ns: str
    web1: Endpoint
    web2: Endpoint
    srv: Endpoint
    br_vm: str = BR_VM
    br_up: str = BR_UP
    br_fw: str = BR_FW
    fw_vm: str = FW_VM  # fw-ns port facing the workloads
    fw_up: str = FW_UP  # fw-ns port facing the uplink/server
    fw_vm_peer: str = "vm-fw"  # its peer on br-vm
    fw_up_peer: str = "up-fw"  # its peer on br-up
    subnet4: str = "10.77.0.0/24"
    subnet6: str = "fd77::/64"

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return (self.web1, self.web2, self.srv)

    @property
    def workloads(self) -> tuple[Endpoint, ...]:
        return (self.web1, self.web2)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.host_ns, self.fw_ns, self.web1.ns, self.web2.ns, self.srv.ns)

    @property
    def wire(self) -> str:
        """The `--wire` argument of `ngfw dataplane` for this lab."""
        return f"{self.fw_vm}:{self.fw_up}"

    def interface_names(self) -> dict[str, list[str]]:
        """Interface names per namespace (lo excluded)."""
        names = {
            self.host_ns: [self.br_vm, self.br_up, self.fw_vm_peer, self.fw_up_peer]
            + [e.host_port for e in self.endpoints],
            self.fw_ns: [self.fw_vm, self.fw_up, self.br_fw],
        }
        for e in self.endpoints:
            names[e.ns] = [e.ifname]
        return names


def namespace_names(prefix: str) -> dict[str, str]:
    """Role -> namespace name, e.g. {"host": "ngfw-host", ...}."""
    if not prefix or "/" in prefix or prefix.startswith("."):
        raise ValueError(f"bad lab prefix {prefix!r}")
    return {role: f"{prefix}-{role}" for role in ROLES}


def lab_plan(prefix: str = "ngfw") -> Lab:
    """The `Lab` that `lab_up(prefix)` builds; pure (no system calls)."""
    ns = namespace_names(prefix)
    lab = Lab(
        prefix=prefix,
        host_ns=ns["host"],
        fw_ns=ns["fw"],
        web1=Endpoint("web1", ns["web1"], "eth0", "02:00:00:00:01:01", "10.77.0.11", "fd77::11", BR_VM, "vm-web1"),
        web2=Endpoint("web2", ns["web2"], "eth0", "02:00:00:00:01:02", "10.77.0.12", "fd77::12", BR_VM, "vm-web2"),
        srv=Endpoint("srv", ns["srv"], "eth0", "02:00:00:00:02:01", "10.77.0.100", "fd77::100", BR_UP, "up-srv"),
    )
    for names in lab.interface_names().values():
        for name in names:
            if len(name) > IFNAMSIZ:
                raise ValueError(f"interface name {name!r} is longer than {IFNAMSIZ} characters")
    return lab


def lab_exists(prefix: str = "ngfw") -> list[str]:
    """Namespaces of lab `prefix` that exist now (those of its second host too)."""
    present = set(netns.listnetns())
    names = [*namespace_names(prefix).values(), *(f"{prefix}-{role}" for role in HOST_B_ROLES)]
    return [name for name in names if name in present]


def ifindex(ipr: IPRoute, ifname: str) -> int:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise RuntimeError(f"interface {ifname} not found")
    return int(found[0])


def _operstate(ipr: IPRoute, ifname: str) -> str:
    return str(ipr.link("get", index=ifindex(ipr, ifname))[0].get_attr("IFLA_OPERSTATE"))


def wait_oper_up(ns: str, ifnames: list[str], timeout: float = 5.0) -> None:
    """Wait until every veth in `ifnames` reports carrier (both ends up), bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    with IPRoute(netns=ns, flags=0) as ipr:
        pending = list(ifnames)
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if _operstate(ipr, n) != "UP"]
            if pending:
                time.sleep(0.05)
    if pending:
        log.warning("%s: interfaces not up after %.0f s: %s", ns, timeout, ", ".join(pending))


def add_bridge(ipr: IPRoute, name: str) -> int:
    # STP off and no forwarding delay: ports forward the moment they come up. No multicast
    # snooping: IPv6 neighbour discovery floods the same way on every run.
    ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0, br_mcast_snooping=0)
    return ifindex(ipr, name)


def quiet_ipv6(ns: str, ifnames: list[str]) -> None:
    """No IPv6 on L2-only interfaces: they would otherwise send router solicitations and MLD reports."""
    for name in ifnames:
        write_sysctl(ns, f"net.ipv6.conf.{name}.disable_ipv6", 1)


def lab_up(prefix: str = "ngfw") -> Lab:
    """Build the lab (after removing any leftovers of lab `prefix`). On failure, nothing is left behind."""
    lab = lab_plan(prefix)
    lab_down(prefix)
    try:
        _build(lab)
    except BaseException:
        lab_down(prefix)
        raise
    return lab


def _build(lab: Lab) -> None:
    for name in lab.namespaces:
        netns.create(name)
    for name in lab.namespaces:
        with IPRoute(netns=name, flags=0) as ipr:
            ipr.link("set", index=ifindex(ipr, "lo"), state="up")
        # A namespace's own interfaces inherit "default"; L2-only namespaces get no IPv6 at all.
        if name in (lab.host_ns, lab.fw_ns):
            write_sysctl(name, "net.ipv6.conf.default.disable_ipv6", 1)

    with IPRoute(netns=lab.host_ns, flags=0) as ipr:
        bridges = {lab.br_vm: add_bridge(ipr, lab.br_vm), lab.br_up: add_bridge(ipr, lab.br_up)}
        links = [(e.host_port, e.ifname, e.ns, e.bridge) for e in lab.endpoints]
        links += [(lab.fw_vm_peer, lab.fw_vm, lab.fw_ns, lab.br_vm), (lab.fw_up_peer, lab.fw_up, lab.fw_ns, lab.br_up)]
        for host_port, peer, peer_ns, bridge in links:
            ipr.link("add", ifname=host_port, kind="veth", peer={"ifname": peer, "net_ns_fd": peer_ns})
            ipr.link("set", index=ifindex(ipr, host_port), master=bridges[bridge])
        for name in [*bridges, *(link[0] for link in links)]:
            ipr.link("set", index=ifindex(ipr, name), state="up")
    quiet_ipv6(lab.host_ns, [*bridges, *(link[0] for link in links)])
    disable_offloads(lab.host_ns, [link[0] for link in links])

    with IPRoute(netns=lab.fw_ns, flags=0) as ipr:
        for name in (lab.fw_vm, lab.fw_up):
            ipr.link("set", index=ifindex(ipr, name), state="up")
    quiet_ipv6(lab.fw_ns, [lab.fw_vm, lab.fw_up])
    disable_offloads(lab.fw_ns, [lab.fw_vm, lab.fw_up])

    for e in lab.endpoints:
        with IPRoute(netns=e.ns, flags=0) as ipr:
            idx = ifindex(ipr, e.ifname)
            ipr.link("set", index=idx, address=e.mac)
            ipr.link("set", index=idx, state="up")
            ipr.addr("add", index=idx, address=e.ipv4, prefixlen=e.prefixlen4)
            ipr.addr("add", index=idx, address=e.ipv6, prefixlen=e.prefixlen6, flags=IFA_F_NODAD)
        disable_offloads(e.ns, [e.ifname])

    wait_oper_up(lab.host_ns, [link[0] for link in links])
    log.info("lab %s up: %s", lab.prefix, ", ".join(lab.namespaces))


def kill_leftovers(name: str, timeout: float = 3.0) -> None:
    """Processes still inside a lab namespace (a crashed run's servers) would keep it alive: stop them."""
    pids = pids_in(name)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        if pids:
            time.sleep(0.05)
    for pid in pids:
        log.warning("killing leftover pid %d in %s", pid, name)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except FileNotFoundError:
        return False


def lab_down(prefix: str = "ngfw") -> list[str]:
    """Remove lab `prefix` (idempotent): stop its QEMU guests and what runs inside its namespaces, delete
    them. Returns removed names."""
    from ngfw.lab.workloads import forget_workloads  # it builds on this module

    forget_workloads(prefix)
    removed = []
    for name in lab_exists(prefix):
        kill_leftovers(name)
        _remove_dataplane_state(name)
        try:
            netns.remove(name)
            removed.append(name)
        except OSError as exc:
            log.warning("cannot remove namespace %s: %s", name, exc)
    return removed


def _remove_dataplane_state(ns: str) -> None:
    """Session tables that dataplanes in `ns` kept under their default state directory (named after the
    namespace's inode, which a later namespace may be given again: it must not find them)."""
    import glob
    import shutil

    from ngfw.dataplane.state import default_state_dir

    try:
        inode = os.stat(f"/run/netns/{ns}").st_ino
    except OSError:
        return
    for base in {default_state_dir(), "/run/ngfw", "/dev/shm/ngfw"}:
        for path in glob.glob(os.path.join(base, f"{inode}-*")):
            shutil.rmtree(path, ignore_errors=True)


def lab_bridge_fw(lab: Lab) -> None:
    """Baseline mode: a plain Linux bridge `br-fw` joins fw-vm and fw-up in place of the dataplane."""
    with IPRoute(netns=lab.fw_ns, flags=0) as ipr:
        if not ipr.link_lookup(ifname=lab.br_fw):
            add_bridge(ipr, lab.br_fw)
        br = ifindex(ipr, lab.br_fw)
        for name in (lab.fw_vm, lab.fw_up):
            ipr.link("set", index=ifindex(ipr, name), master=br)
        ipr.link("set", index=br, state="up")
    quiet_ipv6(lab.fw_ns, [lab.br_fw])


def lab_unbridge_fw(lab: Lab) -> None:
    """Leave baseline mode: delete `br-fw` (its ports stay up, unenslaved). Idempotent."""
    with IPRoute(netns=lab.fw_ns, flags=0) as ipr:
        for idx in ipr.link_lookup(ifname=lab.br_fw):
            try:
                ipr.link("del", index=idx)
            except NetlinkError as exc:
                if exc.code != 19:  # ENODEV: already gone
                    raise


def interface_stats(ns: str, ifname: str) -> dict[str, int]:
    """The kernel's 64-bit counters of one interface (rx_packets, tx_packets, rx_dropped, ...)."""
    with IPRoute(netns=ns, flags=0) as ipr:
        link = ipr.link("get", index=ifindex(ipr, ifname))[0]
        stats = link.get_attr("IFLA_STATS64")
        return {k: int(v) for k, v in stats.items()} if stats else {}


def fw_in_bridge_mode(lab: Lab) -> bool:
    with IPRoute(netns=lab.fw_ns, flags=0) as ipr:
        return bool(ipr.link_lookup(ifname=lab.br_fw))


def describe(prefix: str = "ngfw") -> list[str]:
    """Human-readable lines: which namespaces of lab `prefix` exist and what is inside them."""
    lines = []
    for name in lab_exists(prefix):
        with IPRoute(netns=name, flags=0) as ipr:
            parts = []
            for link in ipr.link("dump"):
                ifname = link.get_attr("IFLA_IFNAME")
                if ifname == "lo":
                    continue
                idx = link["index"]
                addrs = [
                    f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                    for a in ipr.addr("dump", index=idx)
                    if a.get_attr("IFA_ADDRESS") and not a.get_attr("IFA_ADDRESS").startswith("fe80")
                ]
                master = link.get_attr("IFLA_MASTER")
                master_name = ""
                if master:
                    found = ipr.link("get", index=master)
                    master_name = f" master {found[0].get_attr('IFLA_IFNAME')}" if found else ""
                state = link.get_attr("IFLA_OPERSTATE")
                parts.append(f"{ifname}({state}{master_name}{' ' + ' '.join(addrs) if addrs else ''})")
        lines.append(f"{name}: {', '.join(parts) or '-'}")
    return lines
