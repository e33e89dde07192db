"""Links that come and go, without root: what each netlink observation means for a port (ngfw.dataplane.links),
netlink messages decoded as the monitor reads them, frames for a port that is down or detached, a port's
descriptor swapped while the packet loop runs, and the fail-open program following a re-created interface.
With real interfaces: tests/netns/test_links.py (this file is named apart from it: pytest imports both by base name)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.marshal import MarshalRtnl
from scapy.layers.l2 import ARP

from ngfw.dataplane.failmode import WireFailModes
from ngfw.dataplane.links import PORT_EVENTS, Attach, Detach, LinkState, Note, PortLink, PortLinks, SetLink, link_state
from tests.support.fastpath import SRV_IP, WEB1_IP, WEB1_MAC, Ether, Wire, fp, lab_policy

UP = dict(admin_up=True, carrier=True, mtu=1500, kind="veth")


def link(name: str, ifindex: int, **kw) -> LinkState:
    return LinkState(name=name, ifindex=ifindex, **{**UP, **kw})


def alive(*names: str):
    return lambda name: name in names


def wire_links() -> PortLinks:
    links = PortLinks(
        [PortLink("fw-vm", 0, ifindex=2, mtu=1500, kind="veth"), PortLink("fw-up", 1, ifindex=3, mtu=1500, kind="veth")]
    )
    for port in links.ports.values():
        port.up = True
    return links


def run(links: PortLinks, actions, link_now: LinkState | None = None) -> list[str]:
    """Carry every action out as if it succeeded; the log lines."""
    lines = []
    for action in actions:
        attached = link_now if isinstance(action, Attach) else None
        if isinstance(action, Attach) and attached is None:
            attached = action.link or link(action.port, 99, kind="tun")
        lines += [text for _, text in links.done(action, attached)]
    return lines


# ---- decisions
def test_a_removed_interface_detaches_its_port_and_a_new_one_of_its_name_is_attached() -> None:
    links = wire_links()
    actions = links.link_removed("fw-up", 3, alive())
    assert actions == [Detach("fw-up", "interface removed (ifindex 3)")]
    assert run(links, actions) == [
        "port fw-up: interface removed (ifindex 3): frames for it are dropped until it is back"
    ]
    assert links.ports["fw-up"].attached is False and links.ports["fw-up"].up is False
    # another interface's removal, or a link of another name, means nothing to the port
    assert links.link_removed("eth7", 9, alive()) == []
    assert links.link_changed(link("eth7", 9), alive()) == []
    back = link("fw-up", 12, admin_up=False, carrier=False)
    actions = links.link_changed(back, alive())
    assert actions == [Attach("fw-up", back)]
    lines = run(links, actions, link_now=link("fw-up", 12))  # prepared: up, and its peer is up
    assert lines == ["port fw-up: re-attached to interface fw-up (ifindex 12, veth, MTU 1500)", "port fw-up: link up"]
    assert links.events[("fw-up", "removed")] == 1 and links.events[("fw-up", "reattached")] == 1
    assert links.events[("fw-up", "up")] == 1 and links.events[("fw-up", "down")] == 0
    assert links.ports["fw-up"].ifindex == 12
    # later notifications about the interface it holds now change nothing but its link state
    assert links.link_changed(link("fw-up", 12), alive()) == []


def test_down_and_up_are_counted_once_each_and_say_why() -> None:
    links = wire_links()
    actions = links.link_changed(link("fw-up", 3, admin_up=False, carrier=False), alive())
    assert actions == [SetLink("fw-up", False, "administratively down")]
    assert run(links, actions) == [
        "port fw-up: link down (administratively down): frames for it are dropped until it is up"
    ]
    assert links.link_changed(link("fw-up", 3, admin_up=False, carrier=False), alive()) == []
    assert run(links, links.link_changed(link("fw-up", 3), alive())) == ["port fw-up: link up"]
    down = links.link_changed(link("fw-up", 3, carrier=False), alive())
    assert down == [SetLink("fw-up", False, "no carrier (its peer is down or gone)")]
    run(links, down)
    assert {e: links.events[("fw-up", e)] for e in PORT_EVENTS} == {"down": 2, "up": 1, "removed": 0, "reattached": 0}


def test_the_first_look_sets_the_state_without_counting_an_event() -> None:
    links = PortLinks([PortLink("fw-up", 1, ifindex=3)])
    assert run(links, links.link_changed(link("fw-up", 3, carrier=False), alive())) == [
        "port fw-up: link down at start (no carrier (its peer is down or gone)): frames for it are dropped until it is up"
    ]
    assert links.events[("fw-up", "down")] == 0
    links = PortLinks([PortLink("fw-vm", 0, ifindex=2)])
    assert run(links, links.link_changed(link("fw-vm", 2), alive())) == []
    assert links.ports["fw-vm"].up is True


def test_an_mtu_change_gives_the_port_a_ring_of_the_new_size() -> None:
    links = wire_links()
    bigger = link("fw-up", 3, mtu=9000)
    actions = links.link_changed(bigger, alive())
    assert actions == [Attach("fw-up", bigger, "its MTU changed from 1500 to 9000")]
    assert run(links, actions) == [
        "port fw-up: re-attached to interface fw-up (ifindex 3, veth, MTU 9000): its MTU changed from 1500 to 9000"
    ]
    # re-created with another MTU and as another kind of Ethernet link: attached, and the log says both
    run(links, links.link_removed("fw-up", 3, alive()))
    other = link("fw-up", 14, mtu=1400, kind="bridge")
    assert run(links, links.link_changed(other, alive())) == [
        "port fw-up: re-attached to interface fw-up (ifindex 14, bridge, MTU 1400); its MTU was 9000; a bridge link "
        "now, it was veth",
        "port fw-up: link up",
    ]


def test_a_link_without_ethernet_framing_is_refused_once() -> None:
    links = wire_links()
    run(links, links.link_removed("fw-up", 3, alive()))
    tun = link("fw-up", 15, kind="tun", ethernet=False, link_type=65534)
    actions = links.link_changed(tun, alive())
    assert [type(a) for a in actions] == [Note]
    assert actions[0].level == logging.WARNING
    assert "without Ethernet framing (link type 65534, ifindex 15)" in run(links, actions)[0]
    assert links.link_changed(tun, alive()) == []  # said once
    ether = link("fw-up", 16)
    assert links.link_changed(ether, alive()) == [Attach("fw-up", ether)]


def test_a_port_whose_interface_is_renamed_away_is_detached() -> None:
    links = wire_links()
    actions = links.link_changed(link("old-up", 3), alive())
    assert actions == [Detach("fw-up", "interface renamed to old-up (ifindex 3)")]


def test_a_new_interface_of_the_name_replaces_one_whose_removal_was_missed() -> None:
    links = wire_links()
    fresh = link("fw-up", 20)
    assert links.link_changed(fresh, alive()) == [
        Detach("fw-up", "interface replaced by a new one of the same name (ifindex 20)"),
        Attach("fw-up", fresh),
    ]


def test_resync_finds_what_changed_while_nobody_listened() -> None:
    links = wire_links()
    dump = [link("fw-vm", 2), link("fw-up", 21), link("lo", 1, kind="", ethernet=False)]
    steps = links.resync(dump, alive())
    assert steps[0] == ("removed", ("fw-up", 3))
    assert ("changed", link("fw-up", 21)) in steps


# ---- TAP ports: their descriptor decides
def tap_links() -> PortLinks:
    links = PortLinks(
        [PortLink("tapa", 0, tap=True, ifindex=4, kind="tun"), PortLink("tapb", 1, tap=True, ifindex=5, kind="tun")]
    )
    for port in links.ports.values():
        port.up = True
    return links


def test_a_tap_moved_to_another_namespace_stays_the_port() -> None:
    links = tap_links()
    actions = links.link_removed("tapa", 4, alive("tapa", "tapb"))
    assert [type(a) for a in actions] == [Note]
    assert "moved to another network namespace" in run(links, actions)[0]
    assert links.ports["tapa"].attached and links.events[("tapa", "removed")] == 0


def test_a_deleted_tap_is_created_again() -> None:
    links = tap_links()
    actions = links.link_removed("tapa", 4, alive("tapb"))
    assert actions == [Detach("tapa", "TAP device deleted"), Attach("tapa", None)]
    lines = run(links, actions, link_now=link("tapa", 30, kind="tun"))
    assert lines == [
        "port tapa: TAP device deleted: frames for it are dropped until it is back",
        "port tapa: re-attached to its TAP device, created again (ifindex 30, tun, MTU 1500)",
        "port tapa: link up",
    ]
    # the deletion's notification read after the device was made again concerns the old device: nothing to do
    assert links.link_removed("tapa", 4, alive("tapa", "tapb")) == []
    # the loop found it gone (its descriptor answers EBADFD): the same, and once only
    assert links.tap_gone("tapa") == [Detach("tapa", "TAP device deleted"), Attach("tapa", None)]
    run(links, [Detach("tapa", "TAP device deleted")])
    assert links.tap_gone("tapa") == []


def test_a_tap_that_could_not_be_made_again_is_retried_when_its_name_is_free() -> None:
    links = tap_links()
    run(links, [Detach("tapa", "TAP device deleted")])  # and creating it failed: a veth took the name
    assert links.link_changed(link("tapa", 31), alive("tapb")) == []
    assert links.link_removed("tapa", 31, alive("tapb")) == [Attach("tapa", None, "the name is free again")]


def test_a_tap_s_link_state_is_followed_while_it_is_here() -> None:
    links = tap_links()
    assert links.link_changed(link("tapa", 4, kind="tun", admin_up=False), alive("tapa")) == [
        SetLink("tapa", False, "administratively down")
    ]
    # a link of its name that is not its device (the descriptor says it is gone) is not followed
    assert links.link_changed(link("tapa", 4, kind="veth", admin_up=False), alive("tapa")) == []
    assert links.link_changed(link("tapa", 4, kind="tun", admin_up=False), alive()) == []


# ---- netlink messages as the monitor reads them
def message(event: int, name: str, index: int, flags: int, kind: str, mtu: int = 1500, ifi_type: int = 1) -> bytes:
    msg = ifinfmsg()
    msg["header"]["type"] = event
    msg["index"] = index
    msg["flags"] = flags
    msg["ifi_type"] = ifi_type
    msg["attrs"] = [("IFLA_IFNAME", name), ("IFLA_MTU", mtu), ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", kind)]})]
    msg.encode()
    return bytes(msg.data)


def test_link_notifications_decode_into_link_states() -> None:
    data = (
        message(RTM_NEWLINK, "fw-up", 7, 0x11043, "veth", 9000)
        + message(RTM_NEWLINK, "fw-up", 7, 0x1003, "veth")
        + message(RTM_DELLINK, "tq", 8, 0x1090, "tun", ifi_type=65534)
    )
    parsed = [(m["header"]["type"], link_state(m)) for m in MarshalRtnl().parse(data)]
    assert parsed == [
        (RTM_NEWLINK, LinkState("fw-up", 7, admin_up=True, carrier=True, mtu=9000, kind="veth")),
        (RTM_NEWLINK, LinkState("fw-up", 7, admin_up=True, carrier=False, mtu=1500, kind="veth")),
        (
            RTM_DELLINK,
            LinkState("tq", 8, admin_up=False, carrier=False, mtu=1500, kind="tun", ethernet=False, link_type=65534),
        ),
    ]
    assert not parsed[1][1].up and parsed[1][1].down_reason.startswith("no carrier")


# ---- the fastpath: frames for a port that is down
def arp_from_web1() -> Ether:
    return Ether(src=WEB1_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=WEB1_MAC, psrc=WEB1_IP, pdst=SRV_IP)


def test_frames_for_a_port_that_is_down_are_dropped_as_port_down() -> None:
    wire = Wire(lab_policy())
    assert len(wire.from_vm(arp_from_web1())[0]) == 1
    wire.engine.set_port_down(wire.up, True)
    assert wire.from_vm(arp_from_web1()) == ([], [])
    assert wire.drops() == {"port_down": 1}
    assert [(s["name"], s["attached"], s["down"]) for s in wire.engine.port_states()] == [
        ("vm", True, False),
        ("up", True, True),
    ]
    wire.engine.set_port_down(wire.up, False)
    assert len(wire.from_vm(arp_from_web1())[0]) == 1
    assert "port_down" in wire.engine.drop_reasons


def test_a_flooded_frame_is_dropped_only_when_no_port_could_take_it() -> None:
    engine = fp.Engine(flow_capacity=1024)
    ports = {name: engine.add_memory_port(name, 0) for name in ("tap1", "tap2", "uplink")}
    engine.set_tables(fp.Tables(lab_policy(), ports))
    engine.set_port_down(ports["tap2"], True)
    engine.inject(ports["tap1"], bytes(arp_from_web1()))
    assert [len(engine.take_tx(i)) for i in ports.values()] == [0, 0, 1]
    assert engine.stats()["drops"]["port_down"] == 0
    engine.set_port_down(ports["uplink"], True)
    engine.inject(ports["tap1"], bytes(arp_from_web1()))
    assert [len(engine.take_tx(i)) for i in ports.values()] == [0, 0, 0]
    assert engine.stats()["drops"]["port_down"] == 1


def test_memory_ports_have_no_interface_to_lose() -> None:
    wire = Wire()
    with pytest.raises(ValueError, match="has no interface to lose"):
        wire.engine.detach_port(wire.up)
    with pytest.raises(ValueError, match="is not a ring port"):
        wire.engine.reattach_ring_port(wire.up, 1, 1500)


# ---- a port's descriptor swapped while the loop runs (datagram socket pairs stand in for TAP devices)
class SocketWire:
    """A running engine whose two TAP ports are socket pairs: a frame written to one far end comes out of the
    other's."""

    def __init__(self) -> None:
        self.engine = fp.Engine(flow_capacity=1024, idle_spin_quiet_us=0, idle_spin_us=0)
        self.far: dict[str, socket.socket] = {}
        self.near: dict[str, socket.socket] = {}
        self.index = {}
        for name in ("vm", "up"):
            near, far = self.pair(name)
            self.index[name] = self.engine.add_tap_port(name, near.fileno(), 1500, 0)
        self.engine.set_tables(fp.Tables(lab_policy(), self.index))
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 5
        while self.engine.progress_ns() == 0 and time.monotonic() < deadline:
            time.sleep(0.001)

    def pair(self, name: str) -> tuple[socket.socket, socket.socket]:
        near, far = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        near.setblocking(False)
        far.settimeout(2)
        self.near[name], self.far[name] = near, far
        return near, far

    def close(self) -> None:
        self.engine.stop()
        self.thread.join(5)
        for sock in [*self.near.values(), *self.far.values()]:
            sock.close()


