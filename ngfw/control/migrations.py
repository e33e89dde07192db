"""Live migration, control's side: a workload's sessions follow it to the host it moves to.

Control is the broker between the two hosts' dataplane agents; it never reads a session record.

Announced (an orchestrator or a vm-operator says so first: `POST /migrations`):
    1. control queues an `export` task for the source; the source sends the workload's sessions
       (phase `precopy`), control hands them to the destination as an `import` task;
    2. the guest moves (the hypervisor's business); its first frame on the destination's VM side is an
       *arrival* the destination reports (`POST /arrivals`);
    3. control queues a `cutover` for the source: it sends what changed since the precopy plus tombstones
       for sessions that ended meanwhile, and hands the sessions over (they linger there unlogged);
    4. the destination imports that delta and reports the result: the migration is `done`.
Unannounced: an arrival of a workload control last saw on another host starts at step 3.

Nothing here lets traffic through: a destination without the sessions drops the workload's mid-stream
segments (strict TCP state) until they arrive, and decides every new flow by its own policy. A source that
does not answer in time fails the migration (reported, audited); the destination goes on with fresh state.

Migrations live in the memory of the controller the agents poll (with the two-controller etcd deployment,
agents of both hosts must poll the same one: documented in docs/control.md).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ngfw.control.auth import Principal

# how long a step may take before the migration is reported failed
SOURCE_TIMEOUT = 5.0  # the source's sessions after an export or cutover task
DESTINATION_TIMEOUT = 5.0  # the destination's result after an import task
ANNOUNCED_WAIT = 600.0  # an announced move whose workload never shows up on the destination
LIVE_SECONDS = 5.0  # an agent that polled its tasks this recently is connected (agents poll every 2 s:
# the HTTP server holds a long-poll without asking again, ngfw.control.server)
KEPT = 200  # finished migrations kept for `GET /migrations` and status
ACTIVE = ("staging", "precopied", "cutover")
LOST = ("malformed", "not_owned", "quota", "table_full")  # import results that lose a session


@dataclass
class Migration:
    id: str
    vsys: str
    workload: str
    source: str
    destination: str
    mode: str  # announced | unannounced
    requested_by: str
    created: float  # wall clock
    state: str = "staging"  # staging -> precopied -> cutover -> done | failed
    detail: str = ""
    # per phase: sent (source's count and time), results (destination's import counts), imported (time)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    cutover_requested: float | None = None  # monotonic
    transfer_seconds: float | None = None  # cut-over requested -> the destination imported
    finished: float | None = None  # wall clock
    waiting_since: float = 0.0  # monotonic: when the current step started
    waiting_for: str = ""  # "source" | "destination" | "arrival"

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    def sessions(self) -> tuple[int, int]:
        """(moved, lost): sessions the destination took over, and those it could not (a full table, its vsys
        quota, a record that did not verify). Sessions that ended during the move (tombstones), ones the
        destination had already (they cross both hosts) and ones its policy refuses are neither: a session
        the policy denies must not move."""
        pre = self.phases.get("precopy", {}).get("results", {})
        cut = self.phases.get("cutover", {}).get("results", {})
        # a precopy "update" refreshed a copy an earlier move left here (the workload came back): moved too
        moved = (
            int(pre.get("imported", 0))
            + int(pre.get("updated", 0))
            + int(cut.get("imported", 0))
            - int(cut.get("removed", 0))
        )
        lost = sum(int(n) for results in (pre, cut) for k, n in results.items() if k in LOST)
        return max(moved, 0), lost

    def refused(self) -> int:
        """Sessions the destination's policy refused (they end; nothing of them passes there)."""
        return sum(int(self.phases.get(p, {}).get("results", {}).get("policy", 0)) for p in ("precopy", "cutover"))

    def as_dict(self) -> dict[str, Any]:
        moved, lost = self.sessions()
        return {
            "id": self.id,
            "vsys": self.vsys,
            "workload": self.workload,
            "from": self.source,
            "to": self.destination,
            "mode": self.mode,
            "state": self.state,
            "detail": self.detail,
            "requested_by": self.requested_by,
            "created": self.created,
            "finished": self.finished,
            "sessions_moved": moved,
            "sessions_lost": lost,
            "sessions_refused_by_policy": self.refused(),
            "transfer_seconds": self.transfer_seconds,
            "duration_seconds": (self.finished - self.created) if self.finished else None,
            "phases": self.phases,
        }


