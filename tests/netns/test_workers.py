"""`ngfw dataplane --workers 2` (root; see conftest): the kernel's fanout program and the extension agree on every
frame's worker (BPF_PROG_TEST_RUN, nothing attached), and on the lab's wire two packet loops share the traffic --
hundreds of connections (wrk against nginx) all answered, both workers carrying flows (ngfw_worker_* metrics), EVE
records and `ngfw sessions` listing flows of both, downloads of both workers bypassed through one map and a deny
pushed mid-run stopping them all, and a re-created interface shared as before.

Which worker a flow is on is known beforehand: curl picks its source port (--local-port), and the hash is ours
(bpf/shard.h), so the tests choose connections for each worker instead of hoping the hash spreads a few.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether

from ngfw.dataplane.workers import FANOUT_OBJECT_PATH, flow_hash
from ngfw.lab import dataplane_process
from ngfw.lab.dataplane_process import DataplaneProcess
from ngfw.lab.legs import remove_bridge_leg, remove_leg, restore_leg
from ngfw.lab.netns import call_in, run_in, stop_process
from ngfw.lab.topology import interface_stats
from tests.support.netns import lab_policy_with, metric, wait_for
from tests.support.policies import ADMIN_PAGE_SIGNATURE as SIGNATURES
from tests.support.policies import SHALLOW_ALLOW as ALLOW
from tests.support.policies import SHALLOW_DENY as DENY
from tests.support.policies import SHALLOW_PROFILE as PROFILE

wirebpf = pytest.importorskip("ngfw._fastpath.wirebpf", reason="the BPF loader is not built")

SERVER, WEB1 = "10.77.0.100", "10.77.0.11"


def write_policy(tmp_path: Path, rules: str, name: str = "policy.yaml") -> Path:
    path = lab_policy_with(tmp_path, rules, name)
    path.write_text(path.read_text() + PROFILE)
    return path


def frames() -> list[bytes]:
    """Every kind of frame the hash treats apart: TCP and UDP both ways, IPv6 with extension headers, VLAN and
    QinQ tags, fragments, ICMP errors quoting TCP and UDP, ICMP echo, ARP, truncated headers."""
    mac = {"src": "02:00:00:00:01:01", "dst": "02:00:00:00:02:01"}
    out: list[Ether] = []
    for sport in (1024, 40000, 65535):
        out += [
            Ether(**mac) / IP(src=WEB1, dst=SERVER) / TCP(sport=sport, dport=80, flags="S"),
            Ether(**mac) / IP(src=SERVER, dst=WEB1) / TCP(sport=80, dport=sport, flags="SA"),
            Ether(**mac) / IP(src=WEB1, dst=SERVER) / UDP(sport=sport, dport=53),
            Ether(**mac) / IPv6(src="fd77::11", dst="fd77::100") / TCP(sport=sport, dport=443),
            Ether(**mac) / IPv6(src="fd77::11", dst="fd77::100") / IPv6ExtHdrHopByHop() / TCP(sport=sport, dport=22),
            Ether(**mac) / Dot1Q(vlan=10) / IP(src=WEB1, dst=SERVER) / TCP(sport=sport, dport=8443),
            Ether(**mac) / Dot1AD(vlan=20) / Dot1Q(vlan=10) / IP(src=WEB1, dst=SERVER) / TCP(sport=sport, dport=80),
        ]
    big = IP(src=WEB1, dst=SERVER) / UDP(sport=5353, dport=53) / (b"q" * 3000)
    out += [Ether(**mac) / piece for piece in fragment(big, fragsize=1200)]
    out.append(
        Ether(**mac)
        / IPv6(src="fd77::11", dst="fd77::100")
        / IPv6ExtHdrFragment(id=7, m=1, offset=0, nh=17)
        / UDP(sport=5353, dport=53)
    )
    quoted_tcp = bytes(IP(src=WEB1, dst=SERVER) / TCP(sport=40000, dport=80, flags="S"))[:28]
    quoted_udp = bytes(IP(src=WEB1, dst=SERVER) / UDP(sport=5353, dport=53))[:28]
    out += [
        Ether(**mac) / IP(src="192.0.2.1", dst=WEB1) / ICMP(type=3, code=4) / quoted_tcp,
        Ether(**mac) / IP(src=SERVER, dst=WEB1) / ICMP(type=3, code=3) / quoted_udp,
        Ether(**mac) / IP(src=WEB1, dst=SERVER) / ICMP(type=8, id=1, seq=1),
        Ether(**mac)
        / IPv6(src="fd77::1", dst="fd77::11")
        / ICMPv6DestUnreach()
        / IPv6(src="fd77::11", dst="fd77::100")
        / TCP(sport=40000, dport=443),
        Ether(**mac) / ARP(psrc=WEB1, pdst=SERVER),
    ]
    raw = [bytes(f) for f in out]
    # upper-layer headers cut short (the kernel's test run itself refuses a frame whose IP header is cut)
    raw += [raw[0][: 14 + 20 + 2], raw[3][: 14 + 40 + 1], raw[5][: 14 + 4 + 20 + 3]]
    return raw


def test_the_kernel_and_the_extension_agree_on_every_frames_worker() -> None:
    program = wirebpf.FanoutProgram.load(str(FANOUT_OBJECT_PATH))
    try:
        seen = set()
        for frame in frames():
            kernel, ours = program.run(frame), wirebpf.flow_hash_frame(frame)
            assert kernel == ours, (Ether(frame).summary(), kernel, ours)
            seen.add(ours)
        assert len(seen) > 10  # a hash, not a constant
    finally:
        program.close()


def ports_for_each_worker(count: int, workers: int = 2, start: int = 61000) -> dict[int, list[int]]:
    """Source ports whose connection web-01 -> server:80 lands on each worker, `count` each: above the ephemeral
    range (32768-60999), so no earlier connection holds them."""
    out: dict[int, list[int]] = {k: [] for k in range(workers)}
    port = start
    while min(len(v) for v in out.values()) < count:
        k = flow_hash(WEB1, SERVER, port, 80, 6) % workers
        if len(out[k]) < count:
            out[k].append(port)
        port += 1
    return out


@pytest.fixture
def workers_dataplane(tmp_path: Path, lab, lab_services, start_dataplane) -> Iterator[DataplaneProcess]:
    policy = write_policy(tmp_path, ALLOW)
    (tmp_path / "lab.rules").write_text(SIGNATURES)
    dp = start_dataplane(
        policy,
        extra_args=[
            "--workers",
            "2",
            "--state-dir",
            "none",
            "--rules",
            f"lab={tmp_path / 'lab.rules'}",
            "--timeout",
            "tcp_closing=1",
            "--timeout",
            "tcp_closed=1",
        ],
    )
    dp.policy_path = policy
    assert "with 2 workers" in dp.stderr_text(), dp.stderr_text()
    yield dp


def slow_download(lab, tmp_path: Path, port: int) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"slow-{port}.bin"
    proc = run_in(
        lab.web1.ns,
        ["curl", "-sS", "-m", "60", "--local-port", str(port), "-o", str(out), f"http://{SERVER}/big.bin?rate=200k"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, out


def sessions(dp: DataplaneProcess, lab) -> list[dict]:
    listing = call_in(
        lab.fw_ns,
        [*dp.argv[: dp.argv.index("dataplane")], "sessions", "port=80", "--json"],
        timeout=20,
        env=dataplane_process.dataplane_env(),
        cwd=str(dataplane_process.REPO_ROOT),
    )
    assert listing.returncode == 0, listing.stderr
    return [json.loads(line) for line in listing.stdout.splitlines() if line.strip()]


def worker_of(record: dict) -> int:
    return flow_hash(record["src_ip"], record["dest_ip"], record["src_port"], record["dest_port"], 6) % 2


def many_connections(lab) -> int:
    """A new connection for every request, for two seconds: hundreds of flows, every one answered (a connection
    whose two directions reached different workers would not be). Returns how many."""
    wrk = call_in(
        lab.web1.ns,
        ["wrk", "-t1", "-c8", "-d2s", "-H", "Connection: close", f"http://{SERVER}/"],
        timeout=30,
    )
    assert wrk.returncode == 0, wrk.stderr
    done = int(re.search(r"(\d+) requests in", wrk.stdout).group(1))
    assert done >= 200, wrk.stdout
    assert "Socket errors" not in wrk.stdout and "Non-2xx" not in wrk.stdout, wrk.stdout
    return done


def test_two_workers_share_hundreds_of_connections(lab, workers_dataplane, tmp_path) -> None:
    dp = workers_dataplane
    done = many_connections(lab)
    text = dp.metrics_text()
    for k in ("0", "1"):
        assert metric(text, "ngfw_worker_packets_total", worker=k) > done, text
        assert metric(text, "ngfw_worker_flows_created_total", worker=k) > done / 4, text
    assert metric(text, "ngfw_flows_created_total") >= done
    # EVE: flow records of both workers' flows
    assert wait_for(lambda: len([r for r in dp.eve_records() if r.get("event_type") == "flow"]) >= done / 2, 15)
    flows = [r for r in dp.eve_records() if r.get("event_type") == "flow" and r.get("dest_port") == 80]
    assert {worker_of(r) for r in flows} == {0, 1}
    assert metric(dp.metrics_text(), "ngfw_rule_hits_total", rule="web-http") >= done
    # threat inspection on each worker (its own twin of the rule tables): a request for /admin alerts on both
    chosen = ports_for_each_worker(1, start=64000)
    for [port] in chosen.values():
        asked = call_in(
            lab.web1.ns,
            ["curl", "-sS", "-m", "5", "--local-port", str(port), "-o", "/dev/null", f"http://{SERVER}/admin"],
            timeout=10,
        )
        assert asked.returncode == 0, asked.stderr

    def alerted() -> set[int]:
        return {r["src_port"] for r in dp.eve_records() if r.get("event_type") == "alert"}

    assert wait_for(lambda: {p for [p] in chosen.values()} <= alerted(), 10), alerted()


def test_a_deny_pushed_mid_run_stops_the_bypassed_flows_of_every_worker(lab, workers_dataplane, tmp_path) -> None:
    dp = workers_dataplane
    chosen = ports_for_each_worker(2)
    downloads = [slow_download(lab, tmp_path, port) for ports in chosen.values() for port in ports]
    try:
        started = wait_for(lambda: all(out.exists() and out.stat().st_size > 0 for _, out in downloads), 10)
        assert started, [proc.stderr.read() if proc.poll() is not None else "running" for proc, _ in downloads]
        # `ngfw sessions` lists the flows of both workers
        listed = {r["src_port"]: r for r in sessions(dp, lab)}
        for k, ports in chosen.items():
            assert set(ports) <= set(listed), (k, ports, sorted(listed))
        # past the profile's depth, every worker's downloads are forwarded by the kernel (one shared bypass map)
        assert wait_for(lambda: metric(dp.metrics_text(), "ngfw_bypass_flows_active") == 4, 10), dp.metrics_text()
        loaded = metric(dp.metrics_text(), "ngfw_policy_reloads_total", result="success")
        dp.policy_path.write_text(write_policy(tmp_path, DENY, "deny.yaml").read_text())
        dp.reload()
        assert wait_for(
            lambda: metric(dp.metrics_text(), "ngfw_policy_reloads_total", result="success") > loaded,
            timeout=10,
            interval=0.02,
        ), dp.stderr_text()
        time.sleep(0.3)  # what was on the wire at that moment arrives
        sizes = [out.stat().st_size for _, out in downloads]
        time.sleep(2.0)
        for (port, (_, out)), size in zip(
            [(p, d) for p, d in zip([p for ps in chosen.values() for p in ps], downloads, strict=True)],
            sizes,
            strict=True,
        ):
            worker = flow_hash(WEB1, SERVER, port, 80, 6) % 2
            assert out.stat().st_size == size, f"the download from port {port} (worker {worker}) went on after the deny"
        # and a new connection, whichever worker it lands on, gets nowhere
        for ports in ports_for_each_worker(1, start=63000).values():
            new = call_in(
                lab.web1.ns,
                ["curl", "-sS", "-m", "2", "--local-port", str(ports[0]), "-o", "/dev/null", f"http://{SERVER}/"],
                timeout=10,
            )
            assert new.returncode != 0, new.stdout
        text = dp.metrics_text()
        assert metric(text, "ngfw_drops_total", reason="cut_by_policy") >= 1, text
        assert metric(text, "ngfw_bypass_flows_active") == 0, text
    finally:
        for proc, _ in downloads:
            stop_process(proc)


def test_what_two_workers_do_not_support_is_refused_at_start(lab, tmp_path) -> None:
    argv = [
        *dataplane_process.default_dataplane_argv(
            str(lab_policy_with(tmp_path, ALLOW)), "127.0.0.1:19999", str(tmp_path / "eve.json")
        ),
        *("--workers", "2", "--tap", "wtap0", "--state-dir", "none"),
    ]
    done = call_in(
        lab.fw_ns, argv, timeout=30, env=dataplane_process.dataplane_env(), cwd=str(dataplane_process.REPO_ROOT)
    )
    assert done.returncode != 0
    assert "--workers 2 does not support TAP ports (--tap wtap0)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert call_in(lab.fw_ns, ["ip", "link", "show", "wtap0"], timeout=10).returncode != 0  # nothing was created


@pytest.fixture
def uplink(lab) -> Iterator[None]:
    """The lab's uplink leg as every other test expects it afterwards: a veth pair, MTU 1500, up."""
    yield
    remove_bridge_leg(lab, "up")
    restore_leg(lab, "up")


