# GENERATED from the App-ID parser registry (ngfw/_fastpath/app_registry.py) by
# `python -m ngfw._fastpath.app_registry`, which setup.py runs before every build: edit the table there.

# The applications the built-in parsers name. A parser returns an APP_* value (> 0); BUILTIN_APPS[value] is
# its catalogue name (the engine maps it to the catalogue's app id by that name).
cdef enum:
    APP_TLS = 1
    APP_SSH = 2
    APP_HTTP = 3
    APP_HTTP2 = 4
    APP_RTSP = 5
    APP_SIP = 6
    APP_WHOIS = 7
    APP_FTP = 8
    APP_SMTP = 9
    APP_POP3 = 10
    APP_IMAP = 11
    APP_NNTP = 12
    APP_VNC = 13
    APP_SMB = 14
    APP_NETBIOS = 15
    APP_KERBEROS = 16
    APP_POSTGRESQL = 17
    APP_MSSQL = 18
    APP_LDAP = 19
    APP_BGP = 20
    APP_TELNET = 21
    APP_RDP = 22
    APP_SOCKS = 23
    APP_MYSQL = 24
    APP_STUN = 25
    APP_RADIUS = 26
    APP_DNS = 27
    APP_MDNS = 28
    APP_LLMNR = 29
    APP_OPENVPN = 30
    APP_WEBSOCKET = 31
    APP_QUIC = 32
    APP_SSDP = 33
    APP_DTLS = 34
    APP_DHCP = 35
    APP_SNMP = 36
    APP_TFTP = 37
    APP_DHCPV6 = 38
    APP_NTP = 39
    APP_RTP = 40
    APP_RTCP = 41

BUILTIN_APPS = (
    "",
    "tls",
    "ssh",
    "http",
    "http2",
    "rtsp",
    "sip",
    "whois",
    "ftp",
    "smtp",
    "pop3",
    "imap",
    "nntp",
    "vnc",
    "smb",
    "netbios",
    "kerberos",
    "postgresql",
    "mssql",
    "ldap",
    "bgp",
    "telnet",
    "rdp",
    "socks",
    "mysql",
    "stun",
    "radius",
    "dns",
    "mdns",
    "llmnr",
    "openvpn",
    "websocket",
    "quic",
    "ssdp",
    "dtls",
    "dhcp",
    "snmp",
    "tftp",
    "dhcpv6",
    "ntp",
    "rtp",
    "rtcp",
)

# The parser families.
include "app_tls.pxi"
include "app_text.pxi"
include "app_http.pxi"
include "app_tcp_binary.pxi"
include "app_dns.pxi"
include "app_udp_binary.pxi"
include "app_quic.pxi"

# Every parser, by name (ngfw._fastpath.parsers calls each on its own), and the apps each may name.
APP_PARSER_NAMES = (
    "tls",
    "ssh",
    "http",
    "whois",
    "mail_ftp",
    "smb",
    "kerberos",
    "postgresql",
    "mssql",
    "ldap",
    "netbios",
    "bgp",
    "telnet",
    "tpkt",
    "socks",
    "mysql",
    "stun",
    "radius",
    "dns",
    "openvpn",
    "websocket",
    "quic",
    "dtls",
    "dhcp",
    "snmp",
    "tftp",
    "dhcpv6",
    "ntp",
    "rtp",
)
APP_PARSER_ANSWERS = {
    "tls": ('tls',),
    "ssh": ('ssh',),
    "http": ('http', 'http2', 'rtsp', 'sip', 'ssdp',),
    "whois": ('whois',),
    "mail_ftp": ('ftp', 'smtp', 'pop3', 'imap', 'nntp', 'vnc',),
    "smb": ('smb', 'netbios',),
    "kerberos": ('kerberos',),
    "postgresql": ('postgresql',),
    "mssql": ('mssql',),
    "ldap": ('ldap',),
    "netbios": ('netbios',),
    "bgp": ('bgp',),
    "telnet": ('telnet',),
    "tpkt": ('rdp',),
    "socks": ('socks',),
    "mysql": ('mysql',),
    "stun": ('stun',),
    "radius": ('radius',),
    "dns": ('dns', 'mdns', 'llmnr', 'netbios',),
    "openvpn": ('openvpn',),
    "websocket": ('websocket',),
    "quic": ('quic',),
    "dtls": ('dtls',),
    "dhcp": ('dhcp',),
    "snmp": ('snmp',),
    "tftp": ('tftp',),
    "dhcpv6": ('dhcpv6',),
    "ntp": ('ntp',),
    "rtp": ('rtp', 'rtcp',),
}
cdef enum:
    APP_N_PARSERS = 29
