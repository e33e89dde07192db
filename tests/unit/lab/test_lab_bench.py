"""The benchmark's report logic (bench/run.py), without running anything."""

from bench import run as bench


def test_configurations_rotate_between_repetitions():
    names = ["bridge", "allow", "rules1000"]
    orders = [bench.interleaved(names, rep) for rep in range(3)]
    assert orders[0] == names
    assert [o[0] for o in orders] == names  # each configuration goes first once


def _result(name, **samples):
    r = bench.ConfigResult(name, bench.TITLES[name])
    for metric in bench.METRICS:
        r.samples[metric] = samples.get(metric, [None])
    return r


def test_table_shows_ratios_to_the_bridge_and_added_latency():
    bridge = _result("bridge", tcp_gbps=[2.0, 4.0, 3.0], ping_p50_us=[50.0], pps_offered=[100.0], pps_delivered=[100.0])
    allow = _result("allow", tcp_gbps=[1.5], ping_p50_us=[80.0], pps_offered=[100.0], pps_delivered=[90.0])
    allow.drops = [{"policy_deny": 0.0, "rx_ring_full": 5.0}]
    table = bench.markdown_table([bridge, allow]).splitlines()
    assert table[0].startswith("| configuration | TCP Gbit/s")
    assert "| 3.00 |" in table[2]  # median of the bridge's repetitions
    assert "1.50 (0.50×)" in table[3]
    assert "80 (+30)" in table[3]
    assert "90.0%" in table[3]
    assert "rx_ring_full=5" in table[3]


def test_skipped_configurations_are_not_rows():
    skipped = _result("rules1000")
    skipped.skipped = "not available"
    assert len(bench.markdown_table([_result("bridge"), skipped]).splitlines()) == 3


def test_home_net_is_the_workloads_only_unless_both_sides_are_asked_for():
    from ngfw.lab.topology import lab_plan

    lab = lab_plan("nb")
    try:
        bench.HOME_NET[0] = "client"
        assert bench.home_net(lab) == "[10.77.0.11,fd77::11,10.77.0.12,fd77::12]"  # the server is $EXTERNAL_NET
        bench.HOME_NET[0] = "both"
        assert bench.home_net(lab) == "[10.77.0.0/24,fd77::/64]"
    finally:
        bench.HOME_NET[0] = "client"


def test_the_udp_flood_repeats_no_5_tuple_within_a_run():
    import math

    period = math.lcm(bench.UDP_FLOWS, bench.UDP_SINK_PORTS)
    assert period > bench.Durations().pps * 1_000_000  # 10 s at 1 Mpps, twice what this machine offers
