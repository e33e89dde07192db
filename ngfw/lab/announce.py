"""What a guest's kernel sends after a live migration: a gratuitous ARP per IPv4 address, an unsolicited
neighbour advertisement per IPv6 address (Linux's NETDEV_NOTIFY_PEERS: `inetdev_send_gratuitous_arp`,
`ndisc_send_unsol_na`). A namespace workload that `ngfw lab migrate` moves sends the same frames from
inside its namespace, so every bridge on the way learns where its MAC now lives.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct
import time
from collections.abc import Sequence

from pyroute2 import IPRoute

from ngfw.lab.netns import socket_in
from ngfw.wire import ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6

BROADCAST = b"\xff" * 6
ALL_NODES_MAC = bytes.fromhex("333300000001")
ALL_NODES = ipaddress.IPv6Address("ff02::1")
IFA_F_TENTATIVE = 0x40
# QEMU's default announce timing (announce-initial 50 ms, announce-step 100 ms): a few rounds, so
# one lost frame does not strand the workload
ROUND_GAPS = (0.0, 0.05, 0.15)


def _mac(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def gratuitous_arp(mac: str, ipv4: str) -> bytes:
    """An ARP request for our own address, broadcast (what Linux sends: sender IP == target IP)."""
    hw, ip = _mac(mac), ipaddress.IPv4Address(ipv4).packed
    arp = struct.pack("!HHBBH", 1, ETHERTYPE_IPV4, 6, 4, 1) + hw + ip + b"\x00" * 6 + ip
    return BROADCAST + hw + struct.pack("!H", ETHERTYPE_ARP) + arp + b"\x00" * (46 - len(arp))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def unsolicited_na(mac: str, ipv6: str) -> bytes:
    """A neighbour advertisement for `ipv6` to all nodes: override set, solicited clear, our MAC attached."""
    hw, addr = _mac(mac), ipaddress.IPv6Address(ipv6).packed
    option = struct.pack("!BB", 2, 1) + hw  # target link-layer address, 8 bytes
    flags_override = 0x20000000
    body = struct.pack("!BBHI", 136, 0, 0, flags_override) + addr + option
    pseudo = addr + ALL_NODES.packed + struct.pack("!I3xB", len(body), 58)
    body = body[:2] + struct.pack("!H", _checksum(pseudo + body)) + body[4:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(body), 58, 255) + addr + ALL_NODES.packed
    return ALL_NODES_MAC + hw + struct.pack("!H", ETHERTYPE_IPV6) + ip6 + body


def announcement_frames(mac: str, ipv4: Sequence[str], ipv6: Sequence[str]) -> list[bytes]:
    return [*(gratuitous_arp(mac, a) for a in ipv4), *(unsolicited_na(mac, a) for a in ipv6)]


def interface_addresses(ns: str, ifname: str) -> tuple[str, list[str], list[str]]:
    """(MAC, IPv4 addresses, usable IPv6 addresses incl. link-local) of `ifname` in `ns`."""
    with IPRoute(netns=ns, flags=0) as ipr:
        found = ipr.link_lookup(ifname=ifname)
        if not found:
            raise RuntimeError(f"interface {ifname} not found in {ns}")
        index = found[0]
        mac = str(ipr.link("get", index=index)[0].get_attr("IFLA_ADDRESS"))
        v4, v6 = [], []
        for addr in ipr.addr("dump", index=index):
            value = addr.get_attr("IFA_ADDRESS")
            flags = addr.get_attr("IFA_FLAGS") or addr["flags"]
            if addr["family"] == socket.AF_INET:
                v4.append(str(addr.get_attr("IFA_LOCAL") or value))
            elif addr["family"] == socket.AF_INET6 and not flags & IFA_F_TENTATIVE:
                v6.append(str(value))
    return mac, v4, v6


def announce_from(ns: str, ifname: str, gaps: Sequence[float] = ROUND_GAPS) -> int:
    """Send the announcements of `ifname`'s addresses from inside `ns`, once per entry of `gaps`
    (seconds to wait before each round). Returns the number of frames sent."""
    mac, v4, v6 = interface_addresses(ns, ifname)
    frames = announcement_frames(mac, v4, v6)
    sent = 0
    with contextlib.closing(socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW)) as sock:
        sock.bind((ifname, 0))
        for gap in gaps:
            time.sleep(gap)
            for frame in frames:
                sock.send(frame)
                sent += 1
    return sent
