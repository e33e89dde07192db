# HTTP/2 header blocks for inspection: frames are followed across segments by their lengths, header blocks
# (HEADERS and PUSH_PROMISE with their CONTINUATION frames, over any number of segments) are assembled and
# decoded with HPACK (RFC 7541: static and dynamic table, literals, Huffman, size updates and eviction) into
# the same buffers HTTP/1 fills (`:authority` is http.host, `:path` http.uri, `:method` http.method, `:status`
# http.stat_code, other fields by name). Each direction of a connection has its dynamic table in a slot of
# a small pool (h2tab_t): the name and value bytes of a 4096-byte table, which is what encoders use unless
# the decoder allows more. A larger table is held in part, newest entries first: a reference to an entry
# not held is skipped and counted, never guessed. A block that cannot be decoded (malformed, larger than
# H2_BLOCK_MAX, a size update above what the decoder allowed) leaves the direction's table unreliable: from
# then on only static and literal fields are read. No slot free: the connection is decoded as if its tables
# were empty and HEADERS frames are read only when whole in a segment.

include "hpack_huffman.pxi"

cdef enum:
    H2_SYNCED = 1
    H2_LOST = 2
    H2_DEFAULT_TABLE = 4096
    H2_TOO_LARGE = 1       # h2dyn_t.overflow: the block did not fit
    H2_MALFORMED = 2       # its framing was broken (counted when seen)

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

cdef int h2tab_init(h2tab_pool_t *p) noexcept nogil:
    cdef int i
    p.slots = <h2tab_t *>malloc(<size_t>H2TAB_SLOTS * sizeof(h2tab_t))
    if p.slots == NULL:
        return -1
    for i in range(H2TAB_SLOTS):
        p.next_free[i] = i + 1 if i + 1 < H2TAB_SLOTS else -1
    p.free_head = 0
    p.exhausted = p.malformed = p.unresolved = p.lost = 0
    return 0

cdef void h2tab_give(h2tab_pool_t *p, inspslot_t *s) noexcept nogil:
    cdef int32_t i
    if s.h2_tab == 0 or p.slots == NULL:
        s.h2_tab = 0
        return
    i = s.h2_tab - 1
    p.next_free[i] = p.free_head
    p.free_head = i
    s.h2_tab = 0

cdef h2tab_t *h2tab_of(h2tab_pool_t *p, inspslot_t *s, bint take) noexcept nogil:
    """The connection's tables; with `take`, a fresh slot when it has none (NULL: none free)."""
    cdef int32_t i
    cdef h2tab_t *t
    cdef int d
    if s.h2_tab:
        return &p.slots[s.h2_tab - 1]
    if not take or p.slots == NULL:
        return NULL
    i = p.free_head
    if i < 0:
        p.exhausted += 1
        return NULL
    p.free_head = p.next_free[i]
    s.h2_tab = <uint8_t>(i + 1)
    t = &p.slots[i]
    for d in range(2):
        memset(&t.dir[d], 0, <size_t>(<uint8_t *>&t.dir[d].off[0] - <uint8_t *>&t.dir[d]))
        t.dir[d].max_size = H2_DEFAULT_TABLE
        t.dir[d].limit = H2_DEFAULT_TABLE
    return t

cdef void h2dyn_evict(h2dyn_t *t, uint32_t need_size, uint32_t need_data, uint32_t need_entries) noexcept nogil:
    """Drop the oldest entries until `need_size` more fits the table's size (RFC 7541 4.4) and the bytes and
    entries fit what is held here (dropping more than the encoder does is safe: the entries kept are its
    newest, at the same indices)."""
    cdef uint32_t drop = 0, freed_size = 0, freed_data = 0, i
    while drop < t.n and (t.size - freed_size + need_size > t.max_size or t.n - drop + need_entries > H2TAB_ENTRIES
                          or t.data_len - freed_data + need_data > H2TAB_DATA):
        freed_size += <uint32_t>t.nlen[drop] + t.vlen[drop] + 32
        if t.off[drop] != H2_NO_DATA:
            freed_data += <uint32_t>t.nlen[drop] + t.vlen[drop]
        drop += 1
    if drop == 0:
        return
    if freed_data:
        memmove(t.data, t.data + freed_data, t.data_len - freed_data)
        t.data_len -= <uint16_t>freed_data
    for i in range(drop, t.n):
        t.off[i - drop] = t.off[i] - <uint16_t>freed_data if t.off[i] != H2_NO_DATA else H2_NO_DATA
        t.nlen[i - drop] = t.nlen[i]
        t.vlen[i - drop] = t.vlen[i]
    t.n -= <uint16_t>drop
    t.size -= freed_size

