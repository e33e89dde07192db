"""Flow table behaviour: bidirectional flows, TCP state, idle timeouts, a full table, fragments, VLANs."""

from __future__ import annotations

from scapy.layers.inet import fragment
from scapy.layers.l2 import Dot1Q

from tests.support.fastpath import (
    ICMP,
    IP,
    SRV_IP,
    SRV_MAC,
    UDP,
    WEB1_IP,
    WEB1_MAC,
    Ether,
    Wire,
    lab_policy,
    srv_to_web1,
    tcp,
    web1_to_srv,
)

S = 1_000_000_000  # ns


def handshake(w: Wire, sport: int, now: int) -> None:
    w.from_vm(web1_to_srv(tcp(sport, 80, "S")), now)
    w.from_up(srv_to_web1(tcp(80, sport, "SA", ack=1001)), now)
    w.from_vm(web1_to_srv(tcp(sport, 80, "A", seq=1001)), now)


def test_both_directions_share_one_flow() -> None:
    w = Wire(lab_policy())
    handshake(w, 41000, 10 * S)
    (flow,) = w.engine.flows()
    assert flow["src_ip"] == WEB1_IP and flow["src_port"] == 41000 and flow["dest_ip"] == SRV_IP
    assert (flow["pkts_toserver"], flow["pkts_toclient"]) == (2, 1)


def test_tcp_close_and_idle_timeouts() -> None:
    w = Wire(lab_policy(), tcp_established=100, tcp_closing=5)
    handshake(w, 41001, 10 * S)
    w.engine.expire(50 * S)
    assert len(w.engine.flows()) == 1  # established, not idle long enough
    w.from_vm(web1_to_srv(tcp(41001, 80, "FA", seq=1001)), 60 * S)
    w.from_up(srv_to_web1(tcp(80, 41001, "FA", ack=1002)), 60 * S)
    assert w.engine.flows()[0]["tcp_state"] == "closing"
    w.engine.expire(66 * S)
    assert w.engine.flows() == []
    (event,) = w.engine.drain_events()
    assert event["event"] == "flow" and event["end_reason"] == "timeout"
    assert event["pkts_toserver"] == 3 and event["pkts_toclient"] == 2
    assert event["rule"] == 0 and event["action"] == "allow"


def test_udp_flow_expires_after_its_timeout() -> None:
    w = Wire(lab_policy(), udp=30)
    w.from_vm(web1_to_srv(UDP(sport=5353, dport=53)), 10 * S)
    w.engine.expire(39 * S)
    assert len(w.engine.flows()) == 1
    w.engine.expire(41 * S)
    assert w.engine.flows() == []


def test_new_syn_on_a_closed_tuple_starts_a_new_flow() -> None:
    w = Wire(lab_policy())
    handshake(w, 41002, 10 * S)
    w.from_vm(web1_to_srv(tcp(41002, 80, "R", seq=1001)), 11 * S)
    up, _ = w.from_vm(web1_to_srv(tcp(41002, 80, "S", seq=9000)), 12 * S)
    assert len(up) == 1
    (flow,) = w.engine.flows()
    assert flow["tcp_state"] == "syn_sent" and flow["pkts_toserver"] == 1
    (ended,) = w.engine.drain_events()
    assert ended["end_reason"] == "reused"


def test_table_full_of_conversations_drops_new_flows_and_keeps_old_ones() -> None:
    w = Wire(lab_policy(), flow_capacity=4)
    for port in range(4):
        handshake(w, 42000 + port, (10 + port) * S)
    assert w.from_vm(web1_to_srv(tcp(42100, 80, "S")), 20 * S)[0] == []
    assert w.engine.stats()["flow_insert_failures"] == 1
    assert w.engine.stats()["flows_early_dropped"] == 0  # an established flow never gives way
    # existing flows go on
    assert len(w.from_up(srv_to_web1(tcp(80, 42000, "A", seq=5001, ack=1001)), 21 * S)[0]) == 1


