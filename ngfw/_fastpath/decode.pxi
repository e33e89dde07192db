# Stage 1, decode: Ethernet, 802.1Q/802.1ad, ARP, IPv4, IPv6 (extension headers), TCP, UDP, ICMP/ICMPv6.
# Every read is bounds-checked against the frame length; a malformed frame returns a drop reason
# and is counted, never read past its end.

cdef enum:
    ETH_HLEN = 14
    MAX_VLAN_TAGS = 2
    MAX_IPV6_EXT = 8

cdef inline void ip_from_v4(ip128_t *ip, const uint8_t *p) noexcept nogil:
    # ::ffff:a.b.c.d, laid out exactly as the 16 packet bytes would be
    cdef uint8_t buf[16]
    memset(buf, 0, 10)
    buf[10] = 0xff
    buf[11] = 0xff
    memcpy(buf + 12, p, 4)
    memcpy(&ip.hi, buf, 8)
    memcpy(&ip.lo, buf + 8, 8)

cdef inline void ip_from_v6(ip128_t *ip, const uint8_t *p) noexcept nogil:
    memcpy(&ip.hi, p, 8)
    memcpy(&ip.lo, p + 8, 8)

cdef int decode_l4(pkt_t *p, uint32_t off, uint32_t end) noexcept nogil:
    """Decode the transport header at `off`; `end` is the end of the IP payload."""
    cdef const uint8_t *d = p.data
    cdef uint32_t avail = end - off if end > off else 0
    cdef uint32_t hl, ulen
    p.l4_off = off
    p.payload_off = end
    p.payload_len = 0
    if p.proto == P_TCP:
        if avail < 20:
            return R_FRAG_TINY if p.is_frag else R_TRUNC_TCP
        hl = (d[off + 12] >> 4) * 4
        if hl < 20 or hl > avail:
            if not p.offline:
                return R_BAD_TCP_HEADER
            # a replayed capture's damaged data offset: its ports and flags still make the flow, as
            # analysers read it; the payload is what follows the fixed header, if the offset is short
            hl = 20 if hl < 20 else avail
        p.sport = ngfw_be16(d + off)
        p.dport = ngfw_be16(d + off + 2)
        p.tcp_seq = ngfw_be32(d + off + 4)
        p.tcp_ack = ngfw_be32(d + off + 8)
        p.tcp_flags = d[off + 13]
        p.payload_off = off + hl
        p.payload_len = avail - hl
        p.has_ports = 1
    elif p.proto == P_UDP:
        if avail < 8:
            return R_FRAG_TINY if p.is_frag else R_TRUNC_UDP
        p.sport = ngfw_be16(d + off)
        p.dport = ngfw_be16(d + off + 2)
        ulen = ngfw_be16(d + off + 4)
        # Inline, a UDP length past the IP datagram is dropped, as the receiving kernel drops it. A
        # replayed capture (cut by its snap length, or carrying a datagram some stack sent with a bad
        # length) is read as far as the IP header says, as analysers (nDPI, Wireshark) read it.
        if ulen > avail and (p.snapped or p.offline) and ulen >= 8:
            ulen = avail
        if not p.is_frag and (ulen < 8 or ulen > avail):
            return R_BAD_UDP_LENGTH
        p.payload_off = off + 8
        p.payload_len = (ulen if not p.is_frag else avail) - 8
        p.has_ports = 1
    elif p.proto == P_SCTP and avail >= 12:
        # SCTP's common header: ports, verification tag, checksum; the chunks are the payload, as Suricata
        # reads it for `alert sctp` rules (a header cut short leaves the flow keyed by its addresses)
        p.sport = ngfw_be16(d + off)
        p.dport = ngfw_be16(d + off + 2)
        p.payload_off = off + 12
        p.payload_len = avail - 12
        p.has_ports = 1
    elif (p.proto == P_ICMP and not p.is_v6) or (p.proto == P_ICMPV6 and p.is_v6):
        # each family has its own ICMP: protocol 58 inside IPv4 (1 inside IPv6) is opaque, or an
        # IPv4 datagram could pass as neighbour discovery, which is forwarded around the policy
        if avail < 4:
            return R_FRAG_TINY if p.is_frag else R_TRUNC_ICMP
        p.icmp_type = d[off]
        p.icmp_code = d[off + 1]
        p.has_ports = 1
        # echo request/reply carry an identifier that tells concurrent pings apart
        if avail >= 8 and ((p.proto == P_ICMP and (p.icmp_type == 8 or p.icmp_type == 0)) or
                           (p.proto == P_ICMPV6 and (p.icmp_type == 128 or p.icmp_type == 129))):
            p.sport = ngfw_be16(d + off + 4)
            p.dport = p.sport
        p.payload_off = off + 4 if avail >= 4 else end
        p.payload_len = avail - 4
        if not p.is_frag and icmp_is_error(p):
            decode_icmp_quote(p, off + 8, end)
    return R_NONE

