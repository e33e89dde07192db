"""Does Hyperscan accept this regex? Answered without building a database when possible.

Building a Hyperscan database for one regex takes about 3 ms, which is most of
the time ET Open takes to load (≈1,400 distinct pcres). Hyperscan's own
`hs_expression_info()` parses and analyses a regex the same way but stops short
of building bytecode (≈0.1 ms); the compiled fastpath, which links libhs, exposes
it (`engine.hs_expression_check`). Without the fastpath, the PyPI binding compiles
the regex, which gives the same answers more slowly. `NGFW_HS_CHECK=compile` forces
the latter.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache

import hyperscan

# (error message or None, whether the regex can match the empty string)
Verdict = tuple[str | None, bool]


def _load_expression_info() -> Callable[[bytes, int, bool], Verdict] | None:
    try:
        from ngfw._fastpath.engine import hs_expression_check
    except ImportError:  # not built (tooling without the extension): compile instead
        return None

    def check(expression: bytes, flags: int, stream: bool) -> Verdict:
        # the verdict does not depend on the mode: hs_expression_info analyses the pattern alone
        error, empty = hs_expression_check(expression, flags)
        return error, empty

    return check


def _compile_check(expression: bytes, flags: int, stream: bool) -> Verdict:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_STREAM if stream else hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(expressions=[expression], ids=[0], flags=[flags])
    except hyperscan.error as exc:
        message = str(exc.args[0]) if exc.args else "compile error"
        if "empty" in message.lower() and not flags & hyperscan.HS_FLAG_ALLOWEMPTY:
            again, _ = _compile_check(expression, flags | hyperscan.HS_FLAG_ALLOWEMPTY, stream)
            return again, again is None
        return message, False
    return None, False


_expression_info = None if os.environ.get("NGFW_HS_CHECK") == "compile" else _load_expression_info()
METHOD = "expression_info" if _expression_info is not None else "compile"


@cache
def check(expression: str, flags: int, stream: bool, method: str | None = None) -> Verdict:
    """Hyperscan's verdict on `expression` (ASCII) with `flags`: (error or None, can match empty).

    `method` picks "expression_info" or "compile" (tests compare the two); None uses the fast one.
    """
    data = expression.encode("ascii")
    if (method or METHOD) == "expression_info" and _expression_info is not None:
        return _expression_info(data, flags, stream)
    return _compile_check(data, flags, stream)
