"""sd_notify without libsystemd, and a watchdog fed only while the packet loop turns."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ngfw import systemd


@pytest.fixture
def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A socket where systemd would listen, named in $NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_notify_sends_one_datagram_of_lines(manager: socket.socket) -> None:
    assert systemd.notify("READY=1", "STATUS=enforcing policy version 3")
    assert manager.recv(4096) == b"READY=1\nSTATUS=enforcing policy version 3"


def test_abstract_socket_names_start_with_at(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ngfw-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    try:
        assert systemd.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False


def test_a_manager_that_went_away_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert systemd.notify("READY=1") is False


def test_watchdog_interval_is_for_this_process_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_seconds() == 10.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert systemd.watchdog_seconds() is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert systemd.watchdog_seconds() is None


class Loop:
    """A packet loop's progress clock that turns every 10 ms until it stalls."""

    def __init__(self) -> None:
        self.stalled_at: int | None = None

    def progress_ns(self) -> int:
        now = time.monotonic_ns()
        return self.stalled_at if self.stalled_at is not None else now - 5_000_000


def test_the_watchdog_is_fed_while_the_loop_turns_and_not_once_it_stalls() -> None:
    sent: list[str] = []
    loop = Loop()
    dog = systemd.Watchdog(loop.progress_ns, interval=0.01, stall_seconds=0.2, send=lambda *f: sent.extend(f) or True)
    assert dog.check() and dog.check()
    assert sent == ["WATCHDOG=1", "WATCHDOG=1"]
    loop.stalled_at = time.monotonic_ns()
    dog.check()  # the last turn is still recent, but the clock did not move since
    assert not dog.check()
    time.sleep(0.25)
    assert not dog.check()  # stuck for longer than stall_seconds
    assert len(sent) <= 3 and dog.stalled
    loop.stalled_at = None
    assert dog.check() and not dog.stalled


def test_a_loop_that_never_ran_does_not_feed_the_watchdog() -> None:
    sent: list[str] = []
    dog = systemd.Watchdog(lambda: 0, interval=0.01, send=lambda *f: sent.extend(f) or True)
    assert not dog.check() and sent == []


def test_for_unit_feeds_at_half_the_watchdog_timeout(monkeypatch: pytest.MonkeyPatch, manager: socket.socket) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    loop = Loop()
    dog = systemd.Watchdog.for_unit(loop.progress_ns)
    assert dog is not None and dog.interval == pytest.approx(0.1)
    dog.start()
    try:
        assert manager.recv(100) == b"WATCHDOG=1"
        assert manager.recv(100) == b"WATCHDOG=1"
    finally:
        dog.stop()
