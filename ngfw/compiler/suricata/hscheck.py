"""Does Hyperscan accept this regex? Answered without building a database when possible.

Building a Hyperscan database for one regex takes about 3 ms, which is most of
the time ET Open takes to load (≈1,400 distinct pcres). Hyperscan's own
`hs_expression_info()` parses and analyses a regex the same way but stops short
of building bytecode (≈0.1 ms), so we call it in libhs — the library the fastpath
links — when it can be loaded. Without libhs, the PyPI binding compiles the regex,
which gives the same answers more slowly. `NGFW_HS_CHECK=compile` forces the latter.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable
from functools import lru_cache

import hyperscan

# (error message or None, whether the regex can match the empty string)
Verdict = tuple[str | None, bool]


class _CompileError(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char_p), ("expression", ctypes.c_int)]


class _ExprInfo(ctypes.Structure):
    _fields_ = [
        ("min_width", ctypes.c_uint),
        ("max_width", ctypes.c_uint),
        ("unordered_matches", ctypes.c_char),
        ("matches_at_eod", ctypes.c_char),
        ("matches_only_at_eod", ctypes.c_char),
    ]


def _load_expression_info() -> Callable[[bytes, int, bool], Verdict] | None:
    name = ctypes.util.find_library("hs") or "libhs.so.5"
    try:
        lib = ctypes.CDLL(name)
        libc = ctypes.CDLL(None)
        info_fn = lib.hs_expression_info
        free_error = lib.hs_free_compile_error
    except (OSError, AttributeError):
        return None
    info_fn.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.POINTER(ctypes.POINTER(_ExprInfo)),
                        ctypes.POINTER(ctypes.POINTER(_CompileError))]
    info_fn.restype = ctypes.c_int
    free_error.argtypes = [ctypes.POINTER(_CompileError)]
    libc.free.argtypes = [ctypes.c_void_p]

    def check(expression: bytes, flags: int, stream: bool) -> Verdict:
        info = ctypes.POINTER(_ExprInfo)()
        error = ctypes.POINTER(_CompileError)()
        status = info_fn(expression, flags, ctypes.byref(info), ctypes.byref(error))
        if status != 0:
            message = error.contents.message.decode("utf-8", "replace") if error else f"hs error {status}"
            if error:
                free_error(error)
            return message, False
        empty = info.contents.min_width == 0
        # hs_expression_info allocates with Hyperscan's misc allocator, malloc by default.
        libc.free(ctypes.cast(info, ctypes.c_void_p))
        return None, empty

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


@lru_cache(maxsize=None)
def check(expression: str, flags: int, stream: bool, method: str | None = None) -> Verdict:
    """Hyperscan's verdict on `expression` (ASCII) with `flags`: (error or None, can match empty).

    `method` picks "expression_info" or "compile" (tests compare the two); None uses the fast one.
    """
    data = expression.encode("ascii")
    if (method or METHOD) == "expression_info" and _expression_info is not None:
        return _expression_info(data, flags, stream)
    return _compile_check(data, flags, stream)
