"""A small client of QEMU's machine protocol (QMP) on a unix socket: greeting, capabilities, commands, events.

```python
with QmpClient.connect("/run/ngfw-lab/ngfw.qemu/web1.host-a.qmp", timeout=10) as qmp:
    qmp.execute("query-status")            # -> {"status": "running", "running": True, ...}
    qmp.execute("migrate", {"uri": "tcp:10.79.0.22:4444"})
    qmp.wait_event("RESUME", timeout=5)    # events that arrived meanwhile are kept in order
```
Each message is one JSON object on a line of its own (QEMU ends them with CRLF). A command's
answer is matched by the `id` we send with it; events arriving before it are queued for
`events()`/`wait_event()`. A QMP socket serves one client at a time: connect, do the work, close.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import time
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import Any


class QmpError(RuntimeError):
    """QEMU answered a command with an error (`error_class`: GenericError, CommandNotFound, ...)."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        super().__init__(f"QMP {command}: {error_class}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


class QmpClosed(ConnectionError):
    """The QMP socket closed (QEMU exited, or another client holds it)."""


class QmpClient:
    """One negotiated QMP session over a connected stream socket."""

    def __init__(self, sock: socket.socket, timeout: float = 10.0) -> None:
        self._sock = sock
        self._buffer = b""
        self._queued: deque[dict[str, Any]] = deque()
        self._ids = itertools.count(1)
        self.greeting: dict[str, Any] = {}
        self._handshake(timeout)

    @classmethod
    def connect(cls, path: str | Path, timeout: float = 10.0) -> QmpClient:
        """Connect to QEMU's QMP unix socket at `path`, retrying until it listens or `timeout` s pass."""
        deadline = time.monotonic() + timeout
        last: OSError | None = None
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                return cls(sock, timeout=max(0.1, deadline - time.monotonic()))
            except (FileNotFoundError, ConnectionRefusedError, QmpClosed, TimeoutError) as exc:
                sock.close()
                last = exc
            except BaseException:
                sock.close()
                raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"QMP socket {path} did not answer within {timeout:.0f} s ({last})")
            time.sleep(0.05)

    def _handshake(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        greeting = self._read_message(deadline)
        if "QMP" not in greeting:
            raise QmpClosed(f"not a QMP greeting: {greeting!r}")
        self.greeting = greeting["QMP"]
        self.execute("qmp_capabilities", timeout=max(0.1, deadline - time.monotonic()))

    @property
    def qemu_version(self) -> str:
        v = self.greeting.get("version", {}).get("qemu", {})
        return f"{v.get('major', '?')}.{v.get('minor', '?')}.{v.get('micro', '?')}"

    def execute(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Run `command`; its `return` value, or QmpError. Events seen meanwhile are queued."""
        ident = f"ngfw-{next(self._ids)}"
        request: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            request["arguments"] = arguments
        self._send(request)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if "event" in message:
                self._queued.append(message)
                continue
            if message.get("id") != ident:
                continue  # the answer to a command of an earlier, timed-out call
            if "error" in message:
                err = message["error"]
                raise QmpError(command, str(err.get("class", "?")), str(err.get("desc", "")))
            return message.get("return")

    def events(self) -> list[dict[str, Any]]:
        """Events received so far (and now readable without waiting), oldest first; the queue is emptied."""
        with contextlib.suppress(TimeoutError):
            while True:
                message = self._read_message(time.monotonic(), block=False)
                if "event" in message:
                    self._queued.append(message)
        found = list(self._queued)
        self._queued.clear()
        return found

    def wait_event(self, name: str, timeout: float) -> dict[str, Any]:
        """The first event called `name` (queued or arriving within `timeout` s); others stay queued."""
        for i, event in enumerate(self._queued):
            if event["event"] == name:
                del self._queued[i]
                return event
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("event") == name:
                return message
            if "event" in message:
                self._queued.append(message)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> QmpClient:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\r\n")
        except OSError as exc:
            raise QmpClosed(f"QMP socket closed while sending {message.get('execute')}: {exc}") from exc

    def _read_message(self, deadline: float, block: bool = True) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if block and remaining <= 0:
                raise TimeoutError("no QMP message in time")
            self._sock.settimeout(max(0.001, remaining) if block else 0.0)
            try:
                chunk = self._sock.recv(65536)
            except (BlockingIOError, TimeoutError):
                raise TimeoutError("no QMP message in time") from None
            except OSError as exc:
                raise QmpClosed(f"QMP socket error: {exc}") from exc
            if not chunk:
                raise QmpClosed("QMP socket closed by QEMU")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read_message(deadline, block)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise QmpClosed(f"QMP sent something that is not JSON: {line[:200]!r}") from exc
        if not isinstance(message, dict):
            raise QmpClosed(f"QMP sent a JSON value that is not an object: {line[:200]!r}")
        return message
