# Stage 5, App-ID: the application of a flow from its first payload packets. Protocol parsers
# (app_parsers.pxi) answer first; then Hyperscan block-mode signatures from the catalogue, by
# priority; a host name (SNI, Host, DNS query) refines to a child app (tls -> github); ports break
# ties only, at low confidence. A decided app re-evaluates policy when the verdict waited for it.

cdef enum:
    APPST_NONE = 0        # no payload yet
    APPST_PENDING = 1     # classifying
    APPST_DONE = 2

cdef enum:
    CONF_PARSER = 100
    CONF_SIGNATURE = 80
    CONF_PORT = 30
    SIG_WEAK = 25         # signatures of this priority or less are shapes more than proof (see signature_app)

cdef int clspool_init(clspool_t *p, uint32_t n) noexcept nogil:
    # slots are handed out in order first, then recycled: untouched memory is never faulted in
    p.n = n
    p.exhausted = 0
    p.never_used = 0
    p.slots = <clsslot_t *>malloc(<size_t>n * sizeof(clsslot_t)) if n else NULL
    if n and p.slots == NULL:
        return -1
    p.free_head = -1
    return 0

cdef int32_t clspool_take(clspool_t *p) noexcept nogil:
    cdef int32_t i = p.free_head
    cdef clsslot_t *s
    if i < 0:
        if p.never_used >= p.n:
            p.exhausted += 1
            return -1
        i = <int32_t>p.never_used
        p.never_used += 1
        s = &p.slots[i]
    else:
        s = &p.slots[i]
        p.free_head = s.next_free
    s.stream_len[0] = 0
    s.stream_len[1] = 0
    memset(s.win, 0, sizeof(s.win))
    s.n_ahead[0] = 0
    s.n_ahead[1] = 0
    s.parser_more = 0
    memset(&s.meta, 0, sizeof(appmeta_t))
    memset(s.scratch, 0, SCRATCH_MAX)
    return i

cdef inline void clspool_give(clspool_t *p, int32_t i) noexcept nogil:
    if i >= 0:
        p.slots[i].next_free = p.free_head
        p.free_head = i

cdef int hostpool_init(hostpool_t *p, uint32_t n, char *names_memory, uint8_t *lens_memory) noexcept nogil:
    """`names_memory`/`lens_memory`: room for n names and n + 1 lengths that outlives the process (NULL:
    the heap); a flow's host name survives a crash with its flow."""
    cdef uint32_t i
    p.n = n
    p.external = names_memory != NULL
    if p.external:
        p.names = <char (*)[HOST_MAX]>names_memory
        p.lens = lens_memory
    else:
        p.names = <char (*)[HOST_MAX]>malloc(<size_t>n * HOST_MAX) if n else NULL
        p.lens = <uint8_t *>calloc(n + 1, 1)
    p.next_free = <int32_t *>malloc((n + 1) * sizeof(int32_t))
    if (n and p.names == NULL) or p.lens == NULL or p.next_free == NULL:
        return -1
    for i in range(n):
        p.next_free[i] = <int32_t>i + 1 if i + 1 < n else -1
    p.free_head = 0 if n else -1
    return 0

cdef int appid_state_init(engine_t *e, uint32_t slots, uint32_t host_slots, char *host_names, uint8_t *host_lens,
                          uint32_t max_pkts, uint32_t budget) except -1:
    """The classification slots and the host-name pool (`host_names`/`host_lens`: their place in the state
    memory, NULL: the heap), and how many packets and parser calls a flow gets."""
    if clspool_init(&e.cls, slots) < 0 or hostpool_init(&e.hostpool, host_slots, host_names, host_lens) < 0:
        raise MemoryError("not enough memory for App-ID buffers")
    if max_pkts < 1 or budget < 1:
        raise ValueError("appid_max_pkts and appid_budget must be at least 1")
    e.appid_max_pkts = max_pkts
    e.appid_budget = budget
    return 0

cdef void appid_state_free(engine_t *e) noexcept:
    free(e.cls.slots)
    if not e.hostpool.external:
        free(e.hostpool.names)
        free(e.hostpool.lens)
    free(e.hostpool.next_free)

cdef int32_t hostpool_put(hostpool_t *p, const char *name, uint8_t n) noexcept nogil:
    cdef int32_t i = p.free_head
    if i < 0 or n == 0:
        return -1
    p.free_head = p.next_free[i]
    memcpy(p.names[i], name, n)
    p.lens[i] = n
    return i

