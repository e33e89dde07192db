"""The embedded store: one SQLite file (WAL), the default for a single controller."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ngfw.control.store import (
    AuditEntry,
    Candidate,
    HostAck,
    IdentityRecord,
    Store,
    StoreConflict,
    StoreError,
    VersionRecord,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    number INTEGER PRIMARY KEY, documents TEXT NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL,
    created REAL NOT NULL, content_hash TEXT NOT NULL, identity INTEGER NOT NULL, rollback_of INTEGER,
    bundle_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS identities (
    revision INTEGER PRIMARY KEY, workloads TEXT NOT NULL, author TEXT NOT NULL, created REAL NOT NULL,
    reason TEXT NOT NULL, version INTEGER NOT NULL, bundle_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (owner TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (host TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS signature_sets (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL, meta TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS user_mappings (
    address TEXT PRIMARY KEY, user TEXT NOT NULL, source TEXT NOT NULL, expires REAL, vm TEXT, by TEXT NOT NULL
    ) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS directory_groups (source TEXT PRIMARY KEY, body TEXT NOT NULL);
"""


class SqliteStore(Store):
    def __init__(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # one connection behind a lock: control's writes are small and rare, and
            # "create if absent" must not interleave within this process either
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            # acks, audit and candidates: NORMAL (in WAL mode durable across a crash of control, the
            # last ones may be lost on a power cut); versions and identities switch to FULL, below
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"sqlite store {path}: {exc}") from None
        self._lock = threading.Lock()
        self.path = path

    def _one(self, sql: str, *params: Any) -> Any:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def _all(self, sql: str, *params: Any) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def latest(self) -> tuple[int, int]:
        with self._lock:
            version = self._db.execute("SELECT max(number) FROM versions").fetchone()[0]
            identity = self._db.execute("SELECT max(revision) FROM identities").fetchone()[0]
        return (version or 0, identity or 0)

    def get_version(self, number: int) -> VersionRecord | None:
        row = self._one(
            "SELECT number, documents, author, message, created, content_hash, identity, rollback_of, "
            "bundle_hash FROM versions WHERE number = ?",
            number,
        )
        if row is None:
            return None
        return VersionRecord(row[0], json.loads(row[1]), *row[2:])

    def versions(self, limit: int) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT number, author, message, created, content_hash, identity, rollback_of, bundle_hash "
            "FROM versions ORDER BY number DESC LIMIT ?",
            limit,
        )
        names = ("number", "author", "message", "created", "content_hash", "identity", "rollback_of", "bundle_hash")
        return [dict(zip(names, row)) for row in rows]

    def get_identity(self, revision: int) -> IdentityRecord | None:
        row = self._one(
            "SELECT revision, workloads, author, created, reason, version, bundle_hash FROM identities "
            "WHERE revision = ?",
            revision,
        )
        if row is None:
            return None
        return IdentityRecord(row[0], json.loads(row[1]), *row[2:])

    def append(self, version: VersionRecord | None, identity: IdentityRecord | None) -> None:
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")  # a committed version survives a power cut
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if version is not None:
                    self._db.execute(
                        "INSERT INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            version.number,
                            json.dumps(version.documents),
                            version.author,
                            version.message,
                            version.created,
                            version.content_hash,
                            version.identity,
                            version.rollback_of,
                            version.bundle_hash,
                        ),
                    )
                if identity is not None:
                    self._db.execute(
                        "INSERT INTO identities VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            identity.revision,
                            json.dumps(identity.workloads),
                            identity.author,
                            identity.created,
                            identity.reason,
                            identity.version,
                            identity.bundle_hash,
                        ),
                    )
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._db.execute("ROLLBACK")
                raise StoreConflict("that version or identity revision was written by another commit") from None
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def get_candidate(self, owner: str) -> Candidate | None:
        row = self._one("SELECT body FROM candidates WHERE owner = ?", owner)
        return Candidate(**json.loads(row[0])) if row else None

    def put_candidate(self, candidate: Candidate) -> None:
        body = json.dumps(candidate.__dict__)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO candidates VALUES (?, ?)", (candidate.owner, body))

    def delete_candidate(self, owner: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM candidates WHERE owner = ?", (owner,))

    def put_ack(self, ack: HostAck) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO hosts VALUES (?, ?)", (ack.host, json.dumps(ack.__dict__)))

    def acks(self) -> list[HostAck]:
        return [HostAck(**json.loads(row[0])) for row in self._all("SELECT body FROM hosts ORDER BY host")]

    def add_audit(self, entry: AuditEntry) -> None:
        with self._lock:
            self._db.execute("INSERT INTO audit (body) VALUES (?)", (json.dumps(entry.__dict__),))

    def audit(self, limit: int) -> list[AuditEntry]:
        rows = self._all("SELECT body FROM audit ORDER BY id DESC LIMIT ?", limit)
        return [AuditEntry(**json.loads(row[0])) for row in rows]

    def put_signature_set(self, digest: str, data: bytes, meta: dict[str, Any]) -> bool:
        with self._lock:
            self._db.execute("PRAGMA synchronous=FULL")  # a version may name it: it must survive a power cut
            try:
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO signature_sets VALUES (?, ?, ?)", (digest, data, json.dumps(meta))
                )
                return cursor.rowcount == 1
            finally:
                self._db.execute("PRAGMA synchronous=NORMAL")

    def get_signature_set(self, digest: str) -> bytes | None:
        row = self._one("SELECT data FROM signature_sets WHERE sha256 = ?", digest)
        return bytes(row[0]) if row else None

    def signature_set_meta(self, digest: str) -> dict[str, Any] | None:
        row = self._one("SELECT meta FROM signature_sets WHERE sha256 = ?", digest)
        return json.loads(row[0]) if row else None

    def signature_sets(self) -> list[dict[str, Any]]:
        metas = [json.loads(row[0]) for row in self._all("SELECT meta FROM signature_sets")]
        return sorted(metas, key=lambda m: m.get("created", 0), reverse=True)

    def write_user_mappings(self, puts: list[dict[str, Any]], deletes: list[str]) -> None:
        # synchronous=NORMAL (as acks): one transaction per batch, durable across a crash of control
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if deletes:
                    self._db.executemany("DELETE FROM user_mappings WHERE address = ?", [(a,) for a in deletes])
                if puts:  # columns, not JSON: a syslog burst writes thousands of rows
                    self._db.executemany(
                        "INSERT OR REPLACE INTO user_mappings VALUES (?, ?, ?, ?, ?, ?)",
                        [(m["address"], m["user"], m["source"], m["expires"], m["vm"], m["by"]) for m in puts],
                    )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def user_mappings(self) -> list[dict[str, Any]]:
        names = ("address", "user", "source", "expires", "vm", "by")
        return [
            dict(zip(names, row))
            for row in self._all("SELECT address, user, source, expires, vm, by FROM user_mappings")
        ]

    def put_directory_groups(self, source: str, state: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO directory_groups VALUES (?, ?)", (source, json.dumps(state)))

    def directory_groups(self) -> dict[str, dict[str, Any]]:
        return {row[0]: json.loads(row[1]) for row in self._all("SELECT source, body FROM directory_groups")}

    def close(self) -> None:
        with self._lock:
            self._db.close()
