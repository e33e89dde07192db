# Stage 6b, respond: the frames a `reject` verdict sends back to the sender, a TCP RST or an
# ICMP/ICMPv6 "administratively prohibited", built into the caller's buffer.

cdef enum:
    RESPONSE_MAX = 1600

cdef uint32_t csum_add(uint32_t sum, const uint8_t *p, uint32_t n) noexcept nogil:
    cdef uint32_t i = 0
    while i + 1 < n:
        sum += (<uint32_t>p[i] << 8) | p[i + 1]
        i += 2
    if i < n:
        sum += <uint32_t>p[i] << 8
    return sum

cdef inline uint16_t csum_fold(uint32_t sum) noexcept nogil:
    while sum >> 16:
        sum = (sum & 0xffff) + (sum >> 16)
    return <uint16_t>(~sum & 0xffff)

cdef void l4_checksum(uint8_t *ip, bint v6, uint8_t proto, uint8_t *l4, uint32_t l4len,
                      uint32_t csum_off) noexcept nogil:
    """Write the TCP/UDP/ICMPv6 checksum (pseudo-header included) of the segment at `l4`."""
    cdef uint32_t sum = 0
    ngfw_put_be16(l4 + csum_off, 0)
    if v6:
        sum = csum_add(sum, ip + 8, 32)
    else:
        sum = csum_add(sum, ip + 12, 8)
    sum += proto
    sum += l4len
    sum = csum_add(sum, l4, l4len)
    cdef uint16_t c = csum_fold(sum)
    if c == 0 and proto == P_UDP:
        c = 0xffff
    ngfw_put_be16(l4 + csum_off, c)

cdef uint32_t build_l2_l3(uint8_t *out, const pkt_t *p, uint8_t proto, uint32_t l4len) noexcept nogil:
    """Ethernet (+ the sender's VLAN tags) and IP header addressed back to the sender; returns the L3 offset."""
    cdef uint32_t l2 = p.l3_off
    cdef uint32_t iph
    memcpy(out, p.data + 6, 6)
    memcpy(out + 6, p.data, 6)
    memcpy(out + 12, p.data + 12, l2 - 12)   # VLAN tags and ethertype as received
    if p.is_v6:
        memset(out + l2, 0, 40)
        out[l2] = 0x60
        ngfw_put_be16(out + l2 + 4, <uint16_t>l4len)
        out[l2 + 6] = proto
        out[l2 + 7] = 64
        memcpy(out + l2 + 8, p.data + p.l3_off + 24, 16)
        memcpy(out + l2 + 24, p.data + p.l3_off + 8, 16)
    else:
        memset(out + l2, 0, 20)
        out[l2] = 0x45
        ngfw_put_be16(out + l2 + 2, <uint16_t>(20 + l4len))
        ngfw_put_be16(out + l2 + 6, 0x4000)
        out[l2 + 8] = 64
        out[l2 + 9] = proto
        memcpy(out + l2 + 12, p.data + p.l3_off + 16, 4)
        memcpy(out + l2 + 16, p.data + p.l3_off + 12, 4)
        ngfw_put_be16(out + l2 + 10, csum_fold(csum_add(0, out + l2, 20)))
    return l2

cdef uint32_t build_tcp_rst(uint8_t *out, const pkt_t *p) noexcept nogil:
    """RST answering the sender's segment (RFC 793 reset generation); returns the frame length."""
    cdef uint32_t l3 = build_l2_l3(out, p, P_TCP, 20)
    cdef uint32_t l4 = l3 + (40 if p.is_v6 else 20)
    cdef uint32_t seglen = p.payload_len
    if p.tcp_flags & TH_SYN:
        seglen += 1
    if p.tcp_flags & TH_FIN:
        seglen += 1
    memset(out + l4, 0, 20)
    ngfw_put_be16(out + l4, p.dport)
    ngfw_put_be16(out + l4 + 2, p.sport)
    if p.tcp_flags & TH_ACK:
        ngfw_put_be32(out + l4 + 4, p.tcp_ack)
        out[l4 + 13] = TH_RST
    else:
        ngfw_put_be32(out + l4 + 8, p.tcp_seq + seglen)
        out[l4 + 13] = TH_RST | TH_ACK
    out[l4 + 12] = 5 << 4
    l4_checksum(out + l3, p.is_v6, P_TCP, out + l4, 20, 16)
    return l4 + 20

