"""The dataplane agent: fetch this host's bundle from control, verify, compile, apply, acknowledge.

It long-polls control (`GET /bundle?known=HASH&wait=S` returns as soon as the running bundle
differs from the one the agent last saw), so a commit reaches every host in one round trip.
A bundle is trusted only if its documents hash to the hash control stored when the version
was committed; otherwise it is refused, reported (`POST /acks` with status refused), and the
running policy stays. Compiling happens here, in the agent's thread, and the `apply`
callback (`Dataplane.load` in `ngfw dataplane`) builds tables and swaps them atomically, so
the packet loop never waits for either. When control is unreachable the agent keeps the
last good policy, retries, and re-synchronises (and re-acknowledges) when control is back.

Standalone use (tests, benchmarks): `Agent(ControlClient(url, token), "host-a", apply=fn).start()`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ngfw.compiler.signature_archive import SignatureCache
from ngfw.compiler.tables import CompiledPolicy
from ngfw.control.client import ControlClient, ControlError, ControlUnreachable
from ngfw.control.documents import InvalidDocuments, bundle_hash_of_parts, is_workload, part_hash
from ngfw.control.validation import compile_documents, compile_identity
from ngfw.model.errors import PolicyError

log = logging.getLogger("ngfw.agent")

ApplyFn = Callable[[CompiledPolicy], None]


@dataclass(frozen=True)
class Applied:
    """A bundle this agent runs, and when it started running it."""

    version: int
    identity: int
    hash: str
    at: float  # time.time() when apply returned


class Agent:
    def __init__(
        self,
        client: ControlClient,
        host: str,
        apply: ApplyFn,
        *,
        apply_identity: ApplyFn | None = None,
        wait: float = 20.0,
        retry_interval: float = 0.5,
        cache_path: str | Path | None = None,
        signature_cache: SignatureCache | None = None,
        running_signatures: Callable[[], dict[str, str]] | None = None,
    ) -> None:
        """`apply_identity` (default: `apply`) gets bundles that changed only Workloads (same version),
        for a dataplane that can update its identity tables without rebuilding rule tables.
        `signature_cache`: where the signature sets a bundle names are fetched to (and verified) before
        `apply`; `running_signatures`: {set name: sha256} the dataplane runs, sent with every ack."""
        self.client = client
        self.signature_cache = signature_cache
        self.running_signatures = running_signatures
        self.host = host
        self.apply = apply
        self.apply_identity = apply_identity or apply
        self.wait = wait
        self.retry_interval = retry_interval
        self.cache_path = Path(cache_path) if cache_path else None
        self.current: Applied | None = None
        self.policy: CompiledPolicy | None = None
        self.refused: list[str] = []  # hashes of bundles refused (did not verify, compile or apply)
        self.connected = False
        self.last_error = ""
        self._seen_hash: str | None = None  # last bundle hash handled, good or bad: the long-poll's `known`
        # the policy part (non-Workload documents) of the running bundle and its verified hash: identity
        # updates of the same version carry only Workloads and are verified against it
        self._policy_documents: list[Any] = []
        self._policy_hash: str | None = None
        self._want_full = False  # an identity update did not fit what runs here: ask for a whole bundle
        self._ack_pending = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()

    # ---- running
    def start(self) -> None:
        self.load_cache()
        self._thread = threading.Thread(target=self.run, name=f"ngfw-agent-{self.host}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # a long-poll in flight ends within its wait; the thread is a daemon either way
            self._thread.join(timeout=0.1)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once(self.wait)
                if not self.connected:
                    log.info("agent %s: control %s reachable", self.host, self.client.url)
                self.connected = True
            except ControlUnreachable as exc:
                if self.connected or not self.last_error:
                    log.warning(
                        "agent %s: %s; keeping version %s",
                        self.host,
                        exc,
                        self.current.version if self.current else "none",
                    )
                self.connected = False
                self.last_error = str(exc)
                self._ack_pending = self.current is not None  # say what we run once control is back
                self._stop.wait(self.retry_interval)
            except ControlError as exc:
                self.last_error = str(exc)
                log.error("agent %s: control refused: %s", self.host, exc)
                self._stop.wait(max(self.retry_interval, 2.0))  # e.g. a bad token: do not hammer control

    def sync_once(self, wait: float) -> bool:
        """One long-poll: True if a new bundle was applied. Raises ControlUnreachable/ControlError."""
        if self._ack_pending and self.current is not None:
            self._ack(self.current, "applied")
        runs = self.current.version if self.current is not None and not self._want_full else None
        bundle = self.client.bundle(self.host, self._seen_hash, wait, runs)
        if bundle is None:
            return False
        previous: str | None = self._seen_hash
        self._seen_hash = str(bundle.get("hash", ""))
        try:
            return self.handle(bundle)
        except ControlUnreachable:
            self._seen_hash = previous  # a signature set could not be fetched: ask for this bundle again
            raise

    def handle(self, bundle: dict[str, Any], report: bool = True) -> bool:
        """Verify, compile and apply one bundle (whole, or an identity update of the version running
        here); True when it is now running."""
        version, identity = int(bundle["version"]), int(bundle["identity"])
        claimed = str(bundle["hash"])
        whole = "documents" in bundle
        policy_hash: str | None
        if whole:
            policy_documents = [d for d in bundle["documents"] if not is_workload(d)]
            workloads = [d for d in bundle["documents"] if is_workload(d)]
            policy_hash = part_hash(policy_documents)
        else:
            policy_documents, workloads, policy_hash = self._policy_documents, bundle["workloads"], self._policy_hash
        computed = bundle_hash_of_parts(version, identity, policy_hash or "", part_hash(workloads))
        if not whole and (computed != claimed or self.current is None or self.current.version != version):
            # not an update of what runs here (control's store was replaced?): fetch the whole bundle,
            # which is verified on its own
            log.warning(
                "agent %s: identity update %d of version %d does not verify against the policy "
                "running here; fetching the whole bundle",
                self.host,
                identity,
                version,
            )
            self._want_full, self._seen_hash = True, None
            return False
        if computed != claimed:
            return self._refuse(
                version,
                identity,
                claimed,
                "refused",
                f"hash mismatch: the bundle says {claimed}, its documents hash to {computed}",
                report,
            )
        self._want_full = False
        started = time.perf_counter()
        identity_only = (
            self.current is not None
            and self.current.version == version
            and self.policy is not None
            and policy_hash == self._policy_hash
        )
        policy: CompiledPolicy | None = None
        if identity_only:
            assert self.policy is not None
            try:  # only Workloads changed: recompute identity and group membership, reuse the rules
                policy = compile_identity(self.policy, workloads)
            except (InvalidDocuments, PolicyError) as exc:
                log.info("agent %s: identity %d needs a full compile: %s", self.host, identity, exc)
        documents = policy_documents + workloads
        if policy is None:
            try:
                policy = compile_documents(documents, version, lint_it=False).policy
            except InvalidDocuments as exc:
                return self._refuse(version, identity, claimed, "failed", f"does not compile: {exc}", report)
            problem = self._fetch_signature_sets(policy)
            if problem:
                return self._refuse(version, identity, claimed, "refused", problem, report)
        try:
            (self.apply_identity if identity_only else self.apply)(policy)
        except Exception as exc:  # noqa: BLE001 - whatever the dataplane says, the old tables stay in force
            log.exception("agent %s: applying version %d failed", self.host, version)
            return self._refuse(version, identity, claimed, "failed", f"apply failed: {exc}", report)
        applied = Applied(version, identity, claimed, time.time())
        with self._changed:
            self.current, self.policy = applied, policy
            self._policy_documents, self._policy_hash = policy_documents, policy_hash
            self._changed.notify_all()
        log.info(
            "agent %s: version %d identity %d applied in %.3f s (sha256 %s)",
            self.host,
            version,
            identity,
            time.perf_counter() - started,
            claimed[:12],
        )
        try:
            if report:
                self._ack(applied, "applied")
        finally:  # after the ack: the cache is for a restart, the ack is what control waits for
            self._save_cache({"version": version, "identity": identity, "hash": claimed, "documents": documents})
        return True

    def _refuse(self, version: int, identity: int, claimed: str, status: str, detail: str, report: bool) -> bool:
        log.error("agent %s: bundle version %d %s: %s", self.host, version, status, detail)
        try:
            if report:
                signatures = self.running_signatures() if self.running_signatures is not None else None
                self.client.ack(self.host, version, identity, claimed, status, detail, signatures=signatures)
        finally:
            # after the report, so that whoever waits for the refusal finds it reported
            with self._changed:
                self.refused.append(claimed)
                self._changed.notify_all()
        return False

    def _fetch_signature_sets(self, policy: CompiledPolicy) -> str:
        """Bring the signature sets the bundle names into the cache, each verified against the sha256 the
        bundle (whose hash verified) gives; the reason to refuse the bundle, or "" when every set is here.
        ControlUnreachable propagates: the agent retries, the running policy stays."""
        if not policy.signature_sets or self.signature_cache is None:
            return ""
        from ngfw.compiler.signature_archive import ArchiveError, decompress

        for name, digest in policy.signature_sets:
            if self.signature_cache.has(digest):
                continue
            try:
                data = self.client.signature_set(digest)
            except ControlError as exc:
                return f"signature set {name} (sha256 {digest}): control cannot give it: {exc}"
            try:
                self.signature_cache.add(digest, decompress(data))
            except ArchiveError as exc:
                return (
                    f"signature set {name} does not verify: {exc} (what control sent is corrupted); the running "
                    "signature sets stay"
                )
            except OSError as exc:
                return f"signature set {name} cannot be cached in {self.signature_cache.directory}: {exc}"
            log.info("agent %s: signature set %s (sha256 %s) fetched and verified", self.host, name, digest[:12])
        return ""

    def _ack(self, applied: Applied, status: str) -> None:
        self._ack_pending = True  # until control has it: any failure (down, 5xx) means "say it again"
        signatures = self.running_signatures() if self.running_signatures is not None else None
        self.client.ack(self.host, applied.version, applied.identity, applied.hash, status, signatures=signatures)
        self._ack_pending = False

    def wait_for(self, predicate: Callable[[Agent], bool], timeout: float) -> bool:
        """Block until `predicate(self)` holds after an apply or refusal (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    # ---- the last good bundle on disk: a restarted dataplane enforces it while control is down
    def load_cache(self) -> bool:
        if self.cache_path is None or not self.cache_path.exists():
            return False
        try:
            bundle = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("agent %s: cached bundle %s unreadable: %s", self.host, self.cache_path, exc)
            return False
        try:
            ok = self.handle(bundle, report=False)
        except (ControlUnreachable, ControlError) as exc:  # a signature set it names is not cached, control is down
            log.warning("agent %s: cached bundle %s not enforced: %s", self.host, self.cache_path, exc)
            return False
        if ok:
            self._seen_hash = self.current.hash if self.current else None
            self._ack_pending = True
        return ok

    def _save_cache(self, bundle: dict[str, Any]) -> None:
        if self.cache_path is None:
            return
        tmp = self.cache_path.with_name(self.cache_path.name + ".tmp")
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(bundle), encoding="utf-8")
            os.replace(tmp, self.cache_path)
        except OSError as exc:
            log.warning("agent %s: cannot cache the bundle in %s: %s", self.host, self.cache_path, exc)


