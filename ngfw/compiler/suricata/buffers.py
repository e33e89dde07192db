"""Names: inspection buffers (sticky, legacy and pcre-flag spellings) and rule protocols.

Every spelling of a buffer maps to one canonical name (Suricata 7's dotted
keyword), so the engine sees `http.uri` whether the rule said `http.uri;
content:...`, `content:...; http_uri;` or `pcre:"/.../U"`.
"""

from __future__ import annotations

from typing import Literal

from ngfw.compiler.suricata.model import PAYLOAD

Transport = Literal["ip", "tcp", "udp", "icmp", "sctp", "tcp/udp", "arp"]

# Sticky buffers: the keyword switches the buffer that following content/pcre inspect.
STICKY_BUFFERS: dict[str, str] = {
    "pkt_data": PAYLOAD,  # switches back to the packet/stream payload
    "http.uri": "http.uri",
    "http.uri.raw": "http.uri.raw",
    "http.method": "http.method",
    "http.host": "http.host",
    "http.host.raw": "http.host.raw",
    "http.user_agent": "http.user_agent",
    "http.header": "http.header",
    "http.header.raw": "http.header.raw",
    "http.cookie": "http.cookie",
    "http.request_body": "http.request_body",
    # Suricata 7 inspects the response body through the file-data buffer.
    "http.response_body": "file.data",
    "file.data": "file.data",
    "file_data": "file.data",
    "http.stat_code": "http.stat_code",
    "http.stat_msg": "http.stat_msg",
    "http.request_line": "http.request_line",
    "http_request_line": "http.request_line",
    "http.response_line": "http.response_line",
    "http_response_line": "http.response_line",
    "http.start": "http.start",
    "http_start": "http.start",
    "http.protocol": "http.protocol",
    "http_protocol": "http.protocol",
    "http.header_names": "http.header_names",
    "http_header_names": "http.header_names",
    "http.content_type": "http.content_type",
    "http_content_type": "http.content_type",
    "http.content_len": "http.content_len",
    "http_content_len": "http.content_len",
    "http.referer": "http.referer",
    "http_referer": "http.referer",
    "http.accept": "http.accept",
    "http_accept": "http.accept",
    "http.accept_enc": "http.accept_enc",
    "http_accept_enc": "http.accept_enc",
    "http.accept_lang": "http.accept_lang",
    "http_accept_lang": "http.accept_lang",
    "http.connection": "http.connection",
    "http_connection": "http.connection",
    "http.location": "http.location",
    "http.server": "http.server",
    "tls.sni": "tls.sni",
    "tls_sni": "tls.sni",
    "tls.cert_subject": "tls.cert_subject",
    "tls_cert_subject": "tls.cert_subject",
    "tls.cert_issuer": "tls.cert_issuer",
    "tls_cert_issuer": "tls.cert_issuer",
    "tls.cert_serial": "tls.cert_serial",
    "tls_cert_serial": "tls.cert_serial",
    "tls.cert_fingerprint": "tls.cert_fingerprint",
    "tls_cert_fingerprint": "tls.cert_fingerprint",
    "tls.certs": "tls.certs",
    "dns.query": "dns.query",
    "dns_query": "dns.query",
    "ja3.hash": "ja3.hash",
    "ja3_hash": "ja3.hash",
    "ja3.string": "ja3.string",
    "ja3_string": "ja3.string",
    "ja3s.hash": "ja3s.hash",
    "ja3s_hash": "ja3s.hash",
    "ja3s.string": "ja3s.string",
    "ja3s_string": "ja3s.string",
    "ssh.proto": "ssh.proto",
    "ssh_proto": "ssh.proto",
    "ssh.software": "ssh.software",
    "ssh_software": "ssh.software",
    "quic.sni": "quic.sni",
    # Suricata 9: the frame's 14-byte Ethernet header (ngfw: in `arp` rules only)
    "ether.hdr": "ether.hdr",
}

# Legacy content modifiers: they move the content just before them into the buffer.
LEGACY_MODIFIERS: dict[str, str] = {
    "http_uri": "http.uri",
    "http_raw_uri": "http.uri.raw",
    "http_method": "http.method",
    "http_host": "http.host",
    "http_raw_host": "http.host.raw",
    "http_user_agent": "http.user_agent",
    "http_header": "http.header",
    "http_raw_header": "http.header.raw",
    "http_cookie": "http.cookie",
    "http_client_body": "http.request_body",
    "http_server_body": "file.data",
    "http_stat_code": "http.stat_code",
    "http_stat_msg": "http.stat_msg",
}

# pcre's Suricata-specific flags that name the buffer the regex inspects.
PCRE_BUFFER_FLAGS: dict[str, str] = {
    "U": "http.uri",
    "I": "http.uri.raw",
    "P": "http.request_body",
    "Q": "file.data",
    "H": "http.header",
    "D": "http.header.raw",
    "M": "http.method",
    "C": "http.cookie",
    "S": "http.stat_code",
    "Y": "http.stat_msg",
    "V": "http.user_agent",
    "W": "http.host",
    "Z": "http.host.raw",
}

# Rule protocols Suricata 7 knows, and `arp` (Suricata 8.0.5 and later: every Ethernet/IPv4 ARP frame):
# name -> (transport, app-layer protocol or None).
PROTOCOLS: dict[str, tuple[Transport, str | None]] = {
    "ip": ("ip", None),
    "ipv4": ("ip", None),
    "ipv6": ("ip", None),
    "tcp": ("tcp", None),
    "tcp-pkt": ("tcp", None),  # packet payload only, never the reassembled stream
    "tcp-stream": ("tcp", None),  # reassembled stream only
    "udp": ("udp", None),
    "icmp": ("icmp", None),
    "icmpv4": ("icmp", None),
    "icmpv6": ("icmp", None),
    "sctp": ("sctp", None),
    "arp": ("arp", None),
    "http": ("tcp", "http"),
    "http1": ("tcp", "http"),
    "http2": ("tcp", "http2"),
    "tls": ("tcp", "tls"),
    "ssl": ("tcp", "tls"),
    "ssh": ("tcp", "ssh"),
    "ftp": ("tcp", "ftp"),
    "ftp-data": ("tcp", "ftp-data"),
    "smtp": ("tcp", "smtp"),
    "imap": ("tcp", "imap"),
    "pop3": ("tcp", "pop3"),
    "smb": ("tcp", "smb"),
    "dcerpc": ("tcp/udp", "dcerpc"),
    "dns": ("tcp/udp", "dns"),
    "modbus": ("tcp", "modbus"),
    "dnp3": ("tcp", "dnp3"),
    "enip": ("tcp/udp", "enip"),
    "nfs": ("tcp/udp", "nfs"),
    "ntp": ("udp", "ntp"),
    "tftp": ("udp", "tftp"),
    "ike": ("udp", "ike"),
    "ikev2": ("udp", "ike"),
    "krb5": ("tcp/udp", "krb5"),
    "dhcp": ("udp", "dhcp"),
    "snmp": ("udp", "snmp"),
    "sip": ("udp", "sip"),
    "rfb": ("tcp", "rfb"),
    "mqtt": ("tcp", "mqtt"),
    "pgsql": ("tcp", "pgsql"),
    "telnet": ("tcp", "telnet"),
    "rdp": ("tcp", "rdp"),
    "quic": ("udp", "quic"),
    "bittorrent-dht": ("udp", "bittorrent-dht"),
}
