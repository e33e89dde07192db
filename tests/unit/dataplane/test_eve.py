"""EVE records as tools read them: Suricata's fields on memory-port engines, the Community ID, drops of frames
that make no flow, stats, the schema, and the outputs besides the file (syslog, unix sockets). No root."""

from __future__ import annotations

import json
import logging
import socket
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ngfw.compiler.policy import load_policy
from ngfw.dataplane.eve import EveWriter, eve_record, stats_record
from ngfw.dataplane.eve_outputs import EveTargetError, parse_target
from ngfw.dataplane.eve_schema import SCHEMA_PATH, file_problems, problems
from tests.support.fastpath import (
    ICMP,
    IP,
    SRV_IP,
    SRV_MAC,
    WEB1_IP,
    WEB2_IP,
    Ether,
    Wire,
    fp,
    lab_policy,
    srv_to_web1,
    tcp,
    web1_to_srv,
)

LAB = Path(__file__).resolve().parents[3] / "rules" / "examples" / "lab.yaml"


# ---------------------------------------------------------------- Community ID

# (src, dst, proto, sport, dport, first ICMP type) -> what Suricata 7.0.10 wrote (`community-id: true`) for these
# flows of the shared corpus (bench/community_id_parity.py compares every flow)
SURICATA_VECTORS = [
    (("178.62.197.130", "192.168.1.13", 6, 443, 53059, 0), "1:KhgxkZ8o5kZAJjXqlT4IA/xFcmA="),
    (("175.144.140.29", "78.46.76.2", 17, 123, 80, 0), "1:F9dN0gXzFZTjS10WZwRA6I09aAI="),
    (("fe80::4e6a:f6ff:fe9f:f627", "ff02::1:2", 17, 546, 547, 0), "1:w8w66fMUDGzcg6j1dN+oK8BxRwc="),
    (("2a00:d40:1:3:192:12:193:11", "2a00:800:1010::1", 6, 44724, 21, 0), "1:5vSkNw8jvVOr03qzi7LfB/6tJpE="),
    (("192.168.1.159", "8.8.8.8", 1, 0, 0, 8), "1:2DX9xugJHKYhYJ/cUEM3DwIFDaQ="),
    (("10.0.0.1", "224.0.0.1", 1, 0, 0, 9), "1:FSnOZfcIYG6GVRMvgy1mYI5fHp4="),
    (("::", "ff02::1:ff9f:f627", 58, 0, 0, 135), "1:IPaPsbDMJWit5mRzUMyTjFEOLhU="),
    (("::", "ff02::16", 58, 0, 0, 143), "1:ikDqa5zwxtfbMnBkctuAzacX7zg="),
    # both addresses the same: Suricata orders the ports by their network-order bytes
    (("127.0.0.1", "127.0.0.1", 17, 49861, 33333, 0), "1:9vZx7vM3B+faCUZevqVBZTw04js="),
    (("127.0.0.1", "127.0.0.1", 6, 46536, 9042, 0), "1:0DvXOHwBb+GhTUeqdkL76WfxBxc="),
    (("::1", "::1", 17, 47826, 784, 0), "1:gNoxHkgrtM3qDqYQM2C1+NqsQkE="),
    (("::1", "::1", 58, 0, 0, 1), "1:hArt4WIsaVuXqaYBcYB7FNz0klM="),
]


@pytest.mark.parametrize(("tuple_", "expected"), SURICATA_VECTORS)
def test_community_id_is_suricatas(tuple_, expected) -> None:
    assert fp.community_id_of(*tuple_) == expected


def test_community_id_is_the_same_either_way() -> None:
    assert fp.community_id_of("10.0.0.1", "127.0.0.1", 6, 1234, 80) == fp.community_id_of(
        "127.0.0.1", "10.0.0.1", 6, 80, 1234
    )
    # an echo request and its reply are one flow
    assert fp.community_id_of("192.168.1.159", "8.8.8.8", 1, icmp_type=8) == fp.community_id_of(
        "8.8.8.8", "192.168.1.159", 1, icmp_type=0
    )


