"""Benchmark arithmetic and tool-output parsing."""

import math

import pytest

from ngfw.lab.measure import (
    median,
    parse_iperf3_json,
    parse_ping_rtts,
    parse_trafgen_sent,
    parse_wrk,
    percentile,
    ratio,
    render_trafgen_udp,
)


def test_trafgen_config_builds_64_byte_frames_over_many_source_ports():
    cfg = render_trafgen_udp("02:00:00:00:01:01", "02:00:00:00:02:01", "10.77.0.11", "10.77.0.100", 9, 1024)
    assert "eth(da=02:00:00:00:02:01, sa=02:00:00:00:01:01)" in cfg
    assert "ipv4(sa=10.77.0.11, da=10.77.0.100, ttl=64)" in cfg
    assert "udp(sp=dinc(1024, 2047), dp=9)" in cfg
    assert "fill(0x00, 18)" in cfg  # 60 - 14 - 20 - 8: 64 bytes on the wire with the FCS


def test_trafgen_config_can_cycle_the_destination_port_too():
    cfg = render_trafgen_udp("a", "b", "1.1.1.1", "2.2.2.2", 20000, 64512, dst_ports=251)
    assert "udp(sp=dinc(1024, 65535), dp=dinc(20000, 20250))" in cfg
    with pytest.raises(ValueError, match="dst_ports"):
        render_trafgen_udp("a", "b", "1.1.1.1", "2.2.2.2", 65535, 1, dst_ports=2)


def test_trafgen_single_flow_uses_a_fixed_port():
    assert "udp(sp=1024, dp=9)" in render_trafgen_udp("a", "b", "1.1.1.1", "2.2.2.2", 9, 1)


@pytest.mark.parametrize("flows,frame_len", [(0, 60), (70000, 60), (1, 40)])
def test_trafgen_config_refuses_impossible_shapes(flows, frame_len):
    with pytest.raises(ValueError):
        render_trafgen_udp("a", "b", "1.1.1.1", "2.2.2.2", 9, flows, frame_len)


TRAFGEN_OUT = """\
Running! Hang up with ^C!

Enabled kernel qdisc bypass
TX,V2: 0.50 MiB, 256 Frames, each 2048 Byte allocated


      203264 packets outgoing

    12195840 bytes outgoing

           1 sec, 988410 usec on CPU0 (203264 packets)
"""


def test_trafgen_sent_count():
    assert parse_trafgen_sent(TRAFGEN_OUT) == 203264
    assert parse_trafgen_sent(TRAFGEN_OUT + "\n     10 packets outgoing\n") == 203274
    assert parse_trafgen_sent("Running!") == 0


PING_OUT = """\
PING 10.77.0.100 (10.77.0.100) 56(84) bytes of data.
64 bytes from 10.77.0.100: icmp_seq=1 ttl=64 time=0.091 ms
64 bytes from 10.77.0.100: icmp_seq=2 ttl=64 time=0.050 ms
64 bytes from 10.77.0.100: icmp_seq=2 ttl=64 time=0.070 ms (DUP!)
64 bytes from 10.77.0.100: icmp_seq=4 ttl=64 time=1.20 ms

--- 10.77.0.100 ping statistics ---
4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 31ms
rtt min/avg/max/mdev = 0.050/0.447/1.200/0.530 ms
"""


def test_ping_rtts_are_per_reply_and_skip_duplicates():
    assert parse_ping_rtts(PING_OUT) == [0.091, 0.050, 1.20]


def test_percentiles_interpolate_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))


def test_median_ignores_failed_repetitions():
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None, None]) is None


def test_iperf3_receiver_throughput():
    assert parse_iperf3_json('{"end": {"sum_received": {"bits_per_second": 1.5e9}}}') == 1.5e9
    with pytest.raises(ValueError, match="unable to connect"):
        parse_iperf3_json('{"error": "unable to connect to server"}')


WRK_OUT = """\
Running 3s test @ http://10.77.0.100/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   757.19us  426.48us   5.00ms   71.94%
    Req/Sec     9.28k     1.13k   10.25k    80.65%
  28632 requests in 3.10s, 8.38MB read
  Socket errors: connect 0, read 3, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:   9233.14
Transfer/sec:      2.70MB
"""


def test_wrk_rate_and_errors():
    rps, errors = parse_wrk(WRK_OUT)
    assert rps == 9233.14
    assert errors == {"connect": 0, "read": 3, "write": 0, "timeout": 2, "non_2xx_3xx": 5}
    with pytest.raises(ValueError):
        parse_wrk("unable to connect to 10.77.0.100:80 Connection refused")


def test_ratio_to_baseline():
    assert ratio(1.0, 2.0) == 0.5
    assert ratio(None, 2.0) is None and ratio(1.0, 0.0) is None
