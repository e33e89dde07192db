#!/usr/bin/env python3
"""Alert parity between ngfw and Suricata 7: the same captures, the same rules, alerts per (flow, sid) both ways.

    python bench/suricata_parity.py --verify-cases ../shared/corpus/suricata-verify [--check-suricata]
    python bench/suricata_parity.py --rules ../shared/corpus/et-open/*.rules --pcaps ../shared/corpus/appid/pcaps
    python bench/suricata_parity.py --keywords       # rules/tests/keywords.rules over tests/fixtures/parity/

Suricata's side is Suricata's expected alerts (suricata-verify cases) or a real Suricata 7 run
(cached by content hash); ngfw's side is `ngfw replay FILE... --rules RULES... --json`, or any
function with the same contract (`NgfwRunner`). See docs/parity.md.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))  # run from a checkout without installing; the sibling modules are bench.*

from bench.parity_compare import Alert, Comparison, alert_from_eve, alert_from_expected  # noqa: E402
from bench.suricata_config import SuricataMissing, suricata_version  # noqa: E402
from bench.suricata_offline import OfflineOptions, run_offline  # noqa: E402

KEYWORD_RULES = REPO / "rules" / "tests" / "keywords.rules"
KEYWORD_PCAPS = REPO / "tests" / "fixtures" / "parity"
KEYWORD_VARS = {"HOME_NET": "[10.0.0.0/8]"}
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")

# (captures, rule files, variables) -> the JSON records `ngfw replay --json` prints
NgfwRunner = Callable[[Sequence[Path], Sequence[Path], Mapping[str, str]], Iterable[Mapping[str, Any]]]


class NgfwFailed(RuntimeError):
    """ngfw replay could not judge the captures (not built, bad rules, crashed)."""


def ngfw_replay(pcaps: Sequence[Path], rules: Sequence[Path], variables: Mapping[str, str]) -> list[dict[str, Any]]:
    """`ngfw replay FILE... --rules R... --var NAME=VALUE... --json`, its JSON lines."""
    argv = [sys.executable, "-m", "ngfw", "replay", "--json"]
    for r in rules:
        argv += ["--rules", str(r)]
    for name, value in variables.items():
        argv += ["--var", f"{name}={value}"]
    argv += [str(p) for p in pcaps]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    records = []
    for line in done.stdout.splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    # status 1 with records is a damaged capture, reported on stderr: the other files still count
    if done.returncode != 0 and not records:
        raise NgfwFailed(f"ngfw replay exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return records


def ngfw_alerts(
    records: Iterable[Mapping[str, Any]], captures: Sequence[Path], labels: Mapping[str, str]
) -> list[Alert]:
    """ngfw's alert records, each attributed to the capture its `pcap_file` names (a path or a base name).

    Records without `event_type` (older builds) and `flow` records are not alerts.
    """
    by_name: dict[str, str] = {}
    for path in captures:
        for spelling in (str(path), str(Path(path).resolve()), Path(path).name):
            by_name.setdefault(spelling, labels[str(path)])
    only = labels[str(captures[0])] if len(captures) == 1 else None
    alerts = []
    for rec in records:
        if rec.get("event_type") != "alert":
            continue
        named = str(rec.get("pcap_file") or "")
        capture = by_name.get(named) or by_name.get(Path(named).name) or only
        if capture is None:
            raise NgfwFailed(f"ngfw alert for a capture not asked about: {named!r}")
        alert = alert_from_eve(rec, capture)
        if alert:
            alerts.append(alert)
    return alerts


_SID = re.compile(r"(?:^|;)\s*sid\s*:\s*(\d+)\s*;")
_MSG = re.compile(r'(?:^|[(;])\s*msg\s*:\s*"((?:[^"\\]|\\.)*)"\s*;')


def rule_messages(paths: Iterable[Path]) -> dict[int, str]:
    """sid -> msg of every rule in the files (to name the rules behind expected alerts, which carry no msg)."""
    out: dict[int, str] = {}
    for path in paths:
        for line in Path(path).read_text(errors="replace").splitlines():
            sid, msg = _SID.search(line), _MSG.search(line)
            if sid and msg:
                out.setdefault(int(sid[1]), re.sub(r"\\(.)", r"\1", msg[1]))
    return out


def with_messages(alerts: Iterable[Alert], messages: Mapping[int, str]) -> list[Alert]:
    return [a if a.msg else Alert(a.capture, a.flow, a.sid, a.gid, messages.get(a.sid, "")) for a in alerts]


# ---------------------------------------------------------------- modes


@dataclass
class Report:
    mode: str
    comparison: Comparison
    captures: list[str]
    suricata: dict[str, Any] = field(default_factory=dict)  # version, load figures, cache use
    notes: list[str] = field(default_factory=list)
    self_check: Comparison | None = None  # our Suricata against suricata-verify's expectations

    def rows(self) -> list[dict[str, Any]]:
        groups = self.comparison.by_capture()
        rows = []
        for name in self.captures:
            c = groups.get(name, Comparison())
            rows.append({"capture": name, "suricata": len(c.suricata), "ngfw": len(c.ngfw), "matched": c.matched,
                         "exact": c.exact})  # fmt: skip
        return rows

    def as_dict(self, min_agreement: float) -> dict[str, Any]:
        doc: dict[str, Any] = {"mode": self.mode, **self.comparison.summary()}
        doc["captures"] = len(self.captures)
        doc["exact_captures"] = sum(1 for r in self.rows() if r["exact"])
        doc["min_agreement"] = min_agreement
        doc["ok"] = self.ok(min_agreement)
        doc["suricata"] = self.suricata
        if self.self_check is not None:
            doc["suricata_vs_expected"] = {
                **self.self_check.summary(),
                "exact": self.self_check.exact,
                "differences": [d.as_dict() for d in self.self_check.differences()],
            }
        doc["rows"] = self.rows()
        doc["differences"] = [d.as_dict() for d in self.comparison.differences()]
        doc["notes"] = self.notes
        return doc

    def ok(self, min_agreement: float) -> bool:
        c = self.comparison
        return c.agreement_of_suricata >= min_agreement and c.agreement_of_ngfw >= min_agreement


# Cases whose rules Suricata 7.0.10 refuses and ngfw loads as Suricata 8.0.5 and later do: the alerts 8.0.5
# raises there (suricata-verify's own expectation for it), compared in place of 7.0.10's none.
FOLLOWS_SURICATA_8: dict[str, list[dict[str, Any]]] = {
    # tests/arp/detect-arp-01: `alert arp any any -> any any`, one alert per ARP frame (one frame)
    "arp__detect-arp-01": [{"signature_id": 1, "proto": "ARP", "src_ip": "192.168.169.4", "dest_ip": "0.0.0.0"}],
}


def verify_cases(
    root: Path, ngfw: NgfwRunner | None = ngfw_replay, check_suricata: bool = False, only: Sequence[str] = ()
) -> Report:
    """suricata-verify cases: each case's expected alerts (Suricata 7.0.10) against ngfw on its capture and rules.

    With `check_suricata`, the local Suricata runs each case too and is compared with the expectations
    (`Report.self_check`); with `ngfw=None` the local Suricata stands in ngfw's place.
    """
    cases = sorted(d for d in root.iterdir() if (d / "test.rules").exists() and (not only or d.name in only))
    mode = "verify-cases" if ngfw else "verify-cases, local Suricata in ngfw's place"
    report = Report(mode, Comparison(), [d.name for d in cases])
    if check_suricata and ngfw:
        report.self_check = Comparison()
    for case in cases:
        pcap = next((p for p in (case / "input.pcap", case / "input.pcapng") if p.exists()), None)
        if pcap is None:
            report.notes.append(f"{case.name}: no input.pcap(ng), skipped")
            continue
        rules = [case / "test.rules"]
        messages = rule_messages(rules)
        expected = [alert_from_expected(json.loads(line), case.name)
                    for line in (case / "expected.jsonl").read_text().splitlines() if line.strip()]  # fmt: skip
        if ngfw is not None and case.name in FOLLOWS_SURICATA_8:
            expected = [alert_from_expected(r, case.name) for r in FOLLOWS_SURICATA_8[case.name]]
            report.notes.append(f"{case.name}: compared with Suricata 8.0.5's alerts (7.0.10 refuses its rules)")
        expected = with_messages(expected, messages)
        local: list[Alert] = []
        if ngfw is None or report.self_check is not None:
            local = local_suricata_case(case, pcap, rules)
            report.suricata.setdefault("version", suricata_version())
        if report.self_check is not None:
            report.self_check.add(expected, local)
        if ngfw is None:
            report.comparison.add(expected, local)
        else:
            try:
                found = ngfw_alerts(ngfw([pcap], rules, {}), [pcap], {str(pcap): case.name})
            except NgfwFailed as exc:  # e.g. no rule of the case loads: no alert, the comparison says the rest
                report.notes.append(f"{case.name}: {exc}")
                found = []
            report.comparison.add(expected, with_messages(found, messages))
    return report


def local_suricata_case(case: Path, pcap: Path, rules: Sequence[Path]) -> list[Alert]:
    """The local Suricata on one suricata-verify case, run as suricata-verify runs it."""
    meta = json.loads((case / "test.json").read_text()) if (case / "test.json").exists() else {}
    # suricata-verify adds -k none unless the case asks for checksum validation, --simulate-ips to *-ips cases
    options = OfflineOptions(checksum_validation=bool(meta.get("checksum_validation", False)),
                             simulate_ips=str(meta.get("source", case.name)).endswith("-ips"))  # fmt: skip
    ran = run_offline([pcap], rules, options)
    return [a for rec in ran.alerts[str(pcap)] if (a := alert_from_eve(rec, case.name))]


def expand_captures(items: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for item in items:
        if item.is_dir():
            out += sorted(p for p in item.iterdir() if p.suffix.lower() in CAPTURE_SUFFIXES)
        else:
            out.append(item)
    return out


def corpus(
    rules: Sequence[Path],
    pcaps: Sequence[Path],
    variables: Mapping[str, str],
    ngfw: NgfwRunner = ngfw_replay,
    checksum_validation: bool = False,
    use_cache: bool = True,
    mode: str = "corpus",
) -> Report:
    """Suricata for real (cached) and ngfw over the same captures with the same rules."""
    captures = expand_captures(pcaps)
    if not captures:
        raise ValueError("no captures given (files or directories of *.pcap / *.pcapng)")
    labels = _labels(captures)
    options = OfflineOptions(tuple(sorted(variables.items())), checksum_validation=checksum_validation)
    ran = run_offline(captures, rules, options, use_cache=use_cache)
    report = Report(mode, Comparison(), [labels[str(p)] for p in captures])
    report.suricata = {"version": suricata_version(), "ran": ran.ran, "cached": ran.cached,
                       "seconds": round(ran.seconds, 2), "load": ran.load.as_dict() if ran.load else None}  # fmt: skip
    theirs = [a for path in captures for rec in ran.alerts[str(path)] if (a := alert_from_eve(rec, labels[str(path)]))]
    ours = ngfw_alerts(ngfw(captures, rules, variables), captures, labels)
    report.comparison.add(theirs, with_messages(ours, rule_messages(rules)))
    return report


def _labels(captures: Sequence[Path]) -> dict[str, str]:
    """A short name per capture: its file name, or its path where two captures share a name."""
    names = [Path(p).name for p in captures]
    return {str(p): (Path(p).name if names.count(Path(p).name) == 1 else str(p)) for p in captures}


# ---------------------------------------------------------------- output


def render_table(report: Report, min_agreement: float, max_differences: int = 50) -> str:
    c = report.comparison
    lines = [f"## alert parity: {report.mode}", ""]
    if report.suricata:
        s = report.suricata
        load = s.get("load") or {}
        extra = ""
        if load.get("engine_started_s") is not None:
            extra = (
                f", {load.get('rules_loaded')} rules loaded ({load.get('rules_failed')} failed), "
                f"rules parsed in {load['rules_loaded_s']:.1f} s, engine started after {load['engine_started_s']:.1f} s"
            )
        cache = f"; {s['ran']} capture(s) run, {s['cached']} from cache" if "ran" in s else ""
        lines += [f"Suricata {s.get('version', '?')}{extra}{cache}", ""]
    lines += ["| capture | Suricata pairs | ngfw pairs | matched | same |", "|---|---:|---:|---:|---|"]
    rows = report.rows()
    shown = [r for r in rows if r["suricata"] or r["ngfw"] or report.mode.startswith("verify")]
    for r in shown:
        lines.append(
            f"| {r['capture']} | {r['suricata']} | {r['ngfw']} | {r['matched']} | {'yes' if r['exact'] else 'NO'} |"
        )
    quiet = len(rows) - len(shown)
    if quiet:
        lines.append(f"| ({quiet} captures without alerts on either side) | 0 | 0 | 0 | yes |")
    lines.append(f"| **total** | **{len(c.suricata)}** | **{len(c.ngfw)}** | **{c.matched}** | "
                 f"{sum(r['exact'] for r in rows)}/{len(rows)} |")  # fmt: skip
    lines += ["", f"agreement: {c.agreement_of_suricata:.1%} of Suricata's (flow, sid) pairs raised by ngfw, "
              f"{c.agreement_of_ngfw:.1%} of ngfw's raised by Suricata (threshold {min_agreement:.0%}: "
              f"{'met' if report.ok(min_agreement) else 'NOT met'})"]  # fmt: skip
    diffs = c.differences()
    if diffs:
        lines += ["", f"differences ({len(diffs)}):", ""]
        lines += [_diff_line(d) for d in diffs[:max_differences]]
        if len(diffs) > max_differences:
            lines.append(f"... and {len(diffs) - max_differences} more (--json lists them all)")
    if report.self_check is not None:
        sc = report.self_check
        lines += ["", f"local Suricata {report.suricata.get('version', '')} vs the expected alerts: "
                  f"{sc.matched}/{len(sc.suricata)} expected pairs, {len(sc.ngfw)} raised, "
                  f"{'identical' if sc.exact else 'DIFFERENT'}"]  # fmt: skip
        lines += [_diff_line(d, "expected", "local Suricata") for d in sc.differences()]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def _diff_line(d: Any, reference: str = "Suricata", candidate: str = "ngfw") -> str:
    side = reference if d.only == "suricata" else candidate
    return f"- {d.capture}: {d.flow} sid {d.sid} ({d.msg or 'no msg'}): only {side}"


def _variables(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"suricata_parity: --var wants NAME=VALUE, got {item!r}")
        out[name.strip()] = value.strip()
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--verify-cases", type=Path, metavar="DIR", help="suricata-verify cases (expected alerts)")
    mode.add_argument("--rules", type=Path, nargs="+", metavar="FILE", help="rule files, with --pcaps")
    mode.add_argument(
        "--keywords",
        action="store_true",
        help=f"{KEYWORD_RULES.relative_to(REPO)} over {KEYWORD_PCAPS.relative_to(REPO)}/",
    )
    p.add_argument("--pcaps", type=Path, nargs="+", metavar="PATH", help="captures or directories of captures")
    p.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="rule variable for both engines, e.g. HOME_NET=[10.0.0.0/8] (repeatable)",
    )
    p.add_argument("--case", action="append", default=[], metavar="NAME", help="only this verify case (repeatable)")
    p.add_argument(
        "--check-suricata",
        action="store_true",
        help="verify cases: also run the local Suricata and compare it with the expectations",
    )
    p.add_argument(
        "--suricata-only",
        action="store_true",
        help="verify cases: the local Suricata in ngfw's place (checks the tool, not ngfw)",
    )
    p.add_argument(
        "--ngfw-output",
        type=Path,
        metavar="FILE",
        help="ngfw's JSON lines recorded earlier, instead of running `ngfw replay`",
    )
    p.add_argument("--checksum-validation", action="store_true", help="Suricata validates checksums (default -k none)")
    p.add_argument("--no-cache", action="store_true", help="run Suricata even when its answer is cached")
    p.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="exit 1 below this agreement either way (default 1.0 for verify cases, 0.95 otherwise)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--max-differences", type=int, default=50, help="differences listed in the table")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if argv is None:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends quietly
    variables = _variables(args.var)
    ngfw: NgfwRunner = ngfw_replay
    if args.ngfw_output:
        recorded = [json.loads(line) for line in args.ngfw_output.read_text().splitlines() if line.strip()]
        ngfw = lambda pcaps, rules, variables: recorded  # noqa: E731
    try:
        if args.verify_cases:
            report = verify_cases(args.verify_cases, None if args.suricata_only else ngfw,
                                  check_suricata=args.check_suricata, only=args.case)  # fmt: skip
            default_min = 1.0
        else:
            if args.keywords:
                rules, pcaps, mode = [KEYWORD_RULES], [KEYWORD_PCAPS], "keywords"
                variables = {**KEYWORD_VARS, **variables}
            else:
                if not args.pcaps:
                    print("suricata_parity: --rules needs --pcaps", file=sys.stderr)
                    return 2
                rules, pcaps, mode = args.rules, args.pcaps, "corpus"
            report = corpus(rules, pcaps, variables, ngfw, args.checksum_validation, not args.no_cache, mode)
            default_min = 0.95
    except (SuricataMissing, NgfwFailed, RuntimeError, ValueError, OSError) as exc:
        print(f"suricata_parity: {exc}", file=sys.stderr)
        return 2
    min_agreement = default_min if args.min_agreement is None else args.min_agreement
    if args.json:
        print(json.dumps(report.as_dict(min_agreement), indent=2))
    else:
        print(render_table(report, min_agreement, args.max_differences))
    return 0 if report.ok(min_agreement) else 1


if __name__ == "__main__":
    sys.exit(main())
