# What every App-ID parser family uses: text and integer helpers, the tentative answer, the scratch owners,
# and the type of a row of the parser registry (app_registry.pxi, generated from app_registry.py).
#
# Included by app_parsers.pxi after defs.pxi and appid_defs.pxi, before the families. Bytes are compared with
# character literals (p[0] == b'S'); arithmetic needs Cython's C char literal (ch - c'A'), and bytes outside
# ASCII stay hex (b'\xff' would be a signed char).

# A parser, as the registry holds it.
ctypedef int (*app_parse_fn)(appctx_t *c) noexcept nogil

# One row of the dispatcher's table: one parser on one transport, and what it is asked about.
ctypedef struct app_registration_t:
    app_parse_fn parse
    uint64_t first_bytes[4]   # bit b (of word b // 64): a payload whose first byte is b is shown to the parser
    uint16_t server_port      # shown only when the flow's server port is this (0: any)
    uint16_t more_port        # its PARSE_NEED_MORE keeps the flow waiting only when either port is this (0: any)
    uint8_t more              # its PARSE_NEED_MORE keeps the flow waiting for more bytes (0: the answer is ignored)


cdef void app_register(app_registration_t *row, app_parse_fn parse, uint16_t server_port, uint8_t more,
                       uint16_t more_port, uint64_t first0, uint64_t first1, uint64_t first2,
                       uint64_t first3) noexcept:
    row.parse = parse
    row.first_bytes[0] = first0
    row.first_bytes[1] = first1
    row.first_bytes[2] = first2
    row.first_bytes[3] = first3
    row.server_port = server_port
    row.more = more
    row.more_port = more_port


# Which parser keeps state in a flow's scratch (scratch[0]): the first to claim it keeps it for the flow, so
# every owner has its own mark.
cdef extern from *:
    """
    enum { NGFW_SCRATCH_OPENVPN = 'O', NGFW_SCRATCH_QUIC = 'Q', NGFW_SCRATCH_RTP = 'R', NGFW_SCRATCH_WEBSOCKET = 'W' };
    """
    enum:
        NGFW_SCRATCH_OPENVPN
        NGFW_SCRATCH_QUIC
        NGFW_SCRATCH_RTP
        NGFW_SCRATCH_WEBSOCKET


cdef inline uint8_t _lower(uint8_t ch) noexcept nogil:
    if b'A' <= ch <= b'Z':
        return ch - c'A' + c'a'
    return ch


cdef inline uint32_t _be24(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 16) | (<uint32_t>p[1] << 8) | p[2]


cdef void _copy_text(char *dst, uint32_t cap, uint8_t *dst_len, const uint8_t *p, uint32_t n,
                     bint lower) noexcept nogil:
    # ASCII, truncated to the field's capacity; nDPI compatibility: non-printables shown as '?', as nDPI
    # reports them
    cdef uint32_t i
    cdef uint8_t ch
    if n > cap:
        n = cap
    for i in range(n):
        ch = p[i]
        if ch < b' ' or ch > b'~':
            ch = b'?'
        elif lower:
            ch = _lower(ch)
        dst[i] = <char>ch
    dst_len[0] = <uint8_t>n


cdef inline void _set_host(appmeta_t *m, const uint8_t *p, uint32_t n) noexcept nogil:
    while n > 0 and p[n - 1] == b'.':
        n -= 1
    _copy_text(m.host, HOST_MAX, &m.host_len, p, n, True)


cdef inline bint _ieq(const uint8_t *p, uint32_t n, const char *lit) noexcept nogil:
    # case-insensitive prefix compare of p[0:len(lit)] with a lower-case literal
    cdef uint32_t i = 0
    while lit[i] != 0:
        if i >= n or _lower(p[i]) != <uint8_t>lit[i]:
            return False
        i += 1
    return True


cdef inline bint _starts(const uint8_t *p, uint32_t n, const char *lit) noexcept nogil:
    cdef uint32_t i = 0
    while lit[i] != 0:
        if i >= n or p[i] != <uint8_t>lit[i]:
            return False
        i += 1
    return True


cdef inline bint _prefix_of(const uint8_t *p, uint32_t n, const char *lit) noexcept nogil:
    # p[0:n] (n > 0) is the beginning of lit, or lit is the beginning of p[0:n]
    cdef uint32_t i = 0
    if n == 0:
        return False
    while lit[i] != 0 and i < n:
        if p[i] != <uint8_t>lit[i]:
            return False
        i += 1
    return True


cdef inline bint _either_port(appctx_t *c, uint16_t port) noexcept nogil:
    return c.client_port == port or c.server_port == port


cdef inline bint _stream_can_grow(appctx_t *c) noexcept nogil:
    return c.l4proto == P_TCP and c.stream_len < STREAM_MAX


cdef enum:
    SCRATCH_TENTATIVE = SCRATCH_MAX - 1   # scratch byte: the app a parser is already sure of while asking for more


cdef inline int _tentative(appctx_t *c, int app) noexcept nogil:
    # "this is `app`, but more bytes would tell me more (SNI, Host)": remember it, ask for more
    c.scratch[SCRATCH_TENTATIVE] = <uint8_t>app
    return PARSE_NEED_MORE


cdef int appid_tentative(appctx_t *c) noexcept nogil:
    """The app a parser recognised while it still asked for more bytes (a TLS or QUIC ClientHello whose
    rest never came), or PARSE_NO. For the caller that stops feeding a flow still at PARSE_NEED_MORE."""
    return c.scratch[SCRATCH_TENTATIVE]


cdef inline bint _dns_char_ok(uint8_t c) noexcept nogil:
    # a character of a host name label as nDPI reports it (letters, digits, '-', '_')
    return (b'0' <= c <= b'9') or (b'A' <= c <= b'Z') or (b'a' <= c <= b'z') or c == b'-' or c == b'_'


cdef int _ber_len(const uint8_t *p, uint32_t n, uint32_t off, uint32_t *len_out, uint32_t *hdr) noexcept nogil:
    # BER definite length at p[off]; -1 if malformed or truncated
    cdef uint32_t k, i, v = 0
    if off >= n:
        return -1
    if p[off] < 0x80:
        len_out[0] = p[off]
        hdr[0] = 1
        return 0
    k = p[off] & 0x7F
    if k == 0 or k > 3 or off + 1 + k > n:
        return -1
    for i in range(k):
        v = (v << 8) | p[off + 1 + i]
    len_out[0] = v
    hdr[0] = 1 + k
    return 0


cdef inline uint32_t _le32(const uint8_t *p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)
