"""Checking EVE records against docs/eve-schema.json (tests validate every record they produce; `jsonschema`
comes with the test extra)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "eve-schema.json"


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(records: Iterable[dict[str, Any]], where: str = "record") -> list[str]:
    """One line per schema violation: which record, which field, what is wrong."""
    out: list[str] = []
    validator = _validator()
    for n, record in enumerate(records, 1):
        for error in sorted(validator.iter_errors(record), key=lambda e: list(e.absolute_path)):
            field = "/".join(str(p) for p in error.absolute_path) or "(record)"
            out.append(f"{where} {n} ({record.get('event_type')}): {field}: {error.message}")
    return out


def file_problems(path: str | Path, max_lines: int = 100_000) -> list[str]:
    """Schema violations of an EVE file (a torn last line, left by a killed writer, is not one)."""
    records: list[dict[str, Any]] = []
    lines = Path(path).read_text(errors="replace").splitlines() if Path(path).exists() else []
    for i, line in enumerate(lines[:max_lines]):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1:
                continue
            return [f"{path}: line {i + 1} is not JSON: {line[:80]!r}"]
    return problems(records, where=f"{path} line")
