# TLS server certificates for inspection (tls.certs, tls.cert_subject, tls.cert_issuer, tls.cert_serial,
# tls.cert_fingerprint). Up to TLS 1.2 the server's Certificate message travels in clear, over several
# TCP segments: the server's first handshake bytes are assembled in a buffer from a small shared pool
# (only flows between ServerHello and Certificate hold one), then the leaf certificate is read with
# OpenSSL and formatted the way Suricata prints it. TLS 1.3 encrypts certificates: nothing to see.

cdef extern from "openssl/x509.h" nogil:
    ctypedef struct X509:
        pass
    ctypedef struct X509_NAME:
        pass
    ctypedef struct ASN1_INTEGER:
        int length
        unsigned char *data
    ctypedef struct BIO:
        pass
    ctypedef struct BIO_METHOD:
        pass
    X509 *d2i_X509(X509 **px, const unsigned char **inp, long length)
    void X509_free(X509 *x)
    X509_NAME *X509_get_subject_name(const X509 *x)
    X509_NAME *X509_get_issuer_name(const X509 *x)
    ASN1_INTEGER *X509_get_serialNumber(X509 *x)
    int X509_NAME_print_ex(BIO *out, const X509_NAME *nm, int indent, unsigned long flags)
    unsigned long XN_FLAG_SEP_CPLUS_SPC, XN_FLAG_FN_SN, ASN1_STRFLGS_UTF8_CONVERT, XN_FLAG_DUMP_UNKNOWN_FIELDS
    const BIO_METHOD *BIO_s_mem()
    BIO *BIO_new(const BIO_METHOD *t)
    int BIO_free(BIO *a)
    int BIO_read(BIO *b, void *data, int dlen)
    unsigned char *SHA1(const unsigned char *d, size_t n, unsigned char *md)

cdef extern from "openssl/sha.h" nogil:
    pass

cdef uint32_t _hex_colon(const uint8_t *src, uint32_t n, uint8_t *out, bint upper) noexcept nogil:
    cdef const char *digits = b"0123456789ABCDEF" if upper else b"0123456789abcdef"
    cdef uint32_t i, m = 0
    for i in range(n):
        if i:
            out[m] = 58
            m += 1
        out[m] = digits[src[i] >> 4]
        out[m + 1] = digits[src[i] & 15]
        m += 2
    return m

cdef uint32_t _name_text(insws_t *ws, X509_NAME *name, const uint8_t **out) noexcept nogil:
    cdef BIO *bio = BIO_new(BIO_s_mem())
    cdef int n
    cdef uint8_t *dst
    if bio == NULL:
        return 0
    X509_NAME_print_ex(bio, name, 0, XN_FLAG_SEP_CPLUS_SPC | XN_FLAG_FN_SN | ASN1_STRFLGS_UTF8_CONVERT)
    dst = norm_take(ws, 1024)
    n = BIO_read(bio, dst, 1024) if dst != NULL else 0
    BIO_free(bio)
    if n <= 0:
        return 0
    ws.norm_used -= 1024 - n
    out[0] = dst
    return <uint32_t>n

cdef void cert_buffers(insws_t *ws, const uint8_t *der, uint32_t n) noexcept nogil:
    """Fill the certificate buffers from the leaf certificate's DER bytes."""
    cdef const unsigned char *p = der
    cdef X509 *x = d2i_X509(NULL, &p, n)
    cdef const uint8_t *text
    cdef uint32_t m
    cdef ASN1_INTEGER *serial
    cdef uint8_t digest[20]
    cdef uint8_t *dst
    bs_set(&ws.bs, B_TLS_CERTS, der, n)
    dst = norm_take(ws, 60)
    if dst != NULL:
        SHA1(der, n, digest)
        bs_set(&ws.bs, B_TLS_CERT_FINGERPRINT, dst, _hex_colon(digest, 20, dst, False))
    if x == NULL:
        return
    m = _name_text(ws, X509_get_subject_name(x), &text)
    if m:
        bs_set(&ws.bs, B_TLS_CERT_SUBJECT, text, m)
    m = _name_text(ws, X509_get_issuer_name(x), &text)
    if m:
        bs_set(&ws.bs, B_TLS_CERT_ISSUER, text, m)
    serial = X509_get_serialNumber(x)
    if serial != NULL and serial.length > 0 and serial.length <= 64:
        dst = norm_take(ws, <uint32_t>serial.length * 3)
        if dst != NULL:
            bs_set(&ws.bs, B_TLS_CERT_SERIAL, dst, _hex_colon(serial.data, serial.length, dst, True))
    X509_free(x)

