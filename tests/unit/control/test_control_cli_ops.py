"""`ngfw status --wait` (a pipeline's gate), `ngfw get` and `ngfw delete`, as a user runs them against a real control."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ngfw.cli import main
from tests.support.control import RunningControl, client, two_tenants


@pytest.fixture
def site(sqlite_url: str, tmp_path: Path, tokens: dict[str, str]) -> Iterator[RunningControl]:
    running = RunningControl(sqlite_url, tmp_path / "tokens.json")
    documents = two_tenants()
    alice = client(running, tokens, "alice")
    alice.apply_documents(documents, ["test"] * len(documents))
    alice.commit("two tenants")
    yield running
    running.stop()


def ngfw(capsys: pytest.CaptureFixture[str], control: RunningControl, token: str, *argv: str) -> tuple[int, str, str]:
    os.environ["NGFW_TOKEN"] = token
    try:
        status = main([*argv, "--control", control.url])
    finally:
        del os.environ["NGFW_TOKEN"]
    out, err = capsys.readouterr()
    return status, out, err


def ack(
    control: RunningControl,
    tokens: dict[str, str],
    host: str,
    status: str = "applied",
    version: int | None = None,
    detail: str = "",
) -> None:
    """`host`'s agent reports: the running bundle applied (or `version` refused/failed)."""
    api = client(control, tokens, host)
    running = api.get("/bundle", host=host)
    api.ack(
        host,
        version or running["version"],
        running["identity"],
        running["hash"] if status == "applied" else "f" * 64,
        status,
        detail,
    )


