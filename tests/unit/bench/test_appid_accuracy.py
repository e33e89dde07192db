"""bench/appid_accuracy.py: matching our flows to nDPI's labels, and scoring, on synthetic inputs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench" / "appid_accuracy.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("appid_accuracy", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["appid_accuracy"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


acc = _load()


def label(
    pcap: str, l4: str, a: str, b: str, app: str | None, also: list[str] | None = None, host: str | None = None
) -> Any:
    return acc.Label(pcap, l4, a, b, app, tuple(also or ()), host, "nDPI")


def flow(
    pcap: str, proto: str, src: str, sport: int | None, dst: str, dport: int | None, app: str | None, **extra: Any
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "pcap_file": pcap,
        "src_ip": src,
        "dest_ip": dst,
        "proto": proto,
        "app_proto": app,
        "app_host": None,
        "app_confidence": 100,
        "app_pkts": 1,
    }
    if sport is not None:
        record["src_port"] = sport
    if dport is not None:
        record["dest_port"] = dport
    record.update(extra)
    return record


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("1.2.3.4:80", ("1.2.3.4", 80)),
        ("[2001:DB8:0::1]:443", ("2001:db8::1", 443)),
        ("[fe80::1]", ("fe80::1", 0)),
        ("10.0.0.1", ("10.0.0.1", 0)),
        ("[ff02::16]:0", ("ff02::16", 0)),
    ],
)
def test_parse_endpoint(text: str, endpoint: tuple[str, int]) -> None:
    assert acc.parse_endpoint(text) == endpoint


def test_endpoints_match_unordered_and_across_spellings() -> None:
    labels = [
        label("x.pcap", "TCP", "10.0.0.1:1234", "10.0.0.2:80", "http"),
        label("x.pcap", "UDP", "[2001:db8::1]:5353", "[ff02::fb]:5353", "mdns"),
    ]
    flows = [
        flow("/some/dir/x.pcap", "TCP", "10.0.0.2", 80, "10.0.0.1", 1234, "http"),  # reversed, full path
        flow("x.pcap", "UDP", "2001:0db8::1", 5353, "FF02::FB", 5353, "mdns"),
    ]
    report = acc.score(labels, flows)
    assert (report.labelled, report.agree, report.missing) == (2, 2, [])


def test_portless_protocols_match_with_zero_or_absent_ports() -> None:
    labels = [
        label("p.pcap", "ICMP", "10.0.0.1:0", "8.8.8.8:0", "icmp"),
        label("p.pcap", "ICMPV6", "[fe80::1]:0", "[ff02::2]:0", "icmpv6"),
        label("p.pcap", "SCTP", "10.0.0.3:0", "10.0.0.4:0", "sctp"),
        label("p.pcap", "118", "10.0.0.5:0", "10.0.0.6:0", None),
    ]
    flows = [
        flow("p.pcap", "ICMP", "8.8.8.8", None, "10.0.0.1", None, "icmp"),
        flow("p.pcap", "IPv6-ICMP", "fe80::1", 0, "ff02::2", 0, "icmpv6"),
        flow("p.pcap", "132", "10.0.0.3", 2905, "10.0.0.4", 2905, "sctp"),  # SCTP with its ports
        flow("p.pcap", "118", "10.0.0.5", 0, "10.0.0.6", 0, "unknown"),
    ]
    report = acc.score(labels, flows)
    assert report.agree == report.labelled == 3
    assert report.missing == [] and report.unmatched_ours == 0


def test_protocol_keeps_flows_apart() -> None:
    labels = [label("p.pcap", "UDP", "10.0.0.1:53", "10.0.0.2:53", "dns")]
    flows = [flow("p.pcap", "TCP", "10.0.0.1", 53, "10.0.0.2", 53, "dns")]
    report = acc.score(labels, flows)
    assert report.agree == 0 and len(report.missing) == 1
    assert report.disagreements[0].got is None


def test_also_names_are_accepted_and_others_are_disagreements() -> None:
    labels = [
        label("m.pcap", "TCP", "1.1.1.1:993", "2.2.2.2:5000", "imaps", also=["tls"]),
        label("m.pcap", "TCP", "1.1.1.1:995", "2.2.2.2:5001", "pop3s", also=["tls"]),
        label("m.pcap", "TCP", "1.1.1.1:25", "2.2.2.2:5002", "smtp"),
        label("m.pcap", "TCP", "1.1.1.1:9", "2.2.2.2:5003", None),  # not judged
    ]
    flows = [
        flow("m.pcap", "TCP", "2.2.2.2", 5000, "1.1.1.1", 993, "tls"),
        flow("m.pcap", "TCP", "2.2.2.2", 5001, "1.1.1.1", 995, "pop3s"),
        flow("m.pcap", "TCP", "2.2.2.2", 5002, "1.1.1.1", 25, "unknown-tcp"),
        flow("m.pcap", "TCP", "2.2.2.2", 5003, "1.1.1.1", 9, "unknown-tcp"),
    ]
    report = acc.score(labels, flows)
    assert (report.labelled, report.agree) == (3, 2)
    assert report.per_app["smtp"].agree == 0 and report.per_app["imaps"].percent == 100.0
    [wrong] = report.disagreements
    assert (wrong.expected, wrong.got) == ("smtp", "unknown-tcp")


def test_hosts_compare_case_and_trailing_dot_insensitively() -> None:
    labels = [
        label("h.pcap", "TCP", "1.1.1.1:443", "2.2.2.2:1", "tls", host="WWW.Example.com."),
        label("h.pcap", "TCP", "1.1.1.1:443", "2.2.2.2:2", "tls", host="a.example.com"),
        label("h.pcap", "TCP", "1.1.1.1:443", "2.2.2.2:3", "tls", host="b.example.com"),
    ]
    flows = [
        flow("h.pcap", "TCP", "2.2.2.2", 1, "1.1.1.1", 443, "tls", app_host="www.example.com"),
        flow("h.pcap", "TCP", "2.2.2.2", 2, "1.1.1.1", 443, "tls", app_host="c.example.com"),
        flow("h.pcap", "TCP", "2.2.2.2", 3, "1.1.1.1", 443, "tls"),
    ]
    report = acc.score(labels, flows)
    assert (report.hosts, report.hosts_agree) == (3, 1)
    assert [d.got for d in report.host_disagreements] == ["c.example.com", None]


def test_repeated_flow_keeps_the_record_with_most_packets() -> None:
    labels = [label("r.pcap", "TCP", "1.1.1.1:80", "2.2.2.2:1", "http")]
    flows = [
        flow("r.pcap", "TCP", "2.2.2.2", 1, "1.1.1.1", 80, "incomplete", app_pkts=0),
        flow("r.pcap", "TCP", "2.2.2.2", 1, "1.1.1.1", 80, "http", app_pkts=4),
        flow("r.pcap", "TCP", "2.2.2.2", 1, "1.1.1.1", 80, "incomplete", app_pkts=1),
    ]
    assert acc.score(labels, flows).agree == 1


def test_repeated_flow_tie_is_spoken_for_by_the_latest_record() -> None:
    """A resolver socket reused after the idle timeout: nDPI's one flow per tuple names the last query."""
    labels = [label("d.pcap", "UDP", "1.1.1.1:53", "2.2.2.2:1", "dns", host="later.example")]
    flows = [
        flow("d.pcap", "UDP", "2.2.2.2", 1, "1.1.1.1", 53, "dns", app_pkts=1, app_host=name)
        for name in ("first.example", "later.example")
    ]
    report = acc.score(labels, flows)
    assert (report.hosts, report.hosts_agree) == (1, 1)


