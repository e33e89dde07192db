# Flow bypass: a flow whose verdict is final is forwarded by the kernel for the rest of its life. The wire
# program (bpf/wire.bpf.c) looks each frame of a wire up in the ngfw_bypass map, which this file fills from
# the packet loop (libbpf's map calls, one system call each); the loop folds the map's counters back into the
# flow (packets, bytes, last seen), removes the entries when the flow ends, leaves bypass, or a new policy
# generation arrives (docs/dataplane.md, Flow bypass).
#
# One entry per direction: a direction whose inspection is over (or that is not inspected) is bypassed whole
# (BYPASS_ALL); the other direction of a flow being inspected is bypassed only for its segments without
# payload (BYPASS_EMPTY, its ACKs: inspection looks at no empty segment when the rule set has no header-only
# rule for every packet), so a download past the inspection depth leaves the loop both ways while its request
# direction is still inspected when it speaks again.

cdef extern from "<bpf/bpf.h>" nogil:
    int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)
    int bpf_map_lookup_elem(int fd, const void *key, void *value)
    int bpf_map_delete_elem(int fd, const void *key)

cdef extern from "bpf/wire.h" nogil:
    enum:
        BYPASS_ALL
        BYPASS_EMPTY
        BYPASS_MAX_ENTRIES
    struct bypass_key:
        uint32_t ifindex
        uint16_t sport
        uint16_t dport
        uint8_t proto
        uint8_t pad[3]
        uint8_t src[16]
        uint8_t dst[16]
    struct bypass_value:
        uint32_t peer_ifindex
        uint32_t flags
        uint8_t src_mac[6]
        uint8_t pad[2]
        uint64_t packets
        uint64_t bytes
        uint64_t last_seen_ns

cdef extern from "<errno.h>" nogil:
    int E2BIG
    int ENOENT

# flow_t.bypass
cdef enum:
    BP_NONE = 0
    BP_IN = 1          # both directions' entries are in the map
    BP_REFUSED = 2     # the map was full (or refused): retried after BYPASS_RETRY_NS

cdef uint64_t BYPASS_FOLD_NS = 1000000000ull     # the sweep folds a bypassed flow's counters this often
cdef uint64_t BYPASS_RETRY_NS = 1000000000ull    # a flow the full map refused tries again after this

# why a flow is not bypassed (flows()'s `bypass` and the unit tests); 0: it may be
cdef enum:
    BYP_OK = 0
    BYP_OFF = 1            # bypass off, or the flow's ports carry no wire program (TAP, segment)
    BYP_VERDICT = 2        # not allowed, cut, cleared or blocked by a signature
    BYP_PROTOCOL = 3       # neither TCP nor UDP, or VLAN-tagged: the kernel program does not parse it
    BYP_TCP_STATE = 4      # a TCP connection not established (handshake, closing): the loop follows it
    BYP_APP = 5            # its application is not decided yet (or a later message may still name it)
    BYP_INSPECTING = 6     # threat inspection is not over in either direction
    BYP_REPLAY = 7         # a replay: every packet of the capture goes through the loop
    BYP_MIGRATING = 8      # one of its workloads is moving
    BYP_CAPTURE = 9        # its frames are being copied to the capture ring (capture.pxi)

BYPASS_REASONS = ("eligible", "off", "verdict", "protocol", "tcp_state", "app_pending", "inspecting", "replay",
                  "migrating", "capturing")

cdef bint empty_segment_rules(engine_t *e, tables_t *t, const instables_t *T, const iprofile_t *prof,
                              const flow_t *f, const inspslot_t *s, const pkt_t *p, bint p_to_server) noexcept nogil:
    """Could a signature evaluated on every segment (one without a fast pattern: inspect_packet runs those
    on segments without payload too) match an empty segment of either direction of `f`? The candidates for
    its addresses, filtered by the profile's sets and each rule's header (ports, direction, flags, dsize,
    application; flowbits taken as set, since they may be later). `p`: a frame of the flow, as the model of
    its segments; NULL: any such rule counts."""
    global inspect_stamp
    cdef insws_t *ws = e.ins
    cdef pkt_t q
    cdef irule_t rule
    cdef uint32_t i
    cdef int d
    cdef bint to_server
    if T.nopf_n == 0 or T.ipo[1].n_rules == 0:
        return False
    if p == NULL or ws == NULL:
        return True
    for d in range(2):
        to_server = d == 0
        q = p[0]
        q.payload_len = 0
        q.tcp_flags = TH_ACK
        q.is_frag = 0
        if to_server != p_to_server:
            q.src_ip, q.dst_ip = p.dst_ip, p.src_ip
            q.sport, q.dport = p.dport, p.sport
        inspect_stamp += 1
        if inspect_stamp == 0:
            memset(T.stamp, 0, T.n_rules * sizeof(uint32_t))
            inspect_stamp = 1
        ws.stamp_now = inspect_stamp
        ws.n_cand = 0
        addr_candidates(ws, T, 1, &q.src_ip, &q.dst_ip, q.is_v6)
        for i in range(ws.n_cand):
            rule = T.rules[ws.cand[i].rule]
            if not ((prof.set_mask >> rule.set_id) & 1):
                continue
            rule.fb_n = 0
            if rule_header_ok(e, t, T, &rule, f, &q, to_server, s):
                return True
    return False

