# Threat inspection vocabulary: compiled Suricata signatures in C arrays, the per-flow inspection
# state and the per-engine workspace. Built by `InspectTables` (inspect_tables.pxi) from a RuleSet; read by
# the inspect stage (inspect.pxi). Nothing here is a Python object.

cdef extern from "fp_pcre.h" nogil:
    ctypedef struct pcre2_code:
        pass
    ctypedef struct pcre2_match_data:
        pass
    ctypedef struct pcre2_match_context:
        pass
    ctypedef struct pcre2_general_context:
        pass
    ctypedef struct pcre2_compile_context:
        pass
    ctypedef size_t PCRE2_SIZE
    ctypedef const unsigned char *PCRE2_SPTR
    uint32_t PCRE2_CASELESS, PCRE2_DOTALL, PCRE2_MULTILINE, PCRE2_EXTENDED, PCRE2_ANCHORED
    uint32_t PCRE2_DOLLAR_ENDONLY, PCRE2_UNGREEDY, PCRE2_JIT_COMPLETE, PCRE2_NO_UTF_CHECK
    int PCRE2_ERROR_NOMATCH
    pcre2_code *pcre2_compile(PCRE2_SPTR pattern, PCRE2_SIZE length, uint32_t options, int *errorcode,
                              PCRE2_SIZE *erroroffset, pcre2_compile_context *ccontext)
    int pcre2_jit_compile(pcre2_code *code, uint32_t options)
    void pcre2_code_free(pcre2_code *code)
    pcre2_match_data *pcre2_match_data_create(uint32_t ovecsize, pcre2_general_context *gcontext)
    void pcre2_match_data_free(pcre2_match_data *match_data)
    pcre2_match_context *pcre2_match_context_create(pcre2_general_context *gcontext)
    void pcre2_match_context_free(pcre2_match_context *mcontext)
    int pcre2_set_match_limit(pcre2_match_context *mcontext, uint32_t value)
    int pcre2_set_depth_limit(pcre2_match_context *mcontext, uint32_t value)
    int pcre2_match(const pcre2_code *code, PCRE2_SPTR subject, PCRE2_SIZE length, PCRE2_SIZE startoffset,
                    uint32_t options, pcre2_match_data *match_data, pcre2_match_context *mcontext)
    PCRE2_SIZE *pcre2_get_ovector_pointer(pcre2_match_data *match_data)
    int pcre2_get_error_message(int errorcode, unsigned char *buffer, PCRE2_SIZE bufflen)

# --- buffers the engine fills (the compiler's canonical names, INSPECT_BUFFERS below) ---
cdef enum:
    B_PAYLOAD = 0
    B_HTTP_URI = 1
    B_HTTP_URI_RAW = 2
    B_HTTP_METHOD = 3
    B_HTTP_HOST = 4
    B_HTTP_HOST_RAW = 5
    B_HTTP_UA = 6
    B_HTTP_HEADER = 7
    B_HTTP_HEADER_RAW = 8
    B_HTTP_COOKIE = 9
    B_HTTP_BODY = 10
    B_FILE_DATA = 11
    B_HTTP_STAT_CODE = 12
    B_HTTP_STAT_MSG = 13
    B_HTTP_REQUEST_LINE = 14
    B_HTTP_RESPONSE_LINE = 15
    B_HTTP_START = 16
    B_HTTP_PROTOCOL = 17
    B_HTTP_HEADER_NAMES = 18
    B_HTTP_CONTENT_TYPE = 19
    B_HTTP_CONTENT_LEN = 20
    B_HTTP_REFERER = 21
    B_HTTP_ACCEPT = 22
    B_HTTP_ACCEPT_ENC = 23
    B_HTTP_ACCEPT_LANG = 24
    B_HTTP_CONNECTION = 25
    B_HTTP_LOCATION = 26
    B_HTTP_SERVER = 27
    B_TLS_SNI = 28
    B_DNS_QUERY = 29
    B_SSH_PROTO = 30
    B_SSH_SOFTWARE = 31
    B_TLS_CERTS = 32
    B_TLS_CERT_SUBJECT = 33
    B_TLS_CERT_ISSUER = 34
    B_TLS_CERT_SERIAL = 35
    B_TLS_CERT_FINGERPRINT = 36
    B_JA3_HASH = 37
    B_JA3_STRING = 38
    B_JA3S_HASH = 39
    B_JA3S_STRING = 40
    B_QUIC_SNI = 41
    B_ETHER_HDR = 42       # an ARP frame's Ethernet header (`arp` rules, inspect_arp.pxi)
    B_COUNT = 43

