"""`arp` rules (Suricata 8.0.5 and later): every Ethernet/IPv4 ARP frame, `ether.hdr` the buffer they inspect;
what an ARP frame does not have (a flow, a payload, an IP header) is refused with the reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from ngfw.compiler.suricata import RuleSet, load_rules


def load(tmp_path: Path, text: str) -> RuleSet:
    path = tmp_path / "arp.rules"
    path.write_text(text + "\n", encoding="utf-8")
    return load_rules([path])


def test_an_arp_rule_matches_every_arp_frame(tmp_path: Path) -> None:
    ruleset = load(tmp_path, 'alert arp any any -> any any (msg:"any ARP"; sid:1;)')
    assert not ruleset.skipped
    (rule,) = ruleset.rules
    assert (rule.protocol, rule.transport, rule.app_proto, rule.buffers) == ("arp", "arp", None, ())


def test_ether_hdr_content_in_an_arp_rule(tmp_path: Path) -> None:
    ruleset = load(
        tmp_path,
        'drop arp any any -> any any (msg:"gratuitous from a rogue MAC"; ether.hdr; '
        'content:"|de ad be ef 00 01|"; offset:6; depth:6; sid:2;)',
    )
    assert not ruleset.skipped, [str(s) for s in ruleset.skipped]
    (rule,) = ruleset.rules
    assert rule.action == "drop"
    (group,) = rule.buffers
    assert group.buffer == "ether.hdr"
    assert (group.contents[0].pattern, group.contents[0].offset, group.contents[0].depth) == (
        bytes.fromhex("deadbeef0001"),
        6,
        6,
    )


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ('content:"x";', "unsupported keyword: payload match in an arp rule"),
        ('pkt_data; content:"x";', "unsupported keyword: payload match in an arp rule"),
        ("flow:to_server;", "unsupported keyword: flow in an arp rule"),
        ("flowbits:set,x;", "unsupported keyword: flowbits in an arp rule"),
        ("dsize:28;", "unsupported keyword: dsize in an arp rule"),
        ("threshold:type limit,track by_src,count 1,seconds 60;", "unsupported keyword: threshold in an arp rule"),
        ("ip_proto:6;", "unsupported keyword: ip_proto in an arp rule"),
        ('http.uri; content:"x";', "conflicting protocol"),
        ('dns.query; content:"x";', "conflicting protocol"),
    ],
)
def test_what_an_arp_frame_does_not_have_is_refused(tmp_path: Path, options: str, reason: str) -> None:
    ruleset = load(tmp_path, f"alert arp any any -> any any ({options} sid:3;)")
    assert not ruleset.rules
    (skipped,) = ruleset.skipped
    assert skipped.reason == reason
    assert skipped.unsupported == reason.startswith("unsupported")


@pytest.mark.parametrize("header", ["alert arp 10.0.0.1 any -> any any", "alert arp any any -> any 80"])
def test_arp_addresses_and_ports_can_only_be_any(tmp_path: Path, header: str) -> None:
    ruleset = load(tmp_path, f"{header} (sid:4;)")
    (skipped,) = ruleset.skipped
    assert skipped.reason == "unsupported protocol: arp with addresses or ports"
    assert "no IP header" in skipped.detail


def test_ether_hdr_outside_an_arp_rule_is_refused(tmp_path: Path) -> None:
    ruleset = load(tmp_path, 'alert tcp any any -> any any (ether.hdr; content:"|08 00|"; offset:12; sid:5;)')
    (skipped,) = ruleset.skipped
    assert skipped.reason == "unsupported keyword: ether.hdr outside arp rules"
