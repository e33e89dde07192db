"""The fw namespace's legs taken away and given back, as a host does to a running dataplane's interfaces:
an uplink veth deleted and created again (new ifindexes, maybe another MTU), a link set down and up.

A leg is the veth pair between the fw namespace and a lab bridge: "up" (fw-up, its peer up-fw on br-up) or
"vm" (fw-vm, its peer vm-fw on br-vm). Used by tests/netns/test_links.py and bench/links.py.
"""

from __future__ import annotations

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from ngfw.lab.netns import write_sysctl
from ngfw.lab.offload import disable_offloads
from ngfw.lab.topology import Lab

ENODEV = 19


def leg_names(lab: Lab, leg: str) -> tuple[str, str, str]:
    """(the fw namespace's interface, its peer in the host namespace, the bridge the peer is on)."""
    if leg == "up":
        return lab.fw_up, lab.fw_up_peer, lab.br_up
    if leg == "vm":
        return lab.fw_vm, lab.fw_vm_peer, lab.br_vm
    raise ValueError(f"leg {leg!r} is neither 'up' nor 'vm'")


def remove_leg(lab: Lab, leg: str) -> None:
    """Delete the leg's veth pair (both ends go). Idempotent."""
    fw_if, _, _ = leg_names(lab, leg)
    with IPRoute(netns=lab.fw_ns, flags=0) as ipr:
        for index in ipr.link_lookup(ifname=fw_if):
            try:
                ipr.link("del", index=index)
            except NetlinkError as exc:
                if exc.code != ENODEV:
                    raise


def restore_leg(lab: Lab, leg: str, mtu: int | None = None, kind: str = "veth") -> None:
    """Create the leg again: a new veth pair, the host end on its bridge, both ends up, offloads off (as
    lab_up does). `mtu`: on both ends. `kind="bridge"`: the fw namespace's end is a bridge of that name
    holding the new veth's end (`<name>x`): another kind of Ethernet link under the same name."""
    fw_if, host_if, bridge = leg_names(lab, leg)
    inner = fw_if if kind == "veth" else f"{fw_if}x"
    if kind not in ("veth", "bridge"):
        raise ValueError(f"kind {kind!r} is neither veth nor bridge")
    # the MTU from the start: the fw namespace's end appears with it (a dataplane attaches at once)
    sized = {"mtu": mtu} if mtu is not None else {}
    with IPRoute(netns=lab.host_ns, flags=0) as ipr:
        ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": inner, "net_ns_fd": lab.fw_ns, **sized}, **sized)
        index = ipr.link_lookup(ifname=host_if)[0]
        ipr.link("set", index=index, master=ipr.link_lookup(ifname=bridge)[0])
    write_sysctl(lab.host_ns, f"net.ipv6.conf.{host_if}.disable_ipv6", 1)
    disable_offloads(lab.host_ns, [host_if])
    fw_side = [inner]
    with IPRoute(netns=lab.fw_ns, flags=0) as ipr:
        inner_index = ipr.link_lookup(ifname=inner)[0]
        if kind == "bridge":
            ipr.link(
                "add", ifname=fw_if, kind="bridge", br_stp_state=0, br_forward_delay=0, br_mcast_snooping=0, **sized
            )
            ipr.link("set", index=inner_index, master=ipr.link_lookup(ifname=fw_if)[0])
            fw_side.append(fw_if)
    disable_offloads(lab.fw_ns, fw_side)
    with IPRoute(netns=lab.fw_ns, flags=0) as ipr:
        for name in fw_side:
            ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    with IPRoute(netns=lab.host_ns, flags=0) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=host_if)[0], state="up")


def remove_bridge_leg(lab: Lab, leg: str) -> None:
    """Undo `restore_leg(kind="bridge")`: the bridge and its veth go (restore_leg then makes the veth leg)."""
    fw_if, _, _ = leg_names(lab, leg)
    with IPRoute(netns=lab.fw_ns, flags=0) as ipr:
        for name in (f"{fw_if}x", fw_if):
            for index in ipr.link_lookup(ifname=name):
                try:
                    ipr.link("del", index=index)
                except NetlinkError as exc:
                    if exc.code != ENODEV:
                        raise


def set_leg_state(lab: Lab, leg: str, state: str, side: str = "fw") -> None:
    """Set one end of the leg "up" or "down": `side` "fw" (the dataplane's interface, administratively) or
    "host" (its peer: the dataplane's interface loses its carrier)."""
    fw_if, host_if, _ = leg_names(lab, leg)
    ns, name = (lab.fw_ns, fw_if) if side == "fw" else (lab.host_ns, host_if)
    with IPRoute(netns=ns, flags=0) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state=state)
