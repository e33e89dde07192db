# App-ID parsers of binary protocols over TCP: Kerberos (also behind its TCP record length), SMB behind a
# NetBIOS session header, TDS (MS SQL Server), LDAP, SOCKS, MySQL's greeting, PostgreSQL's first message,
# RDP's TPKT, BGP and Telnet's option negotiation.

cdef enum:
    # PostgreSQL's first message: a request code where a StartupMessage has its protocol version
    PG_CANCEL_REQUEST = 80877102
    PG_SSL_REQUEST = 80877103
    PG_GSSENC_REQUEST = 80877104
    PG_PROTOCOL_3 = 0x00030000


cdef int parse_kerberos(appctx_t *c) noexcept nogil:
    """Kerberos v5 KDC and AP messages: [APPLICATION n] SEQUENCE with pvno 5 and the matching msg-type.
    Over TCP behind a 4-byte record length."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, h, off = 0, rec
    cdef uint8_t tag, mt
    if c.l4proto == P_TCP:
        if n < 4:
            return PARSE_NEED_MORE if n > 0 and p[0] == 0 and _stream_can_grow(c) else PARSE_NO
        rec = ngfw_be32(p)
        if rec < 20 or rec > 65535:
            return PARSE_NO
        off = 4
        if n < 5:
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    if off >= n:
        return PARSE_NO
    tag = p[off]
    if not (tag == 0x6A or tag == 0x6B or tag == 0x6C or tag == 0x6D or tag == 0x6E or tag == 0x6F or tag == 0x7E):
        return PARSE_NO
    if n < off + 24:
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    if _ber_len(p, n, off + 1, &l, &h) != 0:
        return PARSE_NO
    if c.l4proto == P_TCP and 1 + h + l != rec:
        return PARSE_NO
    off += 1 + h
    if p[off] != 0x30 or _ber_len(p, n, off + 1, &l, &h) != 0:
        return PARSE_NO
    off += 1 + h
    if off + 10 > n:
        return PARSE_NO
    mt = tag - 0x60
    if tag == 0x6A or tag == 0x6C:
        # KDC-REQ: [1] pvno, [2] msg-type
        if memcmp(p + off, b"\xa1\x03\x02\x01\x05\xa2\x03\x02\x01", 9) != 0 or p[off + 9] != mt:
            return PARSE_NO
    else:
        if memcmp(p + off, b"\xa0\x03\x02\x01\x05\xa1\x03\x02\x01", 9) != 0 or p[off + 9] != mt:
            return PARSE_NO
    return APP_KERBEROS


cdef int parse_smb(appctx_t *c) noexcept nogil:
    """SMB behind a NetBIOS session header: SMB2/3 (0xFE 'SMB', 0xFD transform) is smb; SMB1 (0xFF) is
    reported as netbios, as nDPI does."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len
    if n < 8:
        return PARSE_NEED_MORE if n > 0 and p[0] == 0 and _stream_can_grow(c) else PARSE_NO
    if p[0] != 0 or (p[1] & 0xFE) != 0 or _be24(p + 1) < 32:
        return PARSE_NO
    if not _starts(p + 5, 3, "SMB"):
        return PARSE_NO
    if p[4] == 0xFE or p[4] == 0xFD:
        return APP_SMB
    if p[4] == 0xFF:
        return APP_NETBIOS    # nDPI compatibility: nDPI names SMB1 by its NetBIOS session
    return PARSE_NO


