"""User-ID on a host: mappings, owners and directory groups become the packet loop's user table; a flow a
`users:` rule allowed is decided again when the user behind its address changes or its mapping ends."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ngfw.dataplane.eve import eve_record
from ngfw.dataplane.runner import Dataplane, PortPlan
from ngfw.dataplane.sessions import FilterError, SessionFilter
from tests.support.fastpath import IP, SRV_IP, SRV_MAC, WEB1_IP, WEB1_MAC, WEB2_IP, WEB2_MAC, Ether, tcp
from tests.support.policies import compile_documents

POLICY = """\
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-a}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: web-01, vsys: tenant-a}
spec: {interfaces: [{mac: "02:00:00:00:01:01", ips: ["10.77.0.11"]}]}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: desk-02, vsys: tenant-a}
spec: {interfaces: [{mac: "02:00:00:00:01:02", ips: ["10.77.0.12"]}], owner: alice}
---
apiVersion: ngfw/v1
kind: UserSource
metadata: {name: corp}
spec: {ldap: {url: "ldap://127.0.0.1:3389"}}
---
apiVersion: ngfw/v1
kind: UserGroup
metadata: {name: finance, vsys: tenant-a}
spec: {members: [alice], ldap: {dn: "cn=finance,ou=groups,dc=lab"}}
---
apiVersion: ngfw/v1
kind: SecurityPolicy
metadata: {name: main, vsys: tenant-a}
spec:
  rules:
    - {name: finance-web, from: [any], to: [cidr:10.77.0.100/32], services: [tcp/80], users: [group:finance],
       action: allow, log: true}
    - {name: rest, from: [any], to: [any], action: deny}
"""


class Host:
    def __init__(self, tmp_path: Path) -> None:
        self.dp = Dataplane(PortPlan())
        self.vm = self.dp.engine.add_memory_port("vm", 0)
        self.up = self.dp.engine.add_memory_port("up", 0)
        self.dp.load(compile_documents(tmp_path, POLICY))
        self.now = time.time()
        self.dp.users.clock = lambda: self.now

    def send(self, sport: int, flags: str = "S", mac: str = WEB1_MAC, ip: str = WEB1_IP) -> bool:
        """A segment from a workload to the server: did it pass?"""
        self.dp.engine.inject(
            self.vm, bytes(Ether(src=mac, dst=SRV_MAC) / IP(src=ip, dst=SRV_IP) / tcp(sport, 80, flags))
        )
        return len(self.dp.engine.take_tx(self.up)) == 1

    def map(self, user: str, ip: str = WEB1_IP, ttl: float | None = None) -> None:
        self.dp.users.apply({"put": [{"address": ip, "user": user, "expires": self.now + ttl if ttl else None}]})


def test_a_login_allows_and_a_logout_cuts(tmp_path: Path) -> None:
    host = Host(tmp_path)
    assert not host.send(40000)  # nobody is behind web-01: denied
    host.map("alice")
    assert host.send(40001)  # alice is in finance (a static member)
    assert host.send(40001, "A")
    host.map("bob")  # bob logs in on web-01 instead
    assert not host.send(40001, "A")  # the flow alice opened is decided again, and cut
    assert host.dp.engine.stats()["flows_user_redecided"] == 1
    from ngfw.dataplane.metrics import DataplaneCollector

    samples = {s.name: s.value for m in DataplaneCollector(host.dp).collect() for s in m.samples}
    assert samples["ngfw_flows_user_redecided_total"] == 1
    assert samples["ngfw_user_mappings"] == 2  # web-01's login and desk-02's owner
    assert not host.send(40002)
    host.map("alice")
    assert host.send(40003)
    host.dp.users.apply({"delete": [WEB1_IP]})  # logout
    assert not host.send(40003, "A")
    assert not host.send(40004)


def test_a_lifetime_ends_the_mapping(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.map("alice", ttl=60)
    assert host.send(40000)
    host.now += 30
    assert host.dp.users.expire() == 0
    assert host.send(40000, "A")
    host.now += 31
    assert host.dp.users.expire() == 1
    assert not host.send(40000, "A")
    assert host.dp.users.listing() == [{"address": WEB2_IP, "user": "alice", "source": "owner", "expires": None}]


def test_an_owner_is_the_user_unless_a_mapping_says_otherwise(tmp_path: Path) -> None:
    host = Host(tmp_path)
    assert host.send(40000, mac=WEB2_MAC, ip=WEB2_IP)  # desk-02 belongs to alice
    host.map("mallory", ip=WEB2_IP)
    assert not host.send(40000, "A", mac=WEB2_MAC, ip=WEB2_IP)
    host.dp.users.apply({"delete": [WEB2_IP]})
    assert host.send(40001, mac=WEB2_MAC, ip=WEB2_IP)  # the owner again


def test_directory_groups_come_with_the_mappings(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.map("dave")
    assert not host.send(40000)  # dave is no static member
    host.dp.users.apply({"groups": {"dave": ["tenant-a/finance"]}})
    assert host.send(40001)  # the directory says dave is in finance
    host.dp.users.apply({"groups": {}})  # and then that he left it
    assert not host.send(40001, "A")


def test_logs_and_sessions_name_the_user(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.map("alice")
    assert host.send(40000)
    [record] = list(host.dp.sessions.iterate(SessionFilter.parse([])))
    assert (record["src_user"], record["src_vm"]) == ("alice", "web-01")
    [flow] = host.dp.engine.flows()
    flow["user_name"] = host.dp.users.name_of(flow["user"])
    eve = eve_record(dict(flow, event="flow", end_reason="timeout"), host.dp.policy)
    assert (eve["src_user"], eve["src_user_match"], eve["rule"]) == ("alice", "group:finance", "finance-web")
    from ngfw.dataplane.eve_schema import problems

    assert problems([dict(eve, host="host-a")]) == []  # docs/eve-schema.json knows the fields (the writer adds host)


def test_sessions_filter_by_the_user_behind_the_client(tmp_path: Path) -> None:
    host = Host(tmp_path)
    assert not host.send(39999)  # nobody behind web-01 yet
    host.map("bob", ip=WEB2_IP)  # bob on desk-02 (over its owner)
    assert not host.send(41000, mac=WEB2_MAC, ip=WEB2_IP)  # bob is not in finance: denied
    host.map("alice")
    assert host.send(40001)

    def sports(*words: str) -> list[int]:
        return sorted(r["src_port"] for r in host.dp.sessions.iterate(SessionFilter.parse(list(words))))

    assert sports("user=alice") == sports("user=Alice") == [40001]
    assert sports("user=bob") == [41000]
    assert sports("user=bob", "action=deny") == [41000] and sports("user=bob", "action=allow") == []
    assert sports("user=known-user") == [40001, 41000]
    assert sports("user=unknown") == [39999]  # decided before alice logged in
    assert sports("user=carol") == []  # nobody of that name: no flows
    assert SessionFilter.parse({"user": "Alice"}).as_dict() == {"user": "alice"}  # as it travels to hosts
    with pytest.raises(FilterError, match=r"user=al ice: must be a user name"):
        SessionFilter.parse(["user=al ice"])


def test_a_hundred_thousand_mappings_cost_one_lookup_per_flow(tmp_path: Path) -> None:
    host = Host(tmp_path)
    many = [
        {"address": f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}", "user": f"user{i}", "expires": None}
        for i in range(100_000)
    ]
    started = time.perf_counter()
    host.dp.users.apply({"put": many})
    built = time.perf_counter() - started
    assert len(host.dp.users.table) == 100_001  # and desk-02's owner
    started = time.perf_counter()
    host.map("alice")  # one login among 100,000: a copy-on-write table
    one = time.perf_counter() - started
    assert host.send(40000)
    assert one < max(0.25, built / 4), (one, built)
