"""HTTP/2 header blocks through the inline engine with HPACK's dynamic table (RFC 7541): later requests that
name their host, user agent or path by index are inspected with the right values, through evictions and size
updates, over segments and CONTINUATION frames; a malformed block is counted and never resolves to a wrong
field. The blocks are written by the `hpack` package (the encoder of the `h2` library)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

hpack = pytest.importorskip("hpack")

from tests.support.inspection import handshake, send, sids, wire  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
RULES = r"""
alert http2 any any -> any any (msg:"second request to the lab host"; flow:to_server; http.uri; content:"/second"; http.host; content:"h2.lab.example"; sid:3001; rev:1;)
alert http2 any any -> any any (msg:"third request with the probe agent"; flow:to_server; http.uri; content:"/third"; http.user_agent; content:"probe/1"; sid:3002; rev:1;)
alert http2 any any -> any any (msg:"a request to the other host"; flow:to_server; http.host; content:"other.example"; sid:3003; rev:1;)
alert http2 any any -> any any (msg:"evicted header"; flow:to_server; http.uri; content:"/after"; http.header; content:"x-big-0"; sid:3004; rev:1;)
"""


def frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack("!I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack("!I", stream) + payload


def headers(stream: int, block: bytes, end_headers: bool = True) -> bytes:
    return frame(1, 0x01 | (0x04 if end_headers else 0), stream, block)


def request(path: str, host: str = "h2.lab.example", agent: str = "probe/1", extra=()) -> list[tuple[str, str]]:
    return [
        (":method", "GET"),
        (":path", path),
        (":scheme", "http"),
        (":authority", host),
        ("user-agent", agent),
        *extra,
    ]


def connection(tmp_path: Path, sport: int, segments: list[bytes]):
    """Send the client's bytes segment by segment (the first starts with the preface); returns (wire, sids)."""
    w = wire(tmp_path, rules=RULES)
    seq, _ = handshake(w, sport)
    for piece in segments:
        out, _ = send(w, sport, seq, piece)
        assert out, "a segment was not forwarded"
        seq += len(piece)
    return w, sids(w.alerts())


def test_later_requests_name_host_and_agent_by_index_and_are_inspected_with_them(tmp_path: Path) -> None:
    enc = hpack.Encoder()
    first = PREFACE + frame(4, 0, 0, b"") + headers(1, enc.encode(request("/first")))
    second = headers(3, enc.encode(request("/second")))
    third = headers(5, enc.encode(request("/third")))
    assert len(second) < 30 and len(third) < 30  # host and agent travel as indices only
    w, alerts = connection(tmp_path, 41500, [first, second, third])
    assert sorted(alerts) == [3001, 3002]
    assert w.engine.inspect_stats()["hpack_unresolved"] == 0


def test_a_block_cut_over_segments_and_continuation_frames_is_decoded_whole(tmp_path: Path) -> None:
    enc = hpack.Encoder()
    first = PREFACE + headers(1, enc.encode(request("/first")))
    block = enc.encode(request("/second", extra=[("x-filler", "f" * 300)]))
    split = headers(3, block[:7], end_headers=False) + frame(9, 0x04, 3, block[7:])
    # the frame header itself is cut, and the block spans two frames and three segments
    w, alerts = connection(tmp_path, 41501, [first, split[:5], split[5:40], split[40:]])
    assert alerts == [3001]


def test_evictions_and_a_smaller_table_keep_indices_in_step(tmp_path: Path) -> None:
    enc = hpack.Encoder()
    big = [("x-big-0", "0" * 1500)]
    segments = [PREFACE + headers(1, enc.encode(request("/first", extra=big)))]
    for i in range(1, 4):  # 1.5 KB headers push the oldest entries out of the 4096-byte table
        segments.append(headers(1 + 2 * i, enc.encode(request(f"/fill{i}", extra=[(f"x-big-{i}", str(i) * 1500)]))))
    enc.header_table_size = 200  # a size update at the next block's start, then constant eviction
    segments.append(headers(9, enc.encode(request("/second"))))
    segments.append(headers(11, enc.encode(request("/after", host="other.example"))))
    segments.append(headers(13, enc.encode(request("/third"))))
    w, alerts = connection(tmp_path, 41502, segments)
    assert sorted(alerts) == [3001, 3002, 3003]  # never x-big-0, evicted long before /after
    assert w.engine.inspect_stats()["hpack_malformed"] == 0


def test_a_size_update_above_the_allowed_table_is_counted_and_nothing_resolves_wrongly(tmp_path: Path) -> None:
    enc = hpack.Encoder()
    first = PREFACE + headers(1, enc.encode(request("/first", host="other.example")))
    # 0x3f e1 ff 03 = a size update to 65536, more than the default 4096 the server allowed
    bad = headers(3, b"\x3f\xe1\xff\x03" + enc.encode(request("/second")))
    later = headers(5, enc.encode(request("/third")))
    w, alerts = connection(tmp_path, 41503, [first, bad, later])
    stats = w.engine.inspect_stats()
    assert stats["hpack_malformed"] == 1
    assert alerts == [3003]  # only the literal first request: no index resolves after the error
    assert stats["hpack_unresolved"] >= 2  # /third's host and agent were named by index, and skipped
