"""An `ngfw dataplane` process started inside the lab's fw namespace, seen from outside.

Used by the demo, the netns test fixtures and the benchmark: start it, wait until its
/metrics endpoint answers, read its metrics and EVE log, reload (SIGHUP) and stop it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ngfw
from ngfw.lab.netns import http_get, run_in, stop_process

REPO_ROOT = Path(ngfw.__file__).resolve().parent.parent

# (policy_path, metrics "host:port", eve_path) -> argv of the dataplane process
ArgvBuilder = Callable[[str, str, str], list[str]]


class DataplaneStartError(RuntimeError):
    """The dataplane exited, or its /metrics did not answer in time; the message carries its stderr."""


def default_dataplane_argv(policy: str, metrics: str, eve: str, wire: str = "fw-vm:fw-up") -> list[str]:
    return [
        sys.executable, "-m", "ngfw", "dataplane",
        "--wire", wire,
        "--policy", policy,
        "--metrics", metrics,
        "--eve", eve,
    ]  # fmt: skip


def repo_path(relative: str) -> Path:
    """A path shipped with the project (rules/examples/...): in the source tree (or the installed copy of
    rules/), else relative to the cwd."""
    candidate = REPO_ROOT / relative
    if candidate.exists():
        return candidate
    if relative.startswith("rules/"):
        from ngfw.shipped import shipped

        installed = Path(shipped(relative))
        if installed.exists():
            return installed
    return Path(relative).resolve()


def dataplane_env() -> dict[str, str]:
    """The environment of a dataplane child: the project importable even when not installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text exposition -> {(name, sorted label pairs): value}. Comments and junk are skipped."""
    samples = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        pairs = tuple(sorted(_LABEL.findall(labels or "")))
        try:
            samples[(name, pairs)] = float(value)
        except ValueError:
            continue
    return samples


def metric_sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, pairs), v in samples.items() if n == name and want <= set(pairs))


def metric_by_label(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, label: str
) -> dict[str, float]:
    """{label value: summed value} for metric `name`, e.g. drops by reason."""
    out: dict[str, float] = {}
    for (n, pairs), v in samples.items():
        if n == name:
            key = dict(pairs).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def read_eve(path: Path) -> list[dict[str, Any]]:
    """EVE JSON lines -> records; a half-written last line (the writer is still running) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


# called with the EVE path of every dataplane process started (the test suite validates each file against
# docs/eve-schema.json once the test is over)
EVE_FILE_HOOKS: list[Callable[[str], None]] = []


class DataplaneProcess:
    """One dataplane process in namespace `ns` (start with `start_dataplane`)."""

    def __init__(self, ns: str, argv: list[str], metrics_host: str, metrics_port: int, eve_path: Path, workdir: Path):
        self.ns = ns
        self.argv = argv
        self.metrics_host = metrics_host
        self.metrics_port = metrics_port
        self.eve_path = eve_path
        self.workdir = workdir
        for hook in EVE_FILE_HOOKS:
            hook(str(eve_path))
        self.stdout_path = workdir / "dataplane.stdout"
        self.stderr_path = workdir / "dataplane.stderr"
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.proc: subprocess.Popen[Any] = run_in(
                ns, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dataplane_env(),
                start_new_session=True, cwd=str(REPO_ROOT),
            )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def stderr_text(self, tail: int = 4000) -> str:
        return self.stderr_path.read_text(errors="replace")[-tail:] if self.stderr_path.exists() else ""

    def metrics_text(self, timeout: float = 2.0) -> str:
        status, body = http_get(self.ns, self.metrics_host, self.metrics_port, "/metrics", timeout)
        if status != 200:
            raise OSError(f"/metrics answered HTTP {status}")
        return body.decode(errors="replace")

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return parse_metrics(self.metrics_text())

    def eve_records(self) -> list[dict[str, Any]]:
        return read_eve(self.eve_path)

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Block until /metrics answers; raise DataplaneStartError (with stderr) on exit or timeout."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while time.monotonic() < deadline:
            if not self.running():
                raise DataplaneStartError(
                    f"dataplane exited with {self.proc.returncode} before serving /metrics\n"
                    f"argv: {' '.join(self.argv)}\nstderr:\n{self.stderr_text()}"
                )
            try:
                self.metrics_text(timeout=1.0)
                return
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.1)
        raise DataplaneStartError(
            f"dataplane /metrics on {self.metrics_host}:{self.metrics_port} (ns {self.ns}) did not answer within "
            f"{timeout:.0f} s (last error: {last_error})\nargv: {' '.join(self.argv)}\nstderr:\n{self.stderr_text()}"
        )

    def exit_description(self) -> str:
        return f"dataplane exited with {self.proc.returncode}"

    def reload(self) -> None:
        """Ask the dataplane to re-read its policy (SIGHUP)."""
        self.proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s; returns the exit code. Idempotent."""
        return stop_process(self.proc, timeout=timeout)


def start_dataplane(
    ns: str,
    policy: str | Path,
    metrics_port: int,
    workdir: Path | None = None,
    extra_args: Sequence[str] = (),
    argv_builder: ArgvBuilder | None = None,
    metrics_host: str = "127.0.0.1",
    ready_timeout: float = 20.0,
) -> DataplaneProcess:
    """Start `ngfw dataplane` in `ns` on the lab wire and wait until /metrics answers (stopped if it never does)."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="ngfw-dp-"))
    eve = workdir / "eve.json"
    builder = argv_builder or default_dataplane_argv
    argv = [*builder(str(policy), f"{metrics_host}:{metrics_port}", str(eve)), *extra_args]
    dp = DataplaneProcess(ns, argv, metrics_host, metrics_port, eve, workdir)
    try:
        dp.wait_ready(ready_timeout)
    except BaseException:
        dp.stop()
        raise
    return dp


def dataplane_unavailable() -> str | None:
    """Why `python -m ngfw dataplane` cannot run here yet (None when it can)."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ngfw", "dataplane", "--help"],
            capture_output=True, text=True, timeout=30, env=dataplane_env(), cwd=str(REPO_ROOT),
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "`python -m ngfw dataplane --help` did not finish in 30 s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"`python -m ngfw dataplane --help` failed ({done.returncode}): {last}"
    return None
