"""The suricata-verify conformance cases: every rule Suricata 7 alerted with loads here too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ngfw.compiler.suricata import load_rules
from ngfw.corpus import corpus

CASES = corpus("suricata-verify")

# Protocols Suricata 7 does not know either (these cases expect no alert from them).
NOT_IN_SURICATA_7 = {"unsupported protocol: arp", "unsupported protocol: llmnr"}


def _cases() -> list[Path]:
    return sorted(p for p in CASES.glob("*/") if (p / "test.rules").is_file())


@pytest.mark.parametrize("case", _cases(), ids=lambda p: p.name)
def test_case_rules_load(case: Path) -> None:
    ruleset = load_rules([case / "test.rules"])
    expected = {json.loads(line)["signature_id"] for line in (case / "expected.jsonl").read_text().splitlines() if line}
    loaded = {r.sid for r in ruleset.rules}
    assert expected <= loaded, [str(s) for s in ruleset.skipped]
    assert all(s.reason in NOT_IN_SURICATA_7 for s in ruleset.skipped), [str(s) for s in ruleset.skipped]
