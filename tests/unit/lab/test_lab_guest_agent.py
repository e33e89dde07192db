"""The guest agent: the client (`ngfw.lab.guest_agent`) against the guest's own agent shell function,
run by busybox on a pseudo-terminal as it runs on the guest's serial port, behind a unix socket as
QEMU puts it. No VM: the same bytes cross a tty in raw mode."""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ngfw.lab.guest_agent import GuestAgent, GuestAgentError, GuestResult, encode_request, guest_exec, parse_reply
from ngfw.lab.guest_image import AGENT_START, agent_shell

BUSYBOX = shutil.which("busybox")


def test_a_reply_is_found_between_its_own_markers_whatever_came_before() -> None:
    stale = b"\n<<ngfw aaa begin>>\nold\n<<ngfw aaa end 0>>\n"
    mine = b"\n<<ngfw bbb begin>>\nline 1\nno newline at the end\n<<ngfw bbb end 7>>\n"
    assert parse_reply(stale + mine, "bbb") is not None
    found = parse_reply(stale + mine, "bbb")
    assert found is not None and found.returncode == 7 and found.output == "line 1\nno newline at the end"
    assert parse_reply(b"\n<<ngfw ccc begin>>\n\n<<ngfw ccc end 0>>\n", "ccc") == parse_reply(
        b"<<ngfw ccc begin>>\n\n<<ngfw ccc end 0>>", "ccc"
    )
    assert parse_reply(mine[:-12], "bbb") is None  # the end line has not arrived yet
    assert parse_reply(stale, "bbb") is None


def test_a_request_is_one_line_that_survives_any_script() -> None:
    line = encode_request("abc123", "printf 'a b\\n'; echo \"$HOME\" | wc -c\n", 30)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.split()[:2] == [b"abc123", b"30"]
    with pytest.raises(ValueError, match="bad request id 'a b'"):
        encode_request("a b", "true", 1)


_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.fixture
def agent_socket(tmp_path: Path) -> Iterator[Path]:
    """The guest agent as in the guest: busybox sh on a tty, reachable through a unix socket."""
    if BUSYBOX is None:
        pytest.skip("busybox (Debian busybox-static, deploy/packages-lab.txt) is not installed")
    applets = tmp_path / "bin"
    applets.mkdir()
    subprocess.run([BUSYBOX, "--install", "-s", str(applets)], check=True)
    master, slave = os.openpty()
    tty = os.ttyname(slave)
    script = agent_shell(tty, str(tmp_path)) + AGENT_START
    # the shell plays the guest's PID 1: orphaned processes are reparented to it (a child subreaper)
    agent = subprocess.Popen(
        [BUSYBOX, "sh", "-c", script],
        env={"PATH": str(applets)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_become_subreaper,
    )
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(0.2)
    stop = threading.Event()

    def relay() -> None:  # what QEMU's socket chardev does: one client at a time, bytes both ways
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                while not stop.is_set():
                    ready, _, _ = select.select([conn, master], [], [], 0.1)
                    if conn in ready:
                        data = conn.recv(4096)
                        if not data:
                            break
                        os.write(master, data)
                    if master in ready:
                        conn.sendall(os.read(master, 4096))

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    time.sleep(0.3)  # stty raw -echo first
    try:
        yield path
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
        os.killpg(agent.pid, 9)  # the "PID 1" shell and the agent it runs
        agent.wait()
        os.close(master)
        os.close(slave)


def test_a_command_runs_and_its_output_and_exit_status_come_back_exactly(agent_socket: Path) -> None:
    agent = GuestAgent(agent_socket)
    agent.wait_ready(timeout=10)
    done = agent.run("echo out; echo err >&2; printf 'no newline'; exit 3", timeout=10)
    assert done.returncode == 3
    assert done.output == "out\nerr\nno newline"
    quoted = agent.run("""x='it''s "quoted"'; echo "$x"; printf '%s\\n' a b""", timeout=10)
    assert quoted.output == 'its "quoted"\na\nb\n' and quoted.returncode == 0
    assert (
        guest_exec(agent_socket, "seq 1 2000 | sha256sum", timeout=10).output.split()[0]
        == (subprocess.run("seq 1 2000 | sha256sum", shell=True, capture_output=True, text=True).stdout.split()[0])
    )


def test_a_command_past_its_time_is_killed_in_the_guest(agent_socket: Path) -> None:
    agent = GuestAgent(agent_socket)
    started = time.monotonic()
    done = agent.run("sleep 30", timeout=1)
    assert done.returncode == 137  # SIGKILL from the guest's own timeout
    assert time.monotonic() - started < 5
    assert agent.run("echo still here", timeout=5).output == "still here\n"


def test_a_background_job_is_started_polled_and_waited_for(agent_socket: Path) -> None:
    agent = GuestAgent(agent_socket)
    job = agent.start("sleep 1; echo done; exit 4")
    assert agent.poll(job) is None
    result = agent.wait(job, timeout=10, interval=0.2)
    assert result.returncode == 4 and result.output == "done\n"


def test_an_agent_that_never_answers_is_an_error_naming_the_command(tmp_path: Path) -> None:
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    try:
        with pytest.raises(GuestAgentError, match="guest did not answer 'uname -r' within 0.5 s"):
            GuestAgent(path).run("uname -r", timeout=0.5)
        with pytest.raises(GuestAgentError, match="does not accept connections"):
            GuestAgent(tmp_path / "none.sock", connect_timeout=0.2).run("true", timeout=1)
    finally:
        server.close()


def test_a_background_job_ending_mid_request_does_not_cut_the_request(agent_socket: Path) -> None:
    agent = GuestAgent(agent_socket)
    agent.wait_ready(timeout=10)
    job = agent.start("sleep 0.3")  # orphaned when its shell returns: its end signals "PID 1"
    request = encode_request("half", "echo whole", 5)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(str(agent_socket))
        sock.sendall(request[:20])
        time.sleep(0.8)  # the job ends while the agent holds half a line
        sock.sendall(request[20:])
        sock.settimeout(5)
        buffer = b""
        while parse_reply(buffer, "half") is None:
            chunk = sock.recv(4096)
            assert chunk, buffer
            buffer += chunk
    assert parse_reply(buffer, "half") == GuestResult(0, "whole\n")
    assert agent.wait(job, timeout=5).returncode == 0
