"""SYN flood protection: how many new TCP connections per second a source address (and, optionally, all of them)
may open through a wire before the kernel drops the excess ahead of the dataplane's rings.

The limits are enforced by the wire program's ring filter (ngfw/_fastpath/bpf/wire.bpf.c, `admit_syn`): a SYN
without ACK over its source's token bucket, or over the total one, is not copied into the packet ring, so a
flood from one address cannot overflow the ring and crowd out other users' SYNs and the established flows'
segments. Everything else (established flows, UDP, ICMP) passes unchanged. This module parses the operator's
settings, and reports the sources the kernel limited (a log line naming the worst, the metrics' counters).

Why the default is 10,000 SYN/s per source: one client of bench/run.py's conn/s benchmark (wrk, every request a
new connection) opens about 4,000 connections/s through a Linux bridge on the lab machine and about 2,000
through the dataplane, so a busy legitimate client keeps more than twice its rate; and a packet loop on one
core keeps up with 10,000 SYN/s while it forwards everything else (bench/RESULTS.md, SYN flood). A source
gets a second's worth as a burst. The total limit is off by default: it is the only answer to a flood from
many (spoofed) addresses, but it drops legitimate SYNs in the flood's proportion -- size it to what the
packet loop handles (SYN cookies, which the dataplane does not do, would be the full answer).
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ngfw.dataplane.admission")

DEFAULT_PER_SOURCE = 10_000.0  # SYN/s from one address (the module's docstring says why)
BURST_SECONDS = 1.0  # a bucket holds this many seconds of its rate, unless told otherwise
MAX_RATE = 100_000_000.0  # beyond what any link carries in SYNs: a typo, not a setting
REPORT_INTERVAL = 10.0  # seconds between two log lines naming the limited sources
REPORT_TOP = 5

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*s)?\s*(?:,\s*(\d+))?\s*$")


@dataclass(frozen=True)
class Rate:
    """SYNs per second, and how many a bucket holds (a burst admitted at once after a quiet spell)."""

    per_second: float
    burst: float

    def __str__(self) -> str:
        return f"{self.per_second:g}/s,{self.burst:g}"


def parse_rate(text: str) -> Rate | None:
    """`N/s`, `N` or `N/s,BURST` (a rate and its bucket), or `off`/`0` (no limit: None). ValueError otherwise,
    one sentence naming the value."""
    if text.strip().lower() in ("off", "none", "0", "0/s"):
        return None
    m = _RATE.match(text)
    if not m:
        raise ValueError(
            f"{text!r} is not a rate: give SYNs per second as N/s (e.g. 10000/s), optionally with a "
            "burst as N/s,BURST, or off"
        )
    rate = float(m.group(1))
    if not 0 < rate <= MAX_RATE:
        raise ValueError(f"{text!r}: the rate must be above 0 and at most {MAX_RATE:,.0f}/s (off: no limit)")
    burst = float(m.group(2)) if m.group(2) else max(1.0, rate * BURST_SECONDS)
    if burst < 1:
        raise ValueError(f"{text!r}: the burst must be at least 1 SYN")
    return Rate(rate, burst)


@dataclass(frozen=True)
class SynLimits:
    """The admission limits of a dataplane: per source address, and in all (None: that limit is off)."""

    per_source: Rate | None = Rate(DEFAULT_PER_SOURCE, DEFAULT_PER_SOURCE * BURST_SECONDS)
    total: Rate | None = None

    @property
    def enabled(self) -> bool:
        return self.per_source is not None or self.total is not None

    def describe(self) -> str:
        parts = [
            f"{self.per_source.per_second:,.0f} SYN/s per source address (burst {self.per_source.burst:,.0f})"
            if self.per_source
            else "no per-source limit",
            f"{self.total.per_second:,.0f} SYN/s in all (burst {self.total.burst:,.0f})"
            if self.total
            else "no total limit",
        ]
        return ", ".join(parts)


def configure(program: Any, limits: SynLimits) -> None:
    """Write `limits` into a loaded wire program (wirebpf.WireProgram)."""
    src, total = limits.per_source, limits.total
    program.set_syn_limits(
        src.per_second if src else 0.0,
        src.burst if src else 0.0,
        total.per_second if total else 0.0,
        total.burst if total else 0.0,
    )


def address_text(raw: bytes) -> str:
    """A source as the program keys it (16 bytes, IPv4 mapped) in the usual notation."""
    addr = ipaddress.IPv6Address(raw)
    return str(addr.ipv4_mapped) if addr.ipv4_mapped is not None else str(addr)


class AdmissionReport:
    """Reads the program's SYN counters for the metrics, and logs the sources it limited, the worst first, at
    most every REPORT_INTERVAL seconds while it limits some (a walk of its source map only then)."""

    def __init__(self, program: Any, limits: SynLimits, now: float | None = None) -> None:
        self.program = program
        self.limits = limits
        self._seen: dict[bytes, int] = {}  # source -> dropped count at the last report
        self._last_dropped = 0
        self._counted_from = time.monotonic() if now is None else now  # what the next report covers
        self._last_report: float | None = None

    def stats(self) -> dict[str, int]:
        return self.program.syn_stats()

    def maybe_log(self, now: float | None = None) -> list[tuple[str, int]]:
        """Log the sources whose SYNs were dropped since the last report; returns them (address, dropped)."""
        now = time.monotonic() if now is None else now
        if self._last_report is not None and now - self._last_report < REPORT_INTERVAL:
            return []
        stats = self.program.syn_stats()
        dropped = stats["dropped_source"] + stats["dropped_total"]
        if dropped == self._last_dropped:
            self._counted_from = now
            return []
        since = now - self._counted_from
        self._last_report = self._counted_from = now
        total_new = dropped - self._last_dropped
        self._last_dropped = dropped
        offenders = []
        seen: dict[bytes, int] = {}
        for raw, _admitted, source_dropped, _last in self.program.syn_sources(1):
            seen[raw] = source_dropped
            new = source_dropped - self._seen.get(raw, 0)
            if new > 0:
                offenders.append((address_text(raw), new))
        self._seen = seen
        offenders.sort(key=lambda o: -o[1])
        top = ", ".join(f"{addr} {n:,}" for addr, n in offenders[:REPORT_TOP])
        more = f" and {len(offenders) - REPORT_TOP} more sources" if len(offenders) > REPORT_TOP else ""
        if offenders:
            log.warning(
                "SYN flood protection: %s SYNs dropped in the kernel in %.1f s; over the per-source limit (%s): %s%s",
                f"{total_new:,}",
                since,
                self.limits.describe(),
                top,
                more,
            )
        else:
            log.warning(
                "SYN flood protection: %s SYNs dropped in the kernel in %.1f s, over the total limit (%s)",
                f"{total_new:,}",
                since,
                self.limits.describe(),
            )
        return offenders
