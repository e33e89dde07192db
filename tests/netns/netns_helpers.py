"""Helpers shared by the namespace tests: metrics as prometheus_client parses them, lab policies, waiting."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
LAB_POLICY = REPO / "rules" / "examples" / "lab.yaml"
SERVER = "10.77.0.100"


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`, parsed by prometheus_client's parser."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def lab_policy_with(tmp_path: Path, rules: str, name: str = "policy.yaml") -> Path:
    """The lab's vsys, workloads and groups with another rule list."""
    head = LAB_POLICY.read_text().split("kind: SecurityPolicy")[0].rsplit("---", 1)[0]
    body = (head + "---\napiVersion: ngfw/v1\nkind: SecurityPolicy\nmetadata: {name: main, vsys: tenant-a}\n"
            "spec:\n  rules:\n" + textwrap.indent(textwrap.dedent(rules).strip() + "\n", "    "))
    path = tmp_path / name
    path.write_text(body)
    return path


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.1) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
