"""Signature sets in control: pushed once by content hash, referenced from versions, checked at commit.

`PUT /signature-sets/SHA256` (`ngfw rules push`) takes a gzip-compressed archive of rule files
(ngfw.compiler.signature_archive): control checks that it hashes to SHA256, parses every rule with
the dataplane's compiler (a set with malformed rules is refused, naming them), and keeps it in the
store with what it holds (files, rule counts, the gid:sid of every rule). A `SignatureSet` resource
names it; bundles carry only that name and hash, and agents fetch the archive (`GET`) when they do
not have it. At commit, every SignatureSet must name a stored set, and a ThreatProfile's exceptions
and threshold.config lines must name signatures its sets have.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ngfw.compiler.signature_archive import ArchiveError, decompress, sha256, unpack
from ngfw.compiler.tables import CompiledPolicy
from ngfw.control.documents import Problem
from ngfw.control.store import Store

MAX_REPORTED = 20


class PushRefused(Exception):
    """An archive control will not keep; `status` is the HTTP status, `problems` name the rules at fault."""

    def __init__(self, status: int, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems)


def describe(archive: bytes, digest: str) -> dict[str, Any]:
    """What a set holds, read by the dataplane's rule compiler: files, rules loaded and skipped (by reason),
    and the gid:sid of every rule (loaded or not). PushRefused when a rule is malformed."""
    from ngfw.compiler.suricata import load_rules

    try:
        members = unpack(archive)
    except ArchiveError as exc:
        raise PushRefused(422, f"not a signature set archive: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="ngfw-sigset-") as tmp:
        paths = []
        for name, data in members:
            (Path(tmp) / name).write_bytes(data)
            paths.append(Path(tmp) / name)
        ruleset = load_rules(paths)
    malformed = [s for s in ruleset.skipped if not s.unsupported and s.reason != "unknown variable"]
    if malformed:
        problems = [
            Problem(f"{Path(s.file).name}:{s.line}", f"sid {s.sid}" if s.sid else "", f"{s.reason} ({s.detail})")
            for s in malformed[:MAX_REPORTED]
        ]
        more = f" (the first {MAX_REPORTED} are listed)" if len(malformed) > MAX_REPORTED else ""
        raise PushRefused(
            422,
            f"{len(malformed)} malformed rule(s): the set is refused{more}; fix them (or disable them) and push again",
            problems,
        )
    sids: dict[str, set[int]] = {}
    for sig in ruleset.rules:
        sids.setdefault(str(sig.gid), set()).add(sig.sid)
    for s in ruleset.skipped:
        if s.sid is not None:
            sids.setdefault("1", set()).add(s.sid)
    return {
        "sha256": digest,
        "files": [[name, len(data)] for name, data in members],
        "bytes": len(archive),
        "rules": len(ruleset.rules),
        "skipped": len(ruleset.skipped),
        "reasons": dict(list(ruleset.counts_by_reason().items())[:10]),
        "sids": {gid: sorted(values) for gid, values in sids.items()},
    }


class SignatureSetRegistry:
    """The stored sets, with their signature ids kept in memory once read (sets never change)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sids: dict[str, frozenset[tuple[int, int]]] = {}
        self._lock = threading.Lock()

    def push(self, digest: str, body: bytes, author: str, now: float | None = None) -> tuple[dict[str, Any], bool]:
        """Check and keep a gzip-compressed archive as set `digest`: (its metadata, stored now)."""
        if not _is_sha256(digest):
            raise PushRefused(400, f"{digest!r} is not a sha256 (64 lower-case hex digits)")
        known = self.store.signature_set_meta(digest)
        if known is not None:
            return _public(known), False
        try:
            archive = decompress(body)
        except ArchiveError as exc:
            raise PushRefused(400, f"the body is not a gzip-compressed signature archive: {exc}") from None
        found = sha256(archive)
        if found != digest:
            raise PushRefused(422, f"the archive hashes to {found}, not to {digest} (the URL's): corrupted on the way")
        meta = describe(archive, digest)
        meta.update(created=time.time() if now is None else now, author=author, compressed_bytes=len(body))
        stored = self.store.put_signature_set(digest, body, meta)
        return _public(meta), stored

    def archive(self, digest: str) -> bytes | None:
        """The stored bytes, as stored: agents check the hash, so a store corrupted behind control's back is
        refused by the hosts rather than laundered here."""
        return self.store.get_signature_set(digest) if _is_sha256(digest) else None

    def listing(self) -> list[dict[str, Any]]:
        return [_public(meta) for meta in self.store.signature_sets()]

    def sids(self, digest: str) -> frozenset[tuple[int, int]] | None:
        with self._lock:
            found = self._sids.get(digest)
        if found is None:
            meta = self.store.signature_set_meta(digest)
            if meta is None:
                return None
            found = frozenset((int(gid), sid) for gid, values in meta.get("sids", {}).items() for sid in values)
            with self._lock:
                self._sids[digest] = found
        return found

    def check(self, policy: CompiledPolicy) -> tuple[list[Problem], list[str]]:
        """Problems (a SignatureSet naming no stored set, an exception naming no signature of its profile's
        sets) and warnings (a profile whose sets control does not hold: its sids are checked on the hosts)."""
        problems: list[Problem] = []
        warnings: list[str] = []
        held: dict[str, frozenset[tuple[int, int]]] = {}
        for name, digest in policy.signature_sets:
            sids = self.sids(digest)
            if sids is None:
                problems.append(
                    Problem(
                        f"SignatureSet {name}",
                        "spec.sha256",
                        f"control holds no signature set with sha256 {digest}: push it with "
                        f"`ngfw rules push {name} PATH`",
                    )
                )
            else:
                held[name] = sids
        from ngfw.compiler.threshold_config import parse_threshold_config
        from ngfw.model.resources import ThreatProfile, parse_sid

        for resource in policy.build.policy_resources:  # every profile, whether a rule names it yet or not
            if not isinstance(resource, ThreatProfile):
                continue
            spec = resource.spec
            distributed = {name for name, _ in policy.signature_sets}
            local = [name for name in spec.signatures if name not in distributed]
            if distributed and local:  # a site that distributes sets, and a profile naming another one
                warnings.append(
                    f"ThreatProfile {resource.metadata.vsys}/{resource.metadata.name} names signature "
                    f"set(s) {', '.join(local)}, which no SignatureSet provides: every host running it "
                    "needs them from --rules NAME=PATH (else it refuses the policy)"
                )
            lines = [t for t in parse_threshold_config(spec.thresholds) if t.sid]
            if not spec.exceptions and not lines:
                continue
            label = f"ThreatProfile {resource.metadata.vsys}/{resource.metadata.name}"
            uses = list(spec.signatures) or [name for name, _ in policy.signature_sets]
            missing = [name for name in uses if name not in held]
            if not uses or missing:
                sets = f"sets {', '.join(missing)} are" if missing else "no set is"
                warnings.append(
                    f"{label}: the signatures its exceptions name are not checked here: its {sets} not "
                    "distributed by control (push them with `ngfw rules push`); each host checks them "
                    "when it loads the policy"
                )
                continue
            have = frozenset().union(*(held[name] for name in uses))
            where = ", ".join(uses)
            for index, exception in enumerate(spec.exceptions):
                gid, sid = parse_sid(exception.sid)
                if (gid, sid) not in have:
                    problems.append(
                        Problem(
                            label,
                            f"spec.exceptions[{index}].sid",
                            f"unknown signature {gid}:{sid} (not in signature sets {where})",
                        )
                    )
            for t in lines:
                if (t.gid, t.sid) not in have:
                    problems.append(
                        Problem(
                            label,
                            "spec.thresholds",
                            f"line {t.line}: unknown signature {t.gid}:{t.sid} (not in signature sets {where})",
                        )
                    )
        return problems, warnings


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _public(meta: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if k not in ("sids", "chunks")}
