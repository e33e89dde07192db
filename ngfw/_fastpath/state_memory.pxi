# Session state memory: where the flow table, host names and inspection positions lie in a shared-memory
# state file (`state_layout`), and the record helpers ngfw.dataplane.state and migration use (`decode_records`,
# `tombstones`, `state_fingerprint`, `record_format`). The record format itself: session_defs.pxi.

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


cdef uint8_t *state_region(uint8_t *mem, object layout, str offset_name) except? NULL:
    """Where a `state_layout` offset lies in the state memory `mem`; NULL without one (the heap)."""
    return mem + <size_t>layout[offset_name] if mem != NULL else NULL
