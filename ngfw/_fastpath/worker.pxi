# The packet path in one place (Suricata's FlowWorker habit): `process_frame` spells out the order
# of the stages for one frame; `run_loop` drives the ports with the GIL released.

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

ctypedef struct engine_t:
    port_t ports[MAX_PORTS]
    uint32_t n_ports
    segment_t segments[MAX_SEGMENTS]
    uint32_t n_segments
    mac_entry_t *macs
    frag_entry_t *frags
    uint8_t frags_used         # an entry was made in `frags` since the last replay_reset (which then clears it)
    flowtable_t flows
    evring_t events
    tables_t *tables          # the generation the loop uses now
    tables_t *pending         # set by Python, adopted by the loop between bursts
    usertab_t *users          # User-ID: the user behind each address (userid.pxi), NULL: none known
    usertab_t *users_pending  # set by Python, adopted by the loop between bursts
    uint64_t user_redecided   # flows decided again because their user (or its groups) changed
    uint64_t timeouts_ns[TO_COUNT]
    uint64_t drops[R_COUNT]
    uint64_t flows_created
    uint64_t flows_expired
    uint64_t flows_cut
    uint64_t flow_id_next
    uint64_t flow_id_salt
    uint64_t last_sweep
    uint32_t stop
    uint32_t running
    uint32_t burst
    uint64_t idle_spin_ns      # keep polling the rings this long after the last frame before sleeping...
    uint64_t idle_spin_quiet_ns  # ... or this long while traffic is sparse (run_loop)
    uint32_t sparse            # run_loop's verdict on the traffic, for the TX thread
    # liveness: the loop stores its clock here every turn (at most 10 ms apart while it runs); a
    # watchdog (systemd's, the fail-open wire program's) reads it. `heartbeat` is this field, or a
    # word outside the process (a BPF map's value) that a kernel-side fail-open program reads
    uint64_t progress_ns
    uint64_t *heartbeat
    sess_req_t *request        # work for the loop's thread (session.pxi), taken between bursts
    int wake_fd                # an eventfd in the loop's poll set: Python's requests and swaps need no timeout
    uint64_t flows_early_dropped
    uint64_t early_drop_second     # start of the second whose early drops are being counted...
    uint32_t early_drops_second    # ... how many there were so far
    uint32_t early_drop_rate       # early drops in the last whole second
    uint64_t records_second        # start of the second whose records of embryonic flows are counted...
    uint32_t records_this_second   # ... and how many were written (embryonic_record)
    uint64_t records_unlogged      # records of embryonic flows not written
    uint64_t flows_handed_over  # flows a move handed to another host that ended here unlogged
    uint64_t arrivals          # workloads first seen on the VM side (EV_ARRIVAL)
    uint64_t midstream_until_ns  # until then a TCP segment of an unknown flow starts one (after fail-open)
    # links that come and go (ports.pxi): a port's new ring or TAP descriptor, swapped in between bursts
    port_req_t *port_request
    uint32_t ports_epoch       # changes with a port's I/O: the loop rebuilds its poll set
    int notify_fd              # eventfd the loop signals when it finds a port's device gone (Python waits on it)
    uint32_t tx_turns          # turns of the TX thread, so a swap knows when that thread let go of an old ring
    uint32_t tx_running
    uint32_t tx_asleep         # the TX thread sleeps on this word (a futex) until the loop hands it a ring
    uint8_t mode               # MODE_LIVE or MODE_REPLAY (defs.pxi): every difference is listed in docs/dataplane.md
    uint8_t log_all            # every flow and drop is an event, whatever the rule's `log` (replay)
    int32_t unmanaged_vsys     # vsys deciding flows with no workload on either side; -1 drops them
    clspool_t cls                # App-ID classification buffers
    hostpool_t hostpool          # host names of flows
    uint32_t appid_max_pkts      # payload packets after which an unidentified flow is decided anyway
    uint32_t appid_budget        # payload packets a flow waiting for its app may pass before that
    uint64_t app_cuts            # flows cut once their app was known
    insws_t *ins                 # threat inspection workspace
    capring_t capture            # frames of flows that ask for capture (capture.pxi)
    capreq_t capreq              # an operator's capture request (capture.pxi)
    uint64_t pktdrop_tokens      # drop records of frames that made no flow: a token bucket (ns of budget)...
    uint64_t pktdrop_refilled_ns
    uint32_t pktdrop_pending     # ... what it refused since the last record written...
    uint64_t pktdrop_suppressed  # ... and in all
    # flow bypass (bypass.pxi): the wire program's map, and each port's interface and wire peer
    int bypass_fd                # -1: off
    uint32_t bypass_ifindex[MAX_PORTS]   # 0: the port carries no wire program
    int32_t bypass_peer[MAX_PORTS]       # the other port of its wire, -1 none
    uint64_t bypass_flows        # flows put in bypass (a flow that leaves and comes back counts again)
    uint64_t bypass_active       # flows in bypass now
    uint64_t bypass_packets      # frames the kernel forwarded for bypassed flows (folded)
    uint64_t bypass_bytes
    uint64_t bypass_map_full     # flows that stayed in the loop because the map was full
    uint64_t bypass_errors       # other map refusals
    vsys_state_t vsys[VSYS_SLOTS]  # per-vsys sessions, rate buckets and quota drops (tenancy.pxi)
    uint8_t cls_scratch[SCRATCH_MAX]
    uint8_t scratch[SCRATCH_LEN]
    uint8_t response[RESPONSE_MAX]

