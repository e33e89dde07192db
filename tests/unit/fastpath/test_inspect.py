"""Threat inspection inline: Suricata signatures decide what a workload's traffic may carry.

Frames go through an engine with two memory ports (no root); what comes out of the far port, what is
sent back, the alert events and the drop counters are what a user of the dataplane would see.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ngfw.dataplane.threats import RulesError, load_signature_sets
from tests.support.fastpath import (
    IP,
    SRV_IP,
    SRV_MAC,
    TCP,
    WEB1_IP,
    WEB1_MAC,
    Ether,
    fp,
    srv_to_web1,
    tcp,
)
from tests.support.inspection import RULES, InspectWire, handshake, rule_sets, send, sids, wire, write_policy


def test_alert_passes_the_packet_and_names_the_signature(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41000)
    out, back = send(w, 41000, seq, b"GET /admin/login HTTP/1.1\r\nHost: a\r\n\r\n")
    assert len(out) == 1 and not back
    [alert] = w.alerts()
    assert alert["signature"].sid == 1001 and alert["signature"].rev == 2 and not alert["blocked"]
    assert alert["signature"].category == "Web Application Attack"
    assert alert["src_ip"] == WEB1_IP and alert["app_proto"] == "http"


def test_drop_blocks_the_packet_and_the_rest_of_the_flow(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41001)
    out, _ = send(w, 41001, seq, b"xx EVIL-PAYLOAD-XYZ yy")
    assert out == []
    [alert] = w.alerts()
    assert alert["signature"].sid == 1002 and alert["blocked"]
    # the flow stays blocked, whatever it carries next, in both directions
    assert send(w, 41001, seq + 22, b"harmless")[0] == []
    assert w.from_up(srv_to_web1(tcp(80, 41001, "A", seq=501, ack=seq)))[0] == []
    assert w.drops()["threat"] == 3
    assert w.engine.inspect_stats()["flows_blocked"] == 1


def test_reject_resets_both_sides(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41002)
    out, back = send(w, 41002, seq, b"POST /upload CMD.EXE")
    assert len(back) == 1 and Ether(back[0])[TCP].flags.R  # to the client
    assert len(out) == 1 and Ether(out[0])[TCP].flags.R  # onward to the server, in its place
    assert w.alerts()[0]["blocked"]


def test_a_pattern_split_across_segments_is_found(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41003)
    assert send(w, 41003, seq, b"aaaa EVIL-PAY")[0]  # the first half passes
    assert send(w, 41003, seq + 13, b"LOAD-XYZ bbbb")[0] == []  # the second completes it: dropped
    assert sids(w.alerts()) == [1002]


def test_a_segment_beyond_a_hole_waits_for_the_bytes_before_it(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41004)
    # the attacker sends the end first: inline, it is dropped until the hole is filled (TCP retransmits)
    assert send(w, 41004, seq + 13, b"LOAD-XYZ bbbb")[0] == []
    assert send(w, 41004, seq, b"aaaa EVIL-PAY")[0]
    assert send(w, 41004, seq + 13, b"LOAD-XYZ bbbb")[0] == []
    assert sids(w.alerts()) == [1002]
    assert w.engine.inspect_stats()["out_of_order"] == 1
    assert w.drops() == {"stream_gap": 1, "threat": 1}


def test_a_retransmission_that_rewrites_inspected_bytes_is_dropped(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41005)
    assert send(w, 41005, seq, b"innocent-bytes-here")[0]
    # same sequence numbers, other bytes: the first copy was inspected, this one never will be
    assert send(w, 41005, seq, b"EVIL-PAYLOAD-XYZ!!!")[0] == []
    # an honest retransmission (same bytes) passes
    assert send(w, 41005, seq, b"innocent-bytes-here")[0]
    assert w.engine.inspect_stats()["overlap_mismatch"] == 1
    assert w.drops() == {"stream_rewrite": 1}


def test_anchored_content_is_relative_to_each_packet(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41006)
    send(w, 41006, seq, b"xxHELLO")
    assert w.alerts() == []
    send(w, 41006, seq + 7, b"HELLO world")
    assert sids(w.alerts()) == [1004]


def test_server_responses_are_inspected_to_client(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, srv_seq = handshake(w, 41007)
    send(w, 41007, seq, b"GET / HTTP/1.1\r\n\r\n")
    w.from_up(
        srv_to_web1(tcp(80, 41007, "PA", seq=srv_seq, ack=seq + 18, payload=b"HTTP/1.1 200 OK\r\n\r\nSECRET-TOKEN"))
    )
    [alert] = w.alerts()
    assert alert["signature"].sid == 1005 and alert["pkt_to_client"]


def test_http_buffers_and_pcre_with_back_reference(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41008)
    req = b"POST /dup/abc/abc HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.1\r\nContent-Length: 0\r\n\r\n"
    send(w, 41008, seq, req)
    assert sorted(sids(w.alerts())) == [1006, 1007]
    seq2, _ = handshake(w, 41009)
    send(w, 41009, seq2, b"GET /dup/abc/abd HTTP/1.1\r\nUser-Agent: wget\r\n\r\n")
    assert w.alerts() == []


def test_audit_profile_alerts_but_never_blocks(tmp_path: Path) -> None:
    profile = """
        ---
        apiVersion: ngfw/v1
        kind: ThreatProfile
        metadata: {name: audit, vsys: tenant-a}
        spec: {action: alert}
        """
    w = wire(tmp_path, inspect="audit", profiles=profile)
    seq, _ = handshake(w, 41010)
    assert send(w, 41010, seq, b"EVIL-PAYLOAD-XYZ")[0]
    [alert] = w.alerts()
    assert alert["signature"].sid == 1002 and not alert["blocked"]


def test_a_profile_uses_only_the_signature_sets_it_names(tmp_path: Path) -> None:
    profile = """
        ---
        apiVersion: ngfw/v1
        kind: ThreatProfile
        metadata: {name: web-only, vsys: tenant-a}
        spec: {signatures: [web]}
        """
    sigs = rule_sets(
        tmp_path,
        web='alert tcp any any -> any any (msg:"w"; content:"WEBX"; sid:1;)',
        mail='alert tcp any any -> any any (msg:"m"; content:"MAILX"; sid:2;)',
    )
    w = InspectWire(write_policy(tmp_path, inspect="web-only", profiles=profile), sigs)
    seq, _ = handshake(w, 41011)
    send(w, 41011, seq, b"WEBX MAILX")
    assert sids(w.alerts()) == [1]
    # the profile scans databases of its own sets only: another tenant's patterns cost it nothing
    [own] = w.engine.tables.profile_tables
    assert own.set_names == ["web"] and own.loaded == 1 and own is not sigs.inspect


def test_flows_of_rules_without_a_profile_are_not_inspected(tmp_path: Path) -> None:
    w = wire(tmp_path)
    handshake(w, 41012, dport=8080)
    assert send(w, 41012, 101, b"EVIL-PAYLOAD-XYZ", dport=8080)[0]
    assert w.alerts() == [] and w.engine.inspect_stats()["flows_inspected"] == 0


def test_inspection_stops_at_the_profile_depth(tmp_path: Path) -> None:
    profile = """
        ---
        apiVersion: ngfw/v1
        kind: ThreatProfile
        metadata: {name: shallow, vsys: tenant-a}
        spec: {depth: 100}
        """
    w = wire(tmp_path, inspect="shallow", profiles=profile)
    seq, _ = handshake(w, 41013)
    assert send(w, 41013, seq, b"a" * 120)[0]
    assert send(w, 41013, seq + 120, b"EVIL-PAYLOAD-XYZ")[0]  # past the depth: not inspected
    assert w.alerts() == [] and w.engine.inspect_stats()["depth_reached"] == 1


def test_past_the_depth_retransmissions_and_holes_pass_and_the_inspected_bytes_stay_protected(tmp_path: Path) -> None:
    """A receiver that lost a segment past the depth (or whose ACK was lost) gets it again: the retransmission used
    to be compared with the bytes kept at the depth and dropped as a rewrite, every time -- the connection hung."""
    profile = """
        ---
        apiVersion: ngfw/v1
        kind: ThreatProfile
        metadata: {name: shallow, vsys: tenant-a}
        spec: {depth: 100}
        """
    w = wire(tmp_path, inspect="shallow", profiles=profile)
    seq, _ = handshake(w, 41016)
    head = bytes(range(120))  # the depth (100 bytes) ends inside it
    assert send(w, 41016, seq, head)[0]
    assert send(w, 41016, seq + 120, b"b" * 500)[0]
    assert send(w, 41016, seq + 120, b"b" * 500)[0]  # retransmitted: passes
    assert send(w, 41016, seq, head)[0]  # the segment the depth ended in, again
    assert send(w, 41016, seq + 2000, b"d" * 100)[0]  # beyond a hole, past the depth: not held back
    # the inspected bytes stay protected: other bytes in their place are dropped
    assert send(w, 41016, seq, b"X" * 50)[0] == []
    assert w.drops() == {"stream_rewrite": 1}


def test_tcp_fragments_of_an_inspected_flow_are_dropped(tmp_path: Path) -> None:
    from scapy.layers.inet import fragment

    w = wire(tmp_path)
    seq, _ = handshake(w, 41014)
    packet = IP(src=WEB1_IP, dst=SRV_IP) / TCP(sport=41014, dport=80, flags="PA", seq=seq, ack=501) / (b"x" * 60)
    first, second = fragment(packet, fragsize=32)[:2]
    assert w.from_vm(Ether(src=WEB1_MAC, dst=SRV_MAC) / first)[0] == []
    assert w.engine.inspect_stats()["fragments_dropped"] == 1
    assert w.drops() == {"fragment_uninspected": 1}


def test_an_unknown_signature_set_in_a_profile_is_refused_with_its_name(tmp_path: Path) -> None:
    profile = """
        ---
        apiVersion: ngfw/v1
        kind: ThreatProfile
        metadata: {name: p, vsys: tenant-a}
        spec: {signatures: [nosuch]}
        """
    policy = write_policy(tmp_path, inspect="p", profiles=profile)
    with pytest.raises(ValueError, match="threat profile p names signature set 'nosuch'"):
        fp.Tables(policy, {}, rule_sets(tmp_path, default=RULES).inspect)


def test_a_profile_that_does_not_exist_is_a_policy_error_naming_the_field(tmp_path: Path) -> None:
    from ngfw.model.errors import PolicyError

    with pytest.raises(PolicyError, match=r"spec.rules\[0\].inspect.*ThreatProfile 'strict' does not exist"):
        write_policy(tmp_path, inspect="strict")


def test_a_strict_load_refuses_malformed_rules_and_names_them(tmp_path: Path) -> None:
    (tmp_path / "bad.rules").write_text(
        'alert tcp any any -> any any (content:"ok"; sid:1;)\nalert tcp any any -> any any (content:"|4|"; sid:2;)\n'
    )
    assert load_signature_sets([("default", str(tmp_path / "bad.rules"))]).loaded == 1
    with pytest.raises(RulesError, match=r"bad.rules:2: sid 2: bad hex"):
        load_signature_sets([("default", str(tmp_path / "bad.rules"))], strict=True)


def test_missing_rule_file_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="no such rule file"):
        load_signature_sets([("default", str(tmp_path / "missing.rules"))])


def self_signed_der(common_name: str) -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.datetime(2026, 1, 1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x1234ABCD)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def tls_server_flight(der: bytes) -> bytes:
    """ServerHello and Certificate (TLS 1.2) in one handshake record."""

    def handshake(kind: int, body: bytes) -> bytes:
        return bytes([kind]) + len(body).to_bytes(3, "big") + body

    hello = handshake(2, b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\xc0\x2f" + b"\x00")
    entry = len(der).to_bytes(3, "big") + der
    certificate = handshake(11, len(entry).to_bytes(3, "big") + entry)
    body = hello + certificate
    return b"\x16\x03\x03" + len(body).to_bytes(2, "big") + body


CERT_RULES = r"""
alert tls any any -> any any (msg:"bad cert subject"; flow:to_client; tls.cert_subject; content:"CN=bad.example"; endswith; sid:3001;)
alert tls any any -> any any (msg:"bad cert serial"; flow:to_client; tls.cert_serial; content:"12:34:AB:CD"; sid:3002;)
alert tls any any -> any any (msg:"issuer"; tls.cert_issuer; content:"C=US, O=Evil Corp, CN="; startswith; sid:3003;)
alert tls any any -> any any (msg:"raw cert"; tls.certs; content:"Evil Corp"; sid:3004;)
"""


def test_the_server_certificate_is_read_across_segments(tmp_path: Path) -> None:
    w = InspectWire(write_policy(tmp_path), rule_sets(tmp_path, default=CERT_RULES))
    seq, srv_seq = handshake(w, 41020, dport=80)
    hello = b"\x16\x03\x01\x00\x2d\x01\x00\x00\x29\x03\x03" + b"\x22" * 32 + b"\x00\x00\x02\xc0\x2f\x01\x00"
    send(w, 41020, seq, hello)
    flight = tls_server_flight(self_signed_der("bad.example"))
    half = len(flight) // 2
    w.from_up(srv_to_web1(tcp(80, 41020, "A", seq=srv_seq, ack=seq + len(hello), payload=flight[:half])))
    assert w.alerts() == []  # the certificate is not whole yet
    w.from_up(srv_to_web1(tcp(80, 41020, "PA", seq=srv_seq + half, ack=seq + len(hello), payload=flight[half:])))
    assert sorted(sids(w.alerts())) == [3001, 3002, 3003, 3004]


def test_an_http_head_split_across_segments_fills_its_buffers(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41021)
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.1\r\nContent-Length: 0\r\n\r\n"
    send(w, 41021, seq, head[:9])  # "POST /upl"
    send(w, 41021, seq + 9, head[9:40])
    send(w, 41021, seq + 40, head[40:])
    assert sids(w.alerts()) == [1006]  # http.user_agent + http.method


SNI_RULES = r"""
drop tls any any -> any any (msg:"blocked sni"; tls.sni; content:"evil.example"; endswith; sid:4001; rev:1;)
alert tls any any -> any any (msg:"its ja3"; ja3.string; content:"771,4865,0-16-43-57,,"; sid:4002; rev:1;)
"""


@pytest.mark.parametrize("how", ["segments", "records", "records-and-segments"])
def test_a_client_hello_cut_over_segments_or_records_shows_its_sni(tmp_path: Path, how: str) -> None:
    """tls.sni (and JA3) of a ClientHello a client (or an evader) cuts over TCP segments or TLS records: read
    once whole, on the segment that completes it, which is dropped."""
    from tests.support import quic_initial as qi

    w = InspectWire(write_policy(tmp_path), rule_sets(tmp_path, default=SNI_RULES))
    seq, _ = handshake(w, 41030)
    handshake_msg = qi.tls_client_hello(b"www.evil.example")
    one_record = b"\x16\x03\x01" + len(handshake_msg).to_bytes(2, "big") + handshake_msg
    two_records = b"".join(
        b"\x16\x03\x01" + len(part).to_bytes(2, "big") + part for part in (handshake_msg[:50], handshake_msg[50:])
    )
    pieces = {
        "segments": [one_record[:40], one_record[40:]],
        "records": [two_records],
        "records-and-segments": [two_records[:30], two_records[30:70], two_records[70:]],
    }[how]
    for piece in pieces[:-1]:
        out, _ = send(w, 41030, seq, piece)
        assert len(out) == 1 and w.alerts() == []  # not whole yet: passes, nothing read
        seq += len(piece)
    out, _ = send(w, 41030, seq, pieces[-1])
    assert out == [] and sorted(sids(w.alerts())) == [4001, 4002]


def test_a_keepalive_probe_with_a_garbage_byte_passes(tmp_path: Path) -> None:
    w = wire(tmp_path)
    seq, _ = handshake(w, 41022)
    assert send(w, 41022, seq, b"hello")[0]
    # Windows probes with one byte before the next expected one, whatever it was
    assert send(w, 41022, seq + 4, b"\x00")[0]
    assert "stream_rewrite" not in w.drops()


BYTE_RULES = r"""
alert tcp any any -> any any (msg:"smb command over 2"; content:"|ff|SMB"; byte_test:1,>,2,0,relative; sid:4001;)
alert tcp any any -> any any (msg:"big length"; content:"Length: "; byte_test:4,>,1000,0,relative,string,dec; sid:4002;)
alert tcp any any -> any any (msg:"after the record"; content:"LEN"; byte_jump:2,0,relative,little; content:"END"; within:3; sid:4003;)
alert tcp any any -> any any (msg:"high bit clear"; content:"FLAGS"; byte_test:1,!&,0x80,0,relative; sid:4004;)
alert tcp any any -> any any (msg:"masked nibble"; content:"NIB"; byte_test:1,=,5,0,relative,bitmask 0xf0; sid:4005;)
"""


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\xffSMB\x05rest", [4001]),
        (b"\xffSMB\x02rest", []),
        (b"Length: 1234\r\n", [4002]),
        (b"Length: 999\r\n", []),
        (b"Length: x999\r\n", []),
        (b"LEN\x04\x00abcdEND", [4003]),  # a 4-byte record, then END right after it
        (b"LEN\x04\x00abEND", []),  # END is inside the record, not after it
        (b"LEN\xff\x00abcdEND", []),  # the record runs past the packet
        (b"FLAGS\x7f", [4004]),
        (b"FLAGS\x80", []),
        (b"NIB\x5a", [4005]),  # (0x5a & 0xf0) >> 4 == 5
        (b"NIB\x6a", []),
    ],
)
def test_byte_test_and_byte_jump(tmp_path: Path, payload: bytes, expected: list[int]) -> None:
    w = wire(tmp_path, rules=BYTE_RULES)
    seq, _ = handshake(w, 41030)
    send(w, 41030, seq, payload)
    assert sids(w.alerts()) == expected


# JA3/JA3S of each TLS flow of tests/fixtures/replay/cloudflare-warp.pcap as Suricata 7.0.10 computes
# them (eve tls.ja3.hash / tls.ja3s.hash, ja3-fingerprints enabled), by client port
SURICATA_JA3 = {
    40214: ("159db30fc8fac7fb58bcaeee8785a687", "fcb2d4d0991292272fcb1e464eedfd43"),
    45606: ("6f5e62edfa5933b1332ddf8b9fb3ef9d", "9ebc57def2efb523f25c77af13aa6d48"),
    45610: ("6f5e62edfa5933b1332ddf8b9fb3ef9d", "9ebc57def2efb523f25c77af13aa6d48"),
    51296: ("d8c87b9bfde38897979e41242626c2f3", None),
}


def test_ja3_and_ja3s_agree_with_suricata(tmp_path: Path) -> None:
    from ngfw.dataplane.replay import Replayer

    hashes = sorted({h for pair in SURICATA_JA3.values() for h in pair if h})
    rules = "\n".join(
        f'alert tls any any -> any any (msg:"{h}"; {"ja3" if any(p[0] == h for p in SURICATA_JA3.values()) else "ja3s"}.hash; '
        f'content:"{h}"; sid:{6000 + i};)'
        for i, h in enumerate(hashes)
    )
    capture = Path(__file__).resolve().parents[2] / "fixtures" / "replay" / "cloudflare-warp.pcap"
    records = Replayer(signatures=rule_sets(tmp_path, default=rules)).replay_file(str(capture))
    from ngfw.dataplane.eve_schema import problems

    assert problems(records) == []  # replay's flow and alert records follow docs/eve-schema.json
    got: dict[int, set[str]] = {}
    for r in records:
        if r.get("event_type") == "alert":
            client_port = r["src_port"] if r["dest_port"] == 443 else r["dest_port"]
            got.setdefault(client_port, set()).add(r["alert"]["signature"])
    assert got == {port: {h for h in pair if h} for port, pair in SURICATA_JA3.items()}


def test_a_profile_of_many_signature_sets_runs_the_rules_of_every_set(tmp_path: Path) -> None:
    # 40 sets (one a rule file, as `--rules` per ET Open file gives): the rules of the 32nd set and after
    # used to be left out of the profile (its set mask was computed in a C int)
    sets = {
        f"set{i:02d}": f'alert tcp any any -> any any (msg:"set {i}"; content:"MARK-{i:02d}"; sid:{8000 + i};)'
        for i in range(40)
    }
    w = InspectWire(write_policy(tmp_path), rule_sets(tmp_path, **sets))
    seq, _ = handshake(w, 40999)
    send(w, 40999, seq, b"MARK-00 MARK-31 MARK-39")
    assert sorted(sids(w.alerts())) == [8000, 8031, 8039]
