# The packet path in one place (Suricata's FlowWorker habit): `process_frame` spells out the order
# of the stages for one frame; `run_loop` drives the ports with the GIL released.

cdef enum:
    EMBRYONIC_RECORDS = 1000   # records (flow, drop) of flows that never became a conversation written per second

cdef bint embryonic_record(engine_t *e, uint64_t now) noexcept nogil:
    """Whether the record of a flow that never became a conversation (a handshake that did not complete, a flow
    nobody answered, a new flow refused) may be written: 1,000 a second. A flood brings one such flow per frame;
    its records beyond those are counted (records_unlogged), not written -- the event ring and the EVE writer
    would otherwise take memory and a core from the packet loop. Replay writes every record."""
    if e.log_all:
        return True
    if now < e.records_second or now - e.records_second >= 1000000000ull:
        e.records_second = now
        e.records_this_second = 0
    if e.records_this_second >= EMBRYONIC_RECORDS:
        e.records_unlogged += 1
        return False
    e.records_this_second += 1
    return True

cdef void flow_end(engine_t *e, flow_t *f, uint8_t reason, uint64_t now) noexcept nogil:
    cdef event_t *ev
    if f.bypass:
        bypass_leave(e, f, now)
    appid_flow_end(e, e.tables, f)
    inspect_flow_end(e, f)
    if f.mig >= MIG_OUT_CLIENT:
        # handed to the host its workload moved to: that host logs its end
        e.flows_handed_over += 1
    elif f.log and (not flow_embryonic(f) or embryonic_record(e, now)):
        ev = evring_claim(&e.events)
        if ev != NULL:
            event_from_flow(ev, f, EV_FLOW)
            ev.end_reason = reason
            event_host(e, ev, f)
            evring_publish(&e.events)
    hostpool_give(&e.hostpool, f.host)
    f.host = -1
    quota_release(e.vsys, f.quota_slot)
    f.quota_slot = 0
    e.flows_expired += 1

cdef void flow_decide(engine_t *e, tables_t *t, flow_t *f, const pkt_t *p, int32_t src_wl, int32_t dst_wl,
                      decision_t *d) noexcept nogil:
    """Evaluate policy for a flow from the initiator's point of view and cache the decision on it."""
    cdef const ip128_t *sip
    cdef const ip128_t *dip
    cdef flow_key_t *k = &f.key
    cdef ip128_t a, b
    cdef userctx_t u
    cdef const ugroups_t *g
    a.hi = k.a_hi; a.lo = k.a_lo
    b.hi = k.b_hi; b.lo = k.b_lo
    cdef uint16_t app = f.app if f.app_state == APPST_DONE else 0
    if f.user_gen != users_gen(e):
        flow_user_lookup(e, f)
    u.user = f.user
    u.groups = NULL
    u.n_groups = 0
    g = usertab_groups(e.users, f.user)
    if g != NULL:
        u.groups = &e.users.groups[g.off]
        u.n_groups = g.n
    if f.init_is_a:
        policy_decide(t, src_wl, &a, dst_wl, &b, p.is_v6, k.proto, k.b_port, e.unmanaged_vsys, app, &u, d)
    else:
        policy_decide(t, src_wl, &b, dst_wl, &a, p.is_v6, k.proto, k.a_port, e.unmanaged_vsys, app, &u, d)
    f.user_dep = d.user_dep
    f.user_via[0] = d.via
    f.user_via[1] = d.via_ingress
    f.app_wait = d.wait
    f.action = d.action
    f.log = d.log
    f.vsys = <int16_t>d.vsys
    f.rule = d.rule
    f.rule_ingress = d.rule_ingress
    # the threat profile: the source vsys' rule names it, else the destination's
    f.profile = -1
    if d.action == A_ALLOW:
        if d.rule >= 0 and t.rules[d.rule].profile >= 0:
            f.profile = t.rules[d.rule].profile
        elif d.rule_ingress >= 0 and t.rules[d.rule_ingress].profile >= 0:
            f.profile = t.rules[d.rule_ingress].profile
    f.src_wl = src_wl
    f.dst_wl = dst_wl
    f.generation = t.generation
    # capture, once per flow: the deciding rule's (every frame kept), else its threat profile's (kept back
    # until an alert)
    if f.capture == CAP_NONE:
        if d.rule >= 0 and t.rules[d.rule].capture:
            f.capture = CAP_FLOW
            f.cap_left = t.rules[d.rule].capture
        elif d.rule_ingress >= 0 and t.rules[d.rule_ingress].capture:
            f.capture = CAP_FLOW
            f.cap_left = t.rules[d.rule_ingress].capture
        elif f.profile >= 0 and t.profiles[f.profile].capture:
            f.capture = CAP_ALERT
            f.cap_left = t.profiles[f.profile].capture