cdef inline bint icmp_is_error(const pkt_t *p) noexcept nogil:
    if p.proto == P_ICMP:
        return p.icmp_type == 3 or p.icmp_type == 4 or p.icmp_type == 5 or p.icmp_type == 11 or p.icmp_type == 12
    return 1 <= p.icmp_type <= 4

cdef void decode_icmp_quote(pkt_t *p, uint32_t off, uint32_t end) noexcept nogil:
    """Read the quoted datagram's addresses and ports; leaves icmp_error 0 when the quote is too short."""
    cdef const uint8_t *d = p.data
    cdef uint32_t ihl, l4
    if p.proto == P_ICMP:
        if off + 20 > end or (d[off] >> 4) != 4:
            return
        ihl = (d[off] & 0x0f) * 4
        if ihl < 20 or off + ihl > end:
            return
        p.inner_proto = d[off + 9]
        ip_from_v4(&p.inner_src, d + off + 12)
        ip_from_v4(&p.inner_dst, d + off + 16)
        l4 = off + ihl
    else:
        if off + 40 > end or (d[off] >> 4) != 6:
            return
        p.inner_proto = d[off + 6]
        ip_from_v6(&p.inner_src, d + off + 8)
        ip_from_v6(&p.inner_dst, d + off + 24)
        l4 = off + 40
    if p.inner_proto == P_TCP or p.inner_proto == P_UDP:
        if l4 + 4 > end:
            return
        p.inner_sport = ngfw_be16(d + l4)
        p.inner_dport = ngfw_be16(d + l4 + 2)
    elif p.inner_proto == p.proto:
        # a quoted echo request: its identifier keys the ping's flow
        if l4 + 8 > end:
            return
        p.inner_sport = ngfw_be16(d + l4 + 4)
        p.inner_dport = p.inner_sport
    p.icmp_error = 1

cdef int decode_tunneled(pkt_t *p, uint32_t off, uint32_t end) noexcept nogil:
    """The packet an IP-in-IP header carries (protocol 4 or 41), read in its place, once: a replayed
    capture's tunnel is classified by what it carries, as nDPI's reader does. The live dataplane keeps
    the outer header (identity and policy are the tunnel endpoints'), so it never reads them (`offline`)."""
    p.offline = 0
    p.len = end          # the inner datagram ends where the outer one does
    p.is_frag = 0
    p.ipip = 1
    if p.proto == 4:
        p.is_v6 = 0
        return decode_ipv4(p, off)
    return decode_ipv6(p, off)

cdef int decode_carried(pkt_t *p, uint16_t et, uint32_t off, uint32_t end) noexcept nogil:
    """The IP packet (ethertype `et`) a UDP tunnel carries at `off`, read in its place; anything else leaves
    `p` as it was, the UDP flow of the tunnel itself (R_NONE)."""
    if et != 0x0800 and et != 0x86dd:
        return R_NONE
    cdef int r
    p.proto = 4 if et == 0x0800 else 41
    p.has_ports = 0
    p.sport = 0
    p.dport = 0
    p.payload_len = 0
    r = decode_tunneled(p, off, end)
    p.ipip = 0           # a UDP tunnel's packet: its outer UDP flow is not read on its own
    return r

