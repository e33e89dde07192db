# Stage 6, threat inspection: Suricata-syntax signatures on Hyperscan. Per packet of a flow whose
# policy rule names a threat profile:
#   1. TCP payload goes through the direction's Hyperscan *stream* (matches span segments); other
#      payloads through a block-mode database; sticky buffers (HTTP, DNS, TLS, SSH) through theirs.
#   2. Every prefilter hit makes its rules candidates; rules without a fast pattern are always
#      candidates. Candidates are verified here, in C, for everything else they ask.
#   3. A match the profile does not except (inspect_exceptions.pxi) applies flowbits, goes through
#      suppressions and thresholds, then alerts, drops (the flow is blocked from then on), rejects (RST
#      both ways) or passes (no more inspection of the flow).
# TCP: the first copy of every byte is the one inspected (and the only one forwarded in order); byte order and
# holes are the stream engine's (stream.pxi): a segment beyond a hole is dropped inline (the sender retransmits
# it in order); a replay keeps a few segments beyond it and inspects them in order once it fills, or goes on
# after a hole that stays open.

cdef uint32_t inspect_stamp = 0   # see inspect_packet

cdef int inspool_init(inspool_t *p, uint32_t n, inspslot_t *memory) noexcept nogil:
    """`memory`: room for n slots that outlives the process (NULL: the heap)."""
    p.n = n
    p.exhausted = 0
    p.never_used = 0
    p.free_head = -1
    p.in_use = 0
    p.peak = 0
    p.dirty_pages = 0
    p.give_back_cursor = 0
    p.give_back_end = 0
    p.bytes_given_back = 0
    p.external = memory != NULL
    p.slots = memory if memory != NULL else (<inspslot_t *>malloc(<size_t>n * sizeof(inspslot_t)) if n else NULL)
    p.next_free = <int32_t *>malloc(<size_t>n * sizeof(int32_t) + sizeof(int32_t))
    p.taken = <uint64_t *>calloc((n + 63) // 64 + 1, sizeof(uint64_t))
    p.page0 = <uintptr_t>p.slots & ~(<uintptr_t>mem_page - 1)
    p.dirty = <uint64_t *>calloc(((<size_t>n * sizeof(inspslot_t)) // mem_page + 2) // 64 + 1, sizeof(uint64_t))
    return -1 if (n and p.slots == NULL) or p.next_free == NULL or p.taken == NULL or p.dirty == NULL else 0

cdef int32_t inspool_take(inspool_t *p) noexcept nogil:
    cdef int32_t i = p.free_head
    cdef uintptr_t page, last
    if i < 0:
        if p.never_used >= p.n:
            p.exhausted += 1
            return -1
        i = <int32_t>p.never_used
        p.never_used += 1
    else:
        p.free_head = p.next_free[i]
    p.taken[i >> 6] |= 1ull << (i & 63)
    p.in_use += 1
    if p.in_use > p.peak:
        p.peak = p.in_use
    page = (<uintptr_t>&p.slots[i] - p.page0) // mem_page
    last = (<uintptr_t>&p.slots[i + 1] - 1 - p.page0) // mem_page
    while page <= last:
        if not (p.dirty[page >> 6] >> (page & 63)) & 1:
            p.dirty[page >> 6] |= 1ull << (page & 63)
            p.dirty_pages += 1
        page += 1
    memset(&p.slots[i], 0, <size_t>(&p.slots[i].tail[0][0] - <uint8_t *>&p.slots[i]))
    return i

cdef void inspool_give(inspool_t *p, int32_t i) noexcept nogil:
    p.taken[i >> 6] &= ~(1ull << (i & 63))
    p.in_use -= 1
    p.next_free[i] = p.free_head
    p.free_head = i

cdef enum:
    INSPOOL_GIVE_BACK_MIN_PAGES = 16   # pages a pass that gives memory back must be able to give, to be worth it
    INSPOOL_GIVE_BACK_STEP = 8192      # slots such a pass looks at per sweep

cdef void inspool_give_back(inspool_t *p) noexcept nogil:
    """Once the pool holds a quarter of the slots it held at its peak or fewer (a flood came and went) and pages
    of free slots worth giving back, give them back to the system, a step per call (the sweep's): free slots
    are never read, and a slot taken again is written before it is read."""
    cdef uint32_t i, end
    cdef uintptr_t empty_from
    if p.give_back_cursor >= p.give_back_end:
        # a slot lies on two pages at most: the dirty pages beyond that hold only free slots
        if p.in_use > p.peak // 4 or p.dirty_pages <= 2 * p.in_use + INSPOOL_GIVE_BACK_MIN_PAGES:
            return
        p.give_back_cursor = 0
        p.give_back_end = p.never_used   # slots past it were never touched
        p.peak = p.in_use                # the next fall is measured from here
    i = p.give_back_cursor
    end = i + INSPOOL_GIVE_BACK_STEP
    if end > p.give_back_end:
        end = p.give_back_end
    empty_from = <uintptr_t>&p.slots[i]
    while i < end:
        if p.taken[i >> 6] == 0 and (i & 63) == 0 and i + 64 <= end:
            i += 64     # 64 free slots at once
            continue
        if (p.taken[i >> 6] >> (i & 63)) & 1:
            inspool_give_back_range(p, empty_from, <uintptr_t>&p.slots[i])
            empty_from = <uintptr_t>&p.slots[i + 1]
        i += 1
    inspool_give_back_range(p, empty_from, <uintptr_t>&p.slots[end])
    p.give_back_cursor = end

cdef void inspool_give_back_range(inspool_t *p, uintptr_t start, uintptr_t end) noexcept nogil:
    """Give back the whole pages within [start, end) of free slots that were written since they last went back."""
    cdef uintptr_t first = (start + mem_page - 1) & ~(<uintptr_t>mem_page - 1)
    cdef uintptr_t stop = end & ~(<uintptr_t>mem_page - 1)
    cdef uintptr_t page, a
    cdef uint64_t bit
    if stop <= first:
        return
    page = (first - p.page0) // mem_page
    a = first
    while a < stop:
        bit = 1ull << (page & 63)
        if p.dirty[page >> 6] & bit and mem_give_back(a, a + mem_page, p.external):
            p.dirty[page >> 6] &= ~bit
            p.dirty_pages -= 1
            p.bytes_given_back += mem_page
        a += mem_page
        page += 1

cdef void insp_close_streams(inspslot_t *s) noexcept nogil:
    cdef int d
    for d in range(2):
        if s.stream[d] != NULL:
            hs_close_stream(s.stream[d], NULL, NULL, NULL)
            s.stream[d] = NULL

cdef void inspect_flow_end(engine_t *e, flow_t *f) noexcept nogil:
    cdef inspool_t *p
    if f.insp < 0 or e.ins == NULL:
        return
    p = &e.ins.pool
    insp_close_streams(&p.slots[f.insp])
    hold_give(&e.ins.hold, &p.slots[f.insp].win[0])
    hold_give(&e.ins.hold, &p.slots[f.insp].win[1])
    asm_give(&e.ins.asm_pool, &p.slots[f.insp])
    bodydec_give(&e.ins.bodydec, &p.slots[f.insp])
    h2tab_give(&e.ins.h2tab, &p.slots[f.insp])
    inspool_give(p, f.insp)
    f.insp = -1

cdef int inspect_workspace_init(engine_t *e, uint32_t n_slots, inspslot_t *memory, bint replay) except -1:
    """The inspection workspace: slots (`memory`: their place in the state memory, NULL: the heap), pcre2
    match data, thresholds, and the pools of reassembly, body decoders, held segments (replay) and HPACK."""
    e.ins = <insws_t *>calloc(1, sizeof(insws_t))
    if e.ins == NULL or inspool_init(&e.ins.pool, n_slots, memory) < 0:
        raise MemoryError("not enough memory for the inspection state")
    e.ins.md = pcre2_match_data_create(32, NULL)
    e.ins.mctx = pcre2_match_context_create(NULL)
    e.ins.thr = <ithrent_t *>calloc(THR_SLOTS, sizeof(ithrent_t))
    if (e.ins.md == NULL or e.ins.mctx == NULL or e.ins.thr == NULL
            or asm_pool_init(&e.ins.asm_pool) < 0 or bodydec_init(&e.ins.bodydec) < 0
            or hold_pool_init(&e.ins.hold, HOLD_SLOTS if replay else 0) < 0
            or h2tab_init(&e.ins.h2tab) < 0):
        raise MemoryError("not enough memory for the inspection state")
    # Suricata's default pcre limits: a hostile payload cannot make a regex run away
    pcre2_set_match_limit(e.ins.mctx, 3500)
    pcre2_set_depth_limit(e.ins.mctx, 1500)
    return 0

cdef void inspect_workspace_free(engine_t *e) noexcept:
    """End the inspection of every flow still in the table (streams closed, slots given back), then free."""
    cdef uint32_t i
    if e.ins == NULL:
        return
    for i in range(e.flows.mask + 1 if e.flows.slots != NULL else 0):
        if not flow_slot_released(&e.flows, i) and e.flows.slots[i].used:
            inspect_flow_end(e, &e.flows.slots[i])
    if not e.ins.pool.external:
        free(e.ins.pool.slots)
    free(e.ins.pool.next_free)
    free(e.ins.pool.taken)
    free(e.ins.pool.dirty)
    free(e.ins.thr)
    free(e.ins.asm_pool.buf)
    free(e.ins.bodydec.slots)
    free(e.ins.asm_pool.next_free)
    free(e.ins.hold.slots)
    free(e.ins.h2tab.slots)
    if e.ins.md != NULL:
        pcre2_match_data_free(e.ins.md)
    if e.ins.mctx != NULL:
        pcre2_match_context_free(e.ins.mctx)
    free(e.ins)
    e.ins = NULL

# ---------------------------------------------------------------- candidates

ctypedef struct hitctx_t:
    insws_t *ws
    const instables_t *T
    const idb_t *db

cdef inline void add_candidate(insws_t *ws, const instables_t *T, uint32_t r) noexcept nogil:
    if r >= T.n_rules or T.stamp[r] == ws.stamp_now:
        return
    T.stamp[r] = ws.stamp_now
    if ws.n_cand >= CAND_MAX:
        ws.cand_overflow += 1
        return
    ws.cand[ws.n_cand].rule = r
    ws.cand[ws.n_cand].rank = T.rules[r].rank
    ws.n_cand += 1

cdef int on_prefilter_hit(unsigned int id, unsigned long long frm, unsigned long long to, unsigned int flags,
                          void *ctx) noexcept nogil:
    cdef hitctx_t *h = <hitctx_t *>ctx
    cdef uint32_t i
    if id >= h.db.n_pats:
        return 0
    for i in range(h.db.pat_n[id]):
        add_candidate(h.ws, h.T, h.T.pat_rules[h.db.pat_off[id] + i])
    return 0

cdef inline const uint64_t *ipside_set(const ipidx_t *x, int which, const ip128_t *ip, bint v6) noexcept nogil:
    """The set of rules whose side `which` holds `ip` (NULL: none has a range of its family there)."""
    cdef const ipside_t *sd = &x.side[which][1 if v6 else 0]
    cdef uint64_t hi = __builtin_bswap64(ip.hi) if v6 else 0
    cdef uint64_t lo = __builtin_bswap64(ip.lo)
    cdef uint32_t lo_i = 1, hi_i, mid, j = 0
    if sd.n == 0:
        return NULL
    if not v6:
        lo &= 0xffffffffull
    # the last segment starting at or before ip (the first starts at 0)
    hi_i = sd.n - 1
    while lo_i <= hi_i:
        mid = (lo_i + hi_i) >> 1
        if (v6 and (hi > sd.start_hi[mid] or (hi == sd.start_hi[mid] and lo >= sd.start_lo[mid]))) or (
                not v6 and lo >= sd.start_lo[mid]):
            j = mid
            lo_i = mid + 1
        else:
            hi_i = mid - 1
    return x.sets + <size_t>sd.set_of[j] * x.words

cdef inline void ipidx_add(insws_t *ws, const instables_t *T, const ipidx_t *x, const uint64_t *a, const uint64_t *b,
                           const uint64_t *c) noexcept nogil:
    cdef uint32_t w
    cdef uint64_t bits
    for w in range(x.words):
        bits = a[w] & b[w]
        if c != NULL:
            bits &= c[w]
        while bits:
            add_candidate(ws, T, x.rule[(w << 6) + <uint32_t>__builtin_ctzll(bits)])
            bits &= bits - 1

cdef void addr_candidates(insws_t *ws, const instables_t *T, int kind, const ip128_t *sip, const ip128_t *dip,
                          bint v6) noexcept nogil:
    """Rules of `kind` whose source side holds `sip` and destination side `dip` (either way round for `<>`)."""
    cdef const ipidx_t *x = &T.ipo[kind]
    cdef const uint64_t *a
    cdef const uint64_t *b
    if x.n_rules == 0:
        return
    a = ipside_set(x, 0, sip, v6)
    b = ipside_set(x, 1, dip, v6)
    if a != NULL and b != NULL:
        ipidx_add(ws, T, x, a, b, NULL)
    if x.bidir != NULL:
        a = ipside_set(x, 0, dip, v6)
        b = ipside_set(x, 1, sip, v6)
        if a != NULL and b != NULL:
            ipidx_add(ws, T, x, a, b, x.bidir)

cdef inline void scan_block(insws_t *ws, const instables_t *T, const idb_t *db, const uint8_t *d,
                            uint32_t n) noexcept nogil:
    cdef hitctx_t h
    if db.db == NULL or n == 0:
        return
    h.ws = ws; h.T = T; h.db = db
    hs_scan(db.db, <const char *>d, n, 0, T.scratch, on_prefilter_hit, &h)

# ---------------------------------------------------------------- rule checks

cdef inline bint ip_in(const instables_t *T, uint32_t off, uint32_t n, const ip128_t *ip, bint v6) noexcept nogil:
    cdef uint64_t hi = __builtin_bswap64(ip.hi)
    cdef uint64_t lo = __builtin_bswap64(ip.lo)
    cdef uint32_t i
    cdef const irange_t *r
    if not v6:
        lo &= 0xffffffffull
    for i in range(n):
        r = &T.ranges[off + i]
        if r.v6 != v6:
            continue
        if v6:
            if ((hi > r.lo_hi or (hi == r.lo_hi and lo >= r.lo_lo))
                    and (hi < r.hi_hi or (hi == r.hi_hi and lo <= r.hi_lo))):
                return True
        elif r.lo_lo <= lo <= r.hi_lo:
            return True
    return False

cdef inline bint port_in(const instables_t *T, uint32_t off, uint32_t n, uint16_t port) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        if T.ports[off + i].lo <= port <= T.ports[off + i].hi:
            return True
    return False

cdef inline bint header_side(const instables_t *T, const irule_t *r, const ip128_t *sip, uint16_t sport,
                             const ip128_t *dip, uint16_t dport, bint v6, bint has_ports) noexcept nogil:
    if not r.src_any and not ip_in(T, r.src_off, r.src_n, sip, v6):
        return False
    if not r.dst_any and not ip_in(T, r.dst_off, r.dst_n, dip, v6):
        return False
    if has_ports:
        if not r.sport_any and not port_in(T, r.sport_off, r.sport_n, sport):
            return False
        if not r.dport_any and not port_in(T, r.dport_off, r.dport_n, dport):
            return False
    elif not r.sport_any or not r.dport_any:
        return False
    return True

cdef inline bint flowbit_isset(const inspslot_t *s, uint16_t bit) noexcept nogil:
    cdef uint32_t i
    for i in range(s.n_bits):
        if s.bits[i] == bit:
            return True
    return False

cdef void flowbit_change(inspslot_t *s, uint16_t bit, uint8_t cmd) noexcept nogil:
    cdef uint32_t i
    for i in range(s.n_bits):
        if s.bits[i] == bit:
            if cmd == FB_UNSET or cmd == FB_TOGGLE:
                s.n_bits -= 1
                s.bits[i] = s.bits[s.n_bits]
            return
    if (cmd == FB_SET or cmd == FB_TOGGLE) and s.n_bits < FLOWBITS_MAX:
        s.bits[s.n_bits] = bit
        s.n_bits += 1

cdef bint flowbits_hold(const instables_t *T, const irule_t *r, const inspslot_t *s) noexcept nogil:
    cdef uint32_t i, j
    cdef const ifbop_t *op
    cdef bint any_set
    for i in range(r.fb_n):
        op = &T.fbops[r.fb_off + i]
        if op.cmd != FB_ISSET and op.cmd != FB_ISNOTSET:
            continue
        any_set = False
        for j in range(op.n):
            if flowbit_isset(s, T.fb_ids[op.off + j]):
                any_set = True
                break
        if op.cmd == FB_ISSET and not any_set:
            return False
        if op.cmd == FB_ISNOTSET:
            # isnotset a|b: true when any of them is not set
            if op.n == 1 and any_set:
                return False
            if op.n > 1:
                any_set = True
                for j in range(op.n):
                    if not flowbit_isset(s, T.fb_ids[op.off + j]):
                        any_set = False
                        break
                if any_set:
                    return False
    return True

cdef inline bint tcp_flags_ok(const irule_t *r, uint8_t flags) noexcept nogil:
    cdef uint8_t f = flags & ~r.flags_ignore
    if r.flags_mode == 0:
        return True
    if r.flags_mode == 1:
        return f == r.flags_want
    if r.flags_mode == 2:
        return (f & r.flags_want) == r.flags_want
    if r.flags_mode == 3:
        return (f & r.flags_want) != 0
    return (f & r.flags_want) == 0

cdef bint rule_header_ok(engine_t *e, tables_t *t, const instables_t *T, const irule_t *r, const flow_t *f,
                         const pkt_t *p, bint to_server, const inspslot_t *s) noexcept nogil:
    if r.transport != 0:
        if r.transport == 255:
            if p.proto != P_TCP and p.proto != P_UDP:
                return False
        elif r.transport == P_ICMP:
            if p.proto != P_ICMP and p.proto != P_ICMPV6:
                return False
        elif r.transport != p.proto:
            return False
    if r.flow_dir == 1 and not to_server:
        return False
    if r.flow_dir == 2 and to_server:
        return False
    if r.flow_state == 1 or r.flow_state == 2:
        if p.proto == P_TCP:
            if (r.flow_state == 1) != (TCP_ESTABLISHED <= f.tcp_state <= TCP_CLOSING
                                       and f.pkts[0] > 0 and f.pkts[1] > 0):
                return False
        elif (r.flow_state == 1) != (f.pkts[0] > 0 and f.pkts[1] > 0):
            return False
    if r.frag_mode == 1 and not p.is_frag:
        return False
    if r.frag_mode == 2 and p.is_frag:
        return False
    if r.app:
        if f.app_state != APPST_DONE or not app_descends(&t.apps, f.app, r.app):
            return False
    if r.dsize.op != NC_NONE and not num_ok(&r.dsize, p.payload_len):
        return False
    if r.itype.op != NC_NONE and (not (p.proto == P_ICMP or p.proto == P_ICMPV6) or not num_ok(&r.itype, p.icmp_type)):
        return False
    if r.icode.op != NC_NONE and (not (p.proto == P_ICMP or p.proto == P_ICMPV6) or not num_ok(&r.icode, p.icmp_code)):
        return False
    if r.flags_mode and (p.proto != P_TCP or not tcp_flags_ok(r, p.tcp_flags)):
        return False
    if not header_side(T, r, &p.src_ip, p.sport, &p.dst_ip, p.dport, p.is_v6,
                       p.has_ports and p.proto != P_ICMP and p.proto != P_ICMPV6):
        if not r.both_dirs or not header_side(T, r, &p.dst_ip, p.dport, &p.src_ip, p.sport, p.is_v6,
                                              p.has_ports and p.proto != P_ICMP and p.proto != P_ICMPV6):
            return False
    if r.fb_n and not flowbits_hold(T, r, s):
        return False
    return True

# ---------------------------------------------------------------- buffers of a rule

cdef bint slot_buffer(insws_t *ws, const instables_t *T, uint32_t slot, const uint8_t **out,
                      uint32_t *n) noexcept nogil:
    cdef uint32_t base = T.slot_base[slot]
    cdef uint32_t m
    if ws.slot_ready[slot] == 0:
        ws.slot_ready[slot] = 2
        if ws.bs.have[base]:
            m = apply_transforms(ws, ws.bs.ptr[base], ws.bs.len[base], T.slot_xf[slot], &ws.slot_ptr[slot])
            if m != UINT32_MAX:
                ws.slot_len[slot] = m
                ws.slot_ready[slot] = 1
    if ws.slot_ready[slot] != 1:
        return False
    out[0] = ws.slot_ptr[slot]
    n[0] = ws.slot_len[slot]
    return True

cdef bint rule_buffers_ok(insws_t *ws, const instables_t *T, const irule_t *r, inspslot_t *s, uint8_t dir,
                          bint tcp) noexcept nogil:
    cdef uint32_t i
    cdef const ibuf_t *b
    cdef const uint8_t *d
    cdef uint32_t n
    for i in range(r.buf_n):
        b = &T.bufs[r.buf_off + i]
        if not slot_buffer(ws, T, b.slot, &d, &n):
            return False
        if b.size.op != NC_NONE and not num_ok(&b.size, n):
            return False
        ws.recursion = 0
        if match_items(ws, T, T.items, b.item_off, b.item_off + b.item_n, d, n, 0):
            continue
        # the payload of a TCP stream: a match may span the previous segment's last bytes
        if not (tcp and T.slot_base[b.slot] == B_PAYLOAD and T.slot_xf[b.slot][0] == XF_NONE and s.tail_len[dir]):
            return False
        if r.has_abs and not ws.win_from_start:
            return False
        if not ws.win_ready:
            memcpy(ws.win, s.tail[dir], s.tail_len[dir])
            memcpy(ws.win + s.tail_len[dir], d, n)
            ws.win_len = s.tail_len[dir] + n
            ws.win_ready = 1
        ws.recursion = 0
        if not match_items(ws, T, T.items, b.item_off, b.item_off + b.item_n, ws.win, ws.win_len, 0):
            return False
    return True

# ---------------------------------------------------------------- the stage

cdef bint file_data_fired(inspslot_t *s, uint32_t rid) noexcept nogil:
    """Did file.data rule `rid` match this response before? Remembers it if not (the first FD_FIRED
    rules of a response; a later one may alert again on the tail it matched in)."""
    cdef uint32_t i
    for i in range(s.fd_n_fired):
        if s.fd_fired[i] == rid:
            return True
    if s.fd_n_fired < FD_FIRED:
        s.fd_fired[s.fd_n_fired] = rid
        s.fd_n_fired += 1
    return False

cdef void emit_alert(engine_t *e, const instables_t *T, flow_t *f, uint32_t rid, bint to_server,
                     uint8_t blocked, const pkt_t *p, uint64_t now) noexcept nogil:
    cdef event_t *ev
    f.alerted = 1
    if f.capture != CAP_NONE:
        capring_put(&e.capture, f, p.data, p.len, f.in_port, CAPK_ALERT, now)
    ev = evring_claim(&e.events)
    if ev == NULL:
        return
    event_from_flow(ev, f, EV_ALERT)
    event_host(e, ev, f)
    ev.sig = rid
    ev.ruleset = T.id
    ev.alert_blocked = blocked
    ev.pkt_to_client = not to_server
    evring_publish(&e.events)

cdef inline void insort_candidates(insws_t *ws) noexcept nogil:
    cdef uint32_t i, j
    cdef icand_t c
    for i in range(1, ws.n_cand):
        c = ws.cand[i]
        j = i
        while j > 0 and ws.cand[j - 1].rank > c.rank:
            ws.cand[j] = ws.cand[j - 1]
            j -= 1
        ws.cand[j] = c

cdef bint overlap_agrees(const inspslot_t *s, uint8_t dir, const pkt_t *p, uint32_t back) noexcept nogil:
    """Does the part of a segment that overlaps what was inspected (`back` bytes before the next
    expected byte) carry the same bytes? Only the kept tail can be compared; older bytes are not."""
    cdef uint32_t start, n, tail_off
    cdef const uint8_t *d = p.data + p.payload_off
    n = back if back < p.payload_len else p.payload_len
    if back > s.tail_len[dir]:
        # the segment starts before the tail: compare from where the tail begins
        start = back - s.tail_len[dir]
        if start >= n:
            return True
        tail_off = 0
        return memcmp(d + start, s.tail[dir], n - start) == 0
    tail_off = s.tail_len[dir] - back
    return memcmp(d, s.tail[dir] + tail_off, n) == 0

cdef uint32_t tcp_new_bytes(engine_t *e, insws_t *ws, inspslot_t *s, uint8_t dir, const pkt_t *p,
                            uint32_t *skip, const uint8_t **joined, int *reason) noexcept nogil:
    """How many bytes of this segment are new in its direction's stream (skip: the old ones before them), by
    the stream engine (stream.pxi). `joined`: set when the segment filled a hole and held bytes follow it (a
    replay): the new bytes are there, not in the segment. UINT32_MAX: drop it (beyond a hole while inline, or
    rewriting inspected bytes)."""
    cdef tcpwin_t *w = &s.win[dir]
    cdef uint32_t seq = segment_seq(p), back, n
    cdef int hole
    skip[0] = 0
    if stream_place(w, seq, p.payload_len, &back) == SEG_BEYOND:
        ws.out_of_order += 1
        hole = stream_hole(w, e.mode, False, True, INSPECT_HOLE_WAIT)
        if hole == HOLE_DROP:
            reason[0] = R_STREAM_GAP
            return UINT32_MAX
        if hole == HOLE_WAIT:
            stream_hold(&ws.hold, w, seq, p.data + p.payload_off, p.payload_len)   # read once the hole fills
            return 0
        # a capture's loss: inspection resumes after the hole, comparing nothing with what came before it
        hold_give(&ws.hold, w)
        stream_skip_hole(w, seq)
        s.tail_len[dir] = 0
    if back:
        if back == 1 and p.payload_len <= 1:
            return 0      # a keep-alive probe (one old byte, often garbage): not a rewrite
        ws.overlaps += 1
        if not overlap_agrees(s, dir, p, back):
            # a retransmission that rewrites bytes already inspected and forwarded: the receiver may
            # not have the first copy, so this one must not pass uninspected
            ws.overlap_mismatch += 1
            reason[0] = R_STREAM_REWRITE
            return UINT32_MAX
        if back >= p.payload_len:
            return 0
        skip[0] = back
    n = p.payload_len - back
    stream_advance(w, n)
    if w.hold:
        # the hole may have filled: the bytes held beyond it follow this segment's
        memcpy(ws.joined, p.data + p.payload_off + back, n)
        n += stream_held_run(&ws.hold, w, ws.joined + n, HOLD_MAX)
        if n > p.payload_len - back:
            joined[0] = ws.joined
            skip[0] = 0
    return n

cdef void keep_tail(inspslot_t *s, uint8_t dir, const uint8_t *d, uint32_t n) noexcept nogil:
    cdef uint32_t keep
    if n >= TAIL_MAX:
        memcpy(s.tail[dir], d + n - TAIL_MAX, TAIL_MAX)
        s.tail_len[dir] = TAIL_MAX
        return
    keep = s.tail_len[dir]
    if keep + n > TAIL_MAX:
        memmove(s.tail[dir], s.tail[dir] + keep + n - TAIL_MAX, TAIL_MAX - n)
        keep = TAIL_MAX - n
    memcpy(s.tail[dir] + keep, d, n)
    s.tail_len[dir] = keep + n

cdef void fill_app_buffers(insws_t *ws, tables_t *t, const instables_t *T, flow_t *f, inspslot_t *s, uint8_t dir,
                           const uint8_t *d, uint32_t n, bint tcp) noexcept nogil:
    cdef bint decided = f.app_state == APPST_DONE
    cdef bint parsed = False
    if n == 0:
        return
    if decided and T.app_http2 and app_descends(&t.apps, f.app, T.app_http2):
        if tcp:
            h2_frames(ws, s, dir, d, n)
        return
    if not decided or (T.app_http and app_descends(&t.apps, f.app, T.app_http)):
        if s.asm >= 0 and s.asm_kind == ASM_HTTP_HEAD + dir:
            # the rest of a head that began in an earlier segment
            d, n = http_head_assemble(ws, s, d, n)
            if n == 0:
                return
        elif tcp and n < ASM_MAX and not http_head_complete(d, n) and (
                (dir == 0 and http_request_start(d, n)) or (dir == 1 and n >= 5 and memcmp(d, b"HTTP/", 5) == 0)):
            # a head split across segments: keep it until it is whole (the first part is inspected now)
            asm_begin(ws, s, ASM_HTTP_HEAD + dir, d, n)
        if dir == 0:
            parsed = http_request(ws, s, d, n)
        else:
            parsed = http_response(ws, s, d, n)
        if not parsed:
            http_body_continues(ws, s, dir, d, n)
        if parsed or decided:
            return
    if dir == 0 and (not decided or (T.app_tls and app_descends(&t.apps, f.app, T.app_tls))) and tcp:
        if s.asm >= 0 and s.asm_kind == ASM_TLS_HELLO:
            # the rest of a ClientHello that began in an earlier segment
            d, n = tls_hello_assemble(ws, s, d, n)
            if n == 0:
                return
        elif n < ASM_MAX and tls_hello_pending(d, n):
            # a ClientHello cut over segments (or TLS records): kept until it is whole, then read
            asm_begin(ws, s, ASM_TLS_HELLO, d, n)
            return
        if tls_sni_buffer(ws, d, n) | ja3_buffers(ws, d, n):
            return
    if (not decided or (T.app_dns and app_descends(&t.apps, f.app, T.app_dns))) and dir == 0:
        if dns_query_buffer(ws, d, n, tcp):
            return
    if dir == 1 and tcp and (not decided or (T.app_tls and app_descends(&t.apps, f.app, T.app_tls))):
        if s.asm < 0 and not s.tls_done:
            ja3_buffers(ws, d, n)          # the ServerHello opens the server's first segment
        tls_server_bytes(ws, s, d, n)
        if ws.bs.have[B_TLS_CERTS] or decided:
            return
    if not decided or (T.app_ssh and app_descends(&t.apps, f.app, T.app_ssh)):
        ssh_banner_buffers(ws, d, n)

cdef int inspect_packet(engine_t *e, tables_t *t, flow_t *f, const pkt_t *p, bint to_server, uint64_t now,
                        int *reason) noexcept nogil:
    """Inspect one packet of an allowed flow; returns the verdict (A_ALLOW, A_DENY or A_REJECT) and, for
    a drop, its reason (R_THREAT: a signature; R_STREAM_*, R_FRAG_UNINSPECTED: this packet only)."""
    global inspect_stamp
    cdef insws_t *ws = e.ins
    cdef const instables_t *T = NULL
    cdef const iprofile_t *prof
    cdef inspslot_t *s
    cdef uint8_t dir = 0 if to_server else 1
    cdef bint tcp = p.proto == P_TCP
    cdef const uint8_t *d = p.data + p.payload_off
    cdef uint32_t n = p.payload_len, skip = 0, i, slot, rid, j, scan_n
    cdef hitctx_t h
    cdef const irule_t *r
    cdef const ifbop_t *op
    cdef uint8_t action, verdict = A_ALLOW
    cdef uint8_t blocked
    cdef int vs, outcome, why
    cdef bint nothing_due, took = False
    cdef uint32_t inspected_end
    cdef const uint8_t *joined
    cdef const xrule_t *xr
    if ws == NULL or f.profile < 0 or <uint32_t>f.profile >= t.n_profiles:
        return A_ALLOW
    prof = &t.profiles[f.profile]
    T = prof.T
    if T == NULL:
        return A_ALLOW
    # no payload and no header-only rule due on this packet (a header-only rule is due on the first packet
    # of each direction)
    nothing_due = n == 0 and (T.nopf_n == 0 or (f.pkts[dir] != 1
                                                and T.ipo[1].n_rules == 0))
    if f.insp < 0:
        if nothing_due and not p.is_frag:
            # no state yet for a packet with nothing to inspect: a flood of SYNs takes no slot of the pool
            # (where each direction's stream starts is on the flow: tcp_track)
            return A_ALLOW
        f.insp = inspool_take(&ws.pool)
        if f.insp < 0:
            f.profile = -1          # no state left: this flow goes uninspected (counted)
            return A_ALLOW
        took = True
        if n:
            ws.flows_inspected += 1
        s = &ws.pool.slots[f.insp]
        s.ruleset = T.id
        s.asm = -1
        if tcp:
            for j in range(2):
                if f.syn_seen & (1 << j):
                    # the direction's SYN went by before the slot was taken: its stream starts after it
                    stream_begin(&s.win[j], f.data_seq[j])
    s = &ws.pool.slots[f.insp]
    if s.passed:
        return A_ALLOW
    if s.ruleset != T.id:
        # a new rule set: its databases cannot continue the old streams
        insp_close_streams(s)
        s.ruleset = T.id
        s.tail_len[0] = 0
        s.tail_len[1] = 0
        s.n_bits = 0
    if p.is_frag:
        if tcp and e.mode == MODE_LIVE:
            # a TCP segment cut in IP fragments: the later fragments would pass uninspected
            ws.fragments_dropped += 1
            reason[0] = R_FRAG_UNINSPECTED
            return A_DENY
        if not p.frag_first:
            return A_ALLOW
    if tcp and (p.tcp_flags & TH_SYN):
        # the stream of this direction starts after the SYN: a first data segment beyond it is a hole
        stream_begin(&s.win[dir], p.tcp_seq + 1)
    if nothing_due:
        return A_ALLOW
    # per-packet workspace
    # one stamp sequence for every engine of the process: a rule set's stamps are shared by the engines
    # that use it (two engines stamping from 1 each would take each other's stamps for their own)
    inspect_stamp += 1
    if inspect_stamp == 0:
        memset(T.stamp, 0, T.n_rules * sizeof(uint32_t))
        inspect_stamp = 1
    ws.stamp_now = inspect_stamp
    ws.n_cand = 0
    ws.norm_used = 0
    ws.win_ready = 0
    memset(ws.bs.have, 0, B_COUNT)
    memset(ws.slot_ready, 0, T.n_slots)
    if n:
        if tcp:
            if s.done[dir] and <int32_t>(segment_seq(p) - s.win[dir].next_seq) >= 0:
                # past the inspection depth: nothing of it is inspected, so neither a hole before it nor a
                # retransmission of it matters (holding it back would only stall the connection); the stretch
                # the kernel forwarded while the flow was bypassed is such a hole
                return A_ALLOW
            inspected_end = s.win[dir].next_seq
            joined = NULL
            scan_n = tcp_new_bytes(e, ws, s, dir, p, &skip, &joined, reason)
            if scan_n == UINT32_MAX:
                return A_DENY
            if scan_n == 0:
                return A_ALLOW      # a retransmission: its first copy was inspected
            if s.done[dir]:
                # a retransmission from before the depth to past it: what it repeats of the inspected bytes
                # agreed; the inspected stream still ends at the depth
                s.win[dir].next_seq = inspected_end
                return A_ALLOW
            d = joined if joined != NULL else d + skip
            n = scan_n
            ws.win_from_start = s.inspected[dir] <= s.tail_len[dir]
            if s.inspected[dir] + n >= prof.depth:
                n = prof.depth - s.inspected[dir] if prof.depth > s.inspected[dir] else 0
                # the inspected stream ends at the depth, where the kept tail ends: a retransmission of the bytes
                # before it is compared with what was inspected, and anything after it is not (it used to be
                # compared with the tail of the depth, and an honest retransmission was dropped as a rewrite)
                s.win[dir].next_seq -= scan_n - n
                s.done[dir] = 1
                ws.depth_reached += 1
            if n and T.stream_db[dir].db != NULL:
                if s.stream[dir] == NULL:
                    hs_open_stream(T.stream_db[dir].db, 0, &s.stream[dir])
                if s.stream[dir] != NULL:
                    h.ws = ws; h.T = T; h.db = &T.stream_db[dir]
                    hs_scan_stream(s.stream[dir], <const char *>d, n, 0, T.scratch, on_prefilter_hit, &h)
            s.inspected[dir] += n
        else:
            ws.win_from_start = True
            scan_block(ws, T, &T.pkt_db[dir], d, n)
        ws.bytes_inspected += n
        bs_set(&ws.bs, B_PAYLOAD, d, n)
        ws.fd_window = T.fd_rules
        fill_app_buffers(ws, t, T, f, s, dir, d, n, tcp)
        if not tcp and dir == 0 and not s.tls_done and f.host >= 0 and f.app_state == APPST_DONE and T.app_quic \
                and app_descends(&t.apps, f.app, T.app_quic):
            # the SNI App-ID read from the client's Initials (reassembled over several): once, on the packet
            # that completed the hello
            s.tls_done = 1
            bs_set(&ws.bs, B_QUIC_SNI, <const uint8_t *>e.hostpool.names[f.host], e.hostpool.lens[f.host])
        for slot in range(T.n_slots):
            if T.slot_db[slot].db != NULL and ws.bs.have[T.slot_base[slot]] and T.slot_base[slot] != B_PAYLOAD:
                if slot_buffer(ws, T, slot, &d, &scan_n):
                    scan_block(ws, T, &T.slot_db[slot], d, scan_n)
        d = ws.bs.ptr[B_PAYLOAD]
    else:
        bs_set(&ws.bs, B_PAYLOAD, d, 0)
    if T.nopf_n:
        # rules without a fast pattern, found by address; header-only ones once per flow direction
        for j in range(2):
            if j == 0 and f.pkts[dir] != 1:
                continue
            addr_candidates(ws, T, j, &p.src_ip, &p.dst_ip, p.is_v6)
    if ws.n_cand > 1:
        insort_candidates(ws)
    vs = f.vsys + 1 if f.vsys >= 0 and f.vsys < 1023 else 0
    for i in range(ws.n_cand):
        rid = ws.cand[i].rule
        r = &T.rules[rid]
        if not ((prof.set_mask >> r.set_id) & 1):
            continue
        if not rule_header_ok(e, t, T, r, f, p, to_server, s):
            continue
        if r.file_data == FD_ANCHORED and not ws.fd_from_start and ws.bs.have[B_FILE_DATA]:
            continue        # anchored at the body's first byte: looked at while the window held it
        if not rule_buffers_ok(ws, T, r, s, dir, tcp):
            continue
        xr = xrule_of(prof, rid) if prof.n_xrules else NULL
        if xr != NULL and (xr.disabled or rule_excepted(prof, xr, f, p, to_server)):
            ws.suppressed[vs][SUP_EXCEPTION] += 1     # an exception: the rule does not run here
            continue
        if r.file_data and ws.bs.have[B_FILE_DATA] and file_data_fired(s, rid):
            continue        # it alerted on this response already (the window repeats the tail it matched in)
        T.rule_matches[rid] += 1
        for j in range(r.fb_n):
            op = &T.fbops[r.fb_off + j]
            if op.cmd == FB_SET or op.cmd == FB_UNSET or op.cmd == FB_TOGGLE:
                flowbit_change(s, T.fb_ids[op.off], op.cmd)
        if r.action == IA_PASS:
            s.passed = 1
            break
        action = r.action
        outcome = alert_outcome(ws, T, prof, xr, r, f, p, now, &action, &why)
        if outcome == TR_NONE:
            if not r.noalert:
                ws.suppressed[vs][why] += 1
            continue
        if r.noalert:
            outcome = TR_SILENT       # flowbit setters and the like: the action stands, no alert
        elif outcome == TR_SILENT:
            ws.suppressed[vs][why] += 1
        if action == IA_PASS:
            action = IA_ALERT         # a rate_filter's `pass`: this match does not block
        if prof.action_override == 1:
            action = IA_ALERT
        elif prof.action_override == 2 and action == IA_ALERT:
            action = IA_DROP
        blocked = action == IA_DROP or action == IA_REJECT
        if outcome == TR_ALERT:
            emit_alert(e, T, f, rid, to_server, blocked, p, now)
            ws.alerts[vs][(r.priority - 1) & 3][blocked] += 1
        if action == IA_REJECT:
            verdict = A_REJECT
        elif action == IA_DROP and verdict == A_ALLOW:
            verdict = A_DENY
    if tcp and n:
        keep_tail(s, dir, ws.bs.ptr[B_PAYLOAD], ws.bs.len[B_PAYLOAD])
    if s.asm >= 0 and (s.asm_kind == ASM_TLS and s.tls_done or s.asm_kind == ASM_DONE):
        asm_give(&ws.asm_pool, s)      # the buffers pointed into it until now
    if verdict != A_ALLOW:
        f.threat = verdict
        ws.blocked_flows += 1
        reason[0] = R_THREAT
    if took and n == 0:
        if s.n_bits == 0 and not s.passed and verdict == A_ALLOW:
            # header-only rules had their look at a packet without payload (a SYN) and left nothing to keep:
            # the slot goes back, so a SYN flood holds none
            inspool_give(&ws.pool, f.insp)
            f.insp = -1
        else:
            ws.flows_inspected += 1
    return verdict


# ---------------------------------------------------------------- Engine.inspect_stats

cdef object inspect_stats_dict(Engine self):
    cdef insws_t *ws = self.e.ins
    cdef uint32_t v, s, b
    alerts = {}
    for v in range(1024):
        for s in range(4):
            for b in range(2):
                if ws.alerts[v][s][b]:
                    alerts[(<int>v - 1, s + 1, bool(b))] = ws.alerts[v][s][b]
    suppressed = {}
    for v in range(1024):
        for s in range(SUP_COUNT):
            if ws.suppressed[v][s]:
                suppressed[(<int>v - 1, SUPPRESS_REASONS[s])] = ws.suppressed[v][s]
    return {"alerts": alerts, "suppressed": suppressed,
            "flows_inspected": ws.flows_inspected, "flows_blocked": ws.blocked_flows,
            "bytes_inspected": ws.bytes_inspected, "depth_reached": ws.depth_reached,
            "out_of_order": ws.out_of_order, "overlaps": ws.overlaps, "overlap_mismatch": ws.overlap_mismatch,
            "fragments_dropped": ws.fragments_dropped, "candidates_overflow": ws.cand_overflow,
            "state_exhausted": ws.pool.exhausted, "state_in_use": ws.pool.in_use,
            "decompression_bomb": ws.bombs, "body_limit": ws.body_limit, "decoders_exhausted": ws.bodydec.exhausted,
            "hpack_tables_exhausted": ws.h2tab.exhausted, "hpack_malformed": ws.h2tab.malformed,
            "hpack_unresolved": ws.h2tab.unresolved, "hpack_block_too_large": ws.h2tab.lost}
