# App-ID protocol parsers: recognise a flow's application from the structure of its first bytes.
#
# Included after defs.pxi and appid_defs.pxi. Every parser is a pure function of (payload, stream,
# scratch): no allocation except OpenSSL's cipher context for QUIC Initial decryption, every read
# bounds-checked against the length it was given. Ports only break ties between protocols that share a
# wire format (DNS / mDNS / LLMNR) or choose what to try first; bytes always decide.

cdef extern from "openssl/evp.h" nogil:
    ctypedef struct EVP_CIPHER_CTX:
        pass
    ctypedef struct EVP_CIPHER:
        pass
    ctypedef struct EVP_MD:
        pass
    ctypedef struct ENGINE:
        pass
    EVP_CIPHER_CTX *EVP_CIPHER_CTX_new()
    void EVP_CIPHER_CTX_free(EVP_CIPHER_CTX *ctx)
    int EVP_CIPHER_CTX_set_padding(EVP_CIPHER_CTX *ctx, int pad)
    int EVP_CIPHER_CTX_ctrl(EVP_CIPHER_CTX *ctx, int type, int arg, void *ptr)
    const EVP_CIPHER *EVP_aes_128_ecb()
    const EVP_CIPHER *EVP_aes_128_gcm()
    const EVP_MD *EVP_sha256()
    int EVP_EncryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *t, ENGINE *e, const unsigned char *key, const unsigned char *iv)
    int EVP_EncryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *inp, int inl)
    int EVP_DecryptInit_ex(EVP_CIPHER_CTX *ctx, const EVP_CIPHER *t, ENGINE *e, const unsigned char *key, const unsigned char *iv)
    int EVP_DecryptUpdate(EVP_CIPHER_CTX *ctx, unsigned char *out, int *outl, const unsigned char *inp, int inl)
    int EVP_DecryptFinal_ex(EVP_CIPHER_CTX *ctx, unsigned char *outm, int *outl)
    int EVP_CTRL_GCM_SET_TAG

cdef extern from "openssl/hmac.h" nogil:
    unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
                        unsigned char *md, unsigned int *md_len)


# The canonical application names the built-in parsers return; index = APP_* value, 0 = none.
BUILTIN_APPS = (
    "", "http", "tls", "dns", "mdns", "llmnr", "netbios", "quic", "ssh", "ssdp",
    "rtsp", "sip", "http2", "smb", "kerberos", "dhcp", "dhcpv6", "stun", "ntp", "snmp",
    "radius", "dtls", "rtp", "rtcp", "ftp", "smtp", "pop3", "imap", "mssql", "openvpn",
    "tftp", "ldap", "socks", "mysql", "postgresql", "vnc", "rdp", "bgp", "telnet", "nntp",
)

cdef enum:
    APP_HTTP = 1
    APP_TLS = 2
    APP_DNS = 3
    APP_MDNS = 4
    APP_LLMNR = 5
    APP_NETBIOS = 6
    APP_QUIC = 7
    APP_SSH = 8
    APP_SSDP = 9
    APP_RTSP = 10
    APP_SIP = 11
    APP_HTTP2 = 12
    APP_SMB = 13
    APP_KERBEROS = 14
    APP_DHCP = 15
    APP_DHCPV6 = 16
    APP_STUN = 17
    APP_NTP = 18
    APP_SNMP = 19
    APP_RADIUS = 20
    APP_DTLS = 21
    APP_RTP = 22
    APP_RTCP = 23
    APP_FTP = 24
    APP_SMTP = 25
    APP_POP3 = 26
    APP_IMAP = 27
    APP_MSSQL = 28
    APP_OPENVPN = 29
    APP_TFTP = 30
    APP_LDAP = 31
    APP_SOCKS = 32
    APP_MYSQL = 33
    APP_POSTGRESQL = 34
    APP_VNC = 35
    APP_RDP = 36
    APP_BGP = 37
    APP_TELNET = 38
    APP_NNTP = 39


# ---------------------------------------------------------------------------------------------------
# small helpers

cdef inline uint8_t _lower(uint8_t ch) noexcept nogil:
    if 65 <= ch <= 90:
        return ch + 32
    return ch


cdef inline uint32_t _be24(const uint8_t *p) noexcept nogil:
    return (<uint32_t>p[0] << 16) | (<uint32_t>p[1] << 8) | p[2]


