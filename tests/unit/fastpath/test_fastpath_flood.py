"""The flow table under a SYN flood: a full table keeps making room for new connections, fairly between
tenants; a SYN takes no inspection state; the memory a flood took goes back once it is over.

Frames go through engines with memory ports (no root). tests/netns/test_synflood.py floods a real dataplane.
"""

from __future__ import annotations

import math
import mmap
import os
import re
import struct
from pathlib import Path

import pytest

from ngfw.compiler.policy import load_policy
from ngfw.compiler.tables import CompiledPolicy
from tests.support.fastpath import (
    IP,
    SRV_IP,
    SRV_MAC,
    WEB1_IP,
    WEB1_MAC,
    WEB2_IP,
    WEB2_MAC,
    Ether,
    Wire,
    fp,
    srv_to_web1,
    tcp,
    web1_to_srv,
)
from tests.support.inspection import InspectWire, rule_sets, write_policy

S = 1_000_000_000
T0 = 10 * S
REPO = Path(__file__).resolve().parents[3]
WEB1 = (WEB1_MAC, WEB1_IP)
WEB2 = (WEB2_MAC, WEB2_IP)
SRV = (SRV_MAC, SRV_IP)
BACKUP = ("02:00:00:00:02:02", "10.78.0.22")  # two-tenants.yaml: tenant-b
DB = ("02:00:00:00:02:01", "10.78.0.21")  # tenant-b's database, which tenant-a's web tier may reach


def lab_without_rate_limit(tmp_path: Path) -> CompiledPolicy:
    """The lab policy without tenant-a's newSessionsPerSecond: these floods press on the table, not on the
    rate limit (which would refuse most of them before they reach it)."""
    text, n = re.subn(r"\n    newSessionsPerSecond: \d+", "", (REPO / "rules/examples/lab.yaml").read_text())
    assert n == 1
    (tmp_path / "lab.yaml").write_text(text)
    return load_policy(tmp_path / "lab.yaml")


def two_tenants_without_limits(tmp_path: Path) -> CompiledPolicy:
    text, n = re.subn(r"limits: \{[^}]*\}", "limits: {}", (REPO / "rules/examples/two-tenants.yaml").read_text())
    assert n == 2
    (tmp_path / "tenants.yaml").write_text(text)
    return load_policy(tmp_path / "tenants.yaml")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def syn(
    src: tuple[str, str], sport: int, dst: tuple[str, str] = SRV, dport: int = 80, seq: int = 1000, flags: int = 0x02
) -> bytes:
    """A TCP SYN (or `flags`) frame, built by hand: floods need tens of thousands, faster than scapy makes them."""
    sip, dip = bytes(map(int, src[1].split("."))), bytes(map(int, dst[1].split(".")))
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 64240, 0, 0)
    check = _checksum(sip + dip + struct.pack("!BBH", 0, 6, len(segment)) + segment)
    segment = segment[:16] + struct.pack("!H", check) + segment[18:]
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(segment), 1, 0, 64, 6, 0, sip, dip)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return _mac(dst[0]) + _mac(src[0]) + b"\x08\x00" + header + segment


def syns(src: tuple[str, str], first_port: int, count: int, dst: tuple[str, str] = SRV, dport: int = 80):
    """SYNs from source ports first_port, first_port + 1, ...: one template, its checksum updated (RFC 1624)."""
    template = syn(src, 0, dst, 0)
    unsummed = ~struct.unpack_from("!H", template, 50)[0] & 0xFFFF  # the segment's sum with both ports 0
    for sport in range(first_port, first_port + count):
        total = unsummed + sport + dport
        total = (total & 0xFFFF) + (total >> 16)
        yield (
            template[:34]
            + struct.pack("!HH", sport, dport)
            + template[38:50]
            + struct.pack("!H", ~total & 0xFFFF)
            + template[52:]
        )


def flood(
    w: Wire,
    src: tuple[str, str],
    first_port: int,
    count: int,
    now: int,
    dst: tuple[str, str] = SRV,
    dport: int = 80,
    from_vm: bool = True,
    step_ns: int = 1000,
) -> int:
    """`count` SYNs from `src` (source ports first_port, first_port + 1, ...) `step_ns` apart; returns the clock
    after them."""
    port = w.vm if from_vm else w.up
    for i, frame in enumerate(syns(src, first_port, count, dst, dport)):
        w.engine.inject(port, frame, now)
        now += step_ns
        if i % 1000 == 999 or i == count - 1:
            w.engine.take_tx(w.vm)  # what went through: forgotten (memory ports keep it until taken)
            w.engine.take_tx(w.up)
    return now


