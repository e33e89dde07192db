"""`ngfw control` with two hosts' dataplanes: policy committed once, enforced on both hosts by real traffic.

The two-host lab (`ngfw.lab.hosts`): tenant-a's web1 on host-a, tenant-b's db1 on host-b, the lab
server srv outside both tenants. Control runs in the management namespace with a SQLite store;
each host's `ngfw dataplane --control URL --host NAME` takes its bundle from it. Administrators
drive it with the `ngfw` CLI, as a person would; clients are curl and ping inside the workloads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from ngfw.control.client import ControlError
from ngfw.lab.commit_load import churn_rules, commits_under_load
from ngfw.lab.control_site import DB_PORT, ControlSite, control_site
from ngfw.lab.hosts import two_host_up
from ngfw.lab.lock import claim_prefix, release
from ngfw.lab.netns import call_in
from ngfw.lab.services import lab_services
from ngfw.lab.topology import lab_down
from tests.support.netns import REPO, metric

POLICY = REPO / "rules" / "examples" / "lab-two-hosts.yaml"
BASELINE: list[dict[str, Any]] = list(yaml.safe_load_all(POLICY.read_text()))
CURL_TIMEOUT = 28


def policy_of(documents: list[dict[str, Any]], vsys: str) -> dict[str, Any]:
    found = next(d for d in documents if d["kind"] == "SecurityPolicy" and d["metadata"]["vsys"] == vsys)
    return json.loads(json.dumps(found))  # a copy the test may change


def with_rule(policy: dict[str, Any], rule: dict[str, Any], before: str = "default-deny") -> dict[str, Any]:
    rules = policy["spec"]["rules"]
    index = next(i for i, r in enumerate(rules) if r["name"] == before)
    rules.insert(index, rule)
    return policy


TENANT_B_LETS_WEB_IN = {
    "name": "tenant-a-web-to-db",
    "from": ["cidr:10.77.0.11/32", "cidr:10.77.0.12/32"],
    "to": ["group:db"],
    "services": [f"tcp/{DB_PORT}"],
    "action": "allow",
}


@pytest.fixture(scope="module")
def control_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlSite]:
    # a prefix of its own ("nc<N>"): the session's one-host lab and a benchmark's lab stay untouched
    prefix, lock = claim_prefix(f"nc{(os.getpid() + i) % 1000}" for i in range(1000))
    try:
        two = two_host_up(prefix)
        with lab_services(two.lab), control_site(two, tmp_path_factory.mktemp("control-hosts"), POLICY) as site:
            yield site
    finally:
        lab_down(prefix)
        release(lock)


@pytest.fixture
def cl(control_lab: ControlSite) -> Iterator[ControlSite]:
    """The control lab, with the baseline policy running on both hosts before and after the test."""
    _back_to_baseline(control_lab)
    yield control_lab
    for name, dp in control_lab.dataplanes.items():
        assert dp.running(), f"dataplane {name} exited:\n{dp.stderr_text()}"


def _back_to_baseline(lab: ControlSite) -> None:
    for who in ("alice", "bob"):
        lab.call(who, "DELETE", "/candidate")
    lab.call("admin", "POST", "/candidate/apply", {"documents": BASELINE, "sources": ["baseline"] * len(BASELINE)})
    if lab.call("admin", "GET", "/diff", **{"from": "running", "to": "candidate"})["changes"]:
        lab.wait_realized(int(lab.call("admin", "POST", "/commit", {"message": "back to the baseline"})["version"]))
    else:
        lab.call("admin", "DELETE", "/candidate")


def curl(lab: ControlSite, ns: str, url: str, *extra: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return call_in(
        ns,
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download}",
            "--connect-timeout",
            "1",
            *extra,
            url,
        ],
        timeout=timeout,
    )


def ping(ns: str, dest: str, count: int = 2) -> subprocess.CompletedProcess[str]:
    return call_in(ns, ["ping", "-c", str(count), "-i", "0.2", "-W", "1", dest], timeout=10)


def db_url(lab: ControlSite, path: str = "/") -> str:
    return f"http://{lab.two.db1.ipv4}:{DB_PORT}{path}"


def test_one_commit_is_enforced_by_both_hosts_dataplanes(cl: ControlSite) -> None:
    version = cl.running_version()
    status = cl.cli("auditor", "status")
    assert status.returncode == 0, status.stderr
    assert f"version {version} on 2 of 2 hosts" in status.stdout
    assert re.search(rf"host-a\s+version {version} .* ok", status.stdout), status.stdout
    assert re.search(rf"host-b\s+version {version} .* ok", status.stdout), status.stdout
    lab = cl.two.lab
    # host-a's dataplane: web1's HTTP to the server is allowed, 8080 is not
    assert curl(cl, lab.web1.ns, f"http://{lab.srv.ipv4}/").stdout.startswith("200")
    assert curl(cl, lab.web1.ns, f"http://{lab.srv.ipv4}:8080/").returncode == CURL_TIMEOUT
    # host-b's dataplane: db1 may ping the server (tenant-b's rule), not reach it over HTTP
    assert ping(cl.two.db1.ns, lab.srv.ipv4).returncode == 0
    assert curl(cl, cl.two.db1.ns, f"http://{lab.srv.ipv4}/").returncode == CURL_TIMEOUT
    for dp in cl.dataplanes.values():
        assert f"ngfw_policy_version {float(version)}" in dp.metrics_text()


def test_tenants_are_isolated_across_hosts(cl: ControlSite) -> None:
    lab, db1 = cl.two.lab, cl.two.db1
    assert ping(lab.web1.ns, lab.srv.ipv4).returncode == 0  # the path itself works
    assert ping(lab.web1.ns, db1.ipv4).returncode != 0  # tenant-a lets icmp out, tenant-b does not let it in
    assert ping(db1.ns, lab.web1.ipv4).returncode != 0  # tenant-b does not let icmp to tenant-a out
    # tenant-a's egress rule alone does not open tenant-b's database
    assert curl(cl, lab.web1.ns, db_url(cl)).returncode == CURL_TIMEOUT


def test_a_cross_tenant_flow_needs_both_tenants_to_allow_it(cl: ControlSite) -> None:
    lab = cl.two.lab
    # bob, tenant-b's admin, lets tenant-a's web servers in, with the CLI
    policy_b = with_rule(policy_of(BASELINE, "tenant-b"), TENANT_B_LETS_WEB_IN)
    path = cl.workdir / "tenant-b.yaml"
    path.write_text(yaml.safe_dump(policy_b))
    assert cl.cli("bob", "apply", "-f", str(path)).returncode == 0
    done = cl.cli("bob", "commit", "-m", "let tenant-a's web in on 8000")
    assert done.returncode == 0, done.stderr
    version = int(re.search(r"committed version (\d+)", done.stdout).group(1))  # type: ignore[union-attr]
    cl.wait_realized(version)
    assert curl(cl, lab.web1.ns, db_url(cl)).stdout.startswith("200")
    assert ping(lab.web1.ns, cl.two.db1.ipv4).returncode != 0  # only what both allow: tcp/8000, not icmp

    # alice, tenant-a's admin, withdraws the egress half: the flow is denied again
    policy_a = policy_of(BASELINE, "tenant-a")
    policy_a["spec"]["rules"] = [r for r in policy_a["spec"]["rules"] if r["name"] != "web-to-tenant-b-db"]
    cl.wait_realized(cl.commit_as("alice", [policy_a], "no more tenant-b db"))
    assert curl(cl, lab.web1.ns, db_url(cl)).returncode == CURL_TIMEOUT


def test_rollback_restores_the_previous_enforcement_on_both_hosts(cl: ControlSite) -> None:
    lab = cl.two.lab
    before = cl.running_version()
    opened = cl.commit_as("bob", [with_rule(policy_of(BASELINE, "tenant-b"), TENANT_B_LETS_WEB_IN)], "open 8000")
    cl.wait_realized(opened)
    assert curl(cl, lab.web1.ns, db_url(cl)).stdout.startswith("200")

    done = cl.cli("admin", "rollback", str(before), "-m", "8000 was a mistake")
    assert done.returncode == 0, done.stderr
    assert f"has the policy of version {before}" in done.stdout
    rolled = opened + 1
    cl.wait_realized(rolled)
    assert f"version {rolled} on 2 of 2 hosts" in cl.cli("auditor", "status").stdout
    assert curl(cl, lab.web1.ns, db_url(cl)).returncode == CURL_TIMEOUT
    assert curl(cl, lab.web1.ns, f"http://{lab.srv.ipv4}/").stdout.startswith("200")


def test_roles_keep_operators_and_tenant_admins_in_their_lanes(cl: ControlSite) -> None:
    lab = cl.two.lab
    before = cl.running_version()
    opening = cl.workdir / "open-tenant-b.yaml"
    opening.write_text(yaml.safe_dump(with_rule(policy_of(BASELINE, "tenant-b"), TENANT_B_LETS_WEB_IN)))

    # a vm-operator cannot change rules, nor commit
    done = cl.cli("ops", "apply", "-f", str(opening))
    assert done.returncode == 1 and "HTTP 403" in done.stderr, done.stderr
    done = cl.cli("ops", "commit", "-m", "sneaky")
    assert done.returncode == 1 and "HTTP 403" in done.stderr, done.stderr
    # a tenant-admin of tenant-a cannot touch tenant-b's policy ...
    done = cl.cli("alice", "apply", "-f", str(opening))
    assert done.returncode == 1 and "HTTP 403" in done.stderr, done.stderr
    # ... but can change its own
    own = cl.workdir / "tenant-a.yaml"
    policy_a = policy_of(BASELINE, "tenant-a")
    policy_a["spec"]["rules"][0]["services"] = ["tcp/80", "tcp/81"]
    own.write_text(yaml.safe_dump(policy_a))
    assert cl.cli("alice", "apply", "-f", str(own)).returncode == 0
    cl.call("alice", "DELETE", "/candidate")

    assert cl.running_version() == before
    assert curl(cl, lab.web1.ns, db_url(cl)).returncode == CURL_TIMEOUT  # still closed on the wire
    denied = [
        (e["who"], e["action"])
        for e in cl.call("auditor", "GET", "/audit", limit=20)["entries"]
        if e["outcome"] == "denied"
    ]
    assert ("ops", "candidate.apply") in denied and ("alice", "candidate.apply") in denied, denied
    assert any(who == "ops" and action == "commit" for who, action in denied), denied


def vsys_with_limits(name: str, **limits: int) -> dict[str, Any]:
    found = next(d for d in BASELINE if d["kind"] == "VirtualSystem" and d["metadata"]["name"] == name)
    document = json.loads(json.dumps(found))
    document["spec"]["limits"] = limits
    return document


# In a workload: open TCP connections to HOST:PORT, all at once or one after another (holding each),
# and print how many were established within the wait. Bounded: at most N sockets, a few seconds.
CONNECT = """
import select, socket, sys, time
host, port, n, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
held, connected = [], 0
def attempt(wait):
    s = socket.socket(); s.setblocking(False); s.connect_ex((host, port)); held.append(s)
    return s
