"""Flow bypass with real traffic (root; see conftest): a download past its inspection depth leaves the packet
loop and the kernel forwards it, the flow record still counts every byte, a policy change that denies the flow
stops it at once, and `--no-bypass` keeps every frame in the loop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ngfw.lab import dataplane_process
from ngfw.lab.dataplane_process import DataplaneProcess
from ngfw.lab.netns import call_in, run_in, stop_process
from ngfw.lab.services import BIG_FILE_SIZE
from tests.support.netns import lab_policy_with, metric, wait_for
from tests.support.policies import ADMIN_PAGE_SIGNATURE as SIGNATURES
from tests.support.policies import SHALLOW_ALLOW as ALLOW
from tests.support.policies import SHALLOW_DENY as DENY
from tests.support.policies import SHALLOW_PROFILE as PROFILE

SERVER = "10.77.0.100"
FRAME_PAYLOAD = 1448  # TCP payload of a 1,500-byte frame with timestamps


def write_policy(tmp_path: Path, rules: str) -> Path:
    path = lab_policy_with(tmp_path, rules)
    path.write_text(path.read_text() + PROFILE)
    return path


@pytest.fixture
def bypass_dataplane(tmp_path: Path, lab, lab_services, start_dataplane) -> Iterator:
    (tmp_path / "lab.rules").write_text(SIGNATURES)

    def start(*extra: str) -> DataplaneProcess:
        policy = write_policy(tmp_path, ALLOW)
        dp = start_dataplane(
            policy,
            extra_args=[
                "--rules",
                f"lab={tmp_path / 'lab.rules'}",
                "--timeout",
                "tcp_closing=1",
                "--timeout",
                "tcp_closed=1",
                *extra,
            ],
        )
        assert wait_for(lambda: f"wire {lab.wire}: fail mode" in dp.stderr_text(), timeout=10), dp.stderr_text()
        dp.policy_path = policy
        return dp

    return start


def fw_rx(dp: DataplaneProcess, port: str) -> float:
    return metric(dp.metrics_text(), "ngfw_port_rx_packets_total", port=port)


def download(lab, tmp_path: Path, query: str = "") -> tuple[subprocess.Popen, Path]:
    out = tmp_path / f"download-{time.monotonic_ns()}.bin"
    proc = run_in(
        lab.web1.ns,
        ["curl", "-sS", "-m", "60", "-o", str(out), f"http://{SERVER}/big.bin{query}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, out


def flow_records(dp: DataplaneProcess) -> list[dict]:
    return [r for r in dp.eve_records() if r.get("event_type") == "flow" and r.get("dest_port") == 80]


def test_a_download_past_the_inspection_depth_is_forwarded_by_the_kernel_and_counted(
    lab, bypass_dataplane, tmp_path
) -> None:
    dp = bypass_dataplane()
    assert "flow bypass on" in dp.stderr_text(), dp.stderr_text()
    assert metric(dp.metrics_text(), "ngfw_bypass_enabled") == 1
    from_server_before = fw_rx(dp, lab.fw_up)
    proc, out = download(lab, tmp_path)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert out.stat().st_size == BIG_FILE_SIZE
    frames = BIG_FILE_SIZE // FRAME_PAYLOAD
    # the packet loop saw the handshake, the request, the response up to the depth and the FINs; the kernel
    # forwarded the rest of the response without copying it to the dataplane's ring
    seen = fw_rx(dp, lab.fw_up) - from_server_before
    assert seen < frames * 0.2, (seen, frames)
    # the flow's record has every byte, the kernel's folded in
    assert wait_for(lambda: len(flow_records(dp)) == 1, timeout=10), dp.eve_records()
    [record] = flow_records(dp)
    assert record["flow"]["bytes_toclient"] > BIG_FILE_SIZE, record
    assert record["flow"]["pkts_toclient"] >= frames, record
    text = dp.metrics_text()
    assert metric(text, "ngfw_bypass_flows_total") >= 1, text
    assert metric(text, "ngfw_bypass_packets_total") >= frames * 0.8, text
    assert metric(text, "ngfw_bypass_bytes_total") >= BIG_FILE_SIZE * 0.8, text
    assert metric(text, "ngfw_bypass_flows_active") == 0, text  # it ended: its entries went with it


def test_a_policy_change_denying_a_bypassed_flow_stops_it_at_once(lab, bypass_dataplane, tmp_path) -> None:
    dp = bypass_dataplane()
    proc, out = download(lab, tmp_path, "?rate=1m")  # 10 s at 1 MiB/s
    try:
        assert wait_for(lambda: metric(dp.metrics_text(), "ngfw_bypass_flows_active") == 1, timeout=10), (
            dp.metrics_text()
        )
        # `ngfw sessions` tells a bypassed flow from an inspected one
        listing = call_in(
            lab.fw_ns,
            [*dp.argv[: dp.argv.index("dataplane")], "sessions", "port=80", "--json"],
            timeout=20,
            env=dataplane_process.dataplane_env(),
            cwd=str(dataplane_process.REPO_ROOT),
        )
        assert listing.returncode == 0, listing.stderr
        [flow] = [json.loads(line) for line in listing.stdout.splitlines() if line.strip()]
        assert flow["bypass"] is True and flow["inspected"] is True, flow
        loaded = metric(dp.metrics_text(), "ngfw_policy_reloads_total", result="success")
        dp.policy_path.write_text(lab_policy_with(tmp_path, DENY, "deny.yaml").read_text() + PROFILE)
        dp.reload()
        # acknowledged: the loop runs the new policy, and the kernel forwards nothing of the flow from then on
        assert wait_for(
            lambda: metric(dp.metrics_text(), "ngfw_policy_reloads_total", result="success") > loaded,
            timeout=10,
            interval=0.02,
        ), dp.stderr_text()
        time.sleep(0.3)  # what was on the wire at that moment arrives
        size = out.stat().st_size
        time.sleep(2.0)
        assert out.stat().st_size == size, "the download went on after the policy denying it was in force"
        assert size < BIG_FILE_SIZE
        text = dp.metrics_text()
        assert metric(text, "ngfw_drops_total", reason="cut_by_policy") >= 1, text
        assert metric(text, "ngfw_bypass_flows_active") == 0, text
    finally:
        stop_process(proc)


def test_no_bypass_keeps_every_frame_in_the_packet_loop(lab, bypass_dataplane, tmp_path) -> None:
    dp = bypass_dataplane("--no-bypass")
    assert metric(dp.metrics_text(), "ngfw_bypass_enabled") == 0
    tc = call_in(lab.fw_ns, ["tc", "filter", "show", "dev", lab.fw_vm, "ingress"], timeout=10).stdout
    assert "ngfw_wire" not in tc  # a closed wire without bypass carries no program
    before = fw_rx(dp, lab.fw_up)
    proc, out = download(lab, tmp_path)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert out.stat().st_size == BIG_FILE_SIZE
    assert fw_rx(dp, lab.fw_up) - before >= BIG_FILE_SIZE // FRAME_PAYLOAD
    assert metric(dp.metrics_text(), "ngfw_bypass_flows_total") == 0
    assert not re.search(r"flow bypass on", dp.stderr_text())


def test_a_closed_wire_forwards_no_bypassed_flow_once_the_dataplane_is_killed(lab, bypass_dataplane, tmp_path) -> None:
    """Bypass rides on the liveness of the packet loop: a closed wire's program stops forwarding bypassed flows
    when the heartbeat goes stale (0.3 s), as it would pass nothing without a program."""
    dp = bypass_dataplane()
    proc, out = download(lab, tmp_path, "?rate=1m")
    try:
        assert wait_for(lambda: metric(dp.metrics_text(), "ngfw_bypass_flows_active") == 1, timeout=10), (
            dp.metrics_text()
        )
        os.kill(dp.pid, signal.SIGKILL)
        dp.proc.wait(timeout=5)
        time.sleep(0.6)  # the heartbeat is stale from 0.3 s on
        size = out.stat().st_size
        time.sleep(2.0)
        assert out.stat().st_size == size, "the kernel went on forwarding a bypassed flow on a closed wire"
    finally:
        stop_process(proc)
