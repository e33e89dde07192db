"""Fail mode per wire, with real traffic: what passes through the lab's wire when the dataplane dies,
stops or stalls, and when the next one takes the wire back (root; see conftest)."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from ngfw.lab import dataplane_process
from ngfw.lab.dataplane_process import DataplaneProcess, default_dataplane_argv
from ngfw.lab.netns import call_in, free_tcp_port
from ngfw.lab.probe import connects, listener, time_to_connect, wait_stopped
from ngfw.lab.topology import lab_unbridge_fw
from tests.support.netns import SERVER, lab_policy_with, metric, wait_for

# allows web -> server tcp/80 and ping; tcp/8080 (a listener runs there) is denied by default
RULES = """
    - {name: web-to-server-http, from: [group:web], to: [cidr:10.77.0.100/32], services: [tcp/80], action: allow}
    - {name: ping, from: [any], to: [any], services: [icmp], action: allow}
"""
# the kernel opens a wire 0.3 s after the loop's last heartbeat (failmode.STALE_AFTER_NS); the target is 1 s,
# which leaves 0.7 s for the probe and a busy machine
OPEN_WITHIN = 1.0
TAKEN_OVER = re.compile(r"wire (\S+) was open while no dataplane ran: (\d+) packets forwarded by the kernel")


def tc_ingress_filters(lab, ifname: str) -> str:
    return call_in(lab.fw_ns, ["tc", "filter", "show", "dev", ifname, "ingress"], timeout=10).stdout


def remove_clsact(lab) -> None:
    """What an open wire leaves behind: the lab is shared by the session's other tests."""
    for ifname in (lab.fw_vm, lab.fw_up):
        call_in(lab.fw_ns, ["tc", "qdisc", "del", "dev", ifname, "clsact"], timeout=10)


@pytest.fixture
def wire_dataplane(lab, lab_services, start_dataplane) -> Iterator[Callable[..., DataplaneProcess]]:
    """start_dataplane, and the wire cleared of any program before and after the test."""
    remove_clsact(lab)
    started: list[DataplaneProcess] = []

    def start(policy: Path, *args: str) -> DataplaneProcess:
        dp = start_dataplane(policy, extra_args=args)
        started.append(dp)
        # /metrics answers before the loop runs; the wire is taken after its first turn
        assert wait_for(lambda: f"wire {lab.wire}: fail mode" in dp.stderr_text()), dp.stderr_text()
        return dp

    yield start
    for dp in started:
        dp.stop()
    remove_clsact(lab)


@pytest.fixture
def server_8080(lab) -> Iterator[None]:
    with listener(lab.srv.ns, (SERVER, 8080)):
        yield


def server_rx_packets(lab) -> int:
    with IPRoute(netns=lab.srv.ns, flags=0) as ipr:
        link = ipr.get_links(ipr.link_lookup(ifname=lab.srv.ifname)[0])[0]
        return int(link.get_attr("IFLA_STATS64")["rx_packets"])


def kill_and_time_open(lab, dp: DataplaneProcess, sig: int) -> float | None:
    """Send `sig` to the dataplane; seconds until web1 completes a handshake with the server's port 80."""
    started = time.monotonic()
    os.kill(dp.pid, sig)
    # probe once it is gone (or stopped): a handshake the dataplane still forwarded would not count
    if sig == signal.SIGSTOP:
        assert wait_stopped(dp.pid)
    else:
        dp.proc.wait(timeout=5)
    return time_to_connect(lab.web1.ns, (SERVER, 80), since=started, limit=3.0)