cdef int bypass_check(engine_t *e, tables_t *t, const flow_t *f, bint any_port, uint8_t *flags,
                      const pkt_t *p, bint to_server) noexcept nogil:
    """May `f` leave the packet loop? Fills `flags[dir]` (BYPASS_ALL / BYPASS_EMPTY) and returns BYP_OK, or
    says why not. `any_port`: judge the flow alone, as if its ports carried the wire program (tests). `p`:
    the frame of the flow being forwarded (`to_server`: its direction), or NULL."""
    cdef const instables_t *T
    cdef const inspslot_t *s
    flags[0] = flags[1] = 0
    if not any_port and (e.bypass_fd < 0 or e.bypass_ifindex[f.in_port] == 0
                         or e.bypass_peer[f.in_port] < 0):
        return BYP_OFF
    if e.mode == MODE_REPLAY:
        return BYP_REPLAY
    if f.action != A_ALLOW or f.cut or f.threat:
        return BYP_VERDICT
    if f.key.vlan or (f.key.proto != P_TCP and f.key.proto != P_UDP):
        return BYP_PROTOCOL
    if f.mig:
        return BYP_MIGRATING
    if f.cap_left:
        return BYP_CAPTURE         # frames still to copy to the capture ring

    if f.key.proto == P_TCP and f.tcp_state != TCP_ESTABLISHED:
        return BYP_TCP_STATE
    if f.app_state != APPST_DONE or f.app_wait or f.host_extra:
        return BYP_APP
    flags[0] = flags[1] = BYPASS_ALL
    if f.profile < 0 or t == NULL or <uint32_t>f.profile >= t.n_profiles:
        return BYP_OK
    T = t.profiles[f.profile].T
    if T == NULL:
        return BYP_OK
    if f.insp < 0 or e.ins == NULL:
        flags[0] = flags[1] = 0
        return BYP_INSPECTING      # inspection has not started (its first payload packet is to come)
    s = &e.ins.pool.slots[f.insp]
    if s.passed:
        return BYP_OK              # a `pass` signature matched: nothing more is inspected
    # UDP datagrams are each inspected whole; a signature without a fast pattern may match any TCP segment
    if f.key.proto != P_TCP or empty_segment_rules(e, t, T, &t.profiles[f.profile], f, s, p, to_server):
        flags[0] = flags[1] = 0
        return BYP_INSPECTING
    if not s.done[0] and not s.done[1]:
        flags[0] = flags[1] = 0
        return BYP_INSPECTING
    flags[0] = BYPASS_ALL if s.done[0] else BYPASS_EMPTY
    flags[1] = BYPASS_ALL if s.done[1] else BYPASS_EMPTY
    return BYP_OK

cdef inline void bypass_addr(uint8_t *out, uint64_t hi, uint64_t lo) noexcept nogil:
    memcpy(out, &hi, 8)        # ip128_t words are in packet byte order already
    memcpy(out + 8, &lo, 8)

cdef void bypass_key_of(const flow_t *f, int d, uint32_t ifindex, bypass_key *k) noexcept nogil:
    """The key of direction `d` (0: client to server) as the kernel program builds it from a frame."""
    cdef bint sender_is_a = (d == 0) == (f.init_is_a != 0)
    memset(k, 0, sizeof(bypass_key))
    k.ifindex = ifindex
    k.proto = f.key.proto
    if sender_is_a:
        bypass_addr(k.src, f.key.a_hi, f.key.a_lo); k.sport = htons(f.key.a_port)
        bypass_addr(k.dst, f.key.b_hi, f.key.b_lo); k.dport = htons(f.key.b_port)
    else:
        bypass_addr(k.src, f.key.b_hi, f.key.b_lo); k.sport = htons(f.key.b_port)
        bypass_addr(k.dst, f.key.a_hi, f.key.a_lo); k.dport = htons(f.key.a_port)