cdef void flow_start(engine_t *e, tables_t *t, flow_t *f, const pkt_t *p, bint pkt_is_a, uint16_t in_port,
                     int32_t src_wl, int32_t dst_wl, uint64_t now, decision_t *d) noexcept nogil:
    cdef event_t *ev
    f.init_is_a = pkt_is_a
    f.in_port = in_port
    f.is_v6 = p.is_v6
    f.ts_first = now
    f.ts_last = now
    f.cls = -1
    f.host = -1
    f.insp = -1
    if p.proto != P_TCP and p.proto != P_UDP and t.apps.ipproto_app[p.proto]:
        f.app = t.apps.ipproto_app[p.proto]   # an IP protocol is its own application (icmp, ospf, ...)
        f.app_state = APPST_DONE
        f.app_conf = CONF_PARSER
    if p.proto == P_TCP:
        f.tcp_state = TCP_SYN_SENT if p.tcp_flags & TH_SYN else TCP_ESTABLISHED  # mid-stream pick-up
    else:
        f.tcp_state = TCP_NONE
        if p.proto == P_ICMP or p.proto == P_ICMPV6:
            f.icmp_type = p.icmp_type
            f.icmp_code = p.icmp_code
    e.flow_id_next += 1
    f.flow_id = (ngfw_mix64(e.flow_id_next ^ e.flow_id_salt)) & 0x7fffffffffffffffull
    e.flows_created += 1
    flow_decide(e, t, f, p, src_wl, dst_wl, d)
    if e.log_all:
        f.log = 1
    if d.action != A_ALLOW and f.log and embryonic_record(e, now):
        ev = evring_claim(&e.events)
        if ev != NULL:
            event_from_flow(ev, f, EV_DROP)
            ev.drop_reason = d.reason
            evring_publish(&e.events)

cdef inline bint link_control(const pkt_t *p) noexcept nogil:
    """IPv6 neighbour discovery (hop limit 255, RFC 4861) and multicast listener messages (hop limit 1,
    RFC 2710/3810): control of the link itself, which never leaves it."""
    if p.proto != P_ICMPV6 or not p.has_ports or p.is_frag:
        return False
    if 133 <= p.icmp_type <= 137:
        return p.ttl == 255
    if 130 <= p.icmp_type <= 132 or p.icmp_type == 143:
        return p.ttl == 1
    return False

cdef inline void flow_mark_cut(flow_t *f) noexcept nogil:
    """A refused TCP connection is over: reset ones end after tcp_closed, silently dropped ones after
    tcp_closing (their entry only keeps dropping retries), not after tcp_established."""
    if f.key.proto == P_TCP and f.tcp_state < TCP_FIN_WAIT:
        f.tcp_state = TCP_CLOSED if f.action == A_REJECT else TCP_CLOSING

cdef bint app_verdict(engine_t *e, tables_t *t, flow_t *f, const pkt_t *p, bint to_server, int32_t src_wl,
                      int32_t dst_wl, uint16_t in_port) noexcept nogil:
    """Decide a provisionally allowed flow now that its app is known; False when it is cut."""
    cdef decision_t d
    cdef event_t *ev
    if to_server:
        flow_decide(e, t, f, p, src_wl, dst_wl, &d)
    else:
        flow_decide(e, t, f, p, dst_wl, src_wl, &d)
    if e.log_all:
        f.log = 1
    if f.action == A_ALLOW:
        return True
    e.app_cuts += 1
    count_drop(e, d.reason)
    if f.log:
        ev = evring_claim(&e.events)
        if ev != NULL:
            event_from_flow(ev, f, EV_DROP)
            ev.drop_reason = d.reason
            event_host(e, ev, f)
            evring_publish(&e.events)
    if f.action == A_REJECT:
        respond_reject(e, in_port, p)
        if p.proto == P_TCP:
            respond_reset_peer(e, f, p, to_server, in_port)
    flow_mark_cut(f)
    return False

