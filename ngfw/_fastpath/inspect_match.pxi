# Candidate verification: a rule's content / pcre / isdataat chain over one buffer, with Suricata's
# position semantics (offset/depth absolute, distance/within after the previous match) and its
# backtracking (a later relative match that fails retries the earlier content further on).

cdef extern from "string.h" nogil:
    void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen)
    void *memmove(void *dst, const void *src, size_t n)

cdef extern from *:
    uint64_t __builtin_bswap64(uint64_t x) nogil
    int __builtin_ctzll(unsigned long long x) nogil

cdef enum:
    RECURSION_LIMIT = 3000    # Suricata's inspection-recursion-limit

cdef inline uint8_t _lc(uint8_t c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c

cdef int64_t find_bytes(const uint8_t *hay, uint32_t hlen, const uint8_t *pat, uint32_t plen,
                        bint nocase) noexcept nogil:
    """First position of `pat` in `hay`, -1 when absent."""
    cdef const uint8_t *hit
    cdef uint32_t i, j
    cdef uint8_t first
    if plen == 0:
        return 0
    if plen > hlen:
        return -1
    if not nocase:
        hit = <const uint8_t *>memmem(hay, hlen, pat, plen)
        return -1 if hit == NULL else hit - hay
    first = _lc(pat[0])
    for i in range(hlen - plen + 1):
        if _lc(hay[i]) != first:
            continue
        j = 1
        while j < plen and _lc(hay[i + j]) == _lc(pat[j]):
            j += 1
        if j == plen:
            return i
    return -1

cdef inline bint num_ok(const numchk_t *c, uint32_t n) noexcept nogil:
    if c.op == NC_NONE:
        return True
    if c.op == NC_EQ:
        return n == c.v
    if c.op == NC_NE:
        return n != c.v
    if c.op == NC_LT:
        return n < c.v
    if c.op == NC_LE:
        return n <= c.v
    if c.op == NC_GT:
        return n > c.v
    if c.op == NC_GE:
        return n >= c.v
    return c.v < n < c.hi

cdef bint read_number(const uint8_t *buf, uint32_t blen, int64_t pos, uint32_t nbytes, uint32_t base,
                      bint little, uint64_t mask, bint masked, uint64_t *out) noexcept nogil:
    """byte_test / byte_jump: the number at buf[pos:pos+nbytes] (binary, or digits in `base`), masked
    and shifted as Suricata does. False when it is not there or not a number."""
    cdef uint64_t v = 0
    cdef uint32_t i, digit
    cdef uint8_t c
    if pos < 0 or pos + nbytes > blen or nbytes == 0:
        return False
    if base == 0:
        for i in range(nbytes):
            if little:
                v |= (<uint64_t>buf[pos + i]) << (8 * i)
            else:
                v = (v << 8) | buf[pos + i]
    else:
        for i in range(nbytes):
            c = buf[pos + i]
            if 48 <= c <= 57:
                digit = c - 48
            elif 97 <= c <= 102:
                digit = c - 87
            elif 65 <= c <= 70:
                digit = c - 55
            else:
                if i == 0:
                    return False
                break                      # digits end early: the number is what came before
            if digit >= base:
                if i == 0:
                    return False
                break
            v = v * base + digit
    if masked:
        v &= mask
        if mask:
            while not (mask & 1):
                mask >>= 1
                v >>= 1
    out[0] = v
    return True

cdef bint match_items(insws_t *ws, const instables_t *T, const iitem_t *items, uint32_t i, uint32_t n,
                      const uint8_t *buf, uint32_t blen, uint32_t prev_end) noexcept nogil:
    """True when items[i:n] all hold in `buf`, the previous match having ended at `prev_end`."""
    cdef const iitem_t *it
    cdef int64_t start, stop, pos, found
    cdef uint32_t end
    cdef int rc
    cdef PCRE2_SIZE *ov
    cdef bint hit
    if i >= n:
        return True
    ws.recursion += 1
    if ws.recursion > RECURSION_LIMIT:
        return False
    it = &items[i]
    if it.kind == IK_BYTETEST or it.kind == IK_BYTEJUMP:
        return match_byte(ws, T, items, i, n, buf, blen, prev_end)
    if it.kind == IK_DATAAT:
        pos = (<int64_t>prev_end if it.flags & IF_RELATIVE else 0) + it.offset
        hit = pos < blen
        if hit == ((it.flags & IF_NEG) != 0):
            return False
        return match_items(ws, T, items, i + 1, n, buf, blen, prev_end)
    if it.kind == IK_PCRE:
        start = prev_end if it.flags & IF_RELATIVE else 0
        if start > blen:
            return (it.flags & IF_NEG) != 0 and match_items(ws, T, items, i + 1, n, buf, blen, prev_end)
        rc = pcre2_match(T.pcres[it.pat_off], buf + start, blen - start, 0, 0, ws.md, ws.mctx)
        if it.flags & IF_NEG:
            if rc >= 0:
                return False
            return match_items(ws, T, items, i + 1, n, buf, blen, prev_end)
        if rc < 0:
            return False
        ov = pcre2_get_ovector_pointer(ws.md)
        return match_items(ws, T, items, i + 1, n, buf, blen, <uint32_t>(start + ov[1]))
    # content: the window it may occupy
    if it.flags & IF_RELATIVE:
        start = prev_end
        if it.flags & IF_DISTANCE:
            start = start + it.distance
            if start < 0:
                start = 0
        stop = blen
        if it.flags & IF_WITHIN:
            stop = <int64_t>prev_end + (it.distance if it.flags & IF_DISTANCE else 0) + it.within
    else:
        start = it.offset if it.flags & IF_OFFSET else 0
        stop = blen
        if it.flags & IF_DEPTH:
            stop = start + it.depth
        if it.flags & IF_STARTS:
            start = 0
            stop = it.pat_len
    if stop > blen:
        stop = blen
    found = -1
    pos = start
    while pos <= stop - <int64_t>it.pat_len:
        found = find_bytes(buf + pos, <uint32_t>(stop - pos), T.patterns + it.pat_off, it.pat_len,
                           (it.flags & IF_NOCASE) != 0)
        if found < 0:
            break
        found += pos
        end = <uint32_t>(found + it.pat_len)
        if it.flags & IF_ENDS and end != blen:
            pos = found + 1
            found = -1
            continue
        if it.flags & IF_NEG:
            return False
        if match_items(ws, T, items, i + 1, n, buf, blen, end):
            return True
        # only a relative successor can do better with a later occurrence of this one
        if i + 1 >= n or not (items[i + 1].flags & IF_RELATIVE) or ws.recursion > RECURSION_LIMIT:
            return False
        pos = found + 1
        found = -1
    if it.flags & IF_NEG:
        return match_items(ws, T, items, i + 1, n, buf, blen, prev_end)
    return False

cdef bint match_byte(insws_t *ws, const instables_t *T, const iitem_t *items, uint32_t i, uint32_t n,
                     const uint8_t *buf, uint32_t blen, uint32_t prev_end) noexcept nogil:
    cdef const iitem_t *it = &items[i]
    cdef int64_t pos = (<int64_t>prev_end if it.flags & IF_RELATIVE else 0) + it.offset
    cdef uint64_t v, want, jump
    cdef uint32_t op = it.pat_len & 0xff
    cdef uint32_t base = (it.pat_len >> 8) & 0xff
    cdef int64_t cursor
    cdef bint ok
    if not read_number(buf, blen, pos, <uint32_t>it.depth, base, (it.flags & IF_LITTLE) != 0,
                       T.nums[it.pat_off + 1], (it.flags & IF_BITMASK) != 0, &v):
        return False
    if it.kind == IK_BYTETEST:
        want = T.nums[it.pat_off]
        if op == BT_LT:
            ok = v < want
        elif op == BT_GT:
            ok = v > want
        elif op == BT_EQ:
            ok = v == want
        elif op == BT_LE:
            ok = v <= want
        elif op == BT_GE:
            ok = v >= want
        elif op == BT_AND:
            ok = (v & want) != 0
        else:
            ok = (v ^ want) != 0
        if ok == ((it.flags & IF_NEG) != 0):
            return False
        return match_items(ws, T, items, i + 1, n, buf, blen, prev_end)
    # byte_jump: the cursor moves past the length just read (or from the buffer's start or end)
    jump = v * <uint64_t>(it.within if it.within else 1)
    if it.flags & IF_ALIGN:
        jump = (jump + 3) & ~(<uint64_t>3)
    if jump > 0xffffffffull:
        return False
    if it.flags & IF_FROM_BEGIN:
        cursor = <int64_t>jump
    elif it.flags & IF_FROM_END:
        cursor = <int64_t>blen + <int64_t>jump
    else:
        cursor = pos + <int64_t>it.depth + <int64_t>jump
    cursor += it.distance                      # post_offset
    if cursor < 0 or cursor > blen:
        return False
    return match_items(ws, T, items, i + 1, n, buf, blen, <uint32_t>cursor)

# ---------------------------------------------------------------- transforms

cdef inline bint _is_space(uint8_t c) noexcept nogil:
    return c == 32 or (9 <= c <= 13)

cdef uint32_t apply_transforms(insws_t *ws, const uint8_t *src, uint32_t n, const uint8_t *xf,
                               const uint8_t **out) noexcept nogil:
    """Apply a slot's transforms into the workspace; the transformed length (out: its bytes), or
    UINT32_MAX when the workspace is full (the buffer is then treated as absent)."""
    cdef uint32_t k, i, m
    cdef uint8_t *dst
    cdef bint in_space
    out[0] = src
    for k in range(XF_MAX):
        if xf[k] == XF_NONE:
            break
        if ws.norm_used + n + 1 > NORM_MAX:
            return UINT32_MAX
        dst = ws.norm + ws.norm_used
        m = 0
        if xf[k] == XF_DOTPREFIX:
            dst[0] = 46
            memcpy(dst + 1, src, n)
            m = n + 1
        elif xf[k] == XF_LOWER or xf[k] == XF_UPPER:
            for i in range(n):
                if xf[k] == XF_LOWER:
                    dst[i] = src[i] + 32 if 65 <= src[i] <= 90 else src[i]
                else:
                    dst[i] = src[i] - 32 if 97 <= src[i] <= 122 else src[i]
            m = n
        elif xf[k] == XF_STRIP_WS:
            for i in range(n):
                if not _is_space(src[i]):
                    dst[m] = src[i]
                    m += 1
        elif xf[k] == XF_COMPRESS_WS:
            in_space = False
            for i in range(n):
                if _is_space(src[i]):
                    if not in_space:
                        dst[m] = 32
                        m += 1
                    in_space = True
                else:
                    dst[m] = src[i]
                    m += 1
                    in_space = False
        ws.norm_used += m
        src = dst
        n = m
        out[0] = src
    return n
