"""App-ID in the fastpath: identification from payload, and rules that name applications."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fastpath import IP, SRV_IP, TCP, UDP, WEB1_IP, Ether, Wire, srv_to_web1, tcp, web1_to_srv
from tests.support.policies import lab_with_rules

HTTP_GET = b"GET /index.html HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/8.0\r\n\r\n"
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"


def open_tcp(w: Wire, sport: int, dport: int) -> None:
    assert len(w.from_vm(web1_to_srv(tcp(sport, dport, "S", seq=100)))[0]) == 1
    assert len(w.from_up(srv_to_web1(tcp(dport, sport, "SA", seq=500, ack=101)))[0]) == 1
    assert len(w.from_vm(web1_to_srv(tcp(sport, dport, "A", seq=101, ack=501)))[0]) == 1


APP_RULES = """
- {name: allow-http, from: [group:web], to: [any], applications: [http], services: [application-default], action: allow, log: true}
- {name: deny-ssh, from: [any], to: [any], applications: [ssh], action: deny, log: true}
- {name: reject-facebook, from: [any], to: [any], applications: [facebook], action: reject, log: true}
- {name: allow-dns, from: [any], to: [any], applications: [dns], action: allow, log: true}
- {name: default-deny, from: [any], to: [any], action: deny, log: true}
"""


@pytest.fixture
def app_wire(tmp_path: Path) -> Wire:
    return Wire(lab_with_rules(tmp_path, APP_RULES))


def test_http_is_identified_with_its_host(app_wire: Wire) -> None:
    open_tcp(app_wire, 40000, 80)
    up, _ = app_wire.from_vm(web1_to_srv(tcp(40000, 80, "PA", seq=101, ack=501, payload=HTTP_GET)))
    assert len(up) == 1
    (flow,) = app_wire.engine.flows()
    assert (flow["app_proto"], flow["app_host"], flow["app_pkts"]) == ("http", "www.example.org", 1)
    assert flow["action"] == "allow" and flow["rule"] == 0


def test_ssh_is_cut_once_identified_on_any_port(app_wire: Wire) -> None:
    open_tcp(app_wire, 40001, 2222)  # provisionally allowed: a rule naming applications may apply
    down, _ = app_wire.from_up(srv_to_web1(tcp(2222, 40001, "PA", seq=501, ack=101, payload=SSH_BANNER)))
    assert down == []  # the banner never reaches the client
    assert app_wire.from_vm(web1_to_srv(tcp(40001, 2222, "A", seq=101, ack=501)))[0] == []
    (flow,) = app_wire.engine.flows()
    assert (flow["app_proto"], flow["action"], flow["rule"]) == ("ssh", "deny", 1)
    assert app_wire.engine.stats()["app_cuts"] == 1


def test_http_on_a_non_default_port_is_not_allowed_by_application_default(app_wire: Wire) -> None:
    open_tcp(app_wire, 40002, 9999)
    assert app_wire.from_vm(web1_to_srv(tcp(40002, 9999, "PA", seq=101, ack=501, payload=HTTP_GET)))[0] == []
    (flow,) = app_wire.engine.flows()
    assert (flow["app_proto"], flow["action"], flow["rule"]) == ("http", "deny", 4)


def test_rejected_app_resets_both_sides(app_wire: Wire) -> None:
    from scapy.layers.tls.all import TLS, TLSClientHello
    from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName

    hello = bytes(
        TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=b"www.facebook.com")])])])
    )
    open_tcp(app_wire, 40003, 443)
    up, back = app_wire.from_vm(web1_to_srv(tcp(40003, 443, "PA", seq=101, ack=501, payload=hello)))
    rst_server = [Ether(f) for f in up]
    rst_client = [Ether(f) for f in back]
    assert len(rst_server) == 1 and rst_server[0][TCP].flags.R and rst_server[0][IP].dst == SRV_IP
    assert len(rst_client) == 1 and rst_client[0][TCP].flags.R and rst_client[0][IP].dst == WEB1_IP
    (flow,) = app_wire.engine.flows()
    assert (flow["app_proto"], flow["app_host"], flow["action"]) == ("facebook", "www.facebook.com", "reject")


def test_reordered_hello_is_read_in_order_and_rejected(app_wire: Wire) -> None:
    """Inline, a ClientHello's second segment arriving first is held, not read alone (while undecided the
    flow's budget lets it through); the first one completes it, and the blocked SNI resets the flow."""
    from scapy.layers.tls.all import TLS, TLSClientHello
    from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName

    hello = bytes(
        TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=b"www.facebook.com")])])])
    )
    open_tcp(app_wire, 40013, 443)
    up, _ = app_wire.from_vm(web1_to_srv(tcp(40013, 443, "PA", seq=101 + 30, ack=501, payload=hello[30:])))
    assert len(up) == 1 and app_wire.engine.flows()[0]["app_proto"] is None
    up, back = app_wire.from_vm(web1_to_srv(tcp(40013, 443, "PA", seq=101, ack=501, payload=hello[:30])))
    assert [Ether(f)[TCP].flags.R for f in up + back] == [True, True]
    (flow,) = app_wire.engine.flows()
    assert (flow["app_proto"], flow["app_host"], flow["action"]) == ("facebook", "www.facebook.com", "reject")


