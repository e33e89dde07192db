# Stage 6's last word on a signature that matched, per threat profile: first the profile's exceptions
# (ngfw's: the rule does not run in this profile, or not for these endpoints: no flowbits, no alert, no
# drop), then Suricata's suppressions and thresholds (the rule's own `threshold`/`detection_filter` and
# the profile's threshold.config lines), with Suricata 7's three outcomes: an alert, the action without
# an alert (a suppression, a limit passed), or neither (a threshold not reached yet). A rate_filter may
# change the action for a while. Built per policy generation by `profile_exceptions` (workloads are
# indexes of that generation); state (counts, windows) lives in the engine's threshold table.

cdef inline const xrule_t *xrule_of(const iprofile_t *prof, uint32_t rid) noexcept nogil:
    cdef int64_t lo = 0, hi = <int64_t>prof.n_xrules - 1, mid
    while lo <= hi:
        mid = (lo + hi) >> 1
        if prof.xrules[mid].rid == rid:
            return &prof.xrules[mid]
        if prof.xrules[mid].rid < rid:
            lo = mid + 1
        else:
            hi = mid - 1
    return NULL

cdef inline bint xscope_holds(const iprofile_t *prof, const xscope_t *s, int32_t wl, const ip128_t *ip,
                              bint v6) noexcept nogil:
    cdef uint32_t i
    cdef const xnet_t *c
    if wl >= 0 and s.bits >= 0 and (prof.xbits[s.bits + (wl >> 6)] >> (wl & 63)) & 1:
        return True
    for i in range(s.n_net):
        c = &prof.xnets[s.net + i]
        if c.v6 == v6 and (ip.hi & c.mask_hi) == c.net_hi and (ip.lo & c.mask_lo) == c.net_lo:
            return True
    return False

cdef bint rule_excepted(const iprofile_t *prof, const xrule_t *xr, const flow_t *f, const pkt_t *p,
                        bint to_server) noexcept nogil:
    """Does a scoped exception of the rule hold for this packet? Its endpoints are the packet's own (a
    response's source is the server), workloads by the index this generation gave them."""
    cdef int32_t src_wl = f.src_wl if to_server else f.dst_wl
    cdef int32_t dst_wl = f.dst_wl if to_server else f.src_wl
    cdef const xitem_t *it
    cdef uint32_t i
    for i in range(xr.n):
        it = &prof.xitems[xr.off + i]
        if it.kind != XI_SCOPE:
            break                       # scoped exceptions come first
        if it.side[0].used and not xscope_holds(prof, &it.side[0], src_wl, &p.src_ip, p.is_v6):
            continue
        if it.side[1].used and not xscope_holds(prof, &it.side[1], dst_wl, &p.dst_ip, p.is_v6):
            continue
        if it.side[2].used and not (xscope_holds(prof, &it.side[2], src_wl, &p.src_ip, p.is_v6)
                                    or xscope_holds(prof, &it.side[2], dst_wl, &p.dst_ip, p.is_v6)):
            continue
        return True
    return False

cdef inline bint xrange_in(const irange_t *ranges, uint32_t off, uint32_t n, const ip128_t *ip, bint v6) noexcept nogil:
    cdef uint64_t hi = __builtin_bswap64(ip.hi)
    cdef uint64_t lo = __builtin_bswap64(ip.lo)
    cdef uint32_t i
    cdef const irange_t *r
    if not v6:
        lo &= 0xffffffffull
    for i in range(n):
        r = &ranges[off + i]
        if r.v6 != v6:
            continue
        if v6:
            if ((hi > r.lo_hi or (hi == r.lo_hi and lo >= r.lo_lo))
                    and (hi < r.hi_hi or (hi == r.hi_hi and lo <= r.hi_lo))):
                return True
        elif r.lo_lo <= lo <= r.hi_lo:
            return True
    return False

cdef inline bint suppress_holds(const iprofile_t *prof, const xitem_t *it, const pkt_t *p) noexcept nogil:
    if it.th.track == TK_RULE:
        return True                     # `suppress gen_id, sig_id`: everywhere
    if it.th.track == TK_SRC:
        return xrange_in(prof.xranges, it.range_off, it.range_n, &p.src_ip, p.is_v6)
    if it.th.track == TK_DST:
        return xrange_in(prof.xranges, it.range_off, it.range_n, &p.dst_ip, p.is_v6)
    return (xrange_in(prof.xranges, it.range_off, it.range_n, &p.src_ip, p.is_v6)
            or xrange_in(prof.xranges, it.range_off, it.range_n, &p.dst_ip, p.is_v6))

