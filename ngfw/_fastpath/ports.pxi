# Links that come and go: a port keeps its index, segment, counters and MAC-table entries while its
# interface is removed and re-created (or a TAP device deleted and made again). Python opens the new ring or
# TAP descriptor and hands it over with a request the loop takes between bursts (as `pending` tables), so
# the loop never touches a closed descriptor or an unmapped ring; Python closes the old ones once the loop,
# and the TX thread, let go of them (Engine.reattach_ring_port, reattach_tap_port, detach_port).

cdef void port_swap_io(port_t *a, port_t *b) noexcept nogil:
    """Exchange what ties a port to its interface (descriptor, rings, MTU); counters and place stay."""
    cdef port_t t
    t.fd = a.fd; a.fd = b.fd; b.fd = t.fd
    t.map = a.map; a.map = b.map; b.map = t.map
    t.map_len = a.map_len; a.map_len = b.map_len; b.map_len = t.map_len
    t.rx_ring = a.rx_ring; a.rx_ring = b.rx_ring; b.rx_ring = t.rx_ring
    t.rx_frames = a.rx_frames; a.rx_frames = b.rx_frames; b.rx_frames = t.rx_frames
    t.rx_frame_size = a.rx_frame_size; a.rx_frame_size = b.rx_frame_size; b.rx_frame_size = t.rx_frame_size
    t.rx_head = a.rx_head; a.rx_head = b.rx_head; b.rx_head = t.rx_head
    t.tx_ring = a.tx_ring; a.tx_ring = b.tx_ring; b.tx_ring = t.tx_ring
    t.tx_frames = a.tx_frames; a.tx_frames = b.tx_frames; b.tx_frames = t.tx_frames
    t.tx_frame_size = a.tx_frame_size; a.tx_frame_size = b.tx_frame_size; b.tx_frame_size = t.tx_frame_size
    t.tx_head = a.tx_head; a.tx_head = b.tx_head; b.tx_head = t.tx_head
    t.mtu = a.mtu; a.mtu = b.mtu; b.mtu = t.mtu

cdef void serve_port_request(engine_t *e, port_req_t *q) noexcept nogil:
    cdef port_t *p = &e.ports[q.index]
    if q.detach:
        q.io.mtu = p.mtu   # a port without an interface keeps its last MTU
    port_swap_io(p, &q.io)
    p.tx_pending = 0
    p.tx_pending_bytes = 0
    ngfw_store_u32(&p.tx_wanted, 0)
    ngfw_store_u32(&p.detached, q.detach)
    e.ports_epoch += 1
    ngfw_store_u32(&q.done, 1)

cdef inline void take_port_request(engine_t *e) noexcept nogil:
    cdef port_req_t *q = <port_req_t *>ngfw_load_ptr(<void **>&e.port_request)
    if q != NULL:
        ngfw_store_ptr(<void **>&e.port_request, NULL)
        serve_port_request(e, q)

cdef void port_gone(engine_t *e, uint16_t pi) noexcept nogil:
    """The loop found a port's device gone (a deleted TAP): no more I/O on it until Python swaps in a new one."""
    cdef uint64_t one = 1
    if e.ports[pi].detached:
        return
    ngfw_store_u32(&e.ports[pi].detached, 1)
    e.ports_epoch += 1
    if e.notify_fd >= 0:
        write(e.notify_fd, &one, 8)

cdef uint32_t port_pollset(engine_t *e, pollfd *fds, uint16_t *fd_port) noexcept nogil:
    """The descriptors the loop sleeps on: every port that has an interface."""
    cdef uint32_t i, n = 0
    for i in range(e.n_ports):
        if (e.ports[i].kind == PORT_RING or e.ports[i].kind == PORT_TAP) and not e.ports[i].detached \
                and e.ports[i].fd >= 0:
            fds[n].fd = e.ports[i].fd
            fds[n].events = POLLIN
            fds[n].revents = 0
            fd_port[n] = <uint16_t>i
            n += 1
    return n

cdef inline uint32_t loop_pollset_wake(engine_t *e, pollfd *fds, uint32_t n) noexcept nogil:
    """Append the loop's wake eventfd (Python's requests and swaps) after the ports' `n` descriptors."""
    if e.wake_fd >= 0:
        fds[n].fd = e.wake_fd
        fds[n].events = POLLIN
        fds[n].revents = 0
        n += 1
    return n

