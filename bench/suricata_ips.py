"""Suricata 7 inline (AF_PACKET IPS mode) on the wire the ngfw dataplane would use: the benchmark's baseline.

    with suricata_ips.running("nb-fw", "fw-vm", "fw-up", [Path("et-open/...rules")], probe=ping) as ips:
        ...  # traffic crosses Suricata; ips.load says how long its rules took

Two interfaces of one network namespace are bridged by Suricata in copy-mode `ips`, each the other's
`copy-iface`, runmode `workers` with one thread per interface (two cores, two workers); a packet a
`drop` rule matches is not copied. The configuration is the packaged suricata.yaml with the
af-packet section, runmode, outputs and variables replaced (`ips_overrides`).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.suricata_config import alerts_only_outputs, logging_to_file, render, suricata_binary, suricata_version
from bench.suricata_offline import combined_rules, read_eve_alerts
from bench.suricata_process import LoadReport, SuricataProcess

CORES = os.cpu_count() or 2


def ips_overrides(iface_a: str, iface_b: str, threads: int | None = None,
                  variables: Mapping[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """suricata.yaml overrides: af-packet copy-mode ips between the two interfaces, workers runmode."""
    per_iface = threads or max(1, CORES // 2)

    def side(iface: str, peer: str, cluster: int) -> dict[str, Any]:
        return {
            "interface": iface, "copy-iface": peer, "copy-mode": "ips", "threads": per_iface,
            "cluster-id": cluster, "cluster-type": "cluster_flow", "use-mmap": True,
            # Suricata warns against AF_PACKET defrag inline; TPACKET_V3 batches blocks of frames, fine
            # for IDS, but IPS forwards frame by frame
            "defrag": False, "tpacket-v3": False, "ring-size": 2048, "checksum-checks": "no",
        }  # fmt: skip

    o: dict[str, Any] = {
        "af-packet": [side(iface_a, iface_b, 98), side(iface_b, iface_a, 97)],
        "runmode": "workers",
        "outputs": alerts_only_outputs(),
        "logging": logging_to_file(),
        "unix-command.enabled": False,
        "threading.set-cpu-affinity": False,
    }
    for name, value in (variables or {}).items():
        group = "port-groups" if name.endswith("_PORTS") else "address-groups"
        o[f"vars.{group}.{name}"] = value
    return o


@dataclass
class SuricataIps:
    """A Suricata bridging two interfaces of namespace `ns` (start it with `start`)."""

    ns: str
    iface_a: str
    iface_b: str
    workdir: Path
    process: SuricataProcess

    @property
    def load(self) -> LoadReport:
        return self.process.load

    def running(self) -> bool:
        return self.process.running()

    def alerts(self) -> list[dict[str, Any]]:
        return read_eve_alerts(self.workdir / "eve.json")

    def wait_forwarding(self, probe: Callable[[], bool], timeout: float = 20.0) -> float:
        """Seconds until `probe()` (traffic across the wire) succeeds; RuntimeError if it never does."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not self.running():
                raise RuntimeError(f"suricata exited ({self.process.proc.returncode}):\n{self.process.tail()}")
            if probe():
                return time.monotonic() - start
            time.sleep(0.2)
        raise RuntimeError(f"nothing crossed suricata in {timeout:.0f} s:\n{self.process.tail()}")

    def stop(self) -> int | None:
        return self.process.stop()


def popen_in(ns: str) -> Callable[..., subprocess.Popen[str]]:
    """subprocess.Popen that starts the program inside namespace `ns` (no namespace: this one)."""
    if not ns:
        return subprocess.Popen
    from ngfw.lab.netns import run_in  # the lab's namespace entry (pyroute2), only when a namespace is asked for

    return lambda argv, **kw: run_in(ns, argv, **kw)


def start(
    ns: str,
    iface_a: str,
    iface_b: str,
    rules: Sequence[Path],
    workdir: Path | None = None,
    variables: Mapping[str, str] | None = None,
    threads: int | None = None,
    ready_timeout: float = 180.0,
) -> SuricataIps:
    """Write suricata.yaml, start `suricata --af-packet` in `ns` and wait for "Engine started" (rules loaded)."""
    suricata_version()  # Suricata 7, or SuricataMissing with the way to install it
    workdir = workdir or Path(tempfile.mkdtemp(prefix="suricata-ips-"))
    config = workdir / "suricata.yaml"
    config.write_text(render(ips_overrides(iface_a, iface_b, threads, variables)))
    rulefile = combined_rules(list(rules), workdir / "rules.rules")
    argv = [suricata_binary(), "-c", str(config), "-S", str(rulefile), "-l", str(workdir), "--af-packet", "-v",
            "--pidfile", str(workdir / "suricata.pid")]  # fmt: skip
    process = SuricataProcess(argv, popen=popen_in(ns)).start()
    ips = SuricataIps(ns, iface_a, iface_b, workdir, process)
    if not process.wait_started(ready_timeout):
        process.stop()
        raise RuntimeError(f"suricata did not start in {ready_timeout:.0f} s:\n{process.tail()}")
    return ips


@contextlib.contextmanager
def running(
    ns: str,
    iface_a: str,
    iface_b: str,
    rules: Sequence[Path],
    probe: Callable[[], bool] | None = None,
    **kwargs: Any,
) -> Iterator[SuricataIps]:
    """`start`, wait until `probe` sees traffic cross, yield; stop Suricata afterwards (also on errors)."""
    ips = start(ns, iface_a, iface_b, rules, **kwargs)
    try:
        if probe is not None:
            ips.wait_forwarding(probe)
        yield ips
    finally:
        ips.stop()
