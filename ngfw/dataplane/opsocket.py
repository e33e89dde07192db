"""The dataplane's local operations socket: `ngfw sessions` and `ngfw policy hits` on this host.

A unix stream socket (mode 0600 in a 0700 directory; a peer that is not root, or the dataplane's own user,
is refused by its credentials, SO_PEERCRED). The protocol is JSON lines: one request per line, answered by
zero or more record lines and one last line.

    {"op": "sessions", "filter": {"vm": "web-01"}, "cursor": 0, "limit": 500}
        -> {"session": {...}} per flow, then {"end": true, "cursor": N}   (N 0: no more; else ask again from N)
    {"op": "clear", "filter": {"vm": "web-01", "port": "80"}, "silent": false}
        -> {"end": true, "cleared": 3, "resets": 3}
    {"op": "hits", "vsys": "tenant-a"}            (vsys optional; "gone": true includes deleted rules)
        -> {"end": true, "host": ..., "started": T, "now": T, "rules": [{vsys, rule, hits, first, last, since}]}
    anything wrong -> {"error": "one sentence", "kind": "filter" | "request" | "internal"}

The packet loop never waits on a client: a page is read from the fastpath (short requests served between
bursts) before a byte of it is written, and a client that stops reading only holds its own connection's
thread until the write times out (`write_timeout`); the connection is then closed. At most `max_clients`
connections are served at once; more are told so and closed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ngfw.dataplane.sessions import PAGE_DEFAULT, FilterError, SessionFilter

log = logging.getLogger("ngfw.opsocket")

MAX_REQUEST_BYTES = 65536
SOCKET_SUFFIX = ".sock"


class SocketError(Exception):
    """The socket cannot be served or reached; one sentence naming the path."""


# ---------------------------------------------------------------- where the socket lives


def default_socket_path(plan: Any) -> str:
    """Beside the default state directory (ngfw.dataplane.state): `/run/ngfw/<netns inode>-<ports>.sock`, or
    under /dev/shm/ngfw where /run is not tmpfs (or missing). One per dataplane on the machine (lab hosts
    share /run); the CLI finds the one of its own network namespace."""
    from ngfw.dataplane.state import default_state_dir

    ports = "_".join(p for seg in plan.segment_list() for p in seg)
    base = default_state_dir()
    name = f"{_netns()}-{ports}"
    path = os.path.join(base, name + SOCKET_SUFFIX)
    if len(path.encode()) > 100:  # sun_path holds 108 bytes
        import hashlib

        path = os.path.join(base, f"{_netns()}-{hashlib.sha256(ports.encode()).hexdigest()[:16]}{SOCKET_SUFFIX}")
    return path


def _netns() -> int:
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return 0


def find_socket() -> str:
    """The socket of the dataplane running in this network namespace; SocketError says why there is none
    (or that there are several: --socket chooses)."""
    from ngfw.dataplane.state import default_state_dir

    base = Path(default_state_dir())
    found = sorted(str(p) for p in base.glob(f"{_netns()}-*{SOCKET_SUFFIX}")) if base.is_dir() else []
    if not found:
        raise SocketError(
            f"no dataplane socket in {base} for this network namespace: is `ngfw dataplane` running "
            "here? (give --socket PATH, or run the command in the dataplane's namespace)"
        )
    if len(found) > 1:
        raise SocketError(
            f"several dataplanes run in this network namespace: choose one with --socket ({', '.join(found)})"
        )
    return found[0]


# ---------------------------------------------------------------- the server


class OperationsSocket:
    """Serves `dataplane` (ngfw.dataplane.runner.Dataplane: `sessions`, `rule_hit_book`, `read_rule_hits`,
    `host`) on a unix socket at `path`."""

    def __init__(
        self, dataplane: Any, path: str, write_timeout: float = 5.0, idle_timeout: float = 30.0, max_clients: int = 8
    ) -> None:
        self.dp = dataplane
        self.path = path
        self.write_timeout = write_timeout
        self.idle_timeout = idle_timeout
        self._slots = threading.BoundedSemaphore(max_clients)
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.counters = {"connections": 0, "refused": 0, "busy": 0, "write_timeouts": 0}

    def start(self) -> None:
        directory = os.path.dirname(self.path) or "."
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise SocketError(
                f"sessions socket {self.path}: its directory cannot be created: {exc.strerror or exc}"
            ) from None
        self._unlink_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            # root's only; a peer that connects before the chmod is still refused by its credentials
            os.chmod(self.path, 0o600)
        except OSError as exc:
            sock.close()
            raise SocketError(f"sessions socket {self.path} cannot be created: {exc.strerror or exc}") from None
        sock.listen(16)
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._accept_forever, name="ngfw-opsocket", daemon=True)
        self._thread.start()
        log.info("sessions socket on %s", self.path)

    def _unlink_stale(self) -> None:
        """A socket file a dead dataplane left is removed; a live one (another dataplane) is not taken over."""
        if not os.path.exists(self.path):
            return
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.path)
        except OSError:
            os.unlink(self.path)
            return
        finally:
            probe.close()
        raise SocketError(
            f"sessions socket {self.path} is in use by another running dataplane (give this one --socket PATH)"
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # a connection of our own wakes the accept now, rather than at its next timeout: a restart
            # waits for this process to end
            poke = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            poke.settimeout(0.2)
            try:
                poke.connect(self.path)
            except OSError:
                pass
            finally:
                poke.close()
            self._thread.join(timeout=2)
        if self._sock is not None:
            self._sock.close()
            try:
                os.unlink(self.path)
            except OSError:
                pass

    def _accept_forever(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if self._stop.is_set():  # stop()'s wake-up call, or a client too late
                conn.close()
                return
            self.counters["connections"] += 1
            if not self._slots.acquire(blocking=False):
                self.counters["busy"] += 1
                _send_quietly(
                    conn,
                    {
                        "error": "the dataplane is serving as many operations clients as it allows; try again",
                        "kind": "request",
                    },
                )
                conn.close()
                continue
            threading.Thread(target=self._serve_client, args=(conn,), name="ngfw-opsocket-client", daemon=True).start()

    def _serve_client(self, conn: socket.socket) -> None:
        try:
            refusal = _refusal(conn)
            if refusal:
                self.counters["refused"] += 1
                _send_quietly(conn, {"error": refusal, "kind": "request"})
                return
            for request in _requests(conn, self.idle_timeout):
                conn.settimeout(self.write_timeout)
                for line in self._answer(request):
                    conn.sendall(line)
        except TimeoutError:
            self.counters["write_timeouts"] += 1
            log.debug("operations client did not take its answer within %.1f s: closed", self.write_timeout)
        except OSError:
            pass  # the client went away
        finally:
            conn.close()
            self._slots.release()

    def _answer(self, request: Any) -> Iterator[bytes]:
        try:
            if not isinstance(request, dict):
                raise _RequestError("a request is a JSON object with an op")
            if "_error" in request:
                raise _RequestError(f"a request line must be JSON: {request['_error']}")
            op = request.get("op")
            if op == "sessions":
                yield from self._sessions(request)
            elif op == "clear":
                flt = _filter(request)
                if flt.empty and request.get("all") is not True:
                    raise _RequestError('an empty filter ends every flow: say so with "all": true')
                done = self.dp.sessions.clear(flt, silent=bool(request.get("silent")), who="the local socket")
                yield _line({"end": True, **done.as_dict()})
            elif op == "hits":
                self.dp.read_rule_hits()
                book = self.dp.rule_hit_book
                vsys = request.get("vsys")
                if vsys is not None and not isinstance(vsys, str):
                    raise _RequestError("vsys must be a string")
                yield _line(
                    {
                        "end": True,
                        "host": self.dp.host or socket.gethostname(),
                        "started": book.started,
                        "now": book.clock(),
                        "rules": book.entries(vsys, bool(request.get("gone"))),
                    }
                )
            else:
                raise _RequestError(f"unknown op {op!r} (sessions, clear, hits)")
        except FilterError as exc:
            yield _line({"error": str(exc), "kind": "filter"})
        except _RequestError as exc:
            yield _line({"error": str(exc), "kind": "request"})
        except (RuntimeError, TimeoutError, MemoryError) as exc:
            yield _line({"error": f"the dataplane could not answer: {exc}", "kind": "internal"})

    def _sessions(self, request: dict[str, Any]) -> Iterator[bytes]:
        flt = _filter(request)
        cursor, limit = request.get("cursor", 0), request.get("limit", PAGE_DEFAULT)
        if not isinstance(cursor, int) or isinstance(cursor, bool) or not isinstance(limit, int) or limit < 1:
            raise _RequestError("cursor and limit must be integers (limit at least 1)")
        page = self.dp.sessions.page(flt, cursor, limit)  # read in full before anything is written
        chunk: list[bytes] = []
        for record in page.sessions:
            chunk.append(_line({"session": record}))
            if len(chunk) >= 64:
                yield b"".join(chunk)
                chunk = []
        chunk.append(_line({"end": True, "cursor": page.cursor, "count": len(page.sessions)}))
        yield b"".join(chunk)


class _RequestError(Exception):
    pass


def _filter(request: dict[str, Any]) -> SessionFilter:
    raw = request.get("filter") or {}
    if not isinstance(raw, dict):
        raise _RequestError("filter must be a JSON object of field: value")
    return SessionFilter.parse(raw)


def _refusal(conn: socket.socket) -> str | None:
    """Who is on the other end: root or the dataplane's own user may ask (the socket file says so too)."""
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return "the peer's credentials cannot be read"
    _pid, uid, _gid = struct.unpack("3i", creds)
    if uid not in (0, os.geteuid()):
        return f"permission denied: the sessions socket serves root only (uid {uid} asked)"
    return None


