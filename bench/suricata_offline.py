"""Suricata 7 over capture files (offline, `-r`), its EVE alerts per capture, cached by content hash.

One capture runs as `suricata -r PCAP -S RULES -l OUTDIR [-k none]`. Several captures run in one
Suricata started in unix-socket mode: the rules load once (ET Open takes ~12-20 s) and each capture
is then a `pcap-file` command with its own output directory; between captures Suricata resets its
engine state (flows, hosts, streams), so every capture is judged on its own, as `ngfw replay` judges
each file with a fresh engine. Results are kept under `$NGFW_CACHE_DIR/parity` (default
`~/.cache/ngfw/parity`), keyed by the Suricata version, the configuration, the rules, the options
and the capture's bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.suricata_config import (
    alerts_only_outputs,
    file_digest,
    logging_to_file,
    render,
    suricata_binary,
    suricata_version,
)
from bench.suricata_process import LoadReport, SuricataProcess, parse_log

EVE = "eve.json"


def cache_root() -> Path:
    base = os.environ.get("NGFW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ngfw"
    )
    return Path(base) / "parity"


@dataclass(frozen=True)
class OfflineOptions:
    """How Suricata judges the captures. `variables` override suricata.yaml's address and port groups."""

    variables: tuple[tuple[str, str], ...] = ()
    checksum_validation: bool = False
    simulate_ips: bool = False

    def overrides(self) -> dict[str, Any]:
        o: dict[str, Any] = {
            "outputs": alerts_only_outputs(EVE),
            "logging": logging_to_file(),
            "unix-command.enabled": False,
            # one packet thread: flows are judged in capture order, so thresholds count the same every run
            "runmode": "single",
            # the packaged config randomises reassembly chunk sizes: same input, same alerts, every run
            "stream.reassembly.randomize-chunk-size": False,
        }
        for name, value in self.variables:
            group = "port-groups" if name.endswith("_PORTS") else "address-groups"
            o[f"vars.{group}.{name}"] = value
        return o

    def argv(self) -> list[str]:
        extra = [] if self.checksum_validation else ["-k", "none"]
        return extra + (["--simulate-ips"] if self.simulate_ips else [])