cdef void process_frame(engine_t *e, uint16_t in_port, const uint8_t *data, uint32_t len, uint32_t rx_status,
                        uint64_t now) noexcept nogil:
    cdef pkt_t p
    cdef port_t *port = &e.ports[in_port]
    cdef tables_t *t = e.tables
    cdef int reason
    cdef int32_t src_wl = -1, dst_wl = -1
    cdef flow_key_t key
    cdef bint pkt_is_a, to_server
    cdef uint32_t h
    cdef flow_t *f
    cdef frag_entry_t *fr
    cdef decision_t d
    cdef uint8_t old_action
    cdef uint16_t charged = 0
    cdef int r
    cdef bint from_server
    cdef const pkt_t *fix = NULL
    cdef int32_t quota_vs
    if not (rx_status & RX_TUNNEL_OUTER):
        port.rx_packets += 1
        port.rx_bytes += len

    # 1. decode
    if len > port.mtu + 14 + 8:
        count_drop(e, R_OVERSIZE)
        return
    # decode_frame's `offline`: a replay reads lengths as far as they go; an IP-in-IP frame's outer packet
    # is read as itself once (RX_TUNNEL_OUTER), then as the packet it carries
    reason = decode_frame(&p, data, len, (rx_status & RX_SNAPPED) != 0, e.mode == MODE_REPLAY,
                          (rx_status & RX_TUNNEL_OUTER) != 0)
    if p.ipip and not (rx_status & RX_TUNNEL_OUTER):
        # replay of an IP-in-IP frame: its outer packet is a packet of the tunnel's own flow (protocol 4 or 41
        # between the endpoints, which `ip` rules see, as Suricata's do), then the inner one is read
        process_frame(e, in_port, data, len, rx_status | RX_TUNNEL_OUTER, now)
    if reason != R_NONE:
        count_drop(e, reason)
        return
    if t == NULL:
        count_drop(e, R_NO_POLICY)
        return
    if (rx_status & TP_STATUS_CSUMNOTREADY) and not (rx_status & RX_SNAPPED):
        fix = &p

    # 2. identity and anti-spoofing, on every frame (a flow's tuple must not be borrowed)
    if e.mode == MODE_REPLAY:
        # a capture carries routers' MACs: workloads by address alone, no anti-spoofing
        identity_by_ip(t, &p, &src_wl, &dst_wl)
    else:
        reason = identity_resolve(t, &p, in_port, &src_wl, &dst_wl)
        if reason != R_NONE:
            count_drop(e, reason)
            drop_event_packet(e, t, &p, in_port, reason, src_wl, -1, t.wl_vsys[src_wl] if src_wl >= 0 else -1, now)
            return
        if src_wl >= 0 and port.vm_side and t.wl_here != NULL and not t.wl_here[src_wl]:
            workload_arrived(e, t, src_wl, in_port, now)
    # address resolution (ARP, IPv6 ND) and multicast listener reports pass, so hosts find each
    # other through the wire
    if p.l3 == L3_ARP or (link_control(&p) and e.mode == MODE_LIVE):
        if p.l3 == L3_ARP and t.n_profiles and inspect_arp(e, t, &p, in_port, src_wl, dst_wl, now) != A_ALLOW:
            count_drop(e, R_THREAT)     # a `drop arp` rule (inspect_arp.pxi)
            return
        forward(e, in_port, data, len, fix, now)
        return
    # non-first fragments carry no ports: they follow their first fragment's verdict
    if p.is_frag and not p.frag_first:
        fr = frag_find(e, &p, False, now)
        if fr == NULL:
            count_drop(e, R_FRAG_NO_FIRST)
        elif fr.action != A_ALLOW:
            count_drop(e, R_POLICY_DENY)
        else:
            forward(e, in_port, data, len, fix, now)
        return

    # an ICMP error travels with the flow it reports on (PMTU discovery, unreachables), or not at all
    if p.icmp_error and e.mode == MODE_LIVE:
        # the error must go back to the sender of the datagram it quotes (a router on the path may
        # send it); anything else would let a workload carry data inside "errors" to any address
        if p.dst_ip.hi != p.inner_src.hi or p.dst_ip.lo != p.inner_src.lo:
            count_drop(e, R_ICMP_ERROR_NO_FLOW)
            return
        flow_key_from_icmp_quote(&key, &p)
        f = flow_lookup(&e.flows, &key, flow_hash(&key))
        if f == NULL or f.action != A_ALLOW:
            count_drop(e, R_ICMP_ERROR_NO_FLOW)
            return
        f.ts_last = now
        forward(e, in_port, data, len, fix, now)
        return

    # 3. flow
    flow_key_from_pkt(&key, &p, &pkt_is_a)
    h = flow_hash(&key)
    f = flow_lookup(&e.flows, &key, h)
    if f != NULL and p.proto == P_TCP and (p.tcp_flags & (TH_SYN | TH_ACK)) == TH_SYN and f.tcp_state >= TCP_FIN_WAIT:
        # a new connection on the tuple of a closing one: end the old flow, start afresh
        flow_end(e, f, END_REUSED, now)
        flow_remove_slot(&e.flows, <uint32_t>(f - e.flows.slots))
        f = NULL
    elif f != NULL and flow_idle_out(e, f, now):
        # idle past its timeout and not swept yet: what arrives now starts a new flow
        flow_end(e, f, END_TIMEOUT, now)
        flow_remove_slot(&e.flows, <uint32_t>(f - e.flows.slots))
        f = NULL
    if f == NULL:
        from_server = False
        if p.proto == P_TCP and (p.tcp_flags & (TH_SYN | TH_ACK | TH_RST)) != TH_SYN and e.mode == MODE_LIVE:
            if now >= e.midstream_until_ns:
                count_drop(e, R_TCP_NOT_SYN)
                return
            # just after a fail-open wire was taken back: connections opened meanwhile are picked up
            # mid-stream and decided by the policy; a segment from the lower port is the server's
            from_server = p.sport < p.dport
            if from_server:
                src_wl, dst_wl = dst_wl, src_wl
        # 3a. tenancy: the vsys the flow is charged to must be within its quotas (nothing is kept if not)
        quota_vs = quota_vsys_of(t, src_wl, dst_wl, e.unmanaged_vsys)
        reason = quota_admit(t, e.vsys, quota_vs, now, &charged)
        if reason != R_NONE:
            count_drop(e, reason)
            drop_event_packet(e, t, &p, in_port, reason, src_wl, dst_wl, quota_vs, now)
            return
        f = flow_insert_evicting(e, &key, h, charged, now)
        if f == NULL:
            quota_release(e.vsys, charged)
            count_drop(e, R_FLOW_TABLE_FULL)
            drop_event_packet(e, t, &p, in_port, R_FLOW_TABLE_FULL, src_wl, dst_wl, quota_vs, now)
            return
        f.quota_slot = charged
        # 4. policy, once per flow
        flow_start(e, t, f, &p, pkt_is_a != from_server, in_port, src_wl, dst_wl, now, &d)
        to_server = not from_server
        if from_server:
            src_wl, dst_wl = dst_wl, src_wl   # back to this packet's sender and receiver
    else:
        to_server = pkt_is_a == f.init_is_a
        if f.mig:
            flow_mig_packet(f, to_server)
        if f.cut < CUT_CLEARED and (f.generation != t.generation or (
                f.user_dep and f.user_gen != users_gen(e) and flow_user_changed(e, f))):
            # a reload, or a new user behind the address of a flow a `users:` condition decided: established
            # flows keep going unless the policy now refuses them (a cleared one stays ended)
            if f.generation == t.generation:
                e.user_redecided += 1
            old_action = f.action
            if to_server:
                flow_decide(e, t, f, &p, src_wl, dst_wl, &d)
            else:
                flow_decide(e, t, f, &p, dst_wl, src_wl, &d)
            if old_action == A_ALLOW and f.action != A_ALLOW:
                f.cut = 1
                e.flows_cut += 1
                count_drop(e, R_CUT_BY_POLICY)
                if f.action == A_REJECT:
                    respond_reject(e, in_port, &p)
                flow_mark_cut(f)
                return
    f.ts_last = now
    f.pkts[0 if to_server else 1] += 1
    f.bytes[0 if to_server else 1] += len
    if p.proto == P_TCP:
        f.tcp_flags[0 if to_server else 1] |= p.tcp_flags
        tcp_track(f, p.tcp_flags, p.tcp_seq, to_server)
    if e.capreq.until_ns and f.capture == CAP_NONE and now < ngfw_load_u64(&e.capreq.until_ns) \
            and capreq_match(&e.capreq, f):
        f.capture = CAP_FLOW
        f.cap_left = e.capreq.packets
    if f.cap_left:
        f.cap_left -= 1
        capring_put(&e.capture, f, data, len, in_port, CAPK_FRAME, now)
    if p.is_frag:
        fr = frag_find(e, &p, True, now)
        if fr == NULL:
            count_drop(e, R_FRAG_TABLE_FULL)
            return
        fr.action = f.action
        fr.ts = now

    # 5. App-ID on the first payload packets; a verdict that waited for the app is decided now
    if f.host_extra and p.payload_len and f.app_state == APPST_DONE:
        # a decided flow's later messages name its host (DNS, STUN), or show another app (STUN -> DTLS)
        if appid_host_extra(e, t, f, &p, to_server) and f.action == A_ALLOW \
                and not app_verdict(e, t, f, &p, to_server, src_wl, dst_wl, in_port):
            return
    if p.payload_len and f.app_state != APPST_DONE and f.action == A_ALLOW and (p.proto == P_TCP or p.proto == P_UDP):
        if appid_inspect(e, t, f, &p, to_server):
            if f.app_wait and not app_verdict(e, t, f, &p, to_server, src_wl, dst_wl, in_port):
                return
        elif f.app_wait and <uint32_t>f.pl_pkts[0] + f.pl_pkts[1] > e.appid_budget:
            # the budget is spent: decide with what is known
            app_finish(e, t, f,
                       port_guess(&t.apps, f) or (t.apps.unknown_tcp if p.proto == P_TCP else t.apps.unknown_udp),
                       CONF_PORT, NULL)
            if not app_verdict(e, t, f, &p, to_server, src_wl, dst_wl, in_port):
                return

    # 6. threat inspection (flows whose rule names a profile); a blocked flow stays blocked
    if f.threat:
        count_drop(e, R_THREAT)
        if f.threat == A_REJECT and p.proto == P_TCP:
            respond_reject(e, in_port, &p)
        return
    if f.profile >= 0 and f.action == A_ALLOW:
        reason = R_THREAT
        r = inspect_packet(e, t, f, &p, to_server, now, &reason)
        if r != A_ALLOW:
            if f.threat and f.bypass:
                # a signature blocked the flow (in the direction still inspected): the kernel forwards
                # nothing more of the other one either
                bypass_leave(e, f, now)
            count_drop(e, reason)
            if r == A_REJECT:
                # RST both ways: to the sender, and onward in place of the dropped packet
                respond_reject(e, in_port, &p)
                if p.proto == P_TCP:
                    respond_reset_peer(e, f, &p, to_server, in_port)
            return

    # 7. verdict
    if f.action != A_ALLOW:
        if f.cut >= CUT_CLEARED:
            session_cleared_frame(e, f, &p, to_server, in_port)
            return
        if f.cut:
            count_drop(e, R_CUT_BY_POLICY)
        elif f.rule < 0:
            count_drop(e, R_NO_WORKLOAD if f.vsys < 0 else R_POLICY_DEFAULT)
        else:
            count_drop(e, R_POLICY_REJECT if f.action == A_REJECT else R_POLICY_DENY)
        if f.action == A_REJECT:
            respond_reject(e, in_port, &p)
        return
    # 8. forward
    forward(e, in_port, data, len, fix, now)
    # 9. a flow whose verdict is final goes on in the kernel (bypass.pxi)
    if e.bypass_fd >= 0:
        bypass_update(e, t, f, &p, in_port, to_server, now)