cdef void h2dyn_insert(h2dyn_t *t, const uint8_t *name, uint32_t nlen, const uint8_t *v,
                       uint32_t vlen) noexcept nogil:
    """Add a field as the newest entry (`name` must not point into the table: eviction moves it)."""
    cdef uint32_t esize = nlen + vlen + 32, data
    if esize > t.max_size:
        t.n = 0                        # larger than the table: the table ends up empty (RFC 7541 4.4)
        t.size = 0
        t.data_len = 0
        return
    data = nlen + vlen if nlen + vlen <= H2TAB_DATA else 0
    h2dyn_evict(t, esize, data, 1)
    if t.n >= H2TAB_ENTRIES:
        return
    if data:
        t.off[t.n] = t.data_len
        memcpy(t.data + t.data_len, name, nlen)
        memcpy(t.data + t.data_len + nlen, v, vlen)
        t.data_len += <uint16_t>data
    else:
        t.off[t.n] = H2_NO_DATA         # its size counts; its bytes are not held
    t.nlen[t.n] = <uint16_t>nlen
    t.vlen[t.n] = <uint16_t>vlen
    t.size += esize
    t.n += 1

cdef int h2_entry(h2dyn_t *t, uint32_t idx, const uint8_t **name, uint32_t *nlen, const uint8_t **v,
                  uint32_t *vlen) noexcept nogil:
    """Index `idx` of the static table or the dynamic one; 0 found, 1 a dynamic entry not known here, -1 past
    any table the encoder can have (malformed)."""
    cdef uint32_t k
    if idx == 0:
        return -1
    if idx <= 61:
        name[0] = <const uint8_t *>HPACK_NAMES + HPACK_NAME_OFF[idx - 1]
        nlen[0] = HPACK_NAME_LEN[idx - 1]
        v[0] = <const uint8_t *>HPACK_VALUES + HPACK_VALUE_OFF[idx - 1]
        vlen[0] = HPACK_VALUE_LEN[idx - 1]
        return 0
    if t == NULL or t.desync:
        return 1
    k = idx - 62
    if k >= t.n:
        # beyond what is held: an entry dropped here early, or none at all (an index past the largest table
        # the decoder allowed is malformed)
        return -1 if k >= t.limit // 32 else 1
    k = t.n - 1 - k
    if t.off[k] == H2_NO_DATA:
        return 1
    name[0] = t.data + t.off[k]
    nlen[0] = t.nlen[k]
    v[0] = t.data + t.off[k] + t.nlen[k]
    vlen[0] = t.vlen[k]
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

cdef const uint8_t *_h2_keep(insws_t *ws, const uint8_t *p, uint32_t n) noexcept nogil:
    # a copy in this packet's norm area: table bytes move as entries are added, buffers must not
    cdef uint8_t *out = norm_take(ws, n)
    if out != NULL and n:
        memcpy(out, p, n)
    return out

