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
 * Flow bypass (docs/dataplane.md): while the heartbeat is fresh and bypass is on, a frame whose direction of
 * a flow the dataplane put in ngfw_bypass (its verdict is final) is redirected to the entry's peer interface
 * and counted in the entry; the dataplane folds the counters into its flow record and removes the entry at
 * the flow's end or when a policy change reaches it. AF_PACKET sockets see a frame before tc ingress runs,
 * so the same lookup runs as a socket filter on the dataplane's ring sockets (ngfw_ring_filter): a
 * bypassed frame is not copied into the ring, and the packet loop never sees it. A frame either program
 * cannot parse (VLAN tags, IP options are fine, fragments, IPv6 extension headers, neither TCP nor UDP),
 * a TCP segment with SYN, FIN or RST (the loop tracks the connection's state and ends it), a sender MAC
 * other than the entry's, and any miss go to the packet loop as without bypass. In the stale branch bypass
 * adds nothing: an open wire forwards everything, and a closed wire passes nothing, not even bypassed flows.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

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

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, BYPASS_MAX_ENTRIES);
    __type(key, struct bypass_key);
    __type(value, struct bypass_value);
} ngfw_bypass SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct admission_config);
} ngfw_admission SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, ADMIT_COUNTERS);
    __type(key, __u32);
    __type(value, __u64);
} ngfw_admit_stats SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, SYN_SOURCES_MAX);
    __type(key, __u8[16]);
    __type(value, struct syn_source);
} ngfw_syn_sources SEC(".maps");

/* The frame's key (ifindex left to the caller) and sender MAC; *empty: a TCP segment without payload.
 * -1: anything the packet loop must see (the comment at the top). Loads are bounds-checked by the kernel. */
static __always_inline int bypass_parse(struct __sk_buff *skb, struct bypass_key *key, __u8 *mac, int *empty)
{
    __u8 eth[ETH_HLEN];
    __u32 l4, ip_end;
    __u8 proto;
    if (skb->vlan_present)
        return -1;
    if (bpf_skb_load_bytes(skb, 0, eth, ETH_HLEN))
        return -1;
    __builtin_memcpy(mac, eth + 6, 6);
    __u16 ethertype = ((__u16)eth[12] << 8) | eth[13];
    if (ethertype == ETH_P_IP) {
        struct iphdr ip;
        if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)))
            return -1;
        if (ip.version != 4 || ip.ihl < 5 || (ip.frag_off & bpf_htons(0x3fff)))
            return -1;
        proto = ip.protocol;
        l4 = ETH_HLEN + ip.ihl * 4;
        ip_end = ETH_HLEN + bpf_ntohs(ip.tot_len);
        key->src[10] = key->src[11] = key->dst[10] = key->dst[11] = 0xff;
        __builtin_memcpy(key->src + 12, &ip.saddr, 4);
        __builtin_memcpy(key->dst + 12, &ip.daddr, 4);
    } else if (ethertype == ETH_P_IPV6) {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip6, sizeof(ip6)))
            return -1;
        if (ip6.version != 6)
            return -1;
        proto = ip6.nexthdr;
        l4 = ETH_HLEN + sizeof(ip6);
        ip_end = l4 + bpf_ntohs(ip6.payload_len);
        __builtin_memcpy(key->src, &ip6.saddr, 16);
        __builtin_memcpy(key->dst, &ip6.daddr, 16);
    } else {
        return -1;
    }
    if (ip_end > skb->len)
        return -1;
    key->proto = proto;
    if (proto == IPPROTO_TCP) {
        struct tcphdr th;
        if (bpf_skb_load_bytes(skb, l4, &th, sizeof(th)))
            return -1;
        if (th.syn || th.fin || th.rst || th.doff < 5)
            return -1;
        if (l4 + th.doff * 4 > ip_end)
            return -1;
        *empty = l4 + th.doff * 4 == ip_end;
        key->sport = th.source;
        key->dport = th.dest;
        return 0;
    }
    if (proto == IPPROTO_UDP) {
        __u16 ports[2];
        if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
            return -1;
        *empty = 0;
        key->sport = ports[0];
        key->dport = ports[1];
        return 0;
    }
    return -1;
}

