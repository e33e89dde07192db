"""The fastpath decoder against its pure-Python twin (`ngfw.reference.decode`), frame by frame.

Hypothesis builds well-formed frames with scapy (VLAN tags, IPv4 options and fragments, IPv6
extension headers, TCP options, UDP, ICMP/ICMPv6, ARP, unknown EtherTypes); each frame is then
checked whole, cut at every length, and with random bytes changed, so every bounds check of the
C decoder meets a frame that ends just before, at and after the field it guards.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_Router_Alert, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from ngfw._fastpath import engine
from ngfw.compiler.tables import Action, AddressSet, CompiledPolicy, CompiledRule, CompiledWorkload
from ngfw.reference import decode as reference

# ICMPv6 built for an IPv4 datagram (a deliberate mismatch) has no IPv6 header to checksum against
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
MUTATIONS_PER_FRAME = 24


def assert_same(frame: bytes) -> None:
    fast = engine.decode(frame)
    twin = reference.decode(frame)
    if fast != twin:
        diff = {k: (fast.get(k), twin.get(k)) for k in fast.keys() | twin.keys() if fast.get(k) != twin.get(k)}
        raise AssertionError(f"decoders disagree on {frame.hex()} (len {len(frame)}): (fastpath, twin) {diff}")


def cut_to_fit(frame: bytes, cut: int) -> bytes | None:
    """`frame[:cut]` with its IP length field rewritten to claim exactly what is left.

    A plain cut mostly stops at the IP length check; a datagram that says it is short reaches the
    transport decoder's own bounds checks at every length instead.
    """
    off, tags = 12, 0
    while frame[off : off + 2] in (b"\x81\x00", b"\x88\xa8") and tags < 2 and off + 6 <= len(frame):
        off, tags = off + 4, tags + 1
    ethertype, l3 = frame[off : off + 2], off + 2
    short = bytearray(frame[:cut])
    if ethertype == b"\x08\x00" and cut >= l3 + 20:
        short[l3 + 2 : l3 + 4] = (cut - l3).to_bytes(2, "big")
    elif ethertype == b"\x86\xdd" and cut >= l3 + 40:
        short[l3 + 4 : l3 + 6] = (cut - l3 - 40).to_bytes(2, "big")
    else:
        return None
    return bytes(short)


def assert_same_everywhere(frame: bytes, seed: int) -> None:
    """The frame, every prefix of it (as is and with the IP length fixed up), and mutated copies."""
    for cut in range(len(frame) + 1):
        assert_same(frame[:cut])
        fitted = cut_to_fit(frame, cut)
        if fitted is not None:
            assert_same(fitted)
    rng = random.Random(seed)
    for _ in range(MUTATIONS_PER_FRAME):
        mutated = bytearray(frame)
        for _ in range(rng.randint(1, 3)):
            pos = rng.randrange(len(mutated))
            # header fields are where decoders break: extremes and single bit flips find off-by-ones
            mutated[pos] = rng.choice((0x00, 0xFF, rng.randrange(256), mutated[pos] ^ (1 << rng.randrange(8))))
        assert_same(bytes(mutated))
        assert_same(bytes(mutated[: rng.randrange(len(mutated) + 1)]))


# ---------------------------------------------------------------- strategies

macs = st.binary(min_size=6, max_size=6)
ports = st.sampled_from([0, 1, 22, 53, 80, 443, 8080, 65535]) | st.integers(0, 65535)
payloads = st.binary(max_size=48)
ipv4s = st.integers(0, 2**32 - 1).map(lambda v: str(ipaddress.IPv4Address(v)))
ipv6s = st.integers(0, 2**128 - 1).map(lambda v: str(ipaddress.IPv6Address(v)))


def sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A lie in a length field one time in eight; scapy's computed value otherwise."""
    return st.integers(0, 7).flatmap(lambda n: strategy if n == 0 else st.none())


@st.composite
def tcp_segments(draw: st.DrawFn) -> Packet:
    options = draw(
        st.lists(
            st.sampled_from(
                [("MSS", 1460), ("NOP", None), ("SAckOK", b""), ("WScale", 7), ("Timestamp", (1, 2)), ("EOL", None)]
            ),
            max_size=5,
        )
    )
    segment = TCP(
        sport=draw(ports),
        dport=draw(ports),
        seq=draw(st.integers(0, 2**32 - 1)),
        ack=draw(st.integers(0, 2**32 - 1)),
        flags=draw(st.integers(0, 255)),
        options=options,
        dataofs=draw(sometimes(st.integers(0, 15))),
    )
    return segment / Raw(draw(payloads))


