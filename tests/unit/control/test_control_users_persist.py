"""User-ID mappings kept across a restart of control: written to its store (SQLite, etcd) in batches, never as a
policy version, read back at start with the lifetimes that ended during the downtime dropped; a host's agent
takes the restarted control's snapshot as a difference, so a user mapped before and after is never denied."""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from ngfw.cli import main
from ngfw.control.store import open_store
from ngfw.control.syslog import SyslogReceiver
from ngfw.control.validation import compile_documents
from ngfw.dataplane.runner import Dataplane, PortPlan
from ngfw.dataplane.userid import UserAgent
from tests.support.control import USERS_SERVER_MAC as SRV_MAC
from tests.support.control import RunningControl, client, resource_doc, users_policy
from tests.support.control import put_user_mapping as put

LOGIN = "<38>Dec  5 04:00:00 jump sshd[7]: Accepted publickey for {user} from {ip} port 22 ssh2"


def policy_with_sshd() -> list[dict[str, Any]]:
    return users_policy() + [
        resource_doc(
            "UserSource",
            {"name": "sshd"},
            {"syslog": {"login": r"Accepted \S+ for (?P<user>\S+) from (?P<ip>\S+)", "ttl": 3600}},
        )
    ]


def test_the_store_writes_user_mappings_in_batches_and_never_as_a_version(store_url: str) -> None:
    store = open_store(store_url)
    try:
        before = store.latest()
        rows: list[dict[str, Any]] = [
            {
                "address": f"10.1.{i // 250}.{i % 250 + 1}",
                "user": f"u{i}",
                "source": "api",
                "expires": None,
                "vm": None,
                "by": "uma",
            }
            for i in range(300)
        ]  # over etcd's 128 operations per transaction
        store.write_user_mappings(rows, [])
        store.write_user_mappings([{**rows[0], "user": "changed"}], [r["address"] for r in rows[1:200]])
        kept = {r["address"]: r["user"] for r in store.user_mappings()}
        assert len(kept) == 101 and kept["10.1.0.1"] == "changed" and "10.1.0.2" not in kept
        assert store.latest() == before  # no version, no identity revision
        store.put_directory_groups("corp", {"groups": {"tenant-a/finance": ["alice"]}, "last_success": 1.0})
        assert store.directory_groups() == {"corp": {"groups": {"tenant-a/finance": ["alice"]}, "last_success": 1.0}}
    finally:
        store.close()


