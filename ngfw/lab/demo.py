"""`ngfw demo`: the lab, real servers, the dataplane inline, real clients, and a report of verdicts.

Every step tears down in `finally`, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ngfw.lab.dataplane_process import (
    ArgvBuilder,
    DataplaneProcess,
    default_dataplane_argv,
    metric_by_label,
    parse_metrics,
    repo_path,
    start_dataplane,
)
from ngfw.lab.netns import call_in
from ngfw.lab.services import lab_services
from ngfw.lab.signals import Terminated, raise_on_signals
from ngfw.lab.topology import Lab, lab_bridge_fw, lab_down, lab_up

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ngfw.lab.fw_vm import FwVm

DEMO_POLICY = "rules/examples/lab.yaml"
DEMO_RULES = "rules/threats/lab.rules"  # the signatures web-to-server-http inspects with
METRICS_PORT = 9650
CURL_CONNECT_TIMEOUT = 2

CURL_OK, CURL_REFUSED, CURL_TIMEOUT = 0, 7, 28


@dataclass(frozen=True)
class Check:
    """One client action and the verdict the lab policy should give it."""

    client: str  # "web1" | "web2"
    what: str
    argv: tuple[str, ...]
    expect: str  # "allowed" | "denied" | "rejected"
    rule: str


@dataclass(frozen=True)
class Outcome:
    check: Check
    observed: str  # "allowed" | "denied" | "rejected" | "error"
    detail: str
    seconds: float

    @property
    def as_expected(self) -> bool:
        return self.observed == self.check.expect


def curl(url: str) -> tuple[str, ...]:
    return (
        "curl", "-sS", "-o", "/dev/null", "-w", "HTTP %{http_code}",
        "--connect-timeout", str(CURL_CONNECT_TIMEOUT), "--max-time", str(CURL_CONNECT_TIMEOUT + 3), url,
    )  # fmt: skip


def demo_checks(lab: Lab) -> list[Check]:
    srv = lab.srv.ipv4
    return [
        Check("web1", f"HTTP  {srv}:80", curl(f"http://{srv}/"), "allowed", "web-to-server-http"),
        Check("web1", f"ping  {srv}", ("ping", "-c", "3", "-i", "0.2", "-W", "1", srv), "allowed", "ping"),
        Check("web2", f"HTTP  {srv}:8080", curl(f"http://{srv}:8080/"), "denied", "silent drop"),
        Check("web1", f"HTTP  {srv}:8443", curl(f"http://{srv}:8443/"), "rejected", "TCP RST from the dataplane"),
        Check(
            "web1",
            f"HTTP  {srv}:80 exploit",
            curl(f"http://{srv}/cgi-bin/x?exploit=1"),
            "denied",
            "signature 9000002 (drop)",
        ),
    ]


def classify(argv: tuple[str, ...], returncode: int, stdout: str, stderr: str) -> tuple[str, str]:
    """(verdict a user would infer, detail) from a client's exit status and output."""
    if argv[0] == "ping":
        if returncode == 0:
            m = re.search(r"(\d+) packets transmitted, (\d+) received", stdout)
            return "allowed", f"{m.group(2)}/{m.group(1)} replies" if m else "replies received"
        return ("denied", "no reply") if returncode == 1 else ("error", f"ping exit {returncode}: {stderr.strip()}")
    if returncode == CURL_OK:
        return "allowed", stdout.strip()
    if returncode == CURL_TIMEOUT:
        return "denied", "timed out (no answer at all)"
    if returncode == CURL_REFUSED:
        return "rejected", "connection refused (RST)"
    return "error", f"curl exit {returncode}: {stderr.strip()[:120]}"


def run_check(lab: Lab, check: Check) -> Outcome:
    ns = getattr(lab, check.client).ns
    start = time.monotonic()
    try:
        done = call_in(ns, check.argv, timeout=15)
        observed, detail = classify(check.argv, done.returncode, done.stdout, done.stderr)
    except subprocess.TimeoutExpired:
        observed, detail = "error", "client did not finish in 15 s"
    return Outcome(check, observed, detail, time.monotonic() - start)


