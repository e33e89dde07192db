# Ports: AF_PACKET TPACKET_V2 RX/TX rings on existing links, TAP devices, and in-memory ports
# (tests and offline replay feed the same stages through `Engine.inject`).

cdef enum:
    PORT_RING = 1
    PORT_TAP = 2
    PORT_MEM = 3
    PORT_SINK = 4      # counts what it is given and discards it (replay)

cdef enum:
    MAX_PORTS = 64
    TX_KICK_BATCH = 64
    SCRATCH_LEN = 65536 + 64
    # a turn's frames for one port are handed to the TX thread from this many bytes (a full-size frame; or
    # TX_KICK_BATCH frames) on; fewer are sent by the loop itself: a hand-over costs a wake-up of the other
    # thread, which a few small frames (a handshake, a request, an ACK) do not repay, while the receiving
    # side's work for full-size frames (bulk TCP) does
    TX_HANDOFF_BYTES = 1200

ctypedef struct port_t:
    int kind
    int fd
    int32_t segment
    uint32_t mtu
    uint8_t *map
    size_t map_len
    uint8_t *rx_ring
    uint32_t rx_frames
    uint32_t rx_frame_size
    uint32_t rx_head
    uint8_t *tx_ring
    uint32_t tx_frames
    uint32_t tx_frame_size
    uint32_t tx_head
    uint32_t tx_pending
    uint32_t tx_pending_bytes  # bytes of those frames (run_loop: the loop sends small turns itself)
    uint64_t rx_packets
    uint64_t rx_bytes
    uint64_t tx_packets
    uint64_t tx_bytes
    uint64_t tx_errors
    uint32_t tx_async       # a separate thread flushes the TX ring (its send() runs the downstream path)
    uint32_t tx_wanted      # set by the loop, taken by that thread
    uint32_t tx_sending     # that thread is inside send() on this port: a send of the loop's would wait for it
    uint8_t vm_side         # faces the workloads (a wire's first interface, TAPs, segments): arrivals count here
    # links that come and go (ports.pxi): `down` is set by Python from netlink (the link is down: frames for
    # it are dropped as port_down); `detached` is set by the loop (the interface is gone: no I/O at all, the
    # descriptor and ring wait for Python to swap them out)
    uint32_t down
    uint32_t detached
    # PORT_MEM: transmitted frames kept as [u32 length][bytes]... for Python to take
    uint8_t *mem_buf
    uint32_t mem_cap
    uint32_t mem_used

# a port's new interface, handed to the loop (ports.pxi)
ctypedef struct port_req_t:
    uint32_t index
    uint32_t detach       # 1: the interface is gone, leave the port without one
    port_t io             # in: the new descriptor and rings; out: the old ones, for the caller to close
    uint32_t done

# `--workers N`: each worker's ring socket on an interface joins one PACKET_FANOUT_EBPF group, whose program
# (bpf/fanout.bpf.c) picks the worker of every frame. A socket hears every frame between its bind() and its
# join, so it opens with a filter that drops everything and lets go of it once it is in the group.
cdef extern from *:
    """
    #include <linux/filter.h>
    #ifndef PACKET_FANOUT_FLAG_IGNORE_OUTGOING
    #define PACKET_FANOUT_FLAG_IGNORE_OUTGOING 0x4000
    #endif
    static int ngfw_ring_block(int fd) {
        struct sock_filter drop = BPF_STMT(BPF_RET | BPF_K, 0);
        struct sock_fprog prog = {1, &drop};
        return setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0 ? -errno : 0;
    }
    /* Join group *id (create: a new group, its id written to *id, running prog_fd); our own transmissions
     * stay out of the group as PACKET_IGNORE_OUTGOING keeps them out of a lone socket. 0 or -errno. */
    static int ngfw_ring_join_fanout(int fd, uint32_t *id, int create, int prog_fd) {
        int one = 0, value;
        socklen_t len = sizeof(value);
        value = (int)((create ? 0 : (*id & 0xffff)) |
                      ((PACKET_FANOUT_EBPF | PACKET_FANOUT_FLAG_IGNORE_OUTGOING |
                        (create ? PACKET_FANOUT_FLAG_UNIQUEID : 0)) << 16));
        if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT, &value, sizeof(value)) < 0)
            return -errno;
        if (create) {
            if (getsockopt(fd, SOL_PACKET, PACKET_FANOUT, &value, &len) < 0)
                return -errno;
            *id = (uint32_t)value & 0xffff;
            if (setsockopt(fd, SOL_PACKET, PACKET_FANOUT_DATA, &prog_fd, sizeof(prog_fd)) < 0)
                return -errno;
        }
        (void)one;
        return setsockopt(fd, SOL_SOCKET, SO_DETACH_FILTER, &one, sizeof(one)) < 0 ? -errno : 0;
    }
    """
    int ngfw_ring_block(int fd) nogil
    int PACKET_FANOUT
    int ngfw_ring_join_fanout(int fd, uint32_t *id, int create, int prog_fd) nogil

