# ARP frames and `arp` rules (Suricata 8.0.5 and later): an ARP frame makes no flow and no policy rule
# decides it, so the threat profiles look at it before it is forwarded. A profile inspects the ARP frames of
# its vsys's workloads (every frame when the sender is no known workload, as in a replayed capture); a rule
# set that several of those profiles share looks once. Only Ethernet/IPv4 ARP with opcode 1-4 is ARP to the
# rules, as Suricata's decoder has it; `ether.hdr` (the frame's first 14 bytes) is the buffer they inspect.

cdef enum:
    ARP_ETHER_HDR = 14

cdef inline uint16_t arp_opcode(const pkt_t *p) noexcept nogil:
    """The opcode of an ARP frame Suricata's decoder accepts, else 0."""
    cdef uint16_t op
    if not p.arp_ipv4:
        return 0
    op = ngfw_be16(p.data + p.l3_off + 6)
    return op if 1 <= op <= 4 else 0

cdef void emit_arp_alert(engine_t *e, const tables_t *t, const instables_t *T, const pkt_t *p, uint16_t in_port,
                         uint32_t rid, int32_t vsys, int32_t src_wl, int32_t dst_wl, uint16_t op, uint8_t blocked,
                         uint64_t now) noexcept nogil:
    """An EV_ALERT without a flow (flow_id 0, `no_flow`): the frame's MACs and ARP fields."""
    cdef event_t *ev = evring_claim(&e.events)
    cdef const uint8_t *arp = p.data + p.l3_off
    if ev == NULL:
        return   # counted as lost by the ring
    memset(ev, 0, sizeof(event_t))
    ev.type = EV_ALERT
    ev.no_flow = 1
    ev.action = A_DENY if blocked else A_ALLOW
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
    ev.src_ip = p.src_ip          # the sender's protocol address
    ev.dest_ip = p.dst_ip         # the target's
    ev.sig = rid
    ev.ruleset = T.id
    ev.alert_blocked = blocked
    ev.arp_op = op
    ev.arp_mac[0] = p.src_mac
    ev.arp_mac[1] = p.dst_mac
    ev.arp_mac[2] = ngfw_mac64(arp + 8)
    ev.arp_mac[3] = ngfw_mac64(arp + 18)
    evring_publish(&e.events)

cdef int inspect_arp(engine_t *e, tables_t *t, const pkt_t *p, uint16_t in_port, int32_t src_wl, int32_t dst_wl,
                     uint64_t now) noexcept nogil:
    """The `arp` rules of the profiles that see this frame; A_DENY when one drops (or rejects) it."""
    cdef insws_t *ws = e.ins
    cdef uint16_t op = arp_opcode(p)
    cdef int32_t frame_vsys = t.wl_vsys[src_wl] if src_wl >= 0 else -1
    cdef uint32_t i, j, k, rid
    cdef const iprofile_t *prof
    cdef const instables_t *T
    cdef const irule_t *r
    cdef const xrule_t *xr
    cdef uint8_t action, blocked
    cdef int verdict = A_ALLOW
    cdef bint seen
    cdef int vs
    if ws == NULL or op == 0:
        return A_ALLOW
    for i in range(t.n_profiles):
        prof = &t.profiles[i]
        T = prof.T
        if T == NULL or T.arp_n == 0 or (frame_vsys >= 0 and prof.vsys != frame_vsys):
            continue
        seen = False
        for j in range(i):
            if t.profiles[j].T == T and (frame_vsys < 0 or t.profiles[j].vsys == frame_vsys):
                seen = True       # the same rule set looked at this frame already
                break
        if seen:
            continue
        vs = prof.vsys + 1 if prof.vsys >= 0 and prof.vsys < 1023 else 0
        memset(ws.bs.have, 0, B_COUNT)
        memset(ws.slot_ready, 0, T.n_slots)
        ws.norm_used = 0
        ws.win_ready = 0
        bs_set(&ws.bs, B_ETHER_HDR, p.data, ARP_ETHER_HDR)
        for k in range(T.arp_n):
            rid = T.arp_rules[k]
            r = &T.rules[rid]
            if not ((prof.set_mask >> r.set_id) & 1):
                continue
            # not a TCP stream: no slot state is read
            if not rule_buffers_ok(ws, T, r, NULL, 0, False):
                continue
            xr = xrule_of(prof, rid) if prof.n_xrules else NULL
            if xr != NULL and xr.disabled:
                ws.suppressed[vs][SUP_EXCEPTION] += 1
                continue
            T.rule_matches[rid] += 1
            if r.action == IA_PASS:
                break
            action = r.action
            if prof.action_override == 1:
                action = IA_ALERT
            elif prof.action_override == 2 and action == IA_ALERT:
                action = IA_DROP
            blocked = action == IA_DROP or action == IA_REJECT
            if not r.noalert:
                emit_arp_alert(e, t, T, p, in_port, rid, prof.vsys, src_wl, dst_wl, op, blocked, now)
                ws.alerts[vs][(r.priority - 1) & 3][blocked] += 1
            if blocked:
                verdict = A_DENY
    return verdict

ARP_OPCODES = ("", "request", "reply", "request_reverse", "reply_reverse")

cdef str _mac_text(uint64_t mac):
    # ngfw_mac64 loads the six bytes little-endian: the first octet is the lowest byte
    return ":".join(f"{(mac >> (8 * i)) & 0xff:02x}" for i in range(6))

cdef int arp_event_fields(dict d, uint16_t op, const uint64_t *macs) except -1:
    """An ARP alert's own fields, Suricata's names (its `arp` event and `ether` object); no flow, no ports."""
    d["community_id"] = None
    d["proto"] = None
    d["src_port"] = d["dest_port"] = None
    d["ether"] = {"src_mac": _mac_text(macs[0]), "dest_mac": _mac_text(macs[1])}
    d["arp"] = {"hw_type": "ethernet", "proto_type": "ipv4", "opcode": ARP_OPCODES[op],
                "src_mac": _mac_text(macs[2]), "src_ip": d["src_ip"],
                "dest_mac": _mac_text(macs[3]), "dest_ip": d["dest_ip"]}
    return 0