@st.composite
def udp_datagrams(draw: st.DrawFn) -> Packet:
    return UDP(sport=draw(ports), dport=draw(ports), len=draw(sometimes(st.integers(0, 0xFFFF)))) / Raw(draw(payloads))


@st.composite
def icmp_messages(draw: st.DrawFn) -> Packet:
    icmp_type = draw(st.sampled_from([0, 8, 3, 11, 13, 5]) | st.integers(0, 255))
    return ICMP(type=icmp_type, code=draw(st.integers(0, 255)), id=draw(ports), seq=draw(ports)) / Raw(draw(payloads))


@st.composite
def icmpv6_messages(draw: st.DrawFn) -> Packet:
    kind = draw(st.sampled_from(["echo", "reply", "ns", "na", "raw"]))
    if kind == "echo":
        return ICMPv6EchoRequest(id=draw(ports), seq=draw(ports)) / Raw(draw(payloads))
    if kind == "reply":
        return ICMPv6EchoReply(id=draw(ports), seq=draw(ports)) / Raw(draw(payloads))
    if kind == "ns":
        return ICMPv6ND_NS(tgt=draw(ipv6s))
    if kind == "na":
        return ICMPv6ND_NA(tgt=draw(ipv6s))
    # any type (MLD, errors, unassigned), checksum left zero: the decoder does not verify it
    return Raw(bytes([draw(st.integers(0, 255)), draw(st.integers(0, 255)), 0, 0]) + draw(payloads))


# (protocol number, payload): ICMPv6 inside IPv4 and ICMP inside IPv6 are deliberate mismatches
OTHER_PROTOCOLS = [0, 2, 4, 41, 47, 50, 59, 103, 132, 253, 255]


@st.composite
def transport(draw: st.DrawFn, family: int) -> tuple[int, Packet]:
    kind = draw(st.sampled_from(["tcp", "udp", "icmp", "icmpv6", "other"]))
    if kind == "tcp":
        return 6, draw(tcp_segments())
    if kind == "udp":
        return 17, draw(udp_datagrams())
    if kind == "icmp":
        return 1, draw(icmp_messages())
    if kind == "icmpv6":
        return 58, draw(icmpv6_messages()) if family == 6 else Raw(bytes(draw(icmpv6_messages())))
    return draw(st.sampled_from(OTHER_PROTOCOLS)), Raw(draw(payloads))


IP_OPTIONS = [
    [],
    [IPOption_NOP()],
    [IPOption_Router_Alert()],
    [IPOption_NOP(), IPOption_NOP(), IPOption_NOP(), IPOption_NOP()],
    [IPOption_RR(routers=["192.0.2.1", "192.0.2.2"])],
]


@st.composite
def ipv4_packets(draw: st.DrawFn) -> Packet:
    proto, l4 = draw(transport(4))
    fragment = draw(st.sampled_from(["none", "none", "first", "later"]))
    header = dict(
        src=draw(ipv4s),
        dst=draw(ipv4s),
        id=draw(ports),
        ttl=draw(st.integers(0, 255)),
        proto=proto,
        options=draw(st.sampled_from(IP_OPTIONS)),
        flags=draw(st.sampled_from([0, 2])),  # DF is no fragment
        len=draw(sometimes(st.integers(0, 0xFFFF))),
        ihl=draw(sometimes(st.integers(0, 15))),
    )
    body = bytes(l4)
    if fragment == "first":
        # the first fragment may end anywhere, even inside the transport header (a tiny fragment)
        header["flags"] |= 1
        body = body[: draw(st.integers(0, len(body)))]
    elif fragment == "later":
        header["flags"] |= draw(st.sampled_from([0, 1]))
        header["frag"] = draw(st.integers(1, 0x1FFF))
    return IP(**header) / Raw(body)


