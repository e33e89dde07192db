// SPDX-License-Identifier: Apache-2.0
/* The fanout program (`ngfw dataplane --workers N`): the PACKET_FANOUT_EBPF program of the fanout group each
 * interface's ring sockets (one per worker) join. The kernel runs it on every frame the interface receives,
 * with the frame's layer-3 header at offset 0 (skb->protocol naming it, or an 802.1ad/802.1Q tag the kernel
 * left in the frame), and hands the frame to socket number (result % N) of the group -- the workers join in
 * order, so to worker (result % N). The hash is shard.h's, which the extension computes too. */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define NGFW_SHARD_LOAD(ctx, off, dst, len) bpf_skb_load_bytes((ctx), (off), (dst), (len))
#include "shard.h"

SEC("socket")
int ngfw_fanout(struct __sk_buff *skb)
{
    return ngfw_shard_of(skb, bpf_ntohs((__u16)skb->protocol), 0);
}

char LICENSE[] SEC("license") = "Apache-2.0";
