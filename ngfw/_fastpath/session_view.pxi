# The operator's view of the flow table (`ngfw sessions`, ngfw.dataplane.sessions): the flows that match a
# filter, listed a page at a time, or ended on request.
#
# Both run on the packet loop's thread, as requests it serves between bursts (session.pxi `serve_request`),
# and each request looks at no more than `max_scan` slots: a table of 250,000 flows is read in many short
# turns of the loop, never in one stall. The filter is applied here, in C, so a listing of one workload's
# flows does not copy the other 249,990 to Python.
#
# A listing is of the live table, not a snapshot: flows that start or end while it pages may or may not
# appear (conntrack -L behaves the same).
#
# Clearing ends a flow at once for the operator -- its EVE record (`flow.reason: "cleared"`) is written, it
# leaves listings and forwards nothing more -- while a TCP connection's entry stays a little, unlogged, to
# reset it: the dataplane keeps no sequence numbers or MAC addresses to forge a reset with, so the next
# segment of either side is answered with a RST and replaced by one onward (as a `reject` does when a
# connection is cut), both ways at once. Without a segment within `tcp_closing` the entry goes silently.

cdef enum:
    SV_MAX_WL = 16             # workloads a filter names (one name in several vsys)
    SV_MAX_PAIRS = 128         # (generation, index) pairs a vsys or rule name resolves to
    REQ_LIST = 16              # sess_req_t.kind: session_view_serve
    REQ_CLEAR = 17
    SV_USER_ANY = 0            # sfilter_t.user_mode (sessions.py USER_MODES)
    SV_USER_IS = 1
    SV_USER_KNOWN = 2          # any user
    SV_USER_UNKNOWN = 3        # no user

# flow_t.cut
cdef enum:
    CUT_POLICY = 1             # a reload refused the flow
    CUT_CLEARED = 2            # an operator ended it; its TCP connection is reset at the next segment
    CUT_CLEARED_DONE = 3       # ... and it was (or it ended silently)

ctypedef struct sfilter_t:
    uint32_t n_wl
    int32_t wl[SV_MAX_WL]          # workloads of the running tables, at either end (by address)
    uint8_t has_vsys
    int32_t vsys                   # running tables' index: flows with a workload of it at an end, or ...
    uint32_t n_vsys_pairs          # ... decided by it: its index in each generation flows were decided by
    uint32_t vsys_gen[SV_MAX_PAIRS]
    int32_t vsys_idx[SV_MAX_PAIRS]
    uint8_t has_rule
    uint32_t n_rule_pairs          # the rule (egress or ingress) by generation and index; -1: default deny
    uint32_t rule_gen[SV_MAX_PAIRS]
    int32_t rule_idx[SV_MAX_PAIRS]
    uint8_t has_app
    uint16_t app                   # the app or one it runs over (tls matches github)
    uint8_t proto                  # 0: any
    int16_t action                 # -1: any
    int16_t tcp_state              # -1: any
    int32_t sport                  # the client's port, -1: any
    int32_t dport                  # the server's port, -1: any
    uint8_t has_src
    uint8_t has_dst
    cidr_t src                     # the client's address
    cidr_t dst                     # the server's address
    uint64_t flow_id               # 0: any
    uint8_t user_mode              # SV_USER_*: the user behind the client's address (User-ID)
    uint64_t user                  # SV_USER_IS: this principal

# one listed flow: the flow event it would end with, and what only a live flow has
ctypedef struct sview_t:
    event_t ev
    uint8_t inspected              # a threat profile inspects it
    uint8_t threat                 # a signature blocked it
    uint8_t app_state
    uint8_t mig                    # MIG_IN: brought by a migration, not seen here yet
    uint8_t cut                    # a reload refused it
    uint8_t init_is_a
    uint8_t bypass                 # the kernel forwards it (bypass.pxi)
    uint8_t pad

