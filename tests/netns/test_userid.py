"""User-ID end to end in the two-host lab: `users: [group:finance]` allows web1 -> srv:80 only while a finance
user is behind web1's address -- after sshd's login line reaches control's syslog receiver (until the logout
line), through the identity API (until its lifetime ends), through a Workload's spec.owner, and by directory
membership (slapd: alice leaves finance, and is denied at the next refresh); a logout also stops a flow the
kernel forwards (flow bypass) at once. Real clients (curl), real
dataplanes taking their policy and user mappings from control, real syslog (util-linux `logger`), real slapd.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from ngfw.lab.control_site import ControlSite, control_site
from ngfw.lab.directory import Directory, group_dn
from ngfw.lab.hosts import two_host_up
from ngfw.lab.lock import claim_prefix, release
from ngfw.lab.netns import call_in, run_in, stop_process
from ngfw.lab.services import BIG_FILE, BIG_FILE_SIZE, lab_services
from ngfw.lab.topology import lab_down
from tests.support.netns import REPO, metric

POLICY = REPO / "rules" / "examples" / "lab-users.yaml"
BASELINE: list[dict[str, Any]] = list(yaml.safe_load_all(POLICY.read_text()))
SYSLOG_PORT = 5514


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlSite]:
    prefix, lock = claim_prefix(f"nu{(os.getpid() + i) % 1000}" for i in range(1000))
    try:
        two = two_host_up(prefix)
        with (
            lab_services(two.lab),
            control_site(
                two,
                tmp_path_factory.mktemp("userid"),
                POLICY,
                control_args=("--syslog", f"{two.control_ip}:{SYSLOG_PORT}"),
            ) as s,
        ):
            yield s
    finally:
        lab_down(prefix)
        release(lock)


@pytest.fixture
def lab(site: ControlSite) -> Iterator[ControlSite]:
    """No mappings before and after each test."""
    _unmap_all(site)
    yield site
    _unmap_all(site)
    for name, dp in site.dataplanes.items():
        assert dp.running(), f"dataplane {name} exited:\n{dp.stderr_text()}"


def _unmap_all(site: ControlSite) -> None:
    for m in site.call("admin", "GET", "/identity/users")["mappings"]:
        site.call("mapper", "DELETE", "/identity/users", address=m["address"])


def web_allowed(site: ControlSite, ns: str) -> bool:
    """Does HTTP from `ns` to the lab server get through (a new connection: a new flow)?"""
    done = call_in(
        ns,
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--connect-timeout",
            "1",
            "--max-time",
            "3",
            f"http://{site.two.lab.srv.ipv4}/",
        ],
        timeout=10,
    )
    return done.stdout.startswith("200")


def eventually(predicate: Callable[[], bool], timeout: float = 8.0) -> float:
    """Seconds until `predicate` held; AssertionError after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s")


def logger(site: ControlSite, message: str, *options: str) -> None:
    """util-linux `logger` sending to control's syslog receiver, as a jump host's rsyslog would."""
    done = call_in(
        site.two.mgmt_ns,
        ["logger", "-n", site.two.control_ip, "-P", str(SYSLOG_PORT), *options, "-t", "sshd", message],
        timeout=10,
    )
    assert done.returncode == 0, done.stderr


def test_a_syslog_login_allows_and_the_logout_denies(lab: ControlSite) -> None:
    web1 = lab.two.lab.web1
    assert not web_allowed(lab, web1.ns)  # nobody is behind web1
    logger(lab, f"Accepted publickey for bob from {web1.ipv4} port 50022 ssh2", "--udp", "--rfc3164")
    eventually(lambda: any(m["user"] == "bob" for m in lab.call("admin", "GET", "/identity/users")["mappings"]))
    assert not web_allowed(lab, web1.ns)
    logger(lab, f"Accepted publickey for alice from {web1.ipv4} port 50023 ssh2", "--udp", "--rfc3164")
    eventually(lambda: web_allowed(lab, web1.ns))
    logger(lab, f"Disconnected from user alice {web1.ipv4} port 50023", "--tcp", "--rfc5424", "--octet-count")
    eventually(lambda: not web_allowed(lab, web1.ns))
    counters = lab.call("auditor", "GET", "/identity/users")["counters"]
    assert counters["syslog_logins"] >= 2 and counters["syslog_logouts"] >= 1