cdef void _copy_text(char *dst, uint32_t cap, uint8_t *dst_len, const uint8_t *p, uint32_t n,
                     bint lower) noexcept nogil:
    # ASCII, non-printables shown as '?' (as nDPI does), truncated to the field's capacity
    cdef uint32_t i
    cdef uint8_t ch
    if n > cap:
        n = cap
    for i in range(n):
        ch = p[i]
        if ch < 0x20 or ch > 0x7e:
            ch = 63
        elif lower:
            ch = _lower(ch)
        dst[i] = <char>ch
    dst_len[0] = <uint8_t>n


cdef inline void _set_host(appmeta_t *m, const uint8_t *p, uint32_t n) noexcept nogil:
    while n > 0 and p[n - 1] == 46:
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
    return c.l4proto == 6 and c.stream_len < STREAM_MAX


# ---------------------------------------------------------------------------------------------------
# DNS family (DNS, mDNS, LLMNR, NetBIOS name service)

cdef int _dns_name(const uint8_t *msg, uint32_t n, uint32_t off, uint8_t *out, uint32_t outmax,
                   uint32_t *out_len, uint32_t *next_off) noexcept nogil:
    # Decode a possibly compressed name at msg[off]. 0 ok, -1 malformed. Pointers must point backwards
    # and the name is capped at 255 bytes, so loops and out-of-range pointers end in -1.
    cdef uint32_t pos = off, olen = 0, total = 0, hops = 0, ptr, i
    cdef bint jumped = False
    cdef uint8_t l
    while True:
        if pos >= n:
            return -1
        l = msg[pos]
        if l == 0:
            if not jumped:
                next_off[0] = pos + 1
            break
        if (l & 0xC0) == 0xC0:
            if pos + 1 >= n:
                return -1
            ptr = ((<uint32_t>l & 0x3F) << 8) | msg[pos + 1]
            if not jumped:
                next_off[0] = pos + 2
            if ptr >= pos or ptr < 12:
                return -1
            hops += 1
            if hops > 32:
                return -1
            jumped = True
            pos = ptr
            continue
        if (l & 0xC0) != 0:
            return -1
        if pos + 1 + l > n:
            return -1
        total += l + 1
        if total > 255:
            return -1
        if olen > 0 and olen < outmax:
            out[olen] = 46
            olen += 1
        for i in range(l):
            if olen < outmax:
                out[olen] = msg[pos + 1 + i]
                olen += 1
        pos += 1 + l
    out_len[0] = olen
    return 0


cdef inline bint _dns_class_ok(uint16_t qclass) noexcept nogil:
    qclass &= 0x7FFF    # mDNS: top bit = unicast-response / cache-flush
    return qclass == 1 or qclass == 3 or qclass == 4 or qclass == 254 or qclass == 255


cdef bint _nb_decode(const uint8_t *name, uint32_t n, uint8_t *out, uint32_t *out_len) noexcept nogil:
    # NetBIOS first-level encoding: 32 letters 'A'..'P' (two per byte), optional ".scope"
    cdef uint32_t i, k = 0
    if n < 32 or (n > 32 and name[32] != 46):
        return False
    for i in range(32):
        if name[i] < 65 or name[i] > 80:
            return False
    for i in range(15):   # the 16th byte is the service suffix
        out[i] = ((name[2 * i] - 65) << 4) | (name[2 * i + 1] - 65)
    k = 15
    while k > 0 and (out[k - 1] == 32 or out[k - 1] == 0):
        k -= 1
    out_len[0] = k
    return True


