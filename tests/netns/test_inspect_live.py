"""Threat inspection live: curl through the dataplane against nginx, with Suricata signatures loaded.

A clean request passes; a request carrying an exploit string is dropped (curl times out) or reset
(curl sees the reset), the EVE log has the alert with the signature and the flow's identity, and
`ngfw_alerts_total` moves. A SIGHUP with a broken rule file keeps the running rule set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.netns import lab_policy_with, metric, wait_for

SERVER = "10.77.0.100"

RULES = """\
alert http any any -> any any (msg:"LAB admin page"; flow:established,to_server; http.uri; content:"/admin"; classtype:web-application-attack; sid:9000001; rev:1;)
drop http any any -> any any (msg:"LAB exploit in URI"; flow:established,to_server; http.uri; content:"/cgi-bin/exploit"; sid:9000002; rev:1;)
reject tcp any any -> any any (msg:"LAB shell in payload"; flow:established,to_server; content:"X-Shell: /bin/sh"; nocase; sid:9000003; rev:1;)
"""

POLICY_RULES = """
- {name: web-http, from: [group:web], to: [cidr:10.77.0.100/32], services: [tcp/80], action: allow, log: true, inspect: default}
- {name: default-deny, from: [any], to: [any], action: deny}
"""


@pytest.fixture
def inspected(tmp_path: Path, lab, lab_services, start_dataplane):
    (tmp_path / "lab.rules").write_text(RULES)
    policy = lab_policy_with(tmp_path, POLICY_RULES, "inspect.yaml")
    dp = start_dataplane(policy, extra_args=["--rules", f"lab={tmp_path / 'lab.rules'}"])
    dp.rules_path = tmp_path / "lab.rules"
    return dp


def curl(ns_run, lab, path: str, *extra: str, timeout: str = "3") -> tuple[int, str, str]:
    r = ns_run(
        lab.web1.ns,
        ["curl", "-sS", "-m", timeout, "-o", "/dev/null", "-w", "%{http_code}", *extra, f"http://{SERVER}{path}"],
    )
    return r.returncode, r.stdout, r.stderr


def alerts(dp) -> list[dict]:
    return [r for r in dp.eve_records() if r.get("event_type") == "alert"]


def test_clean_request_passes_and_suspicious_one_alerts(lab, inspected, ns_run) -> None:
    assert curl(ns_run, lab, "/")[:2] == (0, "200")
    assert curl(ns_run, lab, "/admin/x")[:2] == (0, "404")  # alert only: nginx answers
    assert wait_for(lambda: len(alerts(inspected)) == 1, timeout=5), inspected.eve_records()
    [alert] = alerts(inspected)
    assert alert["alert"]["signature_id"] == 9000001 and alert["alert"]["action"] == "allowed"
    assert alert["alert"]["category"] == "Web Application Attack"
    assert (alert["src_vm"], alert["vsys"], alert["app_proto"], alert["dest_port"]) == (
        "web-01",
        "tenant-a",
        "http",
        80,
    )
    text = inspected.metrics_text()
    assert metric(text, "ngfw_alerts_total", vsys="tenant-a", severity="1", action="allowed") == 1, text
    assert metric(text, "ngfw_signatures_loaded", set="lab") == 3, text


def test_drop_signature_blocks_the_request(lab, inspected, ns_run) -> None:
    code, status, _ = curl(ns_run, lab, "/cgi-bin/exploit?x=1", timeout="2")
    assert (code, status) == (28, "000")  # no answer ever came: timed out
    assert curl(ns_run, lab, "/")[:2] == (0, "200")  # other connections are untouched
    assert wait_for(lambda: any(a["alert"]["signature_id"] == 9000002 for a in alerts(inspected)), timeout=5)
    blocked = [a for a in alerts(inspected) if a["alert"]["signature_id"] == 9000002]
    assert blocked[0]["alert"]["action"] == "blocked"
    text = inspected.metrics_text()
    assert metric(text, "ngfw_drops_total", reason="threat") >= 1, text
    assert metric(text, "ngfw_inspect_flows_blocked_total") == 1, text


def test_reject_signature_resets_the_connection(lab, inspected, ns_run) -> None:
    code, _, err = curl(ns_run, lab, "/", "-H", "X-Shell: /bin/sh")
    assert code in (52, 56), err  # empty reply / connection reset by peer
    assert wait_for(lambda: any(a["alert"]["signature_id"] == 9000003 for a in alerts(inspected)), timeout=5)


def test_a_broken_rule_file_on_reload_keeps_the_running_rules(lab, inspected, ns_run) -> None:
    inspected.rules_path.write_text(RULES + 'alert tcp any any -> any any (content:"|zz|"; sid:9000004;)\n')
    inspected.reload()
    assert wait_for(lambda: "signature reload refused" in inspected.stderr_text(), timeout=10), inspected.stderr_text()
    assert "sid 9000004: bad hex" in inspected.stderr_text()
    # the running rules still block
    assert curl(ns_run, lab, "/cgi-bin/exploit", timeout="2")[:2] == (28, "000")
    text = inspected.metrics_text()
    assert metric(text, "ngfw_signature_reloads_total", result="failure") == 1, text


# -- ARP frames and downloads, inline --------------------------------------------------------------------


@pytest.fixture
def arp_and_download_rules(tmp_path: Path, lab, lab_services, start_dataplane):
    hexmac = lab.web1.mac.replace(":", " ")
    rules = (
        f'drop arp any any -> any any (msg:"LAB quarantined host"; ether.hdr; content:"|{hexmac}|"; offset:6; '
        f"depth:6; sid:9000010; rev:1;)\n"
        'drop http any any -> any any (msg:"LAB dropper in a download"; flow:established,to_client; file_data; '
        'content:"LAB-DROPPER-MARKER"; sid:9000011; rev:1;)\n'
    )
    (tmp_path / "lab.rules").write_text(rules)
    policy = lab_policy_with(tmp_path, POLICY_RULES, "inspect.yaml")
    return start_dataplane(policy, extra_args=["--rules", f"lab={tmp_path / 'lab.rules'}"])


def test_a_drop_arp_rule_keeps_a_host_from_resolving_its_peers(lab, arp_and_download_rules, ns_run) -> None:
    dp = arp_and_download_rules
    for ns in (lab.web1.ns, lab.web2.ns, lab.srv.ns):
        ns_run(ns, ["ip", "neigh", "flush", "all"])
    code, status, _ = curl(ns_run, lab, "/", timeout="4")
    assert status == "000" and code in (7, 28)  # web-01's ARP requests never reach the server
    r = ns_run(lab.web2.ns, ["curl", "-sS", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", f"http://{SERVER}/"])
    assert r.stdout == "200"  # web-02 resolves and is served
    assert wait_for(lambda: any(a.get("arp") for a in alerts(dp)), timeout=5), dp.eve_records()
    arp_alert = next(a for a in alerts(dp) if a.get("arp"))
    assert arp_alert["alert"]["signature_id"] == 9000010 and arp_alert["alert"]["action"] == "blocked"
    assert arp_alert["arp"]["src_ip"] == lab.web1.ipv4 and arp_alert["arp"]["opcode"] == "request"
    assert arp_alert["src_vm"] == "web-01" and "flow_id" not in arp_alert
    text = dp.metrics_text()
    assert metric(text, "ngfw_drops_total", reason="threat") >= 1, text


def test_a_file_data_drop_stops_a_download_mid_body(lab, lab_services, arp_and_download_rules, ns_run) -> None:
    dp = arp_and_download_rules
    size = 1 << 20
    body = bytearray(size)
    body[size // 2 : size // 2 + 18] = b"LAB-DROPPER-MARKER"  # half-way: within the 1 MiB inspected
    path = lab_services.workdir / "www" / "dropper.bin"
    path.write_bytes(bytes(body))
    try:
        r = ns_run(
            lab.web2.ns,
            ["curl", "-sS", "-m", "4", "-o", "/dev/null", "-w", "%{size_download}", f"http://{SERVER}/dropper.bin"],
        )
    finally:
        path.unlink()
    assert r.returncode == 28, r.stderr  # the transfer stalls once the packet completing the marker is dropped
    received = int(r.stdout)
    assert 0 < received < size // 2 + 18, received  # what came before the marker, not the body
    assert wait_for(lambda: any(a["alert"]["signature_id"] == 9000011 for a in alerts(dp)), timeout=5)
    blocked = next(a for a in alerts(dp) if a["alert"]["signature_id"] == 9000011)
    assert blocked["alert"]["action"] == "blocked" and blocked["src_port"] == 80
