"""Packet capture: `capture: {packets: N}` on a rule or a threat profile, frames copied by the packet loop,
written to pcap files per vsys off the loop, rotated and capped; the files read back with scapy. No root."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.utils import rdpcap

from ngfw.compiler.policy import load_policy
from ngfw.dataplane.capture import CaptureWriter
from ngfw.dataplane.eve import EveWriter
from tests.support.fastpath import SRV_IP, WEB1_IP, Wire, srv_to_web1, tcp, web1_to_srv

LAB = Path(__file__).resolve().parents[3] / "rules" / "examples" / "lab.yaml"


def capture_policy(tmp_path: Path, packets: int = 3):
    text = LAB.read_text().replace(
        "      log: true\n      inspect: default",
        f"      log: true\n      capture: {{packets: {packets}}}\n      inspect: default",
        1,
    )
    (tmp_path / "p.yaml").write_text(text)
    return load_policy(tmp_path / "p.yaml")


def conversation(w: Wire, sport: int) -> list[bytes]:
    """A TCP exchange of 5 frames; the frames as sent."""
    frames = [
        web1_to_srv(tcp(sport, 80, "S", seq=1000)),
        srv_to_web1(tcp(80, sport, "SA", seq=5000, ack=1001)),
        web1_to_srv(tcp(sport, 80, "A", seq=1001, ack=5001)),
        web1_to_srv(tcp(sport, 80, "PA", seq=1001, ack=5001, payload=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
        web1_to_srv(tcp(sport, 80, "FA", seq=1028, ack=5001)),
    ]
    for f in frames:
        (w.from_up if f["IP"].src == SRV_IP else w.from_vm)(f)
    return [bytes(f) for f in frames]


def write(w: Wire, writer: CaptureWriter, policy) -> None:
    writer.add(w.engine.drain_captures(), lambda vsys, generation: policy.vsys_name(vsys))


def test_a_rules_capture_writes_the_first_frames_of_its_flows(tmp_path: Path) -> None:
    policy = capture_policy(tmp_path, packets=3)
    w = Wire(policy)
    sent = conversation(w, 40000)
    writer = CaptureWriter(str(tmp_path / "pcap"))
    write(w, writer, policy)
    writer.close()
    [file] = (tmp_path / "pcap" / "tenant-a").glob("ngfw-tenant-a-*.pcap")
    assert [bytes(p) for p in rdpcap(str(file))] == sent[:3]
    flow_id = w.engine.flows()[0]["flow_id"]
    assert writer.file_of(flow_id) == str(file)
    assert w.engine.stats()["capture_frames"] == 3


def test_flows_of_rules_without_capture_copy_nothing(tmp_path: Path) -> None:
    policy = load_policy(LAB)
    w = Wire(policy)
    conversation(w, 40001)
    assert w.engine.drain_captures() == [] and w.engine.stats()["capture_frames"] == 0


def test_the_flow_record_names_its_capture_file(tmp_path: Path) -> None:
    policy = capture_policy(tmp_path, packets=2)
    w = Wire(policy)
    conversation(w, 40002)
    writer = CaptureWriter(str(tmp_path / "pcap"))
    write(w, writer, policy)
    w.engine.end_all_flows()
    eve = EveWriter(str(tmp_path / "eve.json"), host="h", capture_file_of=writer.file_of)
    [record] = [eve.record(e, policy) for e in w.engine.drain_events() if e["event"] == "flow"]
    eve.close()
    writer.close()
    assert record["capture"]["file"].startswith(str(tmp_path / "pcap" / "tenant-a"))
    assert len(rdpcap(record["capture"]["file"])) == 2


def test_capture_files_rotate_at_their_size_and_the_oldest_go_beyond_the_cap(tmp_path: Path) -> None:
    policy = capture_policy(tmp_path, packets=5)
    w = Wire(policy)
    writer = CaptureWriter(str(tmp_path / "pcap"), file_bytes=4096, vsys_bytes=3 * 4096)
    for i in range(60):  # 60 flows x 5 frames of ~60-80 bytes: ~24 KB of capture
        conversation(w, 41000 + i)
        write(w, writer, policy)
    writer.close()
    files = sorted((tmp_path / "pcap" / "tenant-a").glob("*.pcap"))
    assert writer.files_opened > 4 and writer.files_removed > 0
    assert sum(f.stat().st_size for f in files) <= 3 * 4096
    assert all(f.stat().st_size <= 4096 for f in files)
    assert all(len(rdpcap(str(f))) > 0 for f in files)


def test_a_threat_profiles_capture_writes_only_flows_that_alert_with_the_alerting_frame(tmp_path: Path) -> None:
    from tests.support.inspection import handshake, send, wire

    profile = """
        ---
        apiVersion: ngfw/v1
        kind: ThreatProfile
        metadata: {name: forensic, vsys: tenant-a}
        spec: {capture: {packets: 4}}
        """
    rules = 'alert tcp any any -> any any (msg:"bad"; content:"TRIGGER"; sid:7101; rev:1;)'
    w = wire(tmp_path, rules=rules, inspect="forensic", profiles=profile)
    policy = w.engine.tables.policy
    writer = CaptureWriter(str(tmp_path / "pcap"))
    seq, _ = handshake(w, 46000)  # a flow that never alerts: kept back, never written
    send(w, 46000, seq, b"harmless")
    write(w, writer, policy)
    assert not (tmp_path / "pcap").exists() or not list((tmp_path / "pcap").rglob("*.pcap"))
    seq, _ = handshake(w, 46001)  # frames 1-3 (handshake), 4 and 5 (the alert) carry payload
    send(w, 46001, seq, b"nothing yet")
    send(w, 46001, seq + 11, b"xx TRIGGER xx")
    write(w, writer, policy)
    writer.close()
    [file] = (tmp_path / "pcap" / "tenant-a").glob("*.pcap")
    packets = rdpcap(str(file))
    assert [p["TCP"].sport for p in packets if p.haslayer("TCP") and p["IP"].src == WEB1_IP] == [46001] * 4
    assert len(packets) == 5  # its first 4 frames, then the alerting one
    assert bytes(packets[-1]["TCP"].payload) == b"xx TRIGGER xx"
    assert writer.frames_written == 5


def test_an_operators_capture_writes_the_flows_it_names_while_it_lasts(tmp_path: Path) -> None:
    from ngfw.dataplane.capture import CaptureRequestError, request_capture

    policy = load_policy(LAB)  # no capture in the policy
    w = Wire(policy)
    request_capture(w.engine, policy, seconds=30, packets=2, vm="tenant-a/web-01", port=80)
    conversation(w, 47000)
    w.from_vm(web1_to_srv(tcp(47001, 8080, "S")))  # web-01, another port: not named
    writer = CaptureWriter(str(tmp_path / "pcap"))
    write(w, writer, policy)
    writer.close()
    [file] = (tmp_path / "pcap" / "tenant-a").glob("*.pcap")
    assert [p["TCP"].sport for p in rdpcap(str(file))] == [47000, 80]
    request_capture(w.engine, policy, seconds=1e-6, packets=2, vm="web-01")  # over at once
    conversation(w, 47002)
    assert w.engine.drain_captures() == []
    for bad, words in [
        (dict(vm="nobody"), "not in the policy"),
        (dict(network="10.77.0.300"), "not an address"),
        (dict(proto="sctp-ish"), "not one of"),
        (dict(port=70000), "port 70000"),
    ]:
        with pytest.raises(CaptureRequestError, match=words):
            request_capture(w.engine, policy, seconds=5, **bad)
