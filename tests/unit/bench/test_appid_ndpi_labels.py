"""bench/appid_ndpi_labels.py: nDPI's reader as the labeller of captures App-ID was never tuned on."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[3]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


labeller = _load("appid_ndpi_labels")

READER_OUTPUT = """\
Reading packets from pcap file x.pcap...
	1	UDP 10.0.0.5:41424 <-> 10.0.0.53:53 [proto: 5.126/DNS.Google][ClearText][Confidence: DPI][cat: Web/5][1 pkts/70 bytes <-> 1 pkts/90 bytes][Hostname/SNI: google.com][::][PLAIN TEXT (goog)]
	2	TCP [fd00::1]:39990 <-> [fd00::2]:22 [VLAN: 6][proto: 92/SSH][Encrypted][Confidence: DPI][Hostname/SNI: SSH-2.0-OpenSSH_9.2p1 Debian-2][bytes ratio: 0.5]
	3	TCP 10.0.0.1:12345 -> 10.0.0.2:9999 [proto: 0/Unknown][ClearText][Confidence: Unknown][1 pkts/72 bytes -> 0 pkts/0 bytes]
	4	UDP 10.0.0.1:5000 -> 10.0.0.2:5000 [proto: 36/Ceph][ClearText]
"""


def test_flow_lines_become_corpus_labels_with_canonical_names() -> None:
    mapping = {"DNS": ("dns", ()), "SSH": ("ssh", ())}
    rows = labeller.parse_flow_lines(READER_OUTPUT, "x.pcap", mapping)
    assert [(r["l4"], r["a"], r["b"], r["app"], r["host"]) for r in rows] == [
        ("UDP", "10.0.0.5:41424", "10.0.0.53:53", "dns", "google.com"),
        ("TCP", "[fd00::1]:39990", "[fd00::2]:22", "ssh", "SSH-2.0-OpenSSH_9.2p1 Debian-2"),
        ("TCP", "10.0.0.1:12345", "10.0.0.2:9999", None, None),  # Unknown: not scored
        ("UDP", "10.0.0.1:5000", "10.0.0.2:5000", None, None),  # outside the core set: not scored
    ]
    assert rows[0]["ndpi"] == "DNS.Google"


def test_names_map_as_the_corpus_labels_map_them_then_by_catalogue_name(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        json.dumps({"ndpi": "TLS.Google", "app": "tls", "also": []})
        + "\n"
        + json.dumps({"ndpi": "FTP_CONTROL", "app": "ftp", "also": []})
        + "\n"
    )
    mapping = labeller.name_map(labels, ["ftp", "redis", "tls"])
    assert labeller.canonical("TLS.YouTube", mapping) == ("tls", ())
    assert labeller.canonical("FTP_CONTROL", mapping) == ("ftp", ())
    assert labeller.canonical("Redis", mapping) == ("redis", ())
    assert labeller.canonical("Ceph", mapping) == (None, ())


@pytest.mark.skipif(shutil.which("ndpiReader") is None, reason="ndpiReader (libndpi-bin) is not installed")
def test_a_capture_labelled_by_ndpi_is_scored_against_replay(tmp_path: Path) -> None:
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    capture = tmp_path / "captures" / "dns.pcap"
    capture.parent.mkdir()
    wrpcap(
        str(capture),
        [
            Ether()
            / IP(src="10.0.0.5", dst="10.0.0.53")
            / UDP(sport=40000, dport=53)
            / DNS(rd=1, qd=DNSQR(qname="held.out.example"))
        ],
    )
    out = tmp_path / "labelled"
    assert labeller.main(["--out", str(out), str(capture.parent)]) == 0
    [row] = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert (row["app"], row["host"]) == ("dns", "held.out.example")
    scored = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "appid_accuracy.py"),
            "--corpus",
            str(out),
            "--ngfw",
            f"{sys.executable} -m ngfw.cli replay",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert scored.returncode == 0, scored.stderr
    assert "apps: **1/1 = 100.0%**" in scored.stdout and "hosts: **1/1 = 100.0%**" in scored.stdout
