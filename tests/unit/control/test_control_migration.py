"""Live migration through a real control (HTTP, store, roles) between two in-process dataplane engines.

Each "host" is a real fastpath Engine with memory ports and the real MigrationAgent; what a user would
notice is checked: after the move, the destination forwards the moved workload's established connections
(without their sessions it drops them as mid-stream garbage), the source hands them over unlogged, control
reports the migration done with its counts, and bad requests get a clear 4xx and an audit entry. The
same protocol with real dataplanes in namespaces is tests/netns/test_migration.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from ngfw._fastpath import engine as fp
from ngfw.control.client import ControlError
from ngfw.control.validation import compile_documents
from ngfw.dataplane.migration import MigrationAgent
from tests.support.control import RunningControl, client, two_tenants

WEB, WEB_IP = "02:00:00:00:01:01", "10.77.0.11"
APP, APP_IP = "02:00:00:00:02:01", "10.78.0.11"
S = 1_000_000_000


class HostDataplane:
    """What MigrationAgent needs of `ngfw dataplane`: an engine with the policy, arrivals from its events."""

    fp = fp
    eve = None

    def __init__(self, policy: Any) -> None:
        self.engine = fp.Engine(flow_capacity=4096)
        self.vm = self.engine.add_memory_port("vm", 0)
        self.up = self.engine.add_memory_port("up", 0)
        self.engine.set_port_vm_side(self.vm, True)
        self.engine.set_tables(fp.Tables(policy, {"vm": self.vm, "up": self.up}))
        self.policy = policy
        self.arrival_listeners: list[Callable[[str, str, float], None]] = []
        self.migration_agent: MigrationAgent | None = None

    def from_vm(self, frame: Ether) -> list[bytes]:
        self.engine.inject(self.vm, bytes(frame))
        self.drain()
        return self.engine.take_tx(self.up)

    def from_up(self, frame: Ether) -> list[bytes]:
        self.engine.inject(self.up, bytes(frame))
        self.drain()
        return self.engine.take_tx(self.vm)

    def drain(self) -> None:
        for event in self.engine.drain_events():
            if event["event"] == "arrival":
                wl = self.policy.workloads[event["workload"]]
                for listener in self.arrival_listeners:
                    listener(self.policy.vsys_name(wl.vsys), wl.name, event["time"])


def to_app(sport: int, flags: str, seq: int, ack: int = 0, payload: bytes = b"") -> Ether:
    segment = TCP(sport=sport, dport=80, flags=flags, seq=seq, ack=ack)
    return Ether(src=WEB, dst=APP) / IP(src=WEB_IP, dst=APP_IP) / (segment / payload if payload else segment)


def from_app(dport: int, flags: str, seq: int, ack: int) -> Ether:
    return (
        Ether(src=APP, dst=WEB) / IP(src=APP_IP, dst=WEB_IP) / TCP(sport=80, dport=dport, flags=flags, seq=seq, ack=ack)
    )


def connect(host: HostDataplane, sport: int) -> None:
    assert host.from_vm(to_app(sport, "S", 100))
    assert host.from_up(from_app(sport, "SA", 500, 101))
    assert host.from_vm(to_app(sport, "A", 101, 501))


@pytest.fixture
def lab(sqlite_url: str, tmp_path: Any, tokens: dict[str, str]) -> Iterator[dict[str, Any]]:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    documents = two_tenants()
    alice = client(control, tokens, "alice")
    alice.apply_documents(documents, ["test"] * len(documents))
    alice.commit("two tenants")
    policy = compile_documents(documents, 1, lint_it=False).policy
    hosts = {"host-a": HostDataplane(policy), "host-b": HostDataplane(policy)}
    agents = []
    for name, host in hosts.items():
        agent = MigrationAgent(host, client(control, tokens, name), name, wait=2.0)
        host.migration_agent = agent
        agent.start()
        agents.append(agent)
    # both agents are polling: control sees both hosts connected
    deadline = time.monotonic() + 5
    while not all(control.control.migrations.connected(h) for h in hosts) and time.monotonic() < deadline:
        time.sleep(0.02)
    yield {"control": control, "tokens": tokens, **hosts}
    for agent in agents:
        agent.stop()
    control.stop()


def wait_location(control: RunningControl, host: str, workload: str = "web-01") -> None:
    """Hosts report a workload's first frame in the background: wait until control knows where it is."""
    deadline = time.monotonic() + 5
    while control.control.migrations.location("tenant-a", workload) != host and time.monotonic() < deadline:
        time.sleep(0.01)
    assert control.control.migrations.location("tenant-a", workload) == host


