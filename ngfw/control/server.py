"""The HTTP+JSON API of `ngfw control`: routes requests to `ngfw.control.service.Control`.

Built on the standard library's ThreadingHTTPServer: the API is small, its clients are
the CLI and the agents (tens to hundreds of long-polls, one thread each), and it needs
no framework's dependencies on every host. Each route is declared once in `ROUTES`, and
the OpenAPI document (`/openapi.json`) is generated from that same table, so the two
cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ngfw import __version__
from ngfw.control.auth import Principal, TokenFile
from ngfw.control.service import ApiError, Control
from ngfw.model.yamldoc import YamlProblem, parse_documents

log = logging.getLogger("ngfw.control.http")

MAX_BODY_BYTES = 64 << 20
Handler = Callable[["Request"], tuple[int, Any]]


@dataclass
class Request:
    principal: Principal
    params: dict[str, str]  # from the path
    query: dict[str, str]
    body: bytes
    content_type: str

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None

    def json_object(self) -> dict[str, Any]:
        value = self.json()
        if not isinstance(value, dict):
            raise ApiError(400, "the body must be a JSON object")
        return value


@dataclass(frozen=True)
class RawJson:
    """A response body that is JSON already."""

    data: bytes


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI template, e.g. /versions/{number}
    summary: str
    handler: Handler
    roles: str  # who may call it, for the OpenAPI document
    body: str | None = None  # request body, described for the OpenAPI document
    query: tuple[str, ...] = ()

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.path) + "$")


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer (got {value!r})") from None


def _apply_items(request: Request) -> list[tuple[Any, str]]:
    """The documents of an apply: a YAML stream, or JSON {"documents": [...], "sources": [...]}."""
    if "yaml" in request.content_type:
        try:
            documents = parse_documents(request.body.decode("utf-8"))
        except (YamlProblem, UnicodeDecodeError) as exc:
            where = f"line {exc.line}, column {exc.column}: " if isinstance(exc, YamlProblem) else ""
            raise ApiError(400, f"invalid YAML: {where}{exc}") from None
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
        Route("GET", "/running", "The running configuration: version, identity revision, bundle hash, documents",
              lambda r: (200, c.running(r.principal)), everyone),
        Route("GET", "/candidate", "Your candidate configuration and its changes against its base",
              lambda r: (200, c.candidate(r.principal)), everyone),
        Route("POST", "/candidate/apply", "Create or replace resources in your candidate (all or nothing)",
              lambda r: (200, c.apply(r.principal, _apply_items(r))), editors,
              body='YAML stream (Content-Type: application/yaml) or {"documents": [...], "sources": [...]}'),
        Route("PUT", "/candidate/resources/{kind}/{vsys}/{name}", "Create or replace one resource in your candidate",
              lambda r: (200, c.apply(r.principal, [(r.json(), "request")], "candidate.put",
                                      (r.params["kind"], r.params["vsys"], r.params["name"]))),
              editors, body="one resource document (a VirtualSystem's vsys is its own name)"),
        Route("DELETE", "/candidate/resources/{kind}/{vsys}/{name}", "Delete one resource from your candidate",
              lambda r: (200, c.delete(r.principal, r.params["kind"], r.params["vsys"], r.params["name"])), editors),
        Route("DELETE", "/candidate", "Discard your candidate", lambda r: (200, c.discard(r.principal)), everyone),
        Route("POST", "/candidate/validate", "Dry run: compile your candidate, return lint warnings",
              lambda r: (200, c.validate(r.principal)), everyone),
        Route("POST", "/candidate/rebase", "Move your candidate onto the running version, keeping its changes",
              lambda r: (200, c.rebase(r.principal)), editors),
        Route("POST", "/commit", "Validate, compile, store and publish your candidate as the next version",
              lambda r: (201, c.commit(r.principal, str(r.json_object().get("message", "")),
                                       _int(_opt(r.json_object().get("base")), "base"))),
              editors, body='{"message": "...", "base": N} (409 when N is no longer the running version)'),
        Route("POST", "/rollback", "Publish a new version whose policy is that of an earlier version",
              lambda r: (201, c.rollback(r.principal, _required_int(r.json_object(), "version"),
                                         str(r.json_object().get("message", "")),
                                         _int(_opt(r.json_object().get("base")), "base"))),
              "security-admin", body='{"version": N, "message": "...", "base": M}'),
        Route("GET", "/versions", "Committed versions, newest first (no documents)",
              lambda r: (200, c.versions(r.principal, _int(r.query.get("limit"), "limit", 50) or 50)), everyone,
              query=("limit",)),
        Route("GET", "/versions/{number}", "One committed version with its documents",
              lambda r: (200, c.version(r.principal, _int(r.params["number"], "number") or 0)), everyone),
        Route("GET", "/diff", "Resource-by-resource diff; from/to are a version number, running or candidate",
              lambda r: (200, c.diff(r.principal, r.query.get("from", "running"), r.query.get("to", "candidate"))),
              everyone, query=("from", "to")),
        Route("GET", "/identity", "Running Workloads (bindings and labels) and the identity revision",
              lambda r: (200, c.identity(r.principal)), everyone),
        Route("PUT", "/identity/workloads/{vsys}/{name}",
              "Create or change a Workload's bindings and labels without a policy commit",
              lambda r: (200, c.put_workload(r.principal, r.params["vsys"], r.params["name"], r.json())),
              "security-admin, vm-operator, tenant-admin:VSYS", body="a Workload document"),
        Route("DELETE", "/identity/workloads/{vsys}/{name}", "Remove a Workload without a policy commit",
              lambda r: (200, c.delete_workload(r.principal, r.params["vsys"], r.params["name"])),
              "security-admin, vm-operator, tenant-admin:VSYS"),
        Route("GET", "/bundle", "Long-poll for the running bundle: returns when its hash differs from `known` "
                                "(204 after `wait` seconds without a change); with `version` (the one the host "
                                "runs) equal to the running one, only its Workloads (an identity update)",
              lambda r: _bundle(c, r), "dataplane[:HOST], security-admin, viewer",
              query=("host", "known", "wait", "version")),
        Route("POST", "/acks", "A host reports the version and hash it runs (or that it refused a bundle)",
              lambda r: (200, c.ack(r.principal, r.json_object())), "dataplane[:HOST]",
              body='{"host", "version", "identity", "hash", "status": applied|refused|failed, "detail"}'),
        Route("POST", "/migrations", "Announce a workload's move to another host: its sessions go there first",
              lambda r: (201, c.migrate(r.principal, r.json_object())), "security-admin, vm-operator, tenant-admin:VSYS",
              body='{"workload": NAME, "vsys": VSYS (when the name is not unique), "to": HOST}'),
        Route("GET", "/migrations", "Migrations in progress and recent ones", lambda r: (200, c.migration_list(r.principal)),
              everyone),
        Route("GET", "/tasks", "Long-poll for a dataplane agent's migration work (204 after `wait` s without any)",
              lambda r: _tasks(c, r), "dataplane[:HOST]", query=("host", "wait")),
        Route("POST", "/migrations/{migration}/sessions", "A source host's sessions of a migration (a SessionBatch)",
              lambda r: (200, c.migration_sessions(r.principal, r.params["migration"], r.json_object())),
              "dataplane[:HOST] (the source)", body='{"host", "phase": precopy|cutover, "batch": base64, "count"}'),
        Route("POST", "/migrations/{migration}/result", "The destination host's import of a migration's sessions",
              lambda r: (200, c.migration_result(r.principal, r.params["migration"], r.json_object())),
              "dataplane[:HOST] (the destination)", body='{"host", "phase", "results": {result: count}}'),
        Route("POST", "/arrivals", "A host saw workloads' first frames on its VM side (they may have moved there)",
              lambda r: (200, c.arrivals(r.principal, r.json_object())), "dataplane[:HOST]",
              body='{"host", "workloads": [{"vsys", "name"}]}'),
        Route("GET", "/status", 'Version realized per host: "version 12 on 9 of 10 hosts"',
              lambda r: (200, c.status(r.principal)), everyone + ", dataplane"),
        Route("GET", "/audit", "The audit log, newest first: every change and every refusal",
              lambda r: (200, c.audit_log(r.principal, _int(r.query.get("limit"), "limit", 100) or 100)),
              "security-admin, viewer", query=("limit",)),
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
    wait = float(request.query.get("wait", "0") or 0)
    # `version`: the policy version the host runs; if the running bundle has the same one, the host
    # gets its identity update (Workloads only): a relabel does not ship 10,000 rules to every host
    runs = _int(request.query.get("version"), "version")
    bundle = control.wait_bundle(request.principal, host, request.query.get("known") or None, wait)
    if bundle is None:
        return 204, None
    return 200, RawJson(bundle.encoded_identity if runs == bundle.version else bundle.encoded)


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
            "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                           for name in re.findall(r"\{(\w+)\}", route.path)]
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
            schema: dict[str, Any] = ({"$ref": "#/components/schemas/Resource"} if "resource document" in route.body
                                      or "Workload document" in route.body else {"type": "object"})
            operation["requestBody"] = {"description": route.body,
                                        "content": {"application/json": {"schema": schema}}}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    resource = json_schema()
    defs = resource.pop("$defs")
    return {
        "openapi": "3.1.0",
        "info": {"title": "ngfw control", "version": __version__,
                 "description": "Candidate/commit configuration of ngfw policy, identity updates, and dataplane "
                                "bundles. Errors are {error, problems: [{resource, field, message}]}."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Resource": _rebase_refs(resource), **_rebase_refs(defs)},
            "responses": {"Problem": {"description": "Refused; the body says why and names resource and field",
                                      "content": {"application/json": {"schema": {
                                          "type": "object", "required": ["error"],
                                          "properties": {"error": {"type": "string"}, "problems": {
                                              "type": "array", "items": {"type": "object", "properties": {
                                                  "resource": {"type": "string"}, "field": {"type": "string"},
                                                  "message": {"type": "string"}}}}}}}}}},
        },
    }


def _rebase_refs(value: Any) -> Any:
    """The policy schema's `#/$defs/X` references, moved to `#/components/schemas/X`."""
    if isinstance(value, dict):
        return {k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" and isinstance(v, str)
                    else _rebase_refs(v)) for k, v in value.items() if k != "$schema"}
    if isinstance(value, list):
        return [_rebase_refs(v) for v in value]
    return value


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog is 5: when every agent acks and re-polls at once (after a
    # commit) the rest of the SYNs are dropped and retried a second later by the kernel
    request_queue_size = 1024
    daemon_threads = True  # long-polls must not keep a stopping control alive


class ControlServer:
    """`ngfw control`: the API on HOST:PORT, serving from a thread per request."""

    def __init__(self, control: Control, tokens: TokenFile, host: str = "127.0.0.1", port: int = 0) -> None:
        self.control = control
        self.tokens = tokens
        self.routes = build_routes(control)
        self._openapi: dict[str, Any] | None = None
        server = self

        class _Handler(_RequestHandler):
            owner = server

        self.httpd = _Server((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}" if isinstance(host, str) else f"http://{host.decode()}:{port}"

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = openapi(self.routes)
        return self._openapi

    def start(self) -> None:
        # a short poll interval: stopping (tests, restarts) waits for at most one interval
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), name="ngfw-control-http",
                                        daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _RequestHandler(BaseHTTPRequestHandler):
    owner: ControlServer
    protocol_version = "HTTP/1.1"
    server_version = f"ngfw-control/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else body.data if isinstance(body, RawJson) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, {"error": f"body over {MAX_BODY_BYTES} bytes"}, {"Connection": "close"})
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        if method == "GET" and path == "/openapi.json":
            self._send(200, self.owner.openapi())
            return
        route, params = self._match(method, path)
        if route is None or params is None:
            self._send(404 if params is None else 405, {"error": f"no such endpoint: {method} {path}"})
            return
        control = self.owner.control
        action = f"{method} {route.path}"
        try:
            principal = self._authenticate(control, action, path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            request = Request(principal, {k: unquote(v) for k, v in params.items()}, query, body,
                              self.headers.get("Content-Type", "application/json"))
            status, result = route.handler(request)
        except ApiError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="ngfw"'} if exc.status == 401 else None
            self._send(exc.status, exc.body(), headers)
            return
        except Exception:  # noqa: BLE001 - a bug answers 500 and is logged; the server keeps serving
            log.exception("%s %s failed", method, self.path)
            self._send(500, {"error": "internal error (see the control log)"})
            return
        self._send(status, result)

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str] | None]:
        path_known = False
        for route in self.owner.routes:
            match = route.pattern.match(path)
            if match:
                path_known = True
                if route.method == method:
                    return route, match.groupdict()
        return None, ({} if path_known else None)

    def _authenticate(self, control: Control, action: str, path: str) -> Principal:
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise control.unauthenticated(action, path, "no bearer token (Authorization: Bearer TOKEN)")
        principal = self.owner.tokens.authenticate(token.strip())
        if principal is None:
            raise control.unauthenticated(action, path, "unknown token")
        return principal
