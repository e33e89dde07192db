"""Reading a dataplane from outside: its argv, Prometheus text and EVE lines."""

import json
import sys

from ngfw.lab.dataplane_process import (
    default_dataplane_argv,
    metric_by_label,
    metric_sum,
    parse_metrics,
    read_eve,
    repo_path,
)

METRICS = """\
# HELP ngfw_drops_total Frames dropped, by reason.
# TYPE ngfw_drops_total counter
ngfw_drops_total{reason="policy_deny"} 2.0
ngfw_drops_total{reason="policy_reject"} 1.0
ngfw_port_rx_packets_total{port="fw-vm"} 24 1700000000000
ngfw_build_info{fastpath="compiled",hyperscan="5.4.0 2021-01-26",version="0.1.0"} 1
ngfw_flows_active 4
ngfw_weird{note="a \\"quoted\\" value"} 7
not a sample line
"""


def test_the_dataplane_runs_as_python_dash_m_ngfw_on_the_lab_wire():
    argv = default_dataplane_argv("p.yaml", "127.0.0.1:9650", "/tmp/eve.json")
    assert argv[:4] == [sys.executable, "-m", "ngfw", "dataplane"]
    assert argv[4:] == ["--wire", "fw-vm:fw-up", "--policy", "p.yaml", "--metrics", "127.0.0.1:9650",
                        "--eve", "/tmp/eve.json"]  # fmt: skip


def test_prometheus_samples_with_and_without_labels():
    s = parse_metrics(METRICS)
    assert s[("ngfw_flows_active", ())] == 4
    assert s[("ngfw_port_rx_packets_total", (("port", "fw-vm"),))] == 24  # timestamp ignored
    assert s[("ngfw_weird", (("note", 'a \\"quoted\\" value'),))] == 7
    assert metric_sum(s, "ngfw_drops_total") == 3
    assert metric_sum(s, "ngfw_drops_total", reason="policy_deny") == 2


def test_drops_by_reason():
    assert metric_by_label(parse_metrics(METRICS), "ngfw_drops_total", "reason") == {
        "policy_deny": 2.0,
        "policy_reject": 1.0,
    }


def test_eve_lines_skip_a_half_written_tail(tmp_path):
    eve = tmp_path / "eve.json"
    rec = {"event_type": "drop", "src_ip": "10.77.0.12", "dest_port": 8080, "rule": "default-deny"}
    eve.write_text(json.dumps(rec) + "\n\n" + '{"event_type": "fl')
    assert read_eve(eve) == [rec]
    assert read_eve(tmp_path / "missing.json") == []


def test_shipped_policies_resolve_from_the_source_tree():
    assert repo_path("rules/examples/lab.yaml").name == "lab.yaml"
    assert repo_path("rules/examples/lab.yaml").is_absolute()
