"""`ngfw replay` as a user runs it: a subprocess over real captures, no root.

The captures in tests/fixtures/replay/ are copies of small files of the App-ID corpus
(/work/shared/corpus/appid/pcaps, from nDPI's regression suite); the expected app and host of each
flow below are nDPI's, from the corpus' labels.jsonl, copied here so the test does not depend on
the shared corpus being mounted.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from ngfw.dataplane.eve_schema import problems

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "replay"
CAPTURES = ["mullvad_dns.pcap", "punycode-idn.pcap", "cloudflare-warp.pcap", "dlt_ppp.pcap", "quic_cc_ack.pcapng"]

JSON_FIELDS = {
    "src_ip",
    "src_port",
    "dest_ip",
    "dest_port",
    "proto",
    "app_proto",
    "app_host",
    "app_confidence",
    "app_pkts",
    "pcap_file",
}

# (pcap, l4, client ip:port, server ip:port) -> (app, host), from labels.jsonl (nDPI's answer)
LABELS = {
    ("mullvad_dns.pcap", "UDP", "192.168.122.11:51696", "9.9.9.9:53"): ("dns", "www.mullvad.net"),
    ("punycode-idn.pcap", "TCP", "192.168.2.140:56011", "170.33.9.230:80"): ("http", "www.love.xn--55qx5d"),
    ("punycode-idn.pcap", "UDP", "192.168.2.140:45520", "192.168.2.1:53"): ("dns", "i.scdn.co"),
    ("punycode-idn.pcap", "UDP", "192.168.2.140:60156", "192.168.2.1:53"): ("dns", "www.xn--mnich-kva.com"),
    ("cloudflare-warp.pcap", "TCP", "10.8.0.1:40214", "157.240.16.32:443"): ("tls", "mqtt-mini.facebook.com"),
    ("cloudflare-warp.pcap", "TCP", "10.8.0.1:45606", "104.18.47.234:443"): ("tls", "api.cloudflareclient.com"),
    ("cloudflare-warp.pcap", "TCP", "10.8.0.1:45610", "104.18.47.234:443"): ("tls", "api.cloudflareclient.com"),
    ("cloudflare-warp.pcap", "TCP", "10.8.0.1:51296", "142.250.183.163:443"): (
        "tls",
        "crashlyticsreports-pa.googleapis.com",
    ),
    ("dlt_ppp.pcap", "UDP", "193.167.0.252:44083", "193.167.100.100:443"): ("quic", "server4"),
    ("quic_cc_ack.pcapng", "UDP", "152.14.223.145:57113", "71.98.228.93:443"): ("quic", None),
    ("quic_cc_ack.pcapng", "UDP", "183.23.159.144:37787", "108.140.147.22:443"): ("quic", None),
}


def run_replay(*args: str | Path, cwd: Path = FIXTURES) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ngfw", "replay", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def flow_key(rec: dict) -> tuple[str, str, str, str]:
    return (
        rec["pcap_file"],
        rec["proto"],
        f"{rec['src_ip']}:{rec['src_port']}",
        f"{rec['dest_ip']}:{rec['dest_port']}",
    )


@pytest.fixture(scope="module")
def replayed() -> subprocess.CompletedProcess[str]:
    """One run over every fixture capture (each run loads the catalogue: a few seconds)."""
    return run_replay("--json", *CAPTURES)


def test_every_line_is_a_json_flow_record(replayed) -> None:
    assert replayed.returncode == 0, replayed.stderr
    assert "Traceback" not in replayed.stderr
    records = json_lines(replayed.stdout)
    assert len(records) == len(replayed.stdout.splitlines())
    for rec in records:
        assert JSON_FIELDS <= rec.keys(), rec
        assert rec["pcap_file"] in CAPTURES  # the file's name as given, not a full path
        assert rec["proto"] in ("TCP", "UDP")
        assert isinstance(rec["src_port"], int) and isinstance(rec["dest_port"], int)
        assert isinstance(rec["app_pkts"], int) and rec["app_pkts"] >= 0
        assert rec["app_confidence"] is None or 0 <= rec["app_confidence"] <= 100
    # every file contributed, in the order given on the command line
    files = [rec["pcap_file"] for rec in records]
    assert sorted(set(files), key=files.index) == CAPTURES
    assert problems(records) == []  # docs/eve-schema.json


def test_each_flow_has_the_community_id_of_its_tuple(replayed) -> None:
    import communityid

    reference = communityid.CommunityID()
    records = json_lines(replayed.stdout)
    for rec in records:
        make = communityid.FlowTuple.make_tcp if rec["proto"] == "TCP" else communityid.FlowTuple.make_udp
        expected = reference.calc(make(rec["src_ip"], rec["dest_ip"], rec["src_port"], rec["dest_port"]))
        if rec["src_ip"] != rec["dest_ip"]:  # (equal addresses: Suricata's own port order, see community_id.pxi)
            assert rec["community_id"] == expected, rec


def test_labelled_flows_get_nDPIs_app_and_host(replayed) -> None:
    by_key = {flow_key(rec): rec for rec in json_lines(replayed.stdout)}
    wrong = {}
    for key, (app, host) in LABELS.items():
        rec = by_key.get(key)
        if rec is None:
            wrong[key] = "missing"
        elif (rec["app_proto"], rec["app_host"]) != (app, host):
            wrong[key] = (rec["app_proto"], rec["app_host"])
    assert not wrong, wrong


def test_identified_flows_are_confident_and_quick(replayed) -> None:
    by_key = {flow_key(rec): rec for rec in json_lines(replayed.stdout)}
    dns = by_key[("mullvad_dns.pcap", "UDP", "192.168.122.11:51696", "9.9.9.9:53")]
    assert dns["app_confidence"] == 100 and dns["app_pkts"] == 1
    tls = by_key[("cloudflare-warp.pcap", "TCP", "10.8.0.1:45606", "104.18.47.234:443")]
    assert tls["app_confidence"] == 100 and 1 <= tls["app_pkts"] <= 3


def test_sni_names_the_service_beside_the_protocol(replayed) -> None:
    """A TLS flow to a catalogued SaaS: app_proto stays tls, app is the service (nDPI: TLS.FacebookMessenger)."""
    by_key = {flow_key(rec): rec for rec in json_lines(replayed.stdout)}
    fb = by_key[("cloudflare-warp.pcap", "TCP", "10.8.0.1:40214", "157.240.16.32:443")]
    assert (fb["app_proto"], fb["app"], fb["app_host"]) == ("tls", "facebook", "mqtt-mini.facebook.com")
    plain = by_key[("cloudflare-warp.pcap", "TCP", "10.8.0.1:45606", "104.18.47.234:443")]
    assert (plain["app_proto"], plain["app"]) == ("tls", "tls")


def test_readable_output_is_one_line_per_flow(replayed) -> None:
    r = run_replay(*CAPTURES)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == len(json_lines(replayed.stdout))
    assert not any(line.lstrip().startswith("{") for line in lines)
    http = [line for line in lines if "192.168.2.140:56011" in line]
    assert len(http) == 1
    line = http[0]
    for word in ("punycode-idn.pcap", "TCP", "170.33.9.230:80", "http", "www.love.xn--55qx5d", "allow"):
        assert word in line, (word, line)
    assert line.index("192.168.2.140:56011") < line.index("170.33.9.230:80")  # client before server
    quic = [line for line in lines if "193.167.0.252:44083" in line]
    assert len(quic) == 1 and "quic" in quic[0] and "server4" in quic[0]


def _truncate_mid_record(src: Path, dst: Path) -> int:
    """Copy a classic little-endian pcap up to the middle of a packet record; return that record's offset."""
    data = src.read_bytes()
    assert data[:4] == b"\xd4\xc3\xb2\xa1", "expected a little-endian microsecond pcap"
    offsets = []
    off = 24
    while off + 16 <= len(data):
        offsets.append(off)
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    cut = offsets[len(offsets) // 2]  # a record in the middle: its header is whole, its data is not
    incl = struct.unpack_from("<I", data, cut + 8)[0]
    dst.write_bytes(data[: cut + 16 + incl // 2])
    return cut


def test_damaged_capture_is_named_with_offset_and_others_still_run(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.pcap"
    offset = _truncate_mid_record(FIXTURES / "punycode-idn.pcap", damaged)
    before = shutil.copy(FIXTURES / "mullvad_dns.pcap", tmp_path / "before.pcap")
    after = shutil.copy(FIXTURES / "dlt_ppp.pcap", tmp_path / "after.pcap")
    r = run_replay("--json", before, damaged, after, cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    problems = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(problems) == 1, r.stderr
    assert "damaged.pcap" in problems[0] and f"byte {offset}" in problems[0], (offset, problems[0])
    records = json_lines(r.stdout)
    files = {rec["pcap_file"] for rec in records}
    assert {"before.pcap", "after.pcap"} <= files  # the files around the damaged one were still processed
    # and the packets before the damage were replayed too (the DNS flows come first in that capture)
    assert any(rec["pcap_file"] == "damaged.pcap" and rec["app_host"] == "i.scdn.co" for rec in records)
    after_rec = [rec for rec in records if rec["pcap_file"] == "after.pcap"]
    assert [(a["app_proto"], a["app_host"]) for a in after_rec] == [("quic", "server4")]


def test_damaged_pcapng_is_named_with_offset(tmp_path: Path) -> None:
    data = (FIXTURES / "quic_cc_ack.pcapng").read_bytes()
    blocks = []  # (offset, length) of each block: section header, interface description, two packets
    off = 0
    while off < len(data):
        blocks.append(off)
        off += struct.unpack_from("<I", data, off + 4)[0]
    last = blocks[-1]
    damaged = tmp_path / "cut.pcapng"
    damaged.write_bytes(data[: len(data) - 100])  # the last packet block loses its end
    r = run_replay("--json", damaged, cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    problem = r.stderr.strip()
    assert len(problem.splitlines()) == 1 and "cut.pcapng" in problem, r.stderr
    assert f"byte {last}" in problem, (last, problem)  # where the damaged block starts
    # the first packet (the first QUIC flow) was still replayed
    assert [rec["src_port"] for rec in json_lines(r.stdout)] == [57113]


def test_non_pcap_file_is_one_sentence_naming_it(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("these are my notes, not a capture\n")
    r = run_replay("--json", notes, FIXTURES / "mullvad_dns.pcap", cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "notes.txt" in lines[0] and "not a pcap" in lines[0], lines[0]
    # the capture after it was still replayed
    assert [rec["app_host"] for rec in json_lines(r.stdout)] == ["www.mullvad.net"]


def test_missing_file_is_one_sentence(tmp_path: Path) -> None:
    r = run_replay("--json", tmp_path / "nosuch.pcap", cwd=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nosuch.pcap" in lines[0], r.stderr
    assert r.stdout == ""


def test_a_dns_flows_host_is_the_last_name_asked_before_the_answer(tmp_path: Path) -> None:
    from scapy.layers.dns import DNS, DNSQR, DNSRR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    def frame(src: str, sport: int, dst: str, dport: int, dns: DNS) -> Ether:
        return Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / dns

    client, resolver = ("10.0.0.5", 33333), ("10.0.0.53", 53)
    asks = [DNS(id=1, rd=1, qd=DNSQR(qname=name)) for name in ("first.example", "Second.Example")]
    answer = DNS(id=1, qr=1, qd=DNSQR(qname="second.example"), an=DNSRR(rrname="second.example", rdata="10.9.9.9"))
    late = DNS(id=2, rd=1, qd=DNSQR(qname="after-the-answer.example"))
    wrpcap(
        str(tmp_path / "dns.pcap"),
        [
            frame(*client, *resolver, asks[0]),
            frame(*client, *resolver, asks[1]),
            frame(*resolver, *client, answer),
            frame(*client, *resolver, late),
        ],
    )
    done = run_replay("--json", tmp_path / "dns.pcap")
    assert done.returncode == 0, done.stderr
    [flow] = json_lines(done.stdout)
    # the retry's name, not the first one; nothing after the answer changes it
    assert (flow["app_proto"], flow["app_host"]) == ("dns", "second.example")


def test_damaged_dns_is_still_named_by_its_question(tmp_path: Path) -> None:
    """Fuzzed DNS on port 53, as nDPI reads it: garbage header counts do not hide the question's name, a
    query whose name is not one leaves the name to its response, and a UDP length field running past the
    IP datagram is read as far as the IP header says (inline that datagram is dropped); a TCP header with a
    bad data offset still makes its flow."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    def frame(sport: int, dport: int, payload: bytes, udp_len: int | None = None, back: bool = False) -> Ether:
        ends = ("10.0.0.53", "10.0.0.5") if back else ("10.0.0.5", "10.0.0.53")
        return Ether() / IP(src=ends[0], dst=ends[1]) / UDP(sport=sport, dport=dport, len=udp_len) / payload

    def counts(msg: bytes, qd: int, an: int, ns: int = 0) -> bytes:
        return msg[:4] + struct.pack("!HHH", qd, an, ns) + msg[10:]

    asked = bytes(DNS(id=7, rd=1, qd=DNSQR(qname="asked.example")))
    answered = bytes(DNS(id=7, qr=1, qd=DNSQR(qname="asked.example")))
    broken_label = asked[:12] + b"\xdd" + asked[13:]  # a length byte that is not one
    frames = [
        frame(40001, 53, broken_label),
        frame(53, 40001, counts(answered, 1, 0x2573), back=True),
        frame(53, 40002, counts(answered, 100, 1), back=True),  # a response alone, 100 "questions"
        frame(40003, 53, counts(asked, 0, 0)),  # a query that counts no question
        frame(40004, 53, asked, udp_len=554),  # UDP length past the datagram
    ]
    wrpcap(str(tmp_path / "fuzzed-dns.pcap"), frames)
    done = run_replay("--json", tmp_path / "fuzzed-dns.pcap")
    assert done.returncode == 0, done.stderr
    got = {
        f["src_port"] if f["dest_port"] == 53 else f["dest_port"]: (f["app_proto"], f["app_host"])
        for f in json_lines(done.stdout)
    }
    assert got == {port: ("dns", "asked.example") for port in (40001, 40002, 40003, 40004)}
    # a TCP header whose data offset points inside itself (a fuzzed capture): a flow by its ports all the same
    from scapy.layers.inet import TCP

    damaged = bytearray(
        bytes(Ether() / IP(src="10.0.0.9", dst="10.0.0.53") / TCP(sport=40009, dport=88, flags="PA") / (b"\x00" * 8))
    )
    damaged[14 + 20 + 12] = 0x20
    wrpcap(str(tmp_path / "damaged-tcp.pcap"), [Ether(bytes(damaged))])
    [flow] = json_lines(run_replay("--json", tmp_path / "damaged-tcp.pcap").stdout)
    assert (flow["src_port"], flow["app_proto"], flow["app_confidence"]) == (40009, "kerberos", 30)
    # a response from a port other than 53 with garbage counts is not taken for DNS on its port's word
    wrpcap(str(tmp_path / "not-dns.pcap"), [frame(40005, 53, counts(answered, 100, 1))])
    [flow] = json_lines(run_replay("--json", tmp_path / "not-dns.pcap").stdout)
    assert flow["app_host"] is None and flow["app_confidence"] < 100


def test_reordered_segments_are_put_in_place_before_they_are_read(tmp_path: Path) -> None:
    """A ClientHello or a request whose segments arrive out of order (or again) is read once its prefix is
    whole, from the SYN's sequence number on; a segment ahead of a hole is never read alone (it once
    passed for Modbus), and a hole that never fills leaves the protocol without its host."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    from tests.support import quic_initial as qi

    def flow(sport: int, dport: int, pieces: list[tuple[int, bytes]]) -> list[Ether]:
        c, s = "10.2.0.1", "10.2.0.2"
        frames = [
            Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="S", seq=1000),
            Ether() / IP(src=s, dst=c) / TCP(sport=dport, dport=sport, flags="SA", seq=5000, ack=1001),
        ]
        return frames + [
            Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="PA", seq=1001 + at, ack=5001) / data
            for at, data in pieces
        ]

    hello = qi.tls_client_hello(b"in.order.example")
    record = b"\x16\x03\x01" + struct.pack("!H", len(hello)) + hello
    request = b"GET / HTTP/1.1\r\nHost: reordered.example\r\nUser-Agent: t\r\n\r\n"
    frames = (
        flow(41001, 443, [(60, record[60:]), (25, record[25:60]), (0, record[:25])])  # all reversed
        + flow(41002, 443, [(0, record[:40]), (0, record[:40]), (20, record[20:])])  # retransmitted
        + flow(41003, 80, [(12, request[12:]), (12, request[12:]), (0, request[:12])])  # ahead, twice
        + flow(41004, 443, [(0, record[:30]), (90, record[90:])])
    )  # a lasting hole
    wrpcap(str(tmp_path / "reordered.pcap"), frames)
    done = run_replay("--json", tmp_path / "reordered.pcap")
    assert done.returncode == 0, done.stderr
    got = {f["src_port"]: (f["app_proto"], f["app_host"]) for f in json_lines(done.stdout)}
    assert got == {
        41001: ("tls", "in.order.example"),
        41002: ("tls", "in.order.example"),
        41003: ("http", "reordered.example"),
        41004: ("tls", None),
    }


def test_a_stream_whose_first_segment_the_capture_lost_is_read_from_after_the_hole(tmp_path: Path) -> None:
    """The SYN was captured, the first request was not: after 3 segments held beyond the hole, the stream
    restarts at the first of them and is read from there."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    c, s = "10.2.0.1", "10.2.0.2"
    frames = [
        Ether() / IP(src=c, dst=s) / TCP(sport=41010, dport=80, flags="S", seq=1000),
        Ether() / IP(src=s, dst=c) / TCP(sport=80, dport=41010, flags="SA", seq=5000, ack=1001),
    ]
    lost = b"GET /lost HTTP/1.1\r\nHost: lost.example\r\n\r\n"
    request = b"GET /next HTTP/1.1\r\nHost: after.loss.example\r\n\r\n"
    seq = 1001 + len(lost)
    for _ in range(3):
        frames.append(Ether() / IP(src=c, dst=s) / TCP(sport=41010, dport=80, flags="PA", seq=seq, ack=5001) / request)
        seq += len(request)
    wrpcap(str(tmp_path / "lost.pcap"), frames)
    done = run_replay("--json", tmp_path / "lost.pcap")
    assert done.returncode == 0, done.stderr
    [flow] = json_lines(done.stdout)
    assert (flow["app_proto"], flow["app_host"], flow["app_pkts"]) == ("http", "after.loss.example", 3)


def test_a_weak_signature_does_not_outvote_the_port_another_app_owns(tmp_path: Path) -> None:
    """A domain-like line is WHOIS's query shape: on 43 (its parser) or a port nobody owns, it names the flow; on
    Zabbix's agent port the flow waits, and the agent's answer names it (or, failing that, the port)."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    def exchange(sport: int, dport: int, ask: bytes, answer: bytes | None) -> list[Ether]:
        c, s = "10.2.1.1", "10.2.1.2"
        frames = [
            Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="S", seq=1000),
            Ether() / IP(src=s, dst=c) / TCP(sport=dport, dport=sport, flags="SA", seq=5000, ack=1001),
            Ether() / IP(src=c, dst=s) / TCP(sport=sport, dport=dport, flags="PA", seq=1001, ack=5001) / ask,
        ]
        if answer is not None:
            frames.append(
                Ether()
                / IP(src=s, dst=c)
                / TCP(sport=dport, dport=sport, flags="PA", seq=5001, ack=1001 + len(ask))
                / answer
            )
        return frames

    zbx = b"ZBXD\x01" + struct.pack("<Q", 1) + b"1"
    frames = (
        exchange(42001, 43, b"example.com\r\n", None)
        + exchange(42002, 47000, b"example.com\r\n", None)
        + exchange(42003, 10050, b"agent.ping\n", zbx)
        + exchange(42004, 10050, b"agent.ping\n", None)
    )
    wrpcap(str(tmp_path / "weak.pcap"), frames)
    done = run_replay("--json", tmp_path / "weak.pcap")
    assert done.returncode == 0, done.stderr
    got = {f["src_port"]: (f["app_proto"], f["app_confidence"]) for f in json_lines(done.stdout)}
    assert got == {42001: ("whois", 100), 42002: ("whois", 80), 42003: ("zabbix", 80), 42004: ("zabbix", 30)}


def test_a_flow_that_ends_unidentified_is_named_by_its_port_at_port_confidence(tmp_path: Path) -> None:
    """No payload (a scan's probe) or too little: the server port's app at confidence 30, as nDPI's "match by
    port"; app_pkts says how much payload backed it. No app on that port: the honest state."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    def segment(dport: int, flags: str, payload: bytes = b"", back: bool = False) -> Ether:
        ends = ("10.0.0.2", "10.0.0.1") if back else ("10.0.0.1", "10.0.0.2")
        ports = (dport, 50000) if back else (50000, dport)
        return Ether() / IP(src=ends[0], dst=ends[1]) / TCP(sport=ports[0], dport=ports[1], flags=flags) / payload

    frames = [
        segment(22, "S"),
        segment(22, "SA", back=True),  # a probe of ssh's port, nothing said
        segment(40123, "S"),  # a probe of a port no app owns
        segment(40124, "S"),
        segment(40124, "SA", back=True),
        segment(40124, "PA", b"\x01\x02"),
    ]  # two bytes: nothing to decide from
    wrpcap(str(tmp_path / "probes.pcap"), frames)
    done = run_replay("--json", tmp_path / "probes.pcap")
    assert done.returncode == 0, done.stderr
    got = {f["dest_port"]: (f["app_proto"], f["app_confidence"], f["app_pkts"]) for f in json_lines(done.stdout)}
    assert got == {22: ("ssh", 30, 0), 40123: ("incomplete", 0, 0), 40124: ("insufficient-data", 0, 1)}


def test_a_port_guess_takes_the_lower_port_when_both_are_some_apps(tmp_path: Path) -> None:
    """As nDPI guesses: the first packet captured need not be the client's (here it comes from POP3's port
    to BGP's), and services sit on the lower port."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    wrpcap(
        str(tmp_path / "ports.pcap"),
        [Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=110, dport=179, flags="A")],
    )
    [flow] = json_lines(run_replay("--json", tmp_path / "ports.pcap").stdout)
    assert (flow["dest_port"], flow["app_proto"], flow["app_confidence"]) == (179, "pop3", 30)


def test_a_tuple_seen_again_after_its_idle_timeout_is_a_new_flow(tmp_path: Path) -> None:
    """Two DNS queries on one socket 10 minutes apart (UDP times out after 30 s) are two flows, and
    one 10 s apart is the same flow, whatever else the capture holds in between."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    def ask(name: str, at: float, sport: int = 33333) -> Ether:
        frame = Ether() / IP(src="10.0.0.5", dst="10.0.0.53") / UDP(sport=sport, dport=53) / DNS(qd=DNSQR(qname=name))
        frame.time = at
        return frame

    noise = [ask(f"n{i}.example", 1_700_000_001 + i, sport=20000 + i) for i in range(200)]
    wrpcap(
        str(tmp_path / "idle.pcap"),
        [
            ask("first.example", 1_700_000_000),
            *noise,
            ask("again.example", 1_700_000_600),
            ask("soon.example", 1_700_000_610),
        ],
    )
    done = run_replay("--json", tmp_path / "idle.pcap")
    assert done.returncode == 0, done.stderr
    ours = [f for f in json_lines(done.stdout) if f["src_port"] == 33333]
    assert [(f["app_host"], f["pkts_toserver"]) for f in ours] == [("first.example", 1), ("soon.example", 2)]


def test_replay_reads_what_an_ip_in_ip_tunnel_carries(tmp_path: Path) -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    request = b"GET / HTTP/1.1\r\nHost: inner.example\r\nUser-Agent: curl/8\r\n\r\n"
    inner = [
        IP(src="192.168.0.1", dst="10.10.10.1") / TCP(sport=40000, dport=80, flags=f, seq=s) / payload
        for f, s, payload in (("S", 0, b""), ("PA", 1, request))
    ]
    frames = [Ether() / IPv6(src="2001:db8::1", dst="2001:db8::2") / packet for packet in inner]  # 4in6
    frames += [Ether() / IP(src="198.51.100.1", dst="198.51.100.2") / packet for packet in inner[:1]]  # 4in4
    wrpcap(str(tmp_path / "tunnel.pcap"), frames)
    done = run_replay("--json", tmp_path / "tunnel.pcap")
    assert done.returncode == 0, done.stderr
    # both tunnels carry the same inner flow; each tunnel's outer packets are its own flow (as Suricata's)
    [flow] = [f for f in json_lines(done.stdout) if f["proto"] == "TCP"]
    assert (flow["src_ip"], flow["dest_ip"], flow["proto"], flow["dest_port"]) == (
        "192.168.0.1",
        "10.10.10.1",
        "TCP",
        80,
    )
    assert (flow["app_proto"], flow["app_host"]) == ("http", "inner.example")
    tunnels = {(f["src_ip"], f["dest_ip"], f["proto"]) for f in json_lines(done.stdout) if f["proto"] != "TCP"}
    assert tunnels == {("2001:db8::1", "2001:db8::2", "4"), ("198.51.100.1", "198.51.100.2", "4")}


def test_replay_reads_the_station_traffic_a_capwap_data_channel_carries(tmp_path: Path) -> None:
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    header = bytes.fromhex("00204320") + bytes(12)  # CAPWAP: HLEN 16 bytes, WBID 802.11, T set
    station, ap = bytes.fromhex("1caba7f2139d"), bytes.fromhex("580a20690e20")
    llc = bytes.fromhex("aaaa030000000800")  # LLC/SNAP, IPv4

    def dot11(frame_control: bytes) -> bytes:  # 24-byte 802.11 header, to the AP
        return frame_control + b"\x2c\x00" + ap + station + b"\xff" * 6 + b"\x00\x00"

    def capwap(payload: bytes) -> Ether:
        return Ether() / IP(src="192.168.10.10", dst="192.168.10.9") / UDP(sport=12380, dport=5247) / Raw(payload)

    ask = bytes(IP(src="10.1.1.5", dst="10.1.1.1") / UDP(sport=40000, dport=53) / DNS(qd=DNSQR(qname="ap.example")))
    frames = [
        capwap(header + dot11(b"\x08\x01") + llc + ask),  # data frame, frame control as the standard has it
        capwap(header + dot11(b"\x01\x08") + llc + ask),  # ... and high byte first, as some controllers do
        capwap(header + dot11(b"\x40\x00") + bytes(16)),
    ]  # a probe request: no station traffic inside
    wrpcap(str(tmp_path / "capwap.pcap"), frames)
    done = run_replay("--json", tmp_path / "capwap.pcap")
    assert done.returncode == 0, done.stderr
    flows = {(f["src_ip"], f["dest_port"]): f for f in json_lines(done.stdout)}
    inner = flows[("10.1.1.5", 53)]
    assert (inner["app_proto"], inner["app_host"], inner["pkts_toserver"]) == ("dns", "ap.example", 2)
    assert flows[("192.168.10.10", 5247)]["pkts_toserver"] == 1  # the management frame stays CAPWAP's


def test_replay_reads_through_mpls_pppoe_gtp_vxlan_and_tzsp(tmp_path: Path) -> None:
    """Each encapsulation nDPI's reader reads through carries the same DNS query; each is read as it."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    def ask(sport: int) -> bytes:
        return bytes(
            IP(src="10.1.1.5", dst="10.1.1.1") / UDP(sport=sport, dport=53) / DNS(qd=DNSQR(qname="in.example"))
        )

    def udp(dport: int, payload: bytes) -> Ether:
        return Ether() / IP(src="192.0.2.1", dst="192.0.2.2") / UDP(sport=30000, dport=dport) / Raw(payload)

    mpls = bytes.fromhex("00012000") + bytes.fromhex("00013140")  # two labels, the second bottom-of-stack
    pppoe = bytes.fromhex("11000001") + struct.pack("!H", 2 + 40) + b"\x00\x21"
    gtp = bytes.fromhex("30ff") + struct.pack("!H", 40) + bytes.fromhex("00000001")
    # GTP with sequence number and one PDU-session extension header (length 1 = 4 bytes, next type 0)
    gtp_ext = bytes.fromhex("34ff") + struct.pack("!H", 48) + bytes.fromhex("000000010000008501000900")
    vxlan = bytes.fromhex("0800000000000100") + b"\x02" * 12 + b"\x08\x00"
    # TZSP: version 1, received frame, Ethernet; an RSSI tag (10, length 1), padding, END; the frame 802.1Q-tagged
    tzsp = bytes.fromhex("010000010a01c40001") + b"\x02" * 12 + bytes.fromhex("81000064") + b"\x08\x00"
    frames = [
        Ether(type=0x8847) / Raw(mpls + ask(40001)),
        Ether(type=0x8864) / Raw(pppoe + ask(40002)),
        udp(2152, gtp + ask(40003)),
        udp(2152, gtp_ext + ask(40004)),
        udp(4789, vxlan + ask(40005)),
        udp(37008, tzsp + ask(40006)),
        udp(2152, bytes.fromhex("32010004") + bytes(8)),
    ]  # GTP echo request: GTP's own flow
    wrpcap(str(tmp_path / "tunnels.pcap"), frames)
    done = run_replay("--json", tmp_path / "tunnels.pcap")
    assert done.returncode == 0, done.stderr
    flows = {(f["src_ip"], f["src_port"]): f for f in json_lines(done.stdout)}
    for sport in range(40001, 40007):
        inner = flows[("10.1.1.5", sport)]
        assert (inner["app_proto"], inner["app_host"], inner["dest_port"]) == ("dns", "in.example", 53), sport
    assert flows[("192.0.2.1", 30000)]["pkts_toserver"] == 1


DOT11_DATA = bytes.fromhex("08010000") + b"\x02" * 18 + b"\x00\x00" + bytes.fromhex("aaaa030000000800")
LINK_HEADERS = {  # link type -> what comes before the IPv4 packet
    1: b"\x02" * 12 + b"\x08\x00",
    101: b"",
    0: struct.pack("<I", 2),
    9: bytes.fromhex("ff030021"),
    50: bytes.fromhex("ff030021"),
    104: bytes.fromhex("0f000800"),
    113: bytes(14) + b"\x08\x00",
    276: b"\x08\x00" + bytes(18),
    105: DOT11_DATA,
    127: bytes.fromhex("0000080000000000") + DOT11_DATA,  # radiotap, no fields
    192: bytes.fromhex("00000800") + struct.pack("<I", 105) + DOT11_DATA,  # PPI over 802.11
}


@pytest.mark.parametrize("link", sorted(LINK_HEADERS))
def test_every_link_type_is_read_to_its_ip_packet(tmp_path: Path, link: int) -> None:
    """Ethernet, raw IP, BSD loopback, PPP, Cisco HDLC, Linux cooked v1/v2, and wireless captures (802.11,
    radiotap, PPI): the station's data frames are read through LLC/SNAP, as nDPI's reader reads them."""
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP

    ip = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / UDP(sport=40000, dport=53) / DNS(qd=DNSQR(qname="link.example")))
    frame = LINK_HEADERS[link] + ip
    path = tmp_path / f"link{link}.pcap"
    path.write_bytes(
        struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link)
        + struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame))
        + frame
    )
    done = run_replay("--json", path)
    assert done.returncode == 0, done.stderr
    [flow] = json_lines(done.stdout)
    assert (flow["src_ip"], flow["app_proto"], flow["app_host"]) == ("10.9.0.1", "dns", "link.example")