cdef int parse_mssql(appctx_t *c) noexcept nogil:
    """TDS (MS SQL Server): packet type, status, length, SPID, packet id, window 0; a PRELOGIN carries an
    option table ending in 0xFF with offsets inside the packet."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, off
    cdef uint8_t t
    if n < 8:
        return PARSE_NEED_MORE if n > 0 and p[0] >= 1 and p[0] <= 0x12 and _stream_can_grow(c) else PARSE_NO
    t = p[0]
    if not (t == 0x01 or t == 0x02 or t == 0x03 or t == 0x04 or t == 0x06 or t == 0x07 or t == 0x0E
            or t == 0x0F or t == 0x10 or t == 0x11 or t == 0x12):
        return PARSE_NO
    if (p[1] & 0xE0) != 0 or p[7] != 0:
        return PARSE_NO
    l = ngfw_be16(p + 2)
    if l < 9 or l > 32768:
        return PARSE_NO
    if (p[1] & 1) == 1:
        # the last packet of a message: exactly this much, or another TDS packet follows
        if l > n:
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
        if l < n and p[l] != t:
            return PARSE_NO
    elif l < 512:
        return PARSE_NO       # a message continued in another packet fills the negotiated packet size
    if t == 0x12:
        off = 8
        while off < n and off < l and p[off] != 0xFF:
            if off + 5 > n or ngfw_be16(p + off + 1) + ngfw_be16(p + off + 3) > l - 8:
                return PARSE_NO
            off += 5
        if off >= n or p[off] != 0xFF:
            return PARSE_NO
        return APP_MSSQL
    if t == 0x01 or t == 0x03 or t == 0x0E:
        # SQL batch / RPC / transaction manager: ALL_HEADERS total length (LE) then header length (LE)
        if n < 16 or p[9] != 0 or p[10] != 0 or p[11] != 0 or p[8] < 4 or p[8] > l - 8:
            # TDS 7.1 and earlier have no ALL_HEADERS: UCS-2 text or an RPC name length
            if t == 0x01 and n >= 12 and p[9] == 0 and p[11] == 0 and b' ' <= p[8] <= b'~':
                return APP_MSSQL
            if t == 0x03 and n >= 12 and (p[8] > 0 or p[9] == 0xFF) and p[11] == 0:
                return APP_MSSQL
            return PARSE_NO
        return APP_MSSQL
    if t == 0x04:
        # a response starts with a token (done, env change, info, login ack, error, col metadata ...)
        if n >= 9 and (p[8] == 0xFD or p[8] == 0xE3 or p[8] == 0xAB or p[8] == 0xAD or p[8] == 0xAA
                       or p[8] == 0x81 or p[8] == 0x79 or p[8] == 0xFE or p[8] == 0xFF):
            return APP_MSSQL
        return PARSE_NO
    # LOGIN7: p[12] is read, so 13 bytes (n >= 12 read one past a 12-byte stream: fuzzing found it)
    if t == 0x10 and n >= 13 and p[11] == 0 and p[12] >= 0x70 and p[12] <= 0x74:
        return APP_MSSQL
    return PARSE_NO


cdef int parse_ldap(appctx_t *c) noexcept nogil:
    """LDAP: SEQUENCE { messageID INTEGER, protocolOp [APPLICATION n] ... }."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, h, off
    cdef uint8_t op
    if n < 7 or p[0] != 0x30:
        return PARSE_NO
    if _ber_len(p, n, 1, &l, &h) != 0 or l < 5:
        return PARSE_NO
    off = 1 + h
    if p[off] != 0x02 or p[off + 1] < 1 or p[off + 1] > 4:
        return PARSE_NO
    off += 2 + p[off + 1]
    if off >= n:
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    op = p[off]
    if not ((op >= 0x60 and op <= 0x79 and op != 0x62 and op != 0x6A and op != 0x69 and op != 0x6E)
            or op == 0x42 or op == 0x4A or op == 0x50):
        return PARSE_NO
    if op == 0x42 or op == 0x4A or op == 0x50:
        return APP_LDAP
    if off + 1 >= n or _ber_len(p, n, off + 1, &l, &h) != 0:
        return PARSE_NO
    return APP_LDAP


