"""SYN flood protection in the kernel: the wire program's ring filter run on frames by the kernel itself
(BPF_PROG_TEST_RUN, root; no namespace or interface is touched: the program is loaded, never attached).

The filter's verdict is what a packet ring would copy of the frame: its length (admitted) or 0 (dropped
before the ring). The frames arrive "on" the loopback interface, which the tests make a wire port of the
program, as the dataplane does with its wires' interfaces.
"""

from __future__ import annotations

import ipaddress
import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from ngfw.dataplane.admission import Rate, SynLimits, configure
from ngfw.dataplane.failmode import OBJECT_PATH

wirebpf = pytest.importorskip("ngfw._fastpath.wirebpf", reason="the wire program's loader is not built")

LOOPBACK = 1  # the test run's frames arrive on the loopback interface (ifindex 1)
SYN, ACK, RST = 0x02, 0x10, 0x04


def tcp_frame(src: str, flags: int = SYN, dst: str | None = None, vlan: int | None = None) -> bytes:
    """An Ethernet frame with a TCP segment from `src` (IPv4 or IPv6) to port 80, carrying `flags`."""
    source = ipaddress.ip_address(src)
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, flags, 64240, 0, 0)
    if source.version == 4:
        target = ipaddress.ip_address(dst or "10.0.0.9")
        l3 = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0x4000, 64, 6, 0, source.packed, target.packed)
        ethertype = 0x0800
    else:
        target = ipaddress.ip_address(dst or "fd00::9")
        l3 = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, source.packed, target.packed)
        ethertype = 0x86DD
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return b"\x02\x00\x00\x00\x00\x09" + b"\x02\x00\x00\x00\x00\x01" + tag + struct.pack("!H", ethertype) + l3 + tcp


@pytest.fixture
def program() -> Iterator[object]:
    prog = wirebpf.WireProgram.load(str(OBJECT_PATH))
    prog.set_liveness(300_000_000)
    prog.set_mode(0, "closed")
    prog.set_port(LOOPBACK, LOOPBACK, 0)
    try:
        yield prog
    finally:
        prog.close()


def admitted(program, frame: bytes, times: int = 1) -> bool:
    """Whether the last of `times` copies of `frame`, sent back to back, reaches the ring."""
    verdict, _ns = program.run_ring_filter(frame, times)
    assert verdict in (0, len(frame)), verdict
    return verdict == len(frame)


def test_a_source_over_its_rate_loses_its_syns_and_no_one_else_does(program) -> None:
    # 10 SYNs a second (a token every 100 ms): what the test does between its checks, even on a loaded machine,
    # takes far less than a token's time, so the counts below are exact
    configure(program, SynLimits(per_source=Rate(10, 10)))
    # 100 SYNs back to back in the kernel: its burst of 10 gets in, the rest is dropped
    started = time.monotonic()
    assert not admitted(program, tcp_frame("10.0.0.1"), 100)
    refilled = int((time.monotonic() - started) * 10)  # tokens that may have come back meanwhile (0 unless stalled)
    stats = program.syn_stats()
    assert stats["seen"] == 100
    assert 90 - refilled <= stats["dropped_source"] <= 90, stats
    assert stats["dropped_total"] == 0
    [(raw, ok, dropped, _last)] = program.syn_sources()
    assert ipaddress.IPv6Address(raw).ipv4_mapped == ipaddress.IPv4Address("10.0.0.1")
    assert (ok, dropped) == (100 - stats["dropped_source"], stats["dropped_source"])
    # the flooding source's other segments, its established connections, pass: only SYNs are limited
    assert admitted(program, tcp_frame("10.0.0.1", ACK))
    assert admitted(program, tcp_frame("10.0.0.1", SYN | ACK))  # it answering a connection
    assert admitted(program, tcp_frame("10.0.0.1", RST))
    # other sources open connections as before, IPv6 ones too, each against its own bucket
    assert admitted(program, tcp_frame("10.0.0.2"))
    assert admitted(program, tcp_frame("fd00::2"), 10)
    assert not admitted(program, tcp_frame("fd00::2"))
    # a tag in the frame does not hide a SYN
    assert not admitted(program, tcp_frame("10.0.0.1", vlan=7))
    # the bucket fills again at the source's rate: a SYN every 100 ms
    time.sleep(0.25)
    assert admitted(program, tcp_frame("10.0.0.1"), 2)


def test_the_total_limit_holds_a_flood_from_many_addresses(program) -> None:
    """Every address new (as in a spoofed flood): each source is within its own limit, the total is not."""
    configure(program, SynLimits(per_source=Rate(1000, 10), total=Rate(10, 5)))
    started = time.monotonic()
    verdicts = [admitted(program, tcp_frame(f"10.1.{i // 250}.{i % 250 + 1}")) for i in range(50)]
    refilled = int((time.monotonic() - started) * 10) + 1  # a token every 100 ms, one more for the partial one
    assert 5 <= sum(verdicts) <= 5 + refilled, verdicts  # the burst, and what came back while the test ran
    assert verdicts[:5] == [True] * 5
    stats = program.syn_stats()
    assert stats["dropped_source"] == 0 and stats["dropped_total"] == 50 - sum(verdicts)


def test_limits_off_admit_everything_and_count_nothing(program) -> None:
    configure(program, SynLimits(per_source=None, total=None))
    assert admitted(program, tcp_frame("10.0.0.1"), 1000)
    assert program.syn_stats() == {"seen": 0, "dropped_source": 0, "dropped_total": 0}


def test_frames_of_interfaces_that_are_not_wire_ports_are_left_alone(program) -> None:
    configure(program, SynLimits(per_source=Rate(1, 1)))
    program.forget_port(LOOPBACK)
    assert admitted(program, tcp_frame("10.0.0.1"), 50)
    assert program.syn_stats()["seen"] == 0


def test_the_program_loads_with_cap_bpf_alone_as_the_units_drop_in_grants_it() -> None:
    """The verifier is stricter without CAP_PERFMON (no pointer arithmetic that differs by path): the systemd
    unit with its fail-open drop-in grants CAP_BPF and CAP_NET_ADMIN only, and the whole object must load so."""
    load = (
        f"import ngfw._fastpath.wirebpf as w; w.WireProgram.load({str(OBJECT_PATH)!r}).set_syn_limits(10, 10, 10, 10)"
    )
    env = {**os.environ, "PYTHONPATH": str(OBJECT_PATH.parents[3])}
    done = subprocess.run(
        ["setpriv", "--bounding-set", "-all,+net_raw,+net_admin,+bpf", sys.executable, "-c", load],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
