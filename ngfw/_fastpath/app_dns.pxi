# App-ID parsers of the DNS family: DNS, mDNS, LLMNR (one wire format, told apart by port) and NetBIOS (the
# name service in that format too; the datagram and session services). The name at a message's start is the
# flow's host, spelled as nDPI reports it (the readers of DNS flows after the decision, in appid.pxi, and the
# DNS inspection buffer use the same functions).

cdef enum:
    DNS_TYPE_OPT = 41     # EDNS(0)'s pseudo-record: its class is the sender's UDP payload size
    NB_NAME_LEN = 32      # a NetBIOS name's label: 16 bytes encoded as 32 letters


cdef int _dns_name(const uint8_t *msg, uint32_t n, uint32_t off, uint8_t *out, uint32_t outmax,
                   uint32_t *out_len, uint32_t *next_off) noexcept nogil:
    # Decode a possibly compressed name at msg[off]. 0 ok, -1 malformed. Pointers must point backwards
    # and the name is capped at 255 bytes, so loops and out-of-range pointers end in -1.
    cdef uint32_t pos = off, olen = 0, total = 0, hops = 0, ptr, i
    cdef bint jumped = False
    cdef uint8_t l
    while True:
        if pos >= n:
            return -1
        l = msg[pos]
        if l == 0:
            if not jumped:
                next_off[0] = pos + 1
            break
        if (l & 0xC0) == 0xC0:
            if pos + 1 >= n:
                return -1
            ptr = ((<uint32_t>l & 0x3F) << 8) | msg[pos + 1]
            if not jumped:
                next_off[0] = pos + 2
            if ptr >= pos or ptr < 12:
                return -1
            hops += 1
            if hops > 32:
                return -1
            jumped = True
            pos = ptr
            continue
        if (l & 0xC0) != 0:
            return -1
        if pos + 1 + l > n:
            return -1
        total += l + 1
        if total > 255:
            return -1
        if olen > 0 and olen < outmax:
            out[olen] = b'.'
            olen += 1
        for i in range(l):
            if olen < outmax:
                out[olen] = msg[pos + 1 + i]
                olen += 1
        pos += 1 + l
    out_len[0] = olen
    return 0


cdef uint32_t dns_grab_name(const uint8_t *msg, uint32_t n, uint32_t off, bint raw, uint8_t *out) noexcept nogil:
    """The name at msg[off] the way operators' nDPI reports it: plain labels only (a compression pointer
    or a label running past the message gives no name), joined by '.', lower-cased. DNS and LLMNR names
    show a character outside [a-z0-9_-] as '_', or '?' when it is not printable; mDNS names (`raw`, UTF-8
    service instance names) are kept as they are. `out` holds 255 bytes; returns the length (0: none)."""
    # nDPI compatibility: the spelling, and a name that is not all plain labels giving none, are nDPI's
    cdef uint32_t j = 0, cl
    cdef uint8_t c
    while j < 255 and off < n and msg[off] != 0:
        cl = msg[off]
        if (cl & 0xC0) != 0 or off + 1 + cl >= n:
            return 0
        off += 1
        if j:
            out[j] = b'.'
            j += 1
        while j < 255 and cl:
            c = msg[off]
            off += 1
            if raw or _dns_char_ok(c):
                out[j] = _lower(c)
            elif c < b' ' or c > b'~':
                out[j] = b'?'
            else:
                out[j] = b'_'
            j += 1
            cl -= 1
    return j


cdef inline void set_dns_host(appmeta_t *m, const uint8_t *name, uint32_t n) noexcept nogil:
    # nDPI compatibility: a long name is kept by its tail, as nDPI keeps it (its registered domain is there)
    if n > DNS_HOST_KEEP:
        name += n - DNS_HOST_KEEP
        n = DNS_HOST_KEEP
    memcpy(m.host, name, n)
    m.host_len = <uint8_t>n