INSPECT_BUFFERS = (
    "payload", "http.uri", "http.uri.raw", "http.method", "http.host", "http.host.raw", "http.user_agent",
    "http.header", "http.header.raw", "http.cookie", "http.request_body", "file.data", "http.stat_code",
    "http.stat_msg", "http.request_line", "http.response_line", "http.start", "http.protocol",
    "http.header_names", "http.content_type", "http.content_len", "http.referer", "http.accept",
    "http.accept_enc", "http.accept_lang", "http.connection", "http.location", "http.server", "tls.sni",
    "dns.query", "ssh.proto", "ssh.software", "tls.certs", "tls.cert_subject", "tls.cert_issuer",
    "tls.cert_serial", "tls.cert_fingerprint", "ja3.hash", "ja3.string", "ja3s.hash", "ja3s.string",
    "quic.sni", "ether.hdr",
)

# transforms, applied in order to a buffer before its matches (compile.py TRANSFORMS)
cdef enum:
    XF_NONE = 0
    XF_DOTPREFIX = 1
    XF_LOWER = 2
    XF_UPPER = 3
    XF_STRIP_WS = 4
    XF_COMPRESS_WS = 5

INSPECT_TRANSFORMS = ("", "dotprefix", "to_lowercase", "to_uppercase", "strip_whitespace", "compress_whitespace")

cdef enum:
    XF_MAX = 4            # transforms per buffer slot
    SLOT_MAX = 96         # distinct (buffer, transforms) pairs in one rule set
    TAIL_MAX = 256        # bytes of each direction kept for matches that span segments
    FD_TAIL = 256         # decoded response body bytes kept for file.data matches that span packets
    FD_FIRED = 8          # file.data rules remembered per response as having alerted

cdef enum:                # irule_t.file_data
    FD_NONE = 0
    FD_USES = 1           # the rule inspects file.data
    FD_ANCHORED = 2       # ... with a match anchored at the buffer's start (offset, depth, startswith, ...)
    FLOWBITS_MAX = 16     # flowbits set at once on one flow
    CAND_MAX = 2048       # candidate rules per packet (more are counted and dropped)
    WIN_MAX = TAIL_MAX + 65536
    NORM_MAX = 65536      # per-packet room for normalised and transformed buffers
    THR_SLOTS = 8192      # threshold / detection_filter tracking entries

# --- actions (Suricata's), item kinds and flags ---
cdef enum:
    IA_ALERT = 0
    IA_DROP = 1
    IA_REJECT = 2
    IA_PASS = 3

INSPECT_ACTIONS = ("alert", "drop", "reject", "pass")

cdef enum:
    IK_CONTENT = 0
    IK_PCRE = 1
    IK_DATAAT = 2
    IK_BYTETEST = 3
    IK_BYTEJUMP = 4

cdef enum:
    IF_NEG = 1
    IF_NOCASE = 2
    IF_OFFSET = 4
    IF_DEPTH = 8
    IF_DISTANCE = 16
    IF_WITHIN = 32
    IF_STARTS = 64
    IF_ENDS = 128
    IF_RELATIVE = 256
    IF_LITTLE = 512          # byte_test / byte_jump: little endian
    IF_ALIGN = 1024          # byte_jump: round up to a multiple of 4
    IF_FROM_BEGIN = 2048     # byte_jump: from the start of the buffer
    IF_FROM_END = 4096       # byte_jump: from the end of the buffer
    IF_BITMASK = 8192

# byte_test operators (iitem_t.pat_len low byte) and string bases (next byte, 0: binary)
cdef enum:
    BT_LT = 1
    BT_GT = 2
    BT_EQ = 3
    BT_LE = 4
    BT_GE = 5
    BT_AND = 6
    BT_XOR = 7

cdef enum:
    NC_NONE = 0
    NC_EQ = 1
    NC_NE = 2
    NC_LT = 3
    NC_LE = 4
    NC_GT = 5
    NC_GE = 6
    NC_RANGE = 7

cdef enum:
    FB_SET = 0
    FB_ISSET = 1
    FB_ISNOTSET = 2
    FB_UNSET = 3
    FB_TOGGLE = 4

