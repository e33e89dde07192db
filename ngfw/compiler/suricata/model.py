"""Compiled signatures: the contract between the Suricata rule compiler and the inspection engine.

Everything here is plain, immutable data. Variables are resolved, addresses and
ports are reduced to sorted inclusive integer ranges, every content/pcre match
carries the expression and flags Hyperscan compiles, and the buffer it applies
to is a canonical sticky-buffer name (legacy `http_uri`-style modifiers and pcre
buffer flags are folded into the same names).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

# Suricata's action set; `rejectsrc`/`rejectdst`/`rejectboth` are recorded as reject.
Action = Literal["alert", "drop", "reject", "pass"]
Direction = Literal["->", "<>"]

PAYLOAD = "payload"  # the packet/stream payload: what a content outside any sticky buffer inspects

IntRange = tuple[int, int]  # inclusive


def _in_ranges(ranges: tuple[IntRange, ...], value: int) -> bool:
    # Ranges are few (usually one to four), so a scan beats bisect's overhead.
    return any(lo <= value <= hi for lo, hi in ranges)


@dataclass(frozen=True)
class AddressMatcher:
    """A header address field, resolved: inclusive integer ranges per IP version.

    Negation is applied at compile time (`!$HOME_NET` becomes the ranges outside
    it, per IP version as Suricata does), so the engine only ever asks "is this
    address in one of the ranges".
    """

    v4: tuple[IntRange, ...]
    v6: tuple[IntRange, ...]

    @property
    def is_any(self) -> bool:
        return self.v4 == ((0, 2**32 - 1),) and self.v6 == ((0, 2**128 - 1),)

    def matches(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        return _in_ranges(self.v4 if ip.version == 4 else self.v6, int(ip))


@dataclass(frozen=True)
class PortMatcher:
    """A header port field, resolved to inclusive ranges (negation applied)."""

    ranges: tuple[IntRange, ...]

    @property
    def is_any(self) -> bool:
        return self.ranges == ((0, 65535),)

    def matches(self, port: int) -> bool:
        return _in_ranges(self.ranges, port)


@dataclass(frozen=True)
class NumberCheck:
    """Suricata's integer comparison (`dsize`, `bsize`, `urilen`, `itype`, ...).

    `op` is one of `=`, `!=`, `<`, `<=`, `>`, `>=`, `<>` (exclusive range, `value`..`high`).
    """

    op: Literal["=", "!=", "<", "<=", ">", ">=", "<>"]
    value: int
    high: int | None = None

    def matches(self, n: int) -> bool:
        if self.op == "=":
            return n == self.value
        if self.op == "!=":
            return n != self.value
        if self.op == "<":
            return n < self.value
        if self.op == "<=":
            return n <= self.value
        if self.op == ">":
            return n > self.value
        if self.op == ">=":
            return n >= self.value
        assert self.high is not None
        return self.value < n < self.high


@dataclass(frozen=True)
class ContentMatch:
    """One `content` keyword with its modifiers.

    `hs_expression` is the literal with every byte that is not a word character
    written as `\\xHH`, ready for Hyperscan; `hs_flags` holds HS_FLAG_CASELESS for
    `nocase`. Position constraints are kept as Suricata states them; `relative`
    means "after the previous match in the same buffer" (distance/within).
    """

    pattern: bytes
    hs_expression: str
    hs_flags: int
    negated: bool = False
    nocase: bool = False
    offset: int | None = None
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    startswith: bool = False
    endswith: bool = False
    fast_pattern: bool = False  # chosen explicitly with `fast_pattern`
    fast_pattern_only: bool = False
    fast_pattern_chop: IntRange | None = None  # (offset, length) of `fast_pattern:O,L`

    @property
    def relative(self) -> bool:
        return self.distance is not None or self.within is not None

    @property
    def end_bounds(self) -> tuple[int, int | None]:
        """Where a match may end in its buffer, from the absolute constraints only
        (offset, depth, startswith): Hyperscan's `min_offset`/`max_offset` for the
        pattern. `depth` counts from `offset`, as in Suricata."""
        start = self.offset or 0
        low = start + len(self.pattern)
        high = start + self.depth if self.depth is not None else None
        if self.startswith:
            high = low if high is None else min(high, low)
        return low, high


@dataclass(frozen=True)
class PcreMatch:
    """One `pcre` keyword translated to Hyperscan syntax.

    `source` is the regex as written in the rule; `hs_expression` + `hs_flags`
    compile in Hyperscan (checked at load time). `relative` is PCRE flag `R`.
    """

    source: str
    hs_expression: str | None  # None when Hyperscan cannot express it; the engine verifies with PCRE2
    hs_flags: int
    negated: bool = False
    relative: bool = False
    options: str = ""  # PCRE modifiers as written (`i`, `s`, `R`, `U`, ...)


@dataclass(frozen=True)
class DataAt:
    """`isdataat:[!]N[,relative]`: data present (or, negated, absent) at offset N."""

    offset: int
    relative: bool = False
    negated: bool = False


@dataclass(frozen=True)
class ByteTest:
    """`byte_test:bytes,[!]op,value,offset[,relative][,big|little][,string,dec|hex|oct][,bitmask M]`:
    read `nbytes` at `offset` (after the previous match when `relative`) as a number and compare it.
    `op` is one of `<`, `>`, `=`, `<=`, `>=`, `&` (any bit of value set), `^` (any bit of value clear)."""

    nbytes: int
    op: str
    value: int
    offset: int
    relative: bool = False
    little: bool = False
    string: str | None = None  # "dec", "hex" or "oct": the bytes are digits
    bitmask: int | None = None
    negated: bool = False


@dataclass(frozen=True)
class ByteJump:
    """`byte_jump:bytes,offset[,relative][,multiplier N][,big|little][,string,dec|hex|oct][,align]
    [,from_beginning|from_end][,post_offset N][,bitmask M]`: read a length and move the cursor past it,
    so that later relative matches start there."""

    nbytes: int
    offset: int
    relative: bool = False
    little: bool = False
    string: str | None = None
    multiplier: int = 1
    align: bool = False
    from_beginning: bool = False
    from_end: bool = False
    post_offset: int = 0
    bitmask: int | None = None


Match = ContentMatch | PcreMatch | DataAt | ByteTest | ByteJump


@dataclass(frozen=True)
class BufferMatches:
    """The matches one buffer must satisfy, in rule order, plus its size check (`bsize`/`urilen`).

    `transforms` (e.g. `("dotprefix",)`) are applied to the buffer, in order, before
    matching; the same buffer with other transforms is another `BufferMatches`.
    """

    buffer: str
    matches: tuple[Match, ...]
    size: NumberCheck | None = None
    transforms: tuple[str, ...] = ()

    @property
    def contents(self) -> tuple[ContentMatch, ...]:
        return tuple(m for m in self.matches if isinstance(m, ContentMatch))


@dataclass(frozen=True)
class FastPattern:
    """The literal the prefilter looks for: a rule is only evaluated when it occurs in `buffer`."""

    buffer: str
    index: int  # into that buffer's `matches`
    pattern: bytes  # after `fast_pattern:O,L` chopping
    nocase: bool
    only: bool  # the content needs no verification beyond the prefilter hit
    transforms: tuple[str, ...] = ()  # of its buffer


@dataclass(frozen=True)
class FlowConstraint:
    """`flow:` options; None means "not constrained"."""

    direction: Literal["to_server", "to_client"] | None = None
    state: Literal["established", "not_established", "stateless"] | None = None
    stream: Literal["only_stream", "no_stream"] | None = None
    fragments: Literal["only_frag", "no_frag"] | None = None


@dataclass(frozen=True)
class FlowbitOp:
    """One `flowbits:` command; `names` joined by `|` (any of) for isset/isnotset, else one name."""

    command: Literal["set", "isset", "isnotset", "unset", "toggle"]
    names: tuple[str, ...]


@dataclass(frozen=True)
class Threshold:
    """`threshold` or `detection_filter`."""

    kind: Literal["limit", "threshold", "both", "detection_filter"]
    track: Literal["by_src", "by_dst", "by_rule", "by_both", "by_flow"]
    count: int
    seconds: int


@dataclass(frozen=True)
class CompiledSignature:
    """One loaded rule, everything resolved; `file`/`line` say where it was written."""

    sid: int
    gid: int
    rev: int
    msg: str
    action: Action
    protocol: str  # as written, e.g. "http", "tcp-pkt"
    transport: Literal["ip", "tcp", "udp", "icmp", "sctp", "tcp/udp", "arp"]
    app_proto: str | None  # "http", "tls", "dns", ... when the protocol is an app-layer one
    src: AddressMatcher
    src_ports: PortMatcher
    direction: Direction
    dst: AddressMatcher
    dst_ports: PortMatcher
    classtype: str | None
    category: str  # the classtype's description, "" without one (EVE's alert.category)
    priority: int  # from `priority:` or the classtype; 3 when neither says (Suricata's default)
    flow: FlowConstraint
    flowbits: tuple[FlowbitOp, ...]
    noalert: bool
    dsize: NumberCheck | None
    threshold: Threshold | None
    detection_filter: Threshold | None
    buffers: tuple[BufferMatches, ...]
    fast_pattern: FastPattern | None
    tcp_flags: str | None = None  # `flags:` as written (e.g. "S,12"), verified by the engine
    icmp_type: NumberCheck | None = None
    icmp_code: NumberCheck | None = None
    ip_proto: int | None = None  # `ip_proto:` (a number; on `ip` rules it is the rule's transport)
    target: Literal["src_ip", "dest_ip"] | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    references: tuple[tuple[str, str], ...] = ()
    file: str = ""
    line: int = 0

    @property
    def severity(self) -> int:
        # EVE's alert.severity is the rule's priority.
        return self.priority

    def buffer(self, name: str) -> BufferMatches | None:
        return next((b for b in self.buffers if b.buffer == name), None)


@dataclass(frozen=True)
class Skipped:
    """A rule that did not load. `reason` is the category counted by `counts_by_reason`;
    `detail` says exactly what was wrong (the offending text)."""

    file: str
    line: int
    sid: int | None
    reason: str
    detail: str = ""

    @property
    def unsupported(self) -> bool:
        """True when the rule is valid Suricata but uses something we do not implement."""
        return self.reason.startswith(("unsupported ", "pcre unsupported"))

    def __str__(self) -> str:
        sid = f"sid {self.sid}" if self.sid is not None else "no sid"
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.file}:{self.line}: {sid}: {self.reason}{detail}"


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[CompiledSignature, ...]
    skipped: tuple[Skipped, ...]
    seconds: float = field(default=0.0, compare=False)  # wall time of load_rules

    def counts_by_reason(self) -> dict[str, int]:
        """Skip counts, most frequent reason first."""
        return dict(Counter(s.reason for s in self.skipped).most_common())