cdef inline void hostpool_give(hostpool_t *p, int32_t i) noexcept nogil:
    if i >= 0:
        p.next_free[i] = p.free_head
        p.free_head = i

# ---------------------------------------------------------------- catalogue lookups

cdef inline uint32_t host_hash(const char *s, uint32_t n) noexcept nogil:
    cdef uint64_t h = 1469598103934665603ull
    cdef uint32_t i
    for i in range(n):
        h = (h ^ <uint8_t>s[i]) * 1099511628211ull
    return <uint32_t>ngfw_mix64(h)

cdef const hostent_t *host_find(const apptables_t *a, const char *s, uint32_t n) noexcept nogil:
    cdef uint32_t slot
    cdef const hostent_t *h
    if a.hosts == NULL or n == 0 or n > HOST_MAX:
        return NULL
    slot = host_hash(s, n) & a.host_mask
    while a.hosts[slot].len:
        h = &a.hosts[slot]
        if h.len == n and memcmp(h.name, s, n) == 0:
            return h
        slot = (slot + 1) & a.host_mask
    return NULL

cdef uint16_t host_app(const apptables_t *a, const char *s, uint32_t n) noexcept nogil:
    """The app of a host name: an exact entry, else the longest `*.domain` (stored as ".domain") above it."""
    cdef const hostent_t *h = host_find(a, s, n)
    cdef uint32_t i
    if h != NULL:
        return h.app
    for i in range(1, n):
        if s[i] == 46:  # '.'
            h = host_find(a, s + i, n - i)
            if h != NULL:
                return h.app
    return 0

cdef inline bint app_descends(const apptables_t *a, uint16_t child, uint16_t ancestor) noexcept nogil:
    cdef int depth = 0
    while child != 0xffff and child < a.n_apps and depth < 8:
        if child == ancestor:
            return True
        child = a.parent[child]
        depth += 1
    return False

# ---------------------------------------------------------------- signatures

ctypedef struct sigmatch_t:
    const apptables_t *a
    uint8_t l4
    uint8_t dir          # 1 to_server, 2 to_client
    uint16_t server_port
    uint32_t len
    int32_t best_sig
    uint16_t best_prio
    uint8_t best_on_port  # the best signature's app has the flow's server port among its default ports

cdef int on_signature(unsigned int id, unsigned long long frm, unsigned long long to, unsigned int flags,
                      void *ctx) noexcept nogil:
    cdef sigmatch_t *m = <sigmatch_t *>ctx
    cdef const apptables_t *a = m.a
    cdef bint on_port
    if id >= a.n_sigs:
        return 0
    if a.sig_l4[id] and a.sig_l4[id] != m.l4:
        return 0
    if a.sig_dir[id] and a.sig_dir[id] != m.dir:
        return 0
    if m.len < a.sig_minlen[id]:
        return 0
    # equal priorities: the app whose default port the flow uses wins (USER is pop3 on 110, ftp on 21)
    on_port = idmap_get(&a.app_ports, 0, (<uint64_t>a.sig_app[id] << 32) | (<uint64_t>m.l4 << 16) | m.server_port) >= 0
    if (m.best_sig < 0 or a.sig_prio[id] > m.best_prio
            or (a.sig_prio[id] == m.best_prio and on_port and not m.best_on_port)):
        m.best_sig = id
        m.best_prio = a.sig_prio[id]
        m.best_on_port = on_port
    return 0

cdef uint16_t signature_app(const apptables_t *a, uint8_t l4, bint to_server, uint16_t server_port,
                            const uint8_t *d, uint32_t n) noexcept nogil:
    """The app of the best signature matching `d` (0: none). A weak one (priority up to SIG_WEAK: a
    line shape, a few header bytes) off its app's ports, on a server port another app owns, is not
    taken: the flow goes on to other packets, and to that port's app at the end if nothing else speaks."""
    cdef sigmatch_t m
    cdef uint16_t app, owner
    if a.db == NULL or n == 0:
        return 0
    m.a = a
    m.l4 = l4
    m.server_port = server_port
    m.best_on_port = 0
    m.dir = 1 if to_server else 2
    m.len = n
    m.best_sig = -1
    m.best_prio = 0
    hs_scan(a.db, <const char *>d, n, 0, a.scratch, on_signature, &m)
    if m.best_sig < 0:
        return 0
    app = a.sig_app[m.best_sig]
    if m.best_prio <= SIG_WEAK and not m.best_on_port:
        owner = a.port_app[(0 if l4 == P_TCP else 1) * 65536 + server_port]
        if owner and owner != app and not app_descends(a, app, owner) and not app_descends(a, owner, app):
            return 0
    return app

