"""App-ID protocol parsers (app_parsers.pxi) through the test-only ngfw._fastpath.parsers extension:
real flows of the reference corpus, hand-made edge cases, and random or damaged input."""

from __future__ import annotations

import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

parsers = pytest.importorskip("ngfw._fastpath.parsers")

from tests.support import quic_initial as qi  # noqa: E402
from tests.support.appid_corpus import CORPUS, load_flows  # noqa: E402

TCP, UDP = 6, 17


def dns_query(name: str, qtype: int = 1, flags: int = 0x0100) -> bytes:
    q = b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", 0x1234, flags, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def client_hello(sni: bytes, sni_len: int | None = None, alpn: bytes = b"h2") -> bytes:
    sni_len = len(sni) if sni_len is None else sni_len
    sni_ext = struct.pack("!HBH", sni_len + 3, 0, sni_len) + sni
    alpn_ext = struct.pack("!HB", len(alpn) + 1, len(alpn)) + alpn
    versions = b"\x04\x03\x04\x03\x03"
    exts = (
        struct.pack("!HH", 0, len(sni_ext))
        + sni_ext
        + struct.pack("!HH", 16, len(alpn_ext))
        + alpn_ext
        + struct.pack("!HH", 43, len(versions))
        + versions
    )
    body = (
        b"\x03\x03"
        + b"\x11" * 32
        + b"\x00"
        + b"\x00\x04\x13\x01\x13\x02"
        + b"\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_builtin_names_are_canonical() -> None:
    assert parsers.APPS["dns"] > 0 and "" not in parsers.APPS
    assert all(name == name.lower() for name in parsers.APPS)


# ---- hand-made cases -----------------------------------------------------------------------------------


def test_tls_client_hello_fields() -> None:
    r = parsers.parse(TCP, True, 40000, 443, [client_hello(b"Example.COM")])
    assert r["app"] == "tls" and r["host"] == "example.com" and r["alpn"] == "h2" and r["tls_version"] == 0x0304


def test_tls_client_hello_split_in_two_segments() -> None:
    ch = client_hello(b"split.example")
    r = parsers.parse(TCP, True, 40000, 8443, [ch[:30], ch[30:]])
    assert r["app"] == "tls" and r["host"] == "split.example"


def records(handshake: bytes, *cuts: int) -> bytes:
    """`handshake` cut into TLS handshake records at the given offsets."""
    bounds = [0, *cuts, len(handshake)]
    return b"".join(b"\x16\x03\x01" + struct.pack("!H", b - a) + handshake[a:b] for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("cuts", [(3,), (60,), (20, 21, 90)])
def test_tls_client_hello_cut_into_several_records(cuts: tuple[int, ...]) -> None:
    handshake = client_hello(b"records.example")[5:]
    stream = records(handshake, *cuts)
    assert parsers.parse(TCP, True, 40000, 443, [stream])["host"] == "records.example"
    # the same records over two segments: the first asks for more
    first = parsers.parse(TCP, True, 40000, 443, [stream[: cuts[0] + 5 + 2]])
    assert first["need_more"] or first["app"] == "tls"
    assert (
        parsers.parse(TCP, True, 40000, 443, [stream[: cuts[0] + 7], stream[cuts[0] + 7 :]])["host"]
        == "records.example"
    )
    # an alert record between the pieces ends the hello: TLS, no host read past it
    broken = records(handshake[: cuts[0]]) + bytes.fromhex("15030100020228") + records(handshake[cuts[0] :])
    assert parsers.parse(TCP, True, 40000, 443, [broken])["host"] is None


@pytest.mark.parametrize("cut", range(1, 120))
def test_tls_truncated_client_hello_asks_for_more(cut: int) -> None:
    r = parsers.parse(TCP, True, 40000, 443, [client_hello(b"truncated.example")[:cut]])
    assert r["need_more"] or r["app"] == "tls"


def test_tls_sni_longer_than_record_is_not_read() -> None:
    r = parsers.parse(TCP, True, 40000, 443, [client_hello(b"short", sni_len=4000)])
    assert r["host"] is None


def test_http_request() -> None:
    req = b"GET /x HTTP/1.1\r\nHost: www.Example.org:8080\r\nUser-Agent: curl/8\r\n\r\n"
    r = parsers.parse(TCP, True, 40000, 8080, [req])
    assert r["app"] == "http" and r["host"] == "www.example.org" and r["ua"] == "curl/8"
    assert parsers.parse(TCP, True, 40000, 80, [req[:9], req[9:]])["host"] == "www.example.org"


def test_http_status_line_and_ssdp() -> None:
    # a response before any request is http, waiting a little for the request and its Host
    status = parsers.parse(TCP, False, 40000, 80, [b"HTTP/1.1 200 OK\r\n\r\n"])
    assert status["need_more"] and status["tentative"] == "http"
    r = parsers.parse_flow(
        TCP,
        40000,
        80,
        [(False, b"HTTP/1.1 200 OK\r\n\r\n"), (True, b"GET /next HTTP/1.1\r\nHost: later.example\r\n\r\n")],
    )
    assert (r["app"], r["host"]) == ("http", "later.example")
    assert parsers.parse_flow(TCP, 40000, 80, [(False, b"HTTP/1.1 200 OK\r\n\r\n")] * 3)["app"] == "http"
    r = parsers.parse(UDP, True, 40000, 1900, [b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\r\n"])
    assert r["app"] == "ssdp" and r["host"] == "239.255.255.250:1900"


def test_dns_recognised_by_bytes_not_port() -> None:
    r = parsers.parse(UDP, True, 40000, 5000, [dns_query("www.example.com", 28)])
    assert r["app"] == "dns" and r["host"] == "www.example.com" and r["dns_qtype"] == 28
    assert parsers.parse(UDP, True, 40000, 53, [b"\x17\x03\x03hello garbage, not a dns message"])["app"] is None
    assert parsers.parse(UDP, True, 5353, 5353, [dns_query("_ipp._tcp.local", 12, 0)])["app"] == "mdns"
    assert parsers.parse(UDP, True, 40000, 5355, [dns_query("wpad", 1, 0)])["app"] == "llmnr"


def test_dns_over_tcp_in_two_segments() -> None:
    q = dns_query("tcp.example.net")
    msg = struct.pack("!H", len(q)) + q
    r = parsers.parse(TCP, True, 40000, 53, [msg[:10], msg[10:]])
    assert r["app"] == "dns" and r["host"] == "tcp.example.net"


def test_dns_compression_loops_and_wild_pointers_give_no_name() -> None:
    hdr = struct.pack("!HHHHHH", 1, 0x8180, 1, 1, 0, 0)
    loop = hdr + b"\xc0\x0c" + b"\x00\x01\x00\x01"  # points at itself
    wild = hdr + b"\x03www\xc3\xff" + b"\x00\x01\x00\x01"  # points past the end
    forward = hdr + b"\xc0\x20" + b"\x00\x01\x00\x01" + b"\x00" * 40  # points forward
    for msg in (loop, wild, forward):
        # on port 53 a plausible header is DNS (as nDPI says), but no name is read from a broken one
        on_53 = parsers.parse(UDP, True, 40000, 53, [msg])
        assert on_53["app"] == "dns" and on_53["host"] is None
        # elsewhere the records must parse for the bytes to be called DNS at all
        assert parsers.parse(UDP, True, 40000, 4000, [msg])["app"] is None


def test_dns_names_are_reported_as_operators_know_them() -> None:
    def query(name: bytes, sport: int = 40000, dport: int = 53) -> dict:
        msg = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0) + name + b"\x00\x00\x01\x00\x01"
        return parsers.parse(UDP, True, sport, dport, [msg])

    # characters outside [a-z0-9_-]: '_' when printable, '?' when not; letters lower-cased
    assert query(b"\x04a*b=\x02\xf2X\x03com")["host"] == "a_b_.?x.com"
    # a long name is kept by its tail, where its domain is (79 bytes)
    host = query(bytes([63]) + b"x" * 63 + bytes([30]) + b"y" * 30 + b"\x07example\x03com")["host"]
    assert host == "x" * (79 - 43) + "." + "y" * 30 + ".example.com"
    # mDNS service instance names are UTF-8 and kept as they are
    assert (
        query(b"\x0dluca\xe2\x80\x99s imac\x06_odisk\x04_tcp\x05local", 5353, 5353)["host"]
        == "luca\u2019s imac._odisk._tcp.local"
    )


def test_netbios_name_decoded() -> None:
    enc = "".join(chr(65 + (b >> 4)) + chr(65 + (b & 15)) for b in b"WORKGROUP      \x00")
    r = parsers.parse(UDP, True, 137, 137, [dns_query(enc, 32, 0x0110)])
    assert r["app"] == "netbios" and r["host"] == "workgroup"


def test_netbios_names_with_damage_are_read_up_to_it() -> None:
    """On the name service's port a plausible header is NetBIOS even when a later label is garbage (the name
    is the first label); a datagram's source name is decoded up to its first bad pair, as nDPI reads them."""
    enc = "".join(chr(65 + (b >> 4)) + chr(65 + (b & 15)) for b in b"ECI_DOMAIN     \x1c").encode()
    header = struct.pack("!HHHHHH", 0x8567, 0x0110, 1, 0, 0, 0)
    scope_garbage = header + b"\x20" + enc + b"\x35\x00\x20\x00\x01"
    r = parsers.parse(UDP, True, 137, 137, [scope_garbage])
    assert r["app"] == "netbios" and r["host"] == "eci_domain"
    assert parsers.parse(UDP, True, 4000, 4001, [scope_garbage])["app"] is None  # off its port: not NetBIOS
    source = b"\x20" + enc[:14] + b"C\xb6" + enc[16:] + b"\x00"
    datagram = struct.pack("!BBHIHHH", 0x11, 0x0E, 0x8527, 0xC0A80102, 138, 187, 0) + source + b"\x20" + enc + b"\x00"
    datagram += bytes(201 - len(datagram))
    r = parsers.parse(UDP, True, 138, 138, [datagram])
    assert r["app"] == "netbios" and r["host"] == "eci_dom"


def test_websocket_frames_picked_up_mid_stream() -> None:
    """Whole frames from one side, then whole frames masked the other way from the other side: WebSocket
    (clients mask, servers do not). Frames that do not tile the packet, or the same masking both ways, are not."""
    server = b"\x81\x17" + b"Welcome, 192.168.43.135"  # text, unmasked, 23 bytes
    client = b"\x81\x8c" + b"\xe1\x7e\x8e\xb9" + bytes(12)  # text, masked, 12 bytes
    two = b"\x89\x00" + b"\x82\x7e\x00\x80" + bytes(128)  # ping, then binary with a 16-bit length
    assert parsers.parse(TCP, False, 40000, 12345, [server])["need_more"]
    assert parsers.parse_flow(TCP, 40000, 12345, [(False, server), (True, client)])["app"] == "websocket"
    assert parsers.parse_flow(TCP, 40000, 12345, [(True, client), (False, two)])["app"] == "websocket"
    assert parsers.parse_flow(TCP, 40000, 12345, [(False, server), (True, server)])["app"] is None
    assert parsers.parse_flow(TCP, 40000, 12345, [(False, server + b"x"), (True, client)])["app"] is None


def test_ssh_identification_string_is_kept_by_side_and_is_never_a_host() -> None:
    client, server = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", b"SSH-2.0-OpenSSH_7.4p1 Debian-10+deb9u7\r\n"
    r = parsers.parse(TCP, True, 40000, 2222, [client])
    assert r["app"] == "ssh" and r["host"] is None and r["ssh"] == {"client": "SSH-2.0-OpenSSH_9.2p1 Debian-2"}
    # the server speaks first (as OpenSSH servers do): the flow is decided on its string (the client's is read
    # after the decision by the fastpath, tests/unit/fastpath/test_accuracy_captures.py)
    r = parsers.parse_flow(TCP, 40000, 22, [(False, server), (True, client)])
    assert r["app"] == "ssh" and r["ssh"] == {"server": "SSH-2.0-OpenSSH_7.4p1 Debian-10+deb9u7"}
    # cut at a segment's end: read whole once its rest came
    cut = parsers.parse(TCP, True, 40000, 22, [client[:12], client[12:]])
    assert cut["ssh"] == {"client": "SSH-2.0-OpenSSH_9.2p1 Debian-2"}
    assert parsers.parse(TCP, True, 40000, 22, [b"SSH-2.0-Open\x01SSH\r\n"])["app"] is None


def test_google_quic_client_hello_in_clear_names_the_host() -> None:
    stream_frame = b"\xa0\x01\x00\x04"
    q043 = (
        b"\x0d"
        + b"\x11" * 8
        + b"Q043"
        + b"\x01"
        + b"\x22" * 12
        + stream_frame
        + qi.gquic_chlo(b"www.google.com", b"Q043")
    )
    q046 = (
        b"\xc3Q046\x50" + b"\x11" * 8 + b"\x00\x00\x00\x01" + stream_frame + qi.gquic_chlo(b"Www.YouTube.com", b"Q046")
    )
    assert (
        parsers.parse(UDP, True, 40000, 443, [q043])["app"],
        parsers.parse(UDP, True, 40000, 443, [q043])["host"],
    ) == ("quic", "www.google.com")
    assert parsers.parse(UDP, True, 40000, 443, [q046])["host"] == "www.youtube.com"
    # an end offset past the packet: still QUIC, no host read from outside it
    broken = b"\x0d" + b"\x11" * 8 + b"Q043\x01CHLO" + struct.pack("<HH", 3, 0) + b"SNI\x00" + struct.pack("<I", 9999)
    assert (
        parsers.parse(UDP, True, 40000, 443, [broken])["app"],
        parsers.parse(UDP, True, 40000, 443, [broken])["host"],
    ) == ("quic", None)


QUIC_VERSIONS = {  # version -> (its crypto frame type, what the frame carries)
    "v1": (qi.V1, 0x06, "tls"),
    "v2": (qi.V2, 0x06, "tls"),
    "v2-draft": (qi.V2_DRAFT, 0x06, "tls"),
    "draft-29": (0xFF00001D, 0x06, "tls"),
    "draft-27": (0xFF00001B, 0x06, "tls"),
    "mvfst-22": (qi.MVFST_22, 0x06, "tls"),
    "mvfst-27": (qi.MVFST_27, 0x06, "tls"),
    "mvfst-exp": (qi.MVFST_EXP, 0x06, "tls"),
    "Q050": (qi.Q050, 0x08, "chlo"),
    "T050": (qi.T050, 0x08, "tls"),
    "T051": (qi.T051, 0x08, "tls"),
}


@pytest.mark.parametrize("name", QUIC_VERSIONS)
def test_quic_initial_of_every_version_names_its_host(name: str) -> None:
    """Each version's Initial keys (its salt) and frames; the vectors are checked against nDPI's reader too
    (bench/appid_ndpi_labels.py on captures of them names the same hosts)."""
    version, frame_type, inside = QUIC_VERSIONS[name]
    hello = qi.tls_client_hello(b"Quic.Example.COM") if inside == "tls" else qi.gquic_chlo(b"Quic.Example.COM")
    r = parsers.parse(
        UDP, True, 40000, 443, [qi.client_initial(version, qi.crypto_frame(hello, frame_type=frame_type))]
    )
    assert (r["app"], r["host"]) == ("quic", "quic.example.com")


@pytest.mark.parametrize("name", ["v1", "Q050", "T051"])
def test_quic_client_hello_split_over_two_initials(name: str) -> None:
    version, frame_type, inside = QUIC_VERSIONS[name]
    hello = qi.tls_client_hello(b"split.example") if inside == "tls" else qi.gquic_chlo(b"split.example")
    first, second = hello[:40], hello[40:]
    packets = [
        qi.client_initial(version, qi.crypto_frame(first, 0, frame_type), pn=0),
        qi.client_initial(version, qi.crypto_frame(second, len(first), frame_type), pn=1),
    ]
    assert parsers.parse(UDP, True, 40000, 443, packets[:1])["need_more"]
    assert parsers.parse(UDP, True, 40000, 443, packets)["host"] == "split.example"


def test_quic_initial_of_a_version_reserved_to_force_negotiation_is_quic() -> None:
    greased = qi.client_initial(0x1A2A3A4A, qi.crypto_frame(qi.tls_client_hello(b"x.example")), salt=qi.SALT_V1)
    assert parsers.parse(UDP, True, 40000, 443, [greased])["app"] == "quic"


def test_quic_initial_under_another_versions_keys_is_quic_without_a_host() -> None:
    packet = qi.client_initial(
        qi.T050, qi.crypto_frame(qi.tls_client_hello(b"x.example"), frame_type=0x08), salt=qi.SALT_T051
    )
    r = parsers.parse(UDP, True, 40000, 443, [packet])
    assert (r["app"], r["host"]) == ("quic", None)


def test_quic_garbage_long_header_is_not_quic() -> None:
    assert parsers.parse(UDP, True, 40000, 443, [b"\xc3\x12\x34\x56\x78" + b"\x08" * 40])["app"] is None
    # a known version whose Initial does not decrypt is still QUIC, without a host
    r = parsers.parse(
        UDP, True, 40000, 443, [b"\xc3\x00\x00\x00\x01\x08" + b"\x01" * 8 + b"\x00\x00\x44\xb0" + b"\x00" * 1200]
    )
    assert r["app"] == "quic" and r["host"] is None


# ---- random and damaged input --------------------------------------------------------------------------

ports = st.sampled_from([53, 80, 88, 137, 443, 445, 1194, 1433, 1812, 3478, 5060, 5353, 40000])


@settings(max_examples=3000, deadline=None)
@given(
    st.sampled_from([TCP, UDP]), st.booleans(), ports, ports, st.lists(st.binary(max_size=1600), min_size=1, max_size=3)
)
def test_random_bytes_never_crash(l4: int, to_server: bool, cport: int, sport: int, payloads: list[bytes]) -> None:
    r = parsers.parse(l4, to_server, cport, sport, payloads)
    assert r["app"] is None or r["app"] in parsers.APPS


@settings(max_examples=2000, deadline=None)
@given(st.data())
def test_mutated_real_payloads_never_crash(data: st.DataObject) -> None:
    seeds = [client_hello(b"mutate.example"), dns_query("a.b.example"), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
    raw = bytearray(data.draw(st.sampled_from(seeds)))
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    parsers.parse(data.draw(st.sampled_from([TCP, UDP])), True, 40000, 443, [bytes(raw[:cut]), bytes(raw[cut:])])


# ---- the reference corpus ------------------------------------------------------------------------------

needs_corpus = pytest.mark.skipif(not (CORPUS / "labels.jsonl").exists(), reason="App-ID corpus not present")


def corpus(test: Callable[..., None]) -> Callable[..., None]:
    """Marked `corpus`, and skipped when the App-ID corpus is not mounted."""
    return pytest.mark.corpus(needs_corpus(test))


# share of labelled flows (with payload) each parser must recognise from the first <= 3 packets per direction
MIN_SHARE = {
    "tls": 0.95,
    "http": 1.0,
    "dns": 0.75,
    "mdns": 1.0,
    "llmnr": 1.0,
    "radius": 0.9,
    "stun": 0.95,
    "netbios": 0.75,
    "ssdp": 1.0,
    "snmp": 1.0,
    "dhcp": 1.0,
    "ntp": 1.0,
    "openvpn": 1.0,
    "mssql": 1.0,
    "ldap": 1.0,
    "smb": 1.0,
    "quic": 0.6,
    "sip": 0.65,
    "kerberos": 0.45,
    "ssh": 1.0,
    "dhcpv6": 1.0,
}


@pytest.fixture(scope="module")
def flows():  # type: ignore[no-untyped-def]
    return [f for f in load_flows() if f.l4 in ("TCP", "UDP") and f.packets]


def _classify(f):  # type: ignore[no-untyped-def]
    return parsers.parse_flow(TCP if f.l4 == "TCP" else UDP, f.client_port, f.server_port, f.packets)


@corpus
@pytest.mark.parametrize("app", sorted(MIN_SHARE))
def test_corpus_flows_recognised(flows, app: str) -> None:  # type: ignore[no-untyped-def]
    mine = [f for f in flows if f.app == app]
    assert mine, app
    ok = sum(_classify(f)["app"] in f.accepted for f in mine)
    assert ok >= MIN_SHARE[app] * len(mine), f"{app}: {ok}/{len(mine)}"


@corpus
@pytest.mark.parametrize("app", ["tls", "http", "mdns", "dhcp", "quic"])
def test_corpus_hosts_match_labels(flows, app: str) -> None:  # type: ignore[no-untyped-def]
    mine = [f for f in flows if f.app == app and f.host]
    results = [_classify(f) for f in mine]
    matched = sum(r["host"] == f.host.lower() for f, r in zip(mine, results) if r["app"] in f.accepted)
    recognised = sum(r["app"] in f.accepted for f, r in zip(mine, results))
    assert matched >= 0.75 * recognised, f"{app}: {matched}/{recognised}"


@corpus
def test_corpus_few_wrong_answers(flows) -> None:  # type: ignore[no-untyped-def]
    labelled = [f for f in flows if f.app]
    wrong = sum(1 for f in labelled if (a := _classify(f)["app"]) is not None and a not in f.accepted)
    assert wrong <= 0.02 * len(labelled)


def test_a_mail_or_ftp_greeting_names_the_server() -> None:
    r = parsers.parse(TCP, False, 2127, 25, [b"220 pigeon.eyrie.af.mil ESMTP Sendmail 8.8.7; Sat, 7 Aug 1999\r\n"])
    assert (r["app"], r["host"]) == ("smtp", "pigeon.eyrie.af.mil")
    r = parsers.parse(TCP, False, 2720, 21, [b"220 ProFTPD 1.3.0 Server ready.\r\n"])
    assert (r["app"], r["host"]) == ("ftp", "proftpd")
    # a client command carries no server name
    assert parsers.parse(TCP, True, 2127, 25, [b"EHLO client.example\r\n"])["host"] is None


def test_a_whois_query_is_the_flows_host() -> None:
    r = parsers.parse(TCP, True, 44188, 43, [b"example", b".com\r\n"])
    assert (r["app"], r["host"]) == ("whois", "example.com")
    # not on port 43, or not one printable line: not WHOIS
    assert parsers.parse(TCP, True, 44188, 4300, [b"example.com\r\n"])["app"] != "whois"
    assert parsers.parse(TCP, True, 44188, 43, [b"exa\x01mple.com\r\n"])["app"] != "whois"


def stun(msg_type: int, attributes: bytes) -> bytes:
    return struct.pack("!HHI", msg_type, len(attributes), 0x2112A442) + b"\x01" * 12 + attributes


def test_a_turn_realm_is_the_flows_host() -> None:
    realm = b"turn.l.google.com"
    attr = struct.pack("!HH", 0x0014, len(realm)) + realm + b"\x00" * (-len(realm) % 4)
    r = parsers.parse(UDP, False, 50000, 3478, [stun(0x0113, attr)])  # allocate error response (401)
    assert (r["app"], r["host"]) == ("stun", "turn.l.google.com")
    assert parsers.parse(UDP, True, 50000, 3478, [stun(0x0003, b"")])["host"] is None  # the request has none


def test_an_irc_user_command_is_not_ftp() -> None:
    assert parsers.parse(TCP, True, 40000, 21, [b"USER anonymous\r\n"])["app"] == "ftp"
    # IRC's USER carries four parameters: the catalogue's IRC signature names it, not the FTP parser
    assert parsers.parse(TCP, True, 45921, 8000, [b"USER xxxxx +iw xxxxx :Xxxxxx Xxxx\r\n"])["app"] is None


def test_bittorrent_local_discovery_is_not_ssdp() -> None:
    lsd = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: 0123\r\n\r\n"
    assert parsers.parse(UDP, True, 6771, 6771, [lsd])["app"] is None  # the catalogue's signature decides
    ssdp = b'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: "ssdp:discover"\r\n\r\n'
    assert parsers.parse(UDP, True, 50000, 1900, [ssdp])["app"] == "ssdp"


@pytest.mark.parametrize("cookie", [b"", b"\x01" * 20])
def test_dtls_client_hello_names_its_host(cookie: bytes) -> None:
    """The SNI behind the cookie DTLS adds to the ClientHello (vector checked against ndpiReader)."""
    r = parsers.parse(UDP, True, 40000, 4433, [qi.dtls_client_hello(b"DTLS.Example.com", cookie)])
    assert (r["app"], r["host"], r["alpn"]) == ("dtls", "dtls.example.com", "webrtc")
    # a server's record, or a hello whose body is cut short inside the record: DTLS, no host
    assert parsers.parse(UDP, False, 4433, 40000, [qi.dtls_client_hello(b"x.example")])["host"] is None
    hello = bytearray(qi.dtls_client_hello(b"cut.example", cookie))
    hello[25 + 34] = 200  # a session id length past the body
    assert parsers.parse(UDP, True, 40000, 4433, [bytes(hello)])["host"] is None


def test_anyconnects_pre_rfc_dtls_is_dtls() -> None:
    hello = (
        bytes.fromhex("1601000000000000000000")
        + struct.pack("!H", 16)
        + bytes.fromhex("0100000c000000000000000c")
        + bytes(4)
    )
    assert parsers.parse(UDP, True, 54107, 443, [hello])["app"] == "dtls"


def test_netflow_v5_header_is_not_a_tftp_error() -> None:
    """Both start 00 05 00 nn; a TFTP error's message is printable text, a flow record is not."""
    netflow = struct.pack("!HHIIIIBBH", 5, 1, 1000, 1_700_000_000, 0, 1, 0, 0, 0) + bytes([10, 0, 0, 1]) + bytes(44)
    assert parsers.parse(UDP, True, 40000, 2055, [netflow])["app"] != "tftp"
    assert parsers.parse(UDP, False, 69, 40000, [b"\x00\x05\x00\x01File not found\x00"])["app"] == "tftp"


def test_a_greeting_in_prose_names_no_server() -> None:
    r = parsers.parse(TCP, False, 62092, 21, [b'220 "Authorized users only. All activity may be monitored."\r\n'])
    assert (r["app"], r["host"]) == ("ftp", None)
