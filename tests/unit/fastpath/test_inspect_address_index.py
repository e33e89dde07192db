"""Rules without a fast pattern are found by address (Suricata's IP-only engine, inspect_tables.pxi): a rule
on an address list fires for the listed addresses only, on its own side, both ways for `<>`, with negated
lists, over IPv6, and with HOME_NET set to the protected workloads only (the perimeter configuration)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ngfw.dataplane.threats import load_signature_sets
from tests.support.fastpath import IP, SRV_MAC, TCP, WEB1_IP, WEB1_MAC, WEB2_IP, WEB2_MAC, Ether, IPv6
from tests.support.inspection import InspectWire, sids, write_policy

CLIENT_HOME_NET = "[10.77.0.11,10.77.0.12,fd77::11,fd77::12]"

RULES = r"""
alert ip $HOME_NET any -> [198.51.100.7,203.0.113.0/28,2001:db8::5] any (msg:"to a listed host"; sid:2001;)
alert ip [198.51.100.9,203.0.113.64/28,2001:db8::9] any -> $HOME_NET any (msg:"from a listed host"; sid:2002;)
alert ip $HOME_NET any -> ![198.51.100.0/24,203.0.113.0/28,2001:db8::/32] any (msg:"outside the list"; sid:2003;)
alert ip [198.51.100.33] any <> $HOME_NET any (msg:"either way"; sid:2004;)
alert tcp $HOME_NET any -> [198.51.100.7] 80 (msg:"a SYN to a listed host"; flags:S; sid:2005;)
"""


def wire(tmp_path: Path, rules: str = RULES, home_net: str = CLIENT_HOME_NET) -> InspectWire:
    (tmp_path / "lists.rules").write_text(textwrap.dedent(rules).strip() + "\n")
    signatures = load_signature_sets([("default", str(tmp_path / "lists.rules"))], variables={"HOME_NET": home_net})
    return InspectWire(write_policy(tmp_path), signatures)


def syn_to(w: InspectWire, dst: str, sport: int, src: str = WEB1_IP, src_mac: str = WEB1_MAC) -> list[int]:
    """The sids that alert on a SYN from a workload to `dst`:80 (forwarded: alerts never block)."""
    layer = IPv6(src=src, dst=dst) if ":" in dst else IP(src=src, dst=dst)
    out, _ = w.from_vm(Ether(src=src_mac, dst=SRV_MAC) / layer / TCP(sport=sport, dport=80, flags="S", seq=100))
    assert len(out) == 1
    return sorted(sids(w.alerts()))


def syn_ack_from(w: InspectWire, src: str, sport: int) -> list[int]:
    """The sids that alert on the answer of `src`:80 to web-01's SYN from `sport`."""
    layer = IPv6(src=src, dst="fd77::11") if ":" in src else IP(src=src, dst=WEB1_IP)
    frame = Ether(src=SRV_MAC, dst=WEB1_MAC) / layer / TCP(sport=80, dport=sport, flags="SA", seq=500, ack=101)
    out, _ = w.from_up(frame)
    assert len(out) == 1
    return sorted(sids(w.alerts()))


def test_a_rule_on_a_list_fires_for_listed_destinations_only(tmp_path: Path) -> None:
    w = wire(tmp_path)
    assert syn_to(w, "198.51.100.7", 40001) == [2001, 2005]
    assert syn_to(w, "203.0.113.5", 40002) == [2001]  # inside a listed /28
    assert syn_to(w, "198.51.100.8", 40003) == []  # a neighbour of a listed host: in the negated list only
    assert syn_to(w, "10.77.0.100", 40004) == [2003]  # the server is $EXTERNAL_NET here
    assert syn_to(w, "203.0.113.20", 40005) == [2003]  # just past the /28
    assert syn_to(w, "198.51.100.7", 40006, WEB2_IP, WEB2_MAC) == [2001, 2005]  # web-02 is HOME_NET too


def test_the_source_side_of_a_list_rule_is_checked_on_the_answer(tmp_path: Path) -> None:
    w = wire(tmp_path)
    assert syn_to(w, "203.0.113.70", 40011) == [2003]
    assert syn_ack_from(w, "203.0.113.70", 40011) == [2002]  # the answer comes from a listed /28
    assert syn_to(w, "198.51.100.7", 40012) == [2001, 2005]
    assert syn_ack_from(w, "198.51.100.7", 40012) == []  # listed as a destination, not as a source


