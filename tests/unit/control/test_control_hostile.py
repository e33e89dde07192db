"""`ngfw control`'s API against a hostile client: malformed HTTP and values, idle sockets, many long-polls.

Every refusal is a 4xx whose JSON error names the bad value, and the server answers the next
request; a bug is a 500 with one generic sentence (the traceback goes to the log only).
"""

from __future__ import annotations

import json
import logging
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ngfw.control.auth import TokenFile
from ngfw.control.client import ControlClient
from ngfw.control.server import MAX_BODY_BYTES, ControlServer, ServerLimits
from ngfw.control.service import Control
from ngfw.control.store import open_store
from tests.support.control import two_tenants

QUICK = ServerLimits(idle_timeout=1.0, body_timeout=1.0, send_timeout=5.0)


class Served:
    """A control server on 127.0.0.1 with `limits`, and raw HTTP to it."""

    def __init__(self, store_url: str, tokens_path: Path, tokens: dict[str, str], limits: ServerLimits = QUICK) -> None:
        self.store = open_store(store_url)
        self.control = Control(self.store)
        self.server = ControlServer(self.control, TokenFile(tokens_path), limits=limits)
        self.server.start()
        self.port = int(self.server.url.rsplit(":", 1)[1])
        self.tokens = tokens

    def client(self, name: str) -> ControlClient:
        return ControlClient(self.server.url, self.tokens[name], timeout=10)

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        token: str | None = "alice",
    ) -> tuple[int, dict[str, str], Any]:
        head = f"{method} {path} HTTP/1.1\r\nHost: control\r\n"
        if token:
            head += f"Authorization: Bearer {self.tokens[token]}\r\n"
        sent = dict(headers or {})
        if body and "Content-Length" not in sent and "Transfer-Encoding" not in sent:
            sent["Content-Length"] = str(len(body))
        head += "".join(f"{k}: {v}\r\n" for k, v in sent.items())
        return self.exchange(head.encode() + b"\r\n" + body)

    def exchange(self, data: bytes) -> tuple[int, dict[str, str], Any]:
        """Send `data` on a new connection; the answer's status, headers and JSON body."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # refused before all of it was read: the answer is there
            return read_answer(s)

    def stop(self) -> None:
        self.server.stop()
        self.store.close()


def read_answer(s: socket.socket) -> tuple[int, dict[str, str], Any]:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = s.recv(65536)
        assert chunk, f"the connection closed without an answer (got {received!r})"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "the answer's body was cut short"
        body += chunk
    return int(lines[0].split()[1]), headers, json.loads(body) if body else None


@pytest.fixture
def served(sqlite_url: str, tmp_path: Path, tokens: dict[str, str]) -> Iterator[Served]:
    running = Served(sqlite_url, tmp_path / "tokens.json", tokens)
    yield running
    running.stop()


def still_serving(served: Served) -> None:
    status, _, body = served.request("GET", "/status")
    assert status == 200 and body["summary"].startswith("version ")


# (name, raw request, status, a fragment of the error) - no token: the parser refuses them first
MALFORMED_HTTP = [
    (
        "negative Content-Length",
        b"POST /commit HTTP/1.1\r\nHost: c\r\nContent-Length: -5\r\n\r\n",
        400,
        "Content-Length: -5",
    ),
    (
        "Content-Length beyond 64 bits",
        b"POST /commit HTTP/1.1\r\nHost: c\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        400,
        "99999999999999999999999",
    ),
    (
        "two Content-Lengths",
        b"POST /commit HTTP/1.1\r\nHost: c\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        400,
        "Content-Length",
    ),
    (
        "a chunk size that is no number",
        b"POST /commit HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "zz",
    ),
    ("request line over 64 KiB", b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: c\r\n\r\n", 414, "65536 bytes"),
    (
        "a header over 64 KiB",
        b"GET /status HTTP/1.1\r\nHost: c\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        431,
        "65535 bytes",
    ),
    (
        "120 headers",
        b"GET /status HTTP/1.1\r\nHost: c\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n",
        431,
        "100 headers",
    ),
    ("not HTTP", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400, "HTTPS traffic"),
]


@pytest.mark.parametrize("name,raw,status,fragment", MALFORMED_HTTP, ids=[m[0] for m in MALFORMED_HTTP])
def test_malformed_http_gets_a_json_4xx_and_the_server_keeps_serving(
    served: Served, name: str, raw: bytes, status: int, fragment: str
) -> None:
    got, headers, body = served.exchange(raw)
    assert (got, headers["content-type"]) == (status, "application/json")
    assert fragment in body["error"] and "Traceback" not in body["error"], body
    still_serving(served)


def test_a_body_over_the_limit_is_refused_before_it_is_read(served: Served) -> None:
    status, headers, body = served.request(
        "POST", "/commit", headers={"Content-Type": "application/json", "Content-Length": str(MAX_BODY_BYTES + 1)}
    )
    assert status == 413 and str(MAX_BODY_BYTES + 1) in body["error"]
    assert headers["connection"] == "close"
    # a chunked body is counted as it comes
    chunk = b"x" * (1 << 20)
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        s.sendall(
            f"POST /commit HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer {served.tokens['alice']}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            for _ in range(MAX_BODY_BYTES // len(chunk) + 2):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = read_answer(s)
    assert status == 413 and "over the" in body["error"]
    still_serving(served)


DEEP = b"[" * 1000 + b"]" * 1000
YAML_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(  # 10**7 values from 7 lines
        f"{b}: &{b} [{', '.join(['*' + a] * 10)}]\n" for a, b in zip("abcdef", "bcdefg")
    )
).encode()
HOSTILE_VALUES = [
    # (name, method, path, body, content type, status, fragment of the error)
    ("JSON nested 1,000 deep", "POST", "/commit", DEEP, "application/json", 400, "1000 deep"),
    (
        "JSON nested 1,000,000 deep",
        "POST",
        "/candidate/apply",
        b'{"documents": ' + b"[" * 1_000_000,
        "application/json",
        400,
        "deep",
    ),
    ("a version beyond int64", "GET", "/versions/99999999999999999999999", b"", None, 400, "99999999999999999999999"),
    ("a negative version", "GET", "/versions/-3", b"", None, 400, "'-3'"),
    (
        "a diff from a version beyond int64",
        "GET",
        "/diff?from=99999999999999999999999&to=running",
        b"",
        None,
        404,
        "99999999999999999999999",
    ),
    (
        "a rollback to a version beyond int64",
        "POST",
        "/rollback",
        b'{"version": 99999999999999999999999}',
        "application/json",
        400,
        "99999999999999999999999",
    ),
    ("a rollback to Infinity", "POST", "/rollback", b'{"version": Infinity}', "application/json", 400, "Infinity"),
    ("a commit based on NaN", "POST", "/commit", b'{"message": "m", "base": NaN}', "application/json", 400, "NaN"),
    (
        "a number beyond a float's range",
        "POST",
        "/acks",
        b'{"host": "h", "version": 1e400}',
        "application/json",
        400,
        "1e400",
    ),
    ("a lone UTF-16 surrogate", "POST", "/commit", b'{"message": "\\ud800"}', "application/json", 400, "\\ud800"),
    ("a negative limit", "GET", "/versions?limit=-1", b"", None, 400, "'-1'"),
    ("an absurd limit", "GET", "/audit?limit=1000000000000", b"", None, 400, "'1000000000000'"),
    ("a wait of NaN", "GET", "/bundle?host=h&wait=nan", b"", None, 400, "'nan'"),
    ("a negative wait", "GET", "/bundle?host=h&wait=-1", b"", None, 400, "'-1'"),
    ("a body that is not UTF-8", "POST", "/commit", b'{"message": "caf\xe9"}', "application/json", 400, "0xe9"),
    ("a YAML body that is not UTF-8", "POST", "/candidate/apply", b"kind: caf\xe9\n", "application/yaml", 400, "0xe9"),
    ("a query that is not UTF-8", "GET", "/bundle?host=%ff", b"", None, 400, "%ff"),
    ("a path that is not UTF-8", "DELETE", "/identity/workloads/%ff/web", b"", None, 400, "%ff"),
    (
        "a form instead of JSON",
        "POST",
        "/commit",
        b"message=x",
        "application/x-www-form-urlencoded",
        415,
        "application/x-www-form-urlencoded",
    ),
    ("a charset other than UTF-8", "POST", "/commit", b"{}", "application/json; charset=latin-1", 415, "latin-1"),
    ("YAML where JSON is expected", "POST", "/commit", b"message: x", "application/yaml", 415, "application/yaml"),
    ("a JSON list where an object is expected", "POST", "/commit", b"[1]", "application/json", 400, "list"),
    ("YAML nested 5,000 deep", "POST", "/candidate/apply", b"a: " + b"[" * 5000, "application/yaml", 400, "YAML"),
    ("a YAML alias bomb", "POST", "/candidate/apply", YAML_BOMB, "application/yaml", 400, "aliases"),
]


@pytest.mark.parametrize(
    "name,method,path,body,content_type,status,fragment", HOSTILE_VALUES, ids=[h[0] for h in HOSTILE_VALUES]
)
def test_hostile_values_get_a_4xx_naming_the_value(
    served: Served, name: str, method: str, path: str, body: bytes, content_type: str | None, status: int, fragment: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    got, _, answer = served.request(method, path, body, headers)
    assert got == status, answer
    assert fragment in answer["error"], answer
    assert "\n" not in answer["error"] and "Traceback" not in answer["error"]
    still_serving(served)
    assert served.server.counters["internal_errors"] == 0


def test_a_compressed_body_is_refused(served: Served) -> None:
    status, _, body = served.request(
        "POST", "/commit", b"\x1f\x8b\x08\x00", {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert status == 415 and "'gzip'" in body["error"]


def test_unauthenticated_requests_are_refused_before_their_body(served: Served) -> None:
    status, headers, body = served.request("POST", "/commit", DEEP, {"Content-Type": "application/json"}, token=None)
    assert status == 401 and headers["www-authenticate"].startswith("Bearer")
    assert "no bearer token" in body["error"]
    status, _, body = served.exchange(b"GET /status HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer \xff\xfe\r\n\r\n")
    assert status == 401 and body["error"] == "unknown token"


def test_an_unexpected_exception_is_a_500_without_a_traceback(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(who: Any) -> dict[str, Any]:
        raise RuntimeError("the secret inner detail")

    monkeypatch.setattr(served.control, "status", broken)
    with caplog.at_level(logging.ERROR, logger="ngfw.control.http"):
        status, _, body = served.request("GET", "/status")
    assert status == 500
    assert list(body) == ["error"] and body["error"].startswith("internal error")
    assert "secret" not in body["error"] and "RuntimeError" not in body["error"] and "\n" not in body["error"]
    assert served.server.counters["internal_errors"] == 1
    assert "the secret inner detail" in caplog.text and "Traceback" in caplog.text  # server-side only
    monkeypatch.undo()
    still_serving(served)


def test_a_body_that_stops_coming_gets_408(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        s.sendall(
            f"POST /commit HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer {served.tokens['alice']}\r\n"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"mess'.encode()
        )
        started = time.monotonic()
        status, headers, body = read_answer(s)
    assert status == 408 and "within 1 s" in body["error"] and headers["connection"] == "close"
    assert time.monotonic() - started < QUICK.body_timeout + 2
    still_serving(served)


def test_a_request_head_that_stops_coming_is_closed_after_the_idle_timeout(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: c\r\nX-Slow: ")  # and never the rest
        started = time.monotonic()
        assert s.recv(100) == b""
    assert time.monotonic() - started < QUICK.idle_timeout + 2


def test_a_client_that_stops_reading_its_answer_is_dropped(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served = Served(sqlite_url, tmp_path / "tokens.json", tokens, ServerLimits(send_timeout=1.0))
    try:
        # an answer far larger than the sockets' buffers on both sides
        monkeypatch.setattr(served.control, "status", lambda who: {"filler": "x" * (64 << 20)})
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
            s.sendall(
                f"GET /status HTTP/1.1\r\nHost: c\r\nAuthorization: Bearer {served.tokens['vera']}\r\n\r\n".encode()
            )
            deadline = time.monotonic() + 10
            while not served.server.counters["timeouts"] and time.monotonic() < deadline:
                time.sleep(0.05)  # not reading
            assert served.server.counters["timeouts"] == 1
        monkeypatch.undo()
        still_serving(served)
        assert served.server.counters["internal_errors"] == 0
    finally:
        served.stop()


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.fixture
def open_files() -> Iterator[None]:
    """Room for 3,000 client sockets and the server's 3,000 (both in this process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 8192
    if soft != resource.RLIM_INFINITY and soft < needed:
        assert hard == resource.RLIM_INFINITY or hard >= needed, f"open-files hard limit {hard} < {needed}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_3000_idle_sockets_hold_no_thread_and_are_closed_after_the_idle_timeout(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], open_files: None
) -> None:
    served = Served(sqlite_url, tmp_path / "tokens.json", tokens, ServerLimits(idle_timeout=3.0))
    idle: list[socket.socket] = []
    try:
        still_serving(served)  # the worker pool has its first thread
        before = (threading.active_count(), _threads())
        for _ in range(3000):
            idle.append(socket.create_connection(("127.0.0.1", served.port), timeout=10))
        deadline = time.monotonic() + 5
        while served.server.connections < 3000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert served.server.connections == 3000
        during = (threading.active_count(), _threads())
        still_serving(served)  # a 3,001st connection is served meanwhile
        assert during[0] <= before[0] + 2 and during[1] <= before[1] + 2, (before, during)

        opened = time.monotonic()
        deadline = opened + 3.0 + 3
        while served.server.connections > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert served.server.connections == 0
        for s in idle[::100]:
            s.settimeout(1)
            assert s.recv(1) == b""  # closed by the server
    finally:
        for s in idle:
            s.close()
        served.stop()


