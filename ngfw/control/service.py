"""What control does, without HTTP: candidates, commit, rollback, identity, bundles, acks, audit.

Every method takes the calling `Principal`, checks its role first, and either returns a
JSON-ready dict or raises `ApiError` (status, message, problems naming resource and field).
Every change and every refusal is written to the audit log. The HTTP layer
(ngfw.control.server) only maps requests to these methods.

The running configuration is (version N, identity revision R): the policy resources of
version N with the Workloads of identity revision R. Workload bindings and labels change
through `put_workload`/`delete_workload` without a policy commit (R moves, N does not); a
commit that changes Workloads moves both.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ngfw.compiler.tables import CompiledPolicy
from ngfw.control.auth import Principal
from ngfw.control.diff import changed_keys, diff_documents, merge
from ngfw.control.documents import (
    Document,
    InvalidDocuments,
    Key,
    Problem,
    bundle_hash,
    bundle_hash_of_parts,
    canonical,
    content_hash,
    is_workload,
    key_of,
    label_of,
    parse_resource,
    part_hash,
)
from ngfw.control.migrations import MigrationCoordinator, MigrationError
from ngfw.control.signature_sets import PushRefused, SignatureSetRegistry
from ngfw.control.store import (
    AuditEntry,
    Candidate,
    HostAck,
    IdentityRecord,
    Store,
    StoreConflict,
    VersionRecord,
)
from ngfw.control.validation import Validated, compile_documents, duplicates, validate_identity
from ngfw.model.errors import PolicyError
from ngfw.model.resources import SITE_KINDS

log = logging.getLogger("ngfw.control")

STORE_POLL_SECONDS = 0.2  # how often a waiting bundle request re-reads the store (other controllers commit too)
STORE_INT_MAX = (1 << 63) - 1  # SQLite's INTEGER (and etcd's keys' numbers): a larger version cannot exist


class ApiError(Exception):
    """A refused request: HTTP status, a one-line message, and the problems behind it."""

    def __init__(self, status: int, message: str, problems: Sequence[Problem] = (), **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = list(problems)
        self.extra = extra

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message, **self.extra}
        if self.problems:
            out["problems"] = [p.as_dict() for p in self.problems]
        return out


@dataclass(frozen=True)
class Bundle:
    """What every host runs: a policy version and identity revision, their documents and hash."""

    version: int
    identity: int
    hash: str
    documents: list[Document]

    def as_dict(self) -> dict[str, Any]:
        # not dataclasses.asdict: it deep-copies every document (1.8 s at 10,000 rules)
        return {"version": self.version, "identity": self.identity, "hash": self.hash, "documents": self.documents}

    @functools.cached_property
    def encoded(self) -> bytes:
        """The JSON body, encoded once: every host's long-poll wakes at once for the same bundle."""
        return json.dumps(self.as_dict()).encode("utf-8")

    @functools.cached_property
    def encoded_identity(self) -> bytes:
        """The identity-only body, for hosts that run this version already: its Workloads, not its rules.
        They verify `hash` from the Workloads and the policy part they verified before."""
        return json.dumps(
            {
                "version": self.version,
                "identity": self.identity,
                "hash": self.hash,
                "workloads": [d for d in self.documents if is_workload(d)],
            }
        ).encode("utf-8")


def _signatures(value: Any) -> dict[str, str]:
    """An ack's {signature set name: sha256} (what the host runs); malformed or oversized entries are dropped."""
    if not isinstance(value, dict):
        return {}
    return {str(k)[:63]: str(v)[:64] for k, v in list(value.items())[:64] if isinstance(k, str) and isinstance(v, str)}


def _workloads(documents: Sequence[Document]) -> list[Document]:
    # sorted: the workload set has no order that means anything, and equal sets must hash equally
    return sorted((d for d in documents if is_workload(d)), key=key_of)


