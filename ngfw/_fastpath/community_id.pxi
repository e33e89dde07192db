# The Community ID (v1, seed 0) of a flow, as Suricata's EVE writes it (`community-id: true`):
# "1:" + base64(sha1(seed . lower addr . higher addr . proto . 0 . ports)), ports in the order of
# their addresses. ICMP follows Suricata rather than the spec's one-way rule: the "ports" are the
# first packet's type and its counterpart's type (echo 8 <-> 0, ...; 0 when it has none), and the
# endpoints are always ordered; every other protocol without ports hashes ports 0 and 0. When both
# addresses are the same (loopback captures), Suricata 7 orders the ports by their network-order bytes read
# as a little-endian number (it compares them after htons): so does this, to give the same ID.

cdef extern from "openssl/evp.h" nogil:
    int EVP_EncodeBlock(unsigned char *t, const unsigned char *f, int n)

# SHA-1 of one short message (FIPS 180-4), here rather than libcrypto's SHA1(): OpenSSL 3 looks the
# algorithm up in its provider tables on every one-shot call (~10 us, a tenth of replaying the App-ID
# corpus); a Community ID input (at most 40 bytes) is a single 64-byte block.

cdef inline uint32_t rol32(uint32_t x, int n) noexcept nogil:
    return (x << n) | (x >> (32 - n))

cdef void sha1_one_block(const uint8_t *m, uint32_t n, uint8_t *digest) noexcept nogil:
    """SHA-1 of `n` <= 55 bytes."""
    cdef uint8_t block[64]
    cdef uint32_t w[80]
    cdef uint32_t a = 0x67452301, b = 0xEFCDAB89, c = 0x98BADCFE, d = 0x10325476, e = 0xC3D2E1F0
    cdef uint32_t h0 = a, h1 = b, h2 = c, h3 = d, h4 = e
    cdef uint32_t f, k, t
    cdef uint64_t bits = <uint64_t>n * 8
    cdef int i
    memset(block, 0, 64)
    memcpy(block, m, n)
    block[n] = 0x80
    for i in range(8):
        block[63 - i] = <uint8_t>(bits >> (8 * i))
    for i in range(16):
        w[i] = ngfw_be32(block + 4 * i)
    for i in range(16, 80):
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1)
    for i in range(80):
        if i < 20:
            f = (b & c) | (~b & d)
            k = 0x5A827999
        elif i < 40:
            f = b ^ c ^ d
            k = 0x6ED9EBA1
        elif i < 60:
            f = (b & c) | (b & d) | (c & d)
            k = 0x8F1BBCDC
        else:
            f = b ^ c ^ d
            k = 0xCA62C1D6
        t = rol32(a, 5) + f + e + k + w[i]
        e = d
        d = c
        c = rol32(b, 30)
        b = a
        a = t
    ngfw_put_be32(digest, h0 + a)
    ngfw_put_be32(digest + 4, h1 + b)
    ngfw_put_be32(digest + 8, h2 + c)
    ngfw_put_be32(digest + 12, h3 + d)
    ngfw_put_be32(digest + 16, h4 + e)

cdef enum:
    COMMUNITY_ID_LEN = 30    # "1:" and 28 base64 characters

cdef inline int icmp_counterpart(uint8_t proto, uint8_t t) noexcept nogil:
    """The reply type of a request (and the request of a reply), -1 for a type without one
    (Suricata's ICMPv4GetCounterpart / ICMPv6GetCounterpart)."""
    if proto == P_ICMP:
        if t == 8: return 0
        if t == 0: return 8
        if t == 13: return 14
        if t == 14: return 13
        if t == 15: return 16
        if t == 16: return 15
        if t == 10: return 9
        if t == 9: return 10
        if t == 17: return 18
        if t == 18: return 17
        return -1
    if t == 128: return 129
    if t == 129: return 128
    if t == 135: return 136
    if t == 136: return 135
    if t == 133: return 134
    if t == 134: return 133
    if t == 130: return 131
    if t == 131: return 130
    if t == 139: return 140
    if t == 140: return 139
    if t == 144: return 145
    if t == 145: return 144
    if t == 146: return 147
    if t == 147: return 146
    if t == 148: return 149
    if t == 149: return 148
    if t == 151: return 152
    if t == 152: return 151
    if t == 157: return 158
    if t == 158: return 157
    return -1

