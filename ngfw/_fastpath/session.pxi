# Session state: flows out as records, records in as flows (the format and why: session_defs.pxi).
# Everything here runs on the packet loop's thread (a request it serves between bursts) or while the
# loop is stopped: the flow table has one writer.

from libc.stdlib cimport realloc

cdef extern from "hs.h" nogil:
    int HS_INSUFFICIENT_SPACE
    int hs_compress_stream(const hs_stream_t *stream, char *buf, size_t buf_space, size_t *used_space)
    int hs_expand_stream(const hs_database_t *db, hs_stream_t **stream, const char *buf, size_t buf_size)

cdef int sbuf_reserve(sbuf_t *b, size_t more) noexcept nogil:
    cdef size_t cap
    cdef uint8_t *p
    if b.n + more <= b.cap:
        return 0
    cap = b.cap * 2 if b.cap else 65536
    while cap < b.n + more:
        cap *= 2
    p = <uint8_t *>realloc(b.p, cap)
    if p == NULL:
        return -1
    b.p = p
    b.cap = cap
    return 0

cdef inline uint32_t align8(size_t n) noexcept nogil:
    return <uint32_t>((n + 7) & ~(<size_t>7))

cdef inline const instables_t *flow_rule_set(const tables_t *t, const flow_t *f) noexcept nogil:
    """The rule set the flow's threat profile inspects it with (NULL: not inspected)."""
    if t == NULL or f.profile < 0 or <uint32_t>f.profile >= t.n_profiles:
        return NULL
    return t.profiles[f.profile].T

# ---------------------------------------------------------------- out

cdef int session_write(sbuf_t *out, const flow_t *f, const char *host, uint32_t host_len,
                       const inspslot_t *s, const instables_t *T, bint streams, uint64_t now) noexcept nogil:
    """Append `f` as one record (with its host name, inspection position `s` and, when `streams` and `s`
    belongs to `T`, Hyperscan's compressed streams); -1 when out of memory."""
    cdef sess_rec_t *r
    cdef sess_eve_t *eve
    cdef size_t slen[2]
    cdef size_t used
    cdef uint32_t tails[2]
    cdef uint8_t *tail
    cdef int d
    cdef bint with_streams = False
    slen[0] = 0
    slen[1] = 0
    tails[0] = 0
    tails[1] = 0
    if host_len > HOST_MAX:
        host_len = HOST_MAX
    if s != NULL:
        for d in range(2):
            tails[d] = s.tail_len[d] if s.tail_len[d] <= TAIL_MAX else 0   # a torn slot says nothing
        if streams and T != NULL and s.ruleset == T.id:
            with_streams = True
            for d in range(2):
                if s.stream[d] != NULL:
                    # asked with no room, Hyperscan says how much it needs
                    if hs_compress_stream(s.stream[d], NULL, 0, &slen[d]) != HS_INSUFFICIENT_SPACE:
                        slen[d] = 0
    if sbuf_reserve(out, align8(sizeof(sess_rec_t) + host_len + tails[0] + tails[1] + slen[0] + slen[1])
                    + sizeof(sess_eve_t)) < 0:
        return -1
    r = <sess_rec_t *>(out.p + out.n)
    memset(r, 0, sizeof(sess_rec_t))
    r.version = SESS_VERSION
    r.init_is_a = f.init_is_a
    r.tcp_state = f.tcp_state
    r.key = f.key
    r.flow_id = f.flow_id
    r.age_ns = now - f.ts_first if now > f.ts_first else 0
    r.idle_ns = now - f.ts_last if now > f.ts_last else 0
    r.pkts[0] = f.pkts[0]
    r.pkts[1] = f.pkts[1]
    r.bytes[0] = f.bytes[0]
    r.bytes[1] = f.bytes[1]
    r.data_seq[0] = f.data_seq[0]
    r.data_seq[1] = f.data_seq[1]
    r.app = f.app if f.app_state == APPST_DONE else 0
    r.app_state = f.app_state
    r.app_conf = f.app_conf
    r.app_pkts = f.app_pkts
    r.pl_pkts[0] = f.pl_pkts[0]
    r.pl_pkts[1] = f.pl_pkts[1]
    r.host_extra = f.host_extra
    r.fin_seen = f.fin_seen
    r.syn_seen = f.syn_seen
    r.is_v6 = f.is_v6
    r.action = f.action
    r.threat = f.threat
    r.in_port = <uint8_t>f.in_port
    r.host_len = <uint8_t>host_len
    tail = <uint8_t *>r + sizeof(sess_rec_t)
    if host_len:
        memcpy(tail, host, host_len)
        tail += host_len
    if s != NULL:
        r.flags |= SF_INSP
        for d in range(2):
            r.i_next_seq[d] = s.win[d].next_seq
            r.i_inspected[d] = s.inspected[d]
            r.i_body_left[d] = s.body_left[d]
            r.i_h2_skip[d] = s.h2_skip[d]
            r.i_seq_set[d] = s.win[d].seq_set
            r.i_done[d] = s.done[d]
            r.i_http_body[d] = s.http_body[d]
            r.i_h2_state[d] = s.h2_state[d]
            r.i_tail_len[d] = <uint16_t>tails[d]
            memcpy(tail, s.tail[d], tails[d])
            tail += tails[d]
        r.i_passed = s.passed
        r.i_tls_done = s.tls_done
        r.i_n_bits = s.n_bits if s.n_bits <= FLOWBITS_MAX else 0
        memcpy(r.i_bits, s.bits, sizeof(r.i_bits))
        if T != NULL:
            r.stream_digest = T.digest
        if with_streams:
            r.flags |= SF_STREAMS
            for d in range(2):
                used = 0
                if slen[d] and hs_compress_stream(s.stream[d], <char *>tail, slen[d], &used) == HS_SUCCESS:
                    r.stream_len[d] = <uint32_t>used
                    tail += used
    r.rec_len = align8(tail - <uint8_t *>r) + sizeof(sess_eve_t)
    # the padding is zeroed: records are compared and hashed as bytes
    memset(tail, 0, r.rec_len - (tail - <uint8_t *>r))
    eve = <sess_eve_t *>(<uint8_t *>r + r.rec_len - sizeof(sess_eve_t))
    eve.magic = SESS_EVE_MAGIC
    eve.tcp_flags[0] = f.tcp_flags[0]
    eve.tcp_flags[1] = f.tcp_flags[1]
    eve.icmp_type = f.icmp_type
    eve.icmp_code = f.icmp_code
    eve.alerted = f.alerted
    out.n += r.rec_len
    return 0

