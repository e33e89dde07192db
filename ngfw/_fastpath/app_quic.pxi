# App-ID parser of QUIC: decrypt the client's Initial packets (RFC 9001 / RFC 9369, the drafts, Facebook's
# mvfst, Google's Q050/T05x) and read the ClientHello they carry, reassembled from CRYPTO frames in the flow's
# scratch; Google QUIC up to Q046 sends its client hello in clear. The SNI is the flow's host.


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
    QS_DCID_LEN = 1       # scratch layout while a QUIC ClientHello is being reassembled (its owner mark at 0)
    QS_DCID = 2
    QS_NRANGES = 22
    QS_INITIALS = 23      # client Initial packets read
    QS_SERVER = 24        # server packets seen while the hello was still incomplete
    QS_RANGES = 28        # up to QS_MAXRANGES (start, end) pairs of u16: the CRYPTO bytes held, sorted, merged
    QS_MAXRANGES = 24
    QS_DATA = 128         # the CRYPTO bytes themselves when the flow has no reassembly room (appctx_t.reasm)
    QS_INLINE_CAP = SCRATCH_MAX - QS_DATA - 1
    QS_MAX_INITIALS = 6   # client Initials read for one hello (Chrome's post-quantum hello takes 2; 8 KiB takes 7)
    QS_MAX_SERVER = 3     # server packets waited through for the rest of a hello


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
    if ((v >> 24) == b'Q' or (v >> 24) == b'T') and ((v >> 16) & 0xFF) == b'0' and b'0' <= ((v >> 8) & 0xFF) <= b'9':
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
    if (EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), NULL, hp, NULL) != 1
            or EVP_EncryptUpdate(ctx, mask, &outl, pkt + pn_off + 4, 16) != 1):
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


cdef inline uint8_t *_quic_buf(appctx_t *c, uint32_t *cap) noexcept nogil:
    # where the CRYPTO stream is reassembled: the flow's reassembly room, else the scratch's tail
    if c.reasm != NULL:
        cap[0] = c.reasm_cap
        return c.reasm
    cap[0] = QS_INLINE_CAP
    return c.scratch + QS_DATA


cdef void _quic_store(uint8_t *s, uint8_t *buf, uint32_t cap, uint64_t off, const uint8_t *data,
                      uint64_t len) noexcept nogil:
    """Put a CRYPTO frame's bytes at their offset (bytes held already keep their first copy, as a receiver's
    stream does) and merge its range into the sorted list; beyond `cap` bytes the stream is cut. When the
    list is full (a sender cutting the hello into more than QS_MAXRANGES disjoint runs) the frame is left
    out: the hello stays incomplete, the flow quic without a host."""
    cdef uint32_t start, end, nr = s[QS_NRANGES], i, k = 0, a, b, pos, lo, hi
    cdef uint32_t keep_a[QS_MAXRANGES]
    cdef uint32_t keep_b[QS_MAXRANGES]
    cdef bint placed = False
    if off >= cap or len == 0:
        return
    start = <uint32_t>off
    end = <uint32_t>(off + len) if off + len <= cap else cap
    lo = start
    hi = end
    for i in range(nr):
        a = ngfw_be16(s + QS_RANGES + 4 * i)
        b = ngfw_be16(s + QS_RANGES + 4 * i + 2)
        if b < start or a > end:
            if a > end and not placed:
                if k >= QS_MAXRANGES:
                    return
                keep_a[k] = lo
                keep_b[k] = hi
                k += 1
                placed = True
            if k >= QS_MAXRANGES:
                return
            keep_a[k] = a
            keep_b[k] = b
            k += 1
        else:
            lo = a if a < lo else lo
            hi = b if b > hi else hi
    if not placed:
        if k >= QS_MAXRANGES:
            return
        keep_a[k] = lo
        keep_b[k] = hi
        k += 1
    # copy into the gaps only
    pos = start
    for i in range(nr):
        a = ngfw_be16(s + QS_RANGES + 4 * i)
        b = ngfw_be16(s + QS_RANGES + 4 * i + 2)
        if b <= pos or a >= end:
            continue
        if a > pos:
            memcpy(buf + pos, data + (pos - start), a - pos)
        pos = b
        if pos >= end:
            break
    if pos < end:
        memcpy(buf + pos, data + (pos - start), end - pos)
    for i in range(k):
        ngfw_put_be16(s + QS_RANGES + 4 * i, <uint16_t>keep_a[i])
        ngfw_put_be16(s + QS_RANGES + 4 * i + 2, <uint16_t>keep_b[i])
    s[QS_NRANGES] = <uint8_t>k


