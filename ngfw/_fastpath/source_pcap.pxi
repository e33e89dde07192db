# Source: pcap and pcapng captures, read in C so `ngfw replay` runs the same pipeline as a live port
# at the speed of the file. Link types other than Ethernet get a synthetic Ethernet header.

cdef enum:
    LINK_NULL = 0          # BSD loopback: 4-byte host-order address family
    LINK_ETHERNET = 1
    LINK_PPP = 9
    LINK_PPP_HDLC = 50     # PPP in HDLC-like framing
    LINK_IEEE802_11 = 105
    LINK_RADIOTAP = 127    # radiotap header, then an 802.11 frame
    LINK_PPI = 192         # Per-Packet Information header, then (usually) an 802.11 frame
    LINK_CHDLC = 104       # Cisco HDLC: address, control, then an Ethertype
    LINK_RAW = 101         # raw IPv4/IPv6 (also DLT_RAW 12 and 14)
    LINK_SLL = 113         # Linux cooked capture v1
    LINK_IPV4 = 228
    LINK_IPV6 = 229
    LINK_SLL2 = 276        # Linux cooked capture v2
    MAX_IDB = 32

ctypedef struct capture_t:
    const uint8_t *buf
    size_t len
    size_t off             # next record
    int swapped            # file byte order differs from ours
    int pcapng
    uint32_t linktype      # classic pcap
    uint64_t ts_div        # classic pcap: ns per timestamp unit (1000 for µs, 1 for ns)
    uint32_t idb_link[MAX_IDB]
    uint8_t idb_tsresol[MAX_IDB]   # if_tsresol of each interface (6: microseconds when it has none)
    uint32_t n_idb
    const char *error      # set when the file is damaged; `off` says where

cdef inline uint32_t cap_u32(const capture_t *c, const uint8_t *p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    if c.swapped:
        v = ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >> 8) & 0xff00) | (v >> 24)
    return v

cdef inline uint16_t cap_u16(const capture_t *c, const uint8_t *p) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    if c.swapped:
        v = <uint16_t>((v << 8) | (v >> 8))
    return v

cdef int capture_open(capture_t *c, const uint8_t *buf, size_t len) noexcept nogil:
    cdef uint32_t magic
    memset(c, 0, sizeof(capture_t))
    c.buf = buf
    c.len = len
    if len < 24:
        c.error = "file too short for a pcap or pcapng header"
        return -1
    memcpy(&magic, buf, 4)
    if magic == 0x0a0d0d0aU:
        c.pcapng = 1
        return 0   # the section header block sets the byte order when read
    if magic == 0xa1b2c3d4U or magic == 0xa1b23c4dU:
        c.swapped = 0
    elif magic == 0xd4c3b2a1U or magic == 0x4d3cb2a1U:
        c.swapped = 1
    else:
        c.error = "not a pcap or pcapng file (unknown magic number)"
        return -1
    c.ts_div = 1 if (magic == 0xa1b23c4dU or magic == 0x4d3cb2a1U) else 1000
    c.linktype = cap_u32(c, buf + 20) & 0x0fffffff
    c.off = 24
    return 0

# pcapng if_tsresol: bit 7 clear, a unit is 10^-n s; set, 2^-n s. Any byte is valid, so the conversion
# scales down a resolution finer than 1 ns and up a coarse one in 128-bit arithmetic: no overflow, no
# division by zero (10^n in 64 bits wraps from n = 20 on and is 0 from n = 64: replay died of SIGFPE).
cdef extern from *:
    """
    static inline uint64_t ngfw_units_to_ns(uint64_t units, uint8_t tsresol) {
        static const uint32_t ns_per_decimal_unit[10] = {1000000000u, 100000000u, 10000000u, 1000000u,
                                                         100000u, 10000u, 1000u, 100u, 10u, 1u};
        unsigned exp = tsresol & 0x7fu;
        unsigned __int128 ns;
        uint64_t divisor = 1;
        unsigned i;
        if (tsresol & 0x80u) {
            ns = ((unsigned __int128)units * 1000000000u) >> exp;   /* units * 1e9 < 2^94, exp <= 127 */
        } else if (exp <= 9) {
            ns = (unsigned __int128)units * ns_per_decimal_unit[exp];
        } else {
            for (i = 9; i < exp; i++) {
                if (divisor > UINT64_MAX / 10)
                    return 0;   /* 10^-29 s or finer: any 64-bit count is under 1 ns */
                divisor *= 10;
            }
            ns = units / divisor;
        }
        return ns > UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
    }
    """
    uint64_t ngfw_units_to_ns(uint64_t units, uint8_t tsresol) nogil

