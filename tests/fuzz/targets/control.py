"""The control API below its HTTP framework: what ngfw.control.server makes of a request's path values,
query string, Content-Type and body, and what ngfw.control.service does with them.

Input: a byte for the route (of build_routes), a byte for the caller's role and the Content-Type, then
NUL-separated fields: three path values, the query string, the body. Each input runs on a fresh copy of
a store whose running version is a small two-tenant policy. An ApiError is the documented refusal (a
4xx with a message); any other exception is what the HTTP layer would answer with a 500."""

from __future__ import annotations

import json
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from ngfw.control.auth import Principal
from ngfw.control.server import RawJson, Request, build_routes
from ngfw.control.service import ApiError, Control
from ngfw.control.store_sqlite import SqliteStore

ROLES = ("security-admin", "tenant-admin:tenant-a", "vm-operator", "viewer", "dataplane:host-a", "dataplane")
CONTENT_TYPES = ("application/json", "application/yaml", "text/plain")


def _doc(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "ngfw/v1", "kind": kind, "metadata": metadata, "spec": spec}


RUNNING = [
    _doc("VirtualSystem", {"name": "tenant-a"}, {}),
    _doc(
        "Workload",
        {"name": "web-01", "vsys": "tenant-a", "labels": {"tier": "web"}},
        {"interfaces": [{"mac": "02:00:00:00:01:01", "ips": ["10.77.0.11"]}], "host": "host-a"},
    ),
    _doc("Group", {"name": "web", "vsys": "tenant-a"}, {"selector": {"tier": "web"}}),
    _doc(
        "SecurityPolicy",
        {"name": "main", "vsys": "tenant-a"},
        {
            "rules": [
                {"name": "web-out", "from": ["group:web"], "to": ["any"], "services": ["tcp/80"], "action": "allow"}
            ]
        },
    ),
]


@cache
def _template() -> tuple[Path, Path]:
    """A store with version 1 committed, copied for each input; and where the copies go."""
    base = Path(tempfile.mkdtemp(prefix="ngfw-fuzz-control-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    store = SqliteStore(str(base / "template.db"))
    admin = Principal("alice", "security-admin")
    control = Control(store)
    control.apply(admin, [(d, f"document {i + 1}") for i, d in enumerate(RUNNING)])
    control.commit(admin, "fuzz baseline")
    store.close()
    return base / "template.db", base / "input.db"


class NoWaitControl(Control):
    """A bundle long-poll answers at once: waiting is what it is for, not what is fuzzed."""

    def wait_bundle(self, who: Principal, host: str, known: str | None, wait: float) -> Any:
        return super().wait_bundle(who, host, known, 0.0)


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    template, work = _template()
    shutil.copyfile(template, work)
    store = SqliteStore(str(work))
    try:
        control = NoWaitControl(store)
        routes = build_routes(control)
        route = routes[data[0] % len(routes)]
        who = Principal("fuzz", ROLES[data[1] % len(ROLES)])
        content_type = CONTENT_TYPES[(data[1] >> 4) % len(CONTENT_TYPES)]
        fields = data[2:].split(b"\0", 4) + [b""] * 5
        # as the server does: path values percent-decoded, the last of repeated query parameters
        values = [unquote(f.decode("latin-1")) for f in fields[:3]]
        names = [n[1:-1] for n in route.path.split("/") if n.startswith("{")]
        query = {k: v[-1] for k, v in parse_qs(fields[3].decode("latin-1")).items()}
        request = Request(who, dict(zip(names, values)), query, fields[4], content_type)
        try:
            status, result = route.handler(request)
        except ApiError as exc:
            assert 400 <= exc.status < 600 and exc.message, (exc.status, exc.message)
            json.dumps(exc.body())
            return
        assert 200 <= status < 300, status
        if not isinstance(result, RawJson):
            json.dumps(result)
    finally:
        store.close()


def build_routes_for_seeds() -> list[Any]:
    """The routes in the order one_input numbers them (tests/fuzz/make_seeds.py)."""
    template, _ = _template()
    store = SqliteStore(str(template))
    try:
        return build_routes(NoWaitControl(store))
    finally:
        store.close()