cdef uint32_t nb_name_lenient(const uint8_t *msg, uint32_t n, uint32_t off, uint8_t *out) noexcept nogil:
    """A NetBIOS first-level encoded name (length byte, then letter pairs 'A'..'P') decoded up to the first
    pair that is not one or decodes to a non-printable byte, trailing spaces trimmed, lower-cased, as nDPI
    reads names of the name service. `out` holds 32 bytes; returns the length (0: none)."""
    # nDPI compatibility: a strict decoder (_nb_decode) would give no name for these
    cdef uint32_t pairs, k = 0
    cdef uint8_t c
    if off >= n:
        return 0
    pairs = msg[off] // 2
    off += 1
    if pairs < 1 or pairs > 32 or off + 2 * pairs > n:
        return 0
    while pairs:
        if msg[off] < b'A' or msg[off] > b'P' or msg[off + 1] < b'A' or msg[off + 1] > b'P':
            break
        c = ((msg[off] - c'A') << 4) | (msg[off + 1] - c'A')
        if c < b' ' or c > b'~':
            break
        out[k] = _lower(c)
        k += 1
        off += 2
        pairs -= 1
    while k > 0 and out[k - 1] == b' ':
        k -= 1
    return k


cdef inline bint _dns_class_ok(uint16_t qclass) noexcept nogil:
    qclass &= 0x7FFF    # mDNS: top bit = unicast-response / cache-flush
    return qclass == 1 or qclass == 3 or qclass == 4 or qclass == 254 or qclass == 255


cdef bint _nb_decode(const uint8_t *name, uint32_t n, uint8_t *out, uint32_t *out_len) noexcept nogil:
    # NetBIOS first-level encoding: 32 letters 'A'..'P' (two per byte), optional ".scope"
    cdef uint32_t i, k = 0
    if n < 32 or (n > 32 and name[32] != b'.'):
        return False
    for i in range(32):
        if name[i] < b'A' or name[i] > b'P':
            return False
    for i in range(15):   # the 16th byte is the service suffix
        out[i] = ((name[2 * i] - c'A') << 4) | (name[2 * i + 1] - c'A')
    k = 15
    while k > 0 and (out[k - 1] == b' ' or out[k - 1] == 0):
        k -= 1
    out_len[0] = k
    return True


cdef int _dns_message(const uint8_t *p, uint32_t n, appmeta_t *m, bint *netbios) noexcept nogil:
    # 1: a well-formed DNS-format message (meta gets the first name and type), 0: not one
    cdef uint16_t flags, qd, an, ns, ar, rtype, rclass, rdlen
    cdef uint32_t pos = 12, i, total, nlen = 0, nxt = 0, dlen = 0
    cdef uint8_t name[256]
    cdef uint8_t first[256]
    cdef uint32_t first_len = 0
    cdef uint16_t first_type = 0
    cdef bint have_first = False
    cdef uint8_t opcode
    if n < 12:
        return 0
    flags = ngfw_be16(p + 2)
    qd = ngfw_be16(p + 4)
    an = ngfw_be16(p + 6)
    ns = ngfw_be16(p + 8)
    ar = ngfw_be16(p + 10)
    opcode = (flags >> 11) & 0xF
    if opcode != 0 and opcode != 2 and opcode != 4 and opcode != 5 and opcode != 6:
        return 0
    if (flags & 0x000F) > 11:
        return 0
    if qd > 16 or an > 512 or ns > 512 or ar > 512:
        return 0
    if (flags & 0x8000) == 0 and qd == 0:
        return 0          # a query asks something
    total = <uint32_t>qd + an + ns + ar
    if total == 0:
        return 0
    for i in range(qd):
        if _dns_name(p, n, pos, name, 255, &nlen, &nxt) != 0:
            return 0
        pos = nxt
        if pos + 4 > n:
            return 0
        rtype = ngfw_be16(p + pos)
        rclass = ngfw_be16(p + pos + 2)
        pos += 4
        if not _dns_class_ok(rclass) and not (rclass & 0x7FFF) == 32:   # NetBIOS uses class IN too
            return 0
        if rtype == 0:
            return 0
        if not have_first:
            memcpy(first, name, nlen)
            first_len = nlen
            first_type = rtype
            have_first = True
    total -= qd
    if total > 64:
        total = 64        # enough records checked to believe it
    for i in range(total):
        if _dns_name(p, n, pos, name, 255, &nlen, &nxt) != 0:
            return 0
        pos = nxt
        if pos + 10 > n:
            return 0
        rtype = ngfw_be16(p + pos)
        rclass = ngfw_be16(p + pos + 2)
        rdlen = ngfw_be16(p + pos + 8)
        pos += 10
        if rtype == 0 or (rtype != DNS_TYPE_OPT and not _dns_class_ok(rclass)):
            return 0
        if pos + rdlen > n:
            return 0
        pos += rdlen
        if not have_first and rtype != DNS_TYPE_OPT:
            memcpy(first, name, nlen)
            first_len = nlen
            first_type = rtype
            have_first = True
    if have_first:
        if _nb_decode(first, first_len, name, &dlen):
            netbios[0] = True
        m.dns_qtype = first_type
    return 1