def _sum_metric(site: ControlSite, name: str) -> float:
    return sum(metric(dp.metrics_text(), name) for dp in site.dataplanes.values())


def test_a_logout_cuts_a_bypassed_flow_a_users_rule_allowed(
    lab: ControlSite, tmp_path_factory: pytest.TempPathFactory
) -> None:
    web1 = lab.two.lab.web1
    lab.call("mapper", "PUT", "/identity/users", {"address": web1.ipv4, "user": "alice"})
    eventually(lambda: web_allowed(lab, web1.ns))
    out = tmp_path_factory.mktemp("bypassed") / "download.bin"
    # paced: 10 s at 1 MiB/s, the kernel forwarding it once its application is decided
    proc = run_in(
        web1.ns,
        ["curl", "-sS", "-m", "60", "-o", str(out), f"http://{lab.two.lab.srv.ipv4}/{BIG_FILE}?rate=1m"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        eventually(lambda: _sum_metric(lab, "ngfw_bypass_flows_active") >= 1)
        redecided = _sum_metric(lab, "ngfw_flows_user_redecided_total")
        lab.call("mapper", "DELETE", "/identity/users", address=web1.ipv4)
        eventually(lambda: not web_allowed(lab, web1.ns))  # every host runs a user table without alice
        time.sleep(0.3)  # what was on the wire at that moment arrives
        size = out.stat().st_size
        time.sleep(2.0)
        assert out.stat().st_size == size, "the download went on after alice's logout"
        assert size < BIG_FILE_SIZE
        assert _sum_metric(lab, "ngfw_flows_user_redecided_total") > redecided
    finally:
        stop_process(proc)


def test_the_identity_api_maps_for_a_lifetime(lab: ControlSite) -> None:
    web1 = lab.two.lab.web1
    assert not web_allowed(lab, web1.ns)
    done = lab.cli("mapper", "users", "map", "vm:web-01", "alice", "--ttl", "3")
    assert done.returncode == 0, done.stderr
    eventually(lambda: web_allowed(lab, web1.ns))
    listing = lab.cli("auditor", "users", "list")
    assert "10.77.0.11" in listing.stdout and "alice" in listing.stdout
    eventually(lambda: not web_allowed(lab, web1.ns), timeout=10)  # the lifetime ended
    refused = lab.cli("mapper", "users", "map", "192.0.2.44", "alice")
    assert refused.returncode == 1 and "no workload's" in refused.stderr


def test_a_workload_owner_is_its_user(lab: ControlSite) -> None:
    web2 = lab.two.lab.web2
    assert not web_allowed(lab, web2.ns)
    doc = next(d for d in BASELINE if d["kind"] == "Workload" and d["metadata"]["name"] == "web-02")
    owned = {**doc, "spec": {**doc["spec"], "owner": "alice"}}
    try:
        lab.call("ops", "PUT", "/identity/workloads/tenant-a/web-02", owned)
        eventually(lambda: web_allowed(lab, web2.ns))
    finally:
        lab.call("ops", "PUT", "/identity/workloads/tenant-a/web-02", doc)
    eventually(lambda: not web_allowed(lab, web2.ns))


def test_leaving_a_directory_group_denies_at_the_next_refresh(
    lab: ControlSite, tmp_path_factory: pytest.TempPathFactory
) -> None:
    web1 = lab.two.lab.web1
    with Directory(tmp_path_factory.mktemp("slapd"), netns=lab.two.mgmt_ns) as directory:
        directory.load_lab_tree()
        documents = [d for d in BASELINE if d["kind"] != "UserGroup"] + [
            {
                "apiVersion": "ngfw/v1",
                "kind": "UserSource",
                "metadata": {"name": "corp"},
                "spec": {"ldap": {"url": directory.url, "refresh": 1, "timeout": 2}},
            },
            {
                "apiVersion": "ngfw/v1",
                "kind": "UserGroup",
                "metadata": {"name": "finance", "vsys": "tenant-a"},
                "spec": {"ldap": {"dn": group_dn("finance")}},
            },
        ]
        version = lab.commit_as("admin", documents, "finance from the directory")
        lab.wait_realized(version)
        try:
            lab.call("mapper", "PUT", "/identity/users", {"address": web1.ipv4, "user": "alice"})
            eventually(lambda: web_allowed(lab, web1.ns))  # alice is in the directory's finance
            directory.set_members("finance", ["user:bob", "group:finance-auditors"])
            eventually(lambda: not web_allowed(lab, web1.ns))  # she left it: the next refresh denies her
            status = lab.cli("auditor", "status")
            assert "directory corp" in status.stdout and "tenant-a/finance (2 users)" in status.stdout, status.stdout
        finally:
            back = lab.commit_as("admin", BASELINE, "back to the baseline")
            lab.wait_realized(back)


def test_users_stay_allowed_across_a_control_restart(lab: ControlSite) -> None:
    """Control stopped (SIGTERM) for 2.5 s and started again on its store: a logged-in user is allowed all along
    (new connections probed every ~0.2 s through the downtime and the hosts' resynchronisation), a logout made
    before the restart stays logged out, and a lifetime that ended during the downtime is gone."""
    import threading

    web1, web2 = lab.two.lab.web1, lab.two.lab.web2
    logger(lab, f"Accepted publickey for alice from {web1.ipv4} port 50030 ssh2", "--udp", "--rfc3164")
    eventually(lambda: web_allowed(lab, web1.ns))
    logger(lab, f"Accepted publickey for alice from {web2.ipv4} port 50031 ssh2", "--udp", "--rfc3164")
    eventually(lambda: web_allowed(lab, web2.ns))
    logger(lab, f"Disconnected from user alice {web2.ipv4} port 50031", "--udp", "--rfc3164")
    eventually(lambda: not web_allowed(lab, web2.ns))
    lab.call("mapper", "PUT", "/identity/users", {"address": web2.ipv6, "user": "alice", "ttl": 2})
    snapshots = _sum_metric_of(lab, "ngfw_user_updates_total", kind="snapshot")

    denied: list[float] = []
    probes = 0
    stop = threading.Event()

    def probe() -> None:
        nonlocal probes
        while not stop.is_set():
            if not web_allowed(lab, web1.ns):
                denied.append(time.monotonic())
            probes += 1
            stop.wait(0.2)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    try:
        lab.restart_control(down=2.5)
        # both hosts took the restarted control's snapshot (another epoch), then a second more of probes
        eventually(lambda: _sum_metric_of(lab, "ngfw_user_updates_total", kind="snapshot") >= snapshots + 2, timeout=30)
        time.sleep(1.0)
    finally:
        stop.set()
        prober.join(timeout=10)
    assert probes >= 10 and not denied, f"{len(denied)} of {probes} connections of alice's web1 denied"
    assert not web_allowed(lab, web2.ns)  # logged out before the restart
    listing = lab.call("auditor", "GET", "/identity/users")
    assert [(m["address"], m["user"]) for m in listing["mappings"]] == [(web1.ipv4, "alice")]
    assert (listing["counters"]["restored"], listing["counters"]["restored_expired"]) == (1, 1)


def _sum_metric_of(site: ControlSite, name: str, **labels: str) -> float:
    return sum(metric(dp.metrics_text(), name, **labels) for dp in site.dataplanes.values())
