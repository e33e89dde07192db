"""The captures of tests/fixtures/accuracy/ (what real traffic does that tidy captures do not) through
`ngfw replay`, as a user runs it: App-ID against the labels nDPI and Suricata gave them, SSH's software versions
where Suricata puts them, and file.data over chunked and gzip/deflate response bodies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "accuracy"
PCAPS = FIXTURES / "pcaps"
pytest.importorskip("ngfw._fastpath.engine")

from bench.appid_accuracy import load_labels, score  # noqa: E402
from ngfw.dataplane.eve_schema import problems  # noqa: E402


def replay(*args: str | Path, cwd: Path) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "ngfw", "replay", "--json", *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    ).stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert problems(records) == []  # replay's records follow docs/eve-schema.json (`ssh` included)
    return records


def flows_of(records: list[dict]) -> dict[str, dict]:
    return {r["src_ip"]: r for r in records if r.get("event_type") == "flow"}


def alert_pairs(records: list[dict]) -> set[tuple[str, int]]:
    """(client address, sid) of every alert: the client is the 10.x side, whichever way the packet went."""
    pairs = set()
    for r in records:
        if r.get("event_type") == "alert":
            client = r["src_ip"] if r["src_ip"].startswith("10.") else r["dest_ip"]
            pairs.add((client, r["alert"]["signature_id"]))
    return pairs


def test_every_labelled_flow_of_the_new_captures_agrees(tmp_path: Path) -> None:
    """Apps and hosts of every flow of the captures against labels.jsonl (tests/fixtures/accuracy/label.py:
    nDPI, and Suricata where nDPI names no host): 100 %, as docs/appid-accuracy.md reports."""
    records = replay(*sorted(PCAPS.glob("*.pcap")), cwd=tmp_path)
    report = score(load_labels(FIXTURES / "labels.jsonl"), [r for r in records if r.get("event_type") == "flow"])
    assert report.labelled > 20 and report.hosts > 20
    assert report.disagreements == [] and report.host_disagreements == []


def test_ssh_software_versions_go_where_suricata_puts_them_and_app_host_stays_for_names(tmp_path: Path) -> None:
    flows = flows_of(replay(PCAPS / "ssh_banners.pcap", cwd=tmp_path))
    expected = {  # Suricata 7.0.10's EVE ssh records of the same capture
        "10.0.0.41": ("OpenSSH_9.6", "OpenSSH_9.2p1"),
        "10.0.0.42": ("PuTTY_Release_0.81", "dropbear_2022.83"),
        "10.0.0.43": ("libssh_0.10.6", "OpenSSH_8.0"),
    }
    for client, (client_software, server_software) in expected.items():
        flow = flows[client]
        assert flow["app"] == "ssh" and flow["app_host"] is None
        assert flow["ssh"] == {
            "client": {"proto_version": "2.0", "software_version": client_software},
            "server": {"proto_version": "2.0", "software_version": server_software},
        }


def test_http_heads_cut_over_segments_and_flows_caught_mid_stream_name_their_host(tmp_path: Path) -> None:
    flows = {
        r["dest_ip"] if r["src_ip"].startswith("192.") else r["src_ip"]: r
        for r in replay(PCAPS / "http_pickup.pcap", cwd=tmp_path)
        if r.get("event_type") == "flow"
    }
    hosts = {client: (f["app"], f["app_host"]) for client, f in flows.items()}
    assert hosts == {
        "10.0.0.21": ("http", "www.news-site.example"),  # User-Agent cut
        "10.0.0.22": ("http", "api.split-host.example"),  # the Host header's name cut
        "10.0.0.23": ("http", "static.keepalive.example"),  # no handshake: the second request of a connection
        "10.0.0.24": ("http", "late-request.example"),  # the response seen first
        "10.0.0.25": ("http", "cdn.mid-body.example"),  # the middle of a body first
    }


def test_file_data_is_the_decoded_body_as_suricata_inspects_it(tmp_path: Path) -> None:
    """ET's PE-download shape (MZ at the body's start, e_lfanew to "PE\\0\\0") over plain, chunked, gzip,
    deflate (zlib and raw) and gzip-in-chunked bodies; neither chunk framing nor gzip's magic is left in
    file.data; the bomb's executable lies past the body limit, as in Suricata (no alert)."""
    records = replay("--rules", ROOT / "rules" / "tests" / "accuracy.rules", PCAPS / "http_bodies.pcap", cwd=tmp_path)
    pairs = alert_pairs(records)
    downloads = [f"10.0.0.{31 + i}" for i in range(6)]  # plain, chunked, gzip, deflate, raw deflate, gzip+chunked
    for client in downloads:
        assert {(client, 9100020), (client, 9100021)} <= pairs, client
    assert not {sid for _, sid in pairs} & {9100022, 9100023}
    assert not {(c, s) for c, s in pairs if c == "10.0.0.37" and s in (9100020, 9100021)}


