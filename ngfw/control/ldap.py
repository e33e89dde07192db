"""Directory groups (User-ID): the members of `UserGroup`s with `spec.ldap`, read from an LDAP directory.

A group entry lists its members by DN (`member` of groupOfNames, `uniqueMember` of groupOfUniqueNames); a
member that is itself a group is expanded (nested groups, cycles cut); a member entry's user name is its
`userAttribute` (uid by default; memberUid of posixGroup names users directly). Each directory is read
again every `refresh` seconds. A directory that cannot be reached, refuses the bind, or answers something
that is not a group keeps the groups it gave last ("last good"); the failure is counted and shown in
`GET /identity/users` and `ngfw status`. Each success is written to control's store, so that a restarted
control enforces the last good groups from its start, through a first refresh that fails too. The result -- {user: ["vsys/UserGroup", ...]} -- goes to control's
mappings (ngfw.control.userid), which sends it to hosts with the user mappings.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

log = logging.getLogger(__name__)

MAX_DEPTH = 16  # nesting levels followed
MAX_ENTRIES = 100_000  # member entries read per refresh, at most


class DirectoryError(Exception):
    pass


@dataclass
class DirectoryState:
    """One UserSource's directory: how its last refreshes went."""

    source: str
    url: str
    ok: int = 0
    failed: int = 0
    last_success: float | None = None
    last_attempt: float | None = None
    last_error: str = ""
    stale: bool = False  # the last refresh failed: its groups are the last good ones
    groups: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (vsys, UserGroup) -> users

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "url": self.url,
            "ok": self.ok,
            "failed": self.failed,
            "last_success": self.last_success,
            "last_error": self.last_error or None,
            "stale": self.stale,
            "groups": {f"{v}/{n}": len(users) for (v, n), users in sorted(self.groups.items())},
        }


def read_group_members(connection: Any, dn: str, user_attribute: str) -> list[str]:
    """The user names of group `dn`, nested groups expanded (ldap3 connection, bound)."""
    from ldap3 import BASE

    users: set[str] = set()
    seen: set[str] = set()
    entries = 0

    def read(entry_dn: str, depth: int) -> None:
        nonlocal entries
        key = entry_dn.lower()
        if key in seen or depth > MAX_DEPTH:
            return
        seen.add(key)
        entries += 1
        if entries > MAX_ENTRIES:
            raise DirectoryError(f"more than {MAX_ENTRIES} entries below {dn}")
        ok = connection.search(
            entry_dn,
            "(objectClass=*)",
            search_scope=BASE,
            attributes=["objectClass", "member", "uniqueMember", "memberUid", user_attribute],
        )
        if not ok or not connection.response:
            if depth == 0:
                raise DirectoryError(f"group {dn} not found ({connection.result.get('description', 'no answer')})")
            return  # a member that is gone: nothing to add
        attributes = connection.response[0].get("attributes", {})
        classes = {str(c).lower() for c in attributes.get("objectClass", [])}
        members = list(attributes.get("member", [])) + list(attributes.get("uniqueMember", []))
        is_group = bool(classes & {"groupofnames", "groupofuniquenames", "posixgroup", "group"}) or bool(members)
        if depth == 0 and not is_group:
            raise DirectoryError(f"{dn} is not a group (objectClass {', '.join(sorted(classes)) or 'none'})")
        if is_group:
            for member in members:
                read(str(member), depth + 1)
            for uid in attributes.get("memberUid", []):
                users.add(str(uid).lower())
            return
        names = attributes.get(user_attribute)
        if isinstance(names, list | tuple):
            names = names[0] if names else None
        if names:
            users.add(str(names).lower())

    read(dn, 0)
    return sorted(users)


def groups_by_user(states: Any) -> dict[str, list[str]]:
    """{user: ["vsys/UserGroup", ...]} of stored states ({"groups": {"vsys/UserGroup": [users]}, ...})."""
    by_user: dict[str, list[str]] = {}
    for state in states:
        for name, users in (state.get("groups") or {}).items():
            for user in users:
                by_user.setdefault(str(user), []).append(str(name))
    return by_user