def test_a_bidirectional_rule_fires_both_ways(tmp_path: Path) -> None:
    w = wire(tmp_path)
    assert syn_to(w, "198.51.100.33", 40021) == [2004]  # written list -> HOME_NET, seen HOME_NET -> list
    assert syn_ack_from(w, "198.51.100.33", 40021) == [2004]


def test_lists_of_ipv6_addresses(tmp_path: Path) -> None:
    w = wire(tmp_path)
    assert syn_to(w, "2001:db8::5", 40031, "fd77::11") == [2001]
    assert syn_to(w, "2001:db8:1::1", 40032, "fd77::11") == []  # in the negated /32
    assert syn_to(w, "2001:db9::1", 40033, "fd77::11") == [2003]
    assert syn_to(w, "2001:db8::9", 40034, "fd77::11") == []
    assert syn_ack_from(w, "2001:db8::9", 40034) == [2002]


def test_a_home_net_covering_both_sides_changes_what_fires(tmp_path: Path) -> None:
    w = wire(tmp_path, home_net="[10.77.0.0/24,fd77::/64]")
    # the server is HOME_NET now: a rule from a listed host to HOME_NET is not about web-01 -> server
    assert syn_to(w, "10.77.0.100", 40041) == [2003]
    assert syn_to(w, "198.51.100.7", 40042) == [2001, 2005]


def test_thousands_of_list_rules_on_the_client_side(tmp_path: Path) -> None:
    """ET Open's reputation rules, in shape: HOME_NET -> one list each. Only the rules listing the
    destination fire, and the index says what it holds and what it costs."""
    lines = []
    for i in range(2000):
        hosts = ",".join(f"100.{64 + i // 250}.{i % 250}.{k}" for k in range(1, 11))
        lines.append(f'alert ip $HOME_NET any -> [{hosts}] any (msg:"list {i}"; sid:{10000 + i};)')
    lines.append('alert ip $HOME_NET any -> [100.64.0.5,100.71.249.10] any (msg:"two lists"; sid:9000;)')
    w = wire(tmp_path, rules="\n".join(lines))
    stats = w.signatures.inspect.address_index
    assert stats["header_only_rules"] == 2001
    assert 0 < stats["bytes"] < 4 << 20
    assert stats["build_seconds"] >= 0
    assert "address index 2001 rules, " in w.signatures.summary()  # the load's log line
    assert syn_to(w, "100.64.0.5", 40051) == [9000, 10000]
    assert syn_to(w, "100.71.249.10", 40052) == [9000, 11999]
    assert syn_to(w, "100.66.17.3", 40053) == [10000 + 2 * 250 + 17]
    assert syn_to(w, "100.64.0.11", 40054) == []
    assert syn_to(w, "10.77.0.100", 40055) == []


def test_past_its_memory_bound_the_index_widens_sides_and_alerts_stay_the_same(tmp_path: Path, monkeypatch) -> None:
    """Rules whose lists overlap in many ways make many distinct rule sets; past the bound the sides with the
    most ranges are indexed as `any` and their addresses are checked one by one, as before the index."""
    from tests.support.fastpath import fp

    monkeypatch.setattr(fp, "ADDRESS_INDEX_SETS_MAX_BYTES", 2048)
    lines = [
        f'alert ip $HOME_NET any -> [100.64.{i}.0/24,100.65.{i // 2}.0/24] any (msg:"list {i}"; sid:{10000 + i};)'
        for i in range(200)
    ]
    w = wire(tmp_path, rules="\n".join(lines))
    stats = w.signatures.inspect.address_index
    assert stats["widened_sides"] > 0
    assert stats["header_only_sets"] * 4 * 8 <= 2048  # 200 rules: 4 words a set
    assert syn_to(w, "100.64.5.9", 40061) == [10005]
    assert syn_to(w, "100.65.3.1", 40062) == [10006, 10007]
    assert syn_to(w, "100.66.0.1", 40063) == []
    assert syn_to(w, "10.77.0.100", 40064) == []