def test_sctp_associations_are_flows_of_their_ports_and_sctp_rules_run_on_their_chunks(tmp_path: Path) -> None:
    """`alert sctp` rules (Suricata 7 runs them): header ports, content over the chunks after the common header,
    flow direction; the alerts are Suricata 7.0.10's on the same capture (docs/parity.md)."""
    records = replay(
        "--rules", ROOT / "rules" / "tests" / "accuracy.rules", PCAPS / "sctp_associations.pcap", cwd=tmp_path
    )
    flows = {(r["src_ip"], r["src_port"], r["dest_port"]): r["app"] for r in records if r.get("event_type") == "flow"}
    assert flows == {("10.0.0.51", 45001, 3868): "sctp", ("10.0.0.52", 45002, 36412): "sctp"}
    assert alert_pairs(records) == {
        ("10.0.0.51", 9100040),
        ("10.0.0.51", 9100041),
        ("10.0.0.51", 9100042),
        ("10.0.0.52", 9100042),
        ("10.0.0.52", 9100044),
    }


def test_http2_requests_naming_fields_by_hpack_index_are_inspected_with_their_values(tmp_path: Path) -> None:
    """curl (nghttp2) to nginx and to an `h2` server that shrinks the table: every request after a connection's
    first sends :authority and user-agent by dynamic-table index, through evictions and a size update. The
    alerts are Suricata 7.0.10's on the same capture, and each connection is named by its :authority."""
    records = replay(
        "--rules", ROOT / "rules" / "tests" / "accuracy.rules", PCAPS / "http2_dynamic_table.pcap", cwd=tmp_path
    )
    assert alert_pairs(records) == {
        ("10.0.0.61", 9100050),
        ("10.0.0.61", 9100051),
        ("10.0.0.62", 9100052),
        ("10.0.0.62", 9100053),
        ("10.0.0.63", 9100054),
        ("10.0.0.63", 9100055),
    }
    hosts = {f["src_ip"]: (f["app"], f["app_host"]) for f in flows_of(records).values()}
    assert hosts == {
        "10.0.0.61": ("http2", "www.h2-lab.example"),
        "10.0.0.62": ("http2", "evict.h2-lab.example"),
        "10.0.0.63": ("http2", "small-table.h2-lab.example"),
    }


def test_ip_in_ip_inner_conversations_are_the_flows_and_the_outer_packets_the_tunnels(tmp_path: Path) -> None:
    """6in4, 4in6 and IPIP: the inner conversation is a flow of its own addresses (App-ID and rules see it);
    the outer packets make the tunnel's flow between its endpoints (protocol 41 or 4), which `ip` rules see,
    as Suricata inspects both. An inner header that runs past its tunnel packet is counted, not read."""
    from ngfw.dataplane.replay import Replayer

    records = replay("--rules", ROOT / "rules" / "tests" / "accuracy.rules", PCAPS / "ip_tunnels.pcap", cwd=tmp_path)
    flows = {(r["src_ip"], r["proto"]): (r["app"], r["app_host"]) for r in records if r.get("event_type") == "flow"}
    assert flows == {
        ("2001:db8:71::10", "TCP"): ("http", "six-in-four.example"),
        ("10.0.0.71", "41"): ("ipv6-in-ip", None),
        ("10.1.0.72", "TCP"): ("http", "four-in-six.example"),
        ("2001:db8:72::1", "4"): ("ipip", None),
        ("10.1.0.73", "TCP"): ("tls", "ipip.example"),
        ("10.0.0.73", "4"): ("ipip", None),
        ("10.0.0.74", "41"): ("ipv6-in-ip", None),
    }
    sids = {
        (r["src_ip"] if r["src_ip"] < r["dest_ip"] else r["dest_ip"], r["alert"]["signature_id"])
        for r in records
        if r.get("event_type") == "alert"
    }
    assert sids == {
        ("2001:db8:71::10", 9100060),
        ("2001:db8:71::10", 9100063),
        ("10.1.0.72", 9100061),
        ("10.1.0.72", 9100064),
        ("10.1.0.73", 9100062),
        ("10.0.0.71", 9100065),
        ("10.0.0.74", 9100065),
    }
    replayer = Replayer()
    replayer.replay_file(str(PCAPS / "ip_tunnels.pcap"))
    assert {k: v for k, v in replayer.stats()["drops"].items() if v} == {"truncated_ipv6": 1}