cdef inline int32_t workload_at(const tables_t *t, uint64_t hi, uint64_t lo) noexcept nogil:
    return idmap_get(&t.wl_by_ip, hi, lo)

cdef inline void flow_hand_over(flow_t *f, bint workload_is_a) noexcept nogil:
    """The destination owns the flow now; which end is the moved workload tells whose packets mean "this
    flow still crosses here" (see MIG_OUT_*)."""
    f.mig = MIG_OUT_CLIENT if workload_is_a == (f.init_is_a != 0) else MIG_OUT_SERVER

cdef void session_export(engine_t *e, sess_req_t *q, uint64_t now) noexcept nogil:
    """Flows matching the request's filter as records, from slot `q.cursor` on, at most `q.limit`."""
    cdef flowtable_t *ft = &e.flows
    cdef const tables_t *t = e.tables
    cdef uint32_t s = q.cursor
    cdef uint32_t end = ft.mask + 1
    cdef flow_t *f
    cdef int32_t wa = -1, wb = -1
    cdef const inspslot_t *ins
    cdef const char *host
    cdef uint32_t host_len
    q.exported = 0
    while s < end:
        if flow_slot_released(ft, s):
            s = flow_next_slot_to_read(ft, s)   # a page given back holds no flow, and a read would take it back
            continue
        f = &ft.slots[s]
        s += 1
        if not f.used or f.mig == MIG_OUT_CLIENT or f.mig == MIG_OUT_SERVER:
            continue
        if q.workload >= 0:
            if t == NULL:
                continue
            wa = workload_at(t, f.key.a_hi, f.key.a_lo)
            wb = workload_at(t, f.key.b_hi, f.key.b_lo)
            if wa != q.workload and wb != q.workload:
                continue
        if q.only_allowed and f.action != A_ALLOW:
            continue
        if f.bypass == BP_IN:
            # a flow handed over must reach this host's loop again (the kernel would forward it unseen);
            # any other export carries the counters as of now
            if q.hand_over and q.workload >= 0:
                bypass_leave(e, f, now)
            else:
                bypass_fold(e, f, now)
        if sbuf_reserve(&q.keys, sizeof(flow_key_t)) == 0:
            memcpy(q.keys.p + q.keys.n, &f.key, sizeof(flow_key_t))
            q.keys.n += sizeof(flow_key_t)
        if q.changed_since and f.ts_last < q.changed_since:
            if q.hand_over:
                flow_hand_over(f, wa == q.workload)   # the destination has it from the earlier transfer
            continue
        host = NULL
        host_len = 0
        if f.host >= 0:
            host = e.hostpool.names[f.host]
            host_len = e.hostpool.lens[f.host]
        ins = &e.ins.pool.slots[f.insp] if f.insp >= 0 and e.ins != NULL else NULL
        if session_write(&q.out, f, host, host_len, ins, flow_rule_set(t, f), q.streams, now) < 0:
            q.error = -2   # out of memory: what was written stands, the caller says so
            break
        q.exported += 1
        if q.hand_over and q.workload >= 0:
            flow_hand_over(f, wa == q.workload)
        if q.limit and q.exported >= q.limit:
            break
    q.cursor = s if s < end else 0