# ---------------------------------------------------------------- the stage

cdef inline uint16_t flow_server_port(const flow_t *f) noexcept nogil:
    return f.key.b_port if f.init_is_a else f.key.a_port

cdef inline uint16_t flow_client_port(const flow_t *f) noexcept nogil:
    return f.key.a_port if f.init_is_a else f.key.b_port

cdef uint16_t port_guess(const apptables_t *a, const flow_t *f) noexcept nogil:
    """The app a flow's ports suggest: the lower port's when both are some app's (as nDPI guesses: the
    first packet seen need not be the client's, and services sit on the lower ports), else either's."""
    cdef uint16_t lo = f.key.a_port if f.key.a_port < f.key.b_port else f.key.b_port
    cdef uint16_t hi = f.key.b_port if f.key.a_port < f.key.b_port else f.key.a_port
    cdef uint32_t l4 = 0 if f.key.proto == P_TCP else 1
    if f.key.proto != P_TCP and f.key.proto != P_UDP:
        return 0
    if a.port_app[l4 * 65536 + lo]:
        return a.port_app[l4 * 65536 + lo]
    return a.port_app[l4 * 65536 + hi]

cdef bint stream_append(engine_t *e, clsslot_t *s, const flow_t *f, uint8_t dir, const pkt_t *p) noexcept nogil:
    """Keep the first STREAM_MAX bytes of a TCP direction in order, from its SYN when one was seen (else
    from its first data segment), through the stream engine (stream.pxi). A segment beyond a hole is held in
    place and joins the prefix when the hole fills; bytes the prefix has keep their first copy. A hole still
    open when a segment beyond it finds STREAM_HOLES held is a capture's loss: the stream restarts after it.
    False when this segment added nothing to the prefix (held beyond, or a retransmission): nothing new to
    parse."""
    cdef tcpwin_t *w = &s.win[dir]
    cdef uint32_t seq = segment_seq(p)
    cdef uint32_t have = s.stream_len[dir], base, start, end, back, lo, i, k
    cdef int32_t off
    cdef int where, hole
    cdef bint grew
    stream_begin_once(w, f.syn_seen & (1 << dir), f.data_seq[dir], seq)
    base = w.next_seq - have          # the sequence number of stream[dir][0]
    off = <int32_t>(seq - base)
    if off > 0 and <uint32_t>off >= STREAM_MAX:
        return False     # past what the prefix keeps
    where = stream_place(w, seq, p.payload_len, &back)
    if where == SEG_OLD:
        return False     # a retransmission of what the prefix has
    if where == SEG_BEYOND:
        start = <uint32_t>off
        end = start + p.payload_len
        if end > STREAM_MAX:
            end = STREAM_MAX
        for i in range(s.n_ahead[dir]):
            if s.ahead_start[dir][i] <= start and end <= s.ahead_end[dir][i]:
                return False     # held already (a retransmission of it)
        hole = stream_hole(w, e.mode, s.n_ahead[dir] < STREAM_HOLES, False, 0)
        # held where it belongs until the hole fills (the one that finds the hold full too: the stream
        # restarts at the first held segment)
        memcpy(s.stream[dir] + start, p.data + p.payload_off, end - start)
        s.ahead_start[dir][s.n_ahead[dir]] = <uint16_t>start
        s.ahead_end[dir][s.n_ahead[dir]] = <uint16_t>end
        s.n_ahead[dir] += 1
        if hole == HOLE_HOLD:
            return False
        lo = stream_restart_after_hole(s, dir)
        base += lo
        have = 0
    else:
        # the bytes from `back` on continue the prefix
        end = have + p.payload_len - back
        if end > STREAM_MAX:
            end = STREAM_MAX
        if end <= have:
            return False     # the prefix is full
        memcpy(s.stream[dir] + have, p.data + p.payload_off + back, end - have)
        have = end
    grew = True
    while grew:      # held segments the prefix now reaches join it
        grew = False
        k = 0
        for i in range(s.n_ahead[dir]):
            if s.ahead_start[dir][i] <= have:
                if s.ahead_end[dir][i] > have:
                    have = s.ahead_end[dir][i]
                grew = True
            else:
                s.ahead_start[dir][k] = s.ahead_start[dir][i]
                s.ahead_end[dir][k] = s.ahead_end[dir][i]
                k += 1
        s.n_ahead[dir] = <uint8_t>k
    s.stream_len[dir] = have
    stream_skip_hole(w, base + have)     # the window moves to the prefix's end
    return True

