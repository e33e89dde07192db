"""Request input of the control API, checked before use: JSON and YAML bodies, numbers, durations.

Each refusal is an `ApiError(400)` whose one sentence names the bad value. The checks run
before anything that could fail worse: JSON nested deeper than `MAX_NESTING` is refused
before `json.loads` recurses (a few thousand `[` would end in a RecursionError), numbers
are bounded before they reach the store (SQLite's integers are 64-bit), and a YAML body
(which may hold aliases: one small document can expand to billions of nodes) is walked
with a depth and node budget before anything encodes it.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from typing import Any

from ngfw.control.service import STORE_INT_MAX, ApiError

MAX_NESTING = 64  # a policy document nests ~7 deep; nothing legitimate comes near this
MAX_NODES = 2_000_000  # values in one YAML document (10,000 rules are ~300,000)

_QUOTES_AND_BRACKETS = b'"[]{}'
_NOT_QUOTES_OR_BRACKETS = bytes(sorted(set(range(256)) - set(_QUOTES_AND_BRACKETS)))
_OPENERS_CLOSERS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_STRING = re.compile(rb'"[^"]*+"?')  # in the quotes-and-brackets stream; unterminated: to the end
_BLOCK = 1 << 16


def json_too_deep(text: bytes, limit: int = MAX_NESTING) -> int | None:
    """None if the arrays and objects of JSON `text` nest at most `limit` deep, else a depth over it.

    Without recursion, and without a Python loop over the body: escaped backslashes and quotes
    go first (every quote left opens or closes a string), then everything but quotes and
    brackets, then every two adjacent quotes (an empty string, or the end of one string and the
    start of the next: either way what was inside a string stays inside). Left are the brackets
    and the few strings that hold brackets, which a regular expression removes. Openers count
    +1, closers -1: the deepest point is the largest running sum. The stream is read in blocks,
    so a body of 60 million `[` is refused after the first block.
    """
    if text.count(b"[") + text.count(b"{") <= limit:
        return None
    unescaped = text.replace(b"\\\\", b"").replace(b'\\"', b"")
    stream = unescaped.translate(None, _NOT_QUOTES_OR_BRACKETS).replace(b'""', b"")
    depth = deepest = 0
    in_string = False
    for start in range(0, len(stream), _BLOCK):
        block = stream[start : start + _BLOCK]
        ends_in_string = in_string ^ bool(block.count(b'"') & 1)
        # a block that starts inside a string gets the string's opening quote back
        brackets = _STRING.sub(b"", b'"' + block if in_string else block).translate(_OPENERS_CLOSERS)
        in_string = ends_in_string
        running = itertools.accumulate(memoryview(brackets).cast("b"), initial=depth)
        deepest = max(deepest, max(running))
        depth += brackets.count(b"\x01") - brackets.count(b"\xff")
        if deepest > limit:
            return deepest
    return None


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ApiError(400, f"the body is not JSON: {name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400: JSON, but no number a float (or the store) can hold
        raise ApiError(400, f"the number {_shown(text)} in the body is out of range")
    return number


def parse_json(body: bytes) -> Any:
    """The JSON value of a request body; 400 for anything but UTF-8 JSON within `MAX_NESTING`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"the body is not UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start}") from None
    depth = json_too_deep(body)
    if depth is not None:
        raise ApiError(
            400, f"the body nests arrays and objects {depth} deep (at least), more than the {MAX_NESTING} accepted"
        ) from None
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as exc:
        raise ApiError(400, f"the body is not JSON: {exc}") from None
    except RecursionError:  # not reached after the nesting check; kept so that no input can make a 500
        raise ApiError(400, "the body nests arrays and objects too deep") from None
    if _SURROGATE_ESCAPE.search(body):
        # \ud83d\ude00 is an emoji; \ud800 alone is no character, and nothing could store or encode it
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ApiError(
                400,
                f"the body has a lone UTF-16 surrogate (\\u{ord(exc.object[exc.start]):04x}), which is no character",
            ) from None
    return value


def check_nesting(value: Any, what: str = "the body") -> None:
    """Refuse `value` (parsed YAML) if it nests deeper than `MAX_NESTING` or holds more than
    `MAX_NODES` values, counting a value reached through several aliases each time."""
    if not isinstance(value, (dict, list)):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    nodes = 1
    while stack:
        current, depth = stack.pop()
        if depth > MAX_NESTING:
            raise ApiError(400, f"{what} nests mappings and sequences deeper than the {MAX_NESTING} accepted")
        children = current.values() if isinstance(current, dict) else current
        nodes += len(children)
        if nodes > MAX_NODES:
            raise ApiError(400, f"{what} expands to more than {MAX_NODES} values (YAML aliases?)")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def parse_int(
    value: str | None, name: str, default: int | None = None, low: int = -STORE_INT_MAX - 1, high: int = STORE_INT_MAX
) -> int | None:
    """`value` as an integer in [low, high]; `default` when absent or empty."""
    if value is None or value == "":
        return default
    try:
        # int() of a 100,000-digit string is refused by Python itself (ValueError): no cost to bound
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer (got {_shown(value)})") from None
    if not low <= number <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high} (got {_shown(value)})")
    return number


def parse_seconds(value: str | None, name: str, high: float) -> float:
    """A duration in seconds (`value` absent: 0); values above `high` count as `high`."""
    if value is None or value == "":
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        raise ApiError(400, f"{name} must be a number of seconds (got {_shown(value)})") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ApiError(400, f"{name} must be a number of seconds from 0 (got {_shown(value)})")
    return min(seconds, high)


def _shown(value: str) -> str:
    """`value` quoted for a message, cut short: a message must stay one readable sentence."""
    return repr(value if len(value) <= 40 else value[:40] + "...")