ctypedef struct sview_req_t:
    sfilter_t filter
    uint32_t cursor                # first slot to look at; on return, where the next request starts (0: the end)
    uint32_t limit                 # REQ_LIST: flows listed at most (0: no limit)
    uint32_t max_scan              # slots looked at at most (0: the whole table)
    uint8_t silent                 # REQ_CLEAR: end TCP connections without a reset
    sbuf_t out                     # REQ_LIST: sview_t records
    uint32_t matched               # flows listed or cleared
    uint32_t scanned
    uint32_t resets                # REQ_CLEAR: connections that will be reset at their next segment
    uint64_t now                   # the engine clock the request was served at
    uint64_t took_ns               # how long it held the loop (benchmarks: a request must stay short)

cdef inline bint sv_addr_in(const cidr_t *c, uint64_t hi, uint64_t lo) noexcept nogil:
    return (hi & c.mask_hi) == c.net_hi and (lo & c.mask_lo) == c.net_lo

cdef inline bint sv_app_matches(const tables_t *t, uint16_t app, uint16_t want) noexcept nogil:
    """`app` is `want` or runs over it (github over tls), along the catalogue's parents."""
    cdef int hops = 0
    while hops < 8:
        if app == want:
            return True
        if app >= t.apps.n_apps or t.apps.parent == NULL or t.apps.parent[app] == 0xffff:
            return False
        app = t.apps.parent[app]
        hops += 1
    return False

cdef bint session_matches(const tables_t *t, const flow_t *f, const sfilter_t *q) noexcept nogil:
    cdef uint64_t c_hi, c_lo, s_hi, s_lo
    cdef uint16_t c_port, s_port
    cdef int32_t wa = -2, wb = -2
    cdef uint32_t i
    cdef bint hit
    if not f.used or f.cut >= CUT_CLEARED or f.mig == MIG_OUT_CLIENT or f.mig == MIG_OUT_SERVER:
        return False
    if q.flow_id and f.flow_id != q.flow_id:
        return False
    if q.proto and f.key.proto != q.proto:
        return False
    if q.action >= 0 and f.action != q.action:
        return False
    if q.tcp_state >= 0 and f.tcp_state != q.tcp_state:
        return False
    if q.user_mode == SV_USER_IS and f.user != q.user:
        return False
    if (q.user_mode == SV_USER_KNOWN and f.user == 0) or (q.user_mode == SV_USER_UNKNOWN and f.user != 0):
        return False
    if f.init_is_a:
        c_hi = f.key.a_hi; c_lo = f.key.a_lo; c_port = f.key.a_port
        s_hi = f.key.b_hi; s_lo = f.key.b_lo; s_port = f.key.b_port
    else:
        c_hi = f.key.b_hi; c_lo = f.key.b_lo; c_port = f.key.b_port
        s_hi = f.key.a_hi; s_lo = f.key.a_lo; s_port = f.key.a_port
    if q.sport >= 0 and c_port != q.sport:
        return False
    if q.dport >= 0 and s_port != q.dport:
        return False
    if q.has_src and (q.src.v6 != f.is_v6 or not sv_addr_in(&q.src, c_hi, c_lo)):
        return False
    if q.has_dst and (q.dst.v6 != f.is_v6 or not sv_addr_in(&q.dst, s_hi, s_lo)):
        return False
    if q.has_app:
        if f.app_state != APPST_DONE or t == NULL or not sv_app_matches(t, f.app, q.app):
            return False
    if q.has_rule:
        hit = False
        for i in range(q.n_rule_pairs):
            if f.generation != q.rule_gen[i]:
                continue
            if q.rule_idx[i] < 0:
                hit = f.rule < 0 and f.action != A_ALLOW and f.vsys >= 0
            else:
                hit = f.rule == q.rule_idx[i] or f.rule_ingress == q.rule_idx[i]
            if hit:
                break
        if not hit:
            return False
    if q.n_wl or q.has_vsys:
        if t == NULL:
            return False
        wa = workload_at(t, f.key.a_hi, f.key.a_lo)
        wb = workload_at(t, f.key.b_hi, f.key.b_lo)
    if q.n_wl:
        hit = False
        for i in range(q.n_wl):
            if q.wl[i] == wa or q.wl[i] == wb:
                hit = True
                break
        if not hit:
            return False
    if q.has_vsys:
        hit = (q.vsys >= 0 and ((wa >= 0 and t.wl_vsys[wa] == q.vsys) or (wb >= 0 and t.wl_vsys[wb] == q.vsys)))
        if not hit:
            for i in range(q.n_vsys_pairs):
                if f.generation == q.vsys_gen[i] and f.vsys == q.vsys_idx[i]:
                    hit = True
                    break
        if not hit:
            return False
    return True

