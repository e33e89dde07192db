"""Policy YAML text, as `ngfw policy check` and a dataplane read a file: YAML documents -> resources
(pydantic) -> cross-checks -> compiled policy -> lint warnings -> the fastpath's tables."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from ngfw.compiler.catalogue import load_catalogue
from ngfw.compiler.lint import lint
from ngfw.compiler.policy import load_policy
from ngfw.dataplane.fastpath import engine_module
from ngfw.model.errors import PolicyError

CATALOGUE = load_catalogue()  # the shipped applications rules name; read once, not per input


@cache
def _file() -> Path:
    # /dev/shm when there is one: a write per input, never to a disk
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    return Path(tempfile.mkdtemp(prefix="ngfw-fuzz-policy-", dir=base)) / "policy.yaml"


def one_input(data: bytes) -> None:
    path = _file()
    path.write_bytes(data)
    try:
        policy = load_policy(path, catalogue=CATALOGUE)
    except PolicyError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems), exc
        return
    lint(policy)
    engine_module().Tables(policy, {})
