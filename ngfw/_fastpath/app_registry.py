"""The App-ID parser registry: one table of every built-in protocol parser, from which the fastpath's
`app_registry.pxi` is generated -- the `APP_*` ids and `BUILTIN_APPS` (the apps the parsers name), the
family files included, the parsers by name (`ngfw._fastpath.parsers.PARSERS`, which tests and the fuzz
target call one by one) and the dispatcher's table (`appid_parse` in app_dispatch.pxi).

A row registers one parser on one transport; the rows of a transport are tried in table order, and a
parser is asked only about payloads its hints admit (the first byte, a server port). A parser that works
over TCP and UDP has a row for each, since what to try first differs. Adding a parser is one family file
(`app_<family>.pxi`, with `cdef int parse_<name>(appctx_t *c) noexcept nogil`) and one row here
(docs/apps.md, "Adding a parser").

    python -m ngfw._fastpath.app_registry      # writes app_registry.pxi (setup.py does it before each build)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATED = HERE / "app_registry.pxi"
L4 = {"tcp": 6, "udp": 17}  # ngfw.wire's numbers: setup.py loads this file alone, before ngfw imports


class RegistryError(ValueError):
    """A row of the registry that cannot be generated; the message names the row and the bad value."""


@dataclass(frozen=True)
class Parser:
    name: str  # the function is parse_<name>; tests and the fuzz target call it by this name
    l4: str  # "tcp" (the parser reads the direction's stream) or "udp" (one datagram)
    family: str  # the file that defines it: app_<family>.pxi
    answers: tuple[str, ...]  # the apps it may name: catalogue names (rules/apps/)
    first: frozenset[int] | None  # first payload bytes it is asked about; None: any
    server_port: int = 0  # asked only when the flow's server port is this; 0: any
    more: bool = True  # its PARSE_NEED_MORE keeps the flow waiting for more bytes ...
    more_port: int = 0  # ... only when either port is this; 0: any port

    @property
    def file(self) -> str:
        return f"app_{self.family}.pxi"


def span(first: int | str, last: int | str) -> frozenset[int]:
    """The bytes first..last (both included); a one-character string is that character's byte."""
    lo, hi = (ord(v) if isinstance(v, str) else v for v in (first, last))
    return frozenset(range(lo, hi + 1))


def these(*values: int | str) -> frozenset[int]:
    return frozenset(ord(v) if isinstance(v, str) else v for v in values)


PRINTABLE = span(" ", "~")
UPPER = span("A", "Z")
# QUIC: a long header (form and fixed bits), or Google QUIC's public flags (version bit 0x01, 8-byte connection id
# 0x08, no 0x80)
QUIC_FIRST = frozenset(b for b in range(256) if b >= 0xC0 or (b & 0x89) == 0x09)


def tcp(
    name: str,
    family: str,
    answers: Iterable[str],
    first: frozenset[int] | None = None,
    *,
    server_port: int = 0,
    more: bool = True,
    more_port: int = 0,
) -> Parser:
    return Parser(name, "tcp", family, tuple(answers), first, server_port, more, more_port)


def udp(
    name: str,
    family: str,
    answers: Iterable[str],
    first: frozenset[int] | None = None,
    *,
    server_port: int = 0,
    more: bool = True,
    more_port: int = 0,
) -> Parser:
    return Parser(name, "udp", family, tuple(answers), first, server_port, more, more_port)


