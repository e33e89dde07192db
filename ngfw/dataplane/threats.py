"""Signature sets for threat inspection: rule files -> compiled signatures -> the fastpath's rule set.

A dataplane is given signature sets by name (`--rules NAME=PATH`, PATH a .rules file or a directory
of them; a bare PATH joins the set `default`). Policy rules reach them through threat profiles.
Loading runs off the hot path: the rule compiler parses and checks every rule, then
`InspectTables` builds the C tables and Hyperscan databases (cached on disk by content).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("ngfw.threats")

DEFAULT_SET = "default"


class RulesError(Exception):
    """A signature set that cannot be used; the message says which file or rules and why."""


def parse_rules_arg(text: str) -> tuple[str, str]:
    """`NAME=PATH` or `PATH` (set `default`)."""
    name, sep, path = text.partition("=")
    if not sep:
        return DEFAULT_SET, text
    if not name or not path:
        raise ValueError(f"--rules {text!r}: expected NAME=PATH or PATH")
    return name, path


def engine_check(ruleset: Any, catalogue: Any = None) -> Any:
    """The compiler's RuleSet narrowed to what the fastpath runs: rules the engine cannot (a buffer it
    does not fill, a regex PCRE2 refuses) move to `skipped` with the reason."""
    from dataclasses import replace

    from ngfw.compiler.suricata.model import Skipped
    from ngfw.dataplane.fastpath import engine_module

    if catalogue is None:
        from ngfw.compiler.catalogue import load_catalogue

        catalogue = load_catalogue()
    inspect = engine_module().InspectTables([("check", ruleset.rules)], catalogue)
    refused = {id(sig): (reason, detail) for _, sig, reason, detail in inspect.skipped}
    extra = tuple(
        Skipped(sig.file, sig.line, sig.sid, *refused[id(sig)]) for sig in ruleset.rules if id(sig) in refused
    )
    return replace(
        ruleset, rules=tuple(r for r in ruleset.rules if id(r) not in refused), skipped=ruleset.skipped + extra
    )


def sources_digest(sources: list[tuple[str, str]], variables: dict[str, str]) -> str:
    """Identifies the content of a signature load: set names, file contents and variables."""
    import hashlib

    h = hashlib.sha256(repr(sorted(variables.items())).encode())
    for name, path in sources:
        for f in rule_files(path):
            h.update(f"{name}\0{f}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def default_signature_cache() -> str:
    """Where signature sets distributed by control are kept: $NGFW_CACHE_DIR (or ~/.cache/ngfw)/signature-sets."""
    import os

    base = os.environ.get("NGFW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ngfw"
    )
    return os.path.join(base, "signature-sets")


def set_hashes(sources: list[tuple[str, str]], known: dict[str, str]) -> dict[str, str]:
    """{set name: sha256 of the archive of its rule files} (ngfw.compiler.signature_archive); `known`: sets whose
    hash is known already (a verified SignatureSet)."""
    from ngfw.compiler.signature_archive import ArchiveError, pack, sha256

    members: dict[str, list[tuple[str, bytes]]] = {}
    for name, path in sources:
        if name in known:
            continue
        for f in rule_files(path):
            members.setdefault(name, []).append(
                (f.name if f.name.endswith(".rules") else f.name + ".rules", f.read_bytes())
            )
    out = dict(known)
    for name, files in members.items():
        try:
            out[name] = sha256(pack(files))
        except ArchiveError:  # two files of one name from two paths: no archive says what runs
            out[name] = ""
    return out


def rule_files(path: str) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.rules"))
        if not files:
            raise RulesError(f"{path}: a directory without *.rules files")
        return files
    if not p.exists():
        raise RulesError(f"{path}: no such rule file")
    return [p]


@dataclass
class SignatureSets:
    """What a load produced: the fastpath's rule set and an account of every rule."""

    inspect: Any  # ngfw._fastpath.engine.InspectTables
    loaded: int
    skipped: list[tuple[str, str, int, int | None, str, str]] = field(
        default_factory=list
    )  # set, file, line, sid, reason, detail
    malformed: list[str] = field(default_factory=list)
    parse_seconds: float = 0.0
    compile_seconds: float = 0.0
    sources: dict[str, list[str]] = field(default_factory=dict)

    def reasons(self) -> dict[str, int]:
        return dict(Counter(s[4] for s in self.skipped).most_common())

    def _address_index(self) -> str:
        index = getattr(self.inspect, "address_index", None) or {}
        if not index:
            return "empty"
        return (
            f"{index['header_only_rules'] + index['per_packet_rules']} rules, {index['bytes'] / 1e6:.1f} MB, "
            f"built in {index['build_seconds']:.2f} s"
        )

    def summary(self) -> str:
        total = self.loaded + len(self.skipped)
        top = ", ".join(f"{n} {reason}" for reason, n in list(self.reasons().items())[:5])
        return (
            f"{self.loaded} of {total} signatures loaded in {self.parse_seconds + self.compile_seconds:.1f} s "
            f"({', '.join(self.sources)}); address index {self._address_index()}" + (f"; skipped: {top}" if top else "")
        )


