# HTTP/2 header blocks for inspection: frames are followed across segments by their lengths, HEADERS
# frames are decoded (HPACK: static table, literals, Huffman) into the same buffers HTTP/1 fills
# (`:authority` is http.host, `:path` http.uri, `:method` http.method, `:status` http.stat_code, other
# fields by name). The dynamic table is not kept (it would cost up to 4 KiB per direction per flow):
# a field that refers to it is skipped, so a request that repeats an earlier one's fields by reference
# shows only its literal ones. A HEADERS frame split across segments is skipped too.

include "hpack_huffman.pxi"

cdef enum:
    H2_SYNCED = 1
    H2_LOST = 2

cdef int hpack_int(const uint8_t *p, uint32_t n, uint32_t *off, uint32_t prefix_bits, uint32_t *out) noexcept nogil:
    """RFC 7541 5.1 integer at p[off] with a `prefix_bits` prefix; 0 ok, -1 malformed or truncated."""
    cdef uint32_t limit = (1u << prefix_bits) - 1
    cdef uint32_t v, shift = 0
    if off[0] >= n:
        return -1
    v = p[off[0]] & limit
    off[0] += 1
    if v < limit:
        out[0] = v
        return 0
    while True:
        if off[0] >= n or shift > 21:
            return -1
        v += (<uint32_t>(p[off[0]] & 0x7f)) << shift
        shift += 7
        off[0] += 1
        if not (p[off[0] - 1] & 0x80):
            break
    out[0] = v
    return 0

cdef int64_t huffman_decode(const uint8_t *p, uint32_t n, uint8_t *out, uint32_t cap) noexcept nogil:
    """Decode a canonical-Huffman string (RFC 7541 Appendix B); its length, -1 when malformed."""
    cdef uint32_t code = 0, length = 0, i, bit, m = 0, idx
    for i in range(n * 8):
        bit = (p[i >> 3] >> (7 - (i & 7))) & 1
        code = (code << 1) | bit
        length += 1
        if length > 30:
            return -1
        if length >= 5 and HUFF_COUNT[length] and code >= HUFF_FIRST_CODE[length] and \
                code - HUFF_FIRST_CODE[length] < HUFF_COUNT[length]:
            idx = HUFF_FIRST_INDEX[length] + (code - HUFF_FIRST_CODE[length])
            if HUFF_SYMBOLS[idx] == 256 or m >= cap:
                return -1
            out[m] = <uint8_t>HUFF_SYMBOLS[idx]
            m += 1
            code = 0
            length = 0
    # padding: at most 7 one-bits (a prefix of EOS)
    if length > 7 or code != (1u << length) - 1:
        return -1
    return m

cdef int hpack_string(insws_t *ws, const uint8_t *p, uint32_t n, uint32_t *off, const uint8_t **s,
                      uint32_t *slen) noexcept nogil:
    cdef bint huff
    cdef uint32_t ln
    cdef uint8_t *dst
    cdef int64_t m
    if off[0] >= n:
        return -1
    huff = (p[off[0]] & 0x80) != 0
    if hpack_int(p, n, off, 7, &ln) < 0 or off[0] + ln > n:
        return -1
    if not huff:
        s[0] = p + off[0]
        slen[0] = ln
    else:
        dst = norm_take(ws, ln * 2 + 1)      # Huffman codes are at least 5 bits: 8/5 of the input at most
        if dst == NULL:
            return -1
        m = huffman_decode(p + off[0], ln, dst, ln * 2 + 1)
        if m < 0:
            return -1
        s[0] = dst
        slen[0] = <uint32_t>m
    off[0] += ln
    return 0

cdef void h2_field(insws_t *ws, const uint8_t *name, uint32_t nlen, const uint8_t *v, uint32_t vlen,
                   uint8_t *hdr, uint32_t *hlen) noexcept nogil:
    cdef uint8_t *uri
    if _name_is(name, nlen, ":method"):
        bs_set(&ws.bs, B_HTTP_METHOD, v, vlen)
    elif _name_is(name, nlen, ":path"):
        bs_set(&ws.bs, B_HTTP_URI_RAW, v, vlen)
        uri = norm_take(ws, vlen)
        if uri != NULL:
            bs_set(&ws.bs, B_HTTP_URI, uri, normalize_uri(v, vlen, uri))
    elif _name_is(name, nlen, ":status"):
        bs_set(&ws.bs, B_HTTP_STAT_CODE, v, vlen)
    else:
        http_field(ws, name, nlen, v, vlen)
    if hdr != NULL and nlen and name[0] != 58 and hlen[0] + nlen + vlen + 4 <= 4096:
        memcpy(hdr + hlen[0], name, nlen)
        hdr[hlen[0] + nlen] = 58; hdr[hlen[0] + nlen + 1] = 32
        hlen[0] += nlen + 2
        memcpy(hdr + hlen[0], v, vlen)
        hlen[0] += vlen
        hdr[hlen[0]] = 13; hdr[hlen[0] + 1] = 10
        hlen[0] += 2