def test_a_recreated_uplink_is_shared_as_before(lab, workers_dataplane, uplink) -> None:
    """The uplink's interface deleted and created again: both workers' new sockets form a new group in the same
    order, so a flow's frames from the workloads (the old group of fw-vm) and from the server (the new group of
    fw-up) still meet on one worker, and no frame reaches both."""
    dp = workers_dataplane
    remove_leg(lab, "up")
    assert wait_for(lambda: metric(dp.metrics_text(), "ngfw_port_up", port=lab.fw_up) == 0)
    restore_leg(lab, "up")
    assert wait_for(
        lambda: metric(dp.metrics_text(), "ngfw_port_events_total", port=lab.fw_up, event="reattached") == 1,
        6,
    )
    assert wait_for(
        lambda: (
            call_in(
                lab.web1.ns, ["curl", "-sS", "-m", "2", "-o", "/dev/null", f"http://{SERVER}/"], timeout=10
            ).returncode
            == 0
        ),
        timeout=6,
    )
    text = dp.metrics_text()
    workers_before = [metric(text, "ngfw_worker_packets_total", worker=k) for k in ("0", "1")]
    ring_before = metric(text, "ngfw_port_rx_packets_total", port=lab.fw_up)
    kernel_before = interface_stats(lab.fw_ns, lab.fw_up)["rx_packets"]
    many_connections(lab)
    text = dp.metrics_text()
    moved = [metric(text, "ngfw_worker_packets_total", worker=k) - b for k, b in zip(("0", "1"), workers_before)]
    assert all(m > 100 for m in moved), moved
    ring = metric(text, "ngfw_port_rx_packets_total", port=lab.fw_up) - ring_before
    kernel = interface_stats(lab.fw_ns, lab.fw_up)["rx_packets"] - kernel_before
    assert ring <= kernel * 1.02 + 10, (ring, kernel)  # each frame to one worker, not to each


