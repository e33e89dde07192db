"""A SYN flood through a running dataplane with a small flow table (root; see conftest).

The lab policy, without tenant-a's newSessionsPerSecond: that rate limit would refuse most of the flood before it
reaches the table (and, drawing on the same bucket, the tenant's legitimate new connections with it). The
dataplane inspects port 80 with the lab's signatures; trafgen in web1 sends SYNs from web1's own address
(anti-spoofing drops any other) with random source ports to srv:80. Meanwhile web2 keeps one download going over
a connection established before the flood, and opens new connections.

The first two tests are about the flow table, so SYN flood protection is off in them (as where BPF is not
available): every SYN of the flood reaches the packet loop. The last one has it on, as it is by default.

What each run measured is printed (pytest -s) and written to the test's tmp_path as flood.json; bench/synflood.py
measures the same at several rates, figures in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ngfw.lab.dataplane_process import DataplaneProcess, metric_sum, repo_path
from ngfw.lab.flood import FloodReport, new_connections, run_flood
from ngfw.lab.netns import call_in

FLOOD_SECONDS = 6.0
MiB = 1 << 20


def flood_dataplane(
    lab,
    lab_services,
    start_dataplane,
    state_dir: Path,
    tmp_path: Path,
    capacity: int,
    protection: list[str] | None = None,
) -> DataplaneProcess:
    text, n = re.subn(r"\n    newSessionsPerSecond: \d+", "", repo_path("rules/examples/lab.yaml").read_text())
    assert n == 1
    (tmp_path / "lab-no-rate.yaml").write_text(text)
    dp = start_dataplane(
        tmp_path / "lab-no-rate.yaml",
        extra_args=[
            "--flow-capacity",
            str(capacity),
            "--rules",
            f"lab={repo_path('rules/threats/lab.rules')}",
            "--state-dir",
            str(state_dir),
            *(["--syn-limit-per-source", "off"] if protection is None else protection),
        ],
    )
    for workload in lab.workloads:
        call_in(
            workload.ns, ["curl", "-s", "-o", "/dev/null", "--max-time", "5", lab_services.big_file_url], timeout=10
        )
    return dp


def flood(lab, lab_services, dp: DataplaneProcess, state_dir: Path, tmp_path: Path, rate: int | None) -> FloodReport:
    report = run_flood(
        dp,
        lab.web1,
        lab.srv,
        80,
        lab.web2,
        lab_services.big_file_url,
        tmp_path,
        flood_seconds=FLOOD_SECONDS,
        rate_pps=rate,
        state_file=state_dir / "flows.state",
    )
    summary = report.as_dict()
    (tmp_path / "flood.json").write_text(json.dumps(summary, indent=2))
    print(
        f"\nflood at {rate or 'full rate'}: {report.flood.pps:,.0f} SYN/s sent; new connections during it "
        f"{report.legit_ok}/{len(report.legit)}; download {report.unflooded_bps / 1e6:.0f} -> "
        f"{report.flooded_bps / 1e6:.0f} Mbit/s ({report.throughput_ratio:.2f}x), after {report.after_bps / 1e6:.0f} "
        f"(resumed {report.resumed_seconds} s after the flood); "
        f"kernel ring drops {report.counters['ngfw_port_kernel_drops_total']:,.0f}; early drops "
        f"{report.counters['ngfw_flows_early_dropped_total']:,.0f}; CPU before/during {report.cpu}; RSS MiB "
        + " / ".join(f"{report.memory[p]['rss'] / MiB:.0f}" for p in ("before", "during", "after"))
    )
    return report


def test_a_full_rate_syn_flood_leaves_the_table_open_and_gives_its_memory_back(
    lab, lab_services, start_dataplane, state_dir, tmp_path
) -> None:
    """A table of 16,384 flows (5.5 MiB of the state file; one address flooding one port makes at most 64,512
    tuples): the flood fills it within a second."""
    capacity = 16_384
    dp = flood_dataplane(lab, lab_services, start_dataplane, state_dir, tmp_path, capacity)
    report = flood(lab, lab_services, dp, state_dir, tmp_path, rate=None)
    assert report.flood.pps > 20_000, f"trafgen sent only {report.flood.pps:.0f} SYN/s: {report.flood.output}"
    counters = report.counters
    # the table was full and turned over: half-open flows gave way, no new flow was refused for room
    assert counters["ngfw_flows_early_dropped_total"] > capacity
    assert counters["ngfw_flow_insert_failures_total"] == 0
    assert dp.running()
    # the established download was not cut: the same connection carries on after the flood (once TCP's backed-off
    # retransmission timer lets it: the flood dropped most of its packets in the dataplane's receive ring)
    assert report.download_connections == 1 and report.resumed_seconds is not None
    # right after the flood, new connections get in at once: the table is not left full of half-open flows
    # until their timeout (30 s)
    after = new_connections(
        lab.web2.ns, lab_services.big_file_url.rsplit("/", 1)[0] + "/", 10, interval=0.1, timeout=5.0
    )
    assert [r["status"] for r in after] == [200] * 10, after
    assert max(r["connect_s"] for r in after) < 0.5, after
    # the memory the flood took goes back once its flows have ended: the state file (where the table lives) to
    # within a tenth of the table, the process to within a few MiB (the part of the event ring its records went
    # through, the EVE writer's heap)
    before, during, end = (report.memory[p] for p in ("before", "during", "after"))
    table = counters["ngfw_flow_table_bytes"]
    assert during["file:flows.state"] - before["file:flows.state"] > table / 2, report.memory
    assert end["file:flows.state"] - before["file:flows.state"] < table / 10, report.memory
    assert end["rss"] - before["rss"] < 12 * MiB, report.memory


def test_new_connections_get_in_during_a_flood_that_turns_the_table_over(
    lab, lab_services, start_dataplane, state_dir, tmp_path
) -> None:
    """10,000 SYN/s: a table of 4,096 turns over more than twice a second, at a rate this lab's 2 CPUs forward."""
    capacity = 4096
    dp = flood_dataplane(lab, lab_services, start_dataplane, state_dir, tmp_path, capacity)
    report = flood(lab, lab_services, dp, state_dir, tmp_path, rate=10_000)
    assert report.counters["ngfw_flows_early_dropped_total"] > 4 * capacity
    assert report.counters["ngfw_flow_insert_failures_total"] == 0
    assert report.legit_ok >= 9, report.legit
    assert report.download_connections == 1 and report.resumed_seconds is not None