cdef void port_poll_errors(engine_t *e, pollfd *fds, uint16_t *fd_port, uint32_t nfds) noexcept nogil:
    """A packet socket reports its link going down (or away) as a pending error, which keeps poll() returning
    until it is read; a TAP descriptor whose device was deleted reports an error for good."""
    cdef uint32_t i
    cdef int err = 0
    cdef socklen_t n = sizeof(int)
    for i in range(nfds):
        if not (fds[i].revents & POLLERR):
            continue
        if e.ports[fd_port[i]].kind == PORT_RING:
            getsockopt(fds[i].fd, SOL_SOCKET, SO_ERROR, &err, &n)   # netlink tells Python what happened
        elif e.ports[fd_port[i]].kind == PORT_TAP:
            port_gone(e, fd_port[i])


# ---------------------------------------------------------------- Engine.add_*_port, reattach_*_port, detach_port

cdef port_t *port_new(Engine self, str name, int32_t segment) except NULL:
    if self.e.n_ports >= MAX_PORTS:
        raise ValueError(f"at most {MAX_PORTS} ports per dataplane")
    if segment < 0 or segment >= MAX_SEGMENTS:
        raise ValueError(f"segment must be in 0..{MAX_SEGMENTS - 1}")
    if self.e.segments[segment].n_ports >= MAX_SEGMENT_PORTS:
        raise ValueError(f"at most {MAX_SEGMENT_PORTS} ports per segment")
    cdef port_t *p = &self.e.ports[self.e.n_ports]
    memset(p, 0, sizeof(port_t))
    p.fd = -1
    p.segment = segment
    return p


cdef int port_commit(Engine self, str name, int32_t segment):
    cdef segment_t *s = &self.e.segments[segment]
    s.ports[s.n_ports] = self.e.n_ports
    s.n_ports += 1
    if segment >= self.e.n_segments:
        self.e.n_segments = segment + 1
    self.port_names.append(name)
    self.e.n_ports += 1
    return self.e.n_ports - 1


cdef object port_add_ring(Engine self, str name, int ifindex, uint32_t mtu, int32_t segment, uint32_t rx_frames,
                          uint32_t tx_frames):
    cdef port_t *p = port_new(self, name, segment)
    cdef int rc = ring_port_open(p, ifindex, rx_frames, tx_frames, mtu)
    if rc < 0:
        raise OSError(-rc, f"cannot open a packet ring on {name}: {os.strerror(-rc)}")
    return port_commit(self, name, segment)


cdef object port_add_tap(Engine self, str name, int fd, uint32_t mtu, int32_t segment):
    cdef port_t *p = port_new(self, name, segment)
    p.kind = PORT_TAP
    p.fd = fd
    p.mtu = mtu
    return port_commit(self, name, segment)


cdef object port_add_memory(Engine self, str name, int32_t segment, uint32_t mtu, uint32_t capacity):
    cdef port_t *p = port_new(self, name, segment)
    p.kind = PORT_MEM
    p.mtu = mtu
    p.mem_buf = <uint8_t *>malloc(capacity)
    if p.mem_buf == NULL:
        raise MemoryError("not enough memory for a memory port")
    p.mem_cap = capacity
    return port_commit(self, name, segment)


cdef object port_add_sink(Engine self, str name, int32_t segment, uint32_t mtu):
    cdef port_t *p = port_new(self, name, segment)
    p.kind = PORT_SINK
    p.mtu = mtu
    return port_commit(self, name, segment)


cdef port_request_wait(Engine self, port_req_t *q, double timeout):
    """Have the loop swap `q` into its port between bursts (or swap it here while the loop is stopped);
    returns once neither the loop nor the TX thread uses what `q` now holds. Raises TimeoutError with
    `q` untaken."""
    cdef double deadline
    cdef uint32_t turns
    with self.request_lock:
        if not ngfw_load_u32(&self.e.running):
            serve_port_request(self.e, q)
        else:
            ngfw_store_ptr(<void **>&self.e.port_request, <void *>q)
            engine_wake(self.e)
            deadline = time.monotonic() + timeout
            while not ngfw_load_u32(&q.done):
                if not ngfw_load_u32(&self.e.running) and \
                        ngfw_cas_ptr(<void **>&self.e.port_request, <void *>q, NULL):
                    serve_port_request(self.e, q)   # the loop ended before it took the request
                    break
                if time.monotonic() > deadline and \
                        ngfw_cas_ptr(<void **>&self.e.port_request, <void *>q, NULL):
                    raise TimeoutError("the packet loop did not take the port's new interface")
                time.sleep(0.0002)
    # the TX thread may have read the old descriptor just before the swap: one full turn of it later,
    # it no longer holds it
    if ngfw_load_u32(&self.e.tx_running):
        turns = ngfw_load_u32(&self.e.tx_turns)
        deadline = time.monotonic() + 1.0
        while <uint32_t>(ngfw_load_u32(&self.e.tx_turns) - turns) < 2 and ngfw_load_u32(&self.e.tx_running) \
                and time.monotonic() < deadline:
            time.sleep(0.0002)