cdef int capture_next(capture_t *c, const uint8_t **frame, uint32_t *caplen, uint32_t *origlen, uint32_t *link,
                      uint64_t *ts_ns) noexcept nogil:
    """Next packet record: 1 and the frame; 0 at the end; -1 when the file is damaged (c.error, c.off)."""
    cdef uint32_t btype, blen, iface, incl, opt_code, opt_len, hi, lo
    cdef size_t o, body_end
    cdef uint64_t ts
    cdef uint32_t bo
    while True:
        if c.off >= c.len:
            return 0
        if not c.pcapng:
            if c.off + 16 > c.len:
                c.error = "truncated packet record header"
                return -1
            incl = cap_u32(c, c.buf + c.off + 8)
            if c.off + 16 + incl > c.len:
                c.error = "packet record runs past the end of the file"
                return -1
            if incl > 262144:
                c.error = "packet record longer than 256 KiB"
                return -1
            ts = (<uint64_t>cap_u32(c, c.buf + c.off) * 1000000000ull
                  + <uint64_t>cap_u32(c, c.buf + c.off + 4) * c.ts_div)
            frame[0] = c.buf + c.off + 16
            caplen[0] = incl
            origlen[0] = cap_u32(c, c.buf + c.off + 12)
            link[0] = c.linktype
            ts_ns[0] = ts
            c.off += 16 + incl
            return 1
        # pcapng: blocks of type, total length, body, total length
        if c.off + 12 > c.len:
            c.error = "truncated pcapng block header"
            return -1
        memcpy(&btype, c.buf + c.off, 4)
        if btype == 0x0a0d0d0aU:
            if c.off + 12 > c.len:
                c.error = "truncated section header block"
                return -1
            memcpy(&bo, c.buf + c.off + 8, 4)
            if bo == 0x1a2b3c4dU:
                c.swapped = 0
            elif bo == 0x4d3c2b1aU:
                c.swapped = 1
            else:
                c.error = "bad pcapng byte-order magic"
                return -1
            c.n_idb = 0   # interfaces are numbered per section
        else:
            btype = cap_u32(c, c.buf + c.off)
        blen = cap_u32(c, c.buf + c.off + 4)
        if blen < 12 or (blen & 3) or c.off + blen > c.len:
            c.error = "pcapng block length is invalid or runs past the end of the file"
            return -1
        o = c.off
        body_end = o + blen - 4
        c.off += blen
        if btype == 1:  # interface description
            if o + 16 > body_end:
                c.error = "truncated interface description block"
                c.off = o
                return -1
            if c.n_idb < MAX_IDB:
                c.idb_link[c.n_idb] = cap_u16(c, c.buf + o + 8)
                c.idb_tsresol[c.n_idb] = 6   # default resolution: microseconds
                # options: look for if_tsresol (code 9)
                opt_code = 0
                o += 16
                while o + 4 <= body_end:
                    opt_code = cap_u16(c, c.buf + o)
                    opt_len = cap_u16(c, c.buf + o + 2)
                    if opt_code == 0 or o + 4 + opt_len > body_end:
                        break
                    if opt_code == 9 and opt_len >= 1:
                        c.idb_tsresol[c.n_idb] = c.buf[o + 4]
                    o += 4 + ((opt_len + 3) & ~3u)
                c.n_idb += 1
        elif btype == 6 or btype == 2:  # enhanced / obsolete packet block
            if o + 28 > body_end:
                c.error = "truncated packet block"
                c.off = o
                return -1
            iface = cap_u32(c, c.buf + o + 8) if btype == 6 else cap_u16(c, c.buf + o + 8)
            if iface >= c.n_idb:
                c.error = "packet block names an interface that was not described"
                c.off = o
                return -1
            hi = cap_u32(c, c.buf + o + 12)
            lo = cap_u32(c, c.buf + o + 16)
            incl = cap_u32(c, c.buf + o + 20)
            if o + 28 + incl > body_end:
                c.error = "packet data runs past its block"
                c.off = o
                return -1
            ts = ngfw_units_to_ns((<uint64_t>hi << 32) | lo, c.idb_tsresol[iface])
            frame[0] = c.buf + o + 28
            caplen[0] = incl
            origlen[0] = cap_u32(c, c.buf + o + 24)
            link[0] = c.idb_link[iface]
            ts_ns[0] = ts
            return 1
        elif btype == 3:  # simple packet block: interface 0, no timestamp
            if c.n_idb == 0 or o + 16 > body_end:
                c.error = "simple packet block without an interface"
                c.off = o
                return -1
            incl = body_end - (o + 12)
            frame[0] = c.buf + o + 12
            caplen[0] = incl
            origlen[0] = cap_u32(c, c.buf + o + 8)
            link[0] = c.idb_link[0]
            ts_ns[0] = 0
            return 1
        # other blocks (statistics, name resolution, custom): skipped

