"""`ngfw rules check` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_rules_check_json_counts_loaded_and_skipped_by_reason(tmp_path: Path) -> None:
    rules = tmp_path / "local.rules"
    rules.write_text(
        'alert http any any -> any any (msg:"admin"; http.uri; content:"/admin"; sid:1000001; rev:1;)\n'
        'alert tcp any any -> any any (msg:"bytes"; stream_size:server,>,100; sid:1000002; rev:1;)\n'
    )
    r = subprocess.run([sys.executable, "-m", "ngfw", "rules", "check", "--json", str(rules)],
                       capture_output=True, text=True, timeout=60, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"loaded": 1, "skipped": 1, "reasons": {"unsupported keyword: stream_size": 1}}
