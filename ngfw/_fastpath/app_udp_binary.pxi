# App-ID parsers of binary protocols over UDP (some also over TCP): STUN/TURN, RADIUS, SNMP, DHCP, DHCPv6,
# NTP, TFTP, RTP/RTCP and OpenVPN. A TURN server's REALM and a DHCP client's host name are the flow's host.


cdef int parse_stun(appctx_t *c) noexcept nogil:
    """STUN/TURN (RFC 5389 with the magic cookie, RFC 3489 without): type, length, transaction id and a
    TLV attribute chain that ends exactly at the message end. Over TCP also with RFC 4571 framing."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, off, al
    cdef uint16_t t
    cdef bint cookie
    if n >= 2 and c.l4proto == P_TCP and ngfw_be16(p) + 2 == n and n >= 22 and ngfw_be32(p + 6) == 0x2112A442:
        p += 2
        n -= 2
    if n < 20 or (p[0] & 0xC0) != 0:
        return PARSE_NO
    t = ngfw_be16(p)
    l = ngfw_be16(p + 2)
    if (l & 3) != 0 or 20 + l > n:
        return PARSE_NO
    cookie = ngfw_be32(p + 4) == 0x2112A442
    if not cookie:
        # classic STUN: a known method/class and exactly one message
        if 20 + l != n or not (t == 0x0001 or t == 0x0101 or t == 0x0111 or t == 0x0002 or t == 0x0102
                               or t == 0x0112 or t == 0x0003 or t == 0x0103 or t == 0x0113):
            return PARSE_NO
        if l == 0:
            return PARSE_NO
    elif c.l4proto == P_UDP and 20 + l != n:
        return PARSE_NO
    off = 20
    while off + 4 <= 20 + l:
        al = ngfw_be16(p + off + 2)
        off += 4 + ((al + 3) & ~3u)
    if off != 20 + l:
        return PARSE_NO
    cdef uint8_t realm[256]
    cdef uint32_t rlen = stun_realm(p, n, False, realm)
    if rlen:
        _set_host(c.meta, realm, rlen)
    return APP_STUN


cdef uint32_t stun_realm(const uint8_t *p, uint32_t n, bint tcp, uint8_t *out) noexcept nogil:
    """The REALM attribute of a STUN message with the magic cookie (TURN's service name), as a host:
    printable, lower-cased, at most 255 bytes. 0: none."""
    cdef uint32_t l, off, al, i, k = 0
    if tcp and n >= 22 and ngfw_be32(p + 6) == 0x2112A442 and ngfw_be32(p + 4) != 0x2112A442:
        p += 2   # RFC 4571 framing
        n -= 2
    if n < 20 or (p[0] & 0xC0) != 0 or ngfw_be32(p + 4) != 0x2112A442:
        return 0
    l = ngfw_be16(p + 2)
    if 20 + l > n:
        return 0
    off = 20
    while off + 4 <= 20 + l:
        al = ngfw_be16(p + off + 2)
        if off + 4 + al > 20 + l:
            return 0
        if ngfw_be16(p + off) == 0x0014 and 0 < al < 256:
            for i in range(al):
                if p[off + 4 + i] <= b' ' or p[off + 4 + i] > b'~':
                    return 0
                out[k] = _lower(p[off + 4 + i])
                k += 1
            return k
        off += 4 + ((al + 3) & ~3u)
    return 0


cdef int parse_radius(appctx_t *c) noexcept nogil:
    """RADIUS (RFC 2865/2866/5176): code, id, length = the datagram, authenticator, exact attribute chain."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, off
    cdef uint8_t code
    if n < 20:
        return PARSE_NO
    code = p[0]
    if not ((code >= 1 and code <= 5) or (code >= 11 and code <= 13) or (code >= 40 and code <= 45)):
        return PARSE_NO
    l = ngfw_be16(p + 2)
    if l < 20 or l > 4096 or l > n:
        return PARSE_NO
    if _either_port(c, 1812) or _either_port(c, 1813) or _either_port(c, 1645) or _either_port(c, 1646):
        return APP_RADIUS     # nDPI compatibility: on its own ports a header that fits is enough, as for nDPI
    if c.l4proto == P_UDP and l != n:
        return PARSE_NO
    off = 20
    while off + 2 <= l:
        if p[off + 1] < 2 or p[off] == 0:
            return PARSE_NO
        off += p[off + 1]
    if off != l:
        return PARSE_NO
    if l == 20 and (code == 1 or code == 4):
        return PARSE_NO    # requests carry attributes
    return APP_RADIUS


cdef int parse_snmp(appctx_t *c) noexcept nogil:
    """SNMP v1/v2c (community + PDU tag) and v3 (global data sequence)."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, l, h, off
    if c.l4proto != P_UDP or n < 10 or p[0] != 0x30:
        return PARSE_NO
    if _ber_len(p, n, 1, &l, &h) != 0 or 1 + h + l != n:
        return PARSE_NO
    off = 1 + h
    if off + 3 > n or p[off] != 0x02 or p[off + 1] != 1 or p[off + 2] > 3 or p[off + 2] == 2:
        return PARSE_NO
    if p[off + 2] == 3:
        off += 3
        return APP_SNMP if off < n and p[off] == 0x30 else PARSE_NO
    off += 3
    if off >= n or p[off] != 0x04:
        return PARSE_NO
    if _ber_len(p, n, off + 1, &l, &h) != 0 or l > 255:
        return PARSE_NO
    off += 1 + h + l
    if off >= n or p[off] < 0xA0 or p[off] > 0xA8:
        return PARSE_NO
    if _ber_len(p, n, off + 1, &l, &h) != 0 or off + 1 + h + l != n:
        return PARSE_NO
    return APP_SNMP


cdef int parse_dhcp(appctx_t *c) noexcept nogil:
    """DHCP/BOOTP with the magic cookie; the host name (option 12) goes to host."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, off
    cdef uint8_t o, l
    if n < 240 or (p[0] != 1 and p[0] != 2) or p[2] > 16 or ngfw_be32(p + 236) != 0x63825363:
        return PARSE_NO
    off = 240
    while off < n:
        o = p[off]
        if o == 255:
            break
        if o == 0:
            off += 1
            continue
        if off + 2 > n:
            break
        l = p[off + 1]
        if off + 2 + l > n:
            break
        if o == 12 and l > 0:
            _set_host(c.meta, p + off + 2, l)
        off += 2 + l
    return APP_DHCP


cdef int parse_dhcpv6(appctx_t *c) noexcept nogil:
    """DHCPv6: message type, transaction id, options that end exactly at the datagram end. Relay messages
    and a client or server identifier make it certain; otherwise the DHCPv6 ports must agree."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, off, l
    cdef uint16_t o
    cdef bint duid = False
    if n < 8 or p[0] < 1 or p[0] > 13:
        return PARSE_NO
    off = 4 if p[0] < 12 else 34
    if off >= n:
        return PARSE_NO
    while off + 4 <= n:
        o = ngfw_be16(p + off)
        l = ngfw_be16(p + off + 2)
        if o == 0 or o > 200 or off + 4 + l > n:
            return PARSE_NO
        if o == 1 or o == 2 or o == 9:
            duid = True
        off += 4 + l
    if off != n:
        return PARSE_NO
    if duid or _either_port(c, 546) or _either_port(c, 547):
        return APP_DHCPV6
    return PARSE_NO


cdef int parse_ntp(appctx_t *c) noexcept nogil:
    """NTP v1-4: a 48-byte header (plus extension fields / MAC) in modes 1-5, or a mode 6 control message."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len
    cdef uint8_t vn, mode
    if n < 12:
        return PARSE_NO
    vn = (p[0] >> 3) & 7
    mode = p[0] & 7
    if vn < 1 or vn > 4:
        return PARSE_NO
    if mode == 6:
        # control: opcode, sequence, status, association id, offset, count
        if ngfw_be16(p + 10) + 12 > n or ngfw_be16(p + 10) > 468:
            return PARSE_NO
        return APP_NTP if _either_port(c, 123) else PARSE_NO
    if mode < 1 or mode > 5 or n < 48:
        return PARSE_NO
    if (n - 48) % 4 != 0 or n > 1024:
        return PARSE_NO     # the header, then extension fields / a MAC in 32-bit words
    if p[1] > 16:
        return PARSE_NO     # stratum
    if n != 48 and not _either_port(c, 123):
        return PARSE_NO
    return APP_NTP


cdef int parse_tftp(appctx_t *c) noexcept nogil:
    """TFTP: read/write requests (file\\0mode\\0), option acks, errors; a first data block or its ack."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, i, z = 0, start
    cdef uint16_t op
    if n < 4 or p[0] != 0:
        return PARSE_NO
    op = p[1]
    if op == 1 or op == 2 or op == 6:
        # NUL-separated printable strings, an even number of them for OACK, mode known for requests
        start = 2
        for i in range(2, n):
            if p[i] == 0:
                if op != 6 and z == 1:
                    if not (_ieq(p + start, i - start, "octet") or _ieq(p + start, i - start, "netascii")
                            or _ieq(p + start, i - start, "mail")):
                        return PARSE_NO
                z += 1
                start = i + 1
            elif p[i] < b' ' or p[i] > b'~':
                return PARSE_NO
        if p[n - 1] != 0 or z < 1 or (op != 6 and z < 2) or (op == 6 and (z & 1)):
            return PARSE_NO
        return APP_TFTP
    if op == 5:
        # error code 0..8, then a printable message and its NUL (NetFlow v5's header starts 00 05 00 nn too)
        if p[2] != 0 or p[3] > 8 or p[n - 1] != 0:
            return PARSE_NO
        for i in range(4, n - 1):
            if p[i] < b' ' or p[i] > b'~':
                return PARSE_NO
        return APP_TFTP
    if op == 4 and n == 4 and ngfw_be16(p + 2) <= 1:
        return APP_TFTP
    if op == 3 and ngfw_be16(p + 2) == 1 and n <= 4 + 65464:
        return APP_TFTP
    return PARSE_NO


cdef int parse_rtp(appctx_t *c) noexcept nogil:
    """RTCP: a compound of version-2 packets with types 200-207 whose lengths tile the datagram.
    RTP: version 2 with a consistent header; confirmed by the next packet of the same direction carrying
    the same SSRC and the next few sequence numbers (remembered in scratch)."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, off = 0, l, hdr
    cdef uint8_t *s = c.scratch
    cdef uint16_t seq, dseq
    cdef int pkts = 0
    if n < 8 or (p[0] & 0xC0) != 0x80:
        return PARSE_NO
    if p[1] >= 200 and p[1] <= 207:
        while off + 4 <= n:
            if (p[off] & 0xC0) != 0x80 or p[off + 1] < 192 or p[off + 1] > 210:
                return PARSE_NO
            l = (<uint32_t>ngfw_be16(p + off + 2) + 1) * 4
            off += l
            pkts += 1
        return APP_RTCP if off == n and pkts > 0 else PARSE_NO
    if n < 12 or ((p[1] & 0x7F) >= 72 and (p[1] & 0x7F) <= 76):
        return PARSE_NO
    hdr = 12 + 4 * (p[0] & 0x0F)
    if hdr > n:
        return PARSE_NO
    seq = ngfw_be16(p + 2)
    if s[0] == NGFW_SCRATCH_RTP and s[1] == c.to_server:     # an earlier packet of this direction looked like RTP
        dseq = seq - ngfw_be16(s + 2)
        if memcmp(s + 4, p + 8, 4) == 0 and dseq >= 1 and dseq <= 16:
            return APP_RTP
        return PARSE_NO
    if s[0] == 0:
        s[0] = NGFW_SCRATCH_RTP
        s[1] = c.to_server
        ngfw_put_be16(s + 2, seq)
        memcpy(s + 4, p + 8, 4)
    return PARSE_NEED_MORE


cdef int parse_openvpn(appctx_t *c) noexcept nogil:
    """OpenVPN: a hard-reset opcode (key id 0) opens the session with an 8-byte session id; the session is
    confirmed when the next packet of that direction repeats the id or the peer echoes it back. A bare
    14-byte client reset (no tls-auth) is certain on its own. TCP messages carry a 2-byte length."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, i
    cdef uint8_t *s = c.scratch
    cdef uint8_t op
    if c.l4proto == P_TCP:
        p = c.stream
        n = c.stream_len
        if c.pkt_index == 0 or s[0] != NGFW_SCRATCH_OPENVPN:
            # the first message, behind its length
            if n < 3 or ngfw_be16(p) + 2 > n or ngfw_be16(p) < 9:
                return PARSE_NO
            n = ngfw_be16(p)
            p += 2
    if n < 9:
        return PARSE_NO
    if s[0] == NGFW_SCRATCH_OPENVPN:      # a session id was seen
        if c.l4proto == P_TCP:
            # anywhere after the first message of the direction that sent it, or anywhere in the other one
            i = 0 if c.to_server != s[1] else 2 + ngfw_be16(p)
        else:
            i = 0
            if c.to_server == s[1]:
                op = p[0] >> 3
                if (op == 4 or op == 5 or op == 6 or op == 9) and memcmp(p + 1, s + 2, 8) == 0:
                    return APP_OPENVPN
                return PARSE_NO
        while i + 8 <= n:
            if memcmp(p + i, s + 2, 8) == 0:
                return APP_OPENVPN
            i += 1
        return PARSE_NO
    op = p[0] >> 3
    if (p[0] & 7) != 0 or not (op == 1 or op == 2 or op == 7 or op == 8 or op == 10):
        return PARSE_NO
    # an ONC RPC message (NFS, portmap) can start with such a byte: its call/reply header gives it away
    if n >= 12 and ((ngfw_be32(p + 4) == 0 and ngfw_be32(p + 8) == 2) or
                    (ngfw_be32(p + 4) == 1 and ngfw_be32(p + 8) <= 1)):
        return PARSE_NO
    if op == 7 and n == 14 and ngfw_be32(p + 10) == 0 and p[9] == 0:
        return APP_OPENVPN
    if s[0] == 0 and c.pkt_index < 4:
        s[0] = NGFW_SCRATCH_OPENVPN
        s[1] = c.to_server
        memcpy(s + 2, p + 1, 8)
    return PARSE_NEED_MORE