cdef inline bint _ip_below(const ip128_t *a, const ip128_t *b) noexcept nogil:
    return a.hi < b.hi or (a.hi == b.hi and a.lo < b.lo)

cdef ithrent_t *threshold_entry(insws_t *ws, uint64_t sig, uint64_t scope, uint8_t track, const flow_t *f,
                                const pkt_t *p, bint *fresh) noexcept nogil:
    """The tracking entry of (signature, profile and threshold, what `track` names): by_src/by_dst the
    packet's address, by_both the address pair (either way round, as Suricata's IP pair), by_rule one
    for the signature, by_flow the flow. A new key takes a free slot or the first probed one."""
    cdef uint64_t khi = 0, klo = 0
    cdef uint32_t slot, k
    cdef ithrent_t *en
    cdef ithrent_t *victim = NULL
    cdef const ip128_t *a
    cdef const ip128_t *b
    if track == TK_SRC:
        khi = p.src_ip.hi; klo = p.src_ip.lo
    elif track == TK_DST:
        khi = p.dst_ip.hi; klo = p.dst_ip.lo
    elif track == TK_BOTH:
        a, b = (&p.src_ip, &p.dst_ip) if _ip_below(&p.src_ip, &p.dst_ip) else (&p.dst_ip, &p.src_ip)
        khi = a.hi ^ ngfw_mix64(b.hi ^ 0x9e3779b97f4a7c15ull)
        klo = a.lo ^ ngfw_mix64(b.lo)
    elif track == TK_FLOW:
        klo = f.flow_id
    slot = <uint32_t>ngfw_mix64(klo ^ ngfw_mix64(khi ^ ngfw_mix64(sig ^ ngfw_mix64(scope)))) & (THR_SLOTS - 1)
    fresh[0] = False
    for k in range(8):
        en = &ws.thr[(slot + k) & (THR_SLOTS - 1)]
        if en.used and en.sig == sig and en.scope == scope and en.key_hi == khi and en.key_lo == klo:
            return en
        if not en.used:
            victim = en
            break
    if victim == NULL:
        victim = &ws.thr[slot]          # old entries give way to new keys
    fresh[0] = True
    victim.used = 1
    victim.sig = sig
    victim.scope = scope
    victim.key_hi = khi
    victim.key_lo = klo
    victim.count = 1
    victim.rate_on = 0
    return victim

cdef int threshold_outcome(insws_t *ws, uint64_t sig, uint64_t scope, uint8_t item, const ithr_t *th,
                           uint32_t timeout, const flow_t *f, const pkt_t *p, uint64_t now,
                           bint *rate_hit) noexcept nogil:
    """One threshold, detection_filter or rate_filter on a match, as Suricata 7 counts it
    (detect-engine-threshold.c): TR_ALERT, TR_SILENT or TR_NONE. A window holds while the packet's time
    is at most `seconds` after its first match. A rate_filter always alerts; `rate_hit` says its new
    action is in force (from the match after `count` within `seconds`, for `timeout` whole seconds)."""
    cdef bint fresh
    cdef ithrent_t *en = threshold_entry(ws, sig, scope, th.track, f, p, &fresh)
    cdef bint inside
    cdef uint64_t now_s = now // 1000000000ull
    if fresh:
        en.window_start = now
        if th.kind == TH_LIMIT or item == XI_RATE:
            return TR_ALERT
        if th.kind == TH_THRESHOLD or th.kind == TH_BOTH:
            return TR_ALERT if th.count == 1 else TR_NONE
        return TR_NONE                  # detection_filter: the first match never alerts
    inside = now <= en.window_start + <uint64_t>th.seconds * 1000000000ull
    if item == XI_RATE:
        if en.rate_on:
            if now_s - en.rate_since > timeout:
                en.rate_on = 0          # over: this match takes the rule's own action, uncounted
            else:
                rate_hit[0] = True
            return TR_ALERT
        if inside:
            en.count += 1
            if en.count > th.count:
                en.rate_on = 1
                en.rate_since = now_s
                rate_hit[0] = True
        else:
            en.window_start = now
            en.count = 1
        return TR_ALERT
    if not inside:
        en.window_start = now
        en.count = 1
        if th.kind == TH_LIMIT:
            return TR_ALERT
        if th.kind == TH_THRESHOLD or th.kind == TH_BOTH:
            return TR_ALERT if th.count == 1 else TR_NONE
        return TR_NONE
    en.count += 1
    if th.kind == TH_LIMIT:
        return TR_ALERT if en.count <= th.count else TR_SILENT
    if th.kind == TH_THRESHOLD:
        if en.count >= th.count:
            en.count = 0
            return TR_ALERT
        return TR_NONE
    if th.kind == TH_BOTH:
        if en.count == th.count:
            return TR_ALERT
        return TR_SILENT if en.count > th.count else TR_NONE
    return TR_ALERT if en.count > th.count else TR_NONE     # detection_filter

