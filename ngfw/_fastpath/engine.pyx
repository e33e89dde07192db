# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The ngfw fastpath: one compiled extension, one include per pipeline stage.

Python builds `Tables` from a compiled policy and hands ports to an `Engine`; `Engine.run`
then forwards frames with the GIL released. Python sees counters when it asks (`stats`) and
flow/drop events through a ring it drains (`drain_events`).
"""

# The files, in the order they are included (a stage's file owns its code, its part of engine_t and that part's
# init/free; worker.pxi is the order of the stages and the loop; Engine below only calls them):
#   defs.pxi             system glue, packet and drop-reason vocabulary
#   hs.pxd.pxi           the Hyperscan C API
#   appid_defs.pxi       App-ID vocabulary of the protocol parsers and the App-ID stage
#   app_parsers.pxi      App-ID protocol parsers (app_*.pxi), by the structure of a flow's first bytes
#   decode.pxi           stage 1, decode: Ethernet to TCP/UDP/ICMP, bounds-checked
#   stream.pxi           TCP byte order for every stage that reads a direction as a stream; held segments
#   idmap.pxi            exact-match maps of MACs and IPs to table indexes
#   appid_types.pxi      App-ID state: catalogue tables, classification buffers, host names
#   inspect_defs.pxi     threat inspection vocabulary: compiled signatures, per-flow state, the workspace
#   stream_assembly.pxi  messages gathered over segments (ClientHello, HTTP heads, certificates)
#   userid.pxi           stage 2b, User-ID: the user behind a flow's source address
#   policy.pxi           stage 4, policy: first matching rule per vsys, once per flow
#   identity.pxi         stage 2, identity: ingress port + source MAC/IP -> workload, anti-spoofing
#   flow.pxi             stage 3, flow: the flow table, TCP state, timeouts; flows_init/free, end_all_flows
#   session_defs.pxi     session records: one versioned record per flow (declarations)
#   tenancy.pxi          stage 3a, tenancy: per-vsys quotas on new flows
#   events.pxi           the event ring to Python; events_init/free; events as dicts
#   community_id.pxi     a flow's Community ID
#   capture.pxi          packet capture ring for forensics; capture_free, capture_matching, drain_captures
#   respond.pxi          stage 6b, respond: the RST / ICMP a reject sends back (respond_reject)
#   io.pxi               ports: packet rings (in a fanout group with --workers), TAP, memory, sink ports; ports_close;
#                        RX bursts and the TX thread
#   switch.pxi           stage 7, forward: MAC learning per segment, forward(); l2_init/free (MAC, fragment tables)
#   fragments.pxi        IP fragments: the first fragment's verdict for those that follow
#   engine_defs.pxi      engine_t: every stage's part of one packet loop's state; count_drop
#   worker.pxi           the packet path: process_frame (the order of the stages), flow start/decide/end,
#                        the flow sweep, and run_loop
#   ports.pxi            links that come and go; Engine's add/reattach/detach of ports
#   appid.pxi            stage 5, App-ID; appid_state_init/free
#   inspect_match.pxi    candidate verification: content / pcre / isdataat chains
#   inspect_buffers.pxi  sticky buffers: HTTP, DNS, TLS SNI, SSH banner
#   inspect_tls.pxi      TLS server certificates for inspection
#   inspect_body.pxi     HTTP response bodies (dechunked, inflated) for file.data
#   inspect_http2.pxi    HTTP/2 header blocks (HPACK) for inspection
#   inspect_ja3.pxi      JA3 / JA3S fingerprints
#   inspect_exceptions.pxi  a threat profile's exceptions, thresholds and suppressions
#   inspect.pxi          stage 6, threat inspection; inspect_workspace_init/free, inspect_stats
#   inspect_arp.pxi      stage 2a, ARP frames before forwarding: `arp` rules, flowless alerts
#   bypass.pxi           flow bypass through the wire program's map; enable_bypass, attach_ring_filter
#   session.pxi          session state: flows out as records, records in; export/import/adopt_sessions
#   session_view.pxi     the operator's view: list_sessions, clear_sessions, flows
#   source_pcap.pxi      pcap/pcapng replay through the pipeline; replay_capture, replay_reset
#   inspect_tables.pxi   InspectTables: a rule set's C form, built off the hot path
#   records_json.pxi     replay's JSON lines written in C (drain_flow_json)
#   convert.pxi          Python <-> C conversions of addresses and MACs; decode()
#   state_memory.pxi     shared state memory layout and record helpers (state_layout, decode_records...)
#   tables.pxi           Tables: a policy generation in C memory; the Hyperscan cache; set_tables
#   usertable.pxi        UserTable: User-ID tables; set_users
#   stats.pxi            Engine.stats: every stage's counters in one dict

import json
import os
import time

include "defs.pxi"
include "hs.pxd.pxi"
include "appid_defs.pxi"
include "app_parsers.pxi"
include "decode.pxi"
include "stream.pxi"
include "idmap.pxi"
include "appid_types.pxi"
include "inspect_defs.pxi"
include "stream_assembly.pxi"
include "userid.pxi"
include "policy.pxi"
include "identity.pxi"
include "flow.pxi"
include "session_defs.pxi"
include "tenancy.pxi"
include "events.pxi"
include "community_id.pxi"
include "capture.pxi"
include "respond.pxi"
include "io.pxi"
include "switch.pxi"
include "fragments.pxi"
include "engine_defs.pxi"
include "worker.pxi"
include "ports.pxi"
include "appid.pxi"
include "inspect_match.pxi"
include "inspect_buffers.pxi"
include "inspect_tls.pxi"
include "inspect_body.pxi"
include "inspect_http2.pxi"
include "inspect_ja3.pxi"
include "inspect_exceptions.pxi"
include "inspect.pxi"
include "inspect_arp.pxi"
include "bypass.pxi"
include "session.pxi"
include "session_view.pxi"
include "source_pcap.pxi"
include "inspect_tables.pxi"
include "records_json.pxi"
include "convert.pxi"
include "state_memory.pxi"
include "tables.pxi"
include "usertable.pxi"
include "stats.pxi"


def host_fields(bytes raw):
    """(app_host, ssh) of a flow's host entry: a host name, or (HOST_SSH_MARK) the SSH identification strings
    of its sides as Suricata's EVE shows them: {"client": {"proto_version": "2.0", "software_version":
    "OpenSSH_9.2p1"}, "server": {...}} (the software version ends at the first space, comments are left out)."""
    cdef dict ssh = {}
    if not raw:
        return None, None
    if raw[0] != HOST_SSH_MARK:
        return raw.decode("utf-8", "replace"), None
    for line in raw[1:].replace(b"\r", b"\n").split(b"\n"):
        if len(line) < 2 or line[:1] not in (b"c", b"s"):
            continue
        proto, _, rest = line[1:].decode("ascii", "replace").partition("-")
        side = "client" if line[:1] == b"c" else "server"
        ssh[side] = {"proto_version": proto, "software_version": rest.split(" ", 1)[0]}
    return None, {side: ssh[side] for side in ("client", "server") if side in ssh} or None


# keyed per process (flow.pxi): nobody outside picks where a tuple lands in the flow table
flow_hash_key = int.from_bytes(os.urandom(8), "little")

BUILD_INFO = {"hyperscan": hs_version().decode(), "io": "AF_PACKET TPACKET_V2"}
# protocols that upgrade to TLS in the same connection (STARTTLS, AUTH TLS), and what they are then called
STARTTLS_VARIANTS = {"ftp": "ftps", "smtp": "smtps", "pop3": "pop3s", "imap": "imaps"}


# ---------------------------------------------------------------- the engine

DEFAULT_TIMEOUTS = {"tcp_syn": 30.0, "tcp_established": 3600.0, "tcp_closing": 30.0, "tcp_closed": 5.0,
                    "udp": 30.0, "icmp": 10.0, "other": 30.0}


cdef class Engine:
    """Ports, the flow table and the loop. One engine runs on one thread."""

    cdef engine_t *e
    cdef Tables current
    cdef list port_names
    cdef readonly uint32_t flow_capacity
    cdef uint32_t capture_bytes
    cdef readonly double wall_offset
    cdef dict kernel_drops   # port index -> drops reported by PACKET_STATISTICS so far
    cdef list app_names      # app id -> name, of the catalogue in force
    cdef dict rulesets       # InspectTables id -> InspectTables, for alert events
    cdef dict vsys_slots     # vsys name -> slot of engine_t.vsys (tenancy.pxi): stable across generations
    cdef object state_view   # the shared state memory the flow table lives in (kept exported while we use it)
    cdef readonly dict state_layout
    cdef object request_lock  # one loop request at a time (session.pxi)
    cdef UserTable users_current  # the user table the loop reads (userid.pxi), kept alive here
    cdef int bypass_filter_fd  # the wire program's ring filter, attached to every ring socket (bypass.pxi)
    # replay: a frame of any link type rewritten as Ethernet, one buffer for every capture (not one per file)
    cdef uint8_t *replay_frame
    # drain_flow_json: the name tables of the last call, and the longest record their names can make
    cdef tuple flow_json_names
    cdef size_t flow_json_cap

    def __cinit__(self, uint32_t flow_capacity=262144, dict timeouts=None, uint32_t event_capacity=65536,
                  uint32_t burst=64, double idle_spin_us=200.0, double idle_spin_quiet_us=20000.0,
                  bint replay=False, int unmanaged_vsys=-1,
                  uint32_t appid_slots=1024, uint32_t appid_max_pkts=8, uint32_t appid_budget=8,
                  inspect_slots=None, state=None, uint32_t capture_bytes=1 << 22):
        """`state`: a writable buffer of `state_layout(flow_capacity, inspect_slots)["size"]` zeroed (or
        previously used by nothing else) bytes -- a shared-memory file, so the flow table, host names and
        inspection positions outlive this process (ngfw.dataplane.state); None: the heap."""
        cdef uint32_t i
        cdef uint8_t *mem = NULL
        cdef unsigned char[:] view
        n_insp = flow_capacity if inspect_slots is None else inspect_slots
        layout = None
        if state is not None:
            layout = state_layout(flow_capacity, n_insp)
            view = state
            if view.shape[0] < layout["size"]:
                raise ValueError(f"the state memory holds {view.shape[0]} bytes, the layout needs {layout['size']}")
            mem = &view[0]
            self.state_view = view
            self.state_layout = layout
        self.e = <engine_t *>calloc(1, sizeof(engine_t))
        if self.e == NULL:
            raise MemoryError("not enough memory for the engine")
        self.e.notify_fd = -1
        self.e.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        # each stage allocates its own; __dealloc__ frees them in the reverse order
        l2_init(self.e)
        flows_init(self.e, flow_capacity, <flow_t *>state_region(mem, layout, "flows_off"))
        events_init(self.e, event_capacity)
        # the capture ring is allocated when a policy or an operator first asks for capture: replay makes an
        # engine per capture size, and zeroing megabytes each time was a tenth of replaying the App-ID corpus
        self.capture_bytes = capture_bytes
        self.flow_capacity = flow_capacity
        self.e.burst = burst
        if idle_spin_us < 0 or idle_spin_quiet_us < 0:
            raise ValueError("idle_spin_us and idle_spin_quiet_us must not be negative")
        self.e.idle_spin_ns = <uint64_t>(idle_spin_us * 1000.0)
        self.e.idle_spin_quiet_ns = <uint64_t>(max(idle_spin_quiet_us, idle_spin_us) * 1000.0)
        appid_state_init(self.e, appid_slots, _host_slots(flow_capacity), <char *>state_region(mem, layout, "host_off"),
                         state_region(mem, layout, "host_lens_off"), appid_max_pkts, appid_budget)
        inspect_workspace_init(self.e, n_insp, <inspslot_t *>state_region(mem, layout, "insp_off"), replay)
        self.rulesets = {}
        self.vsys_slots = {}
        import threading
        self.request_lock = threading.Lock()
        # replay: what differs from a live port is keyed on the mode (docs/dataplane.md, "Live and replay")
        self.e.mode = MODE_REPLAY if replay else MODE_LIVE
        self.e.log_all = replay
        self.e.unmanaged_vsys = unmanaged_vsys
        self.e.flow_id_salt = int.from_bytes(os.urandom(8), "little")
        self.e.bypass_fd = -1
        self.bypass_filter_fd = -1
        for i in range(MAX_PORTS):
            self.e.bypass_peer[i] = -1
        self.e.notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self.e.notify_fd < 0:
            raise OSError(errno, "cannot create the engine's port notification eventfd")
        self.port_names = []
        self.app_names = [""]
        self.kernel_drops = {}
        self.set_timeouts(timeouts or {})
        self.wall_offset = 0.0 if replay else time.time() - time.monotonic()

    def set_timeouts(self, dict timeouts):
        merged = dict(DEFAULT_TIMEOUTS)
        for name, value in timeouts.items():
            if name not in merged:
                raise ValueError(f"unknown timeout {name!r}; known: {', '.join(merged)}")
            if value <= 0:
                raise ValueError(f"timeout {name} must be positive, got {value}")
            merged[name] = float(value)
        for i, name in enumerate(TIMEOUT_NAMES):
            self.e.timeouts_ns[i] = <uint64_t>(merged[name] * 1e9)

    def __dealloc__(self):
        if self.e != NULL:
            ports_close(self.e)
            inspect_workspace_free(self.e)
            capture_free(self.e)
            appid_state_free(self.e)
            events_free(self.e)
            flows_free(self.e)
            l2_free(self.e)
            free(self.replay_frame)
            if self.e.wake_fd >= 0:
                close(self.e.wake_fd)
            if self.e.notify_fd >= 0:
                close(self.e.notify_fd)
            free(self.e)
            self.e = NULL

    # ---- ports
    def add_ring_port(self, str name, int ifindex, uint32_t mtu, int32_t segment,
                      uint32_t rx_frames=4096, uint32_t tx_frames=4096, int fanout_group=-1,
                      int fanout_prog_fd=-1) -> int:
        """Attach an AF_PACKET TPACKET_V2 ring to link `ifindex`; raises OSError naming the link. Workers
        (io.pxi): `fanout_prog_fd` makes a new fanout group running that program (`fanout_group(index)` tells
        its id), `fanout_group` joins that group."""
        cdef fanout_t fanout = fanout_of(fanout_group, fanout_prog_fd)
        return port_add_ring(self, name, ifindex, mtu, segment, rx_frames, tx_frames,
                             &fanout if fanout_group >= 0 or fanout_prog_fd >= 0 else NULL)

    def add_tap_port(self, str name, int fd, uint32_t mtu, int32_t segment) -> int:
        """Use an open, non-blocking TAP descriptor (IFF_TAP | IFF_NO_PI) as a port."""
        return port_add_tap(self, name, fd, mtu, segment)

    def add_memory_port(self, str name, int32_t segment, uint32_t mtu=1500, uint32_t capacity=1 << 22) -> int:
        """A port whose transmitted frames are kept for `take_tx` (tests, replay)."""
        return port_add_memory(self, name, segment, mtu, capacity)

    def add_sink_port(self, str name, int32_t segment, uint32_t mtu=65535) -> int:
        """A port that counts and discards what it is given (the far side of a replay)."""
        return port_add_sink(self, name, segment, mtu)

    def replay_capture(self, const unsigned char[:] data, uint16_t port) -> dict:
        """Run every packet of a pcap/pcapng capture held in `data` through the pipeline as if it
        arrived on `port`, on the capture's clock. A damaged file stops at the damage: the result
        names the problem and its byte offset; what came before it was processed."""
        return replay_capture_run(self, data, port)

    @property
    def ports(self) -> list:
        return list(self.port_names)

    # ---- links that come and go (ports.pxi): a port's interface replaced while the loop runs
    def fanout_group(self, uint16_t index) -> int:
        """The fanout group port `index`'s socket is in (-1: none, or not a ring port)."""
        return port_fanout_group(self, index)

    def reattach_ring_port(self, uint16_t index, int ifindex, uint32_t mtu, uint32_t rx_frames=4096,
                           uint32_t tx_frames=4096, double timeout=2.0, int fanout_group=-1,
                           int fanout_prog_fd=-1) -> None:
        """The port's interface is back (re-created under its name, or its MTU changed): a new AF_PACKET ring on
        link `ifindex` replaces the port's; the old one is unmapped and closed once the loop and the TX thread
        let go of it. The port keeps its index, segment and counters. Raises OSError naming the link (the port
        stays as it was)."""
        cdef fanout_t fanout = fanout_of(fanout_group, fanout_prog_fd)
        port_reattach_ring(self, index, ifindex, mtu, rx_frames, tx_frames, timeout,
                           &fanout if fanout_group >= 0 or fanout_prog_fd >= 0 else NULL)

    def reattach_tap_port(self, uint16_t index, int fd, uint32_t mtu, double timeout=2.0) -> int:
        """A re-created TAP device's descriptor (open, non-blocking, IFF_TAP | IFF_NO_PI) replaces the port's.
        Returns the old descriptor (-1: none), which the caller closes: the loop no longer uses it."""
        return port_reattach_tap(self, index, fd, mtu, timeout)

    def detach_port(self, uint16_t index, double timeout=2.0) -> int:
        """The port's interface is gone: the loop lets go of it, and frames for the port are dropped
        (`port_down`) until a reattach. A ring is unmapped and closed here; a TAP descriptor is returned for the
        caller to close (-1 for a ring, or when the port had none)."""
        return port_detach(self, index, timeout)

    def set_port_down(self, uint16_t index, bint down) -> None:
        """Whether the port's link is down (netlink says so): frames for it are dropped as `port_down`."""
        if index >= self.e.n_ports:
            raise ValueError(f"no port {index}")
        ngfw_store_u32(&self.e.ports[index].down, down)

    def port_states(self) -> list:
        """Per port: {"name", "attached" (it has an interface), "down" (its link is down), "mtu"}."""
        cdef uint32_t i
        return [{"name": self.port_names[i], "attached": not ngfw_load_u32(&self.e.ports[i].detached),
                 "down": bool(ngfw_load_u32(&self.e.ports[i].down)), "mtu": self.e.ports[i].mtu}
                for i in range(self.e.n_ports)]

    @property
    def port_notify_fd(self) -> int:
        """An eventfd that becomes readable when the loop finds a port's device gone (a deleted TAP)."""
        return self.e.notify_fd

    # ---- policy
    def set_tables(self, Tables tables, double timeout=2.0) -> None:
        """Swap in a new policy generation; returns once the loop uses it (or at once when stopped)."""
        tables_swap_in(self, tables, timeout)

    @property
    def tables(self):
        return self.current

    # ---- User-ID (userid.pxi)
    def set_users(self, UserTable users, double timeout=2.0) -> None:
        """Swap in a new user table; returns once the loop uses it (or at once when stopped). Rule tables
        stay as they are; flows a `users:` condition decided look their user up again on their next packet."""
        users_swap_in(self, users, timeout)

    @property
    def users(self):
        return self.users_current

    # ---- running
    def run(self) -> None:
        """Forward until `stop()`; the GIL is released for the whole loop."""
        ngfw_store_u32(&self.e.stop, 0)
        with self.request_lock:   # a request served directly must not overlap the loop's start
            ngfw_store_u32(&self.e.running, 1)
        try:
            with nogil:
                run_loop(self.e)
        finally:
            adopt_tables(self.e)
            ngfw_store_u32(&self.e.running, 0)
            take_request(self.e, ngfw_now_ns())   # one posted as the loop ended
            take_port_request(self.e)

    def use_tx_thread(self) -> None:
        """Flush TX rings from a second thread (`run_tx`) instead of the packet loop."""
        cdef uint32_t i
        for i in range(self.e.n_ports):
            self.e.ports[i].tx_async = 1

    def run_tx(self) -> None:
        """The TX flushing thread's body (see `use_tx_thread`); returns after `stop()`."""
        ngfw_store_u32(&self.e.tx_running, 1)
        try:
            with nogil:
                run_tx_loop(self.e)
        finally:
            ngfw_store_u32(&self.e.tx_running, 0)

    def stop(self) -> None:
        ngfw_store_u32(&self.e.stop, 1)

    def progress_ns(self) -> int:
        """CLOCK_MONOTONIC (ns) of the packet loop's latest turn; 0 before it ran. A loop that runs
        turns at least every 10 ms, so a value that stops moving means a stalled loop (watchdogs)."""
        return ngfw_load_u64(&self.e.progress_ns)

    def set_heartbeat_address(self, size_t address) -> None:
        """Also store the loop's clock at `address` (a 64-bit word that outlives this process, such as a
        memory-mapped BPF array value read by the fail-open wire program); 0 stops it. The caller keeps
        the memory mapped for as long as the engine exists."""
        ngfw_store_ptr(<void **>&self.e.heartbeat, <void *>address)

    def inject(self, uint16_t port, bytes frame, now_ns=None) -> None:
        """Run one frame through the pipeline as if it arrived on `port` (never while `run` is active)."""
        cdef uint64_t now = ngfw_now_ns() if now_ns is None else <uint64_t>now_ns
        cdef uint32_t i
        if port >= self.e.n_ports:
            raise ValueError(f"no port {port}")
        if ngfw_load_u32(&self.e.running):
            raise RuntimeError("inject() while the loop is running")
        process_frame(self.e, port, <const uint8_t *><const char *>frame, <uint32_t>len(frame), 0, now)
        for i in range(self.e.n_ports):
            port_flush(&self.e.ports[i])

    def take_tx(self, uint16_t port) -> list:
        """Frames a memory port transmitted since the last call."""
        cdef port_t *p = &self.e.ports[port]
        cdef uint32_t off = 0, n
        out = []
        if p.kind != PORT_MEM:
            raise ValueError(f"port {self.port_names[port]} is not a memory port")
        while off < p.mem_used:
            memcpy(&n, p.mem_buf + off, 4)
            out.append((<char *>p.mem_buf)[off + 4:off + 4 + n])
            off += 4 + n
        p.mem_used = 0
        return out

    def expire(self, now_ns=None) -> None:
        """Sweep the whole flow table at `now_ns` (tests; the loop sweeps by itself)."""
        cdef uint64_t now = ngfw_now_ns() if now_ns is None else <uint64_t>now_ns
        self.e.last_sweep = 0
        self.e.flows.sweep_cursor = 0
        sweep_flows(self.e, now if now > 1000000000 else 1000000000, self.e.flows.mask + 1)

    def end_all_flows(self) -> None:
        """Emit a `shutdown` flow event for every logged flow and empty the table (after `stop`)."""
        flows_end_all(self)

    def replay_reset(self) -> None:
        """Between two captures replayed by one engine, after `end_all_flows`: forget what belonged to the
        last one's packets and clock (fragments, learnt MACs, the sweep clock, quota buckets), so the next
        capture runs as it would on a fresh engine. Flow ids go on counting."""
        replay_engine_reset(self)

    # ---- session state (session.pxi): requests served on the loop's thread
    def export_sessions(self, int workload=-1, uint64_t changed_since=0, bint streams=False, bint hand_over=False,
                        uint32_t cursor=0, uint32_t limit=0, bint only_allowed=True, double timeout=10.0,
                        now_ns=None) -> dict:
        """Flows as session records (bytes; `decode_records` reads them): every flow, or those with
        workload index `workload` (of the running tables) at either end, changed since `changed_since`
        (engine clock ns), from flow slot `cursor` on, at most `limit`. `hand_over`: a cut-over -- the
        exported flows are the destination's now (they linger here unlogged). Returns {"records",
        "keys" (every matching flow's key, changed or not), "count", "cursor" (of the next page, 0: done),
        "now" (the engine clock the records were taken at)}."""
        return sessions_export(self, workload, changed_since, streams, hand_over, cursor, limit, only_allowed,
                               timeout, now_ns)

    # ---- the operator's view of the flow table (session_view.pxi): requests served on the loop's thread
    def list_sessions(self, dict flow_filter, uint32_t cursor=0, uint32_t limit=1000, uint32_t max_scan=16384,
                      double timeout=5.0, now_ns=None) -> dict:
        """Flows matching `flow_filter` (ngfw.dataplane.sessions builds it: indexes of the running tables
        and of the generations flows were decided by), from flow slot `cursor` on, at most `limit` of them,
        looking at no more than `max_scan` slots (0: all). Returns {"sessions": [flow dicts, as `flows()`
        makes them, plus `inspected`, `threat`, `classifying`, `migrating`, `cut`, `age_ns`, `idle_ns`],
        "cursor" (of the next request; 0: the table's end), "scanned", "now" (engine clock), "loop_ns" (how
        long the request held the loop)}."""
        return sessions_list(self, flow_filter, cursor, limit, max_scan, timeout, now_ns)

    def clear_sessions(self, dict flow_filter, bint silent=False, uint32_t cursor=0, uint32_t max_scan=16384,
                       double timeout=5.0, now_ns=None) -> dict:
        """End the flows matching `flow_filter` from slot `cursor` on (at most `max_scan` slots looked at): each
        logged one's EVE record says `cleared`; a TCP connection is reset both ways at its next segment unless
        `silent`. Returns {"cleared", "resets" (connections to be reset), "cursor" (0: the end), "scanned"}."""
        return sessions_clear(self, flow_filter, silent, cursor, max_scan, timeout, now_ns)

    def table_slots(self) -> int:
        """Slots of the flow table (a listing's cursor runs over 0..table_slots())."""
        return self.e.flows.mask + 1

    def import_sessions(self, const unsigned char[:] records, exporter_apps=None, bint migration=False,
                        int require_workload=-1, double timeout=10.0, now_ns=None) -> dict:
        """Import session records, each checked and decided again by the running policy. `exporter_apps`:
        the exporter's app names by id (None: this catalogue); `migration`: records of a move (imported
        flows may be updated or removed by a later transfer of it); `require_workload`: every record must
        have that workload (running tables' index) at one end. Returns {"results": {result: count}, ...}."""
        return sessions_import(self, records, exporter_apps, migration, require_workload, timeout, now_ns)

    def adopt_sessions(self, const unsigned char[:] old, dict old_layout, exporter_apps=None,
                       double timeout=30.0, now_ns=None) -> dict:
        """Import every flow of a dead dataplane's state memory `old` (laid out as `old_layout`, which the
        caller checked has this build's fingerprint), each checked and decided again by the running policy."""
        return sessions_adopt(self, old, old_layout, exporter_apps, timeout, now_ns)

    def forget_presence(self, int workload, double timeout=10.0) -> None:
        """The workload (running tables' index) left this host: its next frame here is an arrival again."""
        cdef sess_req_t *q = <sess_req_t *>calloc(1, sizeof(sess_req_t))
        if q == NULL:
            raise MemoryError()
        try:
            q.kind = REQ_FORGET_PRESENCE
            q.workload = workload
            session_serve(self, q, timeout)
        finally:
            free(q)

    def allow_midstream(self, double seconds) -> None:
        """For `seconds` from now, a TCP segment of a connection this engine does not know starts a flow (decided by
        the policy, as a capture picked up mid-stream is) instead of being dropped as `tcp_not_syn`: connections
        opened while a fail-open wire let the kernel forward go on once their policy allows them."""
        ngfw_store_u64(&self.e.midstream_until_ns, ngfw_now_ns() + <uint64_t>(max(seconds, 0.0) * 1e9))

    def clock_ns(self) -> int:
        """The engine's clock (CLOCK_MONOTONIC ns), the one flow timestamps are on."""
        return ngfw_now_ns()

    def set_port_vm_side(self, uint16_t port, bint vm_side) -> None:
        """Whether `port` faces the workloads: a workload's first frame there is an arrival (EV_ARRIVAL)."""
        if port >= self.e.n_ports:
            raise ValueError(f"no port {port}")
        self.e.ports[port].vm_side = vm_side

    # ---- observability
    @property
    def events_lost(self) -> int:
        """`stats()["events_lost"]` alone: a replay reads it after every file."""
        return self.e.events.lost

    def stats(self) -> dict:
        return engine_stats(self)

    def vsys_stats(self) -> dict:
        """Per vsys name: {sessions, max_sessions, new_sessions_per_second, drops: {reason: n}} (tenancy.pxi)."""
        if self.current is None:
            return tenancy_stats(self.e.vsys, self.vsys_slots, NULL, ())
        return tenancy_stats(self.e.vsys, self.vsys_slots, &self.current.t, tuple(self.current.policy.vsys))

    def inspect_stats(self) -> dict:
        """Threat inspection counters; `alerts` is {(vsys index or -1, severity, blocked): count}, `suppressed`
        {(vsys index or -1, reason): matches that raised no alert} (SUPPRESS_REASONS)."""
        return inspect_stats_dict(self)

    def flows(self) -> list:
        """The flow table as dicts (debugging and tests; O(capacity))."""
        return flows_list(self)

    # ---- flow bypass (bypass.pxi)
    def enable_bypass(self, int map_fd, int filter_fd, dict ports) -> None:
        """Bypass flows through the wire program's map `map_fd`; `ports`: port index -> (ifindex, peer port
        index) of every port whose interface carries the program. The ring filter `filter_fd` is attached to
        those ports' sockets, so frames the kernel forwards are not copied to the rings. The loop may run:
        the map descriptor is stored last, and the programs look nothing up until the caller turns them on."""
        bypass_enable(self, map_fd, filter_fd, ports)

    def attach_ring_filter(self, int filter_fd, list port_indexes) -> None:
        """Attach the wire program's ring filter `filter_fd` to the sockets of these ring ports (and of the
        rings that replace them later): flow bypass and the SYN admission limits keep frames out of the rings
        with it (bypass.pxi, docs/dataplane.md)."""
        bypass_attach_ring_filter(self, filter_fd, port_indexes)

    def set_bypass_ifindex(self, uint16_t index, uint32_t ifindex) -> None:
        """Port `index`'s interface was re-created as `ifindex` (the wire program runs there now); flows
        bypassed on the old interface come back to the loop at their next frame and are bypassed anew."""
        if index < self.e.n_ports and self.e.bypass_ifindex[index]:
            ngfw_store_u32(&self.e.bypass_ifindex[index], ifindex)

    def bypass_enabled(self) -> bool:
        return self.e.bypass_fd >= 0

    def bypass_stats(self) -> dict:
        return {"flows": self.e.bypass_flows, "active": self.e.bypass_active, "packets": self.e.bypass_packets,
                "bytes": self.e.bypass_bytes, "map_full": self.e.bypass_map_full, "errors": self.e.bypass_errors,
                "enabled": self.e.bypass_fd >= 0}

    def drain_flow_json(self, bytes pcap_file, tuple vsys, tuple workloads, tuple rules, tuple apps,
                        tuple protos, tuple actions, bytes default_rule) -> bytes:
        """Replay's fast path: the flow events in the ring as JSON lines, each the bytes orjson writes for the
        record `ngfw.dataplane.replay.Replayer.record` builds from an event dict, plus a newline, in order of the
        flows' first packet (start, then flow id: as Python sorts (start, flow_id, line)); other events are
        dropped. Every name argument is pre-encoded JSON (`json_quote`): `pcap_file`; `vsys`, `workloads`,
        `rules` by index (null for an empty name); `apps[app id]` the `"app_proto":...,"app":...` pair;
        `protos[0..255]`; `actions`. Lines are sorted and joined here: a tuple per line sorted in Python was a
        fifth of replaying a small capture."""
        return flow_json_drain(self, pcap_file, vsys, workloads, rules, apps, protos, actions, default_rule)

    def capture_matching(self, double seconds, uint32_t packets, int workload=-1, object network=None,
                         int port=0, int proto=0) -> None:
        """For `seconds` from now, flows that match and capture nothing yet copy their next `packets` frames to
        the capture ring (an operator's capture): `workload` (index in the tables in force) at either end,
        an address in `network` (an ipaddress network) at either end, `port` either port, `proto`."""
        capture_match(self, seconds, packets, workload, network, port, proto)

    def drain_captures(self, uint32_t max_frames=4096) -> list:
        """Take up to `max_frames` captured frames from the capture ring (capture.pxi), each
        (flow_id, vsys, generation, kind, mode, time, in_port, origlen, frame): `kind` "frame" or "alert",
        `mode` "flow" (write it) or "alert" (keep it back until the flow alerts)."""
        return capture_drain(self, max_frames)

    def drain_events(self, uint32_t max_events=4096) -> list:
        """Take up to `max_events` flow/drop events from the ring (Python side of the SPSC ring)."""
        cdef evring_t *r = &self.e.events
        cdef uint32_t i, n = min(evring_pending(r), max_events)
        out = [event_dict(self, evring_peek(r, i)) for i in range(n)]
        evring_take(r, n)
        return out

    @property
    def drop_reasons(self) -> tuple:
        return DROP_REASONS[1:]
