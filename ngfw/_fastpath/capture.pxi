# Packet capture for forensics: the loop copies the frames of flows whose rule (or threat profile) asks
# for `capture: {packets: N}` into a byte ring of its own, and Python writes them to pcap files
# (ngfw.dataplane.capture). Single producer (the loop), single consumer (Python); the loop never waits:
# a frame that does not fit is counted as lost.

cdef enum:
    CAP_NONE = 0
    CAP_FLOW = 1      # a rule's capture: the flow's first N frames are written, and its alerting frames
    CAP_ALERT = 2     # a threat profile's capture: the first N frames are kept back and written only
                      # if the flow alerts (with the alerting frame)

cdef enum:
    CAPK_PAD = 0      # filler up to the ring's end: the next record starts at offset 0
    CAPK_FRAME = 1    # one of the flow's first N frames
    CAPK_ALERT = 2    # the frame a signature alerted on

cdef enum:
    CAP_SNAP = 65535          # bytes of a frame kept at most
    CAP_MAX_PACKETS = 10000   # the model's bound on `capture.packets` (uint16 per flow)

ctypedef struct caprec_t:
    uint32_t rec_len          # header and frame, 8-byte aligned
    uint32_t caplen
    uint32_t origlen
    uint16_t in_port
    uint8_t kind              # CAPK_*
    uint8_t mode              # CAP_FLOW / CAP_ALERT
    int32_t vsys
    uint32_t generation
    uint64_t flow_id
    uint64_t ts_ns            # the engine's clock (CLOCK_MONOTONIC; a capture's own in replay)

ctypedef struct capreq_t:
    # an operator's capture (`ngfw sessions capture FILTER --seconds S`): until `until_ns` a flow that matches
    # and captures nothing yet has its next `packets` frames copied. Python writes every field, `until_ns` last.
    uint64_t until_ns         # 0: no request
    int32_t wl                # a workload at either end; -1 any
    uint8_t has_ip            # an address at either end within ip/mask
    uint8_t proto             # 0 any
    uint16_t port             # either port; 0 any
    uint16_t packets
    ip128_t ip
    ip128_t mask

ctypedef struct capring_t:
    uint8_t *buf
    uint32_t size             # power of two, bytes
    uint32_t head             # byte position, written by the loop
    uint32_t tail             # byte position, written by Python
    uint64_t frames           # frames copied
    uint64_t lost             # frames that did not fit

cdef int capring_init(capring_t *r, uint32_t size) noexcept nogil:
    cdef uint32_t n = 1 << 16
    while n < size:
        n <<= 1
    r.buf = <uint8_t *>calloc(n, 1)
    r.size = n
    r.head = 0
    r.tail = 0
    r.frames = 0
    r.lost = 0
    return 0 if r.buf != NULL else -1

cdef void capture_free(engine_t *e) noexcept:
    """The capture ring, if a policy or an operator ever asked for capture (Engine allocates it then)."""
    free(e.capture.buf)

cdef void capring_put(capring_t *r, const flow_t *f, const uint8_t *data, uint32_t len, uint16_t in_port,
                      uint8_t kind, uint64_t now) noexcept nogil:
    cdef uint32_t caplen = len if len < CAP_SNAP else CAP_SNAP
    cdef uint32_t need = (<uint32_t>sizeof(caprec_t) + caplen + 7) & ~(<uint32_t>7)
    cdef uint32_t head = r.head
    cdef uint32_t used = head - ngfw_load_u32(&r.tail)
    cdef uint32_t off = head & (r.size - 1)
    cdef uint32_t to_end = r.size - off
    cdef caprec_t *h
    if r.buf == NULL:
        return
    if to_end < need:
        # the record would wrap: pad to the end (the pad counts against the free room)
        if used + to_end + need > r.size:
            r.lost += 1
            return
        if to_end >= sizeof(caprec_t):
            h = <caprec_t *>(r.buf + off)
            h.rec_len = to_end
            h.kind = CAPK_PAD
        # (less room than a header: the reader skips to offset 0 without one)
        head += to_end
        off = 0
        used += to_end
    if used + need > r.size:
        r.lost += 1
        if head != r.head:
            ngfw_store_u32(&r.head, head)   # the pad stays: the reader skips it
        return
    h = <caprec_t *>(r.buf + off)
    h.rec_len = need
    h.caplen = caplen
    h.origlen = len
    h.in_port = in_port
    h.kind = kind
    h.mode = f.capture
    h.vsys = f.vsys
    h.generation = f.generation
    h.flow_id = f.flow_id
    h.ts_ns = now
    memcpy(r.buf + off + sizeof(caprec_t), data, caplen)
    r.frames += 1
    ngfw_store_u32(&r.head, head + need)