cdef uint32_t stream_restart_after_hole(clsslot_t *s, uint8_t dir) noexcept nogil:
    """The bytes before the hole are dropped: the stream starts at the first segment held beyond it (the
    others keep their places after it); returns how far the start moved (the prefix is empty now: the
    caller joins the held)."""
    cdef uint32_t lo = STREAM_MAX, i
    for i in range(s.n_ahead[dir]):
        if s.ahead_start[dir][i] < lo:
            lo = s.ahead_start[dir][i]
    memmove(s.stream[dir], s.stream[dir] + lo, STREAM_MAX - lo)
    for i in range(s.n_ahead[dir]):
        s.ahead_start[dir][i] -= lo
        s.ahead_end[dir][i] -= lo
    return lo

cdef void app_finish(engine_t *e, tables_t *t, flow_t *f, uint16_t app, uint8_t conf,
                     const appmeta_t *meta) noexcept nogil:
    """Record the decision: refine by host and port, keep the host name, count, free the buffers."""
    cdef apptables_t *a = &t.apps
    cdef uint16_t child
    cdef int32_t r
    if meta != NULL and meta.host_len:
        # a host-based app refines the protocol it runs over (tls -> github), never replaces another
        child = host_app(a, meta.host, meta.host_len) if meta.host[0] != HOST_SSH_MARK else 0
        if child and (app == 0 or app_descends(a, child, app)):
            app = child
        if f.host < 0:
            f.host = hostpool_put(&e.hostpool, meta.host, meta.host_len)
    if app and app < a.n_apps:
        # the same protocol on a well-known port of a child app (tls on 993 is imaps)
        r = idmap_get(&a.port_children, 0, (<uint64_t>app << 32) | (<uint64_t>f.key.proto << 16) | flow_server_port(f))
        if r > 0:
            app = <uint16_t>r
    f.app = app
    f.app_conf = conf
    f.app_state = APPST_DONE
    f.app_pkts = <uint8_t>min(<uint32_t>f.pl_pkts[0] + f.pl_pkts[1], 255)
    if f.cls >= 0:
        clspool_give(&e.cls, f.cls)
        f.cls = -1
    if f.vsys >= 0 and <uint32_t>f.vsys < t.n_vsys and app < a.n_apps:
        a.app_flows[<uint32_t>f.vsys * a.n_apps + app] += 1

cdef uint16_t app_at_end(const apptables_t *a, const flow_t *f) noexcept nogil:
    """The answer for a flow that ends undecided: its server port's app, at port confidence (with
    app_pkts 0 when it carried no payload: nothing contradicts the port, as nDPI's "match by port"),
    else `incomplete` (no payload) or `insufficient-data`."""
    cdef uint16_t guess
    if f.key.proto != P_TCP and f.key.proto != P_UDP:
        return a.ipproto_app[f.key.proto] if a.ipproto_app[f.key.proto] else a.unknown
    guess = port_guess(a, f)
    if guess:
        return guess
    if f.pl_pkts[0] == 0 and f.pl_pkts[1] == 0:
        return a.incomplete
    return a.insufficient

