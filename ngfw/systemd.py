"""Talking to systemd without libsystemd: sd_notify datagrams and a watchdog fed by real progress.

A `Type=notify` unit gives its main process `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
namespace); each state change is one datagram of `KEY=VALUE` lines (sd_notify(3)). With
`WatchdogSec=` systemd also sets `$WATCHDOG_USEC` (and `$WATCHDOG_PID`) and restarts the unit when no
`WATCHDOG=1` arrives within it. `Watchdog` sends one only while a progress clock keeps moving -- for
the dataplane, the packet loop's (`Engine.progress_ns`) -- so a stalled loop is restarted even though
the Python threads around it are fine. Outside systemd every call here is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger("ngfw.systemd")


def _socket_address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return None
    if address.startswith("@"):
        return "\0" + address[1:]  # abstract namespace
    return address


def notify(*fields: str) -> bool:
    """Send `fields` ("READY=1", "STATUS=...") to the service manager; False when there is none or it
    cannot be reached (never raises: a lost status line must not stop a firewall)."""
    address = _socket_address()
    if address is None:
        return False
    message = "\n".join(fields).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)
        return True
    except OSError as exc:
        log.debug("sd_notify %s: %s", address, exc)
        return False


def watchdog_seconds() -> float | None:
    """The unit's `WatchdogSec` in seconds when it applies to this process, else None."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # meant for another process (a parent that exec'ed us would have reset it)
    return int(usec) / 1e6


class Watchdog:
    """Feeds systemd's watchdog every `interval` s while `progress_ns()` (CLOCK_MONOTONIC ns) keeps moving.

    "Moving" means: different from the previous check and no older than `stall_seconds`. A loop that
    turns at least every 10 ms is far inside that; a loop stuck in one packet, a deadlock or a
    thread that died stops the feed, and systemd kills and restarts the unit after `WatchdogSec`.
    """

    def __init__(
        self,
        progress_ns: Callable[[], int],
        interval: float,
        stall_seconds: float = 1.0,
        send: Callable[..., bool] = notify,
    ) -> None:
        self.progress_ns = progress_ns
        self.interval = interval
        self.stall_ns = int(stall_seconds * 1e9)
        self.send = send
        self.fed = 0
        self.stalled = False
        self._last = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_unit(cls, progress_ns: Callable[[], int]) -> Watchdog | None:
        """A watchdog at half the unit's `WatchdogSec` (what sd_watchdog_enabled(3) advises); None
        when the unit has none."""
        seconds = watchdog_seconds()
        if seconds is None:
            return None
        return cls(progress_ns, interval=seconds / 2, stall_seconds=min(1.0, seconds / 4))

    def check(self) -> bool:
        """One check: True (and WATCHDOG=1 sent) when the progress clock moved since the last one."""
        progress = int(self.progress_ns())
        moving = progress != 0 and progress != self._last and time.monotonic_ns() - progress < self.stall_ns
        self._last = progress
        if moving:
            self.send("WATCHDOG=1")
            self.fed += 1
            if self.stalled:
                log.warning("watchdog: the packet loop is moving again")
            self.stalled = False
        elif not self.stalled:
            # said once: systemd restarts the unit if it stays so for WatchdogSec
            age = (time.monotonic_ns() - progress) / 1e9 if progress else float("inf")
            log.error("watchdog: the packet loop has not turned for %.1f s; not feeding systemd's watchdog", age)
            self.stalled = True
        return moving

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ngfw-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.check()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
