"""App-ID parsers: a flow of fuzzed payloads through one parser of ngfw._fastpath.parsers.PARSERS (every
parser of the registry, ngfw/_fastpath/app_registry.py, by name), or through appid_parse (which tries them
in the registry's order), as TCP (a stream per direction) or UDP. A parser's answer must be one of the apps
its registry rows name.

Input: a selector byte (the parser, in the registry's order; past the last, the dispatcher), a byte for
transport and ports, then records (flag bit 0: 1 = server to client)."""

from __future__ import annotations

from ngfw._fastpath import parsers
from tests.fuzz.targets import records

# the ports that steer parsers (well-known ports of the catalogue), then "any"
PORTS = (
    80,
    443,
    53,
    5353,
    5355,
    137,
    22,
    1900,
    554,
    5060,
    445,
    88,
    67,
    547,
    3478,
    123,
    161,
    1812,
    4433,
    5004,
    21,
    25,
    110,
    143,
    1433,
    1194,
    69,
    389,
    1080,
    3306,
    5432,
    5900,
    3389,
    179,
    23,
    119,
    43,
    8080,
    40000,
)


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    names = parsers.PARSERS
    parser = names[data[0]] if data[0] < len(names) else None
    l4 = 6 if data[1] & 0x80 else 17
    server_port = PORTS[(data[1] & 0x7F) % len(PORTS)]
    packets = [(not flag & 1, payload) for flag, payload in records.split(data[2:], limit=16)]
    result = parsers.parse_flow(l4, 50000, server_port, packets, parser)
    assert result["app"] is None or result["app"] in parsers.APPS, result
    assert parser is None or result["app"] is None or result["app"] in parsers.ANSWERS[parser], (parser, result)
