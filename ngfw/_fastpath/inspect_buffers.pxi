# Sticky buffers for inspection, cut from the packet being inspected: HTTP/1.x request and response
# heads (and the bodies that follow them), the DNS query name, the TLS SNI, the SSH banner. Pointers
# index the packet or the workspace's `norm` area (normalised copies); nothing is kept across packets
# except where an HTTP body continues (inspslot_t.body_left). Every read is bounds-checked.

cdef inline void bs_set(ibufset_t *bs, int b, const uint8_t *p, uint32_t n) noexcept nogil:
    bs.ptr[b] = p
    bs.len[b] = n
    bs.have[b] = 1

cdef inline uint8_t *norm_take(insws_t *ws, uint32_t n) noexcept nogil:
    cdef uint8_t *out
    if ws.norm_used + n > NORM_MAX:
        return NULL
    out = ws.norm + ws.norm_used
    ws.norm_used += n
    return out

cdef inline int _hexval(uint8_t c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1

cdef uint32_t normalize_uri(const uint8_t *src, uint32_t n, uint8_t *dst) noexcept nogil:
    """Percent-decode (%XX and IIS %uXXXX), turn `\\` into `/`, compress `//` and remove `.`/`..`
    path segments in the path (not the query): what libhtp's default normalisation gives
    Suricata's http.uri. `dst` holds at least n bytes."""
    cdef uint32_t i = 0, m = 0, seg
    cdef int hv, lv
    cdef uint8_t c
    cdef bint in_query = False
    while i < n:
        c = src[i]
        if c == 37 and i + 2 < n:   # '%' with two characters after it
            hv = _hexval(src[i + 1]); lv = _hexval(src[i + 2])
            if hv >= 0 and lv >= 0:
                c = <uint8_t>(hv * 16 + lv)
                i += 3
            elif ((src[i + 1] == 117 or src[i + 1] == 85) and i + 5 < n
                  and _hexval(src[i + 4]) >= 0 and _hexval(src[i + 5]) >= 0):
                c = <uint8_t>(_hexval(src[i + 4]) * 16 + _hexval(src[i + 5]))
                i += 6
            else:
                i += 1
        else:
            i += 1
        if c == 63:   # '?'
            in_query = True
        if not in_query:
            if c == 92:
                c = 47
            if c == 47 and m > 0 and dst[m - 1] == 47:
                continue                       # compress "//"
        dst[m] = c
        m += 1
        if not in_query and c == 47 and m >= 2 and dst[m - 2] == 46 and (m == 2 or dst[m - 3] == 47):
            m -= 2                             # "/./" -> "/"
            if m == 0:
                dst[0] = 47
                m = 1
        elif not in_query and c == 47 and m >= 4 and dst[m - 2] == 46 and dst[m - 3] == 46 and dst[m - 4] == 47:
            # "/../": drop the segment before it
            m -= 4
            seg = m
            while seg > 0 and dst[seg - 1] != 47:
                seg -= 1
            m = seg if seg > 0 else 0
            dst[m] = 47
            m += 1
    return m

cdef inline bint _name_is(const uint8_t *p, uint32_t n, const char *lit) noexcept nogil:
    cdef uint32_t i = 0
    while lit[i] != 0:
        if i >= n or _lc(p[i]) != <uint8_t>lit[i]:
            return False
        i += 1
    return i == n

cdef inline uint32_t _line_end(const uint8_t *p, uint32_t n, uint32_t off) noexcept nogil:
    """Offset of the LF ending the line at `off`, or n when the line is not complete."""
    while off < n and p[off] != 10:
        off += 1
    return off

cdef uint32_t _parse_uint(const uint8_t *p, uint32_t n) noexcept nogil:
    cdef uint32_t v = 0, i
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            break
        v = v * 10 + (p[i] - 48) if v < 400000000 else v
    return v

cdef void http_field(insws_t *ws, const uint8_t *name, uint32_t name_len, const uint8_t *v,
                     uint32_t vlen) noexcept nogil:
    """The buffer a header field fills (HTTP/1 and HTTP/2 alike)."""
    cdef ibufset_t *bs = &ws.bs
    cdef uint8_t *host
    cdef uint32_t i, hl
    if _name_is(name, name_len, "host") or _name_is(name, name_len, ":authority"):
        bs_set(bs, B_HTTP_HOST_RAW, v, vlen)
        hl = vlen
        for i in range(vlen):
            if v[i] == 58 and v[0] != 91:   # a port (not inside an IPv6 literal)
                hl = i
                break
        host = norm_take(ws, hl)
        if host != NULL:
            for i in range(hl):
                host[i] = _lc(v[i])
            bs_set(bs, B_HTTP_HOST, host, hl)
    elif _name_is(name, name_len, "user-agent"):
        bs_set(bs, B_HTTP_UA, v, vlen)
    elif _name_is(name, name_len, "cookie") or _name_is(name, name_len, "set-cookie"):
        bs_set(bs, B_HTTP_COOKIE, v, vlen)
    elif _name_is(name, name_len, "content-type"):
        bs_set(bs, B_HTTP_CONTENT_TYPE, v, vlen)
    elif _name_is(name, name_len, "content-length"):
        bs_set(bs, B_HTTP_CONTENT_LEN, v, vlen)
    elif _name_is(name, name_len, "referer"):
        bs_set(bs, B_HTTP_REFERER, v, vlen)
    elif _name_is(name, name_len, "accept"):
        bs_set(bs, B_HTTP_ACCEPT, v, vlen)
    elif _name_is(name, name_len, "accept-encoding"):
        bs_set(bs, B_HTTP_ACCEPT_ENC, v, vlen)
    elif _name_is(name, name_len, "accept-language"):
        bs_set(bs, B_HTTP_ACCEPT_LANG, v, vlen)
    elif _name_is(name, name_len, "connection"):
        bs_set(bs, B_HTTP_CONNECTION, v, vlen)
    elif _name_is(name, name_len, "location"):
        bs_set(bs, B_HTTP_LOCATION, v, vlen)
    elif _name_is(name, name_len, "server"):
        bs_set(bs, B_HTTP_SERVER, v, vlen)

cdef uint32_t http_headers(insws_t *ws, const uint8_t *p, uint32_t n, uint32_t off, bint request,
                           uint32_t *content_length, bint *chunked, uint8_t *encoding) noexcept nogil:
    """Header lines from `off`; fills the header buffers. Returns the offset after the empty line,
    or n when the head is not complete in this packet."""
    cdef ibufset_t *bs = &ws.bs
    cdef uint32_t start = off, eol, line_end, colon, vs, ve, name_len
    # "a:b\n" becomes "a: b\r\n": each line may grow by 2 bytes, and a line is at least 2 bytes long
    cdef uint8_t *hdr = norm_take(ws, 2 * (n - off) + 2)
    cdef uint8_t *names = norm_take(ws, n - off + 6)
    cdef uint32_t hlen = 0, nlen = 0
    cdef bint complete = False
    content_length[0] = UINT32_MAX
    chunked[0] = False
    encoding[0] = ENC_NONE
    if names != NULL:
        names[0] = 13; names[1] = 10
        nlen = 2
    while off < n:
        eol = _line_end(p, n, off)
        if eol >= n:
            break                                   # a partial line: the head goes on in the next packet
        line_end = eol
        if line_end > off and p[line_end - 1] == 13:
            line_end -= 1
        if line_end == off:
            off = eol + 1
            complete = True
            break
        colon = off
        while colon < line_end and p[colon] != 58:
            colon += 1
        if colon < line_end:
            name_len = colon - off
            vs = colon + 1
            while vs < line_end and (p[vs] == 32 or p[vs] == 9):
                vs += 1
            ve = line_end
            while ve > vs and (p[ve - 1] == 32 or p[ve - 1] == 9):
                ve -= 1
            if hdr != NULL:
                memcpy(hdr + hlen, p + off, name_len)
                hdr[hlen + name_len] = 58; hdr[hlen + name_len + 1] = 32
                hlen += name_len + 2
                memcpy(hdr + hlen, p + vs, ve - vs)
                hlen += ve - vs
                hdr[hlen] = 13; hdr[hlen + 1] = 10
                hlen += 2
            if names != NULL:
                memcpy(names + nlen, p + off, name_len)
                nlen += name_len
                names[nlen] = 13; names[nlen + 1] = 10
                nlen += 2
            http_field(ws, p + off, name_len, p + vs, ve - vs)
            if _name_is(p + off, name_len, "content-length"):
                content_length[0] = _parse_uint(p + vs, ve - vs)
            elif _name_is(p + off, name_len, "transfer-encoding"):
                chunked[0] = find_bytes(p + vs, ve - vs, <const uint8_t *>b"chunked", 7, True) >= 0
            elif _name_is(p + off, name_len, "content-encoding"):
                if find_bytes(p + vs, ve - vs, <const uint8_t *>b"gzip", 4, True) >= 0:
                    encoding[0] = ENC_GZIP
                elif find_bytes(p + vs, ve - vs, <const uint8_t *>b"deflate", 7, True) >= 0:
                    encoding[0] = ENC_DEFLATE
        off = eol + 1
    if hdr != NULL and hlen:
        bs_set(bs, B_HTTP_HEADER, hdr, hlen)
    if names != NULL and nlen > 2:
        names[nlen] = 13; names[nlen + 1] = 10
        bs_set(bs, B_HTTP_HEADER_NAMES, names, nlen + 2)
    if off > start:
        bs_set(bs, B_HTTP_HEADER_RAW, p + start, off - start)
    return off if complete else n

cdef inline bint _http_method_char(uint8_t c) noexcept nogil:
    return (65 <= c <= 90) or c == 45 or c == 95

cdef inline bint http_head_complete(const uint8_t *p, uint32_t n) noexcept nogil:
    return (find_bytes(p, n, <const uint8_t *>b"\r\n\r\n", 4, False) >= 0
            or find_bytes(p, n, <const uint8_t *>b"\n\n", 2, False) >= 0)

cdef bint http_request_start(const uint8_t *p, uint32_t n) noexcept nogil:
    """Does `p` start like a request line (a method token and a space)?"""
    cdef uint32_t i = 0
    while i < n and i < 16 and _http_method_char(p[i]):
        i += 1
    return i > 0 and i < n and p[i] == 32

cdef bint http_request(insws_t *ws, inspslot_t *s, const uint8_t *p, uint32_t n) noexcept nogil:
    """A request head at the start of `p`: method, URI, protocol, headers and the body in this packet."""
    cdef ibufset_t *bs = &ws.bs
    cdef uint32_t i = 0, m_end, u_start, u_end, eol, line_end, body, clen = 0, blen
    cdef uint8_t *uri
    cdef uint8_t enc = ENC_NONE
    cdef bint chunked = False
    while i < n and i < 16 and _http_method_char(p[i]):
        i += 1
    if i == 0 or i >= n or p[i] != 32:
        return False
    m_end = i
    u_start = i + 1
    eol = _line_end(p, n, 0)
    line_end = eol
    if line_end > 0 and line_end <= n and line_end > u_start and p[line_end - 1] == 13:
        line_end -= 1
    if line_end > n:
        line_end = n
    u_end = u_start
    while u_end < line_end and p[u_end] != 32:
        u_end += 1
    if u_end == u_start:
        return False
    bs_set(bs, B_HTTP_METHOD, p, m_end)
    bs_set(bs, B_HTTP_URI_RAW, p + u_start, u_end - u_start)
    uri = norm_take(ws, u_end - u_start)
    if uri != NULL:
        bs_set(bs, B_HTTP_URI, uri, normalize_uri(p + u_start, u_end - u_start, uri))
    if u_end + 1 < line_end:
        bs_set(bs, B_HTTP_PROTOCOL, p + u_end + 1, line_end - u_end - 1)
    bs_set(bs, B_HTTP_REQUEST_LINE, p, line_end)
    if eol >= n:
        return True
    body = http_headers(ws, p, n, eol + 1, True, &clen, &chunked, &enc)
    bs_set(bs, B_HTTP_START, p, body)
    s.http_body[0] = 0
    s.body_left[0] = 0
    if body < n or (body == n and (clen != UINT32_MAX or chunked)):
        blen = n - body
        if clen != UINT32_MAX and blen > clen:
            blen = clen
        if blen:
            bs_set(bs, B_HTTP_BODY, p + body, blen)
        if chunked:
            s.http_body[0] = 1
            s.body_left[0] = UINT32_MAX
        elif clen != UINT32_MAX and clen > blen:
            s.http_body[0] = 1
            s.body_left[0] = clen - blen
    return True

cdef bint http_response(insws_t *ws, inspslot_t *s, const uint8_t *p, uint32_t n) noexcept nogil:
    """A response head at the start of `p`: status line, headers, the body (file.data) in this packet."""
    cdef ibufset_t *bs = &ws.bs
    cdef uint32_t eol, line_end, sp1, sp2, body, clen = 0, blen
    cdef uint8_t enc = ENC_NONE
    cdef bint chunked = False
    if n < 12 or memcmp(p, b"HTTP/", 5) != 0:
        return False
    eol = _line_end(p, n, 0)
    line_end = eol if eol <= n else n
    if line_end > 0 and p[line_end - 1] == 13:
        line_end -= 1
    sp1 = 5
    while sp1 < line_end and p[sp1] != 32:
        sp1 += 1
    if sp1 + 4 > line_end:
        return False
    sp2 = sp1 + 1
    while sp2 < line_end and p[sp2] != 32:
        sp2 += 1
    bs_set(bs, B_HTTP_PROTOCOL, p, sp1)
    bs_set(bs, B_HTTP_STAT_CODE, p + sp1 + 1, sp2 - sp1 - 1)
    if sp2 + 1 <= line_end:
        bs_set(bs, B_HTTP_STAT_MSG, p + sp2 + 1, line_end - sp2 - 1 if line_end > sp2 else 0)
    bs_set(bs, B_HTTP_RESPONSE_LINE, p, line_end)
    if eol >= n:
        return True
    body = http_headers(ws, p, n, eol + 1, False, &clen, &chunked, &enc)
    s.http_body[1] = 0
    s.body_left[1] = 0
    response_body_start(ws, s, chunked, enc)
    if body < n or (body == n and (clen != UINT32_MAX or chunked)):
        blen = n - body
        if clen != UINT32_MAX and blen > clen and not chunked:
            blen = clen
        if chunked or clen == UINT32_MAX:
            s.http_body[1] = 1
            s.body_left[1] = UINT32_MAX
        elif clen > blen:
            s.http_body[1] = 1
            s.body_left[1] = clen - blen
        if blen and not response_body(ws, s, p + body, blen):
            file_data_set(ws, s, p + body, blen)
        if not s.http_body[1]:
            bodydec_give(&ws.bodydec, s)
    return True

cdef void http_body_continues(insws_t *ws, inspslot_t *s, uint8_t dir, const uint8_t *p, uint32_t n) noexcept nogil:
    cdef uint32_t take = n
    if not s.http_body[dir] or n == 0:
        return
    if s.body_left[dir] != UINT32_MAX:
        if take > s.body_left[dir]:
            take = s.body_left[dir]
        s.body_left[dir] -= take
        if s.body_left[dir] == 0:
            s.http_body[dir] = 0
    if dir == 0:
        bs_set(&ws.bs, B_HTTP_BODY, p, take)
    elif not response_body(ws, s, p, take):
        file_data_set(ws, s, p, take)
    if dir == 1 and not s.http_body[1]:
        bodydec_give(&ws.bodydec, s)

cdef bint dns_query_buffer(insws_t *ws, const uint8_t *p, uint32_t n, bint tcp) noexcept nogil:
    """The first question's name of a DNS query (Suricata's dns.query: requests only)."""
    cdef uint32_t qlen = 0, nxt = 0
    cdef uint8_t *out
    if tcp:
        if n < 2:
            return False
        p += 2
        n -= 2
    if n < 17 or (p[2] & 0x80) or ngfw_be16(p + 4) == 0:
        return False
    out = norm_take(ws, 256)
    if out == NULL or _dns_name(p, n, 12, out, 255, &qlen, &nxt) != 0:
        return False
    bs_set(&ws.bs, B_DNS_QUERY, out, qlen)
    return True

cdef uint32_t tls_hello_at(const uint8_t *p, uint32_t n, uint8_t *joined, uint32_t *hs_len) noexcept nogil:
    """A ClientHello starting the client's bytes `p`, joined out of its handshake records into `joined`
    (STREAM_MAX bytes: its first ones), header included: how many bytes of it are there (0: not one)."""
    cdef uint32_t have
    if n < 6 or p[0] != 0x16 or p[1] != 3 or p[2] > 4 or p[5] != 1:
        return 0
    have = _tls_join_handshake(p, n, STREAM_MAX, joined)
    if have < 4 or joined[0] != 1:
        return 0
    hs_len[0] = _be24(joined + 1)
    return have

cdef bint tls_hello_pending(const uint8_t *p, uint32_t n) noexcept nogil:
    """`p` starts a ClientHello that goes on past its end."""
    cdef uint8_t joined[STREAM_MAX]
    cdef uint32_t hs_len = 0
    cdef uint32_t have = tls_hello_at(p, n, joined, &hs_len)
    return have > 0 and have < hs_len + 4 and have < STREAM_MAX and hs_len >= 38

cdef bint tls_sni_buffer(insws_t *ws, const uint8_t *p, uint32_t n) noexcept nogil:
    cdef appmeta_t meta
    cdef uint32_t hs_len = 0, have
    cdef uint8_t *out
    cdef uint8_t joined[STREAM_MAX]
    have = tls_hello_at(p, n, joined, &hs_len)
    if have == 0:
        return False
    memset(&meta, 0, sizeof(meta))
    if _tls_hello(joined + 4, have - 4, hs_len, True, &meta) <= 0 or meta.host_len == 0:
        return False
    out = norm_take(ws, meta.host_len)
    if out == NULL:
        return False
    memcpy(out, meta.host, meta.host_len)
    bs_set(&ws.bs, B_TLS_SNI, out, meta.host_len)
    return True

cdef bint ssh_banner_buffers(insws_t *ws, const uint8_t *p, uint32_t n) noexcept nogil:
    cdef uint32_t i = 4, dash, end
    if n < 8 or memcmp(p, b"SSH-", 4) != 0:
        return False
    while i < n and p[i] != 45 and p[i] != 13 and p[i] != 10:
        i += 1
    if i >= n or p[i] != 45:
        return False
    dash = i
    bs_set(&ws.bs, B_SSH_PROTO, p + 4, dash - 4)
    end = dash + 1
    while end < n and p[end] != 32 and p[end] != 13 and p[end] != 10:
        end += 1
    bs_set(&ws.bs, B_SSH_SOFTWARE, p + dash + 1, end - dash - 1)
    return True