cdef int alert_outcome(insws_t *ws, const instables_t *T, const iprofile_t *prof, const xrule_t *xr,
                       const irule_t *r, const flow_t *f, const pkt_t *p, uint64_t now, uint8_t *action,
                       int *why) noexcept nogil:
    """Suricata's PacketAlertHandle for a match: suppressions first (the first that holds ends it),
    then the thresholds in order (the first that does not alert ends it). `action` is changed by a
    rate_filter in force; `why` says why there is no alert."""
    cdef uint64_t sig = (<uint64_t>r.gid << 32) | r.sid
    cdef uint64_t scope = <uint64_t>prof.key << 32
    cdef const xitem_t *it
    cdef uint32_t i
    cdef int out
    cdef bint rate_hit
    why[0] = SUP_THRESHOLD
    if xr == NULL:
        rate_hit = False
        if r.thr >= 0:
            out = threshold_outcome(ws, sig, scope, XI_THRESHOLD, &T.thresholds[r.thr], 0, f, p, now, &rate_hit)
            if out != TR_ALERT:
                return out
        if r.dfilter >= 0:
            out = threshold_outcome(ws, sig, scope | 1, XI_THRESHOLD, &T.thresholds[r.dfilter], 0, f, p, now,
                                    &rate_hit)
            if out != TR_ALERT:
                return out
        return TR_ALERT
    for i in range(xr.n):
        it = &prof.xitems[xr.off + i]
        if it.kind == XI_SUPPRESS and suppress_holds(prof, it, p):
            why[0] = SUP_SUPPRESS
            return TR_SILENT
    for i in range(xr.n):
        it = &prof.xitems[xr.off + i]
        if it.kind != XI_THRESHOLD and it.kind != XI_RATE:
            continue
        rate_hit = False
        out = threshold_outcome(ws, sig, scope | it.id, it.kind, &it.th, it.timeout, f, p, now, &rate_hit)
        if rate_hit:
            action[0] = it.new_action
        if out != TR_ALERT:
            return out
    return TR_ALERT

# ---------------------------------------------------------------- building, off the hot path

_XTRACKS = {"by_src": TK_SRC, "by_dst": TK_DST, "by_rule": TK_RULE, "by_both": TK_BOTH, "by_flow": TK_FLOW,
            "by_either": TK_EITHER, "": TK_RULE}
_XACTIONS = {"alert": IA_ALERT, "drop": IA_DROP, "reject": IA_REJECT, "pass": IA_PASS}
_XKINDS = {"limit": TH_LIMIT, "threshold": TH_THRESHOLD, "both": TH_BOTH, "detection_filter": TH_DFILTER}


def profile_key(str vsys, str name) -> int:
    """What names a profile in threshold state: the same profile keeps its counts across reloads."""
    import zlib
    return zlib.crc32(f"{vsys}/{name}".encode())


