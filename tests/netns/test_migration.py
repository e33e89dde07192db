"""Live migration with real dataplanes: a workload moves from host-a to host-b and its sessions follow
(root; see conftest and docs/migration.md).

The two-host lab with `ngfw control` (SQLite store) and each host's `ngfw dataplane --control URL --host
NAME`; the policy of rules/examples/lab-two-hosts.yaml (web-01 may reach the server's HTTP, nothing else).
`ngfw lab migrate` moves web1 as a hypervisor would (its link from host-a's VM bridge to host-b's, then its
gratuitous ARP and unsolicited NA); it does nothing to ngfw. Strict TCP state stays on: the download and the
keep-alive connection survive a move only because their state moved.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ngfw.control.migrations import LIVE_SECONDS
from ngfw.lab.control_site import ControlSite, control_site
from ngfw.lab.hosts import two_host_up
from ngfw.lab.lock import claim_prefix, release
from ngfw.lab.migrate import migrate_workload
from ngfw.lab.netns import run_in, socket_in
from ngfw.lab.probe import connects
from ngfw.lab.services import BIG_FILE_SIZE, lab_services
from ngfw.lab.topology import lab_down
from ngfw.lab.workloads import record_namespace_workloads
from tests.support.netns import REPO, metric, wait_for

POLICY = REPO / "rules" / "examples" / "lab-two-hosts.yaml"
SERVER = "10.77.0.100"
EXPECTED = hashlib.sha256(bytes(range(256)) * 4096 * (BIG_FILE_SIZE // (256 * 4096))).hexdigest()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlSite]:
    prefix, lock = claim_prefix(f"nv{(os.getpid() + i) % 1000}" for i in range(1000))
    try:
        two = two_host_up(prefix)
        record_namespace_workloads(prefix)
        with lab_services(two.lab), control_site(two, tmp_path_factory.mktemp("migration"), POLICY) as running:
            yield running
    finally:
        lab_down(prefix)
        release(lock)


@pytest.fixture
def web1_home(site: ControlSite) -> Iterator[ControlSite]:
    """web1 on host-a, both dataplanes running, before and after the test."""
    yield site
    for name, dp in site.dataplanes.items():
        assert dp.running(), f"dataplane {name} exited:\n{dp.stderr_text()}"
    if _placement(site) != "host-a":
        before = _known(site)
        migrate_workload(site.two.prefix, "web1", "host-a")
        wait_for(lambda: _newest(site, before).get("state") in ("done", "failed"), timeout=10)


def _placement(site: ControlSite) -> str:
    from ngfw.lab.workloads import load_placements

    return load_placements(site.two.prefix)["web1"].host


def _migrations(site: ControlSite) -> list[dict[str, Any]]:
    return list(site.call("auditor", "GET", "/migrations")["migrations"])


def _last(site: ControlSite) -> dict[str, Any]:
    found = _migrations(site)
    return found[0] if found else {}


def _known(site: ControlSite) -> set[str]:
    return {m["id"] for m in _migrations(site)}


def _newest(site: ControlSite, before: set[str]) -> dict[str, Any]:
    """The most recent migration control recorded that is not one of `before` (an earlier test's
    finished record must not pass for the one a test is waiting for)."""
    found = [m for m in _migrations(site) if m["id"] not in before]
    return found[0] if found else {}


def _debug(site: ControlSite) -> str:
    rows = [
        (m["id"], m["mode"], m["from"], m["to"], m["state"], m["detail"], m["sessions_moved"])
        for m in _migrations(site)
    ]
    logs = {h: "\n".join(dp.stderr_text().splitlines()[-12:]) for h, dp in site.dataplanes.items()}
    return f"{rows}\n{logs['host-a']}\n---\n{logs['host-b']}"


def _download(site: ControlSite, out: str) -> subprocess.Popen[Any]:
    url = f"http://{SERVER}/big.bin?rate=2m"  # 10 MiB at 2 MiB/s: the move happens inside it
    return run_in(
        site.two.lab.web1.ns,
        ["sh", "-c", f"curl -sS -m 40 '{url}' | sha256sum > {out}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class KeepAlive:
    """An interactive session: one HTTP/1.1 connection, a request now and then, each answered on it."""

    def __init__(self, ns: str) -> None:
        self.sock = socket_in(ns)
        self.sock.settimeout(5)
        self.sock.connect((SERVER, 80))

    def exchange(self) -> bool:
        self.sock.sendall(b"GET / HTTP/1.1\r\nHost: srv\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                return False
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        while len(body) < length:
            body += self.sock.recv(4096)
        return head.startswith(b"HTTP/1.1 200")

    def close(self) -> None:
        self.sock.close()


class DeniedProbe(threading.Thread):
    """web1 -> srv:8080 (which the policy denies) every 100 ms, for as long as it runs: every success is a
    packet forwarded that the policy denies."""

    def __init__(self, ns: str) -> None:
        super().__init__(daemon=True)
        self.ns, self.tries, self.successes = ns, 0, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.tries += 1
            if connects(self.ns, (SERVER, 8080), timeout=0.1):
                self.successes += 1
            self.done.wait(0.1)

    def stop(self) -> tuple[int, int]:
        self.done.set()
        self.join(timeout=5)
        return self.tries, self.successes


@pytest.fixture
def listener_8080(site: ControlSite) -> Iterator[None]:
    """A server on srv:8080, so that a denied connection could only fail because of the policy."""
    from ngfw.lab.probe import listener

    with listener(site.two.lab.srv.ns, (SERVER, 8080)):
        yield


def test_announced_and_unannounced_moves_keep_the_sessions(
    web1_home: ControlSite, listener_8080: None, tmp_path: Any
) -> None:
    site = web1_home
    web1 = site.two.lab.web1
    session = KeepAlive(web1.ns)
    probe = DeniedProbe(web1.ns)
    try:
        assert session.exchange()
        download = _download(site, str(tmp_path / "one.sha256"))
        probe.start()
        time.sleep(0.7)
        # announced: the sessions go first, then the guest
        migrate = site.cli("ops", "migrate", "web-01", "--to", "host-b")
        assert migrate.returncode == 0, migrate.stderr
        assert wait_for(lambda: _last(site)["state"] == "precopied", timeout=5), _last(site)
        report = migrate_workload(site.two.prefix, "web1", "host-b")
        assert report.destination == "host-b"
        assert wait_for(lambda: _last(site)["state"] == "done", timeout=10), _last(site)
        done = _last(site)
        assert (done["mode"], done["from"], done["to"], done["sessions_lost"]) == ("announced", "host-a", "host-b", 0)
        assert done["sessions_moved"] >= 2
        assert session.exchange()  # the interactive session goes on, now through host-b
        download.wait(timeout=40)
        assert (tmp_path / "one.sha256").read_text().split()[0] == EXPECTED
        # unannounced: the guest moves back and host-a notices by itself
        download = _download(site, str(tmp_path / "two.sha256"))
        time.sleep(0.7)
        migrate_workload(site.two.prefix, "web1", "host-a")
        assert wait_for(lambda: _last(site)["mode"] == "unannounced" and _last(site)["state"] == "done", timeout=10), (
            _debug(site)
        )
        assert _last(site)["sessions_lost"] == 0
        assert session.exchange()
        download.wait(timeout=40)
        assert (tmp_path / "two.sha256").read_text().split()[0] == EXPECTED
    finally:
        tries, successes = probe.stop() if probe.is_alive() else (probe.tries, probe.successes)
        session.close()
    assert tries >= 20 and successes == 0, f"{successes} of {tries} denied connections got through"
    # what the operator sees: the destination's EVE record and metrics, the source's hand-over
    b = site.dataplanes["host-b"]
    records = [r for r in b.eve_records() if r.get("event_type") == "migration"]
    assert records and records[-1]["migration"]["result"] == "done", records
    assert records[-1]["migration"]["unprotected_packets"] == 0
    assert metric(b.metrics_text(), "ngfw_migrations_total", result="done") >= 1
    status = site.cli("auditor", "status")
    assert "recent migrations:" in status.stdout and "host-a -> host-b (announced) done" in status.stdout


def test_a_moved_workload_with_a_new_address_keeps_its_policy(web1_home: ControlSite) -> None:
    """Another subnet on the new host: a vm-operator rebinds the address, no rule is edited."""
    site = web1_home
    web1 = site.two.lab.web1
    migrate_workload(site.two.prefix, "web1", "host-b")
    new_ip = "10.77.0.111"
    subprocess.run(
        ["ip", "netns", "exec", web1.ns, "ip", "addr", "add", f"{new_ip}/24", "dev", web1.ifname], check=True
    )
    try:
        # not bound yet: a frame from web1's MAC with an address that is not its own is spoofing
        assert not connects(web1.ns, (SERVER, 80), timeout=0.5, source=new_ip)
        workload = next(
            d for d in site.call("ops", "GET", "/identity")["workloads"] if d["metadata"]["name"] == "web-01"
        )
        workload["spec"]["interfaces"][0]["ips"] = [new_ip]
        workload["spec"]["host"] = "host-b"
        site.call("ops", "PUT", "/identity/workloads/tenant-a/web-01", workload)
        assert wait_for(lambda: connects(web1.ns, (SERVER, 80), timeout=0.5, source=new_ip), timeout=10)
        assert not connects(web1.ns, (SERVER, 8080), timeout=0.5, source=new_ip)  # still only what it may
    finally:
        workload = next(
            d for d in site.call("ops", "GET", "/identity")["workloads"] if d["metadata"]["name"] == "web-01"
        )
        workload["spec"]["interfaces"][0]["ips"] = ["10.77.0.11", "fd77::11"]
        workload["spec"]["host"] = "host-a"
        site.call("ops", "PUT", "/identity/workloads/tenant-a/web-01", workload)
        subprocess.run(
            ["ip", "netns", "exec", web1.ns, "ip", "addr", "del", f"{new_ip}/24", "dev", web1.ifname], check=False
        )


def test_a_move_to_a_host_without_a_dataplane_fails_safe(web1_home: ControlSite) -> None:
    site = web1_home
    web1 = site.two.lab.web1
    b = site.dataplanes["host-b"]
    assert b.stop() == 0
    try:
        # control counts a host connected until a few seconds after its agent's last poll (LIVE_SECONDS)
        time.sleep(LIVE_SECONDS + 0.5)
        refused = site.cli("ops", "migrate", "web-01", "--to", "host-b")
        assert refused.returncode == 1
        assert "host-b has no connected dataplane" in refused.stderr
        assert _last(site)["state"] == "failed"
        migrate_workload(site.two.prefix, "web1", "host-b")
        # nothing passes where no dataplane runs (fail-closed): the workload is denied, not allowed
        assert not connects(web1.ns, (SERVER, 80), timeout=1.0)
    finally:
        if _placement(site) != "host-a":
            migrate_workload(site.two.prefix, "web1", "host-a")
        site.dataplanes["host-b"] = _restart(site, b)
    assert wait_for(lambda: connects(web1.ns, (SERVER, 80), timeout=0.5), timeout=10)


def _restart(site: ControlSite, old: Any) -> Any:
    from ngfw.lab import dataplane_process
    from ngfw.lab.control_site import site_dataplane_argv
    from ngfw.lab.netns import free_tcp_port

    host = next(h for h in site.two.hosts if h.name == "host-b")
    return dataplane_process.start_dataplane(
        host.fw_ns,
        "-",
        free_tcp_port(host.fw_ns),
        workdir=old.workdir,
        argv_builder=site_dataplane_argv(site, host),
        ready_timeout=30,
    )


@pytest.mark.vm
def test_a_vm_live_migrated_mid_download_keeps_its_session_through_ngfw(web1_home: ControlSite) -> None:
    """web1 as a QEMU guest (TCG); QEMU live-migrates it to host-b unannounced while it downloads through
    host-a's dataplane; host-b's dataplane notices the guest's announcements and pulls its sessions."""
    from ngfw.lab.workloads import start_vm_workloads, workload_agent

    site = web1_home
    prefix = site.two.prefix
    start_vm_workloads(prefix, ("web1",))  # the rest of the module is done with the namespace web1
    agent = workload_agent(prefix, "web1")
    job = agent.start(f"set -o pipefail; wget -q -O - 'http://{SERVER}/big.bin?rate=1m' | sha256sum")
    a = site.dataplanes["host-a"]

    def delivered_to_vm() -> float:
        # the dataplane's ring, plus what the kernel forwarded once the flow was bypassed (flow bypass)
        text = a.metrics_text()
        return metric(text, "ngfw_port_tx_bytes_total", port="fw-vm") + metric(text, "ngfw_bypass_bytes_total")

    assert wait_for(lambda: delivered_to_vm() > 512 << 10, timeout=60), (
        "the download did not start through host-a"
    )  # a TCG guest on a busy machine
    before = _known(site)
    moved = migrate_workload(prefix, "web1", "host-b")
    assert moved.kind == "vm"
    assert wait_for(lambda: _newest(site, before).get("state") in ("done", "failed"), timeout=40), _debug(site)
    record = _newest(site, before)
    assert (record["state"], record["mode"], record["to"]) == ("done", "unannounced", "host-b"), _debug(site)
    assert record["sessions_moved"] >= 1 and record["sessions_lost"] == 0
    agent = workload_agent(prefix, "web1")  # the destination QEMU's
    assert agent.poll(job) is None, "the download ended before the migration: it proves nothing"
    result = agent.wait(job, timeout=60)
    assert result.returncode == 0, result.output
    assert result.output.split()[0] == EXPECTED