cdef bint appid_inspect(engine_t *e, tables_t *t, flow_t *f, const pkt_t *p, bint to_server) noexcept nogil:
    """Look at one payload packet of an undecided flow; True when the app got decided."""
    cdef apptables_t *a = &t.apps
    cdef uint8_t dir = 0 if to_server else 1
    cdef clsslot_t *s = NULL
    cdef appctx_t c
    cdef appmeta_t tmp_meta
    cdef uint8_t tmp_scratch[64]
    cdef int r
    cdef uint16_t sig
    cdef uint32_t total
    cdef bint fresh = True
    if f.pl_pkts[dir] < 255:
        f.pl_pkts[dir] += 1
    f.app_state = APPST_PENDING
    if f.cls < 0 and e.cls.n:
        f.cls = clspool_take(&e.cls)
    memset(&c, 0, sizeof(c))
    c.l4proto = p.proto
    c.to_server = to_server
    c.client_port = flow_client_port(f)
    c.server_port = flow_server_port(f)
    c.pkt_index = f.pl_pkts[dir] - 1
    c.payload = p.data + p.payload_off
    c.payload_len = p.payload_len
    c.stream = c.payload
    c.stream_len = c.payload_len
    if f.cls >= 0:
        s = &e.cls.slots[f.cls]
        if p.proto == P_TCP:
            fresh = stream_append(e, s, f, dir, p)
            c.stream = s.stream[dir]
            c.stream_len = s.stream_len[dir]
        else:
            c.reasm = <uint8_t *>s.stream
            c.reasm_cap = 2 * STREAM_MAX
        c.scratch = s.scratch
        c.meta = &s.meta
    else:
        # no buffer left: this packet alone, no memory across packets
        memset(&tmp_meta, 0, sizeof(tmp_meta))
        memset(e.cls_scratch, 0, SCRATCH_MAX)
        c.scratch = e.cls_scratch
        c.meta = &tmp_meta
    if fresh:
        r = appid_parse(&c)
        sig = signature_app(a, p.proto, to_server, c.server_port, c.payload, c.payload_len)
    else:
        # a segment held ahead of a hole, or a retransmission: nothing new to read (a reordered segment
        # alone would be read from the middle of a message)
        r = PARSE_NEED_MORE if s.parser_more else PARSE_NO
        sig = 0
    if r > 0 and <uint32_t>r < a.n_builtin and a.builtin_app[r]:
        # a signature of a child of the parser's protocol is more specific (websocket over http)
        if sig and sig < a.n_apps and a.parent[sig] == a.builtin_app[r]:
            app_finish(e, t, f, sig, CONF_PARSER, c.meta)
        else:
            app_finish(e, t, f, a.builtin_app[r], CONF_PARSER, c.meta)
        if (r == APP_DNS or r == APP_MDNS) and dns_reads_on(_dns_msg(p), _dns_msg_len(p)):
            f.host_extra = DNS_EXTRA_PKTS | (HOSTX_MDNS if r == APP_MDNS else HOSTX_DNS)
        elif r == APP_SSH:
            f.host_extra = SSH_EXTRA_PKTS | HOSTX_SSH     # the other side's identification string follows
        elif r == APP_HTTP2 and to_server and not h2_host_more(e, t, f, c.stream, c.stream_len):
            f.host_extra = H2_EXTRA_PKTS | HOSTX_H2       # the first request's HEADERS follow the preface
        elif r == APP_STUN:
            # the REALM comes with the server's challenge; WebRTC's DTLS follows its ICE checks
            f.host_extra = STUN_EXTRA_PKTS | HOSTX_STUN
        elif p.proto == P_TCP and f.app < a.n_apps and a.tls_variant[f.app]:
            f.host_extra = STARTTLS_EXTRA_PKTS | HOSTX_STARTTLS   # a STARTTLS upgrade may follow
        return True
    if s != NULL:
        s.parser_more = r == PARSE_NEED_MORE
    if sig and r != PARSE_NEED_MORE:
        app_finish(e, t, f, sig, CONF_SIGNATURE, c.meta)
        return True
    total = <uint32_t>f.pl_pkts[0] + f.pl_pkts[1]
    # give up after the packet budget (twice that while a parser still asks for more)
    if total >= e.appid_max_pkts and (r != PARSE_NEED_MORE or total >= 2 * e.appid_max_pkts):
        r = appid_tentative(&c)
        if r > 0 and <uint32_t>r < a.n_builtin and a.builtin_app[r]:
            app_finish(e, t, f, a.builtin_app[r], CONF_SIGNATURE, c.meta)   # the protocol, without the rest
        elif sig:
            app_finish(e, t, f, sig, CONF_SIGNATURE, c.meta)
        elif port_guess(a, f):
            app_finish(e, t, f, port_guess(a, f), CONF_PORT, c.meta)
        else:
            app_finish(e, t, f, a.unknown_tcp if p.proto == P_TCP else a.unknown_udp, 0, c.meta)
        return True
    return False