/* The entry that forwards this frame in the kernel, or NULL (the packet loop takes it). */
static __always_inline struct bypass_value *bypass_find(struct __sk_buff *skb, __u32 ifindex)
{
    struct bypass_key key;
    __u8 mac[6];
    int empty = 0;
    __builtin_memset(&key, 0, sizeof(key));
    if (bypass_parse(skb, &key, mac, &empty))
        return NULL;
    key.ifindex = ifindex;
    struct bypass_value *v = bpf_map_lookup_elem(&ngfw_bypass, &key);
    if (!v)
        return NULL;
    /* no memcmp in BPF: the six bytes one by one (unrolled) */
#pragma unroll
    for (int i = 0; i < 6; i++)
        if (v->src_mac[i] != mac[i])
            return NULL;
    if (v->flags & BYPASS_ALL)
        return v;
    if ((v->flags & BYPASS_EMPTY) && empty)
        return v;
    return NULL;
}

static __always_inline int heartbeat_fresh(struct wire_liveness *live, __u64 now)
{
    /* signed: the loop may store a clock read after ours; that is fresh, not 2^64 ns old */
    __s64 age = (__s64)(now - *(volatile __u64 *)&live->heartbeat_ns);
    return age <= (__s64)live->stale_after_ns;
}

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
    if (heartbeat_fresh(live, now)) {
        if (state->open)
            state->open = 0;    /* a healthy dataplane has the wire again; written once, not per frame */
        if (live->bypass) {
            struct bypass_value *v = bypass_find(skb, ifindex);
            if (v) {
                __sync_fetch_and_add(&v->packets, 1);
                __sync_fetch_and_add(&v->bytes, skb->len);
                v->last_seen_ns = now;
                return bpf_redirect(v->peer_ifindex, 0);
            }
        }
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

/* A TCP SYN without ACK (a new connection's first segment): 1 and its source address, 16 bytes with IPv4
 * mapped; 0 for anything else. One 802.1Q tag in the frame is skipped (an offloaded one is not in it). */
static __always_inline int syn_source(struct __sk_buff *skb, __u8 *src)
{
    __u8 eth[ETH_HLEN + 4];
    __u32 l3 = ETH_HLEN, l4;
    __u8 proto;
    if (bpf_skb_load_bytes(skb, 0, eth, sizeof(eth)))
        return 0;
    __u16 ethertype = ((__u16)eth[12] << 8) | eth[13];
    if (ethertype == ETH_P_8021Q) {
        ethertype = ((__u16)eth[16] << 8) | eth[17];
        l3 += 4;
    }
    if (ethertype == ETH_P_IP) {
        struct iphdr ip;
        if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)))
            return 0;
        if (ip.ihl < 5 || (ip.frag_off & bpf_htons(0x1fff)))
            return 0;   /* a later fragment carries no TCP header */
        proto = ip.protocol;
        l4 = l3 + ip.ihl * 4;
        __builtin_memset(src, 0, 10);
        src[10] = src[11] = 0xff;
        __builtin_memcpy(src + 12, &ip.saddr, 4);
    } else if (ethertype == ETH_P_IPV6) {
        struct ipv6hdr ip6;
        if (bpf_skb_load_bytes(skb, l3, &ip6, sizeof(ip6)))
            return 0;
        proto = ip6.nexthdr;
        l4 = l3 + sizeof(ip6);
        __builtin_memcpy(src, &ip6.saddr, 16);
    } else {
        return 0;
    }
    if (proto != IPPROTO_TCP)
        return 0;
    __u8 flags;
    if (bpf_skb_load_bytes(skb, l4 + 13, &flags, 1))
        return 0;
    return (flags & 0x16) == 0x02;   /* SYN, neither ACK nor RST */
}

