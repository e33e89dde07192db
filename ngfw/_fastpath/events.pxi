# Events from the fastpath to Python (flow ended, new flow dropped): a single-producer,
# single-consumer ring. The loop never waits on Python; when the ring is full the event is
# counted as lost.

cdef enum:
    EV_FLOW = 1    # a flow ended (timeout, close, cut, shutdown)
    EV_DROP = 2    # a new flow was denied or rejected
    EV_ALERT = 3   # a signature matched a packet of the flow
    EV_ARRIVAL = 4  # a workload's first frame on this dataplane's VM side (src_wl; it may have moved here)

# EV_DROP also reports frames dropped before any flow exists (anti-spoofing, vsys quotas, a full table):
# those come from a token bucket, so a flood of them cannot fill the ring; what the bucket refuses is
# counted and the next record says how many it stands for (`suppressed`).
cdef enum:
    PKT_DROP_EVENTS_PER_SECOND = 100

cdef enum:
    END_TIMEOUT = 0
    END_CUT = 1
    END_SHUTDOWN = 2
    END_REUSED = 3  # a new TCP SYN reused the tuple of a closed flow
    END_EARLY_DROP = 4  # the table was full: an embryonic flow gave way to a new one (session.pxi)
    END_CLEARED = 5     # an operator ended it (`ngfw sessions clear`, session_view.pxi)

END_REASONS = ("timeout", "cut", "shutdown", "reused", "early_drop", "cleared")

ctypedef struct event_t:
    uint8_t type
    uint8_t proto
    uint8_t action
    uint8_t end_reason
    uint8_t tcp_state
    uint8_t is_v6
    uint8_t drop_reason
    uint8_t pad
    uint16_t in_port
    uint16_t src_port       # initiator's side
    uint16_t dest_port
    uint16_t vlan
    int32_t vsys
    int32_t src_wl
    int32_t dst_wl
    int32_t rule
    int32_t rule_ingress
    uint32_t generation
    uint64_t flow_id
    uint64_t ts_first
    uint64_t ts_last
    uint64_t pkts[2]
    uint64_t bytes[2]
    ip128_t src_ip
    ip128_t dest_ip
    uint16_t app
    uint8_t app_conf
    uint8_t app_pkts
    uint8_t host_len
    uint8_t alert_blocked   # EV_ALERT: the packet (and flow) was dropped
    uint8_t pkt_to_client   # EV_ALERT: the matching packet went server -> client
    uint32_t sig            # EV_ALERT: rule index in the rule set
    uint32_t ruleset        # EV_ALERT: InspectTables id
    uint8_t tcp_flags[2]    # flags seen per direction ([0] to server)
    uint8_t icmp_type       # the flow's first ICMP type and code
    uint8_t icmp_code
    uint8_t alerted
    uint8_t capture         # the flow's capture mode (CAP_*): its record names the capture file
    uint8_t no_flow         # EV_DROP of a frame that made no flow (flow_id 0): anti-spoofing, quota, full table
    uint32_t suppressed     # no_flow drops the rate limit kept from the ring since the last one written
    uint64_t user           # the user behind the initiator's address (a principal), 0: none
    uint8_t user_via[2]     # 1 + the `users:` item the deciding (and the ingress) rule matched, 0: none
    uint16_t arp_op         # EV_ALERT of an ARP frame (no flow): its opcode, 0 for other alerts
    uint64_t arp_mac[4]     # ... and its Ethernet source, destination, ARP sender and target hardware addresses
    char host[HOST_MAX]

ctypedef struct evring_t:
    event_t *ev
    uint32_t size          # power of two
    uint32_t head          # written by the loop
    uint32_t tail          # written by Python
    uint64_t lost

cdef int evring_init(evring_t *r, uint32_t size) noexcept nogil:
    cdef uint32_t n = 64
    while n < size:
        n <<= 1
    r.ev = <event_t *>calloc(n, sizeof(event_t))
    r.size = n
    r.head = 0
    r.tail = 0
    r.lost = 0
    return 0 if r.ev != NULL else -1

cdef int events_init(engine_t *e, uint32_t capacity) except -1:
    if evring_init(&e.events, capacity) < 0:
        raise MemoryError("not enough memory for the event ring")
    return 0

cdef void events_free(engine_t *e) noexcept:
    free(e.events.ev)

cdef inline event_t *evring_claim(evring_t *r) noexcept nogil:
    cdef uint32_t head = r.head
    if head - ngfw_load_u32(&r.tail) >= r.size:
        r.lost += 1
        return NULL
    return &r.ev[head & (r.size - 1)]

cdef inline void evring_publish(evring_t *r) noexcept nogil:
    ngfw_store_u32(&r.head, r.head + 1)

# Python's side: the events published and not yet taken are ring positions tail .. tail + pending - 1
cdef inline uint32_t evring_pending(const evring_t *r) noexcept nogil:
    return ngfw_load_u32(&r.head) - r.tail

cdef inline event_t *evring_peek(evring_t *r, uint32_t i) noexcept nogil:
    """The `i`th event not taken yet (i < evring_pending)."""
    return &r.ev[(r.tail + i) & (r.size - 1)]

cdef inline void evring_take(evring_t *r, uint32_t n) noexcept nogil:
    """The first `n` events not taken yet are read: the loop may write over them."""
    ngfw_store_u32(&r.tail, r.tail + n)