cdef int _dns_message(const uint8_t *p, uint32_t n, appmeta_t *m, bint *netbios) noexcept nogil:
    # 1: a well-formed DNS-format message (meta gets the first name and type), 0: not one
    cdef uint16_t flags, qd, an, ns, ar, rtype, rclass, rdlen
    cdef uint32_t pos = 12, i, total, nlen = 0, nxt = 0, dlen = 0
    cdef uint8_t name[256]
    cdef uint8_t first[256]
    cdef uint32_t first_len = 0
    cdef uint16_t first_type = 0
    cdef bint have_first = False
    cdef uint8_t opcode
    if n < 12:
        return 0
    flags = ngfw_be16(p + 2)
    qd = ngfw_be16(p + 4)
    an = ngfw_be16(p + 6)
    ns = ngfw_be16(p + 8)
    ar = ngfw_be16(p + 10)
    opcode = (flags >> 11) & 0xF
    if opcode != 0 and opcode != 2 and opcode != 4 and opcode != 5 and opcode != 6:
        return 0
    if (flags & 0x000F) > 11:
        return 0
    if qd > 16 or an > 512 or ns > 512 or ar > 512:
        return 0
    if (flags & 0x8000) == 0 and qd == 0:
        return 0          # a query asks something
    total = <uint32_t>qd + an + ns + ar
    if total == 0:
        return 0
    for i in range(qd):
        if _dns_name(p, n, pos, name, 255, &nlen, &nxt) != 0:
            return 0
        pos = nxt
        if pos + 4 > n:
            return 0
        rtype = ngfw_be16(p + pos)
        rclass = ngfw_be16(p + pos + 2)
        pos += 4
        if not _dns_class_ok(rclass) and not (rclass & 0x7FFF) == 32:   # NetBIOS uses class IN too
            return 0
        if rtype == 0:
            return 0
        if not have_first:
            memcpy(first, name, nlen)
            first_len = nlen
            first_type = rtype
            have_first = True
    total -= qd
    if total > 64:
        total = 64        # enough records checked to believe it
    for i in range(total):
        if _dns_name(p, n, pos, name, 255, &nlen, &nxt) != 0:
            return 0
        pos = nxt
        if pos + 10 > n:
            return 0
        rtype = ngfw_be16(p + pos)
        rclass = ngfw_be16(p + pos + 2)
        rdlen = ngfw_be16(p + pos + 8)
        pos += 10
        if rtype == 0 or (rtype != 41 and not _dns_class_ok(rclass)):
            return 0
        if pos + rdlen > n:
            return 0
        pos += rdlen
        if not have_first and rtype != 41:
            memcpy(first, name, nlen)
            first_len = nlen
            first_type = rtype
            have_first = True
    if have_first:
        if _nb_decode(first, first_len, name, &dlen):
            netbios[0] = True
            _set_host(m, name, dlen)
        else:
            _set_host(m, first, first_len)
        m.dns_qtype = first_type
    return 1


cdef int parse_dns(appctx_t *c) noexcept nogil:
    """DNS, mDNS, LLMNR and NetBIOS-NS: same wire format; NetBIOS by its name encoding, the others by port."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, mlen
    cdef bint nb = False
    cdef int r
    if c.l4proto == 6:
        p = c.stream
        n = c.stream_len
        if n < 14:
            return PARSE_NEED_MORE if n > 0 and _stream_can_grow(c) else PARSE_NO
        mlen = ngfw_be16(p)
        if mlen < 12:
            return PARSE_NO
        if n < 2 + mlen:
            # not all there yet: the header must already look right
            if (ngfw_be16(p + 6) & 0x7800) > 0x3000 or ngfw_be16(p + 6) > 16:
                return PARSE_NO
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
        r = _dns_message(p + 2, mlen, c.meta, &nb)
    else:
        r = _dns_message(p, n, c.meta, &nb)
    if r != 1:
        c.meta.host_len = 0
        c.meta.dns_qtype = 0
        return PARSE_NO
    if nb:
        return APP_NETBIOS
    if _either_port(c, 5353):
        return APP_MDNS
    if _either_port(c, 5355):
        return APP_LLMNR
    if _either_port(c, 137):
        return APP_NETBIOS
    return APP_DNS


cdef int parse_netbios(appctx_t *c) noexcept nogil:
    """NetBIOS datagram service (UDP 138) and session service requests (TCP 139)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, dlen = 0
    cdef uint8_t name[16]
    if c.l4proto == 17:
        # datagram: type 0x10..0x16, flags, id(2), src ip(4), src port(2), [len(2) offset(2)] names
        if n < 14 or p[0] < 0x10 or p[0] > 0x16 or (p[1] & 0xF0) != 0:
            return PARSE_NO
        if p[0] <= 0x12:
            if n < 14 + 34 or ngfw_be16(p + 10) + 14 > n + 0 or p[14] != 32:
                return PARSE_NO
            if not _nb_decode(p + 15, 32, name, &dlen):
                return PARSE_NO
            _set_host(c.meta, name, dlen)
            return APP_NETBIOS
        if n >= 11 + 34 and p[10] == 32 and _nb_decode(p + 11, 32, name, &dlen):
            _set_host(c.meta, name, dlen)
            return APP_NETBIOS
        return PARSE_NO
    # session service: type(1) flags(1) length(2); a session request carries two encoded names
    if n < 4:
        return PARSE_NEED_MORE if n > 0 and (p[0] == 0x81 or p[0] == 0x85) and _stream_can_grow(c) else PARSE_NO
    if (p[1] & 0xFE) != 0:
        return PARSE_NO
    if p[0] == 0x81:
        if ngfw_be16(p + 2) < 68:
            return PARSE_NO
        if n < 4 + 34:
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
        if p[4] != 32 or not _nb_decode(p + 5, 32, name, &dlen):
            return PARSE_NO
        _set_host(c.meta, name, dlen)
        return APP_NETBIOS
    if p[0] == 0x82 or p[0] == 0x83 or p[0] == 0x84:   # positive / negative response, retarget
        if c.to_server == 0 and ((p[0] == 0x82 and ngfw_be16(p + 2) == 0 and n == 4)
                                 or (p[0] == 0x83 and ngfw_be16(p + 2) == 1 and n == 5)):
            return APP_NETBIOS
    if p[0] == 0x85 and ngfw_be16(p + 2) == 0 and n == 4:   # keep-alive
        return APP_NETBIOS if _either_port(c, 139) else PARSE_NO
    return PARSE_NO


