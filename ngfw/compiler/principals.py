"""User-ID principals: users and directory groups as the 64-bit numbers the fastpath compares.

A rule's `users:` and an address's user are compiled separately -- the rule by the policy compiler, the
address by a host from control's mappings -- and meet only in the packet loop, so both sides name a user
(`user:alice`) or a directory group (`group:tenant-a/finance`) by the same hash of that text. Neither needs
the other's numbering: a login never rebuilds a rule table, and a commit never rebuilds the address table.
"""

from __future__ import annotations

import hashlib


def principal(text: str) -> int:
    """The 64-bit number of `text` (never 0: 0 means "no user" in the fastpath)."""
    value = int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
    return value or 1


def user_principal(name: str) -> int:
    """A user, by canonical (lower-case) name."""
    return principal("user:" + name)


def group_principal(vsys: str, name: str) -> int:
    """A UserGroup of a vsys (the directory members control resolves for it)."""
    return principal(f"group:{vsys}/{name}")
