# Stage 3, flow: a bidirectional flow table in C memory (open addressing, linear probing,
# backward-shift deletion), TCP state tracking and per-protocol idle timeouts.
#
# Memory: a table is sized for its capacity, and a flood touches all of it. Once it has emptied again (a quarter
# of the flows it held at its peak), the sweep gives the pages that hold no flow back to the system, a pass at
# each such fall while it is worth a MiB (worker.pxi sweep_flows, flow_give_back_range): they read as zeros,
# which is an empty slot. A page given back
# -- and every page of a new table -- stays marked in `released` until a flow is inserted in it, so that the
# sweep, early drop and lookups never read it: a page of a shared tmpfs mapping is allocated by a mere read.
# Between two captures, replay marks every page of its emptied table the same way without giving it back: a
# marked page holds no flow, whether or not its memory went back.

cdef extern from "sys/mman.h" nogil:
    int madvise(void *addr, size_t length, int advice)
    int MADV_DONTNEED      # private memory: the pages are dropped, later reads see zeros
    int MADV_REMOVE        # a shared tmpfs mapping: the file's pages are freed (a hole), later reads see zeros

cdef extern from "unistd.h" nogil:
    long sysconf(int name)
    int _SC_PAGESIZE

cdef size_t mem_page = <size_t>sysconf(_SC_PAGESIZE)

# The flow hash is keyed per process: whoever chooses tuples (any workload picks its ports) cannot aim them at
# one stretch of the table, which linear probing would turn into long probe runs for every lookup.
cdef uint64_t flow_hash_key = 0

ctypedef struct flow_key_t:
    uint64_t a_hi
    uint64_t a_lo
    uint64_t b_hi
    uint64_t b_lo
    uint16_t a_port
    uint16_t b_port
    uint16_t vlan
    uint8_t proto
    uint8_t pad

cdef enum:
    TCP_NONE = 0
    TCP_SYN_SENT = 1
    TCP_SYN_RECV = 2
    TCP_ESTABLISHED = 3
    TCP_FIN_WAIT = 4      # one side closed
    TCP_CLOSING = 5       # both sides closed
    TCP_CLOSED = 6        # reset

TCP_STATE_NAMES = ("none", "syn_sent", "syn_recv", "established", "fin_wait", "closing", "closed")

cdef enum:
    TO_TCP_SYN = 0
    TO_TCP_EST = 1
    TO_TCP_CLOSING = 2
    TO_TCP_CLOSED = 3
    TO_UDP = 4
    TO_ICMP = 5
    TO_OTHER = 6
    TO_COUNT = 7

TIMEOUT_NAMES = ("tcp_syn", "tcp_established", "tcp_closing", "tcp_closed", "udp", "icmp", "other")