# Hosts that come after the decision. DNS: the host keeps following the flow's messages, up to
# DNS_EXTRA_PKTS more packets or until a response that carries records, so the name reported is the last
# one asked (a resolver socket reused for several queries, a retry that spells the name differently).
# STUN/TURN: the server's 401 challenge carries the REALM (the TURN service's name). That is also what
# nDPI reports. The app stays as decided.

cdef inline const uint8_t *_dns_msg(const pkt_t *p) noexcept nogil:
    return p.data + p.payload_off + (2 if p.proto == P_TCP else 0)

cdef inline uint32_t _dns_msg_len(const pkt_t *p) noexcept nogil:
    if p.proto == P_TCP:
        return p.payload_len - 2 if p.payload_len >= 2 else 0
    return p.payload_len

cdef bint dns_reads_on(const uint8_t *msg, uint32_t n) noexcept nogil:
    """Whether a DNS flow is still worth reading after this message: not once a response with records came."""
    if n < 12:
        return True
    return (msg[2] & 0x80) == 0 or (ngfw_be16(msg + 6) == 0 and ngfw_be16(msg + 8) == 0 and ngfw_be16(msg + 10) == 0)

cdef void ssh_ident_more(engine_t *e, flow_t *f, const pkt_t *p, bint to_server) noexcept nogil:
    # the other side's identification string joins the flow's host entry (ssh_ident_put); both: done
    cdef appmeta_t m
    cdef const uint8_t *d = p.data + p.payload_off
    cdef uint32_t end = ssh_ident_end(d, p.payload_len), i, last = 1
    cdef bint have_client = False, have_server = False
    if p.proto != P_TCP:
        return
    memset(&m, 0, sizeof(m))
    if f.host >= 0:
        if e.hostpool.lens[f.host] < 2 or e.hostpool.names[f.host][0] != HOST_SSH_MARK:
            f.host_extra = 0
            return
        memcpy(m.host, e.hostpool.names[f.host], e.hostpool.lens[f.host])
        m.host_len = e.hostpool.lens[f.host]
        i = 1
        while i < m.host_len:
            last = i
            have_client = have_client or m.host[i] == b'c'
            have_server = have_server or m.host[i] == b's'
            while i < m.host_len and m.host[i] != b'\n' and m.host[i] != b'\r':
                i += 1
            i += 1
    if m.host_len and m.host[m.host_len - 1] == b'\r':
        # a side's string cut at a segment's end: this segment of that side carries its rest
        if m.host[last] != (c'c' if to_server else c's'):
            return
        ssh_ident_rest(&m, d, p.payload_len)
    elif end == 0 or (to_server and have_client) or (not to_server and have_server):
        return
    else:
        ssh_ident_put(&m, to_server, d, end, end < p.payload_len)
    if f.host >= 0:
        memcpy(e.hostpool.names[f.host], m.host, m.host_len)
        e.hostpool.lens[f.host] = m.host_len
    else:
        f.host = hostpool_put(&e.hostpool, m.host, m.host_len)
    if have_client and have_server and m.host[m.host_len - 1] == b'\n':
        f.host_extra = 0


cdef bint appid_host_extra(engine_t *e, tables_t *t, flow_t *f, const pkt_t *p, bint to_server) noexcept nogil:
    """One more packet of a decided flow whose host may come later (flow_t.host_extra). True when the
    flow's app shifted (STUN -> DTLS): the caller decides the flow again."""
    cdef uint8_t kind = f.host_extra & ~HOSTX_LEFT
    cdef uint8_t left = (f.host_extra & HOSTX_LEFT) - 1 if f.host_extra & HOSTX_LEFT else 0
    cdef uint8_t name[256]
    cdef uint32_t len = 0
    cdef appmeta_t m
    cdef int r
    f.host_extra = (kind | left) if left else 0
    if kind == HOSTX_STUN:
        if p.proto == P_UDP and dtls_records(p.data + p.payload_off, p.payload_len):
            f.host_extra = 0
            return app_shift(t, f, t.apps.builtin_app[APP_DTLS])
        if f.host < 0:
            len = stun_realm(p.data + p.payload_off, p.payload_len, p.proto == P_TCP, name)
    elif kind == HOSTX_SSH:
        ssh_ident_more(e, f, p, to_server)
        return False
    elif kind == HOSTX_H2:
        if to_server:
            r = h2_host_more(e, t, f, p.data + p.payload_off, p.payload_len)
            if r:
                f.host_extra = 0
            return r == 2
    elif kind == HOSTX_STARTTLS:
        if tls_client_hello_start(p.data + p.payload_off, p.payload_len):
            f.host_extra = 0
            return app_shift(t, f, t.apps.tls_variant[f.app] if f.app < t.apps.n_apps else 0)
    else:
        len = _dns_extra_name(f, p, kind == HOSTX_MDNS, name)
    if len == 0:
        return False
    set_dns_host(&m, name, len)
    hostpool_give(&e.hostpool, f.host)
    f.host = hostpool_put(&e.hostpool, m.host, m.host_len)
    return False

