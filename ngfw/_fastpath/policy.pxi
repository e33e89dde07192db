# Stage 4, policy: first matching rule per vsys, evaluated once per flow (the flow caches it).
# A flow between two vsys needs both: egress rules of the source's vsys, ingress of the destination's.

ctypedef struct cidr_t:
    uint64_t net_hi
    uint64_t net_lo
    uint64_t mask_hi
    uint64_t mask_lo
    uint8_t v6         # IPv4 is stored mapped (::ffff:a.b.c.d): an IPv6 prefix must not match it

ctypedef struct svc_t:
    uint8_t proto      # 0: any protocol
    uint16_t lo
    uint16_t hi

ctypedef struct rule_t:
    uint8_t src_any
    uint8_t dst_any
    uint8_t action
    uint8_t log
    int32_t vsys
    int32_t src_bits   # word offset of the member bitmap in tables_t.bits, -1 without members
    int32_t dst_bits
    uint32_t src_cidr
    uint32_t src_ncidr
    uint32_t dst_cidr
    uint32_t dst_ncidr
    uint32_t svc
    uint32_t nsvc      # 0: any service
    int32_t app_bits   # word offset of the rule's application bitmap in tables_t.bits, -1: any app
    uint8_t app_default  # services: [application-default]: the identified app's own ports
    int16_t profile      # threat profile (`inspect:`), index into tables_t.profiles; -1 none
    uint16_t capture     # `capture: {packets: N}`: the first N frames of its flows go to the capture ring
    int32_t users        # `users:`: first of its principals in tables_t.uprin; -1: any user (no condition)
    uint16_t n_users
    int16_t users_known  # the item `known-user` (any user), -1 absent
    int16_t users_unknown  # the item `unknown` (no user), -1 absent

ctypedef struct vsys_quota_t:      # a vsys's quotas in one generation (enforced in tenancy.pxi)
    int32_t slot               # the engine's slot for this vsys (bound by Engine.set_tables), -1 unbound
    uint32_t max_sessions      # 0: no limit
    uint32_t rate              # new sessions per second; 0: no limit

# Everything a policy generation needs on the hot path; built by `Tables`, swapped atomically.
ctypedef struct tables_t:
    uint32_t generation
    uint32_t n_rules
    uint32_t n_wl
    uint32_t n_vsys
    rule_t *rules
    uint64_t *bits
    cidr_t *cidrs
    svc_t *svcs
    int32_t *wl_vsys
    int32_t *wl_port
    idmap_t wl_by_mac
    idmap_t wl_by_ip
    # candidate rules per source: lists [0, n_wl) for each workload (rules of its vsys that can
    # match it as a source), [n_wl, n_wl + n_vsys) for a source outside that vsys
    uint32_t *cand_off
    uint32_t *cand_len
    int32_t *cand
    uint64_t *rule_hits
    uint64_t *default_hits   # per vsys
    uint32_t app_words       # words of one application bitmap
    apptables_t apps
    instables_t *inspect     # the rule set flows with a profile are inspected with (NULL: none)
    iprofile_t *profiles
    uint32_t n_profiles
    vsys_quota_t *quota      # per vsys: limits and the engine slot (tenancy.pxi)
    uint8_t *wl_here         # per workload: seen on this dataplane's VM side (carried over by name on a swap)
    uint64_t *uprin          # the principals rules' `users:` name (userid.pxi), rule by rule
    uint16_t *uprin_item     # ... and the `users:` item each comes from

cdef inline bint side_match(const tables_t *t, uint8_t any, int32_t bits, uint32_t coff, uint32_t n,
                            int32_t wl, const ip128_t *ip, bint v6) noexcept nogil:
    cdef uint32_t i
    cdef const cidr_t *c
    if any:
        return True
    if wl >= 0 and bits >= 0 and (t.bits[bits + (wl >> 6)] >> (wl & 63)) & 1:
        return True
    for i in range(n):
        c = &t.cidrs[coff + i]
        if c.v6 == v6 and (ip.hi & c.mask_hi) == c.net_hi and (ip.lo & c.mask_lo) == c.net_lo:
            return True
    return False