# ---------------------------------------------------------------------------------------------------
# TLS (and the ClientHello inside QUIC)

cdef int _tls_hello(const uint8_t *h, uint32_t n, uint32_t full, bint client, appmeta_t *m) noexcept nogil:
    # A ClientHello/ServerHello body of `full` bytes of which `n` are here. 1 parsed (to the SNI or to the
    # end), 0 ran out of bytes before the end, -1 malformed.
    cdef uint32_t off = 0, l, ext_end, et, el, e, j, best
    cdef uint16_t v
    if n > full:
        n = full
    if n < 2:
        return 0
    v = ngfw_be16(h)
    if (v >> 8) != 3 or (v & 0xFF) > 4:
        return -1
    m.tls_version = v
    off = 2 + 32
    if off + 1 > n:
        return 0 if off + 1 <= full else -1
    l = h[off]
    if l > 32:
        return -1
    off += 1 + l
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
        if et == 0 and client and el >= 5:
            # server_name: list length, type 0 (host_name), length, name
            l = ngfw_be16(h + e + 3)
            if h[e + 2] == 0 and l > 0 and 5 + l <= el and ngfw_be16(h + e) + 2 <= el:
                _set_host(m, h + e + 5, l)
        elif et == 16 and el >= 3 and m.alpn_len == 0:
            l = h[e + 2]
            if l > 0 and 3 + l <= el:
                _copy_text(m.alpn, ALPN_MAX, &m.alpn_len, h + e + 3, l, False)
        elif et == 43:
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
    if n == 0:
        return PARSE_NO
    if p[0] < 20 or p[0] > 23:
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
    if p[0] != 22:
        # mid-flow: a change_cipher_spec, alert or application_data record; the next one, when there,
        # must chain on
        if (p[0] == 20 and rec_len != 1) or (p[0] == 21 and rec_len < 2):
            return PARSE_NO
        off = 0
        while off + 5 <= n and records < 4:
            if p[off] < 20 or p[off] > 23 or p[off + 1] != 3 or p[off + 2] > 4:
                return PARSE_NO
            rec_len = ngfw_be16(p + off + 3)
            if rec_len == 0 or rec_len > 16384 + 2048:
                return PARSE_NO
            records += 1
            off += 5 + rec_len
        return APP_TLS
    if n < 9:
        if n >= 6 and p[5] != 1 and p[5] != 2:
            return PARSE_NO
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    if p[5] != 1 and p[5] != 2:
        return PARSE_NO
    hs_len = _be24(p + 6)
    if hs_len < 38 or hs_len > 0xFFFF:
        return PARSE_NO
    if hs_len + 4 > rec_len and rec_len < 16384:
        return PARSE_NO       # a hello continued in another record only when this one is full
    avail = n - 9
    if avail > rec_len - 4:
        avail = rec_len - 4
    r = _tls_hello(p + 9, avail, hs_len, p[5] == 1, c.meta)
    if r < 0:
        c.meta.host_len = 0
        c.meta.alpn_len = 0
        c.meta.tls_version = 0
        return PARSE_NO
    if r == 0 and n < 5 + rec_len and _stream_can_grow(c):
        return PARSE_NEED_MORE
    return APP_TLS