# ---------------------------------------------------------------- in

cdef inline bint key_normalised(const flow_key_t *k) noexcept nogil:
    """The lower (address, port) is side a, as flow_key_from_pkt makes every key: others never match."""
    if k.a_hi != k.b_hi:
        return k.a_hi < k.b_hi
    if k.a_lo != k.b_lo:
        return k.a_lo < k.b_lo
    return k.a_port <= k.b_port

cdef inline bint v4_mapped(uint64_t hi, uint64_t lo) noexcept nogil:
    return hi == 0 and (lo & 0xffffffffull) == 0xffff0000ull

cdef bint record_well_formed(const sess_rec_t *r, size_t avail) noexcept nogil:
    cdef size_t tail
    cdef int d
    if avail < sizeof(sess_rec_t) or r.version != SESS_VERSION or r.rec_len < sizeof(sess_rec_t) \
            or r.rec_len > avail or (r.rec_len & 7):
        return False
    tail = <size_t>r.host_len + r.i_tail_len[0] + r.i_tail_len[1] + r.stream_len[0] + r.stream_len[1]
    if r.host_len > HOST_MAX or sizeof(sess_rec_t) + tail > r.rec_len:
        return False
    if r.flags & ~(SF_TOMBSTONE | SF_INSP | SF_STREAMS):
        return False
    if not key_normalised(&r.key) or r.key.vlan > 4095:
        return False
    if r.is_v6 > 1 or (not r.is_v6 and not (v4_mapped(r.key.a_hi, r.key.a_lo) and v4_mapped(r.key.b_hi, r.key.b_lo))):
        return False
    if r.flags & SF_TOMBSTONE:
        return True
    if r.init_is_a > 1 or r.fin_seen > 3 or r.syn_seen > 3 or r.app_state > APPST_DONE or r.app_conf > 100:
        return False
    if r.key.proto == P_TCP:
        if r.tcp_state == TCP_NONE or r.tcp_state > TCP_CLOSED:
            return False
    elif r.tcp_state != TCP_NONE:
        return False
    if r.threat != 0 and r.threat != A_DENY and r.threat != A_REJECT:
        return False
    if r.flags & SF_INSP:
        for d in range(2):
            if r.i_tail_len[d] > TAIL_MAX or r.i_seq_set[d] > 1 or r.i_done[d] > 1:
                return False
        if r.i_n_bits > FLOWBITS_MAX:
            return False
    elif r.i_tail_len[0] or r.i_tail_len[1] or r.stream_len[0] or r.stream_len[1]:
        return False
    return True

cdef const sess_eve_t *record_eve(const sess_rec_t *r) noexcept nogil:
    """The record's EVE trailer (session_defs.pxi), NULL when it has none (an older exporter's); `r` is well formed."""
    cdef size_t used = sizeof(sess_rec_t) + <size_t>r.host_len + r.i_tail_len[0] + r.i_tail_len[1] \
        + r.stream_len[0] + r.stream_len[1]
    cdef const sess_eve_t *eve
    if r.rec_len < align8(used) + sizeof(sess_eve_t):
        return NULL
    eve = <const sess_eve_t *>(<const uint8_t *>r + r.rec_len - sizeof(sess_eve_t))
    return eve if eve.magic == SESS_EVE_MAGIC else NULL

cdef void flow_free_parts(engine_t *e, flow_t *f) noexcept nogil:
    """Give back what a flow holds in the pools (App-ID buffers, host name, inspection), not its quota."""
    if f.cls >= 0:
        clspool_give(&e.cls, f.cls)
        f.cls = -1
    hostpool_give(&e.hostpool, f.host)
    f.host = -1
    inspect_flow_end(e, f)

cdef void flow_drop_silently(engine_t *e, flow_t *f) noexcept nogil:
    """Remove a flow with no record of its end: another host owns (or owned) it."""
    bypass_leave(e, f, e.last_sweep)     # its map entries go with it
    flow_free_parts(e, f)
    quota_release(e.vsys, f.quota_slot)
    f.quota_slot = 0
    flow_remove_slot(&e.flows, <uint32_t>(f - e.flows.slots))