@pytest.fixture
def socket_wire() -> Iterator[SocketWire]:
    wire = SocketWire()
    yield wire
    wire.close()


def test_a_port_gets_a_new_descriptor_while_the_loop_runs(socket_wire: SocketWire) -> None:
    w = socket_wire
    w.far["vm"].send(bytes(arp_from_web1()))
    assert len(w.far["up"].recv(2048)) == len(bytes(arp_from_web1()))
    old_near, old_far = w.near["up"], w.far["up"]
    new_near, _ = w.pair("up")
    returned = w.engine.reattach_tap_port(w.index["up"], new_near.fileno(), 1500)
    assert returned == old_near.fileno()  # the loop let go of it: the caller closes it
    old_near.close()
    old_far.close()
    w.far["vm"].send(bytes(arp_from_web1()))
    assert len(w.far["up"].recv(2048)) == len(bytes(arp_from_web1()))
    up = w.engine.stats()["ports"][w.index["up"]]
    assert (up["name"], up["tx_packets"]) == ("up", 2)  # one port, its counters kept across the swap


def test_a_detached_port_drops_what_is_sent_to_it_and_comes_back(socket_wire: SocketWire) -> None:
    w = socket_wire
    old_near, old_far = w.near["up"], w.far["up"]
    returned = w.engine.detach_port(w.index["up"])
    assert returned == old_near.fileno()
    old_near.close()
    old_far.close()
    assert w.engine.port_states()[w.index["up"]]["attached"] is False
    w.far["vm"].send(bytes(arp_from_web1()))
    deadline = time.monotonic() + 2
    while w.engine.stats()["drops"]["port_down"] == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert w.engine.stats()["drops"]["port_down"] == 1
    new_near, _ = w.pair("up")
    assert w.engine.reattach_tap_port(w.index["up"], new_near.fileno(), 1500) == -1
    w.far["vm"].send(bytes(arp_from_web1()))
    assert len(w.far["up"].recv(2048)) == len(bytes(arp_from_web1()))


