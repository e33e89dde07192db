"""Connection probes from inside a namespace: how long until a TCP port answers, and whether it does; and
waiting for a stopped process to be stopped (a signal takes effect a little after kill() returns).

A blocked SYN is retransmitted only after a second, so "when did the path open" is measured with a new
socket (a new SYN) every few milliseconds, all non-blocking, until one of them completes.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections.abc import Iterator

from ngfw.lab.netns import socket_in

MAX_SOCKETS = 600  # bound on probes in flight (a 5 ms interval reaches it after 3 s)


def time_to_connect(
    ns: str, address: tuple[str, int], since: float, limit: float = 3.0, every: float = 0.005
) -> float | None:
    """Seconds from `since` (time.monotonic()) to the first completed TCP handshake with `address` from
    `ns`, trying a new connection every `every` s until `since + limit`; None if none completed."""
    pending: dict[int, socket.socket] = {}
    poller = select.poll()
    deadline = since + limit
    next_try = time.monotonic()
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return None
            if now >= next_try and len(pending) < MAX_SOCKETS:
                sock = socket_in(ns)
                sock.setblocking(False)
                sock.connect_ex(address)
                pending[sock.fileno()] = sock
                poller.register(sock, select.POLLOUT)
                next_try = now + every
            wait_ms = max(0.0, min(next_try, deadline) - time.monotonic()) * 1000
            for fd, _ in poller.poll(wait_ms):
                sock = pending.pop(fd)
                poller.unregister(fd)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    sock.close()
                    return time.monotonic() - since
                sock.close()  # refused or unreachable: an answer came, but not a connection
    finally:
        for sock in pending.values():
            sock.close()


def connects(ns: str, address: tuple[str, int], timeout: float = 1.0, source: str | None = None) -> bool:
    """One TCP connection attempt from `ns` (from address `source`, if given): True when the handshake
    completes within `timeout` s."""
    with contextlib.closing(socket_in(ns)) as sock:
        sock.settimeout(timeout)
        try:
            if source is not None:
                sock.bind((source, 0))
            sock.connect(address)
        except OSError:
            return False
        return True


@contextlib.contextmanager
def listener(ns: str, address: tuple[str, int]) -> Iterator[socket.socket]:
    """A listening TCP socket in `ns` (the kernel completes handshakes; nobody needs to accept)."""
    with contextlib.closing(socket_in(ns)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
        yield sock


def wait_stopped(pid: int, timeout: float = 1.0) -> bool:
    """After SIGSTOP: wait until every thread of `pid` is stopped (state T), so that nothing it does any
    more can be mistaken for what happens without it. False if that did not happen within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        states = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        if states and all(state == "T" for state in states):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.0005)
