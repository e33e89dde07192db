/* A bare forwarder between two interfaces on AF_PACKET TPACKET_V2 RX/TX rings, woken by poll(): the I/O
 * model of the ngfw dataplane with nothing else (no decode, flows, policy, App-ID). bench/run.py runs it as
 * the `bare` configuration, so the floor this I/O model sets on a machine is measured beside the bridge and
 * ngfw in the same run.
 *
 *   bare_forwarder IF_A IF_B [MAX_SECONDS]
 *
 * Stops on SIGTERM/SIGINT or after MAX_SECONDS (default 3600). Build: cc -O2 -o bare_forwarder bare_forwarder.c
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME_SIZE 2048u
#define BLOCK_SIZE 4096u
#define FRAMES 1024u
#define BURST 64u

struct ring {
    uint8_t *base;
    unsigned next;
};

struct port {
    int fd;
    struct ring rx, tx;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static int open_port(const char *name, struct port *p) {
    int version = TPACKET_V2, one = 1;
    struct tpacket_req req = {BLOCK_SIZE, FRAMES * FRAME_SIZE / BLOCK_SIZE, FRAME_SIZE, FRAMES};
    struct sockaddr_ll sll;
    struct packet_mreq mreq;
    unsigned ifindex = if_nametoindex(name);
    uint8_t *map;
    if (ifindex == 0) {
        fprintf(stderr, "bare_forwarder: no interface %s\n", name);
        return -1;
    }
    p->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    if (p->fd < 0 || setsockopt(p->fd, SOL_PACKET, PACKET_VERSION, &version, sizeof version) < 0 ||
        setsockopt(p->fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) < 0 ||
        setsockopt(p->fd, SOL_PACKET, PACKET_TX_RING, &req, sizeof req) < 0) {
        perror("bare_forwarder: packet socket");
        return -1;
    }
    /* as the dataplane does: never re-read its own frames, skip the qdisc on transmit */
    setsockopt(p->fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
    setsockopt(p->fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
    map = mmap(NULL, 2u * FRAMES * FRAME_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd, 0);
    if (map == MAP_FAILED) {
        perror("bare_forwarder: mmap");
        return -1;
    }
    p->rx.base = map;
    p->tx.base = map + FRAMES * FRAME_SIZE;
    p->rx.next = p->tx.next = 0;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = (int)ifindex;
    if (bind(p->fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
        perror("bare_forwarder: bind");
        return -1;
    }
    memset(&mreq, 0, sizeof mreq);
    mreq.mr_ifindex = (int)ifindex;
    mreq.mr_type = PACKET_MR_PROMISC;
    setsockopt(p->fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq, sizeof mreq);
    return 0;
}

/* Move up to BURST frames from `in`'s RX ring to `out`'s TX ring; returns how many. */
static unsigned forward(struct port *in, struct port *out) {
    unsigned n = 0;
    while (n < BURST) {
        struct tpacket2_hdr *rh = (struct tpacket2_hdr *)(in->rx.base + in->rx.next * FRAME_SIZE);
        struct tpacket2_hdr *th;
        if (!(__atomic_load_n(&rh->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER))
            break;
        th = (struct tpacket2_hdr *)(out->tx.base + out->tx.next * FRAME_SIZE);
        if (__atomic_load_n(&th->tp_status, __ATOMIC_ACQUIRE) == TP_STATUS_AVAILABLE &&
            rh->tp_snaplen <= FRAME_SIZE - TPACKET2_HDRLEN) {
            memcpy((uint8_t *)th + TPACKET2_HDRLEN - sizeof(struct sockaddr_ll),
                   (uint8_t *)rh + rh->tp_mac, rh->tp_snaplen);
            th->tp_len = rh->tp_snaplen;
            __atomic_store_n(&th->tp_status, TP_STATUS_SEND_REQUEST, __ATOMIC_RELEASE);
            out->tx.next = (out->tx.next + 1) % FRAMES;
        }
        __atomic_store_n(&rh->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
        in->rx.next = (in->rx.next + 1) % FRAMES;
        n++;
    }
    if (n)
        sendto(out->fd, NULL, 0, MSG_DONTWAIT, NULL, 0);
    return n;
}

int main(int argc, char **argv) {
    struct port a, b;
    struct pollfd fds[2];
    time_t deadline;
    if (argc < 3) {
        fprintf(stderr, "usage: bare_forwarder IF_A IF_B [MAX_SECONDS]\n");
        return 2;
    }
    deadline = time(NULL) + (argc > 3 ? atol(argv[3]) : 3600);
    if (open_port(argv[1], &a) < 0 || open_port(argv[2], &b) < 0)
        return 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    fds[0].fd = a.fd;
    fds[1].fd = b.fd;
    fds[0].events = fds[1].events = POLLIN;
    printf("bare_forwarder: forwarding %s <-> %s\n", argv[1], argv[2]);
    fflush(stdout);
    while (!stopping && time(NULL) < deadline) {
        unsigned n = forward(&a, &b) + forward(&b, &a);
        if (n == 0 && poll(fds, 2, 100) < 0 && errno != EINTR)
            break;
    }
    return 0;
}
