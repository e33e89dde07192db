"""A running Suricata seen from outside: its console read line by line, the start-up milestones timed.

Suricata's own log has one-second timestamps, too coarse for a ~12 s rule load, so the load time is
measured here: from spawning the process to the console line that says the rules are loaded, and to
"Engine started" (rules parsed, multi-pattern matchers built, packet threads running).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

RULES_LOADED = re.compile(
    r"(\d+) rule files? processed\. (\d+) rules successfully loaded, (\d+) rules failed(?:, (\d+) rules skipped)?"
)
SIGNATURES = re.compile(r"(\d+) signatures processed")
ENGINE_STARTED = "Engine started"


@dataclass
class LoadReport:
    """Suricata's rule load, as its console reported it; times are seconds since the process was spawned."""

    rule_files: int | None = None
    rules_loaded: int | None = None
    rules_failed: int | None = None
    rules_skipped: int | None = None
    signatures: int | None = None
    rules_loaded_s: float | None = None
    engine_started_s: float | None = None

    def feed(self, line: str, elapsed: float) -> None:
        m = RULES_LOADED.search(line)
        if m:
            self.rule_files, self.rules_loaded, self.rules_failed = int(m[1]), int(m[2]), int(m[3])
            self.rules_skipped = int(m[4]) if m[4] else 0
            self.rules_loaded_s = elapsed
        m = SIGNATURES.search(line)
        if m:
            self.signatures = int(m[1])
        if ENGINE_STARTED in line and self.engine_started_s is None:
            self.engine_started_s = elapsed

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def parse_log(text: str) -> LoadReport:
    """Counts from a finished run's suricata.log (no times: its timestamps have one-second resolution)."""
    report = LoadReport()
    for line in text.splitlines():
        report.feed(line, 0.0)
    report.rules_loaded_s = report.engine_started_s = None
    return report


@dataclass
class SuricataProcess:
    """`suricata ...` started with `popen` (plain `subprocess.Popen`, or one that enters a namespace)."""

    argv: Sequence[str]
    popen: Callable[..., subprocess.Popen[str]] = subprocess.Popen
    keep_lines: int = 200
    load: LoadReport = field(default_factory=LoadReport)
    lines: list[str] = field(default_factory=list)

    def start(self) -> SuricataProcess:
        self._started = time.monotonic()
        self._changed = threading.Condition()
        self.proc = self.popen(
            list(self.argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="suricata-console", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.load.feed(line, time.monotonic() - self._started)
                self.lines.append(line.rstrip("\n"))
                del self.lines[: -self.keep_lines]
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until `predicate()` holds (checked on every console line) or the process exits."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                if self.proc.poll() is not None and not self._reader.is_alive():
                    return predicate()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.2))
        return True

    def wait_started(self, timeout: float) -> bool:
        return self.wait_for(lambda: self.load.engine_started_s is not None, timeout)

    def wait(self, timeout: float) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return rc

    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (Suricata flushes its logs and exits), SIGKILL after `timeout` s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return self.proc.returncode

    def tail(self, n: int = 20) -> str:
        return "\n".join(self.lines[-n:])