cdef void session_restore_inspection(engine_t *e, flow_t *f, const sess_rec_t *r, const tables_t *t,
                                     sess_req_t *q) noexcept nogil:
    cdef const instables_t *T = flow_rule_set(t, f)
    cdef inspslot_t *s
    cdef const uint8_t *tail = <const uint8_t *>r + sizeof(sess_rec_t) + r.host_len
    cdef bint same_rules
    cdef int d
    if T == NULL or e.ins == NULL or not (r.flags & SF_INSP):
        return
    f.insp = inspool_take(&e.ins.pool)
    if f.insp < 0:
        return   # no state left: inspection starts afresh on the next packet, if a slot frees up
    e.ins.flows_inspected += 1
    s = &e.ins.pool.slots[f.insp]
    s.ruleset = T.id
    s.asm = -1
    s.resp_dec = 0      # decoders are not carried over: a chunked or encoded body in progress is read raw
    same_rules = r.stream_digest == T.digest and T.digest != 0
    for d in range(2):
        s.win[d].next_seq = r.i_next_seq[d]
        s.inspected[d] = r.i_inspected[d]
        s.body_left[d] = r.i_body_left[d]
        s.h2_skip[d] = r.i_h2_skip[d]
        s.win[d].seq_set = r.i_seq_set[d]
        s.done[d] = r.i_done[d]
        s.http_body[d] = r.i_http_body[d]
        s.h2_state[d] = r.i_h2_state[d]
        s.tail_len[d] = r.i_tail_len[d]
        memcpy(s.tail[d], tail, r.i_tail_len[d])
        tail += r.i_tail_len[d]
    s.tls_done = r.i_tls_done
    if not same_rules:
        return   # another rule set: flowbits and `pass` meant other rules; its streams start afresh
    s.passed = r.i_passed
    s.n_bits = r.i_n_bits
    memcpy(s.bits, r.i_bits, sizeof(r.i_bits))
    if r.flags & SF_STREAMS:
        for d in range(2):
            if r.stream_len[d] and T.stream_db[d].db != NULL:
                if hs_expand_stream(T.stream_db[d].db, &s.stream[d], <const char *>tail, r.stream_len[d]) == HS_SUCCESS:
                    q.streams_restored += 1
                else:
                    s.stream[d] = NULL
            tail += r.stream_len[d]

