"""`ngfw control --syslog`: logins and logouts read from syslog (UDP and TCP, RFC 3164 and 5424) become user
mappings; lines no profile matches are counted; a profile without `user` or `ip` is refused at commit."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from ngfw.control.client import ControlError
from ngfw.control.syslog import SyslogReceiver, bench_lines, message_of, split_frames
from tests.support.control import RunningControl, client, resource_doc, two_tenants

SSHD = {
    "login": r"Accepted \S+ for (?P<user>\S+) from (?P<ip>\S+)",
    "logout": r"session closed for user (?P<user>\S+) from (?P<ip>\S+)",
    "ttl": 60,
}


@pytest.fixture
def site(sqlite_url: str, tmp_path: Path, tokens: dict[str, str]) -> Any:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    # the VPN pool 10.77.0.0/16 may be mapped too (the benchmark's logins come from there)
    documents = two_tenants() + [
        resource_doc("UserSource", {"name": "sshd"}, {"syslog": SSHD, "unboundAddresses": ["10.77.0.0/16"]})
    ]
    admin = client(control, tokens, "alice")
    admin.apply_documents(documents, ["site.yaml"])
    admin.commit("sshd logins")
    receiver = SyslogReceiver(control.control, "127.0.0.1", 0)
    control.control.syslog = receiver
    receiver.start()
    yield control, receiver
    receiver.stop()
    control.stop()


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def mapped(control: RunningControl) -> dict[str, str]:
    return {m.address: m.user for m in control.control.users.mappings.values()}


def test_the_message_part_of_both_formats() -> None:
    assert (
        message_of("<38>Dec  5 03:20:01 jump sshd[811]: Accepted publickey for alice from 10.77.0.11 port 5")
        == "sshd[811]: Accepted publickey for alice from 10.77.0.11 port 5"
    )
    assert (
        message_of('<38>1 2026-12-05T03:20:01Z jump sshd 811 - [origin ip="10.0.0.1"] \ufeffAccepted x') == "Accepted x"
    )
    assert message_of("<38>1 2026-12-05T03:20:01Z jump sshd 811 - - Accepted y") == "Accepted y"
    assert message_of("no priority at all") is None
    assert split_frames(b"12 <38>hello ab<38>line\n<38>par") == ([b"<38>hello ab", b"<38>line"], b"<38>par")


def test_udp_login_and_tcp_logout(site: Any) -> None:
    control, receiver = site
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(
            b"<38>Dec  5 03:20:01 jump sshd[811]: Accepted publickey for Alice from 10.77.0.11 port 52314 ssh2",
            ("127.0.0.1", receiver.port),
        )
    assert wait_for(lambda: mapped(control) == {"10.77.0.11": "alice"})
    mapping = control.control.users.mappings["10.77.0.11"]
    assert (mapping.source, mapping.vm) == ("syslog:sshd", "tenant-a/web-01")
    assert 55 < mapping.expires - time.time() <= 60
    with socket.create_connection(("127.0.0.1", receiver.port)) as tcp:
        line = b"<38>1 2026-12-05T03:25:00Z jump sshd 811 - - session closed for user alice from 10.77.0.11"
        tcp.sendall(str(len(line)).encode() + b" " + line)  # RFC 6587 octet counting
        tcp.sendall(b"<38>Dec  5 03:25:01 jump cron[9]: nothing to do here\n")
    assert wait_for(lambda: mapped(control) == {} and receiver.counters["unmatched"] == 1)
    assert receiver.counters["logins"] == 1 and receiver.counters["logouts"] == 1


def test_bad_lines_are_counted_never_fatal(site: Any, tokens: dict[str, str]) -> None:
    control, receiver = site
    receiver.handle_lines(
        [
            "garbage without a priority",
            "<38>x: Accepted key for bob from 192.0.2.1",
            "<38>x: Accepted key for bob from not-an-address",
            "\x00\xff<<>>",
        ]
    )
    assert receiver.counters["malformed"] == 2 and receiver.counters["refused"] == 2  # no workload's; no address
    receiver.handle_lines(["<38>x: Accepted key for carol from 10.77.0.21"])
    assert mapped(control) == {"10.77.0.21": "carol"}  # and it still works
    counters = client(control, tokens, "vera").get("/identity/users")["counters"]
    assert counters["syslog_malformed"] == 2 and counters["syslog_refused"] == 2 and counters["unbound_refused"] == 1


def test_a_profile_without_user_or_ip_is_refused_at_commit(site: Any, tokens: dict[str, str]) -> None:
    control, _ = site
    admin = client(control, tokens, "alice")
    bad = resource_doc("UserSource", {"name": "vpn"}, {"syslog": {"login": r"login (?P<name>\S+) from (?P<ip>\S+)"}})
    with pytest.raises(ControlError) as info:
        admin.apply_documents([bad], ["vpn.yaml"])
    problem = info.value.body["problems"][0]
    assert (problem["resource"], problem["field"]) == ("UserSource vpn", "spec.syslog.login")
    assert "no named group `user`" in problem["message"]


def test_ten_thousand_lines_a_second(site: Any) -> None:
    control, receiver = site
    lines = bench_lines(20_000)
    started = time.thread_time()  # this thread's CPU time: other work on a busy machine does not count
    for i in range(0, len(lines), 512):
        receiver.handle_lines(lines[i : i + 512])
    rate = len(lines) / (time.thread_time() - started)
    assert receiver.counters["lines"] == receiver.counters["logins"] == 20_000
    assert len(mapped(control)) == len({line.rsplit(" from ", 1)[1].split()[0] for line in lines})
    assert rate >= 10_000, f"{rate:.0f} lines/s"
