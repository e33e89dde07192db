"""Bearer tokens, roles, and what each role may do.

Roles (separation of duties: people who run VMs do not write security policy):
    security-admin      every resource, commit, rollback, identity, audit
    tenant-admin:VSYS   Workloads, Groups and SecurityPolicies of VSYS only (not its VirtualSystem:
                        its quotas are the operator's), commit, identity of VSYS's workloads
    vm-operator         Workload bindings and labels only, through the identity path (no commit); user mappings
    user-mapper         user mappings only (PUT/DELETE /identity/users: a VPN gateway, a login script)
    viewer              read everything, change nothing
    dataplane[:HOST]    fetch bundles and acknowledge them (for HOST only, when given)

The tokens file holds sha256 digests, never tokens: tokens are 256 random bits, so a fast
hash is enough (there is nothing to brute-force), and a leaked file grants nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ngfw.model import syntax

ROLE_PATTERN = re.compile(
    r"^(security-admin|vm-operator|user-mapper|viewer|tenant-admin:(?P<vsys>[^:\s]+)"
    r"|dataplane(:(?P<host>\S+))?)$"
)
ROLES_HELP = "security-admin, tenant-admin:VSYS, vm-operator, user-mapper, viewer, dataplane[:HOST]"


class TokenFileError(Exception):
    pass


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and its role."""

    name: str
    role: str

    @property
    def base_role(self) -> str:
        return self.role.split(":", 1)[0]

    @property
    def vsys(self) -> str | None:
        """The one vsys a tenant-admin administers."""
        return self.role.split(":", 1)[1] if self.base_role == "tenant-admin" else None

    @property
    def host(self) -> str | None:
        """The one host a `dataplane:HOST` token speaks for."""
        return self.role.split(":", 1)[1] if self.base_role == "dataplane" and ":" in self.role else None

    # ---- what the role may do; each returns the reason for a refusal, or None
    def may_read_config(self) -> str | None:
        if self.base_role in ("security-admin", "tenant-admin", "viewer", "vm-operator"):
            return None
        return f"role {self.role} cannot read the configuration"

    def sees(self, vsys: str) -> bool:
        """Tenant-admins see their own tenant only; the other readers see every tenant."""
        return self.vsys is None or self.vsys == vsys

    def may_edit(self, kind: str, vsys: str) -> str | None:
        """May change `kind` of `vsys` in a candidate (and commit it)."""
        if self.base_role == "security-admin":
            return None
        if kind == "SignatureSet":
            return f"role {self.role} cannot change signature sets (site-wide: a security-admin's)"
        if self.base_role == "tenant-admin":
            if vsys != self.vsys:
                return f"role {self.role} cannot change resources of vsys {vsys!r}"
            if kind == "VirtualSystem":
                return f"role {self.role} cannot change the VirtualSystem itself (its limits are a security-admin's)"
            return None
        if self.base_role == "vm-operator":
            return (
                f"role {self.role} cannot change {kind} resources or commit policy; it changes Workload "
                "bindings and labels through the identity API (PUT /identity/workloads/VSYS/NAME)"
            )
        return f"role {self.role} cannot change the configuration"

    def may_commit(self) -> str | None:
        if self.base_role in ("security-admin", "tenant-admin"):
            return None
        return f"role {self.role} cannot commit policy"

    def may_rollback(self) -> str | None:
        return (
            None if self.base_role == "security-admin" else f"role {self.role} cannot roll back (security-admin only)"
        )

    def may_change_identity(self, vsys: str) -> str | None:
        if self.base_role in ("security-admin", "vm-operator"):
            return None
        if self.base_role == "tenant-admin" and vsys == self.vsys:
            return None
        return f"role {self.role} cannot change workloads of vsys {vsys!r}"

    def may_map_users(self) -> str | None:
        """May say which user is behind an address (User-ID mappings; no policy commit)."""
        if self.base_role in ("security-admin", "vm-operator", "user-mapper"):
            return None
        return f"role {self.role} cannot map users (security-admin, vm-operator or user-mapper)"

    def may_read_audit(self) -> str | None:
        return None if self.base_role in ("security-admin", "viewer") else f"role {self.role} cannot read the audit log"

    def may_fetch_bundle(self, host: str) -> str | None:
        if self.base_role in ("security-admin", "viewer"):
            return None
        if self.base_role == "dataplane" and self.host in (None, host):
            return None
        return f"role {self.role} cannot fetch the bundle of host {host!r}"

    def may_ack(self, host: str) -> str | None:
        if self.base_role == "dataplane" and self.host in (None, host):
            return None
        return f"role {self.role} cannot acknowledge for host {host!r}"


def check_role(role: str) -> str:
    match = ROLE_PATTERN.match(role)
    if not match:
        raise TokenFileError(f"unknown role {role!r} (expected one of {ROLES_HELP})")
    if match.group("vsys"):
        syntax.check_name(match.group("vsys"))
    return role


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenFile:
    """The tokens file: `{"tokens": [{"name", "role", "sha256", "created"}]}`; re-read when it changes.

    Re-reading on change lets `ngfw control token add` take effect without restarting control.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # (inode, mtime_ns, size) of the file read last
        self._by_digest: dict[str, Principal] = {}
        self._reload()

    def _reload(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise TokenFileError(f"{self.path}: no tokens file (create tokens with `ngfw control token add`)") from None
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        entries = read_tokens(self.path)
        self._by_digest = {e["sha256"]: Principal(e["name"], e["role"]) for e in entries}
        self._seen = seen

    def authenticate(self, token: str) -> Principal | None:
        with self._lock:
            try:
                self._reload()
            except TokenFileError:
                pass  # keep the tokens read last: a file being rewritten must not lock everyone out
            return self._by_digest.get(token_digest(token))


def read_tokens(path: Path) -> list[dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise TokenFileError(f"{path}: cannot read tokens: {exc}") from None
    entries = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise TokenFileError(f'{path}: expected {{"tokens": [...]}}')
    for entry in entries:
        if not isinstance(entry, dict) or not {"name", "role", "sha256"} <= entry.keys():
            raise TokenFileError(f"{path}: every token needs name, role and sha256 (got {entry!r})")
        check_role(entry["role"])
    return entries


def add_token(path: str | Path, name: str, role: str) -> str:
    """Create a token for `name` with `role`, store its digest, return the token (shown once)."""
    check_role(role)
    path = Path(path)
    entries = read_tokens(path)
    if any(e["name"] == name for e in entries):
        raise TokenFileError(f"{path}: a token named {name!r} exists (remove it first)")
    token = secrets.token_urlsafe(32)
    entries.append(
        {
            "name": name,
            "role": role,
            "sha256": token_digest(token),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
    )
    _write(path, entries)
    return token


def remove_token(path: str | Path, name: str) -> bool:
    path = Path(path)
    entries = read_tokens(path)
    kept = [e for e in entries if e["name"] != name]
    if len(kept) == len(entries):
        return False
    _write(path, kept)
    return True


def _write(path: Path, entries: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # 0600 from the start: digests are no secret, but who holds which role is nobody else's business
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"tokens": entries}, out, indent=1)
        out.write("\n")
        # a file the control service reads through its group (the .deb's root:ngfw 0640) stays readable
        # to it when root adds a token
        try:
            old = path.stat()
            os.fchown(out.fileno(), old.st_uid, old.st_gid)
            os.fchmod(out.fileno(), old.st_mode & 0o640)
        except FileNotFoundError:
            pass
        except PermissionError:
            pass  # not ours to give away: the new file is 0600, owned by whoever wrote it
    os.replace(tmp, path)  # atomic: control never reads half a file