ADDRESSES_V4 = st.ip_addresses(v=4).map(str)
ADDRESSES_V6 = st.ip_addresses(v=6).map(str)
PORTS = st.integers(0, 65535)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.tuples(ADDRESSES_V4, ADDRESSES_V4), st.tuples(ADDRESSES_V6, ADDRESSES_V6)),
    PORTS,
    PORTS,
    st.sampled_from([6, 17, 132]),
)
def test_community_id_agrees_with_the_specs_reference_implementation(addresses, sport, dport, proto) -> None:
    import communityid

    src, dst = addresses
    if src == dst:
        return  # the one place Suricata (and so ngfw) orders differently from the spec
    make = {6: communityid.FlowTuple.make_tcp, 17: communityid.FlowTuple.make_udp, 132: communityid.FlowTuple.make_sctp}
    assert fp.community_id_of(src, dst, proto, sport, dport) == communityid.CommunityID().calc(
        make[proto](src, dst, sport, dport)
    )


@pytest.mark.parametrize(("proto", "request_type"), [(1, 8), (1, 13), (58, 128), (58, 135)])
def test_community_id_of_two_way_icmp_agrees_with_the_spec(proto, request_type) -> None:
    import communityid

    src, dst = ("10.1.2.3", "10.9.8.7") if proto == 1 else ("fd00::3", "fd00::7")
    make = communityid.FlowTuple.make_icmp if proto == 1 else communityid.FlowTuple.make_icmp6
    assert fp.community_id_of(src, dst, proto, icmp_type=request_type) == communityid.CommunityID().calc(
        make(src, dst, request_type, 0)
    )


# ---------------------------------------------------------------- records of a memory-port engine


def records(w: Wire, policy, host: str = "sensor-1") -> list[dict]:
    out = []
    for event in w.engine.drain_events():
        rec = eve_record(event, policy)
        rec["host"] = host
        out.append(rec)
    assert problems(out) == []
    return out


def test_a_tcp_flow_record_has_suricatas_flags_state_and_community_id() -> None:
    policy = lab_policy()
    w = Wire(policy)
    w.from_vm(web1_to_srv(tcp(40000, 80, "S", seq=1000)))
    w.from_up(srv_to_web1(tcp(80, 40000, "SA", seq=5000, ack=1001)))
    w.from_vm(web1_to_srv(tcp(40000, 80, "A", seq=1001, ack=5001)))
    w.from_vm(web1_to_srv(tcp(40000, 80, "PA", seq=1001, ack=5001, payload=b"GET / HTTP/1.1\r\nHost: lab\r\n\r\n")))
    w.from_vm(web1_to_srv(tcp(40000, 80, "FA", seq=1030, ack=5001)))
    w.from_up(srv_to_web1(tcp(80, 40000, "FA", seq=5001, ack=1031)))
    w.engine.end_all_flows()
    [flow] = [r for r in records(w, policy) if r["event_type"] == "flow"]
    assert flow["tcp"]["tcp_flags_ts"] == "1b"  # SYN ACK PSH FIN
    assert flow["tcp"]["tcp_flags_tc"] == "13"  # SYN ACK FIN
    assert flow["tcp"]["tcp_flags"] == "1b"
    assert flow["tcp"]["syn"] and flow["tcp"]["fin"] and flow["tcp"]["psh"] and "rst" not in flow["tcp"]
    assert flow["flow"]["state"] == "closed" and flow["flow"]["alerted"] is False
    assert flow["community_id"] == fp.community_id_of(WEB1_IP, SRV_IP, 6, 40000, 80)
    assert flow["http"] == {"hostname": "lab"} and flow["app_host"] == "lab"


def test_an_unanswered_flow_is_new_and_an_answered_one_established(tmp_path: Path) -> None:
    policy = lab_policy()
    w = Wire(policy)
    w.from_vm(web1_to_srv(tcp(40001, 80, "S")))
    w.engine.end_all_flows()
    [flow] = [r for r in records(w, policy) if r["event_type"] == "flow"]
    assert flow["flow"]["state"] == "new" and flow["tcp"]["tcp_flags_tc"] == "00"