cdef inline bint service_match(const tables_t *t, const rule_t *r, uint8_t proto, uint16_t dport) noexcept nogil:
    cdef uint32_t i
    cdef const svc_t *s
    if r.nsvc == 0:
        return True
    for i in range(r.nsvc):
        s = &t.svcs[r.svc + i]
        if s.proto != 0 and s.proto != proto:
            continue
        if proto == P_TCP or proto == P_UDP:
            if dport < s.lo or dport > s.hi:
                continue
        return True
    return False

cdef inline bint app_default_port(const tables_t *t, uint16_t app, uint8_t proto, uint16_t dport) noexcept nogil:
    return idmap_get(&t.apps.app_ports, 0, (<uint64_t>app << 32) | (<uint64_t>proto << 16) | dport) >= 0

cdef inline int user_match(const tables_t *t, const rule_t *r, const userctx_t *u) noexcept nogil:
    """0 when the flow's user does not satisfy the rule's `users:`; else 1 + the first item it satisfies."""
    cdef uint32_t i
    cdef uint64_t p
    cdef int found = -1
    if u.user == 0:
        return r.users_unknown + 1 if r.users_unknown >= 0 else 0
    for i in range(r.n_users):
        p = t.uprin[<uint32_t>r.users + i]
        if p == u.user or usertab_contains(u.groups, u.n_groups, p):
            found = t.uprin_item[<uint32_t>r.users + i]
            break
    if r.users_known >= 0 and (found < 0 or r.users_known < found):
        found = r.users_known
    return found + 1

cdef int32_t policy_first_match(const tables_t *t, uint32_t cand_list, int32_t src_wl, const ip128_t *sip,
                                int32_t dst_wl, const ip128_t *dip, bint v6, uint8_t proto,
                                uint16_t dport, uint16_t app, bint *pending, const userctx_t *u,
                                uint8_t *via, uint8_t *user_dep) noexcept nogil:
    """First matching rule. With `app` 0 (not identified yet) a rule that names applications cannot
    be decided: it is passed over and `pending` set, so the caller knows the answer may change. A rule
    with `users:` sets `user_dep` once the rest of it matched (the flow's user then matters), and `via`
    is 1 + the `users:` item of the returned rule that matched (0: it has no `users:`)."""
    cdef uint32_t i
    cdef int32_t idx
    cdef const rule_t *r
    cdef int m
    cdef uint32_t off = t.cand_off[cand_list]
    for i in range(t.cand_len[cand_list]):
        idx = t.cand[off + i]
        r = &t.rules[idx]
        if not side_match(t, r.dst_any, r.dst_bits, r.dst_cidr, r.dst_ncidr, dst_wl, dip, v6):
            continue
        if r.app_default:
            if app == 0:
                pending[0] = True   # the app's own ports are known once the app is
                continue
            if not app_default_port(t, app, proto, dport):
                continue
        if not service_match(t, r, proto, dport):
            continue
        if not side_match(t, r.src_any, r.src_bits, r.src_cidr, r.src_ncidr, src_wl, sip, v6):
            continue
        m = 0
        if r.users >= 0:
            user_dep[0] = 1
            m = user_match(t, r, u)
            if m == 0:
                continue
        if r.app_bits >= 0:
            if app == 0:
                pending[0] = True
                continue
            if not (t.bits[r.app_bits + (app >> 6)] >> (app & 63)) & 1:
                continue
        via[0] = <uint8_t>m
        return idx
    via[0] = 0
    return -1

