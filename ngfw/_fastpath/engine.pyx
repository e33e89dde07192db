# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The ngfw fastpath: one compiled extension, one include per pipeline stage.

Python builds `Tables` from a compiled policy and hands ports to an `Engine`; `Engine.run`
then forwards frames with the GIL released. Python sees counters when it asks (`stats`) and
flow/drop events through a ring it drains (`drain_events`).
"""

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

import json
import os
import time


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


# ---------------------------------------------------------------- helpers for Python <-> C

cdef ip128_t ip_from_int(object value) except *:
    """A 128-bit integer (network order when written big-endian) as an ip128_t."""
    cdef ip128_t out
    cdef bytes raw = value.to_bytes(16, "big")
    memcpy(&out.hi, <const char *>raw, 8)
    memcpy(&out.lo, (<const char *>raw) + 8, 8)
    return out

cdef ip128_t ip_to_c(object addr) except *:
    cdef ip128_t out
    cdef bytes raw
    if addr.version == 4:   # an ipaddress address (the module is not imported here: replay starts faster)
        raw = b"\x00" * 10 + b"\xff\xff" + addr.packed
    else:
        raw = addr.packed
    memcpy(&out.hi, <const char *>raw, 8)
    memcpy(&out.lo, (<const char *>raw) + 8, 8)
    return out

cdef extern from "arpa/inet.h" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, uint32_t size)
    int AF_INET
    int AF_INET6


cdef extern from *:
    # a hint, never a fault: a page given back stays given back (flow.pxi)
    void __builtin_prefetch(const void *p) noexcept nogil

cdef enum:
    END_SCAN_AHEAD = 24   # slots end_all_flows asks the memory for ahead of the one it looks at


cdef int ip_text(ip128_t ip, bint v6, char *text) noexcept nogil:
    """inet_ntop's text of an address into `text` (64 bytes) and its length; -1 for an IPv6 address in ::/80
    (IPv4-mapped and -compatible), which inet_ntop writes with a dotted quad and Python's ipaddress does not."""
    cdef uint8_t raw[16]
    cdef int i, n = 0
    cdef uint8_t octet
    memcpy(raw, &ip.hi, 8)
    memcpy(raw + 8, &ip.lo, 8)
    if not v6:
        # inet_ntop's dotted quad, without its sprintf: two per flow record were a tenth of replaying a capture
        for i in range(12, 16):
            octet = raw[i]
            if octet >= 100:
                text[n] = 48 + octet // 100
                n += 1
            if octet >= 10:
                text[n] = 48 + (octet // 10) % 10
                n += 1
            text[n] = 48 + octet % 10
            text[n + 1] = 46
            n += 2
        text[n - 1] = 0
        return n - 1
    for i in range(10):
        if raw[i]:
            break
    else:
        return -1
    inet_ntop(AF_INET6, raw, text, 64)
    return <int>strlen(text)


cdef object ip_from_c(ip128_t ip, bint v6):
    """The text form Python's ipaddress gives, by inet_ntop (every flow record formats two of these)."""
    cdef uint8_t raw[16]
    cdef char text[64]
    cdef int n = ip_text(ip, v6, text)
    if n >= 0:
        return text[:n].decode("ascii")
    import ipaddress

    memcpy(raw, &ip.hi, 8)
    memcpy(raw + 8, &ip.lo, 8)
    return str(ipaddress.IPv6Address(bytes(raw[:16])))

cdef uint64_t mac_to_c(bytes mac) except? 0:
    cdef uint64_t v = 0
    if len(mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
    memcpy(&v, <const char *>mac, 6)
    return v


ACTION_NAMES = ("allow", "deny", "reject")
L3_NAMES = ("none", "arp", "ipv4", "ipv6")


cdef object _name(tuple names, Py_ssize_t i):
    # bounds-checked by hand: the module is compiled with boundscheck off
    return names[i] if 0 <= i < len(names) else str(i)


def decode(bytes frame) -> dict:
    """Decode one frame with the fastpath's decoder (for tests and tools)."""
    cdef pkt_t p
    cdef int reason = decode_frame(&p, <const uint8_t *><const char *>frame, <uint32_t>len(frame))
    out = {"reason": _name(DROP_REASONS, reason) if reason else None, "l3": _name(L3_NAMES, p.l3),
           "vlan": p.vlan, "ethertype": p.ethertype, "proto": p.proto, "is_fragment": bool(p.is_frag),
           "first_fragment": bool(p.frag_first), "sport": p.sport, "dport": p.dport,
           "tcp_flags": p.tcp_flags, "icmp_type": p.icmp_type, "icmp_code": p.icmp_code,
           "payload_len": p.payload_len}
    if p.l3 == L3_IPV4 or p.l3 == L3_IPV6 or p.arp_ipv4:
        out["src_ip"] = ip_from_c(p.src_ip, p.is_v6)
        out["dst_ip"] = ip_from_c(p.dst_ip, p.is_v6)
    return out


# ---------------------------------------------------------------- session state memory

STATE_HEADER_BYTES = 4096       # ngfw.dataplane.state writes the header here
STATE_NAMES_BYTES = 65536       # ... and the catalogue's app names (a dead process's app ids mean those)


cdef uint32_t _host_slots(uint32_t flow_capacity):
    return max(flow_capacity // 2, 16)


cdef size_t _page_up(size_t n):
    return (n + 4095) & ~(<size_t>4095)


def state_fingerprint() -> str:
    """What a state file's memory means: the offset of every field a dead process's table is read by,
    the sizes of its structs and limits. Two builds whose fingerprints differ cannot read each other's
    tables (a new build says so once and starts empty)."""
    cdef flow_t f
    cdef inspslot_t s
    cdef char *fb = <char *>&f
    cdef char *sb = <char *>&s
    import hashlib

    flow_fields = [<char *>&f.key - fb, <char *>&f.used - fb, <char *>&f.init_is_a - fb, <char *>&f.tcp_state - fb,
                   <char *>&f.action - fb, <char *>&f.fin_seen - fb, <char *>&f.syn_seen - fb, <char *>&f.is_v6 - fb,
                   <char *>&f.in_port - fb, <char *>&f.flow_id - fb, <char *>&f.ts_first - fb, <char *>&f.ts_last - fb,
                   <char *>&f.pkts - fb, <char *>&f.bytes - fb, <char *>&f.data_seq - fb, <char *>&f.app - fb,
                   <char *>&f.app_state - fb, <char *>&f.app_conf - fb, <char *>&f.app_pkts - fb,
                   <char *>&f.pl_pkts - fb, <char *>&f.host - fb, <char *>&f.insp - fb, <char *>&f.threat - fb,
                   <char *>&f.host_extra - fb, <char *>&f.mig - fb]
    insp_fields = [<char *>&s.win - sb, <char *>&s.inspected - sb, <char *>&s.body_left - sb,
                   <char *>&s.tail_len - sb, <char *>&s.done - sb, <char *>&s.n_bits - sb,
                   <char *>&s.passed - sb, <char *>&s.http_body - sb, <char *>&s.tls_done - sb,
                   <char *>&s.h2_state - sb, <char *>&s.h2_skip - sb, <char *>&s.bits - sb, <char *>&s.tail - sb]
    text = (f"sess{SESS_VERSION} flow{sizeof(flow_t)}:{flow_fields} key{sizeof(flow_key_t)} "
            f"insp{sizeof(inspslot_t)}:{insp_fields} host{HOST_MAX} tail{TAIL_MAX} bits{FLOWBITS_MAX} "
            f"rec{sizeof(sess_rec_t)}")
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def record_format() -> str:
    """What a session record's bytes mean: batches (snapshots, migrations) of another format are refused."""
    return (f"sess{SESS_VERSION}-rec{sizeof(sess_rec_t)}-key{sizeof(flow_key_t)}-host{HOST_MAX}-tail{TAIL_MAX}"
            f"-bits{FLOWBITS_MAX}-{__import__('sys').byteorder}")


def state_layout(uint32_t flow_capacity, uint32_t inspect_slots) -> dict:
    """Where the flow table, host names and inspection positions sit in a state file (byte offsets)."""
    cdef size_t off = STATE_HEADER_BYTES + STATE_NAMES_BYTES
    cdef uint32_t slots = flowtable_slots(flow_capacity)
    cdef uint32_t n_host = _host_slots(flow_capacity)
    out = {"fingerprint": state_fingerprint(), "flow_capacity": flow_capacity, "inspect_slots": inspect_slots,
           "header_bytes": STATE_HEADER_BYTES, "names_off": STATE_HEADER_BYTES, "names_bytes": STATE_NAMES_BYTES,
           "slots": slots, "flow_bytes": sizeof(flow_t), "n_host": n_host, "insp_bytes": sizeof(inspslot_t)}
    out["flows_off"] = off
    off += _page_up(<size_t>slots * sizeof(flow_t))
    out["host_off"] = off
    off += _page_up(<size_t>n_host * HOST_MAX)
    out["host_lens_off"] = off
    off += _page_up(<size_t>n_host + 1)
    out["insp_off"] = off
    off += _page_up(<size_t>inspect_slots * sizeof(inspslot_t))
    out["size"] = off
    return out


def decode_records(const unsigned char[:] data) -> list:
    """Session records as dicts (tests, tools and the sessions listing; the fastpath never needs this).
    Stops at the first record that is not well formed."""
    cdef size_t off = 0, n = data.shape[0]
    cdef const sess_rec_t *r
    cdef const uint8_t *base = &data[0] if n else NULL
    out = []
    while off + sizeof(sess_rec_t) <= n:
        r = <const sess_rec_t *>(base + off)
        if not record_well_formed(r, n - off):
            break
        a = ip_from_c(ip128_t(hi=r.key.a_hi, lo=r.key.a_lo), r.is_v6)
        b = ip_from_c(ip128_t(hi=r.key.b_hi, lo=r.key.b_lo), r.is_v6)
        client, server = (((a, r.key.a_port), (b, r.key.b_port)) if r.init_is_a
                          else ((b, r.key.b_port), (a, r.key.a_port)))
        rec = {"src_ip": client[0], "src_port": client[1], "dest_ip": server[0], "dest_port": server[1],
               "proto": r.key.proto, "vlan": r.key.vlan, "flow_id": r.flow_id,
               "tombstone": bool(r.flags & SF_TOMBSTONE)}
        if not (r.flags & SF_TOMBSTONE):
            rec.update({
                "tcp_state": _name(TCP_STATE_NAMES, r.tcp_state), "age_ns": r.age_ns, "idle_ns": r.idle_ns,
                "pkts_toserver": r.pkts[0], "pkts_toclient": r.pkts[1], "bytes_toserver": r.bytes[0],
                "bytes_toclient": r.bytes[1], "app": r.app if r.app_state == APPST_DONE else 0,
                "action": _name(ACTION_NAMES, r.action), "threat": r.threat,
                "host": host_fields((<const char *>r + sizeof(sess_rec_t))[:r.host_len])[0],
                "inspection": None,
            })
            if r.flags & SF_INSP:
                rec["inspection"] = {"inspected": [r.i_inspected[0], r.i_inspected[1]],
                                     "done": [bool(r.i_done[0]), bool(r.i_done[1])],
                                     "next_seq": [r.i_next_seq[0], r.i_next_seq[1]],
                                     "streams": [r.stream_len[0], r.stream_len[1]]}
        out.append(rec)
        off += r.rec_len
    return out


def tombstones(const unsigned char[:] keys) -> bytes:
    """Tombstone records for packed flow keys (as `Engine.export_sessions` lists them): "this flow ended
    at the exporter after an earlier transfer" -- the importer drops the copy that transfer made."""
    cdef size_t n = keys.shape[0] // sizeof(flow_key_t), i
    cdef sess_rec_t r
    out = bytearray()
    for i in range(n):
        memset(&r, 0, sizeof(r))
        r.version = SESS_VERSION
        r.flags = SF_TOMBSTONE
        r.rec_len = align8(sizeof(sess_rec_t))
        memcpy(&r.key, &keys[i * sizeof(flow_key_t)], sizeof(flow_key_t))
        r.is_v6 = 0 if v4_mapped(r.key.a_hi, r.key.a_lo) and v4_mapped(r.key.b_hi, r.key.b_lo) else 1
        out += (<char *>&r)[:sizeof(sess_rec_t)]
    return bytes(out)


# ---------------------------------------------------------------- compiled-database cache

def _hs_cache_file(prefix, h):
    """Where a Hyperscan database whose inputs hash to `h` is kept: compiling takes seconds, loading
    milliseconds."""
    from ngfw.compiler.catalogue import cache_dir
    return os.path.join(str(cache_dir()), f"{prefix}-{h.hexdigest()[:32]}.db")


def _hs_cache_path(signatures):
    """The cache file of the App-ID catalogue's signature database."""
    import hashlib
    h = hashlib.sha256(hs_version())
    for i, sig in enumerate(signatures):
        h.update(f"{i}\0{sig.hs_flags}\0{sig.pattern}\0".encode("utf-8", "surrogateescape"))
    return _hs_cache_file("hs-block", h)


cdef hs_database_t *_hs_cache_load(str path):
    cdef hs_database_t *db = NULL
    cdef bytes data
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return NULL
    if hs_deserialize_database(data, len(data), &db) != HS_SUCCESS:
        return NULL   # stale or from another libhs: compile afresh
    return db


cdef void _hs_cache_store(str path, hs_database_t *db):
    cdef char *raw = NULL
    cdef size_t n = 0
    if hs_serialize_database(db, &raw, &n) != HS_SUCCESS:
        return
    try:
        data = raw[:n]
    finally:
        free(raw)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass   # a cache that cannot be written only costs time


# ---------------------------------------------------------------- policy tables

cdef class Tables:
    """One policy generation in C memory; built off the hot path, then handed to `Engine.set_tables`."""

    cdef tables_t t
    cdef readonly object policy
    cdef readonly double build_seconds
    cdef readonly list app_names
    cdef readonly InspectTables inspect
    cdef readonly list profile_tables   # InspectTables each profile uses (kept alive with the tables)
    cdef readonly Tables apps_owner   # the generation whose App-ID tables these share (None: their own)

    def __cinit__(self):
        memset(&self.t, 0, sizeof(tables_t))

    def __init__(self, policy, port_index=None, InspectTables inspect=None, generation=None, Tables apps_from=None):
        """`generation` (default: the policy's version) tells flows decided by other tables to be decided again;
        `apps_from`: share that generation's App-ID tables when the catalogue is the same (identity updates)."""
        port_index = port_index or {}
        started = time.perf_counter()
        self.policy = policy
        if apps_from is not None and apps_from.policy.catalogue is policy.catalogue:
            self.apps_owner = apps_from.apps_owner or apps_from
        self._build(policy, port_index)
        if generation is not None:
            self.t.generation = generation
        self._build_profiles(policy, inspect)
        self.build_seconds = time.perf_counter() - started

    cdef _build_profiles(self, policy, InspectTables inspect):
        """Threat profiles of the policy against the signature sets of `inspect`."""
        cdef tables_t *t = &self.t
        cdef uint32_t i
        profiles = tuple(getattr(policy, "profiles", ()) or ())
        self.inspect = inspect
        t.inspect = &inspect.T if inspect is not None else NULL
        t.n_profiles = len(profiles)
        t.profiles = <iprofile_t *>calloc(len(profiles) + 1, sizeof(iprofile_t))
        if t.profiles == NULL:
            raise MemoryError("not enough memory for the threat profiles")
        known = inspect.set_names if inspect is not None else []
        cdef InspectTables own
        self.profile_tables = []
        problems = []
        for i, prof in enumerate(profiles):
            names = []
            for name in (prof.signature_sets or known):
                if name not in known:
                    raise ValueError(f"threat profile {prof.name} names signature set {name!r}, which the dataplane "
                                     f"does not have (it has: {', '.join(known) or 'none; start it with --rules'})")
                if name not in names:
                    names.append(name)
            if inspect is None:
                continue
            # per profile its own databases, of its own sets only (built once per combination, cached)
            own = inspect.subset(names)
            self.profile_tables.append(own)
            t.profiles[i].T = &own.T
            # every set of the profile (1 to 64): `1 << n` in C int lost the sets from the 32nd on
            t.profiles[i].set_mask = (<uint64_t>0xFFFFFFFFFFFFFFFF) >> (64 - len(own.set_names)) if own.set_names else 0
            t.profiles[i].action_override = {"as-written": 0, "alert": 1, "drop": 2}[prof.action]
            t.profiles[i].depth = prof.depth
            t.profiles[i].vsys = prof.vsys
            vsys_name = policy.vsys_name(prof.vsys)
            if prof.exceptions or prof.thresholds:
                problems += signature_problems(prof, f"ThreatProfile {vsys_name}/{prof.name}", own,
                                               inspect.skipped_sids_of(names))
            profile_exceptions(&t.profiles[i], prof, own, len(policy.workloads), profile_key(vsys_name, prof.name))
        if problems:
            raise ValueError("; ".join(problems))
        for i, prof in enumerate(profiles):
            t.profiles[i].capture = min(getattr(prof, "capture", 0) or 0, CAP_MAX_PACKETS)
        for i, rule in enumerate(policy.rules):
            t.rules[i].profile = getattr(rule, "profile", -1)
            t.rules[i].capture = min(getattr(rule, "capture", 0) or 0, CAP_MAX_PACKETS)

    cdef _build(self, policy, dict port_index):
        cdef tables_t *t = &self.t
        cdef uint32_t n_wl = len(policy.workloads)
        cdef uint32_t n_rules = len(policy.rules)
        cdef uint32_t n_vsys = len(policy.vsys)
        cdef uint32_t words = (n_wl + 63) // 64
        cdef uint32_t i, w, nbits = 0, ncidr = 0, nsvc = 0
        cdef int32_t prev
        cdef ip128_t ip, mask
        cdef rule_t *r
        t.generation = policy.version
        t.n_wl = n_wl
        t.n_rules = n_rules
        t.n_vsys = n_vsys
        cat = policy.catalogue
        app_words = ((len(cat.apps) if cat is not None else 1) + 63) // 64
        napp_rules = 0
        for rule in policy.rules:
            nbits += (1 if rule.src.workloads else 0) + (1 if rule.dst.workloads else 0)
            napp_rules += 1 if rule.apps else 0
            ncidr += len(rule.src.cidrs) + len(rule.dst.cidrs)
            nsvc += len(rule.services)
        t.rules = <rule_t *>calloc(n_rules + 1, sizeof(rule_t))
        t.bits = <uint64_t *>calloc(nbits * words + napp_rules * app_words + 1, sizeof(uint64_t))
        t.app_words = app_words
        t.cidrs = <cidr_t *>calloc(ncidr + 1, sizeof(cidr_t))
        t.svcs = <svc_t *>calloc(nsvc + 1, sizeof(svc_t))
        t.wl_vsys = <int32_t *>calloc(n_wl + 1, sizeof(int32_t))
        t.wl_port = <int32_t *>calloc(n_wl + 1, sizeof(int32_t))
        t.cand_off = <uint32_t *>calloc(n_wl + n_vsys + 1, sizeof(uint32_t))
        t.cand_len = <uint32_t *>calloc(n_wl + n_vsys + 1, sizeof(uint32_t))
        t.rule_hits = <uint64_t *>calloc(n_rules + 1, sizeof(uint64_t))
        t.default_hits = <uint64_t *>calloc(n_vsys + 1, sizeof(uint64_t))
        t.wl_here = <uint8_t *>calloc(n_wl + 1, 1)
        if (t.wl_here == NULL or t.rules == NULL or t.bits == NULL or t.cidrs == NULL or t.svcs == NULL
                or t.wl_vsys == NULL or t.wl_port == NULL or t.cand_off == NULL or t.cand_len == NULL
                or t.rule_hits == NULL or t.default_hits == NULL):
            raise MemoryError("not enough memory for the policy tables")
        n_macs = sum(len(wl.macs) for wl in policy.workloads)
        n_ips = sum(len(wl.ips) for wl in policy.workloads)
        if idmap_init(&t.wl_by_mac, n_macs) < 0 or idmap_init(&t.wl_by_ip, n_ips) < 0:
            raise MemoryError("not enough memory for the identity tables")

        for w, wl in enumerate(policy.workloads):
            t.wl_vsys[w] = wl.vsys
            t.wl_port[w] = port_index.get(wl.port, -1) if wl.port else -1
            for mac in wl.macs:
                prev = idmap_put(&t.wl_by_mac, 0, mac_to_c(bytes(mac)), w)
                if prev >= 0:
                    raise ValueError(f"MAC {bytes(mac).hex(':')} is bound to workloads "
                                     f"{policy.workloads[prev].name} and {wl.name}")
            for addr in wl.ips:
                ip = ip_to_c(addr)
                prev = idmap_put(&t.wl_by_ip, ip.hi, ip.lo, w)
                if prev >= 0:
                    raise ValueError(f"IP {addr} is bound to workloads {policy.workloads[prev].name} and {wl.name}")

        nbits = 0
        ncidr = 0
        nsvc = 0
        prev_vsys = -1
        for i, rule in enumerate(policy.rules):
            if rule.vsys < prev_vsys:
                raise ValueError("compiled rules must be grouped by vsys")
            prev_vsys = rule.vsys
            r = &t.rules[i]
            r.vsys = rule.vsys
            r.action = int(rule.action)
            r.log = 1 if rule.log else 0
            for side in (0, 1):
                aset = rule.src if side == 0 else rule.dst
                bits_off = -1
                if aset.workloads:
                    bits_off = nbits * words
                    nbits += 1
                    for w in aset.workloads:
                        t.bits[bits_off + (w >> 6)] |= (<uint64_t>1) << (w & 63)
                first = ncidr
                for net in aset.cidrs:
                    ip = ip_to_c(net.network_address)
                    plen = net.prefixlen + (96 if net.version == 4 else 0)
                    mask_int = ((1 << plen) - 1) << (128 - plen) if plen else 0
                    mask = ip_from_int(mask_int)
                    t.cidrs[ncidr].mask_hi = mask.hi
                    t.cidrs[ncidr].mask_lo = mask.lo
                    t.cidrs[ncidr].net_hi = ip.hi & mask.hi
                    t.cidrs[ncidr].net_lo = ip.lo & mask.lo
                    t.cidrs[ncidr].v6 = 1 if net.version == 6 else 0
                    ncidr += 1
                if side == 0:
                    r.src_any = 1 if aset.any else 0
                    r.src_bits = bits_off
                    r.src_cidr = first
                    r.src_ncidr = ncidr - first
                else:
                    r.dst_any = 1 if aset.any else 0
                    r.dst_bits = bits_off
                    r.dst_cidr = first
                    r.dst_ncidr = ncidr - first
            r.app_bits = -1
            r.app_default = 1 if rule.app_default else 0
            r.svc = nsvc
            r.nsvc = len(rule.services)
            for svc in rule.services:
                t.svcs[nsvc].proto = svc.proto
                t.svcs[nsvc].lo = svc.port_lo
                t.svcs[nsvc].hi = svc.port_hi
                nsvc += 1
        self._build_users(policy)
        # application sets live after the member bitmaps
        app_off = nbits * words
        for i, rule in enumerate(policy.rules):
            if rule.apps:
                t.rules[i].app_bits = app_off
                for app_id in rule.apps:
                    t.bits[app_off + (app_id >> 6)] |= (<uint64_t>1) << (app_id & 63)
                app_off += app_words
        self._build_candidates(words)
        if self.apps_owner is None:
            self._build_apps(policy)
        else:
            self._share_apps()
        tenancy_build(t, policy)

    cdef _build_users(self, policy):
        """Rules' `users:` (User-ID, userid.pxi): the principals each names, in item order."""
        cdef tables_t *t = &self.t
        cdef uint32_t n = 0, i
        cdef rule_t *r
        for rule in policy.rules:
            n += len(getattr(rule, "user_principals", ()) or ())
        t.uprin = <uint64_t *>calloc(n + 1, sizeof(uint64_t))
        t.uprin_item = <uint16_t *>calloc(n + 1, sizeof(uint16_t))
        if t.uprin == NULL or t.uprin_item == NULL:
            raise MemoryError("not enough memory for the policy tables")
        n = 0
        for i, rule in enumerate(policy.rules):
            r = &t.rules[i]
            r.users = -1
            r.users_known = -1
            r.users_unknown = -1
            if not getattr(rule, "users", ()):
                continue
            if len(rule.users) > 255:
                raise ValueError(f"rule {rule.name}: at most 255 items in users")
            r.users = n
            r.users_known = rule.users_known
            r.users_unknown = rule.users_unknown
            for value, item in rule.user_principals:
                t.uprin[n] = value
                t.uprin_item[n] = item
                n += 1
            r.n_users = n - r.users

    cdef _share_apps(self):
        """The owner's App-ID tables (databases, maps), with flow counters of our own."""
        cdef apptables_t *a = &self.t.apps
        memcpy(a, &self.apps_owner.t.apps, sizeof(apptables_t))
        self.app_names = self.apps_owner.app_names
        a.app_flows = <uint64_t *>calloc((self.t.n_vsys + 1) * a.n_apps, sizeof(uint64_t))
        if a.app_flows == NULL:
            raise MemoryError("not enough memory for the App-ID tables")

    cdef _build_apps(self, policy):
        """App-ID tables from the policy's catalogue: Hyperscan database, host and port maps, rule app sets."""
        cdef tables_t *t = &self.t
        cdef apptables_t *a = &t.apps
        cdef uint32_t i, n
        cdef hs_compile_error_t *err = NULL
        cdef const char **exprs = NULL
        cdef unsigned int *flags = NULL
        cdef unsigned int *ids = NULL
        cdef uint32_t slot
        cdef bytes key
        cat = policy.catalogue
        self.app_names = [""] if cat is None else [app.name for app in cat.apps]
        a.n_apps = len(self.app_names)
        a.parent = <uint16_t *>malloc(a.n_apps * sizeof(uint16_t))
        a.port_app = <uint16_t *>calloc(2 * 65536, sizeof(uint16_t))
        a.app_flows = <uint64_t *>calloc((t.n_vsys + 1) * a.n_apps, sizeof(uint64_t))
        a.n_builtin = len(BUILTIN_APPS)
        a.builtin_app = <uint16_t *>calloc(a.n_builtin, sizeof(uint16_t))
        a.tls_variant = <uint16_t *>calloc(a.n_apps, sizeof(uint16_t))
        if a.parent == NULL or a.port_app == NULL or a.app_flows == NULL or a.builtin_app == NULL \
                or a.tls_variant == NULL:
            raise MemoryError("not enough memory for the App-ID tables")
        for i in range(a.n_apps):
            a.parent[i] = 0xffff
        n_ports = 0 if cat is None else sum(len(app.ports) for app in cat.apps)
        n_children = 0 if cat is None else len(cat.children_by_port)
        if idmap_init(&a.app_ports, n_ports + 1) < 0 or idmap_init(&a.port_children, n_children + 1) < 0:
            raise MemoryError("not enough memory for the App-ID tables")
        if cat is None:
            return
        by_name = cat.by_name
        for i, name in enumerate(BUILTIN_APPS):
            a.builtin_app[i] = by_name.get(name, 0) if name else 0
        for name, variant in STARTTLS_VARIANTS.items():
            if name in by_name and variant in by_name:
                a.tls_variant[by_name[name]] = by_name[variant]
        for app in cat.apps:
            if app.parent is not None:
                a.parent[app.id] = app.parent
            for l4, port in app.ports:
                idmap_put(&a.app_ports, 0, (<uint64_t>app.id << 32) | (<uint64_t>l4 << 16) | port, 1)
        for (l4, port), apps in cat.default_ports.items():
            if l4 in (6, 17) and apps:
                a.port_app[(0 if l4 == 6 else 1) * 65536 + port] = apps[0]
        for (parent, l4, port), child in cat.children_by_port.items():
            idmap_put(&a.port_children, 0, (<uint64_t>parent << 32) | (<uint64_t>l4 << 16) | port, child)
        for proto, app_id in cat.ip_protocols.items():
            a.ipproto_app[proto] = app_id
        a.unknown_tcp = by_name.get("unknown-tcp", 0)
        a.unknown_udp = by_name.get("unknown-udp", 0)
        a.unknown = by_name.get("unknown", 0)
        a.incomplete = by_name.get("incomplete", 0)
        a.insufficient = by_name.get("insufficient-data", 0)
        # host names: exact names as written, `*.domain` stored as ".domain" (subdomains only)
        n = 16
        while n < 2 * len(cat.hosts) + 2:
            n <<= 1
        a.hosts = <hostent_t *>calloc(n, sizeof(hostent_t))
        if a.hosts == NULL:
            raise MemoryError("not enough memory for the App-ID host table")
        a.host_mask = n - 1
        for rule in cat.hosts:
            key = (("." if rule.wildcard else "") + rule.domain.lower()).encode("ascii", "ignore")
            if not key or len(key) > HOST_MAX:
                continue
            if host_find(a, key, len(key)) != NULL:
                continue   # the catalogue orders the most specific rule first
            slot = host_hash(key, len(key)) & a.host_mask
            while a.hosts[slot].len:
                slot = (slot + 1) & a.host_mask
            memcpy(a.hosts[slot].name, <const char *>key, len(key))
            a.hosts[slot].len = len(key)
            a.hosts[slot].wildcard = rule.wildcard
            a.hosts[slot].app = rule.app
        # signatures: one block-mode database, expression id = signature id
        a.n_sigs = len(cat.signatures)
        if a.n_sigs:
            a.sig_app = <uint16_t *>calloc(a.n_sigs, sizeof(uint16_t))
            a.sig_l4 = <uint8_t *>calloc(a.n_sigs, 1)
            a.sig_dir = <uint8_t *>calloc(a.n_sigs, 1)
            a.sig_prio = <uint16_t *>calloc(a.n_sigs, sizeof(uint16_t))
            a.sig_minlen = <uint16_t *>calloc(a.n_sigs, sizeof(uint16_t))
            exprs = <const char **>calloc(a.n_sigs, sizeof(char *))
            flags = <unsigned int *>calloc(a.n_sigs, sizeof(unsigned int))
            ids = <unsigned int *>calloc(a.n_sigs, sizeof(unsigned int))
            patterns = [sig.pattern.encode("utf-8") for sig in cat.signatures]
            try:
                for i, sig in enumerate(cat.signatures):
                    a.sig_app[i] = sig.app
                    a.sig_l4[i] = sig.l4
                    a.sig_dir[i] = sig.direction
                    a.sig_prio[i] = sig.priority
                    a.sig_minlen[i] = sig.min_len
                    exprs[i] = patterns[i]
                    flags[i] = sig.hs_flags
                    ids[i] = i
                cache = _hs_cache_path(cat.signatures)
                a.db = _hs_cache_load(cache)
                if a.db == NULL:
                    if hs_compile_multi(exprs, flags, ids, a.n_sigs, HS_MODE_BLOCK, NULL, &a.db, &err) != HS_SUCCESS:
                        where = cat.signatures[err.expression].pattern if 0 <= err.expression < a.n_sigs else ""
                        message = err.message.decode(errors="replace")
                        hs_free_compile_error(err)
                        raise ValueError(f"App-ID signatures do not compile: {message} ({where!r})")
                    _hs_cache_store(cache, a.db)
                if hs_alloc_scratch(a.db, &a.scratch) != HS_SUCCESS:
                    raise MemoryError("not enough memory for Hyperscan scratch")
            finally:
                free(exprs)
                free(flags)
                free(ids)

    cdef _build_candidates(self, uint32_t words):
        """Per-source candidate lists, so a flow scans only the rules that can match its source."""
        cdef tables_t *t = &self.t
        cdef uint32_t lists = t.n_wl + t.n_vsys
        cdef uint32_t i, li, v, total = 0, pass_no
        cdef int32_t w
        cdef rule_t *r
        cdef uint32_t *first = <uint32_t *>calloc(t.n_vsys + 1, sizeof(uint32_t))
        cdef uint32_t *last = <uint32_t *>calloc(t.n_vsys + 1, sizeof(uint32_t))
        if first == NULL or last == NULL:
            free(first); free(last)
            raise MemoryError("not enough memory for the policy tables")
        for v in range(t.n_vsys):
            first[v] = t.n_rules
        for i in range(t.n_rules):
            v = t.rules[i].vsys
            if first[v] == t.n_rules:
                first[v] = i
            last[v] = i + 1
        # two passes: count, then fill
        for pass_no in range(2):
            total = 0
            for li in range(lists):
                if pass_no == 1:
                    t.cand_off[li] = total
                if li < t.n_wl:
                    w = li
                    v = t.wl_vsys[w]
                else:
                    w = -1
                    v = li - t.n_wl
                for i in range(first[v], last[v]):
                    r = &t.rules[i]
                    if (r.src_any or r.src_ncidr > 0 or
                            (w >= 0 and r.src_bits >= 0 and (t.bits[r.src_bits + (w >> 6)] >> (w & 63)) & 1)):
                        if pass_no == 1:
                            t.cand[total] = i
                        total += 1
                if pass_no == 1:
                    t.cand_len[li] = total - t.cand_off[li]
            if pass_no == 0:
                t.cand = <int32_t *>calloc(total + 1, sizeof(int32_t))
                if t.cand == NULL:
                    free(first); free(last)
                    raise MemoryError("not enough memory for the policy tables")
        free(first)
        free(last)

    def rule_hits(self) -> list:
        return [self.t.rule_hits[i] for i in range(self.t.n_rules)]

    def default_hits(self) -> list:
        return [self.t.default_hits[i] for i in range(self.t.n_vsys)]

    @property
    def generation(self) -> int:
        return self.t.generation

    def app_flows(self) -> dict:
        """Flows identified per (vsys index, app name), non-zero only."""
        cdef apptables_t *a = &self.t.apps
        out = {}
        if a.app_flows == NULL:
            return out
        for v in range(self.t.n_vsys):
            for i in range(a.n_apps):
                if a.app_flows[v * a.n_apps + i]:
                    out[(v, self.app_names[i])] = a.app_flows[v * a.n_apps + i]
        return out

    def __dealloc__(self):
        cdef apptables_t *a = &self.t.apps
        cdef uint32_t i
        if self.apps_owner is not None:
            free(a.app_flows)      # the rest is the owner's
            memset(a, 0, sizeof(apptables_t))
        if a.scratch != NULL:
            hs_free_scratch(a.scratch)
        if a.db != NULL:
            hs_free_database(a.db)
        free(a.builtin_app); free(a.tls_variant); free(a.sig_app); free(a.sig_l4); free(a.sig_dir); free(a.sig_prio)
        free(a.sig_minlen)
        free(a.port_app); free(a.hosts); free(a.parent); free(a.app_flows)
        idmap_free(&a.app_ports)
        idmap_free(&a.port_children)
        free(self.t.rules); free(self.t.bits); free(self.t.cidrs); free(self.t.svcs)
        free(self.t.wl_vsys); free(self.t.wl_port); free(self.t.cand_off); free(self.t.cand_len)
        if self.t.profiles != NULL:
            for i in range(self.t.n_profiles):
                free_profile_exceptions(&self.t.profiles[i])
        free(self.t.cand); free(self.t.rule_hits); free(self.t.default_hits); free(self.t.profiles)
        free(self.t.quota)
        free(self.t.wl_here)
        free(self.t.uprin)
        free(self.t.uprin_item)
        idmap_free(&self.t.wl_by_mac)
        idmap_free(&self.t.wl_by_ip)


# ---------------------------------------------------------------- User-ID tables (userid.pxi)

# Every user table has a generation of its own. It starts at a random number, so a flow restored from an
# earlier process's state file never takes that process's generation for the one in force here.
cdef uint32_t _user_table_gen = <uint32_t>int.from_bytes(os.urandom(4), "little")


cdef uint32_t _slots_for(uint32_t count):
    cdef uint32_t n = 64
    while n < count * 2 + 2:
        n <<= 1
    return n


cdef class UserTable:
    """The user behind each address, and the directory groups of each user, as the packet loop reads them
    (userid.pxi). Immutable once built: `derive` makes the next table copy-on-write (a memcpy and the
    changed slots); `Engine.set_users` swaps one in. ngfw.dataplane.userid builds them from control's state."""

    cdef usertab_t t
    cdef readonly UserTable groups_owner   # the table whose group arrays these share (None: their own)

    def __cinit__(self):
        memset(&self.t, 0, sizeof(usertab_t))

    def __init__(self, addresses=(), groups=None):
        """`addresses`: (ipaddress address, user principal) pairs; `groups`: {user principal: (stamp, [group
        principals])} (ngfw.compiler.principals)."""
        global _user_table_gen
        items = list(addresses)
        self._alloc_addresses(_slots_for(len(items)))
        self._put_all(items)
        self._set_groups(groups or {})
        _user_table_gen += 1
        self.t.gen = _user_table_gen or 1

    cdef _alloc_addresses(self, uint32_t slots):
        self.t.addr = <uaddr_t *>calloc(slots, sizeof(uaddr_t))
        if self.t.addr == NULL:
            raise MemoryError("not enough memory for the user table")
        self.t.mask = slots - 1

    cdef _put_all(self, list items):
        cdef ip128_t ip
        cdef uint64_t user
        for address, principal in items:
            ip = ip_to_c(address)
            user = principal
            if user == 0:
                raise ValueError("a user principal is never 0")
            if usertab_user(&self.t, ip.hi, ip.lo) == 0:
                self.t.count += 1
            uaddr_put(self.t.addr, self.t.mask, ip.hi, ip.lo, user)

    cdef _set_groups(self, dict groups):
        cdef uint32_t slots = _slots_for(len(groups))
        cdef uint32_t n = 0, s
        cdef uint64_t user
        total = sum(len(g[1]) for g in groups.values())
        self.t.users = <ugroups_t *>calloc(slots, sizeof(ugroups_t))
        self.t.groups = <uint64_t *>calloc(total + 1, sizeof(uint64_t))
        if self.t.users == NULL or self.t.groups == NULL:
            raise MemoryError("not enough memory for the user table")
        self.t.gmask = slots - 1
        self.t.gcount = 0
        for principal, (stamp, members_of) in groups.items():
            user = principal
            if user == 0:
                raise ValueError("a user principal is never 0")
            s = <uint32_t>(ngfw_mix64(user) & self.t.gmask)
            while self.t.users[s].user:
                if self.t.users[s].user == user:
                    raise ValueError(f"user principal {principal} is given twice")
                s = (s + 1) & self.t.gmask
            self.t.users[s].user = user
            self.t.users[s].stamp = stamp
            self.t.users[s].off = n
            for group in members_of:
                self.t.groups[n] = group
                n += 1
            self.t.users[s].n = n - self.t.users[s].off
            self.t.gcount += 1

    def derive(self, puts=(), deletes=(), groups=None) -> UserTable:
        """A new table: this one with `puts` ((address, principal) pairs) mapped, `deletes` (addresses)
        unmapped, and `groups` ({principal: (stamp, [group principals])}) in place of its groups when given."""
        cdef UserTable new = UserTable.__new__(UserTable)
        cdef ip128_t ip
        cdef uint32_t slots = self.t.mask + 1
        cdef uint32_t s
        global _user_table_gen
        puts = list(puts)
        deletes = list(deletes)
        if (self.t.count + len(puts)) * 2 + 2 > slots:
            slots = _slots_for(self.t.count + len(puts))
            new._alloc_addresses(slots)
            for s in range(self.t.mask + 1):   # rehashed into the larger table
                if self.t.addr[s].user:
                    uaddr_put(new.t.addr, new.t.mask, self.t.addr[s].k_hi, self.t.addr[s].k_lo, self.t.addr[s].user)
        else:
            new._alloc_addresses(slots)
            memcpy(new.t.addr, self.t.addr, <size_t>slots * sizeof(uaddr_t))
        new.t.count = self.t.count
        for address in deletes:
            ip = ip_to_c(address)
            if uaddr_del(new.t.addr, new.t.mask, ip.hi, ip.lo):
                new.t.count -= 1
        new._put_all(puts)
        if groups is not None:
            new._set_groups(groups)
        else:
            new.groups_owner = self.groups_owner or self
            new.t.users = self.t.users
            new.t.groups = self.t.groups
            new.t.gmask = self.t.gmask
            new.t.gcount = self.t.gcount
        _user_table_gen += 1
        new.t.gen = _user_table_gen or 1
        return new

    def user_of(self, address) -> int:
        """The principal of the user behind `address` (0: none)."""
        cdef ip128_t ip = ip_to_c(address)
        return usertab_user(&self.t, ip.hi, ip.lo)

    def groups_of(self, uint64_t user) -> tuple:
        """(stamp, [group principals]) of a user, or None."""
        cdef const ugroups_t *g = usertab_groups(&self.t, user)
        if g == NULL:
            return None
        return g.stamp, [self.t.groups[g.off + i] for i in range(g.n)]

    @property
    def generation(self) -> int:
        return self.t.gen

    def __len__(self) -> int:
        return self.t.count

    def __dealloc__(self):
        free(self.t.addr)
        if self.groups_owner is None:
            free(self.t.users)
            free(self.t.groups)


# ---------------------------------------------------------------- session filters (session_view.pxi)

cdef void _cidr_from(object net, cidr_t *c) except *:
    """An ipaddress network as the fastpath compares addresses (IPv4 mapped into IPv6)."""
    cdef ip128_t ip = ip_to_c(net.network_address)
    cdef ip128_t mask
    plen = net.prefixlen + (96 if net.version == 4 else 0)
    mask = ip_from_int(((1 << plen) - 1) << (128 - plen) if plen else 0)
    c.mask_hi = mask.hi
    c.mask_lo = mask.lo
    c.net_hi = ip.hi & mask.hi
    c.net_lo = ip.lo & mask.lo
    c.v6 = 1 if net.version == 6 else 0


cdef void _sfilter_from(dict d, sfilter_t *q) except *:
    """A filter of ngfw.dataplane.sessions (`SessionFilter.compiled`) as the C struct; ValueError past its limits."""
    cdef uint32_t i
    memset(q, 0, sizeof(sfilter_t))
    workloads = list(d.get("workloads") or ())
    vsys_pairs = list(d.get("vsys_pairs") or ())
    rule_pairs = list(d.get("rule_pairs") or ())
    if len(workloads) > SV_MAX_WL:
        raise ValueError(f"a filter names at most {SV_MAX_WL} workloads")
    if len(vsys_pairs) > SV_MAX_PAIRS or len(rule_pairs) > SV_MAX_PAIRS:
        raise ValueError(f"a filter's vsys or rule resolves to at most {SV_MAX_PAIRS} (generation, index) pairs")
    q.n_wl = len(workloads)
    for i in range(q.n_wl):
        q.wl[i] = workloads[i]
    q.has_vsys = d.get("has_vsys", False)
    q.vsys = d.get("vsys", -1)
    q.n_vsys_pairs = len(vsys_pairs)
    for i in range(q.n_vsys_pairs):
        q.vsys_gen[i] = vsys_pairs[i][0]
        q.vsys_idx[i] = vsys_pairs[i][1]
    q.has_rule = d.get("has_rule", False)
    q.n_rule_pairs = len(rule_pairs)
    for i in range(q.n_rule_pairs):
        q.rule_gen[i] = rule_pairs[i][0]
        q.rule_idx[i] = rule_pairs[i][1]
    app = d.get("app")
    q.has_app = app is not None
    q.app = app if app is not None else 0
    q.proto = d.get("proto") or 0
    q.action = -1 if d.get("action") is None else d["action"]
    q.tcp_state = -1 if d.get("tcp_state") is None else d["tcp_state"]
    q.sport = -1 if d.get("sport") is None else d["sport"]
    q.dport = -1 if d.get("dport") is None else d["dport"]
    if d.get("src") is not None:
        q.has_src = 1
        _cidr_from(d["src"], &q.src)
    if d.get("dst") is not None:
        q.has_dst = 1
        _cidr_from(d["dst"], &q.dst)
    q.flow_id = d.get("flow_id") or 0
    q.user_mode = d.get("user_mode") or 0
    q.user = d.get("user") or 0


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
        self.e.macs = <mac_entry_t *>calloc(MACTABLE_SLOTS, sizeof(mac_entry_t))
        self.e.frags = <frag_entry_t *>calloc(FRAG_SLOTS, sizeof(frag_entry_t))
        if self.e.macs == NULL or self.e.frags == NULL:
            raise MemoryError("not enough memory for the engine")
        for i in range(MACTABLE_SLOTS):
            self.e.macs[i].port = -1
        if flow_capacity < 1:
            raise ValueError("flow_capacity must be at least 1")
        if flowtable_init(&self.e.flows, flow_capacity,
                          <flow_t *>(mem + <size_t>layout["flows_off"]) if mem != NULL else NULL) < 0:
            raise MemoryError(f"not enough memory for a flow table of {flow_capacity} flows")
        if evring_init(&self.e.events, event_capacity) < 0:
            raise MemoryError("not enough memory for the event ring")
        # the capture ring is allocated when a policy or an operator first asks for capture: replay makes an
        # engine per capture size, and zeroing megabytes each time was a tenth of replaying the App-ID corpus
        self.capture_bytes = capture_bytes
        self.flow_capacity = flow_capacity
        self.e.burst = burst
        if idle_spin_us < 0 or idle_spin_quiet_us < 0:
            raise ValueError("idle_spin_us and idle_spin_quiet_us must not be negative")
        self.e.idle_spin_ns = <uint64_t>(idle_spin_us * 1000.0)
        self.e.idle_spin_quiet_ns = <uint64_t>(max(idle_spin_quiet_us, idle_spin_us) * 1000.0)
        if clspool_init(&self.e.cls, appid_slots) < 0 or hostpool_init(
                &self.e.hostpool, _host_slots(flow_capacity),
                <char *>(mem + <size_t>layout["host_off"]) if mem != NULL else NULL,
                mem + <size_t>layout["host_lens_off"] if mem != NULL else NULL) < 0:
            raise MemoryError("not enough memory for App-ID buffers")
        if appid_max_pkts < 1 or appid_budget < 1:
            raise ValueError("appid_max_pkts and appid_budget must be at least 1")
        self.e.ins = <insws_t *>calloc(1, sizeof(insws_t))
        if self.e.ins == NULL or inspool_init(
                &self.e.ins.pool, n_insp,
                <inspslot_t *>(mem + <size_t>layout["insp_off"]) if mem != NULL else NULL) < 0:
            raise MemoryError("not enough memory for the inspection state")
        self.e.ins.md = pcre2_match_data_create(32, NULL)
        self.e.ins.mctx = pcre2_match_context_create(NULL)
        self.e.ins.thr = <ithrent_t *>calloc(THR_SLOTS, sizeof(ithrent_t))
        if (self.e.ins.md == NULL or self.e.ins.mctx == NULL or self.e.ins.thr == NULL
                or asm_pool_init(&self.e.ins.asm_pool) < 0 or bodydec_init(&self.e.ins.bodydec) < 0
                or hold_pool_init(&self.e.ins.hold, HOLD_SLOTS if replay else 0) < 0
                or h2tab_init(&self.e.ins.h2tab) < 0):
            raise MemoryError("not enough memory for the inspection state")
        # Suricata's default pcre limits: a hostile payload cannot make a regex run away
        pcre2_set_match_limit(self.e.ins.mctx, 3500)
        pcre2_set_depth_limit(self.e.ins.mctx, 1500)
        self.rulesets = {}
        self.vsys_slots = {}
        import threading
        self.request_lock = threading.Lock()
        self.e.appid_max_pkts = appid_max_pkts
        self.e.appid_budget = appid_budget
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
        cdef uint32_t i
        if self.e != NULL:
            for i in range(self.e.n_ports):
                port_close(&self.e.ports[i])
            if self.e.wake_fd >= 0:
                close(self.e.wake_fd)
            if self.e.ins != NULL:
                for i in range(self.e.flows.mask + 1 if self.e.flows.slots != NULL else 0):
                    if not flow_slot_released(&self.e.flows, i) and self.e.flows.slots[i].used:
                        inspect_flow_end(self.e, &self.e.flows.slots[i])
                if not self.e.ins.pool.external:
                    free(self.e.ins.pool.slots)
                free(self.e.ins.pool.next_free)
                free(self.e.ins.pool.taken)
                free(self.e.ins.pool.dirty)
                free(self.e.ins.thr)
                free(self.e.ins.asm_pool.buf)
                free(self.e.ins.bodydec.slots)
                free(self.e.ins.asm_pool.next_free)
                free(self.e.ins.hold.slots)
                free(self.e.ins.h2tab.slots)
                if self.e.ins.md != NULL:
                    pcre2_match_data_free(self.e.ins.md)
                if self.e.ins.mctx != NULL:
                    pcre2_match_context_free(self.e.ins.mctx)
                free(self.e.ins)
            if not self.e.flows.external:
                free(self.e.flows.slots)
            free(self.e.flows.released)
            free(self.e.events.ev)
            free(self.e.capture.buf)
            free(self.e.cls.slots)
            if not self.e.hostpool.external:
                free(self.e.hostpool.names)
                free(self.e.hostpool.lens)
            free(self.e.hostpool.next_free)
            free(self.e.macs)
            free(self.e.frags)
            free(self.replay_frame)
            if self.e.notify_fd >= 0:
                close(self.e.notify_fd)
            free(self.e)
            self.e = NULL

    # ---- ports
    cdef port_t *_new_port(self, str name, int32_t segment) except NULL:
        if self.e.n_ports >= MAX_PORTS:
            raise ValueError(f"at most {MAX_PORTS} ports per dataplane")
        if segment < 0 or segment >= MAX_SEGMENTS:
            raise ValueError(f"segment must be in 0..{MAX_SEGMENTS - 1}")
        if self.e.segments[segment].n_ports >= MAX_SEGMENT_PORTS:
            raise ValueError(f"at most {MAX_SEGMENT_PORTS} ports per segment")
        cdef port_t *p = &self.e.ports[self.e.n_ports]
        memset(p, 0, sizeof(port_t))
        p.fd = -1
        p.segment = segment
        return p

    cdef int _commit_port(self, str name, int32_t segment):
        cdef segment_t *s = &self.e.segments[segment]
        s.ports[s.n_ports] = self.e.n_ports
        s.n_ports += 1
        if segment >= self.e.n_segments:
            self.e.n_segments = segment + 1
        self.port_names.append(name)
        self.e.n_ports += 1
        return self.e.n_ports - 1

    def add_ring_port(self, str name, int ifindex, uint32_t mtu, int32_t segment,
                      uint32_t rx_frames=4096, uint32_t tx_frames=4096) -> int:
        """Attach an AF_PACKET TPACKET_V2 ring to link `ifindex`; raises OSError naming the link."""
        cdef port_t *p = self._new_port(name, segment)
        cdef int rc = ring_port_open(p, ifindex, rx_frames, tx_frames, mtu)
        if rc < 0:
            raise OSError(-rc, f"cannot open a packet ring on {name}: {os.strerror(-rc)}")
        return self._commit_port(name, segment)

    def add_tap_port(self, str name, int fd, uint32_t mtu, int32_t segment) -> int:
        """Use an open, non-blocking TAP descriptor (IFF_TAP | IFF_NO_PI) as a port."""
        cdef port_t *p = self._new_port(name, segment)
        p.kind = PORT_TAP
        p.fd = fd
        p.mtu = mtu
        return self._commit_port(name, segment)

    def add_memory_port(self, str name, int32_t segment, uint32_t mtu=1500, uint32_t capacity=1 << 22) -> int:
        """A port whose transmitted frames are kept for `take_tx` (tests, replay)."""
        cdef port_t *p = self._new_port(name, segment)
        p.kind = PORT_MEM
        p.mtu = mtu
        p.mem_buf = <uint8_t *>malloc(capacity)
        if p.mem_buf == NULL:
            raise MemoryError("not enough memory for a memory port")
        p.mem_cap = capacity
        return self._commit_port(name, segment)

    def add_sink_port(self, str name, int32_t segment, uint32_t mtu=65535) -> int:
        """A port that counts and discards what it is given (the far side of a replay)."""
        cdef port_t *p = self._new_port(name, segment)
        p.kind = PORT_SINK
        p.mtu = mtu
        return self._commit_port(name, segment)

    def replay_capture(self, const unsigned char[:] data, uint16_t port) -> dict:
        """Run every packet of a pcap/pcapng capture held in `data` through the pipeline as if it
        arrived on `port`, on the capture's clock. A damaged file stops at the damage: the result
        names the problem and its byte offset; what came before it was processed."""
        cdef capture_t cap
        cdef const uint8_t *frame
        cdef uint32_t caplen, origlen, link, n
        cdef uint64_t ts, packets = 0, unsupported = 0
        cdef int rc = 0
        cdef uint32_t i
        cdef uint8_t *buf
        if port >= self.e.n_ports:
            raise ValueError(f"no port {port}")
        if ngfw_load_u32(&self.e.running):
            raise RuntimeError("replay_capture() while the loop is running")
        if self.replay_frame == NULL:
            # kept for the next capture: a replay of many small files paid a malloc of it per file
            self.replay_frame = <uint8_t *>malloc(REPLAY_FRAME_MAX)
            if self.replay_frame == NULL:
                raise MemoryError()
        buf = self.replay_frame
        with nogil:
            if capture_open(&cap, &data[0] if data.shape[0] else NULL, data.shape[0]) == 0:
                while True:
                    rc = capture_next(&cap, &frame, &caplen, &origlen, &link, &ts)
                    if rc <= 0:
                        break
                    packets += 1
                    n = to_ethernet(frame, caplen, link, buf, REPLAY_FRAME_MAX)
                    if n == 0:
                        unsupported += 1
                        continue
                    # a record cut by the capture's snap length: lengths in its headers run past it
                    process_frame(self.e, port, buf, n, RX_SNAPPED if origlen > caplen else 0, ts)
                    sweep_flows(self.e, ts, REPLAY_SWEEP_SLOTS)
                for i in range(self.e.n_ports):
                    port_flush(&self.e.ports[i])
        return {"packets": packets, "unsupported_link": unsupported,
                "error": cap.error.decode() if cap.error != NULL else None, "error_offset": cap.off}

    @property
    def ports(self) -> list:
        return list(self.port_names)

    # ---- links that come and go (ports.pxi): a port's interface replaced while the loop runs
    cdef _port_request(self, port_req_t *q, double timeout):
        """Have the loop swap `q` into its port between bursts (or swap it here while the loop is stopped);
        returns once neither the loop nor the TX thread uses what `q` now holds. Raises TimeoutError with
        `q` untaken."""
        cdef double deadline
        cdef uint32_t turns
        with self.request_lock:
            if not ngfw_load_u32(&self.e.running):
                serve_port_request(self.e, q)
            else:
                ngfw_store_ptr(<void **>&self.e.port_request, <void *>q)
                engine_wake(self.e)
                deadline = time.monotonic() + timeout
                while not ngfw_load_u32(&q.done):
                    if not ngfw_load_u32(&self.e.running) and \
                            ngfw_cas_ptr(<void **>&self.e.port_request, <void *>q, NULL):
                        serve_port_request(self.e, q)   # the loop ended before it took the request
                        break
                    if time.monotonic() > deadline and \
                            ngfw_cas_ptr(<void **>&self.e.port_request, <void *>q, NULL):
                        raise TimeoutError("the packet loop did not take the port's new interface")
                    time.sleep(0.0002)
        # the TX thread may have read the old descriptor just before the swap: one full turn of it later,
        # it no longer holds it
        if ngfw_load_u32(&self.e.tx_running):
            turns = ngfw_load_u32(&self.e.tx_turns)
            deadline = time.monotonic() + 1.0
            while <uint32_t>(ngfw_load_u32(&self.e.tx_turns) - turns) < 2 and ngfw_load_u32(&self.e.tx_running) \
                    and time.monotonic() < deadline:
                time.sleep(0.0002)

    cdef port_t *_port_of(self, uint16_t index, int kind) except NULL:
        if index >= self.e.n_ports:
            raise ValueError(f"no port {index}")
        if self.e.ports[index].kind != kind:
            raise ValueError(f"port {self.port_names[index]} is not a {'ring' if kind == PORT_RING else 'TAP'} port")
        return &self.e.ports[index]

    def reattach_ring_port(self, uint16_t index, int ifindex, uint32_t mtu, uint32_t rx_frames=4096,
                           uint32_t tx_frames=4096, double timeout=2.0) -> None:
        """The port's interface is back (re-created under its name, or its MTU changed): a new AF_PACKET ring on
        link `ifindex` replaces the port's; the old one is unmapped and closed once the loop and the TX thread
        let go of it. The port keeps its index, segment and counters. Raises OSError naming the link (the port
        stays as it was)."""
        self._port_of(index, PORT_RING)
        cdef port_req_t *q = <port_req_t *>calloc(1, sizeof(port_req_t))
        if q == NULL:
            raise MemoryError()
        cdef int rc = ring_port_open(&q.io, ifindex, rx_frames, tx_frames, mtu)
        if rc < 0:
            free(q)
            raise OSError(-rc, f"cannot open a packet ring on {self.port_names[index]}: {os.strerror(-rc)}")
        if self.bypass_filter_fd >= 0:
            # the new socket must not copy what the kernel forwards for bypassed flows either
            setsockopt(q.io.fd, SOL_SOCKET, SO_ATTACH_BPF, &self.bypass_filter_fd, sizeof(int))
        q.index = index
        try:
            self._port_request(q, timeout)
            self._fold_kernel_drops(index, q.io.fd)
        finally:
            port_close(&q.io)   # the old ring, or the new one if the loop never took it
            free(q)

    def reattach_tap_port(self, uint16_t index, int fd, uint32_t mtu, double timeout=2.0) -> int:
        """A re-created TAP device's descriptor (open, non-blocking, IFF_TAP | IFF_NO_PI) replaces the port's.
        Returns the old descriptor (-1: none), which the caller closes: the loop no longer uses it."""
        self._port_of(index, PORT_TAP)
        cdef port_req_t *q = <port_req_t *>calloc(1, sizeof(port_req_t))
        if q == NULL:
            raise MemoryError()
        q.index = index
        q.io.kind = PORT_TAP
        q.io.fd = fd
        q.io.mtu = mtu
        try:
            self._port_request(q, timeout)
            return q.io.fd
        finally:
            free(q)

    def detach_port(self, uint16_t index, double timeout=2.0) -> int:
        """The port's interface is gone: the loop lets go of it, and frames for the port are dropped
        (`port_down`) until a reattach. A ring is unmapped and closed here; a TAP descriptor is returned for the
        caller to close (-1 for a ring, or when the port had none)."""
        if index >= self.e.n_ports:
            raise ValueError(f"no port {index}")
        cdef int kind = self.e.ports[index].kind
        if kind != PORT_RING and kind != PORT_TAP:
            raise ValueError(f"port {self.port_names[index]} has no interface to lose")
        cdef port_req_t *q = <port_req_t *>calloc(1, sizeof(port_req_t))
        if q == NULL:
            raise MemoryError()
        q.index = index
        q.detach = 1
        q.io.kind = kind
        q.io.fd = -1
        try:
            self._port_request(q, timeout)
            if kind == PORT_TAP:
                return q.io.fd
            self._fold_kernel_drops(index, q.io.fd)
            port_close(&q.io)
            return -1
        finally:
            free(q)

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
    cdef _capture_ring(self):
        """Allocate the capture ring (before the loop can see anything that captures)."""
        if self.e.capture.buf == NULL and capring_init(&self.e.capture, self.capture_bytes) < 0:
            raise MemoryError(f"not enough memory for a capture ring of {self.capture_bytes} bytes")

    def set_tables(self, Tables tables, double timeout=2.0) -> None:
        """Swap in a new policy generation; returns once the loop uses it (or at once when stopped)."""
        cdef double deadline
        cdef uint32_t i
        if any(getattr(r, "capture", 0) for r in tables.policy.rules) or \
                any(getattr(p, "capture", 0) for p in (getattr(tables.policy, "profiles", ()) or ())):
            self._capture_ring()
        if self.current is not None and self.current.t.wl_here != NULL and tables.t.wl_here != NULL:
            # which workloads this dataplane has seen on its VM side, by name (indexes change)
            old_policy, new_policy = self.current.policy, tables.policy
            old_index = {(old_policy.vsys_name(wl.vsys), wl.name): i for i, wl in enumerate(old_policy.workloads)}
            for i, wl in enumerate(new_policy.workloads):
                j = old_index.get((new_policy.vsys_name(wl.vsys), wl.name))
                if j is not None and j < self.current.t.n_wl:
                    tables.t.wl_here[i] = self.current.t.wl_here[<uint32_t>j]
        tenancy_bind(self.e.vsys, self.vsys_slots, &tables.t, tuple(tables.policy.vsys),
                     tuple(self.current.policy.vsys) if self.current is not None else ())
        self.app_names = tables.app_names
        for own in ([tables.inspect] if tables.inspect is not None else []) + list(tables.profile_tables or []):
            self.rulesets.pop(own.id, None)
            self.rulesets[own.id] = own
        while len(self.rulesets) > 16:
            del self.rulesets[next(iter(self.rulesets))]
        if not ngfw_load_u32(&self.e.running):
            self.e.tables = &tables.t
            self.current = tables
            return
        ngfw_store_ptr(<void **>&self.e.pending, <void *>&tables.t)
        engine_wake(self.e)
        deadline = time.monotonic() + timeout
        while ngfw_load_ptr(<void **>&self.e.pending) != NULL:
            if time.monotonic() > deadline:
                raise TimeoutError("the packet loop did not pick up the new policy")
            time.sleep(0.0005)
        self.current = tables

    @property
    def tables(self):
        return self.current

    # ---- User-ID (userid.pxi)
    def set_users(self, UserTable users, double timeout=2.0) -> None:
        """Swap in a new user table; returns once the loop uses it (or at once when stopped). Rule tables
        stay as they are; flows a `users:` condition decided look their user up again on their next packet."""
        cdef double deadline
        if not ngfw_load_u32(&self.e.running):
            self.e.users = &users.t
            self.users_current = users
            return
        ngfw_store_ptr(<void **>&self.e.users_pending, <void *>&users.t)
        engine_wake(self.e)
        deadline = time.monotonic() + timeout
        while ngfw_load_ptr(<void **>&self.e.users_pending) != NULL:
            if time.monotonic() > deadline:
                if ngfw_cas_ptr(<void **>&self.e.users_pending, <void *>&users.t, NULL):
                    raise TimeoutError("the packet loop did not pick up the new user table")
                break   # taken just now
            time.sleep(0.0002)
        self.users_current = users

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
        cdef flowtable_t *ft = &self.e.flows
        cdef uint32_t s = 0, n = ft.mask + 1, left = ft.count, page
        cdef uintptr_t used_at, page_end = 0
        cdef bint check_pages = ft.n_released != 0, page_released = False
        while s < n and left:   # left: a replay engine sized for a big capture holds a small one's flows
            # a page given back is not read (flow_slot_released), looked up once per page: a division per slot
            # was most of this scan over a replay's small captures
            used_at = <uintptr_t>&ft.slots[s].used
            if check_pages and used_at >= page_end:
                page = flow_page_of(ft, <void *>used_at)
                page_released = flow_page_released(ft, page)
                page_end = ft.page0 + (<uintptr_t>page + 1) * mem_page
            if page_released:
                # on to the first slot whose `used` byte lies on the next page
                s = <uint32_t>((page_end - <uintptr_t>&ft.slots[0].used + sizeof(flow_t) - 1) // sizeof(flow_t))
                continue
            if s + END_SCAN_AHEAD < n:
                # a slot a cache line (or two): the scan waited on memory
                __builtin_prefetch(&ft.slots[s + END_SCAN_AHEAD].used)
            if ft.slots[s].used:
                flow_end(self.e, &ft.slots[s], END_SHUTDOWN, ngfw_now_ns())
                ft.slots[s].used = 0
                left -= 1
            s += 1
        ft.count = 0

    def replay_reset(self) -> None:
        """Between two captures replayed by one engine, after `end_all_flows`: forget what belonged to the
        last one's packets and clock (fragments, learnt MACs, the sweep clock, quota buckets), so the next
        capture runs as it would on a fresh engine. Flow ids go on counting."""
        cdef uint32_t i
        if ngfw_load_u32(&self.e.running):
            raise RuntimeError("replay_reset() while the loop is running")
        # the two tables are ~400 KB that most captures never write: cleared only when written
        if self.e.frags_used:
            memset(self.e.frags, 0, FRAG_SLOTS * sizeof(frag_entry_t))
            self.e.frags_used = 0
        if self._macs_learnt():
            for i in range(MACTABLE_SLOTS):
                self.e.macs[i].key = 0
                self.e.macs[i].ts = 0
                self.e.macs[i].port = -1   # as a new engine's
        self.e.last_sweep = 0
        self.e.flows.sweep_cursor = 0
        # the table just emptied: not a fall from a flood whose pages to give back, only for the next capture to
        # fault in again (each file of a replay of many did); its pages are given back as a new engine's would
        # be, once a capture's own flows fall
        self.e.flows.peak = 0
        self.e.flows.give_back_left = 0
        self.e.flows.empty_from = 0
        if self.e.flows.count == 0 and not self.e.flows.external:
            # every page of the emptied table is marked as holding no flow, as a new table's are (flow.pxi), but
            # stays mapped: the next capture's sweeps and end_all_flows pass over the pages its flows do not use
            # (reading the whole table for each capture was a tenth of replaying a small one) and those it uses
            # are not faulted in again
            memset(self.e.flows.released, 0xff, ((self.e.flows.n_pages + 63) // 64) * sizeof(uint64_t))
            self.e.flows.n_released = self.e.flows.n_pages
        for i in range(VSYS_SLOTS):
            self.e.vsys[i].tokens = 0
            self.e.vsys[i].refilled_ns = 0
            self.e.vsys[i].primed = 0

    cdef bint _macs_learnt(self):
        """Whether a frame may have been switched by MAC learning (worker.pxi forward): a segment other than a
        wire of two ports."""
        cdef uint32_t i
        for i in range(self.e.n_segments):
            if self.e.segments[i].n_ports != 0 and self.e.segments[i].n_ports != 2:
                return True
        return False

    # ---- session state (session.pxi): requests served on the loop's thread
    cdef _serve(self, sess_req_t *q, double timeout, object now_ns=None):
        """Have the loop serve `q` between bursts (or serve it here while the loop is stopped, at `now_ns`:
        tests that inject on their own clock export and import on it too)."""
        cdef double deadline
        cdef uint64_t now = ngfw_now_ns() if now_ns is None else <uint64_t>now_ns
        with self.request_lock:
            if not ngfw_load_u32(&self.e.running):
                with nogil:
                    serve_request(self.e, q, now)
                return
            ngfw_store_ptr(<void **>&self.e.request, <void *>q)
            engine_wake(self.e)
            deadline = time.monotonic() + timeout
            while not ngfw_load_u32(&q.done):
                if not ngfw_load_u32(&self.e.running) and ngfw_cas_ptr(<void **>&self.e.request, <void *>q, NULL):
                    with nogil:   # the loop ended before it took the request
                        serve_request(self.e, q, ngfw_now_ns())
                    return
                if time.monotonic() > deadline and ngfw_cas_ptr(<void **>&self.e.request, <void *>q, NULL):
                    raise TimeoutError("the packet loop did not take the session request")
                time.sleep(0.0002)

    cdef dict _results(self, sess_req_t *q):
        return {"results": {name: q.results[i] for i, name in enumerate(SESSION_RESULTS) if q.results[i]},
                "streams_restored": q.streams_restored}

    def export_sessions(self, int workload=-1, uint64_t changed_since=0, bint streams=False, bint hand_over=False,
                        uint32_t cursor=0, uint32_t limit=0, bint only_allowed=True, double timeout=10.0,
                        now_ns=None) -> dict:
        """Flows as session records (bytes; `decode_records` reads them): every flow, or those with
        workload index `workload` (of the running tables) at either end, changed since `changed_since`
        (engine clock ns), from flow slot `cursor` on, at most `limit`. `hand_over`: a cut-over -- the
        exported flows are the destination's now (they linger here unlogged). Returns {"records",
        "keys" (every matching flow's key, changed or not), "count", "cursor" (of the next page, 0: done),
        "now" (the engine clock the records were taken at)}."""
        cdef sess_req_t *q = <sess_req_t *>calloc(1, sizeof(sess_req_t))
        if q == NULL:
            raise MemoryError()
        q.kind = REQ_EXPORT
        q.workload = workload
        q.changed_since = changed_since
        q.cursor = cursor
        q.limit = limit
        q.streams = streams
        q.hand_over = hand_over
        q.only_allowed = only_allowed
        now = ngfw_now_ns() if now_ns is None else now_ns
        try:
            self._serve(q, timeout, now_ns)
            if q.error == -2:
                raise MemoryError("not enough memory to export the sessions")
            return {"records": (<char *>q.out.p)[:q.out.n] if q.out.n else b"",
                    "keys": (<char *>q.keys.p)[:q.keys.n] if q.keys.n else b"",
                    "count": q.exported, "cursor": q.cursor, "now": now}
        finally:   # _serve returns or raises only once the loop no longer holds q
            free(q.out.p)
            free(q.keys.p)
            free(q)

    # ---- the operator's view of the flow table (session_view.pxi): requests served on the loop's thread
    def list_sessions(self, dict flow_filter, uint32_t cursor=0, uint32_t limit=1000, uint32_t max_scan=16384,
                      double timeout=5.0, now_ns=None) -> dict:
        """Flows matching `flow_filter` (ngfw.dataplane.sessions builds it: indexes of the running tables
        and of the generations flows were decided by), from flow slot `cursor` on, at most `limit` of them,
        looking at no more than `max_scan` slots (0: all). Returns {"sessions": [flow dicts, as `flows()`
        makes them, plus `inspected`, `threat`, `classifying`, `migrating`, `cut`, `age_ns`, `idle_ns`],
        "cursor" (of the next request; 0: the table's end), "scanned", "now" (engine clock), "loop_ns" (how
        long the request held the loop)}."""
        cdef sess_req_t *r = <sess_req_t *>calloc(1, sizeof(sess_req_t))
        cdef sview_req_t *q = <sview_req_t *>calloc(1, sizeof(sview_req_t))
        cdef const sview_t *v
        cdef uint32_t i
        if r == NULL or q == NULL:
            free(r)
            free(q)
            raise MemoryError()
        try:
            _sfilter_from(flow_filter, &q.filter)
            r.kind = REQ_LIST
            r.view = q
            q.cursor = cursor
            q.limit = limit
            q.max_scan = max_scan
            self._serve(r, timeout, now_ns)
            if r.error == -2:
                raise MemoryError("not enough memory to list the sessions")
            sessions = []
            for i in range(q.out.n // sizeof(sview_t)):
                v = <const sview_t *>(q.out.p + <size_t>i * sizeof(sview_t))
                d = self._flow_event_dict(<event_t *>&v.ev)
                d["tcp_state"] = _name(TCP_STATE_NAMES, v.ev.tcp_state)
                d["inspected"] = bool(v.inspected)
                d["threat"] = _name(ACTION_NAMES, v.threat) if v.threat else None
                d["classifying"] = v.app_state != APPST_DONE and v.ev.action == A_ALLOW
                d["migrating"] = v.mig == MIG_IN
                d["cut"] = v.cut == CUT_POLICY
                d["bypass"] = bool(v.bypass)
                d["age_ns"] = q.now - v.ev.ts_first if q.now > v.ev.ts_first else 0
                d["idle_ns"] = q.now - v.ev.ts_last if q.now > v.ev.ts_last else 0
                sessions.append(d)
            return {"sessions": sessions, "cursor": q.cursor, "scanned": q.scanned, "now": q.now,
                    "loop_ns": q.took_ns}
        finally:   # _serve returns or raises only once the loop no longer holds the request
            free(q.out.p)
            free(q)
            free(r)

    def clear_sessions(self, dict flow_filter, bint silent=False, uint32_t cursor=0, uint32_t max_scan=16384,
                       double timeout=5.0, now_ns=None) -> dict:
        """End the flows matching `flow_filter` from slot `cursor` on (at most `max_scan` slots looked at): each
        logged one's EVE record says `cleared`; a TCP connection is reset both ways at its next segment unless
        `silent`. Returns {"cleared", "resets" (connections to be reset), "cursor" (0: the end), "scanned"}."""
        cdef sess_req_t *r = <sess_req_t *>calloc(1, sizeof(sess_req_t))
        cdef sview_req_t *q = <sview_req_t *>calloc(1, sizeof(sview_req_t))
        if r == NULL or q == NULL:
            free(r)
            free(q)
            raise MemoryError()
        try:
            _sfilter_from(flow_filter, &q.filter)
            r.kind = REQ_CLEAR
            r.view = q
            q.cursor = cursor
            q.max_scan = max_scan
            q.silent = silent
            self._serve(r, timeout, now_ns)
            return {"cleared": q.matched, "resets": q.resets, "cursor": q.cursor, "scanned": q.scanned,
                    "loop_ns": q.took_ns}
        finally:
            free(q)
            free(r)

    def table_slots(self) -> int:
        """Slots of the flow table (a listing's cursor runs over 0..table_slots())."""
        return self.e.flows.mask + 1

    cdef uint16_t *_app_map(self, object exporter_apps, uint32_t *n) except? NULL:
        cdef uint16_t *m
        cdef uint32_t i
        here = {name: i for i, name in enumerate(self.app_names)}
        names = list(exporter_apps) if exporter_apps is not None else list(self.app_names)
        n[0] = len(names)
        m = <uint16_t *>calloc(len(names) + 1, sizeof(uint16_t))
        if m == NULL:
            raise MemoryError()
        for i, name in enumerate(names):
            m[i] = here.get(name, 0) if name else 0
        return m

    def import_sessions(self, const unsigned char[:] records, exporter_apps=None, bint migration=False,
                        int require_workload=-1, double timeout=10.0, now_ns=None) -> dict:
        """Import session records, each checked and decided again by the running policy. `exporter_apps`:
        the exporter's app names by id (None: this catalogue); `migration`: records of a move (imported
        flows may be updated or removed by a later transfer of it); `require_workload`: every record must
        have that workload (running tables' index) at one end. Returns {"results": {result: count}, ...}."""
        cdef sess_req_t *q = <sess_req_t *>calloc(1, sizeof(sess_req_t))
        cdef uint32_t n_map = 0
        if q == NULL:
            raise MemoryError()
        try:
            q.kind = REQ_IMPORT
            q.in_p = &records[0] if records.shape[0] else NULL
            q.in_n = records.shape[0]
            q.migration = migration
            q.require_wl = require_workload
            q.app_map = self._app_map(exporter_apps, &n_map)
            q.n_app_map = n_map
            self._serve(q, timeout, now_ns)
            if q.error == -1:
                raise RuntimeError("no policy is loaded: sessions cannot be checked against one")
            return self._results(q)
        finally:
            free(<void *>q.app_map)
            free(q)

    def adopt_sessions(self, const unsigned char[:] old, dict old_layout, exporter_apps=None,
                       double timeout=30.0, now_ns=None) -> dict:
        """Import every flow of a dead dataplane's state memory `old` (laid out as `old_layout`, which the
        caller checked has this build's fingerprint), each checked and decided again by the running policy."""
        cdef sess_req_t *q
        cdef const uint8_t *base
        cdef uint32_t n_map = 0
        if old_layout.get("fingerprint") != state_fingerprint():
            raise ValueError("the state memory was laid out by another build")
        if old.shape[0] < old_layout["size"]:
            raise ValueError(f"the state memory holds {old.shape[0]} bytes, its layout says {old_layout['size']}")
        base = &old[0]
        q = <sess_req_t *>calloc(1, sizeof(sess_req_t))
        if q == NULL:
            raise MemoryError()
        try:
            q.kind = REQ_ADOPT
            q.require_wl = -1
            q.old_slots = <const flow_t *>(base + <size_t>old_layout["flows_off"])
            q.old_n_slots = old_layout["slots"]
            q.old_host_names = <const char *>(base + <size_t>old_layout["host_off"])
            q.old_host_lens = base + <size_t>old_layout["host_lens_off"]
            q.old_n_host = old_layout["n_host"]
            q.old_insp = <const inspslot_t *>(base + <size_t>old_layout["insp_off"])
            q.old_n_insp = old_layout["inspect_slots"]
            q.app_map = self._app_map(exporter_apps, &n_map)
            q.n_app_map = n_map
            self._serve(q, timeout, now_ns)
            if q.error == -1:
                raise RuntimeError("no policy is loaded: sessions cannot be checked against one")
            return self._results(q)
        finally:
            free(<void *>q.app_map)
            free(q)

    def forget_presence(self, int workload, double timeout=10.0) -> None:
        """The workload (running tables' index) left this host: its next frame here is an arrival again."""
        cdef sess_req_t *q = <sess_req_t *>calloc(1, sizeof(sess_req_t))
        if q == NULL:
            raise MemoryError()
        try:
            q.kind = REQ_FORGET_PRESENCE
            q.workload = workload
            self._serve(q, timeout)
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
        cdef uint32_t i
        cdef port_t *p
        ports = []
        for i in range(self.e.n_ports):
            p = &self.e.ports[i]
            ports.append({"name": self.port_names[i], "rx_packets": p.rx_packets, "rx_bytes": p.rx_bytes,
                          "tx_packets": p.tx_packets, "tx_bytes": p.tx_bytes, "tx_errors": p.tx_errors,
                          "kernel_drops": self._kernel_drops(i)})
        return {
            "ports": ports,
            "drops": {_name(DROP_REASONS, i): self.e.drops[i] for i in range(1, R_COUNT)},
            "flows_active": self.e.flows.count,
            "flows_capacity": self.e.flows.capacity,
            "flows_created": self.e.flows_created,
            "flows_expired": self.e.flows_expired,
            "flows_cut": self.e.flows_cut,
            "flows_early_dropped": self.e.flows_early_dropped,
            "records_unlogged": self.e.records_unlogged,
            "flows_handed_over": self.e.flows_handed_over,
            "flows_user_redecided": self.e.user_redecided,
            "arrivals": self.e.arrivals,
            "flow_insert_failures": self.e.drops[R_FLOW_TABLE_FULL],
            # memory given back to the system after floods (flow.pxi), and what of the table is given back now
            "memory_given_back": {"flows": self.e.flows.bytes_given_back,
                                  "inspect": self.e.ins.pool.bytes_given_back if self.e.ins != NULL else 0},
            "flow_table_bytes": <uint64_t>(self.e.flows.mask + 1) * sizeof(flow_t),
            "flow_table_bytes_released": <uint64_t>self.e.flows.n_released * mem_page,
            "events_lost": self.e.events.lost,
            "drop_events_suppressed": self.e.pktdrop_suppressed,
            "capture_frames": self.e.capture.frames,
            "capture_lost": self.e.capture.lost,
            "app_cuts": self.e.app_cuts,
            "appid_buffers_exhausted": self.e.cls.exhausted,
            "inspect": self.inspect_stats(),
            "bypass": self.bypass_stats(),
            "vsys": self.vsys_stats(),
        }

    def vsys_stats(self) -> dict:
        """Per vsys name: {sessions, max_sessions, new_sessions_per_second, drops: {reason: n}} (tenancy.pxi)."""
        if self.current is None:
            return tenancy_stats(self.e.vsys, self.vsys_slots, NULL, ())
        return tenancy_stats(self.e.vsys, self.vsys_slots, &self.current.t, tuple(self.current.policy.vsys))

    def inspect_stats(self) -> dict:
        """Threat inspection counters; `alerts` is {(vsys index or -1, severity, blocked): count}, `suppressed`
        {(vsys index or -1, reason): matches that raised no alert} (SUPPRESS_REASONS)."""
        cdef insws_t *ws = self.e.ins
        cdef uint32_t v, s, b
        alerts = {}
        for v in range(1024):
            for s in range(4):
                for b in range(2):
                    if ws.alerts[v][s][b]:
                        alerts[(<int>v - 1, s + 1, bool(b))] = ws.alerts[v][s][b]
        suppressed = {}
        for v in range(1024):
            for s in range(SUP_COUNT):
                if ws.suppressed[v][s]:
                    suppressed[(<int>v - 1, SUPPRESS_REASONS[s])] = ws.suppressed[v][s]
        return {"alerts": alerts, "suppressed": suppressed,
                "flows_inspected": ws.flows_inspected, "flows_blocked": ws.blocked_flows,
                "bytes_inspected": ws.bytes_inspected, "depth_reached": ws.depth_reached,
                "out_of_order": ws.out_of_order, "overlaps": ws.overlaps, "overlap_mismatch": ws.overlap_mismatch,
                "fragments_dropped": ws.fragments_dropped, "candidates_overflow": ws.cand_overflow,
                "state_exhausted": ws.pool.exhausted, "state_in_use": ws.pool.in_use,
                "decompression_bomb": ws.bombs, "body_limit": ws.body_limit, "decoders_exhausted": ws.bodydec.exhausted,
                "hpack_tables_exhausted": ws.h2tab.exhausted, "hpack_malformed": ws.h2tab.malformed,
                "hpack_unresolved": ws.h2tab.unresolved, "hpack_block_too_large": ws.h2tab.lost}

    cdef void _fold_kernel_drops(self, uint32_t i, int fd):
        """Keep what a ring that is being replaced counted."""
        cdef tpacket_stats st
        cdef socklen_t n = sizeof(st)
        if fd >= 0 and getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &n) == 0:
            self.kernel_drops[i] = self.kernel_drops.get(i, 0) + st.tp_drops

    cdef uint64_t _kernel_drops(self, uint32_t i):
        # PACKET_STATISTICS resets on every read, so the total is kept here
        cdef tpacket_stats st
        cdef socklen_t n = sizeof(st)
        cdef port_t *p = &self.e.ports[i]
        if p.kind == PORT_RING and p.fd >= 0 and getsockopt(p.fd, SOL_PACKET, PACKET_STATISTICS, &st, &n) == 0:
            self.kernel_drops[i] = self.kernel_drops.get(i, 0) + st.tp_drops
        return self.kernel_drops.get(i, 0)

    def flows(self) -> list:
        """The flow table as dicts (debugging and tests; O(capacity))."""
        cdef uint32_t s
        cdef event_t ev
        out = []
        for s in range(self.e.flows.mask + 1):
            if not flow_slot_released(&self.e.flows, s) and self.e.flows.slots[s].used:
                memset(&ev, 0, sizeof(ev))
                event_from_flow(&ev, &self.e.flows.slots[s], EV_FLOW)
                event_host(self.e, &ev, &self.e.flows.slots[s])
                d = self._event_dict(&ev)
                d["tcp_state"] = _name(TCP_STATE_NAMES, self.e.flows.slots[s].tcp_state)
                d["cut"] = bool(self.e.flows.slots[s].cut)
                d["bypass"], d["bypass_ways"] = self._bypass_state(&self.e.flows.slots[s])
                out.append(d)
        return out

    cdef tuple _bypass_state(self, flow_t *f):
        """("kernel", ways) for a flow in bypass, else (why it is not: BYPASS_REASONS, ways it would be), judged
        as if its ports carried the wire program; ways: what each direction's entry forwards, to server then to
        client: "all", "empty" (segments without payload) or None."""
        cdef uint8_t flags[2]
        cdef int why = bypass_check(self.e, self.e.tables, f, True, flags, NULL, True)
        ways = tuple("all" if x == BYPASS_ALL else "empty" if x == BYPASS_EMPTY else None for x in flags)
        if f.bypass == BP_IN:
            return "kernel", tuple("all" if x == BYPASS_ALL else "empty" if x == BYPASS_EMPTY else None
                                   for x in f.bp_flags)
        return _name(BYPASS_REASONS, why), ways

    # ---- flow bypass (bypass.pxi)
    def enable_bypass(self, int map_fd, int filter_fd, dict ports) -> None:
        """Bypass flows through the wire program's map `map_fd`; `ports`: port index -> (ifindex, peer port
        index) of every port whose interface carries the program. The ring filter `filter_fd` is attached to
        those ports' sockets, so frames the kernel forwards are not copied to the rings. The loop may run:
        the map descriptor is stored last, and the programs look nothing up until the caller turns them on."""
        for index, (ifindex, peer) in ports.items():
            if not 0 <= index < self.e.n_ports or not 0 <= peer < self.e.n_ports:
                raise ValueError(f"no port {index} or {peer}")
        self.attach_ring_filter(filter_fd, list(ports))
        for index, (ifindex, peer) in ports.items():
            self.e.bypass_ifindex[index] = ifindex
            self.e.bypass_peer[index] = peer
        self.e.bypass_fd = map_fd

    def attach_ring_filter(self, int filter_fd, list port_indexes) -> None:
        """Attach the wire program's ring filter `filter_fd` to the sockets of these ring ports (and of the
        rings that replace them later): flow bypass and the SYN admission limits keep frames out of the rings
        with it (bypass.pxi, docs/dataplane.md)."""
        cdef int fd = filter_fd
        for index in port_indexes:
            if not 0 <= index < self.e.n_ports:
                raise ValueError(f"no port {index}")
            if self.e.ports[index].kind != PORT_RING:
                raise ValueError(f"port {self.port_names[index]} is not a packet ring")
            if setsockopt(self.e.ports[index].fd, SOL_SOCKET, SO_ATTACH_BPF, &fd, sizeof(int)) < 0:
                raise OSError(errno, f"cannot attach the ring filter to {self.port_names[index]}: "
                                     f"{os.strerror(errno)}")
        self.bypass_filter_fd = filter_fd

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

    cdef dict _event_dict(self, event_t *ev):
        if ev.type == EV_ARRIVAL:
            return {"event": "arrival", "workload": ev.src_wl, "generation": ev.generation,
                    "in_port": self.port_names[ev.in_port] if ev.in_port < len(self.port_names) else "",
                    "time": (ev.ts_first / 1e9) + self.wall_offset}
        d = self._flow_event_dict(ev)
        if ev.type == EV_ALERT:
            d["event"] = "alert"
            d["ruleset"] = ev.ruleset
            d["sig"] = ev.sig
            d["blocked"] = bool(ev.alert_blocked)
            d["pkt_to_client"] = bool(ev.pkt_to_client)
            ruleset = self.rulesets.get(ev.ruleset)
            d["signature"] = ruleset.rules[ev.sig] if ruleset is not None and ev.sig < len(ruleset.rules) else None
            if ev.arp_op:
                arp_event_fields(d, ev.arp_op, ev.arp_mac)
        return d

    cdef dict _flow_event_dict(self, event_t *ev):
        cdef char cid[COMMUNITY_ID_LEN + 2]
        cdef int cid_len = community_id(cid, &ev.src_ip, &ev.dest_ip, ev.is_v6, ev.proto, ev.src_port, ev.dest_port,
                                        ev.icmp_type)
        host, ssh = host_fields((<char *>ev.host)[:ev.host_len])
        return {
            "event": "flow" if ev.type == EV_FLOW else "drop",
            "flow_id": ev.flow_id if not ev.no_flow else None,
            "community_id": cid[:cid_len].decode("ascii"),
            "proto": ev.proto,
            "src_ip": ip_from_c(ev.src_ip, ev.is_v6),
            "src_port": ev.src_port,
            "dest_ip": ip_from_c(ev.dest_ip, ev.is_v6),
            "dest_port": ev.dest_port,
            "vlan": ev.vlan,
            "in_port": self.port_names[ev.in_port] if ev.in_port < len(self.port_names) else "",
            "vsys": ev.vsys,
            "src_wl": ev.src_wl,
            "dst_wl": ev.dst_wl,
            "rule": ev.rule,
            "rule_ingress": ev.rule_ingress,
            "generation": ev.generation,
            "action": _name(ACTION_NAMES, ev.action),
            "end_reason": _name(END_REASONS, ev.end_reason) if ev.type == EV_FLOW else None,
            "drop_reason": _name(DROP_REASONS, ev.drop_reason) if ev.type == EV_DROP else None,
            "tcp_state": _name(TCP_STATE_NAMES, ev.tcp_state),
            "start": (ev.ts_first / 1e9) + self.wall_offset,
            "end": (ev.ts_last / 1e9) + self.wall_offset,
            "pkts_toserver": ev.pkts[0],
            "pkts_toclient": ev.pkts[1],
            "bytes_toserver": ev.bytes[0],
            "bytes_toclient": ev.bytes[1],
            "app_proto": self.app_names[ev.app] if 0 < ev.app < len(self.app_names) else None,
            "app_confidence": ev.app_conf if ev.app else None,
            "app_pkts": ev.app_pkts if ev.app else None,
            "app_host": host,
            "ssh": ssh,
            "tcp_flags_ts": ev.tcp_flags[0],
            "tcp_flags_tc": ev.tcp_flags[1],
            "icmp_type": ev.icmp_type if ev.proto == P_ICMP or ev.proto == P_ICMPV6 else None,
            "icmp_code": ev.icmp_code if ev.proto == P_ICMP or ev.proto == P_ICMPV6 else None,
            "alerted": bool(ev.alerted),
            "capture": ev.capture,
            "suppressed": ev.suppressed,
            "user": ev.user,
            "user_via": (ev.user_via[0], ev.user_via[1]),
        }

    cdef size_t _flow_json_cap(self, tuple names) except 0:
        """The longest record drain_flow_json can write with these name tables, but for the file's name: worked out
        once for the tables a replay passes file after file (from every name, twice a file, it was a fifth of
        replaying a small capture). Tuples of bytes: what is cached cannot change."""
        cdef tuple last = self.flow_json_names
        cdef Py_ssize_t i
        if last is not None:
            for i in range(len(names)):
                if last[i] is not names[i]:
                    break
            else:
                return self.flow_json_cap
        vsys, workloads, rules, apps, protos, actions, default_rule = names
        cap = 1024 + 6 * HOST_MAX + len(default_rule)
        cap += max([len(x) for x in apps] or [0]) + max([len(x) for x in vsys] or [0])
        cap += 2 * max([len(x) for x in workloads] or [0]) + max([len(x) for x in rules] or [0])
        cap += max([len(x) for x in protos]) + max([len(x) for x in actions])
        self.flow_json_names = names
        self.flow_json_cap = cap
        return cap

    def drain_flow_json(self, bytes pcap_file, tuple vsys, tuple workloads, tuple rules, tuple apps,
                        tuple protos, tuple actions, bytes default_rule) -> bytes:
        """Replay's fast path: the flow events in the ring as JSON lines, each the bytes orjson writes for the
        record `ngfw.dataplane.replay.Replayer.record` builds from an event dict, plus a newline, in order of the
        flows' first packet (start, then flow id: as Python sorts (start, flow_id, line)); other events are
        dropped. Every name argument is pre-encoded JSON (`json_quote`): `pcap_file`; `vsys`, `workloads`,
        `rules` by index (null for an empty name); `apps[app id]` the `"app_proto":...,"app":...` pair;
        `protos[0..255]`; `actions`. Lines are sorted and joined here: a tuple per line sorted in Python was a
        fifth of replaying a small capture."""
        cdef evring_t *r = &self.e.events
        cdef uint32_t i, n_lines = 0, pending = evring_pending(r)
        cdef event_t *ev
        cdef double start
        cdef Py_ssize_t n_vsys, n_wl, n_rules, n_apps
        cdef size_t cap, room
        cdef jbuf_t b
        cdef json_line_t *lines
        cdef char *grown
        cdef char *at
        cdef bytes out
        cdef bytes host
        cdef bytes ssh
        cdef int64_t vs, rule
        if pending == 0:
            return b""
        cap = len(pcap_file) + self._flow_json_cap((vsys, workloads, rules, apps, protos, actions, default_rule))
        n_vsys, n_wl, n_rules, n_apps = len(vsys), len(workloads), len(rules), len(apps)
        room = cap * (pending if pending < 64 else 64)
        lines = <json_line_t *>malloc(pending * sizeof(json_line_t))
        b.p = <char *>malloc(room)
        b.n = 0
        b.cap = room
        if lines == NULL or b.p == NULL:
            free(lines)
            free(b.p)
            raise MemoryError()
        try:
            for i in range(pending):
                ev = evring_peek(r, i)
                if ev.type != EV_FLOW:
                    continue
                if b.cap - b.n < cap:
                    grown = <char *>realloc(b.p, 2 * b.cap + cap)
                    if grown == NULL:
                        raise MemoryError()
                    b.p = grown
                    b.cap = 2 * b.cap + cap
                start = (ev.ts_first / 1e9) + self.wall_offset
                lines[n_lines].start = start
                lines[n_lines].flow_id = ev.flow_id
                lines[n_lines].off = b.n
                jb_lit(&b, b'{"event_type":"flow","pcap_file":')
                jb_bytes(&b, pcap_file)
                jb_lit(&b, b',"flow_id":')
                jb_u64(&b, ev.flow_id)
                jb_lit(&b, b',"timestamp":')
                jb_timestamp(&b, start)
                jb_lit(&b, b',"src_ip":')
                jb_ip(&b, ev.src_ip, ev.is_v6)
                jb_lit(&b, b',"src_port":')
                jb_u64(&b, ev.src_port)
                jb_lit(&b, b',"dest_ip":')
                jb_ip(&b, ev.dest_ip, ev.is_v6)
                jb_lit(&b, b',"dest_port":')
                jb_u64(&b, ev.dest_port)
                jb_lit(&b, b',"proto":')
                jb_bytes(&b, protos[ev.proto])
                jb_lit(&b, b',"community_id":"')
                b.n += community_id(b.p + b.n, &ev.src_ip, &ev.dest_ip, ev.is_v6, ev.proto, ev.src_port,
                                    ev.dest_port, ev.icmp_type)
                jb_lit(&b, b'"')
                if ev.proto == P_ICMP or ev.proto == P_ICMPV6:
                    jb_lit(&b, b',"icmp_type":')
                    jb_u64(&b, ev.icmp_type)
                    jb_lit(&b, b',"icmp_code":')
                    jb_u64(&b, ev.icmp_code)
                jb_lit(&b, b',')
                jb_bytes(&b, apps[ev.app] if 0 < ev.app < n_apps else b'"app_proto":null,"app":null')
                jb_lit(&b, b',"app_host":')
                if ev.host_len and ev.host[0] == HOST_SSH_MARK:
                    # not a name: SSH's identification strings, under "ssh" as Suricata writes them (orjson's bytes)
                    ssh = json.dumps(host_fields((<char *>ev.host)[:ev.host_len])[1], separators=(",", ":"),
                                     ensure_ascii=False).encode()
                    jb_lit(&b, b'null,"ssh":')
                    jb_bytes(&b, ssh)
                elif ev.host_len == 0:
                    jb_lit(&b, b'null')
                elif utf8_valid(<const uint8_t *>ev.host, ev.host_len):
                    jb_string(&b, <const uint8_t *>ev.host, ev.host_len)
                else:
                    host = (<char *>ev.host)[:ev.host_len].decode("utf-8", "replace").encode("utf-8")
                    jb_string(&b, <const uint8_t *><const char *>host, len(host))
                jb_lit(&b, b',"app_confidence":')
                if ev.app:
                    jb_u64(&b, ev.app_conf)
                    jb_lit(&b, b',"app_pkts":')
                    jb_u64(&b, ev.app_pkts)
                else:
                    jb_lit(&b, b'null,"app_pkts":null')
                vs = ev.vsys
                rule = ev.rule
                jb_lit(&b, b',"vsys":')
                jb_bytes(&b, vsys[vs] if 0 <= vs < n_vsys else b"null")
                jb_lit(&b, b',"src_vm":')
                jb_bytes(&b, workloads[ev.src_wl] if 0 <= ev.src_wl < n_wl else b"null")
                jb_lit(&b, b',"dest_vm":')
                jb_bytes(&b, workloads[ev.dst_wl] if 0 <= ev.dst_wl < n_wl else b"null")
                jb_lit(&b, b',"rule":')
                if vs < 0:
                    jb_lit(&b, b"null")
                elif rule < 0:
                    jb_bytes(&b, default_rule)
                else:
                    jb_bytes(&b, rules[rule] if rule < n_rules else b'"default-deny"')
                jb_lit(&b, b',"action":')
                jb_bytes(&b, actions[ev.action] if ev.action < len(actions) else b"null")
                jb_lit(&b, b',"pkts_toserver":')
                jb_u64(&b, ev.pkts[0])
                jb_lit(&b, b',"pkts_toclient":')
                jb_u64(&b, ev.pkts[1])
                jb_lit(&b, b',"bytes_toserver":')
                jb_u64(&b, ev.bytes[0])
                jb_lit(&b, b',"bytes_toclient":')
                jb_u64(&b, ev.bytes[1])
                jb_lit(&b, b'}\n')
                lines[n_lines].len = b.n - lines[n_lines].off
                n_lines += 1
            for i in range(n_lines):
                lines[i].text = b.p + lines[i].off
            qsort(lines, n_lines, sizeof(json_line_t), json_line_order)
            out = PyBytes_FromStringAndSize(NULL, b.n)
            at = <char *>out
            for i in range(n_lines):
                memcpy(at, lines[i].text, lines[i].len)
                at += lines[i].len
        finally:
            free(lines)
            free(b.p)
        evring_take(r, pending)
        return out

    def capture_matching(self, double seconds, uint32_t packets, int workload=-1, object network=None,
                         int port=0, int proto=0) -> None:
        """For `seconds` from now, flows that match and capture nothing yet copy their next `packets` frames to
        the capture ring (an operator's capture): `workload` (index in the tables in force) at either end,
        an address in `network` (an ipaddress network) at either end, `port` either port, `proto`."""
        cdef capreq_t *q = &self.e.capreq
        cdef ip128_t ip, mask
        if not 0 < packets <= CAP_MAX_PACKETS:
            raise ValueError(f"packets must be 1 to {CAP_MAX_PACKETS}, got {packets}")
        self._capture_ring()
        ngfw_store_u64(&q.until_ns, 0)
        q.wl = workload
        q.port = <uint16_t>port
        q.proto = <uint8_t>proto
        q.packets = <uint16_t>packets
        q.has_ip = network is not None
        if network is not None:
            ip = ip_to_c(network.network_address)
            bits = network.prefixlen + (96 if network.version == 4 else 0)
            mask = ip_from_int(((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1))
            q.ip = ip
            q.mask = mask
        if seconds > 0:
            ngfw_store_u64(&q.until_ns, ngfw_now_ns() + <uint64_t>(seconds * 1e9))

    def drain_captures(self, uint32_t max_frames=4096) -> list:
        """Take up to `max_frames` captured frames from the capture ring (capture.pxi), each
        (flow_id, vsys, generation, kind, mode, time, in_port, origlen, frame): `kind` "frame" or "alert",
        `mode` "flow" (write it) or "alert" (keep it back until the flow alerts)."""
        cdef capring_t *r = &self.e.capture
        cdef uint32_t tail = r.tail
        cdef uint32_t head = ngfw_load_u32(&r.head)
        cdef uint32_t off, to_end
        cdef caprec_t *h
        out = []
        if r.buf == NULL:
            return out
        while tail != head and len(out) < max_frames:
            off = tail & (r.size - 1)
            to_end = r.size - off
            if to_end < sizeof(caprec_t):
                tail += to_end
                continue
            h = <caprec_t *>(r.buf + off)
            if h.kind == CAPK_PAD:
                tail += h.rec_len
                continue
            out.append((h.flow_id, h.vsys, h.generation, "alert" if h.kind == CAPK_ALERT else "frame",
                        "alert" if h.mode == CAP_ALERT else "flow", (h.ts_ns / 1e9) + self.wall_offset, h.in_port,
                        h.origlen, (<char *>r.buf)[off + sizeof(caprec_t):off + sizeof(caprec_t) + h.caplen]))
            tail += h.rec_len
        ngfw_store_u32(&r.tail, tail)
        return out

    def drain_events(self, uint32_t max_events=4096) -> list:
        """Take up to `max_events` flow/drop events from the ring (Python side of the SPSC ring)."""
        cdef evring_t *r = &self.e.events
        cdef uint32_t i, n = min(evring_pending(r), max_events)
        out = [self._event_dict(evring_peek(r, i)) for i in range(n)]
        evring_take(r, n)
        return out

    @property
    def drop_reasons(self) -> tuple:
        return DROP_REASONS[1:]
