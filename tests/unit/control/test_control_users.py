"""User-ID through control: the identity API maps addresses (or a VM's addresses) to users, for the roles that
may; mappings of addresses of no workload are refused unless a UserSource allows them (counted either way);
hosts receive small verified deltas by long-poll and enforce them without a policy commit."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from ngfw.cli import main
from ngfw.control.client import ControlError
from ngfw.control.userid import delta_hash
from ngfw.control.validation import compile_documents
from ngfw.dataplane.runner import Dataplane, PortPlan
from ngfw.dataplane.userid import UserAgent
from tests.support.control import USERS_SERVER_MAC, RunningControl, client, put_user_mapping, users_policy

SRV_MAC = USERS_SERVER_MAC
put = put_user_mapping


def tcp(sport: int, dport: int, flags: str) -> TCP:
    return TCP(sport=sport, dport=dport, flags=flags, seq=1000)


@pytest.fixture
def running(sqlite_url: str, tmp_path: Path, tokens: dict[str, str]) -> Any:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    admin = client(control, tokens, "alice")
    admin.apply_documents(users_policy(), ["users.yaml"])
    admin.commit("users")
    yield control
    control.stop()


def test_roles_that_may_map_users(running: RunningControl, tokens: dict[str, str]) -> None:
    for name in ("uma", "otto", "alice"):
        assert put(client(running, tokens, name), address="10.77.0.11", user="Alice")["mapped"][0]["user"] == "alice"
    for name in ("vera", "tina", "host-a"):
        with pytest.raises(ControlError) as info:
            put(client(running, tokens, name), address="10.77.0.11", user="bob")
        assert info.value.status == 403 and "cannot map users" in info.value.body["error"]
    listing = client(running, tokens, "vera").get("/identity/users")
    assert [(m["address"], m["user"], m["vm"]) for m in listing["mappings"]] == [
        ("10.77.0.11", "alice", "tenant-a/web-01")
    ]


def test_a_vm_maps_its_addresses_and_bad_input_is_refused(running: RunningControl, tokens: dict[str, str]) -> None:
    uma = client(running, tokens, "uma")
    mapped = put(uma, vm="db-01", user="carol", ttl=60)["mapped"]
    assert [(m["address"], m["vm"]) for m in mapped] == [("10.77.0.21", "tenant-a/db-01")]
    assert 59 < mapped[0]["expires"] - time.time() <= 60
    for body, status, words in [
        ({"vm": "nosuch", "user": "x"}, 404, "no running workload"),
        ({"address": "10.77.0.300", "user": "x"}, 400, "is not an IP address"),
        ({"address": "10.77.0.11", "user": "al ice"}, 400, "must be a user name"),
        ({"address": "10.77.0.11", "user": "x", "ttl": "long"}, 400, "number of seconds"),
        ({"address": "10.77.0.11", "user": "x", "ttl": -1}, 400, "ttl -1"),
        ({"user": "x"}, 400, "names an address or a vm"),
    ]:
        with pytest.raises(ControlError) as info:
            put(uma, **body)
        assert info.value.status == status and words in info.value.body["error"], (body, info.value.body)


def test_unbound_addresses_are_refused_unless_allowed_and_counted(
    running: RunningControl, tokens: dict[str, str]
) -> None:
    uma = client(running, tokens, "uma")
    with pytest.raises(ControlError) as info:
        put(uma, address="192.0.2.9", user="eve")
    assert info.value.status == 422 and "192.0.2.9 is no workload's" in info.value.body["error"]
    assert put(uma, address="10.99.0.7", user="vpn-user")["mapped"][0]["vm"] is None  # the VPN pool
    counters = uma.get("/identity/users")["counters"]
    assert (counters["unbound_refused"], counters["unbound_accepted"]) == (1, 1)


def test_hosts_get_small_verified_deltas(running: RunningControl, tokens: dict[str, str]) -> None:
    host = client(running, tokens, "host-a")
    uma = client(running, tokens, "uma")
    for i in range(3):
        put(uma, address="10.77.0.11", user=f"user{i}")
    status, snapshot = host.request("GET", "/identity/users/changes", query={"host": "host-a", "wait": 0})
    assert status == 200 and snapshot["full"] and snapshot["hash"] == delta_hash(snapshot)
    assert [m["user"] for m in snapshot["put"]] == ["user2"]
    status, _ = host.request(
        "GET", "/identity/users/changes", query={"host": "host-a", "since": snapshot["revision"], "wait": 0}
    )
    assert status == 204
    put(uma, vm="db-01", user="carol")
    uma.request("DELETE", "/identity/users", query={"address": "10.77.0.11"})
    status, delta = host.request(
        "GET", "/identity/users/changes", query={"host": "host-a", "since": snapshot["revision"], "wait": 5}
    )
    assert status == 200 and not delta["full"] and delta["hash"] == delta_hash(delta)
    assert ([m["address"] for m in delta["put"]], delta["delete"]) == (["10.77.0.21"], ["10.77.0.11"])
    with pytest.raises(ControlError) as info:  # another host's token
        client(running, tokens, "host-b").request("GET", "/identity/users/changes", query={"host": "host-a"})
    assert info.value.status == 403


def test_a_mapping_reaches_a_host_and_is_enforced_without_a_commit(
    running: RunningControl, tokens: dict[str, str]
) -> None:
    running_docs = client(running, tokens, "alice").get("/running")
    policy = compile_documents(running_docs["documents"], running_docs["version"]).policy
    dp = Dataplane(PortPlan())
    vm = dp.engine.add_memory_port("vm", 0)
    up = dp.engine.add_memory_port("up", 0)
    dp.load(policy)
    agent = UserAgent(dp.users, client(running, tokens, "host-a"), "host-a", wait=2)

    def syn(sport: int, flags: str = "S") -> bool:
        dp.engine.inject(
            vm,
            bytes(
                Ether(src="02:00:00:00:01:01", dst=SRV_MAC)
                / IP(src="10.77.0.11", dst="10.77.0.100")
                / tcp(sport, 80, flags)
            ),
        )
        return len(dp.engine.take_tx(up)) == 1

    agent.sync_once(0)  # the (empty) snapshot
    assert not syn(40000)
    uma = client(running, tokens, "uma")
    version = client(running, tokens, "alice").get("/running")["version"]
    put(uma, vm="web-01", user="alice", ttl=30)
    started = time.monotonic()
    assert agent.sync_once(2)
    assert time.monotonic() - started < 1.0
    assert syn(40001) and syn(40001, "A")
    uma.request("DELETE", "/identity/users", query={"vm": "web-01"})
    assert agent.sync_once(2)
    assert not syn(40001, "A") and not syn(40002)  # cut, and new flows denied
    assert client(running, tokens, "alice").get("/running")["version"] == version  # no commit
    # a delta that does not verify is refused: the agent asks for a snapshot again
    agent.since = 0
    real = agent.client.request

    def tampered(*args: Any, **kwargs: Any) -> Any:
        status, body = real(*args, **kwargs)
        if status == 200:
            body["put"] = [{"address": "10.77.0.11", "user": "alice", "expires": None}]
        return status, body

    agent.client.request = tampered  # type: ignore[method-assign]
    assert not agent.sync_once(0) and agent.refused == 1 and agent.since is None
    assert not syn(40003)


def test_cli_users_map_list_unmap(
    running: RunningControl, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    def run(*argv: str) -> tuple[int, str, str]:
        os.environ["NGFW_TOKEN"] = tokens["uma"]
        try:
            status = main([*argv, "--control", running.url])
        finally:
            del os.environ["NGFW_TOKEN"]
        out, err = capsys.readouterr()
        return status, out, err

    status, out, _ = run("users", "map", "vm:web-01", "alice", "--ttl", "120")
    assert status == 0 and out.strip() == "10.77.0.11 (vm:tenant-a/web-01) -> alice for 120 s"
    status, out, err = run("users", "map", "192.0.2.1", "bob")
    assert status == 1 and "192.0.2.1 is no workload's" in err and "HTTP 422" in err
    status, out, _ = run("users", "list")
    assert status == 0 and "10.77.0.11" in out and "alice" in out and "tenant-a/web-01" in out
    assert "unbound addresses refused 1" in out
    status, out, _ = run("users", "unmap", "10.77.0.11")
    assert status == 0 and out.startswith("1 mapping ended")


def test_get_shows_user_groups_and_sources(
    running: RunningControl, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ["NGFW_TOKEN"] = tokens["vera"]
    try:
        assert main(["get", "usergroups", "--control", running.url]) == 0
        groups = capsys.readouterr().out
        assert main(["get", "usersource", "vpn", "-o", "json", "--control", running.url]) == 0
        source = capsys.readouterr().out
    finally:
        del os.environ["NGFW_TOKEN"]
    assert "tenant-a/finance" in groups and "members alice" in groups
    assert '"unboundAddresses"' in source and "10.99.0.0/24" in source