def test_with_syn_flood_protection_a_full_rate_flood_from_one_address_leaves_room_for_everyone_else(
    lab, lab_services, start_dataplane, state_dir, tmp_path
) -> None:
    """The default protection (10,000 SYN/s per source address): web1 floods at the full rate; web2's new
    connections get in and its download carries on, the drop counter moves and the log names web1."""
    capacity = 4096
    dp = flood_dataplane(lab, lab_services, start_dataplane, state_dir, tmp_path, capacity, protection=[])
    report = flood(lab, lab_services, dp, state_dir, tmp_path, rate=None)
    assert report.flood.pps > 20_000, f"trafgen sent only {report.flood.pps:.0f} SYN/s: {report.flood.output}"
    assert report.legit_ok >= 9, report.legit
    assert report.download_connections == 1 and report.resumed_seconds is not None
    samples = dp.metrics()
    assert metric_sum(samples, "ngfw_dos_syn_protection_enabled") == 1
    dropped = metric_sum(samples, "ngfw_dos_dropped_total", reason="syn_per_source")
    seen = metric_sum(samples, "ngfw_dos_syn_seen_total")
    # every SYN the ring filter saw but web1's rate over the flood (and a few seconds around it), its burst
    # and web2's handful
    assert seen > 0.5 * report.flood.sent, (seen, report.flood.sent)
    assert dropped >= seen - 10_000 * (report.flood.seconds + 3) - 10_000 - 100, (dropped, seen, report.flood.seconds)
    assert metric_sum(samples, "ngfw_dos_dropped_total", reason="syn_total") == 0
    log = dp.stderr_text(20000)
    assert "SYN flood protection on fw-vm:fw-up: 10,000 SYN/s per source address" in log
    assert re.search(
        rf"SYN flood protection: [\d,]+ SYNs dropped in the kernel .*: {re.escape(lab.web1.ipv4)} [\d,]+", log
    ), log[-2000:]