cdef int session_view_write(engine_t *e, sbuf_t *out, const flow_t *f) noexcept nogil:
    cdef sview_t *v
    if sbuf_reserve(out, sizeof(sview_t)) < 0:
        return -1
    v = <sview_t *>(out.p + out.n)
    memset(v, 0, sizeof(sview_t))
    if f.bypass == BP_IN:
        bypass_fold(e, <flow_t *>f, e.last_sweep)   # the counters as the kernel has them
    event_from_flow(&v.ev, f, EV_FLOW)
    event_host(e, &v.ev, f)
    v.inspected = f.action == A_ALLOW and flow_rule_set(e.tables, f) != NULL   # a profile with signatures
    v.threat = f.threat
    v.app_state = f.app_state
    v.mig = f.mig
    v.cut = f.cut
    v.init_is_a = f.init_is_a
    v.bypass = f.bypass == BP_IN
    out.n += sizeof(sview_t)
    return 0

cdef bint session_clear(engine_t *e, flow_t *f, bint silent, sview_req_t *q, uint64_t now) noexcept nogil:
    """End `f` for the operator: its EVE record now. A TCP connection (unless `silent`) stays, unlogged, to be
    reset at its next segment; anything else is removed at once (True: the caller removes the slot), so the
    next datagram of the same tuple is a new flow the policy decides again."""
    cdef event_t *ev
    bypass_leave(e, f, now)          # its counters folded in, and the kernel forwards nothing more of it
    if f.log:
        ev = evring_claim(&e.events)
        if ev != NULL:
            event_from_flow(ev, f, EV_FLOW)
            ev.end_reason = END_CLEARED
            ev.ts_last = now
            event_host(e, ev, f)
            evring_publish(&e.events)
        f.log = 0
    if not silent and f.key.proto == P_TCP and TCP_SYN_SENT <= f.tcp_state <= TCP_CLOSING:
        f.action = A_REJECT
        f.cut = CUT_CLEARED
        f.tcp_state = TCP_CLOSING    # lingers tcp_closing from now, waiting for a segment to reset
        f.ts_last = now
        q.resets += 1
        return False
    flow_end(e, f, END_CLEARED, now)      # unlogged now: gives back its quota, App-ID and inspection state
    return True

cdef void session_view_serve(engine_t *e, sess_req_t *r, uint64_t now) noexcept nogil:
    """List (REQ_LIST) or clear (REQ_CLEAR) the flows matching the request's filter, from slot `cursor` on."""
    cdef sview_req_t *q = <sview_req_t *>r.view
    cdef flowtable_t *ft = &e.flows
    cdef const tables_t *t = e.tables
    cdef uint32_t end = ft.mask + 1
    cdef uint32_t s = q.cursor
    cdef uint32_t stop = end
    cdef flow_t *f
    q.now = now
    q.matched = 0
    q.scanned = 0
    q.resets = 0
    if q.max_scan and s + q.max_scan < end:
        stop = s + q.max_scan
    while s < stop:
        if flow_slot_released(ft, s):
            s = flow_next_slot_to_read(ft, s)   # a page given back holds no flow, and a read would take it back
            continue
        f = &ft.slots[s]
        s += 1
        if not f.used or not session_matches(t, f, &q.filter):
            continue
        if r.kind == REQ_LIST:
            if session_view_write(e, &q.out, f) < 0:
                r.error = -2
                break
        elif session_clear(e, f, q.silent, q, now):
            flow_remove_slot(ft, s - 1)
            s -= 1          # a later entry of its probe run may have moved into the slot: look at it again
            if stop < end:
                stop -= 1   # (not a slot more than asked for in all)
        q.matched += 1
        if q.limit and q.matched >= q.limit:
            break
    q.scanned = s - q.cursor
    q.cursor = s if s < end else 0
    q.took_ns = ngfw_now_ns() - now

