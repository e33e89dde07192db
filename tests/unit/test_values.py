"""`ngfw.values`: the frozen value classes of the compiled policy and catalogue behave as frozen dataclasses."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from ngfw.values import FrozenInstanceError, asdict, field, replace, value


@value
class Point:
    x: int
    y: int = 0
    tags: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    note: str = field(default="", compare=False)


def test_fields_defaults_and_factories() -> None:
    a, b = Point(1), Point(1, 2)
    assert (a.x, a.y, a.tags, a.note) == (1, 0, {}, "")
    assert b.y == 2 and a.tags is not Point(1).tags  # a fresh dict per instance
    assert asdict(b) == {"x": 1, "y": 2, "tags": {}, "note": ""}
    assert repr(b) == "Point(x=1, y=2, note='')"


def test_equality_and_hash_ignore_fields_not_compared() -> None:
    assert Point(1, 2, {"a": 1}, "n") == Point(1, 2) and hash(Point(1, 2, {"a": 1})) == hash(Point(1, 2))
    assert Point(1, 2) != Point(1, 3)
    assert Point(1, 2) != (1, 2)  # not a tuple: another class never equals


def test_assignment_is_refused() -> None:
    p = Point(1)
    with pytest.raises(FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y


def test_replace_and_pickle() -> None:
    p = Point(1, 2, {"a": 1})
    q = replace(p, y=5)
    assert (q.x, q.y, q.tags) == (1, 5, {"a": 1}) and p.y == 2
    with pytest.raises(TypeError, match="no field 'z'"):
        replace(p, z=1)
    assert pickle.loads(pickle.dumps(p)) == p


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="non-default field 'b' follows a default field"):

        @value
        class Bad:
            a: int = 0
            b: int


def test_replay_starts_without_dataclasses() -> None:
    """What the values module is for: `ngfw replay`'s imports leave out dataclasses (and inspect, ast), and
    with them typing, orjson, logging and pathlib."""
    code = (
        "import sys, ngfw.cli, ngfw.dataplane.replay as r; r.Replayer(); "
        "print(sorted({'dataclasses', 'inspect', 'typing', 'orjson', 'logging', 'pathlib'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