cdef enum:
    TK_SRC = 0
    TK_DST = 1
    TK_RULE = 2
    TK_BOTH = 3
    TK_FLOW = 4
    TK_EITHER = 5         # suppress: the source or the destination

cdef enum:
    TH_LIMIT = 0
    TH_THRESHOLD = 1
    TH_BOTH = 2
    TH_DFILTER = 3

ctypedef struct numchk_t:
    uint8_t op
    uint32_t v
    uint32_t hi

ctypedef struct iitem_t:
    uint8_t kind
    uint16_t flags
    int32_t offset
    int32_t depth
    int32_t distance
    int32_t within
    uint32_t pat_off      # content: into patterns; pcre: index into pcres; byte_*: into nums (value, bitmask)
    uint32_t pat_len      # content: its length; byte_test: operator | string base << 8

ctypedef struct ibuf_t:
    uint16_t slot
    numchk_t size
    uint32_t item_off
    uint32_t item_n

# an address range in host order; IPv4 ranges compare the low 32 bits
ctypedef struct irange_t:
    uint8_t v6
    uint64_t lo_hi
    uint64_t lo_lo
    uint64_t hi_hi
    uint64_t hi_lo

ctypedef struct iport_t:
    uint16_t lo
    uint16_t hi

ctypedef struct ifbop_t:
    uint8_t cmd
    uint32_t off          # into fb_ids
    uint32_t n

ctypedef struct ithr_t:
    uint8_t kind
    uint8_t track
    uint32_t count
    uint32_t seconds

ctypedef struct irule_t:
    uint32_t sid
    uint32_t gid
    uint32_t rev
    uint8_t action
    uint8_t transport     # 0 ip, 6 tcp, 17 udp, 1 icmp, 255 tcp or udp
    uint8_t both_dirs     # header `<>`
    uint8_t flow_dir      # 0 any, 1 to_server, 2 to_client
    uint8_t flow_state    # 0 any, 1 established, 2 not_established
    uint8_t stream_mode   # 0 any, 1 only_stream, 2 no_stream (tcp-pkt)
    uint8_t frag_mode     # 0 any, 1 only_frag, 2 no_frag
    uint8_t noalert
    uint8_t priority
    uint8_t has_abs       # a payload content is anchored (offset/depth/startswith)
    uint8_t file_data     # FD_*: the rule inspects file.data (anchored at the body's start)
    uint8_t set_id        # signature set the rule came from (bit in a profile's mask)
    uint8_t flags_mode    # 0 none; 1 exactly; 2 plus others ('+'); 3 any of ('*'); 4 none of ('!')
    uint8_t flags_want
    uint8_t flags_ignore
    uint8_t src_any
    uint8_t dst_any
    uint8_t sport_any
    uint8_t dport_any
    uint16_t app          # catalogue app id the flow must be (or descend from); 0 any
    numchk_t dsize
    numchk_t itype
    numchk_t icode
    uint32_t src_off
    uint32_t src_n
    uint32_t dst_off
    uint32_t dst_n
    uint32_t sport_off
    uint32_t sport_n
    uint32_t dport_off
    uint32_t dport_n
    uint32_t buf_off
    uint32_t buf_n
    uint32_t fb_off
    uint32_t fb_n
    int32_t thr           # index into thresholds, -1 none
    int32_t dfilter
    uint32_t rank         # evaluation order within a packet (flowbit setters first)

# Rules without a fast pattern, found by address the way Suricata's IP-only engine does: per address side
# (source, destination) and family, the address space cut into segments where the set of rules whose side
# holds the address is constant; a segment names its set (a bitmap over the index's rules, sets shared
# between segments). A packet's candidates are the source set of its source address AND the destination
# set of its destination address (and, for rules written `<>`, the same with the addresses swapped): two
# binary searches and a few words of AND, however long the rules' address lists are.
ctypedef struct ipside_t:
    uint32_t n            # segments; 0: no rule of the index has a range of this family on this side
    uint64_t *start_hi    # where each segment starts (host order; IPv4 in start_lo; start_hi NULL for IPv4)
    uint64_t *start_lo
    uint32_t *set_of      # segment -> set

ctypedef struct ipidx_t:
    uint32_t n_rules
    uint32_t words        # 64-bit words of a set
    uint32_t *rule        # bit -> rule index
    uint64_t *sets        # set -> `words` words; set 0 is empty
    uint64_t *bidir       # rules written `<>` (NULL: none)
    ipside_t side[2][2]   # [0 source, 1 destination][is_v6]

