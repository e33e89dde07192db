"""The HTTP+JSON API of `ngfw control`: routes requests to `ngfw.control.service.Control`.

Each route is declared once in `build_routes` (method, path template, roles, handler), and the
OpenAPI document (`/openapi.json`) is generated from that same table, so the two cannot drift
apart. The server is aiohttp's low-level HTTP server (its parser, keep-alive and connection
handling; the routing is this table's), on one event loop thread:

* Handlers are plain functions that call the blocking service (`Control`: SQLite or etcd,
  compiles of 10,000 rules): they run in bounded pools of worker threads, never on the event
  loop; encoding the answer happens there too. Changes (POST, PUT, DELETE) have a pool of
  their own (`ServerLimits.write_workers`): commits wait for each other on Control's write
  lock, and queued behind it they must not hold the threads that reads, authentication and
  long-polls need (`ServerLimits.workers`).
* A socket costs no thread: 3,000 idle connections are 3,000 file descriptors, at most
  `ServerLimits.max_connections` of them (one more is answered 503 and closed), each closed
  when it has not sent a complete request head within `idle_timeout` (of opening, or of its
  last answer). A body must arrive within `body_timeout` (408), an answer be taken within
  `send_timeout` (else the connection is dropped).
* Long-polls (a route whose query has `wait`, e.g. `GET /bundle?known=H&wait=S`) park no
  thread. Their handler is the blocking one called with `wait=0`: it answers at once, 204
  when there is nothing new. The server then waits on the event loop for a change and asks
  again: `Control` tells the server of every change it makes (`Control.subscribe`, which
  sets an asyncio event from the committing thread), and while polls wait one task reads
  `Control.change_marker()` every `STORE_POLL_SECONDS` for changes made by other
  controllers sharing the store. So 200 waiting agents cost 200 coroutines, a commit costs
  200 short handler calls, and a quiet minute costs one store read per 0.2 s, not one per
  waiting agent (the thread-per-poll alternative holds 200 threads and reads the store
  1,000 times a second). A new long-poll needs a handler that answers 204 at `wait=0`, a
  `Control._notify()` where what it waits for changes, and that thing in `change_marker()`
  if other controllers can change it. A route without `wait` that blocks still works,
  holding a worker while it blocks.
* Every malformed input gets a 4xx with a one-sentence JSON error naming the bad value:
  HTTP the parser refuses (a negative or overflowing Content-Length, bad chunking: 400;
  request line over `MAX_URL_BYTES`: 414; a header over `MAX_HEADER_BYTES` or more than
  `MAX_HEADERS`: 431), bodies (over `MAX_BODY_BYTES`: 413; content types and encodings the
  route does not take: 415; not UTF-8, not JSON, nested deeper than `inputs.MAX_NESTING`:
  400) and values (numbers beyond the store's 64-bit integers, negative waits: 400). An
  exception a handler did not expect is a bug: the client gets a 500 with one generic
  sentence, the traceback goes to the log, and `counters["internal_errors"]` counts it.

* TLS (`ssl_context`, see ngfw.control.tls): the port speaks HTTPS. A connection's first byte
  says which protocol its client speaks; one that starts in plain HTTP is answered 403 (use
  https://) and closed without its request being parsed, so a token sent in clear is neither
  read nor honoured. With a client CA, a verified client certificate authenticates as
  `dataplane:HOST` (HOST: its CN, else its first DNS name); a bearer token still works and wins.
* `GET /metrics` (no token; ngfw.control.metrics) and `GET /openapi.json` (no token) are served
  beside the route table.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import resource
import socket
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

from ngfw import __version__
from ngfw.control.auth import Principal, TokenFile
from ngfw.control.inputs import check_nesting, parse_int, parse_json, parse_seconds
from ngfw.control.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ngfw.control.metrics import ControlMetrics
from ngfw.control.operations import operation_routes
from ngfw.control.service import STORE_INT_MAX, STORE_POLL_SECONDS, ApiError, Control
from ngfw.control.tls import certificate_host, valid_host_name
from ngfw.model.yamldoc import YamlProblem, parse_documents

log = logging.getLogger("ngfw.control.http")

MAX_BODY_BYTES = 64 << 20
MAX_URL_BYTES = 65536  # the request line's target: 414 beyond
# one header's name and value: 431 beyond. One byte less than the URL's limit: the parser's
# error carries only the limit it hit, and that is how a 414 is told from a 431
MAX_HEADER_BYTES = 65535
MAX_HEADERS = 100  # 431 beyond
MAX_LIST_LIMIT = 10_000  # `limit` of /versions and /audit
MAX_WAIT_SECONDS = 60.0  # a long-poll's `wait`; larger values count as this (as Control.wait_bundle does)
SERVER_NAME = f"ngfw-control/{__version__}"
JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
GZIP_TYPES = ("application/gzip", "application/x-gzip")
Handler = Callable[["Request"], tuple[int, Any]]


@dataclass(frozen=True)
class ServerLimits:
    """How much of control one client may hold, and for how long."""

    max_connections: int = 4096  # open sockets (bounded further by the open-files limit); one more gets 503
    idle_timeout: float = 30.0  # to send a complete request head, from connecting or from the last answer
    body_timeout: float = 60.0  # to send a whole body (64 MiB at ~1 MB/s); 408 after
    send_timeout: float = 60.0  # to take an answer (a 10,000-rule bundle is ~10 MB); dropped after
    workers: int = 16  # threads running reads (GET), authentication and long-polls' checks
    write_workers: int = 8  # threads running changes (POST, PUT, DELETE)
    shutdown_timeout: float = 5.0  # stop() lets requests in progress finish within this


_UNSET: Any = object()


@dataclass
class Request:
    principal: Principal
    params: dict[str, str]  # from the path
    query: dict[str, str]
    body: bytes
    content_type: str
    _json: Any = field(default=_UNSET, init=False, repr=False, compare=False)

    def json(self) -> Any:
        if not self.body:
            return {}
        if self._json is _UNSET:  # parsed once: a handler may ask for it several times
            self._json = parse_json(self.body)
        return self._json

    def json_object(self) -> dict[str, Any]:
        value = self.json()
        if not isinstance(value, dict):
            raise ApiError(400, f"the body must be a JSON object (got a {type(value).__name__})")
        return value


@dataclass(frozen=True)
class RawJson:
    """A response body that is JSON already."""

    data: bytes


@dataclass(frozen=True)
class RawBody:
    """A response body that is not JSON (a signature set's archive)."""

    data: bytes
    content_type: str


@dataclass(frozen=True)
class Route:
    """One endpoint. A route whose `query` has `wait` is a long-poll: see the module's docstring."""

    method: str
    path: str  # OpenAPI template, e.g. /versions/{number}
    summary: str
    handler: Handler
    roles: str  # who may call it, for the OpenAPI document
    body: str | None = None  # request body, described for the OpenAPI document
    query: tuple[str, ...] = ()
    accepts: tuple[str, ...] = JSON_TYPES  # media types of a body (JSON also as */*+json)

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")

    @property
    def long_poll(self) -> bool:
        return "wait" in self.query


def _int(
    value: str | None, name: str, default: int | None = None, low: int = 0, high: int = STORE_INT_MAX
) -> int | None:
    return parse_int(value, name, default, low, high)


def _apply_items(request: Request) -> list[tuple[Any, str]]:
    """The documents of an apply: a YAML stream, or JSON {"documents": [...], "sources": [...]}."""
    if "yaml" in request.content_type:
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(
                400, f"the body is not UTF-8: byte 0x{request.body[exc.start]:02x} at offset {exc.start}"
            ) from None
        try:
            documents = parse_documents(text)
        except YamlProblem as exc:
            raise ApiError(400, f"invalid YAML: line {exc.line}, column {exc.column}: {exc}") from None
        except RecursionError:
            raise ApiError(400, "invalid YAML: it nests mappings and sequences too deep") from None
        for d in documents:
            check_nesting(d.data, f"YAML document {d.index + 1}")
        return [(d.data, f"document {d.index + 1} (line {d.line})") for d in documents if d.data is not None]
    body = request.json()
    items = body.get("documents") if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise ApiError(400, 'expected {"documents": [...]} or a list of documents')
    sources = body.get("sources") if isinstance(body, dict) else None
    if not isinstance(sources, list) or len(sources) != len(items):
        sources = [f"document {i + 1}" for i in range(len(items))]
    return list(zip(items, (str(s) for s in sources)))


def build_routes(control: Control) -> list[Route]:
    c = control
    everyone = "security-admin, tenant-admin (own vsys), vm-operator, viewer"
    editors = "security-admin, tenant-admin:VSYS (own vsys)"
    return [
        Route(
            "GET",
            "/running",
            "The running configuration: version, identity revision, bundle hash, documents",
            lambda r: (200, c.running(r.principal)),
            everyone,
        ),
        Route(
            "GET",
            "/candidate",
            "Your candidate configuration and its changes against its base",
            lambda r: (200, c.candidate(r.principal)),
            everyone,
        ),
        Route(
            "POST",
            "/candidate/apply",
            "Create or replace resources in your candidate (all or nothing)",
            lambda r: (200, c.apply(r.principal, _apply_items(r))),
            editors,
            body='YAML stream (Content-Type: application/yaml) or {"documents": [...], "sources": [...]}',
            accepts=JSON_TYPES + YAML_TYPES,
        ),
        Route(
            "PUT",
            "/candidate/resources/{kind}/{vsys}/{name}",
            "Create or replace one resource in your candidate",
            lambda r: (
                200,
                c.apply(
                    r.principal,
                    [(r.json(), "request")],
                    "candidate.put",
                    (r.params["kind"], r.params["vsys"], r.params["name"]),
                ),
            ),
            editors,
            body="one resource document (a VirtualSystem's vsys is its own name)",
        ),
        Route(
            "DELETE",
            "/candidate/resources/{kind}/{vsys}/{name}",
            "Delete one resource from your candidate",
            lambda r: (200, c.delete(r.principal, r.params["kind"], r.params["vsys"], r.params["name"])),
            editors,
        ),
        Route("DELETE", "/candidate", "Discard your candidate", lambda r: (200, c.discard(r.principal)), everyone),
        Route(
            "POST",
            "/candidate/validate",
            "Dry run: compile your candidate, return lint warnings",
            lambda r: (200, c.validate(r.principal)),
            everyone,
        ),
        Route(
            "POST",
            "/candidate/rebase",
            "Move your candidate onto the running version, keeping its changes",
            lambda r: (200, c.rebase(r.principal)),
            editors,
        ),
        Route(
            "POST",
            "/commit",
            "Validate, compile, store and publish your candidate as the next version",
            lambda r: (
                201,
                c.commit(
                    r.principal,
                    str(r.json_object().get("message", "")),
                    _int(_opt(r.json_object().get("base")), "base"),
                ),
            ),
            editors,
            body='{"message": "...", "base": N} (409 when N is no longer the running version)',
        ),
        Route(
            "POST",
            "/rollback",
            "Publish a new version whose policy is that of an earlier version",
            lambda r: (
                201,
                c.rollback(
                    r.principal,
                    _required_int(r.json_object(), "version"),
                    str(r.json_object().get("message", "")),
                    _int(_opt(r.json_object().get("base")), "base"),
                ),
            ),
            "security-admin",
            body='{"version": N, "message": "...", "base": M}',
        ),
        Route(
            "GET",
            "/versions",
            "Committed versions, newest first (no documents)",
            lambda r: (200, c.versions(r.principal, _int(r.query.get("limit"), "limit", 50, 1, MAX_LIST_LIMIT) or 50)),
            everyone,
            query=("limit",),
        ),
        Route(
            "GET",
            "/versions/{number}",
            "One committed version with its documents",
            lambda r: (200, c.version(r.principal, _int(r.params["number"], "number") or 0)),
            everyone,
        ),
        Route(
            "GET",
            "/diff",
            "Resource-by-resource diff; from/to are a version number, running or candidate",
            lambda r: (200, c.diff(r.principal, r.query.get("from", "running"), r.query.get("to", "candidate"))),
            everyone,
            query=("from", "to"),
        ),
        Route(
            "GET",
            "/identity",
            "Running Workloads (bindings and labels) and the identity revision",
            lambda r: (200, c.identity(r.principal)),
            everyone,
        ),
        Route(
            "PUT",
            "/identity/workloads/{vsys}/{name}",
            "Create or change a Workload's bindings and labels without a policy commit",
            lambda r: (200, c.put_workload(r.principal, r.params["vsys"], r.params["name"], r.json())),
            "security-admin, vm-operator, tenant-admin:VSYS",
            body="a Workload document",
        ),
        Route(
            "DELETE",
            "/identity/workloads/{vsys}/{name}",
            "Remove a Workload without a policy commit",
            lambda r: (200, c.delete_workload(r.principal, r.params["vsys"], r.params["name"])),
            "security-admin, vm-operator, tenant-admin:VSYS",
        ),
        Route(
            "PUT",
            "/identity/users",
            "Map an address (or every address of a workload) to a user (User-ID), "
            "for `ttl` seconds or until deleted; no policy commit",
            lambda r: (200, c.map_user(r.principal, r.json_object())),
            "security-admin, vm-operator, user-mapper",
            body='{"address": IP | "vm": NAME or VSYS/NAME, "user": NAME, "ttl": SECONDS (optional)}',
        ),
        Route(
            "DELETE",
            "/identity/users",
            "End the user mapping of an address (or of a workload's addresses)",
            lambda r: (200, c.unmap_user(r.principal, {k: v for k, v in r.query.items() if k in ("address", "vm")})),
            "security-admin, vm-operator, user-mapper",
            query=("address", "vm"),
        ),
        Route(
            "GET",
            "/identity/users",
            "The user mappings: address, user, source, lifetime, workload, groups",
            lambda r: (200, c.user_list(r.principal)),
            everyone + ", user-mapper",
        ),
        Route(
            "GET",
            "/identity/users/changes",
            "Long-poll for a host: the user mappings changed after revision "
            "`since` (without it, all of them), 204 after `wait` s of none",
            lambda r: _user_changes(c, r),
            "dataplane[:HOST], security-admin, viewer",
            query=("host", "since", "epoch", "wait"),
        ),
        Route(
            "GET",
            "/bundle",
            "Long-poll for the running bundle: returns when its hash differs from `known` "
            "(204 after `wait` seconds without a change); with `version` (the one the host "
            "runs) equal to the running one, only its Workloads (an identity update)",
            lambda r: _bundle(c, r),
            "dataplane[:HOST], security-admin, viewer",
            query=("host", "known", "wait", "version"),
        ),
        Route(
            "POST",
            "/acks",
            "A host reports the version and hash it runs (or that it refused a bundle)",
            lambda r: (200, c.ack(r.principal, r.json_object())),
            "dataplane[:HOST]",
            body='{"host", "version", "identity", "hash", "status": applied|refused|failed, "detail"}',
        ),
        Route(
            "POST",
            "/migrations",
            "Announce a workload's move to another host: its sessions go there first",
            lambda r: (201, c.migrate(r.principal, r.json_object())),
            "security-admin, vm-operator, tenant-admin:VSYS",
            body='{"workload": NAME, "vsys": VSYS (when the name is not unique), "to": HOST}',
        ),
        Route(
            "GET",
            "/migrations",
            "Migrations in progress and recent ones",
            lambda r: (200, c.migration_list(r.principal)),
            everyone,
        ),
        Route(
            "GET",
            "/tasks",
            "Long-poll for a dataplane agent's migration work (204 after `wait` s without any)",
            lambda r: _tasks(c, r),
            "dataplane[:HOST]",
            query=("host", "wait"),
        ),
        Route(
            "POST",
            "/migrations/{migration}/sessions",
            "A source host's sessions of a migration (a SessionBatch)",
            lambda r: (200, c.migration_sessions(r.principal, r.params["migration"], r.json_object())),
            "dataplane[:HOST] (the source)",
            body='{"host", "phase": precopy|cutover, "batch": base64, "count"}',
        ),
        Route(
            "POST",
            "/migrations/{migration}/result",
            "The destination host's import of a migration's sessions",
            lambda r: (200, c.migration_result(r.principal, r.params["migration"], r.json_object())),
            "dataplane[:HOST] (the destination)",
            body='{"host", "phase", "results": {result: count}}',
        ),
        Route(
            "POST",
            "/arrivals",
            "A host saw workloads' first frames on its VM side (they may have moved there)",
            lambda r: (200, c.arrivals(r.principal, r.json_object())),
            "dataplane[:HOST]",
            body='{"host", "workloads": [{"vsys", "name"}]}',
        ),
        Route(
            "PUT",
            "/signature-sets/{sha256}",
            "Store a signature set (gzip-compressed rule archive, "
            "ngfw rules push): checked to hash to SHA256 and to parse; 201 "
            "stored, 200 already there",
            lambda r: c.push_signature_set(r.principal, r.params["sha256"], r.body),
            "security-admin",
            body="gzip-compressed tar of .rules files (ngfw.compiler.signature_archive)",
            accepts=GZIP_TYPES,
        ),
        Route(
            "GET",
            "/signature-sets/{sha256}",
            "A stored signature set's archive (gzip), as stored: agents check its sha256",
            lambda r: (200, RawBody(c.signature_set_archive(r.principal, r.params["sha256"]), "application/gzip")),
            "dataplane[:HOST], security-admin, tenant-admin, vm-operator, viewer",
        ),
        Route(
            "GET",
            "/signature-sets",
            "Stored signature sets: files, rules, who pushed them when",
            lambda r: (200, c.signature_set_list(r.principal)),
            everyone,
        ),
        Route(
            "GET",
            "/status",
            'Version realized per host: "version 12 on 9 of 10 hosts"',
            lambda r: (200, c.status(r.principal)),
            everyone + ", dataplane",
        ),
        Route(
            "GET",
            "/audit",
            "The audit log, newest first: every change and every refusal",
            lambda r: (
                200,
                c.audit_log(r.principal, _int(r.query.get("limit"), "limit", 100, 1, MAX_LIST_LIMIT) or 100),
            ),
            "security-admin, viewer",
            query=("limit",),
        ),
        *operation_routes(c),  # sessions and rule hits of the fleet (ngfw.control.operations)
    ]


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _required_int(body: dict[str, Any], name: str) -> int:
    value = _int(_opt(body.get(name)), name)
    if value is None:
        raise ApiError(400, f"{name} is required")
    return value


def _bundle(control: Control, request: Request) -> tuple[int, Any]:
    host = request.query.get("host", "")
    if not host:
        raise ApiError(400, "host is required")
    wait = parse_seconds(request.query.get("wait"), "wait", MAX_WAIT_SECONDS)
    # `version`: the policy version the host runs; if the running bundle has the same one, the host
    # gets its identity update (Workloads only): a relabel does not ship 10,000 rules to every host
    runs = _int(request.query.get("version"), "version")
    bundle = control.wait_bundle(request.principal, host, request.query.get("known") or None, wait)
    if bundle is None:
        return 204, None
    return 200, RawJson(bundle.encoded_identity if runs == bundle.version else bundle.encoded)


def _user_changes(control: Control, request: Request) -> tuple[int, Any]:
    host = request.query.get("host", "")
    if not host:
        raise ApiError(400, "host is required")
    wait = parse_seconds(request.query.get("wait"), "wait", MAX_WAIT_SECONDS)
    since = _int(request.query.get("since") or None, "since")
    epoch = request.query.get("epoch") or None
    result = control.user_changes(request.principal, host, since, wait, epoch)
    return (204, None) if result is None else (200, result)


def _tasks(control: Control, request: Request) -> tuple[int, Any]:
    try:
        wait = float(request.query.get("wait", "0") or 0)
    except ValueError:
        raise ApiError(400, "wait must be a number of seconds") from None
    result = control.wait_tasks(request.principal, request.query.get("host", ""), wait)
    return (204, None) if result is None else (200, result)


def openapi(routes: list[Route]) -> dict[str, Any]:
    from ngfw.model.schema import json_schema

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "summary": route.summary,
            "description": f"Roles: {route.roles}.",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in re.findall(r"\{(\w+)\}", route.path)
            ]
            + [{"name": name, "in": "query", "required": False, "schema": {"type": "string"}} for name in route.query],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                "400": {"$ref": "#/components/responses/Problem"},
                "401": {"$ref": "#/components/responses/Problem"},
                "403": {"$ref": "#/components/responses/Problem"},
                "409": {"$ref": "#/components/responses/Problem"},
                "422": {"$ref": "#/components/responses/Problem"},
            },
        }
        if route.body:
            schema: dict[str, Any] = (
                {"$ref": "#/components/schemas/Resource"}
                if "resource document" in route.body or "Workload document" in route.body
                else {"type": "object"}
            )
            operation["requestBody"] = {"description": route.body, "content": {"application/json": {"schema": schema}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    resource = json_schema()
    defs = resource.pop("$defs")
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ngfw control",
            "version": __version__,
            "description": "Candidate/commit configuration of ngfw policy, identity updates, and dataplane "
            "bundles. Errors are {error, problems: [{resource, field, message}]}.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Resource": _rebase_refs(resource), **_rebase_refs(defs)},
            "responses": {
                "Problem": {
                    "description": "Refused; the body says why and names resource and field",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["error"],
                                "properties": {
                                    "error": {"type": "string"},
                                    "problems": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "resource": {"type": "string"},
                                                "field": {"type": "string"},
                                                "message": {"type": "string"},
                                            },
                                        },
                                    },
                                },
                            }
                        }
                    },
                }
            },
        },
    }


