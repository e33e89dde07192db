"""App-ID in the live dataplane: real clients (curl, dig, ssh, a socket) against real servers, an
application-based policy deciding (root; see conftest).

Each test checks what the user of the client notices (an answer, a timeout, a reset) and then the
dataplane's EVE record of the flow (`dp.stop()` first, so open flows are logged: these dataplanes keep
their sessions in the heap, `--state-dir none`, so they end with the process instead of being saved for
the next one).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ngfw.lab.netns import run_in, socket_in, stop_process
from ngfw.lab.services import listening
from tests.support.netns import lab_policy_with, metric, wait_for

REPO = Path(__file__).resolve().parents[2]
LAB_POLICY = REPO / "rules" / "examples" / "lab.yaml"
ALLOW_ALL = REPO / "rules" / "examples" / "allow-all.yaml"
SERVER = "10.77.0.100"
SSH_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"
BANNER_PORT = 2222
TLS_PORT = 443
SERVER_LIFETIME = 120  # seconds: the helper servers exit on their own even if teardown never runs

APP_RULES = """
    - {name: allow-http, from: [group:web], to: [cidr:10.77.0.100/32], applications: [http], services: [application-default], action: allow, log: true}
    - {name: allow-dns, from: [any], to: [any], applications: [dns], action: allow, log: true}
    - {name: deny-ssh, from: [any], to: [any], applications: [ssh], action: deny, log: true}
    - {name: reject-blocked, from: [any], to: [any], applications: [facebook], action: reject, log: true}
    - {name: allow-tls, from: [any], to: [any], applications: [tls], action: allow, log: true}
    - {name: default-deny, from: [any], to: [any], action: deny, log: true}
"""


@pytest.fixture
def start_dataplane(start_dataplane_factory):
    """The conftest's, with sessions that end with the process (their flow records are what is checked)."""

    def start(policy, extra_args=()):
        return start_dataplane_factory(policy, extra_args=["--state-dir", "none", *extra_args])

    return start


@pytest.fixture
def app_policy(tmp_path: Path) -> Path:
    return lab_policy_with(tmp_path, APP_RULES, "apps.yaml")


def records_for(dp, dest_port: int, proto: str = "TCP") -> list[dict]:
    return [r for r in dp.eve_records() if r.get("dest_port") == dest_port and r.get("proto") == proto]


def check_app_flows_metric(text: str, app: str) -> None:
    """`ngfw_app_flows_total{vsys,app}` counts identified flows, when the dataplane exports it."""
    if "ngfw_app_flows_total" in text:
        assert metric(text, "ngfw_app_flows_total", vsys="tenant-a", app=app) >= 1, text


# --- helper servers in the srv namespace (bounded lifetime, stopped at teardown) ---

BANNER_SERVER = textwrap.dedent("""
    import socket, sys, time
    banner, port, lifetime = sys.argv[1].encode().decode('unicode_escape').encode(), int(sys.argv[2]), float(sys.argv[3])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(('0.0.0.0', port))
    s.listen(8)
    s.settimeout(0.5)
    end = time.monotonic() + lifetime
    while time.monotonic() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        c.settimeout(1.0)
        try:
            c.sendall(banner)
            for _ in range(4):
                data = c.recv(4096)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        c.close()
""")


