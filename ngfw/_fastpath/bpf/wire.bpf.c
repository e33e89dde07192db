// SPDX-License-Identifier: Apache-2.0
/* The wire program: tc clsact ingress (sched_cls) on both interfaces of a wire `ngfw dataplane` drives.
 *
 * The dataplane reads the wire's frames from AF_PACKET rings, which see every frame before tc ingress runs;
 * this program decides what the kernel does with the frame afterwards:
 *
 *   - while the dataplane's packet loop is alive (its heartbeat, stored every turn in ngfw_liveness, is
 *     fresher than stale_after_ns): TC_ACT_OK, the frame goes on up the interface's own stack (which has no
 *     address on a wire and drops it), exactly as without the program: the dataplane alone forwards;
 *   - when the heartbeat is stale (the process died, was stopped, or its loop stalls) and the wire's mode is
 *     open: bpf_redirect to the egress of the wire's other interface, counted per CPU in ngfw_failopen.
 *     In closed mode nothing special happens: the frame is dropped as when no program is attached.
 *
 * The program and its maps stay in the kernel when the process that loaded them dies (the tc filter holds
 * them); a restarted dataplane finds them through the filter (prog id -> map ids), reads the counters and
 * replaces the filter with its own instance.
 *
 * Extension point: flow bypass. A later change adds
 *
 *     ngfw_bypass: BPF_MAP_TYPE_LRU_HASH, key  struct { vlan, proto, addresses, ports } (the flow's 5-tuple
 *                  and VLAN, both directions inserted, as the fastpath's flow key),
 *                  value struct { peer_ifindex, packets, bytes, last_seen_ns } (per-CPU or atomics),
 *
 * filled by the dataplane for flows whose verdict is final (allowed, no App-ID or inspection pending), and
 * looks it up in the `fresh` branch below, before TC_ACT_OK: a hit is redirected to value.peer_ifindex and
 * counted; the dataplane folds the counters back into the flow's record and expires idle entries. The lookup
 * needs a parser (Ethernet, up to two VLAN tags, IPv4/IPv6, TCP/UDP); a frame it cannot parse, or that
 * misses, returns TC_ACT_OK and reaches the dataplane as today. Only a stale heartbeat on an open wire
 * redirects frames that were not looked up. In the stale branch bypass adds nothing: an open wire forwards
 * everything, and a closed wire passes nothing, not even bypassed flows. struct wire_port and wire_state
 * leave the per-interface and per-wire data where a bypass entry does not need to repeat them.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "wire.h"

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2 * WIRE_MAX);
    __type(key, __u32);
    __type(value, struct wire_port);
} ngfw_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, WIRE_MAX);
    __type(key, __u32);
    __type(value, struct wire_state);
} ngfw_wires SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, WIRE_MAX);
    __type(key, __u32);
    __type(value, struct wire_counters);
} ngfw_failopen SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __uint(map_flags, BPF_F_MMAPABLE);
    __type(key, __u32);
    __type(value, struct wire_liveness);
} ngfw_liveness SEC(".maps");

SEC("tc")
int ngfw_wire(struct __sk_buff *skb)
{
    __u32 ifindex = skb->ifindex;
    __u32 zero = 0;
    struct wire_port *port = bpf_map_lookup_elem(&ngfw_ports, &ifindex);
    if (!port)
        return TC_ACT_OK;   /* not one of ours (a stale attachment): leave the frame alone */
    __u32 wire = port->wire;
    struct wire_state *state = bpf_map_lookup_elem(&ngfw_wires, &wire);
    struct wire_liveness *live = bpf_map_lookup_elem(&ngfw_liveness, &zero);
    if (!state || !live)
        return TC_ACT_OK;

    __u64 now = bpf_ktime_get_ns();
    /* signed: the loop may store a clock read after ours; that is fresh, not 2^64 ns old */
    __s64 age = (__s64)(now - *(volatile __u64 *)&live->heartbeat_ns);
    if (age <= (__s64)live->stale_after_ns) {
        if (state->open)
            state->open = 0;    /* a healthy dataplane has the wire again; written once, not per frame */
        /* flow bypass goes here (see the comment at the top) */
        return TC_ACT_OK;
    }
    if (state->mode != WIRE_MODE_OPEN)
        return TC_ACT_OK;

    if (!state->open && __sync_val_compare_and_swap(&state->open, 0, 1) == 0) {
        __sync_fetch_and_add(&state->activations, 1);
        state->opened_ns = now;
    }
    struct wire_counters *counters = bpf_map_lookup_elem(&ngfw_failopen, &wire);
    if (counters) {
        counters->packets += 1;
        counters->bytes += skb->len;
    }
    return bpf_redirect(port->peer_ifindex, 0);
}

/* the project's licence; the program calls no GPL-only helper */
char LICENSE[] SEC("license") = "Apache-2.0";
