/* shard.h over a whole Ethernet frame in memory: the extension's twin of the fanout program. */
#ifndef NGFW_SHARD_FRAME_H
#define NGFW_SHARD_FRAME_H

#include <string.h>
#include <linux/types.h>

struct ngfw_shard_buf {
    const unsigned char *p;
    unsigned int n;
};

static inline int ngfw_shard_buf_load(void *ctx, __u32 off, void *dst, __u32 len)
{
    const struct ngfw_shard_buf *b = (const struct ngfw_shard_buf *)ctx;
    if (off > b->n || len > b->n - off)
        return -1;
    memcpy(dst, b->p + off, len);
    return 0;
}

#define NGFW_SHARD_LOAD(ctx, off, dst, len) ngfw_shard_buf_load((ctx), (off), (dst), (len))
#include "shard.h"

/* The frame's hash (from its Ethernet header), as the fanout program computes it in the kernel. */
static inline __u32 ngfw_shard_of_frame(const unsigned char *frame, unsigned int len)
{
    struct ngfw_shard_buf b;
    if (len < 14)
        return 0;
    b.p = frame + 14;
    b.n = len - 14;
    return ngfw_shard_of(&b, (__u32)frame[12] << 8 | frame[13], 0);
}

#endif
