"""A small client of the control API (standard library only), shared by the CLI and the agent.

`https://` URLs verify control's certificate against `ca_file` (else the system's CAs); an agent
may present a client certificate (`client_cert`, `client_key`), which control maps to its
`dataplane:HOST` role. TLS failures come out as one sentence naming the file or the URL
(`ControlTlsError`).
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from ngfw.control.tls import TlsConfigError, client_context, explain_failure


class ControlUnreachable(Exception):
    """No answer from control (down, wrong address, timeout)."""


class ControlTlsError(ControlUnreachable):
    """TLS with control failed: its certificate is not trusted, or it refused ours. The message says which."""


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


def check_url(url: str) -> str:
    """`url` if it is an http:// or https:// URL with a host; ValueError naming it otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"control URL {url!r} is not an http:// or https:// URL with a host")
    return url


class ControlClient:
    def __init__(
        self,
        url: str,
        token: str | None,
        timeout: float = 30.0,
        *,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        ca_option: str = "--ca-file",
    ) -> None:
        """`ca_file`, `client_cert`, `client_key`: PEM files for https:// URLs (TlsConfigError, naming the file,
        when one cannot be used); `ca_option` is how the user named the CA file, for messages."""
        self.url = check_url(url).rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ca_file = ca_file
        self.client_cert = client_cert
        self.context: ssl.SSLContext | None = None
        self._context_without_certificate: ssl.SSLContext | None = None
        if self.url.startswith("https://"):
            self.context = client_context(ca_file, client_cert, client_key, ca_option)
            if client_cert:
                self._context_without_certificate = client_context(ca_file, ca_option=ca_option)
        elif client_cert:
            raise TlsConfigError(f"--client-cert {client_cert} needs an https:// control URL (got {self.url})")

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
        decode: bool = True,
    ) -> tuple[int, Any]:
        """(status, the answer's JSON, or its bytes with `decode` False); ControlError for a 4xx/5xx."""
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
            with urllib.request.urlopen(request, timeout=timeout or self.timeout, context=self.context) as response:
                payload = response.read()
                if not decode:
                    return response.status, payload
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
            tls = explain_failure(
                reason if isinstance(reason, BaseException) else exc, self.url, self.ca_file, self.client_cert
            )
            if tls is None and self._certificate_refused(reason if isinstance(reason, BaseException) else exc):
                tls = (
                    f"control at {self.url} refused this client's certificate {self.client_cert}: it is not "
                    "signed by control's --client-ca (control's log says why)"
                )
            if tls is not None:
                raise ControlTlsError(tls) from None
            raise ControlUnreachable(f"control at {self.url} is unreachable: {reason}") from None

    def _certificate_refused(self, exc: BaseException) -> bool:
        """After the TLS 1.3 handshake, control verifies a client certificate and, refusing it, closes the
        connection without a word (asyncio sends no alert): if control answers the same URL to a client
        without a certificate, the certificate is what it refused."""
        if self._context_without_certificate is None or not isinstance(exc, (ConnectionError, ssl.SSLEOFError)):
            return False
        try:
            with urllib.request.urlopen(
                self.url + "/openapi.json", timeout=self.timeout, context=self._context_without_certificate
            ):
                return True
        except urllib.error.HTTPError:
            return True
        except (urllib.error.URLError, OSError):
            return False

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
        status, body = self.request(
            "GET",
            "/bundle",
            query={"host": host, "known": known, "wait": wait, "version": runs},
            timeout=wait + self.timeout,
        )
        return body if status == 200 else None

    def tasks(self, host: str, wait: float) -> list[dict[str, Any]]:
        """This host's migration tasks, waiting up to `wait` s for one (long-poll)."""
        status, body = self.request("GET", "/tasks", query={"host": host, "wait": wait}, timeout=wait + self.timeout)
        return list(body.get("tasks", [])) if status == 200 and body else []

    def migration_sessions(self, migration: str, host: str, phase: str, batch: str, count: int) -> Any:
        return self.post(
            f"/migrations/{quote(migration)}/sessions", {"host": host, "phase": phase, "batch": batch, "count": count}
        )

    def migration_result(self, migration: str, host: str, phase: str, results: dict[str, int], detail: str = "") -> Any:
        return self.post(
            f"/migrations/{quote(migration)}/result",
            {"host": host, "phase": phase, "results": results, "detail": detail},
        )

    def arrivals(self, host: str, workloads: list[dict[str, str]]) -> Any:
        return self.post("/arrivals", {"host": host, "workloads": workloads})

    def ack(
        self,
        host: str,
        version: int,
        identity: int,
        digest: str,
        status: str = "applied",
        detail: str = "",
        signatures: dict[str, str] | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "host": host,
            "version": version,
            "identity": identity,
            "hash": digest,
            "status": status,
            "detail": detail,
        }
        if signatures is not None:
            body["signatures"] = signatures
        self.post("/acks", body)

    def signature_set(self, digest: str) -> bytes:
        """A stored signature set's archive, gzip-compressed, as control has it (unverified)."""
        return self.request("GET", f"/signature-sets/{quote(digest)}", decode=False, timeout=max(self.timeout, 120))[1]

    def push_signature_set(self, digest: str, compressed: bytes) -> tuple[int, Any]:
        return self.request(
            "PUT",
            f"/signature-sets/{quote(digest)}",
            raw=compressed,
            content_type="application/gzip",
            timeout=max(self.timeout, 300),
        )
