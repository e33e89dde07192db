"""Fleet-wide sessions and rule hits through a real control (HTTP, store, roles) and the operations agents of
two in-process dataplane engines.

What a user would notice: a viewer sees every host's flows, a tenant's admin only those of its vsys (and is
refused another's), a clear ends the flows on the hosts it names and is audited, roles that may not are refused
(403, audited), a bad filter is one 400 naming the value, rule hits add up across hosts and `unused` names the
rule nobody hit, a host that does not answer is named.
"""

from __future__ import annotations

import copy
import ipaddress
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ngfw._fastpath import engine as fp
from ngfw.compiler.principals import user_principal
from ngfw.control.client import ControlError
from ngfw.control.validation import compile_documents
from ngfw.dataplane.opsagent import OperationsAgent
from ngfw.dataplane.rulehits import RuleHits
from ngfw.dataplane.sessions import SessionTable
from tests.support.control import RunningControl, client, find, two_tenants

WEB = ("02:00:00:00:01:01", "10.77.0.11")
DB = ("02:00:00:00:01:21", "10.77.0.21")
APP = ("02:00:00:00:02:01", "10.78.0.11")
OUTSIDE = ("02:00:00:00:09:99", "10.78.0.99")


def syn(src: tuple[str, str], dst: tuple[str, str], sport: int, dport: int) -> bytes:
    segment = struct.pack("!HHIIBBHHH", sport, dport, 100, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0x4000, 64, 6, 0, socket.inet_aton(src[1]), socket.inet_aton(dst[1])
    )
    return bytes.fromhex(dst[0].replace(":", "")) + bytes.fromhex(src[0].replace(":", "")) + b"\x08\x00" + ip + segment


class Host:
    """What the operations agent needs of `ngfw dataplane`: its session table and rule hit book."""

    def __init__(self, name: str, policy: Any) -> None:
        self.engine = fp.Engine(flow_capacity=4096)
        self.vm = self.engine.add_sink_port("vm", 0)
        self.engine.add_sink_port("up", 0)
        self.engine.set_tables(fp.Tables(policy, {}))
        self.host = name
        self.sessions = SessionTable(self.engine, lambda: {1: policy}, name)
        self.rule_hit_book = RuleHits()
        self.agent: OperationsAgent | None = None

    def read_rule_hits(self) -> None:
        self.rule_hit_book.observe(self.engine.tables)

    def open(self, src: tuple[str, str], dst: tuple[str, str], sport: int, dport: int) -> None:
        self.engine.inject(self.vm, syn(src, dst, sport, dport))


def documents() -> list[dict[str, Any]]:
    docs = two_tenants()
    find(docs, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"].append(
        {
            "name": "unused-ssh",
            "from": ["cidr:10.77.0.0/24"],
            "to": ["group:app"],
            "services": ["tcp/22"],
            "action": "allow",
        }
    )
    return docs


@pytest.fixture
def fleet(sqlite_url: str, tmp_path: Any, tokens: dict[str, str]) -> Iterator[dict[str, Any]]:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    docs = documents()
    alice = client(control, tokens, "alice")
    alice.apply_documents(copy.deepcopy(docs), ["test"] * len(docs))
    alice.commit("two tenants")
    policy = compile_documents(docs, 1, lint_it=False).policy
    hosts = {"host-a": Host("host-a", policy), "host-b": Host("host-b", policy)}
    # User-ID on host-a: alice is behind web-01 there (host-b knows no user)
    hosts["host-a"].engine.set_users(fp.UserTable([(ipaddress.ip_address(WEB[1]), user_principal("alice"))]))
    hosts["host-a"].open(WEB, APP, 40001, 80)  # tenant-a egress, tenant-b ingress
    hosts["host-a"].open(WEB, DB, 40002, 5432)  # tenant-a only
    hosts["host-b"].open(WEB, DB, 40003, 5432)
    hosts["host-b"].open(APP, OUTSIDE, 40004, 80)  # tenant-b only (its default deny)
    for name, host in hosts.items():
        host.agent = OperationsAgent(host, client(control, tokens, name), name, wait=2.0)
        host.agent.start()
    broker = control.control.operations
    deadline = time.monotonic() + 5
    while broker.connected() != set(hosts) and time.monotonic() < deadline:
        time.sleep(0.02)
    yield {"control": control, "tokens": tokens, **hosts}
    for host in hosts.values():
        assert host.agent is not None
        host.agent.stop()
    control.stop()