cdef int hpack_block(insws_t *ws, h2tab_pool_t *pool, h2dyn_t *t, const uint8_t *p, uint32_t n,
                     bint fill) noexcept nogil:
    """Decode one whole header block: the table `t` (NULL: none) follows its updates, the HTTP buffers get
    its fields when `fill`. 0, or -1 when it is not valid HPACK (the table is then unreliable)."""
    cdef uint32_t off = 0, idx, nlen, vlen, prefix, size
    cdef const uint8_t *name
    cdef const uint8_t *value
    cdef uint8_t b
    cdef int r
    cdef bint fields = False
    cdef uint8_t *hdr = norm_take(ws, 4096) if fill else NULL
    cdef uint32_t hlen = 0
    while off < n:
        b = p[off]
        if b & 0x80:                                 # indexed field
            if hpack_int(p, n, &off, 7, &idx) < 0:
                return -1
            fields = True
            r = h2_entry(t, idx, &name, &nlen, &value, &vlen)
            if r < 0:
                return -1
            if r > 0:
                pool.unresolved += 1
            elif fill:
                if idx > 61:
                    name = _h2_keep(ws, name, nlen)
                    value = _h2_keep(ws, value, vlen)
                if name != NULL and value != NULL:
                    h2_field(ws, name, nlen, value, vlen, hdr, &hlen)
            continue
        if (b & 0xe0) == 0x20:                       # dynamic table size update: only before the first field
            if hpack_int(p, n, &off, 5, &size) < 0 or fields:
                return -1
            if t != NULL:
                if size > t.limit:
                    return -1
                t.max_size = size
                h2dyn_evict(t, 0, 0, 0)
            continue
        fields = True
        prefix = 6 if (b & 0xc0) == 0x40 else 4       # with incremental indexing / without / never indexed
        if hpack_int(p, n, &off, prefix, &idx) < 0:
            return -1
        nlen = 0
        name = NULL
        r = 0
        if idx == 0:
            if hpack_string(ws, p, n, &off, &name, &nlen) < 0:
                return -1
        else:
            r = h2_entry(t, idx, &name, &nlen, &value, &vlen)
            if r < 0:
                return -1
            if r > 0:
                pool.unresolved += 1
                name = NULL
            elif idx > 61:
                name = _h2_keep(ws, name, nlen)      # the insertion below may move or drop its entry
                if name == NULL:
                    r = 1
        if hpack_string(ws, p, n, &off, &value, &vlen) < 0:
            return -1
        if prefix == 6 and t != NULL and not t.desync:
            if r > 0:
                t.desync = 1     # an entry whose name (and so size) is unknown here: the indices would drift
            else:
                h2dyn_insert(t, name, nlen, value, vlen)
        if name != NULL and fill:
            h2_field(ws, name, nlen, value, vlen, hdr, &hlen)
    if hdr != NULL and hlen:
        bs_set(&ws.bs, B_HTTP_HEADER, hdr, hlen)
    return 0

cdef void h2_block_done(insws_t *ws, h2dyn_t *t) noexcept nogil:
    """A header block is whole in t.block: decode it (a lost or malformed one leaves the table unreliable)."""
    cdef const uint8_t *p
    cdef h2tab_pool_t *pool = &ws.h2tab
    if t.overflow:
        if t.overflow == H2_TOO_LARGE:
            pool.lost += 1
        t.desync = 1
    else:
        p = _h2_keep(ws, t.block, t.block_len)      # the buffers point here: the next block reuses t.block
        if p == NULL:
            p = t.block
        if hpack_block(ws, pool, t, p, t.block_len, t.block_type == 1) < 0:
            pool.malformed += 1
            t.desync = 1
    t.block_type = 0
    t.block_len = 0
    t.overflow = 0

cdef void h2_frame_done(insws_t *ws, h2dyn_t *t) noexcept nogil:
    """A HEADERS, PUSH_PROMISE or CONTINUATION frame was copied whole: keep its fragment of the block (its
    padding, priority and promised stream dropped); the block is decoded with its END_HEADERS frame."""
    cdef uint8_t *p = t.block + t.frame_start
    cdef uint32_t m, hoff = 0, pad = 0
    if t.overflow:
        if t.frame_flags & 0x04:
            h2_block_done(ws, t)
        return
    m = t.block_len - t.frame_start
    if t.frame_type != 9:
        if t.frame_flags & 0x08:                      # PADDED
            if m < 1:
                ws.h2tab.malformed += 1
                t.overflow = H2_MALFORMED
                m = 0
            else:
                pad = p[0]
                hoff = 1
        if t.frame_type == 1 and t.frame_flags & 0x20:  # PRIORITY
            hoff += 5
        elif t.frame_type == 5:                       # the promised stream id
            hoff += 4
        if hoff + pad > m:
            if not t.overflow:
                ws.h2tab.malformed += 1
            t.overflow = H2_MALFORMED                 # the block is not decoded
            hoff = m
            pad = 0
        memmove(p, p + hoff, m - hoff - pad)
        t.block_len = t.frame_start + m - hoff - pad
    if t.frame_flags & 0x04:                          # END_HEADERS
        h2_block_done(ws, t)

