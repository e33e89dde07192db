"""Inspection: one TCP connection (handshake, then fuzzed segments both ways, in order or not) or one UDP
exchange, through an inline engine that runs App-ID and inspects with tests/fuzz/inspect.rules: every
HTTP/1, HTTP/2, TLS, DNS and SSH buffer, every transform, the matchers that compute offsets.

Input: a byte that picks transport and server port, then records; a record's flag: bit 0 the direction
(1 = server to client), bits 1-2 where the segment goes (0 next, 1 again over the last one, 2 after a
hole, 3 overlapping the last one's tail), bit 3 FIN, bit 4 RST."""

from __future__ import annotations

import struct
from functools import cache

from tests.fuzz.targets import records
from tests.fuzz.targets.pipeline import InlineWire

CLIENT_MAC, SERVER_MAC = bytes.fromhex("020000000101"), bytes.fromhex("020000000201")
CLIENT_IP, SERVER_IP = bytes([10, 77, 0, 11]), bytes([10, 77, 0, 100])
PORTS = (80, 443, 22, 53, 8080, 25, 21, 445, 3306, 5432, 8443, 40000)
SYN, RST, PSH_ACK, ACK, FIN = 0x02, 0x04, 0x18, 0x10, 0x01


def _ip(proto: int, src: bytes, dst: bytes, l4: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto, 0, src, dst) + l4


def frame(
    to_server: bool,
    l4proto: int,
    sport: int,
    dport: int,
    payload: bytes,
    seq: int = 0,
    ack: int = 0,
    flags: int = PSH_ACK,
) -> bytes:
    """Ether/IPv4/TCP or UDP from client to server (or back); checksums are not the fastpath's concern."""
    if l4proto == 6:
        l4 = (
            struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
            + payload
        )
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    src, dst = (CLIENT_IP, SERVER_IP) if to_server else (SERVER_IP, CLIENT_IP)
    macs = SERVER_MAC + CLIENT_MAC if to_server else CLIENT_MAC + SERVER_MAC
    return macs + b"\x08\x00" + _ip(l4proto, src, dst, l4)


@cache
def _wire() -> InlineWire:
    return InlineWire()


def one_input(data: bytes) -> None:
    if not data:
        return
    wire = _wire()
    wire.start_input()
    l4 = 17 if data[0] & 0x80 else 6
    server_port = PORTS[(data[0] & 0x7F) % len(PORTS)]
    client_port = 40000 + (data[0] & 0x7F)
    side = (0, 1)  # client on the VM port, server on the uplink
    if l4 == 17:
        for flag, payload in records.split(data[1:], limit=16):
            to_server = not flag & 1
            sport, dport = (client_port, server_port) if to_server else (server_port, client_port)
            wire.send(side[not to_server], frame(to_server, 17, sport, dport, payload))
        return
    nxt = [1001, 5001]  # next sequence number of client, server
    last = [b"", b""]
    wire.send(0, frame(True, 6, client_port, server_port, b"", 1000, 0, SYN))
    wire.send(1, frame(False, 6, server_port, client_port, b"", 5000, 1001, SYN | ACK))
    wire.send(0, frame(True, 6, client_port, server_port, b"", 1001, 5001, ACK))
    for flag, payload in records.split(data[1:], limit=24):
        d = flag & 1  # 0 client, 1 server
        where = (flag >> 1) & 3
        seq = nxt[d]
        if where == 1 and last[d]:
            seq = nxt[d] - len(last[d])
        elif where == 2:
            seq = nxt[d] + 1 + (len(payload) & 0xFF)
        elif where == 3 and last[d]:
            seq = nxt[d] - len(last[d]) // 2
        flags = PSH_ACK | (FIN if flag & 8 else 0)
        if flag & 16:
            flags = RST | ACK
        sport, dport = (client_port, server_port) if d == 0 else (server_port, client_port)
        wire.send(side[d], frame(d == 0, 6, sport, dport, payload, seq, nxt[1 - d], flags))
        if where == 0:
            nxt[d] = seq + len(payload) + (1 if flags & FIN else 0)
            last[d] = payload
