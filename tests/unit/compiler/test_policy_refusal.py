"""A policy that would empty enforcement is refused with a reason, never loaded (truncated writes, wrong
directories): an empty file, a file without a VirtualSystem. The dataplane's reload guard against losing
most workloads is checked here on a Dataplane without ports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ngfw.compiler.policy import load_policy
from ngfw.model.errors import PolicyError

LAB = Path(__file__).resolve().parents[3] / "rules" / "examples" / "lab.yaml"


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
    r = subprocess.run(
        [sys.executable, "-m", "ngfw", "policy", "check", str(path)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1
    assert r.stderr.strip() == (
        f"{path}: the policy is empty: enforcing it would deny every flow (a truncated "
        "write?); a policy meant to deny everything defines a VirtualSystem with no rules"
    )


def _site(n_workloads: int) -> str:
    docs = ["apiVersion: ngfw/v1\nkind: VirtualSystem\nmetadata: {name: tenant-a}\n"]
    docs += [
        f"apiVersion: ngfw/v1\nkind: Workload\nmetadata: {{name: web-{i:02d}, vsys: tenant-a}}\n"
        f'spec:\n  interfaces:\n    - mac: "02:00:00:00:01:{i:02x}"\n      ips: ["10.77.0.{10 + i}"]\n'
        for i in range(1, n_workloads + 1)
    ]
    return "---\n".join(docs)


@pytest.mark.parametrize("max_loss, refused", [(0.5, True), (0.8, False)])
def test_a_reload_that_drops_most_running_workloads_is_refused(
    tmp_path: Path, max_loss: float, refused: bool, caplog: pytest.LogCaptureFixture
) -> None:
    from ngfw.dataplane.runner import Dataplane, PortPlan

    path = tmp_path / "policy.yaml"
    path.write_text(_site(4))
    dp = Dataplane(PortPlan(), policy_path=str(path), max_workload_loss=max_loss)
    dp.load(dp.load_file())
    path.write_text(_site(1))  # three of four gone: a half-written file looks like this
    assert dp.reload() is not refused
    assert len(dp.policy.workloads) == (4 if refused else 1)
    if refused:
        assert (
            "the new policy drops 3 of the 4 running workloads (75%, more than --max-workload-loss 50%): "
            "tenant-a/web-02, tenant-a/web-03, tenant-a/web-04" in caplog.text
        )
