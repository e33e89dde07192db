# Shared C declarations of the fastpath: system glue, packet and drop-reason vocabulary.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int32_t, int64_t, uintptr_t, UINT32_MAX
from libc.string cimport memcpy, memset, memcmp, strlen
from libc.stdlib cimport calloc, malloc, free

cdef extern from "fp_sys.h" nogil:
    uint32_t ngfw_load_u32(const void *p)
    void ngfw_store_u32(void *p, uint32_t v)
    uint64_t ngfw_load_u64(const void *p)
    void ngfw_store_u64(void *p, uint64_t v)
    void *ngfw_load_ptr(void * const *p)
    void ngfw_store_ptr(void **p, void *v)
    bint ngfw_cas_ptr(void **p, void *expected, void *desired)
    void ngfw_fence()
    void ngfw_futex_wait(uint32_t *addr, uint32_t expected, uint64_t timeout_ns)
    void ngfw_futex_wake(uint32_t *addr)
    uint64_t ngfw_now_ns()
    uint16_t ngfw_be16(const uint8_t *p)
    uint32_t ngfw_be32(const uint8_t *p)
    void ngfw_put_be16(uint8_t *p, uint16_t v)
    void ngfw_put_be32(uint8_t *p, uint32_t v)
    uint64_t ngfw_load64(const uint8_t *p)
    uint64_t ngfw_mac64(const uint8_t *p)
    uint64_t ngfw_mix64(uint64_t x)
    size_t NGFW_TX_DATA_OFF

    # linux/if_packet.h
    int AF_PACKET, SOCK_RAW, SOL_PACKET, ETH_P_ALL, MSG_DONTWAIT
    int PACKET_VERSION, PACKET_RX_RING, PACKET_TX_RING, PACKET_QDISC_BYPASS, PACKET_IGNORE_OUTGOING
    int PACKET_STATISTICS
    int TPACKET_V2
    uint32_t TP_STATUS_KERNEL, TP_STATUS_USER, TP_STATUS_AVAILABLE, TP_STATUS_SEND_REQUEST
    uint32_t TP_STATUS_SENDING, TP_STATUS_WRONG_FORMAT, TP_STATUS_CSUMNOTREADY, TP_STATUS_VLAN_VALID
    uint32_t TP_STATUS_VLAN_TPID_VALID
    int PROT_READ, PROT_WRITE, MAP_SHARED, MAP_LOCKED
    void *MAP_FAILED
    short POLLIN, POLLERR
    int errno
    int EAGAIN, EINTR, EBADFD
    int SOL_SOCKET, SO_ERROR, SO_ATTACH_BPF

    struct tpacket2_hdr:
        uint32_t tp_status
        uint32_t tp_len
        uint32_t tp_snaplen
        uint16_t tp_mac
        uint16_t tp_net
        uint32_t tp_sec
        uint32_t tp_nsec
        uint16_t tp_vlan_tci
        uint16_t tp_vlan_tpid

    struct tpacket_req:
        unsigned int tp_block_size
        unsigned int tp_block_nr
        unsigned int tp_frame_size
        unsigned int tp_frame_nr

    struct tpacket_stats:
        unsigned int tp_packets
        unsigned int tp_drops

    struct sockaddr_ll:
        unsigned short sll_family
        unsigned short sll_protocol
        int sll_ifindex
        unsigned short sll_hatype
        unsigned char sll_pkttype
        unsigned char sll_halen
        unsigned char sll_addr[8]

    struct sockaddr:
        pass

    struct pollfd:
        int fd
        short events
        short revents

    ctypedef unsigned int socklen_t
    int socket(int domain, int type, int protocol)
    int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
    int getsockopt(int fd, int level, int name, void *val, socklen_t *len)
    int bind(int fd, const sockaddr *addr, socklen_t len)
    ssize_t send(int fd, const void *buf, size_t n, int flags)
    ssize_t read(int fd, void *buf, size_t n)
    ssize_t write(int fd, const void *buf, size_t n)
    int close(int fd)
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int poll(pollfd *fds, unsigned long nfds, int timeout)
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK, EFD_CLOEXEC
    uint16_t htons(uint16_t v)
    int sched_yield()
    int usleep(unsigned int usec)

