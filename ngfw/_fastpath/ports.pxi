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