cdef uint16_t carried_ip(const uint8_t *d, uint32_t n, uint16_t et, uint32_t *off) noexcept nogil:
    """The ethertype of the IP packet an MPLS label stack or a PPPoE session frame carries, `off` moved
    to it (replay: nDPI's reader reads through both); 0 when it carries something else."""
    cdef uint32_t o = off[0]
    cdef int labels = 0
    cdef uint16_t ppp
    if et == 0x8864:
        # PPPoE session: version/type, code, session id, length, then the PPP protocol
        if o + 8 > n or d[o] != 0x11 or d[o + 1] != 0:
            return 0
        ppp = ngfw_be16(d + o + 6)
        off[0] = o + 8
        return 0x0800 if ppp == 0x0021 else (0x86dd if ppp == 0x0057 else 0)
    while True:
        # MPLS: 4-byte labels up to the one with the bottom-of-stack bit; the payload type is not
        # signalled, the IP version nibble tells
        if o + 4 > n or labels == 8:
            return 0
        labels += 1
        o += 4
        if d[o - 2] & 1:
            break
    if o >= n:
        return 0
    off[0] = o
    if (d[o] >> 4) == 4:
        return 0x0800
    return 0x86dd if (d[o] >> 4) == 6 else 0

cdef uint16_t carried_ethernet(const uint8_t *d, uint32_t *off, uint32_t end) noexcept nogil:
    """The ethertype of the Ethernet frame a tunnel carries at d[off] (past one 802.1Q tag), `off` moved to
    its payload; 0 when it does not fit."""
    cdef uint16_t et
    if off[0] + 14 > end:
        return 0
    et = ngfw_be16(d + off[0] + 12)
    off[0] += 14
    if et == 0x8100:
        if off[0] + 4 > end:
            return 0
        et = ngfw_be16(d + off[0] + 2)
        off[0] += 4
    return et

cdef int decode_udp_tunnel(pkt_t *p) noexcept nogil:
    """A UDP tunnel of a replayed capture, read as the packet it carries (once, as `decode_tunneled`):
    GTP-U (2152), VXLAN (4789), CAPWAP data (5247), TZSP (37008). Anything else is the UDP flow it is."""
    cdef const uint8_t *d = p.data
    cdef uint32_t off = p.payload_off, end = p.payload_off + p.payload_len
    cdef uint32_t ext
    cdef uint16_t et
    if p.dport == 5247 or p.sport == 5247:
        return decode_capwap(p)
    if p.dport == 2152 or p.sport == 2152:
        # GTPv1-U G-PDU (3GPP TS 29.281): version 1, protocol type GTP, message type 255
        if p.payload_len < 8 or (d[off] >> 5) != 1 or (d[off] & 0x10) == 0 or d[off + 1] != 0xFF:
            return R_NONE
        if d[off] & 0x07:
            # sequence number, N-PDU number and next extension type come as one 4-byte block
            if p.payload_len < 12:
                return R_NONE
            ext = d[off + 11] if d[off] & 0x04 else 0
            off += 12
            while ext:
                # each extension header: length in 4-byte units, contents, next type in its last byte
                if off >= end or d[off] == 0 or off + <uint32_t>d[off] * 4 > end:
                    return R_NONE
                off += <uint32_t>d[off] * 4
                ext = d[off - 1]
        else:
            off += 8
        if off >= end:
            return R_NONE
        et = 0x0800 if (d[off] >> 4) == 4 else (0x86dd if (d[off] >> 4) == 6 else 0)
    elif p.dport == 4789 or p.sport == 4789:
        # VXLAN (RFC 7348): the I flag, reserved bytes zero, then an Ethernet frame
        if p.payload_len < 8 + 14 or d[off] != 0x08 or d[off + 1] or d[off + 2] or d[off + 3] or d[off + 7]:
            return R_NONE
        off += 8
        et = carried_ethernet(d, &off, end)
    elif p.dport == 37008 or p.sport == 37008:
        # TZSP (a sensor forwarding what it captured): version 1, type 0 (received frame), encapsulated
        # protocol 1 (Ethernet), tagged fields up to the END tag (1; 0 is one byte of padding)
        if p.payload_len < 5 or d[off] != 1 or d[off + 1] != 0 or ngfw_be16(d + off + 2) != 1:
            return R_NONE
        off += 4
        while off < end and d[off] != 1:
            if d[off] == 0:
                off += 1
            elif off + 2 > end:
                return R_NONE
            else:
                off += 2 + <uint32_t>d[off + 1]
        off += 1
        if off >= end:
            return R_NONE
        et = carried_ethernet(d, &off, end)
    else:
        return R_NONE
    return decode_carried(p, et, off, end)