class DirectorySync:
    """Reads the directory groups of the running configuration periodically; `refresh_now` reads them at once."""

    def __init__(self, control: Any, tick: float = 1.0) -> None:
        self.control = control
        self.tick = tick
        self.states: dict[str, DirectoryState] = {}
        self._due: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        control.directories = self
        self._restore()

    def _restore(self) -> None:
        """The last good groups the store kept: kept while the directory cannot be read after a restart."""
        try:
            stored = self.control.store.directory_groups()
        except Exception as exc:  # noqa: BLE001 - a store without them: the first refresh reads them
            log.warning("directory groups not restored from the store: %s", exc)
            return
        for name, saved in stored.items():
            state = DirectoryState(name, str(saved.get("url", "")), last_success=saved.get("last_success"))
            state.groups = {
                (key.split("/", 1)[0], key.split("/", 1)[1]): list(users)
                for key, users in (saved.get("groups") or {}).items()
                if "/" in key
            }
            self.states[name] = state

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ngfw-directory", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.refresh_due()
            except Exception:  # noqa: BLE001 - the next tick tries again; a bug must not end the refreshes
                log.exception("directory refresh failed")

    def _configuration(self) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str, str, str | None]]]:
        """UserSources with a directory, and the UserGroups with `ldap` (vsys, name, dn, source)."""
        key = self.control.store.latest()
        documents = self.control.effective(*key) if key[0] > 0 else []
        sources = {
            d["metadata"]["name"]: d["spec"]["ldap"]
            for d in documents
            if d.get("kind") == "UserSource" and (d.get("spec") or {}).get("ldap")
        }
        groups = [
            (d["metadata"]["vsys"], d["metadata"]["name"], d["spec"]["ldap"]["dn"], d["spec"]["ldap"].get("source"))
            for d in documents
            if d.get("kind") == "UserGroup" and (d.get("spec") or {}).get("ldap")
        ]
        return sources, groups

    def refresh_due(self) -> None:
        sources, _ = self._configuration()
        now = time.monotonic()
        due = [name for name, spec in sources.items() if self._due.get(name, 0.0) <= now]
        if due or any(name not in sources for name in self.states):  # restored, no longer configured: drop
            self.refresh_now(due)

    def refresh_now(self, only: list[str] | None = None) -> dict[str, DirectoryState]:
        sources, groups = self._configuration()
        with self._lock:
            for name in [n for n in self.states if n not in sources]:
                del self.states[name]
                try:  # a restart must not bring back the groups of a directory no longer configured
                    self.control.store.put_directory_groups(name, {"groups": {}})
                except Exception as exc:  # noqa: BLE001
                    log.error("directory %s: removal not written to the store: %s", name, exc)
            for name, spec in sources.items():
                if only is not None and name not in only:
                    continue
                wanted = [
                    (v, n, dn)
                    for v, n, dn, source in groups
                    if (source or name) == name and (source is not None or len(sources) == 1)
                ]
                self._refresh(name, spec, wanted)
                self._due[name] = time.monotonic() + float(spec.get("refresh", 300))
            self._publish()
        return dict(self.states)

    def _refresh(self, name: str, spec: dict[str, Any], wanted: list[tuple[str, str, str]]) -> None:
        state = self.states.setdefault(name, DirectoryState(name, spec["url"]))
        state.url = spec["url"]
        state.last_attempt = time.time()
        try:
            found = self._read(spec, wanted)
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, garbage: keep the last good groups
            state.failed += 1
            state.stale = True
            state.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning(
                "directory %s (%s): %s; keeping the groups read at %s",
                name,
                spec["url"],
                state.last_error,
                time.strftime("%H:%M:%S", time.localtime(state.last_success)) if state.last_success else "never",
            )
            return
        changed = found != state.groups or state.last_success is None
        state.groups = found
        state.ok += 1
        state.stale = False
        state.last_error = ""
        state.last_success = time.time()
        if changed:
            try:
                self.control.store.put_directory_groups(
                    name,
                    {
                        "url": state.url,
                        "last_success": state.last_success,
                        "groups": {f"{v}/{n}": users for (v, n), users in sorted(found.items())},
                    },
                )
            except Exception as exc:  # noqa: BLE001 - enforced from memory; a restart would read the older ones
                log.error("directory %s: groups not written to the store: %s", name, exc)

    def _read(self, spec: dict[str, Any], wanted: list[tuple[str, str, str]]) -> dict[tuple[str, str], list[str]]:
        from ldap3 import Connection, Server

        url = urlparse(spec["url"])
        password = None
        if spec.get("passwordFile"):
            try:
                with open(spec["passwordFile"], encoding="utf-8") as f:
                    password = f.read().strip()
            except OSError as exc:
                raise DirectoryError(f"passwordFile {spec['passwordFile']}: {exc.strerror or exc}") from None
        timeout = float(spec.get("timeout", 5.0))
        tls = None
        if url.scheme == "ldaps":
            import ssl

            from ldap3 import Tls

            # verified: the certificate chains to caFile (or the system's CAs) and names the URL's host
            tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=spec.get("caFile"))
        server = Server(url.hostname, port=url.port, use_ssl=url.scheme == "ldaps", tls=tls, connect_timeout=timeout)
        connection = Connection(
            server,
            user=spec.get("bindDN"),
            password=password,
            receive_timeout=max(1, math.ceil(timeout)),  # ldap3 packs it as an integer
            raise_exceptions=False,
            read_only=True,
        )
        if not connection.bind():
            result = connection.result or {}
            who = f"as {spec['bindDN']}" if spec.get("bindDN") else "anonymously"
            reason = result.get("description") or "no answer"
            if result.get("message"):
                reason += f" ({result['message']})"
            raise DirectoryError(f"the directory refused to bind {who}: {reason}")
        try:
            return {
                (vsys, group): read_group_members(connection, dn, spec.get("userAttribute", "uid"))
                for vsys, group, dn in wanted
            }
        finally:
            connection.unbind()

    def _publish(self) -> None:
        by_user: dict[str, list[str]] = {}
        for state in self.states.values():
            for (vsys, group), users in state.groups.items():
                for user in users:
                    by_user.setdefault(user, []).append(f"{vsys}/{group}")
        self.control.users.set_groups(by_user)

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s.as_dict() for s in self.states.values()]
