"""CI's short fuzz run: the sanitizer build of the fastpath (build/debug/), then every target for a few
seconds from its seeds; any crash, sanitizer report, hang, leak or unexpected exception fails the test,
with the inputs saved under tests/fuzz/regressions/ (docs/fuzzing.md). About 3 minutes on 2 cores,
most of it the debug build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECONDS_PER_TARGET = int(os.environ.get("NGFW_FUZZ_SECONDS", "6"))


@pytest.mark.fuzz
def test_every_target_runs_clean_on_the_sanitizer_build() -> None:
    # a fixed seed: the same mutations on every CI run, so a red run is one anybody can repeat
    done = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.run", "all", "--seconds", str(SECONDS_PER_TARGET), "--seed", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert done.returncode == 0, f"fuzzing found something or could not run:\n{done.stdout}\n{done.stderr[-3000:]}"
    # each target really ran: inputs executed, code covered (a run that imports nothing finds nothing)
    for line in done.stdout.splitlines():
        if line.startswith("fuzz ") and ":" in line:
            name = line.split()[1].rstrip(":")
            record = json.loads((REPO / "build" / "fuzz" / name / "last_run.json").read_text())
            assert record["executions"] > 10 and record["coverage_edges"] > 100, record
    assert done.stdout.count("0 findings") == 7, done.stdout
