"""What control keeps, and the one interface both stores (SQLite, etcd) implement.

Versions and identity revisions are append-only and numbered; a new one is written only
if its number is still free, atomically with its companion (a commit that changes
Workloads writes version N and identity revision R together). That "create if absent" is
the whole concurrency story: two controllers (or two admins) racing for version N+1 cannot
both win, and the loser is told so (`StoreConflict`).
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ngfw.control.documents import Document


class StoreError(Exception):
    """The store cannot be opened or reached."""


class StoreConflict(Exception):
    """A version or identity revision of that number already exists: someone else committed first."""


@dataclass
class VersionRecord:
    number: int
    documents: list[Document]  # every resource as committed, Workloads included
    author: str
    message: str
    created: float  # seconds since the epoch
    content_hash: str  # sha256 of the canonical documents
    identity: int  # identity revision in force when this version was committed
    rollback_of: int | None = None
    # sha256 of the bundle (this version, that identity revision), computed when it was written:
    # agents check the documents they receive against it, so corruption on the way (store
    # included) is refused rather than enforced
    bundle_hash: str = ""

    def meta(self) -> dict[str, Any]:
        out = asdict(self)
        del out["documents"]
        return out


@dataclass
class IdentityRecord:
    """Every Workload (bindings and labels) at one identity revision."""

    revision: int
    workloads: list[Document]
    author: str
    created: float
    reason: str  # "commit N" or "identity update"
    version: int = 0  # the policy version this revision was written against
    bundle_hash: str = ""  # of the bundle (version, this revision) when it was written


@dataclass
class Candidate:
    """One principal's edits in progress: the running configuration they started from, changed."""

    owner: str
    base_version: int
    base_identity: int
    documents: list[Document]
    updated: float


@dataclass
class HostAck:
    """What a host runs (version, identity, hash) and the last bundle it could not run, if any."""

    host: str
    version: int
    identity: int
    hash: str
    status: str  # "applied", "refused" (hash did not verify) or "failed" (did not compile/apply)
    detail: str
    time: float
    problem_version: int = 0  # the version refused or failed (status is not "applied")
    signatures: dict[str, str] = field(default_factory=dict)  # signature set name -> sha256 of what it runs


@dataclass
class AuditEntry:
    time: float
    who: str
    role: str
    action: str  # "candidate.put", "commit", "identity.put", "rollback", ...
    target: str
    outcome: str  # "ok", "denied", "rejected", "conflict", "unauthenticated"
    detail: dict[str, Any] = field(default_factory=dict)


class Store(abc.ABC):
    """Persistent state of control; every method is safe to call from several threads."""

    @abc.abstractmethod
    def latest(self) -> tuple[int, int]:
        """(latest version, latest identity revision); 0 when there is none yet."""

    @abc.abstractmethod
    def get_version(self, number: int) -> VersionRecord | None: ...

    @abc.abstractmethod
    def versions(self, limit: int) -> list[dict[str, Any]]:
        """Metadata (no documents) of the newest `limit` versions, newest first."""

    @abc.abstractmethod
    def get_identity(self, revision: int) -> IdentityRecord | None: ...

    @abc.abstractmethod
    def append(self, version: VersionRecord | None, identity: IdentityRecord | None) -> None:
        """Write both or neither; StoreConflict when either number is taken."""

    @abc.abstractmethod
    def get_candidate(self, owner: str) -> Candidate | None: ...

    @abc.abstractmethod
    def put_candidate(self, candidate: Candidate) -> None: ...

    @abc.abstractmethod
    def delete_candidate(self, owner: str) -> None: ...

    @abc.abstractmethod
    def put_ack(self, ack: HostAck) -> None: ...

    @abc.abstractmethod
    def acks(self) -> list[HostAck]: ...

    @abc.abstractmethod
    def add_audit(self, entry: AuditEntry) -> None: ...

    @abc.abstractmethod
    def audit(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""

    # Signature sets (`ngfw rules push`): gzip-compressed archives by the sha256 of the archive, written
    # once and never changed; `meta` says what is in them (files, rules, sids) for checks and listings.
    @abc.abstractmethod
    def put_signature_set(self, digest: str, data: bytes, meta: dict[str, Any]) -> bool:
        """Store it unless it is there (True: stored now, False: it was there)."""

    @abc.abstractmethod
    def get_signature_set(self, digest: str) -> bytes | None: ...

    @abc.abstractmethod
    def signature_set_meta(self, digest: str) -> dict[str, Any] | None: ...

    @abc.abstractmethod
    def signature_sets(self) -> list[dict[str, Any]]:
        """The metadata of every stored set, newest first."""

    # User-ID mappings (ngfw.control.userid): address -> {address, user, source, expires, vm, by}, written in
    # batches (a syslog burst is one write), never a version; and the last good directory groups of each
    # UserSource, so that a restarted control enforces them before its first directory refresh.
    @abc.abstractmethod
    def write_user_mappings(self, puts: list[dict[str, Any]], deletes: list[str]) -> None:
        """Store `puts` (each by its `address`) and forget `deletes`, all in one write."""

    @abc.abstractmethod
    def user_mappings(self) -> list[dict[str, Any]]:
        """Every stored user mapping, expired ones included (the caller drops those)."""

    @abc.abstractmethod
    def put_directory_groups(self, source: str, state: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def directory_groups(self) -> dict[str, dict[str, Any]]:
        """The last good groups stored per UserSource: {source: state}."""

    def close(self) -> None:  # noqa: B027 - optional: a store that holds nothing open has nothing to close
        pass


def open_store(url: str) -> Store:
    """`sqlite:///PATH` (PATH absolute; `sqlite:///./rel` for relative) or `etcd://HOST:PORT[/PREFIX]`."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        from ngfw.control.store_sqlite import SqliteStore

        path = parts.path[1:] if parts.path.startswith("/./") else parts.path
        if not path:
            raise StoreError(f"{url}: expected sqlite:///PATH")
        return SqliteStore(path)
    if parts.scheme == "etcd":
        from ngfw.control.store_etcd import EtcdStore

        if not parts.hostname:
            raise StoreError(f"{url}: expected etcd://HOST:PORT")
        return EtcdStore(parts.hostname, parts.port or 2379, parts.path.strip("/") or "ngfw")
    raise StoreError(f"{url}: unknown store (expected sqlite:///PATH or etcd://HOST:PORT)")