def test_an_icmp_flow_names_its_first_type_and_code(tmp_path: Path) -> None:
    text = LAB.read_text().replace(
        "      services: [icmp]\n      action: allow\n",
        "      services: [icmp]\n      action: allow\n      log: true\n",
    )
    (tmp_path / "p.yaml").write_text(text)
    policy = load_policy(tmp_path / "p.yaml")
    w = Wire(policy)
    w.from_vm(web1_to_srv(ICMP(type=8, code=0, id=77)))
    w.from_up(srv_to_web1(ICMP(type=0, code=0, id=77)))
    w.engine.end_all_flows()
    [flow] = [r for r in records(w, policy) if r["event_type"] == "flow"]
    assert (flow["icmp_type"], flow["icmp_code"]) == (8, 0)
    assert flow["community_id"] == "1:" + fp.community_id_of(WEB1_IP, SRV_IP, 1, icmp_type=8)[2:]
    assert flow["flow"]["state"] == "established"


def test_a_spoofed_frame_is_a_drop_record_naming_the_vm() -> None:
    policy = lab_policy()
    w = Wire(policy)
    w.from_vm(web1_to_srv(tcp(40002, 80, "S"), src_ip="10.77.0.99"))  # web-01's MAC, a foreign IP
    w.from_vm(web1_to_srv(tcp(40003, 80, "S"), src_ip=WEB2_IP))  # web-01's MAC, web-02's IP
    w.from_vm(Ether(src="02:00:00:00:09:09", dst=SRV_MAC) / IP(src=WEB2_IP, dst=SRV_IP) / tcp(40004, 80, "S"))
    drops = [r for r in records(w, policy) if r["event_type"] == "drop"]
    assert [(d["drop"]["reason"], d["src_vm"], d["vsys"]) for d in drops] == [
        ("spoofed_ip", "web-01", "tenant-a"),
        ("spoofed_ip", "web-01", "tenant-a"),
        ("spoofed_mac", "web-02", "tenant-a"),
    ]
    assert all("flow_id" not in d and d["rule"] is None and d["in_iface"] == "vm" for d in drops)
    assert drops[0]["src_ip"] == "10.77.0.99" and drops[0]["tcp"]["syn"]


def test_a_flood_of_spoofed_frames_is_rate_limited_and_says_so() -> None:
    policy = lab_policy()
    w = Wire(policy)
    start = 10**12
    for i in range(300):  # one instant: the bucket holds one second's worth (100)
        w.from_vm(web1_to_srv(tcp(41000 + i, 80, "S"), src_ip="10.77.0.99"), now_ns=start)
    first = [r for r in records(w, policy) if r["event_type"] == "drop"]
    assert len(first) == 100
    assert w.engine.stats()["drop_events_suppressed"] == 200
    assert w.drops()["spoofed_ip"] == 300  # every frame is counted, whatever the log shows
    w.from_vm(web1_to_srv(tcp(42000, 80, "S"), src_ip="10.77.0.99"), now_ns=start + 2 * 10**9)
    [later] = records(w, policy)
    assert later["drop"]["suppressed"] == 200


