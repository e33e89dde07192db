"""The control API over real HTTP, on SQLite and on etcd: commit, rollback, diff, audit, bad input, conflicts."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from ngfw.control.client import ControlClient, ControlError
from ngfw.control.documents import bundle_hash
from ngfw.control.server import build_routes
from ngfw.control.service import Control
from tests.support.control import RunningControl, client, find, two_tenants


def apply(c: ControlClient, documents: list[dict[str, Any]]) -> Any:
    return c.apply_documents(documents, [f"test document {i + 1}" for i in range(len(documents))])


def commit_two_tenants(control: RunningControl, tokens: dict[str, str]) -> ControlClient:
    alice = client(control, tokens, "alice")
    apply(alice, two_tenants())
    assert alice.commit("two tenants")["version"] == 1
    return alice


def refused(call: Any) -> ControlError:
    with pytest.raises(ControlError) as info:
        call()
    return info.value


def test_commit_stores_version_with_author_message_and_hash(control: RunningControl, tokens: dict[str, str]) -> None:
    alice = client(control, tokens, "alice")
    result = apply(alice, two_tenants())
    assert "SecurityPolicy tenant-a/main" in result["changed"]
    assert alice.get("/running")["version"] == 0  # edits stay in the candidate until commit

    committed = alice.commit("two tenants")
    assert (committed["version"], committed["rules"]) == (1, 4)
    history = alice.get("/versions")["versions"]
    assert [(v["number"], v["author"], v["message"]) for v in history] == [(1, "alice", "two tenants")]
    running = alice.get("/running")
    assert running["version"] == 1
    assert running["hash"] == committed["hash"] == bundle_hash(1, running["identity"], running["documents"])
    assert alice.get("/candidate")["changes"] == []  # the candidate was consumed


def test_commit_reports_lint_warnings(control: RunningControl, tokens: dict[str, str]) -> None:
    alice = commit_two_tenants(control, tokens)
    documents = two_tenants()
    rules = find(documents, "SecurityPolicy", "main", "tenant-a")["spec"]["rules"]
    rules.append({"name": "after-deny", "from": ["group:web"], "to": ["any"], "action": "allow"})
    apply(alice, [find(documents, "SecurityPolicy", "main", "tenant-a")])
    warnings = alice.commit("unreachable rule")["warnings"]
    assert any("'after-deny'" in w and "shadowed by rule 'default-deny'" in w for w in warnings)


def test_rollback_publishes_the_old_policy_as_a_new_version(control: RunningControl, tokens: dict[str, str]) -> None:
    alice = commit_two_tenants(control, tokens)
    v1_hash = alice.get("/running")["hash"]
    documents = two_tenants()
    find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/8080"]
    apply(alice, [find(documents, "SecurityPolicy", "main", "tenant-b")])
    alice.commit("tenant-b on 8080")

    result = alice.post("/rollback", {"version": 1, "message": "8080 broke the app"})
    assert result["version"] == 3
    running = alice.get("/running")
    assert find(running["documents"], "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] == [
        "tcp/80"
    ]
    assert running["hash"] != v1_hash  # a new version number: a new bundle, which every host must ack
    assert alice.get("/diff", **{"from": "1", "to": "3"})["changes"] == []
    assert alice.get("/versions/3")["rollback_of"] == 1
    assert refused(lambda: alice.post("/rollback", {"version": 9})).status == 404


def test_diff_between_versions_and_candidate(control: RunningControl, tokens: dict[str, str]) -> None:
    alice = commit_two_tenants(control, tokens)
    documents = two_tenants()
    find(documents, "Workload", "db-01")["metadata"]["labels"]["tier"] = "db-new"
    apply(
        alice,
        [
            find(documents, "Workload", "db-01"),
            {
                "apiVersion": "ngfw/v1",
                "kind": "Group",
                "metadata": {"name": "new", "vsys": "tenant-a"},
                "spec": {"selector": {"tier": "db-new"}},
            },
        ],
    )
    changes = alice.get("/diff")["changes"]  # running vs candidate
    assert {(c["resource"], c["change"]) for c in changes} == {
        ("Workload tenant-a/db-01", "modified"),
        ("Group tenant-a/new", "added"),
    }
    modified = next(c for c in changes if c["change"] == "modified")
    assert "-    tier: db\n" in modified["diff"] and "+    tier: db-new\n" in modified["diff"]

    alice.commit("relabel db")
    between = alice.get("/diff", **{"from": "2", "to": "1"})["changes"]
    assert {(c["resource"], c["change"]) for c in between} == {
        ("Workload tenant-a/db-01", "modified"),
        ("Group tenant-a/new", "removed"),
    }


def test_no_token_is_401_and_is_audited(control: RunningControl, tokens: dict[str, str]) -> None:
    assert refused(lambda: client(control, tokens, None).get("/running")).status == 401
    assert refused(lambda: ControlClient(control.url, "not-a-token").get("/running")).status == 401
    entries = client(control, tokens, "alice").get("/audit")["entries"]
    assert [e["outcome"] for e in entries[:2]] == ["unauthenticated", "unauthenticated"]
    assert {e["detail"]["reason"] for e in entries[:2]} == {
        "unknown token",
        "no bearer token (Authorization: Bearer TOKEN)",
    }


def test_vm_operator_cannot_change_rules_or_commit(control: RunningControl, tokens: dict[str, str]) -> None:
    commit_two_tenants(control, tokens)
    otto = client(control, tokens, "otto")
    policy = find(two_tenants(), "SecurityPolicy", "main", "tenant-a")
    policy["spec"]["rules"][0]["action"] = "deny"
    error = refused(lambda: apply(otto, [policy]))
    assert error.status == 403 and "identity API" in error.body["error"]
    assert refused(lambda: otto.commit("sneaky")).status == 403
    assert refused(lambda: otto.post("/rollback", {"version": 1})).status == 403
    denials = [e for e in client(control, tokens, "alice").get("/audit")["entries"] if e["outcome"] == "denied"]
    assert {(e["who"], e["action"]) for e in denials} == {
        ("otto", "candidate.apply"),
        ("otto", "commit"),
        ("otto", "rollback"),
    }
    assert client(control, tokens, "alice").get("/running")["version"] == 1


def test_vm_operator_relabels_a_workload_without_a_commit(control: RunningControl, tokens: dict[str, str]) -> None:
    alice = commit_two_tenants(control, tokens)
    before = alice.get("/running")
    db = find(two_tenants(), "Workload", "db-01")
    db["metadata"]["labels"] = {"tier": "web"}
    db["spec"]["interfaces"][0]["ips"] = ["10.77.0.22"]  # moved, readdressed
    result = client(control, tokens, "otto").put_workload("tenant-a", "db-01", db)
    assert (result["version"], result["identity"], result["changed"]) == (1, before["identity"] + 1, True)

    after = alice.get("/running")
    assert after["version"] == 1 and after["hash"] != before["hash"]
    assert find(after["documents"], "Workload", "db-01")["spec"]["interfaces"][0]["ips"] == ["10.77.0.22"]
    assert len(alice.get("/versions")["versions"]) == 1  # no policy version was made
    # a later policy commit keeps the vm-operator's change (its candidate predates it)
    documents = two_tenants()
    find(documents, "Group", "db", "tenant-a")["spec"]["selector"] = {"tier": "db"}
    find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/81"]
    apply(alice, [find(documents, "SecurityPolicy", "main", "tenant-b")])
    alice.commit("81")
    assert find(alice.get("/running")["documents"], "Workload", "db-01")["metadata"]["labels"] == {"tier": "web"}


def test_identity_update_that_breaks_a_reference_is_refused(control: RunningControl, tokens: dict[str, str]) -> None:
    alice = commit_two_tenants(control, tokens)
    documents = two_tenants()
    find(documents, "SecurityPolicy", "main", "tenant-a")["spec"]["rules"][0]["to"] = ["vm:db-01"]
    apply(alice, [find(documents, "SecurityPolicy", "main", "tenant-a")])
    alice.commit("name db-01")
    error = refused(lambda: client(control, tokens, "otto").request("DELETE", "/identity/workloads/tenant-a/db-01"))
    assert error.status == 422
    assert error.problems[0]["resource"] == "SecurityPolicy tenant-a/main"
    assert error.problems[0]["field"] == "spec.rules[0].to[0]"
    assert "db-01" in json.dumps(alice.get("/identity")["workloads"])


def test_identity_update_that_claims_another_workloads_address_is_refused(
    control: RunningControl, tokens: dict[str, str]
) -> None:
    alice = commit_two_tenants(control, tokens)
    before = alice.get("/running")
    documents = two_tenants()
    web_ip = find(documents, "Workload", "web-01")["spec"]["interfaces"][0]["ips"][0]
    db = find(documents, "Workload", "db-01")
    db["spec"]["interfaces"][0]["ips"] = [web_ip]
    error = refused(lambda: client(control, tokens, "otto").put_workload("tenant-a", "db-01", db))
    assert error.status == 422
    assert error.problems[0]["resource"] == "Workload tenant-a/db-01"
    assert error.problems[0]["field"] == "spec.interfaces[0].ips[0]"
    assert web_ip in error.problems[0]["message"] and "web-01" in error.problems[0]["message"]
    assert alice.get("/running")["hash"] == before["hash"]  # nothing changed


def test_tenant_admin_cannot_touch_another_vsys(control: RunningControl, tokens: dict[str, str]) -> None:
    commit_two_tenants(control, tokens)
    tina = client(control, tokens, "tina")
    documents = two_tenants()
    other = find(documents, "SecurityPolicy", "main", "tenant-b")
    other["spec"]["rules"][0]["services"] = ["tcp"]
    error = refused(lambda: apply(tina, [other]))
    assert error.status == 403 and "tenant-b" in error.body["error"]
    assert refused(lambda: apply(tina, [find(documents, "VirtualSystem", "tenant-a")])).status == 403
    assert refused(lambda: tina.put_workload("tenant-b", "app-01", find(documents, "Workload", "app-01"))).status == 403
    assert refused(lambda: tina.post("/rollback", {"version": 1})).status == 403
    # its own tenant: edit and commit
    own = find(documents, "SecurityPolicy", "main", "tenant-a")
    own["spec"]["rules"][0]["services"] = ["tcp/5433"]
    apply(tina, [own])
    assert tina.commit("db port")["version"] == 2
    # it sees its own tenant only
    assert {d["metadata"].get("vsys", d["metadata"]["name"]) for d in tina.get("/running")["documents"]} == {"tenant-a"}


def test_viewer_reads_but_changes_nothing(control: RunningControl, tokens: dict[str, str]) -> None:
    commit_two_tenants(control, tokens)
    vera = client(control, tokens, "vera")
    assert vera.get("/running")["version"] == 1
    assert vera.get("/audit")["entries"]
    assert refused(lambda: apply(vera, two_tenants()[:1])).status == 403
    assert refused(lambda: vera.put_workload("tenant-a", "web-01", two_tenants()[1])).status == 403
    assert refused(lambda: vera.commit("x")).status == 403


def test_bad_input_names_resource_and_field_and_keeps_the_candidate(
    control: RunningControl, tokens: dict[str, str]
) -> None:
    alice = commit_two_tenants(control, tokens)
    documents = two_tenants()
    find(documents, "Group", "db", "tenant-a")["spec"]["selector"] = {"tier": "database"}
    apply(alice, [find(documents, "Group", "db", "tenant-a")])
    candidate = alice.get("/candidate")

    bad_yaml = refused(
        lambda: alice.request("POST", "/candidate/apply", raw=b"kind: [unclosed\n", content_type="application/yaml")
    )
    assert bad_yaml.status == 400 and "invalid YAML" in bad_yaml.body["error"]

    schema = two_tenants()
    find(schema, "SecurityPolicy", "main", "tenant-a")["spec"]["rules"][1]["action"] = "permit"
    error = refused(lambda: apply(alice, [find(schema, "SecurityPolicy", "main", "tenant-a")]))
    assert error.status == 422
    assert error.problems == [
        {
            "resource": "SecurityPolicy tenant-a/main",
            "field": "spec.rules[1].action",
            "message": "must be one of allow, deny, reject (got 'permit')",
        }
    ]

    dangling = two_tenants()
    find(dangling, "SecurityPolicy", "main", "tenant-a")["spec"]["rules"][0]["to"] = ["group:dbs"]
    error = refused(lambda: apply(alice, [find(dangling, "SecurityPolicy", "main", "tenant-a")]))
    assert error.status == 422
    assert (error.problems[0]["resource"], error.problems[0]["field"]) == (
        "SecurityPolicy tenant-a/main",
        "spec.rules[0].to[0]",
    )
    assert "Group 'dbs' does not exist" in error.problems[0]["message"]

    twice = [find(two_tenants(), "Group", "web", "tenant-a")] * 2
    error = refused(lambda: apply(alice, twice))
    assert error.status == 400 and error.problems[0]["resource"] == "Group tenant-a/web"
    assert error.problems[0]["field"] == "metadata.name"

    mismatch = refused(
        lambda: alice.request(
            "PUT", "/candidate/resources/Group/tenant-a/other", find(two_tenants(), "Group", "web", "tenant-a")
        )
    )
    assert mismatch.status == 422 and mismatch.problems[0]["field"] == "metadata.name"

    assert alice.get("/candidate") == candidate  # every refusal left it as it was
    rejected = [e for e in alice.get("/audit")["entries"] if e["outcome"] == "rejected"]
    assert len(rejected) == 4  # schema, reference, duplicate, URL mismatch


def test_concurrent_commit_gets_a_clear_conflict(control: RunningControl, tokens: dict[str, str]) -> None:
    alice = commit_two_tenants(control, tokens)
    bob = client(control, tokens, "bob")
    documents = two_tenants()
    find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/8080"]
    apply(alice, [find(documents, "SecurityPolicy", "main", "tenant-b")])
    find(documents, "Group", "web", "tenant-a")["spec"]["selector"] = {"tier": "web", "env": "prod"}
    apply(bob, [find(documents, "Group", "web", "tenant-a")])

    assert alice.commit("8080")["version"] == 2
    error = refused(lambda: bob.commit("prod web only"))
    assert error.status == 409
    assert "version 2 was committed by alice ('8080') after version 1" in error.body["error"]
    assert "rebase" in error.body["error"]
    assert bob.get("/running")["version"] == 2

    bob.post("/candidate/rebase", {})
    assert bob.commit("prod web only")["version"] == 3
    running = bob.get("/running")["documents"]
    assert find(running, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] == ["tcp/8080"]
    assert find(running, "Group", "web", "tenant-a")["spec"]["selector"] == {"tier": "web", "env": "prod"}


def test_two_controllers_racing_for_one_version_one_wins(
    store_url: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    first = RunningControl(store_url, tmp_path / "tokens.json")
    second = RunningControl(store_url, tmp_path / "tokens.json")  # another controller on the same store
    try:
        commit_two_tenants(first, tokens)
        results: dict[str, Any] = {}
        barrier = threading.Barrier(2)

        def commit(name: str, control: RunningControl, port: str) -> None:
            c = client(control, tokens, name)
            documents = two_tenants()
            find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = [port]
            apply(c, [find(documents, "SecurityPolicy", "main", "tenant-b")])
            barrier.wait()
            try:
                results[name] = c.commit(f"{name}'s change")["version"]
            except ControlError as exc:
                results[name] = exc.status

        threads = [
            threading.Thread(target=commit, args=("alice", first, "tcp/81")),
            threading.Thread(target=commit, args=("bob", second, "tcp/82")),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(results.values()) == [2, 409]
        assert [v["number"] for v in client(second, tokens, "alice").get("/versions")["versions"]] == [2, 1]
    finally:
        first.stop()
        second.stop()


def test_restart_keeps_every_committed_version(control: RunningControl, tokens: dict[str, str]) -> None:
    alice = commit_two_tenants(control, tokens)
    documents = two_tenants()
    find(documents, "SecurityPolicy", "main", "tenant-b")["spec"]["rules"][0]["services"] = ["tcp/8080"]
    apply(alice, [find(documents, "SecurityPolicy", "main", "tenant-b")])
    alice.commit("8080")
    running = alice.get("/running")

    restarted = control.restart()
    try:
        again = client(restarted, tokens, "alice")
        assert again.get("/running") == running
        assert [v["message"] for v in again.get("/versions")["versions"]] == ["8080", "two tenants"]
        assert again.get("/versions/1")["documents"]
        assert any(e["action"] == "commit" for e in again.get("/audit")["entries"])
    finally:
        restarted.stop()


def test_openapi_document_describes_every_route(control: RunningControl) -> None:
    document = ControlClient(control.url, None).get("/openapi.json")  # no token needed to read the API
    assert document["openapi"].startswith("3.")
    routes = build_routes(Control.__new__(Control))
    for route in routes:
        assert route.method.lower() in document["paths"][route.path], route.path
    assert document["paths"]["/commit"]["post"]["responses"]["409"]
    assert "Workload" in document["components"]["schemas"]