cdef int session_import_one(engine_t *e, tables_t *t, const sess_rec_t *r, size_t avail, sess_req_t *q,
                            uint64_t now) noexcept nogil:
    """Import one record as the importer's policy sees it; returns an SI_* result."""
    cdef flow_t nf
    cdef flow_t *f
    cdef pkt_t p
    cdef decision_t d
    cdef uint32_t h
    cdef int32_t src_wl, dst_wl, vs
    cdef uint16_t charged = 0
    cdef uint16_t app = 0
    cdef bint update = False
    cdef const sess_eve_t *eve
    if not record_well_formed(r, avail):
        return SI_MALFORMED
    h = flow_hash(&r.key)
    f = flow_lookup(&e.flows, &r.key, h)
    if r.flags & SF_TOMBSTONE:
        if f != NULL and f.mig != MIG_NONE:
            flow_drop_silently(e, f)
        return SI_REMOVED
    if f != NULL:
        # a later transfer of the same move updates what the earlier one brought; a workload that comes back
        # brings its sessions' newer state to the copies it left here
        if not (q.migration and f.mig != MIG_NONE):
            return SI_PRESENT
        update = True
    # the flow as the record has it, then decided here
    memset(&nf, 0, sizeof(flow_t))
    nf.key = r.key
    nf.used = 1
    nf.init_is_a = r.init_is_a
    nf.tcp_state = r.tcp_state
    nf.fin_seen = r.fin_seen
    nf.syn_seen = r.syn_seen
    nf.is_v6 = r.is_v6
    nf.in_port = r.in_port if r.in_port < e.n_ports else 0
    nf.flow_id = r.flow_id
    nf.ts_first = now - r.age_ns if r.age_ns < now else 1
    nf.ts_last = now - r.idle_ns if r.idle_ns < now else 1
    nf.pkts[0] = r.pkts[0]
    nf.pkts[1] = r.pkts[1]
    nf.bytes[0] = r.bytes[0]
    nf.bytes[1] = r.bytes[1]
    nf.data_seq[0] = r.data_seq[0]
    nf.data_seq[1] = r.data_seq[1]
    nf.pl_pkts[0] = r.pl_pkts[0]
    nf.pl_pkts[1] = r.pl_pkts[1]
    nf.threat = r.threat
    eve = record_eve(r)
    if eve != NULL:
        nf.tcp_flags[0] = eve.tcp_flags[0]
        nf.tcp_flags[1] = eve.tcp_flags[1]
        if r.key.proto == P_ICMP or r.key.proto == P_ICMPV6:
            nf.icmp_type = eve.icmp_type
            nf.icmp_code = eve.icmp_code
        nf.alerted = eve.alerted != 0
    nf.cls = -1
    nf.host = -1
    nf.insp = -1
    if r.app_state == APPST_DONE and r.app < q.n_app_map:
        app = q.app_map[r.app]
    if app:
        nf.app = app
        nf.app_state = APPST_DONE
        nf.app_conf = r.app_conf
        nf.app_pkts = r.app_pkts
        nf.host_extra = r.host_extra
    else:
        # still classifying (its buffers stay behind), or an app this catalogue does not have: App-ID
        # starts again with the next segment, as for a flow picked up mid-stream
        nf.app_state = APPST_NONE
        nf.syn_seen = 0
    if r.idle_ns > e.timeouts_ns[flow_timeout_class(&nf)]:
        return SI_EXPIRED
    # who the ends are, here
    src_wl = workload_at(t, r.key.a_hi, r.key.a_lo)
    dst_wl = workload_at(t, r.key.b_hi, r.key.b_lo)
    if not r.init_is_a:
        src_wl, dst_wl = dst_wl, src_wl
    if q.require_wl >= 0 and src_wl != q.require_wl and dst_wl != q.require_wl:
        return SI_NOT_OWNED
    memset(&p, 0, sizeof(pkt_t))
    p.is_v6 = r.is_v6
    flow_decide(e, t, &nf, &p, src_wl, dst_wl, &d)
    if e.log_all:
        nf.log = 1
    if nf.action != A_ALLOW:
        return SI_POLICY
    if update:
        # a later transfer of the same move: its state replaces what the earlier one brought
        nf.quota_slot = f.quota_slot
        flow_free_parts(e, f)
    else:
        vs = quota_admit(t, e.vsys, quota_vsys_of(t, src_wl, dst_wl, e.unmanaged_vsys), now, &charged)
        if vs != R_NONE:
            return SI_QUOTA
        f = flow_insert_evicting(e, &r.key, h, charged, now)
        if f == NULL:
            quota_release(e.vsys, charged)
            return SI_TABLE_FULL
        nf.quota_slot = charged
    f[0] = nf
    f.mig = MIG_IN if q.migration else MIG_NONE
    if r.host_len:
        f.host = hostpool_put(&e.hostpool, <const char *>r + sizeof(sess_rec_t), r.host_len)
    session_restore_inspection(e, f, r, t, q)
    return SI_UPDATED if update else SI_IMPORTED

cdef void session_import(engine_t *e, sess_req_t *q, uint64_t now) noexcept nogil:
    cdef tables_t *t = e.tables
    cdef size_t off = 0
    cdef const sess_rec_t *r
    cdef int res
    if t == NULL:
        q.error = -1
        return
    while off + sizeof(sess_rec_t) <= q.in_n:
        r = <const sess_rec_t *>(q.in_p + off)
        res = session_import_one(e, t, r, q.in_n - off, q, now)
        q.results[res] += 1
        if res == SI_MALFORMED:
            break   # its length cannot be trusted: nothing after it can be found
        off += r.rec_len

cdef void session_adopt(engine_t *e, sess_req_t *q, uint64_t now) noexcept nogil:
    """Import every flow of a dead process's table (its memory as that process left it, validated here
    slot by slot: a slot torn by the crash is one malformed record, not a corrupt table)."""
    cdef tables_t *t = e.tables
    cdef sbuf_t one
    cdef uint32_t s
    cdef const flow_t *f
    cdef const char *host
    cdef uint32_t host_len
    cdef const inspslot_t *ins
    cdef int res
    if t == NULL:
        q.error = -1
        return
    memset(&one, 0, sizeof(one))
    for s in range(q.old_n_slots):
        f = &q.old_slots[s]
        if f.used != 1 or f.mig == MIG_OUT_CLIENT or f.mig == MIG_OUT_SERVER or f.cut >= CUT_CLEARED:
            continue   # (an operator ended a cleared flow: the policy must not decide it again)
        host = NULL
        host_len = 0
        if 0 <= f.host < <int32_t>q.old_n_host and q.old_host_lens[f.host] <= HOST_MAX:
            host = q.old_host_names + <size_t>f.host * HOST_MAX
            host_len = q.old_host_lens[f.host]
        ins = &q.old_insp[f.insp] if 0 <= f.insp < <int32_t>q.old_n_insp else NULL
        one.n = 0
        # no streams: Hyperscan's stream state lived in the dead process's heap
        if session_write(&one, f, host, host_len, ins, NULL, False, now) < 0:
            q.error = -2
            break
        res = session_import_one(e, t, <const sess_rec_t *>one.p, one.n, q, now)
        q.results[res] += 1
    free(one.p)

