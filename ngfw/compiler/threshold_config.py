"""Suricata's threshold.config: `suppress`, `threshold`/`event_filter` and `rate_filter` lines, parsed.

The syntax is Suricata 7's (`util-threshold-config.c`), so an operator's existing file pastes
into a ThreatProfile's `thresholds` as it is:

    suppress gen_id GID, sig_id SID[, track by_src|by_dst|by_either, ip ADDRESSES]
    threshold gen_id GID, sig_id SID, type limit|threshold|both, track by_src|by_dst|by_both|by_rule,
              count N, seconds T                          (event_filter: the same)
    rate_filter gen_id GID, sig_id SID, track by_src|by_dst|by_both|by_rule, count N, seconds T,
                new_action alert|drop|reject|pass, timeout T

`gen_id 0, sig_id 0` means every rule, `gen_id G, sig_id 0` every rule of generator G; a sid with
gen_id 0 is refused (as Suricata refuses it). Lines may continue with a trailing `\\`; `#` starts a
comment. Where Suricata logs an error and carries on without the line, this refuses it and names
the line: a policy is checked whole before it runs. What is not taken: address variables in `ip`
(`$HOME_NET`: a policy does not know the hosts' `--var`), `new_action log|sdrop` (Suricata 7 parses
them and does nothing with them).
"""

from __future__ import annotations

import ipaddress
import re

from ngfw.values import value

IntRange = tuple[int, int]  # inclusive
_FULL = {4: (0, (1 << 32) - 1), 6: (0, (1 << 128) - 1)}

SUPPRESS = "suppress"
THRESHOLD = "threshold"
RATE_FILTER = "rate_filter"

_BASE = re.compile(
    r"^\s*(event_filter|threshold|rate_filter|suppress)\s+gen_id\s+(\d+)\s*,\s*sig_id\s+(\d+)\s*(.*?)\s*$"
)
_THRESHOLD = re.compile(
    r"^,\s*type\s+(limit|both|threshold)\s*,\s*track\s+(by_dst|by_src|by_both|by_rule)\s*,"
    r"\s*count\s+(\d+)\s*,\s*seconds\s+(\d+)$"
)
_RATE = re.compile(
    r"^,\s*track\s+(by_dst|by_src|by_both|by_rule)\s*,\s*count\s+(\d+)\s*,\s*seconds\s+(\d+)\s*,"
    r"\s*new_action\s+(\w+)\s*,\s*timeout\s+(\d+)$"
)
_SUPPRESS = re.compile(r"^,\s*track\s+(by_dst|by_src|by_either)\s*,\s*ip\s+(.+)$")
_U32 = (1 << 32) - 1
NEW_ACTIONS = ("alert", "drop", "reject", "pass")


@value
class ThresholdEntry:
    """One line of a threshold.config. `sid` 0: every rule (of `gid`, or of every generator when `gid`
    is 0 too). `v4`/`v6`: a suppress line's `ip`, as inclusive integer ranges (empty: no `ip`, the
    rule's alerts are suppressed wherever they come from)."""

    kind: str  # suppress | threshold | rate_filter
    gid: int
    sid: int
    line: int  # 1-based, in the text it came from
    text: str
    type: str = ""  # threshold: limit | threshold | both
    track: str = ""  # by_src | by_dst | by_both | by_rule | by_either (suppress)
    count: int = 0
    seconds: int = 0
    new_action: str = ""  # rate_filter
    timeout: int = 0  # rate_filter: seconds the new action lasts
    v4: tuple[IntRange, ...] = ()
    v6: tuple[IntRange, ...] = ()

    @property
    def signature(self) -> str:
        return (
            "every rule"
            if self.sid == 0 and self.gid == 0
            else f"every rule of gid {self.gid}"
            if self.sid == 0
            else f"{self.gid}:{self.sid}"
        )


class ThresholdConfigError(ValueError):
    """A line that is not threshold.config; `line` is its number (1-based), the message names it."""

    def __init__(self, line: int, text: str, reason: str) -> None:
        self.line = line
        self.text = text
        self.reason = reason
        super().__init__(f"line {line}: {reason} (got {text!r})")


def logical_lines(source: str | list[str] | tuple[str, ...]) -> list[tuple[int, str]]:
    """(first line number, text) of each non-empty, non-comment line; `\\` at the end joins the next."""
    physical = source.splitlines() if isinstance(source, str) else [str(item) for item in source]
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(physical, 1):
        text = raw.strip()
        if not pending:
            start = number
            if not text or text.startswith("#"):
                continue
        if text.endswith("\\"):
            pending.append(text[:-1])
            continue
        pending.append(text)
        out.append((start, " ".join(p.strip() for p in pending).strip()))
        pending = []
    if pending:
        out.append((start, " ".join(p.strip() for p in pending).strip()))
    return out


def _number(text: str, what: str, number: int, line: str) -> int:
    value = int(text)
    if value > _U32:
        raise ThresholdConfigError(number, line, f"{what} {value} is larger than 4294967295")
    return value