cdef int h2_host_more(engine_t *e, tables_t *t, flow_t *f, const uint8_t *d, uint32_t n) noexcept nogil:
    """An HTTP/2 flow's host from its first request's :authority in the client's bytes `d`: 0 none yet, 1
    found, 2 found and a host app over HTTP/2 refined the flow's app (as it does over HTTP)."""
    cdef uint8_t name[HOST_MAX]
    cdef uint32_t len = h2_request_authority(d, n, name, HOST_MAX)
    cdef appmeta_t m
    cdef uint16_t child
    if len == 0:
        return 0
    memset(&m, 0, sizeof(m))
    _set_host(&m, name, len)
    if m.host_len == 0:
        return 0
    hostpool_give(&e.hostpool, f.host)
    f.host = hostpool_put(&e.hostpool, m.host, m.host_len)
    child = host_app(&t.apps, m.host, m.host_len)
    if child and app_descends(&t.apps, child, f.app) and app_shift(t, f, child):
        return 2
    return 1

cdef inline bint tls_client_hello_start(const uint8_t *p, uint32_t n) noexcept nogil:
    # a TLS handshake record carrying a ClientHello: what follows STARTTLS / AUTH TLS
    return n >= 6 and p[0] == 22 and p[1] == 3 and p[2] <= 4 and p[5] == 1

cdef bint app_shift(tables_t *t, flow_t *f, uint16_t app) noexcept nogil:
    """A decided flow turns out to carry another protocol (WebRTC: STUN, then DTLS on the same ports;
    IMAP, then TLS after STARTTLS)."""
    cdef apptables_t *a = &t.apps
    if app == 0 or app == f.app or app >= a.n_apps:
        return False
    if f.vsys >= 0 and <uint32_t>f.vsys < t.n_vsys:
        if f.app < a.n_apps and a.app_flows[<uint32_t>f.vsys * a.n_apps + f.app]:
            a.app_flows[<uint32_t>f.vsys * a.n_apps + f.app] -= 1
        a.app_flows[<uint32_t>f.vsys * a.n_apps + app] += 1
    f.app = app
    return True

cdef uint32_t _dns_extra_name(flow_t *f, const pkt_t *p, bint mdns, uint8_t *name) noexcept nogil:
    """The name of one more message of a decided DNS flow (0: none): any response (its counts may be garbage,
    its question is still the name asked), a query whose header looks like one. A response with records
    ends the reading."""
    cdef const uint8_t *msg = _dns_msg(p)
    cdef uint32_t n = _dns_msg_len(p)
    if n <= 12 or not ((msg[2] & 0x80) or dns_header_plausible(msg, n, mdns)):
        return 0
    if not dns_reads_on(msg, n):
        f.host_extra = 0
    return dns_grab_name(msg, n, 12, mdns, name)

cdef void appid_flow_end(engine_t *e, tables_t *t, flow_t *f) noexcept nogil:
    """Called as a flow ends: decide what it was if nothing did yet, free what it held."""
    cdef apptables_t *a
    cdef int r = 0
    if t != NULL and f.app_state != APPST_DONE:
        a = &t.apps
        if f.cls >= 0:
            r = e.cls.slots[f.cls].scratch[SCRATCH_TENTATIVE]   # a parser knew the protocol, waiting for more
        if r > 0 and <uint32_t>r < a.n_builtin and a.builtin_app[r]:
            app_finish(e, t, f, a.builtin_app[r], CONF_SIGNATURE, &e.cls.slots[f.cls].meta)
        else:
            app_finish(e, t, f, app_at_end(a, f), CONF_PORT if port_guess(a, f) else 0,
                       &e.cls.slots[f.cls].meta if f.cls >= 0 else NULL)
    if f.cls >= 0:
        clspool_give(&e.cls, f.cls)
        f.cls = -1