cdef int parse_dns(appctx_t *c) noexcept nogil:
    """DNS, mDNS, LLMNR and NetBIOS-NS: same wire format; NetBIOS by its name encoding, the others by port."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, mlen
    cdef bint nb = False
    cdef int r
    if c.l4proto == P_TCP:
        p = c.stream
        n = c.stream_len
        if n < 14:
            return PARSE_NEED_MORE if n > 0 and _stream_can_grow(c) else PARSE_NO
        mlen = ngfw_be16(p)
        if mlen < 12:
            return PARSE_NO
        if n < 2 + mlen:
            # not all there yet: the header must already look right
            if (ngfw_be16(p + 6) & 0x7800) > 0x3000 or ngfw_be16(p + 6) > 16:
                return PARSE_NO
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
        r = _dns_message(p + 2, mlen, c.meta, &nb)
        p += 2
        n = mlen
    else:
        r = _dns_message(p, n, c.meta, &nb)
    if r != 1 and c.l4proto == P_UDP and dns_header_on_port(c, p, n):
        r = 1   # nDPI compatibility: on its own ports, what nDPI takes as DNS (NetBIOS-NS) is, records or not
    if r != 1:
        c.meta.host_len = 0
        c.meta.dns_qtype = 0
        return PARSE_NO
    # nDPI compatibility: DNS-format messages on the DNS-family ports are those protocols even when they ask
    # for a NetBIOS name (a wildcard query, say), as nDPI labels them; NetBIOS elsewhere by its name encoding
    if _either_port(c, 53) or _either_port(c, 5353) or _either_port(c, 5355):
        dns_message_host(c.meta, p, n, _either_port(c, 5353) and not _either_port(c, 53))
        if _either_port(c, 53):
            return APP_DNS
        return APP_MDNS if _either_port(c, 5353) else APP_LLMNR
    if nb or _either_port(c, 137):
        nb_message_host(c.meta, p, n)
        return APP_NETBIOS
    dns_message_host(c.meta, p, n, False)
    return APP_DNS


cdef bint dns_header_on_port(appctx_t *c, const uint8_t *p, uint32_t n) noexcept nogil:
    """A UDP message on a DNS-family port whose records do not parse (fuzzed counts, a label that is not
    one) that is still that protocol, as nDPI takes it: a query whose header looks like one, any response
    sent from the DNS port; on NetBIOS-NS's port the header must also count a question or an answer."""
    # nDPI compatibility: the whole function; a message whose records do not parse is not DNS on its own
    cdef uint16_t sport = c.client_port if c.to_server else c.server_port
    if n <= 12:
        return False
    if _either_port(c, 53) or _either_port(c, 5353) or _either_port(c, 5355):
        if (p[2] & 0x80) and (sport == 53 or sport == 5353 or sport == 5355):
            return True
        return dns_header_plausible(p, n, _either_port(c, 5353))
    return _either_port(c, 137) and dns_header_plausible(p, n, False) and (ngfw_be16(p + 4) or ngfw_be16(p + 6))