def ext_header(kind: str, draw: st.DrawFn) -> tuple[int, Packet]:
    if kind == "hbh":
        return 0, IPv6ExtHdrHopByHop(options=[PadN(optdata=b"\x00" * draw(st.integers(0, 12)))])
    if kind == "routing":
        return 43, IPv6ExtHdrRouting(addresses=draw(st.lists(ipv6s, max_size=2)), segleft=draw(st.integers(0, 2)))
    if kind == "dest":
        return 60, IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\x00" * draw(st.integers(0, 12)))])
    if kind == "ah":
        icv = b"\xa5" * draw(st.sampled_from([4, 12, 20]))
        return 51, AH(spi=draw(ports), seq=draw(ports), icv=icv, payloadlen=(12 + len(icv)) // 4 - 2)
    # fragment: atomic (offset 0, M clear), first (offset 0, M set) or later (offset > 0)
    offset = draw(st.sampled_from([0, 0, 1, 185, 0x1FFF]))
    return 44, IPv6ExtHdrFragment(offset=offset, m=draw(st.integers(0, 1)), id=draw(st.integers(0, 2**32 - 1)))


@st.composite
def ipv6_packets(draw: st.DrawFn) -> Packet:
    kinds = draw(st.lists(st.sampled_from(["hbh", "routing", "dest", "frag", "ah"]), max_size=4))
    chain = [ext_header(kind, draw) for kind in kinds]
    proto, l4 = draw(transport(6))
    # next-header numbers are set by hand: scapy does not fill them in for AH or raw payloads
    numbers = [number for number, _ in chain] + [proto]
    packet: Packet = IPv6(
        src=draw(ipv6s),
        dst=draw(ipv6s),
        nh=numbers[0],
        hlim=draw(st.integers(0, 255)),
        plen=draw(sometimes(st.integers(0, 0xFFFF))),
    )
    for (_, header), nh in zip(chain, numbers[1:]):
        header.nh = nh
        packet = packet / header
    return packet / l4


@st.composite
def arp_packets(draw: st.DrawFn) -> Packet:
    if draw(st.booleans()):
        return ARP(op=draw(st.integers(0, 3)), hwsrc=draw(macs), psrc=draw(ipv4s), hwdst=draw(macs), pdst=draw(ipv4s))
    # other hardware/protocol pairs (and lies about their lengths) must not be read as IPv4 ARP
    return Raw(
        draw(st.sampled_from([b"\x00\x01", b"\x00\x06"]))
        + draw(st.sampled_from([b"\x08\x00", b"\x86\xdd"]))
        + bytes([draw(st.sampled_from([6, 8])), draw(st.sampled_from([4, 16]))])
        + draw(st.binary(min_size=20, max_size=40))
    )


KNOWN_ETHERTYPES = {0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8}


@st.composite
def frames(draw: st.DrawFn, l3: st.SearchStrategy[tuple[int, Packet]]) -> bytes:
    ethertype, payload = draw(l3)
    # mostly 0-2 tags; a third is refused by the decoder and must be seen refused
    tags = draw(st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8]), st.integers(0, 4095)), max_size=3))
    types = [tpid for tpid, _ in tags] + [ethertype]
    packet: Packet = Ether(dst=draw(macs), src=draw(macs), type=types[0])
    for (_, vid), next_type in zip(tags, types[1:]):
        packet = packet / Dot1Q(vlan=vid, prio=draw(st.integers(0, 7)), type=next_type)
    # Ethernet padding / trailer after the L3 datagram must not count as payload
    return bytes(packet / payload) + draw(st.binary(max_size=20))


ipv4_frames = frames(ipv4_packets().map(lambda p: (0x0800, p)))
ipv6_frames = frames(ipv6_packets().map(lambda p: (0x86DD, p)))
other_frames = frames(
    st.one_of(
        arp_packets().map(lambda p: (0x0806, p)),
        st.tuples(st.integers(0, 0xFFFF).filter(lambda t: t not in KNOWN_ETHERTYPES), payloads.map(Raw)),
        # the IP EtherTypes carrying the other family's header (or garbage)
        st.tuples(st.sampled_from([0x0800, 0x86DD]), st.one_of(ipv4_packets(), ipv6_packets(), payloads.map(Raw))),
    )
)
seeds = st.integers(0, 2**32 - 1)


# ---------------------------------------------------------------- differential tests


@SETTINGS
@given(ipv4_frames, seeds)
def test_ipv4_frames_decode_alike(frame: bytes, seed: int) -> None:
    assert_same_everywhere(frame, seed)


@SETTINGS
@given(ipv6_frames, seeds)
def test_ipv6_frames_decode_alike(frame: bytes, seed: int) -> None:
    assert_same_everywhere(frame, seed)


@SETTINGS
@given(other_frames, seeds)
def test_arp_and_other_frames_decode_alike(frame: bytes, seed: int) -> None:
    assert_same_everywhere(frame, seed)


# ---------------------------------------------------------------- what a user sees

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def eth(payload: Packet, *vlans: int) -> Packet:
    frame: Packet = Ether(src=MAC_A, dst=MAC_B)
    for vid in vlans:
        frame = frame / Dot1Q(vlan=vid)
    return frame / payload


def decoded(frame: Packet | bytes) -> dict[str, Any]:
    """Both decoders' answer, after checking they agree."""
    raw = bytes(frame)
    assert_same(raw)
    return engine.decode(raw)


