"""Control's `GET /metrics`: what hosts run, commits, refusals, request latency by route, migrations.

A real control on loopback, real agents and clients; the exposition is parsed with prometheus_client's
parser and checked by Prometheus's own `promtool check metrics` (Debian's `prometheus` package).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ngfw.control import metrics as control_metrics
from ngfw.control.agent import Agent
from ngfw.control.client import ControlError
from tests.support.control import RunningControl, client, two_tenants


def scrape(control: RunningControl) -> str:
    """GET /metrics as Prometheus does: no token."""
    with urllib.request.urlopen(control.url + "/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return str(response.read().decode())


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text, name).get(tuple(sorted(labels.items())))


def promtool() -> str:
    binary = shutil.which("promtool")
    assert binary, "promtool is not installed: deploy/install.sh installs Debian's prometheus (deploy/packages-lab.txt)"
    return binary


@pytest.fixture
def site(
    sqlite_url: str, tmp_path: Path, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningControl]:
    monkeypatch.setattr(control_metrics, "HOST_LIVE_SECONDS", 0.3)  # a stopped agent is gone in 0.3 s, not 10
    running = RunningControl(sqlite_url, tmp_path / "tokens.json")
    yield running
    running.stop()


def test_metrics_say_what_each_host_runs_and_what_control_refused(site: RunningControl, tokens: dict[str, str]) -> None:
    alice, vera = client(site, tokens, "alice"), client(site, tokens, "vera")
    documents = two_tenants()
    alice.apply_documents(documents, ["test"] * len(documents))
    assert alice.commit("two tenants")["version"] == 1
    for who, path in (("vera", "/commit"), (None, "/running")):  # a viewer may not commit; no token at all
        with pytest.raises(ControlError):
            client(site, tokens, who).request(
                "POST" if path == "/commit" else "GET", path, {"message": "x"} if path == "/commit" else None
            )
    with pytest.raises(ControlError):
        vera.get("/versions/7")  # 404: the label is the route's template, never the path
    with pytest.raises(ControlError):
        vera.get(f"/no/such/{tokens['alice']}")  # whatever a client puts in a path stays out of the labels

    # host-a's agent runs version 1; host-b acknowledged an older bundle; host-c refused version 1
    agent = Agent(client(site, tokens, "host-a"), "host-a", lambda policy: None, wait=0.5)
    agent.start()
    assert agent.wait_for(lambda a: a.current is not None, 10), agent.last_error
    client(site, tokens, "host-b").ack("host-b", 0, 0, "0" * 64)
    client(site, tokens, "fleet").ack("host-c", 1, 1, "f" * 64, "refused", "hash mismatch")
    # a migration to a host without a connected dataplane fails (409), and is counted
    with pytest.raises(ControlError) as failed:
        alice.post("/migrations", {"workload": "web-01", "to": "host-b"})
    assert failed.value.status == 409

    text = scrape(site)
    assert value(text, "ngfw_control_policy_version") == 1
    assert value(text, "ngfw_control_host_policy_version", host="host-a") == 1
    assert value(text, "ngfw_control_host_policy_version", host="host-b") == 0
    assert value(text, "ngfw_control_host_current", host="host-a") == 1
    assert value(text, "ngfw_control_host_current", host="host-b") == 0
    assert value(text, "ngfw_control_host_refused_version", host="host-c", status="refused") == 1
    assert value(text, "ngfw_control_host_refused_version", host="host-a", status="refused") is None
    assert value(text, "ngfw_control_host_connected", host="host-a") == 1
    assert value(text, "ngfw_control_host_connected", host="host-b") == 0  # acknowledged once, never polled
    assert value(text, "ngfw_control_commits_total", action="commit", result="ok") == 1
    assert value(text, "ngfw_control_commits_total", action="commit", result="refused") == 1
    assert value(text, "ngfw_control_refusals_total", reason="denied") == 1
    assert value(text, "ngfw_control_refusals_total", reason="unauthenticated") == 1
    assert value(text, "ngfw_control_refusals_total", reason="not_found") == 2
    assert value(text, "ngfw_control_refusals_total", reason="conflict") == 1  # the migration's 409
    assert value(text, "ngfw_control_migrations_total", result="failed") == 1
    assert value(text, "ngfw_control_migrations_active", state="cutover") == 0
    histogram = samples(text, "ngfw_control_request_duration_seconds_count")
    routes = {dict(labels)["route"] for labels in histogram}
    assert histogram[(("method", "POST"), ("route", "/commit"), ("status", "201"))] == 1
    assert histogram[(("method", "GET"), ("route", "/versions/{number}"), ("status", "404"))] == 1
    assert histogram[(("method", "other"), ("route", "unmatched"), ("status", "404"))] == 1
    assert (("method", "GET"), ("route", "/bundle"), ("status", "200")) in histogram
    assert routes <= {
        "/candidate/apply",
        "/commit",
        "/running",
        "/versions/{number}",
        "unmatched",
        "/bundle",
        "/acks",
        "/migrations",
        "/tasks",
    }, routes
    for token in tokens.values():
        assert token not in text
    assert "127.0.0.1" not in text

    # the agent stops polling: its host is no longer connected
    agent.stop()
    deadline = time.monotonic() + 5
    while value(scrape(site), "ngfw_control_host_connected", host="host-a") != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert value(scrape(site), "ngfw_control_host_connected", host="host-a") == 0


def test_promtool_finds_the_exposition_clean(site: RunningControl, tokens: dict[str, str]) -> None:
    alice = client(site, tokens, "alice")
    documents = two_tenants()
    alice.apply_documents(documents, ["test"] * len(documents))
    alice.commit("two tenants")
    client(site, tokens, "host-a").ack("host-a", 1, 1, "0" * 64)
    text = scrape(site)
    done = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and not done.stdout.strip() and not done.stderr.strip(), done.stdout + done.stderr


def test_metrics_need_no_token_and_take_no_other_method(site: RunningControl) -> None:
    assert "ngfw_control_build_info" in scrape(site)
    request = urllib.request.Request(site.url + "/metrics", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 404
