# JA3 / JA3S TLS fingerprints for inspection (ja3.hash, ja3.string, ja3s.hash, ja3s.string): the
# ClientHello's version, cipher suites, extension types, supported groups and EC point formats (GREASE
# values left out), joined as "771,4865-4866,0-23-65281,29-23,0", and its MD5 in lower-case hex; JA3S
# the same of a ServerHello (version, the chosen cipher, extension types). The hello must be whole in
# one segment (it nearly always is).

cdef extern from "openssl/evp.h" nogil:
    const EVP_MD *EVP_md5()
    int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size, const EVP_MD *t, ENGINE *impl)

cdef inline bint _grease(uint32_t v) noexcept nogil:
    return (v & 0x0f0f) == 0x0a0a and (v >> 8) == (v & 0xff)

cdef uint32_t _put_uint(uint8_t *out, uint32_t m, uint32_t v) noexcept nogil:
    cdef uint8_t digits[10]
    cdef int k = 0
    while True:
        digits[k] = 48 + v % 10
        k += 1
        v //= 10
        if v == 0:
            break
    while k > 0:
        k -= 1
        out[m] = digits[k]
        m += 1
    return m

cdef uint32_t _put_list(uint8_t *out, uint32_t m, const uint8_t *p, uint32_t n, uint32_t width) noexcept nogil:
    """Dash-separated decimal values of a list of `width`-byte big-endian numbers (GREASE skipped)."""
    cdef uint32_t i = 0, v
    cdef bint first = True
    while i + width <= n:
        v = ngfw_be16(p + i) if width == 2 else p[i]
        i += width
        if width == 2 and _grease(v):
            continue
        if not first:
            out[m] = 45
            m += 1
        m = _put_uint(out, m, v)
        first = False
    return m

cdef void _ja3_set(insws_t *ws, int string_buffer, int hash_buffer, uint8_t *text, uint32_t m) noexcept nogil:
    cdef unsigned char digest[16]
    cdef unsigned int dlen = 0
    cdef uint8_t *hexed
    cdef const char *hexdigits = b"0123456789abcdef"
    cdef int i
    bs_set(&ws.bs, string_buffer, text, m)
    if EVP_Digest(text, m, digest, &dlen, EVP_md5(), NULL) != 1 or dlen != 16:
        return
    hexed = norm_take(ws, 32)
    if hexed == NULL:
        return
    for i in range(16):
        hexed[2 * i] = hexdigits[digest[i] >> 4]
        hexed[2 * i + 1] = hexdigits[digest[i] & 15]
    bs_set(&ws.bs, hash_buffer, hexed, 32)

cdef bint ja3_buffers(insws_t *ws, const uint8_t *p, uint32_t n) noexcept nogil:
    """A whole ClientHello (type 1) or ServerHello (type 2) at the start of `p`, in one TLS record or cut
    into several (joined first)."""
    cdef uint32_t hs_len, off, end, l, ext_end, et, el, groups_off = 0, groups_n = 0, formats_off = 0, formats_n = 0
    cdef uint32_t ciphers_off, ciphers_n, exts_start, cipher = 0
    cdef uint8_t *text
    cdef uint32_t m = 0
    cdef bint client
    cdef uint8_t joined[5 + STREAM_MAX]
    if n < 9 + 38 or p[0] != 0x16 or p[1] != 3 or (p[5] != 1 and p[5] != 2):
        return False
    client = p[5] == 1
    hs_len = (<uint32_t>p[6] << 16) | (<uint32_t>p[7] << 8) | p[8]
    if ngfw_be16(p + 3) < hs_len + 4:
        # the hello goes on in the next records: read from its handshake bytes joined behind this header
        l = _tls_join_handshake(p, n, hs_len + 4, joined + 5)
        if l < hs_len + 4:
            return False
        memcpy(joined, p, 5)
        p = joined
        n = 5 + l
    if 9 + hs_len > n:
        return False
    end = 9 + hs_len
    off = 9 + 2 + 32
    if off + 1 > end:
        return False
    off += 1 + p[off]                                      # session id
    if client:
        if off + 2 > end:
            return False
        ciphers_n = ngfw_be16(p + off)
        ciphers_off = off + 2
        off = ciphers_off + ciphers_n
        if off + 1 > end:
            return False
        off += 1 + p[off]                                  # compression methods
    else:
        if off + 3 > end:
            return False
        cipher = ngfw_be16(p + off)
        ciphers_off = 0
        ciphers_n = 0
        off += 3
    if off > end:
        return False
    text = norm_take(ws, 2048)
    if text == NULL:
        return False
    m = _put_uint(text, 0, ngfw_be16(p + 9))
    text[m] = 44
    m += 1
    if client:
        m = _put_list(text, m, p + ciphers_off, min(ciphers_n, 1024), 2)
    else:
        m = _put_uint(text, m, cipher)
    text[m] = 44
    m += 1
    exts_start = m
    if off + 2 <= end:
        ext_end = off + 2 + ngfw_be16(p + off)
        if ext_end > end:
            ext_end = end
        off += 2
        while off + 4 <= ext_end and m < 1900:
            et = ngfw_be16(p + off)
            el = ngfw_be16(p + off + 2)
            off += 4
            if off + el > ext_end:
                break
            if not _grease(et):
                if m > exts_start:
                    text[m] = 45
                    m += 1
                m = _put_uint(text, m, et)
            if et == 10 and el >= 2:
                groups_off = off + 2
                groups_n = min(ngfw_be16(p + off), el - 2)
            elif et == 11 and el >= 1:
                formats_off = off + 1
                formats_n = min(<uint32_t>p[off], el - 1)
            off += el
    if client:
        text[m] = 44
        m += 1
        if groups_n:
            m = _put_list(text, m, p + groups_off, min(groups_n, 256), 2)
        text[m] = 44
        m += 1
        if formats_n:
            m = _put_list(text, m, p + formats_off, min(formats_n, 32), 1)
        _ja3_set(ws, B_JA3_STRING, B_JA3_HASH, text, m)
    else:
        _ja3_set(ws, B_JA3S_STRING, B_JA3S_HASH, text, m)
    return True