cdef uint32_t build_icmp_unreachable(uint8_t *out, const pkt_t *p) noexcept nogil:
    """ICMP type 3 code 13 / ICMPv6 type 1 code 1 quoting the offending datagram; 0 when none is due."""
    cdef uint32_t quote = p.ip_end - p.l3_off
    cdef uint32_t l3, l4, l4len
    cdef uint8_t proto = P_ICMPV6 if p.is_v6 else P_ICMP
    # never answer an ICMP error with one (RFC 1122 / RFC 4443)
    if p.proto == P_ICMP and p.icmp_type != 8 and p.icmp_type != 13:
        return 0
    if p.proto == P_ICMPV6 and p.icmp_type < 128:
        return 0
    if p.is_v6:
        quote = min(quote, 1280 - 48)
    else:
        quote = min(quote, 548)
    l4len = 8 + quote
    l3 = build_l2_l3(out, p, proto, l4len)
    l4 = l3 + (40 if p.is_v6 else 20)
    memset(out + l4, 0, 8)
    if p.is_v6:
        out[l4] = 1
        out[l4 + 1] = 1
    else:
        out[l4] = 3
        out[l4 + 1] = 13
    memcpy(out + l4 + 8, p.data + p.l3_off, quote)
    if p.is_v6:
        l4_checksum(out + l3, True, P_ICMPV6, out + l4, l4len, 2)
    else:
        ngfw_put_be16(out + l4 + 2, csum_fold(csum_add(0, out + l4, l4len)))
    return l4 + l4len

cdef void fix_partial_checksum(uint8_t *frame, const pkt_t *p) noexcept nogil:
    """Complete a TCP/UDP checksum the sender's stack left to offload (TP_STATUS_CSUMNOTREADY)."""
    cdef uint32_t l4len
    if p.is_frag or p.l4_off == 0 or p.l4_off >= p.ip_end:
        return
    l4len = p.ip_end - p.l4_off
    if p.proto == P_TCP:
        l4_checksum(frame + p.l3_off, p.is_v6, P_TCP, frame + p.l4_off, l4len, 16)
    elif p.proto == P_UDP:
        l4_checksum(frame + p.l3_off, p.is_v6, P_UDP, frame + p.l4_off, l4len, 6)

cdef uint32_t build_tcp_rst_onward(uint8_t *out, const pkt_t *p) noexcept nogil:
    """A RST in the packet's own direction, standing in for it, so the receiver also drops the connection."""
    cdef uint32_t l3 = p.l3_off
    cdef uint32_t l4 = l3 + (40 if p.is_v6 else 20)
    memcpy(out, p.data, l3)                      # Ethernet and VLAN tags unchanged
    if p.is_v6:
        memcpy(out + l3, p.data + l3, 40)
        ngfw_put_be16(out + l3 + 4, 20)
        out[l3 + 6] = P_TCP
    else:
        memset(out + l3, 0, 20)
        out[l3] = 0x45
        ngfw_put_be16(out + l3 + 2, 40)
        ngfw_put_be16(out + l3 + 6, 0x4000)
        out[l3 + 8] = 64
        out[l3 + 9] = P_TCP
        memcpy(out + l3 + 12, p.data + p.l3_off + 12, 8)
        ngfw_put_be16(out + l3 + 10, csum_fold(csum_add(0, out + l3, 20)))
    memset(out + l4, 0, 20)
    ngfw_put_be16(out + l4, p.sport)
    ngfw_put_be16(out + l4 + 2, p.dport)
    ngfw_put_be32(out + l4 + 4, p.tcp_seq)
    ngfw_put_be32(out + l4 + 8, p.tcp_ack)
    out[l4 + 12] = 5 << 4
    out[l4 + 13] = TH_RST | TH_ACK
    l4_checksum(out + l3, p.is_v6, P_TCP, out + l4, 20, 16)
    return l4 + 20

cdef void respond_reject(engine_t *e, uint16_t in_port, const pkt_t *p) noexcept nogil:
    cdef uint32_t n
    if p.proto == P_TCP:
        if p.tcp_flags & TH_RST:
            return
        n = build_tcp_rst(e.response, p)
    else:
        n = build_icmp_unreachable(e.response, p)
    if n:
        port_tx(&e.ports[in_port], e.response, n, NULL)

cdef void respond_reset_peer(engine_t *e, flow_t *f, const pkt_t *p, bint to_server, uint16_t in_port) noexcept nogil:
    """Reset the far side of a cut TCP connection too, in place of the packet that is dropped."""
    cdef uint32_t n
    if p.tcp_flags & TH_RST:
        return
    n = build_tcp_rst_onward(e.response, p)
    forward(e, in_port, e.response, n, NULL, e.last_sweep)