cdef void bypass_fold(engine_t *e, flow_t *f, uint64_t now) noexcept nogil:
    """Add what the kernel forwarded since the last fold to the flow's counters and last-seen time."""
    cdef bypass_key k
    cdef bypass_value v
    cdef uint64_t dp, db
    cdef int d
    f.bp_fold_ns = now
    for d in range(2):
        bypass_key_of(f, d, f.bp_ifindex[d], &k)
        if bpf_map_lookup_elem(e.bypass_fd, &k, &v) != 0:
            continue
        dp = <uint32_t>(<uint32_t>v.packets - f.bp_pkts[d])
        if dp:
            db = v.bytes - f.bp_bytes[d]
            f.pkts[d] += dp
            f.bytes[d] += db
            e.bypass_packets += dp
            e.bypass_bytes += db
            f.bp_pkts[d] = <uint32_t>v.packets
            f.bp_bytes[d] = v.bytes
            if v.last_seen_ns > f.ts_last and v.last_seen_ns <= now + 1000000000ull:
                f.ts_last = v.last_seen_ns

cdef void bypass_leave(engine_t *e, flow_t *f, uint64_t now) noexcept nogil:
    """Take `f` back into the packet loop: fold its counters, remove its entries (from then on the kernel
    forwards none of its frames)."""
    cdef bypass_key k
    cdef int d
    if f.bypass == BP_REFUSED:
        f.bypass = BP_NONE
        return
    if f.bypass != BP_IN:
        return
    if e.bypass_fd >= 0:
        bypass_fold(e, f, now)
        for d in range(2):
            bypass_key_of(f, d, f.bp_ifindex[d], &k)
            if bpf_map_delete_elem(e.bypass_fd, &k) != 0 and errno != ENOENT:
                e.bypass_errors += 1
    f.bypass = BP_NONE
    f.bp_flags[0] = f.bp_flags[1] = 0
    if e.bypass_active:
        e.bypass_active -= 1

cdef void bypass_update(engine_t *e, const tables_t *t, flow_t *f, const pkt_t *p, uint16_t in_port,
                        bint to_server, uint64_t now) noexcept nogil:
    """After the loop forwarded a frame of `f`: put the flow in bypass if its verdict is final, change its
    entries if what may be bypassed changed, or take it out when it is no longer final (a FIN, a RST)."""
    cdef uint8_t flags[2]
    cdef int why, d, rc
    cdef uint16_t port[2]
    cdef uint32_t ifindex[2]
    cdef bypass_key k
    cdef bypass_value v
    if f.bypass == BP_REFUSED and now < f.bp_fold_ns + BYPASS_RETRY_NS:
        return
    why = bypass_check(e, <tables_t *>t, f, False, flags, p, to_server)
    if why != BYP_OK:
        if f.bypass != BP_NONE:
            bypass_leave(e, f, now)
        return
    # direction 0 arrives where the client is
    d = 0 if to_server else 1
    port[d] = in_port
    port[1 - d] = <uint16_t>e.bypass_peer[in_port]
    ifindex[0] = e.bypass_ifindex[port[0]]
    ifindex[1] = e.bypass_ifindex[port[1]]
    if ifindex[0] == 0 or ifindex[1] == 0:
        return
    if f.bypass == BP_IN:
        if flags[0] == f.bp_flags[0] and flags[1] == f.bp_flags[1] \
                and ifindex[0] == f.bp_ifindex[0] and ifindex[1] == f.bp_ifindex[1]:
            return   # a frame that was in the ring before the entries went in, or one the kernel passed on
        bypass_leave(e, f, now)   # what may be bypassed changed (or an interface was re-created): anew
    for d in range(2):
        bypass_key_of(f, d, ifindex[d], &k)
        memset(&v, 0, sizeof(v))
        v.peer_ifindex = ifindex[1 - d]
        v.flags = flags[d]
        # the sender of direction d: this frame's source when it travels that way, else its destination
        memcpy(v.src_mac, p.data + 6 if (d == 0) == to_server else p.data, 6)
        rc = bpf_map_update_elem(e.bypass_fd, &k, &v, 0)
        if rc != 0:
            if errno == E2BIG:
                e.bypass_map_full += 1
            else:
                e.bypass_errors += 1
            if d == 1:
                bypass_key_of(f, 0, ifindex[0], &k)
                bpf_map_delete_elem(e.bypass_fd, &k)
            f.bypass = BP_REFUSED
            f.bp_fold_ns = now
            return
    f.bypass = BP_IN
    f.bp_flags[0] = flags[0]
    f.bp_flags[1] = flags[1]
    f.bp_ifindex[0] = ifindex[0]
    f.bp_ifindex[1] = ifindex[1]
    f.bp_pkts[0] = f.bp_pkts[1] = 0
    f.bp_bytes[0] = f.bp_bytes[1] = 0
    f.bp_fold_ns = now
    e.bypass_flows += 1
    e.bypass_active += 1