cdef uint32_t to_ethernet(const uint8_t *frame, uint32_t caplen, uint32_t link, uint8_t *out,
                          uint32_t out_max) noexcept nogil:
    """An Ethernet frame for `frame` of link type `link` in `out`; 0 when the link type is not supported."""
    cdef uint32_t skip = 0
    cdef uint16_t et = 0
    cdef uint16_t ppp
    cdef uint32_t fam
    if link == LINK_ETHERNET:
        if caplen > out_max:
            return 0
        memcpy(out, frame, caplen)
        return caplen
    if link == LINK_RAW or link == 12 or link == 14 or link == LINK_IPV4 or link == LINK_IPV6:
        skip = 0
    elif link == LINK_SLL:
        if caplen < 16:
            return 0
        skip = 16
        et = ngfw_be16(frame + 14)
    elif link == LINK_SLL2:
        if caplen < 20:
            return 0
        skip = 20
        et = ngfw_be16(frame)
    elif link == LINK_CHDLC:
        if caplen < 4:
            return 0
        skip = 4
        et = ngfw_be16(frame + 2)
    elif link == LINK_NULL:
        if caplen < 4:
            return 0
        skip = 4
    elif link == LINK_IEEE802_11 or link == LINK_RADIOTAP or link == LINK_PPI:
        # a wireless capture: the station's data frames, read through LLC/SNAP (little-endian header lengths)
        if link != LINK_IEEE802_11:
            if caplen < 8:
                return 0
            skip = <uint32_t>frame[2] | (<uint32_t>frame[3] << 8)
            if link == LINK_PPI and (frame[4] != 105 or frame[5] or frame[6] or frame[7]):
                return 0
        skip = dot11_data(frame, skip, caplen, &et)
        if skip == 0:
            return 0
    elif link == LINK_PPP or link == LINK_PPP_HDLC:
        if caplen < 4:
            return 0
        skip = 2
        if frame[0] == 0xff and frame[1] == 0x03:
            skip = 4
        ppp = ngfw_be16(frame + skip - 2)
        if ppp == 0x0021:
            et = 0x0800
        elif ppp == 0x0057:
            et = 0x86dd
        else:
            return 0
    else:
        return 0
    if caplen < skip + 1 or caplen - skip + 14 > out_max:
        return 0
    if et == 0 or et == 0x8100:
        # from the IP version nibble
        if (frame[skip] >> 4) == 4:
            et = 0x0800
        elif (frame[skip] >> 4) == 6:
            et = 0x86dd
        else:
            return 0
    # locally administered MACs: replayed flows are keyed by IP, the MACs only need to be unicast
    memset(out, 0, 12)
    out[0] = 0x02
    out[5] = 0x02
    out[6] = 0x02
    out[11] = 0x01
    ngfw_put_be16(out + 12, et)
    memcpy(out + 14, frame + skip, caplen - skip)
    return caplen - skip + 14