def _rebase_refs(value: Any) -> Any:
    """The policy schema's `#/$defs/X` references, moved to `#/components/schemas/X`."""
    if isinstance(value, dict):
        return {
            k: (
                v.replace("#/$defs/", "#/components/schemas/")
                if k == "$ref" and isinstance(v, str)
                else _rebase_refs(v)
            )
            for k, v in value.items()
            if k != "$schema"
        }
    if isinstance(value, list):
        return [_rebase_refs(v) for v in value]
    return value


# ---- the HTTP server

INTERNAL_ERROR = "internal error: control failed on this request (a bug); the details are in control's log"
_INTERNAL_ERROR_BODY = json.dumps({"error": INTERNAL_ERROR}).encode()


def _encode(result: Any) -> bytes | None:
    if result is None:
        return None
    return result.data if isinstance(result, RawJson | RawBody) else json.dumps(result).encode("utf-8")


def _shown(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _protocol_error(status: int, exc: BaseException | None) -> tuple[int, str]:
    """Status and one sentence for a request the HTTP parser refused."""
    if isinstance(exc, LineTooLong):
        if exc.args[1:2] == (MAX_URL_BYTES,):
            return 414, f"the request line is longer than {MAX_URL_BYTES} bytes"
        return 431, f"a request header is longer than {MAX_HEADER_BYTES} bytes"
    if isinstance(exc, HttpProcessingError):
        if "Too many headers" in exc.message:
            return 431, f"the request has more than {MAX_HEADERS} headers"
        # the parser's message: "WHAT:\n\n  b'THE LINE'\n  ^" (a pointer under the bad byte)
        what, _, rest = exc.message.partition("\n")
        where = rest.strip().split("\n")[0].strip()
        shown = f" (at {_shown(where)})" if where else ""
        return 400, f"malformed HTTP request: {what.rstrip(':.')}{shown}"
    if status >= 500:
        return status, INTERNAL_ERROR
    return status, "malformed HTTP request"


def _json_response(status: int, body: dict[str, Any], close: bool = False) -> web.Response:
    response = web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Server": SERVER_NAME},
    )
    if close:
        response.force_close()
    return response


