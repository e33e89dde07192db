# Python <-> C conversions: addresses (ipaddress objects, integers, text) and MACs as the fastpath holds
# them, and `decode`, the decoder's view of one frame for tests and tools.

cdef ip128_t ip_from_int(object value) except *:
    """A 128-bit integer (network order when written big-endian) as an ip128_t."""
    cdef ip128_t out
    cdef bytes raw = value.to_bytes(16, "big")
    memcpy(&out.hi, <const char *>raw, 8)
    memcpy(&out.lo, (<const char *>raw) + 8, 8)
    return out

cdef ip128_t ip_to_c(object addr) except *:
    cdef ip128_t out
    cdef bytes raw
    if addr.version == 4:   # an ipaddress address (the module is not imported here: replay starts faster)
        raw = b"\x00" * 10 + b"\xff\xff" + addr.packed
    else:
        raw = addr.packed
    memcpy(&out.hi, <const char *>raw, 8)
    memcpy(&out.lo, (<const char *>raw) + 8, 8)
    return out

cdef extern from "arpa/inet.h" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, uint32_t size)
    int AF_INET
    int AF_INET6


cdef int ip_text(ip128_t ip, bint v6, char *text) noexcept nogil:
    """inet_ntop's text of an address into `text` (64 bytes) and its length; -1 for an IPv6 address in ::/80
    (IPv4-mapped and -compatible), which inet_ntop writes with a dotted quad and Python's ipaddress does not."""
    cdef uint8_t raw[16]
    cdef int i, n = 0
    cdef uint8_t octet
    memcpy(raw, &ip.hi, 8)
    memcpy(raw + 8, &ip.lo, 8)
    if not v6:
        # inet_ntop's dotted quad, without its sprintf: two per flow record were a tenth of replaying a capture
        for i in range(12, 16):
            octet = raw[i]
            if octet >= 100:
                text[n] = 48 + octet // 100
                n += 1
            if octet >= 10:
                text[n] = 48 + (octet // 10) % 10
                n += 1
            text[n] = 48 + octet % 10
            text[n + 1] = 46
            n += 2
        text[n - 1] = 0
        return n - 1
    for i in range(10):
        if raw[i]:
            break
    else:
        return -1
    inet_ntop(AF_INET6, raw, text, 64)
    return <int>strlen(text)


cdef object ip_from_c(ip128_t ip, bint v6):
    """The text form Python's ipaddress gives, by inet_ntop (every flow record formats two of these)."""
    cdef uint8_t raw[16]
    cdef char text[64]
    cdef int n = ip_text(ip, v6, text)
    if n >= 0:
        return text[:n].decode("ascii")
    import ipaddress

    memcpy(raw, &ip.hi, 8)
    memcpy(raw + 8, &ip.lo, 8)
    return str(ipaddress.IPv6Address(bytes(raw[:16])))

cdef uint64_t mac_to_c(bytes mac) except? 0:
    cdef uint64_t v = 0
    if len(mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
    memcpy(&v, <const char *>mac, 6)
    return v


ACTION_NAMES = ("allow", "deny", "reject")
L3_NAMES = ("none", "arp", "ipv4", "ipv6")


cdef object _name(tuple names, Py_ssize_t i):
    # bounds-checked by hand: the module is compiled with boundscheck off
    return names[i] if 0 <= i < len(names) else str(i)


def decode(bytes frame) -> dict:
    """Decode one frame with the fastpath's decoder (for tests and tools)."""
    cdef pkt_t p
    cdef int reason = decode_frame(&p, <const uint8_t *><const char *>frame, <uint32_t>len(frame))
    out = {"reason": _name(DROP_REASONS, reason) if reason else None, "l3": _name(L3_NAMES, p.l3),
           "vlan": p.vlan, "ethertype": p.ethertype, "proto": p.proto, "is_fragment": bool(p.is_frag),
           "first_fragment": bool(p.frag_first), "sport": p.sport, "dport": p.dport,
           "tcp_flags": p.tcp_flags, "icmp_type": p.icmp_type, "icmp_code": p.icmp_code,
           "payload_len": p.payload_len}
    if p.l3 == L3_IPV4 or p.l3 == L3_IPV6 or p.arp_ipv4:
        out["src_ip"] = ip_from_c(p.src_ip, p.is_v6)
        out["dst_ip"] = ip_from_c(p.dst_ip, p.is_v6)
    return out
