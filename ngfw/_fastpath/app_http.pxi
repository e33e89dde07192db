# App-ID parsers of the HTTP family: HTTP/1.x and the protocols with its first line (RTSP, SIP, SSDP over UDP),
# the HTTP/2 preface, and WebSocket frames on a connection picked up after its upgrade. Host (HTTP/1 and
# SSDP), User-Agent and the method go to the flow's meta.


cdef int _proto_token(const uint8_t *p, uint32_t n) noexcept nogil:
    # "HTTP/1.x" -> APP_HTTP, "RTSP/1.0|2.0" -> APP_RTSP, "SIP/2.0" -> APP_SIP; 0 otherwise
    if n >= 8 and _starts(p, n, "HTTP/") and b'0' <= p[5] <= b'9' and p[6] == b'.' and b'0' <= p[7] <= b'9':
        return APP_HTTP if p[5] <= b'1' else APP_HTTP2
    if n >= 8 and _starts(p, n, "RTSP/") and p[6] == b'.':
        return APP_RTSP
    if n >= 7 and _starts(p, n, "SIP/2.0"):
        return APP_SIP
    return 0


cdef void _http_headers(appctx_t *c, const uint8_t *p, uint32_t n, uint32_t off, bint strip_port) noexcept nogil:
    # Host and User-Agent from complete header lines in p[off:n]
    cdef uint32_t s, e, v, ve, k
    while off < n:
        s = off
        e = s
        while e < n and p[e] != b'\n':
            e += 1
        if e >= n:
            return        # incomplete line
        off = e + 1
        ve = e
        if ve > s and p[ve - 1] == b'\r':
            ve -= 1
        if ve == s:
            return        # end of headers
        if _ieq(p + s, ve - s, "host:"):
            v = s + 5
            while v < ve and (p[v] == b' ' or p[v] == b'\t'):
                v += 1
            k = ve
            while k > v and (p[k - 1] == b' ' or p[k - 1] == b'\t'):
                k -= 1
            if strip_port:
                e = v
                if e < k and p[e] == b'[':         # [v6]:port
                    while e < k and p[e] != b']':
                        e += 1
                while e < k and p[e] != b':':
                    e += 1
                k = e
            _set_host(c.meta, p + v, k - v)
        elif _ieq(p + s, ve - s, "user-agent:"):
            v = s + 11
            while v < ve and (p[v] == b' ' or p[v] == b'\t'):
                v += 1
            _copy_text(c.meta.ua, UA_MAX, &c.meta.ua_len, p + v, ve - v, False)


cdef bint _head_whole(const uint8_t *p, uint32_t n) noexcept nogil:
    # the empty line that ends a head is in p[0:n]
    cdef uint32_t i
    for i in range(1, n):
        if p[i] == b'\n' and (p[i - 1] == b'\n' or (i >= 2 and p[i - 1] == b'\r' and p[i - 2] == b'\n')):
            return True
    return False


cdef int _http_answer(appctx_t *c, int proto, const uint8_t *p, uint32_t n, bint response) noexcept nogil:
    """HTTP over TCP is sure, but more bytes tell more: a request head cut over segments (its Host or
    User-Agent in the next one) is read whole while the stream can grow; a response seen before any request
    (a capture that starts mid-connection, or the request lost) waits for the other side's request and its
    Host for two more packets of its own side."""
    if proto != APP_HTTP or c.l4proto != P_TCP:
        return proto
    if response:
        if c.meta.host_len == 0 and c.pkt_index < 2:
            return _tentative(c, APP_HTTP)
        return proto
    if not _head_whole(p, n) and _stream_can_grow(c):
        return _tentative(c, APP_HTTP)
    return proto


