"""The small string grammars inside resources: names, MACs, IPs, references, services.

Each `check_*` function takes what the user wrote and returns the canonical spelling,
or raises `ValueError` with a message written for the user (the loader appends the
offending value). Canonical spellings make equal policies dump — and hash — equally.
`parse_*` functions turn canonical spellings into typed values for the compiler.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from ngfw.wire import PROTO_ANY, SERVICE_PROTOCOLS

# Names end up in references (`vm:NAME`), metric labels and log fields, so they
# exclude ':' '/' and whitespace.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
NAME_HELP = "must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME_RE = re.compile(NAME_PATTERN)

# Kubernetes label syntax, so selectors written for other tools read the same here.
LABEL_KEY_PATTERN = r"^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
LABEL_VALUE_PATTERN = r"^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$"
_LABEL_KEY_RE = re.compile(LABEL_KEY_PATTERN)
_LABEL_VALUE_RE = re.compile(LABEL_VALUE_PATTERN)

# Linux interface names: at most 15 bytes (IFNAMSIZ - 1), no '/' and no whitespace.
PORT_NAME_PATTERN = r"^[^\s/]{1,15}$"
_PORT_NAME_RE = re.compile(PORT_NAME_PATTERN)

MAC_PATTERN = r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$"
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")

REF_PATTERN = r"^(any|vm:[A-Za-z0-9][A-Za-z0-9._-]{0,62}|group:[A-Za-z0-9][A-Za-z0-9._-]{0,62}|cidr:[0-9A-Fa-f:.]+(/[0-9]{1,3})?)$"
MEMBER_PATTERN = r"^vm:[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
SERVICE_PATTERN = r"^(any|application-default|icmp|icmp6|ipv6-icmp|(tcp|udp)(/[0-9]{1,5}(-[0-9]{1,5})?)?)$"
_SERVICE_RE = re.compile(r"^(tcp|udp)(?:/([0-9]+)(?:-([0-9]+))?)?$")

APP_ID_MISSING = "needs App-ID, not supported yet"


def check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(NAME_HELP)
    return value


def check_label_key(value: str) -> str:
    if not _LABEL_KEY_RE.match(value):
        raise ValueError("label key must be an optional DNS prefix and '/', then 1-63 letters, digits, '.', '_' or '-'")
    return value


def check_label_value(value: str) -> str:
    if not _LABEL_VALUE_RE.match(value):
        raise ValueError(
            "label value must be empty or 1-63 letters, digits, '.', '_' or '-', starting and ending alphanumeric"
        )
    return value


def check_port_name(value: str) -> str:
    if not _PORT_NAME_RE.match(value):
        raise ValueError("must be a network interface name (1-15 characters, no '/' or whitespace)")
    return value


def check_mac(value: str) -> str:
    """Canonical form: lower case, ':'-separated."""
    if not _MAC_RE.match(value):
        raise ValueError("must be a MAC address like 02:00:00:00:01:01")
    octets = bytes.fromhex(value[0:2] + value[3:5] + value[6:8] + value[9:11] + value[12:14] + value[15:17])
    # A workload is identified by the source MAC of its frames, which is never a
    # group address; the zero MAC is what unconfigured tools leave behind.
    if octets[0] & 0x01:
        raise ValueError("must be a unicast MAC address (the multicast bit is set)")
    if octets == bytes(6):
        raise ValueError("must not be the all-zero MAC address")
    return ":".join(f"{b:02x}" for b in octets)


def mac_bytes(canonical: str) -> bytes:
    return bytes.fromhex(canonical.replace(":", ""))


def check_ip(value: str) -> str:
    """Canonical form: `ipaddress`'s compressed spelling."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address") from None
    # The dataplane maps a packet's source address to a workload; these addresses
    # never appear as the source of a workload's own traffic.
    if address.is_unspecified or address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError("must be a unicast address")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        # on the wire this host speaks IPv4: the same address written twice would bind two workloads
        raise ValueError(f"is an IPv4-mapped IPv6 address: write it as {address.ipv4_mapped}")
    return address.compressed


def check_network(value: str, prefix: str = "") -> str:
    """Canonical prefix; `prefix` is how the user wrote the reference (for hints)."""
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.ip_network(value, strict=False)
            raise ValueError(f"has host bits set (did you mean {prefix}{fixed.compressed}?)") from None
        raise ValueError("is not an IPv4 or IPv6 prefix") from None
    return network.compressed


def _looks_like_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Ref:
    """A parsed `from`/`to` item."""

    kind: Literal["any", "vm", "group", "cidr"]
    value: str = ""  # name for vm/group, canonical prefix for cidr

    def __str__(self) -> str:
        return "any" if self.kind == "any" else f"{self.kind}:{self.value}"


def check_ref(value: str) -> str:
    """`any`, `vm:NAME`, `group:NAME` or `cidr:PREFIX`."""
    if value == "any":
        return value
    kind, sep, rest = value.partition(":")
    if sep and kind in ("vm", "group"):
        check_name(rest)
        return value
    if sep and kind == "cidr":
        return "cidr:" + check_network(rest, "cidr:")
    hint = f" (did you mean cidr:{value}?)" if _looks_like_network(value) else ""
    raise ValueError(f"must be any, vm:NAME, group:NAME or cidr:PREFIX{hint}")


