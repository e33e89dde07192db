# App-ID vocabulary shared by the protocol parsers (app_parsers.pxi) and the App-ID stage (appid.pxi).
#
# A parser looks at the first bytes of a flow, one direction at a time, and answers with the
# canonical name of the protocol it recognised (an index into BUILTIN_APPS), "not mine", or "need
# more bytes". It may fill `appmeta_t` (host name, ALPN, ...). Parsers are pure functions of their
# input plus the flow's scratch buffer: no allocation, no I/O, every read bounds-checked.

cdef enum:
    DNS_HOST_KEEP = 79    # a DNS-family name is kept by its last 79 bytes (what nDPI reports)
    DNS_EXTRA_PKTS = 5    # a decided DNS flow's later packets read for its host name (appid.pxi)
    STUN_EXTRA_PKTS = 8   # a decided STUN flow's later packets read for a REALM
    STARTTLS_EXTRA_PKTS = 16   # a decided FTP/SMTP/POP3/IMAP flow's later packets read for a TLS upgrade
    HOSTX_LEFT = 0x1F     # flow_t.host_extra: packets left (low bits), and what to read them as (high bits)
    HOSTX_DNS = 0x20
    HOSTX_MDNS = 0x40
    HOSTX_STUN = 0x60
    HOSTX_STARTTLS = 0x80
    HOSTX_SSH = 0xA0      # the other side's SSH identification string
    HOSTX_H2 = 0xC0       # HTTP/2 after its preface: the first request's :authority
    SSH_EXTRA_PKTS = 6    # a decided SSH flow's later packets read for it
    H2_EXTRA_PKTS = 8     # a decided HTTP/2 flow's later packets read for its first request's :authority
    HOST_SSH_MARK = 1     # a flow's host entry that starts with this byte holds SSH identification strings,
                          # not a name: (b'c' client | b's' server, "proto-software comments", b'\n') per side,
                          # b'\r' in place of b'\n' while the side's string is cut (its rest in the next segment)
    SSH_SIDE_MAX = 77     # bytes of one side's identification string kept (two fit in HOST_MAX)
    HOST_MAX = 160        # longest host name kept (longer ones are truncated, never over-read)
    ALPN_MAX = 32
    UA_MAX = 96
    STREAM_MAX = 4096     # first bytes of each TCP direction kept in order for the parsers
    STREAM_HOLES = 2      # segments held ahead of a hole until it fills; one more: a capture's loss
    SCRATCH_MAX = 2048    # per-flow parser scratch (QUIC CRYPTO reassembly and the like)

cdef enum:
    PARSE_NEED_MORE = -1  # could be this protocol: call again with more bytes
    PARSE_NO = 0          # not recognised by any parser

# What parsers extract. Strings are ASCII, not NUL-terminated: use the *_len fields.
ctypedef struct appmeta_t:
    uint8_t host_len
    uint8_t alpn_len
    uint8_t ua_len
    uint8_t http_method_len
    uint16_t tls_version      # highest version offered (supported_versions) or legacy_version
    uint16_t dns_qtype
    char host[HOST_MAX]       # HTTP Host / TLS or QUIC SNI / DNS query name, lower-case, no trailing dot
    char alpn[ALPN_MAX]       # first ALPN protocol offered
    char ua[UA_MAX]           # HTTP User-Agent
    char http_method[8]

# What a parser is given for one payload packet of a flow.
ctypedef struct appctx_t:
    uint8_t l4proto           # 6 TCP, 17 UDP (parsers are called for these only)
    uint8_t to_server         # 1: client -> server direction (client = the flow's initiator)
    uint16_t client_port
    uint16_t server_port
    uint32_t pkt_index        # 0-based index of this payload packet within its direction
    const uint8_t *payload    # this packet's payload
    uint32_t payload_len
    const uint8_t *stream     # TCP: the direction's first bytes in order, this packet included; UDP: == payload
    uint32_t stream_len
    uint8_t *scratch          # SCRATCH_MAX bytes owned by this flow while it is being classified (zeroed at start)
    uint8_t *reasm            # UDP: room (reasm_cap bytes, not zeroed) for a message spread over datagrams (QUIC's
    uint32_t reasm_cap        # CRYPTO stream): the flow's TCP stream buffers, unused by datagrams; NULL without a slot
    appmeta_t *meta