def sessions(fleet: dict[str, Any], who: str, **query: str) -> dict[str, Any]:
    return client(fleet["control"], fleet["tokens"], who).get("/sessions", **query)  # type: ignore[no-any-return]


def flows(answer: dict[str, Any]) -> list[tuple[str, int]]:
    return sorted((h["host"], s["src_port"]) for h in answer["hosts"] for s in h.get("sessions", []))


def test_a_viewer_sees_every_hosts_flows_and_a_tenant_admin_only_its_vsys(fleet: dict[str, Any]) -> None:
    everything = sessions(fleet, "vera")
    assert flows(everything) == [("host-a", 40001), ("host-a", 40002), ("host-b", 40003), ("host-b", 40004)]
    assert everything["missing"] == []
    record = next(s for h in everything["hosts"] for s in h["sessions"] if s["src_port"] == 40001)
    assert (record["host"], record["src_vm"], record["dest_vm"], record["rule"], record["rule_ingress"]) == (
        "host-a",
        "web-01",
        "app-01",
        "web-to-b",
        "a-to-app-http",
    )
    # tina administers tenant-a: the cross-tenant flow is hers too, app-01's own flow is not
    assert flows(sessions(fleet, "tina")) == [("host-a", 40001), ("host-a", 40002), ("host-b", 40003)]
    assert flows(sessions(fleet, "vera", vm="db-01", host="host-b")) == [("host-b", 40003)]
    with pytest.raises(ControlError) as other:
        sessions(fleet, "tina", vsys="tenant-b")
    assert other.value.status == 403 and "vsys 'tenant-b' is not yours" in other.value.body["error"]
    with pytest.raises(ControlError) as operator:
        sessions(fleet, "otto")
    assert operator.value.status == 403 and "vm-operator cannot read sessions" in operator.value.body["error"]


def test_the_user_filter_selects_flows_by_the_user_behind_the_client_on_every_host(fleet: dict[str, Any]) -> None:
    assert flows(sessions(fleet, "vera", user="Alice")) == [("host-a", 40001), ("host-a", 40002)]
    assert flows(sessions(fleet, "vera", user="unknown")) == [("host-b", 40003), ("host-b", 40004)]
    assert flows(sessions(fleet, "vera", user="bob")) == []
    assert sessions(fleet, "vera", user="Alice")["filter"] == {"user": "alice"}
    with pytest.raises(ControlError) as bad:
        sessions(fleet, "vera", user="al ice")
    assert bad.value.status == 400 and "user=al ice: must be a user name" in bad.value.body["error"]


def test_paging_through_control_one_host_at_a_time(fleet: dict[str, Any]) -> None:
    page = sessions(fleet, "vera", limit="1")
    got = flows(page)
    assert len(got) == 2  # one per host
    for entry in page["hosts"]:
        cursor = entry["cursor"]
        while cursor:
            more = sessions(fleet, "vera", limit="1", host=entry["host"], cursor=str(cursor))
            got += flows(more)
            cursor = more["hosts"][0]["cursor"]
    assert sorted(got) == [("host-a", 40001), ("host-a", 40002), ("host-b", 40003), ("host-b", 40004)]
    with pytest.raises(ControlError, match="give host= with it"):
        sessions(fleet, "vera", cursor="5")


