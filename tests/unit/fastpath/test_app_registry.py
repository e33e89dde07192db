"""The App-ID parser registry (ngfw/_fastpath/app_registry.py): the file generated from it is current, every
app a parser names is one the catalogue knows, every registered parser recognises its protocol when called
by name and through the dispatcher, and a row that cannot be generated is refused with its name."""

from __future__ import annotations

import dataclasses
import struct

import pytest

from ngfw._fastpath import app_registry
from ngfw._fastpath.app_registry import REGISTRY, RegistryError, check, render
from ngfw.compiler.apps import load_catalogue
from tests.support import quic_initial as qi

TCP, UDP = 6, 17


def test_the_generated_file_is_what_the_table_gives() -> None:
    """setup.py writes app_registry.pxi before each build; a committed copy that disagrees with the table means a
    table edit whose generated file was not committed."""
    assert app_registry.GENERATED.read_text() == render(), "run: python -m ngfw._fastpath.app_registry"


def test_every_app_a_parser_names_is_in_the_catalogue() -> None:
    """The engine maps a parser's answer to the catalogue's app by name: a name the catalogue lacks would be
    dropped, and the flow left unnamed."""
    catalogue = load_catalogue()
    missing = [app for app in app_registry.apps(REGISTRY) if app not in catalogue.by_name]
    assert not missing, f"apps named by parsers but not in rules/apps/: {missing}"


def test_the_engine_and_the_parsers_module_see_the_registrys_names() -> None:
    engine = pytest.importorskip("ngfw._fastpath.engine")
    parsers = pytest.importorskip("ngfw._fastpath.parsers")
    assert engine.BUILTIN_APPS == ("", *app_registry.apps(REGISTRY)) == parsers.BUILTIN_APPS
    assert parsers.PARSERS == tuple(app_registry.names(REGISTRY))
    assert set(parsers.PARSERS) == set(parsers.ANSWERS)


# ---- every parser, by name and through the dispatcher ---------------------------------------------------------


def _tls_client_hello(sni: bytes) -> bytes:
    sni_ext = struct.pack("!HBH", len(sni) + 3, 0, len(sni)) + sni
    exts = struct.pack("!HH", 0, len(sni_ext)) + sni_ext
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(exts))
    body += exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def _ber(tag: int, body: bytes) -> bytes:
    return bytes([tag, len(body)]) + body


def _netbios_name(name: str) -> bytes:
    raw = name.upper().ljust(16).encode()
    return b"\x20" + bytes(c for b in raw for c in (0x41 + (b >> 4), 0x41 + (b & 15))) + b"\x00"


def _kerberos_as_req() -> bytes:
    kdc_req = _ber(0x30, b"\xa1\x03\x02\x01\x05" + b"\xa2\x03\x02\x01\x0a" + _ber(0xA4, _ber(0x30, b"\x00" * 16)))
    message = _ber(0x6A, kdc_req)
    return struct.pack("!I", len(message)) + message


def _dhcp_discover() -> bytes:
    fixed = bytes([1, 1, 6, 0]) + b"\x12\x34\x56\x78" + bytes(20) + bytes.fromhex("02000000aa01")
    fixed += bytes(10 + 192)  # the hardware address' padding, server and file names
    return fixed + b"\x63\x82\x53\x63" + b"\x35\x01\x01" + b"\x0c\x04host" + b"\xff"


def _snmp_get() -> bytes:
    pdu = _ber(0xA0, _ber(0x02, b"\x01") + _ber(0x02, b"\x00") + _ber(0x02, b"\x00") + _ber(0x30, b""))
    return _ber(0x30, _ber(0x02, b"\x01") + _ber(0x04, b"public") + pdu)


def _websocket() -> list[tuple[bool, bytes]]:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(b"hello"))
    return [(S, b"\x81\x05hello"), (C, b"\x81\x85" + mask + masked)]


C, S = True, False  # to the server, to the client
DNS_QUERY = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\x08registry\x07example\x00\x00\x01\x00\x01"
MYSQL_GREETING = (49).to_bytes(3, "little") + b"\x00\x0a8.0.36\x00" + bytes(41)
QUIC_INITIAL = qi.client_initial(0x00000001, qi.crypto_frame(qi.tls_client_hello(b"registry.example")))
RTP = [(C, struct.pack("!BBHII", 0x80, 0, seq, 160 * seq, 0xCAFE) + bytes(160)) for seq in (1, 2)]