def test_dns_is_decided_on_its_first_datagram(app_wire: Wire) -> None:
    from scapy.layers.dns import DNS, DNSQR

    query = web1_to_srv(UDP(sport=40053, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.internal")))
    assert len(app_wire.from_vm(query)[0]) == 1
    (flow,) = app_wire.engine.flows()
    assert (flow["app_proto"], flow["app_host"], flow["rule"]) == ("dns", "example.internal", 3)


def test_unidentified_flow_is_decided_when_the_budget_is_spent(app_wire: Wire) -> None:
    open_tcp(app_wire, 40004, 5000)
    passed = 0
    for i in range(12):
        up, _ = app_wire.from_vm(web1_to_srv(tcp(40004, 5000, "PA", seq=101 + 10 * i, ack=501, payload=bytes(10))))
        passed += len(up)
    assert 0 < passed <= 8  # the documented budget (appid_budget=8 payload packets), then the final verdict
    (flow,) = app_wire.engine.flows()
    assert flow["app_proto"] in ("unknown-tcp", "insufficient-data") and flow["action"] == "deny"


def test_flows_without_app_rules_are_not_held(tmp_path: Path) -> None:
    w = Wire(lab_with_rules(tmp_path, "- {name: web, from: [any], to: [any], services: [tcp/80], action: allow}"))
    open_tcp(w, 40005, 80)
    assert len(w.from_vm(web1_to_srv(tcp(40005, 80, "PA", seq=101, ack=501, payload=HTTP_GET)))[0]) == 1
    assert w.engine.flows()[0]["app_proto"] == "http"


def test_unknown_application_in_a_rule_is_refused(tmp_path: Path) -> None:
    from ngfw.model.errors import PolicyError

    with pytest.raises(PolicyError, match=r"spec.rules\[0\].applications\[0\]: unknown application 'nosuchapp'"):
        lab_with_rules(tmp_path, "- {name: x, from: [any], to: [any], applications: [nosuchapp], action: allow}")


STUN_THEN_DTLS_RULES = """
- {name: allow-stun, from: [any], to: [any], applications: [stun], action: allow, log: true}
- {name: default-deny, from: [any], to: [any], action: deny, log: true}
"""


def test_stun_that_turns_into_dtls_is_decided_again(tmp_path: Path) -> None:
    import struct

    w = Wire(lab_with_rules(tmp_path, STUN_THEN_DTLS_RULES))
    binding = struct.pack("!HHI", 0x0001, 0, 0x2112A442) + b"\x07" * 12  # STUN binding request
    assert len(w.from_vm(web1_to_srv(UDP(sport=40100, dport=19305) / binding))[0]) == 1
    (flow,) = w.engine.flows()
    assert (flow["app_proto"], flow["action"]) == ("stun", "allow")
    # WebRTC: the DTLS handshake follows on the same ports; the policy allows STUN, not DTLS
    hello = (
        bytes.fromhex("16fefd0000000000000000")
        + struct.pack("!H", 16)
        + bytes.fromhex("0100000c000000000000000c")
        + bytes(4)
    )
    assert w.from_vm(web1_to_srv(UDP(sport=40100, dport=19305) / hello))[0] == []
    (flow,) = w.engine.flows()
    assert (flow["app_proto"], flow["action"], flow["rule"]) == ("dtls", "deny", 1)
    assert w.engine.stats()["app_cuts"] == 1


def test_imap_that_upgrades_with_starttls_is_imaps_and_decided_again(tmp_path: Path) -> None:
    from scapy.layers.tls.all import TLS, TLSClientHello

    w = Wire(
        lab_with_rules(
            tmp_path,
            """
- {name: allow-imap, from: [any], to: [any], applications: [imap], action: allow, log: true}
- {name: default-deny, from: [any], to: [any], action: deny, log: true}
""",
        )
    )
    open_tcp(w, 40200, 143)
    assert (
        len(w.from_up(srv_to_web1(tcp(143, 40200, "PA", seq=501, ack=101, payload=b"* OK IMAP4rev1 ready\r\n")))[0])
        == 1
    )
    assert len(w.from_vm(web1_to_srv(tcp(40200, 143, "PA", seq=101, ack=523, payload=b"a1 STARTTLS\r\n")))[0]) == 1
    assert len(w.from_up(srv_to_web1(tcp(143, 40200, "PA", seq=523, ack=114, payload=b"a1 OK Begin TLS\r\n")))[0]) == 1
    (flow,) = w.engine.flows()
    assert (flow["app_proto"], flow["action"]) == ("imap", "allow")
    hello = bytes(TLS(msg=[TLSClientHello()]))
    assert w.from_vm(web1_to_srv(tcp(40200, 143, "PA", seq=114, ack=540, payload=hello)))[0] == []
    (flow,) = w.engine.flows()
    assert (flow["app_proto"], flow["action"], flow["rule"]) == ("imaps", "deny", 1)