cdef int decode_capwap(pkt_t *p) noexcept nogil:
    """A CAPWAP data packet (UDP 5247) carrying a station's frame, 802.11 with LLC/SNAP or 802.3: read the
    IP packet inside in its place (replay only, as `decode_tunneled`). Anything else, a management frame,
    a keep-alive: R_NONE with `p` as it was, the CAPWAP flow itself."""
    cdef const uint8_t *d = p.data
    cdef uint32_t off = p.payload_off, end = p.payload_off + p.payload_len, hlen
    cdef uint16_t et = 0
    if p.payload_len < 8 or (d[off] >> 4) != 0:
        return R_NONE
    hlen = (<uint32_t>d[off + 1] >> 3) * 4
    if hlen < 8 or off + hlen >= end:
        return R_NONE
    if (d[off + 2] & 0x01) == 0:            # T clear: an IEEE 802.3 frame
        off += hlen
        if off + 14 > end:
            return R_NONE
        et = ngfw_be16(d + off + 12)
        off += 14
    elif ((d[off + 2] >> 1) & 0x1F) == 1:   # T set, WBID 1: IEEE 802.11
        off = dot11_data(d, off + hlen, end, &et)
        if off == 0:
            return R_NONE
    else:
        return R_NONE
    return decode_carried(p, et, off, end)

cdef uint32_t dot11_data(const uint8_t *d, uint32_t off, uint32_t end, uint16_t *et) noexcept nogil:
    """An IEEE 802.11 data frame at d[off] that carries data behind LLC/SNAP: the offset of what it carries,
    its ethertype in `et`; 0 for anything else (management, control, null data, protected frames)."""
    cdef uint32_t fc0, fc1
    if off + 24 > end:
        return 0
    fc0 = d[off]
    fc1 = d[off + 1]
    if ((fc0 >> 2) & 3) != 2 and (fc0 & 3) != 0:
        # some CAPWAP controllers write the frame control field high byte first; the LLC check below
        # keeps a misreading from passing
        fc0 = d[off + 1]
        fc1 = d[off]
    if ((fc0 >> 2) & 3) != 2 or (fc0 & 3) != 0 or (fc0 & 0x40) or (fc1 & 0x40):
        return 0
    off += 24 + (6 if (fc1 & 3) == 3 else 0) + (2 if (fc0 & 0x80) else 0)
    if off + 8 > end or d[off] != 0xAA or d[off + 1] != 0xAA or d[off + 2] != 0x03:
        return 0
    et[0] = ngfw_be16(d + off + 6)
    return off + 8

