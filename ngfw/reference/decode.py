"""Twin of the fastpath decoder: one Ethernet frame -> the dict `ngfw._fastpath.engine.decode` returns.

Written from the protocol specifications (IEEE 802.1Q/802.1ad, RFC 826 ARP, RFC 791 IPv4,
RFC 8200 IPv6 and RFC 4302 AH, RFC 9293 TCP, RFC 768 UDP, RFC 792/4443 ICMP/ICMPv6) with the
fastpath's own bounds rules: what a frame must contain before a field is read, and which
drop reason names the first rule it breaks. The output is the fastpath's: when a frame is
dropped, the fields decoded before the failing check keep their values (a user sees them in
`ngfw decode` and in tests), so this twin fills them in the same order.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from ngfw.wire import (
    ETHERTYPE_ARP,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    ETHERTYPE_NSH,
    ETHERTYPE_RARP,
    PROTO_AH,
    PROTO_DSTOPTS,
    PROTO_FRAGMENT,
    PROTO_HOPOPTS,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_ROUTING,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
)

ETH_HLEN = 14
MAX_VLAN_TAGS = 2  # 802.1ad S-tag + 802.1Q C-tag; a third tag is refused, not skipped
MAX_IPV6_EXT = 8  # extension headers walked before the chain is declared abusive

VLAN_TPIDS = (0x8100, 0x88A8)

IPV4_MF = 0x2000
IPV4_OFFSET = 0x1FFF
IPV6_FRAG_OFFSET = 0xFFF8
IPV6_FRAG_M = 0x0001

# echo request/reply of each family: their identifier stands in for ports
ICMP_ECHO_TYPES = {PROTO_ICMP: (0, 8), PROTO_ICMPV6: (128, 129)}


def _be16(b: bytes, off: int) -> int:
    return (b[off] << 8) | b[off + 1]


@dataclass
class _Decoded:
    """What has been learnt about the frame so far; the fastpath's pkt_t, minus offsets."""

    l3: str = "none"
    vlan: int = 0
    ethertype: int = 0
    proto: int = 0
    is_fragment: bool = False
    first_fragment: bool = False
    sport: int = 0
    dport: int = 0
    tcp_flags: int = 0
    icmp_type: int = 0
    icmp_code: int = 0
    payload_len: int = 0
    src_ip: str | None = None
    dst_ip: str | None = None

    def as_dict(self, reason: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reason": reason,
            "l3": self.l3,
            "vlan": self.vlan,
            "ethertype": self.ethertype,
            "proto": self.proto,
            "is_fragment": self.is_fragment,
            "first_fragment": self.first_fragment,
            "sport": self.sport,
            "dport": self.dport,
            "tcp_flags": self.tcp_flags,
            "icmp_type": self.icmp_type,
            "icmp_code": self.icmp_code,
            "payload_len": self.payload_len,
        }
        if self.src_ip is not None:
            out["src_ip"] = self.src_ip
            out["dst_ip"] = self.dst_ip
        return out


def decode(frame: bytes) -> dict[str, Any]:
    """Decode one Ethernet frame; `reason` is the drop reason's name, or None for a good frame."""
    pkt = _Decoded()
    reason = _ethernet(frame, pkt)
    return pkt.as_dict(reason)


def _nsh_inner(f: bytes, off: int) -> tuple[int, int] | None:
    """RFC 8300 Network Service Headers (up to four, possibly around an inner Ethernet header) at
    `off`: the inner EtherType and where it starts, None when malformed."""
    n = len(f)
    for _ in range(4):
        if off + 8 > n or f[off] >> 6 != 0:
            return None
        hlen = (f[off + 1] & 0x3F) * 4
        if hlen < 8 or off + hlen > n:
            return None
        next_protocol = f[off + 3]
        off += hlen
        if next_protocol == 1:
            return ETHERTYPE_IPV4, off
        if next_protocol == 2:
            return ETHERTYPE_IPV6, off
        if next_protocol == 3:
            if off + 14 > n:
                return None
            et = _be16(f, off + 12)
            off += 14
            if et != ETHERTYPE_NSH:
                return et, off
            continue
        if next_protocol != 4:
            return None
    return None


