"""Control's User-ID mappings: which user is behind an address, from the identity API and syslog logins.

Every change gets a revision; a host's agent long-polls `GET /identity/users/changes?since=R` and receives
what changed after R (a small delta: a login is one mapping, no policy commit), or a snapshot when it is too
far behind (or new). Mappings have lifetimes: control ends them when they are over (hosts do too, by the
same `expires`, so a host cut off from control still lets logins lapse). Directory groups (ngfw.control.ldap)
are sent with the mappings: {user: ["vsys/UserGroup", ...]}.

Kept in control's store too (ngfw.control.store: a table of its own, never a policy version): a request's
change is written before it is answered, a syslog batch by a writer thread as one write, and the long-polls
are woken once it is written (one that wakes for another reason may see a batch a few ms before it is stored:
the epoch, below, covers a crash in between). A restarted control
reads them back (those whose lifetime ended while it was down are dropped) and so does the directory groups'
last good membership (ngfw.control.ldap). Each control process has an `epoch`: a host whose `since` is of
another epoch (control restarted) gets a snapshot, which its agent applies as a difference against the table
it runs (ngfw.dataplane.userid): an address mapped before and after is never unmapped in between.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass
from typing import Any

from ngfw.model import syntax

log = logging.getLogger(__name__)

MAX_MAPPINGS = 500_000
CHANGES_KEPT = 200_000  # revisions a delta can be built from; an agent further behind gets a snapshot
MAX_TTL = 30 * 86400


class MappingError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Mapping:
    address: str
    user: str
    source: str  # api, syslog:PROFILE
    expires: float | None  # epoch seconds, None: until deleted
    vm: str | None = None  # the workload (vsys/name) the address belongs to, None: an unbound address
    by: str = ""  # who mapped it (a token's name, or the syslog sender)

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "user": self.user,
            "source": self.source,
            "expires": self.expires,
            "vm": self.vm,
            "by": self.by,
        }


def canonical_address(text: str) -> tuple[str, int, int]:
    """(canonical text, IP version, integer value) of an address; ValueError if it is not one. inet_pton and
    inet_ntop: the syslog receiver does this per line, and ipaddress costs ten times more."""
    if not isinstance(text, str):
        raise ValueError(text)
    try:
        packed = socket.inet_pton(socket.AF_INET, text)
        return socket.inet_ntop(socket.AF_INET, packed), 4, int.from_bytes(packed, "big")
    except OSError:
        pass
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)  # a zone index (fe80::1%eth0) is refused by it
    except OSError:
        raise ValueError(text) from None
    if packed[:12] == b"\0" * 10 + b"\xff\xff":  # ::ffff:a.b.c.d is spelt as ipaddress spells it
        return str(ipaddress.ip_address(text)), 6, int.from_bytes(packed, "big")
    return socket.inet_ntop(socket.AF_INET6, packed), 6, int.from_bytes(packed, "big")


def delta_hash(delta: dict[str, Any]) -> str:
    """sha256 of a delta's canonical JSON without its `hash` (the agent checks it before applying)."""
    body = {k: v for k, v in delta.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class UserMappings:
    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[], None] = lambda: None,
        max_mappings: int = MAX_MAPPINGS,
        store: Any = None,
    ) -> None:
        """`store` (ngfw.control.store.Store): where mappings are kept across restarts; None: memory only."""
        self.clock = clock
        self.store = store
        self.epoch = os.urandom(8).hex()  # this process's revisions: another epoch's `since` gets a snapshot
        self._dirty: set[str] = set()  # addresses changed since the last write to the store
        self._flush_lock = threading.Lock()  # writes in the order their changes were taken
        self._writer: threading.Thread | None = None  # writes syslog batches (notify()), started on the first
        self._write_wanted = threading.Event()
        self._closing = False
        self.on_change = on_change
        self.max_mappings = max_mappings
        self.revision = 0
        self.mappings: dict[str, Mapping] = {}
        self._changes: deque[tuple[int, str]] = deque()  # (revision, address) of every change, oldest first
        self.groups: dict[str, tuple[str, ...]] = {}  # user -> "vsys/UserGroup" of its directory groups
        self.groups_revision = 0
        self.counters: dict[str, int] = {
            "mapped": 0,
            "unmapped": 0,
            "expired": 0,
            "unbound_accepted": 0,
            "unbound_refused": 0,
            "refused": 0,
            "restored": 0,
            "restored_expired": 0,
            "store_writes": 0,
            "store_failures": 0,
        }
        self._lock = threading.Condition()

    # ---- changes
    def put(
        self, address: str, user: str, ttl: float | None, source: str, vm: str | None, by: str = "", notify: bool = True
    ) -> Mapping:
        try:
            canonical = canonical_address(address)[0]
        except ValueError:
            raise MappingError(400, f"{address!r} is not an IP address") from None
        try:
            name = syntax.check_user_name(user)
        except ValueError as exc:
            raise MappingError(400, f"user {user!r}: {exc}") from None
        if ttl is not None and not 0 < ttl <= MAX_TTL:
            raise MappingError(400, f"ttl {ttl!r} must be 1 to {MAX_TTL} seconds")
        mapping = Mapping(canonical, name, source, self.clock() + ttl if ttl is not None else None, vm, by)
        with self._lock:
            if canonical not in self.mappings and len(self.mappings) >= self.max_mappings:
                self.counters["refused"] += 1
                raise MappingError(507, f"control holds {self.max_mappings} user mappings already")
            self.mappings[canonical] = mapping
            self.counters["mapped"] += 1
            self._changed([canonical])
        if notify:
            self.notify(durable=True)
        return mapping

    def delete(self, address: str, user: str | None = None, notify: bool = True) -> Mapping | None:
        """End the mapping of `address` (of `user` only, when given: a logout of another user changes nothing)."""
        try:
            canonical = canonical_address(address)[0]
        except ValueError:
            raise MappingError(400, f"{address!r} is not an IP address") from None
        with self._lock:
            mapping = self.mappings.get(canonical)
            if mapping is None or (user is not None and mapping.user != user.lower()):
                return None
            del self.mappings[canonical]
            self.counters["unmapped"] += 1
            self._changed([canonical])
        if notify:
            self.notify(durable=True)
        return mapping

    def set_groups(self, groups: MappingOf[str, Iterable[str]]) -> bool:
        """The directory groups of every user ({user: ["vsys/name", ...]}); True if they changed."""
        canonical = {u.lower(): tuple(sorted(set(g))) for u, g in groups.items() if g}
        with self._lock:
            if canonical == self.groups:
                return False
            self.groups = canonical
            self.revision += 1
            self.groups_revision = self.revision
            self._lock.notify_all()
        self.on_change()
        return True

    def expire(self) -> int:
        now = self.clock()
        with self._lock:
            over = [a for a, m in self.mappings.items() if m.expires is not None and m.expires <= now]
            for address in over:
                del self.mappings[address]
            if over:
                self.counters["expired"] += len(over)
                self._changed(over)
        if over:
            self.notify(durable=True)
        return len(over)

    def _changed(self, addresses: list[str]) -> None:
        """(Under the lock.) A new revision; the caller notifies once the lock is released."""
        self.revision += 1
        for address in addresses:
            self._changes.append((self.revision, address))
        if self.store is not None:
            self._dirty.update(addresses)
        while len(self._changes) > CHANGES_KEPT:
            self._changes.popleft()

    def notify(self, durable: bool = False) -> None:
        """Write the changes to the store, then wake the long-polls. `durable`: write now, in this thread (a
        request is answered once its mapping is stored); otherwise (a syslog batch, made with notify=False)
        the writer thread writes it and then wakes them, while the caller reads the next batch: a burst costs
        one write per batch that arrived during the previous write, and the receiver is not slowed by them."""
        if self.store is None or durable or self._closing:
            self.flush()
            self._wake()
            return
        with self._lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="ngfw-user-writer", daemon=True)
                self._writer.start()
        self._write_wanted.set()

    def _wake(self) -> None:
        with self._lock:
            self._lock.notify_all()
        self.on_change()  # the listeners only set events: they never block

    def _write_loop(self) -> None:
        while True:
            self._write_wanted.wait()
            self._write_wanted.clear()
            self.flush()
            self._wake()
            if self._closing:
                return

    def close(self) -> None:
        """Write what is not written yet and end the writer (control stopping)."""
        self._closing = True
        self._write_wanted.set()
        if self._writer is not None:
            self._writer.join(timeout=30)
        self.flush()

    # ---- the store
    def flush(self) -> int:
        """Write the mappings changed since the last flush (one write); the number of addresses written. A
        failed write is logged and counted, and its addresses are written with the next one."""
        if self.store is None:
            return 0
        with self._flush_lock:
            with self._lock:
                if not self._dirty:
                    return 0
                dirty, self._dirty = self._dirty, set()
                mappings = self.mappings
                puts = [mappings[a].as_dict() for a in dirty if a in mappings]
                deletes = [a for a in dirty if a not in self.mappings]
            try:
                self.store.write_user_mappings(puts, deletes)
            except Exception as exc:  # noqa: BLE001 - the store down must not stop logins being enforced
                with self._lock:
                    self._dirty |= dirty
                    self.counters["store_failures"] += 1
                log.error(
                    "user mappings: %d changes not written to the store (%s); written with the next change",
                    len(dirty),
                    exc,
                )
                return 0
            self.counters["store_writes"] += 1
        return len(dirty)

    def restore(self) -> int:
        """Read the mappings the store kept (at control's start); those whose lifetime is over are dropped
        (and forgotten by the store). The number restored."""
        if self.store is None:
            return 0
        now = self.clock()
        kept: dict[str, Mapping] = {}
        over: list[str] = []
        for row in self.store.user_mappings():
            try:
                expires = row.get("expires")
                mapping = Mapping(
                    canonical_address(row["address"])[0],
                    syntax.check_user_name(row["user"]),
                    str(row.get("source", "api")),
                    None if expires is None else float(expires),
                    row.get("vm"),
                    str(row.get("by", "")),
                )
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("user mappings: a stored mapping is unreadable (%s): %r; dropped", exc, row)
                over.append(str(row.get("address", "")) if isinstance(row, dict) else "")
                continue
            if mapping.expires is not None and mapping.expires <= now:
                over.append(str(row["address"]))
            else:
                kept[mapping.address] = mapping
        with self._lock:
            self.mappings.update(kept)
            self.counters["restored"] += len(kept)
            self.counters["restored_expired"] += len(over)
            if kept:
                self.revision += 1
                self._changes.extend((self.revision, a) for a in kept)
        if over:
            try:
                self.store.write_user_mappings([], [a for a in over if a])
            except Exception as exc:  # noqa: BLE001 - they are dropped at the next start again
                log.warning("user mappings: expired ones not removed from the store: %s", exc)
        if kept or over:
            log.info(
                "user mappings: %d restored from the store, %d expired while control was down", len(kept), len(over)
            )
        return len(kept)

    # ---- what hosts get
    def changes(self, since: int | None, epoch: str | None = None) -> dict[str, Any] | None:
        """What changed after revision `since` of `epoch` (None: everything, a snapshot; another epoch's
        revision, from before control restarted: a snapshot too); None when nothing did."""
        self.expire()
        with self._lock:
            if epoch is not None and epoch != self.epoch:
                since = None
            if since is not None and since == self.revision:
                return None
            oldest = self._changes[0][0] if self._changes else self.revision + 1
            full = since is None or since > self.revision or since < oldest - 1
            delta: dict[str, Any] = {"revision": self.revision, "full": full, "epoch": self.epoch}
            if full:
                delta["put"] = [self._wire(m) for m in self.mappings.values()]
                delta["delete"] = []
                delta["groups"] = {u: list(g) for u, g in self.groups.items()}
            else:
                changed = {a for rev, a in reversed(self._changes) if rev > since} if since is not None else set()
                delta["put"] = [self._wire(self.mappings[a]) for a in sorted(changed) if a in self.mappings]
                delta["delete"] = sorted(a for a in changed if a not in self.mappings)
                if since is not None and self.groups_revision > since:
                    delta["groups"] = {u: list(g) for u, g in self.groups.items()}
        delta["hash"] = delta_hash(delta)
        return delta

    @staticmethod
    def _wire(m: Mapping) -> dict[str, Any]:
        return {"address": m.address, "user": m.user, "expires": m.expires, "source": m.source}

    def wait_changes(self, since: int | None, wait: float, epoch: str | None = None) -> dict[str, Any] | None:
        deadline = time.monotonic() + max(0.0, min(wait, 60.0))
        while True:
            delta = self.changes(since, epoch)
            if delta is not None:
                return delta
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with self._lock:
                self._lock.wait(min(remaining, 0.5))

    def listing(self) -> list[dict[str, Any]]:
        self.expire()
        with self._lock:
            rows = [m.as_dict() for m in self.mappings.values()]
        for row in rows:
            row["groups"] = list(self.groups.get(row["user"], ()))
        return sorted(
            rows, key=lambda r: (ipaddress.ip_address(r["address"]).version, ipaddress.ip_address(r["address"]))
        )