def wait_migration(control: RunningControl, tokens: dict[str, str], state: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        migrations = client(control, tokens, "vera").get("/migrations")["migrations"]
        if migrations and migrations[0]["state"] == state or time.monotonic() > deadline:
            return migrations[0] if migrations else {}
        time.sleep(0.02)


def test_an_announced_move_takes_the_sessions_along(lab: dict[str, Any]) -> None:
    control, tokens, a, b = lab["control"], lab["tokens"], lab["host-a"], lab["host-b"]
    for port in (40000, 40001, 40002):
        connect(a, port)
    wait_location(control, "host-a")
    a.from_vm(to_app(40000, "PA", 101, 501, b"GET / HTTP/1.1\r\nHost: app\r\n\r\n"))
    # without the sessions, a dataplane drops the connection's segments (strict TCP state)
    assert HostDataplane(a.policy).from_vm(to_app(40001, "A", 101, 501)) == []

    started = client(control, tokens, "otto").post("/migrations", {"workload": "web-01", "to": "host-b"})["migration"]
    assert (started["from"], started["to"], started["mode"]) == ("host-a", "host-b", "announced")
    precopied = wait_migration(control, tokens, "precopied")
    assert precopied["phases"]["precopy"]["sent"]["count"] == 3
    deadline = time.monotonic() + 5  # sent is not imported yet: wait for the destination's result
    while "results" not in precopied["phases"]["precopy"] and time.monotonic() < deadline:
        time.sleep(0.01)
        precopied = wait_migration(control, tokens, "precopied")
    assert precopied["phases"]["precopy"]["results"] == {"imported": 3}
    # meanwhile: one connection is reset at the source (its end is logged there)
    a.from_vm(to_app(40002, "R", 101))
    a.engine.expire(a.engine.clock_ns() + 6 * S)
    # the guest moves: its first frame on host-b's VM side passes at once (the precopy is there)
    assert b.from_vm(to_app(40000, "PA", 131, 501, b"more"))
    done = wait_migration(control, tokens, "done")
    assert done["state"] == "done", done
    assert (done["sessions_moved"], done["sessions_lost"]) == (2, 0)
    assert done["transfer_seconds"] is not None and done["transfer_seconds"] < 5
    # the connections go on, the server's answers too; the ended one did not come back
    assert b.from_vm(to_app(40000, "PA", 135, 501, b"again"))
    assert b.from_up(from_app(40001, "A", 501, 101))
    assert sorted(f["src_port"] for f in b.engine.flows()) == [40000, 40001]
    assert [f["app_proto"] for f in b.engine.flows() if f["src_port"] == 40000] == ["http"]
    # the source handed them over: they linger unlogged, then go
    a.engine.expire(a.engine.clock_ns() + 20 * S)
    assert a.engine.flows() == [] and a.engine.stats()["flows_handed_over"] == 2
    assert b.migration_agent.migrations == {"done": 1}
    status = client(control, tokens, "vera").get("/status")
    assert status["migrations_active"] == [] and status["migrations_recent"][0]["id"] == started["id"]


def test_an_unannounced_move_is_noticed_and_pulled(lab: dict[str, Any]) -> None:
    control, tokens, a, b = lab["control"], lab["tokens"], lab["host-a"], lab["host-b"]
    connect(a, 41000)
    wait_location(control, "host-a")
    assert b.from_vm(to_app(41000, "A", 101, 501)) == []  # the guest shows up on host-b, mid-connection
    done = wait_migration(control, tokens, "done")
    assert (done["mode"], done["from"], done["to"], done["sessions_moved"]) == ("unannounced", "host-a", "host-b", 1)
    assert b.from_vm(to_app(41000, "A", 101, 501))
    audit = client(control, tokens, "alice").get("/audit")["entries"]
    assert any(e["action"] == "migration.detected" for e in audit)


def test_a_move_to_a_host_without_a_dataplane_fails_and_is_reported(lab: dict[str, Any]) -> None:
    control, tokens = lab["control"], lab["tokens"]
    lab["host-b"].migration_agent.stop()
    deadline = time.monotonic() + 10
    while control.control.migrations.connected("host-b") and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(ControlError) as info:
        client(control, tokens, "otto").post("/migrations", {"workload": "web-01", "to": "host-b"})
    assert info.value.status == 409 and "host-b has no connected dataplane" in info.value.body["error"]
    assert info.value.body["migration"]["state"] == "failed"


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"workload": "web-99", "to": "host-b"}, 404, "workload web-99 does not exist"),
        ({"workload": "web-01", "to": "host-z"}, 404, "host 'host-z' is unknown to control"),
        ({"workload": "web-01", "to": "host-a"}, 409, "is on host-a already"),
        ({"to": "host-b"}, 400, "a migration names its workload"),
    ],
)
def test_bad_migration_requests_are_refused_and_audited(
    lab: dict[str, Any], body: dict[str, Any], status: int, message: str
) -> None:
    control, tokens = lab["control"], lab["tokens"]
    with pytest.raises(ControlError) as info:
        client(control, tokens, "otto").post("/migrations", body)
    assert info.value.status == status and message in info.value.body["error"]
    if status != 400:
        entries = client(control, tokens, "alice").get("/audit")["entries"]
        assert entries[0]["action"] == "migration.request" and entries[0]["outcome"] in ("rejected", "failed")


def test_a_role_without_the_right_cannot_migrate(lab: dict[str, Any]) -> None:
    control, tokens = lab["control"], lab["tokens"]
    for name in ("vera", "host-a"):
        with pytest.raises(ControlError) as info:
            client(control, tokens, name).post("/migrations", {"workload": "web-01", "to": "host-b"})
        assert info.value.status == 403
    # a host may not pose as the other in the protocol either
    with pytest.raises(ControlError) as info:
        client(control, tokens, "host-a").post("/arrivals", {"host": "host-b", "workloads": []})
    assert info.value.status == 403


def test_a_source_that_dies_mid_transfer_fails_the_migration(lab: dict[str, Any], monkeypatch: Any) -> None:
    control, tokens, a, b = lab["control"], lab["tokens"], lab["host-a"], lab["host-b"]
    connect(a, 42000)
    wait_location(control, "host-a")
    monkeypatch.setattr("ngfw.control.migrations.SOURCE_TIMEOUT", 0.5)
    a.migration_agent.handle = lambda task: None  # alive enough to poll, never answers (a wedged exporter)
    b.from_vm(to_app(42000, "A", 101, 501))
    failed = wait_migration(control, tokens, "failed")
    assert "did not send the sessions" in failed["detail"]
    assert b.from_vm(to_app(42000, "A", 101, 501)) == []  # nothing got in: fresh state, strict TCP
    deadline = time.monotonic() + 5  # the destination hears of the failure by its next poll
    while b.migration_agent.migrations != {"failed": 1} and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b.migration_agent.migrations == {"failed": 1}