def parse_line(number: int, line: str) -> ThresholdEntry:
    base = _BASE.match(line)
    if base is None:
        raise ThresholdConfigError(
            number,
            line,
            "expected `suppress|threshold|event_filter|rate_filter gen_id N, "
            "sig_id N, ...` (lower case, as Suricata reads it)",
        )
    word, gid_text, sid_text, rest = base.groups()
    gid = _number(gid_text, "gen_id", number, line)
    sid = _number(sid_text, "sig_id", number, line)
    if sid and not gid:
        raise ThresholdConfigError(
            number, line, f"sig_id {sid} needs its gen_id (normally 1): gen_id 0 is for sig_id 0 only (every rule)"
        )
    if word == SUPPRESS:
        if not rest:
            return ThresholdEntry(SUPPRESS, gid, sid, number, line)
        found = _SUPPRESS.match(rest)
        if found is None:
            raise ThresholdConfigError(
                number,
                line,
                "a suppress line continues with `, track by_src|by_dst|by_either, ip ADDRESSES` or ends after sig_id",
            )
        track, addresses = found.groups()
        v4, v6 = _addresses(addresses, number, line)
        return ThresholdEntry(SUPPRESS, gid, sid, number, line, track=track, v4=v4, v6=v6)
    if word == RATE_FILTER:
        found = _RATE.match(rest)
        if found is None:
            raise ThresholdConfigError(
                number,
                line,
                "expected `rate_filter gen_id N, sig_id N, track by_src|by_dst|"
                "by_both|by_rule, count N, seconds N, new_action ACTION, "
                "timeout N`",
            )
        track, count, seconds, action, timeout = found.groups()
        if action not in NEW_ACTIONS:
            why = " (Suricata 7 accepts it and does nothing with it)" if action in ("log", "sdrop") else ""
            raise ThresholdConfigError(
                number, line, f"new_action {action!r} is not one of {', '.join(NEW_ACTIONS)}{why}"
            )
        entry = ThresholdEntry(
            RATE_FILTER,
            gid,
            sid,
            number,
            line,
            track=track,
            count=_number(count, "count", number, line),
            seconds=_number(seconds, "seconds", number, line),
            new_action=action,
            timeout=_number(timeout, "timeout", number, line),
        )
    else:  # threshold and its other name, event_filter
        found = _THRESHOLD.match(rest)
        if found is None:
            raise ThresholdConfigError(
                number,
                line,
                f"expected `{word} gen_id N, sig_id N, type limit|threshold|both, "
                "track by_src|by_dst|by_both|by_rule, count N, seconds N`",
            )
        kind, track, count, seconds = found.groups()
        entry = ThresholdEntry(
            THRESHOLD,
            gid,
            sid,
            number,
            line,
            type=kind,
            track=track,
            count=_number(count, "count", number, line),
            seconds=_number(seconds, "seconds", number, line),
        )
    if entry.count == 0:
        raise ThresholdConfigError(number, line, "count must be at least 1")
    return entry


def _addresses(text: str, number: int, line: str) -> tuple[tuple[IntRange, ...], tuple[IntRange, ...]]:
    compact = "".join(text.split())
    if "$" in compact:
        raise ThresholdConfigError(
            number,
            line,
            "address variables ($HOME_NET, ...) are not taken in a policy: the "
            "dataplanes' --var may differ; write the addresses",
        )
    try:
        found = _address_expression(compact)
    except ValueError as exc:
        raise ThresholdConfigError(number, line, f"ip: {exc}") from None
    if not found[4] and not found[6]:
        raise ThresholdConfigError(number, line, f"ip: {compact!r} leaves no address")
    return found[4], found[6]


def _address_expression(text: str) -> dict[int, tuple[IntRange, ...]]:
    """Suricata's address syntax (an address, CIDR, `a-b` range, `[list]` with `!` negation), per IP version:
    a list is its positive members minus its negated ones; only negated members mean "all but them"."""
    if text.startswith("!"):
        inner = _address_expression(text[1:])
        return {v: _subtract((_FULL[v],), inner[v]) if inner[v] else () for v in (4, 6)}
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError(f"unbalanced brackets in {text!r}")
        positive: dict[int, list[IntRange]] = {4: [], 6: []}
        negative: dict[int, list[IntRange]] = {4: [], 6: []}
        for member in _members(text[1:-1]):
            into = negative if member.startswith("!") else positive
            for v, ranges in _address_expression(member.lstrip("!")).items():
                into[v].extend(ranges)
        return {
            v: _subtract(_merge(positive[v]) if positive[v] else (_FULL[v],), _merge(negative[v]))
            if positive[v] or negative[v]
            else ()
            for v in (4, 6)
        }
    try:
        if "-" in text:
            first, last = (ipaddress.ip_address(part) for part in text.split("-", 1))
            if first.version != last.version or int(first) > int(last):
                raise ValueError
            span, version = (int(first), int(last)), first.version
        else:
            network = ipaddress.ip_network(text, strict=False)
            span, version = (int(network.network_address), int(network.broadcast_address)), network.version
    except ValueError:
        raise ValueError(f"bad address {text!r}") from None
    return {4: (span,), 6: ()} if version == 4 else {4: (), 6: (span,)}


def _members(text: str) -> list[str]:
    members, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            members.append(current)
            current = ""
        else:
            current += ch
    members.append(current)
    if depth or any(not m for m in members):
        raise ValueError(f"malformed list [{text}]")
    return members


def _merge(ranges: list[IntRange]) -> tuple[IntRange, ...]:
    out: list[IntRange] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(hi, out[-1][1]))
        else:
            out.append((lo, hi))
    return tuple(out)


def _subtract(ranges: tuple[IntRange, ...], minus: tuple[IntRange, ...]) -> tuple[IntRange, ...]:
    out = list(ranges)
    for mlo, mhi in minus:
        pieces: list[IntRange] = []
        for lo, hi in out:
            if hi < mlo or lo > mhi:
                pieces.append((lo, hi))
                continue
            if lo < mlo:
                pieces.append((lo, mlo - 1))
            if mhi < hi:
                pieces.append((mhi + 1, hi))
        out = pieces
    return tuple(out)


def parse_threshold_config(source: str | list[str] | tuple[str, ...]) -> tuple[ThresholdEntry, ...]:
    """Every line, parsed; ThresholdConfigError on the first that is not threshold.config."""
    return tuple(parse_line(number, text) for number, text in logical_lines(source))