def _wait_listening(lab, port: int, proc: subprocess.Popen, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port in listening(lab.srv.ns, "tcp"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop_process(proc)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    pytest.fail(f"{what} did not listen on {port}: {err}", pytrace=False)


@pytest.fixture(scope="module")
def banner_server(lab) -> Iterator[int]:
    """A TCP server on srv:2222 that greets with an SSH banner and echoes."""
    proc = run_in(
        lab.srv.ns,
        [
            sys.executable,
            "-c",
            BANNER_SERVER,
            SSH_BANNER.decode().encode("unicode_escape").decode(),
            str(BANNER_PORT),
            str(SERVER_LIFETIME),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(lab, BANNER_PORT, proc, "the SSH banner server")
        yield BANNER_PORT
    finally:
        stop_process(proc, timeout=3)


@pytest.fixture(scope="module")
def tls_server(lab, tmp_path_factory) -> Iterator[int]:
    """`openssl s_server -www` on srv:443 with a throw-away self-signed certificate."""
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=lab",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    proc = run_in(
        lab.srv.ns,
        [
            "timeout",
            str(SERVER_LIFETIME),
            "openssl",
            "s_server",
            "-accept",
            str(TLS_PORT),
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-www",
            "-quiet",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_listening(lab, TLS_PORT, proc, "openssl s_server")
        yield TLS_PORT
    finally:
        stop_process(proc, timeout=3)


def banner_from(lab, port: int, timeout: float = 3.0) -> tuple[bytes, str]:
    """Connect from web1 and read what the server says first: (bytes, how it ended)."""
    with contextlib.closing(socket_in(lab.web1.ns)) as sock:
        sock.settimeout(timeout)
        sock.connect((SERVER, port))
        data = b""
        try:
            while b"\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return data, "closed"
                data += chunk
        except TimeoutError:
            return data, "timeout"
        except ConnectionResetError:
            return data, "reset"
        return data, "line"


# --- the tests ---


def test_http_is_identified_and_allowed(lab, lab_services, start_dataplane, app_policy, ns_run) -> None:
    dp = start_dataplane(app_policy)
    r = ns_run(lab.web1.ns, ["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", f"http://{SERVER}/"])
    assert (r.returncode, r.stdout) == (0, "200"), r.stderr
    text = dp.metrics_text()
    assert metric(text, "ngfw_rule_hits_total", vsys="tenant-a", rule="allow-http") >= 1, text
    check_app_flows_metric(text, "http")
    dp.stop()
    flows = [f for f in records_for(dp, 80) if f["event_type"] == "flow"]
    assert len(flows) == 1, dp.eve_records()
    flow = flows[0]
    assert (flow["src_ip"], flow["src_vm"], flow["rule"], flow["action"]) == (
        lab.web1.ipv4,
        "web-01",
        "allow-http",
        "allow",
    )
    assert (flow["app_proto"], flow["app"], flow["app_host"]) == ("http", "http", SERVER)
    assert flow["app_confidence"] >= 80
    assert flow["flow"]["bytes_toclient"] > 0


def test_http_off_its_default_ports_is_denied(lab, lab_services, start_dataplane, app_policy, ns_run) -> None:
    """`services: [application-default]`: HTTP on 8443 (nginx answers there) is not what allow-http allows."""
    dp = start_dataplane(app_policy)
    r = ns_run(
        lab.web1.ns, ["curl", "-sS", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", f"http://{SERVER}:8443/"]
    )
    assert (r.returncode, r.stdout) == (28, "000"), r.stderr  # connected, then no answer: timed out
    assert 8443 in listening(lab.srv.ns, "tcp")  # nginx is there: the dataplane kept its answer away
    text = dp.metrics_text()
    assert metric(text, "ngfw_rule_hits_total", vsys="tenant-a", rule="allow-http") == 0, text
    assert metric(text, "ngfw_rule_hits_total", vsys="tenant-a", rule="default-deny") == 1, text
    dp.stop()
    drops = [rec for rec in records_for(dp, 8443) if rec["event_type"] == "drop"]
    assert len(drops) == 1, dp.eve_records()
    assert (drops[0]["app_proto"], drops[0]["rule"], drops[0]["action"]) == ("http", "default-deny", "deny")


def test_dns_is_identified_and_allowed(lab, lab_services, start_dataplane, app_policy, ns_run) -> None:
    dp = start_dataplane(app_policy)
    r = ns_run(lab.web2.ns, ["dig", "+short", "+time=2", "+tries=1", f"@{SERVER}", "example.internal"])
    assert (r.returncode, r.stdout.strip()) == (0, SERVER), (r.stdout, r.stderr)
    check_app_flows_metric(dp.metrics_text(), "dns")
    dp.stop()
    flows = [f for f in records_for(dp, 53, "UDP") if f["event_type"] == "flow"]
    assert len(flows) == 1, dp.eve_records()
    flow = flows[0]
    assert (flow["src_vm"], flow["rule"], flow["action"]) == ("web-02", "allow-dns", "allow")
    assert (flow["app_proto"], flow["app_host"]) == ("dns", "example.internal")
    assert flow["flow"]["pkts_toclient"] >= 1


def test_ssh_is_denied_on_any_port(lab, lab_services, banner_server, start_dataplane, app_policy, ns_run) -> None:
    # without App-ID rules the banner server greets web1 ...
    dp = start_dataplane(ALLOW_ALL)
    data, how = banner_from(lab, banner_server)
    assert (data, how) == (SSH_BANNER, "line")
    dp.stop()

    # ... with them the SSH greeting never arrives, on port 2222 as on 22
    dp = start_dataplane(app_policy)
    started = time.monotonic()
    data, how = banner_from(lab, banner_server, timeout=3.0)
    assert data == b"" and how in ("timeout", "reset"), (data, how)
    assert time.monotonic() - started < 5
    r = ns_run(
        lab.web1.ns,
        [
            "ssh",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            SERVER,
            "true",
        ],
        timeout=15,
    )
    assert r.returncode == 255, r.stderr
    # it never got as far as authentication (which BatchMode without keys would also fail)
    assert "Permission denied" not in r.stderr and "banner exchange" in r.stderr, r.stderr
    text = dp.metrics_text()
    assert metric(text, "ngfw_rule_hits_total", vsys="tenant-a", rule="deny-ssh") >= 2, text
    assert metric(text, "ngfw_drops_total", reason="policy_deny") >= 2, text
    dp.stop()
    for port in (banner_server, 22):
        denied = [
            rec
            for rec in records_for(dp, port)
            if rec["event_type"] == "drop" or (rec["event_type"] == "flow" and rec["action"] == "deny")
        ]
        assert denied, (port, dp.eve_records())
        assert all(rec["app_proto"] == "ssh" and rec["rule"] == "deny-ssh" for rec in denied), denied
        assert all(rec["src_vm"] == "web-01" for rec in denied), denied


def test_tls_allowed_by_sni_and_facebook_rejected(
    lab, lab_services, tls_server, start_dataplane, app_policy, ns_run
) -> None:
    dp = start_dataplane(app_policy)
    ok = ns_run(
        lab.web1.ns,
        [
            "curl",
            "-sk",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--resolve",
            f"ok.internal:{tls_server}:{SERVER}",
            "https://ok.internal/",
        ],
    )
    assert (ok.returncode, ok.stdout) == (0, "200"), ok.stderr

    started = time.monotonic()
    fb = ns_run(
        lab.web1.ns,
        [
            "curl",
            "-sSk",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "--resolve",
            f"www.facebook.com:{tls_server}:{SERVER}",
            "https://www.facebook.com/",
        ],
    )
    elapsed = time.monotonic() - started
    assert fb.returncode in (35, 56), (fb.returncode, fb.stderr)  # SSL connect error / recv failure: a reset
    assert elapsed < 2.0, elapsed  # at once, not curl's 5 s timeout
    text = dp.metrics_text()
    assert metric(text, "ngfw_rule_hits_total", vsys="tenant-a", rule="allow-tls") >= 1, text
    assert metric(text, "ngfw_rule_hits_total", vsys="tenant-a", rule="reject-blocked") >= 1, text
    check_app_flows_metric(text, "tls")
    check_app_flows_metric(text, "facebook")
    dp.stop()

    records = records_for(dp, tls_server)
    allowed = [rec for rec in records if rec.get("app_host") == "ok.internal"]
    assert [rec["event_type"] for rec in allowed] == ["flow"], records
    assert (allowed[0]["app_proto"], allowed[0]["app"], allowed[0]["rule"], allowed[0]["action"]) == (
        "tls",
        "tls",
        "allow-tls",
        "allow",
    )
    blocked = [rec for rec in records if rec.get("app_host") == "www.facebook.com"]
    assert blocked, records
    assert all(
        (rec["app_proto"], rec["app"], rec["rule"], rec["action"]) == ("tls", "facebook", "reject-blocked", "reject")
        for rec in blocked
    ), blocked
    assert any(rec["event_type"] == "drop" for rec in blocked), blocked


def test_rejected_flow_ends_like_a_reset_one(
    lab, lab_services, tls_server, start_dataplane, app_policy, ns_run
) -> None:
    """Both endpoints got a RST and forgot the connection: the dataplane's flow ends tcp_closed seconds later."""
    dp = start_dataplane(app_policy, extra_args=["--timeout", "tcp_closed=1", "--timeout", "tcp_closing=1"])
    fb = ns_run(
        lab.web1.ns,
        [
            "curl",
            "-sSk",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "--resolve",
            f"www.facebook.com:{tls_server}:{SERVER}",
            "https://www.facebook.com/",
        ],
    )
    assert fb.returncode in (35, 56), fb.stderr
    ended = wait_for(lambda: any(rec["event_type"] == "flow" for rec in records_for(dp, tls_server)), timeout=4.0)
    assert ended, dp.eve_records()
    assert metric(dp.metrics_text(), "ngfw_flows_active") == 0