cdef inline uint32_t _quic_contiguous(const uint8_t *s) noexcept nogil:
    # length of the gap-free prefix of the reassembled CRYPTO stream (the ranges are sorted and merged)
    if s[QS_NRANGES] == 0 or ngfw_be16(s + QS_RANGES) != 0:
        return 0
    return ngfw_be16(s + QS_RANGES + 2)


cdef int _quic_frames(uint8_t *s, uint8_t *buf, uint32_t cap, const uint8_t *pt, uint32_t n,
                      bint gquic) noexcept nogil:
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
            _quic_store(s, buf, cap, a, pt + off, b)
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


cdef bint _gquic_clear(uint32_t version) noexcept nogil:
    # Google QUIC Q0xx up to Q046 sends its client hello in clear (Q050 and T0xx encrypt the Initial)
    cdef uint32_t tens = (version >> 8) & 0xFF, ones = version & 0xFF
    if (version >> 24) != b'Q' or ((version >> 16) & 0xFF) != b'0' \
            or not (b'0' <= tens <= b'9' and b'0' <= ones <= b'9'):
        return False
    return (tens - c'0') * 10 + (ones - c'0') <= 46


cdef void gquic_chlo_host(const uint8_t *p, uint32_t n, appmeta_t *m) noexcept nogil:
    """The SNI of a Google QUIC client hello (sent in clear up to Q046, in the decrypted Initial's crypto frames
    from Q050): the "CHLO" message right after the packet and frame headers, a tag table (tag, end offset;
    little-endian) then the values; "SNI\\0" names the host."""
    cdef uint32_t i, start, tags, entries, values, prev = 0, end
    for start in range(min(n, 80)):
        if start + 8 <= n and _starts(p + start, 4, "CHLO"):
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
        if _starts(p + entries + 8 * i, 3, "SNI") and p[entries + 8 * i + 3] == 0:
            if end > prev:
                _set_host(m, p + values + prev, end - prev)
            return
        prev = end


cdef int _quic_read_initial(appctx_t *c, const uint8_t *p, uint32_t n, uint32_t version,
                            uint32_t *used) noexcept nogil:
    """One long-header packet p[0:n] of the client's (of a version with keys): when it is an Initial, decrypt it
    and store its CRYPTO frames. `used`: the packet's length (a datagram may coalesce several). 1 read,
    0 not an Initial or not decryptable, -1 malformed."""
    cdef uint32_t off, dcid_len, scid_len, pn_off, end, pt_len = 0, cap
    cdef uint64_t tok_len, length
    cdef uint8_t *s = c.scratch
    cdef uint8_t *buf
    cdef uint8_t key[16]
    cdef uint8_t iv[12]
    cdef uint8_t hp[16]
    cdef uint8_t pt[1536]
    used[0] = n
    dcid_len = p[5]
    if dcid_len > 20 or 6 + dcid_len >= n:
        return -1
    scid_len = p[6 + dcid_len]
    if scid_len > 20 or 7 + dcid_len + scid_len > n:
        return -1
    off = 7 + dcid_len + scid_len
    if ((p[0] >> 4) & 3) != (1 if version == QUIC_V2 or version == QUIC_V2_DRAFT else 0):
        return 0
    if _varint(p, n, &off, &tok_len) != 0 or off + tok_len > n:
        return -1
    off += <uint32_t>tok_len
    if _varint(p, n, &off, &length) != 0 or off + length > n or length < 20:
        return -1
    pn_off = off
    end = off + <uint32_t>length
    used[0] = end
    if s[0] != NGFW_SCRATCH_QUIC:
        if s[0] != 0:
            return 0
        memset(s, 0, QS_DATA)
        s[0] = NGFW_SCRATCH_QUIC
        s[QS_DCID_LEN] = <uint8_t>dcid_len
        memcpy(s + QS_DCID, p + 6, dcid_len)
    if not _quic_keys(version, s + QS_DCID, s[QS_DCID_LEN], key, iv, hp):
        return 0
    if _quic_decrypt(p, pn_off, end, key, iv, hp, pt, &pt_len) != 0:
        # after a Retry the client switches to the DCID the server chose
        if not _quic_keys(version, p + 6, dcid_len, key, iv, hp) \
                or _quic_decrypt(p, pn_off, end, key, iv, hp, pt, &pt_len) != 0:
            return 0
    if s[QS_INITIALS] < 255:
        s[QS_INITIALS] += 1
    buf = _quic_buf(c, &cap)
    if _quic_frames(s, buf, cap, pt, pt_len, _gquic_encrypted(version)) != 0:
        return 0
    return 1


