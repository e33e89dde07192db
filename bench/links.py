"""Links that come and go: time from the uplink being up again to the first reply the dataplane forwards,
without a restart (root; network namespaces).

    sudo .venv/bin/python bench/links.py [--runs 9] [--json]

The lab under its own prefix ("nlk"), nginx on srv, one `ngfw dataplane` on the lab wire for the whole run.
Each run of "re-created" deletes the uplink's veth pair (fw-up and its peer on br-up), waits until the
dataplane says the port is down (`ngfw_port_up` 0), creates the pair again (a new ifindex, the peer on br-up,
offloads off, both ends up: `ngfw.lab.legs.restore_leg`) and from that moment sends web1 -> srv:80 a new SYN
every 5 ms until one handshake completes (the SYN-ACK is the first reply the dataplane forwarded back,
`ngfw.lab.probe.time_to_connect`). "down/up" does the same with `ip link set fw-up down` / `up` (the ring
stays; the port is marked down and up). The runs are interleaved. Then 20 fast re-creation flaps, and what
the dataplane holds open (descriptors and mapped rings) before and after.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw.lab.dataplane_process import DataplaneProcess, metric_sum, parse_metrics, start_dataplane
from ngfw.lab.legs import remove_leg, restore_leg, set_leg_state
from ngfw.lab.lock import lock_prefix, release
from ngfw.lab.netns import free_tcp_port
from ngfw.lab.probe import connects, time_to_connect
from ngfw.lab.services import lab_services
from ngfw.lab.topology import lab_down, lab_up

POLICY = Path(__file__).resolve().parents[1] / "rules" / "examples" / "lab.yaml"
PREFIX = "nlk"
SERVER = ("10.77.0.100", 80)


def port_up(dp: DataplaneProcess, port: str) -> float:
    return metric_sum(parse_metrics(dp.metrics_text()), "ngfw_port_up", port=port)


def wait_port(dp: DataplaneProcess, port: str, value: float, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while port_up(dp, port) != value:
        if time.monotonic() > deadline:
            raise RuntimeError(f"ngfw_port_up{{port={port}}} did not become {value}:\n{dp.stderr_text()}")
        time.sleep(0.02)


def held(pid: int) -> int:
    with open(f"/proc/{pid}/maps") as maps:
        rings = sum(1 for line in maps if "socket:[" in line)
    return len(os.listdir(f"/proc/{pid}/fd")) + rings


def recreated(lab: Any, dp: DataplaneProcess) -> float | None:
    remove_leg(lab, "up")
    wait_port(dp, lab.fw_up, 0)
    restore_leg(lab, "up")
    return time_to_connect(lab.web1.ns, SERVER, since=time.monotonic(), limit=5.0)


def down_up(lab: Any, dp: DataplaneProcess) -> float | None:
    set_leg_state(lab, "up", "down")
    wait_port(dp, lab.fw_up, 0)
    set_leg_state(lab, "up", "up")
    return time_to_connect(lab.web1.ns, SERVER, since=time.monotonic(), limit=5.0)


def summary(values: list[float | None]) -> dict[str, Any]:
    done = [v for v in values if v is not None]
    return {
        "runs": len(values),
        "failed": len(values) - len(done),
        "median_s": statistics.median(done) if done else None,
        "min_s": min(done) if done else None,
        "max_s": max(done) if done else None,
        "all_s": [round(v, 4) if v is not None else None for v in values],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9, help="runs of each (9)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    lock = lock_prefix(PREFIX)
    workdir = Path(tempfile.mkdtemp(prefix="ngfw-links-bench-"))
    times: dict[str, list[float | None]] = {"re-created": [], "down/up": []}
    try:
        lab = lab_up(PREFIX)
        with lab_services(lab):
            dp = start_dataplane(
                lab.fw_ns, POLICY, free_tcp_port(lab.fw_ns), workdir=workdir, extra_args=["--state-dir", "none"]
            )
            try:
                if not connects(lab.web1.ns, SERVER, timeout=2.0):
                    raise RuntimeError(f"no connection through the dataplane:\n{dp.stderr_text()}")
                before = held(dp.pid)
                for _ in range(args.runs):
                    times["re-created"].append(recreated(lab, dp))
                    times["down/up"].append(down_up(lab, dp))
                started = time.monotonic()
                for _ in range(20):
                    remove_leg(lab, "up")
                    restore_leg(lab, "up")
                flaps_s = time.monotonic() - started
                after_flaps = time_to_connect(lab.web1.ns, SERVER, since=time.monotonic(), limit=5.0)
                time.sleep(0.5)
                after = held(dp.pid)
                text = dp.metrics_text()
                events = {
                    e: metric_sum(parse_metrics(text), "ngfw_port_events_total", port=lab.fw_up, event=e)
                    for e in ("down", "up", "removed", "reattached")
                }
            finally:
                dp.stop()
    finally:
        lab_down(PREFIX)
        release(lock)

    results = {
        "machine": f"{platform.node()} {platform.machine()} {multiprocessing.cpu_count()} cpu, kernel {platform.release()}",
        "date": time.strftime("%Y-%m-%d"),
        "link_up_to_first_forwarded_reply": {name: summary(values) for name, values in times.items()},
        "flaps": {
            "count": 20,
            "seconds": round(flaps_s, 2),
            "first_reply_after_s": after_flaps,
            "held_before": before,
            "held_after": after,
            "events": events,
        },
    }
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"{results['machine']}, {results['date']}")
        for name, s in results["link_up_to_first_forwarded_reply"].items():
            if s["median_s"] is None:
                print(f"{name}: no reply within 5 s in any of {s['runs']} runs")
                continue
            print(
                f"{name}: uplink up -> first forwarded reply: median {s['median_s'] * 1000:.1f} ms, min "
                f"{s['min_s'] * 1000:.1f} ms, max {s['max_s'] * 1000:.1f} ms ({s['runs']} runs, {s['failed']} "
                "without one within 5 s)"
            )
        f = results["flaps"]
        print(
            f"20 re-creations in {f['seconds']} s: first reply {f['first_reply_after_s']} s after the last; "
            f"descriptors + rings held {f['held_before']} -> {f['held_after']}; events {f['events']}"
        )
    ok = all(s["failed"] == 0 for s in results["link_up_to_first_forwarded_reply"].values())
    return 0 if ok and results["flaps"]["held_before"] == results["flaps"]["held_after"] else 1


if __name__ == "__main__":
    sys.exit(main())
