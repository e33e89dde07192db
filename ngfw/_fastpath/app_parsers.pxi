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
    "whois", "websocket",
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
    APP_WHOIS = 40
    APP_WEBSOCKET = 41


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



cdef inline bint _dns_char_ok(uint8_t c) noexcept nogil:
    return (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c == 45 or c == 95


cdef uint32_t dns_grab_name(const uint8_t *msg, uint32_t n, uint32_t off, bint raw, uint8_t *out) noexcept nogil:
    """The name at msg[off] the way operators' nDPI reports it: plain labels only (a compression pointer
    or a label running past the message gives no name), joined by '.', lower-cased. DNS and LLMNR names
    show a character outside [a-z0-9_-] as '_', or '?' when it is not printable; mDNS names (`raw`, UTF-8
    service instance names) are kept as they are. `out` holds 255 bytes; returns the length (0: none)."""
    cdef uint32_t j = 0, cl
    cdef uint8_t c
    while j < 255 and off < n and msg[off] != 0:
        cl = msg[off]
        if (cl & 0xC0) != 0 or off + 1 + cl >= n:
            return 0
        off += 1
        if j:
            out[j] = 46
            j += 1
        while j < 255 and cl:
            c = msg[off]
            off += 1
            if raw or _dns_char_ok(c):
                out[j] = _lower(c)
            elif c < 0x20 or c > 0x7e:
                out[j] = 63
            else:
                out[j] = 95
            j += 1
            cl -= 1
    return j


cdef inline void set_dns_host(appmeta_t *m, const uint8_t *name, uint32_t n) noexcept nogil:
    # the tail: a long name's registered domain is at its end (and that is what nDPI keeps)
    if n > DNS_HOST_KEEP:
        name += n - DNS_HOST_KEEP
        n = DNS_HOST_KEEP
    memcpy(m.host, name, n)
    m.host_len = <uint8_t>n


cdef uint32_t nb_name_lenient(const uint8_t *msg, uint32_t n, uint32_t off, uint8_t *out) noexcept nogil:
    """A NetBIOS first-level encoded name (length byte, then letter pairs 'A'..'P') decoded up to the first
    pair that is not one or decodes to a non-printable byte, trailing spaces trimmed, lower-cased, as nDPI
    reads names of the name service. `out` holds 32 bytes; returns the length (0: none)."""
    cdef uint32_t pairs, k = 0
    cdef uint8_t c
    if off >= n:
        return 0
    pairs = msg[off] // 2
    off += 1
    if pairs < 1 or pairs > 32 or off + 2 * pairs > n:
        return 0
    while pairs:
        if msg[off] < 65 or msg[off] > 80 or msg[off + 1] < 65 or msg[off + 1] > 80:
            break
        c = ((msg[off] - 65) << 4) | (msg[off + 1] - 65)
        if c < 0x20 or c > 0x7e:
            break
        out[k] = _lower(c)
        k += 1
        off += 2
        pairs -= 1
    while k > 0 and out[k - 1] == 32:
        k -= 1
    return k


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
        p += 2
        n = mlen
    else:
        r = _dns_message(p, n, c.meta, &nb)
    if r != 1 and c.l4proto == 17 and dns_header_on_port(c, p, n):
        r = 1   # on its own ports, a message nDPI would take as DNS (NetBIOS-NS) is that, even if its records do not parse
    if r != 1:
        c.meta.host_len = 0
        c.meta.dns_qtype = 0
        return PARSE_NO
    # DNS-format messages on the DNS-family ports are those protocols even when they ask for a NetBIOS
    # name (a wildcard query, say); NetBIOS elsewhere by its name encoding
    if _either_port(c, 53) or _either_port(c, 5353) or _either_port(c, 5355):
        dns_message_host(c.meta, p, n, _either_port(c, 5353) and not _either_port(c, 53))
        if _either_port(c, 53):
            return APP_DNS
        return APP_MDNS if _either_port(c, 5353) else APP_LLMNR
    if nb or _either_port(c, 137):
        nb_message_host(c.meta, p, n)
        return APP_NETBIOS
    dns_message_host(c.meta, p, n, False)
    return APP_DNS


cdef bint dns_header_on_port(appctx_t *c, const uint8_t *p, uint32_t n) noexcept nogil:
    """A UDP message on a DNS-family port whose records do not parse (fuzzed counts, a label that is not
    one) that is still that protocol, as nDPI takes it: a query whose header looks like one, any response
    sent from the DNS port; on NetBIOS-NS's port the header must also count a question or an answer."""
    cdef uint16_t sport = c.client_port if c.to_server else c.server_port
    if n <= 12:
        return False
    if _either_port(c, 53) or _either_port(c, 5353) or _either_port(c, 5355):
        if (p[2] & 0x80) and (sport == 53 or sport == 5353 or sport == 5355):
            return True
        return dns_header_plausible(p, n, _either_port(c, 5353))
    return _either_port(c, 137) and dns_header_plausible(p, n, False) and (ngfw_be16(p + 4) or ngfw_be16(p + 6))


cdef bint dns_header_plausible(const uint8_t *msg, uint32_t n, bint mdns) noexcept nogil:
    """The header checks nDPI makes of a message on a DNS-family port, looser than `_dns_message`'s (a query
    may carry stray counts, an mDNS response need not repeat the question)."""
    cdef uint16_t flags, qd, an, ns, ar
    if n < 12:
        return False
    flags = ngfw_be16(msg + 2)
    qd = ngfw_be16(msg + 4)
    an = ngfw_be16(msg + 6)
    ns = ngfw_be16(msg + 8)
    ar = ngfw_be16(msg + 10)
    if (flags & 0x8000) == 0:
        return qd <= 16 and ((flags & 0x2800) == 0x2800 or (flags & 0xFCF0) == 0 or (flags & 0xFCFF) == 0x0800
                             or (an == 0 and ns == 0))
    return ((1 <= qd <= 16) or (mdns and qd == 0)) and (
        (1 <= an <= 16) or (1 <= ns <= 16) or (1 <= ar <= 16) or (an == 0 and ns == 0 and ar == 0))


cdef void dns_message_host(appmeta_t *m, const uint8_t *msg, uint32_t n, bint mdns) noexcept nogil:
    """The host of a DNS-family message: the name at its start (the first question's, or the first record's
    when it asks nothing; what the header counts is not trusted, as nDPI does not)."""
    cdef uint8_t name[256]
    cdef uint32_t len
    m.host_len = 0
    if n <= 12:
        return
    len = dns_grab_name(msg, n, 12, mdns, name)
    if len:
        set_dns_host(m, name, len)


cdef void nb_message_host(appmeta_t *m, const uint8_t *msg, uint32_t n) noexcept nogil:
    cdef uint8_t name[32]
    cdef uint32_t len = nb_name_lenient(msg, n, 12, name)
    m.host_len = 0
    if len:
        memcpy(m.host, name, len)
        m.host_len = <uint8_t>len


cdef int parse_netbios(appctx_t *c) noexcept nogil:
    """NetBIOS datagram service (UDP 138) and session service requests (TCP 139)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, dlen = 0
    cdef uint8_t name[16]
    cdef uint8_t lenient[32]
    if c.l4proto == 17:
        # datagram: type 0x10..0x16, flags, id(2), src ip(4), src port(2), [len(2) offset(2)] names
        if n < 14 or p[0] < 0x10 or p[0] > 0x16 or (p[1] & 0xF0) != 0:
            return PARSE_NO
        if p[0] <= 0x12:
            if n < 14 + 34 or ngfw_be16(p + 10) + 14 > n + 0 or p[14] != 32:
                return PARSE_NO
            if not _nb_decode(p + 15, 32, name, &dlen):
                # the source name decoded up to its first bad pair, as the name service's names are
                dlen = nb_name_lenient(p, n, 14, lenient)
                if dlen == 0:
                    return PARSE_NO
                _set_host(c.meta, lenient, dlen)
                return APP_NETBIOS
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
    # end), 0 ran out of bytes before the end, -1 malformed. DTLS's (version 0xfeff/0xfefd/0xfefc) is the
    # same but for the cookie a ClientHello carries after its session id.
    cdef uint32_t off = 0, l, ext_end, et, el, e, j, best
    cdef uint16_t v
    cdef bint dtls
    if n > full:
        n = full
    if n < 2:
        return 0
    v = ngfw_be16(h)
    dtls = v == 0xFEFF or v == 0xFEFD or v == 0xFEFC
    if not dtls and ((v >> 8) != 3 or (v & 0xFF) > 4):
        return -1
    m.tls_version = v
    off = 2 + 32
    if off + 1 > n:
        return 0 if off + 1 <= full else -1
    l = h[off]
    if l > 32:
        return -1
    off += 1 + l
    if client and dtls:
        if off + 1 > n:
            return 0 if off + 1 <= full else -1
        off += 1 + h[off]
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
    cdef bint whole
    cdef uint8_t hello[STREAM_MAX]
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
    if rec_len >= 4:
        hs_len = _be24(p + 6)
    else:
        # even the handshake header is cut by the record's end
        if _tls_join_handshake(p, n, 4, hello) < 4:
            return PARSE_NEED_MORE if _stream_can_grow(c) else PARSE_NO
        hs_len = _be24(hello + 1)
    if hs_len < 38 or hs_len > 0xFFFF:
        return PARSE_NO
    if hs_len + 4 <= rec_len:
        avail = n - 9
        if avail > rec_len - 4:
            avail = rec_len - 4
        r = _tls_hello(p + 9, avail, hs_len, p[5] == 1, c.meta)
        whole = n >= 5 + rec_len
    else:
        # the hello goes on in the next handshake records (a sender may cut it at any byte): joined first
        avail = _tls_join_handshake(p, n, hs_len + 4, hello)
        r = _tls_hello(hello + 4, avail - 4, hs_len, p[5] == 1, c.meta) if avail >= 4 else -1
        whole = avail >= hs_len + 4
    if r < 0:
        c.meta.host_len = 0
        c.meta.alpn_len = 0
        c.meta.tls_version = 0
        return PARSE_NO
    if r == 0 and not whole and _stream_can_grow(c):
        return _tentative(c, APP_TLS)
    return APP_TLS


cdef uint32_t _tls_join_handshake(const uint8_t *p, uint32_t n, uint32_t want, uint8_t *out) noexcept nogil:
    """The first `want` bytes (at most STREAM_MAX) of the handshake messages carried by the handshake records
    that start the stream `p`, joined into `out`; returns how many there are (fewer: the stream stops, or a
    record that is not a handshake one comes first; 0: a record is empty)."""
    cdef uint32_t off = 0, k = 0, l, take
    if want > STREAM_MAX:
        want = STREAM_MAX
    while k < want and off + 5 <= n and p[off] == 22 and p[off + 1] == 3 and p[off + 2] <= 4:
        l = ngfw_be16(p + off + 3)
        if l == 0:
            return 0
        take = l
        if take > n - off - 5:
            take = n - off - 5
        if take > want - k:
            take = want - k
        memcpy(out + k, p + off + 5, take)
        k += take
        off += 5 + l
    return k


cdef bint dtls_records(const uint8_t *p, uint32_t n) noexcept nogil:
    """`p` is exactly a sequence of DTLS records (the check `parse_dtls` makes)."""
    cdef uint32_t off = 0, l
    cdef int records = 0
    cdef uint16_t v
    while off + 13 <= n:
        if p[off] < 20 or p[off] > 25:
            break
        v = ngfw_be16(p + off + 1)
        if v != 0xFEFF and v != 0xFEFD and v != 0xFEFC and v != 0x0100:
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
    return records > 0 and off == n


cdef int parse_dtls(appctx_t *c) noexcept nogil:
    """DTLS 1.0/1.2/1.3 records: type, version 0xfeff/0xfefd/0xfefc (or 0x0100, the pre-RFC DTLS that Cisco
    AnyConnect still speaks), epoch, 48-bit sequence, length. A ClientHello in the first record (its first
    fragment: type, 24-bit length, sequence, fragment offset and length) names the host by its SNI."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t rec_len, frag_len
    if not dtls_records(p, c.payload_len):
        return PARSE_NO
    rec_len = ngfw_be16(p + 11)
    if c.to_server and p[0] == 22 and ngfw_be16(p + 3) == 0 and rec_len >= 12 and p[13] == 1 and _be24(p + 19) == 0:
        frag_len = _be24(p + 13 + 9)
        if frag_len > rec_len - 12:
            frag_len = rec_len - 12
        if _tls_hello(p + 25, frag_len, _be24(p + 14), True, c.meta) < 0:
            c.meta.host_len = 0
            c.meta.alpn_len = 0
    return APP_DTLS


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
        if _starts(p, n, "BT-SEARCH "):
            return PARSE_NO   # BitTorrent local service discovery speaks HTTPU too (a catalogue signature)
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
    """The identification string "SSH-2.0-software comments" (or 1.99 / 1.5). The first one a flow carries
    (the client's or the server's, whichever speaks first) is its host, as nDPI reports SSH flows."""
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
    _copy_text(c.meta.host, HOST_MAX, &c.meta.host_len, p, e, False)
    return APP_SSH


# ---------------------------------------------------------------------------------------------------
# binary UDP protocols

cdef int parse_stun(appctx_t *c) noexcept nogil:
    """STUN/TURN (RFC 5389 with the magic cookie, RFC 3489 without): type, length, transaction id and a
    TLV attribute chain that ends exactly at the message end. Over TCP also with RFC 4571 framing."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, off, al
    cdef uint16_t t
    cdef bint cookie
    if n >= 2 and c.l4proto == 6 and ngfw_be16(p) + 2 == n and n >= 22 and ngfw_be32(p + 6) == 0x2112A442:
        p += 2
        n -= 2
    if n < 20 or (p[0] & 0xC0) != 0:
        return PARSE_NO
    t = ngfw_be16(p)
    l = ngfw_be16(p + 2)
    if (l & 3) != 0 or 20 + l > n:
        return PARSE_NO
    cookie = ngfw_be32(p + 4) == 0x2112A442
    if not cookie:
        # classic STUN: a known method/class and exactly one message
        if 20 + l != n or not (t == 0x0001 or t == 0x0101 or t == 0x0111 or t == 0x0002 or t == 0x0102
                               or t == 0x0112 or t == 0x0003 or t == 0x0103 or t == 0x0113):
            return PARSE_NO
        if l == 0:
            return PARSE_NO
    elif c.l4proto == 17 and 20 + l != n:
        return PARSE_NO
    off = 20
    while off + 4 <= 20 + l:
        al = ngfw_be16(p + off + 2)
        off += 4 + ((al + 3) & ~3u)
    if off != 20 + l:
        return PARSE_NO
    cdef uint8_t realm[256]
    cdef uint32_t rlen = stun_realm(p, n, False, realm)
    if rlen:
        _set_host(c.meta, realm, rlen)
    return APP_STUN


cdef uint32_t stun_realm(const uint8_t *p, uint32_t n, bint tcp, uint8_t *out) noexcept nogil:
    """The REALM attribute of a STUN message with the magic cookie (TURN's service name), as a host:
    printable, lower-cased, at most 255 bytes. 0: none."""
    cdef uint32_t l, off, al, i, k = 0
    if tcp and n >= 22 and ngfw_be32(p + 6) == 0x2112A442 and ngfw_be32(p + 4) != 0x2112A442:
        p += 2   # RFC 4571 framing
        n -= 2
    if n < 20 or (p[0] & 0xC0) != 0 or ngfw_be32(p + 4) != 0x2112A442:
        return 0
    l = ngfw_be16(p + 2)
    if 20 + l > n:
        return 0
    off = 20
    while off + 4 <= 20 + l:
        al = ngfw_be16(p + off + 2)
        if off + 4 + al > 20 + l:
            return 0
        if ngfw_be16(p + off) == 0x0014 and 0 < al < 256:
            for i in range(al):
                if p[off + 4 + i] < 33 or p[off + 4 + i] > 126:
                    return 0
                out[k] = _lower(p[off + 4 + i])
                k += 1
            return k
        off += 4 + ((al + 3) & ~3u)
    return 0


cdef int parse_radius(appctx_t *c) noexcept nogil:
    """RADIUS (RFC 2865/2866/5176): code, id, length = the datagram, authenticator, exact attribute chain."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, off
    cdef uint8_t code
    if n < 20:
        return PARSE_NO
    code = p[0]
    if not ((code >= 1 and code <= 5) or (code >= 11 and code <= 13) or (code >= 40 and code <= 45)):
        return PARSE_NO
    l = ngfw_be16(p + 2)
    if l < 20 or l > 4096 or l > n:
        return PARSE_NO
    if _either_port(c, 1812) or _either_port(c, 1813) or _either_port(c, 1645) or _either_port(c, 1646):
        return APP_RADIUS     # on its own ports, a header that fits is enough (as nDPI decides)
    if c.l4proto == 17 and l != n:
        return PARSE_NO
    off = 20
    while off + 2 <= l:
        if p[off + 1] < 2 or p[off] == 0:
            return PARSE_NO
        off += p[off + 1]
    if off != l:
        return PARSE_NO
    if l == 20 and (code == 1 or code == 4):
        return PARSE_NO    # requests carry attributes
    return APP_RADIUS


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


cdef int parse_snmp(appctx_t *c) noexcept nogil:
    """SNMP v1/v2c (community + PDU tag) and v3 (global data sequence)."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, l, h, off
    if c.l4proto != 17 or n < 10 or p[0] != 0x30:
        return PARSE_NO
    if _ber_len(p, n, 1, &l, &h) != 0 or 1 + h + l != n:
        return PARSE_NO
    off = 1 + h
    if off + 3 > n or p[off] != 0x02 or p[off + 1] != 1 or p[off + 2] > 3 or p[off + 2] == 2:
        return PARSE_NO
    if p[off + 2] == 3:
        off += 3
        return APP_SNMP if off < n and p[off] == 0x30 else PARSE_NO
    off += 3
    if off >= n or p[off] != 0x04:
        return PARSE_NO
    if _ber_len(p, n, off + 1, &l, &h) != 0 or l > 255:
        return PARSE_NO
    off += 1 + h + l
    if off >= n or p[off] < 0xA0 or p[off] > 0xA8:
        return PARSE_NO
    if _ber_len(p, n, off + 1, &l, &h) != 0 or off + 1 + h + l != n:
        return PARSE_NO
    return APP_SNMP


cdef int parse_dhcp(appctx_t *c) noexcept nogil:
    """DHCP/BOOTP with the magic cookie; the host name (option 12) goes to host."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, off
    cdef uint8_t o, l
    if n < 240 or (p[0] != 1 and p[0] != 2) or p[2] > 16 or ngfw_be32(p + 236) != 0x63825363:
        return PARSE_NO
    off = 240
    while off < n:
        o = p[off]
        if o == 255:
            break
        if o == 0:
            off += 1
            continue
        if off + 2 > n:
            break
        l = p[off + 1]
        if off + 2 + l > n:
            break
        if o == 12 and l > 0:
            _set_host(c.meta, p + off + 2, l)
        off += 2 + l
    return APP_DHCP


cdef int parse_dhcpv6(appctx_t *c) noexcept nogil:
    """DHCPv6: message type, transaction id, options that end exactly at the datagram end. Relay messages
    and a client or server identifier make it certain; otherwise the DHCPv6 ports must agree."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, off, l
    cdef uint16_t o
    cdef bint duid = False
    if n < 8 or p[0] < 1 or p[0] > 13:
        return PARSE_NO
    off = 4 if p[0] < 12 else 34
    if off >= n:
        return PARSE_NO
    while off + 4 <= n:
        o = ngfw_be16(p + off)
        l = ngfw_be16(p + off + 2)
        if o == 0 or o > 200 or off + 4 + l > n:
            return PARSE_NO
        if o == 1 or o == 2 or o == 9:
            duid = True
        off += 4 + l
    if off != n:
        return PARSE_NO
    if duid or _either_port(c, 546) or _either_port(c, 547):
        return APP_DHCPV6
    return PARSE_NO


cdef int parse_ntp(appctx_t *c) noexcept nogil:
    """NTP v1-4: a 48-byte header (plus extension fields / MAC) in modes 1-5, or a mode 6 control message."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len
    cdef uint8_t vn, mode
    if n < 12:
        return PARSE_NO
    vn = (p[0] >> 3) & 7
    mode = p[0] & 7
    if vn < 1 or vn > 4:
        return PARSE_NO
    if mode == 6:
        # control: opcode, sequence, status, association id, offset, count
        if (p[1] & 0x1F) > 31 or ngfw_be16(p + 10) + 12 > n or ngfw_be16(p + 10) > 468:
            return PARSE_NO
        return APP_NTP if _either_port(c, 123) else PARSE_NO
    if mode < 1 or mode > 5 or n < 48:
        return PARSE_NO
    if not (n == 48 or n == 52 or n == 60 or n == 68 or n == 72 or n == 120 or (n > 48 and (n - 48) % 4 == 0 and n <= 1024)):
        return PARSE_NO
    if p[1] > 16:
        return PARSE_NO     # stratum
    if n != 48 and not _either_port(c, 123):
        return PARSE_NO
    return APP_NTP


cdef int parse_tftp(appctx_t *c) noexcept nogil:
    """TFTP: read/write requests (file\\0mode\\0), option acks, errors; a first data block or its ack."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, i, z = 0, start
    cdef uint16_t op
    if n < 4 or p[0] != 0:
        return PARSE_NO
    op = p[1]
    if op == 1 or op == 2 or op == 6:
        # NUL-separated printable strings, an even number of them for OACK, mode known for requests
        start = 2
        for i in range(2, n):
            if p[i] == 0:
                if op != 6 and z == 1:
                    if not (_ieq(p + start, i - start, "octet") or _ieq(p + start, i - start, "netascii")
                            or _ieq(p + start, i - start, "mail")):
                        return PARSE_NO
                z += 1
                start = i + 1
            elif p[i] < 32 or p[i] > 126:
                return PARSE_NO
        if p[n - 1] != 0 or z < 1 or (op != 6 and z < 2) or (op == 6 and (z & 1)):
            return PARSE_NO
        return APP_TFTP
    if op == 5:
        # error code 0..8, then a printable message and its NUL (NetFlow v5's header starts 00 05 00 nn too)
        if p[2] != 0 or p[3] > 8 or p[n - 1] != 0:
            return PARSE_NO
        for i in range(4, n - 1):
            if p[i] < 32 or p[i] > 126:
                return PARSE_NO
        return APP_TFTP
    if op == 4 and n == 4 and ngfw_be16(p + 2) <= 1:
        return APP_TFTP
    if op == 3 and ngfw_be16(p + 2) == 1 and n <= 4 + 65464:
        return APP_TFTP
    return PARSE_NO


cdef int parse_rtp(appctx_t *c) noexcept nogil:
    """RTCP: a compound of version-2 packets with types 200-207 whose lengths tile the datagram.
    RTP: version 2 with a consistent header; confirmed by the next packet of the same direction carrying
    the same SSRC and the next few sequence numbers (remembered in scratch)."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, off = 0, l, hdr
    cdef uint8_t *s = c.scratch
    cdef uint16_t seq, dseq
    cdef int pkts = 0
    if n < 8 or (p[0] & 0xC0) != 0x80:
        return PARSE_NO
    if p[1] >= 200 and p[1] <= 207:
        while off + 4 <= n:
            if (p[off] & 0xC0) != 0x80 or p[off + 1] < 192 or p[off + 1] > 210:
                return PARSE_NO
            l = (<uint32_t>ngfw_be16(p + off + 2) + 1) * 4
            off += l
            pkts += 1
        return APP_RTCP if off == n and pkts > 0 else PARSE_NO
    if n < 12 or ((p[1] & 0x7F) >= 72 and (p[1] & 0x7F) <= 76):
        return PARSE_NO
    hdr = 12 + 4 * (p[0] & 0x0F)
    if hdr > n:
        return PARSE_NO
    seq = ngfw_be16(p + 2)
    if s[0] == 82 and s[1] == c.to_server:     # 'R': an earlier packet of this direction looked like RTP
        dseq = seq - ngfw_be16(s + 2)
        if memcmp(s + 4, p + 8, 4) == 0 and dseq >= 1 and dseq <= 16:
            return APP_RTP
        return PARSE_NO
    if s[0] == 0:
        s[0] = 82
        s[1] = c.to_server
        ngfw_put_be16(s + 2, seq)
        memcpy(s + 4, p + 8, 4)
    return PARSE_NEED_MORE


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
    they send, servers do not). The first side is remembered in scratch ('W', direction, masking)."""
    cdef uint8_t *s = c.scratch
    cdef int kind
    if c.l4proto != 6 or c.payload_len < 2:
        return PARSE_NO
    kind = _ws_frames(c.payload, c.payload_len)
    if kind == 0:
        return PARSE_NO
    if s[0] == 87:
        if s[1] != c.to_server:
            return APP_WEBSOCKET if s[2] != kind else PARSE_NO
        return PARSE_NEED_MORE if s[2] == kind else PARSE_NO
    if s[0] != 0:
        return PARSE_NO
    s[0] = 87
    s[1] = c.to_server
    s[2] = <uint8_t>kind
    return PARSE_NEED_MORE


cdef int parse_openvpn(appctx_t *c) noexcept nogil:
    """OpenVPN: a hard-reset opcode (key id 0) opens the session with an 8-byte session id; the session is
    confirmed when the next packet of that direction repeats the id or the peer echoes it back. A bare
    14-byte client reset (no tls-auth) is certain on its own. TCP messages carry a 2-byte length."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, i
    cdef uint8_t *s = c.scratch
    cdef uint8_t op
    if c.l4proto == 6:
        if c.pkt_index != 0 and s[0] == 79:
            p = c.stream
            n = c.stream_len
        else:
            p = c.stream
            n = c.stream_len
            if n < 3 or ngfw_be16(p) + 2 > n or ngfw_be16(p) < 9:
                return PARSE_NO
            n = ngfw_be16(p) + 2
            p += 2
            n -= 2
    if n < 9:
        return PARSE_NO
    if s[0] == 79:      # 'O': a session id was seen
        if c.l4proto == 6:
            # anywhere after the first message of the direction that sent it, or anywhere in the other one
            i = 0 if c.to_server != s[1] else 2 + ngfw_be16(p)
        else:
            i = 0
            if c.to_server == s[1]:
                op = p[0] >> 3
                if (op == 4 or op == 5 or op == 6 or op == 9) and memcmp(p + 1, s + 2, 8) == 0:
                    return APP_OPENVPN
                return PARSE_NO
        while i + 8 <= n:
            if memcmp(p + i, s + 2, 8) == 0:
                return APP_OPENVPN
            i += 1
        return PARSE_NO
    op = p[0] >> 3
    if (p[0] & 7) != 0 or not (op == 1 or op == 2 or op == 7 or op == 8 or op == 10):
        return PARSE_NO
    # an ONC RPC message (NFS, portmap) can start with such a byte: its call/reply header gives it away
    if n >= 12 and ((ngfw_be32(p + 4) == 0 and ngfw_be32(p + 8) == 2) or
                    (ngfw_be32(p + 4) == 1 and ngfw_be32(p + 8) <= 1)):
        return PARSE_NO
    if op == 7 and n == 14 and ngfw_be32(p + 10) == 0 and p[9] == 0:
        return APP_OPENVPN
    if s[0] == 0 and c.pkt_index < 4:
        s[0] = 79
        s[1] = c.to_server
        memcpy(s + 2, p + 1, 8)
    return PARSE_NEED_MORE


# ---------------------------------------------------------------------------------------------------
# binary TCP protocols

cdef int parse_kerberos(appctx_t *c) noexcept nogil:
    """Kerberos v5 KDC and AP messages: [APPLICATION n] SEQUENCE with pvno 5 and the matching msg-type.
    Over TCP behind a 4-byte record length."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, l, h, off = 0, rec
    cdef uint8_t tag, mt
    if c.l4proto == 6:
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
    if c.l4proto == 6 and 1 + h + l != rec:
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
    if p[5] != 83 or p[6] != 77 or p[7] != 66:
        return PARSE_NO
    if p[4] == 0xFE or p[4] == 0xFD:
        return APP_SMB
    if p[4] == 0xFF:
        return APP_NETBIOS
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
            if t == 0x01 and n >= 12 and p[9] == 0 and p[11] == 0 and p[8] >= 32 and p[8] < 127:
                return APP_MSSQL
            if t == 0x03 and n >= 12 and (p[8] > 0 or p[9] == 0xFF) and p[9] <= 0xFF and p[11] == 0:
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
            if p[i] != 0 and (p[i] < 32 or p[i] > 126):
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
    if p[3] != 0 or p[4] != 10 or l < 30 or l > 512 or l + 4 < n and n <= l + 4:
        return PARSE_NO
    if p[5] < 48 or p[5] > 57:
        return PARSE_NO
    i = 5
    while i < n and i < 4 + l and p[i] != 0:
        if p[i] < 32 or p[i] > 126:
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
    if l == 8 and (code == 80877103 or code == 80877104) and n == 8:
        return APP_POSTGRESQL
    if l == 16 and code == 80877102:
        return APP_POSTGRESQL
    if code == 0x00030000 and l >= 9 and l <= 10000 and l == n and p[n - 1] == 0:
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


# ---------------------------------------------------------------------------------------------------
# text banners and commands (FTP, SMTP, POP3, IMAP, NNTP, VNC)

cdef bint _contains_ci(const uint8_t *p, uint32_t n, const char *lit) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        if _ieq(p + i, n - i, lit):
            return True
    return False


cdef void _greeting_host(appmeta_t *m, const uint8_t *p, uint32_t e) noexcept nogil:
    # "220 mail.example.net ESMTP ...": the server names itself first (nDPI reports that as the host); a
    # greeting that starts with prose ("220 \"Authorized users only\"") names nothing
    cdef uint32_t i = 4, j
    if e < 5 or p[0] != 50 or p[1] != 50 or p[2] != 48:
        return
    j = i
    while j < e and p[j] > 32:
        if not (_dns_char_ok(p[j]) or p[j] == 46):
            return
        j += 1
    if j > i:
        _set_host(m, p + i, j - i)


cdef int _greeting_app(appctx_t *c, const uint8_t *p, uint32_t e) noexcept nogil:
    # a "NNN text" server greeting: the protocol its text or, failing that, its port names
    if _contains_ci(p, e, "ftp"):
        return APP_FTP
    if _contains_ci(p, e, "smtp") or _contains_ci(p, e, "mail"):
        return APP_SMTP
    if _contains_ci(p, e, "nntp") or _contains_ci(p, e, "news"):
        return APP_NNTP
    if _either_port(c, 21):
        return APP_FTP
    if _either_port(c, 25) or _either_port(c, 587):
        return APP_SMTP
    if _either_port(c, 119):
        return APP_NNTP
    return PARSE_NO


cdef int parse_whois(appctx_t *c) noexcept nogil:
    """WHOIS (TCP 43): the client's query is one printable line; it is the flow's host (a domain, usually)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, e = 0
    if not c.to_server or c.server_port != 43:
        return PARSE_NO
    while e < n and e < 256 and p[e] != 13 and p[e] != 10:
        if p[e] < 32 or p[e] > 126:
            return PARSE_NO
        e += 1
    if e >= n:
        return PARSE_NEED_MORE if _stream_can_grow(c) and e < 256 else PARSE_NO
    if e == 0:
        return PARSE_NO
    _set_host(c.meta, p, e)
    return APP_WHOIS


cdef bint _one_word(const uint8_t *p, uint32_t n) noexcept nogil:
    # the rest of a command line is one word (no space before its CR/LF)
    cdef uint32_t i
    for i in range(n):
        if p[i] == 13 or p[i] == 10:
            return True
        if p[i] == 32:
            return False
    return True


cdef int parse_mail_ftp(appctx_t *c) noexcept nogil:
    """Line-oriented protocols told apart by the server's greeting or the client's first command:
    FTP (220 ... FTP / USER, AUTH), SMTP (220 ... SMTP / EHLO, HELO), POP3 (+OK / CAPA), IMAP (* OK /
    tagged command), NNTP (200/201 ... NNTP / MODE READER), VNC (RFB 003.00x)."""
    cdef const uint8_t *p = c.stream
    cdef uint32_t n = c.stream_len, e = 0, i
    if n < 4:
        return PARSE_NEED_MORE if n > 0 and _stream_can_grow(c) and p[0] >= 32 and p[0] < 127 else PARSE_NO
    while e < n and e < 512 and p[e] != 10:
        if (p[e] < 32 or p[e] > 126) and p[e] != 13 and p[e] != 9:
            return PARSE_NO
        e += 1
    if e >= n:
        return PARSE_NEED_MORE if _stream_can_grow(c) and e < 512 else PARSE_NO
    if n >= 12 and _starts(p, n, "RFB 00") and p[7] == 46 and p[11] == 10:
        return APP_VNC
    if True:
        if _starts(p, n, "+OK"):
            return APP_POP3
        if _starts(p, n, "* OK") or _starts(p, n, "* PREAUTH"):
            return APP_IMAP
        if p[0] >= 49 and p[0] <= 53 and p[1] >= 48 and p[1] <= 57 and p[2] >= 48 and p[2] <= 57 \
                and (p[3] == 32 or p[3] == 45):
            r = _greeting_app(c, p, e)
            if r > 0:
                _greeting_host(c.meta, p, e)
            return r
    if _ieq(p, n, "user ") and not _one_word(p + 5, e - 5):
        return PARSE_NO   # IRC's USER has four parameters (USER name mode * :real name); FTP's has one
    if _ieq(p, n, "user ") or _ieq(p, n, "auth tls") or _ieq(p, n, "auth ssl") or _ieq(p, n, "feat\r") \
            or _ieq(p, n, "syst\r"):
        if _ieq(p, n, "user ") and _either_port(c, 110):
            return APP_POP3
        return APP_FTP
    if _ieq(p, n, "pass ") or _ieq(p, n, "retr "):
        return APP_POP3 if _either_port(c, 110) else APP_FTP
    if _ieq(p, n, "pasv\r") or _ieq(p, n, "epsv") or _ieq(p, n, "port ") or _ieq(p, n, "eprt ") \
            or _ieq(p, n, "cwd ") or _ieq(p, n, "pwd\r") or _ieq(p, n, "type ") or _ieq(p, n, "stor ") \
            or _ieq(p, n, "nlst") or _ieq(p, n, "mdtm ") or _ieq(p, n, "size "):
        return APP_FTP
    if _ieq(p, n, "ehlo ") or _ieq(p, n, "helo "):
        return APP_SMTP
    if _ieq(p, n, "capa\r") or _ieq(p, n, "stls\r") or _ieq(p, n, "apop "):
        return APP_POP3
    if _ieq(p, n, "mode reader") or _ieq(p, n, "authinfo "):
        return APP_NNTP
    # IMAP: tag SP command
    i = 0
    while i < e and i < 32 and p[i] > 32 and p[i] != 40 and p[i] != 41 and p[i] != 123 and p[i] != 42 \
            and p[i] != 37 and p[i] != 34 and p[i] != 92:
        i += 1
    if i > 0 and i < e and p[i] == 32:
        i += 1
        if _ieq(p + i, e - i, "capability") or _ieq(p + i, e - i, "login ") or _ieq(p + i, e - i, "starttls") \
                or _ieq(p + i, e - i, "authenticate ") or _ieq(p + i, e - i, "id ("):
            return APP_IMAP
    return PARSE_NO


# ---------------------------------------------------------------------------------------------------
# QUIC: decrypt the client's Initial packets (RFC 9001 / RFC 9369) and read the ClientHello

cdef extern from *:
    """
    static const unsigned char ngfw_quic_salt_v1[20] = {0x38,0x76,0x2c,0xf7,0xf5,0x59,0x34,0xb3,0x4d,0x17,
        0x9a,0xe6,0xa4,0xc8,0x0c,0xad,0xcc,0xbb,0x7f,0x0a};
    static const unsigned char ngfw_quic_salt_v2[20] = {0x0d,0xed,0xe3,0xde,0xf7,0x00,0xa6,0xdb,0x81,0x93,
        0x81,0xbe,0x6e,0x26,0x9d,0xcb,0xf9,0xbd,0x2e,0xd9};
    static const unsigned char ngfw_quic_salt_d29[20] = {0xaf,0xbf,0xec,0x28,0x99,0x93,0xd2,0x4c,0x9e,0x97,
        0x86,0xf1,0x9c,0x61,0x11,0xe0,0x43,0x90,0xa8,0x99};
    static const unsigned char ngfw_quic_salt_d23[20] = {0xc3,0xee,0xf7,0x12,0xc7,0x2e,0xbb,0x5a,0x11,0xa7,
        0xd2,0x43,0x2b,0xb4,0x63,0x65,0xbe,0xf9,0xf5,0x02};
    static const unsigned char ngfw_quic_salt_d22[20] = {0x7f,0xbc,0xdb,0x0e,0x7c,0x66,0xbb,0xe9,0x19,0x3a,
        0x96,0xcd,0x21,0x51,0x9e,0xbd,0x7a,0x02,0x64,0x4a};
    static const unsigned char ngfw_quic_salt_q050[20] = {0x50,0x45,0x74,0xef,0xd0,0x66,0xfe,0x2f,0x9d,0x94,
        0x5c,0xfc,0xdb,0xd3,0xa7,0xf0,0xd3,0xb5,0x6b,0x45};
    static const unsigned char ngfw_quic_salt_t050[20] = {0x7f,0xf5,0x79,0xe5,0xac,0xd0,0x72,0x91,0x55,0x80,
        0x30,0x4c,0x43,0xa2,0x36,0x7c,0x60,0x48,0x83,0x10};
    static const unsigned char ngfw_quic_salt_t051[20] = {0x7a,0x4e,0xde,0xf4,0xe7,0xcc,0xee,0x5f,0xa4,0x50,
        0x6c,0x19,0x12,0x4f,0xc8,0xcc,0xda,0x6e,0x03,0x3d};
    """
    const unsigned char ngfw_quic_salt_v1[20]
    const unsigned char ngfw_quic_salt_v2[20]
    const unsigned char ngfw_quic_salt_d29[20]
    const unsigned char ngfw_quic_salt_d23[20]
    const unsigned char ngfw_quic_salt_d22[20]
    const unsigned char ngfw_quic_salt_q050[20]
    const unsigned char ngfw_quic_salt_t050[20]
    const unsigned char ngfw_quic_salt_t051[20]

cdef enum:
    QUIC_V1 = 0x00000001
    QUIC_V2 = 0x6B3343CF
    QUIC_V2_DRAFT = 0x709A50C4   # QUIC v2 drafts' codepoint: read with the final keys (the later drafts'; the
                                 # early ones' Initials stay quic without a host)
    GQUIC_Q050 = 0x51303530   # Google QUIC with an encrypted Initial: QUIC crypto's CHLO inside
    GQUIC_T050 = 0x54303530   # ... and with TLS inside
    GQUIC_T051 = 0x54303531
    MVFST_D22 = 0xFACEB001    # Facebook's mvfst, draft-22 keys
    MVFST_D27 = 0xFACEB002    # ... draft-27 keys, and its experimental version
    MVFST_EXP = 0xFACEB00E
    QS_DCID_LEN = 1       # scratch layout while a QUIC ClientHello is being reassembled ('Q' at 0)
    QS_DCID = 2
    QS_NRANGES = 22
    QS_RANGES = 24        # up to QS_MAXRANGES (start, end) pairs of u16, filled CRYPTO byte ranges
    QS_MAXRANGES = 8
    QS_DATA = 64
    QS_CAP = SCRATCH_MAX - QS_DATA - 1


cdef const unsigned char *_quic_salt(uint32_t v) noexcept nogil:
    if v == QUIC_V1 or v == 0xFF000021U or v == 0xFF000022U:
        return ngfw_quic_salt_v1
    if v == QUIC_V2 or v == QUIC_V2_DRAFT:
        return ngfw_quic_salt_v2
    if v >= 0xFF00001DU and v <= 0xFF000020U:
        return ngfw_quic_salt_d29
    if v >= 0xFF000017U and v <= 0xFF00001CU or v == MVFST_D27 or v == MVFST_EXP:
        return ngfw_quic_salt_d23
    if v == MVFST_D22:
        return ngfw_quic_salt_d22
    if v == GQUIC_Q050:
        return ngfw_quic_salt_q050
    if v == GQUIC_T050:
        return ngfw_quic_salt_t050
    if v == GQUIC_T051:
        return ngfw_quic_salt_t051
    return NULL


cdef inline bint _gquic_encrypted(uint32_t v) noexcept nogil:
    # Google's versions whose Initial is protected like IETF QUIC's but whose frames are Google's
    return v == GQUIC_Q050 or v == GQUIC_T050 or v == GQUIC_T051


cdef bint _quic_known_version(uint32_t v) noexcept nogil:
    if _quic_salt(v) != NULL:
        return True
    if (v & 0xFFFFFFF0U) == 0xFACEB000U:     # mvfst
        return True
    if (v & 0x0F0F0F0F) == 0x0A0A0A0A:     # reserved versions a client sends to force version negotiation
        return True
    # Google QUIC 'Q0xx' / 'T0xx'
    if ((v >> 24) == 81 or (v >> 24) == 84) and ((v >> 16) & 0xFF) == 48 and 48 <= ((v >> 8) & 0xFF) <= 57:
        return True
    return False


cdef bint _hkdf_expand_label(const uint8_t *secret, const char *label, uint8_t *out, uint32_t outlen) noexcept nogil:
    # HKDF-Expand-Label (RFC 8446 7.1) with an empty context, for outputs of at most one SHA-256 block
    cdef uint8_t info[80]
    cdef uint8_t md[32]
    cdef unsigned int mdlen = 0
    cdef uint32_t ll = 0, k
    while label[ll] != 0:
        ll += 1
    ngfw_put_be16(info, <uint16_t>outlen)
    info[2] = <uint8_t>(6 + ll)
    memcpy(info + 3, b"tls13 ", 6)
    memcpy(info + 9, label, ll)
    k = 9 + ll
    info[k] = 0
    info[k + 1] = 1
    if HMAC(EVP_sha256(), secret, 32, info, k + 2, md, &mdlen) == NULL:
        return False
    memcpy(out, md, outlen)
    return True


cdef bint _quic_keys(uint32_t version, const uint8_t *dcid, uint32_t dcid_len, uint8_t *key, uint8_t *iv,
                     uint8_t *hp) noexcept nogil:
    cdef const unsigned char *salt = _quic_salt(version)
    cdef uint8_t initial[32]
    cdef uint8_t client[32]
    cdef unsigned int mdlen = 0
    if salt == NULL:
        return False
    if HMAC(EVP_sha256(), salt, 20, dcid, dcid_len, initial, &mdlen) == NULL:
        return False
    if not _hkdf_expand_label(initial, "client in", client, 32):
        return False
    if version == QUIC_V2 or version == QUIC_V2_DRAFT:
        return (_hkdf_expand_label(client, "quicv2 key", key, 16) and _hkdf_expand_label(client, "quicv2 iv", iv, 12)
                and _hkdf_expand_label(client, "quicv2 hp", hp, 16))
    return (_hkdf_expand_label(client, "quic key", key, 16) and _hkdf_expand_label(client, "quic iv", iv, 12)
            and _hkdf_expand_label(client, "quic hp", hp, 16))


cdef int _varint(const uint8_t *p, uint32_t n, uint32_t *off, uint64_t *v) noexcept nogil:
    cdef uint32_t l, i
    cdef uint64_t x
    if off[0] >= n:
        return -1
    l = 1u << (p[off[0]] >> 6)
    if off[0] + l > n:
        return -1
    x = p[off[0]] & 0x3F
    for i in range(1, l):
        x = (x << 8) | p[off[0] + i]
    off[0] += l
    v[0] = x
    return 0


cdef int _quic_decrypt(const uint8_t *pkt, uint32_t pn_off, uint32_t end, const uint8_t *key, const uint8_t *iv,
                       const uint8_t *hp, uint8_t *out, uint32_t *out_len) noexcept nogil:
    # Remove header protection and open the AEAD payload of one long-header packet pkt[0:end]. 0 ok.
    cdef uint8_t mask[32]
    cdef uint8_t hdr[64 + 20 + 20 + 16]
    cdef uint8_t nonce[12]
    cdef uint8_t tag[16]
    cdef uint32_t pn_len, i, ct_len
    cdef int outl = 0, ok = 0
    cdef EVP_CIPHER_CTX *ctx
    if pn_off + 4 + 16 > end or pn_off + 4 > sizeof(hdr):
        return -1
    ctx = EVP_CIPHER_CTX_new()
    if ctx == NULL:
        return -1
    if EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), NULL, hp, NULL) != 1 or EVP_EncryptUpdate(ctx, mask, &outl, pkt + pn_off + 4, 16) != 1:
        EVP_CIPHER_CTX_free(ctx)
        return -1
    memcpy(hdr, pkt, pn_off + 4)
    hdr[0] ^= mask[0] & 0x0F
    pn_len = (hdr[0] & 3) + 1
    for i in range(pn_len):
        hdr[pn_off + i] ^= mask[1 + i]
    memcpy(nonce, iv, 12)
    for i in range(pn_len):
        nonce[12 - pn_len + i] ^= hdr[pn_off + i]
    if pn_off + pn_len + 16 > end:
        EVP_CIPHER_CTX_free(ctx)
        return -1
    ct_len = end - (pn_off + pn_len) - 16
    if ct_len > 1500:
        EVP_CIPHER_CTX_free(ctx)
        return -1
    memcpy(tag, pkt + end - 16, 16)
    if EVP_DecryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, nonce) == 1 \
            and EVP_DecryptUpdate(ctx, NULL, &outl, hdr, pn_off + pn_len) == 1 \
            and EVP_DecryptUpdate(ctx, out, &outl, pkt + pn_off + pn_len, ct_len) == 1 \
            and EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1 \
            and EVP_DecryptFinal_ex(ctx, out + outl, &outl) == 1:
        ok = 1
    EVP_CIPHER_CTX_free(ctx)
    if not ok:
        return -1
    out_len[0] = ct_len
    return 0