cdef int parse_dtls(appctx_t *c) noexcept nogil:
    """DTLS 1.0/1.2/1.3 records: type, version 0xfeff/0xfefd/0xfefc, epoch, 48-bit sequence, length."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, off = 0, l
    cdef int records = 0
    cdef uint16_t v
    while off + 13 <= n:
        if p[off] < 20 or p[off] > 25:
            break
        v = ngfw_be16(p + off + 1)
        if v != 0xFEFF and v != 0xFEFD and v != 0xFEFC:
            break
        l = ngfw_be16(p + off + 11)
        if l == 0 or off + 13 + l > n:
            break
        if p[off] == 22 and records == 0 and ngfw_be16(p + off + 3) == 0:
            # epoch 0 handshake: msg type, 24-bit length, seq, fragment offset/length
            if l < 12 or p[off + 13] > 24:
                break
        records += 1
        off += 13 + l
    if records > 0 and off == n:
        return APP_DTLS
    return PARSE_NO


# ---------------------------------------------------------------------------------------------------
# text protocols with an HTTP-like first line (HTTP, RTSP, SIP, SSDP)

cdef int _proto_token(const uint8_t *p, uint32_t n) noexcept nogil:
    # "HTTP/1.x" -> APP_HTTP, "RTSP/1.0|2.0" -> APP_RTSP, "SIP/2.0" -> APP_SIP; 0 otherwise
    if n >= 8 and _starts(p, n, "HTTP/") and p[5] >= 48 and p[5] <= 57 and p[6] == 46 and p[7] >= 48 and p[7] <= 57:
        return APP_HTTP if p[5] <= 49 else APP_HTTP2
    if n >= 8 and _starts(p, n, "RTSP/") and p[6] == 46:
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
        while e < n and p[e] != 10:
            e += 1
        if e >= n:
            return        # incomplete line
        off = e + 1
        ve = e
        if ve > s and p[ve - 1] == 13:
            ve -= 1
        if ve == s:
            return        # end of headers
        if _ieq(p + s, ve - s, "host:"):
            v = s + 5
            while v < ve and (p[v] == 32 or p[v] == 9):
                v += 1
            k = ve
            while k > v and (p[k - 1] == 32 or p[k - 1] == 9):
                k -= 1
            if strip_port:
                e = v
                if e < k and p[e] == 91:         # [v6]:port
                    while e < k and p[e] != 93:
                        e += 1
                while e < k and p[e] != 58:
                    e += 1
                k = e
            _set_host(c.meta, p + v, k - v)
        elif _ieq(p + s, ve - s, "user-agent:"):
            v = s + 11
            while v < ve and (p[v] == 32 or p[v] == 9):
                v += 1
            _copy_text(c.meta.ua, UA_MAX, &c.meta.ua_len, p + v, ve - v, False)


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
    if p[0] == 72 or p[0] == 82 or p[0] == 83:       # 'H' 'R' 'S'
        proto = _proto_token(p, n)
        if proto:
            i = 8 if proto != APP_SIP else 7
            if i < n and p[i] == 32:
                if i + 4 <= n and p[i + 1] >= 49 and p[i + 1] <= 53 and p[i + 2] >= 48 and p[i + 2] <= 57 \
                        and p[i + 3] >= 48 and p[i + 3] <= 57:
                    if proto == APP_HTTP and c.l4proto == 17:
                        proto = APP_SSDP
                    if proto == APP_HTTP2:
                        proto = APP_HTTP
                    line_end = i
                    while line_end < lim and p[line_end] != 10:
                        line_end += 1
                    if line_end < lim:
                        _http_headers(c, p, n, line_end + 1, proto != APP_SSDP)
                    return proto
                if i + 4 > n:
                    return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
            return PARSE_NO
        if n < 8 and (_prefix_of(p, n, "HTTP/1.") or _prefix_of(p, n, "RTSP/1.") or _prefix_of(p, n, "SIP/2.0")):
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    # request line: METHOD SP target SP PROTO CRLF
    while i < n and i < 17 and ((p[i] >= 65 and p[i] <= 90) or p[i] == 45 or p[i] == 95):
        i += 1
    if i == n:
        return PARSE_NEED_MORE if i >= 1 and _stream_can_grow(c) and i < 17 else PARSE_NO
    if i < 3 or i > 16 or p[i] != 32:
        return PARSE_NO
    m_end = i
    t_start = i + 1
    t_end = t_start
    while t_end < lim and p[t_end] > 32 and p[t_end] < 127:
        t_end += 1
    if t_end == t_start:
        return PARSE_NO
    if t_end >= n:
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    if t_end >= lim or p[t_end] != 32:
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
    if line_end < n and p[line_end] == 13:
        line_end += 1
    if line_end < n and p[line_end] != 10:
        return PARSE_NO
    if proto == APP_HTTP2:
        if m_end == 3 and _starts(p, n, "PRI * HTTP/2.0"):
            return APP_HTTP2
        return PARSE_NO
    if proto == APP_HTTP and c.l4proto == 17:
        proto = APP_SSDP
    if proto == APP_HTTP or proto == APP_SSDP:
        if m_end <= 8:
            memcpy(c.meta.http_method, p, m_end)
            c.meta.http_method_len = <uint8_t>m_end
    if line_end < n:
        _http_headers(c, p, n, line_end + 1, proto != APP_SSDP)
    return proto


# ---------------------------------------------------------------------------------------------------
# SSH

cdef int parse_ssh(appctx_t *c) noexcept nogil:
    """The identification string "SSH-2.0-software" (or 1.99 / 1.5); the software goes to `ua`."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, e
    if n < 4:
        return PARSE_NEED_MORE if _prefix_of(p, n, "SSH-") and _stream_can_grow(c) else PARSE_NO
    if not _starts(p, n, "SSH-"):
        return PARSE_NO
    if n < 8:
        return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
    if not (_starts(p, n, "SSH-2.0-") or _starts(p, n, "SSH-1.99-") or _starts(p, n, "SSH-1.5-")):
        return PARSE_NO
    e = 4
    while e < n and e < 255 and p[e] != 13 and p[e] != 10:
        if p[e] < 32 or p[e] > 126:
            return PARSE_NO
        e += 1
    _copy_text(c.meta.ua, UA_MAX, &c.meta.ua_len, p, e, False)
    return APP_SSH