def sha256_download(lab, lab_services, tmp_path: Path, port: int) -> tuple[subprocess.Popen, Path]:
    """The lab's 10 MiB file at 2 MB/s from source port `port` (~5 s: a restart happens inside it)."""
    out = tmp_path / f"download-{port}.sha256"
    proc = run_in(
        lab.web1.ns,
        [
            "sh",
            "-c",
            f"curl -sS -m 40 --local-port {port} --limit-rate 2M {lab_services.big_file_url} | sha256sum > {out}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, out


@pytest.mark.parametrize("stop", ["kill -9", "SIGTERM"])
def test_a_restart_continues_the_downloads_of_both_workers(
    lab, lab_services, start_dataplane, state_dir, tmp_path, stop
) -> None:
    """Each worker's flow table lives in the state directory's worker-K/ (a graceful stop adds a snapshot there):
    the next dataplane's worker K continues them, the same flows hashing to it. Strict TCP state: a download the
    new process did not continue would stall (tests/netns/test_restart.py shows the control case)."""
    from tests.netns.test_restart import EXPECTED_SHA256
    from tests.support.netns import LAB_POLICY

    args = ["--workers", "2", "--state-dir", str(state_dir)]
    first = start_dataplane(LAB_POLICY, extra_args=args)
    downloads = [
        sha256_download(lab, lab_services, tmp_path, port)
        for [port] in ports_for_each_worker(1, start=62000 if stop == "kill -9" else 62500).values()
    ]
    try:
        started = wait_for(lambda: metric(first.metrics_text(), "ngfw_flows_active") >= 2, timeout=5)
        assert started, [proc.stderr.read() if proc.poll() is not None else "running" for proc, _ in downloads]
        text = first.metrics_text()
        assert [metric(text, "ngfw_worker_flows_active", worker=k) >= 1 for k in ("0", "1")] == [True, True], text
        time.sleep(1.0)
        if stop == "kill -9":
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(timeout=5)
        else:
            assert first.stop() == 0
            assert first.stderr_text().count("sessions saved for the next dataplane") == 2, first.stderr_text()
        second = start_dataplane(LAB_POLICY, extra_args=args)
        for proc, out in downloads:
            proc.wait(timeout=45)
            assert out.read_text().split()[0] == EXPECTED_SHA256, proc.stderr.read()
        source, name = ("table", "flows.state") if stop == "kill -9" else ("snapshot", "sessions.snapshot")
        continued = f"continued from its {source} {state_dir}/worker-0/{name}, {source} {state_dir}/worker-1/{name}"
        assert continued in second.stderr_text(), second.stderr_text()
        assert metric(second.metrics_text(), "ngfw_sessions_continued_total", result="imported") >= 2
    finally:
        for proc, _ in downloads:
            stop_process(proc)
