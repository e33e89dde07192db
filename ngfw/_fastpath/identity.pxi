# Stage 2, identity: ingress port + source MAC/IP -> workload, with anti-spoofing.

cdef inline bint ip_is_unspecified_or_link_local(const ip128_t *ip, bint v6) noexcept nogil:
    cdef const uint8_t *b = <const uint8_t *>&ip.hi
    cdef const uint8_t *l = <const uint8_t *>&ip.lo
    if not v6:
        return l[4] == 0 and l[5] == 0 and l[6] == 0 and l[7] == 0  # 0.0.0.0 (DHCP, ARP probes)
    if ip.hi == 0 and ip.lo == 0:
        return True  # :: (duplicate address detection)
    return b[0] == 0xfe and (b[1] & 0xc0) == 0x80  # fe80::/10 never leaves the link

cdef int identity_resolve(const tables_t *t, const pkt_t *p, uint16_t in_port,
                          int32_t *src_wl, int32_t *dst_wl) noexcept nogil:
    """Resolve both endpoints; returns R_NONE or an anti-spoofing drop reason.

    A frame from a workload's MAC must carry one of that workload's IPs (or an
    unspecified/link-local source), arrive on its pinned port if it has one, and a
    workload's IP must come from that workload's MAC (a MAC change is spoofing too).
    """
    cdef int32_t by_mac = idmap_get(&t.wl_by_mac, 0, p.src_mac)
    cdef int32_t by_ip = -1
    cdef bint has_ip = p.l3 == L3_IPV4 or p.l3 == L3_IPV6 or p.arp_ipv4
    if has_ip:
        by_ip = idmap_get(&t.wl_by_ip, p.src_ip.hi, p.src_ip.lo)
    if by_mac >= 0:
        # a refused frame names the workload it concerns (its drop record's src_vm)
        src_wl[0] = by_mac
        if t.wl_port[by_mac] >= 0 and t.wl_port[by_mac] != in_port:
            return R_WRONG_PORT
        if has_ip and by_ip != by_mac and not ip_is_unspecified_or_link_local(&p.src_ip, p.is_v6):
            return R_SPOOFED_IP
    elif by_ip >= 0:
        src_wl[0] = by_ip   # the workload whose address an unknown MAC used
        return R_SPOOFED_MAC
    src_wl[0] = by_mac
    dst_wl[0] = idmap_get(&t.wl_by_ip, p.dst_ip.hi, p.dst_ip.lo) if has_ip else -1
    return R_NONE

cdef inline void identity_by_ip(const tables_t *t, const pkt_t *p, int32_t *src_wl, int32_t *dst_wl) noexcept nogil:
    """Workloads by address alone (offline replay: a capture's MACs are often a router's)."""
    cdef bint has_ip = p.l3 == L3_IPV4 or p.l3 == L3_IPV6 or p.arp_ipv4
    src_wl[0] = idmap_get(&t.wl_by_ip, p.src_ip.hi, p.src_ip.lo) if has_ip else -1
    dst_wl[0] = idmap_get(&t.wl_by_ip, p.dst_ip.hi, p.dst_ip.lo) if has_ip else -1

cdef void workload_arrived(engine_t *e, tables_t *t, int32_t wl, uint16_t in_port, uint64_t now) noexcept nogil:
    """A workload's first frame on the VM side of this dataplane: it may have moved here from another host
    (Python asks control for its sessions; ngfw.dataplane.migration)."""
    cdef event_t *ev = evring_claim(&e.events)
    if ev == NULL:
        return   # counted as lost; the next frame tries again
    t.wl_here[wl] = 1
    e.arrivals += 1
    memset(ev, 0, sizeof(event_t))
    ev.type = EV_ARRIVAL
    ev.src_wl = wl
    ev.in_port = in_port
    ev.generation = t.generation
    ev.ts_first = now
    ev.ts_last = now
    evring_publish(&e.events)