cdef int parse_socks(appctx_t *c) noexcept nogil:
    """SOCKS 4/4a CONNECT/BIND requests and the SOCKS 5 method offer."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, i
    if n < 3 or c.to_server == 0:
        return PARSE_NO
    if p[0] == 5:
        if p[1] < 1 or p[1] > 10 or n != 2 + <uint32_t>p[1]:
            return PARSE_NO
        for i in range(2, n):
            if p[i] > 9 and p[i] < 0x80 or p[i] == 0xFF:
                return PARSE_NO
        return APP_SOCKS
    if p[0] == 4 and (p[1] == 1 or p[1] == 2) and n >= 9 and p[n - 1] == 0:
        for i in range(8, n - 1):
            if p[i] != 0 and (p[i] < b' ' or p[i] > b'~'):
                return PARSE_NO
        return APP_SOCKS
    return PARSE_NO


cdef int parse_mysql(appctx_t *c) noexcept nogil:
    """MySQL/MariaDB server greeting: 3-byte length, sequence 0, protocol 10, NUL-terminated version."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, i
    if c.to_server or n < 12:
        return PARSE_NO
    l = p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16)
    if p[3] != 0 or p[4] != 10 or l < 30 or l > 512:
        return PARSE_NO
    if p[5] < b'0' or p[5] > b'9':
        return PARSE_NO
    i = 5
    while i < n and i < 4 + l and p[i] != 0:
        if p[i] < b' ' or p[i] > b'~':
            return PARSE_NO
        i += 1
    if i >= n or p[i] != 0:
        return PARSE_NO
    return APP_MYSQL


cdef int parse_postgresql(appctx_t *c) noexcept nogil:
    """PostgreSQL: SSLRequest / GSSENCRequest / CancelRequest codes, or a v3 StartupMessage."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, code
    if c.to_server == 0 or n < 8:
        return PARSE_NO
    l = ngfw_be32(p)
    code = ngfw_be32(p + 4)
    if l == 8 and (code == PG_SSL_REQUEST or code == PG_GSSENC_REQUEST) and n == 8:
        return APP_POSTGRESQL
    if l == 16 and code == PG_CANCEL_REQUEST:
        return APP_POSTGRESQL
    if code == PG_PROTOCOL_3 and l >= 9 and l <= 10000 and l == n and p[n - 1] == 0:
        return APP_POSTGRESQL
    return PARSE_NO


cdef int parse_tpkt(appctx_t *c) noexcept nogil:
    """RDP: a TPKT header around an X.224 connection request (cookie or negotiation request)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l
    if n < 11 or p[0] != 3 or p[1] != 0:
        return PARSE_NO
    l = ngfw_be16(p + 2)
    if l < 11 or l != n or p[4] + 5 != l:
        return PARSE_NO
    if p[5] == 0xE0 or p[5] == 0xD0:
        return APP_RDP
    return PARSE_NO


cdef int parse_bgp(appctx_t *c) noexcept nogil:
    """BGP: 16 bytes of 0xFF marker, length 19..4096, type 1-5."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, i, l
    if n < 19:
        return PARSE_NO
    for i in range(16):
        if p[i] != 0xFF:
            return PARSE_NO
    l = ngfw_be16(p + 16)
    if l < 19 or l > 4096 or p[18] < 1 or p[18] > 5:
        return PARSE_NO
    return APP_BGP


cdef int parse_telnet(appctx_t *c) noexcept nogil:
    """Telnet option negotiation: a run of IAC {WILL, WONT, DO, DONT} option (and subnegotiation)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, i = 0, cmds = 0
    if n < 3 or p[0] != 0xFF:
        return PARSE_NO
    while i + 2 < n and p[i] == 0xFF:
        if p[i + 1] >= 0xFB and p[i + 1] <= 0xFE:
            i += 3
            cmds += 1
        elif p[i + 1] == 0xFA:
            i += 2
            while i + 1 < n and not (p[i] == 0xFF and p[i + 1] == 0xF0):
                i += 1
            i += 2
            cmds += 1
        else:
            return PARSE_NO
    return APP_TELNET if cmds >= 1 and i >= n else PARSE_NO
