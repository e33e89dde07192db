"""The link monitor: a thread bound to the kernel's link notifications (rtnetlink RTMGRP_LINK, decoded by
pyroute2) in the dataplane's network namespace, which keeps every port on a working interface while the
packet loop runs.

- an interface removed (or renamed away): the loop lets go of its ring (`Engine.detach_port`), frames for
  the port are dropped as `port_down`;
- an interface of the port's name (re)appears: it is prepared as at start (up, promiscuous, no super-frame
  offloads) and a new ring on it is swapped into the same port slot (`Engine.reattach_ring_port`), with the
  new MTU; an open wire's fail-open program follows it to the new interface (`WireFailModes.interface_replaced`);
- a TAP device deleted (seen here, or by the loop: its descriptor answers EBADFD and the loop signals
  `Engine.port_notify_fd`): the device is created again and its descriptor swapped in;
- a link down or up: `Engine.set_port_down`.

Decisions are `ngfw.dataplane.links.PortLinks`'s; each event is counted (`events`) and logged in one line.
Nothing here polls: the thread sleeps in select() on the netlink socket, the loop's eventfd and its own stop
eventfd. A lost notification (the socket's buffer overflowed: ENOBUFS) makes it read every link again.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK, RTMGRP_LINK
from pyroute2.netlink.rtnl.marshal import MarshalRtnl

from ngfw.dataplane.links import Attach, Detach, LinkState, Note, PortLink, PortLinks, SetLink, link_state
from ngfw.dataplane.ports import Link, PortError, open_tap, prepare_link, tap_attached

log = logging.getLogger("ngfw.dataplane.links")

NETLINK_ROUTE = 0
SO_RCVBUFFORCE = 33
RECEIVE_BUFFER = 4 << 20  # notifications queued while a re-attach runs (flapping links send many)


class LinkGone(Exception):
    """The interface an action was for disappeared meanwhile (a later notification says what to do)."""


def open_link_socket() -> socket.socket:
    """A non-blocking rtnetlink socket subscribed to link notifications of this network namespace."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK, NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BUFFER)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
    sock.bind((0, RTMGRP_LINK))
    return sock


def dump_links() -> list[LinkState]:
    with IPRoute() as ipr:
        return [s for s in (link_state(m) for m in ipr.get_links()) if s is not None]


def current_link(ifindex: int) -> LinkState:
    try:
        with IPRoute() as ipr:
            found = ipr.get_links(ifindex)
    except NetlinkError as exc:
        raise LinkGone(f"interface {ifindex} is gone") from exc
    state = link_state(found[0]) if found else None
    if state is None:
        raise LinkGone(f"interface {ifindex} is gone")
    return state