def check_member(value: str) -> str:
    kind, sep, rest = value.partition(":")
    if not (sep and kind == "vm"):
        raise ValueError("must be vm:NAME (a workload in the group's vsys)")
    check_name(rest)
    return value


def parse_ref(canonical: str) -> Ref:
    if canonical == "any":
        return Ref("any")
    kind, _, rest = canonical.partition(":")
    if kind == "vm":
        return Ref("vm", rest)
    if kind == "group":
        return Ref("group", rest)
    if kind == "cidr":
        return Ref("cidr", rest)
    raise ValueError(f"not a reference: {canonical!r}")


@dataclass(frozen=True)
class ServiceSpec:
    """A parsed service: protocol number and inclusive destination-port range."""

    proto: int
    port_lo: int = 0
    port_hi: int = 65535


_ICMP_ALIASES = {"icmp": "icmp", "icmp6": "icmp6", "ipv6-icmp": "icmp6"}


def check_service(value: str) -> str:
    """`any`, `icmp`, `icmp6`/`ipv6-icmp`, `tcp`, `udp`, `tcp/80`, `udp/8000-8080`."""
    # Lower case only, as everywhere else in a policy: one spelling per service.
    if value == "any":
        return value
    if value in _ICMP_ALIASES:
        return _ICMP_ALIASES[value]
    if value == "application-default":
        return value
    match = _SERVICE_RE.match(value)
    if not match:
        raise ValueError("must be any, icmp, icmp6, tcp/PORT, tcp/LO-HI, udp/PORT or udp/LO-HI")
    proto, lo_text, hi_text = match.groups()
    if lo_text is None:
        return proto
    lo = int(lo_text)
    hi = int(hi_text) if hi_text is not None else lo
    for port in (lo, hi):
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is out of range 1-65535")
    if lo > hi:
        raise ValueError(f"port range {lo}-{hi} is reversed (low end above high end)")
    return f"{proto}/{lo}" if lo == hi else f"{proto}/{lo}-{hi}"


def parse_service(canonical: str) -> ServiceSpec:
    if canonical == "any":
        return ServiceSpec(PROTO_ANY)
    proto_name, _, ports = canonical.partition("/")
    proto = SERVICE_PROTOCOLS[proto_name]
    if not ports:
        return ServiceSpec(proto)
    lo_text, _, hi_text = ports.partition("-")
    lo = int(lo_text)
    return ServiceSpec(proto, lo, int(hi_text) if hi_text else lo)


# ---- users (User-ID): who is behind an address, as rules' `users:` and UserGroups name them

# A directory's user names: `alice`, `alice@corp.example`, `corp\alice`, a machine account `web01$`.
# Compared case-insensitively (as LDAP and Active Directory do): the canonical spelling is lower case.
USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@\\$-]{0,127}$"
USER_NAME_HELP = (
    "must be a user name: 1-128 letters, digits, '.', '_', '@', '\\', '$' or '-', starting with a letter or digit"
)
_USER_NAME_RE = re.compile(USER_NAME_PATTERN)
USER_SPECIALS = ("any", "known-user", "unknown")
USER_REF_PATTERN = (
    r"^(any|known-user|unknown|group:[A-Za-z0-9][A-Za-z0-9._-]{0,62}|"
    r"[A-Za-z0-9][A-Za-z0-9._@\\$-]{0,127})$"
)


def check_user_name(value: str) -> str:
    """A user name, lower-cased; the words `users:` gives a meaning of its own are not names."""
    if not _USER_NAME_RE.match(value):
        raise ValueError(USER_NAME_HELP)
    canonical = value.lower()
    if canonical in USER_SPECIALS:
        raise ValueError(f"{canonical!r} is a reserved word of `users:`, not a user name")
    return canonical


@dataclass(frozen=True)
class UserRef:
    """A parsed `users:` item."""

    kind: Literal["any", "known-user", "unknown", "group", "user"]
    value: str = ""  # the group's name, or the user's canonical name


def check_user_ref(value: str) -> str:
    """`any`, `known-user`, `unknown`, `group:NAME` (a UserGroup of the rule's vsys) or a user name."""
    if value in USER_SPECIALS:
        return value
    kind, sep, rest = value.partition(":")
    if sep:
        if kind == "group":
            check_name(rest)
            return value
        raise ValueError("must be any, known-user, unknown, group:NAME or a user name")
    if value.lower() in USER_SPECIALS:
        raise ValueError(f"write {value.lower()!r} in lower case")
    return check_user_name(value)


def parse_user_ref(canonical: str) -> UserRef:
    if canonical in USER_SPECIALS:
        return UserRef(canonical)  # type: ignore[arg-type]
    if canonical.startswith("group:"):
        return UserRef("group", canonical[6:])
    return UserRef("user", canonical)