def test_a_tcp_syn_decodes_to_its_ports_and_flags() -> None:
    out = decoded(eth(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=443, flags="S"), 7))
    assert out["reason"] is None
    assert (out["l3"], out["vlan"], out["proto"]) == ("ipv4", 7, 6)
    assert (out["src_ip"], out["dst_ip"], out["sport"], out["dport"]) == ("10.0.0.1", "10.0.0.2", 40000, 443)
    assert out["tcp_flags"] == 0x02


def test_a_tcp_header_cut_short_is_truncated_tcp() -> None:
    frame = bytes(eth(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(dport=80)))[:-8]
    # the IP total length must still fit, or the IP layer reports the cut first
    frame = frame[:16] + (len(frame) - 14).to_bytes(2, "big") + frame[18:]
    assert decoded(frame)["reason"] == "truncated_tcp"


def test_a_tcp_header_longer_than_the_segment_is_bad_tcp_header() -> None:
    assert decoded(eth(IP() / TCP(dataofs=15)))["reason"] == "bad_tcp_header"
    assert decoded(eth(IP() / TCP(dataofs=4)))["reason"] == "bad_tcp_header"


def test_an_ipv4_total_length_beyond_the_frame_is_bad_ipv4_length() -> None:
    assert decoded(eth(IP(len=1000) / UDP()))["reason"] == "bad_ipv4_length"


def test_a_bad_ipv4_header_length_is_bad_ipv4_header() -> None:
    assert decoded(eth(IP(ihl=4) / UDP()))["reason"] == "bad_ipv4_header"


def test_three_vlan_tags_are_truncated_vlan() -> None:
    out = decoded(eth(IP() / UDP(), 10, 20, 30))
    assert out["reason"] == "truncated_vlan"
    assert out["vlan"] == 10  # the outer tag was read before the third was refused


def test_short_frames_name_what_is_missing() -> None:
    assert decoded(b"")["reason"] == "empty_frame"
    assert decoded(bytes(eth(IP()))[:13])["reason"] == "truncated_ethernet"
    assert decoded(bytes(eth(IP(), 5))[:17])["reason"] == "truncated_vlan"
    assert decoded(bytes(eth(IP()))[:33])["reason"] == "truncated_ipv4"
    assert decoded(bytes(eth(IPv6()))[:53])["reason"] == "truncated_ipv6"
    assert decoded(bytes(eth(ARP()))[:41])["reason"] == "truncated_arp"
    assert decoded(Ether(type=0x88B5) / Raw(b"x" * 46))["reason"] == "unknown_ethertype"


def test_a_udp_length_beyond_the_datagram_is_bad_udp_length() -> None:
    out = decoded(eth(IP() / UDP(sport=5353, dport=53, len=200) / Raw(b"q" * 10)))
    assert out["reason"] == "bad_udp_length"
    assert (out["sport"], out["dport"]) == (5353, 53)  # ports were read before the length was checked


def test_ethernet_padding_is_not_payload() -> None:
    frame = bytes(eth(IP() / UDP() / Raw(b"abcd"))) + b"\x00" * 14  # padded to the 60-byte minimum
    out = decoded(frame)
    assert out["reason"] is None
    assert out["payload_len"] == 4


def test_a_first_fragment_too_short_for_tcp_is_fragment_tiny() -> None:
    out = decoded(eth(IP(flags="MF", proto=6) / Raw(bytes(TCP())[:8])))
    assert out["reason"] == "fragment_tiny"
    assert out["is_fragment"] and out["first_fragment"]


def test_a_later_fragment_has_no_ports() -> None:
    out = decoded(eth(IP(frag=185, proto=17) / Raw(b"x" * 64)))
    assert out["reason"] is None
    assert out["is_fragment"] and not out["first_fragment"]
    assert (out["sport"], out["dport"], out["payload_len"]) == (0, 0, 64)


def test_ipv6_extension_headers_are_walked_to_the_transport() -> None:
    packet = (
        IPv6(src="fd00::1", dst="fd00::2")
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting()
        / IPv6ExtHdrDestOpt()
        / IPv6ExtHdrFragment(m=1, id=9)
        / TCP(sport=1234, dport=22, flags="S")
    )
    out = decoded(eth(packet))
    assert out["reason"] is None
    assert (out["proto"], out["dport"], out["is_fragment"], out["first_fragment"]) == (6, 22, True, True)


def test_a_later_ipv6_fragment_names_the_protocol_it_continues() -> None:
    out = decoded(eth(IPv6() / IPv6ExtHdrFragment(offset=100, nh=17) / Raw(b"x" * 24)))
    assert (out["reason"], out["proto"], out["is_fragment"], out["first_fragment"]) == (None, 17, True, False)
    assert out["payload_len"] == 24