ctypedef struct flow_t:
    flow_key_t key
    uint8_t used
    uint8_t init_is_a      # the initiator (client) is side a of the key
    uint8_t tcp_state
    uint8_t action
    uint8_t log
    uint8_t cut            # CUT_POLICY: cut by a policy reload; CUT_CLEARED*: an operator ended it (session_view.pxi)
    uint8_t fin_seen       # bit 0: client sent FIN, bit 1: server sent FIN
    uint8_t syn_seen       # bit 0: client's SYN seen, bit 1: server's (their data starts at data_seq)
    uint8_t is_v6
    uint8_t mig            # MIG_*: where the flow stands in a move of one of its workloads (session_defs.pxi)
    uint16_t in_port       # port the first packet arrived on
    uint16_t quota_slot    # vsys slot + 1 the flow is charged to (tenancy.pxi), 0: none
    int16_t vsys
    uint64_t ts_last       # (what early drop reads of a flow is in its first 64 bytes: one look, one line or two)
    int32_t src_wl
    int32_t dst_wl
    int32_t rule
    int32_t rule_ingress
    uint32_t generation    # policy generation that decided it
    # EVE's view of the flow (in what would be padding before flow_id)
    uint8_t tcp_flags[2]   # TCP flags seen, ORed, per direction ([0] to server): EVE's tcp_flags_ts/_tc
    uint8_t icmp_type      # ICMP/ICMPv6: the first packet's type and code (EVE, Community ID)
    uint8_t icmp_code
    uint64_t flow_id
    uint64_t ts_first
    uint64_t pkts[2]       # [0] to server, [1] to client
    uint64_t bytes[2]
    uint32_t data_seq[2]   # TCP: the sequence number of each direction's first data byte (its SYN's + 1)
    # App-ID
    uint16_t app           # catalogue id once decided
    uint8_t app_state      # APPST_NONE / APPST_PENDING / APPST_DONE
    uint8_t app_conf       # 0..100
    uint8_t app_pkts       # payload packets seen when decided
    uint8_t pl_pkts[2]     # payload packets seen per direction
    uint8_t app_wait       # the verdict waits for the app (a rule names applications)
    int32_t cls            # classification buffers while classifying, -1 none
    int32_t host           # host name (SNI, Host, DNS query) in the host pool, -1 none
    # threat inspection
    int32_t insp           # inspection state in the engine's pool, -1 none
    int16_t profile        # threat profile of the deciding rule, -1: not inspected
    uint8_t threat         # a signature blocked the flow: A_DENY (drop) or A_REJECT
    uint8_t host_extra     # decided, host still read from later packets: HOSTX_* kind | packets left (appid.pxi)
    uint8_t alerted        # a signature alerted on the flow (EVE's flow.alerted)
    uint8_t capture        # CAP_* (capture.pxi): its frames are copied to the capture ring
    uint16_t cap_left      # frames still to copy to the capture ring (capture.pxi)
    # flow bypass (bypass.pxi): the kernel forwards the flow; its map entries' counters are folded in here
    uint8_t bypass         # BP_NONE / BP_IN / BP_REFUSED
    uint8_t bp_flags[2]    # each direction's entry: BYPASS_ALL or BYPASS_EMPTY
    uint32_t bp_ifindex[2]  # the interface each direction's entry is keyed by
    uint32_t bp_pkts[2]    # the entries' packet counters as last folded into pkts (differences wrap correctly)
    uint64_t bp_bytes[2]   # ... and byte counters
    uint64_t bp_fold_ns    # last fold (BP_IN), or refusal (BP_REFUSED)
    # User-ID (userid.pxi): the user behind the initiator's address and what its decision depended on
    uint8_t user_dep       # a `users:` condition was looked at: a change of the user decides the flow again
    uint8_t user_via[2]    # 1 + the `users:` item that matched, of the deciding rule and of the ingress rule
    uint32_t user_stamp    # the stamp of the user's groups it was decided with
    uint32_t user_gen      # the user table generation the user was looked up in (0: none yet)
    uint64_t user          # the user's principal (ngfw.compiler.principals), 0: none

ctypedef struct flowtable_t:
    flow_t *slots
    uint32_t mask
    uint32_t capacity      # most flows held at once
    uint32_t count
    uint32_t sweep_cursor
    uint8_t external       # the slots live in memory the engine does not own (a shared state file)
    # memory given back after a flood (see the top of this file)
    uint64_t *released     # a bit per page of the slots' memory: given back, no flow in it since
    uintptr_t page0        # address of the page the slots start in
    uint32_t n_pages
    uint32_t n_released    # bits set in `released`
    uint32_t peak          # most flows held since the last pass that gave pages back
    uint32_t give_back_left  # slots the sweep still looks at in a pass that gives pages back (0: no pass)
    uint64_t inserts       # flows inserted so far (only an insertion fills an empty slot)
    uintptr_t empty_from   # where the run of empty slots the last sweep ended in began...
    uint64_t empty_inserts  # ... and `inserts` then: the run holds as long as nothing was inserted since
    uint64_t bytes_given_back  # counter: memory given back to the system

cdef inline uint32_t flowtable_slots(uint32_t capacity) noexcept nogil:
    cdef uint32_t n = 64
    while n < capacity + capacity // 2:
        n <<= 1
    return n

