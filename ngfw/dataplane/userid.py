"""User-ID on a host: who is behind each address, as the packet loop's user table (userid.pxi) says it.

Three things say who is behind an address: control's mappings (logins read from syslog, the identity API),
each with a lifetime; a Workload's `spec.owner` (from the policy this host runs); and, for the users, the
directory groups control resolved. A mapping wins over an owner. Every change makes the next table
copy-on-write from the running one (only the changed addresses are written) and swaps it in; flows a
`users:` condition decided then look their user up again on their next packet (worker.pxi).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ngfw.compiler.principals import group_principal, user_principal
from ngfw.compiler.tables import CompiledPolicy, IPAddress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserMapping:
    user: str  # canonical (lower-case) user name
    expires: float | None  # epoch seconds; None: until deleted
    source: str = "api"  # api, syslog, ... (as control says)


def group_stamp(groups: Iterable[int]) -> int:
    """A number that differs whenever a user's groups do (flows decided with other groups decide again)."""
    return zlib.crc32(",".join(str(g) for g in sorted(groups)).encode()) or 1


class UserMap:
    """This host's users: control's mappings, workload owners and directory groups, and the table in force.

    `install` receives each new engine.UserTable (Engine.set_users)."""

    def __init__(self, fastpath: Any, install: Callable[[Any], None], clock: Callable[[], float] = time.time) -> None:
        self.fp = fastpath
        self.install = install
        self.clock = clock
        self.mappings: dict[IPAddress, UserMapping] = {}
        self.owners: dict[IPAddress, str] = {}
        self.groups: dict[str, tuple[str, ...]] = {}  # user -> "vsys/group" names of its directory groups
        self.names: dict[int, str] = {}  # principal -> user name, for logs and `ngfw sessions`
        self.revision = 0  # control's revision of the mappings applied here
        self.table: Any = None
        self.in_table: dict[IPAddress, str] = {}  # what the table in force says
        self.swaps = 0
        self.expired = 0
        self._lock = threading.Lock()

    # ---- what changes it

    def set_owners(self, policy: CompiledPolicy) -> None:
        """The owners of the workloads of the policy now in force (spec.owner)."""
        owners = {ip: wl.owner for wl in policy.workloads if wl.owner for ip in wl.ips}
        with self._lock:
            if owners == self.owners and self.table is not None:
                return
            changed = {a for a in set(owners) | set(self.owners) if owners.get(a) != self.owners.get(a)}
            self.owners = owners
            self._rebuild(changed=changed)

    def apply(self, delta: Mapping[str, Any]) -> None:
        """Control's mappings: a snapshot (`full`: these are all of them) or a delta (`put`, `delete`), and
        the directory groups of users when they changed (`groups`: {user: ["vsys/name", ...]})."""
        puts = {
            ipaddress.ip_address(m["address"]): UserMapping(
                str(m["user"]), m.get("expires"), str(m.get("source", "api"))
            )
            for m in delta.get("put", ())
        }
        deletes = {ipaddress.ip_address(a) for a in delta.get("delete", ())}
        with self._lock:
            full = bool(delta.get("full"))
            if full:
                self.mappings = {}
            for address in deletes:
                self.mappings.pop(address, None)
            self.mappings.update(puts)
            groups = delta.get("groups")
            if groups is not None:
                self.groups = {str(u): tuple(g) for u, g in groups.items()}
            self.revision = int(delta.get("revision", self.revision))
            self._rebuild(groups_changed=groups is not None, changed=None if full else set(puts) | deletes)

    def expire(self) -> int:
        """End the mappings whose lifetime is over (called periodically); the number ended."""
        now = self.clock()
        with self._lock:
            over = [a for a, m in self.mappings.items() if m.expires is not None and m.expires <= now]
            for address in over:
                del self.mappings[address]
            if over:
                self.expired += len(over)
                self._rebuild(changed=set(over))
        return len(over)

    # ---- the table

    def effective(self) -> dict[IPAddress, str]:
        now = self.clock()
        out = dict(self.owners)
        out.update({a: m.user for a, m in self.mappings.items() if m.expires is None or m.expires > now})
        return out

    def _group_table(self) -> dict[int, tuple[int, list[int]]]:
        table = {}
        for user, names in self.groups.items():
            members_of = [group_principal(*name.split("/", 1)) for name in names if "/" in name]
            table[user_principal(user)] = (group_stamp(members_of), members_of)
        return table

    def _user_at(self, address: IPAddress, now: float) -> str | None:
        mapping = self.mappings.get(address)
        if mapping is not None and (mapping.expires is None or mapping.expires > now):
            return mapping.user
        return self.owners.get(address)

    def _rebuild(self, groups_changed: bool = False, changed: set[IPAddress] | None = None) -> None:
        """The next table: for the `changed` addresses only (None: every address), copy-on-write."""
        if self.table is None or changed is None:
            wanted = self.effective()
            addresses: Iterable[IPAddress] = set(wanted) | set(self.in_table)
        else:
            now = self.clock()
            wanted = {a: u for a in changed if (u := self._user_at(a, now)) is not None}
            addresses = changed
        puts, deletes = [], []
        for address in addresses:
            user = wanted.get(address)
            if user is None:
                if address in self.in_table:
                    deletes.append(address)
            elif self.in_table.get(address) != user:
                puts.append((address, user))
        if self.table is not None and not puts and not deletes and not groups_changed:
            return
        for _, user in puts:
            self.names[user_principal(user)] = user
        if self.table is None:
            table = self.fp.UserTable([(a, user_principal(u)) for a, u in puts], self._group_table())
        else:
            table = self.table.derive(
                [(a, user_principal(u)) for a, u in puts], deletes, self._group_table() if groups_changed else None
            )
        self.install(table)
        self.table = table
        for address in deletes:
            del self.in_table[address]
        self.in_table.update(puts)
        self.swaps += 1

    # ---- what it says

    def name_of(self, user: int) -> str | None:
        return self.names.get(user) if user else None

    def user_of(self, address: str) -> str | None:
        with self._lock:
            return self.in_table.get(ipaddress.ip_address(address))

    def listing(self) -> list[dict[str, Any]]:
        """Every address mapped here: address, user, source (owner, api, syslog), expires."""
        with self._lock:
            rows: list[dict[str, Any]] = [
                {"address": str(a), "user": u, "source": "owner", "expires": None}
                for a, u in self.owners.items()
                if a not in self.mappings
            ]
            rows += [
                {"address": str(a), "user": m.user, "source": m.source, "expires": m.expires}
                for a, m in self.mappings.items()
            ]
        return sorted(
            rows, key=lambda r: (ipaddress.ip_address(r["address"]).version, ipaddress.ip_address(r["address"]))
        )

    def stats(self) -> dict[str, int]:
        return {"mapped": len(self.in_table), "swaps": self.swaps, "expired": self.expired, "revision": self.revision}