# a prefilter database and, per pattern id, the rules whose fast pattern it is
ctypedef struct idb_t:
    hs_database_t *db
    uint32_t *pat_off
    uint32_t *pat_n
    uint32_t n_pats

ctypedef struct instables_t:
    uint32_t id           # names this rule set in events
    uint64_t digest       # of what a flow's inspection state means (stream databases, flowbit ids): a
                          # state exported by one process is continued by another only when equal
    uint32_t n_rules
    irule_t *rules
    iitem_t *items
    ibuf_t *bufs
    uint8_t *patterns
    uint64_t *nums        # byte_test value and bitmask, byte_jump bitmask
    irange_t *ranges
    iport_t *ports
    ifbop_t *fbops
    uint16_t *fb_ids
    ithr_t *thresholds
    uint32_t *pat_rules
    pcre2_code **pcres
    uint32_t n_pcres
    idb_t stream_db[2]    # TCP payload of each direction, streaming mode
    idb_t pkt_db[2]       # other payloads, block mode
    idb_t slot_db[SLOT_MAX]
    uint8_t slot_base[SLOT_MAX]
    uint8_t slot_xf[SLOT_MAX][XF_MAX]
    uint32_t n_slots
    # rules without a fast pattern: [0] header-only ("IP-only", Suricata's term) rules, evaluated on the
    # first packet of each direction of a flow; [1] the others, evaluated on every packet
    ipidx_t ipo[2]
    uint32_t nopf_n
    hs_scratch_t *scratch
    uint64_t *rule_matches
    uint32_t *stamp       # per rule: the packet stamp when it last became a candidate (loop thread only)
    uint8_t fd_rules      # a rule inspects file.data: response bodies are shown through a window (FD_TAIL)
    uint32_t *arp_rules   # `arp` rules (inspect_arp.pxi): evaluated on ARP frames, never on a flow's packets
    uint32_t arp_n
    uint16_t app_http
    uint16_t app_tls
    uint16_t app_dns
    uint16_t app_ssh
    uint16_t app_http2
    uint16_t app_quic

# ---- a profile's exceptions and threshold.config, against its rule set (inspect_exceptions.pxi)
cdef enum:
    XI_SCOPE = 0          # a scoped exception: the rule does not run for these endpoints
    XI_SUPPRESS = 1       # threshold.config `suppress`: no alert, the action stands
    XI_THRESHOLD = 2      # a threshold or detection_filter: the rule's own, or threshold.config's
    XI_RATE = 3           # threshold.config `rate_filter`: another action for a while

cdef enum:                # what a match comes to once suppressions and thresholds had their say
    TR_NONE = 0           # no alert and no action (a threshold not reached yet)
    TR_ALERT = 1
    TR_SILENT = 2         # the action, without an alert (suppressed; past a limit)

cdef enum:                # why an alert was not raised (ngfw_alerts_suppressed_total{reason})
    SUP_EXCEPTION = 0
    SUP_SUPPRESS = 1
    SUP_THRESHOLD = 2
    SUP_COUNT = 3

SUPPRESS_REASONS = ("exception", "suppress", "threshold")

ctypedef struct xnet_t:   # a prefix, as the policy's cidr_t (IPv4 mapped)
    uint64_t net_hi
    uint64_t net_lo
    uint64_t mask_hi
    uint64_t mask_lo
    uint8_t v6

ctypedef struct xscope_t:  # one side of a scoped exception: workloads (a bitmap) and prefixes
    int32_t bits          # word offset in the profile's xbits, -1: no workload
    uint32_t net
    uint32_t n_net
    uint8_t used          # the side is a condition (else it holds for every packet)

ctypedef struct xitem_t:
    uint8_t kind          # XI_*
    uint8_t new_action    # rate_filter: IA_*
    uint32_t timeout      # rate_filter: seconds the new action lasts
    uint32_t id           # names the threshold's state: 0 the rule's threshold, 1 its detection_filter, 2+ a line
    ithr_t th             # threshold / rate_filter; suppress: th.track (TK_SRC/DST/EITHER, TK_RULE: everywhere)
    uint32_t range_off    # suppress `ip`: ranges in the profile's xranges
    uint32_t range_n
    xscope_t side[3]      # XI_SCOPE: source, destination, either endpoint