def load_signature_sets(
    sets: list[tuple[str, str]], variables: dict[str, str] | None = None, catalogue: Any = None, strict: bool = False
) -> SignatureSets:
    """Compile the named rule files into one fastpath rule set.

    `strict`: refuse the whole load when any rule is malformed (a reload must not silently lose
    rules that ran before); otherwise malformed rules are skipped and listed.
    """
    from ngfw.compiler.suricata import load_rules
    from ngfw.dataplane.fastpath import engine_module

    by_name: dict[str, list[Path]] = {}
    for name, path in sets:
        by_name.setdefault(name, []).extend(rule_files(path))
    started = time.perf_counter()
    compiled: list[tuple[str, Any]] = []
    skipped: list[tuple[str, str, int, int | None, str, str]] = []
    malformed: list[str] = []
    for name, files in by_name.items():
        try:
            ruleset = load_rules(files, variables=variables or {})
        except OSError as exc:
            raise RulesError(f"cannot read rules of set {name}: {exc}") from None
        compiled.append((name, ruleset.rules))
        for s in ruleset.skipped:
            skipped.append((name, s.file, s.line, s.sid, s.reason, s.detail))
            if not s.unsupported:
                malformed.append(str(s))
    parse_seconds = time.perf_counter() - started
    if strict and malformed:
        shown = "\n  ".join(malformed[:20])
        more = f"\n  ... and {len(malformed) - 20} more" if len(malformed) > 20 else ""
        raise RulesError(f"{len(malformed)} malformed rules:\n  {shown}{more}")
    if catalogue is None:
        from ngfw.compiler.catalogue import load_catalogue

        catalogue = load_catalogue()  # app-layer rules (`alert http`) name the shipped apps
    fp = engine_module()
    try:
        inspect = fp.InspectTables(compiled, catalogue)
    except (RuntimeError, MemoryError, ValueError) as exc:
        raise RulesError(str(exc)) from None
    # the compiler's refusals, by sid (a Skipped carries no gid; generator 1 is what rule files use)
    inspect.skipped_sids = {name: {(1, s[3]) for s in skipped if s[0] == name and s[3] is not None} for name in by_name}
    for set_name, sig, reason, detail in inspect.skipped:
        skipped.append((set_name, sig.file, sig.line, sig.sid, reason, detail))
        if not reason.startswith("unsupported "):
            malformed.append(f"{sig.file}:{sig.line}: sid {sig.sid}: {reason} ({detail})")
    if strict and malformed:
        raise RulesError(f"{len(malformed)} rules cannot be compiled:\n  " + "\n  ".join(malformed[:20]))
    if inspect.loaded == 0:
        raise RulesError("no signature loaded from " + ", ".join(str(f) for fs in by_name.values() for f in fs))
    return SignatureSets(
        inspect=inspect,
        loaded=inspect.loaded,
        skipped=skipped,
        malformed=malformed,
        parse_seconds=parse_seconds,
        compile_seconds=inspect.compile_seconds,
        sources={n: [str(f) for f in fs] for n, fs in by_name.items()},
    )