class UserAgent:
    """A long-poll of control's user mappings (`GET /identity/users/changes`): a snapshot first, then each
    delta, verified (sha256 of its canonical JSON) and applied to the host's UserMap.

    While control is unreachable the host keeps its table (lifetimes still end here). A restarted control
    has another epoch and answers with a snapshot, which `UserMap.apply` turns into the difference against
    the table in force: users mapped before and after the restart are never denied in between."""

    def __init__(self, users: UserMap, client: Any, host: str, wait: float = 20.0) -> None:
        self.users = users
        self.client = client
        self.host = host
        self.wait = wait
        self.since: int | None = None  # None: ask for a snapshot
        self.epoch: str | None = None  # the control process `since` is a revision of
        self.snapshots = 0
        self.applied = 0
        self.refused = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._poll, name="ngfw-users", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _poll(self) -> None:
        from ngfw.control.client import ControlError, ControlUnreachable

        while not self._stop.is_set():
            try:
                self.sync_once(self.wait)
            except (ControlUnreachable, ControlError) as exc:
                log.debug("user mappings: %s", exc)
                self._stop.wait(0.5)
            except Exception:  # noqa: BLE001 - a delta that failed to apply (a table swap timed out): ask again
                log.exception("user mappings: applying revision %s failed; asking for a snapshot", self.since)
                self.since = None
                self._stop.wait(0.5)

    def sync_once(self, wait: float) -> bool:
        """One long-poll; True if a delta was applied."""
        from ngfw.control.userid import delta_hash

        query: dict[str, Any] = {"host": self.host, "wait": wait}
        if self.since is not None:
            query["since"] = self.since
            if self.epoch is not None:
                query["epoch"] = self.epoch
        status, delta = self.client.request(
            "GET", "/identity/users/changes", query=query, timeout=wait + self.client.timeout
        )
        if status != 200 or not isinstance(delta, dict):
            return False
        if delta.get("hash") != delta_hash(delta):
            self.refused += 1
            log.warning(
                "user mappings revision %s do not verify (sha256); asking for a snapshot", delta.get("revision")
            )
            self.since = None
            return False
        self.users.apply(delta)
        self.since = int(delta["revision"])
        self.epoch = str(delta["epoch"]) if delta.get("epoch") else None
        self.snapshots += 1 if delta.get("full") else 0
        self.applied += 1
        return True


def start_user_agent(dataplane: Any, client: Any, host: str) -> UserAgent:
    agent = UserAgent(dataplane.users, client, host)
    agent.start()
    dataplane.user_agent = agent
    return agent