ctypedef struct xrule_t:  # a rule of the profile's set with exceptions or threshold.config lines
    uint32_t rid
    uint32_t off          # its items in xitems: scoped exceptions, then suppressions, then thresholds
    uint16_t n
    uint8_t disabled      # an exception without endpoints: the rule does not run in this profile

# a threat profile, per policy generation: which signature sets, whose actions, how deep, what is excepted
ctypedef struct iprofile_t:
    instables_t *T            # the databases of exactly this profile's signature sets
    uint64_t set_mask
    uint8_t action_override   # 0 as written, 1 alert (audit), 2 drop (block what alerts)
    uint32_t depth            # bytes inspected per direction
    uint32_t key              # names the profile (vsys/name) in threshold state: counts survive reloads
    xrule_t *xrules           # sorted by rid; NULL: none
    uint32_t n_xrules
    xitem_t *xitems
    uint64_t *xbits
    xnet_t *xnets
    irange_t *xranges
    uint16_t capture          # `capture: {packets: N}`: N frames kept back, written if the flow alerts
    int32_t vsys              # the profile's vsys: ARP frames of its workloads are inspected with it

ctypedef struct inspslot_t:
    hs_stream_t *stream[2]
    tcpwin_t win[2]           # each direction's window (stream.pxi): the next byte to inspect
    uint32_t inspected[2]     # stream bytes inspected per direction (the depth spent)
    uint32_t body_left[2]     # HTTP body bytes still expected per direction
    uint16_t tail_len[2]
    uint8_t done[2]           # the direction reached the inspection depth
    uint8_t n_bits
    uint8_t passed            # a `pass` rule matched: the flow is not inspected any more
    uint8_t http_body[2]      # the direction is inside an HTTP body
    uint8_t tls_done          # TLS: the server certificate was read (or cannot be); QUIC: quic.sni was inspected
    uint8_t resp_chunk        # the response body's chunked framing (CHK_*)
    uint8_t resp_enc          # its content coding (ENC_*)
    uint8_t resp_dec          # its inflate slot + 1 (0: none)
    uint8_t h2_tab            # HTTP/2: its HPACK tables' slot + 1 (0: none; inspect_http2.pxi)
    uint32_t resp_chunk_left  # chunk data bytes still to come (in the trailer: the line has content)
    uint32_t resp_decoded     # decoded body bytes so far
    uint32_t resp_coded       # coded body bytes fed to the decoder so far
    uint8_t h2_state[2]       # HTTP/2 frame tracking per direction (0 not started, H2_SYNCED, H2_LOST)
    uint32_t h2_skip[2]       # bytes of the current HTTP/2 frame still to come
    uint8_t asm_kind          # what the assembly buffer holds (ASM_*)
    int32_t asm               # assembly buffer (TLS server handshake, an HTTP head in pieces), -1 none
    uint32_t asm_len
    uint16_t bits[FLOWBITS_MAX]
    uint32_t ruleset          # InspectTables id the streams belong to
    uint32_t fd_seen          # decoded response body bytes file.data has shown (this response)
    uint16_t fd_tail_len
    uint8_t fd_n_fired
    uint32_t fd_fired[FD_FIRED]   # file.data rules that alerted on this response: once each (Suricata's per tx)
    uint8_t tail[2][TAIL_MAX]
    uint8_t fd_tail[FD_TAIL]  # the response body's last bytes: a file.data match may span packets

# Positions of inspected flows. A free slot's memory is never read (the free list lives beside the slots), so
# the pages of free slots can be given back after a flood (inspool_give_back).
ctypedef struct inspool_t:
    inspslot_t *slots
    int32_t *next_free    # free list, by slot
    uint64_t *taken       # a bit per slot: a flow holds it
    uint64_t *dirty       # a bit per page of the slots' memory: written since it was last given back
    uintptr_t page0       # address of the page the slots start in
    int32_t free_head
    uint32_t never_used
    uint32_t n
    uint32_t in_use
    uint32_t peak         # most slots held at once since the last pass that gave pages back
    uint32_t dirty_pages  # bits set in `dirty`
    uint32_t give_back_cursor  # next slot a pass that gives memory back looks at (give_back_end: no pass)
    uint32_t give_back_end
    uint64_t exhausted
    uint64_t bytes_given_back
    uint8_t external      # the slots live in a shared state file (not the engine's to free)