cdef void _quic_store(uint8_t *s, uint64_t off, const uint8_t *data, uint64_t len) noexcept nogil:
    # copy a CRYPTO frame's bytes into the reassembly buffer and record the range
    cdef uint32_t start, end, nr, i, j
    if off >= QS_CAP or len == 0:
        return
    start = <uint32_t>off
    end = <uint32_t>(off + len) if off + len <= QS_CAP else QS_CAP
    memcpy(s + QS_DATA + start, data, end - start)
    nr = s[QS_NRANGES]
    if nr >= QS_MAXRANGES:
        return
    ngfw_put_be16(s + QS_RANGES + 4 * nr, <uint16_t>start)
    ngfw_put_be16(s + QS_RANGES + 4 * nr + 2, <uint16_t>end)
    s[QS_NRANGES] = nr + 1


cdef uint32_t _quic_contiguous(uint8_t *s) noexcept nogil:
    # length of the gap-free prefix of the reassembled CRYPTO stream
    cdef uint32_t have = 0, nr = s[QS_NRANGES], i, a, b
    cdef bint grew = True
    while grew:
        grew = False
        for i in range(nr):
            a = ngfw_be16(s + QS_RANGES + 4 * i)
            b = ngfw_be16(s + QS_RANGES + 4 * i + 2)
            if a <= have and b > have:
                have = b
                grew = True
    return have


