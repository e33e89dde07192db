"""Content strings and pcre regexes, turned into what Hyperscan compiles.

Contents become escaped literals. A pcre is passed to Hyperscan as written
(its syntax is PCRE's) with its flags mapped; whether Hyperscan accepts it is
decided by compiling it, because only Hyperscan knows exactly which constructs it
supports (back-references and lookarounds are the usual refusals).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import hyperscan

from ngfw.compiler.suricata import hscheck
from ngfw.compiler.suricata.buffers import PCRE_BUFFER_FLAGS
from ngfw.compiler.suricata.lexer import RuleError

_HEX = set("0123456789abcdefABCDEF")
# Characters Suricata lets a content string escape with a backslash.
_CONTENT_ESCAPES = set(':;\\",')
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# byte value -> its text in a Hyperscan literal; str.translate applies it in C.
_LITERAL = {b: (chr(b) if b in _WORD else f"\\x{b:02x}") for b in range(256)}


def rule_bytes(text: str) -> bytes:
    # Rule files are read with surrogateescape, so this recovers the file's exact bytes.
    return text.encode("utf-8", errors="surrogateescape")


def parse_content(inner: str) -> bytes:
    """The bytes of a content string (already unquoted): text, `|41 42|` hex, escapes."""
    out = bytearray()
    i, n = 0, len(inner)
    while i < n:
        ch = inner[i]
        if ch == "|":
            end = inner.find("|", i + 1)
            if end < 0:
                raise RuleError("bad hex in content", f"unterminated '|' in {inner[:60]!r}")
            digits = inner[i + 1 : end].replace(" ", "").replace("\t", "")
            if len(digits) % 2 or any(d not in _HEX for d in digits):
                raise RuleError("bad hex in content", f"|{inner[i + 1 : end]}|")
            out += bytes.fromhex(digits)
            i = end + 1
        elif ch == "\\":
            if i + 1 >= n or inner[i + 1] not in _CONTENT_ESCAPES:
                raise RuleError("malformed rule", f"bad escape in content {inner[i : i + 2]!r}")
            out += rule_bytes(inner[i + 1])
            i += 2
        else:
            # Take the run of plain text up to the next special character in one go.
            j = i
            while j < n and inner[j] not in "|\\":
                j += 1
            out += rule_bytes(inner[i:j])
            i = j
    if not out:
        raise RuleError("malformed rule", "empty content")
    return bytes(out)


def literal_expression(pattern: bytes) -> str:
    """A Hyperscan expression matching exactly `pattern`: word bytes as-is, others as \\xHH."""
    return pattern.decode("latin-1").translate(_LITERAL)


@dataclass(frozen=True)
class ParsedPcre:
    source: str
    hs_expression: str | None  # None: Hyperscan cannot express it (the engine's PCRE2 still can)
    hs_flags: int
    negated: bool
    relative: bool
    buffer: str | None  # from a buffer flag such as /U, else None
    options: str = ""  # the modifiers as written after the closing slash


def parse_pcre(value: str | None, stream: bool) -> ParsedPcre:
    """`pcre:[!]"/regex/flags"` -> Hyperscan expression and flags, or RuleError.

    `stream` selects the Hyperscan mode the expression is checked in: streaming for
    the payload, block for bounded sticky buffers, matching how the engine scans them.
    """
    if value is None:
        raise RuleError("bad pcre", "pcre needs a value")
    text = value.strip()
    negated = text.startswith("!")
    if negated:
        text = text[1:].strip()
    if len(text) < 2 or not text.startswith('"') or not text.endswith('"'):
        raise RuleError("unbalanced quotes", f"pcre:{value[:60]}")
    text = text[1:-1]
    if text.startswith("!"):
        negated, text = True, text[1:]
    last = text.rfind("/")
    if not text.startswith("/") or last <= 0:
        raise RuleError("bad pcre", f"not /regex/flags: {text[:60]!r}")
    regex, flags_text = text[1:last], text[last + 1 :]
    hs_flags = 0
    prefix = ""
    anchored = relative = False
    buffer: str | None = None
    for flag in flags_text:
        if flag == "i":
            hs_flags |= hyperscan.HS_FLAG_CASELESS
        elif flag == "s":
            hs_flags |= hyperscan.HS_FLAG_DOTALL
        elif flag == "m":
            hs_flags |= hyperscan.HS_FLAG_MULTILINE
        elif flag == "x":
            prefix = "(?x)"
        elif flag == "A":
            anchored = True
        elif flag == "R":
            relative = True
        elif flag in "GBO":
            # G (ungreedy) cannot change whether a regex matches, only which match PCRE
            # reports; B (rawbytes) and O (match-limit override) do not apply to Hyperscan.
            pass
        elif flag == "E":
            pass  # PCRE2_DOLLAR_ENDONLY in the engine
        elif flag in PCRE_BUFFER_FLAGS:
            if buffer is not None and buffer != PCRE_BUFFER_FLAGS[flag]:
                raise RuleError("bad pcre", f"conflicting buffer flags {flags_text!r}")
            buffer = PCRE_BUFFER_FLAGS[flag]
        else:
            raise RuleError("bad pcre", f"unknown flag {flag!r} in /{flags_text}")
    body = _ascii_expression(regex)
    if anchored:
        # In extended mode a trailing `# comment` would swallow the closing parenthesis;
        # a newline ends the comment and is itself ignored there.
        body = f"\\A(?:{body}{chr(10) if prefix else ''})"
    expression = prefix + body
    hs_expression: str | None = expression
    try:
        hs_flags = _checked(expression, hs_flags, stream)
    except RuleError as exc:
        # back-references, lookarounds and the like: the engine verifies candidates with PCRE2,
        # as Suricata does, so only a regex neither can read is refused
        if not exc.reason.startswith("pcre unsupported by Hyperscan"):
            raise
        hs_expression = None
    return ParsedPcre(regex, hs_expression, hs_flags, negated, relative, buffer, flags_text)


def _ascii_expression(regex: str) -> str:
    # Bytes outside ASCII (UTF-8 text in the rule) become \xHH so the expression is
    # pure ASCII and means the same bytes in Hyperscan's non-UTF-8 mode.
    if regex.isascii():
        return regex
    return "".join(c if c.isascii() else "".join(f"\\x{b:02x}" for b in rule_bytes(c)) for c in regex)


_INDEX = re.compile(r"\s+at index \d+")


def _checked(expression: str, flags: int, stream: bool) -> int:
    """The flags to compile `expression` with (HS_FLAG_ALLOWEMPTY added when needed), or RuleError."""
    error, matches_empty = hscheck.check(expression, flags, stream)
    if error is None:
        # A regex that can match nothing (e.g. /x?/) still means something to PCRE;
        # Hyperscan refuses it unless told so.
        return flags | hyperscan.HS_FLAG_ALLOWEMPTY if matches_empty else flags
    message = _INDEX.sub("", error).rstrip(".")
    lowered = message.lower()
    if "support" in lowered or "too large" in lowered or "resource" in lowered:
        raise RuleError(f"pcre unsupported by Hyperscan: {message}", expression[:80])
    raise RuleError("bad pcre", f"{message}: {expression[:80]}")
