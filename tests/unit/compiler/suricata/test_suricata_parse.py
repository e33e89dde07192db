"""The Suricata rule compiler: what a rule author writes, and what the engine receives."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import hyperscan
import pytest

from ngfw.compiler.rules_cli import parse_variables, rules_check
from ngfw.compiler.suricata import (
    PAYLOAD,
    CompiledSignature,
    ContentMatch,
    DataAt,
    FlowbitOp,
    FlowConstraint,
    NumberCheck,
    PcreMatch,
    RuleSet,
    Threshold,
    hscheck,
    load_rules,
)
from ngfw.compiler.suricata.buffers import PCRE_BUFFER_FLAGS, STICKY_BUFFERS

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "rules"


def load(tmp_path: Path, text: str, variables: dict[str, str] | None = None) -> RuleSet:
    path = tmp_path / "test.rules"
    path.write_text(text, encoding="utf-8")
    return load_rules([path], variables)


def one(tmp_path: Path, options: str, header: str = "alert tcp any any -> any any") -> CompiledSignature:
    ruleset = load(tmp_path, f"{header} ({options} sid:1;)\n")
    assert not ruleset.skipped, [str(s) for s in ruleset.skipped]
    return ruleset.rules[0]


def skip_reason(tmp_path: Path, rule: str) -> str:
    ruleset = load(tmp_path, rule + "\n")
    assert not ruleset.rules
    (skipped,) = ruleset.skipped
    return skipped.reason


def hs_matches(expression: str, flags: int, data: bytes) -> bool:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=[expression.encode()], ids=[1], flags=[flags])
    hits: list[int] = []
    database.scan(data, match_event_handler=lambda *args: hits.append(1))
    return bool(hits)


# -- header ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "action"),
    [
        ("alert", "alert"),
        ("drop", "drop"),
        ("pass", "pass"),
        ("reject", "reject"),
        ("rejectsrc", "reject"),
        ("rejectdst", "reject"),
        ("rejectboth", "reject"),
    ],
)
def test_actions(tmp_path: Path, written: str, action: str) -> None:
    assert one(tmp_path, "", f"{written} ip any any -> any any").action == action


@pytest.mark.parametrize(
    ("protocol", "transport", "app"),
    [
        ("ip", "ip", None),
        ("tcp", "tcp", None),
        ("udp", "udp", None),
        ("icmp", "icmp", None),
        ("tcp-pkt", "tcp", None),
        ("http", "tcp", "http"),
        ("tls", "tcp", "tls"),
        ("dns", "tcp/udp", "dns"),
        ("ssh", "tcp", "ssh"),
        ("smb", "tcp", "smb"),
        ("ftp", "tcp", "ftp"),
        ("smtp", "tcp", "smtp"),
    ],
)
def test_protocols_record_transport_and_app(tmp_path: Path, protocol: str, transport: str, app: str | None) -> None:
    rule = one(tmp_path, "", f"alert {protocol} any any -> any any")
    assert (rule.protocol, rule.transport, rule.app_proto) == (protocol, transport, app)


def test_unknown_protocol_is_skipped(tmp_path: Path) -> None:
    # Suricata 9's `ether` (every frame's Ethernet header) is not followed: `arp` rules take ether.hdr
    assert skip_reason(tmp_path, "alert ether any any -> any any (sid:1;)") == "unsupported protocol: ether"


def test_sticky_buffer_gives_a_tcp_rule_its_app_protocol(tmp_path: Path) -> None:
    assert one(tmp_path, 'http.uri; content:"/x";').app_proto == "http"


def test_buffer_of_another_app_protocol_is_refused(tmp_path: Path) -> None:
    rule = 'alert dns any any -> any any (http.uri; content:"/x"; sid:1;)'
    assert skip_reason(tmp_path, rule) == "conflicting protocol"
    rule = 'alert udp any any -> any any (tls.sni; content:"x"; sid:1;)'
    assert skip_reason(tmp_path, rule) == "conflicting protocol"


@pytest.mark.parametrize(
    ("header", "buffer", "transport", "app"),
    [
        ("alert ip any any -> any any", "http.uri", "tcp", "http"),
        ("alert udp any any -> any any", "dns.query", "udp", "dns"),
        ("alert tcp any any -> any any", "dns.query", "tcp", "dns"),
        ("alert ip any any -> any any", "dns.query", "tcp/udp", "dns"),
    ],
)
def test_buffer_narrows_the_transport(tmp_path: Path, header: str, buffer: str, transport: str, app: str) -> None:
    rule = one(tmp_path, f'{buffer}; content:"x";', header)
    assert (rule.transport, rule.app_proto) == (transport, app)


def test_default_variables_home_and_external_net(tmp_path: Path) -> None:
    rule = one(tmp_path, "", "alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS")
    assert rule.src.matches("10.1.2.3") and rule.src.matches("192.168.1.1") and not rule.src.matches("8.8.8.8")
    assert rule.dst.matches("8.8.8.8") and not rule.dst.matches("172.16.0.1")
    # EXTERNAL_NET = !$HOME_NET and HOME_NET is IPv4 only: as in Suricata, neither matches IPv6.
    assert not rule.dst.matches("2001:db8::1") and not rule.src.matches("2001:db8::1")
    assert rule.dst_ports.ranges == ((80, 80),)
    assert rule.src_ports.is_any


def test_variables_override_defaults(tmp_path: Path) -> None:
    ruleset = load(
        tmp_path,
        "alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (sid:1;)\n",
        {"HOME_NET": "[198.51.100.0/24]", "$HTTP_PORTS": "[80,8080]"},
    )
    rule = ruleset.rules[0]
    assert rule.src.matches("198.51.100.7") and not rule.src.matches("10.0.0.1")
    assert rule.dst.matches("10.0.0.1")
    assert rule.dst_ports.ranges == ((80, 80), (8080, 8080))


def test_address_lists_negation_and_ranges(tmp_path: Path) -> None:
    rule = one(tmp_path, "", "alert ip [10.0.0.0/8, !10.1.0.0/16] any -> [1.1.1.1-1.1.1.5,2001:db8::/32] any")
    assert rule.src.matches("10.2.0.1") and not rule.src.matches("10.1.2.3") and not rule.src.matches("11.0.0.1")
    assert rule.dst.matches("1.1.1.5") and not rule.dst.matches("1.1.1.6") and rule.dst.matches("2001:db8::9")
    only_negated = one(tmp_path, "", "alert ip ![10.0.0.0/8,192.168.0.0/16] any -> any any")
    assert only_negated.src.matches("8.8.8.8") and not only_negated.src.matches("192.168.3.3")
    # Negation works per IP version, as Suricata's DetectAddressMergeNot does.
    mixed = one(tmp_path, "", "alert ip [2001:db8::/32,!10.0.0.0/8] any -> [!2001:db8::1,!1.1.1.1] any")
    assert mixed.src.matches("2001:db8::5") and mixed.src.matches("11.0.0.1") and not mixed.src.matches("10.0.0.1")
    assert mixed.dst.matches("2001:db9::1") and not mixed.dst.matches("2001:db8::1") and mixed.dst.matches("8.8.8.8")
    assert one(tmp_path, "", "alert ip any any -> [any,!1.1.1.1] any").dst.matches("2001:db8::1")


@pytest.mark.parametrize(
    ("ports", "inside", "outside"),
    [
        ("1024:", [1024, 65535], [1023]),
        (":1023", [0, 1023], [1024]),
        ("[80,443,8000:8080]", [80, 443, 8000, 8080], [81, 7999, 8081]),
        ("!80", [79, 81], [80]),
        ("[1:100,!50]", [1, 49, 51, 100], [50, 101]),
        ("![80,443]", [22], [80, 443]),
        ("$SHELLCODE_PORTS", [81], [80]),
        ("[$HTTP_PORTS,8080]", [80, 8080], [443]),
    ],
)
def test_port_expressions(tmp_path: Path, ports: str, inside: list[int], outside: list[int]) -> None:
    rule = one(tmp_path, "", f"alert tcp any any -> any {ports}")
    assert all(rule.dst_ports.matches(p) for p in inside)
    assert not any(rule.dst_ports.matches(p) for p in outside)


def test_bidirectional_rule(tmp_path: Path) -> None:
    assert one(tmp_path, "", "alert ip any any <> 2.2.2.2 any").direction == "<>"


def test_continuation_lines_report_the_first_line(tmp_path: Path) -> None:
    ruleset = load(
        tmp_path,
        '# comment\n\nalert tcp any any -> any 25 (msg:"a"; \\\n   content:"x"; \\\n  sid:7;)\n'
        "alert tcp any any -> any any (stream_size:server,>,100; sid:8;)\n",
    )
    assert ruleset.rules[0].line == 3 and ruleset.rules[0].sid == 7
    assert (ruleset.skipped[0].line, ruleset.skipped[0].sid) == (6, 8)


# -- rule information ---------------------------------------------------------------------------------


def test_msg_escapes(tmp_path: Path) -> None:
    rule = one(tmp_path, r'msg:"a\;b \"quoted\" back\\slash (x)";')
    assert rule.msg == 'a;b "quoted" back\\slash (x)'


def test_sid_rev_gid_metadata_reference_target(tmp_path: Path) -> None:
    rule = one(
        tmp_path,
        "rev:4; gid:3; metadata: created_at 2020_01_01, former_category MALWARE; "
        "reference:url,example.com/a; reference:cve,2021-44228; target:dest_ip;",
    )
    assert (rule.sid, rule.rev, rule.gid, rule.target) == (1, 4, 3, "dest_ip")
    assert rule.metadata == (("created_at", "2020_01_01"), ("former_category", "MALWARE"))
    assert rule.references == (("url", "example.com/a"), ("cve", "2021-44228"))


def test_classtype_gives_category_and_priority(tmp_path: Path) -> None:
    rule = one(tmp_path, "classtype:trojan-activity;")
    assert (rule.category, rule.priority, rule.severity) == ("A Network Trojan was detected", 1, 1)
    assert one(tmp_path, "classtype:trojan-activity; priority:3;").priority == 3
    assert one(tmp_path, "").priority == 3


def test_unknown_classtype_is_skipped(tmp_path: Path) -> None:
    assert skip_reason(tmp_path, "alert ip any any -> any any (classtype:nonsense; sid:1;)") == "unknown classtype"


# -- content ------------------------------------------------------------------------------------------


def test_content_text_hex_and_escapes(tmp_path: Path) -> None:
    rule = one(tmp_path, r'content:"GET|20 2f|a|3B|\;\"\\\:end";')
    (match,) = rule.buffer(PAYLOAD).matches  # type: ignore[union-attr]
    assert isinstance(match, ContentMatch)
    assert match.pattern == b'GET /a;;"\\:end'
    assert match.hs_expression == r"GET\x20\x2fa\x3b\x3b\x22\x5c\x3aend"
    assert hs_matches(match.hs_expression, match.hs_flags, b'xxGET /a;;"\\:endyy')


def test_content_bytes_outside_ascii_are_the_file_bytes(tmp_path: Path) -> None:
    rule = one(tmp_path, 'content:"caf\u00e9";')
    assert rule.buffers[0].matches[0].pattern == "caf\u00e9".encode()  # type: ignore[union-attr]


def test_negated_content_and_nocase(tmp_path: Path) -> None:
    rule = one(tmp_path, 'content:"abc"; content:!"Evil"; nocase;')
    first, second = rule.buffers[0].matches
    assert isinstance(second, ContentMatch) and isinstance(first, ContentMatch)
    assert not first.negated and not first.nocase and first.hs_flags == 0
    assert second.negated and second.nocase and second.hs_flags == hyperscan.HS_FLAG_CASELESS
    assert hs_matches(second.hs_expression, second.hs_flags, b"an EVIL thing")


def test_position_modifiers(tmp_path: Path) -> None:
    rule = one(
        tmp_path,
        'content:"a"; offset:2; depth:10; content:"bc"; distance:0; within:5; '
        'content:"d"; startswith; content:"e"; endswith; content:"f"; distance:-3;',
    )
    a, bc, d, e, f = rule.buffers[0].matches
    assert (a.offset, a.depth, a.relative) == (2, 10, False)  # type: ignore[union-attr]
    assert (bc.distance, bc.within, bc.relative) == (0, 5, True)  # type: ignore[union-attr]
    assert d.startswith and not d.endswith  # type: ignore[union-attr]
    assert e.endswith  # type: ignore[union-attr]
    assert f.distance == -3  # type: ignore[union-attr]
    assert a.end_bounds == (3, 12) and d.end_bounds == (1, 1) and e.end_bounds == (1, None)  # type: ignore[union-attr]


def test_fast_pattern_explicit_only_chop_and_default(tmp_path: Path) -> None:
    rule = one(tmp_path, 'content:"longest-one"; content:"short"; fast_pattern;')
    assert rule.fast_pattern is not None and rule.fast_pattern.pattern == b"short" and rule.fast_pattern.index == 1
    rule = one(tmp_path, 'content:"ab"; content:"longer"; depth:20; content:!"negated-and-longest";')
    assert rule.fast_pattern is not None and rule.fast_pattern.pattern == b"longer"
    assert not rule.fast_pattern.only  # depth still has to be checked
    rule = one(tmp_path, 'content:"xyz"; fast_pattern:only;')
    assert rule.fast_pattern is not None and rule.fast_pattern.only
    rule = one(tmp_path, 'content:"0123456789"; fast_pattern:2,4;')
    assert rule.fast_pattern is not None and rule.fast_pattern.pattern == b"2345"
    assert one(tmp_path, 'content:!"x";').fast_pattern is None


def test_rawbytes_is_accepted_and_ignored(tmp_path: Path) -> None:
    assert one(tmp_path, 'content:"x"; rawbytes;').buffers[0].matches[0].pattern == b"x"  # type: ignore[union-attr]


def test_isdataat(tmp_path: Path) -> None:
    rule = one(tmp_path, 'content:"x"; isdataat:!1,relative; isdataat:10;')
    assert rule.buffers[0].matches[1:] == (DataAt(1, relative=True, negated=True), DataAt(10))


# -- buffers -----------------------------------------------------------------------------------------

STICKY_AND_LEGACY = [
    ("http.uri", "http_uri", "http.uri"),
    ("http.uri.raw", "http_raw_uri", "http.uri.raw"),
    ("http.host", "http_host", "http.host"),
    ("http.method", "http_method", "http.method"),
    ("http.user_agent", "http_user_agent", "http.user_agent"),
    ("http.header", "http_header", "http.header"),
    ("http.request_body", "http_client_body", "http.request_body"),
    ("http.cookie", "http_cookie", "http.cookie"),
    ("http.stat_code", "http_stat_code", "http.stat_code"),
    ("http.response_body", "http_server_body", "file.data"),
]


@pytest.mark.parametrize(("sticky", "legacy", "buffer"), STICKY_AND_LEGACY)
def test_sticky_and_legacy_buffers_agree(tmp_path: Path, sticky: str, legacy: str, buffer: str) -> None:
    as_sticky = one(tmp_path, f'{sticky}; content:"a"; content:"b"; distance:0;', "alert http any any -> any any")
    as_legacy = one(
        tmp_path, f'content:"a"; {legacy}; content:"b"; distance:0; {legacy};', "alert http any any -> any any"
    )
    assert as_sticky.buffers == as_legacy.buffers
    assert [b.buffer for b in as_sticky.buffers] == [buffer]


@pytest.mark.parametrize(
    ("keyword", "buffer"),
    [
        ("tls.sni", "tls.sni"),
        ("tls_sni", "tls.sni"),
        ("tls.cert_subject", "tls.cert_subject"),
        ("dns.query", "dns.query"),
        ("dns_query", "dns.query"),
        ("file_data", "file.data"),
        ("file.data", "file.data"),
    ],
)
def test_other_sticky_buffers(tmp_path: Path, keyword: str, buffer: str) -> None:
    rule = one(tmp_path, f'{keyword}; content:"x";')
    assert [b.buffer for b in rule.buffers] == [buffer]


def test_payload_then_sticky_then_pkt_data(tmp_path: Path) -> None:
    rule = one(tmp_path, 'content:"p1"; http.uri; content:"u1"; http.host; content:"h1"; pkt_data; content:"p2";')
    assert [(b.buffer, [m.pattern for m in b.contents]) for b in rule.buffers] == [
        (PAYLOAD, [b"p1", b"p2"]),
        ("http.uri", [b"u1"]),
        ("http.host", [b"h1"]),
    ]


def test_transforms_make_a_buffer_of_their_own(tmp_path: Path) -> None:
    rule = one(
        tmp_path,
        'dns.query; content:"plain"; dns.query; dotprefix; to_lowercase; content:".evil.com"; endswith; '
        'pcre:"/\\.evil\\.com$/";',
        "alert dns any any -> any any",
    )
    plain, transformed = rule.buffers
    assert (plain.buffer, plain.transforms) == ("dns.query", ())
    assert (transformed.buffer, transformed.transforms) == ("dns.query", ("dotprefix", "to_lowercase"))
    assert [type(m) for m in transformed.matches] == [ContentMatch, PcreMatch]
    assert rule.fast_pattern is not None and rule.fast_pattern.transforms == ("dotprefix", "to_lowercase")


def test_transform_after_a_match_applies_to_the_matches_after_it(tmp_path: Path) -> None:
    # ET Open sid 2044076 is written this way.
    rule = one(
        tmp_path,
        'dns.query; content:"rs-"; startswith; pcre:"/[a-z]{2}/Ri"; dotprefix; content:".rustdesk.com"; endswith;',
        "alert dns any any -> any any",
    )
    assert [(b.buffer, b.transforms, len(b.matches)) for b in rule.buffers] == [
        ("dns.query", (), 2),
        ("dns.query", ("dotprefix",), 1),
    ]


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ('dotprefix; content:"x";', "malformed rule"),  # no sticky buffer to transform
        ('dns.query; to_md5; content:"x";', "unsupported keyword: to_md5"),
    ],
)
def test_transform_errors(tmp_path: Path, options: str, reason: str) -> None:
    assert skip_reason(tmp_path, f"alert dns any any -> any any ({options} sid:1;)") == reason


def test_bsize_and_urilen(tmp_path: Path) -> None:
    rule = one(tmp_path, 'http.host; content:"a"; bsize:<20; urilen:5<>10;')
    host = rule.buffer("http.host")
    uri = rule.buffer("http.uri")
    assert host is not None and host.size == NumberCheck("<", 20)
    assert uri is not None and uri.size == NumberCheck("<>", 5, 10) and uri.size.matches(7)
    assert not uri.size.matches(10)


def test_legacy_modifier_without_content_is_malformed(tmp_path: Path) -> None:
    assert skip_reason(tmp_path, 'alert http any any -> any any (http_uri; content:"x"; sid:1;)') == "malformed rule"


# -- pcre --------------------------------------------------------------------------------------------


def test_pcre_flags_map_to_hyperscan(tmp_path: Path) -> None:
    rule = one(tmp_path, r'pcre:"/^ab.c$/smi";')
    (match,) = rule.buffers[0].matches
    assert isinstance(match, PcreMatch)
    assert match.hs_flags == hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_DOTALL | hyperscan.HS_FLAG_MULTILINE
    assert hs_matches(match.hs_expression, match.hs_flags, b"x\nAB\nC\ny")


def test_pcre_extended_and_anchored(tmp_path: Path) -> None:
    rule = one(tmp_path, r'pcre:"/a b  c # comment/xA";')
    match = rule.buffers[0].matches[0]
    assert isinstance(match, PcreMatch)
    assert hs_matches(match.hs_expression, match.hs_flags, b"abcdef")
    assert not hs_matches(match.hs_expression, match.hs_flags, b"zabc")


def test_pcre_buffer_flags_relative_and_negation(tmp_path: Path) -> None:
    rule = one(
        tmp_path, r'content:"/a"; http_uri; pcre:"/\/a\d+/UR"; pcre:!"/evil/H";', "alert http any any -> any any"
    )
    uri, header = rule.buffer("http.uri"), rule.buffer("http.header")
    assert uri is not None and header is not None
    pcre = uri.matches[1]
    assert isinstance(pcre, PcreMatch) and pcre.relative and pcre.source == r"\/a\d+"
    negated = header.matches[0]
    assert isinstance(negated, PcreMatch) and negated.negated


def test_relative_pcre_follows_the_previous_match_into_its_buffer(tmp_path: Path) -> None:
    rule = one(tmp_path, r'content:"x"; http_header; pcre:"/y/R";', "alert http any any -> any any")
    assert [b.buffer for b in rule.buffers] == ["http.header"]


def test_pcre_non_ascii_bytes_become_escapes(tmp_path: Path) -> None:
    rule = one(tmp_path, 'pcre:"/caf\u00e9/";')
    match = rule.buffers[0].matches[0]
    assert isinstance(match, PcreMatch) and match.hs_expression == r"caf\xc3\xa9"
    assert hs_matches(match.hs_expression, match.hs_flags, "un caf\u00e9".encode())


@pytest.mark.parametrize("regex", ["/a(?=b)/", "/(?<!x)b/", "/(a)\\1/", "/a++b/"])
def test_pcre_hyperscan_cannot_express_still_loads_for_pcre2(tmp_path: Path, regex: str) -> None:
    # the engine verifies pcre with PCRE2 (as Suricata does): only Hyperscan's prefilter use is lost
    rule = one(tmp_path, f'pcre:"{regex}i";')
    match = rule.buffers[0].matches[0]
    assert isinstance(match, PcreMatch) and match.hs_expression is None
    assert match.source == regex[1:-1] and match.options == "i"


@pytest.mark.parametrize("value", ['"/a(b/"', '"/a/q"', '"abc"', '"/[z-a]/"'])
def test_bad_pcre(tmp_path: Path, value: str) -> None:
    assert skip_reason(tmp_path, f"alert tcp any any -> any any (pcre:{value}; sid:1;)") == "bad pcre"


@pytest.mark.parametrize(
    "regex",
    [
        r"(a)\1",
        "a(?=b)",
        "(?<!a)b",
        "x?",
        "abc",
        "a{1,100000}",
        "a(b",
        "[z-a]",
        "a++b",
        "^.*$",
        r"\d{2,4}\.(?i:exe)",
        "(?x) a b # c",
    ],
)
def test_fast_and_compiling_hyperscan_checks_agree(regex: str) -> None:
    fast_error, fast_empty = hscheck.check(regex, 0, True, "expression_info")
    compile_error, _ = hscheck.check(regex, 0, True, "compile")
    assert fast_error == compile_error
    if fast_empty and fast_error is None:
        assert hscheck.check(regex, hyperscan.HS_FLAG_ALLOWEMPTY, True, "compile") == (None, False)


def test_the_fast_check_is_the_compiled_fastpaths() -> None:
    # hs_expression_info through the extension that links libhs (no ctypes, no second copy of libhs)
    from ngfw._fastpath import engine

    assert hscheck.METHOD == "expression_info"
    assert engine.hs_expression_check(b"a(b", 0)[0] == hscheck.check("a(b", 0, True, "compile")[0]
    assert engine.hs_expression_check(b"x?", 0) == (None, True)


def test_pcre_that_can_match_empty_gets_allowempty(tmp_path: Path) -> None:
    match = one(tmp_path, 'pcre:"/x?/";').buffers[0].matches[0]
    assert isinstance(match, PcreMatch) and match.hs_flags & hyperscan.HS_FLAG_ALLOWEMPTY


# -- flow, flowbits, thresholds, sizes -----------------------------------------------------------


def test_flow(tmp_path: Path) -> None:
    assert one(tmp_path, "flow:established,to_server;").flow == FlowConstraint("to_server", "established")
    assert one(tmp_path, "flow:from_server, not_established, only_stream;").flow == FlowConstraint(
        "to_client", "not_established", "only_stream"
    )
    assert one(tmp_path, "flow:stateless,no_stream;").flow == FlowConstraint(None, "stateless", "no_stream")
    assert skip_reason(tmp_path, "alert tcp any any -> any any (flow:to_server,to_client; sid:1;)") == "malformed rule"


def test_flowbits(tmp_path: Path) -> None:
    rule = one(
        tmp_path,
        "flowbits:set,a; flowbits:isset,b|c; flowbits:isnotset, d ; flowbits:unset,a; "
        "flowbits:toggle,e; flowbits:noalert;",
    )
    assert rule.flowbits == (
        FlowbitOp("set", ("a",)),
        FlowbitOp("isset", ("b", "c")),
        FlowbitOp("isnotset", ("d",)),
        FlowbitOp("unset", ("a",)),
        FlowbitOp("toggle", ("e",)),
    )
    assert rule.noalert
    assert one(tmp_path, "noalert;").noalert


@pytest.mark.parametrize(
    ("text", "check"),
    [
        ("300", NumberCheck("=", 300)),
        ("<10", NumberCheck("<", 10)),
        (">1", NumberCheck(">", 1)),
        ("10<>20", NumberCheck("<>", 10, 20)),
        ("!4", NumberCheck("!=", 4)),
        (">=3", NumberCheck(">=", 3)),
    ],
)
def test_dsize(tmp_path: Path, text: str, check: NumberCheck) -> None:
    assert one(tmp_path, f"dsize:{text};").dsize == check


def test_threshold_and_detection_filter(tmp_path: Path) -> None:
    rule = one(
        tmp_path,
        "threshold: type limit, track by_src, count 1, seconds 60; detection_filter:track by_dst, count 5, seconds 10;",
    )
    assert rule.threshold == Threshold("limit", "by_src", 1, 60)
    assert rule.detection_filter == Threshold("detection_filter", "by_dst", 5, 10)


def test_icmp_and_tcp_flags(tmp_path: Path) -> None:
    rule = one(tmp_path, "itype:8; icode:0;", "alert icmp any any -> any any")
    assert rule.icmp_type == NumberCheck("=", 8) and rule.icmp_code == NumberCheck("=", 0)
    assert one(tmp_path, "flags:S,12;").tcp_flags == "S,12"


# -- what is skipped, and how it is reported -----------------------------------------------------


@pytest.mark.parametrize(
    "keyword",
    [
        "stream_size:server,>,100",
        "byte_extract:1,0,len",
        "base64_decode",
        "lua:x.lua",
        "tls.version:1.2",
        "xbits:set,a,track ip_src",
    ],
)
def test_unsupported_keyword(tmp_path: Path, keyword: str) -> None:
    name = keyword.split(":")[0]
    rule = f'alert tcp any any -> any any (content:"x"; {keyword}; sid:1;)'
    assert skip_reason(tmp_path, rule) == f"unsupported keyword: {name}"


MALFORMED = [
    ('alert tcp any any -> any any (msg:"unterminated; content:"x"; sid:11;)', "unbalanced quotes"),
    ('alert tcp any any -> any any (content:"a"b"; sid:12;)', "unbalanced quotes"),
    ('alert tcp any any -> any any (content:"x"; sid:13;', "malformed rule"),
    ('alert tcp any any -> any any content:"x"; sid:14;)', "malformed rule"),
    ('alert tcp any any -> any any (content:"|4G|"; sid:15;)', "bad hex in content"),
    ('alert tcp any any -> any any (content:"|414|"; sid:16;)', "bad hex in content"),
    ('alert tcp any any -> any any (content:"|41"; sid:17;)', "bad hex in content"),
    ('alert tcp any any -> any any (pcre:"/(unclosed/"; sid:18;)', "bad pcre"),
    ("alert tcp $NOPE any -> any any (sid:19;)", "unknown variable"),
    ("alert tcp any $NO_PORTS -> any any (sid:20;)", "unknown variable"),
    ('alert tcp any any -> any any (msg:"no sid";)', "missing sid"),
    ("alert tcp any any any (sid:22;)", "malformed rule"),
    ("alert tcp any 99999 -> any any (sid:23;)", "bad port"),
    ("alert tcp 10.0.0.300 any -> any any (sid:24;)", "bad address"),
    ("alert tcp any any -> any any (nocase; sid:25;)", "malformed rule"),
    ('alert tcp any any -> any any (content:"abcdef"; depth:3; sid:26;)', "malformed rule"),
    ("alert tcp any any -> any any (sid:27; dsize:big;)", "malformed rule"),
    ('alert tcp any any -> any any (content:""; sid:28;)', "malformed rule"),
    ("florp tcp any any -> any any (sid:29;)", "malformed rule"),
    ("alert tcp any any <- any any (sid:30;)", "malformed rule"),
    ('alert tcp any any -> any any (content:"x"; nocase foo; sid:31;)', "malformed rule"),
    ('alert tcp any any -> any any (content:"x" sid:32;)', "unbalanced quotes"),
    ("alert tcp any any -> any any (content:abc; sid:50;)", "malformed rule"),
    # Rules Suricata itself refuses, so loading them would alert where Suricata cannot.
    ("alert tcp any any -> any any (sid:33; sid:33;)", "malformed rule"),
    ('alert tcp any any -> any any (msg:"a"; msg:"b"; sid:34;)', "malformed rule"),
    ('alert tcp any any -> any any (content:"x"; nocase:1; sid:35;)', "malformed rule"),
    ('alert tcp any any -> any any (pcre:"/a/R"; sid:36;)', "malformed rule"),
    ('alert http any any -> any any (http.host; content:"Evil.com"; sid:37;)', "malformed rule"),
    ('alert tcp any any -> any any (dsize:2; content:"toolong"; sid:38;)', "malformed rule"),
    ("alert tcp any any -> any any (dsize:2; dsize:3; sid:39;)", "malformed rule"),
    ("alert tcp any any -> any any (target:src_ip; target:dest_ip; sid:40;)", "malformed rule"),
    ("alert tcp any [80,!80] -> any any (sid:41;)", "bad port"),
    ("alert tcp [1.1.1.1,!1.1.1.1] any -> any any (sid:42;)", "bad address"),
    ("alert tcp !any any -> any any (sid:49;)", "bad address"),
    ('alert http any any -> any any (http.uri; compress_whitespace; pkt_data; content:"x"; sid:43;)', "malformed rule"),
    (
        'alert http any any -> any any (http.uri; compress_whitespace; content:"a"; to_lowercase; sid:44;)',
        "malformed rule",
    ),
    ("alert tcp any any -> any any (dsize:500<>100; sid:45;)", "malformed rule"),
    ("alert tcp any any -> any any (flowbits:isset; sid:46;)", "malformed rule"),
    ('alert tcp any any -> any any (content:"abc"; fast_pattern:1,10; sid:47;)', "malformed rule"),
    ('alert tcp any any -> any any (sid:"48";)', "malformed rule"),
]


@pytest.mark.parametrize(("rule", "reason"), MALFORMED)
def test_malformed_rule_reported_with_file_line_sid(tmp_path: Path, rule: str, reason: str) -> None:
    good = 'alert tcp any any -> any any (content:"fine"; sid:1;)'
    ruleset = load(tmp_path, f"{good}\n\n{rule}\n{good.replace('sid:1', 'sid:2')}\n")
    # One bad rule never stops the others.
    assert [r.sid for r in ruleset.rules] == [1, 2]
    (skipped,) = ruleset.skipped
    assert skipped.reason == reason
    assert skipped.file == str(tmp_path / "test.rules") and skipped.line == 3
    expected_sid = None if reason == "missing sid" else int(rule.rsplit("sid:", 1)[1].split(";")[0].strip('"'))
    assert skipped.sid == expected_sid
    assert "test.rules:3: " in str(skipped)


def test_duplicate_sid_keeps_the_higher_rev_and_reports_the_other(tmp_path: Path) -> None:
    ruleset = load(
        tmp_path,
        "alert ip any any -> any any (sid:5; rev:1;)\n"
        "alert ip any any -> any any (sid:5; rev:3;)\n"
        "alert ip any any -> any any (sid:5; rev:2;)\n"
        "alert ip any any -> any any (sid:5; gid:2;)\n",
    )
    assert [(r.gid, r.sid, r.rev, r.line) for r in ruleset.rules] == [(1, 5, 3, 2), (2, 5, 0, 4)]
    assert [(s.line, s.sid, s.reason) for s in ruleset.skipped] == [(1, 5, "duplicate sid"), (3, 5, "duplicate sid")]
    assert "already loaded from" in ruleset.skipped[1].detail


def test_counts_by_reason_and_nothing_skipped_silently(tmp_path: Path) -> None:
    ruleset = load(
        tmp_path,
        "\n".join(
            [
                'alert tcp any any -> any any (content:"a"; sid:1;)',
                "#alert tcp any any -> any any (stream_size:server,>,100; sid:2;)",  # disabled: not a rule
                "alert tcp any any -> any any (stream_size:server,>,100; sid:3;)",
                "alert tcp any any -> any any (stream_size:server,>,100; sid:4;)",
                "alert tcp any any -> any any (base64_decode; sid:5;)",
                "alert tcp any any -> any any (sid:6",
            ]
        )
        + "\n",
    )
    assert len(ruleset.rules) + len(ruleset.skipped) == 5
    assert ruleset.counts_by_reason() == {
        "unsupported keyword: stream_size": 2,
        "unsupported keyword: base64_decode": 1,
        "malformed rule": 1,
    }


def test_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "windows.rules"
    path.write_bytes(
        b'\xef\xbb\xbfalert tcp any any -> any any (content:"a"; sid:1;)\r\n'
        b'alert tcp any any -> any any (content:"b"; sid:2;)\r\n'
    )
    ruleset = load_rules([path])
    assert [r.sid for r in ruleset.rules] == [1, 2] and not ruleset.skipped


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    ruleset = load_rules([tmp_path / "missing.rules"])
    assert ruleset.skipped[0].reason == "unreadable file"


# -- the fixture rule file and `rules check` -------------------------------------------------------


def test_fixture_exercises_every_supported_keyword() -> None:
    ruleset = load_rules([FIXTURES / "supported.rules"])
    assert not ruleset.skipped, [str(s) for s in ruleset.skipped]
    assert len(ruleset.rules) >= 10


def test_rules_check_text(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "mixed.rules", tmp_path / "mixed.rules")
    out = io.StringIO()
    status = rules_check([tmp_path / "mixed.rules"], as_json=False, variables=None, out=out)
    text = out.getvalue()
    assert status == 1  # a malformed rule is in there
    assert text.startswith("loaded 4 of 6 rules (66.7%), skipped 2")
    assert "unsupported keyword: stream_size" in text and "bad hex in content" in text


def test_rules_check_json_and_variables(tmp_path: Path) -> None:
    out = io.StringIO()
    status = rules_check([FIXTURES / "mixed.rules"], as_json=True, variables=["HOME_NET=[10.9.0.0/16]"], out=out)
    summary = json.loads(out.getvalue())
    # the back-reference regex loads: PCRE2 verifies it in the engine
    assert summary == {
        "loaded": 4,
        "skipped": 2,
        "reasons": {"unsupported keyword: stream_size": 1, "bad hex in content": 1},
    }
    assert status == 1


def test_rules_check_exit_status(tmp_path: Path) -> None:
    (tmp_path / "ok.rules").write_text(
        'alert tcp any any -> any any (content:"a"; sid:1;)\n'
        "alert tcp any any -> any any (stream_size:server,>,100; sid:2;)\n"
    )
    assert rules_check([tmp_path / "ok.rules"], False, None, out=io.StringIO()) == 0
    assert rules_check([tmp_path / "none.rules"], True, None, out=io.StringIO()) == 2
    assert rules_check([tmp_path / "ok.rules"], False, ["HOME_NET"], out=io.StringIO()) == 2  # --var without '='


def test_parse_variables() -> None:
    assert parse_variables(["HOME_NET=[10.0.0.0/8]", "$HTTP_PORTS=80"]) == {
        "HOME_NET": "[10.0.0.0/8]",
        "HTTP_PORTS": "80",
    }
    with pytest.raises(ValueError):
        parse_variables(["HOME_NET"])


def test_rules_cli_main(capsys: pytest.CaptureFixture[str]) -> None:
    from ngfw.compiler.rules_cli import main

    assert main([str(FIXTURES / "mixed.rules"), "--json", "--var", "HOME_NET=[10.0.0.0/8]"]) == 1
    assert json.loads(capsys.readouterr().out)["loaded"] == 4
    assert main([str(FIXTURES / "supported.rules"), "-v"]) == 0
    assert capsys.readouterr().out.startswith("loaded 18 of 18 rules (100.0%)")
    with pytest.raises(SystemExit):
        main([str(FIXTURES / "mixed.rules"), "--var", "HOME_NET"])


@pytest.mark.parametrize("keyword", sorted(STICKY_BUFFERS))
def test_every_sticky_buffer_keyword_loads(tmp_path: Path, keyword: str) -> None:
    header = "alert arp any any -> any any" if keyword == "ether.hdr" else "alert ip any any -> any any"
    rule = one(tmp_path, f'{keyword}; content:"x";', header)
    assert [b.buffer for b in rule.buffers] == [STICKY_BUFFERS[keyword]]


@pytest.mark.parametrize(("flag", "buffer"), sorted(PCRE_BUFFER_FLAGS.items()))
def test_every_pcre_buffer_flag(tmp_path: Path, flag: str, buffer: str) -> None:
    rule = one(tmp_path, f'pcre:"/x/{flag}";', "alert http any any -> any any")
    assert [b.buffer for b in rule.buffers] == [buffer]


def test_byte_test_and_byte_jump_compile(tmp_path: Path) -> None:
    from ngfw.compiler.suricata.model import ByteJump, ByteTest

    rule = one(
        tmp_path,
        'content:"A"; byte_test:2,!>=,0x10,1,relative,little,bitmask 0x0ff0; '
        'byte_jump:4,0,relative,string,hex,multiplier 2,align,post_offset -3; content:"B"; distance:0;',
    )
    test, jump = rule.buffers[0].matches[1:3]
    assert test == ByteTest(2, ">=", 16, 1, relative=True, little=True, bitmask=0x0FF0, negated=True)
    assert jump == ByteJump(4, 0, relative=True, string="hex", multiplier=2, align=True, post_offset=-3)


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        ("byte_test:1,~,2,0", "malformed rule"),
        ("byte_test:9,>,2,0", "malformed rule"),
        ("byte_test:1,>,2", "malformed rule"),
        ("byte_test:1,>,2,0,sideways", "malformed rule"),
        ("byte_test:1,>,len,0", "unsupported keyword: byte_extract variables"),
        ("byte_test:4,=,1,0,dce", "unsupported keyword: byte_test dce"),
    ],
)
def test_bad_byte_options_name_their_problem(tmp_path: Path, option: str, reason: str) -> None:
    assert skip_reason(tmp_path, f'alert tcp any any -> any any (content:"x"; {option}; sid:1;)') == reason