def test_wireless_frames_that_carry_no_data_are_not_flows(tmp_path: Path) -> None:
    beacon = bytes.fromhex("8000") + bytes(22) + bytes(40)  # management
    protected = bytes.fromhex("0841") + DOT11_DATA[2:] + bytes(40)  # encrypted data
    bogus_radiotap = bytes.fromhex("0000ff7f00000000") + DOT11_DATA  # header longer than the frame
    frames = [(105, beacon), (105, protected), (127, bogus_radiotap), (105, DOT11_DATA[:20])]
    for i, (link, frame) in enumerate(frames):
        path = tmp_path / f"w{i}.pcap"
        path.write_bytes(
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, link)
            + struct.pack("<IIII", 1_700_000_000, 0, len(frame), len(frame))
            + frame
        )
        done = run_replay("--json", path)
        assert done.returncode == 0 and json_lines(done.stdout) == [], (i, done.stderr)


def test_garbage_inside_tunnels_is_counted_never_over_read(tmp_path: Path) -> None:
    """Random and truncated bytes behind IP-in-IP, CAPWAP, GTP, VXLAN, TZSP, MPLS and PPPoE headers: replay
    survives and counts them."""
    import random

    from ngfw.dataplane.replay import Replayer

    rng = random.Random(20261127)
    eth, capwap_hdr = b"\x02" * 12, bytes.fromhex("00204320") + bytes(12)

    def ipv4(proto: int, body: bytes) -> bytes:
        head = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0, 64, proto, 0, bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
        )
        return head + body

    def garbage() -> bytes:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
        if rng.random() < 0.5:  # something that looks like IPv4 or IPv6, then nonsense
            body = bytes([rng.choice((0x45, 0x46, 0x4F, 0x60))]) + body
        return body

    def cut(head: bytes) -> bytes:
        return head[: rng.randrange(len(head) + 1)]

    gtp_heads = (
        bytes.fromhex("30ff00280000000101"),
        bytes.fromhex("34ff0030000000010000008501000900"),
        bytes.fromhex("34ff0030000000010000008500"),
        bytes.fromhex("34ff003000000001000000850000"),
    )
    frames = []
    for _ in range(3000):
        inner = garbage()
        kind = rng.random()
        if kind < 0.3:
            frames.append(eth + b"\x08\x00" + ipv4(rng.choice((4, 41)), inner))
        elif kind < 0.45:
            frames.append(eth + b"\x88\x47" + cut(bytes.fromhex("0001200000013140")) + inner)
        elif kind < 0.55:
            frames.append(
                eth + b"\x88\x64" + cut(bytes.fromhex("110000010030") + rng.choice((b"\x00\x21", b"\x00\x57"))) + inner
            )
        elif kind < 0.75:
            port, head = rng.choice(
                (
                    (2152, cut(rng.choice(gtp_heads))),
                    (4789, cut(bytes.fromhex("0800000000000100") + b"\x02" * 12 + b"\x86\xdd")),
                    (37008, cut(bytes.fromhex("010000010a01c40001") + b"\x02" * 12 + b"\x08\x00")),
                    (37008, bytes.fromhex("01000001") + cut(bytes.fromhex("0aff"))),
                )
            )
            payload = head + inner
            frames.append(
                eth + b"\x08\x00" + ipv4(17, struct.pack("!HHHH", 30000, port, 8 + len(payload), 0) + payload)
            )
        else:
            dot11 = bytes([rng.choice((0x08, 0x88, 0x01))]) + bytes(rng.randrange(256) for _ in range(23))
            payload = capwap_hdr + dot11 + bytes.fromhex("aaaa03000000") + rng.choice((b"\x08\x00", b"\x86\xdd"))
            payload = payload[: rng.randrange(len(payload) + 1)] + inner
            udp = struct.pack("!HHHH", 12380, 5247, 8 + len(payload), 0) + payload
            frames.append(eth + b"\x08\x00" + ipv4(17, udp))
    records = b"".join(struct.pack("<IIII", 1_700_000_000 + i, 0, len(f), len(f)) + f for i, f in enumerate(frames))
    path = tmp_path / "garbage.pcap"
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + records)

    replayer = Replayer()
    flows = replayer.replay_file(str(path))
    assert replayer.problems == []
    stats = replayer.stats()
    packets = sum(f["pkts_toserver"] + f["pkts_toclient"] for f in flows)
    assert packets + sum(stats["drops"].values()) >= len(frames)  # every frame is in a flow or a drop count


