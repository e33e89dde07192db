"""`ngfw sessions` and `ngfw policy hits` against a real dataplane with real traffic (root; see conftest).

web1 downloads the lab's big file through the dataplane; the operator lists web1's sessions from the
dataplane's namespace (the CLI finds the dataplane's socket by itself), clears the download and the client
sees the reset; the EVE log says the flow was cleared; the rule's hits, first and last hit are there, and a
reload that deletes a rule takes its metric series away.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ngfw.lab.dataplane_process import dataplane_env
from ngfw.lab.netns import call_in, run_in
from tests.support.netns import LAB_POLICY, REPO, metric, wait_for


def ngfw(lab_ns: str, ns_run, *args: str) -> subprocess.CompletedProcess[str]:
    """`ngfw ARGS` run inside namespace `lab_ns` (as an operator on the dataplane's host would)."""
    return call_in(lab_ns, [sys.executable, "-m", "ngfw", *args], timeout=20, env=dataplane_env(), cwd=str(REPO))


def test_list_web1s_download_clear_it_and_the_client_sees_the_reset(
    lab, lab_services, start_dataplane, ns_run, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(LAB_POLICY.read_text())
    dp = start_dataplane(policy, extra_args=["--rules", f"lab={REPO / 'rules' / 'threats' / 'lab.rules'}"])
    # paced by the server: a client's --limit-rate only slows its reads, and past the inspection depth the
    # kernel (flow bypass) fills its socket buffers with most of the file within a second
    download = run_in(
        lab.web1.ns,
        ["curl", "-sS", "-o", "/dev/null", "-m", "30", lab_services.big_file_url + "?rate=1m"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(lambda: metric(dp.metrics_text(), "ngfw_flows_active") >= 1, timeout=5)
        time.sleep(0.5)
        listed = ngfw(lab.fw_ns, ns_run, "sessions", "--vm", "web-01", "port=80", "--json")
        assert listed.returncode == 0, listed.stderr
        (session,) = [json.loads(line) for line in listed.stdout.splitlines()]
        assert (
            session["src_vm"],
            session["src_ip"],
            session["dest_port"],
            session["rule"],
            session["app"],
            session["state"],
            session["inspected"],
        ) == ("web-01", lab.web1.ipv4, 80, "web-to-server-http", "http", "established", True)
        assert session["bytes_toclient"] > 100_000
        table = ngfw(lab.fw_ns, ns_run, "sessions", "vm=web-01")
        assert table.returncode == 0 and "web-to-server-http" in table.stdout and "1 session" in table.stdout

        cleared = ngfw(lab.fw_ns, ns_run, "sessions", "clear", "vm=web-01", "port=80")
        assert cleared.returncode == 0, cleared.stderr
        assert cleared.stdout.startswith("1 session cleared (vm=web-01 port=80)")
        download.wait(timeout=10)  # well before the 10 s the download would take
        error = download.stderr.read() if download.stderr else ""
        assert download.returncode == 56 and "reset" in error.lower(), error
        assert ngfw(lab.fw_ns, ns_run, "sessions", "vm=web-01", "--json").stdout.strip() == ""
    finally:
        if download.poll() is None:
            download.kill()
    assert wait_for(
        lambda: any(
            r.get("event_type") == "flow" and r["flow"]["reason"] == "cleared" and r["dest_port"] == 80
            for r in dp.eve_records()
        ),
        timeout=3,
    )
    assert metric(dp.metrics_text(), "ngfw_drops_total", reason="session_cleared") >= 1

    hits = ngfw(lab.fw_ns, ns_run, "policy", "hits", "--json")
    assert hits.returncode == 0, hits.stderr
    web = {(r["vsys"], r["rule"]): r for r in map(json.loads, hits.stdout.splitlines())}[
        ("tenant-a", "web-to-server-http")
    ]
    assert web["hits"] >= 1 and web["first"] <= web["last"] <= time.time()
    text = dp.metrics_text()
    assert metric(text, "ngfw_rule_hits_total", vsys="tenant-a", rule="web-to-server-http") >= 1
    assert "reject-8443" in text
    # a reload that deletes a rule: its series goes (its history stays in `ngfw policy hits --gone`)
    policy.write_text(
        LAB_POLICY.read_text().replace(
            """    - name: reject-8443
      description: Refused loudly (TCP RST) so clients fail fast instead of timing out.
      from: [any]
      to: [cidr:10.77.0.100/32]
      services: [tcp/8443]
      action: reject
      log: true
""",
            "",
        )
    )
    dp.reload()
    assert wait_for(lambda: metric(dp.metrics_text(), "ngfw_policy_version") == 2, timeout=10)
    text = dp.metrics_text()
    assert "reject-8443" not in text
    assert metric(text, "ngfw_rule_hits_total", vsys="tenant-a", rule="web-to-server-http") >= 1
    gone = ngfw(lab.fw_ns, ns_run, "policy", "hits", "--gone")
    assert "reject-8443" in gone.stdout and "(not in the policy now)" in gone.stdout


def test_a_bad_filter_is_one_line_naming_the_value(lab, start_dataplane, ns_run) -> None:
    start_dataplane(LAB_POLICY)
    for args, message in (
        (["port=http"], "port=http: a port is a number from 0 to 65535"),
        (["src=10.77.0.300"], "'10.77.0.300' is not an IP address"),
        (["colour=red"], "unknown filter field 'colour'"),
        (["vm=web-99"], "no workload named 'web-99'"),
        (["clear"], "needs a filter"),
    ):
        result = ngfw(lab.fw_ns, ns_run, "sessions", *args)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result
        assert len(result.stderr.strip().splitlines()) == 1
