"""Signature sets distributed by control: `ngfw rules push`, agents that fetch and verify them, checks at commit.

A set is pushed once (stored by the sha256 of its archive), named by a SignatureSet resource, and
fetched by every host's agent, which verifies the hash before the dataplane compiles it; a set that
does not verify is refused on the host and reported, and the host keeps what it ran.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ngfw.cli import main
from ngfw.compiler.signature_archive import SignatureCache, compress, pack_path, sha256
from ngfw.compiler.tables import CompiledPolicy
from ngfw.control.agent import Agent
from ngfw.control.client import ControlClient, ControlError
from ngfw.dataplane.threats import load_signature_sets, set_hashes
from tests.support.control import RunningControl, client, two_tenants

ET = """\
alert http any any -> any any (msg:"ET TEST admin page"; flow:to_server; http.uri; content:"/admin"; sid:2000001; rev:1;)
drop tcp any any -> any any (msg:"ET TEST exploit"; flow:to_server; content:"EVIL-PAYLOAD"; sid:2000002; rev:3;)
alert udp any any -> any any (msg:"ET TEST beacon"; content:"BEACON"; sid:2000003; rev:1;)
"""


def rules_dir(path: Path, text: str = ET, **more: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "emerging-test.rules").write_text(text)
    for name, body in more.items():
        (path / f"{name}.rules").write_text(body)
    return path


class CompilingDataplane:
    """Stands in for Dataplane.load: compiles the signature sets the policy names from the agent's cache,
    as the dataplane does, and reports their hashes the way it does (from the files it compiled)."""

    def __init__(self, cache: SignatureCache) -> None:
        self.cache = cache
        self.loaded: list[CompiledPolicy] = []
        self.hashes: dict[str, str] = {}
        self.signatures_loaded = 0

    def apply(self, policy: CompiledPolicy) -> None:
        sources = [(name, str(self.cache.files_of(digest))) for name, digest in policy.signature_sets]
        if sources:
            self.signatures_loaded = load_signature_sets(sources, strict=True).loaded
            self.hashes = set_hashes(sources, {})  # recomputed from the files, not taken from the bundle
        self.loaded.append(policy)

    def running(self) -> dict[str, str]:
        return dict(self.hashes)


@pytest.fixture
def agents() -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for agent in started:
        agent.stop()


def start_agent(
    agents: list[Agent], control: RunningControl, tokens: dict[str, str], host: str, cache: Path
) -> tuple[Agent, CompilingDataplane]:
    dataplane = CompilingDataplane(SignatureCache(cache))
    agent = Agent(
        ControlClient(control.url, tokens[host], timeout=10),
        host,
        dataplane.apply,
        wait=2.0,
        retry_interval=0.05,
        signature_cache=dataplane.cache,
        running_signatures=dataplane.running,
    )
    agent.start()
    agents.append(agent)
    return agent, dataplane


def run(capsys: pytest.CaptureFixture[str], control: RunningControl, token: str, *argv: str) -> tuple[int, str, str]:
    os.environ["NGFW_TOKEN"] = token
    try:
        status = main([*argv, "--control", control.url])
    finally:
        del os.environ["NGFW_TOKEN"]
    out, err = capsys.readouterr()
    return status, out, err


def wait_status(control: RunningControl, tokens: dict[str, str], done: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = client(control, tokens, "vera").get("/status")
        if done(status) or time.monotonic() > deadline:
            return dict(status)
        time.sleep(0.05)


def profile(exceptions: list[dict[str, Any]], signatures: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"exceptions": exceptions}
    if signatures is not None:
        spec["signatures"] = signatures
    return {
        "apiVersion": "ngfw/v1",
        "kind": "ThreatProfile",
        "metadata": {"name": "strict", "vsys": "tenant-a"},
        "spec": spec,
    }


def test_a_pushed_set_reaches_every_host_with_the_same_hash(
    control: RunningControl,
    tokens: dict[str, str],
    tmp_path: Path,
    agents: list[Agent],
    capsys: pytest.CaptureFixture[str],
) -> None:
    alice = client(control, tokens, "alice")
    alice.apply_documents(two_tenants(), ["test"] * 9)
    alice.commit("two tenants")
    a, dp_a = start_agent(agents, control, tokens, "host-a", tmp_path / "cache-a")
    b, dp_b = start_agent(agents, control, tokens, "host-b", tmp_path / "cache-b")
    source = rules_dir(tmp_path / "suricata-update" / "rules")
    expected = sha256(pack_path(source))

    status, out, err = run(capsys, control, tokens["alice"], "rules", "push", "et", str(source), "-m", "ET Open")
    assert status == 0, err
    assert f"signature set et: sha256 {expected} (3 rules, 1 files" in out and "committed version 2" in out

    report = wait_status(control, tokens, lambda s: s["realized"] == 2 and all(h["signatures"] for h in s["hosts"]))
    assert report["summary"] == "version 2 on 2 of 2 hosts"
    assert {h["host"]: h["signatures"] for h in report["hosts"]} == {
        "host-a": {"et": expected},
        "host-b": {"et": expected},
    }
    assert dp_a.signatures_loaded == dp_b.signatures_loaded == 3  # both compiled what they fetched
    assert (tmp_path / "cache-a" / f"{expected}.tar").exists() and (tmp_path / "cache-b" / expected).is_dir()
    status, out, _ = run(capsys, control, tokens["vera"], "status")
    assert f"signatures et={expected[:12]}" in out and out.count(f"et={expected[:12]}") == 2

    # the bundle names the set by name and hash only: its rules are not in any version
    running = alice.get("/running")
    [document] = [d for d in running["documents"] if d["kind"] == "SignatureSet"]
    assert document == {
        "apiVersion": "ngfw/v1",
        "kind": "SignatureSet",
        "metadata": {"name": "et"},
        "spec": {"sha256": expected, "description": None},
    }
    assert "EVIL-PAYLOAD" not in str(running)

    # the same files pushed again: nothing stored, nothing to commit
    status, out, _ = run(capsys, control, tokens["alice"], "rules", "push", "et", str(source), "-m", "again")
    assert status == 0 and "already stored" in out and "nothing to commit" in out


def test_a_set_corrupted_in_the_store_is_refused_by_the_host_which_keeps_its_sets(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], agents: list[Agent], capsys: pytest.CaptureFixture[str]
) -> None:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    try:
        alice = client(control, tokens, "alice")
        alice.apply_documents(two_tenants(), ["test"] * 9)
        alice.commit("two tenants")
        agent, dataplane = start_agent(agents, control, tokens, "host-a", tmp_path / "cache")
        first = rules_dir(tmp_path / "v1")
        assert run(capsys, control, tokens["alice"], "rules", "push", "et", str(first), "-m", "ET v1")[0] == 0
        assert agent.wait_for(lambda g: g.current is not None and g.current.version == 2, 20)
        good = dataplane.running()

        second = rules_dir(
            tmp_path / "v2", ET + 'alert tcp any any -> any any (msg:"new"; content:"NEW"; sid:2000004;)\n'
        )
        digest = sha256(pack_path(second))
        alice.push_signature_set(digest, compress(pack_path(second)))
        # stored fine, then altered behind control's back: one rule's sid is not what was pushed
        forged = compress(pack_path(rules_dir(tmp_path / "forged", ET.replace("EVIL-PAYLOAD", "HARMLESS"))))
        db = sqlite3.connect(sqlite_url.removeprefix("sqlite://"))
        db.execute("UPDATE signature_sets SET data = ? WHERE sha256 = ?", (forged, digest))
        db.commit()
        db.close()
        document = {
            "apiVersion": "ngfw/v1",
            "kind": "SignatureSet",
            "metadata": {"name": "et"},
            "spec": {"sha256": digest},
        }
        alice.apply_documents([document], ["test"])
        assert alice.commit("ET v2")["version"] == 3

        assert agent.wait_for(lambda g: g.refused, 20)
        assert agent.current is not None and agent.current.version == 2  # still running v1's set
        assert [p.version for p in dataplane.loaded] == [1, 2] and dataplane.running() == good
        report = wait_status(control, tokens, lambda s: s["hosts"] and s["hosts"][0]["status"] == "refused")
        host = report["hosts"][0]
        assert (host["version"], host["status"], host["problem_version"]) == (2, "refused", 3)
        assert "signature set et does not verify: sha256 mismatch" in host["detail"]
        assert host["signatures"] == good
        assert not (tmp_path / "cache" / digest).exists()
        audit = client(control, tokens, "alice").get("/audit")["entries"]
        assert any(e["action"] == "agent.refused" and e["target"] == "host-a" for e in audit)
    finally:
        control.stop()


def test_a_push_is_refused_for_malformed_rules_a_wrong_hash_or_a_role(
    control: RunningControl, tokens: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = rules_dir(tmp_path / "bad", ET + 'alert tcp any any -> any any (msg:"bad"; content:"|4|"; sid:2000009;)\n')
    status, out, err = run(capsys, control, tokens["alice"], "rules", "push", "et", str(bad))
    assert status == 1
    assert "1 malformed rule(s): the set is refused" in err
    assert "emerging-test.rules:4: sid 2000009: bad hex in content" in err
    assert client(control, tokens, "vera").get("/signature-sets")["signature_sets"] == []

    archive = pack_path(rules_dir(tmp_path / "good"))
    alice = client(control, tokens, "alice")
    with pytest.raises(ControlError) as refused:
        alice.push_signature_set("0" * 64, compress(archive))
    assert refused.value.status == 422 and f"hashes to {sha256(archive)}, not to {'0' * 64}" in str(refused.value.body)
    with pytest.raises(ControlError) as refused:
        client(control, tokens, "tina").push_signature_set(sha256(archive), compress(archive))
    assert refused.value.status == 403 and "signature sets" in refused.value.body["error"]
    status, _, err = run(capsys, control, tokens["alice"], "rules", "push", "et", str(tmp_path / "nowhere"))
    assert status == 1 and "no such rule file or directory" in err


def test_exceptions_are_checked_against_the_pushed_sets_at_commit(
    control: RunningControl, tokens: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alice = client(control, tokens, "alice")
    alice.apply_documents(two_tenants(), ["test"] * 9)
    alice.commit("two tenants")
    assert (
        run(capsys, control, tokens["alice"], "rules", "push", "et", str(rules_dir(tmp_path / "et")), "-m", "ET")[0]
        == 0
    )

    with pytest.raises(ControlError) as refused:
        alice.apply_documents([profile([{"sid": 2000002, "source": ["vm:web-01"]}, {"sid": 2999999}])], ["p.yaml"])
    assert refused.value.status == 422
    assert refused.value.problems == [
        {
            "resource": "ThreatProfile tenant-a/strict",
            "field": "spec.exceptions[1].sid",
            "message": "unknown signature 1:2999999 (not in signature sets et)",
        }
    ]

    result = alice.apply_documents([profile([{"sid": 2000002, "source": ["vm:web-01"]}])], ["p.yaml"])
    assert result["changed"] == ["ThreatProfile tenant-a/strict"] and result["warnings"] == []

    # a profile of a set only the hosts have (--rules local=...): checked there, warned about here
    result = alice.apply_documents([profile([{"sid": 12345}], signatures=["local"])], ["p.yaml"])
    assert any(
        "ThreatProfile tenant-a/strict: the signatures its exceptions name are not checked here: its sets "
        "local are not distributed by control" in w
        for w in result["warnings"]
    )

    missing = {
        "apiVersion": "ngfw/v1",
        "kind": "SignatureSet",
        "metadata": {"name": "et"},
        "spec": {"sha256": "a" * 64},
    }
    with pytest.raises(ControlError) as refused:
        alice.apply_documents([missing], ["set.yaml"])
    assert refused.value.problems[0]["resource"] == "SignatureSet et"
    assert refused.value.problems[0]["field"] == "spec.sha256"
    assert "push it with `ngfw rules push et PATH`" in refused.value.problems[0]["message"]


def test_a_restarted_host_runs_its_cached_set_while_control_is_down(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], agents: list[Agent], capsys: pytest.CaptureFixture[str]
) -> None:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    alice = client(control, tokens, "alice")
    alice.apply_documents(two_tenants(), ["test"] * 9)
    alice.commit("two tenants")
    source = rules_dir(tmp_path / "et")
    assert run(capsys, control, tokens["alice"], "rules", "push", "et", str(source), "-m", "ET")[0] == 0
    dataplane = CompilingDataplane(SignatureCache(tmp_path / "cache"))
    agent = Agent(
        ControlClient(control.url, tokens["host-a"], timeout=5),
        "host-a",
        dataplane.apply,
        wait=1.0,
        retry_interval=0.05,
        cache_path=tmp_path / "bundle.json",
        signature_cache=dataplane.cache,
        running_signatures=dataplane.running,
    )
    agent.start()
    agents.append(agent)
    assert agent.wait_for(lambda g: g.current is not None and g.current.version == 2, 20)
    agent.stop()
    control.stop()

    restarted = CompilingDataplane(SignatureCache(tmp_path / "cache"))
    again = Agent(
        ControlClient(control.url, tokens["host-a"], timeout=1),
        "host-a",
        restarted.apply,
        wait=1.0,
        retry_interval=0.05,
        cache_path=tmp_path / "bundle.json",
        signature_cache=restarted.cache,
        running_signatures=restarted.running,
    )
    assert again.load_cache()  # control is down: the cached bundle and set, verified
    assert restarted.loaded[-1].version == 2 and restarted.signatures_loaded == 3
    assert restarted.running() == {"et": sha256(pack_path(source))}
    # a cached set whose bytes changed on disk no longer counts as held
    tar = tmp_path / "cache" / f"{sha256(pack_path(source))}.tar"
    tar.write_bytes(tar.read_bytes()[:-10] + b"x" * 10)
    assert not SignatureCache(tmp_path / "cache").has(sha256(pack_path(source)))
