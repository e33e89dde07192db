"""The dataplane's operations agent: control's fleet-wide session listings, clears and rule hits, answered here.

It long-polls `GET /operations/tasks` (ngfw.control.operations) on a connection of its own, so a listing never
waits behind a bundle or a migration, and answers each task with `POST /operations/{id}/result`: the same
calls the local socket makes (ngfw.dataplane.opsocket), on `Dataplane.sessions` and its rule hit book.
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import quote

from ngfw.control.client import ControlClient, ControlError, ControlUnreachable
from ngfw.dataplane.sessions import PAGE_DEFAULT, PAGE_MAX, FilterError, SessionFilter

log = logging.getLogger("ngfw.opsagent")


class OperationsAgent:
    def __init__(self, dataplane: Any, client: ControlClient, host: str, wait: float = 20.0) -> None:
        self.dp = dataplane
        self.client = client
        self.host = host
        self.wait = wait
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.answered = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="ngfw-operations", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                status, body = self.client.request(
                    "GET",
                    "/operations/tasks",
                    query={"host": self.host, "wait": self.wait},
                    timeout=self.wait + self.client.timeout,
                )
            except (ControlUnreachable, ControlError) as exc:
                log.debug("operations tasks: %s", exc)
                self._stop.wait(0.5)
                continue
            for task in (body or {}).get("tasks", []) if status == 200 else []:
                self._answer(task)

    def _answer(self, task: dict[str, Any]) -> None:
        body: dict[str, Any] = {"host": self.host}
        try:
            body["result"] = self.run(task)
        except FilterError as exc:
            body.update(error=str(exc), kind="filter")
        except (RuntimeError, TimeoutError, MemoryError, ValueError) as exc:
            body.update(error=f"the dataplane could not answer: {exc}", kind="internal")
        try:
            self.client.post(f"/operations/{quote(str(task.get('id', '')))}/result", body)
            self.answered += 1
        except (ControlUnreachable, ControlError) as exc:
            log.warning("operations task %s: the answer did not reach control: %s", task.get("id"), exc)

    def run(self, task: dict[str, Any]) -> dict[str, Any]:
        kind = task.get("kind")
        if kind == "sessions":
            flt = SessionFilter.parse(task.get("filter") or {})
            limit = min(max(int(task.get("limit", PAGE_DEFAULT)), 1), PAGE_MAX)
            page = self.dp.sessions.page(flt, int(task.get("cursor", 0)), limit)
            return {"sessions": page.sessions, "cursor": page.cursor}
        if kind == "clear":
            flt = SessionFilter.parse(task.get("filter") or {})
            return self.dp.sessions.clear(flt, silent=bool(task.get("silent")), who="control").as_dict()
        if kind == "hits":
            self.dp.read_rule_hits()
            book = self.dp.rule_hit_book
            return {"rules": book.entries(task.get("vsys")), "started": book.started, "now": book.clock()}
        raise ValueError(f"unknown operations task {kind!r}")


def start_operations_agent(dataplane: Any, client: ControlClient, host: str) -> OperationsAgent:
    agent = OperationsAgent(dataplane, client, host)
    agent.start()
    return agent