# parser -> (l4, server port, packets, the app it names)
SAMPLES: dict[str, tuple[int, int, list[tuple[bool, bytes]], str]] = {
    "tls": (TCP, 443, [(C, _tls_client_hello(b"registry.example"))], "tls"),
    "ssh": (TCP, 22, [(S, b"SSH-2.0-OpenSSH_9.2p1\r\n")], "ssh"),
    "http": (TCP, 80, [(C, b"GET / HTTP/1.1\r\nHost: registry.example\r\n\r\n")], "http"),
    "whois": (TCP, 43, [(C, b"registry.example\r\n")], "whois"),
    "mail_ftp": (TCP, 21, [(S, b"220 ftp.registry.example FTP server ready\r\n")], "ftp"),
    "smb": (TCP, 445, [(C, b"\x00\x00\x00\x44\xfeSMB" + b"\x40\x00" + bytes(62))], "smb"),
    "kerberos": (TCP, 88, [(C, _kerberos_as_req())], "kerberos"),
    "postgresql": (TCP, 5432, [(C, struct.pack("!II", 8, 80877103))], "postgresql"),
    "mssql": (TCP, 1433, [(C, bytes.fromhex("12010014000001000000060006ff0f000fa30000"))], "mssql"),
    "ldap": (TCP, 389, [(C, bytes.fromhex("300c020101600702010304008000"))], "ldap"),
    "netbios": (
        TCP,
        139,
        [(C, b"\x81\x00\x00\x44" + _netbios_name("fileserver") + _netbios_name("client"))],
        "netbios",
    ),
    "bgp": (TCP, 179, [(C, b"\xff" * 16 + struct.pack("!HB", 29, 1) + bytes.fromhex("04fde900b40a0000010000"))], "bgp"),
    "telnet": (TCP, 23, [(S, b"\xff\xfb\x01\xff\xfd\x03")], "telnet"),
    "tpkt": (TCP, 3389, [(C, bytes.fromhex("030000130ee000000000000100080003000000"))], "rdp"),
    "socks": (TCP, 1080, [(C, b"\x05\x01\x00")], "socks"),
    "mysql": (TCP, 3306, [(S, MYSQL_GREETING)], "mysql"),
    "stun": (UDP, 3478, [(C, struct.pack("!HHI", 0x0001, 0, 0x2112A442) + b"\x01" * 12)], "stun"),
    "radius": (UDP, 1812, [(C, struct.pack("!BBH", 1, 7, 25) + b"\x22" * 16 + b"\x01\x05bob")], "radius"),
    "dns": (UDP, 53, [(C, DNS_QUERY)], "dns"),
    "openvpn": (
        UDP,
        1194,
        [(C, bytes([7 << 3]) + b"\x11\x22\x33\x44\x55\x66\x77\x88" + b"\x00" + bytes(4))],
        "openvpn",
    ),
    "websocket": (TCP, 8080, _websocket(), "websocket"),
    "quic": (UDP, 443, [(C, QUIC_INITIAL)], "quic"),
    "dtls": (UDP, 4433, [(C, qi.dtls_client_hello(b"registry.example"))], "dtls"),
    "dhcp": (UDP, 67, [(C, _dhcp_discover())], "dhcp"),
    "snmp": (UDP, 161, [(C, _snmp_get())], "snmp"),
    "tftp": (UDP, 69, [(C, b"\x00\x01registry.bin\x00octet\x00")], "tftp"),
    "dhcpv6": (
        UDP,
        547,
        [(C, b"\x01\xab\xcd\xef" + struct.pack("!HH", 1, 10) + bytes.fromhex("00030001020000000101"))],
        "dhcpv6",
    ),
    "ntp": (UDP, 123, [(C, b"\x23" + bytes(47))], "ntp"),
    "rtp": (UDP, 5004, RTP, "rtp"),
}


def test_every_registered_parser_has_a_sample() -> None:
    assert set(SAMPLES) == set(app_registry.names(REGISTRY))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_parser_called_by_name_and_the_dispatcher_name_its_protocol(name: str) -> None:
    parsers = pytest.importorskip("ngfw._fastpath.parsers")
    l4, port, packets, app = SAMPLES[name]
    assert app in parsers.ANSWERS[name]
    assert parsers.parse_flow(l4, 50000, port, packets, name)["app"] == app
    assert parsers.parse_flow(l4, 50000, port, packets)["app"] == app


def test_a_parser_is_not_shown_what_its_hints_exclude() -> None:
    """SSH is registered for TCP streams starting with 'S': the same banner over UDP reaches no parser, and a
    WHOIS query (registered on server port 43) elsewhere is nobody's."""
    parsers = pytest.importorskip("ngfw._fastpath.parsers")
    assert parsers.parse_flow(TCP, 50000, 2222, [(S, b"SSH-2.0-x\r\n")])["app"] == "ssh"
    assert parsers.parse_flow(UDP, 50000, 2222, [(S, b"SSH-2.0-x\r\n")])["app"] is None
    assert parsers.parse_flow(TCP, 50000, 4343, [(C, b"registry.example\r\n")])["app"] is None


def test_a_need_more_answer_counts_only_where_the_registry_says() -> None:
    """Any two bytes are a DNS-over-TCP length: the dispatcher waits for the rest on port 53 only."""
    parsers = pytest.importorskip("ngfw._fastpath.parsers")
    start = b"\x00\x30\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"  # 14 bytes of a 48-byte message
    assert parsers.parse(TCP, True, 50000, 53, [start])["need_more"]
    assert not parsers.parse(TCP, True, 50000, 5353, [start])["need_more"]


# ---- rows that cannot be generated ----------------------------------------------------------------------------

ROW = REGISTRY[0]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (dataclasses.replace(ROW, l4="sctp"), "l4 'sctp' must be one of tcp, udp"),
        (dataclasses.replace(ROW, family="nosuch"), "family file app_nosuch.pxi does not exist"),
        (
            dataclasses.replace(ROW, name="tlsx"),
            "app_tls.pxi defines no 'cdef int parse_tlsx(appctx_t *c) noexcept nogil'",
        ),
        (dataclasses.replace(ROW, answers=()), "answers is empty"),
        (dataclasses.replace(ROW, answers=("TLS",)), "answer 'TLS' must be a catalogue name"),
        (dataclasses.replace(ROW, first=frozenset({256})), "first [256] must be a non-empty set of bytes 0..255"),
        (dataclasses.replace(ROW, more_port=70000), "more_port 70000 must be a port"),
    ],
)
def test_a_bad_row_is_refused_with_what_is_wrong(row: app_registry.Parser, message: str) -> None:
    with pytest.raises(RegistryError, match="registry row 0") as info:
        check((row,))
    assert message in str(info.value)


def test_a_parser_registered_twice_for_one_transport_is_refused() -> None:
    with pytest.raises(RegistryError, match=r"registry row 1 \(tls/tcp\): 'tls' is already registered for tcp"):
        check((ROW, ROW))
