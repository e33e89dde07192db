# HTTP response bodies as `file.data` sees them, as Suricata's does: the chunked framing removed and gzip or
# deflate content inflated, packet by packet as the body travels, up to BODY_DECODE_MAX decoded bytes per body
# (Suricata's default response-body-limit). zlib inflates into memory of a small shared pool (only responses
# being inflated hold a slot); a body that inflates past BODY_BOMB_RATIO to the limit is counted as a bomb, and
# nothing past the limit is decoded.

cdef void *_bodydec_alloc(void *opaque, unsigned int items, unsigned int size) noexcept nogil:
    # zlib's allocations come from the slot's own memory: no malloc per response
    cdef bodydec_t *d = <bodydec_t *>opaque
    cdef size_t n = (<size_t>items * size + 15) & ~(<size_t>15)
    cdef void *out
    if d.mem_used + n > BODYDEC_MEM:
        return NULL
    out = d.mem + d.mem_used
    d.mem_used += <uint32_t>n
    return out

cdef void _bodydec_free(void *opaque, void *address) noexcept nogil:
    pass   # the slot's memory is reused whole when the slot is given back

cdef int bodydec_init(bodydec_pool_t *p) noexcept nogil:
    cdef int i
    p.slots = <bodydec_t *>malloc(<size_t>BODYDEC_SLOTS * sizeof(bodydec_t))
    if p.slots == NULL:
        return -1
    for i in range(BODYDEC_SLOTS):
        p.next_free[i] = i + 1 if i + 1 < BODYDEC_SLOTS else -1
    p.free_head = 0
    p.exhausted = 0
    return 0

cdef void bodydec_give(bodydec_pool_t *p, inspslot_t *s) noexcept nogil:
    cdef int32_t i
    if s.resp_dec == 0 or p.slots == NULL:
        s.resp_dec = 0
        return
    i = s.resp_dec - 1
    p.next_free[i] = p.free_head
    p.free_head = i
    s.resp_dec = 0

cdef bodydec_t *_bodydec_take(bodydec_pool_t *p, inspslot_t *s, uint8_t first) noexcept nogil:
    """A decoder for this response, set up for its coding; `first`: the first coded byte (a deflate body is
    zlib-wrapped when it starts with a zlib header, raw otherwise, as browsers accept both)."""
    cdef bodydec_t *d
    cdef int32_t i = p.free_head
    cdef int bits
    if i < 0:
        p.exhausted += 1
        return NULL
    d = &p.slots[i]
    memset(&d.z, 0, sizeof(z_stream))
    d.mem_used = 0
    d.z.zalloc = _bodydec_alloc
    d.z.zfree = _bodydec_free
    d.z.opaque = d
    if s.resp_enc == ENC_GZIP:
        bits = 15 + 16
    elif (first & 0x0F) == 8 and (first >> 4) <= 7:
        bits = 15
    else:
        bits = -15
    if inflateInit2(&d.z, bits) != Z_OK:
        return NULL
    p.free_head = p.next_free[i]
    s.resp_dec = <uint8_t>(i + 1)
    return d

cdef uint32_t _dechunk(inspslot_t *s, const uint8_t *p, uint32_t n, uint8_t *out) noexcept nogil:
    """The chunk data in p[0:n] (the framing removed), the framing state carried to the next packet. Malformed
    framing ends the body (CHK_DONE): what follows is not read as its data."""
    cdef uint32_t i = 0, o = 0, take
    cdef int h
    while i < n and s.resp_chunk != CHK_DONE:
        if s.resp_chunk == CHK_SIZE:
            h = _hexval(p[i])
            if h >= 0:
                if s.resp_chunk_left > 0x07FFFFFF:
                    s.resp_chunk = CHK_DONE
                    break
                s.resp_chunk_left = s.resp_chunk_left * 16 + <uint32_t>h
            elif p[i] == 10:
                s.resp_chunk = CHK_DATA if s.resp_chunk_left else CHK_TRAILER
            elif p[i] == 59 or p[i] == 32 or p[i] == 9 or p[i] == 13:
                s.resp_chunk = CHK_EXT
            else:
                s.resp_chunk = CHK_DONE
                break
            i += 1
        elif s.resp_chunk == CHK_EXT:
            if p[i] == 10:
                s.resp_chunk = CHK_DATA if s.resp_chunk_left else CHK_TRAILER
            i += 1
        elif s.resp_chunk == CHK_DATA:
            take = n - i if n - i < s.resp_chunk_left else s.resp_chunk_left
            memcpy(out + o, p + i, take)
            o += take
            i += take
            s.resp_chunk_left -= take
            if s.resp_chunk_left == 0:
                s.resp_chunk = CHK_DATA_END
        elif s.resp_chunk == CHK_DATA_END:
            if p[i] == 10:
                s.resp_chunk = CHK_SIZE
            elif p[i] != 13:
                s.resp_chunk = CHK_DONE
                break
            i += 1
        else:   # CHK_TRAILER: header lines until an empty one
            if p[i] == 10:
                if s.resp_chunk_left == 0:
                    s.resp_chunk = CHK_DONE
                s.resp_chunk_left = 0
            elif p[i] != 13:
                s.resp_chunk_left = 1
            i += 1
    return o