def test_an_ipv6_extension_header_past_the_payload_is_bad_ipv6_extension_header() -> None:
    assert decoded(eth(IPv6(nh=0, plen=6) / Raw(b"\x06\x00" + b"\x00" * 4)))["reason"] == "bad_ipv6_extension_header"


def test_more_than_eight_ipv6_extension_headers_are_refused() -> None:
    packet: Packet = IPv6()
    for _ in range(9):
        packet = packet / IPv6ExtHdrDestOpt()
    assert decoded(eth(packet / UDP()))["reason"] == "bad_ipv6_extension_header"
    packet = IPv6()
    for _ in range(8):
        packet = packet / IPv6ExtHdrDestOpt()
    assert decoded(eth(packet / UDP()))["reason"] is None


def test_an_ipv4_arp_names_its_sender_and_target() -> None:
    out = decoded(Ether(src=MAC_A) / ARP(psrc="10.0.0.1", pdst="10.0.0.2"))
    assert (out["l3"], out["src_ip"], out["dst_ip"]) == ("arp", "10.0.0.1", "10.0.0.2")


def test_an_icmp_echo_identifier_stands_in_for_ports() -> None:
    out = decoded(eth(IP() / ICMP(type=8, id=4242)))
    assert (out["icmp_type"], out["sport"], out["dport"]) == (8, 4242, 4242)
    out = decoded(eth(IPv6() / ICMPv6EchoRequest(id=77)))
    assert (out["icmp_type"], out["sport"], out["dport"]) == (128, 77, 77)


# ---------------------------------------------------------------- regressions found by the twin


def test_icmpv6_numbers_inside_ipv4_are_not_icmp() -> None:
    """IPv4 protocol 58 used to be decoded as ICMPv6, so an IPv4 datagram with "type" 135 was
    passed as neighbour discovery, around the policy. It is an opaque protocol in IPv4 (and
    protocol 1 is one in IPv6)."""
    out = decoded(eth(IP(proto=58) / Raw(bytes([135, 0, 0, 0]) + b"payload")))
    assert (out["reason"], out["proto"], out["icmp_type"]) == (None, 58, 0)
    out = decoded(eth(IPv6(nh=1) / Raw(bytes([8, 0, 0, 0, 0, 7, 0, 1]))))
    assert (out["reason"], out["proto"], out["icmp_type"], out["sport"]) == (None, 1, 0, 0)


def test_ipv4_protocol_58_cannot_pass_as_neighbour_discovery() -> None:
    workload = CompiledWorkload("w1", 0, (bytes.fromhex("020000000001"),), (ipaddress.ip_address("10.0.0.1"),))
    deny_all = CompiledRule("deny-all", 0, AddressSet(any=True), AddressSet(any=True), (), Action.DENY)
    policy = CompiledPolicy(1, ("tenant",), (workload,), (deny_all,))
    e = engine.Engine(flow_capacity=64)
    a, b = e.add_memory_port("a", 0), e.add_memory_port("b", 0)
    e.set_tables(engine.Tables(policy, {"a": a, "b": b}))
    smuggled = Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="192.0.2.9", proto=58)
    e.inject(a, bytes(smuggled / Raw(bytes([135, 0, 0, 0]) + b"data the policy denies")))
    assert e.take_tx(b) == []
    assert e.stats()["drops"]["policy_deny"] == 1


def test_an_ipv6_atomic_fragment_is_a_whole_datagram() -> None:
    """RFC 8200 4.5 / RFC 6946: a Fragment header with offset 0 and M clear is processed in isolation;
    it used to be tracked as a first fragment, which also skipped the UDP length check."""
    out = decoded(eth(IPv6() / IPv6ExtHdrFragment(offset=0, m=0) / UDP(sport=1, dport=53) / Raw(b"abcd")))
    assert (out["reason"], out["is_fragment"], out["first_fragment"], out["payload_len"]) == (None, False, False, 4)
    out = decoded(eth(IPv6() / IPv6ExtHdrFragment(offset=0, m=0) / UDP(len=4000) / Raw(b"abcd")))
    assert out["reason"] == "bad_udp_length"


@pytest.mark.parametrize("m, offset, first", [(1, 0, True), (1, 8, False), (0, 8, False)])
def test_ipv6_fragments_that_are_fragments(m: int, offset: int, first: bool) -> None:
    out = decoded(eth(IPv6() / IPv6ExtHdrFragment(offset=offset, m=m, nh=17) / Raw(bytes(UDP()))))
    assert (out["is_fragment"], out["first_fragment"]) == (True, first)
