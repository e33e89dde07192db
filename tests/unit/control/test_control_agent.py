"""The dataplane agent against a real control: apply and ack, refuse a bad hash, survive control going away."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ngfw.compiler.policy import policy_digest
from ngfw.compiler.tables import CompiledPolicy
from ngfw.control.agent import Agent
from ngfw.control.auth import Principal
from ngfw.control.client import ControlClient
from ngfw.control.service import Control
from ngfw.control.store import open_store
from tests.support.control import RunningControl, client, find, two_tenants


class FakeDataplane:
    """Stands in for Dataplane.load: records what it was given, and through which path."""

    def __init__(self) -> None:
        self.loaded: list[tuple[str, CompiledPolicy]] = []

    def apply(self, policy: CompiledPolicy) -> None:
        self.loaded.append(("policy", policy))

    def apply_identity(self, policy: CompiledPolicy) -> None:
        self.loaded.append(("identity", policy))


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


def start_agent(agents: list[Agent], url: str, token: str, host: str, **options: Any) -> tuple[Agent, FakeDataplane]:
    dataplane = FakeDataplane()
    agent = Agent(
        ControlClient(url, token, timeout=5),
        host,
        dataplane.apply,
        apply_identity=dataplane.apply_identity,
        wait=2.0,
        retry_interval=0.05,
        **options,
    )
    agent.start()
    agents.append(agent)
    return agent, dataplane


def commit(control: RunningControl, tokens: dict[str, str], documents: list[dict[str, Any]], message: str) -> int:
    alice = client(control, tokens, "alice")
    alice.apply_documents(documents, ["test"] * len(documents))
    return int(alice.commit(message)["version"])


def wait_status(control: RunningControl, tokens: dict[str, str], summary: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client(control, tokens, "vera").get("/status")
        if status["summary"] == summary or time.monotonic() > deadline:
            return dict(status)
        time.sleep(0.02)


def test_agents_apply_and_acknowledge(control: RunningControl, tokens: dict[str, str], agents: list[Agent]) -> None:
    commit(control, tokens, two_tenants(), "two tenants")
    a, dp_a = start_agent(agents, control.url, tokens["host-a"], "host-a")
    b, dp_b = start_agent(agents, control.url, tokens["host-b"], "host-b")
    assert a.wait_for(lambda g: g.current is not None, 5) and b.wait_for(lambda g: g.current is not None, 5)
    kind, policy = dp_a.loaded[0]
    assert (kind, policy.version, policy.vsys) == ("policy", 1, ("tenant-a", "tenant-b"))
    status = wait_status(control, tokens, "version 1 on 2 of 2 hosts")
    assert status["summary"] == "version 1 on 2 of 2 hosts"
    assert {h["host"]: h["hash"] for h in status["hosts"]} == {"host-a": status["hash"], "host-b": status["hash"]}

    documents = two_tenants()
    find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/8080"]
    commit(control, tokens, [find(documents, "SecurityPolicy", "main", "tenant-b")], "8080")
    assert a.wait_for(lambda g: g.current is not None and g.current.version == 2, 5)
    assert wait_status(control, tokens, "version 2 on 2 of 2 hosts")["realized"] == 2


def test_a_host_token_cannot_speak_for_another_host(control: RunningControl, tokens: dict[str, str]) -> None:
    commit(control, tokens, two_tenants(), "two tenants")
    host_a = client(control, tokens, "host-a")
    with pytest.raises(Exception) as info:
        host_a.ack("host-b", 1, 1, "0" * 64)
    assert getattr(info.value, "status", None) == 403
    assert client(control, tokens, "vera").get("/status")["total"] == 0


def test_label_change_reaches_identity_tables_without_commit(
    control: RunningControl, tokens: dict[str, str], agents: list[Agent]
) -> None:
    commit(control, tokens, two_tenants(), "two tenants")
    agent, dataplane = start_agent(agents, control.url, tokens["host-a"], "host-a")
    assert agent.wait_for(lambda g: g.current is not None, 20)
    assert agent.policy is not None
    web_to_db = next(r for r in agent.policy.rules if r.name == "web-to-db")
    db_index = next(i for i, w in enumerate(agent.policy.workloads) if w.name == "db-01")
    assert web_to_db.src.workloads == frozenset(
        {next(i for i, w in enumerate(agent.policy.workloads) if w.name == "web-01")}
    )

    bodies = record_bundles(agent)
    db = find(two_tenants(), "Workload", "db-01")
    db["metadata"]["labels"] = {"tier": "web"}  # db-01 joins group web
    started = time.monotonic()
    client(control, tokens, "otto").put_workload("tenant-a", "db-01", db)
    assert agent.wait_for(lambda g: g.current is not None and g.current.identity == 2, 5)
    elapsed = time.monotonic() - started
    assert agent.current is not None and agent.current.version == 1  # no policy commit happened
    assert dataplane.loaded[-1][0] == "identity"
    # what travelled: the Workloads, not the rules
    assert [sorted(b) for b in bodies] == [["hash", "identity", "version", "workloads"]]
    assert {w["metadata"]["name"] for w in bodies[0]["workloads"]} == {
        w["metadata"]["name"] for w in two_tenants() if w["kind"] == "Workload"
    }
    web_to_db = next(r for r in agent.policy.rules if r.name == "web-to-db")
    assert db_index in web_to_db.src.workloads
    assert elapsed < 1.0, f"label change took {elapsed:.3f} s to reach the agent"


def record_bundles(agent: Agent) -> list[dict[str, Any]]:
    """The bundles the agent receives from now on, as they arrived."""
    bodies: list[dict[str, Any]] = []
    fetch = agent.client.bundle

    def recording(*args: Any, **kwargs: Any) -> dict[str, Any] | None:
        body = fetch(*args, **kwargs)
        if body is not None:
            bodies.append(body)
        return body

    agent.client.bundle = recording  # type: ignore[method-assign]
    return bodies


def test_an_identity_update_that_does_not_fit_the_running_policy_is_fetched_whole(
    tmp_path: Path, tokens: dict[str, str], agents: list[Agent]
) -> None:
    # control's store is replaced (restored from elsewhere): its version 1 is another policy than
    # the one the agent verified as version 1, so its Workloads alone cannot be trusted against it
    first = RunningControl(f"sqlite:///{tmp_path}/first.db", tmp_path / "tokens.json")
    agent, dataplane = start_agent(agents, first.url, tokens["host-a"], "host-a")
    commit(first, tokens, two_tenants(), "two tenants")
    assert agent.wait_for(lambda g: g.current is not None, 20)
    first.stop()

    second = RunningControl(f"sqlite:///{tmp_path}/second.db", tmp_path / "tokens.json", first.port)
    try:
        documents = two_tenants()
        find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/8443"]
        bodies = record_bundles(agent)
        assert commit(second, tokens, documents, "the other version 1") == 1
        running = client(second, tokens, "vera").get("/running")
        assert agent.wait_for(lambda g: g.current is not None and g.current.hash == running["hash"], 5)
        assert not agent.refused
        assert [sorted(b) for b in bodies] == [
            ["hash", "identity", "version", "workloads"],  # did not verify
            ["documents", "hash", "identity", "version"],
        ]  # so: whole
        assert dataplane.loaded[-1][0] == "policy"  # compiled whole, not as an identity update
        rule = next(r for r in dataplane.loaded[-1][1].rules if r.vsys == 1)
        assert [s.port_lo for s in rule.services] == [8443]

        # and the next identity update of this version fits: Workloads only, applied as identity
        db = find(two_tenants(), "Workload", "db-01")
        db["metadata"]["labels"] = {"tier": "web"}
        identity = client(second, tokens, "otto").put_workload("tenant-a", "db-01", db)["identity"]
        assert agent.wait_for(lambda g: g.current is not None and g.current.identity == identity, 5)
        assert "documents" not in bodies[-1] and dataplane.loaded[-1][0] == "identity"
    finally:
        second.stop()


def test_a_bundle_whose_hash_does_not_verify_is_refused_and_reported(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], agents: list[Agent]
) -> None:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    agent, dataplane = start_agent(agents, control.url, tokens["host-a"], "host-a")
    commit(control, tokens, two_tenants(), "two tenants")
    assert agent.wait_for(lambda g: g.current is not None, 20)
    documents = two_tenants()
    find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/8080"]
    commit(control, tokens, [find(documents, "SecurityPolicy", "main", "tenant-b")], "8080")
    assert agent.wait_for(lambda g: g.current is not None and g.current.version == 2, 20)
    control.stop()

    # while control is down, version 3 is committed (by another controller on the same store) and
    # then altered in the store behind control's back (an "allow everything")
    other = Control(open_store(sqlite_url))
    alice = Principal("alice", "security-admin")
    find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/8081"]
    other.apply(alice, [(find(documents, "SecurityPolicy", "main", "tenant-b"), "test")])
    assert other.commit(alice, "8081")["version"] == 3
    other.store.close()
    db = sqlite3.connect(sqlite_url.removeprefix("sqlite://"))
    stored = json.loads(db.execute("SELECT documents FROM versions WHERE number = 3").fetchone()[0])
    find(stored, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["from"] = ["any"]
    db.execute("UPDATE versions SET documents = ? WHERE number = 3", (json.dumps(stored),))
    db.commit()
    db.close()
    control = RunningControl(sqlite_url, tmp_path / "tokens.json", control.port)
    try:
        assert agent.wait_for(lambda g: g.refused, 15)  # a request in flight when control stopped times out first (5 s)
        assert agent.current is not None and agent.current.version == 2  # still enforcing the last good one
        assert [p.version for _, p in dataplane.loaded] == [1, 2]
        status = client(control, tokens, "vera").get("/status")
        host = status["hosts"][0]
        assert (host["version"], host["status"], host["problem_version"], host["current"]) == (2, "refused", 3, False)
        assert host["detail"].startswith("version 3: hash mismatch")
        assert status["summary"] == "version 3 on 0 of 1 hosts"
        audit = client(control, tokens, "alice").get("/audit")["entries"]
        assert any(e["action"] == "agent.refused" and e["target"] == "host-a" for e in audit)
    finally:
        control.stop()


def test_agent_keeps_its_bundle_while_control_is_down_and_resyncs(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], agents: list[Agent]
) -> None:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    commit(control, tokens, two_tenants(), "two tenants")
    agent, dataplane = start_agent(agents, control.url, tokens["host-a"], "host-a", cache_path=tmp_path / "bundle.json")
    assert agent.wait_for(lambda g: g.current is not None, 20)
    # the agent writes its cache after the ack, so after `current` is set: wait for it before control goes
    deadline = time.monotonic() + 5
    while not (tmp_path / "bundle.json").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    control.stop()
    deadline = time.monotonic() + 5
    while agent.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not agent.connected
    assert agent.current is not None and agent.current.version == 1 and len(dataplane.loaded) == 1

    # a dataplane restarted while control is down enforces the cached bundle
    restarted, restarted_dp = start_agent(
        agents, control.url, tokens["host-a"], "host-a", cache_path=tmp_path / "bundle.json"
    )
    assert restarted.current is not None and restarted.current.version == 1
    assert policy_digest(restarted_dp.loaded[0][1]) == policy_digest(dataplane.loaded[0][1])

    control = RunningControl(sqlite_url, tmp_path / "tokens.json", control.port)
    try:
        documents = two_tenants()
        find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/8080"]
        commit(control, tokens, [find(documents, "SecurityPolicy", "main", "tenant-b")], "8080")
        assert agent.wait_for(lambda g: g.current is not None and g.current.version == 2, 20)
        assert restarted.wait_for(lambda g: g.current is not None and g.current.version == 2, 5)
        assert wait_status(control, tokens, "version 2 on 1 of 1 hosts")["realized"] == 1
    finally:
        control.stop()
