"""`ngfw control` with two hosts' dataplanes: policy committed once, enforced on both hosts by real traffic.

The two-host lab (`ngfw.lab.hosts`): tenant-a's web1 on host-a, tenant-b's db1 on host-b, the lab
server srv outside both tenants. Control runs in the management namespace with a SQLite store;
each host's `ngfw dataplane --control URL --host NAME` takes its bundle from it. Administrators
drive it with the `ngfw` CLI, as a person would; clients are curl and ping inside the workloads.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ngfw.control.auth import add_token
from ngfw.control.client import ControlClient
from ngfw.lab import dataplane_process
from ngfw.lab.dataplane_process import DataplaneProcess, dataplane_env
from ngfw.lab.hosts import TwoHostLab, two_host_up
from ngfw.lab.lock import claim_prefix, release
from ngfw.lab.netns import call_in, free_tcp_port, in_netns, run_in, stop_process
from ngfw.lab.services import lab_services
from ngfw.lab.topology import lab_down
from netns_helpers import REPO, wait_for

POLICY = REPO / "rules" / "examples" / "lab-two-hosts.yaml"
DB_PORT = 8000
DB_FILE_SIZE = 4 * 1024 * 1024
CURL_TIMEOUT = 28
PRINCIPALS = {  # token name -> role
    "admin": "security-admin",
    "alice": "tenant-admin:tenant-a",
    "bob": "tenant-admin:tenant-b",
    "ops": "vm-operator",
    "auditor": "viewer",
    "host-a": "dataplane:host-a",
    "host-b": "dataplane:host-b",
}


@dataclass
class ControlLab:
    two: TwoHostLab
    workdir: Path
    tokens: dict[str, str]  # name -> token
    token_files: dict[str, Path]
    dataplanes: dict[str, DataplaneProcess]  # host name -> process
    baseline: list[dict[str, Any]]

    def api(self, who: str) -> ControlClient:
        return ControlClient(self.two.control_url, self.tokens[who], timeout=10)

    def call(self, who: str, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """One API call as `who`, made from the management namespace."""
        with in_netns(self.two.mgmt_ns):
            return self.api(who).request(method, path, body, query=query or None)[1]

    def cli(self, who: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`ngfw ARGS --control URL --token-file WHO` in the management namespace."""
        argv = [sys.executable, "-m", "ngfw", *args, "--control", self.two.control_url,
                "--token-file", str(self.token_files[who])]
        return call_in(self.two.mgmt_ns, argv, timeout=timeout, env=dataplane_env(), cwd=str(REPO))

    def running_version(self) -> int:
        return int(self.call("auditor", "GET", "/status")["version"])

    def wait_realized(self, version: int, timeout: float = 15) -> dict[str, Any]:
        """Until both hosts acknowledge `version` as applied and current; the status then."""
        status: dict[str, Any] = {}

        def realized() -> bool:
            nonlocal status
            status = self.call("auditor", "GET", "/status")
            hosts = {h["host"]: h for h in status["hosts"]}
            return status["version"] == version and all(
                h in hosts and hosts[h]["current"] and hosts[h]["status"] == "applied" for h in ("host-a", "host-b"))

        assert wait_for(realized, timeout, 0.05), f"version {version} not realized on both hosts: {status}"
        return status

    def commit_as(self, who: str, documents: list[dict[str, Any]], message: str) -> int:
        self.call(who, "POST", "/candidate/apply", {"documents": documents, "sources": ["test"] * len(documents)})
        return int(self.call(who, "POST", "/commit", {"message": message})["version"])


def policy_of(documents: list[dict[str, Any]], vsys: str) -> dict[str, Any]:
    found = next(d for d in documents if d["kind"] == "SecurityPolicy" and d["metadata"]["vsys"] == vsys)
    return json.loads(json.dumps(found))  # a copy the test may change


def with_rule(policy: dict[str, Any], rule: dict[str, Any], before: str = "default-deny") -> dict[str, Any]:
    rules = policy["spec"]["rules"]
    index = next(i for i, r in enumerate(rules) if r["name"] == before)
    rules.insert(index, rule)
    return policy


TENANT_B_LETS_WEB_IN = {"name": "tenant-a-web-to-db", "from": ["cidr:10.77.0.11/32", "cidr:10.77.0.12/32"],
                        "to": ["group:db"], "services": [f"tcp/{DB_PORT}"], "action": "allow"}


