# App-ID parsers of the TLS family: TLS over TCP and DTLS over UDP, and the hello reader QUIC (app_quic.pxi)
# and inspection's TLS buffers share. The ClientHello's SNI is the flow's host; ALPN and the highest version
# offered go to the flow's meta.

cdef enum:
    # record content types (RFC 8446 B.1; DTLS adds 24 heartbeat and 25 tls12_cid)
    TLS_CHANGE_CIPHER_SPEC = 20
    TLS_ALERT = 21
    TLS_HANDSHAKE = 22
    TLS_APPLICATION_DATA = 23
    DTLS_LAST_CONTENT_TYPE = 25
    # handshake types
    TLS_CLIENT_HELLO = 1
    TLS_SERVER_HELLO = 2
    # extensions
    TLS_EXT_SERVER_NAME = 0
    TLS_EXT_ALPN = 16
    TLS_EXT_SUPPORTED_VERSIONS = 43


cdef int _tls_hello(const uint8_t *h, uint32_t n, uint32_t full, bint client, appmeta_t *m) noexcept nogil:
    # A ClientHello/ServerHello body of `full` bytes of which `n` are here. 1 parsed (to the SNI or to the
    # end), 0 ran out of bytes before the end, -1 malformed. DTLS's (version 0xfeff/0xfefd/0xfefc) is the
    # same but for the cookie a ClientHello carries after its session id.
    cdef uint32_t off = 0, l, ext_end, et, el, e, j, best
    cdef uint16_t v
    cdef bint dtls
    if n > full:
        n = full
    if n < 2:
        return 0
    v = ngfw_be16(h)
    dtls = v == 0xFEFF or v == 0xFEFD or v == 0xFEFC
    if not dtls and ((v >> 8) != 3 or (v & 0xFF) > 4):
        return -1
    m.tls_version = v
    off = 2 + 32
    if off + 1 > n:
        return 0 if off + 1 <= full else -1
    l = h[off]
    if l > 32:
        return -1
    off += 1 + l
    if client and dtls:
        if off + 1 > n:
            return 0 if off + 1 <= full else -1
        off += 1 + h[off]
    if client:
        if off + 2 > n:
            return 0 if off + 2 <= full else -1
        l = ngfw_be16(h + off)
        if l < 2 or (l & 1):
            return -1
        off += 2 + l
        if off + 1 > n:
            return 0 if off + 1 <= full else -1
        l = h[off]
        if l < 1:
            return -1
        off += 1 + l
    else:
        off += 3
    if off == full:
        return 1          # no extensions
    if off + 2 > n:
        return 0 if off + 2 <= full else -1
    ext_end = off + 2 + ngfw_be16(h + off)
    if ext_end > full:
        return -1
    off += 2
    while off + 4 <= ext_end:
        if off + 4 > n:
            return 0
        et = ngfw_be16(h + off)
        el = ngfw_be16(h + off + 2)
        off += 4
        if off + el > ext_end:
            return -1
        if off + el > n:
            return 0
        e = off
        if et == TLS_EXT_SERVER_NAME and client and el >= 5:
            # server_name: list length, type 0 (host_name), length, name
            l = ngfw_be16(h + e + 3)
            if h[e + 2] == 0 and l > 0 and 5 + l <= el and ngfw_be16(h + e) + 2 <= el:
                _set_host(m, h + e + 5, l)
        elif et == TLS_EXT_ALPN and el >= 3 and m.alpn_len == 0:
            l = h[e + 2]
            if l > 0 and 3 + l <= el:
                _copy_text(m.alpn, ALPN_MAX, &m.alpn_len, h + e + 3, l, False)
        elif et == TLS_EXT_SUPPORTED_VERSIONS:
            best = 0
            if client and el >= 1:
                l = h[e]
                j = 1
                while j + 1 < 1 + l and j + 1 < el:
                    v = ngfw_be16(h + e + j)
                    if (v & 0x0F0F) != 0x0A0A and v > best and ((v >> 8) == 3 or (v >> 8) == 0x7F):
                        best = v
                    j += 2
            elif not client and el == 2:
                best = ngfw_be16(h + e)
            if best:
                m.tls_version = <uint16_t>best
        off += el
    return 1


