"""Live migration, a dataplane's side: send a moving workload's sessions, take an arriving one's.

A `MigrationAgent` runs beside the bundle agent of `ngfw dataplane --control` (ngfw.control.agent). It
long-polls control for tasks (ngfw.control.migrations has the protocol):

- `export` (announced move, before the guest goes): the workload's sessions, with inspection state and
  Hyperscan's compressed streams, as a `SessionBatch` (phase `precopy`);
- `cutover` (the guest arrived elsewhere): what changed since the precopy (or everything, unannounced),
  tombstones for sessions that ended meanwhile; the flows are handed over (they linger here unlogged,
  ngfw/_fastpath/session_defs.pxi MIG_*), and the workload's next frame here is an arrival again;
- `import` (this host is the destination): every record is checked and decided again by this host's policy
  and must have the moving workload at one end (`Engine.import_sessions(require_workload=...)`); the result
  goes back to control, and a cut-over's import is the migration's EVE record and metrics.

Arrivals (a workload's first frame on this dataplane's VM side, from the fastpath's event ring) are
reported to control in small batches from a thread of their own, so the event drain never waits on HTTP.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from typing import Any

from ngfw.control.client import ControlClient, ControlError, ControlUnreachable
from ngfw.control.migrations import LOST
from ngfw.dataplane.state import SessionBatch, StateError

log = logging.getLogger("ngfw.migration")

TRANSFER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class MigrationAgent:
    def __init__(self, dataplane: Any, client: ControlClient, host: str, wait: float = 2.0) -> None:
        """`wait`: seconds of one long-poll for tasks; control counts this host connected for a few seconds
        after each (ngfw.control.migrations.LIVE_SECONDS), so it stays short."""
        self.dp = dataplane
        self.client = client
        self.host = host
        self.wait = wait
        self.precopies: dict[str, tuple[int, bytes]] = {}  # migration -> (engine clock of the precopy, its keys)
        # metrics (read by ngfw.dataplane.metrics at scrape time)
        self.migrations: dict[str, int] = {}  # result (done, failed) -> migrations into this host
        self.sessions: dict[str, int] = {}  # import result -> sessions
        self.exported: int = 0
        self.transfer_counts = [0] * (len(TRANSFER_BUCKETS) + 1)
        self.transfer_sum = 0.0
        self.in_progress: dict[str, dict[str, Any]] = {}
        self._arrivals: deque[dict[str, str]] = deque()
        self._arrival_wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ---- running
    def start(self) -> None:
        self.dp.arrival_listeners.append(self.on_arrival)
        for target, name in ((self._poll_tasks, "ngfw-migration"), (self._send_arrivals, "ngfw-arrivals")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._arrival_wake.set()

    def on_arrival(self, vsys: str, workload: str, when: float) -> None:
        self._arrivals.append({"vsys": vsys, "name": workload})
        self._arrival_wake.set()

    def _send_arrivals(self) -> None:
        while not self._stop.is_set():
            self._arrival_wake.wait(1.0)
            self._arrival_wake.clear()
            batch: list[dict[str, str]] = []
            while self._arrivals and len(batch) < 500:
                batch.append(self._arrivals.popleft())
            if not batch:
                continue
            try:
                self.client.arrivals(self.host, batch)
            except (ControlUnreachable, ControlError) as exc:
                # control learns where the workload is from its next frame after a restart of ours
                log.warning("arrivals of %s not reported to control: %s", ", ".join(a["name"] for a in batch), exc)

    def _poll_tasks(self) -> None:
        while not self._stop.is_set():
            try:
                tasks = self.client.tasks(self.host, self.wait)
            except (ControlUnreachable, ControlError) as exc:
                log.debug("migration tasks: %s", exc)
                self._stop.wait(0.5)
                continue
            for task in tasks:
                try:
                    self.handle(task)
                except Exception:  # noqa: BLE001 - one bad task must not end the agent
                    log.exception("migration task %s failed", task.get("kind"))

    # ---- tasks
    def handle(self, task: dict[str, Any]) -> None:
        kind = task.get("kind")
        if kind == "export":
            self._send(task, "precopy")
        elif kind == "cutover":
            self._send(task, "cutover")
        elif kind == "import":
            self._import(task)
        elif kind == "failed":
            self._failed(task)
        else:
            log.warning("unknown migration task %r", kind)

    def _workload_index(self, vsys: str, name: str) -> int:
        policy = self.dp.policy
        if policy is None:
            return -1
        for index, wl in enumerate(policy.workloads):
            if wl.name == name and policy.vsys_name(wl.vsys) == vsys:
                return index
        return -1

    def _send(self, task: dict[str, Any], phase: str) -> None:
        migration, vsys, name = task["migration"], task["vsys"], task["workload"]
        engine = self.dp.engine
        index = self._workload_index(vsys, name)
        if index < 0:
            log.error(
                "migration %s: workload %s/%s is not in this host's policy: nothing to send", migration, vsys, name
            )
            records, count, since_keys = b"", 0, b""
            out: dict[str, Any] = {"keys": b"", "now": 0}
        else:
            since, since_keys = self.precopies.pop(migration, (0, b"")) if phase == "cutover" else (0, b"")
            out = engine.export_sessions(
                workload=index, changed_since=since, streams=True, hand_over=phase == "cutover"
            )
            records, count = out["records"], out["count"]
            if phase == "precopy":
                self.precopies[migration] = (out["now"], out["keys"])
            elif since_keys:
                # sessions the precopy brought there that have ended here since: the destination drops its copies
                now_keys = set(_split_keys(out["keys"]))
                gone = [k for k in _split_keys(since_keys) if k not in now_keys]
                records += self.dp.fp.tombstones(b"".join(gone))
            if phase == "cutover":
                engine.forget_presence(index)  # it left: its next frame here is an arrival again
        tables = engine.tables
        batch = SessionBatch(
            records=records,
            apps=list(tables.app_names) if tables is not None else [],
            record_format=self.dp.fp.record_format(),
            count=count,
            meta={
                "migration": migration,
                "vsys": vsys,
                "workload": name,
                "phase": phase,
                "host": self.host,
                "exported_at": time.time(),
            },
        )
        self.exported += count
        self.client.migration_sessions(
            migration, self.host, phase, base64.b64encode(batch.to_bytes()).decode("ascii"), count
        )
        log.info("migration %s: %d sessions of %s/%s sent (%s)", migration, count, vsys, name, phase)

    def _import(self, task: dict[str, Any]) -> None:
        migration, vsys, name, phase = task["migration"], task["vsys"], task["workload"], task["phase"]
        started = time.time()
        results: dict[str, int]
        detail = ""
        try:
            batch = SessionBatch.from_bytes(base64.b64decode(task["batch"], validate=True), self.dp.fp.record_format())
            if (batch.meta.get("vsys"), batch.meta.get("workload"), batch.meta.get("migration")) != (
                vsys,
                name,
                migration,
            ):
                raise StateError(
                    f"the batch is of {batch.meta.get('vsys')}/{batch.meta.get('workload')} "
                    f"({batch.meta.get('migration')}), not of {vsys}/{name} ({migration})"
                )
            index = self._workload_index(vsys, name)
            if index < 0:
                raise StateError(f"workload {vsys}/{name} is not in this host's policy")
            results = self.dp.engine.import_sessions(batch.records, batch.apps, migration=True, require_workload=index)[
                "results"
            ]
            exported_at = float(batch.meta.get("exported_at", started))
        except (StateError, ValueError, KeyError, RuntimeError, TimeoutError) as exc:
            # nothing of a batch that does not verify is used: the sessions are lost, the policy holds
            detail = f"sessions refused: {exc}"
            log.error("migration %s: %s", migration, detail)
            results = {"malformed": int(task.get("count", 0) or 1)}
            exported_at = started
        for result, n in results.items():
            self.sessions[result] = self.sessions.get(result, 0) + n
        transfer = max(0.0, time.time() - exported_at)
        log.info(
            "migration %s: %s of %s/%s imported in %.3f s: %s",
            migration,
            phase,
            vsys,
            name,
            transfer,
            ", ".join(f"{n} {k}" for k, n in sorted(results.items())) or "none",
        )
        entry = self.in_progress.setdefault(migration, {"results": {}, "fail_open_base": self._fail_open_packets()})
        entry["results"][phase] = results
        if phase == "cutover":
            self._observe_transfer(transfer)
            self._finished(task, "done" if not detail else "failed", transfer, detail)
        self.client.migration_result(migration, self.host, phase, results, detail)

    def _failed(self, task: dict[str, Any]) -> None:
        log.warning(
            "migration %s of %s/%s failed: %s",
            task["migration"],
            task["vsys"],
            task["workload"],
            task.get("detail", ""),
        )
        self._finished(task, "failed", None, task.get("detail", ""))

    def _observe_transfer(self, seconds: float) -> None:
        self.transfer_sum += seconds
        for i, bound in enumerate(TRANSFER_BUCKETS):
            if seconds <= bound:
                self.transfer_counts[i] += 1
                return
        self.transfer_counts[-1] += 1

    def _finished(self, task: dict[str, Any], result: str, transfer: float | None, detail: str) -> None:
        """The migration into this host is over: its metrics and its EVE record."""
        migration = task["migration"]
        entry = self.in_progress.pop(migration, {"results": {}, "fail_open_base": self._fail_open_packets()})
        self.migrations[result] = self.migrations.get(result, 0) + 1
        pre, cut = entry["results"].get("precopy", {}), entry["results"].get("cutover", {})
        moved = pre.get("imported", 0) + pre.get("updated", 0) + cut.get("imported", 0) - cut.get("removed", 0)
        lost = sum(n for results in (pre, cut) for k, n in results.items() if k in LOST)
        created = float(task.get("created") or time.time())
        fail_open = self._fail_open_packets() - entry["fail_open_base"]
        if self.dp.eve is not None:
            self.dp.eve.write_record(
                {
                    "timestamp": _eve_time(time.time()),
                    "event_type": "migration",
                    "host": self.host,
                    "migration": {
                        "id": migration,
                        "workload": task["workload"],
                        "vsys": task["vsys"],
                        "from_host": task.get("from", ""),
                        "to_host": self.host,
                        "mode": task.get("mode", ""),
                        "result": result,
                        "sessions_moved": max(moved, 0),
                        "sessions_lost": lost,
                        "sessions_refused_by_policy": pre.get("policy", 0) + cut.get("policy", 0),
                        "sessions": {"precopy": pre, "cutover": cut},
                        "duration": round(time.time() - created, 6),
                        "transfer_seconds": round(transfer, 6) if transfer is not None else None,
                        # by design nothing of the workload is forwarded here without this host's
                        # policy; what the kernel forwarded on a fail-open wire meanwhile is the measure
                        "unprotected_packets": fail_open,
                        "detail": detail,
                    },
                    "vsys": task["vsys"],
                    "src_vm": task["workload"],
                }
            )

    def _fail_open_packets(self) -> int:
        modes = getattr(self.dp, "fail_modes", None)
        return sum(s.packets for s in modes.status()) if modes is not None else 0

    # ---- metrics
    def transfer_histogram(self) -> tuple[list[tuple[str, float]], float]:
        buckets, total = [], 0
        for bound, n in zip((*TRANSFER_BUCKETS, float("inf")), self.transfer_counts):
            total += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return buckets, self.transfer_sum


def _split_keys(packed: bytes, size: int = 40) -> list[bytes]:
    return [packed[i : i + size] for i in range(0, len(packed), size)]


def _eve_time(t: float) -> str:
    from ngfw.dataplane.eve import eve_timestamp

    return eve_timestamp(t)


def start_migration_agent(dataplane: Any, client: ControlClient, host: str) -> MigrationAgent:
    agent = MigrationAgent(dataplane, client, host)
    dataplane.migration_agent = agent
    agent.start()
    return agent
