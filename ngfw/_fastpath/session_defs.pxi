# Session state, declarations (the code is session.pxi): one versioned record per flow.
#
# A flow's state -- tuple, TCP state, App-ID result, inspection position, counters -- has one serialisation,
# `sess_rec_t` and the bytes that follow it, used three ways:
#   - a restarted dataplane takes over the table of the one that died (the table lives in a shared-memory
#     file, ngfw.dataplane.state; each old slot is turned into a record and imported),
#   - a graceful stop writes every flow as a record (with Hyperscan's compressed streams) to a snapshot,
#   - a workload's flows move to the host it migrated to as records (ngfw.dataplane.migration).
# Import is the only way in, and it trusts nothing: each record is checked for shape, the flow's workloads
# are found again by address in the importer's tables, and the importer's policy decides it again (state is
# evidence, never authority). What a record says about policy (vsys, rule, profile) is not even carried.

cdef enum:
    SESS_VERSION = 1
    # record flags
    SF_TOMBSTONE = 1       # key only: the flow ended at the exporter after an earlier transfer
    SF_INSP = 2            # an inspection position follows
    SF_STREAMS = 4         # Hyperscan's compressed stream state follows (same rule set digest only)

# what importing one record did (counters by this index; names in SESSION_RESULTS)
cdef enum:
    SI_IMPORTED = 0
    SI_UPDATED = 1         # replaced a copy that an earlier transfer of the same move imported (a delta)
    SI_PRESENT = 2         # this host has the flow already (it crosses both hosts): kept as it is here
    SI_REMOVED = 3         # a tombstone removed an imported copy
    SI_MALFORMED = 4
    SI_NOT_OWNED = 5       # neither end of the tuple is the workload being moved
    SI_POLICY = 6          # the importer's policy does not allow the flow
    SI_QUOTA = 7           # the vsys is at its session quota here
    SI_TABLE_FULL = 8
    SI_EXPIRED = 9         # idle past its timeout already
    SI_COUNT = 10

SESSION_RESULTS = ("imported", "updated", "present", "removed", "malformed", "not_owned", "policy", "quota",
                   "table_full", "expired")

# flow_t.mig: where a flow stands in a move of one of its workloads
cdef enum:
    MIG_NONE = 0
    MIG_IN = 1             # imported by a move and not seen here yet: a later transfer may update or remove it
    MIG_OUT_CLIENT = 2     # handed over at a cut-over; the moved workload is the flow's client
    MIG_OUT_SERVER = 3     # ... its server. Lingers unlogged: the destination owns it now, unless the moved
                           # workload's own packets still cross this host (its peer is here): then it is kept

# How long a handed-over flow lingers at the source (its packets may still be on the way).
cdef uint64_t MIG_LINGER_NS = 10 * 1000000000ull

ctypedef struct sess_rec_t:
    uint32_t rec_len           # this header and its tail, padded to 8 bytes
    uint8_t version
    uint8_t flags
    uint8_t init_is_a
    uint8_t tcp_state
    flow_key_t key
    uint64_t flow_id
    uint64_t age_ns            # exporter's clock minus ts_first (clocks differ between hosts and boots)
    uint64_t idle_ns           # exporter's clock minus ts_last
    uint64_t pkts[2]
    uint64_t bytes[2]
    uint32_t data_seq[2]
    uint16_t app               # the exporter's catalogue id: the importer maps it by name
    uint8_t app_state
    uint8_t app_conf
    uint8_t app_pkts
    uint8_t pl_pkts[2]
    uint8_t host_extra
    uint8_t fin_seen
    uint8_t syn_seen
    uint8_t is_v6
    uint8_t action             # evidence only: the importer decides again
    uint8_t threat             # a signature blocked the flow: it stays blocked
    uint8_t in_port
    uint8_t host_len
    uint8_t pad0
    # inspection position (SF_INSP)
    uint32_t i_next_seq[2]
    uint32_t i_inspected[2]
    uint32_t i_body_left[2]
    uint32_t i_h2_skip[2]
    uint8_t i_seq_set[2]
    uint8_t i_done[2]
    uint8_t i_http_body[2]
    uint8_t i_h2_state[2]
    uint8_t i_passed
    uint8_t i_tls_done
    uint8_t i_n_bits
    uint8_t pad1
    uint16_t i_tail_len[2]
    uint16_t i_bits[FLOWBITS_MAX]
    uint32_t stream_len[2]     # SF_STREAMS: bytes of each direction's compressed stream
    uint64_t stream_digest     # the rule set the streams and flowbit ids belong to
    # then: host name, tail bytes of each direction, compressed streams

