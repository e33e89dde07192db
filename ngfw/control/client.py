"""A small client of the control API (standard library only), shared by the CLI and the agent."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode


class ControlUnreachable(Exception):
    """No answer from control (down, wrong address, timeout)."""


class ControlError(Exception):
    """Control answered with an error; `body` is its JSON (error, problems)."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        super().__init__(f"{status}: {body.get('error', body)}")

    @property
    def problems(self) -> list[dict[str, str]]:
        problems = self.body.get("problems")
        return problems if isinstance(problems, list) else []


def read_token(token_file: str | None) -> str | None:
    """The token from `token_file`, else $NGFW_TOKEN."""
    if token_file:
        return Path(token_file).read_text(encoding="utf-8").strip()
    return os.environ.get("NGFW_TOKEN") or None


class ControlClient:
    def __init__(self, url: str, token: str | None, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
                raw: bytes | None = None, content_type: str = "application/json",
                timeout: float | None = None) -> tuple[int, Any]:
        url = self.url + path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                payload = response.read()
                return response.status, json.loads(payload) if payload else None
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                parsed = json.loads(payload) if payload else {}
            except ValueError:
                parsed = {"error": payload.decode("utf-8", "replace")}
            raise ControlError(exc.code, parsed if isinstance(parsed, dict) else {"error": parsed}) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControlUnreachable(f"control at {self.url} is unreachable: {reason}") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)[1]

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)[1]

    # the calls the CLI and agents make
    def apply_documents(self, documents: list[Any], sources: list[str]) -> Any:
        return self.post("/candidate/apply", {"documents": documents, "sources": sources})

    def put_workload(self, vsys: str, name: str, document: Any) -> Any:
        return self.request("PUT", f"/identity/workloads/{quote(vsys)}/{quote(name)}", document)[1]

    def commit(self, message: str, base: int | None = None) -> Any:
        return self.post("/commit", {"message": message, "base": base})

    def bundle(self, host: str, known: str | None, wait: float, runs: int | None = None) -> dict[str, Any] | None:
        """The running bundle once it differs from `known`; identity-only (`workloads`, no `documents`)
        when its version is `runs`, the version this host runs. None: nothing changed within `wait` s."""
        status, body = self.request("GET", "/bundle", query={"host": host, "known": known, "wait": wait,
                                                              "version": runs},
                                    timeout=wait + self.timeout)
        return body if status == 200 else None

    def tasks(self, host: str, wait: float) -> list[dict[str, Any]]:
        """This host's migration tasks, waiting up to `wait` s for one (long-poll)."""
        status, body = self.request("GET", "/tasks", query={"host": host, "wait": wait}, timeout=wait + self.timeout)
        return list(body.get("tasks", [])) if status == 200 and body else []

    def migration_sessions(self, migration: str, host: str, phase: str, batch: str, count: int) -> Any:
        return self.post(f"/migrations/{quote(migration)}/sessions",
                         {"host": host, "phase": phase, "batch": batch, "count": count})

    def migration_result(self, migration: str, host: str, phase: str, results: dict[str, int], detail: str = "") -> Any:
        return self.post(f"/migrations/{quote(migration)}/result",
                         {"host": host, "phase": phase, "results": results, "detail": detail})

    def arrivals(self, host: str, workloads: list[dict[str, str]]) -> Any:
        return self.post("/arrivals", {"host": host, "workloads": workloads})

    def ack(self, host: str, version: int, identity: int, digest: str, status: str = "applied",
            detail: str = "") -> None:
        self.post("/acks", {"host": host, "version": version, "identity": identity, "hash": digest,
                            "status": status, "detail": detail})
