"""The shared store: etcd v3 through its JSON gateway (etcd3gw), for several controllers.

Layout under the prefix (default `ngfw`):
    PREFIX/version-meta/0000000012   small JSON: author, message, hashes (history without documents)
    PREFIX/version-docs/0000000012   the documents, zlib-compressed JSON
    PREFIX/identity/0000000005       every Workload at that revision, zlib-compressed JSON
    PREFIX/candidates/OWNER, PREFIX/hosts/HOST, PREFIX/audit/TIME_NS-RANDOM
    PREFIX/sigsets/SHA256/meta, PREFIX/sigsets/SHA256/data/0000  a signature set's archive (gzip), in
                                     chunks under etcd's request limit; meta is written last
    PREFIX/users/ADDRESS             a User-ID mapping (JSON), written in transactions of up to 128 operations
    PREFIX/directory-groups/SOURCE   the last good groups a UserSource's directory gave (JSON)
Numbers are zero-padded so that key order is numeric order, and the newest is one
sorted, limited range read. etcd refuses requests over 1.5 MiB by default; compressed,
a 10,000-rule policy is far below that (a bigger one is refused with that reason).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import zlib
from typing import Any

from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import Etcd3Exception

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

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops
MAX_VALUE_BYTES = 1_400_000  # under etcd's default --max-request-bytes (1.5 MiB) with room for the request


def _b64(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _pack(value: Any) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode("utf-8"), 6)


def _unpack(data: bytes) -> Any:
    return json.loads(zlib.decompress(data))


def _range_end(prefix: str) -> str:
    # every key starting with `prefix` sorts below prefix-with-its-last-byte-incremented
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EtcdStore(Store):
    def __init__(self, host: str, port: int, prefix: str = "ngfw", timeout: float = 5.0) -> None:
        self.client = Etcd3Client(host=host, port=port, timeout=timeout, api_path="/v3/")
        self.prefix = prefix.strip("/")
        self._lock = threading.Lock()  # requests.Session is not documented thread-safe
        try:
            self.client.status()
        except Etcd3Exception as exc:
            raise StoreError(f"etcd at {host}:{port} is not reachable: {exc}") from None

    def _key(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    def _get(self, key: str) -> bytes | None:
        with self._lock:
            try:
                values = self.client.get(key)
            except Etcd3Exception as exc:
                raise StoreError(f"etcd: {exc}") from None
        return values[0] if values else None

    def _range(self, prefix: str, descending: bool, limit: int | None, keys_only: bool = False) -> list[Any]:
        with self._lock:
            try:
                return self.client.get(
                    prefix,
                    metadata=True,
                    range_end=_range_end(prefix),
                    sort_order="descend" if descending else "ascend",
                    sort_target="key",
                    limit=limit,
                    keys_only=keys_only or None,
                )
            except Etcd3Exception as exc:
                raise StoreError(f"etcd: {exc}") from None

    def _put(self, key: str, value: bytes | str) -> None:
        with self._lock:
            try:
                self.client.put(key, value)
            except Etcd3Exception as exc:
                raise StoreError(f"etcd: {exc}") from None

    def _newest_number(self, section: str) -> int:
        rows = self._range(self._key(section) + "/", descending=True, limit=1, keys_only=True)
        if not rows:
            return 0
        key = rows[0][1]["key"].decode()
        return int(key.rsplit("/", 1)[1])

    def latest(self) -> tuple[int, int]:
        return (self._newest_number("version-meta"), self._newest_number("identity"))

    def get_version(self, number: int) -> VersionRecord | None:
        meta = self._get(self._key("version-meta", f"{number:010d}"))
        docs = self._get(self._key("version-docs", f"{number:010d}"))
        if meta is None or docs is None:
            return None
        return VersionRecord(documents=_unpack(docs), **json.loads(meta))

    def versions(self, limit: int) -> list[dict[str, Any]]:
        rows = self._range(self._key("version-meta") + "/", descending=True, limit=limit)
        return [json.loads(value) for value, _ in rows]

    def get_identity(self, revision: int) -> IdentityRecord | None:
        data = self._get(self._key("identity", f"{revision:010d}"))
        return IdentityRecord(**_unpack(data)) if data is not None else None

    def append(self, version: VersionRecord | None, identity: IdentityRecord | None) -> None:
        puts: list[tuple[str, bytes]] = []
        if version is not None:
            name = f"{version.number:010d}"
            puts.append((self._key("version-meta", name), json.dumps(version.meta()).encode()))
            puts.append((self._key("version-docs", name), _pack(version.documents)))
        if identity is not None:
            puts.append((self._key("identity", f"{identity.revision:010d}"), _pack(identity.__dict__)))
        for key, value in puts:
            if len(value) > MAX_VALUE_BYTES:
                raise StoreError(f"etcd: {key} would be {len(value)} bytes compressed, over etcd's request limit")
        # create-if-absent on the first key of each record: etcd decides who wins a race
        firsts = [puts[0][0]] if version is not None else []
        if identity is not None:
            firsts.append(puts[-1][0])
        txn = {
            "compare": [{"key": _b64(k), "result": "EQUAL", "target": "CREATE", "create_revision": 0} for k in firsts],
            "success": [{"request_put": {"key": _b64(k), "value": _b64(v)}} for k, v in puts],
            "failure": [],
        }
        with self._lock:
            try:
                result = self.client.transaction(txn)
            except Etcd3Exception as exc:
                raise StoreError(f"etcd: {exc}") from None
        if not result.get("succeeded"):
            raise StoreConflict("that version or identity revision was written by another commit")

    def get_candidate(self, owner: str) -> Candidate | None:
        data = self._get(self._key("candidates", owner))
        return Candidate(**_unpack(data)) if data is not None else None

    def put_candidate(self, candidate: Candidate) -> None:
        self._put(self._key("candidates", candidate.owner), _pack(candidate.__dict__))

    def delete_candidate(self, owner: str) -> None:
        with self._lock:
            try:
                self.client.delete(self._key("candidates", owner))
            except Etcd3Exception as exc:
                raise StoreError(f"etcd: {exc}") from None

    def put_ack(self, ack: HostAck) -> None:
        self._put(self._key("hosts", ack.host), json.dumps(ack.__dict__))

    def acks(self) -> list[HostAck]:
        return [HostAck(**json.loads(value)) for value, _ in self._range(self._key("hosts") + "/", False, None)]

    def add_audit(self, entry: AuditEntry) -> None:
        # time first so that key order is time order; random suffix: two controllers, one nanosecond
        key = self._key("audit", f"{time.time_ns():020d}-{os.urandom(4).hex()}")
        self._put(key, json.dumps(entry.__dict__))

    def audit(self, limit: int) -> list[AuditEntry]:
        rows = self._range(self._key("audit") + "/", descending=True, limit=limit)
        return [AuditEntry(**json.loads(value)) for value, _ in rows]

    def put_signature_set(self, digest: str, data: bytes, meta: dict[str, Any]) -> bool:
        meta_key = self._key("sigsets", digest, "meta")
        if self._get(meta_key) is not None:
            return False
        # chunks first, meta last: a set without its meta is not there yet (a controller that died half way
        # leaves chunks that the next push of the same set overwrites with the same bytes)
        for i in range(0, max(len(data), 1), MAX_VALUE_BYTES):
            self._put(
                self._key("sigsets", digest, "data", f"{i // MAX_VALUE_BYTES:04d}"), data[i : i + MAX_VALUE_BYTES]
            )
        self._put(meta_key, json.dumps({**meta, "chunks": (len(data) + MAX_VALUE_BYTES - 1) // MAX_VALUE_BYTES}))
        return True

    def get_signature_set(self, digest: str) -> bytes | None:
        meta = self.signature_set_meta(digest)
        if meta is None:
            return None
        rows = self._range(self._key("sigsets", digest, "data") + "/", descending=False, limit=None)
        return b"".join(value for value, _ in rows[: meta.get("chunks", len(rows))])

    def signature_set_meta(self, digest: str) -> dict[str, Any] | None:
        data = self._get(self._key("sigsets", digest, "meta"))
        return json.loads(data) if data is not None else None

    def signature_sets(self) -> list[dict[str, Any]]:
        rows = self._range(self._key("sigsets") + "/", descending=False, limit=None, keys_only=True)
        keys = [info["key"].decode() for _, info in rows if info["key"].decode().endswith("/meta")]
        metas = [json.loads(data) for data in (self._get(key) for key in keys) if data is not None]
        return sorted(metas, key=lambda m: m.get("created", 0), reverse=True)

    def write_user_mappings(self, puts: list[dict[str, Any]], deletes: list[str]) -> None:
        ops: list[dict[str, Any]] = [{"request_delete_range": {"key": _b64(self._key("users", a))}} for a in deletes]
        ops += [
            {"request_put": {"key": _b64(self._key("users", m["address"])), "value": _b64(json.dumps(m))}} for m in puts
        ]
        for i in range(0, len(ops), MAX_TXN_OPS):
            with self._lock:
                try:
                    self.client.transaction({"compare": [], "success": ops[i : i + MAX_TXN_OPS], "failure": []})
                except Etcd3Exception as exc:
                    raise StoreError(f"etcd: {exc}") from None

    def user_mappings(self) -> list[dict[str, Any]]:
        return [json.loads(value) for value, _ in self._range(self._key("users") + "/", False, None)]

    def put_directory_groups(self, source: str, state: dict[str, Any]) -> None:
        self._put(self._key("directory-groups", source), json.dumps(state))

    def directory_groups(self) -> dict[str, dict[str, Any]]:
        rows = self._range(self._key("directory-groups") + "/", False, None)
        return {info["key"].decode().rsplit("/", 1)[1]: json.loads(value) for value, info in rows}

    def close(self) -> None:
        self.client.session.close()