cdef inline bint flow_idle_out(const engine_t *e, const flow_t *f, uint64_t now) noexcept nogil:
    if f.mig >= MIG_OUT_CLIENT:
        return now > f.ts_last and now - f.ts_last > MIG_LINGER_NS
    return now > f.ts_last and now - f.ts_last > e.timeouts_ns[flow_timeout_class(f)]

cdef enum:
    GIVE_BACK_MIN_PAGES = 256  # pages (a MiB) a pass that gives memory back must be able to give, to be worth it

cdef void sweep_flows(engine_t *e, uint64_t now, uint64_t max_slots) noexcept nogil:
    """Expire idle flows, scanning a share of the table proportional to the time elapsed (at most
    `max_slots`: a replayed capture's clock jumps by hours between packets, and a flow seen again after
    its timeout is ended when it is looked up anyway).

    Once the table holds a quarter of the flows it held at its peak or fewer (a flood came and went) and its
    pages are more than its flows need by a MiB, a pass over the whole table also gives back the pages that
    hold no flow (flow.pxi); the next such fall, the next pass. Only pages seen empty slot by slot since the
    last insertion are given back (only an insertion fills an empty slot)."""
    cdef flowtable_t *ft = &e.flows
    cdef uint64_t elapsed = now - e.last_sweep
    cdef uint64_t budget, step
    cdef uint32_t s, next_s, n = ft.mask + 1
    cdef flow_t *f
    cdef bint giving
    cdef uintptr_t empty_from    # every slot from here to the cursor was seen empty in this call
    if now < e.last_sweep or elapsed < 5000000:   # 5 ms (a replayed capture's clock may step back)
        return
    e.last_sweep = now
    budget = (<uint64_t>n * elapsed) // 1000000000ull + 64
    if budget > n:
        budget = n
    if budget > max_slots:
        budget = max_slots
    if ft.count > ft.peak:
        ft.peak = ft.count
    # a flow lies on two pages at most: the pages held beyond that hold no flow
    if (ft.give_back_left == 0 and ft.count <= ft.peak // 4
            and ft.n_pages - ft.n_released > 2 * <uint64_t>ft.count + GIVE_BACK_MIN_PAGES):
        ft.give_back_left = n     # a pass, from here round the table
        ft.peak = ft.count        # the next fall is measured from here
    giving = ft.give_back_left != 0
    empty_from = <uintptr_t>&ft.slots[ft.sweep_cursor]
    if giving and ft.empty_inserts == ft.inserts and ft.empty_from and ft.empty_from <= empty_from:
        # nothing was inserted since the last call: the empty run it ended in goes on (removals and the shifts
        # they make only ever move a flow into a slot that held one)
        empty_from = ft.empty_from
    while budget > 0:
        s = ft.sweep_cursor
        if flow_slot_released(ft, s):
            # given back earlier: empty, and not to be read
            next_s = flow_next_slot_to_read_before(ft, s, <uint32_t>(s + budget) if budget < n - s else n)
            step = next_s - s
        else:
            f = &ft.slots[s]
            if f.used and f.bypass == BP_IN and (now - f.bp_fold_ns >= BYPASS_FOLD_NS or flow_idle_out(e, f, now)):
                bypass_fold(e, f, now)   # the kernel forwarded its frames: its counters and last-seen time
            if f.used and flow_idle_out(e, f, now):
                flow_end(e, f, END_TIMEOUT, now)
                flow_remove_slot(ft, s)
                continue   # a later entry may have shifted into this slot: look at it again
            if f.used:
                if giving:
                    flow_give_back_range(ft, empty_from, <uintptr_t>f)
                empty_from = <uintptr_t>(f + 1)
            step = 1
        if step > budget:
            step = budget
        budget -= step
        if giving:
            if step >= ft.give_back_left:
                # the pass is over: what it saw empty goes back, and the next flood is measured from here
                flow_give_back_range(ft, empty_from, <uintptr_t>&ft.slots[s + <uint32_t>ft.give_back_left])
                ft.give_back_left = 0
                giving = False
            else:
                ft.give_back_left -= <uint32_t>step
        s += <uint32_t>step
        if s >= n:
            if giving:
                flow_give_back_range(ft, empty_from, <uintptr_t>(ft.slots + n))
            s = 0
            empty_from = <uintptr_t>ft.slots
        ft.sweep_cursor = s
    if giving:
        flow_give_back_range(ft, empty_from, <uintptr_t>&ft.slots[ft.sweep_cursor])
    ft.empty_from = empty_from
    ft.empty_inserts = ft.inserts
    if e.ins != NULL:
        inspool_give_back(&e.ins.pool)