# --- drop reasons: one counter each; names are the `reason` label of ngfw_drops_total ---
cdef enum:
    R_NONE = 0
    R_EMPTY = 1
    R_TRUNC_ETH = 2
    R_TRUNC_VLAN = 3
    R_UNKNOWN_ETHERTYPE = 4
    R_TRUNC_ARP = 5
    R_TRUNC_IPV4 = 6
    R_BAD_IPV4_HEADER = 7
    R_BAD_IPV4_LENGTH = 8
    R_TRUNC_IPV6 = 9
    R_BAD_IPV6_EXT = 10
    R_TRUNC_TCP = 11
    R_BAD_TCP_HEADER = 12
    R_TRUNC_UDP = 13
    R_BAD_UDP_LENGTH = 14
    R_TRUNC_ICMP = 15
    R_OVERSIZE = 16
    R_FRAG_TINY = 17
    R_FRAG_NO_FIRST = 18
    R_SPOOFED_IP = 19
    R_SPOOFED_MAC = 20
    R_WRONG_PORT = 21
    R_NO_WORKLOAD = 22
    R_POLICY_DENY = 23
    R_POLICY_REJECT = 24
    R_POLICY_DEFAULT = 25
    R_TCP_NOT_SYN = 26
    R_FLOW_TABLE_FULL = 27
    R_CUT_BY_POLICY = 28
    R_HAIRPIN = 29
    R_TX_FULL = 30
    R_FRAG_TABLE_FULL = 31
    R_NO_POLICY = 32
    R_ICMP_ERROR_NO_FLOW = 33
    R_THREAT = 34
    R_TRUNC_NSH = 35
    R_STREAM_GAP = 36          # inspected TCP: a segment beyond a hole (the sender retransmits in order)
    R_STREAM_REWRITE = 37      # inspected TCP: a retransmission that changes bytes already inspected
    R_FRAG_UNINSPECTED = 38    # inspected TCP: a segment in IP fragments
    R_VSYS_SESSION_LIMIT = 39  # a new flow of a vsys holding its maxSessions
    R_VSYS_RATE_LIMIT = 40     # a new flow beyond its vsys's newSessionsPerSecond
    R_PORT_DOWN = 41           # the output port's link is down, or its interface is gone (ports.pxi)
    R_SESSION_CLEARED = 42     # a frame of a flow an operator cleared (session_view.pxi)
    R_COUNT = 43

DROP_REASONS = (
    "none", "empty_frame", "truncated_ethernet", "truncated_vlan", "unknown_ethertype", "truncated_arp",
    "truncated_ipv4", "bad_ipv4_header", "bad_ipv4_length", "truncated_ipv6", "bad_ipv6_extension_header",
    "truncated_tcp", "bad_tcp_header", "truncated_udp", "bad_udp_length", "truncated_icmp", "oversize",
    "fragment_tiny", "fragment_without_first", "spoofed_ip", "spoofed_mac", "wrong_port", "no_workload",
    "policy_deny", "policy_reject", "policy_default_deny", "tcp_not_syn", "flow_table_full",
    "cut_by_policy", "hairpin", "tx_ring_full", "fragment_table_full", "no_policy", "icmp_error_without_flow",
    "threat", "truncated_nsh", "stream_gap", "stream_rewrite", "fragment_uninspected",
    "vsys_session_limit", "vsys_rate_limit", "port_down", "session_cleared",
)

