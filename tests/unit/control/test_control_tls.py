"""Control's API over TLS: client certificates as dataplane roles, untrusted servers, plain HTTP refused unread.

A throwaway CA (ngfw/lab/pki.py) signs control's certificate and the hosts'; a second CA
plays the stranger. Everything runs on loopback: a real control (`ControlServer` with the context
`ngfw control --tls-cert/--tls-key/--client-ca` builds), real agents and clients, and `ngfw control` itself
for its start-up errors.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ngfw
from ngfw.cli import main
from ngfw.control.agent import Agent
from ngfw.control.client import ControlClient, ControlError, ControlTlsError
from ngfw.control.tls import TlsConfigError, certificate_host, client_context, server_context
from ngfw.lab.pki import LabCA
from tests.support.control import RunningControl, free_port, two_tenants

REPO = Path(ngfw.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("pki")
    ca, stranger = LabCA(base / "ca"), LabCA(base / "stranger", "stranger CA")
    return {
        "ca": ca,
        "stranger": stranger,
        "server": ca.issue("control", dns=("localhost",), ips=("127.0.0.1",)),
        "host-a": ca.issue("host-a", server=False),
        "host-b-san": ca.issue("host-b-san", common_name="", dns=("host-b",), server=False),
        "forged-host-a": stranger.issue("host-a", server=False),
        "impostor": stranger.issue("impostor", dns=("localhost",), ips=("127.0.0.1",)),
    }


@pytest.fixture
def tls_control(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], pki: dict[str, Any]
) -> Iterator[RunningControl]:
    server = pki["server"]
    context = server_context(str(server.cert), str(server.key), str(pki["ca"].cert))
    running = RunningControl(sqlite_url, tmp_path / "tokens.json", ssl_context=context)
    yield running
    running.stop()


def https(control: RunningControl, pki: dict[str, Any], token: str | None, cert: str | None = None) -> ControlClient:
    issued = pki[cert] if cert else None
    return ControlClient(
        control.url,
        token,
        timeout=10,
        ca_file=str(pki["ca"].cert),
        client_cert=str(issued.cert) if issued else None,
        client_key=str(issued.key) if issued else None,
    )


def commit_two_tenants(client: ControlClient) -> int:
    documents = two_tenants()
    client.apply_documents(documents, ["test"] * len(documents))
    return int(client.commit("two tenants")["version"])


def test_an_agent_with_a_client_certificate_runs_as_its_hosts_dataplane(
    tls_control: RunningControl, tokens: dict[str, str], pki: dict[str, Any]
) -> None:
    assert tls_control.url.startswith("https://")
    version = commit_two_tenants(https(tls_control, pki, tokens["alice"]))  # bearer tokens work over TLS
    applied: list[Any] = []
    # no token at all: the certificate (CN host-a, signed by the client CA) is the credential
    agent = Agent(https(tls_control, pki, None, "host-a"), "host-a", applied.append, wait=2.0)
    agent.start()
    try:
        assert agent.wait_for(lambda a: a.current is not None, 10), agent.last_error
    finally:
        agent.stop()
    assert applied[-1].version == version
    status = https(tls_control, pki, tokens["vera"]).get("/status")
    assert status["summary"] == f"version {version} on 1 of 1 hosts"
    assert status["hosts"][0]["host"] == "host-a" and status["hosts"][0]["current"]

    # that certificate is host-a's dataplane, and nothing more: not host-b's, not an editor
    as_host_a = https(tls_control, pki, None, "host-a")
    with pytest.raises(ControlError) as denied:
        as_host_a.get("/bundle", host="host-b")
    assert denied.value.status == 403 and "dataplane:host-a" in denied.value.body["error"]
    with pytest.raises(ControlError) as denied:
        as_host_a.get("/running")
    assert denied.value.status == 403
    # without a CN, the certificate's DNS name is the host
    assert https(tls_control, pki, None, "host-b-san").get("/bundle", host="host-b")["version"] == version
    # a bearer token wins over the certificate presented with it
    assert https(tls_control, pki, tokens["vera"], "host-a").get("/running")["version"] == version
    audit = https(tls_control, pki, tokens["vera"]).get("/audit")["entries"]
    assert any(e["who"] == "cert:host-a" and e["outcome"] == "denied" for e in audit)


def test_an_untrusted_control_is_refused_with_one_clear_sentence(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], pki: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    impostor = pki["impostor"]  # a certificate for the right name, from a CA the hosts do not trust
    context = server_context(str(impostor.cert), str(impostor.key))
    control = RunningControl(sqlite_url, tmp_path / "tokens.json", ssl_context=context)
    try:
        client = https(control, pki, tokens["host-a"])
        with pytest.raises(ControlTlsError) as refused:
            client.get("/status")
        message = str(refused.value)
        assert message.startswith(
            f"control at {control.url} is not trusted: its certificate is not signed by a CA in {pki['ca'].cert}"
        ), message
        assert "\n" not in message

        # the agent keeps what it runs (nothing here), applies nothing from it, and says why
        applied: list[Any] = []
        agent = Agent(client, "host-a", applied.append, wait=1.0, retry_interval=0.1)
        agent.start()
        try:
            deadline = time.monotonic() + 5
            while "is not trusted" not in agent.last_error and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            agent.stop()
        assert "is not trusted" in agent.last_error and not applied and not agent.connected

        # the CLI: exit 1 and the sentence, no traceback
        os.environ["NGFW_TOKEN"] = tokens["vera"]
        try:
            code = main(["status", "--control", control.url, "--ca-file", str(pki["ca"].cert)])
        finally:
            del os.environ["NGFW_TOKEN"]
        err = capsys.readouterr().err
        assert code == 1 and err.startswith("ngfw status: control at ") and "is not trusted" in err, err
        assert "Traceback" not in err
    finally:
        control.stop()


def test_a_client_certificate_from_another_ca_is_refused(
    tls_control: RunningControl, tokens: dict[str, str], pki: dict[str, Any]
) -> None:
    forged = https(tls_control, pki, None, "forged-host-a")  # CN host-a, signed by the stranger CA
    with pytest.raises(ControlTlsError) as refused:
        forged.get("/bundle", host="host-a")
    message = str(refused.value)
    assert f"refused this client's certificate {pki['forged-host-a'].cert}" in message, message
    assert "not signed by control's --client-ca" in message
    assert tls_control.server.counters["tls_handshake_failures"] >= 1
    assert https(tls_control, pki, tokens["vera"]).get("/status")["hosts"] == []  # it got nowhere


def _plain_http(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_plain_http_with_a_token_is_refused_unread_when_tls_is_configured(
    tls_control: RunningControl, tokens: dict[str, str], pki: dict[str, Any]
) -> None:
    admin = https(tls_control, pki, tokens["alice"])
    version = commit_two_tenants(admin)
    body = b'{"version": 1, "message": "in clear"}'
    request = (
        b"POST /rollback HTTP/1.1\r\nHost: ctl\r\nAuthorization: Bearer "
        + tokens["alice"].encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    answer = _plain_http(tls_control.port, request)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403 "), answer[:200]
    assert b"control serves HTTPS on this port: use an https:// URL" in payload
    # not honoured, not even looked at: no new version, and the audit log has no trace of that request
    assert admin.get("/status")["version"] == version
    assert not [e for e in admin.get("/audit")["entries"] if e["action"] in ("rollback", "POST /rollback")]
    assert tls_control.server.counters["plain_http_refused"] == 1

    # the CLI pointed at http:// by mistake gets that sentence too
    plain = ControlClient(tls_control.url.replace("https://", "http://"), tokens["vera"], timeout=5)
    with pytest.raises(ControlError) as refused:
        plain.get("/status")
    assert refused.value.status == 403 and "use an https:// URL" in refused.value.body["error"]


def test_certificate_names_map_to_hosts() -> None:
    cn_and_san = {"subject": ((("commonName", "host-a"),),), "subjectAltName": (("DNS", "other"),)}
    assert certificate_host(cn_and_san) == "host-a"
    assert (
        certificate_host({"subject": (), "subjectAltName": (("IP Address", "10.0.0.1"), ("DNS", "host-b"))}) == "host-b"
    )
    assert certificate_host({}) is None and certificate_host(None) is None


def test_bad_files_are_named_in_one_sentence(pki: dict[str, Any], tmp_path: Path) -> None:
    server, other = pki["server"], pki["host-a"]
    with pytest.raises(
        TlsConfigError, match=f"^--tls-key {other.key} is not the private key of --tls-cert {server.cert}$"
    ):
        server_context(str(server.cert), str(other.key))
    with pytest.raises(TlsConfigError, match=f"^cannot read --client-ca {tmp_path}/missing.pem: No such file"):
        server_context(str(server.cert), str(server.key), str(tmp_path / "missing.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError, match=f"^--ca-file {garbage} holds no PEM certificate$"):
        client_context(str(garbage))
    with pytest.raises(TlsConfigError, match=f"^--tls-cert {server.key} holds no PEM certificate$"):
        server_context(str(server.key), str(server.key))
    unreadable = tmp_path / "ca.pem"
    unreadable.write_bytes(pki["ca"].cert.read_bytes())
    unreadable.chmod(0)
    if os.geteuid() != 0:  # root reads it anyway
        with pytest.raises(TlsConfigError, match=f"^cannot read --ca-file {unreadable}: Permission denied$"):
            client_context(str(unreadable))


def _control_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "ngfw", "control", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=str(REPO),
    )


def test_ngfw_control_refuses_bad_tls_files_and_plain_http_off_loopback(
    pki: dict[str, Any], tmp_path: Path, tokens: dict[str, str]
) -> None:
    server, other = pki["server"], pki["host-a"]
    common = ["--store", f"sqlite:///{tmp_path}/c.db", "--tokens", str(tmp_path / "tokens.json")]
    done = _control_cli(
        "--listen", f"127.0.0.1:{free_port()}", *common, "--tls-cert", str(server.cert), "--tls-key", str(other.key)
    )
    assert done.returncode == 1
    assert done.stderr == f"ngfw control: --tls-key {other.key} is not the private key of --tls-cert {server.cert}\n"
    done = _control_cli(
        "--listen",
        f"127.0.0.1:{free_port()}",
        *common,
        "--tls-cert",
        str(server.cert),
        "--tls-key",
        str(server.key),
        "--client-ca",
        str(tmp_path / "nope.pem"),
    )
    assert done.returncode == 1
    assert done.stderr == f"ngfw control: cannot read --client-ca {tmp_path}/nope.pem: No such file or directory\n"
    # a network address without TLS: refused unless asked for
    done = _control_cli("--listen", f"0.0.0.0:{free_port()}", *common)
    assert done.returncode == 2 and "is not a loopback address: serve TLS" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "listen, extra, where",
    [
        ("127.0.0.1", (), "loopback: only this host sees them"),
        ("0.0.0.0", ("--insecure-http",), "--insecure-http: anyone on the network can read them"),
    ],
)
def test_plain_http_control_warns_at_start(
    listen: str, extra: tuple[str, ...], where: str, tmp_path: Path, tokens: dict[str, str]
) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    log = tmp_path / "control.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ngfw",
                "control",
                "--listen",
                f"{listen}:{free_port()}",
                "--store",
                f"sqlite:///{tmp_path}/c.db",
                "--tokens",
                str(tmp_path / "tokens.json"),
                *extra,
            ],
            stdout=out,
            stderr=out,
            env=env,
            cwd=str(REPO),
        )
        try:
            deadline = time.monotonic() + 20
            while "plain HTTP" not in log.read_text() and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            process.terminate()
            process.wait(timeout=10)
    text = log.read_text()
    assert f"WARNING control serves plain HTTP: bearer tokens cross in clear ({where})" in text, text


def test_an_https_client_of_a_plain_control_is_told(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], pki: dict[str, Any]
) -> None:
    control = RunningControl(sqlite_url, tmp_path / "tokens.json")
    try:
        client = ControlClient(
            control.url.replace("http://", "https://"), tokens["vera"], timeout=5, ca_file=str(pki["ca"].cert)
        )
        with pytest.raises(ControlTlsError, match="does not answer TLS \\(is it serving plain HTTP"):
            client.get("/status")
    finally:
        control.stop()


def test_client_context_verifies_against_the_given_ca_only(pki: dict[str, Any]) -> None:
    context = client_context(str(pki["ca"].cert))
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert len(context.get_ca_certs()) == 1  # not the system's CAs besides


def test_the_cli_names_an_unreadable_ca_file(
    tls_control: RunningControl,
    tokens: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NGFW_TOKEN", tokens["vera"])
    missing = tmp_path / "no-ca.pem"
    assert main(["status", "--control", tls_control.url, "--ca-file", str(missing)]) == 1
    assert capsys.readouterr().err == f"ngfw status: cannot read --ca-file {missing}: No such file or directory\n"
    monkeypatch.setenv("NGFW_CA_FILE", str(missing))  # the environment's, named as such
    assert main(["status", "--control", tls_control.url]) == 1
    assert capsys.readouterr().err == f"ngfw status: cannot read $NGFW_CA_FILE {missing}: No such file or directory\n"
