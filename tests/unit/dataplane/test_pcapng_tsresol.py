"""pcapng timestamps at every if_tsresol: `ngfw replay` reads any resolution the format can state.

if_tsresol is one byte: bit 7 clear means units of 10^-n s, set means 2^-n s. Fuzzing found that
a resolution of 10^-64 s or finer killed replay with SIGFPE (no message, the remaining files unread)
and that 10^-20 .. 10^-63 s gave wrong times; every value below must give the time the file states.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

REPO = Path(__file__).resolve().parents[3]


def _block(block_type: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", block_type, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def pcapng_one_packet(tsresol: int, units: int, frame: bytes) -> bytes:
    """A section with one Ethernet interface of resolution `tsresol` and one packet at `units`."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = _block(1, struct.pack("<HHI", 1, 0, 65535) + struct.pack("<HHB3x", 9, 1, tsresol) + b"\0\0\0\0")
    epb = _block(6, struct.pack("<IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(frame), len(frame)) + frame)
    return shb + idb + epb


SECOND = 1_700_000_000  # 2023-11-14T22:13:20Z
# (if_tsresol, timestamp in its units, the time replay must report)
CASES = [
    (6, SECOND * 10**6 + 123_456, "2023-11-14T22:13:20.123456+0000"),  # the default, microseconds
    (9, SECOND * 10**9 + 123_456_000, "2023-11-14T22:13:20.123456+0000"),  # nanoseconds
    (3, SECOND * 10**3 + 123, "2023-11-14T22:13:20.123000+0000"),  # milliseconds: scaled up
    (0, SECOND, "2023-11-14T22:13:20.000000+0000"),  # whole seconds
    (12, 10_000_000 * 10**12 + 250 * 10**9, "1970-04-26T17:46:40.250000+0000"),  # picoseconds: scaled down
    (20, 123_400 * 10**12, "1970-01-01T00:00:00.001234+0000"),  # 10^-20 s (was wrong)
    (64, 2**64 - 1, "1970-01-01T00:00:00.000000+0000"),  # 10^-64 s (was SIGFPE)
    (127, 2**63, "1970-01-01T00:00:00.000000+0000"),
    (0x80 | 10, SECOND * 1024 + 512, "2023-11-14T22:13:20.500000+0000"),  # 2^-10 s
    (0x80 | 30, SECOND * 2**30 + 2**28, "2023-11-14T22:13:20.250000+0000"),  # 2^-30 s
    (0x80 | 127, 2**64 - 1, "1970-01-01T00:00:00.000000+0000"),  # 2^-127 s
    (0xFF, 1, "1970-01-01T00:00:00.000000+0000"),
]


def test_every_timestamp_resolution_gives_the_stated_time(tmp_path: Path) -> None:
    frame = bytes(
        Ether()
        / IP(src="10.0.0.5", dst="10.0.0.53")
        / UDP(sport=33333, dport=53)
        / DNS(qd=DNSQR(qname="tsresol.example"))
    )
    files = []
    for tsresol, units, _ in CASES:
        path = tmp_path / f"tsresol-{tsresol}.pcapng"
        path.write_bytes(pcapng_one_packet(tsresol, units, frame))
        files.append(path.name)
    done = subprocess.run(
        [sys.executable, "-m", "ngfw", "replay", "--json", *files],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    times = {rec["pcap_file"]: rec["timestamp"] for rec in map(json.loads, done.stdout.splitlines())}
    assert times == {f"tsresol-{tsresol}.pcapng": expected for tsresol, _, expected in CASES}