def flows_from(w: Wire, ip: str) -> list[dict]:
    return [f for f in w.engine.flows() if f["src_ip"] == ip]


# a flood's pace: 1,000,000 SYN/s (60 ms of them: early drop does not know the flood's rate yet, it takes the least
# recently seen half-open flow of the stretch it looks at) and 20,000 SYN/s (3 s: from the second second on, the
# first one at least half the table's turnover time old)
PACES = [pytest.param(1_000, id="1M-syn-per-s"), pytest.param(50_000, id="20k-syn-per-s")]


@pytest.mark.parametrize("step_ns", PACES)
def test_a_table_full_of_half_open_flows_always_makes_room_and_the_oldest_go(tmp_path: Path, step_ns: int) -> None:
    """60,000 SYNs through a table of 1,024: it turns over 58 times."""
    w = Wire(lab_without_rate_limit(tmp_path), flow_capacity=1024)
    flood(w, WEB1, 1024, 60_000, T0, step_ns=step_ns)
    stats = w.engine.stats()
    assert stats["flow_insert_failures"] == 0
    assert stats["flows_active"] == 1024 and stats["flows_early_dropped"] == 60_000 - 1024
    # what is left is the end of the flood: a half-open flow lasts about as long as the flood takes to bring a
    # tableful (ages counted in SYNs of the flood)
    ages = sorted(60_000 - (f["src_port"] - 1024) for f in w.engine.flows())
    assert ages[len(ages) // 2] <= 1024 and ages[-1] <= 8 * 1024
    # their flow records (the rule logs): 1,000 a second, so that a flood is no flood of records
    seconds = math.ceil((60_000 - 1024) * step_ns / 1e9)  # from the first early drop on
    dropped = [e for e in w.engine.drain_events(1 << 16) if e["event"] == "flow"]
    assert len(dropped) == 1000 * seconds and {e["end_reason"] for e in dropped} == {"early_drop"}
    assert stats["records_unlogged"] == 60_000 - 1024 - 1000 * seconds


def test_a_flood_towards_a_refused_port_writes_a_thousand_drop_records_a_second(tmp_path: Path) -> None:
    """default-deny logs: each new flow it refuses would be a record, and a flood brings one per SYN."""
    w = Wire(lab_without_rate_limit(tmp_path), flow_capacity=4096)
    now = flood(w, WEB1, 10_000, 5000, T0, dport=9999)
    drops = [e for e in w.engine.drain_events(1 << 16) if e["event"] == "drop"]
    stats = w.engine.stats()
    # (the 904 refused flows early drop ended to make room would have had a record each too)
    assert len(drops) == 1000 and stats["records_unlogged"] == 4000 + stats["flows_early_dropped"] == 4904
    # the next second, the next thousand; a conversation's record is always written
    flood(w, WEB1, 20_000, 5, now + S, dport=9999)
    assert len([e for e in w.engine.drain_events() if e["event"] == "drop"]) == 5


@pytest.mark.parametrize("step_ns", PACES)
def test_a_new_connection_gets_in_during_a_flood_and_then_stays(tmp_path: Path, step_ns: int) -> None:
    w = Wire(lab_without_rate_limit(tmp_path), flow_capacity=1024)
    now = flood(w, WEB1, 10_000, 30_000, T0, step_ns=step_ns)
    # web2's SYN gets in, and the flood's next quarter tableful does not push it out before the server answers
    assert len(w.from_vm(web1_to_srv(tcp(50_000, 80, "S", seq=100), WEB2_IP, WEB2_MAC), now)[0]) == 1
    now = flood(w, WEB1, 40_000, 256, now, step_ns=step_ns)
    assert len(flows_from(w, WEB2_IP)) == 1
    answer = Ether(src=SRV_MAC, dst=WEB2_MAC) / IP(src=SRV_IP, dst=WEB2_IP) / tcp(80, 50_000, "SA", seq=500, ack=101)
    assert len(w.from_up(answer, now)[0]) == 1
    assert len(w.from_vm(web1_to_srv(tcp(50_000, 80, "A", seq=101, ack=501), WEB2_IP, WEB2_MAC), now)[0]) == 1
    # established: no flood displaces it
    now = flood(w, WEB1, 40_256, 8192, now, step_ns=step_ns)
    (legit,) = flows_from(w, WEB2_IP)
    assert legit["tcp_state"] == "established"
    assert w.engine.stats()["flow_insert_failures"] == 0


@pytest.mark.parametrize("step_ns", PACES)
def test_a_handshake_the_server_answered_outlasts_the_syns_nobody_answered(tmp_path: Path, step_ns: int) -> None:
    """A client whose last ACK was lost (and its request with it) waits for its retransmission in syn_recv, long
    after the flood brought several tablefuls: the flood's unanswered SYNs go first."""
    w = Wire(lab_without_rate_limit(tmp_path), flow_capacity=1024)
    now = flood(w, WEB1, 10_000, 30_000, T0, step_ns=step_ns)
    assert len(w.from_vm(web1_to_srv(tcp(50_000, 80, "S", seq=100), WEB2_IP, WEB2_MAC), now)[0]) == 1
    answer = Ether(src=SRV_MAC, dst=WEB2_MAC) / IP(src=SRV_IP, dst=WEB2_IP) / tcp(80, 50_000, "SA", seq=500, ack=101)
    assert len(w.from_up(answer, now)[0]) == 1
    now = flood(w, WEB1, 40_000, 4 * 1024, now, step_ns=step_ns)
    request = tcp(50_000, 80, "PA", seq=101, ack=501, payload=b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(w.from_vm(web1_to_srv(request, WEB2_IP, WEB2_MAC), now)[0]) == 1
    (legit,) = flows_from(w, WEB2_IP)
    assert legit["tcp_state"] == "established"


def test_a_flooding_tenant_turns_over_its_own_half_open_flows_and_not_the_other_tenants(tmp_path: Path) -> None:
    """Two vsys, a share of 32 flows each: tenant-a (web-01) floods, tenant-b (backup-01) opens connections."""
    w = Wire(two_tenants_without_limits(tmp_path), flow_capacity=64)
    now = flood(w, WEB1, 10_000, 64, T0, dst=DB, dport=5432)
    # the table is full of tenant-a's half-open flows: tenant-b's new connections still get in
    for i in range(10):
        assert len(w.from_vm(syn(BACKUP, 20_000 + i, DB, 5432), now)[0]) == 1
        now += 1000
    sessions = {name: v["sessions"] for name, v in w.engine.stats()["vsys"].items()}
    assert sessions == {"tenant-a": 54, "tenant-b": 10}
    # the flood goes on: tenant-a, over its share, displaces only its own flows -- tenant-b's half-open ones
    # are now the oldest in the table, and stay
    now = flood(w, WEB1, 10_064, 500, now, dst=DB, dport=5432)
    assert sorted(f["src_port"] for f in flows_from(w, BACKUP[1])) == list(range(20_000, 20_010))
    stats = w.engine.stats()
    assert stats["flow_insert_failures"] == 0 and stats["flows_early_dropped"] == 510
    assert {name: v["sessions"] for name, v in stats["vsys"].items()} == {"tenant-a": 54, "tenant-b": 10}
    # tenant-a's oldest half-open flows are the ones that went
    assert min(f["src_port"] for f in flows_from(w, WEB1_IP)) >= 10_064 + 500 - 8 * 54
    # and tenant-b's connections complete
    answer = Ether(src=DB[0], dst=BACKUP[0]) / IP(src=DB[1], dst=BACKUP[1]) / tcp(5432, 20_000, "SA", seq=500, ack=1001)
    assert len(w.from_vm(answer, now)[0]) == 1


def test_flows_of_no_vsys_give_way_first_and_never_displace_a_tenants(tmp_path: Path) -> None:
    """A flow where neither end is a workload belongs to no vsys (and is refused: no_workload)."""
    nobody = ("02:00:00:00:09:09", "10.77.0.200")
    w = Wire(lab_without_rate_limit(tmp_path), flow_capacity=64)
    now = flood(w, WEB1, 10_000, 24, T0)
    now = flood(w, SRV, 30_000, 40, now, dst=nobody, from_vm=False)
    assert len(flows_from(w, SRV_IP)) == 40
    # tenant-a's new flows displace the flows of no vsys, although its own half-open ones are older
    flood(w, WEB1, 10_024, 10, now)
    assert len(flows_from(w, WEB1_IP)) == 34 and len(flows_from(w, SRV_IP)) == 30
    # a table full of tenant-a's flows: a flow of no vsys finds none of its own to displace
    w = Wire(lab_without_rate_limit(tmp_path), flow_capacity=64)
    now = flood(w, WEB1, 10_000, 64, T0)
    flood(w, SRV, 30_000, 5, now, dst=nobody, from_vm=False)
    assert len(flows_from(w, WEB1_IP)) == 64 and w.engine.stats()["flow_insert_failures"] == 5


# ---------------------------------------------------------------- inspection state

HEADER_RULE = 'alert tcp any any -> any 80 (msg:"syn to 80"; flags:S; sid:3001; rev:1;)\n'


def test_a_syn_takes_no_inspection_state_and_its_stream_still_starts_after_it(tmp_path: Path) -> None:
    w = InspectWire(
        write_policy(tmp_path),
        rule_sets(tmp_path, default='alert tcp any any -> any any (msg:"x"; content:"EVIL"; sid:3002; rev:1;)\n'),
    )
    for port in range(41_000, 41_100):
        assert len(w.from_vm(web1_to_srv(tcp(port, 80, "S", seq=100)))[0]) == 1
    assert w.engine.inspect_stats()["state_in_use"] == 0
    # a connection that carries data takes its state then, and knows where its stream began (at the SYN):
    # a first segment beyond a hole is held back as before
    assert w.from_up(srv_to_web1(tcp(80, 41_000, "SA", seq=500, ack=101)))[0]
    assert w.from_vm(web1_to_srv(tcp(41_000, 80, "A", seq=101, ack=501)))[0]
    assert w.from_vm(web1_to_srv(tcp(41_000, 80, "PA", seq=111, ack=501, payload=b"later bytes")))[0] == []
    assert w.drops() == {"stream_gap": 1}
    assert w.from_vm(web1_to_srv(tcp(41_000, 80, "PA", seq=101, ack=501, payload=b"EVIL first")))[0]
    assert [a["signature"].sid for a in w.alerts()] == [3002]
    assert w.engine.inspect_stats()["state_in_use"] == 1 and w.engine.inspect_stats()["flows_inspected"] == 1


def test_a_header_only_rule_sees_the_syn_and_the_flow_keeps_no_state_for_it(tmp_path: Path) -> None:
    w = InspectWire(write_policy(tmp_path), rule_sets(tmp_path, default=HEADER_RULE))
    for port in range(41_000, 41_050):
        assert len(w.from_vm(web1_to_srv(tcp(port, 80, "S", seq=100)))[0]) == 1
    assert [a["signature"].sid for a in w.alerts()] == [3001] * 50
    assert w.engine.inspect_stats()["state_in_use"] == 0
    # flowbits a header-only rule sets are state: kept
    kept = 'alert tcp any any -> any 80 (msg:"mark"; flags:S; flowbits:set,seen; flowbits:noalert; sid:3003; rev:1;)\n'
    w = InspectWire(write_policy(tmp_path), rule_sets(tmp_path, default=kept))
    assert w.from_vm(web1_to_srv(tcp(42_000, 80, "S", seq=100)))[0]
    assert w.engine.inspect_stats()["state_in_use"] == 1


# ---------------------------------------------------------------- memory after a flood


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def test_the_memory_a_flood_took_goes_back_once_the_table_empties(tmp_path: Path) -> None:
    w = Wire(lab_without_rate_limit(tmp_path), flow_capacity=131_072)  # 262,144 slots, 44 MB
    table = w.engine.stats()["flow_table_bytes"]
    now = flood(w, WEB1, 1024, 60_000, T0)  # flows land on every page of the table
    w.engine.expire(now + 31 * S)  # the half-open flows time out (tcp_syn: 30 s)...
    assert w.engine.stats()["flows_active"] == 0
    after_flood = resident_bytes()
    w.engine.expire(now + 32 * S)  # ... and the next sweep gives the empty table back
    stats = w.engine.stats()
    assert stats["flow_table_bytes_released"] > 0.95 * table
    # what went back, counted once: the pages flows had been in
    assert 0.9 * table < stats["memory_given_back"]["flows"] <= table
    assert after_flood - resident_bytes() > 0.9 * table
    # the table goes on working in the memory given back
    now += 40 * S
    assert len(w.from_vm(web1_to_srv(tcp(41_000, 80, "S", seq=100)), now)[0]) == 1
    assert len(w.from_up(srv_to_web1(tcp(80, 41_000, "SA", seq=500, ack=101)), now)[0]) == 1
    (flow,) = w.engine.flows()
    assert flow["src_port"] == 41_000 and flow["pkts_toclient"] == 1


def test_memory_goes_back_in_steps_as_the_flows_left_by_a_flood_end(tmp_path: Path) -> None:
    """60,000 half-open flows time out while 800 conversations go on: their pages stay; when they end too,
    the rest goes back (a pass each time the table falls to a quarter of what it held)."""
    w = Wire(lab_without_rate_limit(tmp_path), flow_capacity=131_072, tcp_syn=10)
    table = w.engine.stats()["flow_table_bytes"]
    for port in range(62_000, 62_800):
        w.engine.inject(w.vm, syn(WEB1, port), T0)
        w.engine.inject(w.up, syn(SRV, 80, WEB1, port, flags=0x12), T0)  # SYN-ACK
        w.engine.inject(w.vm, syn(WEB1, port, flags=0x10), T0)  # ACK: established
    now = flood(w, WEB1, 1024, 60_000, T0)
    w.engine.expire(now + 11 * S)
    w.engine.expire(now + 12 * S)
    stats = w.engine.stats()
    assert stats["flows_active"] == 800
    held = table - stats["flow_table_bytes_released"]
    assert held <= 2 * 800 * 4096  # at most the two pages each conversation lies on
    w.engine.expire(now + 4000 * S)  # tcp_established: 3,600 s
    w.engine.expire(now + 4001 * S)
    assert w.engine.stats()["flows_active"] == 0
    # every page goes back but the table's first and last, which the heap shares with its neighbours when a
    # flow was in them (where flows land depends on the process's hash key)
    assert w.engine.stats()["flow_table_bytes_released"] >= table - 2 * 4096


def test_a_table_in_a_tmpfs_file_shrinks_after_a_flood_and_stray_packets_do_not_grow_it(tmp_path: Path) -> None:
    """The state file (--state-dir) is shared tmpfs memory: a page of it comes back by a mere read."""
    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm on this machine")
    layout = fp.state_layout(65_536, 256)
    path = Path("/dev/shm") / f"ngfw-test-flood-{os.getpid()}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, layout["size"])
        memory = mmap.mmap(fd, layout["size"], mmap.MAP_SHARED)
        w = Wire(lab_without_rate_limit(tmp_path), flow_capacity=65_536, state=memory, inspect_slots=256)
        table = layout["slots"] * layout["flow_bytes"]
        held = lambda: os.fstat(fd).st_blocks * 512  # noqa: E731
        before = held()
        now = flood(w, WEB1, 1024, 40_000, T0)
        assert held() - before > 0.8 * table
        w.engine.expire(now + 31 * S)
        w.engine.expire(now + 32 * S)
        assert held() - before < 0.05 * table
        # segments of no known flow (dropped: tcp_not_syn) look the table up without taking pages back
        for port in range(2000, 7000):
            w.engine.inject(w.vm, syn(WEB1, port, flags=0x10), now + 40 * S)
        assert w.drops()["tcp_not_syn"] == 5000
        assert held() - before < 0.05 * table
        # nor do an operator's listing of every session and an export (a migration, a SIGTERM snapshot)
        assert w.engine.list_sessions({}, limit=0, max_scan=0, now_ns=now + 41 * S)["sessions"] == []
        assert w.engine.export_sessions(now_ns=now + 41 * S)["count"] == 0
        assert held() - before < 0.05 * table
        del w
        memory.close()
    finally:
        os.close(fd)
        path.unlink()


def test_inspection_state_of_a_burst_of_connections_goes_back(tmp_path: Path) -> None:
    w = InspectWire(
        write_policy(tmp_path),
        rule_sets(
            tmp_path,
            default='alert http any any -> any any (msg:"admin"; http.uri; content:"/admin"; sid:3004; rev:1;)\n',
        ),
    )
    for port in range(41_000, 41_300):
        assert w.from_vm(web1_to_srv(tcp(port, 80, "S", seq=100)), T0)[0]
        assert w.from_up(srv_to_web1(tcp(80, port, "SA", seq=500, ack=101)), T0)[0]
        assert w.from_vm(
            web1_to_srv(tcp(port, 80, "PA", seq=101, ack=501, payload=b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")), T0
        )[0]
    assert w.engine.inspect_stats()["state_in_use"] == 300
    w.engine.expire(T0 + 4000 * S)
    w.engine.expire(T0 + 4001 * S)
    stats = w.engine.stats()
    assert stats["inspect"]["state_in_use"] == 0 and stats["memory_given_back"]["inspect"] > 100 * 600
    # state taken again in memory given back starts clean
    now = T0 + 4002 * S
    assert w.from_vm(web1_to_srv(tcp(42_000, 80, "S", seq=100)), now)[0]
    assert w.from_up(srv_to_web1(tcp(80, 42_000, "SA", seq=500, ack=101)), now)[0]
    assert w.from_vm(
        web1_to_srv(tcp(42_000, 80, "PA", seq=101, ack=501, payload=b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n")), now
    )[0]
    assert [a["signature"].sid for a in w.alerts()] == [3004]