cdef inline void count_drop(engine_t *e, int reason) noexcept nogil:
    e.drops[reason] += 1

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

cdef void respond_reject(engine_t *e, uint16_t in_port, const pkt_t *p) noexcept nogil:
    cdef uint32_t n
    if p.proto == P_TCP:
        if p.tcp_flags & TH_RST:
            return
        n = build_tcp_rst(e.response, p)
    else:
        n = build_icmp_unreachable(e.response, p)
    if n:
        port_tx(&e.ports[in_port], e.response, n, NULL)

cdef void respond_reset_peer(engine_t *e, flow_t *f, const pkt_t *p, bint to_server, uint16_t in_port) noexcept nogil:
    """Reset the far side of a cut TCP connection too, in place of the packet that is dropped."""
    cdef uint32_t n
    if p.tcp_flags & TH_RST:
        return
    n = build_tcp_rst_onward(e.response, p)
    forward(e, in_port, e.response, n, NULL, e.last_sweep)

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

cdef void drop_event_packet(engine_t *e, const tables_t *t, const pkt_t *p, uint16_t in_port, int reason,
                            int32_t src_wl, int32_t dst_wl, int32_t vsys, uint64_t now) noexcept nogil:
    """An EV_DROP for a frame refused before it made a flow (anti-spoofing, a vsys quota, a full table):
    at most PKT_DROP_EVENTS_PER_SECOND a second (a burst of as many), the rest counted."""
    cdef event_t *ev
    cdef uint64_t cost = 1000000000ull // PKT_DROP_EVENTS_PER_SECOND
    if e.pktdrop_refilled_ns == 0:
        e.pktdrop_tokens = 1000000000ull
    elif now > e.pktdrop_refilled_ns:
        e.pktdrop_tokens += now - e.pktdrop_refilled_ns
        if e.pktdrop_tokens > 1000000000ull:
            e.pktdrop_tokens = 1000000000ull
    e.pktdrop_refilled_ns = now if now else 1
    if e.pktdrop_tokens < cost:
        e.pktdrop_pending += 1
        e.pktdrop_suppressed += 1
        return
    ev = evring_claim(&e.events)
    if ev == NULL:
        return   # counted as lost by the ring
    e.pktdrop_tokens -= cost
    memset(ev, 0, sizeof(event_t))
    ev.type = EV_DROP
    ev.no_flow = 1
    ev.proto = p.proto
    ev.action = A_DENY
    ev.is_v6 = p.is_v6
    ev.in_port = in_port
    ev.vlan = p.vlan
    ev.vsys = vsys
    ev.src_wl = src_wl
    ev.dst_wl = dst_wl
    ev.rule = -1
    ev.rule_ingress = -1
    ev.generation = t.generation
    ev.ts_first = now
    ev.ts_last = now
    ev.pkts[0] = 1
    ev.bytes[0] = p.len
    ev.src_ip = p.src_ip
    ev.dest_ip = p.dst_ip
    ev.src_port = p.sport
    ev.dest_port = p.dport
    ev.tcp_flags[0] = p.tcp_flags if p.proto == P_TCP else 0
    if p.proto == P_ICMP or p.proto == P_ICMPV6:
        ev.icmp_type = p.icmp_type
        ev.icmp_code = p.icmp_code
    ev.drop_reason = <uint8_t>reason
    ev.suppressed = e.pktdrop_pending
    e.pktdrop_pending = 0
    evring_publish(&e.events)