# ---------------------------------------------------------------- Engine.replay_capture and replay_reset

cdef object replay_capture_run(Engine self, const unsigned char[:] data, uint16_t port):
    cdef capture_t cap
    cdef const uint8_t *frame
    cdef uint32_t caplen, origlen, link, n
    cdef uint64_t ts, packets = 0, unsupported = 0
    cdef int rc = 0
    cdef uint32_t i
    cdef uint8_t *buf
    if port >= self.e.n_ports:
        raise ValueError(f"no port {port}")
    if ngfw_load_u32(&self.e.running):
        raise RuntimeError("replay_capture() while the loop is running")
    if self.replay_frame == NULL:
        # kept for the next capture: a replay of many small files paid a malloc of it per file
        self.replay_frame = <uint8_t *>malloc(REPLAY_FRAME_MAX)
        if self.replay_frame == NULL:
            raise MemoryError()
    buf = self.replay_frame
    with nogil:
        if capture_open(&cap, &data[0] if data.shape[0] else NULL, data.shape[0]) == 0:
            while True:
                rc = capture_next(&cap, &frame, &caplen, &origlen, &link, &ts)
                if rc <= 0:
                    break
                packets += 1
                n = to_ethernet(frame, caplen, link, buf, REPLAY_FRAME_MAX)
                if n == 0:
                    unsupported += 1
                    continue
                # a record cut by the capture's snap length: lengths in its headers run past it
                process_frame(self.e, port, buf, n, RX_SNAPPED if origlen > caplen else 0, ts)
                sweep_flows(self.e, ts, REPLAY_SWEEP_SLOTS)
            for i in range(self.e.n_ports):
                port_flush(&self.e.ports[i])
    return {"packets": packets, "unsupported_link": unsupported,
            "error": cap.error.decode() if cap.error != NULL else None, "error_offset": cap.off}


cdef object replay_engine_reset(Engine self):
    cdef uint32_t i
    if ngfw_load_u32(&self.e.running):
        raise RuntimeError("replay_reset() while the loop is running")
    # the two tables are ~400 KB that most captures never write: cleared only when written
    if self.e.frags_used:
        memset(self.e.frags, 0, FRAG_SLOTS * sizeof(frag_entry_t))
        self.e.frags_used = 0
    if replay_macs_learnt(self):
        for i in range(MACTABLE_SLOTS):
            self.e.macs[i].key = 0
            self.e.macs[i].ts = 0
            self.e.macs[i].port = -1   # as a new engine's
    self.e.last_sweep = 0
    self.e.flows.sweep_cursor = 0
    # the table just emptied: not a fall from a flood whose pages to give back, only for the next capture to
    # fault in again (each file of a replay of many did); its pages are given back as a new engine's would
    # be, once a capture's own flows fall
    self.e.flows.peak = 0
    self.e.flows.give_back_left = 0
    self.e.flows.empty_from = 0
    if self.e.flows.count == 0 and not self.e.flows.external:
        # every page of the emptied table is marked as holding no flow, as a new table's are (flow.pxi), but
        # stays mapped: the next capture's sweeps and end_all_flows pass over the pages its flows do not use
        # (reading the whole table for each capture was a tenth of replaying a small one) and those it uses
        # are not faulted in again
        memset(self.e.flows.released, 0xff, ((self.e.flows.n_pages + 63) // 64) * sizeof(uint64_t))
        self.e.flows.n_released = self.e.flows.n_pages
    for i in range(VSYS_SLOTS):
        self.e.vsys[i].tokens = 0
        self.e.vsys[i].refilled_ns = 0
        self.e.vsys[i].primed = 0


cdef bint replay_macs_learnt(Engine self):
    """Whether a frame may have been switched by MAC learning (worker.pxi forward): a segment other than a
    wire of two ports."""
    cdef uint32_t i
    for i in range(self.e.n_segments):
        if self.e.segments[i].n_ports != 0 and self.e.segments[i].n_ports != 2:
            return True
    return False