def test_records_built_in_the_extension_equal_those_built_from_events() -> None:
    from ngfw.dataplane.replay import Replayer

    def records(fast: bool) -> list[str]:
        replayer = Replayer()
        replayer.fast_records = fast
        rows = [r for capture in CAPTURES for r in replayer.replay_file(str(FIXTURES / capture))]
        return sorted(json.dumps({k: v for k, v in r.items() if k != "flow_id"}, sort_keys=True) for r in rows)

    fast = records(True)
    assert fast and fast == records(False)


def test_json_lines_written_by_the_extension_are_orjsons_bytes(tmp_path: Path) -> None:
    """`ngfw replay --json` writes its lines in C: byte for byte what orjson writes for the records, also
    for hosts that need escaping or are not UTF-8 (mDNS names are kept as sent: U+FFFD where a byte is
    not UTF-8, as the records decode them), IPv6 and IPv4-mapped addresses, and a file name with a quote."""
    import re

    import orjson
    from scapy.layers.dns import DNS, DNSQR
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap

    from ngfw.dataplane.replay import Replayer

    names = [b"b\xc3\xbccher._http._tcp.local", b"bad\xff\xfe._http._tcp.local", b'q"uote\\x\x01._http._tcp.local']
    frames = []
    for i, name in enumerate(names):
        ip = IP(src="10.0.0.1", dst="224.0.0.251") if i != 1 else IPv6(src="::ffff:10.0.0.1", dst="ff02::fb")
        frames.append(Ether() / ip / UDP(sport=40000 + i, dport=5353) / DNS(qd=DNSQR(qname=name, qtype="PTR")))
    odd_capture = tmp_path / 'odd "names".pcap'
    wrpcap(str(odd_capture), frames)

    def without_flow_id(line: bytes) -> bytes:
        return re.sub(rb'"flow_id":\d+', b'"flow_id":0', line)

    for capture in [str(FIXTURES / c) for c in CAPTURES] + [str(odd_capture)]:
        want = sorted(without_flow_id(orjson.dumps(r)) for r in Replayer().replay_file(capture))
        got = sorted(without_flow_id(line) for line in Replayer().replay_file_json(capture).splitlines())
        assert got and got == want, capture
    odd = [json.loads(line) for line in Replayer().replay_file_json(str(odd_capture)).splitlines()]
    assert {r["app_host"] for r in odd} == {
        "bücher._http._tcp.local",
        "bad\ufffd\ufffd._http._tcp.local",
        'q"uote\\x\x01._http._tcp.local',
    }
    assert {r["pcap_file"] for r in odd} == {'odd "names".pcap'}