cdef bint dns_header_plausible(const uint8_t *msg, uint32_t n, bint mdns) noexcept nogil:
    """The header checks nDPI makes of a message on a DNS-family port, looser than `_dns_message`'s (a query
    may carry stray counts, an mDNS response need not repeat the question)."""
    # nDPI compatibility: these are nDPI's checks, kept as they are so the flows it names DNS are DNS here
    cdef uint16_t flags, qd, an, ns, ar
    if n < 12:
        return False
    flags = ngfw_be16(msg + 2)
    qd = ngfw_be16(msg + 4)
    an = ngfw_be16(msg + 6)
    ns = ngfw_be16(msg + 8)
    ar = ngfw_be16(msg + 10)
    if (flags & 0x8000) == 0:
        return qd <= 16 and ((flags & 0x2800) == 0x2800 or (flags & 0xFCF0) == 0 or (flags & 0xFCFF) == 0x0800
                             or (an == 0 and ns == 0))
    return ((1 <= qd <= 16) or (mdns and qd == 0)) and (
        (1 <= an <= 16) or (1 <= ns <= 16) or (1 <= ar <= 16) or (an == 0 and ns == 0 and ar == 0))


cdef void dns_message_host(appmeta_t *m, const uint8_t *msg, uint32_t n, bint mdns) noexcept nogil:
    """The host of a DNS-family message: the name at its start (the first question's, or the first record's
    when it asks nothing; what the header counts is not trusted, as nDPI does not)."""
    cdef uint8_t name[256]
    cdef uint32_t len
    m.host_len = 0
    if n <= 12:
        return
    len = dns_grab_name(msg, n, 12, mdns, name)
    if len:
        set_dns_host(m, name, len)


cdef void nb_message_host(appmeta_t *m, const uint8_t *msg, uint32_t n) noexcept nogil:
    cdef uint8_t name[32]
    cdef uint32_t len = nb_name_lenient(msg, n, 12, name)
    m.host_len = 0
    if len:
        memcpy(m.host, name, len)
        m.host_len = <uint8_t>len


cdef int parse_netbios(appctx_t *c) noexcept nogil:
    """NetBIOS datagram service (UDP 138) and session service requests (TCP 139)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, dlen = 0
    cdef uint8_t name[16]
    cdef uint8_t lenient[32]
    if c.l4proto == P_UDP:
        # datagram: type 0x10..0x16, flags, id(2), src ip(4), src port(2), [len(2) offset(2)] names
        if n < 14 or p[0] < 0x10 or p[0] > 0x16 or (p[1] & 0xF0) != 0:
            return PARSE_NO
        if p[0] <= 0x12:
            if n < 14 + 34 or ngfw_be16(p + 10) + 14 > n or p[14] != NB_NAME_LEN:
                return PARSE_NO
            if not _nb_decode(p + 15, 32, name, &dlen):
                # nDPI compatibility: the source name decoded up to its first bad pair, as nDPI decodes the
                # name service's names
                dlen = nb_name_lenient(p, n, 14, lenient)
                if dlen == 0:
                    return PARSE_NO
                _set_host(c.meta, lenient, dlen)
                return APP_NETBIOS
            _set_host(c.meta, name, dlen)
            return APP_NETBIOS
        if n >= 11 + 34 and p[10] == NB_NAME_LEN and _nb_decode(p + 11, 32, name, &dlen):
            _set_host(c.meta, name, dlen)
            return APP_NETBIOS
        return PARSE_NO
    # session service: type(1) flags(1) length(2); a session request carries two encoded names
    if n < 4:
        return PARSE_NEED_MORE if n > 0 and (p[0] == 0x81 or p[0] == 0x85) and _stream_can_grow(c) else PARSE_NO
    if (p[1] & 0xFE) != 0:
        return PARSE_NO
    if p[0] == 0x81:
        if ngfw_be16(p + 2) < 68:
            return PARSE_NO
        if n < 4 + 34:
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
        if p[4] != NB_NAME_LEN or not _nb_decode(p + 5, 32, name, &dlen):
            return PARSE_NO
        _set_host(c.meta, name, dlen)
        return APP_NETBIOS
    if p[0] == 0x82 or p[0] == 0x83 or p[0] == 0x84:   # positive / negative response, retarget
        if c.to_server == 0 and ((p[0] == 0x82 and ngfw_be16(p + 2) == 0 and n == 4)
                                 or (p[0] == 0x83 and ngfw_be16(p + 2) == 1 and n == 5)):
            return APP_NETBIOS
    if p[0] == 0x85 and ngfw_be16(p + 2) == 0 and n == 4:   # keep-alive
        return APP_NETBIOS if _either_port(c, 139) else PARSE_NO
    return PARSE_NO