ctypedef struct fanout_t:
    uint32_t id         # the group (with `create`: written back, the kernel picks a free one)
    int create          # the first worker's socket: makes the group and gives it the program
    int prog_fd         # the fanout program (create only)

cdef int ring_port_open(port_t *port, int ifindex, uint32_t rx_frames, uint32_t tx_frames, uint32_t mtu,
                        fanout_t *fanout=NULL) noexcept nogil:
    """Open, size, map and bind an AF_PACKET socket (in fanout group `fanout`, when given); returns 0 or -errno
    (the caller names the link)."""
    cdef int fd, one = 1, version = TPACKET_V2, rc
    cdef tpacket_req req
    cdef sockaddr_ll sll
    cdef uint32_t frame_size = 2048
    cdef size_t rx_len, tx_len
    cdef void *m
    while frame_size < mtu + 18 + 8 + 128:
        frame_size <<= 1
    # protocol 0: nothing is queued before bind() picks the one interface
    fd = socket(AF_PACKET, SOCK_RAW, 0)
    if fd < 0:
        return -errno
    if setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(int)) < 0:
        close(fd)
        return -errno
    memset(&req, 0, sizeof(req))
    req.tp_frame_size = frame_size
    req.tp_block_size = frame_size * 32
    req.tp_block_nr = (rx_frames + 31) // 32
    req.tp_frame_nr = req.tp_block_nr * 32
    if setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) < 0:
        close(fd)
        return -errno
    rx_len = <size_t>req.tp_block_size * req.tp_block_nr
    port.rx_frames = req.tp_frame_nr
    req.tp_block_nr = (tx_frames + 31) // 32
    req.tp_frame_nr = req.tp_block_nr * 32
    if setsockopt(fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof(req)) < 0:
        close(fd)
        return -errno
    tx_len = <size_t>req.tp_block_size * req.tp_block_nr
    port.tx_frames = req.tp_frame_nr
    # frames the kernel hands out (veth/bridge egress copies, our own sends) are never re-read
    setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(int))
    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(int))
    m = mmap(NULL, rx_len + tx_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
    if m == MAP_FAILED:
        close(fd)
        return -errno
    memset(&sll, 0, sizeof(sll))
    sll.sll_family = AF_PACKET
    sll.sll_protocol = htons(ETH_P_ALL)
    sll.sll_ifindex = ifindex
    if fanout != NULL and ngfw_ring_block(fd) < 0:
        munmap(m, rx_len + tx_len)
        close(fd)
        return -errno
    if bind(fd, <sockaddr *>&sll, sizeof(sll)) < 0:
        munmap(m, rx_len + tx_len)
        close(fd)
        return -errno
    if fanout != NULL:
        rc = ngfw_ring_join_fanout(fd, &fanout.id, fanout.create, fanout.prog_fd)
        if rc < 0:
            munmap(m, rx_len + tx_len)
            close(fd)
            return rc
    port.kind = PORT_RING
    port.fd = fd
    port.map = <uint8_t *>m
    port.map_len = rx_len + tx_len
    port.rx_ring = <uint8_t *>m
    port.rx_frame_size = frame_size
    port.rx_head = 0
    port.tx_ring = <uint8_t *>m + rx_len
    port.tx_frame_size = frame_size
    port.tx_head = 0
    port.mtu = mtu
    return 0

cdef void port_close(port_t *port) noexcept nogil:
    if port.map != NULL:
        munmap(port.map, port.map_len)
        port.map = NULL
    if port.fd >= 0 and port.kind == PORT_RING:
        close(port.fd)   # TAP descriptors belong to the Python object that opened them
    port.fd = -1
    free(port.mem_buf)
    port.mem_buf = NULL

cdef void ports_close(engine_t *e) noexcept:
    """Close every port of an engine that is going away."""
    cdef uint32_t i
    for i in range(e.n_ports):
        port_close(&e.ports[i])

cdef inline bint port_ready(port_t *port) noexcept nogil:
    """The port has an interface whose link is up: frames may be sent to it."""
    return not port.detached and not ngfw_load_u32(&port.down)

cdef inline void ring_kick(port_t *port) noexcept nogil:
    if port.tx_pending and not port.detached:
        if send(port.fd, NULL, 0, MSG_DONTWAIT) < 0 and errno != EAGAIN:
            port.tx_errors += 1
        port.tx_pending = 0
        port.tx_pending_bytes = 0

cdef bint port_tx(port_t *port, const uint8_t *frame, uint32_t len, const pkt_t *fix) noexcept nogil:
    """Queue one frame; `fix` (not NULL) completes an offloaded checksum in the copy."""
    cdef tpacket2_hdr *h
    cdef uint8_t *dst
    cdef uint32_t st
    if not port_ready(port):
        return False   # never touch the descriptor or ring of a port that lost its interface
    if port.kind == PORT_RING:
        if len > port.tx_frame_size - NGFW_TX_DATA_OFF:
            port.tx_errors += 1
            return False
        h = <tpacket2_hdr *>(port.tx_ring + <size_t>port.tx_head * port.tx_frame_size)
        st = ngfw_load_u32(&h.tp_status)
        if st != TP_STATUS_AVAILABLE:
            if st & TP_STATUS_WRONG_FORMAT:
                port.tx_errors += 1
            elif port.tx_async:
                # the TX thread flushes this ring: remind it, never wait for it (its send() holds the ring
                # until the kernel took every queued frame, which under a flood is milliseconds of the loop's
                # receive rings filling up); the frame is dropped if no slot came free meanwhile
                port_flush(port)
                st = ngfw_load_u32(&h.tp_status)
            else:
                ring_kick(port)
                st = ngfw_load_u32(&h.tp_status)
            if st != TP_STATUS_AVAILABLE and not (st & TP_STATUS_WRONG_FORMAT):
                return False
        dst = <uint8_t *>h + NGFW_TX_DATA_OFF
        memcpy(dst, frame, len)
        if fix != NULL:
            fix_partial_checksum(dst, fix)
        h.tp_len = len
        ngfw_store_u32(&h.tp_status, TP_STATUS_SEND_REQUEST)
        port.tx_head += 1
        if port.tx_head == port.tx_frames:
            port.tx_head = 0
        port.tx_pending += 1
        port.tx_pending_bytes += len
        if port.tx_pending >= TX_KICK_BATCH:
            port_flush(port)
    elif port.kind == PORT_TAP:
        if fix != NULL:
            # a TAP write needs its own buffer to fix the checksum in
            dst = <uint8_t *>malloc(len)
            if dst == NULL:
                return False
            memcpy(dst, frame, len)
            fix_partial_checksum(dst, fix)
            st = write(port.fd, dst, len) == len
            free(dst)
            if not st:
                port.tx_errors += 1
                return False
        elif write(port.fd, frame, len) != len:
            port.tx_errors += 1
            return False
    elif port.kind == PORT_MEM:
        if port.mem_used + 4 + len > port.mem_cap:
            port.tx_errors += 1
            return False
        memcpy(port.mem_buf + port.mem_used, &len, 4)
        memcpy(port.mem_buf + port.mem_used + 4, frame, len)
        port.mem_used += 4 + len
    port.tx_packets += 1
    port.tx_bytes += len
    return True

cdef inline void port_flush(port_t *port) noexcept nogil:
    if port.kind == PORT_RING:
        if port.tx_async:
            if port.tx_pending:
                port.tx_pending = 0
                port.tx_pending_bytes = 0
                ngfw_store_u32(&port.tx_wanted, 1)
        else:
            ring_kick(port)

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