def _ethernet(f: bytes, pkt: _Decoded) -> str | None:
    n = len(f)
    if n == 0:
        return "empty_frame"
    if n < ETH_HLEN:
        return "truncated_ethernet"
    off = 12  # the first EtherType/TPID
    et = _be16(f, off)
    tags = 0
    while et in VLAN_TPIDS:
        # a tag is 4 bytes (TPID, TCI) and must be followed by the next EtherType
        if tags == MAX_VLAN_TAGS or off + 6 > n:
            return "truncated_vlan"
        if tags == 0:
            pkt.vlan = _be16(f, off + 2) & 0x0FFF  # the outer tag's VID names the segment
        tags += 1
        off += 4
        et = _be16(f, off)
    off += 2
    pkt.ethertype = et
    if et == ETHERTYPE_NSH:
        inner = _nsh_inner(f, off)
        if inner is None:
            return "truncated_nsh"
        et, off = inner
    if et == ETHERTYPE_IPV4:
        return _ipv4(f, off, pkt)
    if et == ETHERTYPE_IPV6:
        return _ipv6(f, off, pkt)
    if et == ETHERTYPE_ARP or et == ETHERTYPE_RARP:
        return _arp(f, off, pkt, rarp=et == ETHERTYPE_RARP)
    return "unknown_ethertype"


def _arp(f: bytes, off: int, pkt: _Decoded, rarp: bool = False) -> str | None:
    # the Ethernet/IPv4 ARP body is 28 bytes; other hardware/protocol pairs must be as long to pass
    if off + 28 > len(f):
        return "truncated_arp"
    pkt.l3 = "arp"
    htype, ptype, hlen, plen = _be16(f, off), _be16(f, off + 2), f[off + 4], f[off + 5]
    if not rarp and htype == 1 and ptype == ETHERTYPE_IPV4 and hlen == 6 and plen == 4:
        # sender protocol address after 8 bytes of fixed fields and the sender MAC; target after target MAC
        pkt.src_ip = str(ipaddress.IPv4Address(f[off + 14 : off + 18]))
        pkt.dst_ip = str(ipaddress.IPv4Address(f[off + 24 : off + 28]))
    return None


def _ipv4(f: bytes, off: int, pkt: _Decoded) -> str | None:
    avail = len(f) - off
    if avail < 20:
        return "truncated_ipv4"
    if f[off] >> 4 != 4:
        return "bad_ipv4_header"
    ihl = (f[off] & 0x0F) * 4
    if ihl < 20 or ihl > avail:
        return "bad_ipv4_header"
    total = _be16(f, off + 2)
    # bytes after `total` are Ethernet padding; fewer than `total` bytes is a cut datagram
    if total < ihl or total > avail:
        return "bad_ipv4_length"
    pkt.l3 = "ipv4"
    pkt.proto = f[off + 9]
    pkt.src_ip = str(ipaddress.IPv4Address(f[off + 12 : off + 16]))
    pkt.dst_ip = str(ipaddress.IPv4Address(f[off + 16 : off + 20]))
    flags_offset = _be16(f, off + 6)
    offset = flags_offset & IPV4_OFFSET
    if flags_offset & IPV4_MF or offset:
        pkt.is_fragment = True
        pkt.first_fragment = offset == 0
        if offset:
            # only the first fragment carries the transport header
            pkt.payload_len = total - ihl
            return None
    return _transport(f, off + ihl, off + total, pkt, is_v6=False)