cdef int parse_http(appctx_t *c) noexcept nogil:
    """HTTP/1.x request or status line (and its cousins RTSP, SIP, SSDP over UDP, the HTTP/2 preface).
    Fills Host (port stripped, except for SSDP), User-Agent and the method."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, i = 0, m_end, t_start, t_end, line_end, lim
    cdef int proto
    if n == 0:
        return PARSE_NO
    if n > 2048:
        lim = 2048
    else:
        lim = n
    # status line: PROTO/x.y SP 3DIGIT
    if p[0] == b'H' or p[0] == b'R' or p[0] == b'S':
        proto = _proto_token(p, n)
        if proto:
            i = 8 if proto != APP_SIP else 7
            if i < n and p[i] == b' ':
                if i + 4 <= n and b'1' <= p[i + 1] <= b'5' and b'0' <= p[i + 2] <= b'9' and b'0' <= p[i + 3] <= b'9':
                    if proto == APP_HTTP and c.l4proto == P_UDP:
                        proto = APP_SSDP
                    if proto == APP_HTTP2:
                        proto = APP_HTTP
                    line_end = i
                    while line_end < lim and p[line_end] != b'\n':
                        line_end += 1
                    if line_end < lim:
                        _http_headers(c, p, n, line_end + 1, proto != APP_SSDP)
                    return _http_answer(c, proto, p, n, True)
                if i + 4 > n:
                    return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
            return PARSE_NO
        if n < 8 and (_prefix_of(p, n, "HTTP/1.") or _prefix_of(p, n, "RTSP/1.") or _prefix_of(p, n, "SIP/2.0")):
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    # request line: METHOD SP target SP PROTO CRLF
    while i < n and i < 17 and (b'A' <= p[i] <= b'Z' or p[i] == b'-' or p[i] == b'_'):
        i += 1
    if i == n:
        return PARSE_NEED_MORE if i >= 1 and _stream_can_grow(c) and i < 17 else PARSE_NO
    if i < 3 or i > 16 or p[i] != b' ':
        return PARSE_NO
    m_end = i
    t_start = i + 1
    t_end = t_start
    while t_end < lim and b' ' < p[t_end] <= b'~':
        t_end += 1
    if t_end == t_start:
        return PARSE_NO
    if t_end >= n:
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    if t_end >= lim or p[t_end] != b' ':
        return PARSE_NO
    if n - (t_end + 1) < 8:
        # the protocol token is still coming: it must agree with what is here
        if not (_prefix_of(p + t_end + 1, n - t_end - 1, "HTTP/1.")
                or _prefix_of(p + t_end + 1, n - t_end - 1, "HTTP/2.0")
                or _prefix_of(p + t_end + 1, n - t_end - 1, "RTSP/1.0")
                or _prefix_of(p + t_end + 1, n - t_end - 1, "SIP/2.0")):
            return PARSE_NO
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    proto = _proto_token(p + t_end + 1, n - t_end - 1)
    if proto == 0:
        return PARSE_NO
    line_end = t_end + 1 + (7 if proto == APP_SIP else 8)
    if line_end < n and p[line_end] == b'\r':
        line_end += 1
    if line_end < n and p[line_end] != b'\n':
        return PARSE_NO
    if proto == APP_HTTP2:
        if m_end == 3 and _starts(p, n, "PRI * HTTP/2.0"):
            return APP_HTTP2
        return PARSE_NO
    if proto == APP_HTTP and c.l4proto == P_UDP:
        if _starts(p, n, "BT-SEARCH "):
            return PARSE_NO   # BitTorrent local service discovery speaks HTTPU too (a catalogue signature)
        proto = APP_SSDP
    if proto == APP_HTTP or proto == APP_SSDP:
        if m_end <= 8:
            memcpy(c.meta.http_method, p, m_end)
            c.meta.http_method_len = <uint8_t>m_end
    if line_end < n:
        _http_headers(c, p, n, line_end + 1, proto != APP_SSDP)
    return _http_answer(c, proto, p, n, False)


cdef int _ws_frames(const uint8_t *p, uint32_t n) noexcept nogil:
    """Whether `p` is whole WebSocket frames (RFC 6455: FIN set; text, binary, close, ping or pong) tiling it
    exactly: 1 all unmasked, 2 all masked, 0 not frames."""
    cdef uint32_t off = 0, hdr, frames = 0
    cdef uint64_t length
    cdef int masked = -1
    while off < n and frames < 8:
        if off + 2 > n:
            return 0
        if p[off] != 0x81 and p[off] != 0x82 and p[off] != 0x88 and p[off] != 0x89 and p[off] != 0x8A:
            return 0
        if masked >= 0 and masked != (p[off + 1] >> 7):
            return 0
        masked = p[off + 1] >> 7
        length = p[off + 1] & 0x7F
        hdr = 2
        if length == 126:
            if off + 4 > n:
                return 0
            length = ngfw_be16(p + off + 2)
            hdr = 4
        elif length == 127:
            return 0   # a 64-bit length: never a first packet's worth
        hdr += 4 if masked else 0
        if off + hdr + length > n:
            return 0
        off += hdr + <uint32_t>length
        frames += 1
    if off != n:
        return 0
    return 2 if masked else 1


cdef int parse_websocket(appctx_t *c) noexcept nogil:
    """WebSocket frames on a connection picked up after its HTTP upgrade: a packet of one side that is whole
    frames, then a packet of the other side that is whole frames masked the other way (clients mask what
    they send, servers do not). The first side is remembered in scratch (owner, direction, masking)."""
    cdef uint8_t *s = c.scratch
    cdef int kind
    if c.l4proto != P_TCP or c.payload_len < 2:
        return PARSE_NO
    kind = _ws_frames(c.payload, c.payload_len)
    if kind == 0:
        return PARSE_NO
    if s[0] == NGFW_SCRATCH_WEBSOCKET:
        if s[1] != c.to_server:
            return APP_WEBSOCKET if s[2] != kind else PARSE_NO
        return PARSE_NEED_MORE if s[2] == kind else PARSE_NO
    if s[0] != 0:
        return PARSE_NO
    s[0] = NGFW_SCRATCH_WEBSOCKET
    s[1] = c.to_server
    s[2] = <uint8_t>kind
    return PARSE_NEED_MORE
