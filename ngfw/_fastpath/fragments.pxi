# IP fragments: the verdict of a datagram's first fragment, kept for the fragments that follow it
# (they carry no ports); the table is allocated with the MAC table (switch.pxi l2_init).

cdef enum:
    FRAG_SLOTS = 4096
    FRAG_PROBE = 4

cdef uint64_t FRAG_TTL_NS = 30 * 1000000000ull

ctypedef struct frag_entry_t:
    ip128_t src
    ip128_t dst
    uint32_t id
    uint8_t proto
    uint8_t action
    uint8_t used
    uint64_t ts

cdef frag_entry_t *frag_find(engine_t *e, const pkt_t *p, bint create, uint64_t now) noexcept nogil:
    cdef uint32_t h = <uint32_t>ngfw_mix64(p.src_ip.lo ^ ngfw_mix64(p.dst_ip.lo ^ p.src_ip.hi)
                                           ^ (<uint64_t>p.frag_id << 8) ^ p.proto)
    cdef uint32_t s = h & (FRAG_SLOTS - 1)
    cdef uint32_t i
    cdef frag_entry_t *f
    cdef frag_entry_t *free_slot = NULL
    for i in range(FRAG_PROBE):
        f = &e.frags[(s + i) & (FRAG_SLOTS - 1)]
        if f.used and now - f.ts > FRAG_TTL_NS:
            f.used = 0
        if f.used:
            if (f.id == p.frag_id and f.proto == p.proto and f.src.hi == p.src_ip.hi and f.src.lo == p.src_ip.lo
                    and f.dst.hi == p.dst_ip.hi and f.dst.lo == p.dst_ip.lo):
                return f
        elif free_slot == NULL:
            free_slot = f
    if not create or free_slot == NULL:
        return NULL
    e.frags_used = 1
    free_slot.used = 1
    free_slot.src = p.src_ip
    free_slot.dst = p.dst_ip
    free_slot.id = p.frag_id
    free_slot.proto = p.proto
    free_slot.ts = now
    return free_slot