REGISTRY: tuple[Parser, ...] = (
    # TCP: the first byte of the direction's stream; cheap and specific first
    tcp("tls", "tls", ["tls"], span(20, 23)),  # record types: ccs, alert, handshake, data
    tcp("ssh", "text", ["ssh"], these("S")),
    tcp("http", "http", ["http", "http2", "rtsp", "sip"], UPPER),
    tcp("whois", "text", ["whois"], PRINTABLE, server_port=43),
    tcp("mail_ftp", "text", ["ftp", "smtp", "pop3", "imap", "nntp", "vnc"], PRINTABLE),
    tcp("smb", "tcp_binary", ["smb", "netbios"], these(0)),  # NetBIOS session message type 0
    tcp("kerberos", "tcp_binary", ["kerberos"], these(0)),  # a 32-bit record length
    tcp("postgresql", "tcp_binary", ["postgresql"], these(0), more=False),
    tcp("mssql", "tcp_binary", ["mssql"], span(0, 0x12)),  # TDS packet types
    tcp("ldap", "tcp_binary", ["ldap"], these(0x30)),  # BER SEQUENCE
    tcp("netbios", "dns", ["netbios"], these(0x81, 0x82, 0x83, 0x85)),
    tcp("bgp", "tcp_binary", ["bgp"], these(0xFF), more=False),  # the marker
    tcp("telnet", "tcp_binary", ["telnet"], these(0xFF), more=False),  # IAC
    tcp("tpkt", "tcp_binary", ["rdp"], these(3), more=False),  # TPKT version 3
    tcp("socks", "tcp_binary", ["socks"], these(4, 5), more=False),
    tcp("mysql", "tcp_binary", ["mysql"], more=False),
    tcp("stun", "udp_binary", ["stun"], more=False),
    tcp("radius", "udp_binary", ["radius"], more=False),
    # any two bytes are a DNS length: waiting for the rest is worth it only on DNS's port
    tcp("dns", "dns", ["dns", "mdns", "llmnr", "netbios"], more_port=53),
    tcp("openvpn", "udp_binary", ["openvpn"]),
    tcp("websocket", "http", ["websocket"], span(0x81, 0x8A)),  # FIN + a data or control opcode
    # UDP: the datagram's first byte
    udp("quic", "quic", ["quic"], QUIC_FIRST),
    udp("stun", "udp_binary", ["stun"], span(0, 3), more=False),  # message types
    udp("dns", "dns", ["dns", "mdns", "llmnr", "netbios"], more=False),
    udp("netbios", "dns", ["netbios"], more=False),
    udp("http", "http", ["ssdp", "http", "http2", "rtsp", "sip"], UPPER, more=False),
    udp("dtls", "tls", ["dtls"], span(20, 25), more=False),  # DTLS record types
    udp("dhcp", "udp_binary", ["dhcp"], these(1, 2), more=False),  # BOOTREQUEST, BOOTREPLY
    udp("radius", "udp_binary", ["radius"], more=False),
    udp("snmp", "udp_binary", ["snmp"], these(0x30), more=False),  # BER SEQUENCE
    udp("tftp", "udp_binary", ["tftp"], these(0), more=False),  # the opcode's high byte
    udp("dhcpv6", "udp_binary", ["dhcpv6"], more=False),
    udp("ntp", "udp_binary", ["ntp"], more=False),
    udp("rtp", "udp_binary", ["rtp", "rtcp"], span(0x80, 0xBF)),  # version 2
    udp("openvpn", "udp_binary", ["openvpn"]),
)

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_APP = re.compile(r"^[a-z][a-z0-9]*$")  # an APP_* identifier spells the name in upper case


def check(rows: tuple[Parser, ...], directory: Path = HERE) -> None:
    """Raise RegistryError naming the first row that cannot be generated."""
    seen: set[tuple[str, str]] = set()
    sources: dict[str, str] = {}
    for index, row in enumerate(rows):
        where = f"registry row {index} ({row.name}/{row.l4})"
        if not _NAME.match(row.name):
            raise RegistryError(f"{where}: name {row.name!r} must be lower-case letters, digits and '_'")
        if row.l4 not in L4:
            raise RegistryError(f"{where}: l4 {row.l4!r} must be one of {', '.join(L4)}")
        if (row.name, row.l4) in seen:
            raise RegistryError(f"{where}: {row.name!r} is already registered for {row.l4}")
        seen.add((row.name, row.l4))
        if not row.answers:
            raise RegistryError(f"{where}: answers is empty: name the apps the parser may return")
        for app in row.answers:
            if not _APP.match(app):
                raise RegistryError(f"{where}: answer {app!r} must be a catalogue name: lower-case letters and digits")
        if row.first is not None and (not row.first or not all(0 <= b <= 255 for b in row.first)):
            raise RegistryError(f"{where}: first {sorted(row.first)!r} must be a non-empty set of bytes 0..255")
        for field in ("server_port", "more_port"):
            if not 0 <= getattr(row, field) <= 65535:
                raise RegistryError(f"{where}: {field} {getattr(row, field)!r} must be a port, or 0 for any")
        if row.file not in sources:
            path = directory / row.file
            if not path.is_file():
                raise RegistryError(f"{where}: family file {row.file} does not exist in {directory}")
            sources[row.file] = path.read_text()
        if not re.search(rf"^cdef int parse_{row.name}\(appctx_t \*c\) noexcept nogil:", sources[row.file], re.M):
            signature = f"cdef int parse_{row.name}(appctx_t *c) noexcept nogil"
            raise RegistryError(f"{where}: {row.file} defines no '{signature}'")
    if len(apps(rows)) > 255:
        raise RegistryError(f"{len(apps(rows))} apps: a parser's answer is kept in one byte of the flow's scratch")


def apps(rows: tuple[Parser, ...]) -> list[str]:
    """The apps the parsers name, in order of first mention: index + 1 is the APP_* value."""
    return list(dict.fromkeys(app for row in rows for app in row.answers))


def names(rows: tuple[Parser, ...]) -> list[str]:
    """The parsers, each once, in order of first registration."""
    return list(dict.fromkeys(row.name for row in rows))