cdef void session_forget_presence(engine_t *e, sess_req_t *q) noexcept nogil:
    """The workload left this host: its next frame here is an arrival again."""
    cdef tables_t *t = e.tables
    if t != NULL and t.wl_here != NULL and 0 <= q.workload < <int32_t>t.n_wl:
        t.wl_here[q.workload] = 0

cdef void serve_request(engine_t *e, sess_req_t *q, uint64_t now) noexcept nogil:
    if q.kind == REQ_EXPORT:
        session_export(e, q, now)
    elif q.kind == REQ_IMPORT:
        session_import(e, q, now)
    elif q.kind == REQ_ADOPT:
        session_adopt(e, q, now)
    elif q.kind == REQ_FORGET_PRESENCE:
        session_forget_presence(e, q)
    elif q.kind == REQ_LIST or q.kind == REQ_CLEAR:
        session_view_serve(e, q, now)
    ngfw_store_u32(&q.done, 1)

cdef inline void take_request(engine_t *e, uint64_t now) noexcept nogil:
    cdef sess_req_t *q = <sess_req_t *>ngfw_load_ptr(<void **>&e.request)
    if q != NULL:
        ngfw_store_ptr(<void **>&e.request, NULL)
        serve_request(e, q, now)

# ---------------------------------------------------------------- a full table

cdef enum:
    EARLY_DROP_WINDOW = 64     # slots from where the new flow goes that are looked at for one to give way...
    EARLY_DROP_SCAN = 512      # ... and up to this many while none of them may
    RANK_IDLE = 100            # a flow idle past its timeout: it goes first

# how readily an embryonic flow gives way (0: it does not, it is a conversation)
cdef enum:
    EMBRYO_ANSWERED = 1    # a handshake the server answered: likely a client about to complete it
    EMBRYO_UNANSWERED = 2  # a SYN (or a datagram) nobody answered yet
    EMBRYO_RESET = 3       # a handshake reset: over

cdef inline int flow_embryonic(const flow_t *f) noexcept nogil:
    """Not (yet) a conversation: a TCP handshake that has not completed, or a flow nobody answered; EMBRYO_*."""
    if f.key.proto == P_TCP:
        if f.tcp_state == TCP_CLOSED:
            return EMBRYO_RESET
        if f.tcp_state == TCP_SYN_RECV:
            return EMBRYO_ANSWERED
        return EMBRYO_UNANSWERED if f.tcp_state < TCP_ESTABLISHED else 0
    return EMBRYO_UNANSWERED if f.pkts[1] == 0 else 0

