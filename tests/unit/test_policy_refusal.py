"""A policy that would empty enforcement is refused with a reason, never loaded (truncated writes, wrong
directories): an empty file, a file without a VirtualSystem. The dataplane's reload guard against losing
most workloads is exercised live in tests/netns/test_reliability.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ngfw.compiler.policy import load_policy
from ngfw.model.errors import PolicyError

LAB = Path(__file__).resolve().parents[2] / "rules" / "examples" / "lab.yaml"


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("")
    with pytest.raises(PolicyError, match="the policy is empty: enforcing it would deny every flow"):
        load_policy(path)


def test_a_file_of_comments_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("# truncated by a full disk\n---\n")
    with pytest.raises(PolicyError, match="empty"):
        load_policy(path)


def test_a_policy_without_a_virtual_system_is_refused(tmp_path: Path) -> None:
    workloads_only = "\n---\n".join(d for d in LAB.read_text().split("\n---\n") if "kind: Workload" in d)
    path = tmp_path / "policy.yaml"
    path.write_text(workloads_only)
    with pytest.raises(PolicyError, match="VirtualSystem 'tenant-a' does not exist"):
        load_policy(path)


def test_deny_everything_on_purpose_is_a_virtual_system_without_rules(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("apiVersion: ngfw/v1\nkind: VirtualSystem\nmetadata: {name: quarantine}\n")
    policy = load_policy(path)
    assert policy.vsys == ("quarantine",) and policy.rules == ()


def test_policy_check_exits_non_zero_on_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("")
    r = subprocess.run([sys.executable, "-m", "ngfw", "policy", "check", str(path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == (f"{path}: the policy is empty: enforcing it would deny every flow (a truncated "
                                "write?); a policy meant to deny everything defines a VirtualSystem with no rules")