cdef int _quic_frames(uint8_t *s, const uint8_t *pt, uint32_t n, bint gquic) noexcept nogil:
    # walk the frames of a decrypted Initial payload, storing CRYPTO data. 0 ok, -1 malformed. `gquic`:
    # Google's Q050/T05x, whose crypto frame is type 0x08 (same layout) after an optional ACK (0x40, 0x60)
    cdef uint32_t off = 0
    cdef uint64_t t, a, b, cnt, i
    while off < n:
        t = pt[off]
        if t == 0x00 or t == 0x01:
            off += 1
            continue
        if gquic and (t == 0x40 or t == 0x60):
            off += 6 if t == 0x40 else 9
            continue
        if t == 0x06 and not gquic or t == 0x08 and gquic:
            off += 1
            if _varint(pt, n, &off, &a) != 0 or _varint(pt, n, &off, &b) != 0 or off + b > n:
                return -1
            _quic_store(s, a, pt + off, b)
            off += <uint32_t>b
            continue
        if t == 0x02 or t == 0x03:
            off += 1
            if _varint(pt, n, &off, &a) != 0 or _varint(pt, n, &off, &a) != 0 or _varint(pt, n, &off, &cnt) != 0 \
                    or _varint(pt, n, &off, &a) != 0 or cnt > 256:
                return -1
            for i in range(cnt * 2 + (3 if t == 0x03 else 0)):
                if _varint(pt, n, &off, &a) != 0:
                    return -1
            continue
        if t == 0x1C or t == 0x1D:
            return 0
        return -1
    return 0


