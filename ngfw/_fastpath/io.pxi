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

cdef int ring_port_open(port_t *port, int ifindex, uint32_t rx_frames, uint32_t tx_frames, uint32_t mtu) noexcept nogil:
    """Open, size, map and bind an AF_PACKET socket; returns 0 or -errno (the caller names the link)."""
    cdef int fd, one = 1, version = TPACKET_V2
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
    if bind(fd, <sockaddr *>&sll, sizeof(sll)) < 0:
        munmap(m, rx_len + tx_len)
        close(fd)
        return -errno
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