cdef int tls_certificate_scan(insws_t *ws, const uint8_t *b, uint32_t n) noexcept nogil:
    """Walk the server's handshake records in b[:n]: 1 a Certificate was found (buffers filled),
    0 need more bytes, -1 nothing to find (not TLS, TLS 1.3, or past the handshake)."""
    cdef uint32_t off = 0, rlen, hoff, hlen, clen, list_len
    while off + 5 <= n:
        if b[off + 1] != 3:
            return -1
        rlen = ngfw_be16(b + off + 3)
        if b[off] != 22:
            return -1                     # ChangeCipherSpec, alert or data: the clear handshake is over
        if off + 5 + rlen > n:
            # the record is still arriving; a Certificate message starting in it can be read once whole
            return 0
        hoff = off + 5
        while hoff + 4 <= off + 5 + rlen:
            hlen = (<uint32_t>b[hoff + 1] << 16) | (<uint32_t>b[hoff + 2] << 8) | b[hoff + 3]
            if b[hoff] == 11:
                if hoff + 4 + hlen > n:
                    return 0
                # certificate_list<0..2^24-1>: the first entry is the server's own certificate
                if hlen < 6:
                    return -1
                list_len = (<uint32_t>b[hoff + 4] << 16) | (<uint32_t>b[hoff + 5] << 8) | b[hoff + 6]
                if list_len < 3 or hoff + 7 + 3 > n:
                    return -1
                clen = (<uint32_t>b[hoff + 7] << 16) | (<uint32_t>b[hoff + 8] << 8) | b[hoff + 9]
                if clen == 0 or hoff + 10 + clen > n or clen + 3 > list_len:
                    return -1
                cert_buffers(ws, b + hoff + 10, clen)
                return 1
            hoff += 4 + hlen
        off += 5 + rlen
    return 0

cdef (const uint8_t *, uint32_t) tls_hello_assemble(insws_t *ws, inspslot_t *s, const uint8_t *d,
                                                    uint32_t n) noexcept nogil:
    """Append a client segment to the ClientHello being assembled: (the hello's records and what follows,
    their length) once it is whole or the buffer full, (NULL, 0) while it is still arriving."""
    cdef asmpool_t *pool = &ws.asm_pool
    if not asm_append(pool, s, d, n) and tls_hello_pending(pool.buf[s.asm], s.asm_len):
        return NULL, 0
    s.asm_kind = ASM_DONE
    return pool.buf[s.asm], s.asm_len

cdef (const uint8_t *, uint32_t) http_head_assemble(insws_t *ws, inspslot_t *s, const uint8_t *d,
                                                    uint32_t n) noexcept nogil:
    """Append a segment to the head being assembled: (the whole head and what follows, its length)
    once complete or full, (NULL, 0) while it is still arriving."""
    cdef asmpool_t *pool = &ws.asm_pool
    if not asm_append(pool, s, d, n) and not http_head_complete(pool.buf[s.asm], s.asm_len):
        return NULL, 0
    s.asm_kind = ASM_DONE
    return pool.buf[s.asm], s.asm_len

cdef void tls_server_bytes(insws_t *ws, inspslot_t *s, const uint8_t *d, uint32_t n) noexcept nogil:
    """In-order bytes of a TLS server: look for its certificate (assembling across segments)."""
    cdef asmpool_t *pool = &ws.asm_pool
    cdef int r
    cdef bint full
    if s.tls_done or n == 0 or (s.asm >= 0 and s.asm_kind != ASM_TLS):
        return
    if s.asm < 0:
        # the common case first: the whole certificate in this one segment
        r = tls_certificate_scan(ws, d, n)
        if r != 0:
            s.tls_done = 1
            return
        if not asm_take(pool, s, ASM_TLS):
            s.tls_done = 1
            return
    full = asm_append(pool, s, d, n)
    r = tls_certificate_scan(ws, pool.buf[s.asm], s.asm_len)
    if r != 0 or full:
        # buffers point into the assembly buffer: it is handed back after this packet (tls_release)
        s.tls_done = 1