# ---------------------------------------------------------------------------------------------------
# dispatcher

cdef int appid_parse(appctx_t *c) noexcept nogil:
    """Try the parsers that could match this payload; the first positive answer wins, else NEED_MORE when
    any parser asked for more bytes, else PARSE_NO."""
    cdef int r, need = 0
    cdef uint8_t b0
    if c.payload_len == 0 and c.stream_len == 0:
        return PARSE_NO
    if c.l4proto == 6:
        if c.stream_len == 0:
            return PARSE_NO
        b0 = c.stream[0]
        if b0 >= 20 and b0 <= 23:
            r = parse_tls(c)
            if r > 0:
                return r
            if r == PARSE_NEED_MORE:
                need = 1
        if b0 >= 65 and b0 <= 90:
            r = parse_ssh(c)
            if r > 0:
                return r
            if r == PARSE_NEED_MORE:
                need = 1
            r = parse_http(c)
            if r > 0:
                return r
            if r == PARSE_NEED_MORE:
                need = 1
        r = parse_dns(c)
        if r > 0:
            return r
        if r == PARSE_NEED_MORE and _either_port(c, 53):
            need = 1
        r = parse_netbios(c)
        if r > 0:
            return r
        if r == PARSE_NEED_MORE:
            need = 1
        return PARSE_NEED_MORE if need else PARSE_NO
    if c.l4proto == 17:
        if c.payload_len == 0:
            return PARSE_NO
        b0 = c.payload[0]
        r = parse_dns(c)
        if r > 0:
            return r
        r = parse_netbios(c)
        if r > 0:
            return r
        if b0 >= 65 and b0 <= 90:
            r = parse_http(c)
            if r > 0:
                return r
        if b0 >= 20 and b0 <= 25:
            r = parse_dtls(c)
            if r > 0:
                return r
        return PARSE_NO
    return PARSE_NO
