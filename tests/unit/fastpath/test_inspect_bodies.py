"""file.data over coded response bodies, inline: the body a workload downloads is inspected decoded (chunked
framing removed, gzip/deflate inflated), bounded per body, and a decompression bomb is counted, not followed."""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

from tests.support.fastpath import srv_to_web1, tcp
from tests.support.inspection import handshake, send, sids, wire

EXE_RULES = r"""
alert http any any -> any any (msg:"PE download"; flow:established,to_client; file_data; content:"MZ"; within:2; content:"This program cannot be run"; distance:0; sid:2001; rev:1;)
alert http any any -> any any (msg:"raw chunk framing"; flow:to_client; file_data; content:"|0d 0a|MZ"; sid:2002; rev:1;)
"""
# an executable whose code does not compress: its coded body spans several segments
EXE = (
    b"MZ"
    + bytes(62)
    + b"This program cannot be run in DOS mode.\r\r\n$"
    + b"".join(hashlib.sha256(bytes([i])).digest() for i in range(128))
)


def download(tmp_path: Path, body: bytes, headers: str, sport: int, segment: int = 1200):
    """A GET through the wire and the server's response cut into segments; returns (wire, alerts)."""
    w = wire(tmp_path, rules=EXE_RULES)
    seq, srv = handshake(w, sport)
    request = b"GET /setup.exe HTTP/1.1\r\nHost: dl.example\r\n\r\n"
    send(w, sport, seq, request)
    response = f"HTTP/1.1 200 OK\r\n{headers}\r\n".encode() + body
    for at in range(0, len(response), segment):
        piece = response[at : at + segment]
        out, _ = w.from_up(srv_to_web1(tcp(80, sport, "PA", seq=srv + at, ack=seq + len(request), payload=piece)))
        assert out, "a response segment was not forwarded"
    return w, w.alerts()


def test_a_chunked_download_is_inspected_without_its_framing(tmp_path: Path) -> None:
    chunks = b"2\r\nMZ\r\n" + f"{len(EXE) - 2:x}\r\n".encode() + EXE[2:] + b"\r\n0\r\n\r\n"
    _, alerts = download(tmp_path, chunks, "Transfer-Encoding: chunked\r\n", 41100, segment=300)
    assert sids(alerts) == [2001]


def test_gzip_and_deflate_downloads_are_inspected_inflated(tmp_path: Path) -> None:
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    for sport, (body, coding) in enumerate(
        [
            (gzip.compress(EXE, mtime=0), "gzip"),
            (zlib.compress(EXE), "deflate"),
            (raw.compress(EXE) + raw.flush(), "deflate"),
        ],
        start=41200,
    ):
        assert len(body) > 3 * 1200
        _, alerts = download(tmp_path, body, f"Content-Encoding: {coding}\r\nContent-Length: {len(body)}\r\n", sport)
        assert sids(alerts) == [2001], coding


def test_a_gzip_bomb_is_counted_and_not_inflated_past_the_body_limit(tmp_path: Path) -> None:
    bomb = gzip.compress(bytes(8 << 20) + EXE, mtime=0)
    w, alerts = download(tmp_path, bomb, f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n", 41300)
    stats = w.engine.inspect_stats()
    assert alerts == []  # the executable lies past the limit: Suricata does not see it either
    assert stats["decompression_bomb"] == 1 and stats["body_limit"] == 1
