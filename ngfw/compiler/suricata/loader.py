"""Rule files -> RuleSet: every rule either loads or is listed in `skipped` with its reason.

Duplicate (gid, sid) pairs are resolved as Suricata resolves them: the higher
rev wins (the other is reported as skipped), and on a tie the first one stays.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from ngfw.compiler.suricata.addresses import resolver
from ngfw.compiler.suricata.classification import CLASSIFICATIONS
from ngfw.compiler.suricata.compile import compile_rule
from ngfw.compiler.suricata.lexer import RuleError, read_rules
from ngfw.compiler.suricata.model import CompiledSignature, RuleSet, Skipped

# Finds the sid of a rule that failed before its options were parsed, for the report.
_SID = re.compile(r"\bsid\s*:\s*\"?(\d+)")


def load_rules(
    paths: list[Path],
    variables: dict[str, str] | None = None,
    classifications: dict[str, tuple[str, int]] | None = None,
) -> RuleSet:
    """Parse and compile every rule of `paths` (in order).

    `variables` override suricata.yaml's defaults (`{"HOME_NET": "[10.0.0.0/8]"}`);
    `classifications` replace the shipped classification.config table.
    """
    started = time.perf_counter()
    names = resolver(variables)
    table = classifications if classifications is not None else CLASSIFICATIONS
    loaded: list[CompiledSignature | None] = []
    by_key: dict[tuple[int, int], int] = {}
    skipped: list[Skipped] = []
    for path in paths:
        file = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError as exc:
            skipped.append(Skipped(file, 0, None, "unreadable file", exc.strerror or str(exc)))
            continue
        # A byte-order mark (editors on Windows add one) is not part of the first rule.
        for raw in read_rules(text.removeprefix("\ufeff")):
            try:
                signature = compile_rule(raw, names, table, file)
            except RuleError as exc:
                found = _SID.search(raw.text)
                skipped.append(Skipped(file, raw.line, int(found.group(1)) if found else None, exc.reason, exc.detail))
                continue
            key = (signature.gid, signature.sid)
            earlier_index = by_key.get(key)
            if earlier_index is None:
                by_key[key] = len(loaded)
                loaded.append(signature)
                continue
            earlier = loaded[earlier_index]
            assert earlier is not None
            if signature.rev > earlier.rev:
                skipped.append(
                    Skipped(
                        earlier.file,
                        earlier.line,
                        earlier.sid,
                        "duplicate sid",
                        f"rev {earlier.rev} replaced by rev {signature.rev} at {file}:{raw.line}",
                    )
                )
                loaded[earlier_index] = None
                by_key[key] = len(loaded)
                loaded.append(signature)
            else:
                skipped.append(
                    Skipped(
                        file,
                        raw.line,
                        signature.sid,
                        "duplicate sid",
                        f"rev {signature.rev}; rev {earlier.rev} already loaded from {earlier.file}:{earlier.line}",
                    )
                )
    rules = tuple(s for s in loaded if s is not None)
    return RuleSet(rules, tuple(skipped), time.perf_counter() - started)
