"""Rule text that is not ASCII where Suricata's syntax has numbers and addresses: the rule is skipped with
its reason, the rest of the file loads (fuzzing found `ngfw rules check` dying with a traceback on a
rule file with one undecodable byte or a NUL in an address, and on '²', which str.isdigit() accepts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ngfw.compiler.suricata import load_rules

GOOD = 'alert tcp any any -> any 80 (msg:"fine"; content:"x"; sid:1;)\n'


@pytest.mark.parametrize(
    "rule, reason",
    [
        (b'alert ip an\x84 any -> any any (msg:"x"; sid:2;)', "bad address"),  # not UTF-8
        (b'alert ip 10.0.0.\xc3\xa9 any -> any any (msg:"x"; sid:2;)', "bad address"),
        (b'alert ip [1.2.3.4\x00,5.6.7.8] any -> any any (msg:"x"; sid:2;)', "bad address"),  # NUL
        ('alert tcp any 8\u00b2 -> any any (msg:"x"; sid:2;)'.encode(), "bad port"),  # superscript two
        ('alert tcp any \u0668\u0660 -> any any (msg:"x"; sid:2;)'.encode(), "bad port"),  # Arabic-Indic 80
        ('alert tcp any any -> any any (msg:"x"; content:"a"; isdataat:\u00b2; sid:2;)'.encode(), "malformed rule"),
        (
            'alert tcp any any -> any any (msg:"x"; content:"abc"; fast_pattern:\u00b9,1; sid:2;)'.encode(),
            "malformed rule",
        ),
        (
            'alert tcp any any -> any any (msg:"x"; content:"a"; threshold:type limit,track by_src,count \u00b2,'
            "seconds 60; sid:2;)".encode(),
            "malformed rule",
        ),
    ],
)
def test_a_rule_with_non_ascii_numbers_or_addresses_is_skipped_with_its_reason(
    tmp_path: Path, rule: bytes, reason: str
) -> None:
    path = tmp_path / "mixed.rules"
    path.write_bytes(GOOD.encode() + rule + b"\n")
    ruleset = load_rules([path])
    assert [r.sid for r in ruleset.rules] == [1]
    [skipped] = ruleset.skipped
    assert (skipped.line, skipped.reason) == (2, reason)


def test_a_regex_pcre2_refuses_skips_its_rule_not_the_whole_set(tmp_path: Path) -> None:
    """A regex with NULs passed the compiler's check and then failed the fastpath's build of the whole set
    with an uncaught EngineSkip (`ngfw replay --rules`, a dataplane reload): now PCRE2 judges it per rule."""
    from ngfw.dataplane.threats import load_signature_sets

    path = tmp_path / "pcre.rules"
    path.write_bytes(
        GOOD.encode() + b'alert http any any -> any any (msg:"x"; http.uri; content:"/x"; '
        b'pcre:"/\\&\x00\x00\x00/\\1/"; sid:2;)\n'
    )
    sets = load_signature_sets([("default", str(path))])
    assert sets.loaded == 1
    assert [(sid, reason) for _, _, _, sid, reason, _ in sets.skipped] == [(2, "bad pcre")]


@pytest.mark.parametrize(
    "options, detail",
    [
        ("sid:4294967296;", "sid:4294967296 is above 4294967295"),
        ("sid:3; gid:4294967296;", "gid:4294967296 is above 4294967295"),
        ("sid:3; rev:99999999999;", "rev:99999999999 is above 4294967295"),
        ("sid:3; priority:256;", "priority:256 is above 255"),
        ('sid:3; content:"a"; offset:2147483648;', "offset:2147483648 is above 2147483647"),
        ("sid:3; dsize:<-1;", "dsize:<-1"),
        ("sid:3; dsize:4294967296;", "dsize:4294967296"),
        ('sid:3; content:"a"; isdataat:2147483648,relative;', "isdataat:2147483648 is above 2147483647"),
        ("sid:3; byte_test:1,>,1,99999999999;", "byte_test:99999999999 is above 2147483647"),
        ("sid:3; byte_jump:1,0,post_offset 99999999999;", "byte_jump:99999999999 is above 2147483647"),
        (
            'sid:3; content:"a"; threshold:type limit,track by_src,count 4294967296,seconds 1;',
            "threshold:4294967296 is above 4294967295",
        ),
    ],
)
def test_a_number_past_what_the_fastpath_keeps_is_a_malformed_rule(tmp_path: Path, options: str, detail: str) -> None:
    """Fuzzing found a sid of 2^32 passing the compiler and failing the fastpath's table build of the whole
    set (an OverflowError); every number is now checked against the width the fastpath stores it in."""
    from ngfw.dataplane.threats import load_signature_sets

    path = tmp_path / "big.rules"
    path.write_text(GOOD + f'alert tcp any any -> any any (msg:"x"; {options})\n')
    [skipped] = load_rules([path]).skipped
    assert (skipped.reason, skipped.detail) == ("malformed rule", detail)
    assert load_signature_sets([("default", str(path))]).loaded == 1
