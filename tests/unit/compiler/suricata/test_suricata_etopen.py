"""ET Open, the rule set users bring: at least 90% of it loads, and every rule that does not says why."""

from __future__ import annotations

import pytest

from ngfw.compiler.suricata import RuleSet, load_rules
from ngfw.corpus import corpus

ET_OPEN = corpus("et-open")
pytestmark = pytest.mark.corpus


@pytest.fixture(scope="module")
def et_open() -> RuleSet:
    files = sorted(ET_OPEN.glob("*.rules"))
    if not files:
        pytest.skip(f"ET Open corpus not found at {ET_OPEN}")
    return load_rules(files)


def test_at_least_90_percent_of_et_open_loads(et_open: RuleSet) -> None:
    total = len(et_open.rules) + len(et_open.skipped)
    assert total == 24827  # every active rule of the snapshot is either loaded or skipped
    assert len(et_open.rules) / total >= 0.90, et_open.counts_by_reason()


def test_every_skip_names_file_line_sid_and_reason(et_open: RuleSet) -> None:
    for skipped in et_open.skipped:
        assert skipped.reason and skipped.file.endswith(".rules") and skipped.line > 0 and skipped.sid, skipped


def test_et_open_is_only_skipped_for_what_we_do_not_support(et_open: RuleSet) -> None:
    # ET Open is valid Suricata: a "malformed" skip here would be a parser bug.
    malformed = [str(s) for s in et_open.skipped if not s.unsupported]
    assert not malformed, malformed[:20]


def test_loaded_rules_are_resolved(et_open: RuleSet) -> None:
    sids = [r.sid for r in et_open.rules]
    assert len(sids) == len(set(sids))
    with_content = [r for r in et_open.rules if any(b.contents for b in r.buffers)]
    assert all(
        r.fast_pattern is not None or all(c.negated for b in r.buffers for c in b.contents) for r in with_content
    )
