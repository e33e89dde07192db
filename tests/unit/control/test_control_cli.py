"""`ngfw control/apply/diff/commit/rollback/status/explain` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from ngfw.cli import main
from ngfw.control.client import ControlClient, ControlUnreachable
from tests.support.control import RunningControl, find, free_port, two_tenants


def write_policy(directory: Path, documents: list[dict[str, Any]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tenants.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return directory


def run(capsys: pytest.CaptureFixture[str], control: RunningControl, token: str, *argv: str) -> tuple[int, str, str]:
    os.environ["NGFW_TOKEN"] = token
    try:
        status = main([*argv, "--control", control.url])
    finally:
        del os.environ["NGFW_TOKEN"]
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def sqlite_control(sqlite_url: str, tmp_path: Path, tokens: dict[str, str]) -> Any:
    running = RunningControl(sqlite_url, tmp_path / "tokens.json")
    yield running
    running.stop()


def test_apply_diff_commit_status_rollback(
    sqlite_control: RunningControl, tokens: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = write_policy(tmp_path / "policy", two_tenants())
    alice = tokens["alice"]
    status, out, _ = run(capsys, sqlite_control, alice, "apply", "-f", str(policy))
    assert status == 0 and "candidate: SecurityPolicy tenant-a/main" in out
    status, out, _ = run(capsys, sqlite_control, alice, "diff")
    assert status == 0 and "+++ candidate: SecurityPolicy tenant-b/main" in out
    status, out, _ = run(capsys, sqlite_control, alice, "commit", "-m", "two tenants")
    assert status == 0 and out.startswith("committed version 1 (identity 1, 4 rules")

    documents = two_tenants()
    find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/8080"]
    write_policy(policy, documents)
    run(capsys, sqlite_control, alice, "apply", "-f", str(policy))
    status, out, _ = run(capsys, sqlite_control, alice, "commit", "-m", "8080")
    assert out.startswith("committed version 2")
    status, out, _ = run(capsys, sqlite_control, alice, "diff", "1", "2")
    assert "-    - tcp/80\n" in out and "+    - tcp/8080\n" in out

    client = ControlClient(sqlite_control.url, tokens["host-a"])
    running = client.get("/bundle", host="host-a")
    client.ack("host-a", running["version"], running["identity"], running["hash"])
    ControlClient(sqlite_control.url, tokens["host-b"]).ack("host-b", 1, 1, "0" * 64)
    status, out, _ = run(capsys, sqlite_control, tokens["vera"], "status")
    assert status == 0
    assert out.splitlines()[0] == "version 2 on 1 of 2 hosts (identity revision 1)"
    assert "host-b" in out and "BEHIND" in out

    status, out, _ = run(capsys, sqlite_control, alice, "rollback", "1", "-m", "back")
    assert status == 0 and out.startswith("version 3 has the policy of version 1")
    status, out, _ = run(capsys, sqlite_control, alice, "history")
    assert [line.split()[0] for line in out.splitlines()] == ["3", "2", "1"]


def test_errors_name_file_resource_and_field(
    sqlite_control: RunningControl, tokens: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = two_tenants()
    find(documents, "SecurityPolicy", "main", "tenant-a")["spec"]["rules"][0]["to"] = ["group:nope"]
    policy = write_policy(tmp_path / "policy", documents)
    status, _, err = run(capsys, sqlite_control, tokens["alice"], "apply", "-f", str(policy))
    assert status == 1
    assert "  SecurityPolicy tenant-a/main: spec.rules[0].to[0]: group:nope: Group 'nope' does not exist" in err

    (policy / "tenants.yaml").write_text("kind: [\n")
    with pytest.raises(SystemExit) as info:
        run(capsys, sqlite_control, tokens["alice"], "apply", "-f", str(policy))
    assert "tenants.yaml:2:1: invalid YAML" in str(info.value.code) and "nothing was sent" in str(info.value.code)

    status, _, err = run(capsys, sqlite_control, tokens["otto"], "commit", "-m", "x")
    assert status == 1 and "role vm-operator cannot commit policy (HTTP 403)" in err


def test_vm_operator_moves_a_workload_with_apply_identity(
    sqlite_control: RunningControl, tokens: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, sqlite_control, tokens["alice"], "apply", "-f", str(write_policy(tmp_path / "p", two_tenants())))
    run(capsys, sqlite_control, tokens["alice"], "commit", "-m", "two tenants")
    web = find(two_tenants(), "Workload", "web-01")
    web["spec"]["host"] = "host-b"
    status, out, _ = run(
        capsys,
        sqlite_control,
        tokens["otto"],
        "apply",
        "--identity",
        "-f",
        str(write_policy(tmp_path / "moved", [web])),
    )
    assert status == 0 and out == "Workload tenant-a/web-01: identity revision 2\n"
    status, out, _ = run(capsys, sqlite_control, tokens["vera"], "history")
    assert len(out.splitlines()) == 1  # still one policy version


def test_explain_names_vsys_rule_and_why(
    sqlite_control: RunningControl, tokens: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, sqlite_control, tokens["alice"], "apply", "-f", str(write_policy(tmp_path / "p", two_tenants())))
    run(capsys, sqlite_control, tokens["alice"], "commit", "-m", "two tenants")
    vera = tokens["vera"]

    status, out, _ = run(
        capsys, sqlite_control, vera, "explain", "--from", "vm:web-01", "--to", "vm:db-01", "--service", "tcp/5432"
    )
    assert status == 0
    assert "verdict: ALLOW by rule 'web-to-db' of vsys tenant-a" in out

    # cross-tenant: tenant-a lets it out, tenant-b does not let it in on 8080
    status, out, _ = run(
        capsys,
        sqlite_control,
        vera,
        "explain",
        "--from",
        "vm:web-01",
        "--to",
        "vm:app-01",
        "--service",
        "tcp/8080",
        "--json",
    )
    result = json.loads(out)
    assert (result["verdict"], result["rule"], result["vsys"]) == ("deny", "default-deny", "tenant-b")
    assert [(p["direction"], p["vsys"], p["action"], p["rule"]) for p in result["passes"]] == [
        ("egress", "tenant-a", "allow", "web-to-b"),
        ("ingress", "tenant-b", "deny", "default-deny"),
    ]
    assert result["passes"][1]["skipped"] == ["'a-to-app-http': services ['tcp/80'] do not include it"]

    # a 5-tuple's addresses name the workloads; on tcp/80 both tenants allow it
    status, out, _ = run(
        capsys,
        sqlite_control,
        vera,
        "explain",
        "--from",
        "10.77.0.11",
        "--to",
        "10.78.0.11",
        "--service",
        "tcp/80",
        "--json",
    )
    assert json.loads(out)["verdict"] == "allow"
    assert json.loads(out)["passes"][1]["rule"] == "a-to-app-http"


def test_explain_lists_rules_that_wait_for_the_application(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    documents = two_tenants()
    rules = find(documents, "SecurityPolicy", "main", "tenant-a")["spec"]["rules"]
    rules.insert(
        0,
        {
            "name": "web-to-db-pg",
            "from": ["group:web"],
            "to": ["group:db"],
            "applications": ["postgresql"],
            "services": ["application-default"],
            "action": "allow",
        },
    )
    rules[1]["action"] = "reject"
    policy = write_policy(tmp_path / "p", documents)
    argv = ["explain", "--policy", str(policy), "--from", "vm:web-01", "--to", "vm:db-01", "--service", "tcp/5432"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "verdict: REJECT by rule 'web-to-db' of vsys tenant-a" in out
    assert "before it, 'web-to-db-pg' would allow if the application is postgresql on its default ports" in out
    assert main([*argv, "--app", "postgresql"]) == 0
    assert "verdict: ALLOW by rule 'web-to-db-pg'" in capsys.readouterr().out
    assert main([*argv, "--app", "http"]) == 0
    assert "verdict: REJECT by rule 'web-to-db'" in capsys.readouterr().out


def test_token_add_prints_the_token_once_and_stores_only_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    assert main(["control", "--tokens", str(path), "token", "add", "carol", "tenant-admin:tenant-b"]) == 0
    token = capsys.readouterr().out.strip()
    stored = path.read_text()
    assert len(token) >= 40 and token not in stored
    assert json.loads(stored)["tokens"][0]["role"] == "tenant-admin:tenant-b"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert main(["control", "--tokens", str(path), "token", "add", "dave", "root"]) == 1
    assert "unknown role 'root'" in capsys.readouterr().err


def test_token_add_keeps_the_group_and_mode_the_service_reads_the_file_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the .deb makes /etc/ngfw/tokens.json root:ngfw 0640 for ngfw-control.service (user ngfw); an admin's
    # `token add` as root must not turn it into root:root 0600 and lock the service out
    path = tmp_path / "tokens.json"
    path.write_text('{"tokens": []}\n')
    group = 65534 if os.geteuid() == 0 else os.getegid()  # nogroup: another group than root's
    os.chown(path, -1, group)
    path.chmod(0o640)
    assert main(["control", "--tokens", str(path), "token", "add", "erin", "viewer"]) == 0
    capsys.readouterr()
    assert path.stat().st_gid == group
    assert oct(path.stat().st_mode & 0o777) == "0o640"


def test_ngfw_control_daemon_serves_and_stops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tokens = tmp_path / "tokens.json"
    main(["control", "--tokens", str(tokens), "token", "add", "vera", "viewer"])
    token = capsys.readouterr().out.strip()
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ngfw",
            "control",
            "--listen",
            f"127.0.0.1:{port}",
            "--store",
            f"sqlite:///{tmp_path}/control.db",
            "--tokens",
            str(tokens),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        client = ControlClient(f"http://127.0.0.1:{port}", token, timeout=2)
        deadline = time.monotonic() + 20
        while True:
            try:
                status = client.get("/status")
                break
            except ControlUnreachable:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert status["summary"] == "version 0 on 0 of 0 hosts"
        assert "/commit" in client.get("/openapi.json")["paths"]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