def _ipv6(f: bytes, off: int, pkt: _Decoded) -> str | None:
    avail = len(f) - off
    if avail < 40:
        return "truncated_ipv6"
    version = f[off] >> 4
    if version != 6:
        # no reason of its own: an IPv4 header names the IPv4 problem, anything else reads as cut short
        return "bad_ipv4_header" if version == 4 else "truncated_ipv6"
    payload_length = _be16(f, off + 4)
    if 40 + payload_length > avail:
        return "truncated_ipv6"
    pkt.l3 = "ipv6"
    pkt.src_ip = str(ipaddress.IPv6Address(f[off + 8 : off + 24]))
    pkt.dst_ip = str(ipaddress.IPv6Address(f[off + 24 : off + 40]))
    end = off + 40 + payload_length
    nh = f[off + 6]
    cur = off + 40
    for _ in range(MAX_IPV6_EXT + 1):
        if nh in (PROTO_HOPOPTS, PROTO_ROUTING, PROTO_DSTOPTS):
            # RFC 8200 4.3-4.6: Hdr Ext Len in 8-octet units, not counting the first 8 octets
            if cur + 8 > end:
                return "bad_ipv6_extension_header"
            hlen = (f[cur + 1] + 1) * 8
            if cur + hlen > end:
                return "bad_ipv6_extension_header"
            nh = f[cur]
            cur += hlen
        elif nh == PROTO_AH:
            # RFC 4302 2.2: Payload Len in 4-octet units, minus 2
            if cur + 8 > end:
                return "bad_ipv6_extension_header"
            hlen = (f[cur + 1] + 2) * 4
            if cur + hlen > end:
                return "bad_ipv6_extension_header"
            nh = f[cur]
            cur += hlen
        elif nh == PROTO_FRAGMENT:
            if cur + 8 > end:
                return "bad_ipv6_extension_header"
            offset_m = _be16(f, cur + 2)
            # RFC 8200 4.5 / RFC 6946: offset 0 with M clear is an atomic fragment, a whole
            # datagram to process in isolation, not a fragment
            if offset_m & (IPV6_FRAG_OFFSET | IPV6_FRAG_M):
                pkt.is_fragment = True
                pkt.first_fragment = offset_m & IPV6_FRAG_OFFSET == 0
            nh = f[cur]
            cur += 8
            if pkt.is_fragment and not pkt.first_fragment:
                pkt.proto = nh
                pkt.payload_len = end - cur
                return None
        else:
            pkt.proto = nh
            return _transport(f, cur, end, pkt, is_v6=True)
    return "bad_ipv6_extension_header"


def _transport(f: bytes, off: int, end: int, pkt: _Decoded, *, is_v6: bool) -> str | None:
    """The transport header at `off`; `end` is the end of the IP datagram (padding excluded)."""
    avail = max(end - off, 0)
    proto = pkt.proto
    # which ICMP this family speaks: protocol 58 inside IPv4 (or 1 inside IPv6) is not ICMP there
    icmp = PROTO_ICMPV6 if is_v6 else PROTO_ICMP
    if proto == PROTO_TCP:
        if avail < 20:
            # a first fragment too short for the TCP header is the RFC 1858 tiny-fragment attack
            return "fragment_tiny" if pkt.is_fragment else "truncated_tcp"
        data_offset = (f[off + 12] >> 4) * 4
        if data_offset < 20 or data_offset > avail:
            return "bad_tcp_header"
        pkt.sport = _be16(f, off)
        pkt.dport = _be16(f, off + 2)
        pkt.tcp_flags = f[off + 13]
        pkt.payload_len = avail - data_offset
    elif proto == PROTO_UDP:
        if avail < 8:
            return "fragment_tiny" if pkt.is_fragment else "truncated_udp"
        pkt.sport = _be16(f, off)
        pkt.dport = _be16(f, off + 2)
        length = _be16(f, off + 4)
        # a first fragment's UDP length covers fragments not seen yet, so it cannot be checked
        if not pkt.is_fragment and (length < 8 or length > avail):
            return "bad_udp_length"
        pkt.payload_len = (avail if pkt.is_fragment else length) - 8
    elif proto == PROTO_SCTP and avail >= 12:
        # the common header's ports; its chunks are the payload (a header cut short: no ports)
        pkt.sport = _be16(f, off)
        pkt.dport = _be16(f, off + 2)
        pkt.payload_len = avail - 12
    elif proto == icmp:
        if avail < 4:
            return "fragment_tiny" if pkt.is_fragment else "truncated_icmp"
        pkt.icmp_type = f[off]
        pkt.icmp_code = f[off + 1]
        if avail >= 8 and pkt.icmp_type in ICMP_ECHO_TYPES[icmp]:
            pkt.sport = pkt.dport = _be16(f, off + 4)  # the echo identifier
        pkt.payload_len = avail - 4
    return None