def read_eve_alerts(path: Path) -> list[dict[str, Any]]:
    """The `alert` records of an EVE JSON file; a torn last line (writer killed) is skipped."""
    alerts: list[dict[str, Any]] = []
    if not path.exists():
        return alerts
    with open(path, errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("event_type") == "alert":
                alerts.append(rec)
    return alerts


@dataclass
class OfflineResult:
    """EVE alert records per capture (keyed by the path as given), and what the run cost."""

    alerts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    load: LoadReport | None = None  # None when every capture came from the cache
    ran: int = 0
    cached: int = 0
    seconds: float = 0.0
    log: str = ""


def _key(version: str, config_text: str, rules_digest: str, options: OfflineOptions, pcap_digest: str) -> str:
    h = hashlib.sha256()
    for part in (version, config_text, rules_digest, repr(options), pcap_digest):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def combined_rules(rules: Sequence[Path], dest: Path) -> Path:
    """One file with every rule file's text (`-S` takes exactly one)."""
    with open(dest, "wb") as out:
        for path in rules:
            data = Path(path).read_bytes()
            out.write(data if data.endswith(b"\n") or not data else data + b"\n")
    return dest


def run_offline(
    pcaps: Sequence[Path],
    rules: Sequence[Path],
    options: OfflineOptions = OfflineOptions(),
    cache: Path | None = None,
    use_cache: bool = True,
    timeout: float = 600.0,
) -> OfflineResult:
    """Suricata's EVE alerts for each capture (from the cache where the same question was asked before)."""
    started = time.monotonic()
    version = suricata_version()
    config_text = render(options.overrides())
    rules_digest = file_digest([Path(r) for r in rules])
    cache = cache or cache_root()
    result = OfflineResult()
    todo: dict[str, Path] = {}
    keys: dict[str, str] = {}
    for pcap in pcaps:
        label = str(pcap)
        keys[label] = _key(version, config_text, rules_digest, options, file_digest([Path(pcap)]))
        hit = cache / "suricata" / f"{keys[label]}.json"
        if use_cache and hit.exists():
            result.alerts[label] = json.loads(hit.read_text())["alerts"]
            result.cached += 1
        else:
            todo[label] = Path(pcap)
    if todo:
        with tempfile.TemporaryDirectory(prefix="suricata-parity-") as tmp:
            work = Path(tmp)
            (work / "suricata.yaml").write_text(config_text)
            rulefile = combined_rules([Path(r) for r in rules], work / "rules.rules")
            runner = _run_one if len(todo) == 1 else _run_batch
            outdirs, load, log = runner(work, rulefile, options, todo, timeout)
            result.load, result.log = load, log
            for label, outdir in outdirs.items():
                alerts = read_eve_alerts(outdir / EVE)
                result.alerts[label] = alerts
                result.ran += 1
                entry = {"suricata": version, "pcap": label, "alerts": alerts}
                target = cache / "suricata" / f"{keys[label]}.json"
                target.parent.mkdir(parents=True, exist_ok=True)
                tmpfile = target.with_suffix(".tmp")
                tmpfile.write_text(json.dumps(entry))
                os.replace(tmpfile, target)
    result.seconds = time.monotonic() - started
    return result


def _base_argv(work: Path, rulefile: Path, options: OfflineOptions) -> list[str]:
    return [suricata_binary(), "-c", str(work / "suricata.yaml"), "-S", str(rulefile), "-v", *options.argv()]


def _run_one(
    work: Path, rulefile: Path, options: OfflineOptions, todo: Mapping[str, Path], timeout: float
) -> tuple[dict[str, Path], LoadReport, str]:
    ((label, pcap),) = todo.items()
    outdir = work / "out0"
    outdir.mkdir()
    argv = _base_argv(work, rulefile, options) + ["-r", str(pcap), "-l", str(outdir)]
    proc = SuricataProcess(argv).start()
    try:
        rc = proc.wait(timeout)
    finally:
        proc.stop()
    log = (outdir / "suricata.log").read_text(errors="replace") if (outdir / "suricata.log").exists() else ""
    if rc != 0:
        raise RuntimeError(f"suricata exited with {rc} on {pcap}:\n{proc.tail()}")
    _merge_counts(proc.load, log)
    return {label: outdir}, proc.load, log


def _run_batch(
    work: Path, rulefile: Path, options: OfflineOptions, todo: Mapping[str, Path], timeout: float
) -> tuple[dict[str, Path], LoadReport, str]:
    sock_path = work / "command.socket"
    argv = _base_argv(work, rulefile, options) + [
        "--unix-socket=" + str(sock_path),
        "--set",
        "unix-command.enabled=yes",
        "-l",
        str(work),
    ]
    proc = SuricataProcess(argv).start()
    outdirs: dict[str, Path] = {}
    try:
        if not proc.wait_started(timeout):
            raise RuntimeError(f"suricata did not start in unix-socket mode:\n{proc.tail()}")
        with command_socket(sock_path) as command:
            for i, (label, pcap) in enumerate(todo.items()):
                outdir = work / f"out{i}"
                outdir.mkdir()
                answer = command("pcap-file", {"filename": str(Path(pcap).resolve()), "output-dir": str(outdir)})
                if answer.get("return") != "OK":
                    raise RuntimeError(f"suricata refused {pcap}: {answer}")
                outdirs[label] = outdir
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if command("pcap-file-number").get("message") == 0 and command("pcap-current").get("message") == "None":
                    break
                if not proc.running():
                    raise RuntimeError(f"suricata exited while reading captures:\n{proc.tail()}")
                time.sleep(0.1)
            else:
                raise RuntimeError(f"suricata did not finish the captures in {timeout:.0f} s")
            command("shutdown")  # flushes the last capture's EVE file before exiting
        proc.wait(60)
    finally:
        proc.stop()
    log = (work / "suricata.log").read_text(errors="replace") if (work / "suricata.log").exists() else ""
    _merge_counts(proc.load, log)
    return outdirs, proc.load, log


def _merge_counts(load: LoadReport, log: str) -> None:
    """The rule counts come from the log when the console missed them (they are logged at info level)."""
    if load.rules_loaded is None:
        counted = parse_log(log)
        load.rule_files, load.rules_loaded = counted.rule_files, counted.rules_loaded
        load.rules_failed, load.rules_skipped = counted.rules_failed, counted.rules_skipped
        load.signatures = load.signatures or counted.signatures


@contextlib.contextmanager
def command_socket(path: Path) -> Iterator[Any]:
    """Suricata's unix-socket protocol: newline-terminated JSON commands, one JSON answer each."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(60)
    sock.connect(str(path))

    def command(name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"command": name}
        if arguments:
            message["arguments"] = arguments
        return _exchange(sock, message)

    try:
        hello = _exchange(sock, {"version": "0.2"})
        if hello.get("return") != "OK":
            raise RuntimeError(f"suricata unix socket refused the handshake: {hello}")
        yield command
    finally:
        sock.close()


def _exchange(sock: socket.socket, message: dict[str, Any]) -> dict[str, Any]:
    sock.sendall(json.dumps(message).encode() + b"\n")
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"suricata closed its unix socket answering {message}")
        buf += chunk
        try:
            answer = json.loads(buf)
        except ValueError:
            continue
        return answer if isinstance(answer, dict) else {"message": answer}