cdef void session_cleared_frame(engine_t *e, flow_t *f, const pkt_t *p, bint to_server,
                                uint16_t in_port) noexcept nogil:
    """A frame of a flow an operator cleared: dropped; a TCP connection's first one after the clear resets it
    both ways (a RST to the sender, and one onward in place of the frame), later ones as a `reject` does."""
    count_drop(e, R_SESSION_CLEARED)
    if f.action != A_REJECT or p.proto != P_TCP:
        return
    respond_reject(e, in_port, p)
    if f.cut == CUT_CLEARED:
        respond_reset_peer(e, f, p, to_server, in_port)
        f.cut = CUT_CLEARED_DONE
        f.tcp_state = TCP_CLOSED


# ---------------------------------------------------------------- session filters (session_view.pxi)

cdef void _cidr_from(object net, cidr_t *c) except *:
    """An ipaddress network as the fastpath compares addresses (IPv4 mapped into IPv6)."""
    cdef ip128_t ip = ip_to_c(net.network_address)
    cdef ip128_t mask
    plen = net.prefixlen + (96 if net.version == 4 else 0)
    mask = ip_from_int(((1 << plen) - 1) << (128 - plen) if plen else 0)
    c.mask_hi = mask.hi
    c.mask_lo = mask.lo
    c.net_hi = ip.hi & mask.hi
    c.net_lo = ip.lo & mask.lo
    c.v6 = 1 if net.version == 6 else 0


cdef void _sfilter_from(dict d, sfilter_t *q) except *:
    """A filter of ngfw.dataplane.sessions (`SessionFilter.compiled`) as the C struct; ValueError past its limits."""
    cdef uint32_t i
    memset(q, 0, sizeof(sfilter_t))
    workloads = list(d.get("workloads") or ())
    vsys_pairs = list(d.get("vsys_pairs") or ())
    rule_pairs = list(d.get("rule_pairs") or ())
    if len(workloads) > SV_MAX_WL:
        raise ValueError(f"a filter names at most {SV_MAX_WL} workloads")
    if len(vsys_pairs) > SV_MAX_PAIRS or len(rule_pairs) > SV_MAX_PAIRS:
        raise ValueError(f"a filter's vsys or rule resolves to at most {SV_MAX_PAIRS} (generation, index) pairs")
    q.n_wl = len(workloads)
    for i in range(q.n_wl):
        q.wl[i] = workloads[i]
    q.has_vsys = d.get("has_vsys", False)
    q.vsys = d.get("vsys", -1)
    q.n_vsys_pairs = len(vsys_pairs)
    for i in range(q.n_vsys_pairs):
        q.vsys_gen[i] = vsys_pairs[i][0]
        q.vsys_idx[i] = vsys_pairs[i][1]
    q.has_rule = d.get("has_rule", False)
    q.n_rule_pairs = len(rule_pairs)
    for i in range(q.n_rule_pairs):
        q.rule_gen[i] = rule_pairs[i][0]
        q.rule_idx[i] = rule_pairs[i][1]
    app = d.get("app")
    q.has_app = app is not None
    q.app = app if app is not None else 0
    q.proto = d.get("proto") or 0
    q.action = -1 if d.get("action") is None else d["action"]
    q.tcp_state = -1 if d.get("tcp_state") is None else d["tcp_state"]
    q.sport = -1 if d.get("sport") is None else d["sport"]
    q.dport = -1 if d.get("dport") is None else d["dport"]
    if d.get("src") is not None:
        q.has_src = 1
        _cidr_from(d["src"], &q.src)
    if d.get("dst") is not None:
        q.has_dst = 1
        _cidr_from(d["dst"], &q.dst)
    q.flow_id = d.get("flow_id") or 0
    q.user_mode = d.get("user_mode") or 0
    q.user = d.get("user") or 0


