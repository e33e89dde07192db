# Test-only extension: runs the App-ID protocol parsers (app_parsers.pxi) on payloads given from Python.
# The fastpath never imports this module; tests and the corpus measurement do.
include "defs.pxi"
include "appid_defs.pxi"
include "app_parsers.pxi"

APPS = {name: i for i, name in enumerate(BUILTIN_APPS) if name}
NEED_MORE = PARSE_NEED_MORE
# every parser on its own, by name (the registry's, app_registry.py): appid_parse tries some only after others
# said no, so the fuzz target calls each directly too; ANSWERS: the apps each registered it may name
PARSERS = APP_PARSER_NAMES
ANSWERS = APP_PARSER_ANSWERS


cdef dict _ssh_idents(bytes raw):
    # the identification strings an SSH flow's host entry holds (HOST_SSH_MARK), by side
    out = {}
    for line in raw[1:].replace(b"\r", b"\n").split(b"\n"):
        if line[:1] in (b"c", b"s") and len(line) > 1:
            out["client" if line[:1] == b"c" else "server"] = "SSH-" + line[1:].decode("ascii", "replace")
    return out


cdef dict _meta_dict(appmeta_t *m):
    cdef bint ssh = m.host_len > 0 and m.host[0] == HOST_SSH_MARK
    return {
        "host": m.host[:m.host_len].decode("utf-8", "replace") if m.host_len and not ssh else None,
        "ssh": _ssh_idents(m.host[:m.host_len]) if ssh else None,
        "alpn": m.alpn[:m.alpn_len].decode("ascii") if m.alpn_len else None,
        "ua": m.ua[:m.ua_len].decode("ascii") if m.ua_len else None,
        "http_method": m.http_method[:m.http_method_len].decode("ascii") if m.http_method_len else None,
        "tls_version": m.tls_version or None,
        "dns_qtype": m.dns_qtype or None,
    }


cdef int _run_parser(int which, appctx_t *c) noexcept nogil:
    # one parser (an index into PARSERS), or the dispatcher (-1)
    if 0 <= which < APP_N_PARSERS:
        return APP_PARSER_FUNCS[which](c)
    return appid_parse(c)


cdef class _Flow:
    """One flow being classified, as the fastpath keeps it: a stream per direction, scratch, meta.
    Payload, stream and scratch are copied into buffers of exactly their size, so a sanitizer build
    reports a parser that reads one byte past what it was given."""
    cdef appctx_t ctx
    cdef appmeta_t meta
    cdef uint8_t *scratch
    cdef uint8_t *reasm
    cdef list streams
    cdef uint32_t index[2]
    cdef int parser

    def __cinit__(self, int l4proto, int client_port, int server_port, str parser=None):
        memset(&self.ctx, 0, sizeof(self.ctx))
        memset(&self.meta, 0, sizeof(self.meta))
        self.scratch = <uint8_t *>calloc(1, SCRATCH_MAX)
        # datagram flows get the reassembly room the fastpath lends them (its unused TCP stream buffers)
        self.reasm = <uint8_t *>calloc(1, 2 * STREAM_MAX) if l4proto != P_TCP else NULL
        if self.scratch == NULL or (l4proto != P_TCP and self.reasm == NULL):
            raise MemoryError()
        self.parser = -1 if parser is None else PARSERS.index(parser)
        self.streams = [b"", b""]
        self.index[0] = 0
        self.index[1] = 0
        self.ctx.l4proto = l4proto
        self.ctx.client_port = client_port
        self.ctx.server_port = server_port
        self.ctx.meta = &self.meta

    def __dealloc__(self):
        free(self.scratch)
        free(self.reasm)

    def feed(self, bint to_server, bytes payload):
        cdef int d = 1 if to_server else 0
        cdef bytes stream
        cdef int r
        cdef uint8_t *pp
        cdef uint8_t *sp
        if self.ctx.l4proto == P_TCP:
            stream = (self.streams[d] + payload)[:STREAM_MAX]
            self.streams[d] = stream
        else:
            stream = payload
        pp = <uint8_t *>malloc(len(payload) or 1)
        sp = <uint8_t *>malloc(len(stream) or 1)
        if pp == NULL or sp == NULL:
            free(pp)
            free(sp)
            raise MemoryError()
        memcpy(pp, <const char *>payload, len(payload))
        memcpy(sp, <const char *>stream, len(stream))
        self.ctx.to_server = to_server
        self.ctx.pkt_index = self.index[d]
        self.index[d] += 1
        self.ctx.payload = pp
        self.ctx.payload_len = len(payload)
        self.ctx.stream = sp
        self.ctx.stream_len = len(stream)
        self.ctx.scratch = self.scratch
        self.ctx.reasm = self.reasm
        self.ctx.reasm_cap = 2 * STREAM_MAX if self.reasm != NULL else 0
        with nogil:
            r = _run_parser(self.parser, &self.ctx)
        # the parsers keep no pointer into a payload past their call (the fastpath reuses its buffers)
        self.ctx.payload = NULL
        self.ctx.stream = NULL
        free(pp)
        free(sp)
        return r

    def result(self, int r):
        out = _meta_dict(&self.meta)
        out["app"] = BUILTIN_APPS[r] if r > 0 else None
        out["need_more"] = r == PARSE_NEED_MORE
        out["tentative"] = None
        if r == PARSE_NEED_MORE and self.ctx.scratch != NULL:
            t = appid_tentative(&self.ctx)
            out["tentative"] = BUILTIN_APPS[t] if t > 0 else None
        return out


def parse(int l4proto, bint to_server, int client_port, int server_port, list payloads):
    """appid_parse over successive payloads of one direction; stops at the first answer."""
    f = _Flow(l4proto, client_port, server_port)
    r = PARSE_NO
    for p in payloads:
        r = f.feed(to_server, bytes(p))
        if r > 0:
            break
    return f.result(r)


def parse_flow(int l4proto, int client_port, int server_port, list packets, str parser=None):
    """appid_parse (or the one parser named, one of PARSERS) over (to_server, payload) packets of both
    directions in order, as the fastpath calls it; a direction that answered PARSE_NO is no longer asked.
    A flow left at NEED_MORE takes the tentative answer (appid_tentative), as the fastpath does when it
    stops feeding a flow."""
    f = _Flow(l4proto, client_port, server_port, parser)
    r = PARSE_NO
    done = [False, False]
    last_need = False
    for to_server, p in packets:
        d = 1 if to_server else 0
        if done[d]:
            continue
        r = f.feed(bool(to_server), bytes(p))
        if r > 0:
            return f.result(r)
        if r == PARSE_NO:
            done[d] = True
        last_need = last_need or r == PARSE_NEED_MORE
    out = f.result(PARSE_NEED_MORE if last_need else PARSE_NO)
    if out["tentative"]:
        out["app"] = out["tentative"]
    return out