def test_table_full_of_half_open_flows_makes_room_for_a_new_one() -> None:
    """Linux conntrack's early_drop: the oldest embryonic flow gives way, so a SYN flood that fills the
    table cannot lock legitimate clients out."""
    w = Wire(lab_policy(), flow_capacity=4)
    for port in range(4):
        assert len(w.from_vm(web1_to_srv(tcp(42000 + port, 80, "S")), (10 + port) * S)[0]) == 1
    up, _ = w.from_vm(web1_to_srv(tcp(42100, 80, "S")), 20 * S)
    assert len(up) == 1
    stats = w.engine.stats()
    assert stats["flows_early_dropped"] == 1 and stats["flow_insert_failures"] == 0
    ports = sorted(f["src_port"] for f in w.engine.flows())
    assert ports == [42001, 42002, 42003, 42100]  # the oldest half-open one (42000) went
    (ended,) = [e for e in w.engine.drain_events() if e["event"] == "flow"]
    assert ended["src_port"] == 42000 and ended["end_reason"] == "early_drop"


def test_flow_table_survives_churn() -> None:
    """Insert/expire many flows through a small table: lookups stay right after backward-shift deletes."""
    w = Wire(lab_policy(), flow_capacity=64, udp=1)
    now = 10 * S
    for round_no in range(20):
        for port in range(60):
            w.from_vm(web1_to_srv(UDP(sport=10000 + round_no * 100 + port, dport=53)), now)
        assert w.engine.stats()["flows_active"] == 60
        # every flow of this round is still found (replies pass as part of the flow)
        for port in range(0, 60, 7):
            reply = (
                Ether(src=SRV_MAC, dst=WEB1_MAC)
                / IP(src=SRV_IP, dst=WEB1_IP)
                / UDP(sport=53, dport=10000 + round_no * 100 + port)
            )
            assert len(w.from_up(reply, now)[0]) == 1
        now += 5 * S
        w.engine.expire(now)
        assert w.engine.stats()["flows_active"] == 0
    assert w.engine.stats()["flow_insert_failures"] == 0


def test_fragments_follow_their_first_fragment() -> None:
    w = Wire(lab_policy())
    allowed = fragment(web1_to_srv(UDP(sport=1, dport=53) / (b"a" * 3000))[IP], fragsize=1000)
    denied = fragment(web1_to_srv(UDP(sport=1, dport=9999) / (b"a" * 3000))[IP], fragsize=1000)
    out = []
    for frag in allowed:
        out += w.from_vm(Ether(src=WEB1_MAC, dst=SRV_MAC) / frag)[0]
    assert len(out) == len(allowed) >= 3
    out = []
    for frag in denied:
        out += w.from_vm(Ether(src=WEB1_MAC, dst=SRV_MAC) / frag)[0]
    assert out == []


def test_fragment_without_first_is_dropped() -> None:
    w = Wire(lab_policy())
    frags = fragment(web1_to_srv(UDP(sport=1, dport=53) / (b"a" * 3000))[IP], fragsize=1000)
    assert w.from_vm(Ether(src=WEB1_MAC, dst=SRV_MAC) / frags[1])[0] == []
    assert w.drops() == {"fragment_without_first": 1}


def test_tcp_data_offset_inside_or_past_the_segment_is_dropped_inline() -> None:
    """Replay still makes a flow of it, by its ports (test_replay_cli); the receiver would drop it."""
    w = Wire(lab_policy())
    short = bytearray(bytes(web1_to_srv(tcp(40010, 80, "S", seq=100))))
    short[14 + 20 + 12] = 0x20  # data offset 2 words: inside the fixed header
    long = bytearray(short)
    long[14 + 20 + 12] = 0xF0  # 15 words: past the segment's end
    assert w.from_vm(bytes(short))[0] == [] and w.from_vm(bytes(long))[0] == []
    assert w.drops() == {"bad_tcp_header": 2}


def test_udp_length_past_its_datagram_is_dropped_inline() -> None:
    """The receiving kernel would drop it, so the dataplane does too (replay reads it: test_replay_cli)."""
    w = Wire(lab_policy())
    frame = web1_to_srv(UDP(sport=1, dport=53, len=554) / (b"a" * 34))
    assert w.from_vm(frame)[0] == []
    assert w.drops() == {"bad_udp_length": 1}