# ---------------------------------------------------------------- Engine.list_sessions, clear_sessions and flows

cdef object sessions_list(Engine self, dict flow_filter, uint32_t cursor, uint32_t limit, uint32_t max_scan,
                          double timeout, now_ns):
    cdef sess_req_t *r = <sess_req_t *>calloc(1, sizeof(sess_req_t))
    cdef sview_req_t *q = <sview_req_t *>calloc(1, sizeof(sview_req_t))
    cdef const sview_t *v
    cdef uint32_t i
    if r == NULL or q == NULL:
        free(r)
        free(q)
        raise MemoryError()
    try:
        _sfilter_from(flow_filter, &q.filter)
        r.kind = REQ_LIST
        r.view = q
        q.cursor = cursor
        q.limit = limit
        q.max_scan = max_scan
        session_serve(self, r, timeout, now_ns)
        if r.error == -2:
            raise MemoryError("not enough memory to list the sessions")
        sessions = []
        for i in range(q.out.n // sizeof(sview_t)):
            v = <const sview_t *>(q.out.p + <size_t>i * sizeof(sview_t))
            d = flow_event_dict(self, <event_t *>&v.ev)
            d["tcp_state"] = _name(TCP_STATE_NAMES, v.ev.tcp_state)
            d["inspected"] = bool(v.inspected)
            d["threat"] = _name(ACTION_NAMES, v.threat) if v.threat else None
            d["classifying"] = v.app_state != APPST_DONE and v.ev.action == A_ALLOW
            d["migrating"] = v.mig == MIG_IN
            d["cut"] = v.cut == CUT_POLICY
            d["bypass"] = bool(v.bypass)
            d["age_ns"] = q.now - v.ev.ts_first if q.now > v.ev.ts_first else 0
            d["idle_ns"] = q.now - v.ev.ts_last if q.now > v.ev.ts_last else 0
            sessions.append(d)
        return {"sessions": sessions, "cursor": q.cursor, "scanned": q.scanned, "now": q.now,
                "loop_ns": q.took_ns}
    finally:   # session_serve returns or raises only once the loop no longer holds the request
        free(q.out.p)
        free(q)
        free(r)


cdef object sessions_clear(Engine self, dict flow_filter, bint silent, uint32_t cursor, uint32_t max_scan,
                           double timeout, now_ns):
    cdef sess_req_t *r = <sess_req_t *>calloc(1, sizeof(sess_req_t))
    cdef sview_req_t *q = <sview_req_t *>calloc(1, sizeof(sview_req_t))
    if r == NULL or q == NULL:
        free(r)
        free(q)
        raise MemoryError()
    try:
        _sfilter_from(flow_filter, &q.filter)
        r.kind = REQ_CLEAR
        r.view = q
        q.cursor = cursor
        q.max_scan = max_scan
        q.silent = silent
        session_serve(self, r, timeout, now_ns)
        return {"cleared": q.matched, "resets": q.resets, "cursor": q.cursor, "scanned": q.scanned,
                "loop_ns": q.took_ns}
    finally:
        free(q)
        free(r)


cdef object flows_list(Engine self):
    cdef uint32_t s
    cdef event_t ev
    out = []
    for s in range(self.e.flows.mask + 1):
        if not flow_slot_released(&self.e.flows, s) and self.e.flows.slots[s].used:
            memset(&ev, 0, sizeof(ev))
            event_from_flow(&ev, &self.e.flows.slots[s], EV_FLOW)
            event_host(self.e, &ev, &self.e.flows.slots[s])
            d = event_dict(self, &ev)
            d["tcp_state"] = _name(TCP_STATE_NAMES, self.e.flows.slots[s].tcp_state)
            d["cut"] = bool(self.e.flows.slots[s].cut)
            d["bypass"], d["bypass_ways"] = bypass_state(self, &self.e.flows.slots[s])
            out.append(d)
    return out