cdef void h2_settings(h2tab_t *tab, uint8_t dir, const uint8_t *p, uint32_t n) noexcept nogil:
    """A SETTINGS frame of `dir`: its HEADER_TABLE_SIZE bounds the other direction's encoder (the largest
    allowed so far is kept: an encoder may use the old value until it sees the new one)."""
    cdef uint32_t off = 0, v
    cdef h2dyn_t *other = &tab.dir[1 - dir]
    while off + 6 <= n:
        if p[off] == 0 and p[off + 1] == 1:
            v = ngfw_be32(p + off + 2)
            if v > other.limit:
                other.limit = v
        off += 6

cdef void h2_frames(insws_t *ws, inspslot_t *s, uint8_t dir, const uint8_t *d, uint32_t n) noexcept nogil:
    """Follow HTTP/2 frames through this direction's in-order bytes; decode header blocks."""
    cdef uint32_t off, flen, take, hoff, hend
    cdef uint8_t ftype, flags, pad
    cdef const uint8_t *h
    cdef h2tab_t *tab
    cdef h2dyn_t *t = NULL
    if s.h2_state[dir] == H2_LOST:
        return
    if s.h2_state[dir] == 0:
        s.h2_state[dir] = H2_SYNCED
        if dir == 0:
            if n < 24 or memcmp(d, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24) != 0:
                s.h2_state[dir] = H2_LOST        # no preface (h2 after an upgrade): not followed
                return
            s.h2_skip[dir] = 24
        # a table slot for a connection whose client sent the preface (the server side may come first)
        tab = h2tab_of(&ws.h2tab, s, s.h2_state[0] == H2_SYNCED)
    else:
        tab = h2tab_of(&ws.h2tab, s, dir == 0 and s.h2_state[1] == H2_SYNCED)
    if tab != NULL:
        t = &tab.dir[dir]
    off = 0
    while off < n:
        if t != NULL and t.frame_left:               # the rest of a frame being copied
            take = t.frame_left if t.frame_left < n - off else n - off
            s.h2_skip[dir] -= take                   # h2_skip counts it too: a session record carries it
            if t.overflow or t.block_len + take > H2_BLOCK_MAX:
                t.overflow = t.overflow or H2_TOO_LARGE
            else:
                memcpy(t.block + t.block_len, d + off, take)
                t.block_len += take
            t.frame_left -= take
            off += take
            if t.frame_left == 0:
                h2_frame_done(ws, t)
            continue
        if s.h2_skip[dir]:
            take = s.h2_skip[dir] if s.h2_skip[dir] < n - off else n - off
            s.h2_skip[dir] -= take
            off += take
            continue
        if t != NULL and t.hdr_len:                  # a frame header cut at the last segment's end
            take = 9 - t.hdr_len if 9 - t.hdr_len < n - off else n - off
            memcpy(t.hdr + t.hdr_len, d + off, take)
            t.hdr_len += <uint8_t>take
            off += take
            if t.hdr_len < 9:
                return
            t.hdr_len = 0
            h = t.hdr
        elif off + 9 > n:
            if t == NULL:
                s.h2_state[dir] = H2_LOST             # a frame header split across segments: sync is lost
                return
            t.hdr_len = <uint8_t>(n - off)
            memcpy(t.hdr, d + off, n - off)
            return
        else:
            h = d + off
            off += 9
        flen = (<uint32_t>h[0] << 16) | (<uint32_t>h[1] << 8) | h[2]
        ftype = h[3]
        flags = h[4]
        if t == NULL:
            # no tables: a HEADERS frame whole in this segment is decoded with the static table
            if ftype == 1 and off + flen <= n:
                hoff = off
                hend = off + flen
                pad = 0
                if flags & 0x08 and flen:
                    pad = d[hoff]
                    hoff += 1
                if flags & 0x20:
                    hoff += 5
                if hoff + pad <= hend:
                    hpack_block(ws, &ws.h2tab, NULL, d + hoff, hend - pad - hoff, True)
            s.h2_skip[dir] = flen
            continue
        if t.block_type and ftype != 9:
            # a header block must go on with CONTINUATION frames: the connection is broken (RFC 9113 6.10)
            ws.h2tab.malformed += 1
            t.desync = 1
            t.block_type = 0
            t.block_len = 0
            t.overflow = 0
        if ftype == 1 or ftype == 5 or (ftype == 9 and t.block_type):
            if ftype != 9:
                t.block_type = ftype
                t.block_len = 0
                t.overflow = 0
            t.frame_type = ftype
            t.frame_flags = flags
            t.frame_start = t.block_len
            t.frame_left = flen
            s.h2_skip[dir] = flen
            if flen == 0:
                h2_frame_done(ws, t)
            continue
        if ftype == 4 and not (flags & 0x01) and off + flen <= n:   # SETTINGS (not an ACK), whole
            h2_settings(tab, dir, d + off, flen)
        s.h2_skip[dir] = flen


