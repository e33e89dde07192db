/* Which worker a frame belongs to (`ngfw dataplane --workers N`): one definition, compiled twice -- into the
 * fanout program (fanout.bpf.c, run by the kernel's PACKET_FANOUT_EBPF on every frame) and into the
 * extension (shard_frame.h, wirebpf.pyx), which routes session records (restart, migration) and tests agree
 * with the kernel (BPF_PROG_TEST_RUN). The includer defines NGFW_SHARD_LOAD(ctx, off, dst, len): copy `len`
 * bytes from the frame's layer-3 area at `off`, 0 on success.
 *
 * The hash is symmetric (both directions of a flow land on one worker) and depends only on what every frame
 * of a flow carries alike:
 *   - TCP (not fragmented): protocol, both addresses, both ports;
 *   - UDP and every other protocol, and every IPv4 or IPv6 fragment: protocol and both addresses (a UDP flow
 *     whose datagrams are sometimes fragmented must not split; a TCP segment that is IP-fragmented -- DF clear
 *     and a smaller MTU on the path -- lands on its addresses' worker, not its flow's);
 *   - ICMP and ICMPv6 errors: the packet they quote (its addresses, and its ports when it is TCP), so they
 *     follow the flow they report on;
 *   - 802.1Q/802.1ad tags (up to two) are skipped: the tag is not hashed;
 *   - anything else (ARP, a frame too short to parse): 0, the first worker.
 * The kernel takes the result modulo the group's size.
 */
#ifndef NGFW_SHARD_H
#define NGFW_SHARD_H

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define NGFW_SHARD_SEED 0x6e676677u  /* "ngfw" */
#define NGFW_SHARD_MAX_TAGS 2
#define NGFW_SHARD_MAX_V6_EXT 4

struct ngfw_shard_l3 {
    __u8 a[16];      /* source, IPv4 as ::ffff:a.b.c.d */
    __u8 b[16];      /* destination */
    __u8 proto;      /* the upper-layer protocol (of an IPv6 fragment: its fragment header's) */
    __u8 frag;       /* any fragment, first or not */
    __u32 l4;        /* offset of the upper-layer header */
};