cdef app_parse_fn APP_PARSER_FUNCS[APP_N_PARSERS]
APP_PARSER_FUNCS[0] = parse_tls
APP_PARSER_FUNCS[1] = parse_ssh
APP_PARSER_FUNCS[2] = parse_http
APP_PARSER_FUNCS[3] = parse_whois
APP_PARSER_FUNCS[4] = parse_mail_ftp
APP_PARSER_FUNCS[5] = parse_smb
APP_PARSER_FUNCS[6] = parse_kerberos
APP_PARSER_FUNCS[7] = parse_postgresql
APP_PARSER_FUNCS[8] = parse_mssql
APP_PARSER_FUNCS[9] = parse_ldap
APP_PARSER_FUNCS[10] = parse_netbios
APP_PARSER_FUNCS[11] = parse_bgp
APP_PARSER_FUNCS[12] = parse_telnet
APP_PARSER_FUNCS[13] = parse_tpkt
APP_PARSER_FUNCS[14] = parse_socks
APP_PARSER_FUNCS[15] = parse_mysql
APP_PARSER_FUNCS[16] = parse_stun
APP_PARSER_FUNCS[17] = parse_radius
APP_PARSER_FUNCS[18] = parse_dns
APP_PARSER_FUNCS[19] = parse_openvpn
APP_PARSER_FUNCS[20] = parse_websocket
APP_PARSER_FUNCS[21] = parse_quic
APP_PARSER_FUNCS[22] = parse_dtls
APP_PARSER_FUNCS[23] = parse_dhcp
APP_PARSER_FUNCS[24] = parse_snmp
APP_PARSER_FUNCS[25] = parse_tftp
APP_PARSER_FUNCS[26] = parse_dhcpv6
APP_PARSER_FUNCS[27] = parse_ntp
APP_PARSER_FUNCS[28] = parse_rtp

# The dispatcher's table: each transport's parsers in the order appid_parse tries them.
cdef enum:
    APP_REG_TCP = 0
    APP_REG_UDP = 21
    APP_REG_END = 35
