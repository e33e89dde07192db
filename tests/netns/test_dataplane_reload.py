"""SIGHUP (`systemctl reload`, logrotate's postrotate) reopens the EVE file and recompiles only what changed."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.netns import metric, wait_for

LAB_POLICY = Path(__file__).resolve().parents[2] / "rules" / "examples" / "lab.yaml"
LAB_RULES = Path(__file__).resolve().parents[2] / "rules" / "threats" / "lab.rules"
SERVER = "10.77.0.100"


def denied_connection(ns_run, lab) -> None:
    r = ns_run(lab.web2.ns, ["curl", "-sS", "--connect-timeout", "1", f"http://{SERVER}:8080/"])
    assert r.returncode == 28


def test_sighup_with_nothing_changed_reopens_the_eve_file_and_recompiles_nothing(
    lab, lab_services, start_dataplane, ns_run, tmp_path
) -> None:
    rules = tmp_path / "lab.rules"
    rules.write_text(LAB_RULES.read_text())
    dp = start_dataplane(LAB_POLICY, ["--rules", f"lab={rules}"])
    denied_connection(ns_run, lab)
    assert wait_for(lambda: any(r["event_type"] == "drop" for r in dp.eve_records()))
    rotated = dp.eve_path.with_name("eve.json.1")
    dp.eve_path.rename(rotated)  # what logrotate does before its postrotate reload
    dp.reload()
    assert wait_for(lambda: "nothing recompiled" in dp.stderr_text(), timeout=10), dp.stderr_text()
    assert wait_for(dp.eve_path.exists, timeout=5)  # reopened: a new file
    denied_connection(ns_run, lab)
    assert wait_for(lambda: any(r["event_type"] == "drop" for r in dp.eve_records()))
    text = dp.metrics_text()
    assert metric(text, "ngfw_policy_version") == 1  # the policy was not loaded again
    assert metric(text, "ngfw_policy_reloads_total", result="success") == 1  # the start's load only
    assert "drop" in rotated.read_text()

    # a changed rule file is compiled and the running policy's tables rebuilt, the policy not loaded again
    rules.write_text(
        LAB_RULES.read_text() + 'alert http any any -> any any (msg:"LAB new"; '
        'flow:established,to_server; http.uri; content:"/new"; sid:9000010; rev:1;)\n'
    )
    dp.reload()
    assert wait_for(lambda: "rule files changed; policy version 1 kept" in dp.stderr_text(), timeout=20)
    time.sleep(0.5)
    text = dp.metrics_text()
    assert metric(text, "ngfw_policy_version") == 1
    assert metric(text, "ngfw_signature_reloads_total", result="success") == 1, text
