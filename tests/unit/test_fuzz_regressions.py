"""Every input the fuzzers found a bug with (tests/fuzz/regressions/TARGET/) runs through its target on
the normal build and must be handled: a documented refusal at most, never a crash or another exception.

The fuzz targets and their runner are in tests/fuzz/ (docs/fuzzing.md). An input that fails here names
the target and the file; `python -m tests.fuzz.run TARGET` reproduces it under the sanitizers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

REPO = Path(__file__).resolve().parents[2]

REGRESSIONS = REPO / "tests" / "fuzz" / "regressions"
INPUTS = sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file() and p.parent.name in TARGETS)


def test_every_regression_input_belongs_to_a_target() -> None:
    strays = [p for p in REGRESSIONS.glob("*/*") if p.parent.name not in TARGETS]
    assert not strays, f"regression inputs of no target: {strays}"


@pytest.mark.parametrize("path", INPUTS, ids=[f"{p.parent.name}/{p.name}" for p in INPUTS])
def test_a_found_input_is_handled(path: Path) -> None:
    TARGETS[path.parent.name].module().one_input(path.read_bytes())