cdef int _quic_hello(appctx_t *c, uint32_t version) noexcept nogil:
    """Read the ClientHello from the CRYPTO stream reassembled so far: quic, with its SNI and ALPN once the
    hello is whole (or its SNI when no more of it will come); tentative while more Initials may bring the
    rest."""
    cdef uint8_t *s = c.scratch
    cdef uint32_t cap, have, hs_len
    cdef uint8_t *buf = _quic_buf(c, &cap)
    cdef bint more
    cdef int r
    have = _quic_contiguous(s)
    more = s[QS_INITIALS] < QS_MAX_INITIALS and have < cap and s[QS_SERVER] < QS_MAX_SERVER
    if have < 4:
        return _tentative(c, APP_QUIC) if more else APP_QUIC
    if version == GQUIC_Q050:
        gquic_chlo_host(buf, have, c.meta)   # QUIC crypto's client hello, not TLS's
        if c.meta.host_len == 0 and more:
            return _tentative(c, APP_QUIC)
        return APP_QUIC
    if buf[0] != 1:
        return APP_QUIC
    hs_len = _be24(buf + 1)
    r = _tls_hello(buf + 4, have - 4, hs_len, True, c.meta)
    if r == 0 and more:
        return _tentative(c, APP_QUIC)
    if r < 0:
        c.meta.host_len = 0
        c.meta.alpn_len = 0
    return APP_QUIC


cdef int parse_quic(appctx_t *c) noexcept nogil:
    """QUIC long-header Initial of a known version: derive the client Initial keys from the original DCID,
    decrypt, reassemble the CRYPTO stream over the flow's Initial packets (frames in any order, in any of
    them, coalesced or not) and read the ClientHello (SNI, ALPN). Versions without keys here (mvfst, Google
    QUIC) and undecryptable Initials are still quic, without a host."""
    cdef const uint8_t *p = c.payload
    cdef uint32_t n = c.payload_len, at = 0, used = 0
    cdef uint32_t version
    cdef uint8_t *s = c.scratch
    cdef int r
    if n < 7:
        return PARSE_NO
    if (p[0] & 0x80) == 0:
        # Google QUIC (Q043 and older): public flags with the version bit, 8-byte connection id, 'Q0xx'
        if c.to_server and (p[0] & 0x01) and (p[0] & 0x08) and (p[0] & 0xC0) == 0 and n >= 13 \
                and p[9] == b'Q' and p[10] == b'0' and b'0' <= p[11] <= b'9' and b'0' <= p[12] <= b'9':
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
    if p[5] > 20 or 6 + p[5] >= n or p[6 + p[5]] > 20 or 7 + p[5] + p[6 + p[5]] > n:
        return PARSE_NO
    if (p[0] & 0x40) == 0 or _quic_salt(version) == NULL:
        return APP_QUIC
    if c.to_server == 0:
        # the server answers while the client's hello is incomplete: its rest may still come (reordered, or
        # retransmitted after the server's ACK), for a few packets
        if s[0] != NGFW_SCRATCH_QUIC or c.meta.host_len:
            return APP_QUIC
        s[QS_SERVER] += 1
        return _quic_hello(c, version)
    while at + 7 <= n:
        r = _quic_read_initial(c, p + at, n - at, version, &used)
        if r < 0:
            if at == 0:
                return PARSE_NO
            break
        at += used
        # a coalesced packet of the same version may follow (another Initial, or 0-RTT which is skipped)
        if at + 7 > n or (p[at] & 0xC0) != 0xC0 or ngfw_be32(p + at + 1) != version:
            break
    if s[0] != NGFW_SCRATCH_QUIC or s[QS_INITIALS] == 0:
        return APP_QUIC     # nothing decrypted: the later Initials would not either
    return _quic_hello(c, version)