cdef inline bint capreq_match(const capreq_t *q, const flow_t *f) noexcept nogil:
    if q.wl >= 0 and f.src_wl != q.wl and f.dst_wl != q.wl:
        return False
    if q.proto and f.key.proto != q.proto:
        return False
    if q.port and f.key.a_port != q.port and f.key.b_port != q.port:
        return False
    if q.has_ip:
        if not (((f.key.a_hi & q.mask.hi) == q.ip.hi and (f.key.a_lo & q.mask.lo) == q.ip.lo) or
                ((f.key.b_hi & q.mask.hi) == q.ip.hi and (f.key.b_lo & q.mask.lo) == q.ip.lo)):
            return False
    return True


# -------------------------------- Python's side: Engine.capture_matching and drain_captures

cdef capture_ring_alloc(Engine self):
    """Allocate the capture ring (before the loop can see anything that captures)."""
    if self.e.capture.buf == NULL and capring_init(&self.e.capture, self.capture_bytes) < 0:
        raise MemoryError(f"not enough memory for a capture ring of {self.capture_bytes} bytes")


cdef object capture_match(Engine self, double seconds, uint32_t packets, int workload, object network, int port,
                          int proto):
    cdef capreq_t *q = &self.e.capreq
    cdef ip128_t ip, mask
    if not 0 < packets <= CAP_MAX_PACKETS:
        raise ValueError(f"packets must be 1 to {CAP_MAX_PACKETS}, got {packets}")
    capture_ring_alloc(self)
    ngfw_store_u64(&q.until_ns, 0)
    q.wl = workload
    q.port = <uint16_t>port
    q.proto = <uint8_t>proto
    q.packets = <uint16_t>packets
    q.has_ip = network is not None
    if network is not None:
        ip = ip_to_c(network.network_address)
        bits = network.prefixlen + (96 if network.version == 4 else 0)
        mask = ip_from_int(((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1))
        q.ip = ip
        q.mask = mask
    if seconds > 0:
        ngfw_store_u64(&q.until_ns, ngfw_now_ns() + <uint64_t>(seconds * 1e9))


cdef object capture_drain(Engine self, uint32_t max_frames):
    cdef capring_t *r = &self.e.capture
    cdef uint32_t tail = r.tail
    cdef uint32_t head = ngfw_load_u32(&r.head)
    cdef uint32_t off, to_end
    cdef caprec_t *h
    out = []
    if r.buf == NULL:
        return out
    while tail != head and len(out) < max_frames:
        off = tail & (r.size - 1)
        to_end = r.size - off
        if to_end < sizeof(caprec_t):
            tail += to_end
            continue
        h = <caprec_t *>(r.buf + off)
        if h.kind == CAPK_PAD:
            tail += h.rec_len
            continue
        out.append((h.flow_id, h.vsys, h.generation, "alert" if h.kind == CAPK_ALERT else "frame",
                    "alert" if h.mode == CAP_ALERT else "flow", (h.ts_ns / 1e9) + self.wall_offset, h.in_port,
                    h.origlen, (<char *>r.buf)[off + sizeof(caprec_t):off + sizeof(caprec_t) + h.caplen]))
        tail += h.rec_len
    ngfw_store_u32(&r.tail, tail)
    return out
