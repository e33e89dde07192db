"""`ngfw sessions` with 100,000 live flows: how fast it answers, and what the packet loop forwards meanwhile.

    sudo .venv/bin/python bench/sessions.py [--flows 100000] [--json]      # the lab (root)
    .venv/bin/python bench/sessions.py --engine-only                         # the loop requests alone (no root)

The lab under its own prefix ("nse"): `ngfw dataplane` on the lab wire with the lab policy (quotas lifted, and two
rules: web -> 10.77.0.200 udp, web -> srv tcp/5201). trafgen in web2 sends one UDP datagram per flow to
10.77.0.200 (srv's MAC, an address nobody has: nothing answers) until the dataplane holds `--flows` flows
(`--timeout udp=900` keeps them). Then windows of 10 s with a ping every 10 ms (web1 -> srv) through the
dataplane, or iperf3 (web1 -> srv, TCP): without listings; with `ngfw sessions` queries back to back (a new CLI
process each, over the dataplane's socket): a workload's flows (`vm=web-01`: the table is scanned whole, a few
flows match) and the first 100 rows of everything (`--limit 100`); and with full dumps (`--json`, 100,000
rows) back to back. Reported: each command's wall time (process start included; and the
same answers over the socket from this process), the ping's round trips and losses, iperf3's throughput, and
the frames the kernel dropped on the dataplane's rings (a loop that stalled would show there).

`--engine-only`: an engine holding `--flows` flows, the loop requests alone (`Engine.list_sessions` with the
default 16,384 slots per request): how long each one holds the packet loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

REPO = Path(__file__).resolve().parents[1]
PREFIX = "nse"
IPERF_PORT = 5201
FILL_IP = "10.77.0.200"
PHASE = 10.0


def bench_policy(path: Path) -> Path:
    text = (REPO / "rules" / "examples" / "lab.yaml").read_text()
    text = re.sub(r"spec:\n  limits:\n(    .*\n)+", "spec: {}\n", text, count=1)  # the tenant's quotas
    text = text.replace(
        "  rules:\n",
        "  rules:\n"
        f"    - {{name: bench-fill, from: [group:web], to: [cidr:{FILL_IP}/32], services: [udp], "
        "action: allow}\n"
        f"    - {{name: bench-iperf, from: [group:web], to: [cidr:10.77.0.100/32], "
        f"services: [tcp/{IPERF_PORT}], action: allow}}\n",
        1,
    )
    path.write_text(text)
    return path


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] if values else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": round(statistics.median(values), 4) if values else None,
        "p95": round(percentile(values, 95), 4),
        "max": round(max(values), 4) if values else None,
    }


# ---------------------------------------------------------------- the loop requests alone


def engine_only(flows: int) -> dict[str, Any]:
    from ngfw._fastpath import engine as fp
    from ngfw.compiler.policy import load_policy

    with tempfile.TemporaryDirectory() as tmp:
        policy = load_policy(bench_policy(Path(tmp) / "policy.yaml"))
    engine = fp.Engine(flow_capacity=262144)
    vm = engine.add_sink_port("vm", 0)
    engine.add_sink_port("up", 0)
    engine.set_tables(fp.Tables(policy, {}))
    web2_mac, srv_mac = bytes.fromhex("020000000102"), bytes.fromhex("020000000201")
    for n in range(flows):
        udp = struct.pack("!HHHH", 1024 + n % 50000, 9 + n // 50000, 8, 0)
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            28,
            1,
            0x4000,
            64,
            17,
            0,
            socket.inet_aton("10.77.0.12"),
            socket.inet_aton(FILL_IP),
        )
        engine.inject(vm, srv_mac + web2_mac + b"\x08\x00" + ip + udp)
    held: dict[str, list[float]] = {"no flow matches": [], "every flow matches": [], "a workload (by address)": []}
    filters = {"no flow matches": {"sport": 7}, "every flow matches": {}, "a workload (by address)": {"workloads": [0]}}
    for _ in range(3):
        for name, flt in filters.items():
            cursor = 0
            while True:
                out = engine.list_sessions(flt, cursor=cursor, limit=5000, max_scan=16384)
                held[name].append(out["loop_ns"] / 1e6)
                cursor = out["cursor"]
                if cursor == 0:
                    break
    return {
        "flows": engine.stats()["flows_active"],
        "table_slots": engine.table_slots(),
        "slots_per_request": 16384,
        "loop_ms_per_request": {name: summary(v) for name, v in held.items()},
    }


# ---------------------------------------------------------------- the lab


def run_lab(flows: int, workdir: Path) -> dict[str, Any]:
    from ngfw.lab.dataplane_process import DataplaneProcess, dataplane_env, default_dataplane_argv
    from ngfw.lab.lock import lock_prefix, release
    from ngfw.lab.netns import call_in, free_tcp_port, run_in, stop_process
    from ngfw.lab.topology import lab_down, lab_up

    lock = lock_prefix(PREFIX)
    try:
        lab = lab_up(PREFIX)
        iperf = None
        dp = None
        try:
            iperf = run_in(
                lab.srv.ns,
                ["iperf3", "-s", "-B", lab.srv.ipv4, "-p", str(IPERF_PORT)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            sock = str(workdir / "dp.sock")
            port = free_tcp_port(lab.fw_ns)
            argv = [
                *default_dataplane_argv(
                    str(bench_policy(workdir / "policy.yaml")), f"127.0.0.1:{port}", str(workdir / "eve.json")
                ),
                "--state-dir",
                "none",
                "--socket",
                sock,
                "--timeout",
                "udp=900",
            ]
            dp = DataplaneProcess(lab.fw_ns, argv, "127.0.0.1", port, workdir / "eve.json", workdir)
            dp.wait_ready()
            filled = fill(lab, dp, flows, workdir, call_in)
            env = dataplane_env()
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # the CLI as installed: its modules' bytecode cached

            def cli(*args: str) -> tuple[float, float, int]:
                """(wall seconds, CPU seconds of the CLI process, lines it printed)."""
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                started = time.monotonic()
                done = subprocess.run(
                    [sys.executable, "-m", "ngfw", "sessions", "--socket", sock, *args],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=60,
                )
                took = time.monotonic() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                if done.returncode != 0:
                    raise RuntimeError(f"ngfw sessions {' '.join(args)}: {done.stderr.strip()}")
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                return took, cpu, len(done.stdout.splitlines())

            result = measure(lab, dp, cli, sock, run_in, stop_process)
            result["flows"] = filled
            return result
        finally:
            if dp is not None:
                dp.stop()
            if iperf is not None:
                stop_process(iperf)
            lab_down(PREFIX)
    finally:
        release(lock)


def fill(lab: Any, dp: Any, flows: int, workdir: Path, call_in: Any) -> int:
    """UDP flows web2 -> 10.77.0.200 (srv's MAC), 50,000 source ports per destination port."""
    call_in(lab.web2.ns, ["ping", "-c", "1", "-W", "1", lab.srv.ipv4], timeout=5)  # the bridges learn srv's MAC
    per_port = 50000
    for round_no in range(8):
        for i, dport in enumerate(range(9, 9 + (flows + per_port - 1) // per_port)):
            count = min(per_port, flows - i * per_port)
            conf = workdir / f"fill-{dport}.trafgen"
            conf.write_text(
                "{\n"
                f"  eth(da={lab.srv.mac}, sa={lab.web2.mac}),\n"
                f"  ipv4(sa={lab.web2.ipv4}, da={FILL_IP}, ttl=64),\n"
                f"  udp(sp=dinc(1024, {1024 + count - 1}), dp={dport}),\n"
                "  fill(0x00, 18)\n}\n"
            )
            done = call_in(
                lab.web2.ns,
                [
                    "trafgen",
                    "--dev",
                    lab.web2.ifname,
                    "--conf",
                    str(conf),
                    "--cpus",
                    "1",
                    "--num",
                    str(count),
                    "--rate",
                    "25000pps",
                    "--no-sock-mem",
                    "--notouch-irq",
                ],
                timeout=60,
            )
            if done.returncode != 0:
                raise RuntimeError(f"trafgen: {done.stderr.strip()[-500:]}")
        metrics = dp.metrics()
        active = int(metrics[("ngfw_flows_active", ())])
        print(
            f"fill round {round_no}: {active} flows; drops "
            f"{ {dict(k[1]).get('reason'): v for k, v in metrics.items() if k[0] == 'ngfw_drops_total' and v} }",
            file=sys.stderr,
        )
        if active >= flows:
            return active
    return active


# what an operator runs (a workload's flows: the whole table is scanned, a few match; the first rows of all)
QUERIES = (
    ("vm=web-01 (whole table scanned)", ("vm=web-01", "--json")),
    ("--limit 100 (first rows)", ("--limit", "100")),
)
DUMPS = (("--json (every flow)", ("--json",)),)  # every flow: 100,000 JSON lines


def measure(lab: Any, dp: Any, cli: Any, sock: str, run_in: Any, stop_process: Any) -> dict[str, Any]:
    """Four windows of PHASE s: pings alone, pings with listings, iperf3 alone, iperf3 with listings."""
    result: dict[str, Any] = {}
    for traffic in ("ping", "iperf3"):
        for label, commands in (("", ()), (" + queries", QUERIES), (" + full dumps", DUMPS)):
            name = f"{traffic}{label}"
            result[name] = window(lab, dp, cli, sock, run_in, stop_process, traffic, commands)
            print(f"{name}: {json.dumps(result[name])}", file=sys.stderr)
    return result


def window(
    lab: Any,
    dp: Any,
    cli: Any,
    sock: str,
    run_in: Any,
    stop_process: Any,
    traffic: str,
    commands: tuple[tuple[str, tuple[str, ...]], ...],
) -> dict[str, Any]:
    from ngfw.dataplane.opsocket import OperationsClient

    def kernel_drops() -> float:
        return sum(v for (name, _), v in dp.metrics().items() if name == "ngfw_port_kernel_drops_total")

    if traffic == "iperf3":
        proc = run_in(
            lab.web1.ns,
            ["iperf3", "-c", lab.srv.ipv4, "-p", str(IPERF_PORT), "-t", str(int(PHASE + 1)), "-i", "0.5", "-J"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    else:
        proc = run_in(
            lab.web1.ns,
            ["ping", "-i", "0.01", "-c", str(int(PHASE * 100)), "-W", "1", lab.srv.ipv4],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
    drops = kernel_drops()
    timings: dict[str, list[float]] = {name: [] for name, _ in commands}
    cpus: dict[str, list[float]] = {name: [] for name, _ in commands}
    listing = bool(commands)
    rows: dict[str, int] = {}
    in_process: dict[str, list[float]] = {"first record of every flow": [], "vm=web-01": []}
    deadline = time.monotonic() + PHASE - 0.5
    n = 0
    while listing and time.monotonic() < deadline:
        name, args = commands[n % len(commands)]
        took, cpu, lines = cli(*args)
        timings[name].append(took)
        cpus[name].append(cpu)
        rows[name] = lines
        n += 1
        if commands is QUERIES and n % 2 == 0:  # the same answers without the CLI process's start
            with OperationsClient(sock) as client:
                t0 = time.monotonic()
                next(iter(client.sessions({})))
                in_process["first record of every flow"].append(time.monotonic() - t0)
            with OperationsClient(sock) as client:
                t0 = time.monotonic()
                list(client.sessions({"vm": "web-01"}))
                in_process["vm=web-01"].append(time.monotonic() - t0)
    out, _ = proc.communicate(timeout=PHASE + 30)
    result: dict[str, Any] = {"kernel_drops": kernel_drops() - drops}
    if traffic == "iperf3":
        gbits = [i["sum"]["bits_per_second"] / 1e9 for i in json.loads(out)["intervals"]]
        result["iperf3_gbps"] = {"mean": round(statistics.mean(gbits), 3), "min_half_second": round(min(gbits), 3)}
    else:
        rtts = [float(x) for x in re.findall(r"time=([\d.]+) ms", out)]
        result["ping_ms"] = {
            "p50": round(percentile(rtts, 50), 3),
            "p99": round(percentile(rtts, 99), 3),
            "max": round(max(rtts), 3) if rtts else None,
        }
        result["ping_replies"] = f"{len(rtts)}/{int(PHASE * 100)}"
    if listing:
        result["cli_seconds"] = {k: {**summary(v), "rows": rows.get(k)} for k, v in timings.items() if v}
        result["cli_cpu_seconds"] = {k: summary(v) for k, v in cpus.items() if v}
        result["in_process_seconds"] = {k: summary(v) for k, v in in_process.items() if v}
    stop_process(proc)
    return result


def python_start() -> dict[str, float]:
    """What starting any Python process costs on this machine now (the CLI's floor)."""
    walls = []
    for _ in range(5):
        started = time.monotonic()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        walls.append(time.monotonic() - started)
    return summary(walls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--engine-only", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} vCPU, {platform.release()}",
        "load_average": os.getloadavg(),
    }
    if args.engine_only:
        result = {**info, **engine_only(args.flows)}
    else:
        if os.geteuid() != 0:
            print("bench/sessions.py: run as root (network namespaces), or --engine-only", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory(prefix="ngfw-bench-sessions-") as tmp:
            result = {**info, "python_start_seconds": python_start(), **run_lab(args.flows, Path(tmp))}
        result["load_average_after"] = os.getloadavg()
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