def control_argv(listen: str, store: Path, tokens: Path) -> list[str]:
    return [sys.executable, "-m", "ngfw", "control", "--listen", listen, "--store", f"sqlite:///{store}",
            "--tokens", str(tokens)]


@pytest.fixture(scope="module")
def control_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlLab]:
    import os

    # a prefix of its own ("nc<N>"): the session's one-host lab and a benchmark's lab stay untouched
    prefix, lock = claim_prefix(f"nc{(os.getpid() + i) % 1000}" for i in range(1000))
    workdir = tmp_path_factory.mktemp("control-hosts")
    procs: list[subprocess.Popen[Any]] = []
    dataplanes: dict[str, DataplaneProcess] = {}
    try:
        two = two_host_up(prefix)
        with lab_services(two.lab):
            yield _start(two, workdir, procs, dataplanes)
    finally:
        for dp in dataplanes.values():
            dp.stop()
        for proc in reversed(procs):
            stop_process(proc)
        lab_down(prefix)
        release(lock)


def _start(two: TwoHostLab, workdir: Path, procs: list[subprocess.Popen[Any]],
           dataplanes: dict[str, DataplaneProcess]) -> ControlLab:
    # db1 serves HTTP on tcp/8000: a file big enough to stream for seconds at a limited rate
    www = workdir / "db1-www"
    www.mkdir()
    (www / "index.html").write_text("tenant-b database front\n")
    (www / "big.bin").write_bytes(b"\x5a" * DB_FILE_SIZE)
    out = open(workdir / "db1-http.log", "ab")
    procs.append(run_in(two.db1.ns, [sys.executable, "-m", "http.server", str(DB_PORT), "--bind", two.db1.ipv4,
                                     "--directory", str(www)], stdout=out, stderr=out, stdin=subprocess.DEVNULL))

    tokens_file = workdir / "tokens.json"
    tokens = {name: add_token(tokens_file, name, role) for name, role in PRINCIPALS.items()}
    token_files = {}
    for name, token in tokens.items():
        token_files[name] = workdir / f"{name}.token"
        token_files[name].write_text(token + "\n")
    log = open(workdir / "control.log", "ab")
    procs.append(run_in(two.mgmt_ns, control_argv(f"{two.control_ip}:{two.control_port}", workdir / "control.db",
                                                  tokens_file),
                        stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=dataplane_env(), cwd=str(REPO)))
    lab = ControlLab(two, workdir, tokens, token_files, dataplanes, list(yaml.safe_load_all(POLICY.read_text())))

    def control_up() -> bool:
        try:
            lab.call("auditor", "GET", "/status")
            return True
        except Exception:  # noqa: BLE001 - not listening yet
            return False

    assert wait_for(control_up, 20), (workdir / "control.log").read_text()[-3000:]
    done = lab.cli("admin", "apply", "-f", str(POLICY))
    assert done.returncode == 0, done.stderr
    done = lab.cli("admin", "commit", "-m", "two tenants, two hosts")
    assert done.returncode == 0, done.stderr

    for host in two.hosts:
        def argv(policy: str, metrics: str, eve: str, host: Any = host) -> list[str]:
            return [sys.executable, "-m", "ngfw", "dataplane", "--wire", host.wire, "--metrics", metrics,
                    "--eve", eve, "--control", two.control_url, "--host", host.name,
                    "--token-file", str(token_files[host.name])]

        hostdir = workdir / host.name
        hostdir.mkdir()
        dataplanes[host.name] = dataplane_process.start_dataplane(
            host.fw_ns, "-", free_tcp_port(host.fw_ns), workdir=hostdir, argv_builder=argv, ready_timeout=30)
    lab.wait_realized(1, timeout=30)
    return lab


@pytest.fixture
def cl(control_lab: ControlLab) -> Iterator[ControlLab]:
    """The control lab, with the baseline policy running on both hosts before and after the test."""
    _back_to_baseline(control_lab)
    yield control_lab
    for name, dp in control_lab.dataplanes.items():
        assert dp.running(), f"dataplane {name} exited:\n{dp.stderr_text()}"


