"""EVE and packet capture from real traffic through a running dataplane (root, namespaces).

curl and a spoofing sender in the lab's workloads; the dataplane writes its EVE file (validated against
docs/eve-schema.json when the dataplane stops, by the `start_dataplane` fixture), sends the same records
to a syslog receiver in its own namespace, and writes pcap files of the flows its policy captures.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import TCP  # noqa: F401 - registers the layers rdpcap decodes frames with
from scapy.layers.l2 import Ether  # noqa: F401
from scapy.utils import rdpcap

from ngfw._fastpath.engine import community_id_of
from ngfw.lab.netns import socket_in
from tests.support.netns import lab_policy_with, metric, wait_for

SERVER = "10.77.0.100"

RULES = (
    'alert http any any -> any any (msg:"LAB admin page"; flow:established,to_server; http.uri; '
    'content:"/admin"; metadata: former_category WEB, confidence High; sid:9100001; rev:1;)\n'
)

POLICY_RULES = """
- {name: web-http, from: [group:web], to: [cidr:10.77.0.100/32], services: [tcp/80], action: allow, log: true,
   inspect: default, capture: {packets: 4}}
- {name: ping, from: [any], to: [any], services: [icmp], action: allow, log: true}
- {name: default-deny, from: [any], to: [any], action: deny, log: true}
"""


@pytest.fixture
def eve_dataplane(tmp_path: Path, lab, lab_services, start_dataplane):
    """A dataplane with signatures, a capturing rule, short TCP end timeouts, stats every half second, and a
    syslog receiver (UDP, in the dataplane's namespace) beside its EVE file."""
    (tmp_path / "lab.rules").write_text(RULES)
    policy = lab_policy_with(tmp_path, POLICY_RULES, "eve.yaml")
    receiver = socket_in(lab.fw_ns, socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.2)
    dp = start_dataplane(
        policy,
        extra_args=[
            "--rules",
            f"lab={tmp_path / 'lab.rules'}",
            "--host",
            "hv-07",
            "--eve-stats-interval",
            "0.5",
            "--eve",
            f"syslog://127.0.0.1:{receiver.getsockname()[1]}",
            "--capture-dir",
            str(tmp_path / "pcap"),
            "--timeout",
            "tcp_closing=1",
            "--timeout",
            "tcp_closed=1",
            "--timeout",
            "icmp=1",
        ],
    )
    dp.syslog = receiver
    dp.pcap_dir = tmp_path / "pcap"
    yield dp
    receiver.close()


def records(dp, event_type: str) -> list[dict]:
    return [r for r in dp.eve_records() if r.get("event_type") == event_type]


def curl(ns_run, lab, path: str) -> tuple[int, str]:
    r = ns_run(
        lab.web1.ns, ["curl", "-sS", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}", f"http://{SERVER}{path}"]
    )
    return r.returncode, r.stdout


def test_real_traffic_gives_suricatas_fields_to_the_file_and_to_syslog(lab, eve_dataplane, ns_run) -> None:
    dp = eve_dataplane
    assert curl(ns_run, lab, "/") == (0, "200")
    assert wait_for(lambda: records(dp, "flow"), timeout=10), dp.eve_records()
    [flow] = records(dp, "flow")
    assert flow["host"] == "hv-07" and flow["src_vm"] == "web-01" and flow["dest_port"] == 80
    assert flow["community_id"] == community_id_of(lab.web1.ipv4, SERVER, 6, flow["src_port"], 80)
    assert flow["flow"]["state"] == "closed" and flow["flow"]["alerted"] is False
    tcp = flow["tcp"]
    assert int(tcp["tcp_flags_ts"], 16) & 0x13 == 0x13 and int(tcp["tcp_flags_tc"], 16) & 0x12 == 0x12  # SYN ACK (FIN)
    assert tcp["tcp_flags"] == f"{int(tcp['tcp_flags_ts'], 16) | int(tcp['tcp_flags_tc'], 16):02x}"
    assert flow["http"] == {"hostname": SERVER} and flow["app_proto"] == "http"
    assert wait_for(lambda: records(dp, "stats"), timeout=5)
    stats = records(dp, "stats")[-1]["stats"]
    assert stats["flow"]["total"] >= 1 and stats["decoder"]["pkts"] > 0
    # the syslog receiver in the lab got the same records, as RFC 5424 messages
    got = []
    for _ in range(50):
        try:
            got.append(dp.syslog.recv(65536).decode())
        except TimeoutError:
            if any('"event_type":"flow"' in m for m in got):
                break
    flows = [m for m in got if '"event_type":"flow"' in m]
    assert flows and flows[0].startswith("<174>1 ") and " hv-07 ngfw " in flows[0]
    assert json.loads(flows[0].split(" eve - ", 1)[1])["community_id"] == flow["community_id"]
    text = dp.metrics_text()
    assert metric(text, "ngfw_eve_records_total", output=f"syslog:127.0.0.1:{dp.syslog.getsockname()[1]}") >= 2


def test_a_spoofed_frame_gives_a_drop_record_naming_the_vm(lab, eve_dataplane, ns_run) -> None:
    dp = eve_dataplane
    # web1 sends from its own MAC with an address that is not its own
    send = (
        "from scapy.all import Ether, IP, UDP, sendp; "
        f"sendp(Ether(src='{lab.web1.mac}', dst='ff:ff:ff:ff:ff:ff') / IP(src='10.77.0.213', dst='{SERVER}') / "
        f"UDP(sport=5555, dport=53) / b'x', iface='{lab.web1.ifname}', count=3, verbose=False)"
    )
    r = ns_run(lab.web1.ns, [sys.executable, "-c", send], timeout=30)
    assert r.returncode == 0, r.stderr
    assert wait_for(lambda: records(dp, "drop"), timeout=5), dp.eve_records()
    drops = [d for d in records(dp, "drop") if d["drop"]["reason"] == "spoofed_ip"]
    assert len(drops) == 3
    assert all(d["src_vm"] == "web-01" and d["src_ip"] == "10.77.0.213" and d["vsys"] == "tenant-a" for d in drops)
    assert all("flow_id" not in d and d["rule"] is None and d["host"] == "hv-07" for d in drops)
    assert metric(dp.metrics_text(), "ngfw_drops_total", reason="spoofed_ip") == 3


def test_capture_of_a_flow_and_of_an_alert(lab, eve_dataplane, ns_run) -> None:
    dp = eve_dataplane
    assert curl(ns_run, lab, "/") == (0, "200")
    assert curl(ns_run, lab, "/admin/x") == (0, "404")  # alert only: nginx answers
    assert wait_for(lambda: len(records(dp, "flow")) == 2 and records(dp, "alert"), timeout=10), dp.eve_records()
    [alert] = records(dp, "alert")
    assert alert["alert"]["metadata"] == {"former_category": ["WEB"], "confidence": ["High"]}
    alerted = next(f for f in records(dp, "flow") if f["flow_id"] == alert["flow_id"])
    assert alerted["flow"]["alerted"] is True and alerted["community_id"] == alert["community_id"]
    files = sorted(dp.pcap_dir.glob("tenant-a/ngfw-tenant-a-*.pcap"))
    assert files, list(dp.pcap_dir.rglob("*"))
    for flow in records(dp, "flow"):
        assert flow["capture"]["file"] in map(str, files)
    packets = [p for f in files for p in rdpcap(str(f))]
    by_port: dict[int, list] = {}
    for p in packets:
        client_port = p["TCP"].sport if p["TCP"].dport == 80 else p["TCP"].dport
        by_port.setdefault(client_port, []).append(p)
    plain = next(f for f in records(dp, "flow") if f["flow_id"] != alert["flow_id"])
    assert len(by_port[plain["src_port"]]) == 4  # the first 4 frames of the clean flow
    assert by_port[plain["src_port"]][0]["TCP"].flags == "S"
    admin = by_port[alert["src_port"] if alert["dest_port"] == 80 else alert["dest_port"]]
    # the alerting request is the flow's 4th frame: captured once, and the alert record names the same file
    assert len(admin) == 4 and b"GET /admin/x" in bytes(admin[-1]["TCP"].payload)
    assert alert["capture"]["file"] == alerted["capture"]["file"]
    assert metric(dp.metrics_text(), "ngfw_capture_frames_written_total") == 8
