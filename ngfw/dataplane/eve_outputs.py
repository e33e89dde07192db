"""Where EVE lines go: a file (the default), syslog (RFC 5424 over UDP, TCP or a local socket) or a unix socket
(stream or datagram, as Suricata's unix_stream / unix_dgram), chosen by `--eve TARGET` (repeatable).

A file is written where the drain runs, as before. A socket output never makes the drain wait: lines go into
a bounded queue that a thread of the output sends from; when the queue is full (a slow or absent consumer)
the line is dropped and counted. A consumer that cannot be reached is reported once per outage and counted,
never fatal; the output keeps trying to reconnect.
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

log = logging.getLogger("ngfw.dataplane.eve")

QUEUE_LINES = 65536  # lines a socket output holds for its consumer before it drops
RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
SYSLOG_FACILITY = 21  # local5, Suricata's default for its syslog output
SYSLOG_SEVERITY = 6  # info


class EveTargetError(ValueError):
    """An --eve target that cannot be used, in one sentence."""


@dataclass(frozen=True)
class EveTarget:
    """One parsed --eve value: `kind` file, syslog or unix; `transport` udp, tcp, dgram or stream."""

    kind: str
    transport: str = ""
    path: str = ""
    host: str = ""
    port: int = 0
    text: str = ""

    @property
    def label(self) -> str:
        """The `output` label of its metrics."""
        if self.kind == "file":
            return f"file:{self.path}"
        if self.path:
            return f"{self.kind}:{self.path}"
        return f"{self.kind}:{self.host}:{self.port}"


def parse_target(text: str) -> EveTarget:
    """`PATH` or `file:///PATH`; `syslog://HOST:PORT` (UDP), `syslog+tcp://HOST:PORT`, `syslog:///dev/log`;
    `unix:///PATH` (stream), `unix+dgram:///PATH`."""
    if "://" not in text:
        if not text:
            raise EveTargetError("--eve needs a file path or a target such as syslog://127.0.0.1:514")
        return EveTarget("file", path=text, text=text)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if not parts.path:
            raise EveTargetError(f"--eve {text}: give a path (file:///var/log/ngfw/eve.json)")
        return EveTarget("file", path=parts.path, text=text)
    if scheme in ("syslog", "syslog+udp", "syslog+tcp"):
        if parts.netloc:
            try:
                port = parts.port
            except ValueError:
                raise EveTargetError(f"--eve {text}: the port is not a number from 1 to 65535") from None
            if not parts.hostname or not port:
                raise EveTargetError(f"--eve {text}: give a host and a port (syslog://HOST:PORT)")
            return EveTarget(
                "syslog", "tcp" if scheme == "syslog+tcp" else "udp", host=parts.hostname, port=port, text=text
            )
        if not parts.path:
            raise EveTargetError(
                f"--eve {text}: give a host and port (syslog://HOST:PORT) or a socket (syslog:///dev/log)"
            )
        return EveTarget("syslog", "dgram", path=parts.path, text=text)
    if scheme in ("unix", "unix+stream", "unix+dgram"):
        if parts.netloc or not parts.path:
            raise EveTargetError(f"--eve {text}: give the socket's absolute path (unix:///run/ngfw/eve.sock)")
        return EveTarget("unix", "dgram" if scheme == "unix+dgram" else "stream", path=parts.path, text=text)
    raise EveTargetError(
        f"--eve {text}: unknown kind {parts.scheme!r}; use a file path, file://, syslog://, "
        "syslog+tcp://, unix:// or unix+dgram://"
    )


class EveOutput:
    """One destination of EVE lines, with its counters."""

    def __init__(self, target: EveTarget) -> None:
        self.target = target
        self.written = 0  # lines handed to the destination
        self.dropped = 0  # lines lost: queue full, or the destination refused them
        self.errors = 0  # failed sends and connection attempts

    def write(self, lines: list[bytes]) -> None:
        raise NotImplementedError

    def reopen(self) -> None:
        """SIGHUP: follow log rotation (files)."""

    def close(self) -> None:
        pass


# called with the path of every EVE file opened (the test suite validates each against docs/eve-schema.json)
FILE_OPENED_HOOKS: list[Callable[[str], None]] = []


class FileOutput(EveOutput):
    def __init__(self, target: EveTarget) -> None:
        super().__init__(target)
        self._lock = threading.Lock()
        self._file: IO[bytes] = self._open()
        for hook in FILE_OPENED_HOOKS:
            hook(target.path)

    def _open(self) -> IO[bytes]:
        directory = os.path.dirname(self.target.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return open(self.target.path, "ab", buffering=0)

    def write(self, lines: list[bytes]) -> None:
        data = b"\n".join(lines) + b"\n"
        with self._lock:
            self._file.write(data)
            self.written += len(lines)

    def reopen(self) -> None:
        with self._lock:
            self._file.close()
            self._file = self._open()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class QueuedOutput(EveOutput):
    """A socket destination fed from a bounded queue by a thread of its own."""

    def __init__(self, target: EveTarget, queue_lines: int = QUEUE_LINES) -> None:
        super().__init__(target)
        self._queue: collections.deque[bytes] = collections.deque()
        self._limit = queue_lines
        self._cond = threading.Condition()
        self._closing = False
        self._sock: socket.socket | None = None
        self._down_since: float | None = None  # an outage being reported (once)
        self._retry_at = 0.0
        self._backoff = RECONNECT_MIN_S
        self._thread = threading.Thread(target=self._run, name=f"ngfw-eve-{target.kind}", daemon=True)
        self._thread.start()

    def write(self, lines: list[bytes]) -> None:
        with self._cond:
            room = self._limit - len(self._queue)
            if room < len(lines):
                self.dropped += len(lines) - max(room, 0)
                lines = lines[: max(room, 0)]
            self._queue.extend(lines)
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until the queue is empty (tests, shutdown); False if it is not within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.pending():
                return True
            time.sleep(0.01)
        return not self.pending()

    def close(self) -> None:
        self.flush(1.0)
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=2.0)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ---- the sending thread
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait(1.0)
                if self._closing:
                    return
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), 256))]
            self._send_batch(batch)

    def _send_batch(self, batch: list[bytes]) -> None:
        for i, line in enumerate(batch):
            if self._sock is None and not self._connect():
                self.dropped += len(batch) - i  # unreachable: dropped and counted, never waited for
                return
            try:
                self._send(self._frame(line))
                self.written += 1
            except OSError as exc:
                self.errors += 1
                self.dropped += 1
                self._lost(exc)

    def _connect(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            return False
        try:
            self._sock = self._open_socket()
        except OSError as exc:
            self.errors += 1
            self._lost(exc)
            return False
        if self._down_since is not None:
            log.warning(
                "EVE output %s reachable again after %.1f s (%d lines dropped so far)",
                self.target.text,
                now - self._down_since,
                self.dropped,
            )
            self._down_since = None
        self._backoff = RECONNECT_MIN_S
        return True

    def _lost(self, exc: OSError) -> None:
        """The destination failed: close, report once per outage, retry later."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning(
                "EVE output %s unreachable (%s): its records are dropped and counted "
                "(ngfw_eve_records_dropped_total) until it answers",
                self.target.text,
                exc.strerror or exc,
            )
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, RECONNECT_MAX_S)

    def _open_socket(self) -> socket.socket:
        raise NotImplementedError

    def _frame(self, line: bytes) -> bytes:
        return line

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        self._sock.sendall(data)


