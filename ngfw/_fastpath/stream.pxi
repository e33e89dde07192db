# Stream: TCP byte order, written once, for every stage that reads a direction as a stream (Suricata's
# stream-tcp role). The stages:
#   - App-ID keeps each direction's first STREAM_MAX bytes in order for its parsers (appid.pxi stream_append);
#   - inspection scans each direction's bytes once, in order, through a Hyperscan stream (inspect.pxi
#     tcp_new_bytes); the head/hello assembly (inspect_tls.pxi's assembly pool: a ClientHello, an HTTP head cut
#     over segments) is fed from those in-order bytes and never sees a segment out of order.
# Each keeps a window per direction (`tcpwin_t`, the next byte it expects) and asks stream_place where a segment
# falls: bytes the window had (a retransmission), bytes that continue it, or bytes beyond a hole. What happens to
# a segment beyond a hole is one policy (stream_hole), set by the engine's mode (defs.pxi MODE_*):
#   - a stage with room to keep it (App-ID's prefix, STREAM_HOLES segments) holds it where it belongs until the
#     hole fills, in either mode;
#   - LIVE (inline), a stage whose verdict forwards the segment (inspection) drops it: it is not passed on
#     uninspected, and the sender retransmits in order. A stage that only watches (App-ID) cannot make the
#     sender retransmit what was forwarded: it goes on as in a replay;
#   - REPLAY (a capture: nothing is ever retransmitted on request), the stage waits a bounded number of segments
#     beyond the hole (reordered ones come a few packets later, as they did on the wire), keeping them in a
#     hold (`holdpool_t`: a buffer per direction while a hole is open, from a pool only a replay has) to be read
#     in order once the hole fills -- what the live dataplane reads once the sender retransmitted them -- then
#     takes the hole for a capture's loss and goes on after it.
# The bounds are the stage's (App-ID holds STREAM_HOLES segments and waits no further; inspection holds none
# and waits INSPECT_HOLE_WAIT in a replay): the figures every App-ID and parity measurement was made with.

cdef enum:
    SEG_NEW = 0       # continues the window: its bytes from `back` on are new
    SEG_OLD = 1       # nothing the window did not have (a retransmission, a keep-alive probe)
    SEG_BEYOND = 2    # starts past the next byte expected: a hole before it

cdef enum:
    HOLE_HOLD = 0     # the stage keeps the segment where it belongs until the hole fills
    HOLE_DROP = 1     # LIVE, a stage whose verdict forwards it: dropped, the sender retransmits in order
    HOLE_WAIT = 2     # not read (yet): the hole may still fill
    HOLE_SKIP = 3     # the hole is a capture's loss: the window goes on after it

cdef enum:
    INSPECT_HOLE_WAIT = 8   # segments inspection lets pass unread beyond a hole in a replay before giving it up

cdef enum:
    HOLD_MAX = 16384        # bytes beyond the next expected one a hold keeps
    HOLD_SEGS = INSPECT_HOLE_WAIT
    HOLD_SLOTS = 256        # directions holding segments at once (shared by the engine's flows)

ctypedef struct tcpwin_t:
    uint32_t next_seq     # the next byte expected
    uint8_t seq_set       # next_seq is known: the direction's SYN said it, else its first data segment
    uint8_t waited        # segments seen beyond the open hole (reset when the window moves)
    uint16_t hold         # the hold slot + 1 keeping segments beyond the hole (REPLAY), 0: none

ctypedef struct holdslot_t:
    uint32_t base         # the sequence number of data[0] (the window's next byte when the hold began)
    uint16_t start[HOLD_SEGS]   # the held segments, as offsets in data
    uint16_t end[HOLD_SEGS]
    uint8_t n
    int32_t next_free
    uint8_t data[HOLD_MAX]

ctypedef struct holdpool_t:
    holdslot_t *slots     # NULL: no hold (a live engine: a segment beyond a hole is dropped there)
    int32_t free_head
    uint32_t n
    uint64_t exhausted    # segments that found no hold slot free (they were waited for unread)

cdef inline uint32_t segment_seq(const pkt_t *p) noexcept nogil:
    """Where a segment's data starts: a SYN's data follows the SYN."""
    return p.tcp_seq + (1 if p.tcp_flags & TH_SYN else 0)

cdef inline void stream_begin(tcpwin_t *w, uint32_t next_seq) noexcept nogil:
    w.seq_set = 1
    w.next_seq = next_seq

cdef inline void stream_begin_once(tcpwin_t *w, bint syn_seen, uint32_t data_seq, uint32_t seq) noexcept nogil:
    """A window starts at its direction's SYN (flow_t.data_seq) when one was seen, else at its first segment."""
    if not w.seq_set:
        stream_begin(w, data_seq if syn_seen else seq)