def start_dataplane_agent(
    dataplane: Any,
    control_url: str,
    host: str,
    token: str | None,
    cache_path: str | None = None,
    *,
    ca_file: str | None = None,
    client_cert: str | None = None,
    client_key: str | None = None,
) -> Agent:
    """Run an agent that feeds `ngfw dataplane`: its compiled policies go to `Dataplane.load`.
    `ca_file`, `client_cert`, `client_key`: TLS with control (ValueError naming a file that cannot be used)."""

    def apply(policy: CompiledPolicy) -> None:
        dataplane.version = policy.version
        dataplane.load(policy)

    def client() -> ControlClient:
        return ControlClient(control_url, token, ca_file=ca_file, client_cert=client_cert, client_key=client_key)

    bundles = client()  # a CA or certificate that cannot be used stops the start here, naming the file
    agent = Agent(
        bundles,
        host,
        apply,
        apply_identity=dataplane.apply_identity,
        cache_path=cache_path,
        signature_cache=dataplane.signature_cache,
        running_signatures=dataplane.signature_hashes,
    )
    agent.start()
    from ngfw.dataplane.migration import start_migration_agent

    # sessions of workloads that move: a long-poll of its own, so a bundle never waits behind a transfer
    start_migration_agent(dataplane, client(), host)
    from ngfw.dataplane.opsagent import start_operations_agent

    # fleet-wide session listings and rule hits (ngfw.control.operations): a long-poll of its own too
    start_operations_agent(dataplane, client(), host)
    from ngfw.dataplane.userid import start_user_agent

    # User-ID mappings (logins, the identity API): deltas of their own, never a policy bundle
    start_user_agent(dataplane, client(), host)
    return agent