def test_open_wire_forwards_within_a_second_of_kill_and_is_taken_back(
    lab, wire_dataplane, server_8080, tmp_path
) -> None:
    policy = lab_policy_with(tmp_path, RULES)
    dp = wire_dataplane(policy, "--fail-mode", "open")
    assert metric(dp.metrics_text(), "ngfw_wire_fail_mode", wire=lab.wire, mode="open") == 1
    assert "ngfw_wire" in tc_ingress_filters(lab, lab.fw_vm)
    assert connects(lab.web1.ns, (SERVER, 80))
    assert not connects(lab.web1.ns, (SERVER, 8080), timeout=0.5)  # the policy denies it

    elapsed = kill_and_time_open(lab, dp, signal.SIGKILL)
    assert elapsed is not None and elapsed <= OPEN_WITHIN, f"first connection {elapsed} s after kill -9"
    # no policy applies now: the kernel forwards everything, the denied port too
    assert connects(lab.web1.ns, (SERVER, 8080))

    successor = wire_dataplane(policy, "--fail-mode", "open")
    assert not connects(lab.web1.ns, (SERVER, 8080), timeout=0.5)  # taken back: denied again
    assert connects(lab.web1.ns, (SERVER, 80))
    (line,) = TAKEN_OVER.findall(successor.stderr_text())
    assert line[0] == lab.wire and int(line[1]) >= 4  # at least the handshakes above, both ways
    text = successor.metrics_text()
    assert metric(text, "ngfw_failopen_packets_total", wire=lab.wire) >= int(line[1])
    assert metric(text, "ngfw_failopen_bytes_total", wire=lab.wire) > 0
    assert metric(text, "ngfw_failopen_activations_total", wire=lab.wire) == 1


def test_open_wire_forwards_while_the_loop_is_stopped_and_not_after(lab, wire_dataplane, server_8080, tmp_path) -> None:
    dp = wire_dataplane(lab_policy_with(tmp_path, RULES), "--fail-mode", "open")
    assert connects(lab.web1.ns, (SERVER, 80))  # (and web1 knows the server's MAC: no ARP retry in the timing)
    elapsed = kill_and_time_open(lab, dp, signal.SIGSTOP)
    try:
        assert elapsed is not None and elapsed <= OPEN_WITHIN, f"first connection {elapsed} s after SIGSTOP"
        assert connects(lab.web1.ns, (SERVER, 8080))
    finally:
        os.kill(dp.pid, signal.SIGCONT)
    # the process runs again within milliseconds; the loop's next heartbeat closes the kernel's path
    assert wait_for(lambda: not connects(lab.web1.ns, (SERVER, 8080), timeout=0.2), timeout=1.0)
    assert not connects(lab.web1.ns, (SERVER, 8080), timeout=0.5)
    assert connects(lab.web1.ns, (SERVER, 80))
    assert wait_for(lambda: "was open while the packet loop stalled" in dp.stderr_text())
    text = dp.metrics_text()
    assert metric(text, "ngfw_failopen_activations_total", wire=lab.wire) == 1
    assert metric(text, "ngfw_failopen_packets_total", wire=lab.wire) >= 4


def test_closed_wire_passes_nothing_after_kill(lab, wire_dataplane, tmp_path) -> None:
    policy = lab_policy_with(tmp_path, RULES)
    # an open wire stays open after a graceful stop...
    dp = wire_dataplane(policy, "--fail-mode", "open")
    dp.stop()
    assert "stays open" in dp.stderr_text()
    assert time_to_connect(lab.web1.ns, (SERVER, 80), since=time.monotonic(), limit=2.0) is not None
    # ...until a dataplane with the default mode, closed, takes it: without flow bypass the program is removed
    # (with bypass a closed wire carries its own instance, which forwards nothing once the loop is gone:
    # tests/netns/test_bypass.py)
    closed = wire_dataplane(policy, "--no-bypass")
    assert "ngfw_wire" not in tc_ingress_filters(lab, lab.fw_vm) + tc_ingress_filters(lab, lab.fw_up)
    assert TAKEN_OVER.search(closed.stderr_text())
    assert metric(closed.metrics_text(), "ngfw_wire_fail_mode", wire=lab.wire, mode="closed") == 1
    before = server_rx_packets(lab)
    r = call_in(lab.web1.ns, ["ping", "-c", "3", "-i", "0.2", "-W", "1", SERVER], timeout=10)
    assert r.returncode == 0, r.stdout
    assert server_rx_packets(lab) - before >= 3  # the counter sees what crosses the wire

    os.kill(closed.pid, signal.SIGKILL)
    closed.proc.wait(timeout=5)
    time.sleep(0.2)  # frames the dataplane sent before it died have arrived
    before = server_rx_packets(lab)
    r = call_in(lab.web1.ns, ["ping", "-c", "15", "-i", "0.2", "-W", "1", SERVER], timeout=15)
    assert r.returncode == 1, r.stdout  # no reply
    assert server_rx_packets(lab) - before == 0


