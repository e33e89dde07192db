"""Fleet-wide operations on the dataplanes' live state, through control: sessions (list, clear), rule hits.

Control brokers and never holds that state. Every `ngfw dataplane --control` runs an operations agent
(ngfw.dataplane.opsagent) that long-polls `GET /operations/tasks?host=H&wait=S` (a long-poll of its own, so a
listing never waits behind a bundle or a migration) and answers each task with
`POST /operations/{id}/result`. A user's request becomes one task per host, and control answers when every
host has (or after `TASK_TIMEOUT`, naming the hosts that did not):

    GET  /sessions?FIELD=VALUE...&host=H&cursor=C&limit=N   one page per host (cursor: per host, with host=)
    POST /sessions/clear {"filter": {...}, "host"?, "silent"?, "all"?}
    GET  /rules/hits?vsys=V&host=H                          per rule: hits, first and last hit, per host
    GET  /rules/unused?days=D&vsys=V                        rules of the running policy no host hit in D days

Roles: `security-admin` and `viewer` read everything; `tenant-admin:VSYS` reads and clears its vsys only (its
filters are restricted to it, asking for another vsys is refused); clearing is for `security-admin` and a
tenant's admin. Every clear and every refusal is audited. Filters are checked here for their syntax (one
sentence naming the bad field or value, 400) and by the hosts for names (an unknown workload or rule: 400
when every host says so).

Tasks and their answers live in the memory of the controller the agents poll (as migrations do).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ngfw.control.auth import Principal
from ngfw.control.service import ApiError, Control
from ngfw.dataplane.eve import DEFAULT_RULE
from ngfw.dataplane.sessions import PAGE_DEFAULT, PAGE_MAX, FilterError, SessionFilter

TASK_TIMEOUT = 5.0  # how long a user's request waits for the hosts' answers
SEEN_SECONDS = 65.0  # an agent that asked for tasks this recently is connected (its long-polls wait <= 60 s)
PAGING = ("host", "cursor", "limit")


@dataclass
class _Pending:
    hosts: set[str]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


# ---------------------------------------------------------------- who may


def read_refusal(who: Principal) -> str | None:
    if who.base_role in ("security-admin", "viewer") or (who.base_role == "tenant-admin" and who.vsys):
        return None
    return (
        f"role {who.role} cannot read sessions or rule hits (security-admin, viewer, or the tenant-admin of their vsys)"
    )


def clear_refusal(who: Principal) -> str | None:
    if who.base_role == "security-admin" or (who.base_role == "tenant-admin" and who.vsys):
        return None
    return f"role {who.role} cannot clear sessions (security-admin, or the tenant-admin of their vsys)"


class OperationsBroker:
    """Per host, a queue of tasks its agent takes; per request, the hosts' answers. Thread-safe."""

    def __init__(self, control: Control, timeout: float = TASK_TIMEOUT) -> None:
        self.control = control
        self.timeout = timeout
        self._lock = threading.Lock()
        self._tasks: dict[str, deque[dict[str, Any]]] = {}
        self._last_poll: dict[str, float] = {}
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)

    # ---- agents
    def take_tasks(self, who: Principal, host: str) -> dict[str, Any] | None:
        """A host's agent asks for work (its long-poll; None: nothing now)."""
        if not host:
            raise ApiError(400, "host is required")
        self.control.require(who, who.may_ack(host), "operations.tasks", host)
        with self._lock:
            self._last_poll[host] = time.monotonic()
            queue = self._tasks.get(host)
            if not queue:
                return None
            tasks = list(queue)
            queue.clear()
        return {"tasks": tasks}

    def result(self, who: Principal, task: str, body: dict[str, Any]) -> dict[str, Any]:
        host = body.get("host") or who.host
        if not isinstance(host, str) or not host:
            raise ApiError(400, "a result names its host")
        self.control.require(who, who.may_ack(host), "operations.result", host)
        answer = body.get("result")
        error = body.get("error")
        if not (isinstance(answer, dict) or isinstance(error, str)):
            raise ApiError(400, 'a result is {"host", "result": {...}} or {"host", "error": "...", "kind"}')
        with self._lock:
            pending = self._pending.get(task)
            if pending is None or host not in pending.hosts:
                raise ApiError(404, f"no task {task} is waiting for host {host} (it timed out?)")
            pending.results[host] = (
                answer if isinstance(answer, dict) else {"error": str(error)[:2000], "kind": str(body.get("kind", ""))}
            )
            if set(pending.results) >= pending.hosts:
                pending.done.set()
        return {"ok": True}

    def connected(self) -> set[str]:
        now = time.monotonic()
        with self._lock:
            return {h for h, t in self._last_poll.items() if now - t < SEEN_SECONDS}

    def _known(self) -> set[str]:
        return {a.host for a in self.control.store.acks()} | set(self._last_poll)

    def ask(
        self, kind: str, payload: dict[str, Any], host: str | None = None
    ) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
        """One task per host (or `host` only): ({host: its answer}, [{host, reason} that gave none])."""
        live = self.connected()
        missing = [
            {"host": h, "reason": "no operations agent of its dataplane is connected to this control"}
            for h in sorted(self._known() - live)
            if host in (None, h)
        ]
        targets = {host} & live if host else live
        if host and host not in live:
            if host not in self._known():
                raise ApiError(404, f"host {host!r} is unknown to control (no dataplane of that name has connected)")
            return {}, missing
        if not targets:
            return {}, missing
        task_id = f"op{next(self._ids)}-{int(time.time())}"
        pending = _Pending(hosts=set(targets))
        with self._lock:
            self._pending[task_id] = pending
            for h in targets:
                self._tasks.setdefault(h, deque()).append({"id": task_id, "kind": kind, **payload})
        self.control._notify()  # wakes the agents' parked long-polls (ngfw.control.server)
        pending.done.wait(self.timeout)
        with self._lock:
            self._pending.pop(task_id, None)
            for h in targets:  # a task nobody took must not run later
                queue = self._tasks.get(h)
                if queue:
                    self._tasks[h] = deque(t for t in queue if t["id"] != task_id)
            results = dict(pending.results)
        for h in sorted(targets - set(results)):
            missing.append({"host": h, "reason": f"its dataplane did not answer within {self.timeout:g} s"})
        return results, missing

    # ---- users
    def sessions(self, who: Principal, query: dict[str, str]) -> dict[str, Any]:
        self.control.require(who, read_refusal(who), "sessions.list")
        scope = who.vsys
        flt = self._filter(who, {k: v for k, v in query.items() if k not in PAGING}, scope, "sessions.list")
        host = query.get("host") or None
        cursor = _int(query.get("cursor"), "cursor", 0, 0, 1 << 32)
        limit = _int(query.get("limit"), "limit", PAGE_DEFAULT, 1, PAGE_MAX)
        if cursor and not host:
            raise ApiError(400, "a cursor belongs to one host's table: give host= with it")
        results, missing = self.ask("sessions", {"filter": flt.as_dict(), "cursor": cursor, "limit": limit}, host)
        self._all_refused(results)
        hosts = []
        for name, answer in sorted(results.items()):
            if "error" in answer:
                hosts.append({"host": name, "error": answer["error"]})
            else:
                hosts.append(
                    {"host": name, "sessions": answer.get("sessions", []), "cursor": int(answer.get("cursor", 0))}
                )
        return {"filter": flt.as_dict(), "hosts": hosts, "missing": missing}

    def clear(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        self.control.require(who, clear_refusal(who), "sessions.clear")
        scope = who.vsys
        raw = body.get("filter") or {}
        if not isinstance(raw, dict):
            raise ApiError(400, "filter must be an object of field: value")
        flt = self._filter(who, raw, scope, "sessions.clear")
        if flt.empty and body.get("all") is not True:
            raise ApiError(400, 'an empty filter clears every flow: say so with "all": true')
        host = body.get("host") or None
        if host is not None and not isinstance(host, str):
            raise ApiError(400, "host must be a string")
        silent = body.get("silent", False)
        if not isinstance(silent, bool):
            raise ApiError(400, "silent must be true or false")
        results, missing = self.ask("clear", {"filter": flt.as_dict(), "silent": silent}, host)
        self._all_refused(results)
        cleared = {h: a for h, a in results.items() if "error" not in a}
        total = sum(int(a.get("cleared", 0)) for a in cleared.values())
        self.control.audit(
            who,
            "sessions.clear",
            flt.words(),
            "ok",
            hosts={h: a.get("cleared", 0) for h, a in cleared.items()},
            silent=silent,
            missing=[m["host"] for m in missing],
        )
        return {
            "filter": flt.as_dict(),
            "cleared": total,
            "resets": sum(int(a.get("resets", 0)) for a in cleared.values()),
            "hosts": [{"host": h, **a} for h, a in sorted(results.items())],
            "missing": missing,
        }

    def hits(self, who: Principal, query: dict[str, str]) -> dict[str, Any]:
        self.control.require(who, read_refusal(who), "rules.hits")
        scope = who.vsys
        vsys = self._vsys(who, query.get("vsys") or None, scope, "rules.hits")
        results, missing = self.ask("hits", {"vsys": vsys}, query.get("host") or None)
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for host, answer in sorted(results.items()):
            if "error" in answer:
                missing.append({"host": host, "reason": answer["error"]})
                continue
            for entry in answer.get("rules", []):
                key = (entry["vsys"], entry["rule"])
                rule = merged.setdefault(
                    key, {"vsys": key[0], "rule": key[1], "hits": 0, "first": None, "last": None, "hosts": {}}
                )
                rule["hits"] += entry["hits"]
                rule["first"] = _min(rule["first"], entry["first"])
                rule["last"] = _max(rule["last"], entry["last"])
                rule["hosts"][host] = {k: entry[k] for k in ("hits", "first", "last", "since")}
        return {
            "rules": [merged[k] for k in sorted(merged)],
            "hosts": sorted(h for h, a in results.items() if "error" not in a),
            "missing": missing,
        }

    def unused(self, who: Principal, query: dict[str, str]) -> dict[str, Any]:
        self.control.require(who, read_refusal(who), "rules.unused")
        scope = who.vsys
        vsys = self._vsys(who, query.get("vsys") or None, scope, "rules.unused")
        try:
            days = float(query.get("days", "30"))
        except ValueError:
            raise ApiError(400, f"days must be a number (got {query.get('days')!r})") from None
        if not 0 < days <= 3650:
            raise ApiError(400, f"days must be more than 0 and at most 3650 (got {days:g})")
        rules = self._running_rules(vsys)
        answer = self.hits(who, {"vsys": vsys} if vsys else {})
        now = time.time()
        horizon = now - days * 86400
        hits = {(r["vsys"], r["rule"]): r for r in answer["rules"]}
        unused = []
        for key in rules:
            if key[1] == DEFAULT_RULE:
                continue  # the catch-all (explicit or implicit) is never a rule to delete
            entry = hits.get(key)
            last = entry["last"] if entry else None
            if last is not None and last >= horizon:
                continue
            sinces = [h["since"] for h in entry["hosts"].values()] if entry else []
            unused.append(
                {
                    "vsys": key[0],
                    "rule": key[1],
                    "last": last,
                    "hits": entry["hits"] if entry else 0,
                    # how long every host has counted it: shorter than `days`, "unused" is not proven
                    "tracked_seconds": (now - max(sinces)) if sinces else 0.0,
                }
            )
        return {"days": days, "unused": unused, "hosts": answer["hosts"], "missing": answer["missing"]}

    # ---- helpers
    def _filter(self, who: Principal, raw: dict[str, Any], scope: str | None, action: str) -> SessionFilter:
        try:
            flt = SessionFilter.parse(raw)
        except FilterError as exc:
            raise ApiError(400, str(exc)) from None
        if scope is None:
            return flt
        try:
            return flt.within(scope)
        except FilterError as exc:
            self.control.audit(who, action, SessionFilter.parse(raw).words(), "denied", reason=str(exc))
            raise ApiError(403, str(exc)) from None

    def _vsys(self, who: Principal, vsys: str | None, scope: str | None, action: str) -> str | None:
        if scope is None:
            return vsys
        if vsys is not None and vsys != scope:
            reason = f"vsys {vsys!r} is not yours (you administer {scope!r})"
            self.control.audit(who, action, vsys, "denied", reason=reason)
            raise ApiError(403, reason)
        return scope

    @staticmethod
    def _all_refused(results: dict[str, dict[str, Any]]) -> None:
        """Every host refused the filter (a name none of them knows): one 400, not a list of the same error."""
        errors = [a for a in results.values() if "error" in a]
        if results and len(errors) == len(results) and all(a.get("kind") == "filter" for a in errors):
            raise ApiError(400, errors[0]["error"])

    def _running_rules(self, vsys: str | None) -> list[tuple[str, str]]:
        """(vsys, rule) of every rule of the running policy (in order), of `vsys` only when given."""
        version, identity = self.control.store.latest()
        if version <= 0:
            return []
        out = []
        for document in self.control.effective(version, identity):
            if document.get("kind") != "SecurityPolicy":
                continue
            owner = document["metadata"].get("vsys")
            if vsys is not None and owner != vsys:
                continue
            for rule in document.get("spec", {}).get("rules", []) or []:
                if isinstance(rule, dict) and rule.get("name"):
                    out.append((str(owner), str(rule["name"])))
        return out


def _int(value: str | None, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high} (got {value!r})")
    return int(value)


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def broker_of(control: Control) -> OperationsBroker:
    """The broker of `control` (one per Control, made with its routes)."""
    broker = getattr(control, "operations", None)
    if broker is None:
        broker = OperationsBroker(control)
        control.operations = broker  # type: ignore[attr-defined]
    return broker


def operation_routes(control: Control) -> list[Any]:
    """The routes of this module for ngfw.control.server's table (imported there: no import cycle)."""
    from ngfw.control.server import Route

    b = broker_of(control)
    readers = "security-admin, viewer, tenant-admin:VSYS (its vsys)"
    return [
        Route(
            "GET",
            "/sessions",
            "Live flows of every host (or one): one page per host, filtered by "
            "FIELD=VALUE query parameters (vsys, vm, app, rule, src, dst, sport, port, proto, "
            "action, state, id)",
            lambda r: (200, b.sessions(r.principal, r.query)),
            readers,
            query=(
                "vsys",
                "vm",
                "app",
                "rule",
                "src",
                "dst",
                "sport",
                "port",
                "proto",
                "action",
                "state",
                "id",
                *PAGING,
            ),
        ),
        Route(
            "POST",
            "/sessions/clear",
            "End the flows a filter selects on every host (or one): TCP connections are reset both ways unless silent",
            lambda r: (200, b.clear(r.principal, r.json_object())),
            "security-admin, tenant-admin:VSYS (its vsys)",
            body='{"filter": {FIELD: VALUE}, "host": H, "silent": false, "all": true (an empty filter)}',
        ),
        Route(
            "GET",
            "/rules/hits",
            "Per rule: flows decided, first and last hit, per host and in all",
            lambda r: (200, b.hits(r.principal, r.query)),
            readers,
            query=("vsys", "host"),
        ),
        Route(
            "GET",
            "/rules/unused",
            "Rules of the running policy that no host hit in `days` days (default 30)",
            lambda r: (200, b.unused(r.principal, r.query)),
            readers,
            query=("days", "vsys"),
        ),
        Route(
            "GET",
            "/operations/tasks",
            "A dataplane's operations agent asks for work (long-poll: 204 after `wait` s without any)",
            lambda r: _tasks(b, r),
            "dataplane[:HOST]",
            query=("host", "wait"),
        ),
        Route(
            "POST",
            "/operations/{task}/result",
            "A dataplane's answer to an operations task",
            lambda r: (200, b.result(r.principal, r.params["task"], r.json_object())),
            "dataplane[:HOST]",
            body='{"host", "result": {...}} or {"host", "error", "kind"}',
        ),
    ]


def _tasks(broker: OperationsBroker, request: Any) -> tuple[int, Any]:
    result = broker.take_tasks(request.principal, request.query.get("host", ""))
    return (204, None) if result is None else (200, result)
