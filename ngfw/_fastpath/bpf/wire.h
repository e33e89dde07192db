/* What the wire program (wire.bpf.c) and the dataplane that drives it (wirebpf.pyx) agree on: map names,
 * value layouts and the tc filter's identity. Both sides include this file, so the layout is written once.
 *
 * A program and its maps outlive the dataplane that loaded them (that is the point of fail-open), and the
 * dataplane that takes the wire back may be another ngfw version: any change to a struct here bumps
 * WIRE_LAYOUT, and a dataplane finding a program of another layout replaces it without reading its maps.
 */
#ifndef NGFW_WIRE_H
#define NGFW_WIRE_H

#include <linux/types.h>

#define WIRE_LAYOUT 1

#define WIRE_MAX 64              /* wires one dataplane drives: slots of ngfw_wires and ngfw_failopen */
#define WIRE_MODE_CLOSED 0       /* nothing passes while no dataplane runs */
#define WIRE_MODE_OPEN 1         /* the kernel forwards while no dataplane runs */

/* Our filter among an interface's tc ingress filters: found, replaced and removed by handle and priority,
 * which needs only netlink (CAP_NET_ADMIN), not the BPF syscall. Priority 1 runs before other filters. */
#define WIRE_TC_HANDLE 0x4e47    /* "NG" */
#define WIRE_TC_PRIORITY 1

#define WIRE_PROG_NAME "ngfw_wire"
#define WIRE_MAP_PORTS "ngfw_ports"
#define WIRE_MAP_WIRES "ngfw_wires"
#define WIRE_MAP_FAILOPEN "ngfw_failopen"
#define WIRE_MAP_LIVENESS "ngfw_liveness"
#define WIRE_MAP_BYPASS "ngfw_bypass"
#define WIRE_PROG_RING_FILTER "ngfw_ring_filter"
#define WIRE_MAP_ADMISSION "ngfw_admission"
#define WIRE_MAP_ADMISSION_STATS "ngfw_admit_stats"
#define WIRE_MAP_SYN_SOURCES "ngfw_syn_sources"

/* Flow bypass (docs/dataplane.md, Flow bypass): one entry per direction of a flow whose verdict is final,
 * keyed by the interface the direction arrives on and its 5-tuple as sent; the dataplane inserts and removes
 * entries, the programs count. A hash map, not an LRU one: an entry the kernel evicted by itself would be a
 * flow the dataplane believes the kernel forwards; a full map refuses the insert and the flow stays in the
 * packet loop (counted). Two entries a flow. */
#define BYPASS_MAX_ENTRIES 131072
#define BYPASS_ALL 1             /* every frame of the direction (its inspection is over) */
#define BYPASS_EMPTY 2           /* only TCP segments without payload (ACKs): its payload is still inspected */

/* ngfw_ports: interface (ifindex, the key) -> where its frames go when the wire is open */
struct wire_port {
    __u32 peer_ifindex;
    __u32 wire;                  /* slot in ngfw_wires / ngfw_failopen */
};

/* ngfw_wires[wire]: the mode the dataplane configured, and what the program observed */
struct wire_state {
    __u32 mode;                  /* WIRE_MODE_* */
    __u32 open;                  /* 1 from the first frame forwarded in fail-open to the first frame a
                                    healthy dataplane gets again */
    __u64 activations;           /* times `open` went 0 -> 1 */
    __u64 opened_ns;             /* CLOCK_MONOTONIC of the latest activation */
};

/* ngfw_failopen[wire], per CPU: what the kernel forwarded between the wire's interfaces in fail-open */
struct wire_counters {
    __u64 packets;
    __u64 bytes;
};

/* ngfw_liveness[0], a BPF_F_MMAPABLE array: the dataplane maps it into its memory and its packet loop
 * stores CLOCK_MONOTONIC (bpf_ktime_get_ns's clock) in `heartbeat_ns` every turn, at most 10 ms apart
 * while it runs. heartbeat_ns must stay the first field: the loop is given the mapping's address. */
struct wire_liveness {
    __u64 heartbeat_ns;
    __u64 stale_after_ns;        /* older than this: no dataplane takes the wire's frames */
    __u32 layout;                /* WIRE_LAYOUT of whoever set the maps up */
    __u32 bypass;                /* 1: flow bypass is on (the programs parse frames and look them up) */
};

/* ngfw_bypass key: every byte is set (padding zero), addresses as 16 bytes in packet order, IPv4 mapped
 * (::ffff:a.b.c.d) as the fastpath keeps them */
struct bypass_key {
    __u32 ifindex;               /* the interface the frame arrives on */
    __u16 sport;                 /* network byte order, as in the frame */
    __u16 dport;
    __u8 proto;                  /* 6 TCP, 17 UDP */
    __u8 pad[3];
    __u8 src[16];
    __u8 dst[16];
};

struct bypass_value {
    __u32 peer_ifindex;          /* where the kernel sends the direction's frames */
    __u32 flags;                 /* BYPASS_ALL or BYPASS_EMPTY */
    __u8 src_mac[6];             /* the sender's MAC: anything else goes to the packet loop (anti-spoofing) */
    __u8 pad[2];
    __u64 packets;               /* counted by the tc program since the entry was inserted */
    __u64 bytes;                 /* frame lengths, Ethernet header included (as the packet loop counts) */
    __u64 last_seen_ns;          /* bpf_ktime_get_ns (CLOCK_MONOTONIC) of the latest frame forwarded */
};

/* New-flow admission (docs/dataplane.md, SYN flood protection): the ring filter admits TCP SYNs (SYN without
 * ACK) into the dataplane's rings at most at a configured rate per source address, and optionally at most at
 * a rate in all; a SYN over a limit is dropped for the ring (the kernel copies it nowhere) and counted. Each
 * limit is GCRA, the token bucket as one "theoretical arrival time" per bucket, updated with compare-and-swap
 * (no lock: the LRU hash, which keeps the sources, takes no bpf_spin_lock). Interval 0: that limit is off. */
#define SYN_SOURCES_MAX 65536    /* sources tracked at once; the least recently seen make room (LRU) */

/* ngfw_admission[0]: the limits, set by the dataplane, and the shared bucket of the total limit */
struct admission_config {
    __u64 source_interval_ns;    /* 1e9 / per-source rate; 0: no per-source limit */
    __u64 source_tau_ns;         /* (burst - 1) * interval: how far ahead of its rate a source may be */
    __u64 total_interval_ns;     /* 1e9 / total rate; 0: no total limit */
    __u64 total_tau_ns;
    __u64 total_tat_ns;          /* the total bucket's state (the program's, not the dataplane's) */
};

/* ngfw_syn_sources: source address (16 bytes, IPv4 mapped as in bypass_key) -> its bucket and counters */
struct syn_source {
    __u64 tat_ns;                /* GCRA: when the bucket would be full again at the source's rate */
    __u64 admitted;              /* SYNs let into the ring */
    __u64 dropped;               /* SYNs over the per-source limit */
    __u64 last_drop_ns;
};

/* ngfw_admit_stats[ADMIT_*], per CPU: what the ring filter did with SYNs. One counter per entry, not one
 * struct: a struct's fields bumped on two paths are merged by the compiler into a pointer plus a
 * path-dependent offset, which the verifier refuses without CAP_PERFMON (the unit grants CAP_BPF only). */
#define ADMIT_SYN_SEEN 0
#define ADMIT_DROPPED_SOURCE 1   /* over the per-source limit */
#define ADMIT_DROPPED_TOTAL 2    /* within it, but over the total limit */
#define ADMIT_COUNTERS 3

#endif
