"""`ngfw rules check FILE... [--json] [--var NAME=VALUE] [--policy PATH]`: how many Suricata rules load, and why
the others do not; with --policy, what each threat profile's exceptions and threshold.config lines name."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from ngfw.compiler.suricata import RuleSet, load_rules


def parse_variables(assignments: Iterable[str]) -> dict[str, str]:
    """`["HOME_NET=[10.0.0.0/8]", "$HTTP_PORTS=80"]` -> {"HOME_NET": "[10.0.0.0/8]", "HTTP_PORTS": "80"}."""
    variables: dict[str, str] = {}
    for assignment in assignments:
        name, equals, value = assignment.partition("=")
        name = name.strip().lstrip("$")
        if not equals or not name or not value.strip():
            raise ValueError(f"--var needs NAME=VALUE, got {assignment!r}")
        variables[name] = value.strip()
    return variables


def rules_check(
    paths: Sequence[str | Path],
    as_json: bool = False,
    variables: dict[str, str] | Sequence[str] | None = None,
    out: TextIO | None = None,
    verbose: bool = False,
    policy: str | Path | None = None,
) -> int:
    """Print loaded/skipped counts (by reason) for the rule files; return the exit status.

    The status is 0 when every rule loaded or was skipped only for a feature we do
    not support (ET Open as published), 1 when some rule is malformed (bad syntax,
    unknown variable, duplicate sid: something its author should fix), 2 when a
    file could not be read or nothing loaded at all. `variables` may be a dict
    or `--var` strings. `verbose` lists every skipped rule (file:line: sid: reason). `policy`: also
    list every signature its threat profiles except or threshold, and exit 1 when one is not in the files.
    """
    out = out or sys.stdout
    if variables is not None and not isinstance(variables, dict):
        try:
            variables = parse_variables(variables)
        except ValueError as exc:
            print(f"ngfw rules check: {exc}", file=sys.stderr)
            return 2
    ruleset = load_rules([Path(p) for p in paths], variables)
    from ngfw.dataplane.fastpath import FastpathMissing
    from ngfw.dataplane.threats import engine_check

    try:
        # what the dataplane would run: the engine refuses buffers it does not fill and regexes PCRE2 refuses
        ruleset = engine_check(ruleset)
    except FastpathMissing:  # no compiled fastpath: the compiler's verdict alone
        pass
    named: list[dict[str, object]] = []
    if policy is not None:
        from ngfw.compiler.policy import load_policy
        from ngfw.model.errors import PolicyError

        try:
            named = profile_signatures(load_policy(policy), ruleset)
        except PolicyError as exc:
            print(f"ngfw rules check: policy {policy} refused:\n{exc}", file=sys.stderr)
            return 2
    if as_json:
        json.dump({**_summary(ruleset), **({"profiles": named} if policy is not None else {})}, out)
        out.write("\n")
    else:
        _print_text(ruleset, out, verbose)
        for entry in named:
            out.write(f"{entry['profile']}: {entry['field']}: {entry['signature']} {entry['what']}\n")
    unreadable = any(s.reason == "unreadable file" for s in ruleset.skipped)
    if unreadable or not ruleset.rules:
        return 2
    if any(entry["status"] == "unknown" for entry in named):
        return 1
    return 1 if any(not s.unsupported for s in ruleset.skipped) else 0


def profile_signatures(policy: object, ruleset: RuleSet) -> list[dict[str, object]]:
    """Each exception and signature-specific threshold.config line of the policy's threat profiles (named by
    a rule or not), with the signature it names as the files have it: `status` loaded, skipped (in the
    files, not run) or unknown."""
    from ngfw.compiler.tables import CompiledPolicy
    from ngfw.compiler.threshold_config import parse_threshold_config
    from ngfw.model.resources import ThreatProfile, parse_sid

    assert isinstance(policy, CompiledPolicy)
    loaded = {(sig.gid, sig.sid): sig for sig in ruleset.rules}
    skipped = {s.sid: s for s in ruleset.skipped if s.sid is not None}
    out: list[dict[str, object]] = []

    def describe(gid: int, sid: int) -> tuple[str, str]:
        sig = loaded.get((gid, sid))
        if sig is not None:
            return "loaded", f'"{sig.msg}" ({sig.action})'
        if gid == 1 and sid in skipped:
            return "skipped", f"(in the files, not run: {skipped[sid].reason})"
        return "unknown", "is not in the rule files: UNKNOWN"

    for resource in policy.build.policy_resources:
        if not isinstance(resource, ThreatProfile):
            continue
        label = f"ThreatProfile {resource.metadata.vsys}/{resource.metadata.name}"
        for index, e in enumerate(resource.spec.exceptions):
            gid, sid = parse_sid(e.sid)
            status, what = describe(gid, sid)
            where = "; ".join(
                f"{name} {', '.join(side)}"
                for name, side in (
                    ("source", e.source),
                    ("destination", e.destination),
                    ("either endpoint", e.endpoints),
                )
                if side
            )
            out.append(
                {
                    "profile": label,
                    "field": f"spec.exceptions[{index}]",
                    "signature": f"{gid}:{sid}",
                    "status": status,
                    "what": f"{what} does not run" + (f" for {where}" if where else "")
                    if status != "unknown"
                    else what,
                }
            )
        for t in parse_threshold_config(resource.spec.thresholds):
            if not t.sid:
                continue
            status, what = describe(t.gid, t.sid)
            out.append(
                {
                    "profile": label,
                    "field": f"spec.thresholds line {t.line}",
                    "signature": f"{t.gid}:{t.sid}",
                    "status": status,
                    "what": f"{what}: {t.kind}" if status != "unknown" else what,
                }
            )
    return out


def _summary(ruleset: RuleSet) -> dict[str, object]:
    return {
        "loaded": len(ruleset.rules),
        "skipped": len(ruleset.skipped),
        "reasons": ruleset.counts_by_reason(),
    }


def _print_text(ruleset: RuleSet, out: TextIO, verbose: bool) -> None:
    total = len(ruleset.rules) + len(ruleset.skipped)
    share = f" ({100.0 * len(ruleset.rules) / total:.1f}%)" if total else ""
    out.write(
        f"loaded {len(ruleset.rules)} of {total} rules{share}, skipped {len(ruleset.skipped)} "
        f"in {ruleset.seconds:.1f} s\n"
    )
    reasons = ruleset.counts_by_reason()
    if reasons:
        width = len(str(max(reasons.values())))
        for reason, count in reasons.items():
            out.write(f"  {count:>{width}}  {reason}\n")
    if verbose:
        for skipped in ruleset.skipped:
            out.write(f"{skipped}\n")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `ngfw rules check`, for the `ngfw` command's subparser."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="Suricata rule files")
    parser.add_argument("--json", action="store_true", help='print {"loaded": N, "skipped": M, "reasons": {...}}')
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a rule variable, e.g. HOME_NET=[10.0.0.0/8] (repeatable)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="list every skipped rule with file, line, sid")


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ngfw.compiler.rules_cli FILE... [--json] [--var NAME=VALUE]` (what `ngfw rules check` runs)."""
    parser = argparse.ArgumentParser(prog="ngfw rules check", description=__doc__)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        variables = parse_variables(args.var)
    except ValueError as exc:
        parser.error(str(exc))
    return rules_check(args.files, args.json, variables, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