def test_a_restarted_control_gives_hosts_the_same_users_without_a_deny_window(
    store_url: str, tmp_path: Path, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tokens_path = tmp_path / "tokens.json"
    control = RunningControl(store_url, tokens_path)
    admin = client(control, tokens, "alice")
    admin.apply_documents(policy_with_sshd(), ["users.yaml"])
    admin.commit("users")
    version = admin.get("/running")["version"]
    receiver = SyslogReceiver(control.control, "127.0.0.1", 0)
    try:  # a login read from syslog (one batch: one store write, by the writer thread)
        users = control.control.users
        writes = users.counters["store_writes"]
        receiver.handle_lines([LOGIN.format(user="alice", ip="10.77.0.11"), LOGIN.format(user="dave", ip="10.99.0.8")])
        deadline = time.monotonic() + 5
        while users.counters["store_writes"] == writes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert users.counters["store_writes"] == writes + 1 and not users._dirty
    finally:
        receiver.stop()
    uma = client(control, tokens, "uma")
    put(uma, vm="db-01", user="bob", ttl=1)  # its lifetime ends during the downtime
    put(uma, address="10.99.0.7", user="carol")
    uma.request("DELETE", "/identity/users", query={"address": "10.99.0.7"})  # logged out before the restart
    assert admin.get("/running")["version"] == version  # mappings are no commit

    running = admin.get("/running")
    dp = Dataplane(PortPlan())
    vm = dp.engine.add_memory_port("vm", 0)
    up = dp.engine.add_memory_port("up", 0)
    dp.load(compile_documents(running["documents"], running["version"]).policy)
    agent = UserAgent(dp.users, client(control, tokens, "host-a"), "host-a", wait=2)

    def syn(sport: int) -> bool:
        dp.engine.inject(
            vm,
            bytes(
                Ether(src="02:00:00:00:01:01", dst=SRV_MAC)
                / IP(src="10.77.0.11", dst="10.77.0.100")
                / TCP(sport=sport, dport=80, flags="S", seq=1000)
            ),
        )
        return len(dp.engine.take_tx(up)) == 1

    assert agent.sync_once(0) and syn(40000)
    installed: list[Any] = []
    install = dp.users.install

    def recording(table: Any) -> None:  # every user table the engine runs from now on
        installed.append(table)
        install(table)

    dp.users.install = recording

    # a login in the batch read just before control stops: written when it stops (Control.close)
    receiver.handle_lines([LOGIN.format(user="frank", ip="10.99.0.9")])
    control.stop()
    time.sleep(1.2)  # control is down: bob's lifetime ends
    control = RunningControl(store_url, tokens_path, control.port)
    try:
        assert agent.sync_once(2) and agent.snapshots == 2  # another epoch: a snapshot
        listing = client(control, tokens, "uma").get("/identity/users")
        assert [(m["address"], m["user"], m["source"]) for m in listing["mappings"]] == [
            ("10.77.0.11", "alice", "syslog:sshd"),
            ("10.99.0.8", "dave", "syslog:sshd"),
            ("10.99.0.9", "frank", "syslog:sshd"),
        ]
        assert (listing["counters"]["restored"], listing["counters"]["restored_expired"]) == (3, 1)
        os.environ["NGFW_TOKEN"] = tokens["uma"]
        try:
            assert main(["users", "list", "--control", control.url]) == 0
        finally:
            del os.environ["NGFW_TOKEN"]
        assert "restored at control's start: 3 (1 had expired while it was down)" in capsys.readouterr().out
        assert syn(40001)  # alice: still allowed
        assert dp.users.user_of("10.77.0.21") is None and dp.users.user_of("10.99.0.7") is None
        address = ipaddress.ip_address("10.77.0.11")
        alice = dp.users.table.user_of(address)
        assert alice and installed and all(t.user_of(address) == alice for t in installed)  # never unmapped
        # the next change is a delta of the new epoch, not another snapshot
        put(client(control, tokens, "uma"), address="10.99.0.7", user="erin")
        assert agent.sync_once(2) and agent.snapshots == 2 and dp.users.user_of("10.99.0.7") == "erin"
    finally:
        control.stop()
    # the mappings ended while control was down are gone from the store too
    store = open_store(store_url)
    try:
        assert sorted(m["address"] for m in store.user_mappings()) == [
            "10.77.0.11",
            "10.99.0.7",
            "10.99.0.8",
            "10.99.0.9",
        ]
    finally:
        store.close()


def test_a_failed_store_write_is_counted_and_written_with_the_next(tmp_path: Path) -> None:
    from ngfw.control.userid import UserMappings

    store = open_store(f"sqlite:///{tmp_path}/control.db")
    real = store.write_user_mappings
    failing = True

    def write(puts: list[dict[str, Any]], deletes: list[str]) -> None:
        if failing:
            raise OSError("disk full")
        real(puts, deletes)

    store.write_user_mappings = write  # type: ignore[method-assign]
    try:
        users = UserMappings(store=store)
        users.put("10.77.0.11", "alice", None, "api", None)  # enforced all the same
        assert users.counters["store_failures"] == 1 and "10.77.0.11" in users.mappings
        failing = False
        users.put("10.77.0.12", "bob", None, "api", None)
        assert users.counters["store_writes"] == 1
        assert sorted(m["user"] for m in store.user_mappings()) == ["alice", "bob"]
        restarted = UserMappings(store=store)
        assert restarted.restore() == 2 and restarted.epoch != users.epoch
    finally:
        store.close()
