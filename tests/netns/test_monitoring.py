"""Prometheus scrapes a real dataplane and a real control in the lab: counters move with real traffic, the alerts
load and fire, and every query of the Grafana dashboard (deploy/grafana/ngfw.json) returns data.

Inside the lab's fw namespace: `ngfw control` over TLS (a throwaway CA, ngfw.lab.pki) on its loopback;
`ngfw dataplane --control https://... --host host-a` inline on the wire, its agent authenticated by host-a's
client certificate (no token); and Debian's `prometheus`, with deploy/prometheus's scrape config (targets
pointed at those two, every second) and alerts. Real clients in the workloads make the traffic each panel
shows: curl to nginx (HTTP, an App-ID verdict, a signature alert), ping, a connection the policy rejects
and one it drops; an operator's refused commit and a migration to a host without a dataplane (it fails).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from ngfw.control.auth import add_token
from ngfw.control.client import ControlClient, ControlError
from ngfw.lab import dataplane_process
from ngfw.lab.dataplane_process import REPO_ROOT, DataplaneProcess, dataplane_env
from ngfw.lab.netns import call_in, free_tcp_port, http_get, in_netns, run_in, stop_process
from ngfw.lab.pki import LabCA
from ngfw.lab.services import Services
from ngfw.lab.topology import Lab, lab_unbridge_fw
from tests.support.netns import LAB_POLICY, SERVER, wait_for

DEPLOY = REPO_ROOT / "deploy"
SCRAPE_SECONDS = 1
# what Grafana puts for its variables with a 1 s scrape interval and a 1 s step
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"
CLOSED_PORT = 9  # discard: nothing listens on it in the lab's namespace, a directory there is unreachable


@dataclass
class Site:
    lab: Lab
    workdir: Path
    ca: Path
    control_url: str
    tokens: dict[str, str]
    token_files: dict[str, Path]
    dataplane: DataplaneProcess
    prometheus_port: int
    syslog_port: int

    def api(self, who: str) -> ControlClient:
        return ControlClient(self.control_url, self.tokens[who], timeout=10, ca_file=str(self.ca))

    def call(self, who: str, method: str, path: str, body: Any = None) -> Any:
        with in_netns(self.lab.fw_ns):
            return self.api(who).request(method, path, body)[1]

    def cli(self, who: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [
            sys.executable,
            "-m",
            "ngfw",
            *args,
            "--control",
            self.control_url,
            "--ca-file",
            str(self.ca),
            "--token-file",
            str(self.token_files[who]),
        ]
        return call_in(self.lab.fw_ns, argv, timeout=30, env=dataplane_env(), cwd=str(REPO_ROOT))

    def prometheus(self, path: str, **query: Any) -> Any:
        status, body = http_get(self.lab.fw_ns, "127.0.0.1", self.prometheus_port, f"{path}?{urlencode(query)}", 10)
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "success", (path, query, body[:500])
        return answer["data"]

    def instant(self, expr: str) -> list[dict[str, Any]]:
        return list(self.prometheus("/api/v1/query", query=expr)["result"])

    def scalar(self, expr: str) -> float | None:
        result = self.instant(expr)
        return float(result[0]["value"][1]) if result else None


def _wait_http(
    ns: str, port: int, path: str, what: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{what} exited:\n{log.read_text(errors='replace')[-3000:]}"
        with contextlib.suppress(OSError):
            if http_get(ns, "127.0.0.1", port, path, 1)[0] == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not answer in {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def _lab_documents() -> list[dict[str, Any]]:
    """The lab policy, with web-01 placed on host-a and web-02 on host-b (a host with no dataplane here), and a
    UserSource: sshd's login lines, and a directory on a loopback port nothing listens on (it stays stale)."""
    documents = [d for d in yaml.safe_load_all(LAB_POLICY.read_text()) if d]
    for document in documents:
        if document["kind"] == "Workload":
            document["spec"]["host"] = "host-a" if document["metadata"]["name"] == "web-01" else "host-b"
    documents.append(
        {
            "apiVersion": "ngfw/v1",
            "kind": "UserSource",
            "metadata": {"name": "corp"},
            "spec": {
                "syslog": {"login": r"Accepted \S+ for (?P<user>\S+) from (?P<ip>\S+)"},
                "ldap": {"url": f"ldap://127.0.0.1:{CLOSED_PORT}", "refresh": 1, "timeout": 1},
            },
        }
    )
    return documents