# process_frame's rx_status flag (beside the kernel's TP_STATUS_* bits) for a capture record cut short
# (the kernel's timestamp bits live up there too, TP_STATUS_TS_SOFTWARE = 1 << 29: the ring path passes
# only RX_KERNEL_BITS of tp_status, so this never comes from the kernel)
cdef enum:
    RX_KERNEL_BITS = 0xFFFF
    RX_SNAPPED = 0x40000000
    RX_TUNNEL_OUTER = 0x10000000   # replay: an IP-in-IP frame's outer packet, read as itself (process_frame)

# What the engine runs on (engine_t.mode). Every behaviour that differs between the two is keyed on it and
# listed in docs/dataplane.md ("Live and replay"); `log_all` is about logging only.
cdef enum:
    MODE_LIVE = 0      # ports: the dataplane decides what is forwarded
    MODE_REPLAY = 1    # capture files: what the live dataplane would have decided, every flow logged

# replay sweeps at most this many flow slots per packet: the capture's clock may jump by hours between
# two packets, and a whole-table sweep per packet was two thirds of replaying the App-ID corpus
cdef enum:
    REPLAY_SWEEP_SLOTS = 32
    REPLAY_FRAME_MAX = 262144 + 64   # a capture record is at most 256 KiB (source_pcap.pxi), plus a header made up

# the packet loop's idea of sparse traffic: fewer than QUIET_FRAMES frames over the last 10-20 ms (5,000/s)
cdef enum:
    QUIET_WINDOW_NS = 10000000
    QUIET_FRAMES = 50

# --- layer 3 kinds ---
cdef enum:
    L3_NONE = 0
    L3_ARP = 1
    L3_IPV4 = 2
    L3_IPV6 = 3

cdef enum:
    P_ICMP = 1
    P_TCP = 6
    P_UDP = 17
    P_ICMPV6 = 58
    P_SCTP = 132

cdef enum:
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_PSH = 0x08
    TH_ACK = 0x10

# --- verdicts (equal to ngfw.compiler.tables.Action) ---
cdef enum:
    A_ALLOW = 0
    A_DENY = 1
    A_REJECT = 2

# An IP address as two 64-bit words in packet byte order; IPv4 is mapped (::ffff:a.b.c.d)
# so one table and one compare serve both families.
ctypedef struct ip128_t:
    uint64_t hi
    uint64_t lo

# One decoded frame. Offsets index `data`; nothing here owns memory.
ctypedef struct pkt_t:
    const uint8_t *data
    uint32_t len
    uint32_t l3_off
    uint32_t l4_off
    uint32_t payload_off
    uint32_t payload_len
    uint32_t ip_end            # end of the IP datagram (Ethernet padding excluded)
    uint16_t vlan              # VLAN id of the outer tag, 0 when untagged
    uint16_t ethertype
    uint8_t l3
    uint8_t proto
    uint8_t has_ports          # ports/ICMP fields were decoded
    uint8_t tcp_flags
    uint8_t icmp_type
    uint8_t icmp_code
    uint8_t is_frag
    uint8_t frag_first
    uint8_t is_v6
    uint8_t arp_ipv4           # an Ethernet/IPv4 ARP whose sender and target IPs were read
    uint8_t ttl                # IPv4 TTL / IPv6 hop limit
    uint8_t snapped            # the frame is a capture record cut short: header lengths may exceed it
    uint8_t offline            # a replayed capture: tunnels read as their inner packet, lenient UDP length
    uint8_t ipip               # replay: the packet is the inner one of an IP-in-IP frame (protocol 4 or 41);
                               # with RX_TUNNEL_OUTER the frame is read as its outer packet instead
    uint32_t frag_id
    uint16_t sport
    uint16_t dport
    uint32_t tcp_seq
    uint32_t tcp_ack
    ip128_t src_ip
    ip128_t dst_ip
    uint64_t src_mac
    uint64_t dst_mac
    # an ICMP error quotes the datagram it answers: the quoted tuple finds the flow it belongs to
    uint8_t icmp_error
    uint8_t inner_proto
    uint16_t inner_sport
    uint16_t inner_dport
    ip128_t inner_src
    ip128_t inner_dst