def test_a_new_flow_over_the_vsys_quota_is_a_drop_record(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(LAB.read_text().replace("maxSessions: 200000", "maxSessions: 1"))
    policy = load_policy(tmp_path / "p.yaml")
    w = Wire(policy)
    w.from_vm(web1_to_srv(tcp(43000, 80, "S")))
    w.from_vm(web1_to_srv(tcp(43001, 80, "S")))
    [drop] = [r for r in records(w, policy) if r["event_type"] == "drop"]
    assert drop["drop"]["reason"] == "vsys_session_limit"
    assert (drop["vsys"], drop["src_vm"], drop["src_port"]) == ("tenant-a", "web-01", 43001)


def test_a_new_flow_the_full_table_refuses_is_a_drop_record() -> None:
    policy = lab_policy()
    w = Wire(policy, flow_capacity=1)
    w.from_vm(web1_to_srv(tcp(44000, 80, "S")))
    w.from_up(srv_to_web1(tcp(80, 44000, "SA", seq=5000, ack=1001)))
    w.from_vm(web1_to_srv(tcp(44000, 80, "A", seq=1001, ack=5001)))  # established: nothing to evict
    w.from_vm(web1_to_srv(tcp(44001, 80, "S")))
    drops = [r for r in records(w, policy) if r["event_type"] == "drop"]
    assert [(d["drop"]["reason"], d["src_vm"], d["dest_port"]) for d in drops] == [("flow_table_full", "web-01", 80)]


def test_an_alert_record_carries_the_rules_metadata_and_the_flow_is_alerted(tmp_path: Path) -> None:
    from tests.support.inspection import handshake, send, wire

    rules = (
        'alert tcp any any -> any any (msg:"meta"; content:"TRIGGER"; '
        "metadata: former_category POLICY, signature_severity Major, created_at 2024_01_02, "
        "signature_severity Minor; sid:7001; rev:3;)"
    )
    w = wire(tmp_path, rules=rules, rule_extra=", log: true")
    seq, _ = handshake(w, 45000)
    send(w, 45000, seq, b"xx TRIGGER xx")
    w.engine.end_all_flows()
    out = [eve_record(e, w.engine.tables.policy) | {"host": "h"} for e in w.engine.drain_events()]
    assert problems(out) == []
    [alert] = [r for r in out if r["event_type"] == "alert"]
    assert alert["alert"]["metadata"] == {
        "former_category": ["POLICY"],
        "signature_severity": ["Major", "Minor"],
        "created_at": ["2024_01_02"],
    }
    assert alert["community_id"] == fp.community_id_of(WEB1_IP, SRV_IP, 6, 45000, 80)
    [flow] = [r for r in out if r["event_type"] == "flow"]
    assert flow["flow"]["alerted"] is True


def test_a_tls_flows_sni_is_where_suricata_puts_it() -> None:
    from ngfw.dataplane.eve import app_layer_fields

    assert app_layer_fields("tls", "example.org") == {"tls": {"sni": "example.org"}}
    assert app_layer_fields("dns", "example.org") == {"dns": {"query": [{"type": "query", "rrname": "example.org"}]}}
    assert app_layer_fields("ssh", "SSH-2.0-x") == {}


def test_a_stats_record_has_suricatas_shape_and_follows_the_schema() -> None:
    policy = lab_policy()
    w = Wire(policy)
    w.from_vm(web1_to_srv(tcp(46000, 80, "S")))
    rec = stats_record(w.engine.stats(), 12.7) | {"host": "h"}
    assert problems([rec]) == []
    assert rec["stats"]["uptime"] == 12 and rec["stats"]["flow"]["active"] == 1
    assert rec["stats"]["decoder"]["pkts"] == 1


def test_the_schema_knows_every_reason_a_flow_ends_for() -> None:
    """A reason the fastpath gains (an operator's `cleared`) must be one the schema accepts in a flow record."""
    schema = json.loads((Path(__file__).resolve().parents[3] / "docs" / "eve-schema.json").read_text())
    assert schema["$defs"]["flow"]["properties"]["flow"]["properties"]["reason"]["enum"] == list(fp.END_REASONS)


def test_the_fast_check_refuses_what_jsonschema_refuses(tmp_path: Path) -> None:
    """problems() trusts fastjsonschema to pass a record: it must pass none that jsonschema (the reference) refuses."""
    import jsonschema

    from tests.support.inspection import handshake, send, wire

    w = wire(
        tmp_path,
        rules='alert tcp any any -> any any (msg:"m"; content:"HIT"; sid:7002; rev:1;)',
        rule_extra=", log: true",
    )
    seq, _ = handshake(w, 45100)
    send(w, 45100, seq, b"a HIT")
    w.engine.end_all_flows()
    good = [eve_record(e, w.engine.tables.policy) | {"host": "h"} for e in w.engine.drain_events()]
    good.append(stats_record(w.engine.stats(), 3.0) | {"host": "h"})
    reference = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    mutants = []
    for record in good:
        for key, value in record.items():
            mutants.append({k: v for k, v in record.items() if k != key})  # a field missing
            mutants.append(record | {key: {"wrong": 1} if not isinstance(value, dict) else 7})  # of the wrong type
            if isinstance(value, dict):
                for inner in value:
                    mutants.append(record | {key: value | {inner: [None]}})
    assert {r["event_type"] for r in good} == {"flow", "alert", "stats"} and problems(good) == []
    for mutant in mutants:
        assert bool(problems([mutant])) == (not reference.is_valid(mutant)), mutant


def test_the_schema_refuses_a_record_that_breaks_it() -> None:
    bad = {"event_type": "flow", "pcap_file": "x.pcap", "flow_id": 1, "community_id": "nope"}
    found = problems([bad])
    assert any("community_id" in p for p in found) and any("src_ip" in p for p in found)
    assert problems([{"event_type": "something"}])


# ---------------------------------------------------------------- outputs


def test_eve_targets_are_parsed_or_refused_in_one_sentence() -> None:
    assert parse_target("/var/log/ngfw/eve.json").kind == "file"
    t = parse_target("syslog://127.0.0.1:5514")
    assert (t.kind, t.transport, t.host, t.port) == ("syslog", "udp", "127.0.0.1", 5514)
    assert parse_target("syslog+tcp://[::1]:601").transport == "tcp"
    assert parse_target("syslog:///dev/log").transport == "dgram"
    assert parse_target("unix:///run/ngfw/eve.sock").transport == "stream"
    assert parse_target("unix+dgram:///run/ngfw/eve.sock").transport == "dgram"
    for bad, words in [
        ("syslog://127.0.0.1", "give a host and a port"),
        ("kafka://x:1", "unknown kind 'kafka'"),
        ("syslog://h:99999", "port is not a number"),
        ("unix://relative", "absolute path"),
    ]:
        with pytest.raises(EveTargetError, match=words):
            parse_target(bad)


def udp_receiver() -> tuple[socket.socket, int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock, sock.getsockname()[1]


def test_records_reach_a_syslog_receiver_as_rfc5424(tmp_path: Path) -> None:
    receiver, port = udp_receiver()
    with receiver:
        writer = EveWriter([str(tmp_path / "eve.json"), f"syslog://127.0.0.1:{port}"], host="sensor-a")
        writer.write_record(
            {
                "timestamp": "2026-01-01T00:00:00.000000+0000",
                "event_type": "stats",
                "stats": stats_record(Wire().engine.stats(), 1)["stats"],
            }
        )
        message = receiver.recv(65536).decode()
        writer.close()
    # <PRI>1 TIMESTAMP HOST APP PROCID MSGID - MSG: local5.info, from ngfw, the EVE line as the message
    head, _, body = message.partition(" eve - ")
    assert head.startswith("<174>1 ") and " sensor-a ngfw " in head
    assert json.loads(body)["event_type"] == "stats" and json.loads(body)["host"] == "sensor-a"
    assert json.loads((tmp_path / "eve.json").read_text())["event_type"] == "stats"  # the file too


def test_an_unreachable_syslog_host_is_reported_once_and_counted_never_fatal(caplog) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: TCP connections are refused
    writer = EveWriter([f"syslog+tcp://127.0.0.1:{port}"], host="h")
    with caplog.at_level(logging.WARNING, logger="ngfw.dataplane.eve"):
        for _ in range(5):
            writer.write_record({"event_type": "stats"})
            time.sleep(0.05)
        deadline = time.monotonic() + 3
        while writer.counters()[f"syslog:127.0.0.1:{port}"]["dropped"] < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    counts = writer.counters()[f"syslog:127.0.0.1:{port}"]
    writer.close()
    assert counts["dropped"] == 5 and counts["written"] == 0 and counts["errors"] >= 1
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and f"127.0.0.1:{port}" in warnings[0].getMessage()


def test_records_reach_a_unix_stream_and_a_datagram_socket(tmp_path: Path) -> None:
    stream_path, dgram_path = str(tmp_path / "s.sock"), str(tmp_path / "d.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(stream_path)
    server.listen(1)
    server.settimeout(5)
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(dgram_path)
    dgram.settimeout(5)
    writer = EveWriter([f"unix://{stream_path}", f"unix+dgram://{dgram_path}"], host="h")
    for n in range(3):
        writer.write_record({"event_type": "stats", "n": n})
    conn, _ = server.accept()
    conn.settimeout(5)
    data = b""
    while data.count(b"\n") < 3:
        data += conn.recv(65536)
    assert [json.loads(line)["n"] for line in data.splitlines()] == [0, 1, 2]
    assert [json.loads(dgram.recv(65536))["n"] for _ in range(3)] == [0, 1, 2]
    writer.close()
    conn.close()
    server.close()
    dgram.close()


def test_a_consumer_that_does_not_read_never_blocks_the_writer(tmp_path: Path) -> None:
    from ngfw.dataplane.eve_outputs import UnixSocketOutput

    path = str(tmp_path / "slow.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)  # accepted by the kernel, never read
    output = UnixSocketOutput(parse_target(f"unix://{path}"), queue_lines=1000)
    line = b"x" * 1000
    started = time.monotonic()
    for _ in range(50):
        output.write([line] * 100)
    assert time.monotonic() - started < 1.0  # 5,000 lines queued or dropped at once, no wait
    deadline = time.monotonic() + 3
    while output.dropped == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert output.dropped > 0 and output.written + output.dropped + output.pending() <= 5000
    threading.Thread(target=output.close, daemon=True).start()
    server.close()


def test_every_record_of_an_eve_file_is_checked(tmp_path: Path) -> None:
    eve = tmp_path / "other.json"
    eve.write_text(json.dumps({"event_type": "drop", "timestamp": "x"}) + "\n")
    assert file_problems(eve)


# ---------------------------------------------------------------- the model


def test_a_capture_count_out_of_range_is_refused_with_the_resource_and_field(tmp_path: Path) -> None:
    from ngfw.model.errors import PolicyError

    text = LAB.read_text().replace(
        "      log: true\n      inspect: default",
        "      log: true\n      capture: {packets: 0}\n      inspect: default",
        1,
    )
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "p.yaml")
    message = str(info.value)
    assert "SecurityPolicy tenant-a/main" in message and "capture.packets" in message
    profile = textwrap.dedent("""
        ---
        apiVersion: ngfw/v1
        kind: ThreatProfile
        metadata: {name: forensic, vsys: tenant-a}
        spec: {capture: {packets: 20000}}
        """)
    (tmp_path / "p.yaml").write_text(LAB.read_text() + profile)
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "p.yaml")
    assert "ThreatProfile tenant-a/forensic" in str(info.value) and "capture.packets" in str(info.value)


def test_records_reach_a_local_syslog_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "log")
    dev_log = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dev_log.bind(path)
    dev_log.settimeout(5)
    writer = EveWriter([f"syslog://{path}"], host="sensor-b")
    writer.write_record({"event_type": "stats"})
    message = dev_log.recv(65536).decode()
    writer.close()
    dev_log.close()
    assert message.startswith("<174>1 ") and message.endswith('"host":"sensor-b"}')


def test_a_bad_eve_target_stops_the_dataplane_before_it_opens_anything() -> None:
    from ngfw.dataplane.runner import Dataplane, EveOptions, PortPlan

    with pytest.raises(EveTargetError, match="unknown kind 'udp'"):
        Dataplane(PortPlan(), eve_options=EveOptions(targets=["udp://127.0.0.1:9"]))