def _words(first: frozenset[int] | None) -> list[int]:
    if first is None:
        return [(1 << 64) - 1] * 4
    return [sum(1 << (b - 64 * w) for b in first if 64 * w <= b < 64 * (w + 1)) for w in range(4)]


def _show(b: int) -> str:
    return repr(chr(b)) if b < 0x80 and chr(b).isalpha() else f"0x{b:02x}"


def _describe(first: frozenset[int] | None) -> str:
    """The first bytes as runs, for the generated file's comments: 'A'-'Z', 0x81-0x83 0x85."""
    if first is None:
        return "any"
    runs: list[str] = []
    values = sorted(first)
    start = prev = values[0]
    for b in values[1:] + [-1]:
        if b == prev + 1:
            prev = b
            continue
        runs.append(_show(start) if start == prev else f"{_show(start)}-{_show(prev)}")
        start = prev = b
    return " ".join(runs) if len(runs) <= 6 else f"{len(values)} values"


def render(rows: tuple[Parser, ...] = REGISTRY) -> str:
    check(rows)
    app_list = apps(rows)
    parser_list = names(rows)
    ordered = sorted(rows, key=lambda r: L4[r.l4])  # stable: each transport's rows keep the table's order
    n_tcp = sum(1 for r in rows if r.l4 == "tcp")
    answers: dict[str, list[str]] = {}
    for row in rows:
        answers.setdefault(row.name, [])
        answers[row.name] += [a for a in row.answers if a not in answers[row.name]]
    out = [
        "# GENERATED from the App-ID parser registry (ngfw/_fastpath/app_registry.py) by",
        "# `python -m ngfw._fastpath.app_registry`, which setup.py runs before every build: edit the table there.",
        "",
        "# The applications the built-in parsers name. A parser returns an APP_* value (> 0); BUILTIN_APPS[value] is",
        "# its catalogue name (the engine maps it to the catalogue's app id by that name).",
        "cdef enum:",
    ]
    out += [f"    APP_{app.upper()} = {i}" for i, app in enumerate(app_list, 1)]
    out += ["", "BUILTIN_APPS = (", '    "",']
    out += [f'    "{app}",' for app in app_list]
    out += [")", "", "# The parser families."]
    out += [f'include "{f}"' for f in dict.fromkeys(r.file for r in rows)]
    out += [
        "",
        "# Every parser, by name (ngfw._fastpath.parsers calls each on its own), and the apps each may name.",
        "APP_PARSER_NAMES = (",
    ]
    out += [f'    "{name}",' for name in parser_list]
    out += [")", "APP_PARSER_ANSWERS = {"]
    out += [f'    "{name}": ({", ".join(repr(a) for a in answers[name])},),' for name in parser_list]
    out += [
        "}",
        "cdef enum:",
        f"    APP_N_PARSERS = {len(parser_list)}",
        "cdef app_parse_fn APP_PARSER_FUNCS[APP_N_PARSERS]",
    ]
    out += [f"APP_PARSER_FUNCS[{i}] = parse_{name}" for i, name in enumerate(parser_list)]
    out += [
        "",
        "# The dispatcher's table: each transport's parsers in the order appid_parse tries them.",
        "cdef enum:",
        "    APP_REG_TCP = 0",
        f"    APP_REG_UDP = {n_tcp}",
        f"    APP_REG_END = {len(rows)}",
        "cdef app_registration_t APP_REGISTRY[APP_REG_END]",
        "# row, parser, server port (0: any), more, more port (0: any),",
        "# first bytes (bit b of word b // 64 set: a payload starting with b is shown to the parser)",
    ]
    for i, row in enumerate(ordered):
        w = _words(row.first)
        hints = [f"first {_describe(row.first)}"]
        if row.server_port:
            hints.append(f"server port {row.server_port}")
        if not row.more:
            hints.append("never waits")
        else:
            hints.append("asks for more" + (f" on port {row.more_port}" if row.more_port else ""))
        out.append(f"# {row.name}/{row.l4}: {', '.join(hints)}")
        out.append(
            f"app_register(&APP_REGISTRY[{i}], parse_{row.name}, {row.server_port}, {int(row.more)}, {row.more_port},"
        )
        out.append(f"             0x{w[0]:016x}, 0x{w[1]:016x}, 0x{w[2]:016x}, 0x{w[3]:016x})")
    return "\n".join(out) + "\n"


def write(path: Path = GENERATED) -> bool:
    """Write the generated file when its content changes (an unchanged file keeps its time: no rebuild). True
    when it was written."""
    text = render()
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def main() -> int:
    try:
        changed = write()
    except RegistryError as exc:
        print(f"app_registry: {exc}", file=sys.stderr)
        return 1
    print(f"{GENERATED}: {'written' if changed else 'up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
