/* System glue for the fastpath: kernel headers, atomics and the clock.
 * Kept in C because Cython cannot express memory ordering. */
#ifndef NGFW_FP_SYS_H
#define NGFW_FP_SYS_H
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <sched.h>
#include <errno.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <arpa/inet.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#ifndef PACKET_QDISC_BYPASS
#define PACKET_QDISC_BYPASS 20
#endif
#ifndef PACKET_IGNORE_OUTGOING
#define PACKET_IGNORE_OUTGOING 23
#endif

static inline uint32_t ngfw_load_u32(const void *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_ACQUIRE); }
static inline void ngfw_store_u32(void *p, uint32_t v) { __atomic_store_n((uint32_t *)p, v, __ATOMIC_RELEASE); }
static inline uint64_t ngfw_load_u64(const void *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE); }
static inline void ngfw_store_u64(void *p, uint64_t v) { __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE); }
static inline void *ngfw_load_ptr(void *const *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void ngfw_store_ptr(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/* Swap *p from `expected` to `desired` if it still holds `expected`; true when it did. */
static inline int ngfw_cas_ptr(void **p, void *expected, void *desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* A full fence: a store before it is seen by other threads before any load after it (the TX thread's
 * sleep hand-shake: "I am going to sleep" / "there is work" must not both be missed). */
static inline void ngfw_fence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

/* Sleep while *addr holds `expected`, at most `timeout_ns` (or until ngfw_futex_wake); private to the process. */
static inline void ngfw_futex_wait(uint32_t *addr, uint32_t expected, uint64_t timeout_ns) {
    struct timespec ts = {(time_t)(timeout_ns / 1000000000ull), (long)(timeout_ns % 1000000000ull)};
    syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, expected, &ts, NULL, 0);
}
static inline void ngfw_futex_wake(uint32_t *addr) { syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0); }

static inline uint64_t ngfw_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Unaligned big-endian loads: packets carry no alignment promise. */
static inline uint16_t ngfw_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t ngfw_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void ngfw_put_be16(uint8_t *p, uint16_t v) { p[0] = v >> 8; p[1] = v & 0xff; }
static inline void ngfw_put_be32(uint8_t *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static inline uint64_t ngfw_load64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint64_t ngfw_mac64(const uint8_t *p) { uint64_t v = 0; memcpy(&v, p, 6); return v; }

static inline uint64_t ngfw_mix64(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
    return x;
}

/* The TX ring's data starts after the aligned tpacket2 header (no PACKET_TX_HAS_OFF). */
#define NGFW_TX_DATA_OFF (TPACKET_ALIGN(sizeof(struct tpacket2_hdr)))
#endif