class SyslogOutput(QueuedOutput):
    """RFC 5424 messages: UDP (one datagram each), TCP (octet-counted, RFC 6587) or a local datagram socket."""

    def __init__(self, target: EveTarget, hostname: str, queue_lines: int = QUEUE_LINES) -> None:
        self._header_host = (hostname or "-").encode("ascii", "replace")[:255]
        self._pid = str(os.getpid()).encode()
        super().__init__(target, queue_lines)

    def _open_socket(self) -> socket.socket:
        t = self.target
        if t.transport == "dgram":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.connect(t.path)
        else:
            info = socket.getaddrinfo(
                t.host, t.port, type=socket.SOCK_DGRAM if t.transport == "udp" else socket.SOCK_STREAM
            )
            family, kind, proto, _, address = info[0]
            sock = socket.socket(family, kind, proto)
            sock.settimeout(5.0)
            # connected UDP: an ICMP port unreachable comes back as ECONNREFUSED on a later send (counted)
            sock.connect(address)
        sock.settimeout(5.0)
        return sock

    def _frame(self, line: bytes) -> bytes:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
        micros = int((time.time() % 1) * 1e6)
        pri = SYSLOG_FACILITY * 8 + SYSLOG_SEVERITY
        message = (
            (b"<%d>1 %s.%06dZ " % (pri, stamp.encode(), micros))
            + self._header_host
            + b" ngfw "
            + self._pid
            + b" eve - "
            + line
        )
        if self.target.transport == "tcp":
            return b"%d " % len(message) + message
        return message

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        if self.target.transport == "tcp":
            self._sock.sendall(data)
        else:
            self._sock.send(data)


class UnixSocketOutput(QueuedOutput):
    """A consumer's unix socket: stream (one line per record, newline-ended) or datagram (one per record)."""

    def _open_socket(self) -> socket.socket:
        kind = socket.SOCK_DGRAM if self.target.transport == "dgram" else socket.SOCK_STREAM
        sock = socket.socket(socket.AF_UNIX, kind)
        sock.settimeout(5.0)
        sock.connect(self.target.path)
        return sock

    def _frame(self, line: bytes) -> bytes:
        return line if self.target.transport == "dgram" else line + b"\n"

    def _send(self, data: bytes) -> None:
        assert self._sock is not None
        if self.target.transport == "dgram":
            self._sock.send(data)
        else:
            self._sock.sendall(data)


def open_output(target: EveTarget, hostname: str) -> EveOutput:
    if target.kind == "file":
        try:
            return FileOutput(target)
        except OSError as exc:
            raise EveTargetError(f"--eve {target.text}: cannot open the file: {exc.strerror or exc}") from None
    if target.kind == "syslog":
        return SyslogOutput(target, hostname)
    return UnixSocketOutput(target)