# ---------------------------------------------------------------- App-ID: the first request's :authority

cdef int _h2_plain_string(const uint8_t *p, uint32_t n, uint32_t *off, uint8_t *out, uint32_t cap,
                          uint32_t *olen) noexcept nogil:
    """An HPACK string at p[off] into out (Huffman decoded; longer than cap: cut); -1 malformed."""
    cdef bint huff
    cdef uint32_t ln
    cdef int64_t m
    cdef uint8_t tmp[512]
    if off[0] >= n:
        return -1
    huff = (p[off[0]] & 0x80) != 0
    if hpack_int(p, n, off, 7, &ln) < 0 or off[0] + ln > n:
        return -1
    if huff:
        m = huffman_decode(p + off[0], ln if ln <= 300 else 300, tmp, sizeof(tmp))
        if m < 0 and ln <= 300:
            return -1
        if m < 0:
            m = 0
        olen[0] = <uint32_t>m if <uint32_t>m < cap else cap
        memcpy(out, tmp, olen[0])
    else:
        olen[0] = ln if ln < cap else cap
        memcpy(out, p + off[0], olen[0])
    off[0] += ln
    return 0

cdef uint32_t h2_request_authority(const uint8_t *p, uint32_t n, uint8_t *out, uint32_t cap) noexcept nogil:
    """The host (`:authority`, else `host`, without its port) of the first HEADERS frame whole in a client's
    bytes (after the preface when they start with it); 0 when there is none. The first request of a
    connection names it literally (the dynamic table is empty then), so the static table is enough."""
    cdef uint32_t off = 0, flen, hoff, hend, pad, idx, prefix, vlen
    cdef uint8_t b, flags
    cdef uint8_t name[16]
    cdef uint32_t nlen
    if n >= 24 and memcmp(p, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24) == 0:
        off = 24
    while off + 9 <= n:
        flen = (<uint32_t>p[off] << 16) | (<uint32_t>p[off + 1] << 8) | p[off + 2]
        flags = p[off + 4]
        if p[off + 3] != 1:
            off += 9 + flen
            continue
        if off + 9 + flen > n:
            return 0
        hoff = off + 9
        hend = hoff + flen
        pad = 0
        if flags & 0x08:
            if flen == 0:
                return 0
            pad = p[hoff]
            hoff += 1
        if flags & 0x20:
            hoff += 5
        if hoff + pad > hend:
            return 0
        hend -= pad
        p = p + hoff
        n = hend - hoff
        off = 0
        while off < n:
            b = p[off]
            if b & 0x80:
                if hpack_int(p, n, &off, 7, &idx) < 0:
                    return 0
                continue
            if (b & 0xe0) == 0x20:
                if hpack_int(p, n, &off, 5, &idx) < 0:
                    return 0
                continue
            prefix = 6 if (b & 0xc0) == 0x40 else 4
            if hpack_int(p, n, &off, prefix, &idx) < 0:
                return 0
            nlen = 0
            if idx == 0:
                if _h2_plain_string(p, n, &off, name, sizeof(name), &nlen) < 0:
                    return 0
            if _h2_plain_string(p, n, &off, out, cap, &vlen) < 0:
                return 0
            # pseudo-header fields come first (RFC 9113 8.3): a `host` field is read only without :authority
            if idx == 1 or idx == 38 or (idx == 0 and (_name_is(name, nlen, ":authority")
                                                       or _name_is(name, nlen, "host"))):
                return _h2_strip_port(out, vlen)
        return 0
    return 0

cdef inline uint32_t _h2_strip_port(const uint8_t *h, uint32_t n) noexcept nogil:
    cdef uint32_t i
    if n and h[0] == 91:
        return n
    for i in range(n):
        if h[i] == 58:
            return i
    return n