cdef inline void event_host(engine_t *e, event_t *ev, const flow_t *f) noexcept nogil:
    if f.host >= 0:
        ev.host_len = e.hostpool.lens[f.host]
        memcpy(ev.host, e.hostpool.names[f.host], ev.host_len)

cdef inline uint32_t users_gen(const engine_t *e) noexcept nogil:
    return e.users.gen if e.users != NULL else 0

cdef inline void flow_user_lookup(engine_t *e, flow_t *f) noexcept nogil:
    """The user behind the flow's initiator, from the user table in force (once per flow and table)."""
    cdef const ugroups_t *g
    if f.init_is_a:
        f.user = usertab_user(e.users, f.key.a_hi, f.key.a_lo)
    else:
        f.user = usertab_user(e.users, f.key.b_hi, f.key.b_lo)
    g = usertab_groups(e.users, f.user)
    f.user_stamp = g.stamp if g != NULL else 0
    f.user_gen = users_gen(e)

cdef inline bint flow_user_changed(engine_t *e, flow_t *f) noexcept nogil:
    """After a swap of the user table: is the flow's user (or are its groups) another now?"""
    cdef uint64_t user = f.user
    cdef uint32_t stamp = f.user_stamp
    flow_user_lookup(e, f)
    return f.user != user or f.user_stamp != stamp

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

cdef void workload_arrived(engine_t *e, tables_t *t, int32_t wl, uint16_t in_port, uint64_t now) noexcept nogil:
    """A workload's first frame on the VM side of this dataplane: it may have moved here from another host
    (Python asks control for its sessions; ngfw.dataplane.migration)."""
    cdef event_t *ev = evring_claim(&e.events)
    if ev == NULL:
        return   # counted as lost; the next frame tries again
    t.wl_here[wl] = 1
    e.arrivals += 1
    memset(ev, 0, sizeof(event_t))
    ev.type = EV_ARRIVAL
    ev.src_wl = wl
    ev.in_port = in_port
    ev.generation = t.generation
    ev.ts_first = now
    ev.ts_last = now
    evring_publish(&e.events)

cdef inline void flow_mig_packet(flow_t *f, bint to_server) noexcept nogil:
    """A packet of a flow in a move: an imported copy is live here from now on; a handed-over one stays
    (unmarked) only when the moved workload itself sent the packet -- its peer is behind this host, so
    the flow crosses both hosts now. The far side's packets may be late or misdirected; they change nothing."""
    if f.mig == MIG_IN:
        f.mig = MIG_NONE
    elif (f.mig == MIG_OUT_CLIENT and to_server) or (f.mig == MIG_OUT_SERVER and not to_server):
        f.mig = MIG_NONE

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

cdef inline void adopt_tables(engine_t *e) noexcept nogil:
    cdef tables_t *p = <tables_t *>ngfw_load_ptr(<void **>&e.pending)
    cdef usertab_t *u = <usertab_t *>ngfw_load_ptr(<void **>&e.users_pending)
    if p != NULL:
        e.tables = p
        # bypassed flows come back before the swap is acknowledged: the new policy decides their next frame
        bypass_leave_all(e, ngfw_now_ns())
        ngfw_store_ptr(<void **>&e.pending, NULL)
    if u != NULL:
        e.users = u
        if p == NULL:
            # bypassed flows whose user changed come back before the swap is acknowledged (bypass.pxi)
            bypass_leave_user_changed(e, ngfw_now_ns())
        ngfw_store_ptr(<void **>&e.users_pending, NULL)

cdef uint32_t rx_ring_burst(engine_t *e, uint16_t pi, uint32_t budget, uint64_t now) noexcept nogil:
    cdef port_t *port = &e.ports[pi]
    cdef tpacket2_hdr *h
    cdef uint32_t n = 0, st, snap
    cdef uint8_t *frame
    cdef uint16_t tpid
    while n < budget:
        h = <tpacket2_hdr *>(port.rx_ring + <size_t>port.rx_head * port.rx_frame_size)
        st = ngfw_load_u32(&h.tp_status)
        if not (st & TP_STATUS_USER):
            break
        frame = <uint8_t *>h + h.tp_mac
        snap = h.tp_snaplen
        if h.tp_len > snap:
            # larger than a ring frame: a super-frame from an offload, or over the MTU
            port.rx_packets += 1
            port.rx_bytes += h.tp_len
            count_drop(e, R_OVERSIZE)
        elif (st & TP_STATUS_VLAN_VALID) and snap >= 12 and snap + 4 <= SCRATCH_LEN:
            # the kernel moved the 802.1Q tag into metadata: put it back so it is decoded and forwarded
            tpid = h.tp_vlan_tpid if (st & TP_STATUS_VLAN_TPID_VALID) else 0x8100
            memcpy(e.scratch, frame, 12)
            ngfw_put_be16(e.scratch + 12, tpid)
            ngfw_put_be16(e.scratch + 14, h.tp_vlan_tci)
            memcpy(e.scratch + 16, frame + 12, snap - 12)
            process_frame(e, pi, e.scratch, snap + 4, st & RX_KERNEL_BITS, now)
        else:
            process_frame(e, pi, frame, snap, st & RX_KERNEL_BITS, now)
        ngfw_store_u32(&h.tp_status, TP_STATUS_KERNEL)
        port.rx_head += 1
        if port.rx_head == port.rx_frames:
            port.rx_head = 0
        n += 1
    return n

