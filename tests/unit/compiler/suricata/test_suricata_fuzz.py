"""Damaged rules are skipped with a reason, never crash the loader: mutations of real rules."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ngfw.compiler.suricata import load_rules

FIXTURES = Path(__file__).resolve().parents[3] / "fixtures" / "rules"
SEEDS = [
    line
    for line in (FIXTURES / "supported.rules").read_text().splitlines()
    if line and not line.startswith("#") and not line.endswith("\\")
]
# Characters that matter to the grammar, so mutations hit quotes, escapes, lists and hex.
ALPHABET = st.sampled_from(list(';:"\\|()[]!,$ -><0123456789abcxyzGH/'))


@st.composite
def damaged_rule(draw: st.DrawFn) -> str:
    rule = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(rule)))
        if draw(st.booleans()):
            rule = rule[:at] + draw(st.text(ALPHABET, min_size=1, max_size=3)) + rule[at:]
        else:
            rule = rule[:at] + rule[at + draw(st.integers(1, 5)) :]
    return rule


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=st.lists(damaged_rule(), min_size=1, max_size=5))
def test_every_damaged_rule_loads_or_is_skipped_with_a_reason(tmp_path: Path, rules: list[str]) -> None:
    path = tmp_path / "damaged.rules"
    # A leading '#' would make a comment and a trailing backslash a continuation: neither
    # is one rule per line any more.
    lines = [line for line in (re.sub(r"[\s\\]+$", "", re.sub(r"^[\s#]+", "", r)) for r in rules) if line]
    path.write_text("\n".join(lines) + "\n")
    ruleset = load_rules([path])
    assert len(ruleset.rules) + len(ruleset.skipped) == len(lines)
    assert all(s.reason and s.line >= 1 for s in ruleset.skipped)