def _back_to_baseline(lab: ControlLab) -> None:
    for who in ("alice", "bob"):
        lab.call(who, "DELETE", "/candidate")
    lab.call("admin", "POST", "/candidate/apply", {"documents": lab.baseline, "sources": ["baseline"] * len(lab.baseline)})
    if lab.call("admin", "GET", "/diff", **{"from": "running", "to": "candidate"})["changes"]:
        lab.wait_realized(int(lab.call("admin", "POST", "/commit", {"message": "back to the baseline"})["version"]))
    else:
        lab.call("admin", "DELETE", "/candidate")


def curl(lab: ControlLab, ns: str, url: str, *extra: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return call_in(ns, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                        "--connect-timeout", "1", *extra, url], timeout=timeout)


def ping(ns: str, dest: str, count: int = 2) -> subprocess.CompletedProcess[str]:
    return call_in(ns, ["ping", "-c", str(count), "-i", "0.2", "-W", "1", dest], timeout=10)


def db_url(lab: ControlLab, path: str = "/") -> str:
    return f"http://{lab.two.db1.ipv4}:{DB_PORT}{path}"


def test_one_commit_is_enforced_by_both_hosts_dataplanes(cl: ControlLab) -> None:
    version = cl.running_version()
    status = cl.cli("auditor", "status")
    assert status.returncode == 0, status.stderr
    assert f"version {version} on 2 of 2 hosts" in status.stdout
    assert re.search(r"host-a\s+version %d .* ok" % version, status.stdout), status.stdout
    assert re.search(r"host-b\s+version %d .* ok" % version, status.stdout), status.stdout
    lab = cl.two.lab
    # host-a's dataplane: web1's HTTP to the server is allowed, 8080 is not
    assert curl(cl, lab.web1.ns, f"http://{lab.srv.ipv4}/").stdout.startswith("200")
    assert curl(cl, lab.web1.ns, f"http://{lab.srv.ipv4}:8080/").returncode == CURL_TIMEOUT
    # host-b's dataplane: db1 may ping the server (tenant-b's rule), not reach it over HTTP
    assert ping(cl.two.db1.ns, lab.srv.ipv4).returncode == 0
    assert curl(cl, cl.two.db1.ns, f"http://{lab.srv.ipv4}/").returncode == CURL_TIMEOUT
    for dp in cl.dataplanes.values():
        assert f"ngfw_policy_version {float(version)}" in dp.metrics_text()


def test_tenants_are_isolated_across_hosts(cl: ControlLab) -> None:
    lab, db1 = cl.two.lab, cl.two.db1
    assert ping(lab.web1.ns, lab.srv.ipv4).returncode == 0  # the path itself works
    assert ping(lab.web1.ns, db1.ipv4).returncode != 0  # tenant-a lets icmp out, tenant-b does not let it in
    assert ping(db1.ns, lab.web1.ipv4).returncode != 0  # tenant-b does not let icmp to tenant-a out
    # tenant-a's egress rule alone does not open tenant-b's database
    assert curl(cl, lab.web1.ns, db_url(cl)).returncode == CURL_TIMEOUT


def test_a_cross_tenant_flow_needs_both_tenants_to_allow_it(cl: ControlLab) -> None:
    lab = cl.two.lab
    # bob, tenant-b's admin, lets tenant-a's web servers in, with the CLI
    policy_b = with_rule(policy_of(cl.baseline, "tenant-b"), TENANT_B_LETS_WEB_IN)
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
    policy_a = policy_of(cl.baseline, "tenant-a")
    policy_a["spec"]["rules"] = [r for r in policy_a["spec"]["rules"] if r["name"] != "web-to-tenant-b-db"]
    cl.wait_realized(cl.commit_as("alice", [policy_a], "no more tenant-b db"))
    assert curl(cl, lab.web1.ns, db_url(cl)).returncode == CURL_TIMEOUT


def test_rollback_restores_the_previous_enforcement_on_both_hosts(cl: ControlLab) -> None:
    lab = cl.two.lab
    before = cl.running_version()
    opened = cl.commit_as("bob", [with_rule(policy_of(cl.baseline, "tenant-b"), TENANT_B_LETS_WEB_IN)], "open 8000")
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