cdef inline void engine_wake(engine_t *e) noexcept nogil:
    """Wake the loop from its poll (a session request, new tables): it looks at once, not at its next timeout."""
    cdef uint64_t one = 1
    if e.wake_fd >= 0:
        write(e.wake_fd, &one, 8)

cdef void run_loop(engine_t *e) noexcept nogil:
    cdef pollfd fds[MAX_PORTS + 1]
    cdef uint16_t fd_port[MAX_PORTS]
    cdef uint32_t i, n, nfds, wake
    cdef uint32_t epoch = e.ports_epoch
    cdef uint64_t now, drained
    # the ports that have an interface, then the wake eventfd (at index `wake`)
    wake = port_pollset(e, fds, fd_port)
    nfds = loop_pollset_wake(e, fds, wake)
    cdef uint64_t last_busy, spin
    cdef bint sparse
    cdef uint64_t bulk_until = 0   # until then every send goes to the TX thread (TX_HANDOFF_BYTES)
    # frames in the current and the previous 10 ms window: fewer than QUIET_FRAMES is sparse traffic
    cdef uint64_t window_start, window_frames = 0, previous_window_frames = 0
    e.last_sweep = ngfw_now_ns()
    last_busy = e.last_sweep
    window_start = e.last_sweep
    while not ngfw_load_u32(&e.stop):
        adopt_tables(e)
        take_port_request(e)
        now = ngfw_now_ns()
        take_request(e, now)
        ngfw_store_u64(&e.progress_ns, now)
        if e.heartbeat != NULL:
            ngfw_store_u64(e.heartbeat, now)
        n = 0
        for i in range(e.n_ports):
            if e.ports[i].detached:
                continue
            if e.ports[i].kind == PORT_RING:
                n += rx_ring_burst(e, i, e.burst, now)
            elif e.ports[i].kind == PORT_TAP:
                n += rx_tap_burst(e, i, e.burst, now)
        window_frames += n
        if now - window_start >= QUIET_WINDOW_NS:
            previous_window_frames = window_frames
            window_frames = 0
            window_start = now
        sparse = window_frames + previous_window_frames < QUIET_FRAMES
        if sparse != e.sparse:
            ngfw_store_u32(&e.sparse, sparse)   # the TX thread reads it: written when it changes, not per turn
        # a full burst (the loop is saturated) or full-size frames (bulk): the sends go to the TX thread to
        # run beside the loop, all of them (the ACKs of a bulk transfer too) until the bulk has been gone a while
        for i in range(e.n_ports):
            if n >= e.burst or e.ports[i].tx_pending_bytes >= TX_HANDOFF_BYTES:
                bulk_until = now + TX_BULK_HOLD_NS
        for i in range(e.n_ports):
            if e.ports[i].kind == PORT_RING and (sparse or (
                    now >= bulk_until and not ngfw_load_u32(&e.ports[i].tx_wanted)
                    and not ngfw_load_u32(&e.ports[i].tx_sending))):
                # sparse traffic, or a few small frames (a handshake, a request) while the TX thread has nothing
                # of this port's: sent from here at once, that thread's wake-up would cost more than the send
                ring_kick(&e.ports[i])
            else:
                port_flush(&e.ports[i])   # with a TX thread (tx_async), that thread flushes
        tx_thread_wake(e)
        sweep_flows(e, now, e.flows.mask + 1)
        # Waking from poll() costs tens of microseconds on a VM (the bare forwarder in bench/ measures it):
        # while traffic is sparse, keep looking for the next frame (interactive traffic gets the latency of
        # a busy-polling loop) and flush the TX rings here, not through the TX thread (one wake-up fewer);
        # under load, look only briefly, so the core goes back to whoever needs it (on a host shared with
        # the workloads, spinning then costs them throughput), and let the TX thread flush
        spin = e.idle_spin_quiet_ns if sparse else e.idle_spin_ns
        if n:
            last_busy = now
        elif now - last_busy < spin:
            sched_yield()
        else:
            if epoch != e.ports_epoch:
                epoch = e.ports_epoch
                wake = port_pollset(e, fds, fd_port)
                nfds = loop_pollset_wake(e, fds, wake)
            if poll(fds, nfds, 10) > 0:
                if wake < nfds and (fds[wake].revents & POLLIN):
                    read(e.wake_fd, &drained, 8)
                port_poll_errors(e, fds, fd_port, wake)