class LinkWatch:
    def __init__(
        self,
        engine: Any,
        port_index: dict[str, int],
        links: dict[str, Link],
        taps: set[str],
        tap_fds: dict[str, int],
        fail_modes: Any = None,
    ) -> None:
        """`links`: the interface each port was opened on; `tap_fds`: the TAP ports' descriptors, kept up to
        date here (the dataplane closes what is in it when it stops)."""
        self.engine = engine
        self.port_index = port_index
        self.tap_fds = tap_fds
        self.fail_modes = fail_modes
        self.tracker = PortLinks(
            PortLink(
                name=name,
                index=index,
                tap=name in taps,
                ifindex=links[name].ifindex if name in links else 0,
                mtu=links[name].mtu if name in links else 1500,
            )
            for name, index in port_index.items()
        )
        self._marshal = MarshalRtnl()
        self._sock: socket.socket | None = None
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._lock = threading.Lock()  # the tracker's state, read by scrapes

    # ---- lifecycle
    def start(self) -> None:
        """Subscribe, then read every link once (what changed since the ports were opened), then watch."""
        self._sock = open_link_socket()
        try:
            self._resync()
        except (OSError, NetlinkError) as exc:  # the notifications still come; they will say what changes
            log.error("link monitor: cannot read the links at start (%s); watching their changes", exc)
        self._thread = threading.Thread(target=self._run, name="ngfw-links", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._wake < 0:
            return
        self._stopping = True
        os.eventfd_write(self._wake, 1)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        os.close(self._wake)
        self._wake = -1

    def events(self) -> dict[tuple[str, str], int]:
        """(port, event) -> count, every event of every port (zeros included)."""
        with self._lock:
            return dict(self.tracker.events)

    # ---- the thread
    def _run(self) -> None:
        assert self._sock is not None
        notify = self.engine.port_notify_fd
        while not self._stopping:
            try:
                ready, _, _ = select.select([self._sock, notify, self._wake], [], [])
                if self._stopping:
                    return
                if notify in ready:
                    _drain_eventfd(notify)
                    self._check_taps()
                if self._sock in ready:
                    self._read()
            except Exception:  # noqa: BLE001 - one bad event must not leave every later one unwatched
                log.exception("link monitor: an event could not be handled; watching goes on")

    def _read(self) -> None:
        assert self._sock is not None
        while not self._stopping:
            try:
                data = self._sock.recv(1 << 18)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                log.warning("link notifications were lost (the kernel's queue overflowed): reading every link again")
                self._resync()
                continue
            for msg in self._marshal.parse(data):
                kind = msg["header"]["type"]
                state = link_state(msg) if kind in (RTM_NEWLINK, RTM_DELLINK) else None
                if state is None:
                    continue
                if kind == RTM_NEWLINK:
                    now = self._as_it_is(state)
                    if now is not None:
                        self._apply(self.tracker.link_changed(now, self._tap_alive))
                else:
                    self._apply(self.tracker.link_removed(state.name, state.ifindex, self._tap_alive))

    def _resync(self) -> None:
        for what, arg in self.tracker.resync(dump_links(), self._tap_alive):
            if what == "changed":
                self._apply(self.tracker.link_changed(arg, self._tap_alive))
            elif what == "removed":
                self._apply(self.tracker.link_removed(arg[0], arg[1], self._tap_alive))
            else:
                self._apply(self.tracker.tap_gone(arg))

    def _check_taps(self) -> None:
        """The loop found TAP devices gone."""
        for state in self.engine.port_states():
            port = self.tracker.ports.get(state["name"])
            if port is not None and port.tap and port.attached and not state["attached"]:
                self._apply(self.tracker.tap_gone(port.name))

    def _as_it_is(self, state: LinkState) -> LinkState | None:
        """A notification about one of the ports' interfaces says what changed when it was sent; what to do
        depends on the link as it is now (notifications queue up behind a re-attach, which itself changes the
        link: a stale "down" would be counted). None: it left this namespace meanwhile (deleted, or a TAP
        handed to another namespace: it is closed first, and the RTM_DELLINK that follows says which)."""
        ours = state.name in self.tracker.ports or any(
            p.attached and p.ifindex == state.ifindex for p in self.tracker.ports.values()
        )
        if not ours:
            return state
        try:
            return current_link(state.ifindex)
        except LinkGone:
            return None

    def _tap_alive(self, name: str) -> bool:
        fd = self.tap_fds.get(name)
        return fd is not None and tap_attached(fd)

    # ---- carrying actions out
    def _apply(self, actions: list[Any]) -> None:
        for action in actions:
            try:
                link = self._carry_out(action)
            except LinkGone as exc:
                log.debug("port %s: %s: %s", action.port, type(action).__name__, exc)
                continue
            except (PortError, OSError, TimeoutError, ValueError) as exc:
                log.error("port %s: %s", action.port, _failure(action, exc))
                continue
            with self._lock:
                lines = self.tracker.done(action, link)
            for level, line in lines:
                log.log(level, line)

    def _carry_out(self, action: Any) -> LinkState | None:
        index = self.port_index[action.port]
        if isinstance(action, Detach):
            old = self.engine.detach_port(index)
            if old >= 0:
                os.close(old)
                self.tap_fds.pop(action.port, None)
            return None
        if isinstance(action, SetLink):
            self.engine.set_port_down(index, not action.up)
            return None
        if isinstance(action, Note):
            return None
        assert isinstance(action, Attach)
        if action.link is None:
            return self._recreate_tap(action.port, index)
        try:
            link = prepare_link(action.port)
        except PortError as exc:
            if "does not exist" in str(exc):
                raise LinkGone(str(exc)) from None
            raise
        if self.fail_modes is not None:
            self.fail_modes.interface_replaced(action.port, link.ifindex)
        try:
            self.engine.reattach_ring_port(index, link.ifindex, link.mtu)
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise LinkGone(str(exc)) from None
            raise
        return self._after_attach(index, link.ifindex)

    def _recreate_tap(self, name: str, index: int) -> LinkState:
        fd, link = open_tap(name)
        try:
            old = self.engine.reattach_tap_port(index, fd, link.mtu)
        except BaseException:
            os.close(fd)
            raise
        if old >= 0:  # the port still held the dead descriptor (no Detach ran): the loop let go of it now
            os.close(old)
        self.tap_fds[name] = fd
        return self._after_attach(index, link.ifindex)

    def _after_attach(self, index: int, ifindex: int) -> LinkState:
        state = current_link(ifindex)
        self.engine.set_port_down(index, not state.up)
        return state


def _failure(action: Any, exc: BaseException) -> str:
    if isinstance(action, Attach) and action.link is None:
        return f"cannot create its TAP device again ({exc}); tried again when the name {action.port} is free"
    if isinstance(action, Attach):
        return f"cannot re-attach to interface {action.port} ({exc}); tried again when it changes"
    return f"{type(action).__name__.lower()} failed: {exc}"


def _drain_eventfd(fd: int) -> None:
    try:
        os.eventfd_read(fd)
    except BlockingIOError:
        pass
