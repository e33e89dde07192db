"""Pure helpers for lab measurements: traffic-generator configs in, tool outputs parsed, statistics out."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence

ETH_IPV4_UDP_HEADERS = 14 + 20 + 8
MIN_FRAME = 60  # a 64-byte Ethernet frame without its 4-byte FCS, which the NIC (here: nobody) adds


def render_trafgen_udp(
    src_mac: str,
    dst_mac: str,
    src_ip: str,
    dst_ip: str,
    dst_port: int,
    flows: int,
    frame_len: int = MIN_FRAME,
    first_src_port: int = 1024,
    dst_ports: int = 1,
) -> str:
    """A trafgen config: IPv4/UDP frames of `frame_len` bytes, source port cycling over `flows` values and,
    with `dst_ports` > 1, the destination port over `dst_ports` values from `dst_port` at the same time (two
    counters: a 5-tuple comes back after the least common multiple of the two counts)."""
    if not 1 <= flows <= 65535 - first_src_port + 1:
        raise ValueError(f"flows must be 1..{65535 - first_src_port + 1}")
    if not 1 <= dst_ports <= 65535 - dst_port + 1:
        raise ValueError(f"dst_ports must be 1..{65535 - dst_port + 1}")
    payload = frame_len - ETH_IPV4_UDP_HEADERS
    if payload < 0:
        raise ValueError(f"frame_len {frame_len} is shorter than the headers ({ETH_IPV4_UDP_HEADERS})")
    sport = f"dinc({first_src_port}, {first_src_port + flows - 1})" if flows > 1 else str(first_src_port)
    dport = f"dinc({dst_port}, {dst_port + dst_ports - 1})" if dst_ports > 1 else str(dst_port)
    return (
        "{\n"
        f"  eth(da={dst_mac}, sa={src_mac}),\n"
        f"  ipv4(sa={src_ip}, da={dst_ip}, ttl=64),\n"
        f"  udp(sp={sport}, dp={dport}),\n"
        f"  fill(0x00, {payload})\n"
        "}\n"
    )


def parse_trafgen_sent(output: str) -> int:
    """Packets trafgen reports as sent ("N packets outgoing"), summed over its worker processes."""
    return sum(int(n) for n in re.findall(r"^\s*(\d+) packets outgoing", output, flags=re.M))


_PING_RTT = re.compile(r"icmp_seq=(\d+) .*?time=([\d.]+) ms")


def parse_ping_rtts(output: str) -> list[float]:
    """Per-packet round-trip times in milliseconds from `ping` output (one per reply line; duplicates skipped)."""
    seen = set()
    rtts = []
    for seq, rtt in _PING_RTT.findall(output):
        if "(DUP!)" in seq or seq in seen:
            continue
        seen.add(seq)
        rtts.append(float(rtt))
    return rtts


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError("q must be within 0..100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def median(values: Sequence[float | None]) -> float | None:
    """Median of the values that were measured (None = that repetition failed)."""
    got = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(got) if got else None


def parse_iperf3_json(text: str) -> float:
    """Receiver-side throughput in bit/s from `iperf3 -J` output (raises ValueError on an iperf3 error)."""
    doc = json.loads(text)
    if doc.get("error"):
        raise ValueError(f"iperf3: {doc['error']}")
    end = doc.get("end", {})
    for key in ("sum_received", "sum"):
        if key in end and "bits_per_second" in end[key]:
            return float(end[key]["bits_per_second"])
    raise ValueError("iperf3 output has no end.sum_received")


def parse_wrk(output: str) -> tuple[float, dict[str, int]]:
    """(requests per second, socket errors by kind, non-2xx/3xx included) from `wrk` output."""
    m = re.search(r"^Requests/sec:\s+([\d.]+)", output, flags=re.M)
    if not m:
        raise ValueError("wrk output has no Requests/sec line")
    errors = {}
    e = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if e:
        errors = dict(zip(("connect", "read", "write", "timeout"), map(int, e.groups())))
    n = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if n:
        errors["non_2xx_3xx"] = int(n.group(1))
    return float(m.group(1)), errors


def ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base == 0:
        return None
    return value / base
