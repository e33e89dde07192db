# Stage 7, forward: frames of a segment are switched by MAC learning among its ports (a wire is a
# two-port segment and needs no table), so VM-to-VM traffic on one host crosses the fastpath too.

cdef enum:
    MAX_SEGMENTS = 32
    MAX_SEGMENT_PORTS = 16
    MACTABLE_SLOTS = 8192
    MAC_PROBE = 8

cdef uint64_t MAC_AGE_NS = 300 * 1000000000ull

ctypedef struct mac_entry_t:
    uint64_t key        # mac | segment << 48
    uint64_t ts
    int32_t port

ctypedef struct segment_t:
    uint16_t ports[MAX_SEGMENT_PORTS]
    uint32_t n_ports

cdef inline uint32_t mac_home(uint64_t key) noexcept nogil:
    return <uint32_t>(ngfw_mix64(key) & (MACTABLE_SLOTS - 1))

cdef void mac_learn(mac_entry_t *tab, uint64_t key, int32_t port, uint64_t now) noexcept nogil:
    cdef uint32_t s = mac_home(key)
    cdef uint32_t i, victim = s
    cdef uint64_t oldest = <uint64_t>-1
    for i in range(MAC_PROBE):
        if tab[s].key == key or tab[s].port < 0:
            victim = s
            break
        if tab[s].ts < oldest:
            oldest = tab[s].ts
            victim = s
        s = (s + 1) & (MACTABLE_SLOTS - 1)
    tab[victim].key = key
    tab[victim].ts = now
    tab[victim].port = port

cdef int32_t mac_lookup(const mac_entry_t *tab, uint64_t key, uint64_t now) noexcept nogil:
    cdef uint32_t s = mac_home(key)
    cdef uint32_t i
    for i in range(MAC_PROBE):
        if tab[s].key == key and tab[s].port >= 0:
            return tab[s].port if now - tab[s].ts < MAC_AGE_NS else -1
        s = (s + 1) & (MACTABLE_SLOTS - 1)
    return -1


cdef int l2_init(engine_t *e) except -1:
    """The MAC table (every entry unlearnt) and the IP fragment table (worker.pxi `frag_find`) of an engine."""
    cdef uint32_t i
    e.macs = <mac_entry_t *>calloc(MACTABLE_SLOTS, sizeof(mac_entry_t))
    e.frags = <frag_entry_t *>calloc(FRAG_SLOTS, sizeof(frag_entry_t))
    if e.macs == NULL or e.frags == NULL:
        raise MemoryError("not enough memory for the engine")
    for i in range(MACTABLE_SLOTS):
        e.macs[i].port = -1
    return 0


cdef void l2_free(engine_t *e) noexcept:
    free(e.macs)
    free(e.frags)

cdef inline bint mac_is_multicast(uint64_t mac) noexcept nogil:
    return (mac & 1) != 0   # I/G bit of the first octet (little-endian load)

cdef void forward(engine_t *e, uint16_t in_port, const uint8_t *data, uint32_t len, const pkt_t *fix,
                  uint64_t now) noexcept nogil:
    cdef segment_t *seg = &e.segments[e.ports[in_port].segment]
    cdef uint64_t segkey = <uint64_t>e.ports[in_port].segment << 48
    cdef int32_t out
    cdef uint32_t i
    cdef uint64_t src_mac = ngfw_mac64(data + 6)
    cdef uint64_t dst_mac = ngfw_mac64(data)
    cdef bint sent
    if seg.n_ports == 2:
        out = seg.ports[0] if seg.ports[1] == in_port else seg.ports[1]
        if not port_ready(&e.ports[out]):
            count_drop(e, R_PORT_DOWN)
        elif not port_tx(&e.ports[out], data, len, fix):
            count_drop(e, R_TX_FULL)
        return
    if not mac_is_multicast(src_mac):
        mac_learn(e.macs, src_mac | segkey, in_port, now)
    out = -1 if mac_is_multicast(dst_mac) else mac_lookup(e.macs, dst_mac | segkey, now)
    if out == in_port:
        count_drop(e, R_HAIRPIN)
        return
    if out >= 0:
        if not port_ready(&e.ports[out]):
            count_drop(e, R_PORT_DOWN)
        elif not port_tx(&e.ports[out], data, len, fix):
            count_drop(e, R_TX_FULL)
        return
    # flooded: a drop only when no other port of the segment could take it
    sent = False
    for i in range(seg.n_ports):
        if seg.ports[i] != in_port and port_ready(&e.ports[seg.ports[i]]):
            port_tx(&e.ports[seg.ports[i]], data, len, fix)
            sent = True
    if not sent:
        count_drop(e, R_PORT_DOWN)