def test_status_wait_gates_on_every_host_running_the_version(
    site: RunningControl, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    vera = tokens["vera"]
    code, _, err = ngfw(capsys, site, vera, "status", "--wait", "1", "--timeout", "0.3")
    assert code == 1 and "no host has reported to control within 0.3 s" in err, err

    ack(site, tokens, "host-a")
    client(site, tokens, "host-b").ack("host-b", 0, 0, "0" * 64)  # connected, runs nothing yet
    started = time.monotonic()
    code, _, err = ngfw(capsys, site, vera, "status", "--wait", "1", "--timeout", "0.5")
    assert code == 1 and time.monotonic() - started >= 0.5
    assert err == "ngfw status: after 0.5 s, 1 of 2 hosts do not run version 1: host-b runs version 0\n"

    # host-b catches up while the pipeline waits: exit 0 as soon as it does
    catch_up = threading.Timer(0.5, ack, (site, tokens, "host-b"))
    catch_up.start()
    started = time.monotonic()
    code, out, _ = ngfw(capsys, site, vera, "status", "--wait", "1", "--timeout", "20")
    catch_up.join()
    assert code == 0 and time.monotonic() - started < 5
    assert out == "version 1 on all 2 hosts (version 1 on 2 of 2 hosts)\n"

    # version 2: host-b refuses it. Waiting is pointless (the agent does not retry that bundle): exit 1 at once
    documents = two_tenants()
    documents[-1]["spec"]["rules"][0]["services"] = ["tcp/8080"]
    alice = client(site, tokens, "alice")
    alice.apply_documents(documents, ["test"] * len(documents))
    alice.commit("8080")
    ack(site, tokens, "host-a")
    ack(site, tokens, "host-b", "refused", 2, "hash mismatch: the bundle says f..., its documents hash to 0...")
    started = time.monotonic()
    code, _, err = ngfw(capsys, site, vera, "status", "--wait", "2", "--timeout", "20")
    assert code == 1 and time.monotonic() - started < 3
    assert err == (
        "ngfw status: version 2 was refused: host-b refused version 2: hash mismatch: the bundle says "
        "f..., its documents hash to 0... (it runs version 1)\n"
    )
    # a version the hosts have left behind counts as run: host-a runs 2, host-b still 1
    assert ngfw(capsys, site, vera, "status", "--wait", "1", "--timeout", "1")[0] == 0
    # a version nobody committed yet: said so at the end
    code, _, err = ngfw(capsys, site, vera, "status", "--wait", "3", "--timeout", "0.2")
    assert code == 1 and "(it is not committed: the running version is 2)" in err


def test_get_lists_and_prints_running_resources(
    site: RunningControl, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = ngfw(capsys, site, tokens["vera"], "get", "policies")
    assert code == 0
    assert [line.split() for line in out.splitlines()] == [
        ["SecurityPolicy", "tenant-a/main", "3", "rules"],
        ["SecurityPolicy", "tenant-b/main", "1", "rules"],
    ]
    code, out, _ = ngfw(capsys, site, tokens["vera"], "get", "SecurityPolicy", "tenant-a/main")
    document = yaml.safe_load(out)  # ready for `ngfw apply -f`
    assert document["kind"] == "SecurityPolicy" and document["metadata"] == {"name": "main", "vsys": "tenant-a"}
    assert [r["name"] for r in document["spec"]["rules"]] == ["web-to-db", "web-to-b", "default-deny"]
    code, out, _ = ngfw(capsys, site, tokens["vera"], "get", "vm", "web-01", "-o", "json")
    assert code == 0 and '"mac": "02:00:00:00:01:01"' in out
    code, out, _ = ngfw(capsys, site, tokens["vera"], "get", "vms")
    assert "Workload tenant-a/web-01" in out and "02:00:00:00:01:01 10.77.0.11 host host-a  [tier=web]" in out
    # a tenant-admin sees its own tenant only
    code, out, _ = ngfw(capsys, site, tokens["tina"], "get", "policy")
    assert code == 0 and "tenant-a/main" in out and "tenant-b" not in out
    # bad input: one sentence each
    code, _, err = ngfw(capsys, site, tokens["vera"], "get", "policy", "tenant-a/nosuch")
    assert code == 1 and err == (
        "ngfw get: no SecurityPolicy tenant-a/nosuch in the running configuration (version 1)\n"
    )
    code, _, err = ngfw(capsys, site, tokens["vera"], "get", "rules")
    assert code == 1 and err.startswith("ngfw get: unknown kind 'rules': VirtualSystem, Workload")


def test_delete_goes_to_the_candidate_like_the_api(
    site: RunningControl, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    alice = tokens["alice"]
    code, _, err = ngfw(capsys, site, alice, "delete", "policy", "main")
    assert code == 1 and err == (
        "ngfw delete: SecurityPolicy 'main' exists in vsys tenant-a, tenant-b: name one (VSYS/main or --vsys)\n"
    )
    # a group a rule names cannot go: the candidate is checked as a whole, and stays as it was
    code, _, err = ngfw(capsys, site, alice, "delete", "group", "db", "--vsys", "tenant-a")
    assert code == 1 and "(HTTP 422)" in err and "group:db" in err, err
    code, out, _ = ngfw(capsys, site, alice, "delete", "policy", "tenant-b/main")
    assert code == 0 and out.startswith("candidate: deleted SecurityPolicy tenant-b/main\n")
    assert ngfw(capsys, site, alice, "get", "policy", "tenant-b/main")[0] == 0  # still running: not committed
    code, out, _ = ngfw(capsys, site, alice, "get", "policy", "--candidate")
    assert "tenant-a/main" in out and "tenant-b/main" not in out
    assert ngfw(capsys, site, alice, "commit", "-m", "tenant-b closes")[0] == 0
    code, _, err = ngfw(capsys, site, alice, "get", "policy", "tenant-b/main")
    assert code == 1 and "no SecurityPolicy tenant-b/main in the running configuration (version 2)" in err
    # the roles hold: a viewer deletes nothing
    code, _, err = ngfw(capsys, site, tokens["vera"], "delete", "policy", "tenant-a/main")
    assert code == 1 and "(HTTP 403)" in err


def test_delete_identity_removes_a_workload_without_a_commit(
    site: RunningControl, tokens: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = ngfw(capsys, site, tokens["otto"], "delete", "--identity", "workload", "db-01")
    assert code == 0 and out == "Workload tenant-a/db-01 removed: identity revision 2 (no commit needed)\n"
    running: dict[str, Any] = client(site, tokens, "vera").get("/running")
    assert running["version"] == 1 and running["identity"] == 2
    assert not [d for d in running["documents"] if d["metadata"]["name"] == "db-01"]
    code, _, err = ngfw(capsys, site, tokens["otto"], "delete", "--identity", "policy", "tenant-a/main")
    assert code == 1 and "only Workloads change through identity" in err
