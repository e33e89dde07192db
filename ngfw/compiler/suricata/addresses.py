"""Header addresses and ports: variables, lists, ranges and negation reduced to integer ranges.

Semantics follow Suricata (`DetectAddressMergeNot`): a list is the union of its
positive members minus its negated ones, and only negated members mean "everything
but them" — per IP version: a version with no member at all stays empty. So
`!$HOME_NET` with an IPv4-only HOME_NET matches no IPv6 address, exactly as in
Suricata, where `$EXTERNAL_NET` rules never fire on IPv6 with the default HOME_NET.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache

from ngfw.compiler.suricata.lexer import RuleError, is_decimal
from ngfw.compiler.suricata.model import AddressMatcher, IntRange, PortMatcher

# suricata.yaml's defaults (address-groups and port-groups), with HOME_NET as the
# private ranges the corpus README asks for.
DEFAULT_VARIABLES: dict[str, str] = {
    "HOME_NET": "[10.0.0.0/8,172.16.0.0/12,192.168.0.0/16]",
    "EXTERNAL_NET": "!$HOME_NET",
    "HTTP_SERVERS": "$HOME_NET",
    "SMTP_SERVERS": "$HOME_NET",
    "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET",
    "TELNET_SERVERS": "$HOME_NET",
    "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET",
    "DNP3_SERVER": "$HOME_NET",
    "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET",
    "MODBUS_SERVER": "$HOME_NET",
    "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
    "HTTP_PORTS": "80",
    "SHELLCODE_PORTS": "!80",
    "ORACLE_PORTS": "1521",
    "SSH_PORTS": "22",
    "DNP3_PORTS": "20000",
    "MODBUS_PORTS": "502",
    "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081",
    "VXLAN_PORTS": "4789",
    "TEREDO_PORTS": "3544",
}

V4_ALL: IntRange = (0, 2**32 - 1)
V6_ALL: IntRange = (0, 2**128 - 1)
PORT_ALL: IntRange = (0, 65535)


def normalize(ranges: list[IntRange]) -> tuple[IntRange, ...]:
    """Sorted, merged (adjacent ranges joined)."""
    out: list[IntRange] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return tuple(out)


def subtract(ranges: tuple[IntRange, ...], minus: tuple[IntRange, ...]) -> tuple[IntRange, ...]:
    out: list[IntRange] = []
    for lo, hi in ranges:
        pieces = [(lo, hi)]
        for mlo, mhi in minus:
            next_pieces: list[IntRange] = []
            for plo, phi in pieces:
                if mhi < plo or mlo > phi:
                    next_pieces.append((plo, phi))
                    continue
                if plo < mlo:
                    next_pieces.append((plo, mlo - 1))
                if mhi < phi:
                    next_pieces.append((mhi + 1, phi))
            pieces = next_pieces
        out.extend(pieces)
    return normalize(out)


def _split_list(text: str) -> list[str]:
    """Top-level comma-separated members of `a,[b,c],!d` (brackets nest)."""
    members: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            members.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    members.append("".join(current).strip())
    if depth != 0:
        raise RuleError("malformed rule", f"unbalanced brackets in {text!r}")
    if any(not m for m in members):
        raise RuleError("malformed rule", f"empty list member in [{text}]")
    return members


class Resolver:
    """Parses address and port expressions against one variable table, memoizing results
    (ET Open repeats a handful of expressions tens of thousands of times)."""

    def __init__(self, variables: dict[str, str]) -> None:
        self.variables = variables
        self._addresses: dict[str, AddressMatcher] = {}
        self._ports: dict[str, PortMatcher] = {}

    # -- addresses -------------------------------------------------------------------------
    def address(self, text: str) -> AddressMatcher:
        cached = self._addresses.get(text)
        if cached is None:
            v4, v6 = self._address_sets(text, ())
            if not v4 and not v6:
                raise RuleError("bad address", f"{text!r} leaves no address")
            cached = self._addresses[text] = AddressMatcher(v4, v6)
        return cached

    def _address_sets(self, text: str, seen: tuple[str, ...]) -> tuple[tuple[IntRange, ...], tuple[IntRange, ...]]:
        text = text.strip()
        if text.startswith("!"):
            v4, v6 = self._address_sets(text[1:], seen)
            return _not(v4, V4_ALL), _not(v6, V6_ALL)
        if text.startswith("["):
            if not text.endswith("]"):
                raise RuleError("malformed rule", f"unbalanced brackets in address {text!r}")
            pos4: list[IntRange] = []
            pos6: list[IntRange] = []
            neg4: list[IntRange] = []
            neg6: list[IntRange] = []
            for member in _split_list(text[1:-1]):
                negated = member.startswith("!")
                v4, v6 = self._address_sets(member[1:] if negated else member, seen)
                if negated:
                    neg4.extend(v4)
                    neg6.extend(v6)
                else:
                    pos4.extend(v4)
                    pos6.extend(v6)
            return _merge_not(pos4, neg4, V4_ALL), _merge_not(pos6, neg6, V6_ALL)
        if text.startswith("$"):
            name = text[1:]
            if name in seen:
                raise RuleError("variable loop", " -> ".join((*seen, name)))
            value = self.variables.get(name)
            if value is None:
                raise RuleError("unknown variable", f"${name}")
            return self._address_sets(value, (*seen, name))
        if text == "any":
            return (V4_ALL,), (V6_ALL,)
        return _address_literal(text)

    # -- ports -----------------------------------------------------------------------------
    def ports(self, text: str) -> PortMatcher:
        cached = self._ports.get(text)
        if cached is None:
            ranges = self._port_set(text, ())
            if not ranges:
                raise RuleError("bad port", f"{text!r} leaves no port")
            cached = self._ports[text] = PortMatcher(ranges)
        return cached

    def _port_set(self, text: str, seen: tuple[str, ...]) -> tuple[IntRange, ...]:
        text = text.strip()
        if text.startswith("!"):
            return subtract((PORT_ALL,), self._port_set(text[1:], seen))
        if text.startswith("["):
            if not text.endswith("]"):
                raise RuleError("malformed rule", f"unbalanced brackets in port {text!r}")
            positive: list[IntRange] = []
            negative: list[IntRange] = []
            any_positive = False
            for member in _split_list(text[1:-1]):
                if member.startswith("!"):
                    negative.extend(self._port_set(member[1:], seen))
                else:
                    any_positive = True
                    positive.extend(self._port_set(member, seen))
            base = normalize(positive) if any_positive else (PORT_ALL,)
            return subtract(base, normalize(negative))
        if text.startswith("$"):
            name = text[1:]
            if name in seen:
                raise RuleError("variable loop", " -> ".join((*seen, name)))
            value = self.variables.get(name)
            if value is None:
                raise RuleError("unknown variable", f"${name}")
            return self._port_set(value, (*seen, name))
        if text == "any":
            return (PORT_ALL,)
        lo_text, colon, hi_text = text.partition(":")
        if colon:
            lo = _port_number(lo_text) if lo_text else 0
            hi = _port_number(hi_text) if hi_text else 65535
            if lo > hi:
                raise RuleError("bad port", f"range {text!r} is empty")
            return ((lo, hi),)
        port = _port_number(text)
        return ((port, port),)


def _not(ranges: tuple[IntRange, ...], full: IntRange) -> tuple[IntRange, ...]:
    """`!x` within one IP version: nothing to negate leaves that version empty."""
    return subtract((full,), ranges) if ranges else ()


def _merge_not(positive: list[IntRange], negative: list[IntRange], full: IntRange) -> tuple[IntRange, ...]:
    """One IP version of a list: positives (or everything, if only negatives) minus negatives."""
    if positive:
        return subtract(normalize(positive), normalize(negative))
    return subtract((full,), normalize(negative)) if negative else ()


def _port_number(text: str) -> int:
    if not is_decimal(text) or int(text) > 65535:
        raise RuleError("bad port", repr(text))
    return int(text)


@lru_cache(maxsize=65536)
def _address_literal(text: str) -> tuple[tuple[IntRange, ...], tuple[IntRange, ...]]:
    # IP-list rules (botcc, compromised, ...) hold ~18,000 IPv4 literals; the socket
    # parser is several times faster than `ipaddress` for them.
    if not text.isascii():
        # a rule file's undecodable bytes are kept as surrogates, which the socket parser cannot encode
        raise RuleError("bad address", repr(text))
    address, slash, bits = text.partition("/")
    if "-" not in text and ":" not in text and (not slash or bits.isdigit() and int(bits) <= 32):
        try:
            value = int.from_bytes(socket.inet_pton(socket.AF_INET, address), "big")
        except (OSError, ValueError):  # ValueError: a NUL in the text (fuzzing found it); ipaddress says why
            value = None
        if value is not None:
            host_bits = 32 - (int(bits) if slash else 32)
            low = value >> host_bits << host_bits
            return ((low, low | ((1 << host_bits) - 1)),), ()
    try:
        if "-" in text:
            # Suricata's `a.b.c.d-e.f.g.h` address range.
            first_text, _, last_text = text.partition("-")
            first = ipaddress.ip_address(first_text.strip())
            last = ipaddress.ip_address(last_text.strip())
            if first.version != last.version or int(first) > int(last):
                raise ValueError(text)
            span: IntRange = (int(first), int(last))
            version = first.version
        else:
            network = ipaddress.ip_network(text, strict=False)
            span = (int(network.network_address), int(network.broadcast_address))
            version = network.version
    except ValueError:
        raise RuleError("bad address", repr(text)) from None
    return ((span,), ()) if version == 4 else ((), (span,))


def resolver(variables: dict[str, str] | None) -> Resolver:
    """A resolver over suricata.yaml's defaults overridden by `variables` (names without `$`)."""
    table = dict(DEFAULT_VARIABLES)
    for name, value in (variables or {}).items():
        table[name.lstrip("$")] = value
    return Resolver(table)