cdef uint32_t rx_tap_burst(engine_t *e, uint16_t pi, uint32_t budget, uint64_t now) noexcept nogil:
    cdef port_t *port = &e.ports[pi]
    cdef uint32_t n = 0
    cdef ssize_t r
    while n < budget:
        r = read(port.fd, e.scratch, SCRATCH_LEN)
        if r < 0:
            if errno == EBADFD:
                port_gone(e, pi)   # the TAP device was deleted: its descriptor is attached to nothing
            break
        process_frame(e, pi, e.scratch, <uint32_t>r, 0, now)
        n += 1
    return n

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

cdef enum:
    TX_SLEEP_MAX_NS = 5000000   # the TX thread looks at `stop` (and counts a turn) at least this often
    TX_BULK_HOLD_NS = 2000000   # after a saturated or bulk turn, the loop hands every send over this long

cdef inline bint tx_work_waiting(engine_t *e) noexcept nogil:
    cdef uint32_t i
    for i in range(e.n_ports):
        if e.ports[i].kind == PORT_RING and ngfw_load_u32(&e.ports[i].tx_wanted):
            return True
    return False

cdef inline void tx_thread_wake(engine_t *e) noexcept nogil:
    """After the loop handed rings over (tx_wanted): wake the TX thread if it sleeps. The fence pairs with
    the one in run_tx_loop: either the loop sees it asleep, or it sees the work before it sleeps."""
    ngfw_fence()
    if ngfw_load_u32(&e.tx_asleep) and tx_work_waiting(e):
        ngfw_store_u32(&e.tx_asleep, 0)
        ngfw_futex_wake(&e.tx_asleep)

cdef void run_tx_loop(engine_t *e) noexcept nogil:
    """Flush TX rings for the packet loop: the kernel runs the receiving side's stack inside send(),
    and that work then overlaps with the loop's instead of stalling it. Idle, it sleeps until the loop
    hands it work (tx_thread_wake): polling would take a core from the workloads on a small host."""
    cdef uint32_t i
    cdef bint busy
    cdef uint64_t last_busy = ngfw_now_ns()
    cdef uint64_t now
    cdef int fd
    while not ngfw_load_u32(&e.stop):
        busy = False
        for i in range(e.n_ports):
            if e.ports[i].kind == PORT_RING and ngfw_load_u32(&e.ports[i].tx_wanted):
                ngfw_store_u32(&e.ports[i].tx_wanted, 0)
                # a swap may replace the ring meanwhile: the old one stays open until this thread's next turn
                fd = e.ports[i].fd
                ngfw_store_u32(&e.ports[i].tx_sending, 1)
                if fd >= 0 and not ngfw_load_u32(&e.ports[i].detached) \
                        and send(fd, NULL, 0, MSG_DONTWAIT) < 0 and errno != EAGAIN:
                    e.ports[i].tx_errors += 1
                ngfw_store_u32(&e.ports[i].tx_sending, 0)
                busy = True
        ngfw_store_u32(&e.tx_turns, e.tx_turns + 1)
        now = ngfw_now_ns()
        if busy:
            last_busy = now
        elif now - last_busy < e.idle_spin_ns:
            sched_yield()   # under load the next hand-over comes within microseconds: no sleep and wake-up
        else:
            ngfw_store_u32(&e.tx_asleep, 1)
            ngfw_fence()
            if not tx_work_waiting(e) and not ngfw_load_u32(&e.stop):
                ngfw_futex_wait(&e.tx_asleep, 1, TX_SLEEP_MAX_NS)
            ngfw_store_u32(&e.tx_asleep, 0)
