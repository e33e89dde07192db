"""deploy/prometheus and deploy/grafana as Prometheus reads them: the config checks, every alert has a unit test that
makes it fire (`promtool test rules`), and every metric the alerts and the dashboard use is one ngfw documents.

That the dashboard's queries return data from a real Prometheus scraping real dataplanes and control is
tests/netns/test_monitoring.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "ngfw.json"
METRIC = re.compile(r"\b(ngfw_[a-z0-9_]+)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: deploy/install.sh installs Debian's prometheus (deploy/packages-lab.txt)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60, cwd=str(REPO))


def alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in sorted(PROMETHEUS.glob("*.yml")):
        data = yaml.safe_load(path.read_text())
        for group in (data or {}).get("groups", []) if isinstance(data, dict) else []:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_scrape_config_and_its_rules_are_valid() -> None:
    done = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_in_its_unit_test() -> None:
    tests = sorted(PROMETHEUS.glob("*.test.yml"))
    assert tests
    done = promtool("test", "rules", *map(str, tests))
    assert done.returncode == 0, done.stdout + done.stderr
    fired: set[str] = set()
    for path in tests:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert len(names) >= 17
    assert names - fired == set(), f"alerts no test makes fire: {sorted(names - fired)}"
    assert fired - names == set(), f"tests of alerts that do not exist: {sorted(fired - names)}"


def test_every_alert_says_what_happened() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]


def test_every_dashboard_panel_queries_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource"}
    titles = [p["title"] for p in dashboard["panels"]]
    for wanted in (
        "Throughput",
        "Drops by reason",
        "Sessions per vsys",
        "Top applications",
        "Signature alerts by vsys and severity",
        "Policy version per host",
        "Migrations",
    ):
        assert wanted in titles
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def documented_metrics() -> set[str]:
    text = "".join(
        (REPO / "docs" / name).read_text()
        for name in ("dataplane.md", "inspection.md", "migration.md", "monitoring.md")
    )
    return set(METRIC.findall(text))


def test_alerts_and_dashboard_use_only_documented_metrics() -> None:
    documented = documented_metrics()
    used: dict[str, str] = {}
    for rule in alert_rules():
        used |= {m: f"alert {rule['alert']}" for m in METRIC.findall(rule["expr"])}
    for title, expr in dashboard_queries():
        used |= {m: f"panel {title!r}" for m in METRIC.findall(expr)}
    unknown = {}
    for name, where in used.items():
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        if name not in documented and base not in documented:
            unknown[name] = where
    assert not unknown, f"metrics used but not documented in docs/: {unknown}"
