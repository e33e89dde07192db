# The engine: every stage's part of the state one packet loop owns (each part's init/free is in its
# stage's file), and the drop counter every stage uses.

ctypedef struct engine_t:
    port_t ports[MAX_PORTS]
    uint32_t n_ports
    segment_t segments[MAX_SEGMENTS]
    uint32_t n_segments
    mac_entry_t *macs
    frag_entry_t *frags
    uint8_t frags_used         # an entry was made in `frags` since the last replay_reset (which then clears it)
    flowtable_t flows
    evring_t events
    tables_t *tables          # the generation the loop uses now
    tables_t *pending         # set by Python, adopted by the loop between bursts
    usertab_t *users          # User-ID: the user behind each address (userid.pxi), NULL: none known
    usertab_t *users_pending  # set by Python, adopted by the loop between bursts
    uint64_t user_redecided   # flows decided again because their user (or its groups) changed
    uint64_t timeouts_ns[TO_COUNT]
    uint64_t drops[R_COUNT]
    uint64_t flows_created
    uint64_t flows_expired
    uint64_t flows_cut
    uint64_t flow_id_next
    uint64_t flow_id_salt
    uint64_t last_sweep
    uint32_t stop
    uint32_t running
    uint32_t burst
    uint64_t idle_spin_ns      # keep polling the rings this long after the last frame before sleeping...
    uint64_t idle_spin_quiet_ns  # ... or this long while traffic is sparse (run_loop)
    uint32_t sparse            # run_loop's verdict on the traffic, for the TX thread
    # liveness: the loop stores its clock here every turn (at most 10 ms apart while it runs); a
    # watchdog (systemd's, the fail-open wire program's) reads it. `heartbeat` is this field, or a
    # word outside the process (a BPF map's value) that a kernel-side fail-open program reads
    uint64_t progress_ns
    uint64_t *heartbeat
    sess_req_t *request        # work for the loop's thread (session.pxi), taken between bursts
    int wake_fd                # an eventfd in the loop's poll set: Python's requests and swaps need no timeout
    uint64_t flows_early_dropped
    uint64_t early_drop_second     # start of the second whose early drops are being counted...
    uint32_t early_drops_second    # ... how many there were so far
    uint32_t early_drop_rate       # early drops in the last whole second
    uint64_t records_second        # start of the second whose records of embryonic flows are counted...
    uint32_t records_this_second   # ... and how many were written (embryonic_record)
    uint64_t records_unlogged      # records of embryonic flows not written
    uint64_t flows_handed_over  # flows a move handed to another host that ended here unlogged
    uint64_t arrivals          # workloads first seen on the VM side (EV_ARRIVAL)
    uint64_t midstream_until_ns  # until then a TCP segment of an unknown flow starts one (after fail-open)
    # links that come and go (ports.pxi): a port's new ring or TAP descriptor, swapped in between bursts
    port_req_t *port_request
    uint32_t ports_epoch       # changes with a port's I/O: the loop rebuilds its poll set
    int notify_fd              # eventfd the loop signals when it finds a port's device gone (Python waits on it)
    uint32_t tx_turns          # turns of the TX thread, so a swap knows when that thread let go of an old ring
    uint32_t tx_running
    uint32_t tx_asleep         # the TX thread sleeps on this word (a futex) until the loop hands it a ring
    uint8_t mode               # MODE_LIVE or MODE_REPLAY (defs.pxi): every difference is listed in docs/dataplane.md
    uint8_t log_all            # every flow and drop is an event, whatever the rule's `log` (replay)
    int32_t unmanaged_vsys     # vsys deciding flows with no workload on either side; -1 drops them
    clspool_t cls                # App-ID classification buffers
    hostpool_t hostpool          # host names of flows
    uint32_t appid_max_pkts      # payload packets after which an unidentified flow is decided anyway
    uint32_t appid_budget        # payload packets a flow waiting for its app may pass before that
    uint64_t app_cuts            # flows cut once their app was known
    insws_t *ins                 # threat inspection workspace
    capring_t capture            # frames of flows that ask for capture (capture.pxi)
    capreq_t capreq              # an operator's capture request (capture.pxi)
    uint64_t pktdrop_tokens      # drop records of frames that made no flow: a token bucket (ns of budget)...
    uint64_t pktdrop_refilled_ns
    uint32_t pktdrop_pending     # ... what it refused since the last record written...
    uint64_t pktdrop_suppressed  # ... and in all
    # flow bypass (bypass.pxi): the wire program's map, and each port's interface and wire peer
    int bypass_fd                # -1: off
    uint32_t bypass_ifindex[MAX_PORTS]   # 0: the port carries no wire program
    int32_t bypass_peer[MAX_PORTS]       # the other port of its wire, -1 none
    uint64_t bypass_flows        # flows put in bypass (a flow that leaves and comes back counts again)
    uint64_t bypass_active       # flows in bypass now
    uint64_t bypass_packets      # frames the kernel forwarded for bypassed flows (folded)
    uint64_t bypass_bytes
    uint64_t bypass_map_full     # flows that stayed in the loop because the map was full
    uint64_t bypass_errors       # other map refusals
    vsys_state_t vsys[VSYS_SLOTS]  # per-vsys sessions, rate buckets and quota drops (tenancy.pxi)
    uint8_t cls_scratch[SCRATCH_MAX]
    uint8_t scratch[SCRATCH_LEN]
    uint8_t response[RESPONSE_MAX]

cdef inline void count_drop(engine_t *e, int reason) noexcept nogil:
    e.drops[reason] += 1
