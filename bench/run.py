#!/usr/bin/env python3
"""Datasheet benchmark: the Linux bridge vs the ngfw dataplane, side by side, on one lab.

    python bench/run.py [--quick] [--only bridge,allow,rules1000] [--reps N]

client = web1 namespace, device under test = fw namespace, server = srv namespace (prefix "nb").
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from bench.lab_session import in_locked_lab, machine_info  # noqa: E402
from ngfw.lab import measure  # noqa: E402
from ngfw.lab.dataplane_process import (  # noqa: E402
    DataplaneProcess,
    DataplaneStartError,
    dataplane_unavailable,
    metric_by_label,
    metric_sum,
    repo_path,
    start_dataplane,
)
from ngfw.lab.lock import LabBusy  # noqa: E402
from ngfw.lab.netns import call_in, free_tcp_port, in_netns, read_proc_net, run_in, stop_process  # noqa: E402
from ngfw.lab.services import lab_services  # noqa: E402
from ngfw.lab.topology import Lab, interface_stats, lab_bridge_fw, lab_unbridge_fw  # noqa: E402

PREFIX = "nb"
CONFIGS = ("bridge", "bare", "allow", "rules1000", "etopen", "bypass")
ALLOW_ALL_POLICY = "rules/examples/allow-all.yaml"
IDENTITY_RULES = 1000
IPERF_PORT = 5201
# The 64-byte UDP test is a flood of new flows: the source port cycles over every port from 1024 and the
# destination port over UDP_SINK_PORTS sinks at once; 251 is prime, so a 5-tuple comes back only after
# 64,512 x 251 = 16.2 M frames, more than a run sends (10 s at the ~0.5 Mpps a 2-vCPU machine offers).
UDP_SINK_PORT = 20000
UDP_SINK_PORTS = 251
UDP_FLOWS = 65535 - 1024 + 1
HOME_NETS = ("client", "both")
MAX_PPS = 5_000_000  # trafgen's packet-count bound: duration x this
WRK_CONNECTIONS = 16
METRICS = ("tcp_gbps", "conn_per_s", "pps_offered", "pps_delivered", "ping_p50_us", "ping_p99_us")


@dataclass
class Durations:
    tcp: int = 10
    cps: int = 10
    pps: int = 10
    ping_count: int = 500

    @classmethod
    def quick(cls) -> Durations:
        return cls(tcp=3, cps=3, pps=3, ping_count=200)


@dataclass
class ConfigResult:
    name: str
    title: str
    skipped: str | None = None
    samples: dict[str, list[float | None]] = field(default_factory=lambda: {m: [] for m in METRICS})
    details: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    drops: list[dict[str, float]] = field(default_factory=list)

    def medians(self) -> dict[str, float | None]:
        return {m: measure.median(v) for m, v in self.samples.items()}


TITLES = {
    "bridge": "Linux bridge (baseline)",
    "bare": "bare C forwarder, TPACKET_V2 + poll (the I/O floor)",
    "allow": f"ngfw, {ALLOW_ALL_POLICY}",
    "rules1000": f"ngfw, {IDENTITY_RULES}-rule identity policy",
    "etopen": "ngfw, allow-all with every flow inspected by ET Open",
    "bypass": "ngfw, as etopen with flow bypass: the kernel forwards a flow past its inspection depth",
    "suricata": "Suricata 7, AF_PACKET IPS (--baseline suricata)",
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- measurements


def tcp_passive_opens(ns: str) -> int:
    """The server kernel's count of accepted TCP connections (Tcp: PassiveOpens in /proc/net/snmp)."""
    lines = [line.split() for line in read_proc_net(ns, "snmp").splitlines() if line.startswith("Tcp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("PassiveOpens")])


def measure_latency(lab: Lab, d: Durations) -> dict[str, Any]:
    argv = ["ping", "-i", "0.01", "-c", str(d.ping_count), "-W", "1", lab.srv.ipv4]
    done = call_in(lab.web1.ns, argv, timeout=d.ping_count * 0.01 + 20)
    rtts = measure.parse_ping_rtts(done.stdout)
    if not rtts:
        raise RuntimeError(f"ping got no replies (exit {done.returncode}): {done.stderr.strip()}")
    return {
        "ping_p50_us": measure.percentile(rtts, 50) * 1000,
        "ping_p99_us": measure.percentile(rtts, 99) * 1000,
        "ping_sent": d.ping_count,
        "ping_replies": len(rtts),
    }


def measure_tcp(lab: Lab, d: Durations) -> dict[str, Any]:
    argv = ["iperf3", "-c", lab.srv.ipv4, "-p", str(IPERF_PORT), "-t", str(d.tcp), "-J", "--connect-timeout", "3000"]
    done = call_in(lab.web1.ns, argv, timeout=d.tcp + 20)
    try:
        bps = measure.parse_iperf3_json(done.stdout)
    except ValueError as exc:
        raise RuntimeError(f"iperf3 (exit {done.returncode}): {exc} {done.stderr.strip()[:200]}") from None
    return {"tcp_gbps": bps / 1e9}


def measure_cps(lab: Lab, d: Durations) -> dict[str, Any]:
    url = f"http://{lab.srv.ipv4}/"
    argv = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{d.cps}s", "--timeout", "2s", "-H", "Connection: close", url]
    before = tcp_passive_opens(lab.srv.ns)
    start = time.monotonic()
    done = call_in(lab.web1.ns, argv, timeout=d.cps + 20)
    elapsed = time.monotonic() - start
    accepted = tcp_passive_opens(lab.srv.ns) - before
    rps, errors = measure.parse_wrk(done.stdout)
    # Connections the server accepted, per second of the run: every request is a new connection
    # (Connection: close), and this counts them where they land, not where the client thinks.
    return {"conn_per_s": accepted / elapsed, "wrk_requests_per_s": rps, "wrk_errors": errors}


def measure_pps(lab: Lab, d: Durations, workdir: Path) -> dict[str, Any]:
    cfg = workdir / "udp64.trafgen"
    cfg.write_text(
        measure.render_trafgen_udp(
            lab.web1.mac, lab.srv.mac, lab.web1.ipv4, lab.srv.ipv4, UDP_SINK_PORT, UDP_FLOWS, dst_ports=UDP_SINK_PORTS
        )
    )
    # The bridges learn where srv's MAC lives (else they flood every frame to every port).
    call_in(lab.web1.ns, ["ping", "-c", "1", "-W", "1", lab.srv.ipv4], timeout=5)
    argv = [
        "trafgen", "--dev", lab.web1.ifname, "--conf", str(cfg), "--cpus", "1", "--no-sock-mem",
        "--notouch-irq", "--num", str(d.pps * MAX_PPS),
    ]  # fmt: skip
    rx_before = interface_stats(lab.srv.ns, lab.srv.ifname)["rx_packets"]
    # Own session: SIGINT must reach trafgen's worker process too, which prints the sent count.
    proc = run_in(lab.web1.ns, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                  start_new_session=True)  # fmt: skip
    start = time.monotonic()
    try:
        out, _ = proc.communicate(timeout=d.pps)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    elapsed = time.monotonic() - start
    time.sleep(0.5)  # frames still queued on the path arrive
    rx = interface_stats(lab.srv.ns, lab.srv.ifname)["rx_packets"] - rx_before
    sent = measure.parse_trafgen_sent(out)
    if sent == 0:
        raise RuntimeError(f"trafgen sent nothing: {out.strip()[-300:]}")
    return {"pps_offered": sent / elapsed, "pps_delivered": rx / elapsed, "udp_sent": sent, "udp_received": rx}


def run_configuration(name: str, lab: Lab, d: Durations, workdir: Path, r: ConfigResult) -> None:
    try:
        with configuration(name, lab, workdir, r):
            run_measurements(lab, d, workdir, r)
    except (DataplaneStartError, ImportError, TypeError, ValueError, OSError) as exc:
        r.errors.append(f"setup: {exc}")
        log(f"{name}: setup failed: {exc}")
        for m in METRICS:
            r.samples[m].append(None)


def run_measurements(lab: Lab, d: Durations, workdir: Path, result: ConfigResult) -> None:
    """One repetition of every metric on the configuration in place; failures are recorded, not fatal."""
    detail: dict[str, Any] = {}
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("latency", lambda: measure_latency(lab, d)),
        ("tcp", lambda: measure_tcp(lab, d)),
        ("cps", lambda: measure_cps(lab, d)),
        ("pps", lambda: measure_pps(lab, d, workdir)),
    ]
    for name, step in steps:
        try:
            detail.update(step())
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            result.errors.append(f"{name}: {exc}")
            log(f"{result.name}: {name} failed: {exc}")
        time.sleep(0.5)
    for m in METRICS:
        result.samples[m].append(detail.get(m))
    result.details.append(detail)


# ---------------------------------------------------------------- configurations


def identity_policy_file(lab: Lab, workdir: Path) -> Path:
    from ngfw.compiler.generate import identity_policy  # the policy engineer's generator

    workloads = [{"name": w.name, "mac": w.mac, "ips": [w.ipv4, w.ipv6]} for w in lab.workloads]
    text = identity_policy(IDENTITY_RULES, workloads, f"{lab.srv.ipv4}/32", "bench")
    path = workdir / f"identity-{IDENTITY_RULES}.yaml"
    path.write_text(text)
    return path


def unavailable(name: str) -> str | None:
    """Why configuration `name` cannot run here (None when it can)."""
    if name == "bridge":
        return None
    if name == "suricata":
        return None if shutil.which("suricata") else "suricata is not installed (deploy/install.sh)"
    if name == "bare":
        return None if shutil.which("cc") else "no C compiler (cc) to build bench/bare_forwarder.c"
    reason = dataplane_unavailable()
    if reason:
        return f"the dataplane is not available yet: {reason}"
    if name == "allow" and not repo_path(ALLOW_ALL_POLICY).exists():
        return f"{ALLOW_ALL_POLICY} does not exist yet"
    if name == "rules1000":
        try:
            from ngfw.compiler.generate import identity_policy  # noqa: F401
        except ImportError as exc:
            return f"ngfw.compiler.generate.identity_policy is not available yet ({exc})"
    return None


DATAPLANE_ARGS: list[str] = []  # extra `ngfw dataplane` options for every ngfw configuration (--dataplane-args)
SURICATA_RULES: list[Path] = []  # rule files of the Suricata baseline (--suricata-rules)
HOME_NET = ["client"]  # --home-net


def home_net(lab: Lab) -> str:
    """HOME_NET of the ET Open rows and of Suricata: the protected workloads only (`client`, the usual
    configuration: the server is $EXTERNAL_NET) or the whole lab subnet (`both`)."""
    if HOME_NET[0] == "both":
        return f"[{lab.subnet4},{lab.subnet6}]"
    return "[" + ",".join(ip for w in lab.workloads for ip in (w.ipv4, w.ipv6)) + "]"


@contextlib.contextmanager
def suricata_baseline(lab: Lab, workdir: Path, result: ConfigResult) -> Iterator[None]:
    """Suricata 7 in AF_PACKET IPS mode on the dataplane's wire (bench/suricata_ips.py); its load time is kept."""
    from bench import suricata_ips

    def ping() -> bool:
        return call_in(lab.web1.ns, ["ping", "-c", "1", "-W", "1", lab.srv.ipv4], timeout=5).returncode == 0

    home = {"HOME_NET": home_net(lab)}
    ips_dir = Path(tempfile.mkdtemp(prefix="suricata-", dir=workdir))
    with suricata_ips.running(lab.fw_ns, lab.fw_vm, lab.fw_up, SURICATA_RULES, probe=ping, workdir=ips_dir,
                              variables=home) as ips:  # fmt: skip
        log(f"suricata: {ips.load.rules_loaded} rules, engine started after {ips.load.engine_started_s:.1f} s")
        result.details.append({"suricata_load": ips.load.as_dict()})
        yield
        if not ips.running():
            result.errors.append(f"suricata exited: {ips.process.tail(5)}")


@contextlib.contextmanager
def bare_forwarder(lab: Lab, workdir: Path, result: ConfigResult) -> Iterator[None]:
    """bench/bare_forwarder.c on the dataplane's wire: ngfw's I/O model (TPACKET_V2 rings, poll wake-ups)
    with no inspection at all, so what the model itself costs on this machine is measured in the same run."""
    binary = workdir / "bare_forwarder"
    if not binary.exists():
        subprocess.run(
            ["cc", "-O2", "-Wall", "-o", str(binary), str(HERE / "bare_forwarder.c")],
            check=True,
            capture_output=True,
            timeout=120,
        )
    proc = run_in(
        lab.fw_ns,
        [str(binary), lab.fw_vm, lab.fw_up, "3600"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while call_in(lab.web1.ns, ["ping", "-c", "1", "-W", "1", lab.srv.ipv4], timeout=5).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise OSError(
                    f"bare forwarder did not forward: {proc.stderr.read().decode()[-300:] if proc.stderr else ''}"
                )
        yield
        if proc.poll() is not None:
            result.errors.append(f"bare forwarder exited with {proc.returncode}")
    finally:
        stop_process(proc)


@contextlib.contextmanager
def configuration(name: str, lab: Lab, workdir: Path, result: ConfigResult) -> Iterator[DataplaneProcess | None]:
    """Put configuration `name` in place between fw-vm and fw-up for the block; undo it afterwards."""
    if name == "bare":
        with bare_forwarder(lab, workdir, result):
            yield None
        return
    if name == "suricata":
        with suricata_baseline(lab, workdir, result):
            yield None
        return
    if name == "bridge":
        lab_bridge_fw(lab)
        try:
            yield None
        finally:
            lab_unbridge_fw(lab)
        return
    # flow bypass is on by default; the other ngfw rows measure the packet loop itself
    extra = list(DATAPLANE_ARGS) + ([] if name == "bypass" else ["--no-bypass"])
    if name == "allow":
        policy = repo_path(ALLOW_ALL_POLICY)
    elif name in ("etopen", "bypass"):
        # the same rules and HOME_NET the Suricata baseline gets; every allowed flow is inspected
        policy = workdir / "allow-all-inspect.yaml"
        policy.write_text(
            repo_path(ALLOW_ALL_POLICY)
            .read_text()
            .replace("      action: allow", "      action: allow\n      inspect: default")
        )
        extra += ["--rules", f"et={_et_open()}", "--var", f"HOME_NET={home_net(lab)}"]
    else:
        policy = identity_policy_file(lab, workdir)
    dp_dir = Path(tempfile.mkdtemp(prefix=f"dp-{name}-", dir=workdir))
    started_at = time.monotonic()
    dp = start_dataplane(
        lab.fw_ns,
        policy,
        free_tcp_port(lab.fw_ns),
        workdir=dp_dir,
        extra_args=extra,
        **({"ready_timeout": 120.0} if name in ("etopen", "bypass") else {}),
    )
    if name in ("etopen", "bypass"):
        result.details.append({"ngfw_ready_s": time.monotonic() - started_at})
    try:
        yield dp
        try:
            samples = dp.metrics()
            drops = metric_by_label(samples, "ngfw_drops_total", "reason")
            # frames lost before the dataplane read them (its receive ring was full)
            drops["kernel_ring_full"] = metric_sum(samples, "ngfw_port_kernel_drops_total")
            if name == "bypass":
                # what the kernel forwarded for bypassed flows, against what the packet loop received
                result.details.append(
                    {
                        "bypass": {
                            "flows": metric_sum(samples, "ngfw_bypass_flows_total"),
                            "packets": metric_sum(samples, "ngfw_bypass_packets_total"),
                            "map_full": metric_sum(samples, "ngfw_bypass_map_full_total"),
                            "loop_rx_packets": metric_sum(samples, "ngfw_port_rx_packets_total"),
                        }
                    }
                )
        except OSError as exc:
            drops = {}
            result.errors.append(f"metrics scrape: {exc}")
        result.drops.append(drops)
        if not dp.running():
            result.errors.append(f"dataplane exited with {dp.proc.returncode}: {dp.stderr_text(500)}")
    finally:
        dp.stop()


# ---------------------------------------------------------------- report


def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "gbps":
        return f"{value:.2f}"
    if kind == "us":
        return f"{value:.0f}"
    return f"{value:,.0f}".replace(",", " ")


def markdown_table(results: list[ConfigResult]) -> str:
    base = next((r.medians() for r in results if r.name == "bridge" and not r.skipped), None)
    head = (
        "| configuration | TCP Gbit/s | conn/s | UDP 64 B pps offered | pps delivered | delivered | "
        "ping p50 µs | ping p99 µs | ngfw drops |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in results:
        if r.skipped:
            continue
        m = r.medians()

        def cell(metric: str, kind: str, m: dict[str, float | None] = m, r: ConfigResult = r) -> str:
            value, ref = m[metric], base[metric] if base is not None else None
            text = fmt(value, kind)
            if r.name == "bridge" or value is None or ref is None:
                return text
            if kind == "us":  # latency: show what the dataplane adds
                return f"{text} ({value - ref:+.0f})"
            q = measure.ratio(value, ref)
            return f"{text} ({q:.2f}×)" if q is not None else text

        delivered = measure.ratio(m["pps_delivered"], m["pps_offered"])
        drops = "-" if r.name == "bridge" else _drops_cell(r.drops)
        lines.append(
            f"| {r.title} | {cell('tcp_gbps', 'gbps')} | {cell('conn_per_s', 'n')} | {cell('pps_offered', 'n')} | "
            f"{cell('pps_delivered', 'n')} | {'n/a' if delivered is None else f'{delivered:.1%}'} | "
            f"{cell('ping_p50_us', 'us')} | {cell('ping_p99_us', 'us')} | {drops} |"
        )
    return "\n".join(lines)


def _drops_cell(drops: list[dict[str, float]]) -> str:
    if not drops:
        return "n/a"
    total: dict[str, float] = {}
    for run in drops:
        for reason, v in run.items():
            total[reason] = total.get(reason, 0.0) + v
    shown = {k: v for k, v in total.items() if v}
    return ", ".join(f"{k or '-'}={v:g}" for k, v in sorted(shown.items())) or "0"


# ---------------------------------------------------------------- main


def interleaved(names: list[str], rep: int) -> list[str]:
    """Rotate the order every repetition, so slow drifts of a shared machine spread over all configurations."""
    k = rep % len(names)
    return names[k:] + names[:k]


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("bench: needs root (it builds network namespaces)", file=sys.stderr)
        return 2
    durations = Durations.quick() if args.quick else Durations()
    import shlex

    DATAPLANE_ARGS[:] = shlex.split(args.dataplane_args)
    HOME_NET[0] = args.home_net
    reps = 1 if args.quick and args.reps is None else (args.reps or 3)
    names = [n.strip() for n in args.only.split(",")] if args.only else list(CONFIGS)
    bad = [n for n in names if n not in CONFIGS]
    if bad:
        print(f"bench: unknown configuration(s) {bad}; choose from {', '.join(CONFIGS)}", file=sys.stderr)
        return 2
    if args.baseline == "suricata":
        names.append("suricata")
        SURICATA_RULES[:] = args.suricata_rules or sorted(_et_open().glob("*.rules"))
    results = {n: ConfigResult(n, TITLES[n]) for n in names}
    for n in names:
        results[n].skipped = unavailable(n)
        if results[n].skipped:
            log(f"skipping {n}: {results[n].skipped}")
    active = [n for n in names if not results[n].skipped]

    started = datetime.now(UTC)
    info = machine_info()
    log(f"{len(active)} configuration(s) x {reps} repetition(s) on {info['cpus']} CPUs ({info['cpu_model']}), "
        f"load {info['loadavg_at_start'][0]:.2f}, HOME_NET={args.home_net}; the machine is shared: expect noise")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="ngfw-bench-"))

    def measure_all(lab: Lab) -> int:
        with lab_services(lab), _servers(lab):
            for rep in range(reps):
                for name in interleaved(active, rep):
                    log(f"rep {rep + 1}/{reps}: {name}")
                    run_configuration(name, lab, durations, workdir, results[name])
        return 0

    try:
        status = in_locked_lab(args.prefix, measure_all, log) if active else 0
    except LabBusy as exc:
        print(f"bench: {exc} (another benchmark is running?)", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    ordered = [results[n] for n in names]
    table = markdown_table(ordered)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    doc = {
        "started": started.isoformat(),
        "finished": datetime.now(UTC).isoformat(),
        "machine": info,
        "options": {
            "quick": args.quick,
            "repetitions": reps,
            "only": names,
            "durations": durations.__dict__,
            "home_net": args.home_net,
        },
        "load_at_end": list(os.getloadavg()),
        "configurations": {
            r.name: {
                "title": r.title,
                "skipped": r.skipped,
                "median": r.medians() if not r.skipped else None,
                "samples": r.samples if not r.skipped else None,
                "details": r.details,
                "errors": r.errors,
                "ngfw_drops_total": r.drops,
            }
            for r in ordered
        },
        "table_markdown": table,
    }
    path = out_dir / f"bench-{stamp}.json"
    path.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")

    print(f"## ngfw benchmark, {started:%Y-%m-%d %H:%M} UTC, {reps} repetition(s), medians\n")
    print(f"{info['cpus']} CPUs ({info['cpu_model']}), kernel {info['kernel']}, shared and noisy machine. "
          f"HOME_NET = {args.home_net} ({'web1 and web2' if args.home_net == 'client' else 'the lab subnet'}), "
          f"load {info['loadavg_at_start'][0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end. "
          f"Ratios to the Linux bridge in parentheses; latency shows µs added to the bridge.\n")  # fmt: skip
    print(table)
    for r in ordered:
        if r.skipped:
            print(f"\n- skipped **{r.name}**: {r.skipped}")
        for e in r.errors:
            print(f"\n- error in **{r.name}**: {e}")
    print(f"\nJSON: {path}")
    if any(r.errors for r in ordered):
        status = status or 1
    return status


@contextlib.contextmanager
def _servers(lab: Lab) -> Iterator[None]:
    """iperf3 server and UDP sinks in srv (they keep the kernel from answering ICMP port unreachable)."""
    iperf = run_in(lab.srv.ns, ["iperf3", "-s", "-B", lab.srv.ipv4, "-p", str(IPERF_PORT)],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   start_new_session=True)  # fmt: skip
    sinks = []
    with in_netns(lab.srv.ns):
        for port in range(UDP_SINK_PORT, UDP_SINK_PORT + UDP_SINK_PORTS):
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sinks.append(sink)
            sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sink.bind((lab.srv.ipv4, port))
    try:
        deadline = time.monotonic() + 10
        while IPERF_PORT not in _tcp_listeners(lab) and time.monotonic() < deadline:
            if iperf.poll() is not None:
                raise RuntimeError(f"iperf3 server exited with {iperf.returncode}")
            time.sleep(0.05)
        yield
    finally:
        for sink in sinks:
            sink.close()
        stop_process(iperf)


def _tcp_listeners(lab: Lab) -> set[int]:
    from ngfw.lab.services import listening

    return listening(lab.srv.ns, "tcp")


def _et_open() -> Path:
    from ngfw.corpus import corpus

    return corpus("et-open")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s per measurement, 1 repetition")
    parser.add_argument(
        "--dataplane-args",
        default="",
        metavar="ARGS",
        help="extra options for `ngfw dataplane`, e.g. '--idle-spin-us 100000'",
    )
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument(
        "--reps", type=int, default=None, help="repetitions per configuration (default 3; 1 with --quick)"
    )
    parser.add_argument("--out", default=str(HERE / "out"), help="directory for the JSON results")
    parser.add_argument("--prefix", default=PREFIX, help="namespace name prefix")
    parser.add_argument("--baseline", choices=("suricata",), help="also measure Suricata 7 inline on the same wire")
    parser.add_argument(
        "--home-net",
        choices=HOME_NETS,
        default="client",
        help="HOME_NET of the ET Open rows and Suricata: web1 and web2 only (default; the server is "
        "$EXTERNAL_NET, the usual perimeter configuration) or the whole lab subnet",
    )
    parser.add_argument(
        "--suricata-rules",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="rules of the Suricata baseline (default: the ET Open corpus)",
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