class MigrationError(Exception):
    """A refused migration request: HTTP status and one sentence (the service turns it into an ApiError)."""

    def __init__(self, status: int, message: str, migration: Migration | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.migration = migration


class MigrationCoordinator:
    """Migrations, each host's task queue and where each workload was last seen. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time, on_change: Callable[[], None] | None = None) -> None:
        """`on_change`: told (without blocking) whenever a host's tasks change, for long-polls that wait
        elsewhere than in `wait_tasks` (the HTTP server's)."""
        self.clock = clock
        self.on_change = on_change
        self._watchdog: threading.Thread | None = None
        self._lock = threading.Condition()
        self._migrations: dict[str, Migration] = {}
        self._tasks: dict[str, deque[dict[str, Any]]] = {}
        self._polling: dict[str, int] = {}  # host -> long-polls in flight
        self._last_poll: dict[str, float] = {}  # host -> monotonic time a poll last ended
        self._location: dict[tuple[str, str], str] = {}
        self._ids = itertools.count(1)
        self.counts: dict[str, int] = {"done": 0, "failed": 0}

    # ---- hosts
    def connected(self, host: str) -> bool:
        with self._lock:
            return self._polling.get(host, 0) > 0 or time.monotonic() - self._last_poll.get(host, -1e9) < LIVE_SECONDS

    def known_hosts(self) -> set[str]:
        with self._lock:
            return set(self._last_poll) | set(self._polling)

    def location(self, vsys: str, workload: str) -> str | None:
        with self._lock:
            return self._location.get((vsys, workload))

    def _queue(self, host: str, task: dict[str, Any]) -> None:
        self._tasks.setdefault(host, deque()).append(task)
        self._lock.notify_all()
        if self.on_change is not None:
            self.on_change()

    def _watch(self) -> None:
        """Fail migrations whose next step is overdue, while any is in progress (nobody may be polling)."""
        while True:
            with self._lock:
                self._expire()
                if not any(m.active for m in self._migrations.values()):
                    self._watchdog = None
                    return
            time.sleep(0.5)

    def _ensure_watchdog(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, name="ngfw-migrations", daemon=True)
            self._watchdog.start()

    def wait_tasks(self, host: str, wait: float) -> list[dict[str, Any]]:
        """The host's queued tasks, waiting up to `wait` s for one (its agent's long-poll)."""
        deadline = time.monotonic() + max(0.0, min(wait, 60.0))
        with self._lock:
            self._polling[host] = self._polling.get(host, 0) + 1
            try:
                while True:
                    self._expire()
                    queue = self._tasks.get(host)
                    if queue:
                        out = list(queue)
                        queue.clear()
                        return out
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return []
                    self._lock.wait(min(remaining, 0.5))
            finally:
                self._polling[host] -= 1
                self._last_poll[host] = time.monotonic()

    # ---- requests
    def request(self, who: Principal, vsys: str, workload: str, source: str | None, destination: str) -> Migration:
        """An announced move of `workload` (whose running host is `source`, None: unknown) to `destination`."""
        with self._lock:
            self._expire()
            source = self._location.get((vsys, workload), source)
            if source == destination:
                raise MigrationError(409, f"workload {vsys}/{workload} is on {destination} already")
            if any(m.active and (m.vsys, m.workload) == (vsys, workload) for m in self._migrations.values()):
                raise MigrationError(409, f"workload {vsys}/{workload} is being migrated already")
            m = self._new(vsys, workload, source or "", destination, "announced", who.name)
            if not self._connected(destination):
                self._fail(
                    m,
                    f"destination {destination} has no connected dataplane: the workload's traffic there "
                    "is denied until one runs",
                )
                raise MigrationError(409, m.detail, m)
            if not source or not self._connected(source):
                # the move goes ahead (it is the hypervisor's); its sessions cannot follow
                self._fail(
                    m,
                    f"source {source or '(unknown host)'} has no connected dataplane: the workload's "
                    "sessions cannot follow it; the destination enforces with fresh state",
                )
                raise MigrationError(409, m.detail, m)
            self._queue(source, {"kind": "export", "migration": m.id, "vsys": vsys, "workload": workload})
            self._wait(m, "source")
            return m

    def arrivals(
        self, host: str, workloads: list[tuple[str, str]], spec_host: Callable[[str, str], str | None]
    ) -> list[Migration]:
        """`host` saw these workloads' first frames on its VM side: cut over the moves they finish, and start an
        unannounced one for a workload last seen elsewhere. Returns the migrations that moved on."""
        started: list[Migration] = []
        with self._lock:
            self._expire()
            for vsys, name in workloads:
                key = (vsys, name)
                before = self._location.get(key) or spec_host(vsys, name)
                self._location[key] = host
                active = next((m for m in self._migrations.values() if m.active and (m.vsys, m.workload) == key), None)
                if active is not None and active.destination == host:
                    self._cutover(active)
                    started.append(active)
                    continue
                if active is not None:
                    # it went somewhere else than announced: that move is over, this one starts from its source
                    self._fail(active, f"the workload showed up on {host}, not on {active.destination}")
                    before = active.source
                if before and before != host:
                    m = self._new(vsys, name, before, host, "unannounced", f"dataplane:{host}")
                    if not self._connected(before):
                        self._fail(
                            m,
                            f"source {before} has no connected dataplane: the workload's sessions cannot "
                            "follow it; the destination enforces with fresh state",
                        )
                    else:
                        self._cutover(m)
                    started.append(m)
        return started

    def sessions_sent(self, host: str, migration_id: str, phase: str, batch: str, count: int) -> Migration:
        """The source's export of `phase`: on to the destination."""
        with self._lock:
            m = self._get(migration_id)
            if host != m.source:
                raise MigrationError(403, f"host {host} is not the source of migration {m.id}")
            if not m.active:
                raise MigrationError(409, f"migration {m.id} is {m.state}: {m.detail}")
            if phase not in ("precopy", "cutover"):
                raise MigrationError(400, f"phase must be precopy or cutover, got {phase!r}")
            m.phases.setdefault(phase, {})["sent"] = {"count": count, "at": self.clock()}
            if phase == "precopy" and m.state == "staging":
                m.state = "precopied"
            self._queue(
                m.destination,
                {
                    "kind": "import",
                    "migration": m.id,
                    "phase": phase,
                    "vsys": m.vsys,
                    "workload": m.workload,
                    "from": m.source,
                    "mode": m.mode,
                    "created": m.created,
                    "batch": batch,
                },
            )
            self._wait(m, "destination")
            return m

    def result(self, host: str, migration_id: str, phase: str, results: dict[str, int], detail: str = "") -> Migration:
        """The destination imported `phase`."""
        with self._lock:
            m = self._get(migration_id)
            if host != m.destination:
                raise MigrationError(403, f"host {host} is not the destination of migration {m.id}")
            if phase not in ("precopy", "cutover"):
                raise MigrationError(400, f"phase must be precopy or cutover, got {phase!r}")
            m.phases.setdefault(phase, {}).update(results=dict(results), imported=self.clock())
            if detail:
                m.detail = detail
            if phase == "cutover" and m.active:
                m.state = "done"
                m.finished = self.clock()
                if m.cutover_requested is not None:
                    m.transfer_seconds = time.monotonic() - m.cutover_requested
                self.counts["done"] += 1
                self._location[(m.vsys, m.workload)] = m.destination
            elif phase == "precopy" and m.state == "precopied":
                self._wait(m, "arrival")
            return m

    # ---- reading
    def list(self, visible: Callable[[str], bool]) -> list[dict[str, Any]]:
        with self._lock:
            self._expire()
            return [
                m.as_dict()
                for m in sorted(self._migrations.values(), key=lambda m: m.created, reverse=True)
                if visible(m.vsys)
            ]

    def get(self, migration_id: str) -> Migration:
        with self._lock:
            return self._get(migration_id)

    # ---- internals (lock held)
    def _connected(self, host: str) -> bool:
        return self._polling.get(host, 0) > 0 or time.monotonic() - self._last_poll.get(host, -1e9) < LIVE_SECONDS

    def _new(self, vsys: str, workload: str, source: str, destination: str, mode: str, by: str) -> Migration:
        m = Migration(
            id=f"m{next(self._ids)}-{int(self.clock())}",
            vsys=vsys,
            workload=workload,
            source=source,
            destination=destination,
            mode=mode,
            requested_by=by,
            created=self.clock(),
        )
        self._migrations[m.id] = m
        self._ensure_watchdog()
        finished = [x for x in self._migrations.values() if not x.active]
        for old in sorted(finished, key=lambda x: x.created)[: max(0, len(finished) - KEPT)]:
            del self._migrations[old.id]
        return m

    def _get(self, migration_id: str) -> Migration:
        m = self._migrations.get(migration_id)
        if m is None:
            raise MigrationError(404, f"migration {migration_id} does not exist")
        return m

    def _wait(self, m: Migration, on: str) -> None:
        m.waiting_for, m.waiting_since = on, time.monotonic()

    def _cutover(self, m: Migration) -> None:
        m.state = "cutover"
        m.cutover_requested = time.monotonic()
        self._queue(
            m.source,
            {
                "kind": "cutover",
                "migration": m.id,
                "vsys": m.vsys,
                "workload": m.workload,
                "precopied": "precopy" in m.phases,
            },
        )
        self._wait(m, "source")

    def _fail(self, m: Migration, why: str) -> None:
        m.state, m.detail, m.finished = "failed", why, self.clock()
        m.waiting_for = ""
        self.counts["failed"] += 1
        if m.destination and self._connected(m.destination):
            self._queue(
                m.destination,
                {
                    "kind": "failed",
                    "migration": m.id,
                    "vsys": m.vsys,
                    "workload": m.workload,
                    "from": m.source,
                    "mode": m.mode,
                    "created": m.created,
                    "detail": why,
                },
            )

    def _expire(self) -> None:
        now = time.monotonic()
        for m in list(self._migrations.values()):
            if not m.active or not m.waiting_for:
                continue
            waited = now - m.waiting_since
            if m.waiting_for == "source" and waited > SOURCE_TIMEOUT:
                self._fail(
                    m,
                    f"source {m.source} did not send the sessions within {SOURCE_TIMEOUT:.0f} s "
                    "(its dataplane died?); the destination enforces with fresh state",
                )
            elif m.waiting_for == "destination" and waited > DESTINATION_TIMEOUT:
                self._fail(
                    m, f"destination {m.destination} did not import the sessions within {DESTINATION_TIMEOUT:.0f} s"
                )
            elif m.waiting_for == "arrival" and waited > ANNOUNCED_WAIT:
                self._fail(m, f"the workload did not show up on {m.destination} within {ANNOUNCED_WAIT:.0f} s")
