"""The TCP stream engine in a replay (stream.pxi, docs/dataplane.md "Live and replay"): a capture cannot be asked to
retransmit, so inspection waits a bounded number of segments beyond a hole -- the missing bytes usually come a few
packets later, as they did on the wire -- keeping them to read in order once the hole fills, then takes a hole that
stays open for a capture's loss and inspects on from the segment after it. (Inline, a segment beyond a hole is
dropped so the sender retransmits it in order: tests/unit/test_inspect.py.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RULES = """\
alert tcp any any -> any any (msg:"first"; content:"MARK-FIRST"; sid:9001; rev:1;)
alert tcp any any -> any any (msg:"waited"; content:"MARK-WAITED"; sid:9002; rev:1;)
alert tcp any any -> any any (msg:"after the loss"; content:"MARK-AFTER"; sid:9003; rev:1;)
alert tcp any any -> any any (msg:"filled"; content:"MARK-FILLED"; sid:9004; rev:1;)
"""


def replay_alerts(tmp_path: Path, frames: list) -> list[int]:
    from scapy.utils import wrpcap

    wrpcap(str(tmp_path / "holes.pcap"), frames)
    (tmp_path / "marks.rules").write_text(RULES)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ngfw",
            "replay",
            "--json",
            "--rules",
            str(tmp_path / "marks.rules"),
            str(tmp_path / "holes.pcap"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    import json

    return sorted(
        r["alert"]["signature_id"] for r in map(json.loads, done.stdout.splitlines()) if r["event_type"] == "alert"
    )


def connection(sport: int) -> tuple[list, object]:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    c, s = "10.3.0.1", "10.3.0.2"

    def client(seq: int, data: bytes):
        return Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=80, flags="PA", seq=seq, ack=5001) / data

    return [
        Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=80, flags="S", seq=1000),
        Ether() / IP(src=s, dst=c) / TCP(sport=80, dport=sport, flags="SA", seq=5000, ack=1001),
    ], client


def test_a_lasting_hole_is_waited_for_eight_segments_then_inspection_goes_on_after_it(tmp_path: Path) -> None:
    frames, client = connection(42001)
    frames.append(client(1001, b"MARK-FIRST 12345678"))  # inspected: in order
    seq = 1001 + 19 + 100  # the capture lost 100 bytes here
    for i in range(9):
        # segments 1-8 beyond the hole pass unread; the 9th gives the hole up and is inspected
        frames.append(client(seq, (b"MARK-AFTER" if i == 8 else b"MARK-WAITED") + b"-%08d" % i))
        seq += 20 if i < 8 else 19
    assert replay_alerts(tmp_path, frames) == [9001, 9003]


def test_a_hole_that_fills_within_the_wait_is_inspected_in_order(tmp_path: Path) -> None:
    frames, client = connection(42002)
    first, rest = b"GET /x HTTP/1.1\r\nX: MARK-FILLED\r\n", b"Host: a\r\n\r\n"
    frames.append(client(1001 + len(first), rest))  # reordered: its bytes come before the first's
    frames.append(client(1001, first))  # the hole fills: read in order, not dropped
    assert replay_alerts(tmp_path, frames) == [9004]


def test_a_segment_captured_before_the_hole_filled_is_inspected_once_it_did(tmp_path: Path) -> None:
    """What the live dataplane inspects once the sender retransmitted it; a replay used to lose it (and the next
    segments, until the wait ran out)."""
    frames, client = connection(42003)
    first, second, third = b"AAAA MARK-FIRST xx", b"BBBB MARK-WAITED x", b"CCCC MARK-AFTER xx"
    frames.append(client(1001 + len(first), second))  # captured before the bytes it follows
    frames.append(client(1001, first))  # the hole fills: both are read, in order
    frames.append(client(1001 + len(first) + len(second), third))  # and the stream goes on
    assert replay_alerts(tmp_path, frames) == [9001, 9002, 9003]
