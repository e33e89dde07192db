"""QUIC ClientHellos spread over several Initial packets: the CRYPTO stream is reassembled across the flow's
Initials (frames in any order, in any packet, coalesced or not), bounded, so the SNI and ALPN are found.

The hellos are Chrome-like (tests/fixtures/accuracy/gen_quic.py): X25519MLKEM768 key share, extensions in random
order, CRYPTO frames cut and shuffled among PING and PADDING frames."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

parsers = pytest.importorskip("ngfw._fastpath.parsers")
pytest.importorskip("aioquic")
ROOT = Path(__file__).resolve().parents[3]

from tests.fixtures.accuracy import gen_quic as gen  # noqa: E402
from tests.support import quic_initial as qi  # noqa: E402

UDP = 17
C, S = True, False
VERSIONS = {"v1": qi.V1, "v2": qi.V2, "draft-29": 0xFF00001D}


def initials(version: int, sni: str, seed: int, scatter: bool, extra_padding: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    hello = gen.chrome_client_hello(rng, sni, extra_padding=extra_padding)
    return [
        qi.client_initial(version, frames, pn=pn, size=gen.INITIAL_SIZE)
        for pn, frames in enumerate(gen.chaos_packets(rng, hello, scatter))
    ]


def flow(packets: list[tuple[bool, bytes]]) -> tuple[str | None, str | None, str | None]:
    r = parsers.parse_flow(UDP, 50000, 443, packets)
    return r["app"], r["host"], r.get("alpn")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("scatter", [False, True], ids=["chrome", "scattered"])
@pytest.mark.parametrize("reverse", [False, True], ids=["in-order", "reordered"])
def test_a_post_quantum_hello_over_several_initials_names_its_host(
    version: str, seed: int, scatter: bool, reverse: bool
) -> None:
    packets = initials(VERSIONS[version], f"host{seed}.example.net", seed, scatter)
    assert len(packets) >= 2
    if reverse:
        packets.reverse()
    assert flow([(C, p) for p in packets]) == ("quic", f"host{seed}.example.net", "h3")


def test_the_first_initial_alone_asks_for_more_and_stays_quic() -> None:
    packets = initials(qi.V1, "wait.example", 3, scatter=True)
    r = parsers.parse(UDP, True, 50000, 443, packets[:1])
    assert r["need_more"] and r["tentative"] == "quic"


def test_a_hello_three_initials_long_is_read_whole() -> None:
    packets = initials(qi.V1, "three.example", 1, scatter=False, extra_padding=1400)
    assert len(packets) == 3
    assert flow([(C, packets[2]), (C, packets[0]), (C, packets[1])])[:2] == ("quic", "three.example")


def test_the_server_answering_between_the_client_initials_does_not_end_the_wait() -> None:
    packets = initials(qi.V1, "late.example", 2, scatter=True)
    server_initial = b"\xc0\x00\x00\x00\x01\x00\x08" + bytes(8) + b"\x00\x40\x20" + bytes(40)
    assert flow([(C, packets[0]), (S, server_initial), (C, packets[1])])[:2] == ("quic", "late.example")


def test_coalesced_initials_in_one_datagram_are_both_read() -> None:
    rng = random.Random(7)
    hello = gen.chrome_client_hello(rng, "coalesced.example")
    half = len(hello) // 2
    first = qi.client_initial(qi.V1, qi.crypto_frame(hello[half:], half), pn=1, size=1100)
    second = qi.client_initial(qi.V1, qi.crypto_frame(hello[:half], 0), pn=0, size=1100)
    assert flow([(C, first + second)])[:2] == ("quic", "coalesced.example")


def test_a_rewritten_retransmission_keeps_the_first_copy() -> None:
    hello = qi.tls_client_hello(b"first.example")
    name_at = hello.index(b"first.example")
    forged = hello[:name_at] + b"forge" + hello[name_at + 5 :]
    packets = [
        qi.client_initial(qi.V1, qi.crypto_frame(hello[: name_at + 8], 0), pn=0),
        qi.client_initial(qi.V1, qi.crypto_frame(forged, 0), pn=1),
    ]
    assert flow([(C, p) for p in packets])[:2] == ("quic", "first.example")


def test_a_hello_cut_into_more_runs_than_are_tracked_stays_quic_without_a_host() -> None:
    # every other byte first: 200 disjoint runs, more than the bounded range list holds
    hello = qi.tls_client_hello(b"runs.example")
    frames = b"".join(qi.crypto_frame(hello[i : i + 1], i) for i in range(0, min(len(hello), 400), 2))
    odd = b"".join(qi.crypto_frame(hello[i : i + 1], i) for i in range(1, len(hello), 2))
    packets = [qi.client_initial(qi.V1, frames, pn=0, size=1400), qi.client_initial(qi.V1, odd, pn=1, size=1400)]
    app, host, _ = flow([(C, p) for p in packets])
    assert (app, host) == ("quic", None)


def test_crypto_offsets_past_the_reassembly_room_are_ignored() -> None:
    far = qi.crypto_frame(b"\x01\x00\x10\x00" + b"A" * 100, 1 << 20)
    assert flow([(C, qi.client_initial(qi.V1, far))])[:2] == ("quic", None)


def test_the_fixture_capture_replays_with_every_host(tmp_path: Path) -> None:
    """The generated capture, through `ngfw replay` (the whole engine): each flow is quic with its SNI."""
    capture = ROOT / "tests" / "fixtures" / "accuracy" / "pcaps" / "quic_multi_initial.pcap"
    out = subprocess.run(
        [sys.executable, "-m", "ngfw", "replay", "--json", str(capture)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    got = {r["app_host"] for r in records if r.get("event_type", "flow") == "flow" and r.get("app") == "quic"}
    assert got == {f.sni for f in gen.FLOWS}


def test_quic_sni_rules_see_the_reassembled_hello(tmp_path: Path) -> None:
    """`quic.sni` (Suricata 7's sticky buffer) matches the SNI of a hello spread over several Initials, once per
    flow, as Suricata 7.0.10 does on the same capture (docs/parity.md)."""
    rules = tmp_path / "quic.rules"
    rules.write_text(
        'alert quic any any -> any any (msg:"sni youtube"; quic.sni; content:"youtube"; sid:1; rev:1;)\n'
        'alert quic any any -> any any (msg:"sni example"; quic.sni; content:"example."; sid:2; rev:1;)\n'
        'alert quic any any -> any any (msg:"must not fire"; quic.sni; content:"nothing.invalid"; sid:3; rev:1;)\n'
    )
    capture = ROOT / "tests" / "fixtures" / "accuracy" / "pcaps" / "quic_multi_initial.pcap"
    out = subprocess.run(
        [sys.executable, "-m", "ngfw", "replay", "--json", "--rules", str(rules), str(capture)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    alerts = [json.loads(line) for line in out.splitlines() if '"event_type":"alert"' in line.replace(" ", "")]
    got = sorted((a["src_ip"], a["alert"]["signature_id"]) for a in alerts)
    expected = sorted(
        [("10.0.0.11", 1)] + [(f"10.0.0.{10 + i}", 2) for i, f in enumerate(gen.FLOWS) if "example." in f.sni]
    )
    assert got == expected
