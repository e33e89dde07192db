"""`arp` rules on the wire (Suricata 8's protocol): ARP frames make no flow, so the threat profiles look at them
before they are forwarded; an alert names the MACs and the ARP fields, and a `drop arp` rule stops a spoofed
announcement. Without `arp` rules ARP passes as before."""

from __future__ import annotations

from pathlib import Path

from scapy.layers.l2 import ARP, Ether

from ngfw.dataplane.eve import eve_record
from ngfw.dataplane.eve_schema import problems
from tests.support.fastpath import SRV_IP, WEB1_IP, WEB1_MAC, WEB2_IP, WEB2_MAC
from tests.support.inspection import InspectWire, rule_sets, wire, write_policy

ARP_RULES = r"""
alert arp any any -> any any (msg:"ARP seen"; sid:7001; rev:1;)
drop arp any any -> any any (msg:"quarantined web-02"; ether.hdr; content:"|02 00 00 00 01 02|"; offset:6; depth:6; sid:7002; rev:1; classtype:bad-unknown;)
alert tcp any any -> any any (msg:"unrelated"; content:"xyz"; sid:7003; rev:1;)
"""


def arp_frame(src_mac: str, sender_ip: str, target_ip: str, op: int = 1) -> bytes:
    dst = "ff:ff:ff:ff:ff:ff" if op == 1 else WEB1_MAC
    return bytes(Ether(src=src_mac, dst=dst) / ARP(op=op, hwsrc=src_mac, psrc=sender_ip, pdst=target_ip))


def test_an_arp_rule_alerts_on_an_arp_frame_without_a_flow(tmp_path: Path) -> None:
    policy = write_policy(tmp_path)
    w = InspectWire(policy, rule_sets(tmp_path, default=ARP_RULES))
    out, _ = w.from_vm(arp_frame(WEB1_MAC, WEB1_IP, SRV_IP))
    assert len(out) == 1  # forwarded: the alert rule does not block
    (alert,) = w.alerts()
    assert alert["signature"].sid == 7001 and not alert["blocked"]
    assert alert["flow_id"] is None
    assert alert["arp"] == {
        "hw_type": "ethernet",
        "proto_type": "ipv4",
        "opcode": "request",
        "src_mac": WEB1_MAC,
        "src_ip": WEB1_IP,
        "dest_mac": "00:00:00:00:00:00",
        "dest_ip": SRV_IP,
    }
    assert alert["ether"] == {"src_mac": WEB1_MAC, "dest_mac": "ff:ff:ff:ff:ff:ff"}
    record = eve_record(alert, policy)
    record["host"] = "test"
    assert "flow_id" not in record and "src_ip" not in record
    assert (record["vsys"], record["src_vm"]) == ("tenant-a", "web-01")
    assert record["arp"]["opcode"] == "request" and record["alert"]["signature_id"] == 7001
    assert problems([record]) == []  # docs/eve-schema.json's arp_alert
    # counted with the other alerts (ngfw_alerts_total)
    assert sum(w.engine.inspect_stats()["alerts"].values()) == 1


def test_a_drop_arp_rule_stops_the_frame(tmp_path: Path) -> None:
    w = wire(tmp_path, rules=ARP_RULES)
    out, _ = w.from_vm(arp_frame(WEB2_MAC, WEB2_IP, SRV_IP, op=2))
    assert out == []  # web-02's reply does not reach the wire
    assert w.drops() == {"threat": 1}
    alerts = sorted(w.alerts(), key=lambda a: a["signature"].sid)
    assert [(a["signature"].sid, a["blocked"]) for a in alerts] == [(7001, False), (7002, True)]
    assert alerts[1]["arp"]["opcode"] == "reply" and alerts[1]["arp"]["src_mac"] == WEB2_MAC
    # web-01's own request still passes (alerted, not dropped)
    out, _ = w.from_vm(arp_frame(WEB1_MAC, WEB1_IP, SRV_IP))
    assert len(out) == 1


def test_frames_suricata_does_not_read_as_arp_raise_nothing(tmp_path: Path) -> None:
    w = wire(tmp_path, rules=ARP_RULES)
    bad_opcode = bytes(Ether(src=WEB2_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=9, hwsrc=WEB2_MAC, psrc=WEB2_IP))
    out, _ = w.from_vm(bad_opcode)
    assert len(out) == 1 and w.alerts() == []


def test_without_arp_rules_arp_passes_untouched(tmp_path: Path) -> None:
    w = wire(tmp_path, rules='drop tcp any any -> any any (content:"xyz"; sid:7010;)')
    out, _ = w.from_vm(arp_frame(WEB2_MAC, WEB2_IP, SRV_IP, op=2))
    assert len(out) == 1 and w.alerts() == [] and w.drops() == {}


def test_an_audit_profile_alerts_instead_of_dropping(tmp_path: Path) -> None:
    profile = """
    ---
    apiVersion: ngfw/v1
    kind: ThreatProfile
    metadata: {name: audit, vsys: tenant-a}
    spec: {action: alert}
    """
    w = wire(tmp_path, rules=ARP_RULES, inspect="audit", profiles=profile)
    out, _ = w.from_vm(arp_frame(WEB2_MAC, WEB2_IP, SRV_IP, op=2))
    assert len(out) == 1
    assert sorted((a["signature"].sid, a["blocked"]) for a in w.alerts()) == [(7001, False), (7002, False)]
