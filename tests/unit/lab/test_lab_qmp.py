"""The QMP client against a fake QEMU on a unix socket: greeting, capabilities, answers, events, errors."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ngfw.lab.qmp import QmpClient, QmpClosed, QmpError

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": ""}, "capabilities": []}}
Script = Callable[[socket.socket, Callable[[], dict]], None]  # type: ignore[type-arg]


def send(conn: socket.socket, message: dict) -> None:  # type: ignore[type-arg]
    conn.sendall(json.dumps(message).encode() + b"\r\n")


@pytest.fixture
def fake_qemu(tmp_path: Path) -> Iterator[Callable[[Script], Path]]:
    """fake_qemu(script) -> socket path: a QMP server that greets, negotiates, then runs `script`."""
    threads: list[threading.Thread] = []
    servers: list[socket.socket] = []

    def start(script: Script) -> Path:
        path = tmp_path / f"qmp{len(servers)}.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
        server.listen(1)
        servers.append(server)

        def serve() -> None:
            conn, _ = server.accept()
            reader = conn.makefile("rb")

            def receive() -> dict:  # type: ignore[type-arg]
                return json.loads(reader.readline())

            with conn:
                send(conn, GREETING)
                request = receive()
                assert request["execute"] == "qmp_capabilities"
                send(conn, {"return": {}, "id": request["id"]})
                script(conn, receive)
                reader.read()  # stay connected until the client closes (as QEMU does)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return path

    yield start
    for server in servers:
        server.close()
    for thread in threads:
        thread.join(timeout=5)


def test_a_command_returns_its_answer_after_the_capabilities_handshake(fake_qemu: Callable[[Script], Path]) -> None:
    def script(conn: socket.socket, receive: Callable[[], dict]) -> None:  # type: ignore[type-arg]
        request = receive()
        assert request["execute"] == "query-status" and "arguments" not in request
        send(conn, {"return": {"status": "running", "running": True}, "id": request["id"]})
        request = receive()
        assert request == {"execute": "migrate", "id": request["id"], "arguments": {"uri": "tcp:10.79.0.22:4444"}}
        send(conn, {"return": {}, "id": request["id"]})

    with QmpClient.connect(fake_qemu(script), timeout=5) as qmp:
        assert qmp.qemu_version == "7.2.22"
        assert qmp.execute("query-status") == {"status": "running", "running": True}
        assert qmp.execute("migrate", {"uri": "tcp:10.79.0.22:4444"}) == {}


def test_events_that_arrive_before_an_answer_are_kept_in_order(fake_qemu: Callable[[Script], Path]) -> None:
    def script(conn: socket.socket, receive: Callable[[], dict]) -> None:  # type: ignore[type-arg]
        request = receive()
        send(conn, {"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 0}})
        send(conn, {"event": "MIGRATION", "data": {"status": "completed"}})
        # an answer to an earlier request that timed out on our side: not this command's
        send(conn, {"return": {"stale": True}, "id": "ngfw-0"})
        send(conn, {"return": {"status": "postmigrate"}, "id": request["id"]})
        receive()  # the client's next command never gets an answer, but an event comes later
        send(conn, {"event": "RESUME"})

    with QmpClient.connect(fake_qemu(script), timeout=5) as qmp:
        assert qmp.execute("query-status") == {"status": "postmigrate"}
        assert qmp.wait_event("MIGRATION", timeout=1)["data"] == {"status": "completed"}
        with pytest.raises(TimeoutError):
            qmp.execute("query-migrate", timeout=0.3)
        assert qmp.wait_event("RESUME", timeout=2)["event"] == "RESUME"
        assert [e["event"] for e in qmp.events()] == ["STOP"]
        assert qmp.events() == []


def test_an_error_answer_raises_with_qemus_class_and_words(fake_qemu: Callable[[Script], Path]) -> None:
    def script(conn: socket.socket, receive: Callable[[], dict]) -> None:  # type: ignore[type-arg]
        request = receive()
        send(
            conn,
            {"error": {"class": "GenericError", "desc": "Failed to connect to '10.79.0.22:4444'"}, "id": request["id"]},
        )

    with QmpClient.connect(fake_qemu(script), timeout=5) as qmp:
        with pytest.raises(QmpError) as caught:
            qmp.execute("migrate", {"uri": "tcp:10.79.0.22:4444"})
    assert caught.value.error_class == "GenericError"
    assert str(caught.value) == "QMP migrate: GenericError: Failed to connect to '10.79.0.22:4444'"


def test_qemu_going_away_mid_command_is_a_closed_connection(fake_qemu: Callable[[Script], Path]) -> None:
    def script(conn: socket.socket, receive: Callable[[], dict]) -> None:  # type: ignore[type-arg]
        receive()  # "quit": QEMU exits without a word
        conn.shutdown(socket.SHUT_RDWR)

    with QmpClient.connect(fake_qemu(script), timeout=5) as qmp:
        with pytest.raises(QmpClosed, match="closed by QEMU"):
            qmp.execute("quit", timeout=5)


def test_connecting_to_a_socket_nobody_serves_times_out_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nobody.qmp"
    with pytest.raises(TimeoutError, match=f"QMP socket {missing} did not answer within 0 s"):
        QmpClient.connect(missing, timeout=0.2)


def test_something_that_is_not_qmp_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(QmpClosed, match="QMP sent something that is not JSON: b'SSH-2.0-OpenSSH_9.2'"):
            QmpClient(_connected(path), timeout=2)
    finally:
        server.close()
        thread.join(timeout=5)


def _connected(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    return sock
