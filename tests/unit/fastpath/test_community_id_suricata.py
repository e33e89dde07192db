"""`community_id` equals Suricata 7's own (`community-id: true`) on the same captures: a capture built here with
every case the hash treats apart (TCP, UDP, SCTP-less other protocols, ICMP echo both ways, ICMP errors, ICMPv6
neighbour discovery, IPv6, one address talking to itself) and the replay fixtures, each read by Suricata and by
`ngfw replay`. bench/community_id_parity.py runs the same comparison over the whole shared corpus."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from scapy.layers.inet import GRE, ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from bench import community_id_parity

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(
    shutil.which("suricata") is None, reason="Suricata 7 not installed (deploy/install.sh installs it)"
)


def every_case(path: Path) -> Path:
    def eth(pkt):
        return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt

    a, b = "192.0.2.10", "198.51.100.20"
    frames = [
        eth(IP(src=a, dst=b) / TCP(sport=40000, dport=80, flags="S", seq=1)),
        eth(IP(src=b, dst=a) / TCP(sport=80, dport=40000, flags="SA", seq=9, ack=2)),
        eth(IP(src=a, dst=b) / TCP(sport=40000, dport=80, flags="A", seq=2, ack=10)),
        eth(IP(src=b, dst=a) / UDP(sport=53, dport=33333) / b"answer first"),  # the server speaks first
        eth(IP(src=a, dst=b) / ICMP(type=8, id=5, seq=1) / b"ping"),
        eth(IP(src=b, dst=a) / ICMP(type=0, id=5, seq=1) / b"ping"),
        eth(IP(src="203.0.113.9", dst=a) / ICMP(type=13, id=6)),  # timestamp request
        eth(
            IP(src=a, dst="203.0.113.77") / ICMP(type=3, code=3) / IP(src="203.0.113.77", dst=a) / UDP(sport=1, dport=2)
        ),
        eth(IP(src=a, dst=b) / GRE() / b"xx"),  # no ports
        eth(IP(src="127.0.0.1", dst="127.0.0.1") / TCP(sport=46136, dport=9092, flags="S")),
        eth(IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=9092, dport=46136) / b"x"),
        eth(IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(sport=50000, dport=443, flags="S")),
        eth(IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=5353, dport=53) / b"q"),
        eth(IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=9)),
        eth(IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6EchoReply(id=9)),
        eth(IPv6(src="::", dst="ff02::1:ff00:2", hlim=255) / ICMPv6ND_NS(tgt="2001:db8::2")),
    ]
    for i, f in enumerate(frames):
        f.time = 1_700_000_000 + i * 0.01
    wrpcap(str(path), frames)
    return path


def test_community_id_equals_suricatas_on_every_shared_flow(tmp_path: Path) -> None:
    captures = [
        every_case(tmp_path / "every-case.pcap"),
        *(
            REPO / "tests" / "fixtures" / "replay" / name
            for name in ("cloudflare-warp.pcap", "mullvad_dns.pcap", "punycode-idn.pcap")
        ),
    ]
    theirs = community_id_parity.suricata_flows(captures)
    ours = community_id_parity.ngfw_flows(captures)
    built, fixtures = community_id_parity.Comparison(), community_id_parity.Comparison()
    for i, capture in enumerate(captures):
        (built if i == 0 else fixtures).add(str(capture), ours[str(capture)], theirs[str(capture)])
    assert built.mismatches == [] and fixtures.mismatches == []
    # the built capture's flows are in both logs, ICMP and ICMPv6 included ...
    assert built.matched == built.equal == 10, (built.summary(), built.ngfw_only_examples)
    # ... but for an ICMP error (Suricata files it under the flow it quotes) and GRE (read as a tunnel)
    assert sorted((f["proto"], f["icmp_type"]) for f in built.ngfw_only_examples) == [("47", None), ("ICMP", 3)]
    assert fixtures.matched == fixtures.equal == fixtures.ngfw_flows >= 10