cdef inline uint32_t _le32(const uint8_t *p) noexcept nogil:
    return <uint32_t>p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef bint _gquic_clear(uint32_t version) noexcept nogil:
    # Google QUIC Q0xx up to Q046 sends its client hello in clear (Q050 and T0xx encrypt the Initial)
    cdef uint32_t tens = (version >> 8) & 0xFF, ones = version & 0xFF
    if (version >> 24) != 81 or ((version >> 16) & 0xFF) != 48 or not (48 <= tens <= 57 and 48 <= ones <= 57):
        return False
    return (tens - 48) * 10 + (ones - 48) <= 46


cdef void gquic_chlo_host(const uint8_t *p, uint32_t n, appmeta_t *m) noexcept nogil:
    """The SNI of a Google QUIC client hello (sent in clear up to Q046, in the decrypted Initial's crypto frames
    from Q050): the "CHLO" message right after the packet and frame headers, a tag table (tag, end offset;
    little-endian) then the values; "SNI\\0" names the host."""
    cdef uint32_t i, start, tags, entries, values, prev = 0, end
    for start in range(min(n, 80)):
        if start + 8 <= n and p[start] == 67 and p[start + 1] == 72 and p[start + 2] == 76 and p[start + 3] == 79:
            break
    else:
        return
    tags = p[start + 4] | (<uint32_t>p[start + 5] << 8)
    if tags == 0 or tags > 64:
        return
    entries = start + 8
    values = entries + 8 * tags
    if values > n:
        return
    for i in range(tags):
        end = _le32(p + entries + 8 * i + 4)
        if end < prev or values + end > n:
            return   # offsets must grow and stay inside the packet
        if p[entries + 8 * i] == 83 and p[entries + 8 * i + 1] == 78 and p[entries + 8 * i + 2] == 73 \
                and p[entries + 8 * i + 3] == 0:
            if end > prev:
                _set_host(m, p + values + prev, end - prev)
            return
        prev = end


