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


# -- file.data as the body arrives: a window over the packets, each rule once per response ---------------

PROGRESSIVE_RULES = r"""
alert http any any -> any any (msg:"PE download"; flow:established,to_client; file_data; content:"MZ"; within:2; content:"This program cannot be run"; distance:0; sid:2001; rev:1;)
alert http any any -> any any (msg:"DOS stub"; flow:established,to_client; file_data; content:"This program cannot be run"; sid:2003; rev:1;)
drop http any any -> any any (msg:"dropper marker"; flow:established,to_client; file_data; content:"DROPPER-STAGE-2"; sid:2004; rev:1;)
"""


def respond(tmp_path: Path, bodies: list[bytes], sport: int, cuts: list[list[int]]):
    """One connection, a GET and a response per body, each response (head + body) cut at `cuts` (offsets into
    the body); returns (wire, [(segment, forwarded) per response], alerts drained after each response)."""
    w = wire(tmp_path, rules=PROGRESSIVE_RULES)
    seq, srv = handshake(w, sport)
    request = b"GET /setup.exe HTTP/1.1\r\nHost: dl.example\r\n\r\n"
    results, alerts = [], []
    for body, body_cuts in zip(bodies, cuts, strict=True):
        send(w, sport, seq, request)
        seq += len(request)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        response = head + body
        edges = sorted({0, len(response), *(len(head) + c for c in body_cuts)})
        # no segment over 1,200 bytes (the ports' MTU): the cuts a test makes, then every 1,200 bytes
        edges = sorted({*edges, *(e for a, b in zip(edges, edges[1:], strict=False) for e in range(a + 1200, b, 1200))})
        sent = []
        for start, end in zip(edges, edges[1:], strict=False):
            out, _ = w.from_up(srv_to_web1(tcp(80, sport, "PA", seq=srv, ack=seq, payload=response[start:end])))
            sent.append((response[start:end], bool(out)))
            srv += end - start
        results.append(sent)
        alerts.append(sids(w.alerts()))
    return w, results, alerts


def test_a_match_across_two_segments_is_found(tmp_path: Path) -> None:
    # the DOS stub's text is cut in two by the segment boundary: each packet alone holds half of it
    cut = EXE.index(b"cannot") + 2
    _, _, alerts = respond(tmp_path, [bytes(300) + EXE], 42100, [[300 + cut]])
    assert alerts == [[2003]]


def test_a_rule_anchored_at_the_body_start_sees_a_body_that_begins_in_small_pieces(tmp_path: Path) -> None:
    # "MZ" and the first bytes in the head's segment, the stub's text in the next: 2001 is anchored at the
    # body's first byte and the window still starts there
    _, _, alerts = respond(tmp_path, [EXE], 42200, [[40]])
    assert sorted(alerts[0]) == [2001, 2003]


def test_an_anchored_rule_does_not_take_a_later_segment_for_the_body_start(tmp_path: Path) -> None:
    # a later segment that starts with "MZ": not the body's start (each packet used to be read as one)
    body = b"%PDF-1.7 " + bytes(1500) + EXE
    _, _, alerts = respond(tmp_path, [body], 42300, [[1509]])
    assert alerts == [[2003]]


def test_each_rule_alerts_once_per_response_and_again_on_the_next(tmp_path: Path) -> None:
    twice = EXE + bytes(2000) + EXE[64:]  # the stub's text twice, segments apart
    _, _, alerts = respond(tmp_path, [twice, twice], 42400, [[1000, 2500], [1000, 2500]])
    assert [sorted(a) for a in alerts] == [[2001, 2003], [2001, 2003]]


def test_a_drop_rule_stops_a_download_mid_body_with_the_alert_before_the_flow_ends(tmp_path: Path) -> None:
    marker = b"DROPPER-STAGE-2"
    body = bytes(4000) + marker + bytes(4000)
    at = 4000 + 7  # the marker is cut across two segments
    w, (sent,), alerts = respond(tmp_path, [body], 42500, [[1100, 2200, 3300, at, 5200, 6400, 7600]])
    forwarded = [ok for _, ok in sent]
    # the segments before the marker's end pass, the one completing it and all after are dropped
    assert forwarded == [True, True, True, True, False, False, False, False]
    delivered = sum(len(seg) for seg, ok in sent if ok)
    assert delivered < len(body)
    assert alerts == [[2004]]  # drained while the flow still exists (no flow-end event yet)
    assert w.engine.inspect_stats()["flows_blocked"] == 1