static __always_inline __u32 ngfw_shard_fmix(__u32 h)
{
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

static __always_inline __u32 ngfw_shard_word(const __u8 *p)
{
    return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

static __always_inline __u32 ngfw_shard_addr(const __u8 *a)
{
    __u32 h = NGFW_SHARD_SEED;
    h = ngfw_shard_fmix(h ^ ngfw_shard_word(a));
    h = ngfw_shard_fmix(h ^ ngfw_shard_word(a + 4));
    h = ngfw_shard_fmix(h ^ ngfw_shard_word(a + 8));
    return ngfw_shard_fmix(h ^ ngfw_shard_word(a + 12));
}

/* The hash of a flow's key: symmetric in (a, pa) <-> (b, pb). Ports 0 for flows hashed on addresses. */
static __always_inline __u32 ngfw_shard_tuple(const __u8 *a, const __u8 *b, __u16 pa, __u16 pb, __u8 proto)
{
    __u32 h = ngfw_shard_addr(a) + ngfw_shard_addr(b);
    __u32 lo = pa < pb ? pa : pb, hi = pa < pb ? pb : pa;
    return ngfw_shard_fmix(ngfw_shard_fmix(h ^ proto) ^ (lo << 16 | hi));
}

/* The IPv4 or IPv6 header at `off` (ethertype `type`); 0, or -1 when it is neither or too short. */
static __always_inline int ngfw_shard_ip(void *ctx, __u32 type, __u32 off, struct ngfw_shard_l3 *o)
{
    __u8 h[40];
    __u8 ext[2];
    int i;
    if (type == 0x0800) {
        if (NGFW_SHARD_LOAD(ctx, off, h, 20))
            return -1;
        if ((h[0] >> 4) != 4 || (h[0] & 0xf) < 5)
            return -1;
        __builtin_memset(o->a, 0, 16);
        __builtin_memset(o->b, 0, 16);
        o->a[10] = o->a[11] = o->b[10] = o->b[11] = 0xff;
        __builtin_memcpy(o->a + 12, h + 12, 4);
        __builtin_memcpy(o->b + 12, h + 16, 4);
        o->proto = h[9];
        o->frag = ((h[6] & 0x3f) | h[7]) != 0;   /* more fragments, or an offset */
        o->l4 = off + (h[0] & 0xf) * 4;
        return 0;
    }
    if (type != 0x86dd)
        return -1;
    if (NGFW_SHARD_LOAD(ctx, off, h, 40))
        return -1;
    if ((h[0] >> 4) != 6)
        return -1;
    __builtin_memcpy(o->a, h + 8, 16);
    __builtin_memcpy(o->b, h + 24, 16);
    o->proto = h[6];
    o->frag = 0;
    off += 40;
    for (i = 0; i < NGFW_SHARD_MAX_V6_EXT; i++) {
        if (o->proto == 0 || o->proto == 43 || o->proto == 60) {   /* hop-by-hop, routing, destination */
            if (NGFW_SHARD_LOAD(ctx, off, ext, 2))
                break;
            o->proto = ext[0];
            off += ((__u32)ext[1] + 1) * 8;
        } else if (o->proto == 44) {                                /* fragment */
            if (NGFW_SHARD_LOAD(ctx, off, ext, 2))
                break;
            o->proto = ext[0];
            o->frag = 1;
            off += 8;
            break;
        } else {
            break;
        }
    }
    o->l4 = off;
    return 0;
}

/* Both ports of the TCP header at `off`, or 0 when they are not there. */
static __always_inline void ngfw_shard_ports(void *ctx, __u32 off, __u16 *pa, __u16 *pb)
{
    __u8 p[4];
    if (NGFW_SHARD_LOAD(ctx, off, p, 4)) {
        *pa = *pb = 0;
        return;
    }
    *pa = (__u16)(p[0] << 8 | p[1]);
    *pb = (__u16)(p[2] << 8 | p[3]);
}

static __always_inline int ngfw_shard_icmp_error(__u8 proto, __u8 type)
{
    if (proto == 1)
        return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
    return proto == 58 && type >= 1 && type <= 4;
}

/* The frame's hash; `type` is the ethertype of what starts at `off` (its layer-3 header or a VLAN tag's
 * TCI). */
static __always_inline __u32 ngfw_shard_of(void *ctx, __u32 type, __u32 off)
{
    struct ngfw_shard_l3 l3, in;
    __u8 tag[4];
    __u8 icmp_type;
    __u16 pa = 0, pb = 0;
    int i;
    for (i = 0; i < NGFW_SHARD_MAX_TAGS; i++) {
        if (type != 0x8100 && type != 0x88a8)
            break;
        if (NGFW_SHARD_LOAD(ctx, off, tag, 4))
            return 0;
        type = (__u32)tag[2] << 8 | tag[3];
        off += 4;
    }
    if (ngfw_shard_ip(ctx, type, off, &l3))
        return 0;
    if (l3.frag)
        return ngfw_shard_tuple(l3.a, l3.b, 0, 0, l3.proto);
    if (l3.proto == 6) {
        ngfw_shard_ports(ctx, l3.l4, &pa, &pb);
        return ngfw_shard_tuple(l3.a, l3.b, pa, pb, 6);
    }
    if ((l3.proto == 1 || l3.proto == 58) && !NGFW_SHARD_LOAD(ctx, l3.l4, &icmp_type, 1) &&
        ngfw_shard_icmp_error(l3.proto, icmp_type) && !ngfw_shard_ip(ctx, type, l3.l4 + 8, &in)) {
        if (in.proto == 6 && !in.frag)
            ngfw_shard_ports(ctx, in.l4, &pa, &pb);
        return ngfw_shard_tuple(in.a, in.b, pa, pb, in.proto);
    }
    return ngfw_shard_tuple(l3.a, l3.b, 0, 0, l3.proto);
}

#endif
