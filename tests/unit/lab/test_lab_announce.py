"""The frames a moved workload sends, read back by scapy: what Linux sends after NETDEV_NOTIFY_PEERS."""

from __future__ import annotations

from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IPv6
from scapy.layers.l2 import ARP, Ether

from ngfw.lab.announce import announcement_frames, gratuitous_arp, unsolicited_na

MAC = "02:00:00:00:01:01"


def test_a_gratuitous_arp_asks_for_its_own_address_to_everyone() -> None:
    frame = Ether(gratuitous_arp(MAC, "10.77.0.11"))
    assert len(bytes(frame)) == 60  # padded to the Ethernet minimum
    assert frame.dst == "ff:ff:ff:ff:ff:ff" and frame.src == MAC
    arp = frame[ARP]
    assert arp.op == 1 and arp.hwsrc == MAC and arp.psrc == arp.pdst == "10.77.0.11"
    assert arp.hwdst == "00:00:00:00:00:00"


def test_an_unsolicited_na_overrides_caches_and_carries_the_mac() -> None:
    raw = unsolicited_na(MAC, "fd77::11")
    frame = Ether(raw)
    assert frame.dst == "33:33:00:00:00:01" and frame.src == MAC
    ip6 = frame[IPv6]
    assert ip6.src == "fd77::11" and ip6.dst == "ff02::1" and ip6.hlim == 255  # a router would drop it otherwise
    na = frame[ICMPv6ND_NA]
    assert (na.R, na.S, na.O) == (0, 0, 1) and na.tgt == "fd77::11"
    assert frame[ICMPv6NDOptDstLLAddr].lladdr == MAC
    checksum = na.cksum
    del na.cksum  # scapy computes it afresh over the pseudo-header: the same value
    assert Ether(bytes(frame))[ICMPv6ND_NA].cksum == checksum


def test_one_frame_per_address() -> None:
    frames = announcement_frames(MAC, ["10.77.0.11"], ["fd77::11", "fe80::ff:fe00:101"])
    assert [Ether(f).type for f in frames] == [0x0806, 0x86DD, 0x86DD]
    assert [Ether(f)[ICMPv6ND_NA].tgt for f in frames[1:]] == ["fd77::11", "fe80::ff:fe00:101"]
