"""Verdicts of the compiled fastpath on frames a user would send (memory ports, no root)."""

from __future__ import annotations

from pathlib import Path

from ngfw.compiler.policy import load_policy
from tests.support.fastpath import (
    ICMP,
    IP,
    SRV_IP,
    SRV_MAC,
    TCP,
    UDP,
    WEB1_IP,
    WEB1_MAC,
    WEB2_IP,
    WEB2_MAC,
    Ether,
    Wire,
    lab_policy,
    srv_to_web1,
    tcp,
    web1_to_srv,
)
from tests.support.policies import lab_with_rules


def test_allowed_tcp_session_passes_both_ways() -> None:
    w = Wire(lab_policy())
    up, back = w.from_vm(web1_to_srv(tcp(40000, 80, "S", seq=100)))
    assert len(up) == 1 and back == []
    down, _ = w.from_up(srv_to_web1(tcp(80, 40000, "SA", seq=7, ack=101)))
    assert len(down) == 1
    up, _ = w.from_vm(web1_to_srv(tcp(40000, 80, "A", seq=101, ack=8)))
    assert len(up) == 1
    (flow,) = w.engine.flows()
    assert flow["tcp_state"] == "established"
    assert (flow["src_ip"], flow["dest_port"], flow["action"]) == (WEB1_IP, 80, "allow")
    assert flow["pkts_toserver"] == 2 and flow["pkts_toclient"] == 1


def test_forwarded_frame_is_unchanged() -> None:
    w = Wire(lab_policy())
    frame = bytes(web1_to_srv(tcp(40000, 80, "S", payload=b"x" * 10)))
    up, _ = w.from_vm(frame)
    assert up == [frame]


def test_denied_flow_gets_nothing_and_is_counted() -> None:
    w = Wire(lab_policy())
    for _ in range(3):  # retransmitted SYNs hit the cached decision
        up, back = w.from_vm(web1_to_srv(tcp(40001, 8080, "S")))
        assert up == [] and back == []
    assert w.drops() == {"policy_deny": 3}
    assert w.engine.stats()["flows_created"] == 1


def test_rejected_tcp_gets_a_valid_rst() -> None:
    w = Wire(lab_policy())
    up, back = w.from_vm(web1_to_srv(tcp(40002, 8443, "S", seq=5000)))
    assert up == []
    (rst,) = [Ether(f) for f in back]
    assert (rst.src, rst.dst) == (SRV_MAC, WEB1_MAC)
    assert (rst[IP].src, rst[IP].dst) == (SRV_IP, WEB1_IP)
    assert (rst[TCP].sport, rst[TCP].dport) == (8443, 40002)
    assert rst[TCP].flags == "RA" and rst[TCP].ack == 5001
    # checksums as a receiving stack verifies them
    recomputed = Ether(bytes(rst.__class__(bytes(rst))))
    ip_sum, tcp_sum = recomputed[IP].chksum, recomputed[TCP].chksum
    del recomputed[IP].chksum, recomputed[TCP].chksum
    fresh = Ether(bytes(recomputed))
    assert (fresh[IP].chksum, fresh[TCP].chksum) == (ip_sum, tcp_sum)
    assert w.drops() == {"policy_reject": 1}


def test_rejected_udp_gets_icmp_admin_prohibited(tmp_path: Path) -> None:
    policy = lab_with_rules(
        tmp_path,
        """
        - {name: no-udp, from: [any], to: [any], services: [udp/5000-5100], action: reject, log: true}
    """,
    )
    w = Wire(policy)
    sent = web1_to_srv(UDP(sport=1234, dport=5050) / b"hello")
    _, back = w.from_vm(sent)
    (icmp,) = [Ether(f) for f in back]
    assert icmp[ICMP].type == 3 and icmp[ICMP].code == 13
    assert icmp[IP].dst == WEB1_IP
    assert bytes(icmp[ICMP].payload)[:20] == bytes(sent[IP])[:20]  # quotes the offending header


def test_spoofed_source_ip_is_dropped() -> None:
    w = Wire(lab_policy())
    up, _ = w.from_vm(web1_to_srv(tcp(40003, 80, "S"), src_ip="10.77.0.99"))
    assert up == []
    assert w.drops() == {"spoofed_ip": 1}


def test_workload_ip_from_another_mac_is_dropped() -> None:
    w = Wire(lab_policy())
    up, _ = w.from_vm(web1_to_srv(tcp(40004, 80, "S"), src_mac="02:00:00:00:09:09"))
    assert up == []
    assert w.drops() == {"spoofed_mac": 1}


def test_spoofed_arp_is_dropped_and_honest_arp_passes() -> None:
    from scapy.layers.l2 import ARP

    w = Wire(lab_policy())
    honest = Ether(src=WEB1_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=WEB1_MAC, psrc=WEB1_IP, pdst=SRV_IP)
    lying = Ether(src=WEB1_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=WEB1_MAC, psrc=WEB2_IP, pdst=SRV_IP)
    assert len(w.from_vm(honest)[0]) == 1
    assert w.from_vm(lying)[0] == []
    assert w.drops() == {"spoofed_ip": 1}


def test_tcp_without_syn_does_not_open_a_flow() -> None:
    w = Wire(lab_policy())
    up, _ = w.from_vm(web1_to_srv(tcp(40005, 80, "A")))
    assert up == []
    assert w.drops() == {"tcp_not_syn": 1}
    assert w.engine.flows() == []