cdef bint flow_early_drop(engine_t *e, uint32_t h, uint16_t charged, uint64_t now) noexcept nogil:
    """The table is full: end one flow to make room for a new one whose hash is `h`, as Linux conntrack's
    early_drop does -- a flow idle past its timeout, else an embryonic flow (never an established one) among the
    slots from where the new flow goes: a reset handshake first, then one nobody answered, then one the server
    answered (a client may be completing it); of these the first at least half the table's turnover time old (the
    time the flood takes to bring as many new flows as the table holds), else the least recently seen one.

    Looking where the new flow goes, not at a cursor: each new flow then displaces one from its own stretch of
    the table, so every stretch keeps its share of flows and no flow is pushed out much before the table has
    turned over (a cursor empties some stretches and crowds others: a flow landing in an emptied one is gone at
    the cursor's next turn, and a new flow landing there finds nothing to displace). Taking the first flow old
    enough keeps the look short (the table's memory is the cost of a flood) without touching the young ones
    that may be handshakes about to complete.

    Per-vsys fairness (a vsys' share: the table's capacity / the policy's vsys): a new flow whose vsys holds
    more than its share displaces only its own vsys' flows, so a flooding tenant turns over its own half-open
    flows; a new flow of a vsys within its share displaces first the flows of a vsys over its share, and of
    no vsys (neither end is a workload: their flows are refused anyway). A new flow of no vsys displaces only
    flows of no vsys."""
    cdef flowtable_t *ft = &e.flows
    cdef const tables_t *t = e.tables
    cdef uint32_t share = ft.capacity
    cdef uint32_t i, s, start = h & ft.mask, best = UINT32_MAX
    cdef int best_rank = 0, rank, enough_rank, embryo
    cdef uint64_t best_ts = 0, old_enough = 0xffffffffffffffffull
    cdef flow_t *f
    cdef bint own_only
    if t != NULL and t.n_vsys > 1:
        share = ft.capacity // t.n_vsys
    own_only = charged == 0 or e.vsys[charged - 1].sessions > share
    # rank: fairness (1 a flow of a vsys within its share, 2 over it), then EMBRYO_*. A candidate of the best
    # fairness this new flow can hope for, unanswered and old enough (or reset), ends the look
    enough_rank = (1 if own_only else 2) * 4 + EMBRYO_UNANSWERED
    early_drop_count_second(e, now)
    if e.early_drop_rate:
        old_enough = <uint64_t>ft.count * 500000000ull // e.early_drop_rate
    for i in range(EARLY_DROP_SCAN):
        if best != UINT32_MAX and i >= EARLY_DROP_WINDOW:
            break
        s = (start + i) & ft.mask
        if flow_slot_released(ft, s):
            continue       # given back after a flood: no flow there
        f = &ft.slots[s]
        if not f.used:
            continue
        if flow_idle_out(e, f, now):
            best = s
            best_rank = RANK_IDLE
            break          # over anyway
        embryo = flow_embryonic(f)
        if not embryo:
            continue
        if own_only:
            if f.quota_slot != charged:
                continue
            rank = 4 + embryo
        elif f.quota_slot == 0 or e.vsys[f.quota_slot - 1].sessions > share:
            rank = 8 + embryo
        else:
            rank = 4 + embryo
        if rank > best_rank or (rank == best_rank and f.ts_last < best_ts):
            best_rank = rank
            best_ts = f.ts_last
            best = s
            if rank > enough_rank or (rank == enough_rank and now > f.ts_last and now - f.ts_last >= old_enough):
                break
    if best == UINT32_MAX:
        return False
    f = &ft.slots[best]
    if best_rank != RANK_IDLE:
        e.flows_early_dropped += 1
        e.early_drops_second += 1
    flow_end(e, f, END_TIMEOUT if best_rank == RANK_IDLE else END_EARLY_DROP, now)
    flow_remove_slot(ft, best)
    return True

cdef inline void early_drop_count_second(engine_t *e, uint64_t now) noexcept nogil:
    """Early drops are counted by the second: the last whole second's count is the flood's rate."""
    if now < e.early_drop_second or now - e.early_drop_second >= 1000000000ull:
        # the second that ended gives the rate, unless the flood paused for a second or more since
        e.early_drop_rate = e.early_drops_second if now - e.early_drop_second < 2000000000ull else 0
        e.early_drop_second = now
        e.early_drops_second = 0

cdef flow_t *flow_insert_evicting(engine_t *e, const flow_key_t *k, uint32_t h, uint16_t charged,
                                  uint64_t now) noexcept nogil:
    cdef flow_t *f = flow_insert(&e.flows, k, h)
    if f == NULL and flow_early_drop(e, h, charged, now):
        f = flow_insert(&e.flows, k, h)
    return f


# -------------------------------- Engine.export_sessions, import_sessions, adopt_sessions

cdef session_serve(Engine self, sess_req_t *q, double timeout, object now_ns=None):
    """Have the loop serve `q` between bursts (or serve it here while the loop is stopped, at `now_ns`:
    tests that inject on their own clock export and import on it too)."""
    cdef double deadline
    cdef uint64_t now = ngfw_now_ns() if now_ns is None else <uint64_t>now_ns
    with self.request_lock:
        if not ngfw_load_u32(&self.e.running):
            with nogil:
                serve_request(self.e, q, now)
            return
        ngfw_store_ptr(<void **>&self.e.request, <void *>q)
        engine_wake(self.e)
        deadline = time.monotonic() + timeout
        while not ngfw_load_u32(&q.done):
            if not ngfw_load_u32(&self.e.running) and ngfw_cas_ptr(<void **>&self.e.request, <void *>q, NULL):
                with nogil:   # the loop ended before it took the request
                    serve_request(self.e, q, ngfw_now_ns())
                return
            if time.monotonic() > deadline and ngfw_cas_ptr(<void **>&self.e.request, <void *>q, NULL):
                raise TimeoutError("the packet loop did not take the session request")
            time.sleep(0.0002)


cdef dict session_results(Engine self, sess_req_t *q):
    return {"results": {name: q.results[i] for i, name in enumerate(SESSION_RESULTS) if q.results[i]},
            "streams_restored": q.streams_restored}