def _prometheus_config(site_dir: Path, dataplane_port: int, control_port: int, ca: Path) -> Path:
    """deploy/prometheus/prometheus.yml with this lab's targets, a 1 s scrape interval and the shipped alerts."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=f"{SCRAPE_SECONDS}s", evaluation_interval=f"{SCRAPE_SECONDS}s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / name) for name in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    jobs["ngfw-dataplane"]["static_configs"] = [{"targets": [f"127.0.0.1:{dataplane_port}"]}]
    jobs["ngfw-control"]["static_configs"] = [{"targets": [f"127.0.0.1:{control_port}"]}]
    jobs["ngfw-control"]["tls_config"]["ca_file"] = str(ca)
    path = site_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def site(lab: Lab, lab_services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is not installed: deploy/install.sh installs it (deploy/packages-lab.txt)"
    workdir = tmp_path_factory.mktemp("monitoring")
    pki = LabCA(workdir / "pki")
    server = pki.issue("control", dns=("localhost",), ips=("127.0.0.1",))
    host_a = pki.issue("host-a", server=False)
    tokens = {
        name: add_token(workdir / "tokens.json", name, role)
        for name, role in (("admin", "security-admin"), ("auditor", "viewer"))
    }
    token_files = {}
    for name, token in tokens.items():
        token_files[name] = workdir / f"{name}.token"
        token_files[name].write_text(token + "\n")
    procs: list[subprocess.Popen[Any]] = []
    logs = []
    dataplane: DataplaneProcess | None = None
    try:
        control_port = free_tcp_port(lab.fw_ns)
        syslog_port = free_tcp_port(lab.fw_ns)
        logs.append(open(workdir / "control.log", "wb"))
        procs.append(
            run_in(
                lab.fw_ns,
                [
                    sys.executable,
                    "-m",
                    "ngfw",
                    "control",
                    "--listen",
                    f"127.0.0.1:{control_port}",
                    "--store",
                    f"sqlite:///{workdir / 'control.db'}",
                    "--tokens",
                    str(workdir / "tokens.json"),
                    "--tls-cert",
                    str(server.cert),
                    "--tls-key",
                    str(server.key),
                    "--client-ca",
                    str(pki.cert),
                    "--syslog",
                    f"127.0.0.1:{syslog_port}",
                ],
                stdout=logs[-1],
                stderr=logs[-1],
                stdin=subprocess.DEVNULL,
                env=dataplane_env(),
                cwd=str(REPO_ROOT),
            )
        )
        url = f"https://127.0.0.1:{control_port}"
        site_stub = Site(
            lab,
            workdir,
            pki.cert,
            url,
            tokens,
            token_files,
            None,
            0,  # type: ignore[arg-type]
            syslog_port,
        )

        def control_up() -> bool:
            with contextlib.suppress(Exception):
                site_stub.call("auditor", "GET", "/status")
                return True
            assert procs[-1].poll() is None, (workdir / "control.log").read_text()
            return False

        assert wait_for(control_up, 20), (workdir / "control.log").read_text()
        documents = _lab_documents()
        site_stub.call(
            "admin", "POST", "/candidate/apply", {"documents": documents, "sources": ["lab"] * len(documents)}
        )
        assert site_stub.call("admin", "POST", "/commit", {"message": "the lab"})["version"] == 1

        lab_unbridge_fw(lab)

        def dataplane_argv(policy: str, metrics: str, eve: str) -> list[str]:
            # no --policy and no token: the policy comes from control, the certificate says who this host is
            return [
                sys.executable,
                "-m",
                "ngfw",
                "dataplane",
                "--wire",
                lab.wire,
                "--metrics",
                metrics,
                "--eve",
                eve,
                "--state-dir",
                "none",
                "--rules",
                f"lab={REPO_ROOT / 'rules' / 'threats' / 'lab.rules'}",
                "--control",
                url,
                "--host",
                "host-a",
                "--ca-file",
                str(pki.cert),
                "--client-cert",
                str(host_a.cert),
                "--client-key",
                str(host_a.key),
            ]

        dataplane_dir = workdir / "dataplane"
        dataplane_dir.mkdir()
        dataplane = dataplane_process.start_dataplane(
            lab.fw_ns,
            "-",
            free_tcp_port(lab.fw_ns),
            workdir=dataplane_dir,
            argv_builder=dataplane_argv,
            ready_timeout=30,
        )
        site_stub.dataplane = dataplane

        def realized() -> bool:
            hosts = site_stub.call("auditor", "GET", "/status")["hosts"]
            return bool(hosts) and hosts[0]["host"] == "host-a" and hosts[0]["current"]

        assert wait_for(realized, 20), dataplane.stderr_text()

        prometheus_port = free_tcp_port(lab.fw_ns)
        config = _prometheus_config(workdir, dataplane.metrics_port, control_port, pki.cert)
        logs.append(open(workdir / "prometheus.log", "wb"))
        procs.append(
            run_in(
                lab.fw_ns,
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    "--log.level=warn",
                ],
                stdout=logs[-1],
                stderr=logs[-1],
                stdin=subprocess.DEVNULL,
            )
        )
        _wait_http(lab.fw_ns, prometheus_port, "/-/ready", "prometheus", procs[-1], workdir / "prometheus.log")
        site_stub.prometheus_port = prometheus_port
        yield site_stub
    finally:
        if dataplane is not None:
            dataplane.stop()
        for proc in reversed(procs):
            stop_process(proc)
        for log in logs:
            log.close()


def curl(lab: Lab, ns: str, url: str) -> subprocess.CompletedProcess[str]:
    return call_in(
        ns,
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--connect-timeout", "1", "--max-time", "3", url],
        timeout=10,
    )


def grafana_query(expr: str, range_seconds: int) -> str:
    """A panel's PromQL with Grafana's variables as Grafana sets them for this time range."""
    return (
        expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$__range", f"{range_seconds}s")
        .replace("$__interval", f"{SCRAPE_SECONDS}s")
    )


def series(result: list[dict[str, Any]]) -> dict[str, float]:
    """{label values joined: the series' largest value} of an instant or range query's result."""
    out = {}
    for item in result:
        values = item.get("values") or [item["value"]]
        key = ",".join(f"{k}={v}" for k, v in sorted(item["metric"].items()) if k != "__name__")
        out[key] = max(float(v[1]) for v in values)
    return out


def test_prometheus_shows_real_traffic_and_every_dashboard_panel_has_data(site: Site) -> None:
    lab = site.lab
    started = time.time()
    # both targets up; the packet counter as Prometheus has it before the traffic
    assert wait_for(lambda: site.scalar('count(up{job=~"ngfw-.*"} == 1)') == 2, 15), site.prometheus("/api/v1/targets")
    before = site.scalar("sum(ngfw_port_rx_packets_total)")
    assert before is not None

    # real clients: HTTP allowed (App-ID http), a page a signature alerts on, ping, a rejected and a denied port.
    # A counter's first sample shows no increase: the first flow's series is scraped before the others come
    assert curl(lab, lab.web1.ns, f"http://{SERVER}/").stdout == "200"
    assert wait_for(lambda: bool(site.instant('ngfw_app_flows_total{app="http"}')), 10)
    for _ in range(2):
        assert curl(lab, lab.web1.ns, f"http://{SERVER}/").stdout == "200"
    assert curl(lab, lab.web1.ns, f"http://{SERVER}/admin").stdout == "404"  # allowed, and alerted (sid 9000001)
    assert call_in(lab.web1.ns, ["ping", "-c", "3", "-i", "0.2", "-W", "1", SERVER], timeout=10).returncode == 0
    assert curl(lab, lab.web1.ns, f"http://{SERVER}:8443/").returncode == 7  # reset by the dataplane
    assert curl(lab, lab.web1.ns, f"http://{SERVER}:8080/").returncode == 28  # dropped: timed out
    # an operator: a viewer's commit is refused (403); a migration to a host without a dataplane fails
    with pytest.raises(ControlError):
        site.call("auditor", "POST", "/commit", {"message": "not mine to make"})
    moved = site.cli("admin", "migrate", "web-01", "--to", "host-b")
    assert moved.returncode == 1 and "destination host-b has no connected dataplane" in moved.stderr, moved.stderr
    # User-ID: a login line from a jump host's syslog (util-linux logger), mapping web-01's address
    login = call_in(
        lab.fw_ns,
        [
            "logger",
            "-n",
            "127.0.0.1",
            "-P",
            str(site.syslog_port),
            "--udp",
            "-t",
            "sshd",
            f"Accepted publickey for alice from {lab.web1.ipv4} port 50022 ssh2",
        ],
        timeout=10,
    )
    assert login.returncode == 0, login.stderr
    assert wait_for(lambda: (site.scalar("max(ngfw_user_mappings)") or 0) >= 1, 10)

    # the counter moved, and Prometheus shows it: at least the 3 pings' 6 frames more
    assert wait_for(lambda: (site.scalar("sum(ngfw_port_rx_packets_total)") or 0) >= before + 6, 10)
    # every series the panels use has been scraped at least twice since (rate() needs two samples)
    time.sleep(2.5 * SCRAPE_SECONDS)
    # the shipped alert on failed migrations fires in the real Prometheus
    assert wait_for(lambda: bool(site.instant('ALERTS{alertname="NgfwMigrationsFailing", alertstate="firing"}')), 10)

    now = time.time()
    span = int(now - started) + 2
    dashboard = json.loads((DEPLOY / "grafana" / "ngfw.json").read_text())
    results: dict[str, list[dict[str, float]]] = {}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = grafana_query(target["expr"], span)
            if target.get("instant"):
                data = site.prometheus("/api/v1/query", query=expr, time=now)
            else:
                data = site.prometheus(
                    "/api/v1/query_range", query=expr, start=now - span, end=now, step=SCRAPE_SECONDS
                )
            assert data["result"], f"panel {panel['title']!r}: no data for {expr}"
            results.setdefault(panel["title"], []).append(series(data["result"]))

    # and what they show is what happened
    received = results["Throughput"][0]
    assert max(received.values()) > 0, received
    drops = results["Drops by reason"][0]
    assert "reason=policy_reject" in drops and "reason=policy_deny" in drops, drops  # 8443; 8080 (default-deny rule)
    assert "vsys=tenant-a" in results["Sessions per vsys"][0]
    assert results["Top applications"][0].get("app=http", 0) > 0, results["Top applications"]
    assert any(k.endswith("vsys=tenant-a") for k in results["Signature alerts by vsys and severity"][0])
    acknowledged, enforced, running = results["Policy version per host"]
    assert acknowledged == {"host=host-a": 1.0} and running == {"": 1.0} and set(enforced.values()) == {1.0}
    assert results["Hosts: connected, up to date"][0] == {"host=host-a": 1.0}
    assert results["Migrations"][0].get("result=failed", 0) > 0, results["Migrations"]
    assert results["Commits and refusals"][0]["action=commit,result=refused"] > 0, results["Commits and refusals"]
    assert results["Commits and refusals"][1].get("reason=denied", 0) > 0, results["Commits and refusals"]
    assert any("alertname=NgfwMigrationsFailing" in k for k in results["Firing alerts"][0])
    control_mapped, host_mapped = results["User-ID: mapped addresses"]
    assert control_mapped == {"": 1.0} and max(host_mapped.values()) == 1.0, results["User-ID: mapped addresses"]
    lines, changes = results["User-ID: logins and mapping changes"]
    assert lines["result=logins"] > 0 and changes["outcome=mapped"] > 0, results["User-ID: logins and mapping changes"]
    stale, refreshes = results["User-ID: directories"]
    assert stale == {"source=corp": 1.0} and refreshes["outcome=failed,source=corp"] > 0, results[
        "User-ID: directories"
    ]
    updates, writes = results["User-ID: updates to hosts, store writes"]
    assert "kind=snapshot" in updates and writes.get("result=ok", 0) > 0, results[
        "User-ID: updates to hosts, store writes"
    ]


def test_promtool_finds_both_expositions_clean(site: Site) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: deploy/install.sh installs prometheus (deploy/packages-lab.txt)"
    with in_netns(site.lab.fw_ns):
        import ssl

        context = ssl.create_default_context(cafile=str(site.ca))
        with urllib.request.urlopen(site.control_url + "/metrics", timeout=10, context=context) as response:
            control_text = response.read().decode()
    for name, text in (("dataplane", site.dataplane.metrics_text()), ("control", control_text)):
        assert "ngfw_" in text
        done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and not (done.stdout + done.stderr).strip(), f"{name}: {done.stdout}{done.stderr}"
