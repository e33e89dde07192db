# Replay's JSON lines, written in C from the event ring: the same bytes orjson writes for the record
# `Replayer.record` builds from an event dict (compact, keys in the same order, non-ASCII as UTF-8), without a
# dict or a str per field. Names (vsys, workloads, rules, apps, actions) come pre-encoded from Python.

from libc.math cimport rint
from libc.time cimport time_t, tm

cdef extern from "time.h" nogil:
    tm *gmtime_r(const time_t *timep, tm *result)

cdef extern from "Python.h":
    object PyBytes_FromStringAndSize(const char *v, Py_ssize_t n)

from libc.stdlib cimport qsort, realloc

ctypedef struct json_line_t:
    double start            # the flow's first packet, as the record's timestamp
    uint64_t flow_id
    size_t off              # where the line lies in the buffer the lines were written to...
    size_t len
    const char *text        # ... and its address, once the buffer no longer moves

cdef int json_line_order(const void *x, const void *y) noexcept nogil:
    """The order Python sorts (start, flow_id, line) tuples in."""
    cdef const json_line_t *a = <const json_line_t *>x
    cdef const json_line_t *b = <const json_line_t *>y
    cdef int c
    if a.start != b.start:
        return -1 if a.start < b.start else 1
    if a.flow_id != b.flow_id:
        return -1 if a.flow_id < b.flow_id else 1
    c = memcmp(a.text, b.text, a.len if a.len < b.len else b.len)
    if c:
        return c
    return -1 if a.len < b.len else (1 if a.len > b.len else 0)

ctypedef struct jbuf_t:
    char *p
    size_t n
    size_t cap

cdef inline void jb_put(jbuf_t *b, const char *s, size_t n) noexcept nogil:
    # callers size the buffer for the whole record first: no check per write
    memcpy(b.p + b.n, s, n)
    b.n += n

cdef inline void jb_lit(jbuf_t *b, const char *s) noexcept nogil:
    jb_put(b, s, strlen(s))

cdef inline void jb_bytes(jbuf_t *b, bytes s):
    jb_put(b, <const char *>s, len(s))

cdef void jb_u64(jbuf_t *b, uint64_t v) noexcept nogil:
    cdef char digits[24]
    cdef int i = 24
    if v == 0:
        b.p[b.n] = 48
        b.n += 1
        return
    while v:
        i -= 1
        digits[i] = 48 + <char>(v % 10)
        v //= 10
    jb_put(b, digits + i, 24 - i)

cdef void jb_digits(jbuf_t *b, uint32_t v, int width) noexcept nogil:
    cdef int i
    for i in range(width - 1, -1, -1):
        b.p[b.n + i] = 48 + <char>(v % 10)
        v //= 10
    b.n += width

cdef bint utf8_valid(const uint8_t *s, uint32_t n) noexcept nogil:
    """Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF)."""
    cdef uint32_t i = 0, need, cp, k
    while i < n:
        if s[i] < 0x80:
            i += 1
            continue
        if 0xC2 <= s[i] <= 0xDF:
            need = 1
            cp = s[i] & 0x1F
        elif 0xE0 <= s[i] <= 0xEF:
            need = 2
            cp = s[i] & 0x0F
        elif 0xF0 <= s[i] <= 0xF4:
            need = 3
            cp = s[i] & 0x07
        else:
            return False
        if i + need >= n:
            return False
        for k in range(1, need + 1):
            if (s[i + k] & 0xC0) != 0x80:
                return False
            cp = (cp << 6) | (s[i + k] & 0x3F)
        if (need == 2 and (cp < 0x800 or 0xD800 <= cp <= 0xDFFF)) or (need == 3 and (cp < 0x10000 or cp > 0x10FFFF)):
            return False
        i += need + 1
    return True