def signature_problems(prof, str label, own, known_sids) -> list:
    """Exceptions and threshold.config lines of `prof` naming a signature its sets do not have:
    `own` (the profile's InspectTables) runs it, or `known_sids` ((gid, sid) of the sets' other rules,
    the ones that did not load) holds it."""
    have = own.rule_ids
    sets = ", ".join(own.set_names) or "none"
    problems = []
    for e in prof.exceptions:
        if (e.gid, e.sid) not in have and (e.gid, e.sid) not in known_sids:
            problems.append(f"{label}: spec.exceptions[{e.index}].sid: unknown signature {e.gid}:{e.sid} "
                            f"(not in its signature sets: {sets})")
    for line in prof.thresholds:
        if line.sid and (line.gid, line.sid) not in have and (line.gid, line.sid) not in known_sids:
            problems.append(f"{label}: spec.thresholds: line {line.line}: unknown signature {line.gid}:{line.sid} "
                            f"(not in its signature sets: {sets})")
    return problems


def _own_thresholds(sig) -> list:
    """The rule's own threshold and detection_filter as items (id 0 and 1), in Suricata's list order."""
    out = []
    if sig.threshold is not None:
        out.append((XI_THRESHOLD, _XKINDS[sig.threshold.kind], _TRACKS[sig.threshold.track], sig.threshold.count,
                    sig.threshold.seconds, 0, 0, 0))
    if sig.detection_filter is not None:
        out.append((XI_THRESHOLD, TH_DFILTER, _TRACKS[sig.detection_filter.track], sig.detection_filter.count,
                    sig.detection_filter.seconds, 0, 0, 1))
    return out


def profile_plan(prof, own) -> dict:
    """rid -> (disabled, scoped exceptions, suppress lines, threshold items) for the rules of `own` that
    `prof` says something about. threshold.config lines apply as Suricata applies them, line by line: a
    `threshold` for one signature replaces the last threshold of its list (the rule's own included), one
    for every signature (sig_id 0) passes over rules that have one; a `rate_filter` passes over rules
    that have one."""
    rid_of = own.rule_ids
    plan = {}

    def entry(rid):
        found = plan.get(rid)
        if found is None:
            found = plan[rid] = [False, [], [], None]
        return found

    def thresholds(rid):
        e = entry(rid)
        if e[3] is None:
            e[3] = _own_thresholds(own.rules[rid])
        return e[3]

    for e in prof.exceptions:
        rid = rid_of.get((e.gid, e.sid))
        if rid is None:
            continue
        if e.scoped:
            entry(rid)[1].append(e)
        else:
            entry(rid)[0] = True
    by_gid = None
    for line in prof.thresholds:
        if line.sid:
            rid = rid_of.get((line.gid, line.sid))
            targets = [] if rid is None else [rid]
        else:
            if by_gid is None:
                by_gid = {}
                for rid, sig in enumerate(own.rules):
                    by_gid.setdefault(sig.gid, []).append(rid)
            targets = range(len(own.rules)) if line.gid == 0 else by_gid.get(line.gid, [])
        for rid in targets:
            if line.kind == "suppress":
                entry(rid)[2].append(line)
                continue
            items = thresholds(rid)
            if line.kind == "threshold":
                item = (XI_THRESHOLD, _XKINDS[line.type], _XTRACKS[line.track], line.count, line.seconds, 0, 0,
                        2 + line.line)
                if line.sid:
                    if items:
                        items.pop()
                    items.append(item)
                elif not items:
                    items.append(item)
            elif not items:   # rate_filter
                items.append((XI_RATE, 0, _XTRACKS[line.track], line.count, line.seconds,
                              _XACTIONS[line.new_action], line.timeout, 2 + line.line))
    for rid in plan:
        thresholds(rid)   # untouched by threshold.config: the rule's own stay
    return plan


cdef void _xnet(xnet_t *c, object net):
    cdef ip128_t ip = ip_to_c(net.network_address)
    cdef ip128_t mask
    plen = net.prefixlen + (96 if net.version == 4 else 0)
    mask = ip_from_int(((1 << plen) - 1) << (128 - plen) if plen else 0)
    c.mask_hi = mask.hi
    c.mask_lo = mask.lo
    c.net_hi = ip.hi & mask.hi
    c.net_lo = ip.lo & mask.lo
    c.v6 = 1 if net.version == 6 else 0