def _requests(conn: socket.socket, idle_timeout: float) -> Iterator[Any]:
    """Request lines until the client closes (or idles past `idle_timeout`)."""
    buffer = b""
    while True:
        conn.settimeout(idle_timeout)
        while b"\n" not in buffer:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                return
            if not data:
                return
            buffer += data
            if len(buffer) > MAX_REQUEST_BYTES and b"\n" not in buffer:
                conn.settimeout(1.0)
                _send_quietly(
                    conn, {"error": f"a request line is at most {MAX_REQUEST_BYTES} bytes", "kind": "request"}
                )
                return
        line, buffer = buffer.split(b"\n", 1)
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as exc:
            yield {"op": None, "_error": str(exc)}


def _line(obj: dict[str, Any]) -> bytes:
    import orjson

    return orjson.dumps(obj) + b"\n"


def _send_quietly(conn: socket.socket, obj: dict[str, Any]) -> None:
    try:
        conn.settimeout(1.0)
        conn.sendall(_line(obj))
    except OSError:
        pass


# ---------------------------------------------------------------- the client


class OperationsClient:
    """The CLI's end of the socket: one connection, requests answered in order."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except PermissionError:
            sock.close()
            raise SocketError(f"permission denied on {path}: the sessions socket is root's (run as root)") from None
        except FileNotFoundError:
            sock.close()
            raise SocketError(f"no dataplane socket at {path}") from None
        except OSError as exc:
            sock.close()
            raise SocketError(f"no dataplane answers on {path}: {exc.strerror or exc}") from None
        self._sock = sock
        self._reader = sock.makefile("rb")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> OperationsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ask(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The answer's lines; the last has `end` (or `error`)."""
        import orjson

        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it asked: the refusal is the line to read
        while True:
            raw = self._reader.readline()
            if not raw:
                raise SocketError(f"the dataplane at {self.path} closed the connection mid-answer")
            line = orjson.loads(raw)
            yield line
            if "end" in line or "error" in line:
                return

    def sessions(self, flt: dict[str, str], page: int = PAGE_DEFAULT) -> Iterator[dict[str, Any]]:
        """Every matching session, page by page (a session the table moved while paging is given once).
        Raises OperationsError for an answer that is an error."""
        cursor = 0
        seen: set[int] = set()
        while True:
            end: dict[str, Any] = {}
            for line in self.ask({"op": "sessions", "filter": flt, "cursor": cursor, "limit": page}):
                if "session" in line:
                    if line["session"]["flow_id"] not in seen:
                        seen.add(line["session"]["flow_id"])
                        yield line["session"]
                elif "error" in line:
                    raise OperationsError(line["error"], line.get("kind", ""))
                else:
                    end = line
            cursor = int(end.get("cursor", 0))
            if cursor == 0:
                return

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """A request answered by one line."""
        last: dict[str, Any] = {}
        for line in self.ask(request):
            last = line
        if "error" in last:
            raise OperationsError(last["error"], last.get("kind", ""))
        return last


class OperationsError(Exception):
    """The dataplane refused a request; `kind` is filter (bad input), request or internal."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind
