"""`--workers N` without a kernel: an EngineGroup of two workers on memory ports, whose `inject` plays the fanout
with the extension's copy of the fanout program's hash (bpf/shard.h; tests/netns/test_workers.py checks the
kernel's agrees). What a user would notice: both directions of every flow on one worker, flows spread over both,
counters and EVE records of both, `ngfw sessions` listing every flow across the workers page by page, a policy
that denies a flow stopping it on every worker once acknowledged, and session records going back to the worker
their frames go to.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from ngfw._fastpath import wirebpf
from ngfw.dataplane.sessions import SessionFilter, SessionTable
from ngfw.dataplane.workers import EngineGroup, WorkersError, check_workers, flow_hash, merge_stats
from tests.support.fastpath import SRV_IP, SRV_MAC, WEB1_IP, WEB1_MAC, fp, srv_to_web1, tcp, web1_to_srv
from tests.support.policies import lab_with_rules

S = 1_000_000_000
FLOWS = 64

ALLOW = """
- {name: web-to-server, from: [group:web], to: [cidr:10.77.0.100/32], services: [tcp/1-65535], action: allow, log: true}
"""
DENY = """
- {name: web-to-server, from: [group:web], to: [cidr:10.77.0.100/32], services: [tcp/1-65535], action: deny, log: true}
"""


class Group:
    """Two workers behind one wire of memory ports, and the policies by generation as the dataplane keeps them."""

    def __init__(self, tmp_path: Path, capacity: int = 4096) -> None:
        self.tmp = tmp_path
        self.engine = EngineGroup(fp, 2, capacity, None)
        self.vm = self.engine.add_memory_port("vm", 0)
        self.up = self.engine.add_memory_port("up", 0)
        self.generations: dict[int, Any] = {}
        self.version = 0

    def load(self, rules: str) -> None:
        self.version += 1
        policy = lab_with_rules(self.tmp, rules, version=self.version, name=f"p{self.version}.yaml")
        tables = self.engine.build_tables(policy, {"vm": self.vm, "up": self.up}, None, self.version, None)
        self.engine.set_tables(tables)
        self.generations[self.version] = policy

    def handshake(self, sport: int, now: int = 10 * S) -> tuple[int, int]:
        """A connection web-01:sport -> server:80; returns how many frames crossed each way."""
        self.engine.inject(self.vm, bytes(web1_to_srv(tcp(sport, 80, "S", seq=100))), now)
        out = len(self.engine.take_tx(self.up))
        self.engine.inject(self.up, bytes(srv_to_web1(tcp(80, sport, "SA", seq=500, ack=101))), now)
        back = len(self.engine.take_tx(self.vm))
        self.engine.inject(self.vm, bytes(web1_to_srv(tcp(sport, 80, "A", seq=101, ack=501))), now)
        out += len(self.engine.take_tx(self.up))
        return out, back

    def data(self, sport: int, now: int) -> tuple[int, int]:
        """One segment each way of an established connection: how many were forwarded."""
        self.engine.inject(self.vm, bytes(web1_to_srv(tcp(sport, 80, "PA", seq=101, ack=501, payload=b"x"))), now)
        out = len(self.engine.take_tx(self.up))
        self.engine.inject(self.up, bytes(srv_to_web1(tcp(80, sport, "PA", seq=501, ack=102, payload=b"y"))), now)
        return out, len(self.engine.take_tx(self.vm))


def expected_worker(sport: int) -> int:
    return flow_hash(WEB1_IP, SRV_IP, sport, 80, 6) % 2


def test_both_directions_of_a_flow_hash_alike_and_flows_spread() -> None:
    workers = set()
    for sport in range(40000, 40000 + FLOWS):
        there = bytes(web1_to_srv(tcp(sport, 80, "S")))
        back = bytes(srv_to_web1(tcp(80, sport, "SA")))
        assert wirebpf.flow_hash_frame(there) == wirebpf.flow_hash_frame(back)
        assert wirebpf.flow_hash_frame(there) == flow_hash(WEB1_IP, SRV_IP, sport, 80, 6)
        workers.add(expected_worker(sport))
    assert workers == {0, 1}


def test_a_fragmented_udp_flow_and_its_icmp_errors_stay_on_its_worker() -> None:
    from scapy.layers.inet import ICMP, IP, UDP, fragment
    from scapy.layers.l2 import Ether

    datagram = Ether(src=WEB1_MAC, dst=SRV_MAC) / IP(src=WEB1_IP, dst=SRV_IP) / UDP(sport=5353, dport=53)
    whole = wirebpf.flow_hash_frame(bytes(datagram / (b"q" * 20)))
    big = IP(src=WEB1_IP, dst=SRV_IP) / UDP(sport=5353, dport=53) / (b"q" * 3000)
    for piece in fragment(big, fragsize=1000):
        assert wirebpf.flow_hash_frame(bytes(Ether(src=WEB1_MAC, dst=SRV_MAC) / piece)) == whole
    # a router's "port unreachable" about the TCP flow quotes its header: it follows the flow, not its addresses
    quoted = IP(src=WEB1_IP, dst=SRV_IP) / tcp(40001, 80, "S")
    error = Ether() / IP(src="192.0.2.1", dst=WEB1_IP) / ICMP(type=3, code=3) / bytes(quoted)[:28]
    assert wirebpf.flow_hash_frame(bytes(error)) == flow_hash(WEB1_IP, SRV_IP, 40001, 80, 6)


def test_flows_land_on_their_worker_and_are_read_as_one(tmp_path: Path) -> None:
    g = Group(tmp_path)
    g.load(ALLOW)
    for sport in range(40000, 40000 + FLOWS):
        assert g.handshake(sport) == (2, 1), sport
    per_worker = g.engine.worker_stats()
    assert sum(w["flows_active"] for w in per_worker) == FLOWS
    assert all(w["flows_active"] > 0 for w in per_worker), per_worker
    for k, worker in enumerate(g.engine.workers):
        for flow in worker.flows():
            assert expected_worker(flow["src_port"]) == k, flow
    stats = g.engine.stats()
    assert stats["flows_active"] == FLOWS
    assert stats["ports"][0]["rx_packets"] == 2 * FLOWS  # SYN and ACK of each, whichever worker took them
    assert sum(g.engine.tables.rule_hits()) == FLOWS
    # `ngfw sessions`: every flow once, pages crossing from the first worker's table to the second's
    table = SessionTable(g.engine, lambda: g.generations, "host-a")
    listed = list(table.iterate(SessionFilter(), page_size=5))
    assert sorted(r["src_port"] for r in listed) == list(range(40000, 40000 + FLOWS))
    # EVE: flow records of both workers' flows, from one drain
    g.engine.end_all_flows()
    flows = [e for e in g.engine.drain_events() if e["event"] == "flow"]
    assert len(flows) == FLOWS


def test_a_deny_reaches_every_worker_before_it_is_acknowledged(tmp_path: Path) -> None:
    g = Group(tmp_path)
    g.load(ALLOW)
    sports = range(41000, 41000 + 16)
    for sport in sports:
        g.handshake(sport)
    assert {expected_worker(s) for s in sports} == {0, 1}
    assert all(g.data(s, 11 * S) == (1, 1) for s in sports)
    g.load(DENY)  # returns once both workers use it
    for sport in sports:
        assert g.data(sport, 12 * S) == (0, 0), f"flow {sport} on worker {expected_worker(sport)} still forwarded"
    assert g.handshake(42000, 13 * S) == (0, 0)


def test_exported_sessions_go_back_to_their_worker(tmp_path: Path) -> None:
    g = Group(tmp_path)
    g.load(ALLOW)
    for sport in range(43000, 43000 + 32):
        g.handshake(sport)
    out = g.engine.export_sessions(now_ns=11 * S)  # the engines' clock is the test's
    assert out["count"] == 32
    other = Group(tmp_path / "b")
    (tmp_path / "b").mkdir()
    other.load(ALLOW)
    parts = other.engine.route_records(out["records"])
    for k, part in enumerate(parts):
        for record in fp.decode_records(part):
            assert flow_hash(str(record["src_ip"]), str(record["dest_ip"]), record["src_port"], 80, 6) % 2 == k
    result = other.engine.import_sessions(out["records"], now_ns=11 * S)
    assert sum(result["results"].values()) == 32, result
    assert all(w["flows_active"] == len(fp.decode_records(p)) for w, p in zip(other.engine.worker_stats(), parts))
    # an imported flow goes on where its frames arrive: the next segment is forwarded both ways
    assert all(other.data(s, 20 * S) == (1, 1) for s in range(43000, 43000 + 32))


def test_counters_of_workers_add_up() -> None:
    merged = merge_stats(
        [
            {"flows_active": 2, "ports": [{"name": "a", "rx_packets": 3}], "drops": {"x": 1}, "inspect": {"on": True}},
            {"flows_active": 5, "ports": [{"name": "a", "rx_packets": 4}], "drops": {"x": 2, "y": 1}},
        ]
    )
    assert merged == {
        "flows_active": 7,
        "ports": [{"name": "a", "rx_packets": 7}],
        "drops": {"x": 3, "y": 1},
        "inspect": {"on": True},
    }


@pytest.mark.parametrize(
    ("workers", "taps", "segments", "named"),
    [
        (2, ["tap0"], {}, "--tap tap0"),
        (2, [], {"lan": ["a", "b"]}, "--segment lan"),
        (0, [], {}, "--workers 0"),
    ],
)
def test_what_workers_do_not_support_is_refused_by_name(
    workers: int, taps: list[str], segments: dict[str, list[str]], named: str
) -> None:
    with pytest.raises(WorkersError, match=named):
        check_workers(workers, taps, segments)
    if workers:
        check_workers(1, taps, segments)  # one worker: everything as before


def test_ipv6_flows_hash_symmetrically() -> None:
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether

    a, b = "fd77::11", "fd77::100"
    there = Ether() / IPv6(src=a, dst=b) / tcp(40000, 443, "S")
    back = Ether() / Dot1Q(vlan=7) / IPv6(src=b, dst=a) / tcp(443, 40000, "SA")
    assert wirebpf.flow_hash_frame(bytes(there)) == wirebpf.flow_hash_frame(bytes(back))
    assert wirebpf.flow_hash_frame(bytes(there)) == flow_hash(a, b, 40000, 443, 6)
    assert ipaddress.ip_address(a).version == 6


def test_a_vsys_session_limit_holds_across_workers(tmp_path: Path) -> None:
    """maxSessions 4 with two workers: each enforces half, so the vsys never holds more than 4 flows however its
    connections hash (a worker may refuse while the other has room: the limit is a ceiling, never exceeded)."""
    from tests.unit.fastpath.test_fastpath_tenancy import DB, WEB1, tenants

    policy = tenants(tmp_path, a="{maxSessions: 4}")
    group = EngineGroup(fp, 2, 4096, None)
    vm, up = group.add_memory_port("vm", 0), group.add_memory_port("up", 0)
    group.set_tables(group.build_tables(policy, {"vm": vm, "up": up}, None, 1, None))
    assert group.tables.policy is policy  # names and quotas as compiled, for the dataplane and `ngfw sessions`
    opened = 0
    for sport in range(40000, 40040):
        group.inject(vm, bytes(syn_to(WEB1, DB, sport)), 10 * S)
        opened += len(group.take_tx(up))
    assert opened == 4
    tenant = group.stats()["vsys"]["tenant-a"]
    assert (tenant["sessions"], tenant["max_sessions"]) == (4, 4)
    assert tenant["drops"]["vsys_session_limit"] == 36


def syn_to(src: tuple[str, str], dst: tuple[str, str], sport: int) -> bytes:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=src[0], dst=dst[0]) / IP(src=src[1], dst=dst[1]) / tcp(sport, 5432, "S"))


def test_clearing_sessions_ends_them_on_every_worker(tmp_path: Path) -> None:
    g = Group(tmp_path)
    g.load(ALLOW)
    for sport in range(44000, 44000 + 24):
        g.handshake(sport)
    table = SessionTable(g.engine, lambda: g.generations, "host-a", scan=64)  # several requests per worker
    done = table.clear(SessionFilter(), silent=True)
    assert done.cleared == 24
    assert [w["flows_active"] for w in g.engine.worker_stats()] == [0, 0]
    assert list(table.iterate(SessionFilter())) == []


def test_state_of_another_worker_count_is_set_aside(caplog: pytest.LogCaptureFixture) -> None:
    """Each worker's table lives in worker-K/ of the state directory; a dataplane with another worker count than
    the one that wrote them does not continue them (their flows hash to other workers): set aside, said once."""
    import shutil
    import tempfile

    from ngfw.dataplane.state import StateStore
    from ngfw.dataplane.workers import worker_state_stores

    top_dir = Path(tempfile.mkdtemp(prefix="ngfw-state-test-", dir="/dev/shm"))
    try:
        layout = fp.state_layout(256, 256)

        def run(workers: int) -> list[bool]:
            """Start with `workers` loops: which found a table to continue; then leave tables as a crash would."""
            top = StateStore(top_dir, "host-a")
            stores = worker_state_stores(top, workers, "host-a")
            found = [s.find_previous(layout["fingerprint"], fp.record_format()).table is not None for s in stores]
            for s in stores:
                s.create_table(layout, ["fw-vm", "fw-up"])
                s.commit_table()
                s.close()
            if stores[0] is not top:
                top.close()
            return found

        assert run(2) == [False, False]
        assert sorted(p.name for p in top_dir.iterdir()) == ["lock", "worker-0", "worker-1", "workers"]
        caplog.clear()
        assert run(2) == [True, True]  # the same count: each worker continues its own
        assert "set aside" not in caplog.text
        assert run(3) == [False, False, False]
        assert "dataplane with 2 worker(s) set aside" in caplog.text
        assert (top_dir / "worker-0" / "flows.state.refused").exists()
        caplog.clear()
        assert run(1) == [False]
        assert "dataplane with 3 worker(s) set aside" in caplog.text
        assert run(1) == [True]
    finally:
        shutil.rmtree(top_dir, ignore_errors=True)