cdef int parse_tls(appctx_t *c) noexcept nogil:
    """TLS over TCP: a handshake record carrying a ClientHello or ServerHello, or a plausible record
    sequence when the capture starts mid-flow. Fills SNI, ALPN and the version."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, rec_len, hs_len, avail, off
    cdef int r, records = 0
    cdef bint whole
    cdef uint8_t hello[STREAM_MAX]
    if n == 0:
        return PARSE_NO
    if p[0] < TLS_CHANGE_CIPHER_SPEC or p[0] > TLS_APPLICATION_DATA:
        return PARSE_NO
    if n < 5:
        if (n >= 2 and p[1] != 3) or (n >= 3 and p[2] > 4):
            return PARSE_NO
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    if p[1] != 3 or p[2] > 4:
        return PARSE_NO
    rec_len = ngfw_be16(p + 3)
    if rec_len == 0 or rec_len > 16384 + 2048:
        return PARSE_NO
    if p[0] != TLS_HANDSHAKE:
        # mid-flow: a change_cipher_spec, alert or application_data record; the next one, when there,
        # must chain on
        if (p[0] == TLS_CHANGE_CIPHER_SPEC and rec_len != 1) or (p[0] == TLS_ALERT and rec_len < 2):
            return PARSE_NO
        off = 0
        while off + 5 <= n and records < 4:
            if p[off] < TLS_CHANGE_CIPHER_SPEC or p[off] > TLS_APPLICATION_DATA or p[off + 1] != 3 or p[off + 2] > 4:
                return PARSE_NO
            rec_len = ngfw_be16(p + off + 3)
            if rec_len == 0 or rec_len > 16384 + 2048:
                return PARSE_NO
            records += 1
            off += 5 + rec_len
        return APP_TLS
    if n < 9:
        if n >= 6 and p[5] != TLS_CLIENT_HELLO and p[5] != TLS_SERVER_HELLO:
            return PARSE_NO
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    if p[5] != TLS_CLIENT_HELLO and p[5] != TLS_SERVER_HELLO:
        return PARSE_NO
    if rec_len >= 4:
        hs_len = _be24(p + 6)
    else:
        # even the handshake header is cut by the record's end
        if _tls_join_handshake(p, n, 4, hello) < 4:
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
        hs_len = _be24(hello + 1)
    if hs_len < 38 or hs_len > 0xFFFF:
        return PARSE_NO
    if hs_len + 4 <= rec_len:
        avail = n - 9
        if avail > rec_len - 4:
            avail = rec_len - 4
        r = _tls_hello(p + 9, avail, hs_len, p[5] == TLS_CLIENT_HELLO, c.meta)
        whole = n >= 5 + rec_len
    else:
        # the hello goes on in the next handshake records (a sender may cut it at any byte): joined first
        avail = _tls_join_handshake(p, n, hs_len + 4, hello)
        r = _tls_hello(hello + 4, avail - 4, hs_len, p[5] == TLS_CLIENT_HELLO, c.meta) if avail >= 4 else -1
        whole = avail >= hs_len + 4
    if r < 0:
        c.meta.host_len = 0
        c.meta.alpn_len = 0
        c.meta.tls_version = 0
        return PARSE_NO
    if r == 0 and not whole and _stream_can_grow(c):
        return _tentative(c, APP_TLS)
    return APP_TLS


cdef uint32_t _tls_join_handshake(const uint8_t *p, uint32_t n, uint32_t want, uint8_t *out) noexcept nogil:
    """The first `want` bytes (at most STREAM_MAX) of the handshake messages carried by the handshake records
    that start the stream `p`, joined into `out`; returns how many there are (fewer: the stream stops, or a
    record that is not a handshake one comes first; 0: a record is empty)."""
    cdef uint32_t off = 0, k = 0, l, take
    if want > STREAM_MAX:
        want = STREAM_MAX
    while k < want and off + 5 <= n and p[off] == TLS_HANDSHAKE and p[off + 1] == 3 and p[off + 2] <= 4:
        l = ngfw_be16(p + off + 3)
        if l == 0:
            return 0
        take = l
        if take > n - off - 5:
            take = n - off - 5
        if take > want - k:
            take = want - k
        memcpy(out + k, p + off + 5, take)
        k += take
        off += 5 + l
    return k


cdef bint dtls_records(const uint8_t *p, uint32_t n) noexcept nogil:
    """`p` is exactly a sequence of DTLS records (the check `parse_dtls` makes)."""
    cdef uint32_t off = 0, l
    cdef int records = 0
    cdef uint16_t v
    while off + 13 <= n:
        if p[off] < TLS_CHANGE_CIPHER_SPEC or p[off] > DTLS_LAST_CONTENT_TYPE:
            break
        v = ngfw_be16(p + off + 1)
        if v != 0xFEFF and v != 0xFEFD and v != 0xFEFC and v != 0x0100:
            break
        l = ngfw_be16(p + off + 11)
        if l == 0 or off + 13 + l > n:
            break
        if p[off] == TLS_HANDSHAKE and records == 0 and ngfw_be16(p + off + 3) == 0:
            # epoch 0 handshake: msg type, 24-bit length, seq, fragment offset/length
            if l < 12 or p[off + 13] > 24:
                break
        records += 1
        off += 13 + l
    return records > 0 and off == n


cdef int parse_dtls(appctx_t *c) noexcept nogil:
    """DTLS 1.0/1.2/1.3 records: type, version 0xfeff/0xfefd/0xfefc (or 0x0100, the pre-RFC DTLS that Cisco
    AnyConnect still speaks), epoch, 48-bit sequence, length. A ClientHello in the first record (its first
    fragment: type, 24-bit length, sequence, fragment offset and length) names the host by its SNI."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t rec_len, frag_len
    if not dtls_records(p, c.payload_len):
        return PARSE_NO
    rec_len = ngfw_be16(p + 11)
    if c.to_server and p[0] == TLS_HANDSHAKE and ngfw_be16(p + 3) == 0 and rec_len >= 12 and p[13] == TLS_CLIENT_HELLO \
            and _be24(p + 19) == 0:
        frag_len = _be24(p + 13 + 9)
        if frag_len > rec_len - 12:
            frag_len = rec_len - 12
        if _tls_hello(p + 25, frag_len, _be24(p + 14), True, c.meta) < 0:
            c.meta.host_len = 0
            c.meta.alpn_len = 0
    return APP_DTLS
