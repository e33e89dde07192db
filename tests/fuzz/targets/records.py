"""The input format of the flow targets: records of one flag byte, a big-endian u16 length and that many
bytes (the last record takes what is left). Simple enough that seeds are written from real captures
(tests/fuzz/make_seeds.py) and libFuzzer's mutations keep most of the structure."""

from __future__ import annotations

import struct


def split(data: bytes, limit: int = 32) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    at = 0
    while at < len(data) and len(out) < limit:
        flag = data[at]
        length = int.from_bytes(data[at + 1 : at + 3], "big")
        out.append((flag, data[at + 3 : at + 3 + length]))
        at += 3 + length
    return out


def join(records: list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack("!BH", flag & 0xFF, len(body)) + body for flag, body in records)
