# App-ID state: catalogue tables (per policy generation), classification buffers, host names.

ctypedef struct hostent_t:
    char name[HOST_MAX]
    uint8_t len
    uint8_t wildcard      # stored as ".domain": matches subdomains only
    uint16_t app

# Catalogue tables of one policy generation (apps are named in rules, so they swap together).
ctypedef struct apptables_t:
    uint32_t n_apps
    uint16_t *builtin_app         # parser answer (BUILTIN_APPS index) -> app id
    uint16_t *tls_variant         # per app: the app it is after STARTTLS (imap -> imaps), 0: none
    uint32_t n_builtin
    hs_database_t *db
    hs_scratch_t *scratch
    uint32_t n_sigs
    uint16_t *sig_app
    uint8_t *sig_l4
    uint8_t *sig_dir
    uint16_t *sig_prio
    uint16_t *sig_minlen
    uint16_t ipproto_app[256]
    uint16_t *port_app            # [l4 (0 tcp, 1 udp)][port] -> first app with that default port
    idmap_t port_children         # (app << 32 | l4 << 16 | port) -> child app on that port (tls on 993: imaps)
    hostent_t *hosts              # open-addressed by name
    uint32_t host_mask
    uint16_t *parent              # per app, 0xffff: none
    idmap_t app_ports             # (app, l4, port) -> 1: application-default
    uint64_t *app_flows           # [vsys][app] flows identified
    uint16_t unknown_tcp
    uint16_t unknown_udp
    uint16_t unknown
    uint16_t incomplete
    uint16_t insufficient

# Per-flow classification buffers, from a pool: only flows being classified hold one.
ctypedef struct clsslot_t:
    tcpwin_t win[2]               # each direction's window (stream.pxi): its next byte ends the prefix
    uint32_t stream_len[2]        # the in-order prefix the parsers see (stream[dir][0] is win.next_seq - this)
    uint16_t ahead_start[2][STREAM_HOLES + 1]   # stream offsets of bytes held beyond the prefix
    uint16_t ahead_end[2][STREAM_HOLES + 1]
    uint8_t n_ahead[2]
    uint8_t parser_more
    int32_t next_free
    appmeta_t meta
    uint8_t stream[2][STREAM_MAX]
    uint8_t scratch[SCRATCH_MAX]

ctypedef struct clspool_t:
    clsslot_t *slots
    int32_t free_head
    uint32_t never_used
    uint32_t n
    uint64_t exhausted

ctypedef struct hostpool_t:
    char (*names)[HOST_MAX]
    uint8_t *lens
    int32_t *next_free
    int32_t free_head
    uint32_t n
    uint8_t external       # names and lens live in a shared state file (not the engine's to free)
