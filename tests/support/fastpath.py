"""Frames and engines for fastpath unit tests: memory ports, scapy-built frames, no root."""

from __future__ import annotations

import socket
import struct

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether

from ngfw._fastpath import engine as fp
from ngfw.compiler.tables import CompiledPolicy
from tests.support.policies import LAB_POLICY, REPO, lab_policy

WEB1_MAC, WEB1_IP = "02:00:00:00:01:01", "10.77.0.11"
WEB2_MAC, WEB2_IP = "02:00:00:00:01:02", "10.77.0.12"
SRV_MAC, SRV_IP = "02:00:00:00:02:01", "10.77.0.100"


class Wire:
    """An engine with two memory ports ("vm" and "up") joined as a wire, like `--wire fw-vm:fw-up`."""

    def __init__(
        self,
        policy: CompiledPolicy | None = None,
        flow_capacity: int = 4096,
        state: object = None,
        inspect_slots: int | None = None,
        **timeouts: float,
    ) -> None:
        """`state`: shared memory for the flow table (`fp.state_layout`), as `--state-dir` gives the engine."""
        self.engine = fp.Engine(
            flow_capacity=flow_capacity, timeouts=timeouts, state=state, inspect_slots=inspect_slots
        )
        self.vm = self.engine.add_memory_port("vm", 0)
        self.up = self.engine.add_memory_port("up", 0)
        if policy is not None:
            self.load(policy)

    def load(self, policy: CompiledPolicy) -> None:
        self.engine.set_tables(fp.Tables(policy, {"vm": self.vm, "up": self.up}))

    def from_vm(self, frame: bytes | Ether, now_ns: int | None = None) -> tuple[list[bytes], list[bytes]]:
        """Inject on the VM side; returns (frames out of the uplink, frames sent back to the VM)."""
        self.engine.inject(self.vm, bytes(frame), now_ns)
        return self.engine.take_tx(self.up), self.engine.take_tx(self.vm)

    def from_up(self, frame: bytes | Ether, now_ns: int | None = None) -> tuple[list[bytes], list[bytes]]:
        """Inject on the uplink side; returns (frames out to the VMs, frames sent back to the uplink)."""
        self.engine.inject(self.up, bytes(frame), now_ns)
        return self.engine.take_tx(self.vm), self.engine.take_tx(self.up)

    def drops(self) -> dict[str, int]:
        return {k: v for k, v in self.engine.stats()["drops"].items() if v}


def web1_to_srv(l4, src_ip: str = WEB1_IP, src_mac: str = WEB1_MAC) -> Ether:
    return Ether(src=src_mac, dst=SRV_MAC) / IP(src=src_ip, dst=SRV_IP) / l4


def srv_to_web1(l4) -> Ether:
    return Ether(src=SRV_MAC, dst=WEB1_MAC) / IP(src=SRV_IP, dst=WEB1_IP) / l4


def tcp(sport: int, dport: int, flags: str, seq: int = 1000, ack: int = 0, payload: bytes = b""):
    segment = TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
    return segment / payload if payload else segment


def syn(sport: int, dport: int) -> bytes:
    """Ethernet/IPv4/TCP SYN web1 -> srv without scapy (tests inject tens of thousands)."""
    segment = struct.pack("!HHIIBBHHH", sport, dport, 100, 0, 5 << 4, 0x02, 65535, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0x4000, 64, 6, 0, socket.inet_aton(WEB1_IP), socket.inet_aton(SRV_IP)
    )
    return (
        bytes.fromhex(SRV_MAC.replace(":", "")) + bytes.fromhex(WEB1_MAC.replace(":", "")) + b"\x08\x00" + ip + segment
    )


# the lab policy is tests.support.policies'; tests of the engine take it from here with the frames
__all__ = [
    "Wire",
    "lab_policy",
    "syn",
    "LAB_POLICY",
    "REPO",
    "web1_to_srv",
    "srv_to_web1",
    "tcp",
    "fp",
    "Ether",
    "IP",
    "IPv6",
    "TCP",
    "UDP",
    "ICMP",
    "WEB1_MAC",
    "WEB1_IP",
    "WEB2_MAC",
    "WEB2_IP",
    "SRV_MAC",
    "SRV_IP",
]
