"""Fuzzing the fastpath with random and mutated frames: it never crashes, and every frame is accounted for.

Frames come from a seeded generator (NGFW_FUZZ_SEED picks another seed; a failure names the seed and
the frame). Each frame goes through `engine.decode` (and must agree with the pure-Python twin) and
through a whole `Engine` wired between two memory ports, where it must be forwarded exactly once or
counted under exactly one drop reason: `rx_packets == forwarded + sum(drops)`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
from collections.abc import Iterator

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_Router_Alert
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6MLReport2,
    ICMPv6ND_NS,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from ngfw._fastpath import engine
from ngfw.compiler.tables import (
    Action,
    AddressSet,
    CompiledPolicy,
    CompiledRule,
    CompiledWorkload,
    Service,
)
from ngfw.reference import decode as reference
from ngfw.wire import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

SEED = int(os.environ.get("NGFW_FUZZ_SEED", "20240611"))
N_RANDOM = 5000
N_MUTATED = 12000
MTU = 1500

W1_MAC, W1_V4, W1_V6 = "02:00:00:00:00:01", "10.0.0.1", "fd00::1"
W2_MAC, W2_V4, W2_V6 = "02:00:00:00:00:02", "10.0.0.2", "fd00::2"
W3_MAC, W3_V4 = "02:00:00:00:00:03", "10.0.1.3"  # another tenant
OUT_MAC, OUT_V4, OUT_V6 = "02:99:00:00:00:01", "192.0.2.7", "2001:db8::7"


def fuzz_policy() -> CompiledPolicy:
    """Two tenants, allow/deny/reject rules and a default deny, so frames reach every verdict."""

    def wl(name: str, vsys: int, mac: str, *ips: str) -> CompiledWorkload:
        return CompiledWorkload(
            name, vsys, (bytes.fromhex(mac.replace(":", "")),), tuple(ipaddress.ip_address(ip) for ip in ips)
        )

    def members(*indexes: int) -> AddressSet:
        return AddressSet(workloads=frozenset(indexes))

    def cidr(prefix: str) -> AddressSet:
        return AddressSet(cidrs=(ipaddress.ip_network(prefix),))

    anyone = AddressSet(any=True)
    rules = (
        CompiledRule(
            "web",
            0,
            anyone,
            members(1),
            (Service(PROTO_TCP, 80, 80), Service(PROTO_TCP, 443, 443)),
            Action.ALLOW,
            log=True,
        ),
        CompiledRule("dns", 0, members(0, 1), anyone, (Service(PROTO_UDP, 53, 53),), Action.ALLOW),
        CompiledRule("ping", 0, anyone, anyone, (Service(PROTO_ICMP), Service(PROTO_ICMPV6)), Action.ALLOW),
        CompiledRule(
            "telnet",
            0,
            anyone,
            anyone,
            (Service(PROTO_TCP, 23, 23), Service(PROTO_UDP, 69, 69)),
            Action.REJECT,
            log=True,
        ),
        CompiledRule("w1-out", 0, members(0), cidr("10.0.1.0/24"), (), Action.ALLOW),
        CompiledRule("smtp", 0, anyone, anyone, (Service(PROTO_TCP, 25, 25),), Action.DENY, log=True),
        CompiledRule("tenant-b-in", 1, cidr("10.0.0.0/24"), anyone, (Service(PROTO_TCP, 1, 1024),), Action.ALLOW),
        CompiledRule("tenant-b-rest", 1, anyone, anyone, (), Action.REJECT),
    )
    workloads = (wl("w1", 0, W1_MAC, W1_V4, W1_V6), wl("w2", 0, W2_MAC, W2_V4, W2_V6), wl("w3", 1, W3_MAC, W3_V4))
    return CompiledPolicy(1, ("tenant-a", "tenant-b"), workloads, rules)


def corpus() -> list[bytes]:
    """Valid frames for every path of the engine: flows both ways, fragments, ND, ARP, VLANs."""
    ends4 = [(W1_MAC, W1_V4), (W2_MAC, W2_V4), (W3_MAC, W3_V4), (OUT_MAC, OUT_V4)]
    ends6 = [(W1_MAC, W1_V6), (W2_MAC, W2_V6), (OUT_MAC, OUT_V6)]
    l4s: list[Packet] = [
        TCP(sport=40000, dport=p, flags=f) for p in (80, 23, 25, 22, 443) for f in ("S", "SA", "A", "FA", "R")
    ]
    l4s += [TCP(sport=40001, dport=80, flags="PA", options=[("MSS", 1460), ("NOP", None)]) / Raw(b"GET / HTTP/1.0\r\n")]
    l4s += [UDP(sport=5353, dport=p) / Raw(b"q" * 12) for p in (53, 69, 123)]
    frames: list[Packet] = []
    for smac, sip in ends4:
        for dmac, dip in ends4:
            if sip == dip:
                continue
            for l4 in l4s + [ICMP(type=8, id=7) / Raw(b"ping"), ICMP(type=3, code=3) / Raw(bytes(IP() / UDP()))]:
                frames.append(Ether(src=smac, dst=dmac) / IP(src=sip, dst=dip) / l4)
            frames.append(Ether(src=smac, dst=dmac) / IP(src=sip, dst=dip, flags="MF", id=9) / TCP(dport=80, flags="S"))
            frames.append(Ether(src=smac, dst=dmac) / IP(src=sip, dst=dip, frag=2, id=9, proto=6) / Raw(b"x" * 32))
            frames.append(Ether(src=smac, dst=dmac) / IP(src=sip, dst=dip, proto=47) / Raw(b"gre" * 8))
            frames.append(Ether(src=smac, dst=dmac) / IP(src=sip, dst=dip, options=[IPOption_Router_Alert()]) / UDP())
        frames.append(Ether(src=smac, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=smac, psrc=sip, pdst=W2_V4))
    for smac, sip in ends6:
        for dmac, dip in ends6:
            if sip == dip:
                continue
            for l4 in l4s[::3] + [ICMPv6EchoRequest(id=5)]:
                frames.append(Ether(src=smac, dst=dmac) / IPv6(src=sip, dst=dip) / l4)
            frames.append(
                Ether(src=smac, dst=dmac)
                / IPv6(src=sip, dst=dip)
                / IPv6ExtHdrHopByHop()
                / IPv6ExtHdrDestOpt()
                / UDP(dport=53)
            )
            frames.append(
                Ether(src=smac, dst=dmac)
                / IPv6(src=sip, dst=dip)
                / IPv6ExtHdrFragment(m=1, id=3)
                / TCP(dport=80, flags="S")
            )
            frames.append(
                Ether(src=smac, dst=dmac)
                / IPv6(src=sip, dst=dip)
                / IPv6ExtHdrFragment(offset=4, id=3, nh=6)
                / Raw(b"y" * 24)
            )
        frames.append(
            Ether(src=smac, dst="33:33:ff:00:00:02") / IPv6(src=sip, dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt=W2_V6)
        )
        frames.append(Ether(src=smac, dst="33:33:00:00:00:16") / IPv6(src=sip, dst="ff02::16") / ICMPv6MLReport2())
    tagged = [
        Ether(src=W1_MAC, dst=W2_MAC) / Dot1Q(vlan=10) / IP(src=W1_V4, dst=W2_V4) / TCP(dport=80, flags="S"),
        Ether(src=W1_MAC, dst=W2_MAC, type=0x88A8)
        / Dot1Q(vlan=20, type=0x8100)
        / Dot1Q(vlan=30)
        / IPv6(src=W1_V6, dst=W2_V6)
        / UDP(dport=53),
    ]
    return [bytes(f) for f in frames + tagged]


def mutate(rng: random.Random, frame: bytes, others: list[bytes]) -> bytes:
    data = bytearray(frame)
    if not data:  # a previous mutation cut it all away
        return rng.randbytes(rng.randrange(20))
    op = rng.randrange(7)
    if op <= 2:  # a few bytes, mostly in the headers where the decoder looks
        for _ in range(rng.randint(1, 4)):
            pos = min(int(rng.expovariate(1 / 30)), len(data) - 1)
            data[pos] = rng.choice((0, 0xFF, rng.randrange(256), data[pos] ^ (1 << rng.randrange(8))))
    elif op == 3:
        del data[rng.randrange(len(data) + 1) :]
    elif op == 4:
        data += rng.randbytes(rng.randint(1, 64))
    elif op == 5:  # a byte inserted or removed shifts every later field
        pos = rng.randrange(len(data))
        if rng.random() < 0.5:
            del data[pos]
        else:
            data.insert(pos, rng.randrange(256))
    else:  # the head of one frame on the tail of another
        other = rng.choice(others)
        cut = rng.randrange(min(len(data), len(other)) + 1)
        data = data[:cut] + other[cut:]
    return bytes(data)


def random_frame(rng: random.Random) -> bytes:
    # half the frames get a real EtherType, or random bytes would rarely get past Ethernet
    size = rng.choice((rng.randrange(0, 80), rng.randrange(0, 200), rng.randrange(1400, 1600)))
    body = rng.randbytes(size)
    if size >= 14 and rng.random() < 0.5:
        et = rng.choice((b"\x08\x00", b"\x86\xdd", b"\x08\x06", b"\x81\x00", b"\x88\xa8"))
        body = body[:12] + et + body[14:]
        if et == b"\x08\x00" and size > 14:
            body = body[:14] + bytes([0x45]) + body[15:]
        elif et == b"\x86\xdd" and size > 14:
            body = body[:14] + bytes([0x60]) + body[15:]
    return body


def fuzz_frames(seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    valid = corpus()
    for frame in valid:
        yield frame
    for _ in range(N_RANDOM):
        yield random_frame(rng)
    for _ in range(N_MUTATED):
        frame = rng.choice(valid)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            frame = mutate(rng, frame, valid)
        yield frame


def test_fuzzed_frames_decode_like_the_twin() -> None:
    for frame in fuzz_frames(SEED):
        fast = engine.decode(frame)
        assert fast["reason"] is None or fast["reason"] in engine.DROP_REASONS, fast
        assert fast == reference.decode(frame), f"seed {SEED}: decoders disagree on {frame.hex()}"


def test_every_fuzzed_frame_is_forwarded_or_counted() -> None:
    e = engine.Engine(flow_capacity=4096)
    a = e.add_memory_port("a", 0, mtu=MTU)
    b = e.add_memory_port("b", 0, mtu=MTU)
    e.set_tables(engine.Tables(fuzz_policy(), {"a": a, "b": b}))
    rng = random.Random(SEED + 1)
    forwarded = responses = injected = 0
    drops_before = 0
    for frame in fuzz_frames(SEED):
        # both directions, so replies find their flows and TCP state moves
        port, other = (a, b) if rng.random() < 0.7 else (b, a)
        e.inject(port, frame)
        injected += 1
        out = e.take_tx(other)
        back = e.take_tx(port)
        drops_now = sum(e.stats()["drops"].values())
        # exactly one outcome per frame: forwarded once, or one drop counted
        assert len(out) + (drops_now - drops_before) == 1, (
            f"seed {SEED}: frame {frame.hex()} forwarded {len(out)} times, {drops_now - drops_before} drops counted"
        )
        assert len(back) <= 1  # at most one RST/unreachable, and only for a drop
        if out:
            assert out[0] == frame  # a wire forwards frames unchanged
        forwarded += len(out)
        responses += len(back)
        drops_before = drops_now
    stats = e.stats()
    drops = stats["drops"]
    rx = sum(p["rx_packets"] for p in stats["ports"])
    assert rx == injected == forwarded + sum(drops.values())
    assert responses <= drops["policy_reject"] + drops["cut_by_policy"]
    # the run went past decoding into identity, policy and the flow table
    for reason in ("oversize", "policy_deny", "policy_reject", "policy_default_deny", "spoofed_ip", "tcp_not_syn"):
        assert drops[reason] > 0, f"no {reason} drop: the corpus no longer reaches that stage"
    assert forwarded > 0 and responses > 0