def test_connections_over_the_cap_get_503_and_the_rest_are_served(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    served = Served(sqlite_url, tmp_path / "tokens.json", tokens, ServerLimits(max_connections=20))
    idle = [socket.create_connection(("127.0.0.1", served.port), timeout=10) for _ in range(20)]
    try:
        deadline = time.monotonic() + 5
        while served.server.connections < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, headers, body = served.request("GET", "/status")
        assert status == 503 and headers["retry-after"] == "1" and "20 connections" in body["error"]
        assert served.server.counters["refused_connections"] == 1
        for s in idle[:5]:
            s.close()
        deadline = time.monotonic() + 5
        while served.server.connections > 15 and time.monotonic() < deadline:
            time.sleep(0.01)
        still_serving(served)
    finally:
        for s in idle:
            s.close()
        served.stop()


def commit_two_tenants(served: Served) -> int:
    alice = served.client("alice")
    documents = two_tenants()
    alice.apply_documents(documents, ["test"] * len(documents))
    return int(alice.commit("two tenants")["version"])


def test_200_concurrent_long_polls_all_return_when_a_commit_lands(served: Served) -> None:
    fleet = served.client("fleet")
    polls = 200
    with ThreadPoolExecutor(polls) as pool:
        results = [pool.submit(fleet.bundle, f"host-{i:03d}", None, 20.0) for i in range(polls)]
        deadline = time.monotonic() + 15
        while served.server.long_polls_waiting < polls and time.monotonic() < deadline:
            time.sleep(0.02)
        assert served.server.long_polls_waiting == polls
        # the read pool and the event loop, not a thread a poll
        workers = [t for t in threading.enumerate() if t.name.startswith(f"ngfw-control-{served.port}-")]
        assert 1 < len(workers) <= served.server.limits.workers + 1

        committed = time.monotonic()
        version = commit_two_tenants(served)
        bundles = [r.result(timeout=20) for r in results]
        elapsed = time.monotonic() - committed
    assert [b["version"] if b else None for b in bundles] == [version] * polls
    assert len({b["hash"] for b in bundles}) == 1
    assert elapsed < 10, f"{polls} long-polls took {elapsed:.1f} s to return after the commit"
    assert served.server.long_polls_waiting == 0


def test_reads_are_served_while_every_change_thread_is_busy(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    started = threading.Semaphore(0)

    def slow_validate(who: Any) -> dict[str, Any]:
        started.release()
        release.wait(20)  # a commit waiting for another on the write lock, say
        return {"ok": True}

    monkeypatch.setattr(served.control, "validate", slow_validate)
    changes = served.server.limits.workers + served.server.limits.write_workers  # more than one pool holds
    with ThreadPoolExecutor(changes) as pool:
        pending = [pool.submit(served.request, "POST", "/candidate/validate") for _ in range(changes)]
        for _ in range(served.server.limits.write_workers):
            assert started.acquire(timeout=10)
        try:
            began = time.monotonic()
            still_serving(served)  # GET /status: the read pool is free
            assert time.monotonic() - began < 2
        finally:
            release.set()
        assert [f.result(timeout=20)[0] for f in pending] == [200] * changes


def test_a_long_poll_returns_204_after_its_wait(served: Served) -> None:
    commit_two_tenants(served)
    fleet = served.client("fleet")
    running = fleet.bundle("host-a", None, 0)
    assert running is not None
    started = time.monotonic()
    assert fleet.bundle("host-a", running["hash"], 0.5) is None  # 204: nothing changed
    assert 0.5 <= time.monotonic() - started < 2


def test_a_long_poll_wakes_for_a_commit_made_through_another_controller(
    served: Served, sqlite_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    other = Served(sqlite_url, tmp_path / "tokens.json", tokens)  # a second controller on the same store
    try:
        with ThreadPoolExecutor(1) as pool:
            poll = pool.submit(served.client("fleet").bundle, "host-a", None, 20.0)
            deadline = time.monotonic() + 5
            while served.server.long_polls_waiting < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            committed = time.monotonic()
            version = commit_two_tenants(other)
            bundle = poll.result(timeout=20)
        assert bundle is not None and bundle["version"] == version
        assert time.monotonic() - committed < 3  # the store is read every STORE_POLL_SECONDS while polls wait
    finally:
        other.stop()


def test_stop_answers_waiting_long_polls_at_once(sqlite_url: str, tmp_path: Path, tokens: dict[str, str]) -> None:
    served = Served(sqlite_url, tmp_path / "tokens.json", tokens)
    with ThreadPoolExecutor(5) as pool:
        polls = [pool.submit(served.client("fleet").bundle, f"host-{i}", None, 30.0) for i in range(5)]
        deadline = time.monotonic() + 5
        while served.server.long_polls_waiting < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        served.stop()
        assert [p.result(timeout=10) for p in polls] == [None] * 5  # 204: nothing changed
    assert time.monotonic() - started < 3