cdef int flowtable_init(flowtable_t *ft, uint32_t capacity, flow_t *memory) noexcept nogil:
    """`memory`: zeroed room for flowtable_slots(capacity) slots that outlives the process (NULL: the heap)."""
    cdef uint32_t n = flowtable_slots(capacity)
    cdef uintptr_t end
    ft.external = memory != NULL
    ft.slots = memory if memory != NULL else <flow_t *>calloc(n, sizeof(flow_t))
    if ft.slots == NULL:
        return -1
    ft.mask = n - 1
    ft.capacity = capacity
    ft.count = 0
    ft.sweep_cursor = 0
    ft.page0 = <uintptr_t>ft.slots & ~(<uintptr_t>mem_page - 1)
    end = <uintptr_t>(ft.slots + n)
    ft.n_pages = <uint32_t>((end - ft.page0 + mem_page - 1) // mem_page)
    ft.released = <uint64_t *>malloc(((ft.n_pages + 63) // 64) * sizeof(uint64_t))
    if ft.released == NULL:
        if not ft.external:
            free(ft.slots)
        ft.slots = NULL
        return -1
    # a new table holds no flow: none of its pages is read until a flow goes in it (the sweep would otherwise
    # bring a whole tmpfs file into memory within a second of the start, by reading it)
    memset(ft.released, 0xff, ((ft.n_pages + 63) // 64) * sizeof(uint64_t))
    ft.n_released = ft.n_pages
    ft.peak = 0
    ft.give_back_left = 0
    ft.inserts = 0
    ft.empty_from = 0
    ft.empty_inserts = 0
    ft.bytes_given_back = 0
    return 0

cdef int flows_init(engine_t *e, uint32_t capacity, flow_t *memory) except -1:
    """The engine's flow table; `memory`: its place in the state memory (NULL: the heap)."""
    if capacity < 1:
        raise ValueError("flow_capacity must be at least 1")
    if flowtable_init(&e.flows, capacity, memory) < 0:
        raise MemoryError(f"not enough memory for a flow table of {capacity} flows")
    return 0

cdef void flows_free(engine_t *e) noexcept:
    if not e.flows.external:
        free(e.flows.slots)
    free(e.flows.released)

cdef inline uint32_t flow_page_of(const flowtable_t *ft, const void *p) noexcept nogil:
    return <uint32_t>((<uintptr_t>p - ft.page0) // mem_page)

cdef inline bint flow_page_released(const flowtable_t *ft, uint32_t page) noexcept nogil:
    return (ft.released[page >> 6] >> (page & 63)) & 1

cdef inline bint flow_slot_released(const flowtable_t *ft, uint32_t s) noexcept nogil:
    """The page a look at slot `s` reads (its `used` byte) was given back: no flow there, and reading it would
    take the page back."""
    return ft.n_released != 0 and flow_page_released(ft, flow_page_of(ft, &ft.slots[s].used))

cdef void flow_pages_in_use(flowtable_t *ft, uint32_t s) noexcept nogil:
    """A flow goes into slot `s`: the pages it lies on are the table's again."""
    cdef uint32_t page = flow_page_of(ft, &ft.slots[s])
    cdef uint32_t last = flow_page_of(ft, <const uint8_t *>&ft.slots[s + 1] - 1)
    while page <= last:
        if flow_page_released(ft, page):
            ft.released[page >> 6] &= ~(1ull << (page & 63))
            ft.n_released -= 1
        page += 1

cdef size_t mem_give_back(uintptr_t start, uintptr_t end, bint shared) noexcept nogil:
    """Give the whole pages within [start, end) back to the system (they read as zeros afterwards); the bytes
    given back. `shared`: a shared tmpfs mapping, whose file keeps its pages until they are punched out."""
    cdef uintptr_t a = (start + mem_page - 1) & ~(<uintptr_t>mem_page - 1)
    cdef uintptr_t b = end & ~(<uintptr_t>mem_page - 1)
    if b <= a or madvise(<void *>a, b - a, MADV_REMOVE if shared else MADV_DONTNEED) != 0:
        return 0
    return b - a

cdef void flow_give_back_range(flowtable_t *ft, uintptr_t start, uintptr_t end) noexcept nogil:
    """Give back the whole pages within [start, end) of the slots' memory, which holds no flow."""
    cdef uint32_t page = flow_page_of(ft, <void *>((start + mem_page - 1) & ~(<uintptr_t>mem_page - 1)))
    cdef uint32_t last = flow_page_of(ft, <void *>(end & ~(<uintptr_t>mem_page - 1)))
    cdef uint32_t p = page
    while p < last and flow_page_released(ft, p):
        p += 1
    if p >= last:
        return      # given back already, and nothing read it since
    if mem_give_back(start, end, ft.external) == 0:
        return
    while page < last:
        if not flow_page_released(ft, page):
            ft.released[page >> 6] |= 1ull << (page & 63)
            ft.n_released += 1
            ft.bytes_given_back += mem_page
        page += 1

cdef inline uint32_t flow_next_slot_to_read_before(const flowtable_t *ft, uint32_t s, uint32_t limit) noexcept nogil:
    """The first slot at or after `s` whose look does not read a page given back, or `limit` (at most mask + 1)
    when there is none before it: a sweep that may move `limit - s` slots need not look further (walking every
    page marked up to the next flow at each call was most of a replay's sweeps)."""
    cdef uintptr_t next_page, used0
    while s < limit and flow_slot_released(ft, s):
        # skip to the first slot whose `used` byte lies on the next page
        next_page = ft.page0 + (<uintptr_t>flow_page_of(ft, &ft.slots[s].used) + 1) * mem_page
        used0 = <uintptr_t>&ft.slots[0].used
        s = <uint32_t>((next_page - used0 + sizeof(flow_t) - 1) // sizeof(flow_t))
    return s if s < limit else limit

cdef inline uint32_t flow_next_slot_to_read(const flowtable_t *ft, uint32_t s) noexcept nogil:
    """The first slot at or after `s` whose look does not read a page given back (mask + 1: none left)."""
    return flow_next_slot_to_read_before(ft, s, ft.mask + 1)

cdef inline void flow_key_from_pkt(flow_key_t *k, const pkt_t *p, bint *pkt_is_a) noexcept nogil:
    """Normalise so both directions share one key: the lower (ip, port) is side a."""
    cdef bint src_lower
    if p.src_ip.hi != p.dst_ip.hi:
        src_lower = p.src_ip.hi < p.dst_ip.hi
    elif p.src_ip.lo != p.dst_ip.lo:
        src_lower = p.src_ip.lo < p.dst_ip.lo
    else:
        src_lower = p.sport <= p.dport
    memset(k, 0, sizeof(flow_key_t))
    if src_lower:
        k.a_hi = p.src_ip.hi; k.a_lo = p.src_ip.lo; k.a_port = p.sport
        k.b_hi = p.dst_ip.hi; k.b_lo = p.dst_ip.lo; k.b_port = p.dport
    else:
        k.a_hi = p.dst_ip.hi; k.a_lo = p.dst_ip.lo; k.a_port = p.dport
        k.b_hi = p.src_ip.hi; k.b_lo = p.src_ip.lo; k.b_port = p.sport
    k.vlan = p.vlan
    k.proto = p.proto
    pkt_is_a[0] = src_lower

cdef inline void flow_key_from_icmp_quote(flow_key_t *k, const pkt_t *p) noexcept nogil:
    """The key of the flow an ICMP error belongs to, from the datagram it quotes."""
    cdef pkt_t q
    cdef bint unused
    memset(&q, 0, sizeof(pkt_t))
    q.src_ip = p.inner_src
    q.dst_ip = p.inner_dst
    q.sport = p.inner_sport
    q.dport = p.inner_dport
    q.proto = p.inner_proto
    q.vlan = p.vlan
    flow_key_from_pkt(k, &q, &unused)

cdef inline uint32_t flow_hash(const flow_key_t *k) noexcept nogil:
    cdef uint64_t h = ngfw_mix64(k.a_hi ^ ngfw_mix64(k.a_lo ^ ngfw_mix64(k.b_hi ^ ngfw_mix64(k.b_lo ^ flow_hash_key))))
    h ^= (<uint64_t>k.a_port << 32) | (<uint64_t>k.b_port << 16) | (<uint64_t>k.proto << 8) | (<uint64_t>k.vlan << 40)
    return <uint32_t>ngfw_mix64(h)

cdef inline bint flow_key_eq(const flow_key_t *x, const flow_key_t *y) noexcept nogil:
    return (x.a_hi == y.a_hi and x.a_lo == y.a_lo and x.b_hi == y.b_hi and x.b_lo == y.b_lo and
            x.a_port == y.a_port and x.b_port == y.b_port and x.proto == y.proto and x.vlan == y.vlan)

cdef flow_t *flow_lookup(flowtable_t *ft, const flow_key_t *k, uint32_t h) noexcept nogil:
    cdef uint32_t s = h & ft.mask
    # a page given back holds no flow (and reading it would take it back)
    while not flow_slot_released(ft, s) and ft.slots[s].used:
        if flow_key_eq(&ft.slots[s].key, k):
            return &ft.slots[s]
        s = (s + 1) & ft.mask
    return NULL

cdef flow_t *flow_insert(flowtable_t *ft, const flow_key_t *k, uint32_t h) noexcept nogil:
    """A fresh, zeroed entry for `k` (which must not be present); NULL when the table is full."""
    cdef uint32_t s = h & ft.mask
    if ft.count >= ft.capacity:
        return NULL
    while ft.slots[s].used:
        s = (s + 1) & ft.mask
    if ft.n_released:
        flow_pages_in_use(ft, s)
    memset(&ft.slots[s], 0, sizeof(flow_t))
    ft.slots[s].key = k[0]
    ft.slots[s].used = 1
    ft.count += 1
    ft.inserts += 1
    return &ft.slots[s]

cdef void flow_remove_slot(flowtable_t *ft, uint32_t s) noexcept nogil:
    """Delete slot `s` and shift later entries of its probe run back, so lookups never need tombstones."""
    cdef uint32_t j = s
    cdef uint32_t home
    ft.slots[s].used = 0
    ft.count -= 1
    while True:
        j = (j + 1) & ft.mask
        if not ft.slots[j].used:
            return
        home = flow_hash(&ft.slots[j].key) & ft.mask
        # move j into the hole when its home is not within (s, j] cyclically
        if (j > s and (home <= s or home > j)) or (j < s and (home <= s and home > j)):
            ft.slots[s] = ft.slots[j]
            ft.slots[j].used = 0
            s = j

cdef inline uint32_t flow_timeout_class(const flow_t *f) noexcept nogil:
    if f.key.proto == P_TCP:
        if f.tcp_state == TCP_ESTABLISHED:
            return TO_TCP_EST
        if f.tcp_state == TCP_FIN_WAIT or f.tcp_state == TCP_CLOSING:
            return TO_TCP_CLOSING
        if f.tcp_state == TCP_CLOSED:
            return TO_TCP_CLOSED
        return TO_TCP_SYN
    if f.key.proto == P_UDP:
        return TO_UDP
    if f.key.proto == P_ICMP or f.key.proto == P_ICMPV6:
        return TO_ICMP
    return TO_OTHER

cdef inline void tcp_track(flow_t *f, uint8_t flags, uint32_t seq, bint to_server) noexcept nogil:
    """Advance the TCP state machine; sequence windows are not checked here (that is inspection's job).
    A SYN says where its direction's data starts (App-ID puts reordered segments in place by it)."""
    if flags & TH_SYN:
        f.data_seq[0 if to_server else 1] = seq + 1
        f.syn_seen |= 1 if to_server else 2
    if flags & TH_RST:
        f.tcp_state = TCP_CLOSED
        return
    if f.tcp_state == TCP_SYN_SENT:
        if not to_server and (flags & (TH_SYN | TH_ACK)) == (TH_SYN | TH_ACK):
            f.tcp_state = TCP_SYN_RECV
    elif f.tcp_state == TCP_SYN_RECV:
        if to_server and (flags & TH_ACK) and not (flags & TH_SYN):
            f.tcp_state = TCP_ESTABLISHED
    if flags & TH_FIN:
        f.fin_seen |= 1 if to_server else 2
        if f.tcp_state >= TCP_SYN_RECV:
            f.tcp_state = TCP_CLOSING if f.fin_seen == 3 else TCP_FIN_WAIT


# ---------------------------------------------------------------- Engine.end_all_flows

cdef extern from *:
    # a hint, never a fault: a page given back stays given back
    void __builtin_prefetch(const void *p) noexcept nogil

cdef enum:
    END_SCAN_AHEAD = 24   # slots end_all_flows asks the memory for ahead of the one it looks at


cdef object flows_end_all(Engine self):
    cdef flowtable_t *ft = &self.e.flows
    cdef uint32_t s = 0, n = ft.mask + 1, left = ft.count, page
    cdef uintptr_t used_at, page_end = 0
    cdef bint check_pages = ft.n_released != 0, page_released = False
    while s < n and left:   # left: a replay engine sized for a big capture holds a small one's flows
        # a page given back is not read (flow_slot_released), looked up once per page: a division per slot
        # was most of this scan over a replay's small captures
        used_at = <uintptr_t>&ft.slots[s].used
        if check_pages and used_at >= page_end:
            page = flow_page_of(ft, <void *>used_at)
            page_released = flow_page_released(ft, page)
            page_end = ft.page0 + (<uintptr_t>page + 1) * mem_page
        if page_released:
            # on to the first slot whose `used` byte lies on the next page
            s = <uint32_t>((page_end - <uintptr_t>&ft.slots[0].used + sizeof(flow_t) - 1) // sizeof(flow_t))
            continue
        if s + END_SCAN_AHEAD < n:
            # a slot a cache line (or two): the scan waited on memory
            __builtin_prefetch(&ft.slots[s + END_SCAN_AHEAD].used)
        if ft.slots[s].used:
            flow_end(self.e, &ft.slots[s], END_SHUTDOWN, ngfw_now_ns())
            ft.slots[s].used = 0
            left -= 1
        s += 1
    ft.count = 0