class Control:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock
        self._write_lock = threading.Lock()  # one writer at a time in this process; the store arbitrates across
        self._changed = threading.Condition()
        self._bundles: dict[tuple[int, int], Bundle] = {}
        self._bundle_lock = threading.Lock()
        self._versions: dict[int, VersionRecord] = {}
        self._policy_hashes: tuple[int, str] | None = None  # (version, hash of its policy part)
        self._verified: dict[int, VersionRecord] = {}  # the record whose content hash was checked last
        # the running (version, identity) compiled: an identity update checks against it, not a recompile
        self._compiled: tuple[tuple[int, int], CompiledPolicy] | None = None
        self._listeners: list[Callable[[], None]] = []  # told of every change (the HTTP server's long-polls)
        self.migrations = MigrationCoordinator(clock, on_change=self._notify)
        self.signature_sets = SignatureSetRegistry(store)
        from ngfw.control.userid import UserMappings

        # User-ID: address -> user, kept in the store; what a previous control process mapped is enforced again
        self.users = UserMappings(clock, on_change=self._notify, store=store)
        self.users.restore()
        from ngfw.control.ldap import groups_by_user

        self.users.set_groups(groups_by_user(store.directory_groups().values()))  # the last good, till a refresh
        self.syslog: Any = None  # ngfw.control.syslog.SyslogReceiver with `ngfw control --syslog`
        self.directories: Any = None  # ngfw.control.ldap.DirectorySync: directory groups
        self._address_book: tuple[tuple[int, int], dict[str, str], list[Any], dict[str, list[str]]] | None = None

    def close(self) -> None:
        """Control stopping: what is not in the store yet (the last syslog batch's mappings) is written."""
        self.users.close()

    # ---- audit and authorization
    def audit(self, who: Principal | None, action: str, target: str, outcome: str, **detail: Any) -> None:
        entry = AuditEntry(
            self.clock(), who.name if who else "", who.role if who else "", action, target, outcome, detail
        )
        try:
            self.store.add_audit(entry)
        except Exception:  # noqa: BLE001 - an audit write failing must be loud, not turn a read into a 500
            log.exception("audit entry not written: %s", entry)

    def require(self, who: Principal, refusal: str | None, action: str, target: str = "") -> None:
        if refusal is not None:
            self.audit(who, action, target, "denied", reason=refusal)
            raise ApiError(403, refusal)

    def unauthenticated(self, action: str, target: str, reason: str) -> ApiError:
        self.audit(None, action, target, "unauthenticated", reason=reason)
        return ApiError(401, reason)

    def _rejected(self, who: Principal, action: str, target: str, exc: InvalidDocuments, status: int = 422) -> ApiError:
        self.audit(who, action, target, "rejected", problems=[p.as_dict() for p in exc.problems][:20])
        return ApiError(status, f"{len(exc.problems)} problem(s); nothing was changed", exc.problems)

    # ---- reading state
    def _version(self, number: int) -> VersionRecord | None:
        # versions never change once written: the last few are kept decoded (a label change
        # or a commit reads the running one several times)
        if number <= 0 or number > STORE_INT_MAX:
            return None
        record = self._versions.get(number)
        if record is None:
            record = self.store.get_version(number)
            if record is not None:
                if len(self._versions) >= 4:
                    self._versions.pop(next(iter(self._versions)))
                self._versions[number] = record
        return record

    def effective(self, version: int, identity: int) -> list[Document]:
        """The resources of policy `version` with the Workloads of identity revision `identity`."""
        return self._records(version, identity, verify=True)[0]

    def _records(self, version: int, identity: int, verify: bool) -> tuple[list[Document], str]:
        """Effective documents of (version, identity) and the bundle hash stored when that pair was written.

        With `verify`, a version whose documents no longer match the content hash stored at
        commit is an error: control must not build new versions (and hashes) on a store that
        was corrupted or edited behind its back. Bundles are served unverified, with the
        stored hash: the agents' check is the one that protects the dataplane.
        """
        record = self._version(version)
        if record is None:
            return [], ""
        # a record read from the store is verified once; it is immutable in memory afterwards
        if (
            verify
            and self._verified.get(version) is not record
            and content_hash(record.documents) != record.content_hash
        ):
            log.error("version %d in the store does not match its content hash", version)
            raise ApiError(
                500,
                f"version {version} in the store does not match its content hash (corrupted or "
                "edited outside control); roll back to a good version",
            )
        if verify:
            self._verified = {version: record}
        id_record = self.store.get_identity(identity) if identity > 0 else None
        workloads = id_record.workloads if id_record is not None else []
        stored = id_record.bundle_hash if id_record is not None and id_record.version == version else record.bundle_hash
        return [d for d in record.documents if not is_workload(d)] + workloads, stored

    def bundle(self, version: int, identity: int) -> Bundle:
        """The bundle of (version, identity) with the hash stored at commit: agents verify the documents by it."""
        cached = self._bundles.get((version, identity))
        if cached is None:
            with self._bundle_lock:  # every host's long-poll wakes at once: build it once, not once per host
                cached = self._bundles.get((version, identity))
                if cached is None:
                    documents, stored = self._records(version, identity, verify=False)
                    cached = Bundle(version, identity, stored or bundle_hash(version, identity, documents), documents)
                    cached.encoded_identity  # noqa: B018 - encoded here, under the lock, once; the
                    # full body is encoded by the first host that needs it (under the GIL: at worst twice)
                    self._bundles = {(version, identity): cached}  # only the running one is asked for
        return cached

    def _candidate(self, who: Principal) -> Candidate:
        existing = self.store.get_candidate(who.name)
        if existing is not None:
            return existing
        version, identity = self.store.latest()
        return Candidate(who.name, version, identity, self.effective(version, identity), self.clock())

    def _resolve(self, who: Principal, ref: str) -> tuple[str, list[Document]]:
        if ref == "running":
            version, identity = self.store.latest()
            return f"running (version {version}, identity {identity})", self.effective(version, identity)
        if ref == "candidate":
            return "candidate", self._candidate(who).documents
        if not (ref.isascii() and ref.isdigit()):  # isdigit() alone takes '²', which int() refuses
            raise ApiError(400, f"{ref!r} is not a version: expected a number, running or candidate")
        record = self._version(int(ref))
        if record is None:
            raise ApiError(404, f"version {ref} does not exist")
        return f"version {ref}", record.documents

    def _visible(self, who: Principal, documents: Sequence[Document]) -> list[Document]:
        return [d for d in documents if who.sees(key_of(d)[1])]

    def running(self, who: Principal) -> dict[str, Any]:
        self.require(who, who.may_read_config(), "running.get")
        version, identity = self.store.latest()
        bundle = self.bundle(version, identity)
        return {
            "version": version,
            "identity": identity,
            "hash": bundle.hash,
            "documents": self._visible(who, bundle.documents),
        }

    def candidate(self, who: Principal) -> dict[str, Any]:
        self.require(who, who.may_read_config(), "candidate.get")
        candidate = self._candidate(who)
        base = self.effective(candidate.base_version, candidate.base_identity)
        return {
            "base_version": candidate.base_version,
            "base_identity": candidate.base_identity,
            "documents": self._visible(who, candidate.documents),
            "changes": diff_documents(base, candidate.documents, "base", "candidate", lambda k: who.sees(k[1])),
        }

    def versions(self, who: Principal, limit: int = 50) -> dict[str, Any]:
        self.require(who, who.may_read_config(), "versions.get")
        return {"versions": self.store.versions(limit)}

    def version(self, who: Principal, number: int) -> dict[str, Any]:
        self.require(who, who.may_read_config(), "version.get", str(number))
        record = self._version(number)
        if record is None:
            raise ApiError(404, f"version {number} does not exist")
        return {**record.meta(), "documents": self._visible(who, record.documents)}

    def diff(self, who: Principal, old: str = "running", new: str = "candidate") -> dict[str, Any]:
        self.require(who, who.may_read_config(), "diff", f"{old}..{new}")
        old_name, old_docs = self._resolve(who, old)
        new_name, new_docs = self._resolve(who, new)
        return {
            "from": old_name,
            "to": new_name,
            "changes": diff_documents(old_docs, new_docs, old_name, new_name, lambda k: who.sees(k[1])),
        }

    def audit_log(self, who: Principal, limit: int = 100) -> dict[str, Any]:
        self.require(who, who.may_read_audit(), "audit.get")
        return {"entries": [asdict(e) for e in self.store.audit(limit)]}

    # ---- editing the candidate
    def apply(
        self,
        who: Principal,
        items: Sequence[tuple[Any, str]],
        action: str = "candidate.apply",
        expected: Key | None = None,
    ) -> dict[str, Any]:
        """Create or replace resources in the caller's candidate; all or nothing.

        `items` are (document, where) pairs, `where` naming the document for messages
        ("web.yaml document 2"); `expected` is the resource a URL names, which the
        document must be.
        """
        self.require(who, who.may_read_config(), action)
        parsed: list[tuple[Document, str]] = []
        problems: list[Problem] = []
        for data, where in items:
            try:
                parsed.append((canonical(parse_resource(data, where)), where))
            except InvalidDocuments as exc:
                problems += exc.problems
        if problems:
            raise self._rejected(who, action, f"{len(items)} document(s)", InvalidDocuments(problems))
        if not parsed:
            raise ApiError(400, "no documents given")
        if expected is not None and expected[0] in SITE_KINDS:
            expected = (expected[0], "", expected[2])
        if expected is not None and key_of(parsed[0][0]) != expected:
            got = key_of(parsed[0][0])
            field = "kind" if got[0] != expected[0] else "metadata.vsys" if got[1] != expected[1] else "metadata.name"
            problem = Problem(
                label_of(expected), field, f"the document is {label_of(got)}, the URL names {label_of(expected)}"
            )
            raise self._rejected(who, action, label_of(expected), InvalidDocuments([problem]))
        for document, _ in parsed:
            kind, vsys, _name = key_of(document)
            self.require(who, who.may_edit(kind, vsys), action, label_of(key_of(document)))
        dups = duplicates([d for d, _ in parsed])
        if dups:
            raise self._rejected(who, action, f"{len(items)} document(s)", InvalidDocuments(dups), 400)
        with self._write_lock:
            candidate = self._candidate(who)
            incoming = {key_of(d): d for d, _ in parsed}
            documents = [incoming.pop(key_of(d), d) for d in candidate.documents] + list(incoming.values())
            sources = {key_of(d): where for d, where in parsed}
            return self._save_candidate(who, candidate, documents, action, sources)

    def delete(self, who: Principal, kind: str, vsys: str, name: str) -> dict[str, Any]:
        vsys = "" if kind in SITE_KINDS else vsys  # a site-wide resource has no vsys (URLs say `-`)
        key: Key = (kind, vsys, name)
        self.require(who, who.may_read_config(), "candidate.delete", label_of(key))
        self.require(who, who.may_edit(kind, vsys), "candidate.delete", label_of(key))
        with self._write_lock:
            candidate = self._candidate(who)
            documents = [d for d in candidate.documents if key_of(d) != key]
            if len(documents) == len(candidate.documents):
                raise ApiError(404, f"{label_of(key)} is not in your candidate")
            return self._save_candidate(who, candidate, documents, "candidate.delete", {})

    def _save_candidate(
        self, who: Principal, candidate: Candidate, documents: list[Document], action: str, sources: dict[Key, str]
    ) -> dict[str, Any]:
        before = candidate.documents
        touched = sorted(label_of(k) for k in changed_keys(before, documents))
        try:
            validated = self._compile_checked(documents, candidate.base_version + 1, sources)
        except InvalidDocuments as exc:
            raise self._rejected(who, action, ", ".join(touched) or "candidate", exc) from None
        if touched:
            self.store.put_candidate(
                Candidate(who.name, candidate.base_version, candidate.base_identity, documents, self.clock())
            )
            self.audit(who, action, ", ".join(touched), "ok")
        return {"changed": touched, "warnings": validated.warnings, "base_version": candidate.base_version}

    def _compile_checked(
        self, documents: list[Document], version: int, sources: dict[Key, str] | None = None
    ) -> Validated:
        """compile_documents, and what only control can check: SignatureSets name stored sets, exceptions name
        signatures of those sets (ngfw.control.signature_sets); InvalidDocuments names the resource and field."""
        validated = compile_documents(documents, version, sources)
        problems, warnings = self.signature_sets.check(validated.policy)
        if problems:
            raise InvalidDocuments(problems)
        return Validated(validated.policy, validated.warnings + warnings) if warnings else validated

    # ---- signature sets: stored by content hash, named by SignatureSet resources
    def push_signature_set(self, who: Principal, digest: str, body: bytes) -> tuple[int, dict[str, Any]]:
        self.require(who, who.may_edit("SignatureSet", ""), "signature-set.put", digest)
        try:
            meta, stored = self.signature_sets.push(digest, body, who.name, self.clock())
        except PushRefused as exc:
            self.audit(
                who,
                "signature-set.put",
                digest,
                "rejected",
                reason=exc.message,
                problems=[p.as_dict() for p in exc.problems][:20],
            )
            raise ApiError(exc.status, exc.message, exc.problems) from None
        if stored:
            self.audit(who, "signature-set.put", digest, "ok", rules=meta["rules"], files=len(meta["files"]))
            log.info(
                "signature set %s pushed by %s: %d rules in %d files",
                digest[:12],
                who.name,
                meta["rules"],
                len(meta["files"]),
            )
        return (201 if stored else 200), meta

    def signature_set_archive(self, who: Principal, digest: str) -> bytes:
        self.require(who, None if who.base_role == "dataplane" else who.may_read_config(), "signature-set.get", digest)
        data = self.signature_sets.archive(digest)
        if data is None:
            raise ApiError(404, f"control holds no signature set with sha256 {digest[:80]}")
        return data

    def signature_set_list(self, who: Principal) -> dict[str, Any]:
        self.require(who, who.may_read_config(), "signature-sets.get")
        return {"signature_sets": self.signature_sets.listing()}

    def discard(self, who: Principal) -> dict[str, Any]:
        self.require(who, who.may_read_config(), "candidate.discard")
        self.store.delete_candidate(who.name)
        self.audit(who, "candidate.discard", "candidate", "ok")
        return {"discarded": True}

    def validate(self, who: Principal) -> dict[str, Any]:
        """Dry run of a commit: does the candidate compile, and what does lint say."""
        self.require(who, who.may_read_config(), "candidate.validate")
        candidate = self._candidate(who)
        try:
            validated = self._compile_checked(candidate.documents, candidate.base_version + 1)
        except InvalidDocuments as exc:
            raise ApiError(422, "the candidate does not compile", exc.problems) from None
        return {"ok": True, "warnings": validated.warnings, "rules": len(validated.policy.rules)}

    def rebase(self, who: Principal) -> dict[str, Any]:
        """Move the caller's candidate onto the running version, keeping its changes."""
        self.require(who, who.may_read_config(), "candidate.rebase")
        with self._write_lock:
            candidate = self._candidate(who)
            version, identity = self.store.latest()
            base = self.effective(candidate.base_version, candidate.base_identity)
            merged, conflicts = merge(base, candidate.documents, self.effective(version, identity))
            if conflicts:
                names = ", ".join(label_of(k) for k in conflicts)
                self.audit(who, "candidate.rebase", names, "conflict")
                raise ApiError(
                    409,
                    f"changed both in your candidate and since version {candidate.base_version}: "
                    f"{names}; discard your candidate or change those resources again",
                )
            rebased = Candidate(who.name, version, identity, merged, self.clock())
            result = self._save_candidate(who, rebased, merged, "candidate.rebase", {})
            self.store.put_candidate(rebased)
            return {**result, "base_version": version}

    # ---- commit and rollback
    def _conflict(self, who: Principal, action: str, base: int, running: int) -> ApiError:
        record = self._version(running)
        by = f" by {record.author} ({record.message!r})" if record else ""
        message = (
            f"version {running} was committed{by} after version {base}, which your change is based on; "
            "review it (`ngfw diff`), then `ngfw rebase` and commit again"
        )
        self.audit(who, action, f"version {base + 1}", "conflict", running=running, base=base)
        return ApiError(409, message, running_version=running, base_version=base)

    def commit(self, who: Principal, message: str, base: int | None = None) -> dict[str, Any]:
        self.require(who, who.may_commit(), "commit")
        if not message.strip():
            raise ApiError(400, "a commit needs a message (what changed and why)")
        with self._write_lock:
            candidate = self.store.get_candidate(who.name)
            running, identity = self.store.latest()
            expected = candidate.base_version if candidate is not None else running
            if base is not None and base != expected:
                raise self._conflict(who, "commit", base, running)
            if expected != running:
                raise self._conflict(who, "commit", expected, running)
            assert candidate is None or candidate.base_version == running
            if candidate is None:
                raise ApiError(400, "nothing to commit: your candidate has no changes")
            base_docs = self.effective(candidate.base_version, candidate.base_identity)
            changes = changed_keys(base_docs, candidate.documents)
            if not changes:
                raise ApiError(400, "nothing to commit: your candidate has no changes")
            for key in changes:  # the role may have changed since the edit
                self.require(who, who.may_edit(key[0], key[1]), "commit", label_of(key))
            running_docs = self.effective(running, identity)
            # Workloads may have moved through the identity API since the candidate was made
            documents, conflicts = merge(base_docs, candidate.documents, running_docs)
            if conflicts:
                names = ", ".join(label_of(k) for k in conflicts)
                self.audit(who, "commit", names, "conflict")
                raise ApiError(
                    409,
                    f"changed by an identity update since your candidate was made: {names}; "
                    "`ngfw rebase` and commit again",
                )
            record = self._publish(who, "commit", documents, running, identity, message, None)
            self.store.delete_candidate(who.name)
            self.audit(
                who,
                "commit",
                f"version {record['version']}",
                "ok",
                message=message,
                changes=sorted(label_of(k) for k in changes),
            )
            return record

    def rollback(self, who: Principal, target: int, message: str = "", base: int | None = None) -> dict[str, Any]:
        """A new version whose policy is that of version `target` (Workloads stay where they are now)."""
        self.require(who, who.may_rollback(), "rollback", f"version {target}")
        with self._write_lock:
            running, identity = self.store.latest()
            if base is not None and base != running:
                raise self._conflict(who, "rollback", base, running)
            record = self._version(target)
            if record is None:
                raise ApiError(404, f"version {target} does not exist")
            if content_hash(record.documents) != record.content_hash:
                raise ApiError(409, f"version {target} in the store does not match its content hash; pick another")
            # workloads from the identity record alone: rolling back must work when the running version is bad
            id_record = self.store.get_identity(identity) if identity > 0 else None
            workloads = id_record.workloads if id_record is not None else []
            documents = [d for d in record.documents if not is_workload(d)] + workloads
            result = self._publish(
                who, "rollback", documents, running, identity, message or f"rollback to version {target}", target
            )
            self.audit(who, "rollback", f"version {result['version']}", "ok", rollback_of=target)
            return result

    def _publish(
        self,
        who: Principal,
        action: str,
        documents: list[Document],
        running: int,
        identity: int,
        message: str,
        rollback_of: int | None,
    ) -> dict[str, Any]:
        number = running + 1
        try:
            validated = self._compile_checked(documents, number)
        except InvalidDocuments as exc:
            raise self._rejected(who, action, f"version {number}", exc) from None
        workloads = _workloads(documents)
        current = self.store.get_identity(identity) if identity > 0 else None
        identity_changed = workloads != (current.workloads if current else [])
        new_identity = identity + 1 if identity_changed else identity
        now = self.clock()
        digest = bundle_hash(number, new_identity, [d for d in documents if not is_workload(d)] + workloads)
        version_record = VersionRecord(
            number, documents, who.name, message, now, content_hash(documents), new_identity, rollback_of, digest
        )
        identity_record = (
            IdentityRecord(new_identity, workloads, who.name, now, f"{action} {number}", number, digest)
            if identity_changed
            else None
        )
        try:
            self.store.append(version_record, identity_record)
        except StoreConflict:
            # another controller sharing the store won the race for this number
            raise self._conflict(who, action, running, self.store.latest()[0]) from None
        self._compiled = ((number, new_identity), validated.policy)
        self._notify()
        bundle = self.bundle(number, new_identity)
        log.info("%s: version %d by %s: %s", action, number, who.name, message)
        return {
            "version": number,
            "identity": new_identity,
            "hash": bundle.hash,
            "content_hash": version_record.content_hash,
            "warnings": validated.warnings,
            "rules": len(validated.policy.rules),
        }

    # ---- identity: workload bindings and labels without a policy commit
    def put_workload(self, who: Principal, vsys: str, name: str, data: Any) -> dict[str, Any]:
        target = label_of(("Workload", vsys, name))
        self.require(who, who.may_change_identity(vsys), "identity.put", target)
        try:
            resource = parse_resource(data, "request")
        except InvalidDocuments as exc:
            raise self._rejected(who, "identity.put", target, exc) from None
        document = canonical(resource)
        if key_of(document) != ("Workload", vsys, name):
            field = "kind" if document["kind"] != "Workload" else "metadata"
            problem = Problem(target, field, f"the document is {label_of(key_of(document))}, the URL names {target}")
            raise self._rejected(who, "identity.put", target, InvalidDocuments([problem]))
        return self._change_identity(who, "identity.put", target, ("Workload", vsys, name), document)

    def delete_workload(self, who: Principal, vsys: str, name: str) -> dict[str, Any]:
        target = label_of(("Workload", vsys, name))
        self.require(who, who.may_change_identity(vsys), "identity.delete", target)
        return self._change_identity(who, "identity.delete", target, ("Workload", vsys, name), None)

    def _change_identity(
        self, who: Principal, action: str, target: str, key: Key, document: Document | None
    ) -> dict[str, Any]:
        with self._write_lock:
            for _attempt in range(5):  # another controller may take the revision first: try the next one
                running, identity = self.store.latest()
                if running == 0:
                    raise ApiError(409, "nothing is committed yet: commit the VirtualSystem first")
                current = self.effective(running, identity)
                workloads = {key_of(d): d for d in _workloads(current)}
                if document is None:
                    if key not in workloads:
                        raise ApiError(404, f"{target} does not exist")
                    del workloads[key]
                else:
                    workloads[key] = document
                policy_part = [d for d in current if not is_workload(d)]
                new_workloads = sorted(workloads.values(), key=key_of)
                documents = policy_part + new_workloads
                try:
                    policy = self._check_identity(running, identity, current, documents, key)
                except InvalidDocuments as exc:
                    raise self._rejected(who, action, target, exc) from None
                if new_workloads == _workloads(current):
                    return {"version": running, "identity": identity, "changed": False}
                digest = bundle_hash_of_parts(
                    running, identity + 1, self._policy_hash(running, policy_part), part_hash(new_workloads)
                )
                record = IdentityRecord(identity + 1, new_workloads, who.name, self.clock(), action, running, digest)
                try:
                    self.store.append(None, record)
                except StoreConflict:
                    continue
                self._compiled = ((running, identity + 1), policy)
                self._notify()
                self.audit(who, action, target, "ok", identity=identity + 1)
                return {
                    "version": running,
                    "identity": identity + 1,
                    "changed": True,
                    "hash": self.bundle(running, identity + 1).hash,
                }
        raise ApiError(409, "identity kept changing under this update; try again")

    def _policy_hash(self, version: int, policy_part: list[Document]) -> str:
        """The hash of version `version`'s policy part (its non-Workload documents), computed once per version."""
        cached = self._policy_hashes
        if cached is None or cached[0] != version:
            cached = self._policy_hashes = (version, part_hash(policy_part))
        return cached[1]

    def _check_identity(
        self, running: int, identity: int, current: list[Document], documents: list[Document], key: Key
    ) -> CompiledPolicy:
        """`documents` (the running ones with one Workload changed) checked as a commit would check them;
        InvalidDocuments names the problem. The rules are not compiled again: the workloads are
        checked against the running compiled policy (`validate_identity`), unless a rule or group
        would lose a workload it names, where the full compile names the rule."""
        sources = {key: "request"}
        cached = self._compiled
        if cached is None or cached[0] != (running, identity):
            try:
                cached = ((running, identity), compile_documents(current, running, lint_it=False).policy)
            except InvalidDocuments:
                cached = None  # the running documents do not compile alone (a store from an older build?)
            self._compiled = cached
        if cached is not None:
            try:
                return validate_identity(cached[1], documents, sources)
            except PolicyError:
                pass  # a rule or group would lose a workload it names: the full compile names it
        return compile_documents(documents, running, sources, lint_it=False).policy

    def identity(self, who: Principal) -> dict[str, Any]:
        self.require(who, who.may_read_config(), "identity.get")
        running, identity = self.store.latest()
        return {
            "version": running,
            "identity": identity,
            "workloads": self._visible(who, _workloads(self.effective(running, identity))),
        }

    # ---- agents: bundles and acknowledgements
    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()
        for listener in list(self._listeners):
            listener()

    def subscribe(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call `listener` (in the changing thread; it must not block) after every change a long-poll
        may be waiting for; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def change_marker(self) -> Hashable:
        """What long-polls wait on, as the store has it: when it differs from the last one read,
        something changed, possibly through another controller sharing the store. A long-poll
        on anything else kept in the store adds that to the marker."""
        return self.store.latest()

    def wait_bundle(self, who: Principal, host: str, known: str | None, wait: float) -> Bundle | None:
        """The running bundle once its hash differs from `known`; None if nothing changed within `wait` s."""
        self.require(who, who.may_fetch_bundle(host), "bundle.get", host)
        deadline = time.monotonic() + max(0.0, min(wait, 60.0))
        while True:
            version, identity = self.store.latest()
            if version > 0:
                bundle = self.bundle(version, identity)
                if bundle.hash != known:
                    return bundle
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self._changed:
                self._changed.wait(min(remaining, STORE_POLL_SECONDS))

    def ack(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        host = body.get("host")
        if not isinstance(host, str) or not host:
            raise ApiError(400, "an acknowledgement names its host", [Problem("ack", "host", "required")])
        self.require(who, who.may_ack(host), "ack", host)
        status = body.get("status", "applied")
        if status not in ("applied", "refused", "failed"):
            raise ApiError(400, "status must be applied, refused or failed", [Problem("ack", "status", repr(status))])
        try:
            version, identity = int(body.get("version", 0)), int(body.get("identity", 0))
        except (TypeError, ValueError):
            raise ApiError(400, "version and identity must be integers") from None
        digest, detail = str(body.get("hash", "")), str(body.get("detail", ""))[:2000]
        signatures = _signatures(body.get("signatures"))
        previous = next((a for a in self.store.acks() if a.host == host), None)
        if status == "applied":
            ack = HostAck(host, version, identity, digest, status, "", self.clock(), signatures=signatures)
            if previous is not None and previous.status != "applied" and previous.problem_version >= version:
                # still running an older bundle: the refusal of the newer one stays visible
                ack.status, ack.detail, ack.problem_version = previous.status, previous.detail, previous.problem_version
        else:
            # the host keeps running what it ran; the refused bundle is the problem to show
            running = previous if previous is not None else HostAck(host, 0, 0, "", "applied", "", 0.0)
            ack = HostAck(
                host,
                running.version,
                running.identity,
                running.hash,
                status,
                f"version {version}: {detail}",
                self.clock(),
                version,
                signatures or dict(running.signatures),
            )
        self.store.put_ack(ack)
        if status != "applied":
            # a host that refuses or fails a bundle keeps its old policy: operators must hear of it
            self.audit(who, f"agent.{status}", host, status, version=version, hash=digest, detail=detail)
            log.warning("host %s %s version %d: %s", host, status, version, detail)
        return {"ok": True}

    # ---- live migration (ngfw.control.migrations): control brokers, the two hosts' agents move the sessions
    def _running_workloads(self) -> list[Document]:
        version, identity = self.store.latest()
        return _workloads(self.effective(version, identity)) if version > 0 else []

    def _find_workload(self, name: str, vsys: str | None) -> Document | None:
        found = [
            d
            for d in self._running_workloads()
            if d["metadata"]["name"] == name and (vsys is None or d["metadata"].get("vsys") == vsys)
        ]
        if len(found) > 1:
            raise ApiError(
                400,
                f"workload {name!r} exists in vsys {', '.join(d['metadata']['vsys'] for d in found)}: name its vsys",
                [Problem("migration", "vsys", "required")],
            )
        return found[0] if found else None

    def _spec_host(self, vsys: str, name: str) -> str | None:
        doc = self._find_workload(name, vsys)
        host = (doc or {}).get("spec", {}).get("host") if doc else None
        return str(host) if host else None

    def _known_hosts(self) -> set[str]:
        hosts = {a.host for a in self.store.acks()} | self.migrations.known_hosts()
        hosts |= {str(d["spec"]["host"]) for d in self._running_workloads() if d.get("spec", {}).get("host")}
        return hosts

    def migrate(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """An announced move: the workload's sessions go to `to` ahead of the guest, then as a delta."""
        name, to, vsys = body.get("workload"), body.get("to"), body.get("vsys")
        if not isinstance(name, str) or not name:
            raise ApiError(400, "a migration names its workload", [Problem("migration", "workload", "required")])
        if not isinstance(to, str) or not to:
            raise ApiError(400, "a migration names the host it goes to", [Problem("migration", "to", "required")])
        if vsys is not None and not isinstance(vsys, str):
            raise ApiError(400, "vsys must be a string", [Problem("migration", "vsys", repr(vsys))])
        target = f"{vsys + '/' if vsys else ''}{name} -> {to}"
        try:
            doc = self._find_workload(name, vsys)
        except ApiError as exc:
            self.audit(who, "migration.request", target, "rejected", reason=exc.message)
            raise
        if doc is None:
            self.audit(who, "migration.request", target, "rejected", reason="unknown workload")
            raise ApiError(404, f"workload {target.split(' -> ')[0]} does not exist in the running identity")
        vsys = doc["metadata"]["vsys"]
        target = f"{vsys}/{name} -> {to}"
        self.require(who, who.may_change_identity(vsys), "migration.request", target)
        if to not in self._known_hosts():
            self.audit(who, "migration.request", target, "rejected", reason="unknown host")
            raise ApiError(
                404,
                f"host {to!r} is unknown to control (no dataplane of that name has connected, and no "
                "Workload names it)",
            )
        try:
            m = self.migrations.request(who, vsys, name, self._spec_host(vsys, name), to)
        except MigrationError as exc:
            self.audit(
                who,
                "migration.request",
                target,
                "failed" if exc.migration else "rejected",
                reason=exc.message,
                migration=exc.migration.id if exc.migration else None,
            )
            extra: dict[str, Any] = {"migration": exc.migration.as_dict()} if exc.migration else {}
            raise ApiError(exc.status, exc.message, **extra) from None
        self.audit(who, "migration.request", target, "ok", migration=m.id, source=m.source)
        log.info("migration %s: %s/%s from %s to %s requested by %s", m.id, vsys, name, m.source, to, who.name)
        return {"migration": m.as_dict()}

    def migration_list(self, who: Principal) -> dict[str, Any]:
        self.require(who, who.may_read_config(), "migrations.get")
        return {"migrations": self.migrations.list(who.sees)}

    def _agent_host(self, who: Principal, body: dict[str, Any], action: str) -> str:
        host = body.get("host") or who.host
        if not isinstance(host, str) or not host:
            raise ApiError(400, "the request names its host", [Problem(action, "host", "required")])
        self.require(who, who.may_ack(host), action, host)
        return host

    def wait_tasks(self, who: Principal, host: str, wait: float) -> dict[str, Any] | None:
        """A dataplane agent's long-poll for migration work (exports, cut-overs, imports)."""
        if not host:
            raise ApiError(400, "host is required")
        self.require(who, who.may_ack(host), "tasks.get", host)
        tasks = self.migrations.wait_tasks(host, wait)
        return {"tasks": tasks} if tasks else None

    def migration_sessions(self, who: Principal, migration_id: str, body: dict[str, Any]) -> dict[str, Any]:
        host = self._agent_host(who, body, "migration.sessions")
        batch, phase, count = body.get("batch"), body.get("phase"), body.get("count", 0)
        if not isinstance(batch, str) or not isinstance(phase, str) or not isinstance(count, int):
            raise ApiError(400, "sessions are {host, phase, batch (base64), count}")
        try:
            m = self.migrations.sessions_sent(host, migration_id, phase, batch, count)
        except MigrationError as exc:
            raise ApiError(exc.status, exc.message) from None
        return {"migration": m.id, "state": m.state}

    def migration_result(self, who: Principal, migration_id: str, body: dict[str, Any]) -> dict[str, Any]:
        host = self._agent_host(who, body, "migration.result")
        phase, results = body.get("phase"), body.get("results")
        if (
            not isinstance(phase, str)
            or not isinstance(results, dict)
            or not all(isinstance(k, str) and isinstance(v, int) for k, v in results.items())
        ):
            raise ApiError(400, "a result is {host, phase, results: {name: count}}")
        try:
            m = self.migrations.result(host, migration_id, phase, results, str(body.get("detail", ""))[:500])
        except MigrationError as exc:
            raise ApiError(exc.status, exc.message) from None
        if m.state == "done":
            moved, lost = m.sessions()
            self.audit(
                who,
                "migration.done",
                f"{m.vsys}/{m.workload} {m.source} -> {m.destination}",
                "ok",
                migration=m.id,
                mode=m.mode,
                moved=moved,
                lost=lost,
                transfer_seconds=m.transfer_seconds,
            )
            log.info(
                "migration %s done: %s/%s %s -> %s, %d sessions moved, %d lost, transfer %.3f s",
                m.id,
                m.vsys,
                m.workload,
                m.source,
                m.destination,
                moved,
                lost,
                m.transfer_seconds or 0.0,
            )
        return {"migration": m.id, "state": m.state}

    def arrivals(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """A host saw workloads' first frames on its VM side: moves they finish (or start, unannounced)."""
        host = self._agent_host(who, body, "arrivals")
        items = body.get("workloads")
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("vsys"), str) for i in items
        ):
            raise ApiError(400, "arrivals are {host, workloads: [{vsys, name}]}")
        moved = self.migrations.arrivals(host, [(i["vsys"], i["name"]) for i in items[:1000]], self._spec_host)
        for m in moved:
            if m.mode == "unannounced" and m.state in ("cutover", "failed"):
                self.audit(
                    who,
                    "migration.detected",
                    f"{m.vsys}/{m.workload} {m.source} -> {m.destination}",
                    "ok" if m.state == "cutover" else "failed",
                    migration=m.id,
                    detail=m.detail,
                )
        return {"migrations": [m.id for m in moved]}

    def status(self, who: Principal) -> dict[str, Any]:
        self.require(who, who.may_read_config() if who.base_role != "dataplane" else None, "status.get")
        version, identity = self.store.latest()
        current = self.bundle(version, identity).hash if version > 0 else ""
        hosts = []
        for ack in self.store.acks():
            entry = asdict(ack)
            entry["current"] = ack.hash == current
            hosts.append(entry)
        realized = sum(1 for h in hosts if h["current"])
        visible = who.sees if who.base_role != "dataplane" else (lambda vsys: True)
        migrations = self.migrations.list(visible)
        directories = self.directories.status() if self.directories is not None else []
        return {
            "version": version,
            "identity": identity,
            "hash": current,
            "hosts": hosts,
            "realized": realized,
            "directories": directories,
            "user_mappings": len(self.users.mappings),
            "total": len(hosts),
            "summary": f"version {version} on {realized} of {len(hosts)} hosts",
            "migrations_active": [m for m in migrations if m["state"] in ("staging", "precopied", "cutover")],
            "migrations_recent": [m for m in migrations if m["state"] not in ("staging", "precopied", "cutover")][:10],
        }

    # ---- User-ID: mappings of addresses to users (ngfw.control.userid)
    def _addresses(self) -> tuple[dict[str, str], list[tuple[int, int, int]], dict[str, list[str]]]:
        """Of the running configuration: address -> its workload (vsys/name), the prefixes of no workload that
        mappings may name (UserSources' unboundAddresses, as (version, network, mask) integers), and each
        workload's addresses."""
        import ipaddress

        key = self.store.latest()
        if self._address_book is None or self._address_book[0] != key:
            owner: dict[str, str] = {}
            by_vm: dict[str, list[str]] = {}
            unbound: list[tuple[int, int, int]] = []
            documents = self.effective(*key) if key[0] > 0 else []
            for d in documents:
                if d.get("kind") == "Workload":
                    vm = f"{d['metadata']['vsys']}/{d['metadata']['name']}"
                    for iface in d["spec"]["interfaces"]:
                        for ip in iface.get("ips", []):
                            owner[str(ipaddress.ip_address(ip))] = vm
                            by_vm.setdefault(vm, []).append(str(ipaddress.ip_address(ip)))
                elif d.get("kind") == "UserSource":
                    for text in d["spec"].get("unboundAddresses") or []:
                        net = ipaddress.ip_network(text)
                        unbound.append((net.version, int(net.network_address), int(net.netmask)))
            self._address_book = (key, owner, unbound, by_vm)
        return self._address_book[1], self._address_book[2], self._address_book[3]

    def resolve_address(
        self, address: Any, book: tuple[dict[str, str], list[tuple[int, int, int]], Any]
    ) -> tuple[str, str | None]:
        """(canonical address, its workload or None) of a mapping's address; ApiError (counted) for an address
        of no workload that no UserSource's unboundAddresses include."""
        from ngfw.control.userid import canonical_address

        owner, unbound = book[0], book[1]
        try:
            canonical, version, value = canonical_address(address)
        except ValueError:
            raise ApiError(
                400, f"address {address!r} is not an IP address", [Problem("mapping", "address", "not an IP address")]
            ) from None
        if canonical in owner:
            return canonical, owner[canonical]
        if any(v == version and value & mask == net for v, net, mask in unbound):
            self.users.counters["unbound_accepted"] += 1
            return canonical, None
        self.users.counters["unbound_refused"] += 1
        raise ApiError(
            422,
            f"address {canonical} is no workload's, and no UserSource's unboundAddresses include "
            "it: mappings of unbound addresses are off unless a UserSource allows them",
            [Problem("mapping", "address", "not a workload's address")],
        )

    def _mapping_targets(self, body: dict[str, Any]) -> list[tuple[str, str | None]]:
        """The addresses a mapping request names ({address} or {vm: NAME | VSYS/NAME}), each with its workload."""
        book = self._addresses()
        by_vm = book[2]
        address, vm = body.get("address"), body.get("vm")
        if (address is None) == (vm is None):
            raise ApiError(400, "a user mapping names an address or a vm", [Problem("mapping", "address", "required")])
        if vm is not None:
            if not isinstance(vm, str) or not vm:
                raise ApiError(400, f"vm {vm!r} is not a workload name")
            vsys, _, name = vm.rpartition("/")
            found = [v for v in by_vm if v.rpartition("/")[2] == name and (not vsys or v.partition("/")[0] == vsys)]
            if not found:
                raise ApiError(404, f"vm {vm!r}: no running workload of that name (with an address)")
            if len(found) > 1:
                raise ApiError(
                    400, f"vm {vm!r}: workloads of that name in several vsys ({', '.join(found)}); write vm VSYS/NAME"
                )
            return [(ip, found[0]) for ip in by_vm[found[0]]]
        return [self.resolve_address(address, book)]

    def map_user(self, who: Principal, body: dict[str, Any], source: str = "api") -> dict[str, Any]:
        target = body.get("address") or body.get("vm") or ""
        self.require(who, who.may_map_users(), "users.map", str(target))
        user, ttl = body.get("user"), body.get("ttl")
        if not isinstance(user, str) or not user:
            raise ApiError(400, "a user mapping names its user", [Problem("mapping", "user", "required")])
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            raise ApiError(400, f"ttl {ttl!r} must be a number of seconds", [Problem("mapping", "ttl", "not a number")])
        from ngfw.control.userid import MappingError

        mapped = []
        try:
            for address, vm in self._mapping_targets(body):
                mapped.append(self.users.put(address, user, ttl, source, vm, who.name).as_dict())
        except MappingError as exc:
            raise ApiError(exc.status, exc.message) from None
        self.audit(who, "users.map", str(target), "ok", user=user, ttl=ttl)
        return {"mapped": mapped, "revision": self.users.revision}

    def unmap_user(self, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
        target = body.get("address") or body.get("vm") or ""
        self.require(who, who.may_map_users(), "users.unmap", str(target))
        from ngfw.control.userid import MappingError

        try:
            if body.get("vm") is not None:
                addresses = [a for a, _ in self._mapping_targets(body)]
            else:
                addresses = [str(body.get("address"))]
            ended = [m.as_dict() for a in addresses if (m := self.users.delete(a)) is not None]
        except MappingError as exc:
            raise ApiError(exc.status, exc.message) from None
        self.audit(who, "users.unmap", str(target), "ok", ended=len(ended))
        return {"unmapped": ended, "revision": self.users.revision}

    def user_list(self, who: Principal) -> dict[str, Any]:
        self.require(who, who.may_read_config() and who.may_map_users(), "users.list")
        counters = dict(self.users.counters)
        if self.syslog is not None:
            counters.update({f"syslog_{k}": v for k, v in self.syslog.counters.items()})
        directories = self.directories.status() if self.directories is not None else []
        return {
            "revision": self.users.revision,
            "mappings": self.users.listing(),
            "counters": counters,
            "directories": directories,
            "groups": {u: list(g) for u, g in self.users.groups.items()},
        }

    def user_changes(
        self, who: Principal, host: str, since: int | None, wait: float, epoch: str | None = None
    ) -> dict[str, Any] | None:
        """A host agent's long-poll: the user mappings changed after revision `since` of `epoch` (None, or
        another control process's epoch: a snapshot)."""
        self.require(who, who.may_fetch_bundle(host), "users.changes", host)
        return self.users.wait_changes(since, wait, epoch)