cdef int decode_ipv4(pkt_t *p, uint32_t off) noexcept nogil:
    cdef const uint8_t *d = p.data
    cdef uint32_t avail = p.len - off
    cdef uint32_t ihl, total, frag
    if avail < 20:
        return R_TRUNC_IPV4
    if (d[off] >> 4) != 4:
        return R_BAD_IPV4_HEADER
    ihl = (d[off] & 0x0f) * 4
    if ihl < 20 or ihl > avail:
        return R_BAD_IPV4_HEADER
    total = ngfw_be16(d + off + 2)
    if total > avail and p.snapped and total >= ihl:
        total = avail   # decode what the capture kept
    if total < ihl or total > avail:
        return R_BAD_IPV4_LENGTH
    p.l3 = L3_IPV4
    p.l3_off = off
    p.ip_end = off + total
    p.proto = d[off + 9]
    p.ttl = d[off + 8]
    ip_from_v4(&p.src_ip, d + off + 12)
    ip_from_v4(&p.dst_ip, d + off + 16)
    frag = ngfw_be16(d + off + 6)
    if frag & 0x3fff:  # MF set or a non-zero offset
        p.is_frag = 1
        p.frag_id = ngfw_be16(d + off + 4)
        p.frag_first = 1 if (frag & 0x1fff) == 0 else 0
        if not p.frag_first:
            p.l4_off = off + ihl
            p.payload_off = off + ihl
            p.payload_len = total - ihl
            return R_NONE
    if p.offline and not p.is_frag and (p.proto == 4 or p.proto == 41) and not p.ipip:
        return decode_tunneled(p, off + ihl, off + total)
    return decode_l4(p, off + ihl, off + total)

cdef int decode_ipv6(pkt_t *p, uint32_t off) noexcept nogil:
    cdef const uint8_t *d = p.data
    cdef uint32_t avail = p.len - off
    cdef uint32_t plen, end, cur, hlen
    cdef uint8_t nh
    cdef int i
    if avail < 40:
        return R_TRUNC_IPV6
    if (d[off] >> 4) != 6:
        return R_BAD_IPV4_HEADER if (d[off] >> 4) == 4 else R_TRUNC_IPV6
    plen = ngfw_be16(d + off + 4)
    if plen + 40 > avail and p.snapped:
        plen = avail - 40
    if plen + 40 > avail:
        return R_TRUNC_IPV6
    p.l3 = L3_IPV6
    p.is_v6 = 1
    p.l3_off = off
    end = off + 40 + plen
    p.ip_end = end
    ip_from_v6(&p.src_ip, d + off + 8)
    ip_from_v6(&p.dst_ip, d + off + 24)
    p.ttl = d[off + 7]
    nh = d[off + 6]
    cur = off + 40
    for i in range(MAX_IPV6_EXT + 1):
        if nh == 0 or nh == 43 or nh == 60:  # hop-by-hop, routing, destination options
            if cur + 8 > end:
                return R_BAD_IPV6_EXT
            hlen = (<uint32_t>d[cur + 1] + 1) * 8
            if cur + hlen > end:
                return R_BAD_IPV6_EXT
            nh = d[cur]
            cur += hlen
        elif nh == 51:  # authentication header: length in 4-octet units minus 2
            if cur + 8 > end:
                return R_BAD_IPV6_EXT
            hlen = (<uint32_t>d[cur + 1] + 2) * 4
            if cur + hlen > end:
                return R_BAD_IPV6_EXT
            nh = d[cur]
            cur += hlen
        elif nh == 44:  # fragment
            if cur + 8 > end:
                return R_BAD_IPV6_EXT
            # offset 0 with M clear is an atomic fragment: a whole datagram, processed in isolation
            # (RFC 8200 4.5, RFC 6946), not a first fragment to track
            if ngfw_be16(d + cur + 2) & 0xfff9:
                p.is_frag = 1
                p.frag_id = ngfw_be32(d + cur + 4)
                p.frag_first = 1 if (ngfw_be16(d + cur + 2) & 0xfff8) == 0 else 0
            nh = d[cur]
            cur += 8
            if p.is_frag and not p.frag_first:
                p.proto = nh
                p.l4_off = cur
                p.payload_off = cur
                p.payload_len = end - cur
                return R_NONE
        else:
            p.proto = nh
            if p.offline and not p.is_frag and (nh == 4 or nh == 41) and not p.ipip:
                return decode_tunneled(p, cur, end)
            return decode_l4(p, cur, end)
    return R_BAD_IPV6_EXT

