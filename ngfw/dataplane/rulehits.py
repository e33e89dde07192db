"""Rule hits: per rule, how many flows it decided, its first and last hit, and since when it is counted.

The fastpath counts decisions per rule index in each policy generation's tables (`Tables.rule_hits()`,
`default_hits()`; ngfw/_fastpath/policy.pxi), never a timestamp: the hot path stays a counter increment. The
dataplane reads those counters every second (and before it answers a question about them); a counter that
moved is a hit at that second. So first and last hits are exact to the second, which is what finding unused
rules needs (`ngfw policy unused --days 30`).

Hits belong to a rule's name (vsys, rule), not its index: they survive policy reloads that renumber rules, and
a rule that leaves the policy keeps its history (for `ngfw policy hits`) without a metric series. The book is
kept in a file (the dataplane's state directory), so a restarted dataplane goes on counting where the last one
stopped. The implicit default deny of each vsys counts as rule `default-deny`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ngfw.dataplane.eve import DEFAULT_RULE

log = logging.getLogger("ngfw.rulehits")

FORMAT = 1
FILE_NAME = "rule-hits.json"
SAVE_EVERY = 30.0  # seconds between writes of a book that changed (and at stop)
FORGET_AFTER = 400 * 86400  # a rule gone from the policy this long is forgotten
Key = tuple[str, str]  # (vsys, rule)


@dataclass
class RuleHit:
    vsys: str
    rule: str
    hits: int = 0
    first: float | None = None  # wall clock of the first hit this dataplane saw (None: never)
    last: float | None = None
    since: float = 0.0  # when this dataplane started counting the rule (it entered its policy)
    running: bool = True  # in the policy in force
    left: float | None = None  # when it left the policy

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def counts_by_name(tables: Any) -> dict[Key, int]:
    """The decisions counted in one generation's tables, by (vsys, rule name)."""
    policy = tables.policy
    out: dict[Key, int] = {}
    for index, value in enumerate(tables.rule_hits()):
        rule = policy.rules[index]
        key = (policy.vsys_name(rule.vsys), rule.name)
        out[key] = out.get(key, 0) + value
    for vsys_index, value in enumerate(tables.default_hits()):
        key = (policy.vsys_name(vsys_index), DEFAULT_RULE)
        out[key] = out.get(key, 0) + value
    return out


class RuleHits:
    """The book of one dataplane. Thread-safe; `observe` is called with each generation's tables."""

    def __init__(self, path: str | os.PathLike[str] | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path) if path else None
        self.clock = clock
        self._lock = threading.Lock()
        self._rules: dict[Key, RuleHit] = {}
        self._generation: int | None = None
        self._seen: dict[Key, int] = {}  # counters of the generation observed last, as last read
        self._dirty = False
        self._saved = 0.0
        self.started = clock()  # when this book started counting (a loaded book: its own start)
        if self.path is not None:
            self._load()

    # ---- counting
    def observe(self, tables: Any) -> None:
        """Read `tables`' counters: what moved since the last read is hits now."""
        now = self.clock()
        counts = counts_by_name(tables)
        with self._lock:
            if tables.generation != self._generation:
                self._generation = tables.generation
                self._seen = {}
                self._running(set(counts), now)
            for key, value in counts.items():
                delta = value - self._seen.get(key, 0)
                if delta > 0:
                    entry = self._rules[key]
                    entry.hits += delta
                    entry.last = now
                    if entry.first is None:
                        entry.first = now
                    self._dirty = True
            self._seen = counts

    def _running(self, keys: set[Key], now: float) -> None:
        """A new generation: these rules are in force (new ones start counting now)."""
        for key, entry in self._rules.items():
            if entry.running and key not in keys:
                entry.running, entry.left = False, now
        for key in keys:
            known = self._rules.get(key)
            if known is None:
                self._rules[key] = RuleHit(key[0], key[1], since=now)
            elif not known.running:
                known.running, known.left = True, None
        for key in [k for k, e in self._rules.items() if e.left is not None and now - e.left > FORGET_AFTER]:
            del self._rules[key]
        self._dirty = True

    # ---- reading
    def totals(self) -> dict[Key, int]:
        """Hits of the rules in force (the `ngfw_rule_hits_total` series: deleted rules have none)."""
        with self._lock:
            return {k: e.hits for k, e in self._rules.items() if e.running}

    def entries(self, vsys: str | None = None, include_gone: bool = False) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e.as_dict()
                for k, e in sorted(self._rules.items())
                if (vsys is None or k[0] == vsys) and (e.running or include_gone)
            ]

    # ---- the file
    def save_if_due(self) -> None:
        if self._dirty and self.clock() - self._saved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        if self.path is None:
            return
        with self._lock:
            data = {
                "format": FORMAT,
                "started": self.started,
                "saved": self.clock(),
                "rules": [e.as_dict() for _, e in sorted(self._rules.items())],
            }
            self._dirty = False
            self._saved = self.clock()
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(data, out, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.error("rule hits not saved in %s: %s", self.path, exc)

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("rules"), list):
                raise ValueError("not a rule hits file of this format")
            rules = {}
            for item in data["rules"]:
                entry = RuleHit(
                    **{k: item[k] for k in ("vsys", "rule", "hits", "first", "last", "since", "running", "left")}
                )
                if not isinstance(entry.hits, int) or entry.hits < 0:
                    raise ValueError(f"rule {entry.vsys}/{entry.rule} has hits {entry.hits!r}")
                rules[(entry.vsys, entry.rule)] = entry
            started = float(data.get("started", self.started))
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("rule hits in %s set aside, counting starts afresh: %s", self.path, exc)
            try:
                os.replace(self.path, self.path.with_name(self.path.name + ".refused"))
            except OSError:
                pass
            return
        self._rules, self.started = rules, started