cdef bint response_body(insws_t *ws, inspslot_t *s, const uint8_t *p, uint32_t n) noexcept nogil:
    """file.data for the body bytes p[0:n] of a chunked or encoded response; False when the body is neither
    (the caller shows the bytes as they are)."""
    cdef const uint8_t *src = p
    cdef uint32_t slen = n, room, olen = 0
    cdef bodydec_t *d
    cdef int r
    if s.resp_chunk == CHK_NONE and s.resp_enc == ENC_NONE:
        return False
    if s.resp_chunk != CHK_NONE:
        if s.resp_chunk == CHK_DONE:
            slen = 0
        else:
            slen = _dechunk(s, p, n if n <= sizeof(ws.body_in) else sizeof(ws.body_in), ws.body_in)
            src = ws.body_in
        if s.resp_chunk == CHK_DONE:
            s.http_body[1] = 0
    room = BODY_DECODE_MAX - s.resp_decoded if s.resp_decoded < BODY_DECODE_MAX else 0
    if s.resp_enc == ENC_NONE:
        olen = slen if slen < room else room
        if olen:
            memcpy(ws.body_out, src, olen)
    elif s.resp_enc != ENC_STOPPED and slen:
        d = &ws.bodydec.slots[s.resp_dec - 1] if s.resp_dec else _bodydec_take(&ws.bodydec, s, src[0])
        if d == NULL:
            s.resp_enc = ENC_STOPPED
        else:
            d.z.next_in = src
            d.z.avail_in = slen
            d.z.next_out = ws.body_out
            d.z.avail_out = room
            r = inflate(&d.z, Z_NO_FLUSH)
            olen = room - d.z.avail_out
            s.resp_coded += slen - d.z.avail_in
            if r == Z_STREAM_END or (r != Z_OK and r != Z_BUF_ERROR):
                s.resp_enc = ENC_STOPPED       # the end, or not what it said it was
            elif d.z.avail_out == 0 and d.z.avail_in:
                s.resp_enc = ENC_STOPPED       # the limit: the rest passes uninspected
    s.resp_decoded += olen
    if s.resp_decoded >= BODY_DECODE_MAX and room:
        ws.body_limit += 1
        if s.resp_enc != ENC_NONE and <uint64_t>s.resp_coded * BODY_BOMB_RATIO < s.resp_decoded:
            ws.bombs += 1
        if s.resp_enc != ENC_NONE:
            s.resp_enc = ENC_STOPPED
    if s.resp_enc == ENC_STOPPED:
        bodydec_give(&ws.bodydec, s)
    if olen:
        file_data_set(ws, s, ws.body_out, olen)
    return True

cdef void file_data_set(insws_t *ws, inspslot_t *s, const uint8_t *p, uint32_t n) noexcept nogil:
    """This packet's decoded body bytes as file.data. With file.data rules loaded the buffer is a window: the
    body's last FD_TAIL bytes before them, then them, so a match may span packets (each rule alerts once per
    response, inspect_packet); `fd_from_start` says whether it begins at the body's first byte (rules anchored
    there are evaluated only then). The body is never scanned again from its start."""
    cdef uint32_t keep, total
    if not ws.fd_window:
        bs_set(&ws.bs, B_FILE_DATA, p, n)
        ws.fd_from_start = True
        return
    keep = s.fd_tail_len
    if n > BODY_DECODE_MAX:
        n = BODY_DECODE_MAX
    memcpy(ws.fd_win, s.fd_tail, keep)
    memcpy(ws.fd_win + keep, p, n)
    total = keep + n
    ws.fd_from_start = s.fd_seen == keep
    s.fd_seen += n
    bs_set(&ws.bs, B_FILE_DATA, ws.fd_win, total)
    # the window's last bytes are the next packet's tail
    if total > FD_TAIL:
        memcpy(s.fd_tail, ws.fd_win + total - FD_TAIL, FD_TAIL)
        s.fd_tail_len = FD_TAIL
    else:
        memcpy(s.fd_tail, ws.fd_win, total)
        s.fd_tail_len = <uint16_t>total

cdef void response_body_start(insws_t *ws, inspslot_t *s, bint chunked, uint8_t enc) noexcept nogil:
    # a new response head: its body's framing and coding, the previous body's decoder given back
    bodydec_give(&ws.bodydec, s)
    s.resp_chunk = CHK_SIZE if chunked else CHK_NONE
    s.resp_enc = enc
    s.resp_chunk_left = 0
    s.resp_decoded = 0
    s.resp_coded = 0
    s.fd_seen = 0               # file.data starts again: a new body, its rules may alert again
    s.fd_tail_len = 0
    s.fd_n_fired = 0