ctypedef struct decision_t:
    uint8_t action
    uint8_t log
    uint8_t wait         # provisional: a rule naming applications may still decide once the app is known
    uint8_t reason       # drop reason when not allowed
    int32_t vsys         # vsys that owns the flow's logs (the deciding side)
    int32_t rule         # deciding rule, -1 for the implicit default deny
    int32_t rule_ingress  # the destination vsys' rule of a cross-vsys flow, -1 otherwise
    uint8_t user_dep     # a `users:` condition was looked at (userid.pxi)
    uint8_t via          # 1 + the `users:` item `rule` matched, 0: none
    uint8_t via_ingress  # ... of `rule_ingress`

cdef inline void decide_side(tables_t *t, decision_t *d, int32_t vsys, int32_t r) noexcept nogil:
    d.vsys = vsys
    d.rule = r
    if r >= 0:
        d.action = t.rules[r].action
        d.log = t.rules[r].log
        t.rule_hits[r] += 1
        d.reason = R_POLICY_REJECT if d.action == A_REJECT else R_POLICY_DENY
    else:
        d.action = A_DENY
        d.log = 0
        d.reason = R_POLICY_DEFAULT
        t.default_hits[vsys] += 1

cdef inline void provisional(decision_t *d, int32_t vsys) noexcept nogil:
    """Allowed for now, within the App-ID budget; decided again once the app is known."""
    d.action = A_ALLOW
    d.wait = 1
    d.log = 0
    d.vsys = vsys
    d.rule = -1
    d.reason = R_NONE

cdef void policy_decide(tables_t *t, int32_t src_wl, const ip128_t *sip, int32_t dst_wl, const ip128_t *dip,
                        bint v6, uint8_t proto, uint16_t dport, int32_t unmanaged_vsys, uint16_t app,
                        const userctx_t *u, decision_t *d) noexcept nogil:
    cdef int32_t sv = t.wl_vsys[src_wl] if src_wl >= 0 else -1
    cdef int32_t dv = t.wl_vsys[dst_wl] if dst_wl >= 0 else -1
    cdef int32_t r
    cdef bint pending = False
    d.rule_ingress = -1
    d.wait = 0
    d.user_dep = 0
    d.via = 0
    d.via_ingress = 0
    if sv < 0 and dv < 0 and 0 <= unmanaged_vsys < <int32_t>t.n_vsys:
        dv = unmanaged_vsys   # neither side is a workload: that vsys decides, seeing both as outside
    if sv < 0 and dv < 0:
        d.action = A_DENY
        d.log = 0
        d.reason = R_NO_WORKLOAD
        d.vsys = -1
        d.rule = -1
        return
    if sv >= 0:
        r = policy_first_match(t, <uint32_t>src_wl, src_wl, sip, dst_wl, dip, v6, proto, dport, app, &pending,
                               u, &d.via, &d.user_dep)
        if pending:
            provisional(d, sv)
            return
        decide_side(t, d, sv, r)
        if d.action != A_ALLOW or dv < 0 or dv == sv:
            return
    # ingress: the destination's vsys sees the source as outside
    r = policy_first_match(t, t.n_wl + <uint32_t>dv, src_wl, sip, dst_wl, dip, v6, proto, dport, app, &pending,
                           u, &d.via_ingress, &d.user_dep)
    if pending:
        provisional(d, dv)
        return
    if sv >= 0:
        # cross-vsys: keep the egress rule as `rule` unless ingress refuses
        d.rule_ingress = r
        if r >= 0:
            t.rule_hits[r] += 1
            if t.rules[r].action != A_ALLOW:
                d.action = t.rules[r].action
                d.reason = R_POLICY_REJECT if d.action == A_REJECT else R_POLICY_DENY
                d.vsys = dv
                d.rule = r
                d.via = d.via_ingress
                d.log = t.rules[r].log
        else:
            t.default_hits[dv] += 1
            d.action = A_DENY
            d.reason = R_POLICY_DEFAULT
            d.vsys = dv
            d.rule = -1
            d.via = 0
            d.log = 0
        return
    d.via = d.via_ingress
    d.via_ingress = 0
    decide_side(t, d, dv, r)