cdef void bypass_leave_all(engine_t *e, uint64_t now) noexcept nogil:
    """A new policy generation: every bypassed flow comes back to the loop before the swap is acknowledged,
    so its next frame is decided by the new policy (and bypassed again if it is still allowed)."""
    cdef flowtable_t *ft = &e.flows
    cdef uint32_t s = 0
    cdef uint32_t n = ft.mask + 1
    if e.bypass_active == 0:
        return
    while s < n:
        s = flow_next_slot_to_read(ft, s)    # pages given back after a flood hold no flow: not read
        if s >= n:
            return
        if ft.slots[s].used and ft.slots[s].bypass != BP_NONE:
            bypass_leave(e, &ft.slots[s], now)
            if e.bypass_active == 0:
                return
        s += 1

cdef void bypass_leave_user_changed(engine_t *e, uint64_t now) noexcept nogil:
    """A new user table (User-ID): a bypassed flow a `users:` condition decided comes back to the loop when its
    user (or the user's groups) changed, so its next frame is decided again (worker.pxi); one whose user is
    the same is marked as looked up in the new table and stays in bypass."""
    cdef flowtable_t *ft = &e.flows
    cdef flow_t *f
    cdef const ugroups_t *g
    cdef uint64_t user
    cdef uint32_t s = 0
    cdef uint32_t n = ft.mask + 1
    cdef uint32_t gen = users_gen(e)
    if e.bypass_active == 0:
        return
    while s < n:
        s = flow_next_slot_to_read(ft, s)
        if s >= n:
            return
        f = &ft.slots[s]
        if f.used and f.bypass == BP_IN and f.user_dep and f.user_gen != gen:
            # looked up without touching the flow: a changed user is found again, and acted on, by the loop
            if f.init_is_a:
                user = usertab_user(e.users, f.key.a_hi, f.key.a_lo)
            else:
                user = usertab_user(e.users, f.key.b_hi, f.key.b_lo)
            g = usertab_groups(e.users, user)
            if user == f.user and (g.stamp if g != NULL else 0) == f.user_stamp:
                f.user_gen = gen
            else:
                bypass_leave(e, f, now)
                if e.bypass_active == 0:
                    return
        s += 1


# -------------------------------- Engine.enable_bypass, attach_ring_filter; a flow's bypass state

cdef tuple bypass_state(Engine self, flow_t *f):
    """("kernel", ways) for a flow in bypass, else (why it is not: BYPASS_REASONS, ways it would be), judged
    as if its ports carried the wire program; ways: what each direction's entry forwards, to server then to
    client: "all", "empty" (segments without payload) or None."""
    cdef uint8_t flags[2]
    cdef int why = bypass_check(self.e, self.e.tables, f, True, flags, NULL, True)
    ways = tuple("all" if x == BYPASS_ALL else "empty" if x == BYPASS_EMPTY else None for x in flags)
    if f.bypass == BP_IN:
        return "kernel", tuple("all" if x == BYPASS_ALL else "empty" if x == BYPASS_EMPTY else None
                               for x in f.bp_flags)
    return _name(BYPASS_REASONS, why), ways


cdef object bypass_enable(Engine self, int map_fd, int filter_fd, dict ports):
    for index, (ifindex, peer) in ports.items():
        if not 0 <= index < self.e.n_ports or not 0 <= peer < self.e.n_ports:
            raise ValueError(f"no port {index} or {peer}")
    self.attach_ring_filter(filter_fd, list(ports))
    for index, (ifindex, peer) in ports.items():
        self.e.bypass_ifindex[index] = ifindex
        self.e.bypass_peer[index] = peer
    self.e.bypass_fd = map_fd


cdef object bypass_attach_ring_filter(Engine self, int filter_fd, list port_indexes):
    cdef int fd = filter_fd
    for index in port_indexes:
        if not 0 <= index < self.e.n_ports:
            raise ValueError(f"no port {index}")
        if self.e.ports[index].kind != PORT_RING:
            raise ValueError(f"port {self.port_names[index]} is not a packet ring")
        if setsockopt(self.e.ports[index].fd, SOL_SOCKET, SO_ATTACH_BPF, &fd, sizeof(int)) < 0:
            raise OSError(errno, f"cannot attach the ring filter to {self.port_names[index]}: "
                                 f"{os.strerror(errno)}")
    self.bypass_filter_fd = filter_fd
