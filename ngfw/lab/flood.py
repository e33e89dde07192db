"""A SYN flood through the lab's dataplane, and what users see meanwhile (root, lab namespaces only).

- `SynFlood`: trafgen in a workload's namespace sends TCP SYNs from that workload's own address (the dataplane's
  anti-spoofing drops any other) with random source ports and sequence numbers, as fast as one CPU lets it
  (or at `rate`), bounded in time and in count.
- `KeepAliveDownload`: one established TCP connection (curl, HTTP keep-alive) downloading the server's big file
  over and over; when each download ended and how many bytes it carried, so the rate of the same connection
  before and during a flood can be compared.
- `new_connections`: new HTTP connections, each its own curl: how many got their page.
- `process_memory`, `file_resident_bytes`: what a process holds in memory, and what a tmpfs file holds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ngfw.lab import measure
from ngfw.lab.netns import call_in, run_in
from ngfw.lab.topology import Endpoint

MAX_FLOOD_PPS = 5_000_000  # the count bound of a flood: its duration x this


def render_trafgen_syn(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, dst_port: int, payload: int = 0) -> str:
    """A trafgen config: TCP SYNs to `dst_ip:dst_port`, random source port and sequence number per frame, 54-byte
    frames (veth pads nothing), or carrying `payload` bytes of data (TCP Fast Open does; so can an attacker)."""
    data = f",\n  fill(0x41, {payload})" if payload else ""
    return (
        "{\n"
        f"  eth(da={dst_mac}, sa={src_mac}),\n"
        f"  ipv4(sa={src_ip}, da={dst_ip}, ttl=64),\n"
        f"  tcp(sp=drnd(1024, 65535), dp={dst_port}, seq=drnd(), syn, window=64240){data}\n"
        "}\n"
    )


@dataclass
class FloodResult:
    sent: int = 0
    seconds: float = 0.0
    output: str = ""

    @property
    def pps(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


class SynFlood:
    """trafgen flooding `dst:dst_port` with SYNs from `src`'s namespace, for at most `seconds` (start, then stop)."""

    def __init__(
        self,
        src: Endpoint,
        dst: Endpoint,
        dst_port: int,
        seconds: float,
        workdir: Path,
        rate_pps: int | None = None,
        payload: int = 0,
    ) -> None:
        self.src = src
        self.seconds = seconds
        self.config = workdir / f"synflood-{src.name}.trafgen"
        self.config.write_text(render_trafgen_syn(src.mac, dst.mac, src.ipv4, dst.ipv4, dst_port, payload))
        self.argv = [
            "trafgen",
            "--dev",
            src.ifname,
            "--conf",
            str(self.config),
            "--cpus",
            "1",
            "--no-sock-mem",
            "--notouch-irq",
            "--num",
            str(int(seconds * MAX_FLOOD_PPS)),
        ]
        if rate_pps:
            self.argv += ["--rate", f"{rate_pps}pps"]
        self.proc: subprocess.Popen[str] | None = None
        self.started = 0.0
        self.result = FloodResult()

    def start(self) -> SynFlood:
        # a session of its own: SIGINT must reach trafgen's worker, which prints the count it sent
        self.proc = run_in(
            self.src.ns,
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.started = time.monotonic()
        return self

    def stop(self) -> FloodResult:
        """Stop the flood (at the latest when its time is up) and return what it sent."""
        if self.proc is None:
            return self.result
        left = self.started + self.seconds - time.monotonic()
        try:
            out, _ = self.proc.communicate(timeout=max(left, 0.01))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                out, _ = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                out, _ = self.proc.communicate()
        self.result = FloodResult(measure.parse_trafgen_sent(out), time.monotonic() - self.started, out[-500:])
        self.proc = None
        return self.result

    def __enter__(self) -> SynFlood:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Download:
    ended: float  # time.monotonic() when curl reported it
    seconds: float
    size: int
    connects: int  # new connections curl made for it (0: it reused the established one)


@dataclass
class KeepAliveDownload:
    """curl downloading `url` up to `count` times over one kept-alive connection, from `ns`."""

    ns: str
    url: str
    count: int = 2000
    timeout: float = 120.0
    limit_bps: int | None = None  # paced by the client (curl --limit-rate): a transfer with room to spare
    downloads: list[Download] = field(default_factory=list)
    error: str = ""

    def start(self) -> KeepAliveDownload:
        argv = [
            "curl",
            "-sS",
            "--max-time",
            str(self.timeout),
            "-w",
            "%{stderr}%{time_total} %{size_download} %{num_connects}\\n",
        ]
        if self.limit_bps:
            argv += ["--limit-rate", str(self.limit_bps // 8)]
        for _ in range(self.count):
            argv += ["-o", "/dev/null", self.url]
        # the -w lines go to stderr, which curl does not buffer: each arrives when its download ends
        self._proc = run_in(
            self.ns,
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            parts = line.split()
            try:
                self.downloads.append(Download(time.monotonic(), float(parts[0]), int(parts[1]), int(parts[2])))
            except (ValueError, IndexError):
                self.error = line.strip()[-300:]  # curl's own message

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)

    def connections(self) -> int:
        return sum(d.connects for d in self.downloads)

    def rate_bps(self, start: float, end: float) -> float:
        """Bits per second the connection carried between two time.monotonic() instants (downloads that
        straddle an edge count for the part inside, assuming an even rate within one download)."""
        bits = 0.0
        for d in self.downloads:
            began = d.ended - d.seconds
            inside = min(d.ended, end) - max(began, start)
            if inside > 0 and d.seconds > 0:
                bits += d.size * 8 * inside / d.seconds
        return bits / (end - start) if end > start else 0.0


def new_connections(
    ns: str, url: str, count: int, interval: float = 0.2, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """`count` new HTTP connections to `url` from `ns`, started `interval` s apart, each its own curl (a new TCP
    connection, SYN retransmissions and all): their status, how long each took, and curl's error if any."""
    results: list[dict[str, Any]] = [{} for _ in range(count)]

    def one(i: int) -> None:
        argv = ["curl", "-sS", "-o", "/dev/null", "--max-time", str(timeout), "-w", "%{http_code} %{time_connect}", url]
        started = time.monotonic()
        try:
            done = call_in(ns, argv, timeout=timeout + 5)
            code, connect = (done.stdout.split() + ["000", "0"])[:2]
            results[i] = {
                "status": int(code),
                "connect_s": float(connect),
                "seconds": time.monotonic() - started,
                "error": done.stderr.strip()[-200:],
            }
        except subprocess.TimeoutExpired:
            results[i] = {"status": 0, "connect_s": 0.0, "seconds": time.monotonic() - started, "error": "timed out"}

    threads = []
    for i in range(count):
        t = threading.Thread(target=one, args=(i,), daemon=True)
        t.start()
        threads.append(t)
        time.sleep(interval)
    for t in threads:
        t.join(timeout + 10)
    return results


def process_memory(pid: int) -> dict[str, int]:
    """Resident memory of a process in bytes: `rss` and its parts `anon`, `file`, `shmem` (/proc/PID/status)."""
    names = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem"}
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in names:
                out[names[key]] = int(value.split()[0]) * 1024
    return out


def file_resident_bytes(path: str | os.PathLike[str]) -> int:
    """Bytes a (tmpfs) file holds in memory: its allocated blocks."""
    return os.stat(path).st_blocks * 512


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of every thread of a process so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, over all CPUs (/proc/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (values + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / ticks, steal / ticks


class CpuWindow:
    """CPU used between two instants: by the dataplane process (cores), by the whole machine (share of all its
    CPUs busy), and stolen by the hypervisor."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        busy, steal = machine_cpu_seconds()
        return time.monotonic(), process_cpu_seconds(self.pid), busy, steal

    def stop(self) -> dict[str, float]:
        end = self._now()
        wall = end[0] - self.start[0]
        cpus = os.cpu_count() or 1
        return {
            "dataplane_cores": round((end[1] - self.start[1]) / wall, 2),
            "machine_busy": round((end[2] - self.start[2]) / wall / cpus, 2),
            "steal": round((end[3] - self.start[3]) / wall / cpus, 2),
        }


def sample_memory(pid: int, files: Sequence[Path] = ()) -> dict[str, int]:
    sample = process_memory(pid)
    for f in files:
        sample[f"file:{f.name}"] = file_resident_bytes(f) if f.exists() else 0
    return sample


# ---------------------------------------------------------------- one flood, measured


@dataclass
class FloodReport:
    """What a flood did to users and to the dataplane (rates in bit/s, memory in bytes)."""

    flood: FloodResult
    unflooded_bps: float
    flooded_bps: float
    after_bps: float  # once it resumed after the flood
    resumed_seconds: float | None  # from the end of the flood to the download's next completed file
    download_connections: int  # connections the established download made (1: it never broke)
    legit: list[dict[str, Any]]
    memory: dict[str, dict[str, int]]  # "idle" (before any traffic), "before", "during", "after" the flood
    counters: dict[str, float]
    drops: dict[str, float]
    settle_seconds: float  # from the end of the flood to the memory given back
    cpu: dict[str, dict[str, float]]  # "before" and "during" the flood: CpuWindow

    @property
    def legit_ok(self) -> int:
        return sum(1 for r in self.legit if r.get("status") == 200)

    @property
    def throughput_ratio(self) -> float:
        return self.flooded_bps / self.unflooded_bps if self.unflooded_bps > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "flood_sent": self.flood.sent,
            "flood_seconds": round(self.flood.seconds, 3),
            "flood_pps": round(self.flood.pps),
            "unflooded_bps": round(self.unflooded_bps),
            "flooded_bps": round(self.flooded_bps),
            "after_bps": round(self.after_bps),
            "resumed_seconds": None if self.resumed_seconds is None else round(self.resumed_seconds, 2),
            "throughput_ratio": round(self.throughput_ratio, 3),
            "download_connections": self.download_connections,
            "legit_ok": self.legit_ok,
            "legit": self.legit,
            "memory": self.memory,
            "counters": self.counters,
            "drops": self.drops,
            "settle_seconds": round(self.settle_seconds, 1),
            "cpu": self.cpu,
        }


COUNTERS = (
    "ngfw_flows_early_dropped_total",
    "ngfw_flow_insert_failures_total",
    "ngfw_port_kernel_drops_total",
    "ngfw_events_lost_total",
    "ngfw_flows_created_total",
    "ngfw_flows_active",
    "ngfw_flow_records_unlogged_total",
    "ngfw_memory_given_back_bytes_total",
    "ngfw_flow_table_given_back_bytes",
    "ngfw_flow_table_bytes",
    "ngfw_bypass_flows_total",
    "ngfw_bypass_packets_total",
    "ngfw_dos_syn_seen_total",
    "ngfw_dos_dropped_total",
    "ngfw_dos_syn_protection_enabled",
)


def run_flood(
    dataplane: Any,
    attacker: Endpoint,
    target: Endpoint,
    target_port: int,
    client: Endpoint,
    url: str,
    workdir: Path,
    flood_seconds: float = 8.0,
    quiet_seconds: float = 3.0,
    new_connections_count: int = 10,
    rate_pps: int | None = None,
    payload: int = 0,
    state_file: Path | None = None,
    resume_timeout: float = 30.0,
    settle_timeout: float = 60.0,
    download_limit_bps: int | None = None,
) -> FloodReport:
    """`attacker` floods `target:target_port` with SYNs through `dataplane` (a running DataplaneProcess) while
    `client`, over one connection established before, downloads `url` again and again (at most at
    `download_limit_bps`), and opens
    `new_connections_count` new connections to `url` during the flood (the flood lasts until they are done).
    After it, the download's rate once it resumed (at most `resume_timeout` later); then waits (at most
    `settle_timeout`) for the flood's flows to end and the memory they took to go back."""
    from ngfw.lab.dataplane_process import metric_by_label, metric_sum

    files = [state_file] if state_file is not None else []
    memory = {"idle": sample_memory(dataplane.pid, files)}
    download = KeepAliveDownload(client.ns, url, limit_bps=download_limit_bps).start()
    try:
        time.sleep(0.5)  # connected, slow start over
        quiet_from = time.monotonic()
        cpu_window = CpuWindow(dataplane.pid)
        time.sleep(quiet_seconds)
        quiet_to = time.monotonic()
        cpu = {"before": cpu_window.stop()}
        # the baseline: a dataplane carrying traffic (its packet rings have gone round once), no flood
        memory["before"] = sample_memory(dataplane.pid, files)
        flood = SynFlood(attacker, target, target_port, flood_seconds, workdir, rate_pps, payload).start()
        try:
            time.sleep(min(1.0, flood_seconds / 4))
            flooded_from = time.monotonic()
            cpu_window = CpuWindow(dataplane.pid)
            legit = new_connections(client.ns, url, new_connections_count, interval=0.3, timeout=8.0)
            time.sleep(max(0.0, flood.started + flood.seconds - 0.2 - time.monotonic()))
            flooded_to = time.monotonic()
            cpu["during"] = cpu_window.stop()
            memory["during"] = sample_memory(dataplane.pid, files)
        finally:
            result = flood.stop()
        flood_end = time.monotonic()
        # TCP backs off under heavy loss (its retransmission timer doubles, up to tens of seconds): the
        # download resumes when its next retransmission gets through
        done = len(download.downloads)
        while len(download.downloads) == done and time.monotonic() < flood_end + resume_timeout:
            time.sleep(0.05)
        resumed = time.monotonic() - flood_end if len(download.downloads) > done else None
        after_from = time.monotonic()
        time.sleep(quiet_seconds)
        after_to = time.monotonic()
    finally:
        download.stop()
    samples = dataplane.metrics()
    counters = {name: metric_sum(samples, name) for name in COUNTERS}
    drops = {k: v for k, v in metric_by_label(samples, "ngfw_drops_total", "reason").items() if v}
    # the flood's flows end (their timeouts: tcp_closed once reset, tcp_syn if nobody answered), and once the
    # table holds a quarter of its peak the sweep gives their memory back, a pass at a time
    deadline = time.monotonic() + settle_timeout
    while time.monotonic() < deadline:
        now = dataplane.metrics()
        if metric_sum(now, "ngfw_flows_active") <= 64 and metric_sum(
            now, "ngfw_flow_table_given_back_bytes"
        ) >= 0.9 * metric_sum(now, "ngfw_flow_table_bytes"):
            time.sleep(1.0)  # the pass over the inspection state, a step per sweep
            break
        time.sleep(0.5)
    settle = time.monotonic() - flood_end
    memory["after"] = sample_memory(dataplane.pid, files)
    settled = dataplane.metrics()
    for name in ("ngfw_memory_given_back_bytes_total", "ngfw_flow_table_given_back_bytes", "ngfw_flows_active"):
        counters[f"{name}:after"] = metric_sum(settled, name)
    return FloodReport(
        result,
        download.rate_bps(quiet_from, quiet_to),
        download.rate_bps(flooded_from, flooded_to),
        download.rate_bps(after_from, after_to),
        resumed,
        download.connections(),
        legit,
        memory,
        counters,
        drops,
        settle,
        cpu,
    )
