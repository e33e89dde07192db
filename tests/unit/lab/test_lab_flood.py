"""The lab's SYN flood helpers: the trafgen config, the rate of a download over a window, memory readings."""

import os

from ngfw.lab.flood import Download, KeepAliveDownload, process_cpu_seconds, process_memory, render_trafgen_syn


def test_a_syn_flood_config_sends_bare_syns_from_random_ports():
    cfg = render_trafgen_syn("02:00:00:00:01:01", "02:00:00:00:02:01", "10.77.0.11", "10.77.0.100", 80)
    assert "eth(da=02:00:00:00:02:01, sa=02:00:00:00:01:01)" in cfg
    assert "ipv4(sa=10.77.0.11, da=10.77.0.100, ttl=64)" in cfg
    assert "tcp(sp=drnd(1024, 65535), dp=80, seq=drnd(), syn, window=64240)" in cfg
    assert "fill" not in cfg  # no payload: 54-byte frames (a SYN with data is App-ID's and inspection's work)
    assert "fill(0x41, 100)" in render_trafgen_syn("a", "b", "1.1.1.1", "2.2.2.2", 80, payload=100)


def test_a_download_counts_for_the_part_of_it_inside_the_window():
    d = KeepAliveDownload("ns", "http://x/")
    # 1 MB in 1 s ending at t=10, 1 MB in 2 s ending at t=12
    d.downloads = [Download(10.0, 1.0, 1_000_000, 1), Download(12.0, 2.0, 1_000_000, 0)]
    assert d.rate_bps(9.0, 10.0) == 8_000_000
    assert d.rate_bps(9.5, 11.0) == (4_000_000 + 4_000_000) / 1.5  # half of the first, half of the second
    assert d.rate_bps(20.0, 21.0) == 0.0
    assert d.connections() == 1


def test_memory_and_cpu_of_a_process_are_read_from_proc():
    memory = process_memory(os.getpid())
    assert memory["rss"] > 0 and memory["rss"] >= memory["anon"]
    assert process_cpu_seconds(os.getpid()) > 0
