"""`ngfw rules check` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_rules_check_json_counts_loaded_and_skipped_by_reason(tmp_path: Path) -> None:
    rules = tmp_path / "local.rules"
    rules.write_text(
        'alert http any any -> any any (msg:"admin"; http.uri; content:"/admin"; sid:1000001; rev:1;)\n'
        'alert tcp any any -> any any (msg:"bytes"; stream_size:server,>,100; sid:1000002; rev:1;)\n'
    )
    r = subprocess.run(
        [sys.executable, "-m", "ngfw", "rules", "check", "--json", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"loaded": 1, "skipped": 1, "reasons": {"unsupported keyword: stream_size": 1}}


def test_rules_check_with_a_policy_lists_what_its_profiles_except_and_fails_on_an_unknown_sid(tmp_path: Path) -> None:
    rules = tmp_path / "et.rules"
    rules.write_text(
        'drop tcp any any -> any any (msg:"ET exploit"; content:"EVIL"; sid:2001;)\n'
        'alert tcp any any -> any any (msg:"ET beacon"; stream_size:server,>,100; sid:2002;)\n'
    )
    lab = (REPO / "rules" / "examples" / "lab.yaml").read_text()
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        lab
        + """
---
apiVersion: ngfw/v1
kind: ThreatProfile
metadata: {name: strict, vsys: tenant-a}
spec:
  exceptions:
    - {sid: 2001, source: [vm:web-01]}
    - {sid: 2002}
  thresholds: ["suppress gen_id 1, sig_id 2009"]
"""
    )
    argv = [sys.executable, "-m", "ngfw", "rules", "check", str(rules), "--policy", str(policy)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 1, r.stderr
    assert (
        'ThreatProfile tenant-a/strict: spec.exceptions[0]: 1:2001 "ET exploit" (drop) does not run for source '
        "vm:web-01"
    ) in r.stdout
    assert (
        "spec.exceptions[1]: 1:2002 (in the files, not run: unsupported keyword: stream_size) does not run" in r.stdout
    )
    assert "spec.thresholds line 1: 1:2009 is not in the rule files: UNKNOWN" in r.stdout
    policy.write_text(policy.read_text().replace("sig_id 2009", "sig_id 2001"))
    r = subprocess.run(argv + ["--json"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert [p["status"] for p in json.loads(r.stdout)["profiles"]] == ["loaded", "skipped", "loaded"]