def test_a_stopped_loop_swaps_at_once() -> None:
    engine = fp.Engine(flow_capacity=64)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        index = engine.add_tap_port("tap", a.fileno(), 1500, 0)
        assert engine.reattach_tap_port(index, c.fileno(), 1400) == a.fileno()
        assert engine.port_states()[index] == {"name": "tap", "attached": True, "down": False, "mtu": 1400}
    finally:
        for sock in (a, b, c, d):
            sock.close()


# ---- fail mode: the wire program follows a re-created interface
class FakeProgram:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def forget_port(self, ifindex: int) -> None:
        self.calls.append(("forget", ifindex))

    def set_port(self, ifindex: int, peer: int, wire: int) -> None:
        self.calls.append(("set", ifindex, peer, wire))

    def attach(self, ifindex: int) -> None:
        self.calls.append(("attach", ifindex))


def test_an_open_wire_s_program_moves_to_the_re_created_interface() -> None:
    modes = WireFailModes([("a0", "b0"), ("fw-vm", "fw-up")], {}, ["a0", "b0", "fw-vm", "fw-up"])
    program = FakeProgram()
    modes.program = program
    wire = modes.wires[1]
    wire.ifindexes = (2, 3)
    wire.attached = True
    modes.interface_replaced("fw-up", 12)
    assert wire.ifindexes == (2, 12)
    assert program.calls == [("forget", 3), ("set", 12, 2, 1), ("set", 2, 12, 1), ("attach", 12)]
    # a closed wire's ports are followed in the maps, never given the program
    program.calls.clear()
    modes.wires[0].ifindexes = (5, 6)
    modes.interface_replaced("a0", 15)
    assert program.calls == [("forget", 5), ("set", 15, 6, 0), ("set", 6, 15, 0)]
    # a port of no wire (a TAP, a segment's link) concerns no program
    program.calls.clear()
    modes.interface_replaced("tap9", 40)
    assert program.calls == []