cdef port_t *port_of(Engine self, uint16_t index, int kind) except NULL:
    if index >= self.e.n_ports:
        raise ValueError(f"no port {index}")
    if self.e.ports[index].kind != kind:
        raise ValueError(f"port {self.port_names[index]} is not a {'ring' if kind == PORT_RING else 'TAP'} port")
    return &self.e.ports[index]


cdef object port_reattach_ring(Engine self, uint16_t index, int ifindex, uint32_t mtu, uint32_t rx_frames,
                               uint32_t tx_frames, double timeout):
    port_of(self, index, PORT_RING)
    cdef port_req_t *q = <port_req_t *>calloc(1, sizeof(port_req_t))
    if q == NULL:
        raise MemoryError()
    cdef int rc = ring_port_open(&q.io, ifindex, rx_frames, tx_frames, mtu)
    if rc < 0:
        free(q)
        raise OSError(-rc, f"cannot open a packet ring on {self.port_names[index]}: {os.strerror(-rc)}")
    if self.bypass_filter_fd >= 0:
        # the new socket must not copy what the kernel forwards for bypassed flows either
        setsockopt(q.io.fd, SOL_SOCKET, SO_ATTACH_BPF, &self.bypass_filter_fd, sizeof(int))
    q.index = index
    try:
        port_request_wait(self, q, timeout)
        port_fold_kernel_drops(self, index, q.io.fd)
    finally:
        port_close(&q.io)   # the old ring, or the new one if the loop never took it
        free(q)


cdef object port_reattach_tap(Engine self, uint16_t index, int fd, uint32_t mtu, double timeout):
    port_of(self, index, PORT_TAP)
    cdef port_req_t *q = <port_req_t *>calloc(1, sizeof(port_req_t))
    if q == NULL:
        raise MemoryError()
    q.index = index
    q.io.kind = PORT_TAP
    q.io.fd = fd
    q.io.mtu = mtu
    try:
        port_request_wait(self, q, timeout)
        return q.io.fd
    finally:
        free(q)


cdef object port_detach(Engine self, uint16_t index, double timeout):
    if index >= self.e.n_ports:
        raise ValueError(f"no port {index}")
    cdef int kind = self.e.ports[index].kind
    if kind != PORT_RING and kind != PORT_TAP:
        raise ValueError(f"port {self.port_names[index]} has no interface to lose")
    cdef port_req_t *q = <port_req_t *>calloc(1, sizeof(port_req_t))
    if q == NULL:
        raise MemoryError()
    q.index = index
    q.detach = 1
    q.io.kind = kind
    q.io.fd = -1
    try:
        port_request_wait(self, q, timeout)
        if kind == PORT_TAP:
            return q.io.fd
        port_fold_kernel_drops(self, index, q.io.fd)
        port_close(&q.io)
        return -1
    finally:
        free(q)


cdef void port_fold_kernel_drops(Engine self, uint32_t i, int fd):
    """Keep what a ring that is being replaced counted."""
    cdef tpacket_stats st
    cdef socklen_t n = sizeof(st)
    if fd >= 0 and getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &n) == 0:
        self.kernel_drops[i] = self.kernel_drops.get(i, 0) + st.tp_drops


cdef uint64_t port_kernel_drops(Engine self, uint32_t i):
    # PACKET_STATISTICS resets on every read, so the total is kept here
    cdef tpacket_stats st
    cdef socklen_t n = sizeof(st)
    cdef port_t *p = &self.e.ports[i]
    if p.kind == PORT_RING and p.fd >= 0 and getsockopt(p.fd, SOL_PACKET, PACKET_STATISTICS, &st, &n) == 0:
        self.kernel_drops[i] = self.kernel_drops.get(i, 0) + st.tp_drops
    return self.kernel_drops.get(i, 0)
