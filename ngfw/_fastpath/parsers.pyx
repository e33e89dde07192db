# Test-only extension: runs the App-ID protocol parsers (app_parsers.pxi) on payloads given from Python.
# The fastpath never imports this module; tests and the corpus measurement do.
include "defs.pxi"
include "appid_defs.pxi"
include "app_parsers.pxi"

APPS = {name: i for i, name in enumerate(BUILTIN_APPS) if name}
NEED_MORE = PARSE_NEED_MORE

# the enum and the tuple are written by hand side by side: check they agree
_ENUM = {
    "http": APP_HTTP, "tls": APP_TLS, "dns": APP_DNS, "mdns": APP_MDNS, "llmnr": APP_LLMNR,
    "netbios": APP_NETBIOS, "quic": APP_QUIC, "ssh": APP_SSH, "ssdp": APP_SSDP, "rtsp": APP_RTSP,
    "sip": APP_SIP, "http2": APP_HTTP2, "smb": APP_SMB, "kerberos": APP_KERBEROS, "dhcp": APP_DHCP,
    "dhcpv6": APP_DHCPV6, "stun": APP_STUN, "ntp": APP_NTP, "snmp": APP_SNMP, "radius": APP_RADIUS,
    "dtls": APP_DTLS, "rtp": APP_RTP, "rtcp": APP_RTCP, "ftp": APP_FTP, "smtp": APP_SMTP,
    "pop3": APP_POP3, "imap": APP_IMAP, "mssql": APP_MSSQL, "openvpn": APP_OPENVPN, "tftp": APP_TFTP,
    "ldap": APP_LDAP, "socks": APP_SOCKS, "mysql": APP_MYSQL, "postgresql": APP_POSTGRESQL,
    "vnc": APP_VNC, "rdp": APP_RDP, "bgp": APP_BGP, "telnet": APP_TELNET, "nntp": APP_NNTP, "whois": APP_WHOIS,
    "websocket": APP_WEBSOCKET,
}
assert _ENUM == APPS, "BUILTIN_APPS and the APP_* enum disagree"


cdef dict _meta_dict(appmeta_t *m):
    return {
        "host": m.host[:m.host_len].decode("utf-8", "replace") if m.host_len else None,
        "alpn": m.alpn[:m.alpn_len].decode("ascii") if m.alpn_len else None,
        "ua": m.ua[:m.ua_len].decode("ascii") if m.ua_len else None,
        "http_method": m.http_method[:m.http_method_len].decode("ascii") if m.http_method_len else None,
        "tls_version": m.tls_version or None,
        "dns_qtype": m.dns_qtype or None,
    }


# every parser of app_parsers.pxi on its own, by name: appid_parse tries some only after others said no, so
# the fuzz target calls each directly too
PARSERS = ("dns", "netbios", "tls", "dtls", "http", "ssh", "stun", "radius", "snmp", "dhcp", "dhcpv6", "ntp",
           "tftp", "rtp", "websocket", "openvpn", "kerberos", "smb", "mssql", "ldap", "socks", "mysql",
           "postgresql", "tpkt", "bgp", "telnet", "whois", "mail_ftp", "quic")


cdef int _run_parser(int which, appctx_t *c) noexcept nogil:
    if which == 0: return parse_dns(c)
    if which == 1: return parse_netbios(c)
    if which == 2: return parse_tls(c)
    if which == 3: return parse_dtls(c)
    if which == 4: return parse_http(c)
    if which == 5: return parse_ssh(c)
    if which == 6: return parse_stun(c)
    if which == 7: return parse_radius(c)
    if which == 8: return parse_snmp(c)
    if which == 9: return parse_dhcp(c)
    if which == 10: return parse_dhcpv6(c)
    if which == 11: return parse_ntp(c)
    if which == 12: return parse_tftp(c)
    if which == 13: return parse_rtp(c)
    if which == 14: return parse_websocket(c)
    if which == 15: return parse_openvpn(c)
    if which == 16: return parse_kerberos(c)
    if which == 17: return parse_smb(c)
    if which == 18: return parse_mssql(c)
    if which == 19: return parse_ldap(c)
    if which == 20: return parse_socks(c)
    if which == 21: return parse_mysql(c)
    if which == 22: return parse_postgresql(c)
    if which == 23: return parse_tpkt(c)
    if which == 24: return parse_bgp(c)
    if which == 25: return parse_telnet(c)
    if which == 26: return parse_whois(c)
    if which == 27: return parse_mail_ftp(c)
    if which == 28: return parse_quic(c)
    return appid_parse(c)


cdef class _Flow:
    """One flow being classified, as the fastpath keeps it: a stream per direction, scratch, meta.
    Payload, stream and scratch are copied into buffers of exactly their size, so a sanitizer build
    reports a parser that reads one byte past what it was given."""
    cdef appctx_t ctx
    cdef appmeta_t meta
    cdef uint8_t *scratch
    cdef list streams
    cdef uint32_t index[2]
    cdef int parser

    def __cinit__(self, int l4proto, int client_port, int server_port, str parser=None):
        memset(&self.ctx, 0, sizeof(self.ctx))
        memset(&self.meta, 0, sizeof(self.meta))
        self.scratch = <uint8_t *>calloc(1, SCRATCH_MAX)
        if self.scratch == NULL:
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

    def feed(self, bint to_server, bytes payload):
        cdef int d = 1 if to_server else 0
        cdef bytes stream
        cdef int r
        cdef uint8_t *pp
        cdef uint8_t *sp
        if self.ctx.l4proto == 6:
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