cdef inline uint16_t swap16(uint16_t v) noexcept nogil:
    return <uint16_t>((v >> 8) | ((v & 0xff) << 8))

cdef int community_id(char *out, const ip128_t *src, const ip128_t *dst, bint v6, uint8_t proto,
                      uint16_t sport, uint16_t dport, uint8_t icmp_type) noexcept nogil:
    """Write the flow's Community ID to `out` (COMMUNITY_ID_LEN + 1 bytes, NUL-terminated); its length."""
    cdef uint8_t buf[2 + 16 + 16 + 1 + 1 + 2 + 2]
    cdef uint8_t a[16]
    cdef uint8_t b[16]
    cdef uint8_t digest[20]
    cdef uint32_t alen = 16 if v6 else 4
    cdef uint32_t n = 0
    cdef int cmp, counter
    cdef const uint8_t *first
    cdef const uint8_t *second
    cdef uint16_t p1, p2
    # ip128_t holds the address in packet byte order (IPv4 mapped: its 4 bytes end `lo`)
    memcpy(a, &src.hi, 8)
    memcpy(a + 8, &src.lo, 8)
    memcpy(b, &dst.hi, 8)
    memcpy(b + 8, &dst.lo, 8)
    if proto == P_ICMP or proto == P_ICMPV6:
        counter = icmp_counterpart(proto, icmp_type)
        sport = icmp_type
        dport = <uint16_t>counter if counter >= 0 else 0
    elif proto != P_TCP and proto != P_UDP and proto != 132:
        sport = 0
        dport = 0
    cmp = memcmp(a + 16 - alen, b + 16 - alen, alen)
    if cmp < 0 or (cmp == 0 and swap16(sport) < swap16(dport)):
        first, second, p1, p2 = a + 16 - alen, b + 16 - alen, sport, dport
    else:
        first, second, p1, p2 = b + 16 - alen, a + 16 - alen, dport, sport
    buf[0] = 0      # seed 0
    buf[1] = 0
    n = 2
    memcpy(buf + n, first, alen)
    n += alen
    memcpy(buf + n, second, alen)
    n += alen
    buf[n] = proto
    buf[n + 1] = 0
    ngfw_put_be16(buf + n + 2, p1)
    ngfw_put_be16(buf + n + 4, p2)
    n += 6
    sha1_one_block(buf, n, digest)
    out[0] = 49   # "1"
    out[1] = 58   # ":"
    return 2 + EVP_EncodeBlock(<unsigned char *>out + 2, digest, 20)


def community_id_of(str src_ip, str dst_ip, int proto, int sport=0, int dport=0, int icmp_type=0) -> str:
    """The Community ID of a tuple (tests and tools; the engine computes it from its own records)."""
    import ipaddress

    cdef char out[COMMUNITY_ID_LEN + 2]
    cdef ip128_t s = ip_to_c(ipaddress.ip_address(src_ip))
    cdef ip128_t d = ip_to_c(ipaddress.ip_address(dst_ip))
    v6 = ipaddress.ip_address(src_ip).version == 6
    cdef int n = community_id(out, &s, &d, v6, <uint8_t>proto, <uint16_t>sport, <uint16_t>dport, <uint8_t>icmp_type)
    return out[:n].decode("ascii")


def sha1_short(bytes data) -> bytes:
    """The SHA-1 digest of up to 55 bytes (tests compare it with hashlib's)."""
    cdef uint8_t digest[20]
    if len(data) > 55:
        raise ValueError("sha1_short takes at most 55 bytes")
    sha1_one_block(<const uint8_t *><const char *>data, len(data), digest)
    return (<char *>digest)[:20]