cdef enum:
    ASM_TLS = 1            # the TLS server's handshake, until its Certificate
    ASM_HTTP_HEAD = 2      # + direction: an HTTP request (2) or response (3) head in several segments
    ASM_TLS_HELLO = 4      # the client's ClientHello, cut over segments (or TLS records)
    ASM_DONE = 9           # read: give the buffer back after this packet
    ASM_MAX = 16384        # bytes assembled at most (certificate chains and large heads fit)
    ASM_SLOTS = 256        # flows assembling at once (shared by all flows)

# HTTP response bodies as file.data sees them: chunked framing removed, gzip/deflate inflated (zlib), up to
# Suricata's default response-body-limit of decoded bytes per body (inspect_body.pxi)
cdef extern from "zlib.h" nogil:
    ctypedef void *(*alloc_func)(void *opaque, unsigned int items, unsigned int size)
    ctypedef void (*free_func)(void *opaque, void *address)
    ctypedef struct z_stream:
        const uint8_t *next_in
        unsigned int avail_in
        unsigned long total_in
        uint8_t *next_out
        unsigned int avail_out
        unsigned long total_out
        alloc_func zalloc
        free_func zfree
        void *opaque
    int inflateInit2(z_stream *strm, int windowBits)
    int inflate(z_stream *strm, int flush)
    int inflateEnd(z_stream *strm)
    int Z_OK, Z_STREAM_END, Z_NO_FLUSH, Z_BUF_ERROR

cdef enum:
    BODY_DECODE_MAX = 102400   # decoded bytes of one response body inspected (Suricata's response-body-limit)
    BODY_BOMB_RATIO = 100      # a body that inflates more than this many times over to the limit: a bomb
    BODYDEC_SLOTS = 64         # responses being inflated at once (shared by all flows)
    BODYDEC_MEM = 48 * 1024    # zlib's memory for one inflate (its state and 32 KiB window)
    CHK_NONE = 0               # inspslot_t.resp_chunk: not chunked
    CHK_SIZE = 1               # in a chunk-size line
    CHK_EXT = 2                # in its extension, up to LF
    CHK_DATA = 3               # in chunk data (resp_chunk_left bytes to go)
    CHK_DATA_END = 4           # the CRLF after chunk data
    CHK_TRAILER = 5            # after the last chunk, up to an empty line
    CHK_DONE = 6
    ENC_NONE = 0               # inspslot_t.resp_enc
    ENC_GZIP = 1
    ENC_DEFLATE = 2            # zlib-wrapped or raw, told by the first byte
    ENC_STOPPED = 3            # limit reached, undecodable or no decoder: nothing more of this body

ctypedef struct bodydec_t:
    z_stream z
    uint32_t mem_used
    uint8_t mem[BODYDEC_MEM]

ctypedef struct bodydec_pool_t:
    bodydec_t *slots
    int32_t next_free[BODYDEC_SLOTS]
    int32_t free_head
    uint64_t exhausted

# HTTP/2 header compression state (RFC 7541) of a connection, both directions, from a small shared pool (only
# HTTP/2 connections hold a slot; inspect_http2.pxi)
cdef enum:
    H2TAB_SLOTS = 64           # HTTP/2 connections with HPACK tables at once (shared by all flows)
    H2TAB_DATA = 4096          # name and value bytes held per direction (all of RFC 7541's default 4096-byte table)
    H2TAB_ENTRIES = 128        # entries held per direction (a 4096-byte table has at most 4096 / 32)
    H2_BLOCK_MAX = 8192        # a header block assembled over segments and CONTINUATION frames
    H2_NO_DATA = 0xFFFF        # h2dyn_t.off: an entry whose bytes are not held (larger than H2TAB_DATA)

ctypedef struct h2dyn_t:
    uint32_t max_size          # the encoder's table size (RFC 7541 4.2): 4096, then its size updates
    uint32_t limit             # the largest size the decoder allowed (SETTINGS_HEADER_TABLE_SIZE, default 4096)
    uint32_t size              # RFC sizes (name + value + 32) of the entries held
    uint16_t n                 # entries held, oldest first: the newest is dynamic index 62
    uint16_t data_len
    uint8_t desync             # a header block was not decoded: references to the table are not resolved
    uint8_t frame_type         # the frame being copied into `block` (HEADERS, PUSH_PROMISE, CONTINUATION)
    uint8_t frame_flags
    uint8_t block_type         # the header block being assembled (HEADERS or PUSH_PROMISE), 0: none
    uint8_t overflow           # it did not fit in `block`
    uint8_t hdr_len            # bytes of a frame header cut at a segment's end
    uint8_t hdr[9]
    uint32_t frame_left        # bytes of that frame still to come
    uint32_t frame_start       # where its payload starts in `block`
    uint32_t block_len
    uint16_t off[H2TAB_ENTRIES]
    uint16_t nlen[H2TAB_ENTRIES]
    uint16_t vlen[H2TAB_ENTRIES]
    uint8_t data[H2TAB_DATA]
    uint8_t block[H2_BLOCK_MAX]

