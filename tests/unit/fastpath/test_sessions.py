"""Session records: a flow's state leaves one engine and goes on in another (restart, migration).

Two engines with memory ports stand for two dataplanes (or one dataplane before and after a restart). What a
user would notice: an established connection's next segment passes on the importer (without the record it
is dropped as mid-stream garbage), the importer's policy still decides, a match that spans the move still
alerts, a forged or corrupt record changes nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.support.fastpath import (
    ICMP,
    SRV_IP,
    WEB1_IP,
    WEB2_IP,
    WEB2_MAC,
    Wire,
    fp,
    lab_policy,
    srv_to_web1,
    tcp,
    web1_to_srv,
)
from tests.support.inspection import InspectWire, rule_sets, write_policy

S = 1_000_000_000


def handshake(w: Wire, sport: int, now: int = 10 * S) -> None:
    assert w.from_vm(web1_to_srv(tcp(sport, 80, "S", seq=100)), now)[0]
    assert w.from_up(srv_to_web1(tcp(80, sport, "SA", seq=500, ack=101)), now)[0]
    assert w.from_vm(web1_to_srv(tcp(sport, 80, "A", seq=101, ack=501)), now)[0]


def data(sport: int, payload: bytes = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n", seq: int = 101):
    return web1_to_srv(tcp(sport, 80, "PA", seq=seq, ack=501, payload=payload))


def test_an_imported_session_goes_on_where_an_unknown_one_is_dropped() -> None:
    a, b = Wire(lab_policy()), Wire(lab_policy())
    handshake(a, 43000)
    out = a.engine.export_sessions(now_ns=12 * S)
    assert out["count"] == 1
    (record,) = fp.decode_records(out["records"])
    assert (record["src_ip"], record["src_port"], record["dest_ip"], record["dest_port"]) == (
        WEB1_IP,
        43000,
        SRV_IP,
        80,
    )
    assert record["tcp_state"] == "established" and record["pkts_toserver"] == 2

    other = Wire(lab_policy())
    assert other.from_vm(data(43000), 11 * S)[0] == []  # strict TCP: mid-stream of nothing known
    assert other.drops()["tcp_not_syn"] == 1

    assert b.engine.import_sessions(out["records"], now_ns=12 * S)["results"] == {"imported": 1}
    assert len(b.from_vm(data(43000), 11 * S)[0]) == 1
    assert len(b.from_up(srv_to_web1(tcp(80, 43000, "A", seq=501, ack=140)), 11 * S)[0]) == 1
    (flow,) = b.engine.flows()
    assert flow["flow_id"] == record["flow_id"]  # the same flow, not a new one
    assert flow["pkts_toserver"] == 3 and flow["app_proto"] == "http"


def test_the_importers_policy_decides_not_the_record() -> None:
    a = Wire(lab_policy())
    handshake(a, 43001)
    records = a.engine.export_sessions(now_ns=12 * S)["records"]
    b = Wire()
    b.load(_without_rules(lab_policy()))
    assert b.engine.import_sessions(records, now_ns=12 * S)["results"] == {"policy": 1}
    assert b.from_vm(data(43001), 11 * S)[0] == []
    assert b.engine.flows() == []


def _without_rules(policy):
    from ngfw.compiler.tables import CompiledPolicy

    return CompiledPolicy(
        version=policy.version + 1, vsys=policy.vsys, workloads=policy.workloads, rules=(), catalogue=policy.catalogue
    )


def test_a_flow_this_host_already_has_is_kept_as_it_is() -> None:
    a, b = Wire(lab_policy()), Wire(lab_policy())
    handshake(a, 43002)
    handshake(b, 43002)
    b.from_vm(data(43002), 11 * S)
    assert b.engine.import_sessions(a.engine.export_sessions(now_ns=12 * S)["records"], now_ns=12 * S)["results"] == {
        "present": 1
    }
    (flow,) = b.engine.flows()
    assert flow["pkts_toserver"] == 3


def test_corrupt_records_are_refused_and_counted_never_trusted() -> None:
    a = Wire(lab_policy())
    for port in range(5):
        handshake(a, 43100 + port)
    good = a.engine.export_sessions(now_ns=12 * S)["records"]
    b = Wire(lab_policy())
    assert b.engine.import_sessions(b"\x00" * 40, now_ns=12 * S)["results"] == {}  # shorter than a record
    assert b.engine.import_sessions(b"\xff" * 4096, now_ns=12 * S)["results"] == {"malformed": 1}
    rng = random.Random(7)
    for _ in range(300):
        mutated = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        result = b.engine.import_sessions(bytes(mutated), now_ns=12 * S)["results"]
        assert sum(result.values()) <= 5
        for flow in b.engine.flows():  # whatever got in is a flow the policy allows between real workloads
            assert flow["action"] == "allow" and flow["rule"] >= 0
        b = Wire(lab_policy())


def test_a_migration_accepts_only_flows_of_the_moving_workload() -> None:
    a = Wire(lab_policy())
    handshake(a, 43200)
    # web2's flow, passed off as part of web1's move
    a.from_vm(web1_to_srv(tcp(43201, 80, "S", seq=100), src_ip=WEB2_IP, src_mac=WEB2_MAC))
    b = Wire(lab_policy())
    web1 = _workload_index(b, "web-01")
    out = a.engine.export_sessions(only_allowed=False, now_ns=12 * S)
    result = b.engine.import_sessions(out["records"], migration=True, require_workload=web1, now_ns=12 * S)["results"]
    assert result == {"imported": 1, "not_owned": 1}
    assert [f["src_ip"] for f in b.engine.flows()] == [WEB1_IP]


def _workload_index(w: Wire, name: str) -> int:
    return [wl.name for wl in w.engine.tables.policy.workloads].index(name)


def test_export_of_one_workload_and_a_delta_with_tombstones() -> None:
    a, b = Wire(lab_policy()), Wire(lab_policy())
    web1 = _workload_index(a, "web-01")
    for port in (43300, 43301, 43302):
        handshake(a, port, 10 * S)
    a.from_vm(web1_to_srv(tcp(43400, 80, "S"), src_ip=WEB2_IP, src_mac=WEB2_MAC), 10 * S)
    first = a.engine.export_sessions(workload=web1, now_ns=12 * S)
    assert first["count"] == 3 and len(first["keys"]) == 3 * 40
    assert b.engine.import_sessions(first["records"], migration=True, require_workload=web1, now_ns=12 * S)[
        "results"
    ] == {"imported": 3}
    # during the move: one connection gets data, one is reset (ends at the source, logged there)
    a.from_vm(data(43300), 12 * S)
    a.from_vm(web1_to_srv(tcp(43301, 80, "R", seq=101)), 12 * S)
    a.engine.expire(20 * S)  # the reset one is swept (tcp_closed: 5 s)
    delta = a.engine.export_sessions(workload=web1, changed_since=11 * S, hand_over=True, now_ns=12 * S)
    gone = set(_keys(first["keys"])) - set(_keys(delta["keys"]))
    assert delta["count"] == 1 and len(gone) == 1
    result = b.engine.import_sessions(
        delta["records"] + fp.tombstones(b"".join(gone)), migration=True, now_ns=12 * S, require_workload=web1
    )["results"]
    assert result == {"updated": 1, "removed": 1}
    assert sorted(f["src_port"] for f in b.engine.flows()) == [43300, 43302]
    assert [f["pkts_toserver"] for f in b.engine.flows() if f["src_port"] == 43300] == [3]
    assert [e for e in b.engine.drain_events() if e["event"] == "flow"] == []  # the tombstone is not an end here


def _keys(packed: bytes) -> list[bytes]:
    return [packed[i : i + 40] for i in range(0, len(packed), 40)]


def test_handed_over_flows_linger_unlogged_unless_the_moved_workload_still_crosses_here() -> None:
    a = Wire(lab_policy())
    web1 = _workload_index(a, "web-01")
    handshake(a, 43500, 10 * S)
    handshake(a, 43501, 10 * S)
    a.engine.drain_events()
    a.engine.export_sessions(workload=web1, hand_over=True, now_ns=12 * S)
    # the server's late segment does not make 43500 ours again; web1's own segment on 43501 does
    a.from_up(srv_to_web1(tcp(80, 43500, "A", seq=501, ack=101)), 11 * S)
    a.from_vm(data(43501), 11 * S)
    a.engine.expire(25 * S)  # past the hand-over linger (10 s), well before tcp_established (1 h)
    assert [f["src_port"] for f in a.engine.flows()] == [43501]
    assert a.engine.stats()["flows_handed_over"] == 1
    assert [e for e in a.engine.drain_events() if e["event"] == "flow"] == []
    # a second export does not hand the lingering flows over again
    assert a.engine.export_sessions(workload=web1, now_ns=12 * S)["count"] == 1


def test_a_workloads_first_frame_on_the_vm_side_is_an_arrival() -> None:
    w = Wire(lab_policy())
    w.engine.set_port_vm_side(w.vm, True)
    web1 = _workload_index(w, "web-01")
    handshake(w, 43600)
    arrivals = [e for e in w.engine.drain_events() if e["event"] == "arrival"]
    assert [(e["workload"], e["in_port"]) for e in arrivals] == [(web1, "vm")]
    w.from_vm(data(43600), 11 * S)
    assert [e for e in w.engine.drain_events() if e["event"] == "arrival"] == []
    # frames from the uplink side never count (web1 talking from another host)
    w.engine.forget_presence(web1)
    w.from_up(srv_to_web1(tcp(80, 43600, "A", seq=501, ack=140)), 11 * S)
    assert [e for e in w.engine.drain_events() if e["event"] == "arrival"] == []
    w.from_vm(data(43600, seq=140, payload=b"x"), 11 * S)
    assert [e["workload"] for e in w.engine.drain_events() if e["event"] == "arrival"] == [web1]
    assert w.engine.stats()["arrivals"] == 2


def test_a_table_in_shared_memory_is_adopted_by_the_next_engine() -> None:
    layout = fp.state_layout(4096, 4096)
    memory = bytearray(layout["size"])
    a = Wire.__new__(Wire)
    a.engine = fp.Engine(flow_capacity=4096, state=memory)
    a.vm = a.engine.add_memory_port("vm", 0)
    a.up = a.engine.add_memory_port("up", 0)
    a.load(lab_policy())
    handshake(a, 43700)
    a.from_vm(data(43700), 11 * S)  # App-ID: http, host a.example
    del a  # the process is gone; its memory is what it left
    b = Wire(lab_policy())
    assert b.engine.adopt_sessions(memory, layout, now_ns=12 * S)["results"] == {"imported": 1}
    (flow,) = b.engine.flows()
    assert flow["app_proto"] == "http" and flow["app_host"] == "a.example"
    assert len(b.from_up(srv_to_web1(tcp(80, 43700, "A", seq=501, ack=140)), 12 * S)[0]) == 1


def test_a_match_that_spans_the_move_still_alerts(tmp_path: Path) -> None:
    rules = (
        'alert tcp any any -> any any (msg:"split"; flow:to_server; content:"SPLIT-ACROSS-HOSTS"; sid:7001; rev:1;)\n'
    )
    policy = write_policy(tmp_path)
    signatures = rule_sets(tmp_path, default=rules)
    a, b = InspectWire(policy, signatures), InspectWire(policy, signatures)
    handshake(a, 43800)
    a.from_vm(data(43800, payload=b"xxxxSPLIT-ACR"), 11 * S)
    out = a.engine.export_sessions(streams=True, now_ns=12 * S)
    (record,) = fp.decode_records(out["records"])
    assert record["inspection"]["inspected"] == [13, 0] and record["inspection"]["streams"][0] > 0
    result = b.engine.import_sessions(out["records"], now_ns=12 * S)
    assert result["results"] == {"imported": 1} and result["streams_restored"] >= 1
    assert b.from_vm(data(43800, seq=114, payload=b"OSS-HOSTSyyyy"), 12 * S)[0]
    assert [e["signature"].sid for e in b.alerts()] == [7001]
    # without Hyperscan's stream state (a crash: it lived in the dead process) the half match is lost
    c = InspectWire(policy, signatures)
    c.engine.import_sessions(a.engine.export_sessions(streams=False, now_ns=12 * S)["records"], now_ns=12 * S)
    assert c.from_vm(data(43800, seq=114, payload=b"OSS-HOSTSyyyy"), 12 * S)[0]
    assert c.alerts() == []


EVE_PAST = ("tcp_flags_ts", "tcp_flags_tc", "icmp_type", "icmp_code", "community_id", "alerted")


def test_a_continued_flow_logs_its_past_flags_icmp_type_and_alert(tmp_path: Path) -> None:
    """A flow's EVE record after a restart or a move says what it said before: the TCP flags seen, the ICMP
    type the Community ID hashes (a timestamp request's is not an echo's), and that a signature alerted."""
    rules = 'alert tcp any any -> any any (msg:"seen"; flow:to_server; content:"ALERT-BEFORE-MOVE"; sid:7101; rev:1;)\n'
    policy, signatures = write_policy(tmp_path), rule_sets(tmp_path, default=rules)
    a = InspectWire(policy, signatures)
    handshake(a, 44000)
    a.from_vm(data(44000, payload=b"xxALERT-BEFORE-MOVEyy"), 11 * S)
    (before,) = [{k: f[k] for k in EVE_PAST} for f in a.engine.flows()]
    assert before["alerted"] and (before["tcp_flags_ts"], before["tcp_flags_tc"]) == (0x1A, 0x12)
    records = a.engine.export_sessions(now_ns=12 * S)["records"]
    b = InspectWire(policy, signatures)
    assert b.engine.import_sessions(records, now_ns=12 * S)["results"] == {"imported": 1}
    assert [{k: f[k] for k in EVE_PAST} for f in b.engine.flows()] == [before]

    ping = Wire(lab_policy())
    ping.from_vm(web1_to_srv(ICMP(type=13, code=0, id=9)), 11 * S)
    (icmp,) = [{k: f[k] for k in EVE_PAST} for f in ping.engine.flows()]
    assert icmp["icmp_type"] == 13
    pong = Wire(lab_policy())
    assert pong.engine.import_sessions(ping.engine.export_sessions(now_ns=12 * S)["records"], now_ns=12 * S)[
        "results"
    ] == {"imported": 1}
    assert [{k: f[k] for k in EVE_PAST} for f in pong.engine.flows()] == [icmp]

    # a record from a build before the EVE trailer (the same record, 8 bytes shorter) still imports
    first_len = int.from_bytes(records[:4], "little")
    old = (first_len - 8).to_bytes(4, "little") + records[4 : first_len - 8]
    c = InspectWire(policy, signatures)
    assert c.engine.import_sessions(old, now_ns=12 * S)["results"] == {"imported": 1}
    (flow,) = c.engine.flows()
    assert flow["alerted"] is False and flow["tcp_flags_ts"] == 0 and flow["icmp_type"] in (None, 0)


def test_app_ids_are_mapped_by_name() -> None:
    a = Wire(lab_policy())
    handshake(a, 43900)
    a.from_vm(data(43900), 11 * S)
    names = list(a.engine.tables.app_names)
    records = a.engine.export_sessions(now_ns=12 * S)["records"]
    http = names.index("http")
    # the exporter's catalogue numbered http one lower: its id means http here only through the name
    renumbered = names[1:http] + ["http", "decoy"] + names[http + 1 :]
    b = Wire(lab_policy())
    assert b.engine.import_sessions(records, exporter_apps=names, now_ns=12 * S)["results"] == {"imported": 1}
    assert b.engine.flows()[0]["app_proto"] == "http"
    c = Wire(lab_policy())
    c.engine.import_sessions(records, exporter_apps=renumbered, now_ns=12 * S)
    assert c.engine.flows()[0]["app_proto"] == "decoy" if "decoy" in names else c.engine.flows()[0]["app_proto"] is None
    d = Wire(lab_policy())
    d.engine.import_sessions(records, exporter_apps=["not-an-app-here"] * len(names), now_ns=12 * S)
    assert d.engine.flows()[0]["app_proto"] is None  # classified again from the next payload