cdef int parse_quic(appctx_t *c) noexcept nogil:
    """QUIC long-header Initial of a known version: derive the client Initial keys from the original DCID,
    decrypt, reassemble CRYPTO frames in scratch and read the ClientHello (SNI, ALPN). Versions without
    keys here (mvfst, Google QUIC) and undecryptable Initials are still quic, without a host."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, off, dcid_len, scid_len, pn_off, end, have, hs_len, pt_len = 0
    cdef uint32_t version
    cdef uint64_t tok_len, length
    cdef uint8_t *s = c.scratch
    cdef uint8_t key[16]
    cdef uint8_t iv[12]
    cdef uint8_t hp[16]
    cdef uint8_t pt[1536]
    cdef uint8_t ptype
    cdef int r
    if n < 7:
        return PARSE_NO
    if (p[0] & 0x80) == 0:
        # Google QUIC (Q043 and older): public flags with the version bit, 8-byte connection id, 'Q0xx'
        if c.to_server and (p[0] & 0x01) and (p[0] & 0x08) and (p[0] & 0xC0) == 0 and n >= 13 \
                and p[9] == 81 and p[10] == 48 and 48 <= p[11] <= 57 and 48 <= p[12] <= 57:
            gquic_chlo_host(p + 13, n - 13, c.meta)
            return APP_QUIC
        return PARSE_NO
    version = ngfw_be32(p + 1)
    if not _quic_known_version(version):
        return PARSE_NO
    if _gquic_clear(version):
        # Q046: a long header whose connection id lengths are nibbles, the client hello in clear after it
        if c.to_server:
            gquic_chlo_host(p + 5, n - 5, c.meta)
        return APP_QUIC
    dcid_len = p[5]
    if dcid_len > 20 or 6 + dcid_len >= n:
        return PARSE_NO
    scid_len = p[6 + dcid_len]
    if scid_len > 20 or 7 + dcid_len + scid_len > n:
        return PARSE_NO
    off = 7 + dcid_len + scid_len
    ptype = (p[0] >> 4) & 3
    if (p[0] & 0x40) == 0 or c.to_server == 0 or _quic_salt(version) == NULL:
        return APP_QUIC
    if ptype != (1 if version == QUIC_V2 or version == QUIC_V2_DRAFT else 0):
        return APP_QUIC if s[0] != 81 else PARSE_NEED_MORE
    if _varint(p, n, &off, &tok_len) != 0 or off + tok_len > n:
        return PARSE_NO
    off += <uint32_t>tok_len
    if _varint(p, n, &off, &length) != 0 or off + length > n or length < 20:
        return PARSE_NO
    pn_off = off
    end = off + <uint32_t>length
    if s[0] != 81:
        if s[0] != 0:
            return APP_QUIC
        memset(s, 0, QS_DATA)
        s[0] = 81
        s[QS_DCID_LEN] = <uint8_t>dcid_len
        memcpy(s + QS_DCID, p + 6, dcid_len)
    if not _quic_keys(version, s + QS_DCID, s[QS_DCID_LEN], key, iv, hp):
        return APP_QUIC
    if _quic_decrypt(p, pn_off, end, key, iv, hp, pt, &pt_len) != 0:
        # after a Retry the client switches to the DCID the server chose
        if not _quic_keys(version, p + 6, dcid_len, key, iv, hp) \
                or _quic_decrypt(p, pn_off, end, key, iv, hp, pt, &pt_len) != 0:
            return APP_QUIC
    if _quic_frames(s, pt, pt_len, _gquic_encrypted(version)) != 0:
        return APP_QUIC
    have = _quic_contiguous(s)
    if have < 4:
        return _tentative(c, APP_QUIC) if c.pkt_index < 3 else APP_QUIC
    if version == GQUIC_Q050:
        gquic_chlo_host(s + QS_DATA, have, c.meta)   # QUIC crypto's client hello, not TLS's
        if c.meta.host_len == 0 and c.pkt_index < 3 and have < QS_CAP:
            return _tentative(c, APP_QUIC)
        return APP_QUIC
    if s[QS_DATA] != 1:
        return APP_QUIC
    hs_len = _be24(s + QS_DATA + 1)
    r = _tls_hello(s + QS_DATA + 4, have - 4, hs_len, True, c.meta)
    if r == 0 and c.meta.host_len == 0 and c.pkt_index < 3 and have < QS_CAP:
        return _tentative(c, APP_QUIC)
    if r < 0:
        c.meta.host_len = 0
        c.meta.alpn_len = 0
    return APP_QUIC


# ---------------------------------------------------------------------------------------------------
# dispatcher

cdef inline int _try(int r, int *need) noexcept nogil:
    if r == PARSE_NEED_MORE:
        need[0] = 1
    return r


cdef int appid_parse(appctx_t *c) noexcept nogil:
    """Try the parsers that could match this payload, cheapest and most specific first; the first positive
    answer wins, else NEED_MORE when any parser asked for more bytes, else PARSE_NO."""
    cdef int r, need = 0
    cdef uint8_t b0
    if c.l4proto == 6:
        if c.stream_len == 0:
            return PARSE_NO
        b0 = c.stream[0]
        if b0 >= 20 and b0 <= 23:
            r = _try(parse_tls(c), &need)
            if r > 0:
                return r
        if b0 >= 32 and b0 < 127:
            if b0 == 83:
                r = _try(parse_ssh(c), &need)
                if r > 0:
                    return r
            if b0 >= 65 and b0 <= 90:
                r = _try(parse_http(c), &need)
                if r > 0:
                    return r
            if c.server_port == 43:
                r = _try(parse_whois(c), &need)
                if r > 0:
                    return r
            r = _try(parse_mail_ftp(c), &need)
            if r > 0:
                return r
        if b0 == 0:
            r = _try(parse_smb(c), &need)
            if r > 0:
                return r
            r = _try(parse_kerberos(c), &need)
            if r > 0:
                return r
            r = parse_postgresql(c)
            if r > 0:
                return r
        if b0 <= 0x12:
            r = _try(parse_mssql(c), &need)
            if r > 0:
                return r
        if b0 == 0x30:
            r = _try(parse_ldap(c), &need)
            if r > 0:
                return r
        if b0 == 0x81 or b0 == 0x82 or b0 == 0x83 or b0 == 0x85:
            r = _try(parse_netbios(c), &need)
            if r > 0:
                return r
        if b0 == 0xFF:
            r = parse_bgp(c)
            if r > 0:
                return r
            r = parse_telnet(c)
            if r > 0:
                return r
        if b0 == 3:
            r = parse_tpkt(c)
            if r > 0:
                return r
        if b0 == 4 or b0 == 5:
            r = parse_socks(c)
            if r > 0:
                return r
        r = parse_mysql(c)
        if r > 0:
            return r
        r = parse_stun(c)
        if r > 0:
            return r
        r = parse_radius(c)
        if r > 0:
            return r
        r = parse_dns(c)
        if r > 0:
            return r
        if r == PARSE_NEED_MORE and _either_port(c, 53):
            need = 1
        r = _try(parse_openvpn(c), &need)
        if r > 0:
            return r
        if b0 >= 0x81 and b0 <= 0x8A:
            r = _try(parse_websocket(c), &need)
            if r > 0:
                return r
        return PARSE_NEED_MORE if need else PARSE_NO
    if c.l4proto == 17:
        if c.payload_len == 0:
            return PARSE_NO
        b0 = c.payload[0]
        if b0 >= 0xC0 or (b0 & 0x89) == 0x09:
            r = _try(parse_quic(c), &need)
            if r > 0:
                return r
        if b0 < 4:
            r = parse_stun(c)
            if r > 0:
                return r
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
        if (b0 >= 20 and b0 <= 25) or b0 == 0x16:
            r = parse_dtls(c)
            if r > 0:
                return r
        if b0 == 1 or b0 == 2:
            r = parse_dhcp(c)
            if r > 0:
                return r
        r = parse_radius(c)
        if r > 0:
            return r
        if b0 == 0x30:
            r = parse_snmp(c)
            if r > 0:
                return r
        if b0 == 0:
            r = parse_tftp(c)
            if r > 0:
                return r
        r = parse_dhcpv6(c)
        if r > 0:
            return r
        r = parse_ntp(c)
        if r > 0:
            return r
        if (b0 & 0xC0) == 0x80:
            r = _try(parse_rtp(c), &need)
            if r > 0:
                return r
        r = _try(parse_openvpn(c), &need)
        if r > 0:
            return r
        if b0 >= 65 and b0 <= 90 or b0 == 42 or b0 == 43:
            r = parse_mail_ftp(c)
        return PARSE_NEED_MORE if need else PARSE_NO
    return PARSE_NO