if mode == "together":
    for _ in range(n): attempt(0)
    time.sleep(0.6)
    _, writable, _ = select.select([], held, [], 0)
    connected = sum(1 for s in writable if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0)
else:
    for _ in range(n):
        s = attempt(0)
        _, writable, _ = select.select([], [s], [], 0.6)
        connected += bool(writable) and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
print(connected)
"""


def connections(ns: str, host: str, port: int, n: int, mode: str) -> int:
    done = call_in(ns, [sys.executable, "-c", CONNECT, host, str(port), str(n), mode], timeout=30)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


def quota_drops(cl: ControlSite, host: str, vsys: str, reason: str) -> float:
    return metric(cl.dataplanes[host].metrics_text(), "ngfw_vsys_quota_drops_total", vsys=vsys, reason=reason)


def test_a_tenant_at_its_session_quota_cannot_open_more_and_the_other_tenant_is_unaffected(cl: ControlSite) -> None:
    lab, db1 = cl.two.lab, cl.two.db1
    cl.wait_realized(cl.commit_as("admin", [vsys_with_limits("tenant-a", maxSessions=3)], "tenant-a: 3 sessions"))
    metrics = cl.dataplanes["host-a"].metrics_text()
    assert metric(metrics, "ngfw_vsys_session_limit", vsys="tenant-a") == 3
    before = quota_drops(cl, "host-a", "tenant-a", "vsys_session_limit")
    # web1 holds connections one after another: the fourth flow of tenant-a at the latest is refused
    # (fewer when flows of earlier tests are still in the table: they count too)
    held = connections(lab.web1.ns, lab.srv.ipv4, 80, 6, "one-by-one")
    assert held <= 3
    assert quota_drops(cl, "host-a", "tenant-a", "vsys_session_limit") > before
    # tenant-b, which pays for its own flows, still gets through (its dataplane is host-b's)
    assert ping(db1.ns, lab.srv.ipv4).returncode == 0
    assert quota_drops(cl, "host-b", "tenant-b", "vsys_session_limit") == 0


def test_a_tenant_over_its_new_session_rate_is_refused_the_excess(cl: ControlSite) -> None:
    lab = cl.two.lab
    cl.wait_realized(
        cl.commit_as(
            "admin", [vsys_with_limits("tenant-a", newSessionsPerSecond=1)], "tenant-a: 1 new session per second"
        )
    )
    before = quota_drops(cl, "host-a", "tenant-a", "vsys_rate_limit")
    opened = connections(lab.web1.ns, lab.srv.ipv4, 80, 8, "together")  # 8 SYNs within a millisecond or so
    assert 1 <= opened <= 2  # one second's burst (1), perhaps one token refilled while they were sent
    assert quota_drops(cl, "host-a", "tenant-a", "vsys_rate_limit") >= before + 8 - opened
    assert ping(cl.two.db1.ns, lab.srv.ipv4).returncode == 0  # tenant-b has no rate limit


def test_a_label_change_moves_a_workload_out_of_a_group_on_both_hosts_without_a_commit(cl: ControlSite) -> None:
    lab = cl.two.lab
    version = cl.commit_as("bob", [with_rule(policy_of(BASELINE, "tenant-b"), TENANT_B_LETS_WEB_IN)], "open 8000")
    cl.wait_realized(version)
    assert curl(cl, lab.web1.ns, db_url(cl)).stdout.startswith("200")  # tenant-b lets web in to group:db

    # the vm-operator relabels db-01 (tier db -> archive): it leaves group db, no policy commit
    db = json.loads(
        json.dumps(next(d for d in BASELINE if d["kind"] == "Workload" and d["metadata"]["name"] == "db-01"))
    )
    db["metadata"]["labels"] = {"tier": "archive"}
    path = cl.workdir / "db-01.yaml"
    path.write_text(yaml.safe_dump(db))
    done = cl.cli("ops", "apply", "--identity", "-f", str(path))
    assert done.returncode == 0 and "identity revision" in done.stdout, done.stderr
    status = cl.wait_realized(version)  # both hosts run the new identity revision of the same version
    assert status["version"] == version and status["realized"] == 2
    assert curl(cl, lab.web1.ns, db_url(cl)).returncode == CURL_TIMEOUT  # denied on the wire now

    db["metadata"]["labels"] = {"tier": "db"}
    path.write_text(yaml.safe_dump(db))
    assert cl.cli("ops", "apply", "--identity", "-f", str(path)).returncode == 0
    cl.wait_realized(version)
    assert curl(cl, lab.web1.ns, db_url(cl)).stdout.startswith("200")


def test_twenty_commits_lose_no_packet_of_established_sessions(cl: ControlSite) -> None:
    policy_b = with_rule(policy_of(BASELINE, "tenant-b"), TENANT_B_LETS_WEB_IN)
    cl.wait_realized(cl.commit_as("bob", [policy_b], "open 8000 for the stream"))
    report = commits_under_load(cl, churn_rules(policy_of(BASELINE, "tenant-a"), policy_b), commits=20)
    assert len(set(report.versions)) == 20
    assert sorted(report.outlived) == sorted(report.loads), (
        f"the load ended before the 20 commits did ({sum(report.commit_seconds):.1f} s): {report.outlived}"
    )
    assert report.pings == {"ping web1->srv": (1000, 1000), "ping db1->srv": (1000, 1000)}, report.errors
    assert report.broken_streams == [], (report.streams, report.errors)


LAB_RULES = """\
drop http any any -> any any (msg:"LAB exploit in URI"; flow:established,to_server; http.uri; content:"/cgi-bin/exploit"; classtype:web-application-attack; sid:9100001; rev:1;)
alert http any any -> any any (msg:"LAB admin page"; flow:established,to_server; http.uri; content:"/admin"; sid:9100002; rev:1;)
"""


def test_a_pushed_rule_set_runs_on_both_hosts_and_an_exception_spares_one_vm(cl: ControlSite) -> None:
    """`ngfw rules push` once: both hosts fetch, verify and run the same set (same hash in `ngfw status`); a
    ThreatProfile exception for web-01 lets its request through while web-02's is still dropped and alerted."""
    from ngfw.compiler.signature_archive import pack_path, sha256

    lab = cl.two.lab
    rules = cl.workdir / "lab-rules"
    rules.mkdir(exist_ok=True)
    (rules / "lab.rules").write_text(LAB_RULES)
    digest = sha256(pack_path(rules))
    done = cl.cli("admin", "rules", "push", "lab", str(rules), "-m", "lab signatures", timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"sha256 {digest} (2 rules" in done.stdout
    status = cl.wait_realized(
        int(re.search(r"committed version (\d+)", done.stdout).group(1)),  # type: ignore[union-attr]
        timeout=30,
    )
    assert {h["host"]: h["signatures"] for h in status["hosts"]} == {
        "host-a": {"lab": digest},
        "host-b": {"lab": digest},
    }
    shown = cl.cli("auditor", "status").stdout
    assert shown.count(f"signatures lab={digest[:12]}") == 2, shown
    for dp in cl.dataplanes.values():
        assert metric(dp.metrics_text(), "ngfw_signature_set_info", set="lab", sha256=digest) == 1

    profile = {
        "apiVersion": "ngfw/v1",
        "kind": "ThreatProfile",
        "metadata": {"name": "strict", "vsys": "tenant-a"},
        "spec": {
            "signatures": ["lab"],
            "exceptions": [
                {"sid": 9100001, "source": ["vm:web-01"], "description": "web-01's CGI scanner is expected"}
            ],
        },
    }
    policy_a = policy_of(BASELINE, "tenant-a")
    policy_a["spec"]["rules"][0]["inspect"] = "strict"
    try:
        cl.wait_realized(cl.commit_as("alice", [profile, policy_a], "inspect web with the lab set"), timeout=30)
        explained = cl.cli("auditor", "explain", "--from", "vm:web-01", "--to", lab.srv.ipv4, "--service", "tcp/80")
        assert "inspected by threat profile 'strict'" in explained.stdout, explained.stdout
        assert "signature 1:9100001 does not run on packets from the client" in explained.stdout, explained.stdout

        url = f"http://{lab.srv.ipv4}/cgi-bin/exploit?id=1"
        assert curl(cl, lab.web1.ns, url, "-m", "3").stdout.startswith("404")  # excepted: nginx answers
        assert curl(cl, lab.web2.ns, url, "-m", "3").returncode == CURL_TIMEOUT  # web-02: still dropped
        host_a = cl.dataplanes["host-a"]

        def blocked() -> list[dict[str, Any]]:
            return [
                r
                for r in host_a.eve_records()
                if r.get("event_type") == "alert" and r["alert"]["signature_id"] == 9100001
            ]

        deadline = time.monotonic() + 5
        while not blocked() and time.monotonic() < deadline:
            time.sleep(0.1)
        [alert] = blocked()
        assert (alert["src_vm"], alert["alert"]["action"]) == ("web-02", "blocked")
        text = host_a.metrics_text()
        assert metric(text, "ngfw_alerts_suppressed_total", vsys="tenant-a", reason="exception") >= 1, text
    finally:  # the next test starts from the baseline: without the profile and the set
        cl.call("alice", "DELETE", "/candidate")
        cl.call("admin", "DELETE", "/candidate")
        cl.call("admin", "POST", "/candidate/apply", {"documents": BASELINE, "sources": ["baseline"] * len(BASELINE)})
        for path in ("/candidate/resources/ThreatProfile/tenant-a/strict", "/candidate/resources/SignatureSet/-/lab"):
            try:
                cl.call("admin", "DELETE", path)
            except ControlError:
                pass  # the test stopped before committing it
        if cl.call("admin", "GET", "/diff", **{"from": "running", "to": "candidate"})["changes"]:
            cl.wait_realized(
                int(cl.call("admin", "POST", "/commit", {"message": "no lab signatures"})["version"]), timeout=30
            )
