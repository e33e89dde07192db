"""Checking EVE records against docs/eve-schema.json (tests validate every record they produce; `jsonschema` and
`fastjsonschema` come with the test extra).

Every record goes through fastjsonschema's compiled check (about 0.1 ms a record: a flood test's tens of
thousands of records cost seconds, not the minute jsonschema takes); a record it refuses is explained by
jsonschema, which names every field that is wrong."""

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


@functools.lru_cache(maxsize=1)
def _fast_check() -> Any:
    import fastjsonschema

    _validator()  # the schema itself is checked once, as a draft 2020-12 schema
    return fastjsonschema.compile(json.loads(SCHEMA_PATH.read_text()))


def problems(records: Iterable[dict[str, Any]], where: str = "record") -> list[str]:
    """One line per schema violation: which record, which field, what is wrong."""
    from fastjsonschema import JsonSchemaException

    out: list[str] = []
    check, validator = _fast_check(), _validator()
    for n, record in enumerate(records, 1):
        try:
            check(record)
            continue
        except JsonSchemaException:
            pass
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