cdef object sessions_export(Engine self, int workload, uint64_t changed_since, bint streams, bint hand_over,
                            uint32_t cursor, uint32_t limit, bint only_allowed, double timeout, now_ns):
    cdef sess_req_t *q = <sess_req_t *>calloc(1, sizeof(sess_req_t))
    if q == NULL:
        raise MemoryError()
    q.kind = REQ_EXPORT
    q.workload = workload
    q.changed_since = changed_since
    q.cursor = cursor
    q.limit = limit
    q.streams = streams
    q.hand_over = hand_over
    q.only_allowed = only_allowed
    now = ngfw_now_ns() if now_ns is None else now_ns
    try:
        session_serve(self, q, timeout, now_ns)
        if q.error == -2:
            raise MemoryError("not enough memory to export the sessions")
        return {"records": (<char *>q.out.p)[:q.out.n] if q.out.n else b"",
                "keys": (<char *>q.keys.p)[:q.keys.n] if q.keys.n else b"",
                "count": q.exported, "cursor": q.cursor, "now": now}
    finally:   # session_serve returns or raises only once the loop no longer holds q
        free(q.out.p)
        free(q.keys.p)
        free(q)


cdef uint16_t *session_app_map(Engine self, object exporter_apps, uint32_t *n) except? NULL:
    cdef uint16_t *m
    cdef uint32_t i
    here = {name: i for i, name in enumerate(self.app_names)}
    names = list(exporter_apps) if exporter_apps is not None else list(self.app_names)
    n[0] = len(names)
    m = <uint16_t *>calloc(len(names) + 1, sizeof(uint16_t))
    if m == NULL:
        raise MemoryError()
    for i, name in enumerate(names):
        m[i] = here.get(name, 0) if name else 0
    return m


cdef object sessions_import(Engine self, const unsigned char[:] records, exporter_apps, bint migration,
                            int require_workload, double timeout, now_ns):
    cdef sess_req_t *q = <sess_req_t *>calloc(1, sizeof(sess_req_t))
    cdef uint32_t n_map = 0
    if q == NULL:
        raise MemoryError()
    try:
        q.kind = REQ_IMPORT
        q.in_p = &records[0] if records.shape[0] else NULL
        q.in_n = records.shape[0]
        q.migration = migration
        q.require_wl = require_workload
        q.app_map = session_app_map(self, exporter_apps, &n_map)
        q.n_app_map = n_map
        session_serve(self, q, timeout, now_ns)
        if q.error == -1:
            raise RuntimeError("no policy is loaded: sessions cannot be checked against one")
        return session_results(self, q)
    finally:
        free(<void *>q.app_map)
        free(q)


cdef object sessions_adopt(Engine self, const unsigned char[:] old, dict old_layout, exporter_apps, double timeout,
                           now_ns):
    cdef sess_req_t *q
    cdef const uint8_t *base
    cdef uint32_t n_map = 0
    if old_layout.get("fingerprint") != state_fingerprint():
        raise ValueError("the state memory was laid out by another build")
    if old.shape[0] < old_layout["size"]:
        raise ValueError(f"the state memory holds {old.shape[0]} bytes, its layout says {old_layout['size']}")
    base = &old[0]
    q = <sess_req_t *>calloc(1, sizeof(sess_req_t))
    if q == NULL:
        raise MemoryError()
    try:
        q.kind = REQ_ADOPT
        q.require_wl = -1
        q.old_slots = <const flow_t *>(base + <size_t>old_layout["flows_off"])
        q.old_n_slots = old_layout["slots"]
        q.old_host_names = <const char *>(base + <size_t>old_layout["host_off"])
        q.old_host_lens = base + <size_t>old_layout["host_lens_off"]
        q.old_n_host = old_layout["n_host"]
        q.old_insp = <const inspslot_t *>(base + <size_t>old_layout["insp_off"])
        q.old_n_insp = old_layout["inspect_slots"]
        q.app_map = session_app_map(self, exporter_apps, &n_map)
        q.n_app_map = n_map
        session_serve(self, q, timeout, now_ns)
        if q.error == -1:
            raise RuntimeError("no policy is loaded: sessions cannot be checked against one")
        return session_results(self, q)
    finally:
        free(<void *>q.app_map)
        free(q)

cdef inline void flow_mig_packet(flow_t *f, bint to_server) noexcept nogil:
    """A packet of a flow in a move: an imported copy is live here from now on; a handed-over one stays
    (unmarked) only when the moved workload itself sent the packet -- its peer is behind this host, so
    the flow crosses both hosts now. The far side's packets may be late or misdirected; they change nothing."""
    if f.mig == MIG_IN:
        f.mig = MIG_NONE
    elif (f.mig == MIG_OUT_CLIENT and to_server) or (f.mig == MIG_OUT_SERVER and not to_server):
        f.mig = MIG_NONE