cdef uint16_t nsh_inner(const uint8_t *data, uint32_t n, uint32_t *off) noexcept nogil:
    """Skip NSH headers (and an inner Ethernet header) at off[0]; the inner ethertype, 0 when malformed."""
    cdef uint32_t hlen
    cdef int depth
    for depth in range(4):
        if off[0] + 8 > n or (data[off[0]] >> 6) != 0:
            return 0
        hlen = (<uint32_t>(data[off[0] + 1] & 0x3f)) * 4
        if hlen < 8 or off[0] + hlen > n:
            return 0
        off[0] += hlen
        if data[off[0] - hlen + 3] == 1:
            return 0x0800
        if data[off[0] - hlen + 3] == 2:
            return 0x86dd
        if data[off[0] - hlen + 3] == 3:
            if off[0] + 14 > n:
                return 0
            if ngfw_be16(data + off[0] + 12) != 0x894F:
                off[0] += 14
                return ngfw_be16(data + off[0] - 2)
            off[0] += 14
            continue
        if data[off[0] - hlen + 3] != 4:
            return 0
    return 0

cdef int decode_frame(pkt_t *p, const uint8_t *data, uint32_t n, bint snapped=False, bint offline=False,
                      bint tunnel_outer=False) noexcept nogil:
    """Fill `p` from one Ethernet frame; returns R_NONE or the reason to drop it. `snapped`: the frame
    is a capture record cut by the snap length, so IP/UDP lengths may point past its end. `offline`: a
    replayed capture, read as an analyst reads it (tunnels as what they carry, a UDP length past its
    datagram taken from the IP header; see decode_l4). `tunnel_outer`: an IP-in-IP frame read as its outer
    packet (protocol 4 or 41, the tunnel's endpoints), as Suricata inspects it beside the inner one."""
    cdef uint32_t off = 12
    cdef uint16_t et
    cdef int tags = 0, r
    memset(p, 0, sizeof(pkt_t))
    p.data = data
    p.len = n
    p.snapped = snapped
    p.offline = offline
    p.ipip = tunnel_outer    # read an IP-in-IP frame's outer packet as it is (set again for an inner one)
    if n == 0:
        return R_EMPTY
    if n < ETH_HLEN:
        return R_TRUNC_ETH
    p.dst_mac = ngfw_mac64(data)
    p.src_mac = ngfw_mac64(data + 6)
    et = ngfw_be16(data + off)
    while et == 0x8100 or et == 0x88a8:
        if tags == MAX_VLAN_TAGS or off + 6 > n:
            return R_TRUNC_VLAN
        if tags == 0:
            p.vlan = ngfw_be16(data + off + 2) & 0x0fff
        tags += 1
        off += 4
        et = ngfw_be16(data + off)
    off += 2
    p.ethertype = et
    if et == 0x894F:
        # Network Service Header (RFC 8300, service function chaining): decode what it carries
        et = nsh_inner(data, n, &off)
        if et == 0:
            return R_TRUNC_NSH
    elif offline and (et == 0x8847 or et == 0x8848 or et == 0x8864):
        et = carried_ip(data, n, et, &off)
        if et == 0:
            return R_UNKNOWN_ETHERTYPE
    p.l3_off = off
    if et == 0x0800 or et == 0x86dd:
        r = decode_ipv4(p, off) if et == 0x0800 else decode_ipv6(p, off)
        if r == R_NONE and p.offline and p.proto == P_UDP and p.has_ports:
            return decode_udp_tunnel(p)
        return r
    if et == 0x0806 or et == 0x8035:
        # Ethernet/IPv4 ARP is 28 bytes; sender IP lands in src_ip, target IP in dst_ip. RARP has ARP's
        # shape and no IP to read: hypervisors announce a migrated guest's MAC with it (QEMU)
        if off + 28 > n:
            return R_TRUNC_ARP
        p.l3 = L3_ARP
        if (et == 0x0806 and ngfw_be16(data + off) == 1 and ngfw_be16(data + off + 2) == 0x0800
                and data[off + 4] == 6 and data[off + 5] == 4):
            ip_from_v4(&p.src_ip, data + off + 14)
            ip_from_v4(&p.dst_ip, data + off + 24)
            p.arp_ipv4 = 1
        p.ip_end = off + 28
        return R_NONE
    return R_UNKNOWN_ETHERTYPE