cdef void hpack_block(insws_t *ws, const uint8_t *p, uint32_t n) noexcept nogil:
    """Decode one header block fragment into the HTTP buffers."""
    cdef uint32_t off = 0, idx, nlen, vlen, prefix
    cdef const uint8_t *name
    cdef const uint8_t *value
    cdef uint8_t b
    cdef uint8_t *hdr = norm_take(ws, 4096)
    cdef uint32_t hlen = 0
    while off < n:
        b = p[off]
        if b & 0x80:                                 # indexed field
            if hpack_int(p, n, &off, 7, &idx) < 0:
                return
            if 1 <= idx <= 61:
                h2_field(ws, <const uint8_t *>HPACK_NAMES + HPACK_NAME_OFF[idx - 1], HPACK_NAME_LEN[idx - 1],
                         <const uint8_t *>HPACK_VALUES + HPACK_VALUE_OFF[idx - 1], HPACK_VALUE_LEN[idx - 1], hdr, &hlen)
            continue
        if (b & 0xe0) == 0x20:                       # dynamic table size update
            if hpack_int(p, n, &off, 5, &idx) < 0:
                return
            continue
        prefix = 6 if (b & 0xc0) == 0x40 else 4       # with incremental indexing / without / never indexed
        if hpack_int(p, n, &off, prefix, &idx) < 0:
            return
        nlen = 0
        name = NULL
        if idx == 0:
            if hpack_string(ws, p, n, &off, &name, &nlen) < 0:
                return
        elif idx <= 61:
            name = <const uint8_t *>HPACK_NAMES + HPACK_NAME_OFF[idx - 1]
            nlen = HPACK_NAME_LEN[idx - 1]
        if hpack_string(ws, p, n, &off, &value, &vlen) < 0:
            return
        if name != NULL:                              # a name from the dynamic table is unknown here
            h2_field(ws, name, nlen, value, vlen, hdr, &hlen)
    if hdr != NULL and hlen:
        bs_set(&ws.bs, B_HTTP_HEADER, hdr, hlen)

cdef void h2_frames(insws_t *ws, inspslot_t *s, uint8_t dir, const uint8_t *d, uint32_t n) noexcept nogil:
    """Follow HTTP/2 frames through this direction's in-order bytes; decode HEADERS frames."""
    cdef uint32_t off, flen, hoff, hend
    cdef uint8_t ftype, flags, pad
    if s.h2_state[dir] == H2_LOST:
        return
    if s.h2_state[dir] == 0:
        s.h2_state[dir] = H2_SYNCED
        if dir == 0:
            if n < 24 or memcmp(d, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24) != 0:
                s.h2_state[dir] = H2_LOST        # no preface (h2 after an upgrade): not followed
                return
            s.h2_skip[dir] = 24
    off = s.h2_skip[dir] if s.h2_skip[dir] < n else n
    s.h2_skip[dir] -= off
    while off < n:
        if off + 9 > n:
            s.h2_state[dir] = H2_LOST             # a frame header split across segments: sync is lost
            return
        flen = (<uint32_t>d[off] << 16) | (<uint32_t>d[off + 1] << 8) | d[off + 2]
        ftype = d[off + 3]
        flags = d[off + 4]
        if ftype == 1 and off + 9 + flen <= n:    # HEADERS, whole in this segment
            hoff = off + 9
            hend = hoff + flen
            pad = 0
            if flags & 0x08:                      # PADDED
                if flen == 0:
                    off += 9
                    continue
                pad = d[hoff]
                hoff += 1
            if flags & 0x20:                      # PRIORITY
                hoff += 5
            if hoff + pad <= hend:
                hpack_block(ws, d + hoff, hend - pad - hoff)
        if off + 9 + flen > n:
            s.h2_skip[dir] = off + 9 + flen - n
            return
        off += 9 + flen
