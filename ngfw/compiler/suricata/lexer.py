"""Splits rule files into rules, and a rule into header tokens and `key: value` options.

Follows Suricata's own tokenizer rather than a general grammar: options end at
an unescaped `;` whether or not it sits inside quotes (Suricata requires `\\;`
there), a trailing backslash continues a rule on the next line, and `#` starts
a comment line (a disabled rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass


def is_decimal(text: str) -> bool:
    """ASCII digits only: str.isdigit() also holds for '²' and other digits int() refuses (fuzzing found it)."""
    return text.isascii() and text.isdigit()


class RuleError(Exception):
    """A rule that cannot load. `reason` is the counted category, `detail` the specifics."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class RawRule:
    text: str
    line: int  # first physical line of the rule, 1-based


# (name, value): value is None for bare keywords such as `nocase`. A plain tuple, not a
# class: ET Open has 345,000 options and constructing anything richer shows in load time.
Option = tuple[str, str | None]


def read_rules(text: str) -> Iterator[RawRule]:
    """Logical rules of a file: comments and blank lines dropped, continuations joined."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending:
            if not line or line.startswith("#"):
                continue
            start = number
        if line.endswith("\\") and not line.endswith("\\\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield RawRule(" ".join(p.strip() for p in pending).strip(), start)
        pending = []
    if pending:
        # A continuation on the last line: still a rule, parsed (and probably rejected) as is.
        yield RawRule(" ".join(p.strip() for p in pending).strip(), start)


def split_rule(text: str) -> tuple[list[str], str]:
    """(header tokens, option text between the outer parentheses)."""
    open_at = text.find("(")
    if open_at < 0:
        raise RuleError("malformed rule", "no option list: missing '('")
    if not text.endswith(")"):
        raise RuleError("malformed rule", "unbalanced parentheses: rule does not end with ')'")
    header = _header_tokens(text[:open_at])
    return header, text[open_at + 1 : -1]


def _header_tokens(header: str) -> list[str]:
    """Whitespace-separated tokens, except that spaces inside `[...]` lists do not split."""
    if "[" not in header and "]" not in header:
        return header.split()
    tokens: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in header:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise RuleError("malformed rule", "unbalanced brackets in header")
        if ch.isspace() and depth == 0:
            if current:
                tokens.append("".join(current))
                current = []
            continue
        if not ch.isspace():
            current.append(ch)
    if depth:
        raise RuleError("malformed rule", "unbalanced brackets in header")
    if current:
        tokens.append("".join(current))
    return tokens


# One option: a name, then optionally `:` and a value running to an unescaped `;`
# (a backslash escapes any character, the `;` included).
# The value is written as an unrolled loop (runs of plain characters between escapes),
# several times faster in `re` than the equivalent `(?:[^;\\]|\\.)*`.
_OPTION = re.compile(r"\s*([^\s:;\\]+)\s*(?:(:)\s*([^;\\]*(?:\\.[^;\\]*)*))?;")
_ALL_OPTIONS = re.compile(r"(?:\s*[^\s:;\\]+\s*(?::[^;\\]*(?:\\.[^;\\]*)*)?;)*\s*")
# A `"` preceded by an even number of backslashes (zero included) is not escaped.
_BARE_QUOTE = re.compile(r'(?:^|[^\\])(?:\\\\)*"')
_ESCAPE = re.compile(r"\\(.)")


def split_options(body: str) -> list[Option]:
    """`msg:"x"; nocase; content:"a\\;b";` -> options; escapes are kept for the keyword to interpret."""
    if _ALL_OPTIONS.fullmatch(body) is None:
        _raise_at_bad_option(body)
    # findall runs in C: ET Open has 345,000 options and a Python loop over them shows.
    return [(name.lower(), value.rstrip() if colon else None) for name, colon, value in _OPTION.findall(body)]


def _raise_at_bad_option(body: str) -> None:
    position = 0
    while (found := _OPTION.match(body, position)) is not None:
        position = found.end()
    # Suricata requires the last option to be terminated too; a missing `;` usually
    # means an unescaped quote or parenthesis swallowed the end of the rule.
    raise RuleError("malformed rule", f"bad or unterminated option: {body[position:].strip()[:60]!r}")


def unquote(value: str | None, keyword: str) -> str:
    """The text between the quotes of a quoted option value (escapes kept)."""
    if value is None:
        raise RuleError("malformed rule", f"{keyword} needs a value")
    value = value.strip()
    if not value.startswith('"'):
        raise RuleError("malformed rule", f"{keyword} needs a quoted value: {value[:60]!r}")
    if len(value) < 2 or not value.endswith('"') or _ends_escaped(value[:-1]):
        raise RuleError("unbalanced quotes", f"{keyword}:{value[:60]}")
    inner = value[1:-1]
    _check_quotes_escaped(inner, keyword)
    return inner


def _ends_escaped(text: str) -> bool:
    # The closing quote is escaped when an odd number of backslashes precede it.
    count = len(text) - len(text.rstrip("\\"))
    return count % 2 == 1


def _check_quotes_escaped(inner: str, keyword: str) -> None:
    if '"' in inner and _BARE_QUOTE.search(inner):
        raise RuleError("unbalanced quotes", f"unescaped '\"' inside {keyword}")


def unescape(text: str) -> str:
    """Suricata's string escapes: `\\;` `\\"` `\\\\` `\\:` `\\,` stand for the character itself."""
    return _ESCAPE.sub(r"\1", text) if "\\" in text else text