cdef app_registration_t APP_REGISTRY[APP_REG_END]
# row, parser, server port (0: any), more, more port (0: any),
# first bytes (bit b of word b // 64 set: a payload starting with b is shown to the parser)
# tls/tcp: first 0x14-0x17, asks for more
app_register(&APP_REGISTRY[0], parse_tls, 0, 1, 0,
             0x0000000000f00000, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# ssh/tcp: first 'S', asks for more
app_register(&APP_REGISTRY[1], parse_ssh, 0, 1, 0,
             0x0000000000000000, 0x0000000000080000, 0x0000000000000000, 0x0000000000000000)
# http/tcp: first 'A'-'Z', asks for more
app_register(&APP_REGISTRY[2], parse_http, 0, 1, 0,
             0x0000000000000000, 0x0000000007fffffe, 0x0000000000000000, 0x0000000000000000)
# whois/tcp: first 0x20-0x7e, server port 43, asks for more
app_register(&APP_REGISTRY[3], parse_whois, 43, 1, 0,
             0xffffffff00000000, 0x7fffffffffffffff, 0x0000000000000000, 0x0000000000000000)
# mail_ftp/tcp: first 0x20-0x7e, asks for more
app_register(&APP_REGISTRY[4], parse_mail_ftp, 0, 1, 0,
             0xffffffff00000000, 0x7fffffffffffffff, 0x0000000000000000, 0x0000000000000000)
# smb/tcp: first 0x00, asks for more
app_register(&APP_REGISTRY[5], parse_smb, 0, 1, 0,
             0x0000000000000001, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# kerberos/tcp: first 0x00, asks for more
app_register(&APP_REGISTRY[6], parse_kerberos, 0, 1, 0,
             0x0000000000000001, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# postgresql/tcp: first 0x00, never waits
app_register(&APP_REGISTRY[7], parse_postgresql, 0, 0, 0,
             0x0000000000000001, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# mssql/tcp: first 0x00-0x12, asks for more
app_register(&APP_REGISTRY[8], parse_mssql, 0, 1, 0,
             0x000000000007ffff, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# ldap/tcp: first 0x30, asks for more
app_register(&APP_REGISTRY[9], parse_ldap, 0, 1, 0,
             0x0001000000000000, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# netbios/tcp: first 0x81-0x83 0x85, asks for more
app_register(&APP_REGISTRY[10], parse_netbios, 0, 1, 0,
             0x0000000000000000, 0x0000000000000000, 0x000000000000002e, 0x0000000000000000)
# bgp/tcp: first 0xff, never waits
app_register(&APP_REGISTRY[11], parse_bgp, 0, 0, 0,
             0x0000000000000000, 0x0000000000000000, 0x0000000000000000, 0x8000000000000000)
# telnet/tcp: first 0xff, never waits
app_register(&APP_REGISTRY[12], parse_telnet, 0, 0, 0,
             0x0000000000000000, 0x0000000000000000, 0x0000000000000000, 0x8000000000000000)
# tpkt/tcp: first 0x03, never waits
app_register(&APP_REGISTRY[13], parse_tpkt, 0, 0, 0,
             0x0000000000000008, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# socks/tcp: first 0x04-0x05, never waits
app_register(&APP_REGISTRY[14], parse_socks, 0, 0, 0,
             0x0000000000000030, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# mysql/tcp: first any, never waits
app_register(&APP_REGISTRY[15], parse_mysql, 0, 0, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# stun/tcp: first any, never waits
app_register(&APP_REGISTRY[16], parse_stun, 0, 0, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# radius/tcp: first any, never waits
app_register(&APP_REGISTRY[17], parse_radius, 0, 0, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# dns/tcp: first any, asks for more on port 53
app_register(&APP_REGISTRY[18], parse_dns, 0, 1, 53,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# openvpn/tcp: first any, asks for more
app_register(&APP_REGISTRY[19], parse_openvpn, 0, 1, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# websocket/tcp: first 0x81-0x8a, asks for more
app_register(&APP_REGISTRY[20], parse_websocket, 0, 1, 0,
             0x0000000000000000, 0x0000000000000000, 0x00000000000007fe, 0x0000000000000000)
# quic/udp: first 96 values, asks for more
app_register(&APP_REGISTRY[21], parse_quic, 0, 1, 0,
             0xaa00aa00aa00aa00, 0xaa00aa00aa00aa00, 0x0000000000000000, 0xffffffffffffffff)
# stun/udp: first 0x00-0x03, never waits
app_register(&APP_REGISTRY[22], parse_stun, 0, 0, 0,
             0x000000000000000f, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# dns/udp: first any, never waits
app_register(&APP_REGISTRY[23], parse_dns, 0, 0, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# netbios/udp: first any, never waits
app_register(&APP_REGISTRY[24], parse_netbios, 0, 0, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# http/udp: first 'A'-'Z', never waits
app_register(&APP_REGISTRY[25], parse_http, 0, 0, 0,
             0x0000000000000000, 0x0000000007fffffe, 0x0000000000000000, 0x0000000000000000)
# dtls/udp: first 0x14-0x19, never waits
app_register(&APP_REGISTRY[26], parse_dtls, 0, 0, 0,
             0x0000000003f00000, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# dhcp/udp: first 0x01-0x02, never waits
app_register(&APP_REGISTRY[27], parse_dhcp, 0, 0, 0,
             0x0000000000000006, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# radius/udp: first any, never waits
app_register(&APP_REGISTRY[28], parse_radius, 0, 0, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# snmp/udp: first 0x30, never waits
app_register(&APP_REGISTRY[29], parse_snmp, 0, 0, 0,
             0x0001000000000000, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# tftp/udp: first 0x00, never waits
app_register(&APP_REGISTRY[30], parse_tftp, 0, 0, 0,
             0x0000000000000001, 0x0000000000000000, 0x0000000000000000, 0x0000000000000000)
# dhcpv6/udp: first any, never waits
app_register(&APP_REGISTRY[31], parse_dhcpv6, 0, 0, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# ntp/udp: first any, never waits
app_register(&APP_REGISTRY[32], parse_ntp, 0, 0, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
# rtp/udp: first 0x80-0xbf, asks for more
app_register(&APP_REGISTRY[33], parse_rtp, 0, 1, 0,
             0x0000000000000000, 0x0000000000000000, 0xffffffffffffffff, 0x0000000000000000)
# openvpn/udp: first any, asks for more
app_register(&APP_REGISTRY[34], parse_openvpn, 0, 1, 0,
             0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff, 0xffffffffffffffff)
