"""What a link's coming and going means for a dataplane port (pure: link states in, actions out).

A port is a name given on the command line (`--wire`, `--tap`, `--segment`); the interface behind it may be
deleted and re-created (a VM's TAP, an uplink veth coming back: a new ifindex, maybe another MTU or kind),
renamed away, or go down and up. `PortLinks` keeps what the dataplane holds for each port and answers each
netlink observation with the actions that keep the port working: detach it from an interface that is gone,
attach it to the new one (re-create a deleted TAP), mark its link down or up. `ngfw.dataplane.linkwatch`
carries the actions out and calls `done`, which records the event (`PORT_EVENTS`) and says the log line.

TAP ports are their descriptor: the device may move to another network namespace (a hypervisor hands it to
a guest) and stays the port's as long as the descriptor is attached to it; it is gone when the descriptor
says so (`tap_alive`), whatever the names in this namespace do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

PORT_EVENTS = ("down", "up", "removed", "reattached")
ARPHRD_ETHER = 1  # linux/if_arp.h: frames carry Ethernet headers (veth, TAP, bridge, macvlan, NICs)
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000  # carrier: a veth whose peer is up, a TAP with a descriptor attached

TapAlive = Callable[[str], bool]


@dataclass(frozen=True)
class LinkState:
    """One interface as netlink describes it now."""

    name: str
    ifindex: int
    admin_up: bool
    carrier: bool
    mtu: int
    kind: str = ""  # IFLA_INFO_KIND: veth, tun, bridge... ("" for a physical NIC)
    ethernet: bool = True  # link type ARPHRD_ETHER
    link_type: int = ARPHRD_ETHER

    @property
    def up(self) -> bool:
        return self.admin_up and self.carrier

    @property
    def down_reason(self) -> str:
        if not self.admin_up:
            return "administratively down"
        return "no carrier (its peer is down or gone)"

    @property
    def description(self) -> str:
        return f"ifindex {self.ifindex}, {self.kind or 'device'}, MTU {self.mtu}"


def link_state(msg: Any) -> LinkState | None:
    """A pyroute2 ifinfmsg (RTM_NEWLINK, RTM_DELLINK or a dump's entry) -> LinkState; None without a name."""
    name = msg.get_attr("IFLA_IFNAME")
    if not name:
        return None
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    flags = int(msg["flags"])
    link_type = int(msg["ifi_type"])
    return LinkState(
        name=name,
        ifindex=int(msg["index"]),
        admin_up=bool(flags & IFF_UP),
        carrier=bool(flags & IFF_LOWER_UP),
        mtu=int(msg.get_attr("IFLA_MTU") or 1500),
        kind=kind or "",
        ethernet=link_type == ARPHRD_ETHER,
        link_type=link_type,
    )


# ---- actions (linkwatch carries them out, then calls PortLinks.done)
@dataclass(frozen=True)
class Detach:
    """Let go of the port's interface (it is gone): frames for the port are dropped until an Attach."""

    port: str
    why: str


@dataclass(frozen=True)
class Attach:
    """Give the port a new ring on `link` (prepared as at start: up, promiscuous, no super-frame offloads); a TAP
    port (`link` None) gets its device created again."""

    port: str
    link: LinkState | None
    why: str = ""


@dataclass(frozen=True)
class SetLink:
    """The port's link went down or came up."""

    port: str
    up: bool
    why: str = ""


@dataclass(frozen=True)
class Note:
    """Nothing to do, something to say (once)."""

    port: str
    message: str
    level: int = logging.INFO
    refused_ifindex: int = 0  # a link that cannot be the port (said once per interface)


Action = Detach | Attach | SetLink | Note


@dataclass
class PortLink:
    """What the dataplane holds for one port."""

    name: str
    index: int  # the engine's port index: stable for the dataplane's life
    tap: bool = False
    ifindex: int = 0  # of the interface the port is attached to (0: none, or a TAP elsewhere)
    mtu: int = 1500
    kind: str = ""
    attached: bool = True
    up: bool | None = None  # None: not known yet (the first look says, without counting an event)
    refused_ifindex: int = 0


class PortLinks:
    def __init__(self, ports: Iterable[PortLink]) -> None:
        self.ports: dict[str, PortLink] = {p.name: p for p in ports}
        self.events: dict[tuple[str, str], int] = {(name, event): 0 for name in self.ports for event in PORT_EVENTS}

    # ---- observations -> actions
    def link_changed(self, link: LinkState, tap_alive: TapAlive) -> list[Action]:
        """RTM_NEWLINK (or a dump's entry): a link appeared or changed."""
        out: list[Action] = []
        for other in self.ports.values():
            if not other.tap and other.attached and other.ifindex == link.ifindex and other.name != link.name:
                out.append(Detach(other.name, f"interface renamed to {link.name} (ifindex {link.ifindex})"))
        port = self.ports.get(link.name)
        if port is None:
            return out
        if port.tap:
            return out + self._tap_changed(port, link, tap_alive)
        if port.attached and port.ifindex == link.ifindex:
            if link.mtu != port.mtu:
                out.append(Attach(port.name, link, f"its MTU changed from {port.mtu} to {link.mtu}"))
            elif link.up != port.up:
                out.append(SetLink(port.name, link.up, link.down_reason))
            return out
        # a new interface under the port's name
        if port.attached:
            out.append(Detach(port.name, f"interface replaced by a new one of the same name (ifindex {link.ifindex})"))
        if not link.ethernet:
            if port.refused_ifindex != link.ifindex:
                out.append(
                    Note(
                        port.name,
                        f"interface {link.name} is back as a {link.kind or 'device'} link without "
                        f"Ethernet framing (link type {link.link_type}, ifindex {link.ifindex}): the port "
                        "stays detached until an Ethernet link has that name",
                        logging.WARNING,
                        refused_ifindex=link.ifindex,
                    )
                )
            return out
        out.append(Attach(port.name, link))
        return out

    def link_removed(self, name: str, ifindex: int, tap_alive: TapAlive) -> list[Action]:
        """RTM_DELLINK: interface `ifindex` (named `name`) left this namespace: deleted, or moved away."""
        out: list[Action] = []
        for port in self.ports.values():
            if port.tap:
                if not port.attached:
                    if port.name == name:
                        out.append(Attach(port.name, None, "the name is free again"))  # an earlier attempt failed
                    continue
                if not port.ifindex or port.ifindex != ifindex:
                    continue  # not its device: another one of its name, or the one it had before it was made again
                if tap_alive(port.name):
                    port.ifindex = 0  # its index there means nothing here
                    out.append(
                        Note(
                            port.name,
                            f"TAP device {name} moved to another network namespace (its "
                            "descriptor stays attached: it is still this port; its link state is seen "
                            "there)",
                        )
                    )
                    if port.up is False:
                        # what is not seen here is not held against it: the kernel drops what it cannot deliver
                        out.append(SetLink(port.name, True, "moved to another network namespace"))
                else:
                    out += self.tap_gone(port.name)
            elif port.attached and port.ifindex == ifindex:
                out.append(Detach(port.name, f"interface removed (ifindex {ifindex})"))
        return out

    def tap_gone(self, name: str) -> list[Action]:
        """The TAP port's descriptor reports its device deleted: make the device again."""
        port = self.ports[name]
        if not port.attached:
            return []
        return [Detach(name, "TAP device deleted"), Attach(name, None)]

    def _tap_changed(self, port: PortLink, link: LinkState, tap_alive: TapAlive) -> list[Action]:
        # a device of the port's name in this namespace is the port's own only while its descriptor is attached
        # and it is a TAP (another link may have taken the name while the port's device lives elsewhere)
        if not port.attached or link.kind != "tun" or not tap_alive(port.name):
            return []
        port.ifindex = link.ifindex
        if link.up != port.up:
            return [SetLink(port.name, link.up, link.down_reason)]
        return []

    def resync(self, links: Iterable[LinkState], tap_alive: TapAlive) -> list[tuple[str, Any]]:
        """Observations that bring the ports in line with a dump of every link (at start, and after netlink
        notifications were lost): ("removed", (name, ifindex)) and ("changed", LinkState), to be handled one
        by one, each after the actions of the one before were carried out."""
        links = list(links)
        present = {link.ifindex for link in links}
        names = {link.name for link in links}
        out: list[tuple[str, Any]] = []
        for port in self.ports.values():
            if port.tap:
                if port.attached and not tap_alive(port.name):
                    out.append(("tap_gone", port.name))
                elif not port.attached and port.name not in names:
                    out.append(("removed", (port.name, 0)))  # the name is free: make the device again
            elif port.attached and port.ifindex not in present:
                out.append(("removed", (port.name, port.ifindex)))
        out += [("changed", link) for link in links]
        return out

    # ---- carried out -> state, events, log lines
    def done(self, action: Action, link: LinkState | None = None) -> list[tuple[int, str]]:
        """Record that `action` was carried out (`link`: the interface the port is attached to now, as it is
        after being prepared); returns the log lines (level, text), one per event."""
        port = self.ports[action.port]
        lines: list[tuple[int, str]] = []
        if isinstance(action, Detach):
            port.attached = False
            port.up = False
            port.ifindex = 0
            self._count(port, "removed")
            lines.append(
                (logging.WARNING, f"port {port.name}: {action.why}: frames for it are dropped until it is back")
            )
        elif isinstance(action, Attach):
            assert link is not None
            was_mtu, was_kind = port.mtu, port.kind
            port.attached = True
            port.ifindex = link.ifindex
            port.mtu = link.mtu
            port.kind = link.kind
            port.refused_ifindex = 0
            self._count(port, "reattached")
            what = "its TAP device, created again" if port.tap else f"interface {link.name}"
            text = f"port {port.name}: re-attached to {what} ({link.description})"
            if action.why:
                text += f": {action.why}"
            elif was_mtu != link.mtu:
                text += f"; its MTU was {was_mtu}"
            if was_kind and link.kind != was_kind:
                text += f"; a {link.kind or 'device'} link now, it was {was_kind}"
            lines.append((logging.INFO, text))
            lines += self._set_up(port, link.up, link.down_reason)
        elif isinstance(action, SetLink):
            lines += self._set_up(port, action.up, action.why)
        elif isinstance(action, Note):
            if action.refused_ifindex:
                port.refused_ifindex = action.refused_ifindex
            lines.append((action.level, f"port {port.name}: {action.message}"))
        return lines

    def _set_up(self, port: PortLink, up: bool, why: str) -> list[tuple[int, str]]:
        first_look = port.up is None
        if port.up == up:
            return []
        port.up = up
        if first_look:
            return (
                []
                if up
                else [
                    (
                        logging.WARNING,
                        f"port {port.name}: link down at start ({why}): frames for it are dropped until it is up",
                    )
                ]
            )
        if up:
            self._count(port, "up")
            return [(logging.INFO, f"port {port.name}: link up")]
        self._count(port, "down")
        return [(logging.WARNING, f"port {port.name}: link down ({why}): frames for it are dropped until it is up")]

    def _count(self, port: PortLink, event: str) -> None:
        self.events[(port.name, event)] += 1
