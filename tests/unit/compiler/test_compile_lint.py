"""Warnings about rules that can never match."""

from __future__ import annotations

from pathlib import Path

import pytest

from ngfw.compiler.lint import lint
from ngfw.compiler.policy import load_policy

EXAMPLES = Path(__file__).resolve().parents[3] / "rules" / "examples"

HEADER = """\
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: t}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: w, vsys: t, labels: {tier: web}}
spec: {interfaces: [{mac: "02:00:00:00:00:01", ips: ["10.0.0.1"]}]}
---
apiVersion: ngfw/v1
kind: Group
metadata: {name: empty, vsys: t}
spec: {selector: {tier: nothing}}
---
apiVersion: ngfw/v1
kind: SecurityPolicy
metadata: {name: p, vsys: t}
spec:
  rules:
"""


def warnings(tmp_path: Path, *rules: str) -> list[str]:
    path = tmp_path / "p.yaml"
    path.write_text(HEADER + "".join(f"    - {rule}\n" for rule in rules))
    return lint(load_policy(path))


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_are_clean(example: str) -> None:
    assert lint(load_policy(EXAMPLES / example)) == []


def test_rule_after_any_any_any_is_shadowed(tmp_path: Path) -> None:
    found = warnings(
        tmp_path,
        "{name: allow-all, from: [any], to: [any], action: allow}",
        "{name: web, from: [vm:w], to: [any], services: [tcp/80], action: deny}",
        "{name: also, from: [any], to: [any], action: allow}",
    )
    assert found == [
        "t: rule 'web' (#2) is shadowed by rule 'allow-all', which matches every flow it would (never applies)",
        "t: rule 'also' (#3) is shadowed by rule 'allow-all', which matches every flow it would (redundant)",
    ]


def test_narrower_earlier_rules_shadow_nothing_they_do_not_cover(tmp_path: Path) -> None:
    found = warnings(
        tmp_path,
        "{name: web-80, from: [vm:w], to: [cidr:10.9.0.0/16], services: [tcp/80], action: allow}",
        "{name: web-range, from: [vm:w], to: [cidr:10.9.0.0/16], services: [tcp/79-81], action: deny}",
        "{name: web-sub, from: [vm:w], to: [cidr:10.9.1.0/24], services: [tcp/80], action: deny}",
    )
    assert found == [
        "t: rule 'web-sub' (#3) is shadowed by rule 'web-80', which matches every flow it would (never applies)"
    ]


def test_rule_naming_an_empty_group_never_matches(tmp_path: Path) -> None:
    found = warnings(tmp_path, "{name: r, from: [group:empty], to: [any], action: allow}")
    assert found == ["t: rule 'r' (#1) never matches: from match no endpoint"]