def test_open_is_refused_without_bpf_and_closed_needs_none(lab, wire_dataplane, tmp_path) -> None:
    """Without CAP_BPF/CAP_SYS_ADMIN (CAP_NET_ADMIN and CAP_NET_RAW kept, so the ports open): `open` is one
    sentence and exit status 1; `closed` runs."""
    policy = lab_policy_with(tmp_path, RULES)
    no_bpf = ["setpriv", "--bounding-set=-sys_admin,-bpf,-perfmon", "--inh-caps=-all"]
    r = call_in(
        lab.fw_ns,
        [*no_bpf, sys.executable, "-m", "ngfw", "dataplane", "--wire", f"{lab.wire}:open", "--policy", str(policy)],
        timeout=60,
        env=dataplane_process.dataplane_env(),
        cwd=str(dataplane_process.REPO_ROOT),
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"ngfw dataplane: wire {lab.wire}: fail mode open needs eBPF, and this process may "
        "not load BPF programs: run the dataplane as root (or with CAP_BPF and "
        "CAP_NET_ADMIN) or use --fail-mode closed"
    )

    lab_unbridge_fw(lab)

    def without_bpf(policy_path: str, metrics: str, eve: str) -> list[str]:
        return [*no_bpf, *default_dataplane_argv(policy_path, metrics, eve, wire=lab.wire)]

    dp = dataplane_process.start_dataplane(
        lab.fw_ns, policy, free_tcp_port(lab.fw_ns), workdir=tmp_path, argv_builder=without_bpf
    )
    try:
        assert wait_for(lambda: f"wire {lab.wire}: fail mode closed" in dp.stderr_text()), dp.stderr_text()
        assert connects(lab.web1.ns, (SERVER, 80))
        assert metric(dp.metrics_text(), "ngfw_wire_fail_mode", wire=lab.wire, mode="closed") == 1
        # flow bypass (on by default) needs the same eBPF: said once, and the dataplane forwards every flow
        assert (
            dp.stderr_text().count(
                f"wire {lab.wire}: flow bypass needs eBPF, and this process may not load BPF programs"
            )
            == 1
        ), dp.stderr_text()
        assert metric(dp.metrics_text(), "ngfw_bypass_enabled") == 0
    finally:
        dp.stop()


def test_connections_opened_while_the_wire_was_open_are_picked_up_and_decided(
    lab, wire_dataplane, server_8080, tmp_path
) -> None:
    """The successor never saw their handshakes: for a while it starts flows from their mid-stream segments,
    each decided by its policy (no session state here, `--state-dir none`: only the pick-up can help)."""
    from ngfw.lab.netns import socket_in

    policy = lab_policy_with(tmp_path, RULES)
    dp = wire_dataplane(policy, "--fail-mode", "open", "--state-dir", "none")
    assert connects(lab.web1.ns, (SERVER, 80))
    assert kill_and_time_open(lab, dp, signal.SIGKILL) is not None
    allowed, denied = socket_in(lab.web1.ns), socket_in(lab.web1.ns)
    try:
        allowed.settimeout(3)
        denied.settimeout(3)
        allowed.connect((SERVER, 80))  # through the kernel, as the 8080 one: no policy while open
        denied.connect((SERVER, 8080))
        successor = wire_dataplane(policy, "--fail-mode", "open", "--state-dir", "none")
        assert "picked up mid-stream" in successor.stderr_text()
        allowed.sendall(b"GET / HTTP/1.1\r\nHost: srv\r\n\r\n")
        assert allowed.recv(64).startswith(b"HTTP/1.1 200")
        denied.sendall(b"payload the policy refuses")
        assert wait_for(
            lambda: (
                metric(successor.metrics_text(), "ngfw_drops_total", reason="policy_default_deny")
                + metric(successor.metrics_text(), "ngfw_drops_total", reason="policy_deny")
                >= 1
            )
        )
        assert metric(successor.metrics_text(), "ngfw_drops_total", reason="tcp_not_syn") == 0
    finally:
        allowed.close()
        denied.close()