def test_clearing_follows_roles_and_is_audited(fleet: dict[str, Any]) -> None:
    control, tokens = fleet["control"], fleet["tokens"]
    with pytest.raises(ControlError) as viewer:
        client(control, tokens, "vera").post("/sessions/clear", {"filter": {"vm": "web-01"}})
    assert viewer.value.status == 403
    # tina clears "app-01": only what is hers of it (the cross-tenant flow), not app-01's own flow on host-b
    done = client(control, tokens, "tina").post("/sessions/clear", {"filter": {"vm": "app-01"}})
    assert (done["cleared"], done["filter"]) == (1, {"vsys": "tenant-a", "vm": "app-01"})
    assert flows(sessions(fleet, "vera")) == [("host-a", 40002), ("host-b", 40003), ("host-b", 40004)]
    # an admin, one host
    done = client(control, tokens, "alice").post("/sessions/clear", {"filter": {"port": "5432"}, "host": "host-b"})
    assert done["cleared"] == 1 and [h["host"] for h in done["hosts"]] == ["host-b"]
    assert flows(sessions(fleet, "vera")) == [("host-a", 40002), ("host-b", 40004)]
    with pytest.raises(ControlError, match='"all": true'):
        client(control, tokens, "alice").post("/sessions/clear", {"filter": {}})
    audit = client(control, tokens, "alice").get("/audit", limit=20)["entries"]
    cleared = [(e["who"], e["outcome"], e["target"]) for e in audit if e["action"] == "sessions.clear"]
    assert ("tina", "ok", "vsys=tenant-a vm=app-01") in cleared and ("alice", "ok", "port=5432") in cleared
    assert ("vera", "denied", "") in cleared


def test_a_bad_filter_is_one_400_naming_the_value(fleet: dict[str, Any]) -> None:
    for query, message in (
        ({"port": "http"}, "port=http: a port is a number from 0 to 65535"),
        ({"src": "10.0.0.999"}, "src=10.0.0.999: '10.0.0.999' is not an IP address"),
        ({"vm": "web-99"}, "vm=web-99: no workload named 'web-99'"),
        ({"limit": "0"}, "limit must be an integer from 1 to 5000"),
    ):
        with pytest.raises(ControlError) as bad:
            sessions(fleet, "vera", **query)
        assert bad.value.status == 400 and message in bad.value.body["error"]


def test_rule_hits_add_up_across_hosts_and_unused_names_the_rule_nobody_hit(fleet: dict[str, Any]) -> None:
    hits = {(r["vsys"], r["rule"]): r for r in sessions_hits(fleet, "vera")["rules"]}
    to_db = hits[("tenant-a", "web-to-db")]
    assert to_db["hits"] == 2 and set(to_db["hosts"]) == {"host-a", "host-b"} and to_db["last"] is not None
    assert hits[("tenant-b", "a-to-app-http")]["hits"] == 1
    assert hits[("tenant-b", "unused-ssh")]["hits"] == 0
    unused = client(fleet["control"], fleet["tokens"], "vera").get("/rules/unused", days="30")
    assert [(u["vsys"], u["rule"]) for u in unused["unused"]] == [("tenant-b", "unused-ssh")]
    assert unused["hosts"] == ["host-a", "host-b"] and unused["missing"] == []
    mine = client(fleet["control"], fleet["tokens"], "tina").get("/rules/unused", days="30")
    assert mine["unused"] == []  # tenant-a's rules only, all hit
    assert {r["vsys"] for r in sessions_hits(fleet, "tina")["rules"]} == {"tenant-a"}


def sessions_hits(fleet: dict[str, Any], who: str) -> dict[str, Any]:
    return client(fleet["control"], fleet["tokens"], who).get("/rules/hits")  # type: ignore[no-any-return]


def test_a_host_that_does_not_answer_is_named(fleet: dict[str, Any]) -> None:
    fleet["control"].control.operations.timeout = 1.0
    agent = fleet["host-b"].agent
    agent.stop()
    time.sleep(2.5)  # its last long-poll ends
    answer = sessions(fleet, "vera")
    assert flows(answer) == [("host-a", 40001), ("host-a", 40002)]
    assert answer["missing"] == [{"host": "host-b", "reason": "its dataplane did not answer within 1 s"}]