cdef void _xrange(irange_t *r, bint v6, object lo, object hi):
    r.v6 = 1 if v6 else 0
    r.lo_hi = lo >> 64
    r.lo_lo = lo & 0xffffffffffffffff
    r.hi_hi = hi >> 64
    r.hi_lo = hi & 0xffffffffffffffff


cdef int profile_exceptions(iprofile_t *pr, object prof, object own, uint32_t n_wl, uint32_t key) except -1:
    """Fill `pr`'s exception tables for the profile `prof` (a CompiledProfile) against its rule set `own`;
    the memory is `pr`'s (free_profile_exceptions)."""
    cdef uint32_t words = (n_wl + 63) // 64, i, j, k, n_items = 0, n_bits = 0, n_nets = 0, n_ranges = 0
    cdef xitem_t *it
    cdef xscope_t *sc
    pr.key = key
    plan = profile_plan(prof, own)
    if not plan:
        return 0
    for disabled, scoped, suppress, thresholds in plan.values():
        n_items += len(scoped) + len(suppress) + len(thresholds)
        for e in scoped:
            for side in (e.source, e.destination, e.endpoints):
                if side is not None:
                    n_bits += 1 if side.workloads else 0
                    n_nets += len(side.cidrs)
        for line in suppress:
            n_ranges += len(line.v4) + len(line.v6)
    pr.xrules = <xrule_t *>calloc(len(plan) + 1, sizeof(xrule_t))
    pr.xitems = <xitem_t *>calloc(n_items + 1, sizeof(xitem_t))
    pr.xbits = <uint64_t *>calloc(n_bits * words + 1, sizeof(uint64_t))
    pr.xnets = <xnet_t *>calloc(n_nets + 1, sizeof(xnet_t))
    pr.xranges = <irange_t *>calloc(n_ranges + 1, sizeof(irange_t))
    if pr.xrules == NULL or pr.xitems == NULL or pr.xbits == NULL or pr.xnets == NULL or pr.xranges == NULL:
        raise MemoryError("not enough memory for the threat profile's exceptions")
    n_items = n_bits = n_nets = n_ranges = 0
    for i, rid in enumerate(sorted(plan)):
        disabled, scoped, suppress, thresholds = plan[rid]
        pr.xrules[i].rid = rid
        pr.xrules[i].off = n_items
        pr.xrules[i].disabled = 1 if disabled else 0
        for e in scoped:
            it = &pr.xitems[n_items]
            n_items += 1
            it.kind = XI_SCOPE
            for j, side in enumerate((e.source, e.destination, e.endpoints)):
                sc = &it.side[j]
                sc.bits = -1
                if side is None:
                    continue
                sc.used = 1
                if side.workloads:
                    sc.bits = n_bits * words
                    n_bits += 1
                    for w in side.workloads:
                        pr.xbits[sc.bits + (w >> 6)] |= (<uint64_t>1) << (w & 63)
                sc.net = n_nets
                for net in side.cidrs:
                    _xnet(&pr.xnets[n_nets], net)
                    n_nets += 1
                sc.n_net = n_nets - sc.net
        for line in suppress:
            it = &pr.xitems[n_items]
            n_items += 1
            it.kind = XI_SUPPRESS
            it.th.track = _XTRACKS[line.track]
            it.range_off = n_ranges
            for lo, hi in line.v4:
                _xrange(&pr.xranges[n_ranges], False, lo, hi)
                n_ranges += 1
            for lo, hi in line.v6:
                _xrange(&pr.xranges[n_ranges], True, lo, hi)
                n_ranges += 1
            it.range_n = n_ranges - it.range_off
        for kind, th_kind, track, count, seconds, new_action, timeout, item_id in thresholds:
            it = &pr.xitems[n_items]
            n_items += 1
            it.kind = kind
            it.th.kind = th_kind
            it.th.track = track
            it.th.count = count
            it.th.seconds = seconds
            it.new_action = new_action
            it.timeout = timeout
            it.id = item_id
        pr.xrules[i].n = n_items - pr.xrules[i].off
    pr.n_xrules = len(plan)
    return 0


cdef void free_profile_exceptions(iprofile_t *pr) noexcept:
    free(pr.xrules); free(pr.xitems); free(pr.xbits); free(pr.xnets); free(pr.xranges)
    pr.xrules = NULL
    pr.n_xrules = 0
