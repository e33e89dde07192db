"""Suricata rule text: the lexer, the compiler (addresses, ports, options, contents, pcre, byte_*), then the
fastpath's inspection tables (Hyperscan and PCRE2 compiled in C) from whatever compiled."""

from __future__ import annotations

from typing import Any

from ngfw.compiler.catalogue import load_catalogue
from ngfw.compiler.suricata.addresses import resolver
from ngfw.compiler.suricata.classification import CLASSIFICATIONS
from ngfw.compiler.suricata.compile import compile_rule
from ngfw.compiler.suricata.lexer import RuleError, read_rules
from ngfw.dataplane.fastpath import engine_module

MAX_RULES = 16
CATALOGUE = load_catalogue()  # app-layer rules name the shipped apps; read once, not per input


def one_input(data: bytes) -> None:
    # rule files are read as UTF-8 with undecodable bytes kept (ngfw.compiler.suricata.loader)
    text = data.decode("utf-8", errors="surrogateescape")
    names = resolver({})
    signatures: list[Any] = []
    for n, raw in enumerate(read_rules(text)):
        if n == MAX_RULES:
            break
        try:
            signatures.append(compile_rule(raw, names, CLASSIFICATIONS, "fuzz.rules"))
        except RuleError as exc:
            assert exc.reason, raw.text  # a skipped rule says why
    if not signatures:
        return
    try:
        tables = engine_module().InspectTables([("fuzz", tuple(signatures))], CATALOGUE)
    except (RuntimeError, MemoryError, ValueError) as exc:
        # what load_signature_sets turns into a RulesError for the user: it must say something
        assert str(exc), type(exc)
        return
    for _set, _sig, reason, _detail in tables.skipped:
        assert reason