def test_roles_keep_operators_and_tenant_admins_in_their_lanes(cl: ControlLab) -> None:
    lab = cl.two.lab
    before = cl.running_version()
    opening = cl.workdir / "open-tenant-b.yaml"
    opening.write_text(yaml.safe_dump(with_rule(policy_of(cl.baseline, "tenant-b"), TENANT_B_LETS_WEB_IN)))

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
    policy_a = policy_of(cl.baseline, "tenant-a")
    policy_a["spec"]["rules"][0]["services"] = ["tcp/80", "tcp/81"]
    own.write_text(yaml.safe_dump(policy_a))
    assert cl.cli("alice", "apply", "-f", str(own)).returncode == 0
    cl.call("alice", "DELETE", "/candidate")

    assert cl.running_version() == before
    assert curl(cl, lab.web1.ns, db_url(cl)).returncode == CURL_TIMEOUT  # still closed on the wire
    denied = [(e["who"], e["action"]) for e in cl.call("auditor", "GET", "/audit", limit=20)["entries"]
              if e["outcome"] == "denied"]
    assert ("ops", "candidate.apply") in denied and ("alice", "candidate.apply") in denied, denied
    assert any(who == "ops" and action == "commit" for who, action in denied), denied


def _ping_counts(output: str) -> tuple[int, int]:
    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    assert m, output
    return int(m.group(1)), int(m.group(2))


def test_twenty_commits_lose_no_packet_of_established_sessions(cl: ControlLab) -> None:
    lab, db1 = cl.two.lab, cl.two.db1
    policy_b = with_rule(policy_of(cl.baseline, "tenant-b"), TENANT_B_LETS_WEB_IN)
    cl.wait_realized(cl.commit_as("bob", [policy_b], "open 8000 for the stream"))

    # load, all established before the first commit: pings through each host's dataplane, a TCP
    # stream through host-a's, and one crossing both hosts' dataplanes (web1 -> db1)
    pings, streams = 1000, []
    loads = {
        "ping web1->srv": run_in(lab.web1.ns, ["ping", "-c", str(pings), "-i", "0.01", "-W", "1", lab.srv.ipv4],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "ping db1->srv": run_in(db1.ns, ["ping", "-c", str(pings), "-i", "0.01", "-W", "1", lab.srv.ipv4],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    for name, ns, url, rate, size in (
        ("tcp web1->srv", lab.web1.ns, f"http://{lab.srv.ipv4}/big.bin", "1000k", 10 * 1024 * 1024),
        ("tcp web1->db1", lab.web1.ns, db_url(cl, "/big.bin"), "400k", DB_FILE_SIZE),
    ):
        loads[name] = run_in(ns, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                  "--limit-rate", rate, "--max-time", "40", url],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        streams.append((name, size))
    try:
        time.sleep(0.5)  # every session established before the first commit
        versions = []
        started = time.monotonic()
        for n in range(20):
            # each commit changes tenant-a's and tenant-b's rules, never the ones the sessions use
            policy_a = with_rule(policy_of(cl.baseline, "tenant-a"),
                                 {"name": "churn", "from": ["group:web"], "to": ["cidr:10.77.0.100/32"],
                                  "services": [f"tcp/{9000 + n}"], "action": "allow"})
            churn_b = with_rule(json.loads(json.dumps(policy_b)),
                                {"name": "churn", "from": ["group:db"], "to": ["cidr:10.77.0.100/32"],
                                 "services": [f"udp/{9000 + n}"], "action": "allow"})
            version = cl.commit_as("admin", [policy_a, churn_b], f"churn {n}")
            cl.wait_realized(version)
            versions.append(version)
        commits_seconds = time.monotonic() - started
        still_running = [name for name, proc in loads.items() if proc.poll() is None]
        outputs = {name: proc.communicate(timeout=45) for name, proc in loads.items()}
    finally:
        for proc in loads.values():
            stop_process(proc)
    assert len(set(versions)) == 20
    assert set(still_running) == set(loads), (
        f"the load ended before the 20 commits did ({commits_seconds:.1f} s): only {still_running} covered them")
    for name in ("ping web1->srv", "ping db1->srv"):
        sent, received = _ping_counts(outputs[name][0])
        assert (sent, received) == (pings, pings), f"{name}: {outputs[name][0][-300:]}"
    for name, size in streams:
        assert loads[name].returncode == 0, f"{name}: {outputs[name][1]}"
        assert outputs[name][0] == f"200 {size}", f"{name}: {outputs[name]}"