def test_vlan_tagged_flows_are_tracked_and_forwarded_tagged() -> None:
    w = Wire(lab_policy())
    frame = Ether(src=WEB1_MAC, dst=SRV_MAC) / Dot1Q(vlan=42) / IP(src=WEB1_IP, dst=SRV_IP) / tcp(43000, 80, "S")
    up, _ = w.from_vm(frame)
    assert up == [bytes(frame)]
    assert w.engine.flows()[0]["vlan"] == 42


def test_ping_is_a_flow_keyed_by_echo_id() -> None:
    w = Wire(lab_policy())
    w.from_vm(web1_to_srv(ICMP(type=8, id=7, seq=1)))
    down, _ = w.from_up(srv_to_web1(ICMP(type=0, id=7, seq=1)))
    assert len(down) == 1
    (flow,) = w.engine.flows()
    assert flow["pkts_toclient"] == 1


def test_shutdown_logs_every_open_flow() -> None:
    w = Wire(lab_policy())
    handshake(w, 41003, 10 * S)
    w.engine.end_all_flows()
    (event,) = w.engine.drain_events()
    assert event["end_reason"] == "shutdown" and event["dest_port"] == 80


def test_icmp_error_about_a_flow_travels_with_it() -> None:
    """PMTU discovery: a 'fragmentation needed' about an allowed flow reaches its sender."""
    w = Wire(lab_policy())
    request = web1_to_srv(tcp(44000, 80, "S"))
    w.from_vm(request)
    too_big = srv_to_web1(ICMP(type=3, code=4, nexthopmtu=1400) / bytes(request[IP])[:28])
    assert len(w.from_up(too_big)[0]) == 1


def test_icmp_error_about_no_flow_is_dropped() -> None:
    w = Wire(lab_policy())
    unsolicited = srv_to_web1(ICMP(type=3, code=3) / bytes(web1_to_srv(UDP(sport=1, dport=2))[IP])[:28])
    assert w.from_up(unsolicited)[0] == []
    assert w.drops() == {"icmp_error_without_flow": 1}


def test_icmp_error_about_a_denied_flow_is_dropped() -> None:
    w = Wire(lab_policy())
    denied = web1_to_srv(UDP(sport=1, dport=9999))
    w.from_vm(denied)
    assert w.from_up(srv_to_web1(ICMP(type=3, code=3) / bytes(denied[IP])[:28]))[0] == []


def test_icmp_error_must_go_back_to_the_quoted_sender() -> None:
    """A workload cannot smuggle data to any address inside an 'error' about its own allowed flow."""
    w = Wire(lab_policy())
    request = web1_to_srv(tcp(44001, 80, "S"))
    w.from_vm(request)
    smuggled = (
        Ether(src=WEB1_MAC, dst=SRV_MAC)
        / IP(src=WEB1_IP, dst="203.0.113.99")
        / ICMP(type=3, code=3)
        / bytes(request[IP])[:28]
        / (b"secret" * 100)
    )
    assert w.from_vm(smuggled)[0] == []
    assert w.drops() == {"icmp_error_without_flow": 1}


def test_neighbour_discovery_passes_only_as_link_local_control() -> None:
    from scapy.layers.inet6 import ICMPv6ND_NS, IPv6

    w = Wire(lab_policy())
    ns = (
        Ether(src=WEB1_MAC, dst="33:33:ff:00:01:00")
        / IPv6(src="fe80::1", dst="ff02::1:ff00:100", hlim=255)
        / ICMPv6ND_NS(tgt="fd77::100")
    )
    assert len(w.from_vm(ns)[0]) == 1
    routed = (
        Ether(src=WEB1_MAC, dst=SRV_MAC)
        / IPv6(src="fd77::11", dst="2001:db8::1", hlim=64)
        / ICMPv6ND_NS(tgt="fd77::100")
    )
    assert w.from_vm(routed)[0] == []