def test_fake_replay_of_the_labels_scores_everything(tmp_path: Path) -> None:
    """A replay that answers exactly what nDPI said agrees 100%; the report renders and serialises."""
    labels = [
        label("a.pcap", "TCP", "10.0.0.1:443", "10.0.0.2:5555", "tls", host="x.example"),
        label("a.pcap", "UDP", "[::1]:53", "[::1]:4444", "dns"),
        label("b.pcapng", "IGMP", "10.0.0.9:0", "224.0.0.1:0", "igmp"),
        label("b.pcapng", "TCP", "10.0.0.3:1", "10.0.0.4:2", None),
    ]
    lines = []
    for lab in labels:
        (sip, sport), (dip, dport) = acc.parse_endpoint(lab.a), acc.parse_endpoint(lab.b)
        lines.append(
            json.dumps(flow(lab.pcap, lab.l4, sip, sport, dip, dport, lab.app or "unknown-tcp", app_host=lab.host))
        )
    lines.append('{"event_type": "stats", "uptime": 1}')
    out = tmp_path / "flows.jsonl"
    out.write_text("\n".join(lines) + "\n")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "labels.jsonl").write_text(
        "\n".join(
            json.dumps(
                {
                    "pcap": x.pcap,
                    "l4": x.l4,
                    "a": x.a,
                    "b": x.b,
                    "ndpi": x.ndpi,
                    "app": x.app,
                    "also": list(x.also),
                    "host": x.host,
                }
            )
            for x in labels
        )
    )
    numbers = tmp_path / "out.json"
    assert acc.main(["--corpus", str(corpus), "--replay-output", str(out), "--json", str(numbers)]) == 0
    result = json.loads(numbers.read_text())
    assert result["agreement_percent"] == 100.0 and result["labelled"] == 3
    assert result["host_agreement_percent"] == 100.0
    assert result["missing"] == [] and result["disagreements"] == []


def test_missing_flows_count_against_the_score() -> None:
    labels = [
        label("a.pcap", "TCP", "1.1.1.1:22", "2.2.2.2:1", "ssh"),
        label("a.pcap", "TCP", "1.1.1.1:22", "2.2.2.2:2", "ssh"),
    ]
    report = acc.score(labels, [flow("a.pcap", "TCP", "2.2.2.2", 1, "1.1.1.1", 22, "ssh")])
    assert report.percent == 50.0 and len(report.missing) == 1
    text = acc.render_markdown(report)
    assert "1/2 = 50.0%" in text and "(missing)" in text


def test_early_decisions_count_tcp_flows_identified_from_payload() -> None:
    labels = [label("e.pcap", "TCP", "1.1.1.1:443", f"2.2.2.2:{port}", "tls") for port in (1, 2, 3, 4)]
    labels.append(label("e.pcap", "UDP", "1.1.1.1:53", "2.2.2.2:5", "dns"))
    flows = [
        flow("e.pcap", "TCP", "2.2.2.2", 1, "1.1.1.1", 443, "tls", app_pkts=1),
        flow("e.pcap", "TCP", "2.2.2.2", 2, "1.1.1.1", 443, "tls", app_pkts=4, app_confidence=80),
        flow("e.pcap", "TCP", "2.2.2.2", 3, "1.1.1.1", 443, "tls", app_pkts=0, app_confidence=30),  # port guess
        flow("e.pcap", "TCP", "2.2.2.2", 4, "1.1.1.1", 443, "tls", app_pkts=3),
        flow("e.pcap", "UDP", "2.2.2.2", 5, "1.1.1.1", 53, "dns", app_pkts=9),
    ]
    report = acc.score(labels, flows)
    assert (report.tcp_early, report.tcp_identified) == (2, 3)