/* GCRA: 1 if a frame arriving at `now` is within the rate (and the bucket takes it), 0 if over it. Two tries
 * at the compare-and-swap; a third CPU racing for the same bucket gets the frame admitted, not dropped. */
static __always_inline int gcra_admit(__u64 *tat, __u64 now, __u64 interval, __u64 tau)
{
#pragma unroll
    for (int i = 0; i < 2; i++) {
        __u64 old = *(volatile __u64 *)tat;
        __u64 t = old > now ? old : now;
        if (t - now > tau)
            return 0;
        if (__sync_val_compare_and_swap(tat, old, t + interval) == old)
            return 1;
    }
    return 1;
}

static __always_inline void admit_count(__u32 counter)
{
    __u64 *n = bpf_map_lookup_elem(&ngfw_admit_stats, &counter);
    if (n)
        *n += 1;
}

/* The admission of a new connection's SYN into the ring: 1 admit, 0 drop (counted where it was decided). */
static __always_inline int admit_syn(struct __sk_buff *skb, struct admission_config *cfg)
{
    __u8 src[16];
    if (!syn_source(skb, src))
        return 1;
    admit_count(ADMIT_SYN_SEEN);
    __u64 now = bpf_ktime_get_ns();
    if (cfg->source_interval_ns) {
        struct syn_source *s = bpf_map_lookup_elem(&ngfw_syn_sources, src);
        if (!s) {
            /* a source not seen lately starts with a full bucket: this SYN is its first token */
            struct syn_source fresh = {.tat_ns = now + cfg->source_interval_ns, .admitted = 1};
            if (bpf_map_update_elem(&ngfw_syn_sources, src, &fresh, BPF_NOEXIST) == 0)
                goto total;
            s = bpf_map_lookup_elem(&ngfw_syn_sources, src);   /* another CPU inserted it first */
            if (!s)
                goto total;
        }
        if (!gcra_admit(&s->tat_ns, now, cfg->source_interval_ns, cfg->source_tau_ns)) {
            __sync_fetch_and_add(&s->dropped, 1);
            s->last_drop_ns = now;
            admit_count(ADMIT_DROPPED_SOURCE);
            return 0;
        }
        __sync_fetch_and_add(&s->admitted, 1);
    }
total:
    if (cfg->total_interval_ns && !gcra_admit(&cfg->total_tat_ns, now, cfg->total_interval_ns, cfg->total_tau_ns)) {
        admit_count(ADMIT_DROPPED_TOTAL);
        return 0;
    }
    return 1;
}

/* The ring filter: a socket filter on the dataplane's AF_PACKET sockets, which run before tc ingress. It keeps
 * out of the ring the SYNs over the admission limits (admit_syn), and exactly the frames the tc program above
 * redirects (the same lookup): 0 drops the frame for this socket only, anything else copies it whole. The
 * kernel spends on a dropped frame what it spends before any socket sees it, and the packet loop nothing. */
SEC("socket")
int ngfw_ring_filter(struct __sk_buff *skb)
{
    __u32 ifindex = skb->ifindex;
    __u32 zero = 0;
    struct wire_liveness *live = bpf_map_lookup_elem(&ngfw_liveness, &zero);
    if (!live || !bpf_map_lookup_elem(&ngfw_ports, &ifindex))
        return skb->len;
    struct admission_config *cfg = bpf_map_lookup_elem(&ngfw_admission, &zero);
    if (cfg && (cfg->source_interval_ns || cfg->total_interval_ns) && !admit_syn(skb, cfg))
        return 0;
    if (!live->bypass)
        return skb->len;
    if (!heartbeat_fresh(live, bpf_ktime_get_ns()))
        return skb->len;
    return bypass_find(skb, ifindex) ? 0 : skb->len;
}

/* the project's licence; the program calls no GPL-only helper */
char LICENSE[] SEC("license") = "Apache-2.0";