def format_outcomes(outcomes: list[Outcome], baseline: bool) -> list[str]:
    rows: list[tuple[str, ...]] = [("#", "client", "test", "expected (rule)", "observed", "time", "")]
    for i, o in enumerate(outcomes, 1):
        mark = "" if baseline else ("ok" if o.as_expected else "UNEXPECTED")
        rows.append(
            (str(i), o.check.client, o.check.what, f"{o.check.expect} ({o.check.rule})",
             f"{o.observed}: {o.detail}", f"{o.seconds:.2f} s", mark)
        )  # fmt: skip
    return _table(rows)


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def eve_action(rec: dict[str, Any]) -> str:
    """The action of an EVE record: an alert's (allowed/blocked), the top-level `action`, else the one
    nested under its event type."""
    if rec.get("event_type") == "alert" and isinstance(rec.get("alert"), dict):
        return str(rec["alert"].get("action", "-"))
    if "action" in rec:
        return str(rec["action"])
    nested = rec.get(str(rec.get("event_type", "")))
    if isinstance(nested, dict) and "action" in nested:
        return str(nested["action"])
    return "-"


def format_eve(records: list[dict[str, Any]], limit: int = 20) -> list[str]:
    if not records:
        return ["  (no EVE records)"]
    counts = Counter(str(r.get("event_type", "?")) for r in records)
    lines = ["  records: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    shown = [r for r in records if r.get("event_type") in ("flow", "drop", "alert")][:limit]
    rows: list[tuple[str, ...]] = [("event_type", "src_ip", "dest_ip", "dest_port", "proto", "rule", "action")]
    for r in shown:
        rows.append(
            tuple(str(r.get(k, "-")) for k in ("event_type", "src_ip", "dest_ip", "dest_port", "proto", "rule"))
            + (eve_action(r),)
        )
    return lines + _table(rows)


def format_metrics(text: str, limit: int = 25) -> list[str]:
    samples = parse_metrics(text)
    drops = metric_by_label(samples, "ngfw_drops_total", "reason")
    shown_drops = ", ".join(f"{k or '-'} {v:g}" for k, v in sorted(drops.items()) if v)
    lines = ["  drops by reason: " + (shown_drops or "none")]
    shown = [(n, p, v) for (n, p), v in sorted(samples.items()) if n.startswith("ngfw_") and v][:limit]
    for name, pairs, value in shown:
        labels = ",".join(f'{k}="{v}"' for k, v in pairs)
        lines.append(f"  {name}{{{labels}}} {value:g}" if labels else f"  {name} {value:g}")
    return lines


def run_demo(
    dataplane_argv_builder: ArgvBuilder | None = default_dataplane_argv,
    *,
    prefix: str = "ngfw",
    baseline: bool = False,
    policy: str | None = None,
    fw_vm: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Run the demo; 0 when every check got the expected verdict (in baseline mode: when allowed ones pass).
    `fw_vm`: the firewall is the ngfw VM image under QEMU (ngfw.lab.fw_vm) instead of a dataplane process
    in the fw namespace."""

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    policy_path = Path(policy) if policy else repo_path(DEMO_POLICY)
    if not baseline and not policy_path.exists():
        say(f"demo: policy {policy_path} not found")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="ngfw-demo-"))
    try:
        with raise_on_signals() as quiet, ExitStack() as stack:
            stack.callback(shutil.rmtree, workdir, ignore_errors=True)
            stack.callback(lab_down, prefix)
            try:
                return _demo(stack, say, prefix, baseline, policy_path, workdir, dataplane_argv_builder, fw_vm)
            finally:
                quiet()  # a second Ctrl-C must not cut the teardown short
                say(f"demo: tearing down lab {prefix!r}")
    except KeyboardInterrupt:
        say("demo: interrupted")
        return 130
    except Terminated:
        say("demo: terminated")
        return 143
    except Exception as exc:  # the report is for a person: say what failed (teardown already ran)
        say(f"demo: failed: {exc}")
        return 1


def _demo(
    stack: ExitStack,
    say: Callable[..., None],
    prefix: str,
    baseline: bool,
    policy_path: Path,
    workdir: Path,
    argv_builder: ArgvBuilder | None,
    fw_vm: bool = False,
) -> int:
    say(f"demo: building lab {prefix!r} (namespaces {prefix}-host, -fw, -web1, -web2, -srv)")
    lab = lab_up(prefix)
    say(f"demo: starting nginx (:80, :8443), DNS and sshd on srv {lab.srv.ipv4}")
    stack.enter_context(lab_services(lab))
    dp: DataplaneProcess | FwVm | None = None
    if fw_vm:
        from ngfw.lab.artifacts import ensure_vm_image
        from ngfw.lab.fw_vm import shutdown_lab_vm, start_fw_vm

        image = ensure_vm_image(say=lambda line: say(f"demo: {line}"))
        stack.callback(shutdown_lab_vm, prefix)
        dp = start_fw_vm(lab, image, policy_path, {"lab": repo_path(DEMO_RULES)}, say=lambda line: say(f"demo: {line}"))
        say(
            f"demo: the firewall is the ngfw VM (pid {dp.pid}): its two NICs on br-vm and br-up, "
            f"ngfw-dataplane.service enforcing {dp.boot_seconds:.1f} s after QEMU started"
        )
    elif baseline:
        lab_bridge_fw(lab)
        say("demo: BASELINE mode: a Linux bridge joins fw-vm and fw-up (no policy is enforced)")
    else:
        say(f"demo: starting the dataplane in {lab.fw_ns} with policy {policy_path}")
        dp = start_dataplane(
            lab.fw_ns,
            policy_path,
            METRICS_PORT,
            workdir=workdir,
            argv_builder=argv_builder,
            extra_args=["--rules", f"lab={repo_path(DEMO_RULES)}"],
        )
        stack.callback(dp.stop)
        say(f"demo: dataplane pid {dp.pid} ready, metrics on {dp.metrics_host}:{dp.metrics_port} (in {lab.fw_ns})")
    say()
    outcomes = [run_check(lab, c) for c in demo_checks(lab)]
    say("Verdicts seen by real clients:")
    for line in format_outcomes(outcomes, baseline):
        say(line)
    judged = [o for o in outcomes if o.check.expect == "allowed"] if baseline else outcomes
    status = 0 if all(o.as_expected for o in judged) else 1
    if dp is not None:
        say()
        say("Metrics (non-zero ngfw_* samples):")
        try:
            for line in format_metrics(dp.metrics_text()):
                say(line)
        except OSError as exc:
            say(f"  (cannot read /metrics: {exc})")
        if not dp.running():
            say(f"  {dp.exit_description()} during the demo:\n{dp.stderr_text()}")
            status = 1
        # Flow records are written when a flow ends; stopping the dataplane ends the open ones.
        dp.stop()
        say()
        say(f"EVE log ({dp.eve_path}):")
        for line in format_eve(dp.eve_records()):
            say(line)
    say()
    if baseline:
        say("demo: baseline mode: deny/reject are not enforced by a plain bridge (the 8080/8443 rows show the server)")
    say("demo: " + ("every verdict as expected" if status == 0 else "some verdicts were NOT as expected"))
    return status


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m ngfw.lab.demo", description=__doc__)
    parser.add_argument("--baseline", action="store_true", help="Linux bridge instead of the dataplane")
    parser.add_argument("--prefix", default="ngfw")
    parser.add_argument("--policy", default=None)
    args = parser.parse_args(argv)
    return run_demo(prefix=args.prefix, baseline=args.baseline, policy=args.policy)


if __name__ == "__main__":
    sys.exit(main())