def test_server_may_open_ssh_to_web_but_not_http() -> None:
    w = Wire(lab_policy())
    assert len(w.from_up(srv_to_web1(tcp(50000, 22, "S")))[0]) == 1
    assert w.from_up(srv_to_web1(tcp(50001, 80, "S")))[0] == []


def test_no_policy_drops_everything() -> None:
    w = Wire()
    assert w.from_vm(web1_to_srv(tcp(40006, 80, "S")))[0] == []
    assert w.drops() == {"no_policy": 1}


def test_traffic_between_non_workloads_is_dropped() -> None:
    w = Wire(lab_policy())
    frame = Ether(src="02:00:00:00:07:01", dst=SRV_MAC) / IP(src="10.77.0.50", dst=SRV_IP) / UDP(dport=53)
    assert w.from_vm(frame)[0] == []
    assert w.drops() == {"no_workload": 1}


def test_rule_hits_are_counted_per_rule() -> None:
    policy = lab_policy()
    w = Wire(policy)
    w.from_vm(web1_to_srv(tcp(40007, 80, "S")))
    w.from_vm(web1_to_srv(ICMP(id=1)))
    hits = dict(zip([r.name for r in policy.rules], w.engine.tables.rule_hits()))
    assert hits["web-to-server-http"] == 1 and hits["ping"] == 1 and hits["default-deny"] == 0


# ---------------------------------------------------------------- tenants

TWO_TENANTS = """
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-a}
---
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-b}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: web-01, vsys: tenant-a}
spec: {interfaces: [{mac: "02:00:00:00:01:01", ips: ["10.77.0.11"]}]}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: db-01, vsys: tenant-b}
spec: {interfaces: [{mac: "02:00:00:00:01:02", ips: ["10.77.0.12"]}]}
---
apiVersion: ngfw/v1
kind: SecurityPolicy
metadata: {name: a, vsys: tenant-a}
spec:
  rules:
    - {name: a-egress, from: [vm:web-01], to: [any], services: [tcp/5432, tcp/6000], action: allow, log: true}
---
apiVersion: ngfw/v1
kind: SecurityPolicy
metadata: {name: b, vsys: tenant-b}
spec:
  rules:
    - {name: b-ingress, from: [any], to: [vm:db-01], services: [tcp/5432], action: allow, log: true}
"""


def test_cross_tenant_flow_needs_both_vsys(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(TWO_TENANTS)
    w = Wire(load_policy(tmp_path / "p.yaml"))
    to_db = Ether(src=WEB1_MAC, dst=WEB2_MAC) / IP(src=WEB1_IP, dst=WEB2_IP)
    # allowed by tenant-a (egress) and tenant-b (ingress)
    assert len(w.from_vm(to_db / TCP(sport=1, dport=5432, flags="S"))[0]) == 1
    # allowed by tenant-a only: tenant-b's default deny refuses it
    assert w.from_vm(to_db / TCP(sport=2, dport=6000, flags="S"))[0] == []
    flows = {f["dest_port"]: f for f in w.engine.flows()}
    assert flows[5432]["action"] == "allow"
    assert flows[6000]["action"] == "deny" and flows[6000]["vsys"] == 1 and flows[6000]["rule"] == -1


# ---------------------------------------------------------------- reload


def test_reload_keeps_established_sessions_it_still_allows(tmp_path: Path) -> None:
    w = Wire(lab_policy(version=1))
    w.from_vm(web1_to_srv(tcp(40010, 80, "S")))
    w.from_up(srv_to_web1(tcp(80, 40010, "SA", ack=1001)))
    w.load(
        lab_with_rules(tmp_path, "- {name: http, from: [any], to: [any], services: [tcp/80], action: allow}", version=2)
    )
    assert len(w.from_vm(web1_to_srv(tcp(40010, 80, "A", seq=1001)))[0]) == 1
    assert w.engine.stats()["flows_cut"] == 0


def test_reload_cuts_sessions_the_new_policy_denies(tmp_path: Path) -> None:
    w = Wire(lab_policy(version=1))
    w.from_vm(web1_to_srv(tcp(40011, 80, "S")))
    w.from_up(srv_to_web1(tcp(80, 40011, "SA", ack=1001)))
    w.load(lab_with_rules(tmp_path, "- {name: nothing, from: [any], to: [any], action: deny}", version=2))
    assert w.from_vm(web1_to_srv(tcp(40011, 80, "A", seq=1001)))[0] == []
    assert w.from_up(srv_to_web1(tcp(80, 40011, "A", ack=1001)))[0] == []
    stats = w.engine.stats()
    assert stats["flows_cut"] == 1
    assert stats["drops"]["cut_by_policy"] == 2


def test_reload_that_rejects_sends_rst_to_the_sender(tmp_path: Path) -> None:
    w = Wire(lab_policy(version=1))
    w.from_vm(web1_to_srv(tcp(40012, 80, "S")))
    w.load(lab_with_rules(tmp_path, "- {name: go-away, from: [any], to: [any], action: reject}", version=2))
    _, back = w.from_vm(web1_to_srv(tcp(40012, 80, "A", seq=1001, ack=55)))
    (rst,) = [Ether(f) for f in back]
    assert rst[TCP].flags == "R" and rst[TCP].seq == 55
