# Exact-match maps of 128-bit keys (MACs, IPs) to table indexes, used by identity.
# Tables are immutable once built (a policy or binding change builds new ones off the hot path),
# so the maps are open-addressed arrays without deletion.

ctypedef struct idmap_t:
    uint64_t *k_hi
    uint64_t *k_lo
    int32_t *val      # -1: empty slot
    uint32_t mask

cdef int idmap_init(idmap_t *m, uint32_t n_keys) noexcept nogil:
    cdef uint32_t slots = 16
    cdef uint32_t i
    while slots < n_keys * 2:
        slots <<= 1
    m.mask = slots - 1
    m.k_hi = <uint64_t *>calloc(slots, sizeof(uint64_t))
    m.k_lo = <uint64_t *>calloc(slots, sizeof(uint64_t))
    m.val = <int32_t *>malloc(slots * sizeof(int32_t))
    if m.k_hi == NULL or m.k_lo == NULL or m.val == NULL:
        return -1
    for i in range(slots):
        m.val[i] = -1
    return 0

cdef void idmap_free(idmap_t *m) noexcept nogil:
    free(m.k_hi)
    free(m.k_lo)
    free(m.val)
    m.k_hi = NULL
    m.k_lo = NULL
    m.val = NULL

cdef inline uint32_t idmap_slot(const idmap_t *m, uint64_t hi, uint64_t lo) noexcept nogil:
    return <uint32_t>(ngfw_mix64(hi ^ ngfw_mix64(lo)) & m.mask)

cdef int32_t idmap_put(idmap_t *m, uint64_t hi, uint64_t lo, int32_t v) noexcept nogil:
    """Insert; returns the value already bound to the key (>= 0) or -1 when it was new."""
    cdef uint32_t s = idmap_slot(m, hi, lo)
    while m.val[s] >= 0:
        if m.k_hi[s] == hi and m.k_lo[s] == lo:
            return m.val[s]
        s = (s + 1) & m.mask
    m.k_hi[s] = hi
    m.k_lo[s] = lo
    m.val[s] = v
    return -1

cdef inline int32_t idmap_get(const idmap_t *m, uint64_t hi, uint64_t lo) noexcept nogil:
    cdef uint32_t s = idmap_slot(m, hi, lo)
    while m.val[s] >= 0:
        if m.k_hi[s] == hi and m.k_lo[s] == lo:
            return m.val[s]
        s = (s + 1) & m.mask
    return -1