cdef void event_from_flow(event_t *e, const flow_t *f, uint8_t type) noexcept nogil:
    e.type = type
    e.proto = f.key.proto
    e.action = f.action
    e.tcp_state = f.tcp_state
    e.is_v6 = f.is_v6
    e.in_port = f.in_port
    e.vlan = f.key.vlan
    e.vsys = f.vsys
    e.src_wl = f.src_wl
    e.dst_wl = f.dst_wl
    e.rule = f.rule
    e.rule_ingress = f.rule_ingress
    e.generation = f.generation
    e.flow_id = f.flow_id
    e.ts_first = f.ts_first
    e.ts_last = f.ts_last
    e.pkts[0] = f.pkts[0]
    e.pkts[1] = f.pkts[1]
    e.bytes[0] = f.bytes[0]
    e.bytes[1] = f.bytes[1]
    e.app = f.app if f.app_state == APPST_DONE else 0
    e.app_conf = f.app_conf
    e.app_pkts = f.app_pkts
    e.host_len = 0
    e.tcp_flags[0] = f.tcp_flags[0]
    e.tcp_flags[1] = f.tcp_flags[1]
    e.icmp_type = f.icmp_type
    e.icmp_code = f.icmp_code
    e.alerted = f.alerted
    e.capture = f.capture
    e.no_flow = 0
    e.suppressed = 0
    e.arp_op = 0
    e.user = f.user
    e.user_via[0] = f.user_via[0]
    e.user_via[1] = f.user_via[1]
    if f.init_is_a:
        e.src_ip.hi = f.key.a_hi; e.src_ip.lo = f.key.a_lo; e.src_port = f.key.a_port
        e.dest_ip.hi = f.key.b_hi; e.dest_ip.lo = f.key.b_lo; e.dest_port = f.key.b_port
    else:
        e.src_ip.hi = f.key.b_hi; e.src_ip.lo = f.key.b_lo; e.src_port = f.key.b_port
        e.dest_ip.hi = f.key.a_hi; e.dest_ip.lo = f.key.a_lo; e.dest_port = f.key.a_port


# -------------------------------- events as Python dicts (Engine.drain_events, flows, list_sessions)

cdef dict event_dict(Engine self, event_t *ev):
    if ev.type == EV_ARRIVAL:
        return {"event": "arrival", "workload": ev.src_wl, "generation": ev.generation,
                "in_port": self.port_names[ev.in_port] if ev.in_port < len(self.port_names) else "",
                "time": (ev.ts_first / 1e9) + self.wall_offset}
    d = flow_event_dict(self, ev)
    if ev.type == EV_ALERT:
        d["event"] = "alert"
        d["ruleset"] = ev.ruleset
        d["sig"] = ev.sig
        d["blocked"] = bool(ev.alert_blocked)
        d["pkt_to_client"] = bool(ev.pkt_to_client)
        ruleset = self.rulesets.get(ev.ruleset)
        d["signature"] = ruleset.rules[ev.sig] if ruleset is not None and ev.sig < len(ruleset.rules) else None
        if ev.arp_op:
            arp_event_fields(d, ev.arp_op, ev.arp_mac)
    return d


cdef dict flow_event_dict(Engine self, event_t *ev):
    cdef char cid[COMMUNITY_ID_LEN + 2]
    cdef int cid_len = community_id(cid, &ev.src_ip, &ev.dest_ip, ev.is_v6, ev.proto, ev.src_port, ev.dest_port,
                                    ev.icmp_type)
    host, ssh = host_fields((<char *>ev.host)[:ev.host_len])
    return {
        "event": "flow" if ev.type == EV_FLOW else "drop",
        "flow_id": ev.flow_id if not ev.no_flow else None,
        "community_id": cid[:cid_len].decode("ascii"),
        "proto": ev.proto,
        "src_ip": ip_from_c(ev.src_ip, ev.is_v6),
        "src_port": ev.src_port,
        "dest_ip": ip_from_c(ev.dest_ip, ev.is_v6),
        "dest_port": ev.dest_port,
        "vlan": ev.vlan,
        "in_port": self.port_names[ev.in_port] if ev.in_port < len(self.port_names) else "",
        "vsys": ev.vsys,
        "src_wl": ev.src_wl,
        "dst_wl": ev.dst_wl,
        "rule": ev.rule,
        "rule_ingress": ev.rule_ingress,
        "generation": ev.generation,
        "action": _name(ACTION_NAMES, ev.action),
        "end_reason": _name(END_REASONS, ev.end_reason) if ev.type == EV_FLOW else None,
        "drop_reason": _name(DROP_REASONS, ev.drop_reason) if ev.type == EV_DROP else None,
        "tcp_state": _name(TCP_STATE_NAMES, ev.tcp_state),
        "start": (ev.ts_first / 1e9) + self.wall_offset,
        "end": (ev.ts_last / 1e9) + self.wall_offset,
        "pkts_toserver": ev.pkts[0],
        "pkts_toclient": ev.pkts[1],
        "bytes_toserver": ev.bytes[0],
        "bytes_toclient": ev.bytes[1],
        "app_proto": self.app_names[ev.app] if 0 < ev.app < len(self.app_names) else None,
        "app_confidence": ev.app_conf if ev.app else None,
        "app_pkts": ev.app_pkts if ev.app else None,
        "app_host": host,
        "ssh": ssh,
        "tcp_flags_ts": ev.tcp_flags[0],
        "tcp_flags_tc": ev.tcp_flags[1],
        "icmp_type": ev.icmp_type if ev.proto == P_ICMP or ev.proto == P_ICMPV6 else None,
        "icmp_code": ev.icmp_code if ev.proto == P_ICMP or ev.proto == P_ICMPV6 else None,
        "alerted": bool(ev.alerted),
        "capture": ev.capture,
        "suppressed": ev.suppressed,
        "user": ev.user,
        "user_via": (ev.user_via[0], ev.user_via[1]),
    }

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