# A record may end with an EVE trailer: its last 8 bytes, past the tail and its padding (which is under 8
# bytes, so a record without one cannot seem to have one). It carries what the flow's EVE records say of its
# past -- TCP flags seen, the first ICMP type and code (the Community ID hashes them), whether a signature
# alerted -- so a flow continued after a restart or a move logs what it would have logged. A trailer, not
# fields: `sess_rec_t` and the record format stay as they were, so builds before it import these records
# (skipping the trailer within rec_len) and their records import here (no trailer: nothing seen yet).
# Nothing in it is policy: the importer decides capture, like everything else, again.
cdef enum:
    SESS_EVE_MAGIC = 0x45      # 'E'

ctypedef struct sess_eve_t:
    uint8_t magic
    uint8_t tcp_flags[2]       # flow_t.tcp_flags
    uint8_t icmp_type
    uint8_t icmp_code
    uint8_t alerted
    uint8_t pad[2]

# the growable output of an export
ctypedef struct sbuf_t:
    uint8_t *p
    size_t n
    size_t cap

# Work that must run on the packet loop's thread (the flow table has one writer): Python fills one,
# hands it to the loop (or runs it itself while the loop is stopped) and waits for `done`.
cdef enum:
    REQ_EXPORT = 1
    REQ_IMPORT = 2
    REQ_ADOPT = 3          # import every flow of a dead process's table
    REQ_FORGET_PRESENCE = 4

ctypedef struct sess_req_t:
    uint32_t kind
    uint32_t done
    # export
    int32_t workload           # -1: every flow; else flows with this workload at either end (by address)
    uint64_t changed_since     # only flows with a packet since (engine clock); 0: all
    uint32_t cursor            # first flow slot to look at; set to where the next page starts (0: the end)
    uint32_t limit             # records at most (0: no limit)
    uint8_t streams            # include compressed Hyperscan streams
    uint8_t hand_over          # a cut-over: exported flows become MIG_OUT_* (linger unlogged, see MIG_*)
    uint8_t only_allowed       # skip flows the policy refused (kept only to drop their retries)
    sbuf_t out
    sbuf_t keys                # flow_key_t of every flow the filter matched (changed or not)
    uint32_t exported
    # import
    const uint8_t *in_p
    size_t in_n
    const uint16_t *app_map    # exporter's app id -> importer's (0: unknown here)
    uint32_t n_app_map
    uint64_t stream_digest_ok  # records whose stream_digest equals this may restore their streams
    uint8_t migration          # records of a move: imported flows are MIG_IN, a delta may update them
    int32_t require_wl         # records must have this workload (importer's index) at one end; -1 any
    uint64_t results[SI_COUNT]
    uint64_t streams_restored
    # adopt: a dead process's table, in its own file's memory
    const flow_t *old_slots
    uint32_t old_n_slots
    const char *old_host_names  # [old_n_host][HOST_MAX]
    const uint8_t *old_host_lens
    uint32_t old_n_host
    const inspslot_t *old_insp
    uint32_t old_n_insp
    int32_t error              # where the request could not run at all (no policy): -1
    void *view                 # REQ_LIST, REQ_CLEAR: their sview_req_t (session_view.pxi)