class _Connection(RequestHandler):
    """aiohttp's connection protocol, with the connection cap and JSON errors for refused requests."""

    __slots__ = ("owner", "_counted")

    def __init__(self, manager: web.Server, owner: ControlServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.owner = owner
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._counted = True
        self.owner._open += 1
        if self.owner._open > self.owner.max_connections:
            self.owner.counters["refused_connections"] += 1
            body = json.dumps(
                {"error": f"control has {self.owner.max_connections} connections open, its limit; try again later"}
            ).encode()
            answer = (
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            transport.write(answer)  # type: ignore[attr-defined]
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self.owner._open -= 1
        super().connection_lost(exc)

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if isinstance(exc, ConnectionError):
            raise exc  # the client is gone (or was dropped): nobody to answer
        status, sentence = _protocol_error(status, exc)
        if status >= 500:
            self.owner.counters["internal_errors"] += 1
            log.error("request from %s failed (internal error)", request.remote, exc_info=exc)
        else:
            self.owner.counters["bad_requests"] += 1
            log.debug("refused a request from %s: %s", request.remote, sentence)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer was being sent already")
        return _json_response(status, {"error": sentence}, close=True)


class _HttpServer(web.Server):
    def __init__(self, owner: ControlServer, **kwargs: Any) -> None:
        super().__init__(owner._handle, handler_cancellation=True, **kwargs)
        self.owner = owner

    def __call__(self) -> RequestHandler:
        return _Connection(self, self.owner, loop=self._loop, **self._kwargs)


class _TlsSite(web.BaseSite):
    """The API's port with TLS. A connection's first byte says what its client speaks: a TLS handshake
    record (0x16) gets the TLS handshake and the API; anything else is a client speaking plain HTTP,
    answered 403 and closed without its request being parsed (a token in it is never read, let alone
    honoured). Connections waiting for their first byte count against the connection limit."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, owner: ControlServer) -> None:
        super().__init__(runner, ssl_context=owner.ssl_context)
        self._sock = sock
        self._owner = owner
        self._accepting: asyncio.Task[None] | None = None
        self._starting: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self._owner.url

    async def start(self) -> None:
        await super().start()
        self._sock.setblocking(False)
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def stop(self) -> None:
        tasks = [t for t in (self._accepting, *self._starting) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().stop()

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        owner = self._owner
        while True:
            try:
                conn, _address = await loop.sock_accept(self._sock)
            except OSError as exc:  # out of file descriptors, say: the listening socket stays
                log.warning("control: cannot accept a connection: %s", exc)
                await asyncio.sleep(0.1)
                continue
            if owner._open + len(self._starting) >= owner.max_connections:
                owner.counters["refused_connections"] += 1  # no TLS yet to say 503 in: closing says it
                conn.close()
                continue
            task = loop.create_task(self._start(conn))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        owner = self._owner
        conn.setblocking(False)
        peer = _peer(conn)
        try:
            async with asyncio.timeout(owner.limits.idle_timeout):
                first = await _peek(loop, conn)
            if first == b"\x16":
                await loop.connect_accepted_socket(
                    runner_server(self._runner),
                    conn,
                    ssl=self._ssl_context,
                    ssl_handshake_timeout=owner.limits.idle_timeout,
                )
                return  # the connection is aiohttp's now
            if first:
                owner.counters["plain_http_refused"] += 1
                log.info("control: refused a plain-HTTP request from %s (this port serves HTTPS)", peer)
                await _refuse_plain_http(loop, conn)
        except ssl.SSLCertVerificationError as exc:
            owner.counters["tls_handshake_failures"] += 1
            log.warning(
                "control: TLS handshake from %s failed: its client certificate is not signed by --client-ca (%s)",
                peer,
                exc.verify_message or exc,
            )
        except ssl.SSLError as exc:
            owner.counters["tls_handshake_failures"] += 1
            log.info("control: TLS handshake from %s failed: %s", peer, exc.reason or exc)
        except TimeoutError:
            owner.counters["timeouts"] += 1
        except OSError as exc:
            log.debug("control: connection from %s ended before its request: %s", peer, exc)
        conn.close()


def runner_server(runner: web.BaseRunner) -> web.Server:
    server = runner.server
    assert server is not None
    return server


def _peer(conn: socket.socket) -> str:
    try:
        address = conn.getpeername()
    except OSError:
        return "(gone)"
    return f"{address[0]}:{address[1]}"


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """The connection's first byte, left in the socket for whoever reads it next (b"" at end of stream)."""
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        readable: asyncio.Future[None] = loop.create_future()

        def ready(future: asyncio.Future[None] = readable) -> None:
            if not future.done():
                future.set_result(None)

        loop.add_reader(conn.fileno(), ready)
        try:
            await readable
        finally:
            loop.remove_reader(conn.fileno())


PLAIN_HTTP_REFUSED = (
    "control serves HTTPS on this port: use an https:// URL; this plain-HTTP request was not read, "
    "but a token it carried has crossed the network in clear (replace it)"
)


async def _refuse_plain_http(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    body = json.dumps({"error": PLAIN_HTTP_REFUSED}).encode()
    await loop.sock_sendall(
        conn,
        b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n"
        b"Server: %s\r\nContent-Length: %d\r\n\r\n%s" % (SERVER_NAME.encode(), len(body), body),
    )
    conn.shutdown(socket.SHUT_WR)
    # closing with the request unread would reset the connection before the client reads the 403:
    # what it sent is discarded, unparsed, for a moment
    discarded = 0
    try:
        async with asyncio.timeout(1.0):
            while discarded < MAX_BODY_BYTES and (chunk := await loop.sock_recv(conn, 65536)):
                discarded += len(chunk)
    except TimeoutError:
        pass


_UNROUTED = ("/openapi.json", "/metrics")  # served beside the route table, without a token


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # a backlog of 1024: when every agent acks and re-polls at once (after a commit), a short
    # queue drops SYNs that the kernel retries only a second later
    return socket.create_server((host, port), family=family, backlog=1024)


def open_files_cap(wanted: int, reserve: int = 128) -> int:
    """`wanted` connections, fewer if the open-files limit would run out first (store, logs: `reserve`)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(16, min(wanted, soft - reserve))


def raise_open_files_limit(wanted: int = 65536) -> None:
    """Raise this process's soft open-files limit towards its hard one (systemd's soft default is 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # the connection cap follows whatever limit there is
            log.warning("open-files limit stays %d: %s", soft, exc)


class ControlServer:
    """`ngfw control`: the API on HOST:PORT, on an event loop thread with handlers in worker threads."""

    def __init__(
        self,
        control: Control,
        tokens: TokenFile,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        limits: ServerLimits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context` (ngfw.control.tls.server_context): serve HTTPS; plain-HTTP requests get a 403 unread."""
        self.control = control
        self.ssl_context = ssl_context
        self.tokens = tokens
        self.routes = build_routes(control)
        self._patterns = [(route, route.pattern) for route in self.routes]
        self.limits = limits or ServerLimits()
        self.max_connections = open_files_cap(self.limits.max_connections)
        # internal_errors, bad_requests, refused_connections, timeouts, tls_handshake_failures, plain_http_refused
        self.counters: Counter[str] = Counter()
        self.metrics = ControlMetrics(
            control,
            lambda: dict(self.counters),
            lambda: {"connections": self._open, "long_polls_waiting": self._waiting},
        )
        self._openapi: dict[str, Any] | None = None
        self._openapi_body: bytes | None = None
        self._socket = _listen(host, port)  # bound now: a port in use is an OSError of the constructor
        self._address = self._socket.getsockname()
        self._open = 0  # connections, counted on the event loop
        self._waiting = 0  # long-polls waiting for a change
        self._stopping = False
        port = self._address[1]
        self._executor = ThreadPoolExecutor(self.limits.workers, thread_name_prefix=f"ngfw-control-{port}-read")
        self._write_executor = ThreadPoolExecutor(
            self.limits.write_workers, thread_name_prefix=f"ngfw-control-{port}-write"
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._stop_event: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None  # set (and replaced) at every change: wakes the long-polls
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._done = threading.Event()
        self._failure: BaseException | None = None

    @property
    def url(self) -> str:
        host, port = self._address[:2]
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    @property
    def connections(self) -> int:
        """Connections open now."""
        return self._open

    @property
    def long_polls_waiting(self) -> int:
        """Long-polls waiting for a change now (each a coroutine, none a thread)."""
        return self._waiting

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = openapi(self.routes)
        return self._openapi

    # ---- running and stopping
    def start(self) -> None:
        """Serve from a thread of its own; returns once the server accepts connections."""
        self._thread = threading.Thread(
            target=self.serve_forever, name=f"ngfw-control-{self._address[1]}-http", daemon=True
        )
        self._thread.start()
        while not self._running.wait(0.05):
            if self._done.is_set():
                raise RuntimeError(f"control's HTTP server did not start: {self._failure}") from self._failure

    def serve_forever(self) -> None:
        """Serve in this thread until `stop()` (from another thread)."""
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            loop.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._write_executor.shutdown(wait=False, cancel_futures=True)
            self._done.set()

    def stop(self) -> None:
        """Stop accepting, answer the long-polls (204), let requests in progress finish, close everything."""
        loop, stop_event = self._loop, self._stop_event
        if loop is None or stop_event is None:
            self._socket.close()  # never started
            self._executor.shutdown(wait=False)
            self._write_executor.shutdown(wait=False)
            return
        try:
            loop.call_soon_threadsafe(stop_event.set)
        except RuntimeError:
            pass  # the loop has ended already
        if threading.get_ident() == self._loop_thread:
            return  # called from a handler's own loop: it stops when this returns
        self._done.wait(self.limits.shutdown_timeout + 10)
        if self._thread is not None:
            self._thread.join(timeout=5)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stop_event = asyncio.Event()
        self._changed = asyncio.Event()
        server = _HttpServer(
            self,
            keepalive_timeout=self.limits.idle_timeout,
            max_line_size=MAX_URL_BYTES,
            max_field_size=MAX_HEADER_BYTES,
            max_headers=MAX_HEADERS,
            auto_decompress=False,
            lingering_time=2.0,
            access_log=None,
        )
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=self.limits.shutdown_timeout)
        await runner.setup()
        try:
            if self.ssl_context is not None:
                await _TlsSite(runner, self._socket, self).start()
            else:
                await web.SockSite(runner, self._socket, backlog=1024).start()
            unsubscribe = self.control.subscribe(self._changed_elsewhere)
            watch = asyncio.create_task(self._watch_store())
            self._running.set()
            try:
                await self._stop_event.wait()
            finally:
                unsubscribe()
                self._stopping = True
                self._wake()  # the long-polls answer now: nothing changed
                watch.cancel()
        finally:
            await runner.cleanup()
            self._socket.close()

    # ---- long-polls: woken on the loop, not parked in threads
    def _wake(self) -> None:
        assert self._changed is not None
        self._changed.set()
        self._changed = asyncio.Event()

    def _changed_elsewhere(self) -> None:
        """Control changed something (in a worker thread): wake the long-polls on the loop."""
        loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass  # stopped

    async def _watch_store(self) -> None:
        """While long-polls wait, read the store's change marker every STORE_POLL_SECONDS: other
        controllers sharing the store commit too, and only the store tells of that."""
        marker: Any = _UNSET
        while True:
            await asyncio.sleep(STORE_POLL_SECONDS)
            if not self._waiting:
                marker = _UNSET  # nobody to wake; after a pause, the first read wakes them once
                continue
            try:
                current = await self._in_worker(self.control.change_marker)
            except Exception:  # noqa: BLE001 - the store is down: the polls time out; try again
                log.warning("long-polls: cannot read the store's change marker", exc_info=True)
                continue
            if current != marker:
                marker = current
                self._wake()

    async def _long_poll(self, route: Route, request: Request) -> tuple[int, bytes | None]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + parse_seconds(request.query.get("wait"), "wait", MAX_WAIT_SECONDS)
        request.query["wait"] = "0"  # the handler answers now; the waiting is done here
        # a dataplane polling for its host is that host's agent, connected (ngfw_control_host_connected);
        # counted once the handler let it in, so nobody else can make up host names
        host = request.query.get("host", "") if request.principal.base_role == "dataplane" else ""
        tracked = False
        try:
            while True:
                assert self._changed is not None
                changed = self._changed  # taken before asking: a change while the handler runs is not missed
                status, data, _ = await self._in_worker(self._run, route, request)
                if host and not tracked:
                    self.metrics.poll_started(host)
                    tracked = True
                remaining = deadline - loop.time()
                if status != 204 or remaining <= 0 or self._stopping:
                    return status, data
                self._waiting += 1
                try:
                    async with asyncio.timeout(remaining):
                        await changed.wait()
                except TimeoutError:
                    pass  # asked once more: the answer at the deadline
                finally:
                    self._waiting -= 1
        finally:
            if tracked:
                self.metrics.poll_ended(host)

    # ---- one request
    async def _in_worker(self, function: Callable[..., Any], *args: Any, writes: bool = False) -> Any:
        pool = self._write_executor if writes else self._executor
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(function, *args))

    @staticmethod
    def _run(route: Route, request: Request) -> tuple[int, bytes | None, str]:
        status, result = route.handler(request)
        return status, _encode(result), result.content_type if isinstance(result, RawBody) else "application/json"

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        headers = {"Server": SERVER_NAME}
        close = False
        path = urlsplit(request.raw_path).path.rstrip("/") or "/"
        route, params = self._match(request.method, path)
        # the metrics' labels: the route's template, never the path (bounded, and no names in it)
        if route is not None:
            method, template = route.method, route.path
        else:  # a client may send any method and path: neither becomes a label
            method, template = (
                ("GET", path) if request.method == "GET" and path in _UNROUTED else ("other", "unmatched")
            )
        content_type = "application/json"
        try:
            status, data, content_type = await self._answer(request, path, route, params)
        except ApiError as exc:
            status, data = exc.status, _encode(exc.body())
            if exc.status == 401:
                headers["WWW-Authenticate"] = 'Bearer realm="ngfw"'
            if exc.status in (408, 413):
                close = True  # the rest of the body is not read
        except (ConnectionError, asyncio.CancelledError):
            raise  # the client went away
        except Exception:  # noqa: BLE001 - a bug answers 500 and is logged; the server keeps serving
            self.counters["internal_errors"] += 1
            log.exception(
                "%s %s failed (internal error %d)",
                request.method,
                _shown(request.raw_path),
                self.counters["internal_errors"],
            )
            status, data = 500, _INTERNAL_ERROR_BODY
        if data is not None:
            headers["Content-Type"] = content_type
        response = web.Response(status=status, body=data, headers=headers)
        if close:
            response.force_close()
        log.debug("%s %s %s -> %d", request.remote, request.method, _shown(request.raw_path), status)
        try:
            async with asyncio.timeout(self.limits.send_timeout):
                await response.prepare(request)
                await response.write_eof()
        except TimeoutError:
            self.counters["timeouts"] += 1
            if request.transport is not None:
                request.transport.abort()
            raise ConnectionResetError(
                f"{request.remote} did not take its answer within {self.limits.send_timeout} s"
            ) from None
        finally:
            self.metrics.observe(method, template, status, time.perf_counter() - started)
        return response

    async def _answer(
        self, request: web.BaseRequest, path: str, route: Route | None, params: dict[str, str] | None
    ) -> tuple[int, bytes | None, str]:
        """(status, body, content type) of a request; raises ApiError for a refusal."""
        method = request.method
        target = urlsplit(request.raw_path)
        if method == "GET" and path == "/openapi.json":
            if self._openapi_body is None:
                self._openapi_body = await self._in_worker(lambda: json.dumps(self.openapi()).encode())
            return 200, self._openapi_body, "application/json"
        if method == "GET" and path == "/metrics":
            return 200, await self._in_worker(self.metrics.exposition), METRICS_CONTENT_TYPE
        if route is None or params is None:
            raise ApiError(404 if params is None else 405, f"no such endpoint: {method} {_shown(path)}")
        length = request.content_length
        if length is not None and length > MAX_BODY_BYTES:
            raise ApiError(413, f"the body is {length} bytes, over the {MAX_BODY_BYTES} accepted")
        try:
            decoded = {k: unquote(v, errors="strict") for k, v in params.items()}
        except UnicodeDecodeError:
            raise ApiError(400, f"the path is not UTF-8 once percent-decoded: {_shown(path)}") from None
        try:
            query = {k: v[-1] for k, v in parse_qs(target.query, errors="strict").items()}
        except UnicodeDecodeError:
            raise ApiError(400, f"the query is not UTF-8 once percent-decoded: {_shown(target.query)}") from None
        action = f"{method} {route.path}"
        transport = request.transport
        peer_host = certificate_host(transport.get_extra_info("peercert")) if transport is not None else None
        principal = await self._in_worker(
            self._authenticate, action, path, request.headers.get("Authorization", ""), peer_host
        )
        content_type = self._content_type(route, request, length)
        body = await self._read_body(request, length)
        call = Request(principal, decoded, query, body, content_type)
        if route.long_poll:
            status, data = await self._long_poll(route, call)
            return status, data, "application/json"
        return await self._in_worker(self._run, route, call, writes=method != "GET")

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str] | None]:
        path_known = False
        for route, pattern in self._patterns:
            match = pattern.match(path)
            if match:
                path_known = True
                if route.method == method:
                    return route, match.groupdict()
        return None, ({} if path_known else None)

    def _authenticate(self, action: str, path: str, header: str, peer_host: str | None = None) -> Principal:
        """The caller: its bearer token's principal, else (no Authorization header) the dataplane its verified
        client certificate names; 401 otherwise."""
        if not header and peer_host is not None:
            if not valid_host_name(peer_host):
                raise self.control.unauthenticated(
                    action, path, f"the client certificate names {peer_host[:80]!r}, which is not a host name"
                )
            return Principal(f"cert:{peer_host}", f"dataplane:{peer_host}")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self.control.unauthenticated(
                action,
                path,
                "no bearer token (Authorization: Bearer TOKEN)"
                + (" and no client certificate" if self.ssl_context else ""),
            )
        # tokens are URL-safe base64; a header's other bytes arrive as surrogates that no digest takes
        principal = self.tokens.authenticate(token.strip()) if token.isascii() else None
        if principal is None:
            raise self.control.unauthenticated(action, path, "unknown token")
        return principal

    @staticmethod
    def _content_type(route: Route, request: web.BaseRequest, length: int | None) -> str:
        """The body's media type if `route` takes it (no header: JSON); 415 otherwise."""
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding != "identity":
            raise ApiError(
                415, f"Content-Encoding {_shown(encoding, 40)!r} is not accepted: send the body uncompressed"
            )
        header = request.headers.get("Content-Type")
        if header is None or route.body is None or length == 0:
            return header or "application/json"
        media, _, parameters = header.partition(";")
        media = media.strip().lower()
        if media not in route.accepts and not ("application/json" in route.accepts and media.endswith("+json")):
            raise ApiError(
                415,
                f"Content-Type {_shown(media, 60)!r} is not accepted by {route.method} {route.path} "
                f"(send {' or '.join(route.accepts[:2])})",
            )
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
                raise ApiError(415, f"charset {_shown(value.strip(), 40)!r} is not accepted: send UTF-8")
        return header

    async def _read_body(self, request: web.BaseRequest, length: int | None) -> bytes:
        if length == 0 or not request.body_exists:
            return b""
        if request.headers.get("Expect", "").lower() == "100-continue":
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while chunk := await request.content.readany():
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        raise ApiError(413, f"the body is over the {MAX_BODY_BYTES} bytes accepted")
                    chunks.append(chunk)
        except TimeoutError:
            self.counters["timeouts"] += 1
            raise ApiError(
                408, f"the body did not arrive within {self.limits.body_timeout:g} s ({size} bytes came)"
            ) from None
        except (RequestPayloadError, HttpProcessingError) as exc:
            cause = exc.__cause__ or exc
            what = cause.message if isinstance(cause, HttpProcessingError) else str(cause)
            raise ApiError(
                400, f"malformed body: {_shown(what.splitlines()[0] if what else type(cause).__name__)}"
            ) from None
        return b"".join(chunks)