ctypedef struct h2tab_t:
    h2dyn_t dir[2]

ctypedef struct h2tab_pool_t:
    h2tab_t *slots
    int32_t next_free[H2TAB_SLOTS]
    int32_t free_head
    uint64_t exhausted         # HTTP/2 connections that found no slot: decoded without the dynamic table
    uint64_t malformed         # header blocks that are not valid HPACK (or a size update above the limit)
    uint64_t unresolved        # fields naming a dynamic entry not known here (its block lost, no slot)
    uint64_t lost              # header blocks larger than H2_BLOCK_MAX: the direction stops resolving

# Message assembly (stream_assembly.pxi): buffers for messages cut over a stream's in-order segments
ctypedef struct asmpool_t:
    uint8_t (*buf)[ASM_MAX]
    int32_t *next_free
    int32_t free_head
    uint64_t exhausted

ctypedef struct ithrent_t:
    uint64_t sig          # gid << 32 | sid: a signature counts the same in every rule set that has it
    uint64_t scope        # profile key << 32 | threshold id (xitem_t.id)
    uint64_t key_hi
    uint64_t key_lo
    uint64_t window_start
    uint64_t rate_since   # rate_filter: the second its new action began (valid while rate_on)
    uint32_t count
    uint8_t rate_on
    uint8_t used

# the buffers of the packet being inspected
ctypedef struct ibufset_t:
    const uint8_t *ptr[B_COUNT]
    uint32_t len[B_COUNT]
    uint8_t have[B_COUNT]

ctypedef struct icand_t:
    uint32_t rule
    uint32_t rank

# per-engine inspection workspace (one loop thread)
ctypedef struct insws_t:
    inspool_t pool
    ibufset_t bs
    uint32_t norm_used
    uint32_t win_len
    uint32_t win_pkt_off       # where this packet's new bytes start in `win`
    uint8_t win_ready
    uint8_t win_from_start     # the window starts at stream offset 0
    uint8_t fd_window          # the rule set has file.data rules: show bodies through fd_win
    uint8_t fd_from_start      # file.data this packet starts at the body's first byte
    uint32_t n_cand
    uint32_t stamp_now
    icand_t cand[CAND_MAX]
    pcre2_match_data *md
    pcre2_match_context *mctx
    ithrent_t *thr
    asmpool_t asm_pool
    holdpool_t hold            # segments beyond a hole, kept until it fills (a replay's; stream.pxi)
    bodydec_pool_t bodydec
    h2tab_pool_t h2tab
    uint64_t bombs             # response bodies that inflated past BODY_BOMB_RATIO to the limit
    uint64_t body_limit        # response bodies decoded to BODY_DECODE_MAX (the rest passes uninspected)
    uint8_t body_in[65536]     # a packet's body with the chunk framing removed
    uint8_t joined[65536 + HOLD_MAX]   # a segment that filled a hole, with the held bytes it joins (REPLAY)
    uint8_t body_out[BODY_DECODE_MAX]
    uint8_t fd_win[FD_TAIL + BODY_DECODE_MAX]   # file.data: the body's kept tail, then this packet's bytes
    uint32_t recursion
    # counters
    uint64_t alerts[1024][4][2]    # [vsys + 1][severity 1..4 -> 0..3][0 alerted, 1 blocked]
    uint64_t suppressed[1024][SUP_COUNT]   # [vsys + 1][why]: matches that raised no alert
    uint64_t blocked_flows
    uint64_t depth_reached
    uint64_t out_of_order
    uint64_t overlaps
    uint64_t overlap_mismatch
    uint64_t fragments_dropped
    uint64_t cand_overflow
    uint64_t bytes_inspected
    uint64_t flows_inspected
    uint8_t slot_ready[SLOT_MAX]
    const uint8_t *slot_ptr[SLOT_MAX]
    uint32_t slot_len[SLOT_MAX]
    uint8_t win[WIN_MAX]
    uint8_t norm[NORM_MAX]