cdef inline int stream_place(tcpwin_t *w, uint32_t seq, uint32_t n, uint32_t *back) noexcept nogil:
    """Where the `n` bytes of a segment from `seq` fall in the window (one nothing started yet starts here);
    `back`: how many of its first bytes the window had already."""
    cdef int32_t diff
    if not w.seq_set:
        stream_begin(w, seq)
    diff = <int32_t>(seq - w.next_seq)
    if diff > 0:
        back[0] = 0
        return SEG_BEYOND
    w.waited = 0
    back[0] = <uint32_t>(-diff)
    return SEG_OLD if back[0] >= n else SEG_NEW

cdef inline int stream_hole(tcpwin_t *w, uint8_t mode, bint room_to_hold, bint forwards,
                            uint32_t wait) noexcept nogil:
    """What a stage does with a segment beyond the hole (the policy at the top of this file). `room_to_hold`:
    the stage can keep it; `forwards`: its verdict decides whether the segment goes on; `wait`: segments
    it lets pass unread beyond the hole before taking it for a loss."""
    if room_to_hold:
        return HOLE_HOLD
    if mode == MODE_LIVE and forwards:
        return HOLE_DROP
    if w.waited < wait:
        w.waited += 1
        return HOLE_WAIT
    return HOLE_SKIP

cdef inline void stream_advance(tcpwin_t *w, uint32_t n) noexcept nogil:
    w.next_seq += n

cdef inline void stream_skip_hole(tcpwin_t *w, uint32_t seq) noexcept nogil:
    """The hole before `seq` is given up: the window goes on from there."""
    w.next_seq = seq
    w.waited = 0

# ---------------------------------------------------------------- the hold (REPLAY)

cdef int hold_pool_init(holdpool_t *p, uint32_t n) noexcept nogil:
    cdef uint32_t i
    p.n = n
    p.exhausted = 0
    p.free_head = 0 if n else -1
    p.slots = <holdslot_t *>malloc(<size_t>n * sizeof(holdslot_t)) if n else NULL
    if n and p.slots == NULL:
        return -1
    for i in range(n):
        p.slots[i].next_free = <int32_t>i + 1 if i + 1 < n else -1
    return 0

cdef inline void hold_give(holdpool_t *p, tcpwin_t *w) noexcept nogil:
    cdef int32_t i
    if w.hold:
        i = w.hold - 1
        p.slots[i].next_free = p.free_head
        p.free_head = i
        w.hold = 0

cdef void stream_hold(holdpool_t *p, tcpwin_t *w, uint32_t seq, const uint8_t *d, uint32_t n) noexcept nogil:
    """Keep a segment beyond the hole where it belongs, to be read once the hole fills (stream_held_run); one
    that does not fit (too far, the hold full, no slot left) is not kept."""
    cdef holdslot_t *h
    cdef uint32_t off, end, i
    if p.slots == NULL or n == 0:
        return
    if not w.hold:
        if p.free_head < 0:
            p.exhausted += 1
            return
        w.hold = <uint16_t>(p.free_head + 1)
        h = &p.slots[p.free_head]
        p.free_head = h.next_free
        h.base = w.next_seq
        h.n = 0
    h = &p.slots[w.hold - 1]
    off = seq - h.base
    if off >= HOLD_MAX or h.n >= HOLD_SEGS:
        return
    end = off + n if off + n <= HOLD_MAX else HOLD_MAX
    for i in range(h.n):
        if h.start[i] <= off and end <= h.end[i]:
            return       # held already: the first copy stays
    memcpy(h.data + off, d, end - off)
    h.start[h.n] = <uint16_t>off
    h.end[h.n] = <uint16_t>end
    h.n += 1

cdef uint32_t stream_held_run(holdpool_t *p, tcpwin_t *w, uint8_t *out, uint32_t room) noexcept nogil:
    """The held bytes that continue the window now that the hole before them filled: copied to `out` (at most
    `room`), the window moved past them; how many. Held segments the window passed leave the hold; an empty hold
    goes back to the pool."""
    cdef holdslot_t *h
    cdef uint32_t rel, have, i, k, n
    cdef bint grew = True
    if not w.hold:
        return 0
    h = &p.slots[w.hold - 1]
    rel = w.next_seq - h.base
    have = rel
    while grew:
        grew = False
        k = 0
        for i in range(h.n):
            if h.start[i] <= have:
                if h.end[i] > have:
                    have = h.end[i]
                grew = True
            else:
                h.start[k] = h.start[i]
                h.end[k] = h.end[i]
                k += 1
        h.n = <uint8_t>k
    n = have - rel if have > rel else 0
    if n > room:
        n = room
    if n:
        memcpy(out, h.data + rel, n)
        w.next_seq += n
    if h.n == 0:
        hold_give(p, w)
    return n