cdef void jb_string(jbuf_t *b, const uint8_t *s, uint32_t n) noexcept nogil:
    """A JSON string of well-formed UTF-8 `s`, escaped as orjson escapes (quote, backslash, controls)."""
    cdef uint32_t i
    cdef uint8_t c
    cdef const char *hexd = b"0123456789abcdef"
    b.p[b.n] = 34
    b.n += 1
    for i in range(n):
        c = s[i]
        if c >= 0x20 and c != 34 and c != 92:
            b.p[b.n] = <char>c
            b.n += 1
        elif c == 34 or c == 92:
            b.p[b.n] = 92
            b.p[b.n + 1] = <char>c
            b.n += 2
        elif c == 8 or c == 9 or c == 10 or c == 12 or c == 13:
            b.p[b.n] = 92
            b.p[b.n + 1] = (b"b"[0] if c == 8 else (b"t"[0] if c == 9 else (b"n"[0] if c == 10 else
                            (b"f"[0] if c == 12 else b"r"[0]))))
            b.n += 2
        else:
            jb_lit(b, b"\\u00")
            b.p[b.n] = hexd[c >> 4]
            b.p[b.n + 1] = hexd[c & 15]
            b.n += 2
    b.p[b.n] = 34
    b.n += 1

cdef void jb_timestamp(jbuf_t *b, double epoch) noexcept nogil:
    """`eve_timestamp`: 2026-11-26T15:04:05.123456+0000, microseconds rounded half to even as round() does."""
    cdef int64_t micros = <int64_t>rint(epoch * 1000000.0)
    cdef int64_t seconds = micros // 1000000
    cdef int64_t fraction = micros - seconds * 1000000
    cdef time_t t = <time_t>seconds
    cdef tm parts
    gmtime_r(&t, &parts)
    b.p[b.n] = 34
    b.n += 1
    jb_digits(b, <uint32_t>(parts.tm_year + 1900), 4)
    b.p[b.n] = 45
    b.n += 1
    jb_digits(b, <uint32_t>(parts.tm_mon + 1), 2)
    b.p[b.n] = 45
    b.n += 1
    jb_digits(b, <uint32_t>parts.tm_mday, 2)
    b.p[b.n] = 84
    b.n += 1
    jb_digits(b, <uint32_t>parts.tm_hour, 2)
    b.p[b.n] = 58
    b.n += 1
    jb_digits(b, <uint32_t>parts.tm_min, 2)
    b.p[b.n] = 58
    b.n += 1
    jb_digits(b, <uint32_t>parts.tm_sec, 2)
    b.p[b.n] = 46
    b.n += 1
    jb_digits(b, <uint32_t>fraction, 6)
    jb_lit(b, b"+0000\"")

cdef void jb_ip(jbuf_t *b, ip128_t ip, bint v6):
    """An address as `ip_from_c` writes it, quoted."""
    cdef char text[64]
    cdef int n = ip_text(ip, v6, text)
    if n < 0:
        jb_bytes(b, b'"' + ip_from_c(ip, v6).encode("ascii") + b'"')
        return
    b.p[b.n] = 34
    b.n += 1
    jb_put(b, text, <size_t>n)
    b.p[b.n] = 34
    b.n += 1


def json_quote(object text) -> bytes:
    """`text` (a str, or None) as a JSON value: what orjson writes for it."""
    cdef bytes raw
    cdef jbuf_t b
    cdef bytes out
    if text is None:
        return b"null"
    raw = str(text).encode("utf-8", "replace")
    out = PyBytes_FromStringAndSize(NULL, len(raw) * 6 + 2)
    b.p = <char *>out
    b.n = 0
    b.cap = len(raw) * 6 + 2
    jb_string(&b, <const uint8_t *><const char *>raw, len(raw))
    return out[:b.n]


# ---------------------------------------------------------------- Engine.drain_flow_json

cdef size_t flow_json_cap(Engine self, tuple names) except 0:
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


cdef object flow_json_drain(Engine self, bytes pcap_file, tuple vsys, tuple workloads, tuple rules, tuple apps,
                            tuple protos, tuple actions, bytes default_rule):
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
    cap = len(pcap_file) + flow_json_cap(self, (vsys, workloads, rules, apps, protos, actions, default_rule))
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
