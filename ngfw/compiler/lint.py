"""Warnings about a compiled policy that is valid but probably not what was meant.

Only what can be said for certain and cheaply: a rule that can never match,
because an earlier rule of its vsys matches everything it would (the classic case
is a rule written below an any/any/any rule), or because one of its sides matches
no endpoint at all (a group whose selector selects nobody).
"""

from __future__ import annotations

from collections.abc import Iterable

from ngfw.compiler.tables import AddressSet, CompiledPolicy, CompiledRule, Service
from ngfw.wire import PROTO_ANY


def lint(policy: CompiledPolicy) -> list[str]:
    """Warnings, one line each, in rule order; an empty list means nothing to say."""
    warnings: list[str] = []
    earlier: list[CompiledRule] = []
    current_vsys = -1
    position = 0
    for rule in policy.rules:
        if rule.vsys != current_vsys:
            current_vsys, earlier, position = rule.vsys, [], 0
        position += 1
        where = f"{policy.vsys_name(rule.vsys)}: rule {rule.name!r} (#{position})"
        empty = [side for side, addresses in (("from", rule.src), ("to", rule.dst)) if _matches_nothing(addresses)]
        if empty:
            warnings.append(f"{where} never matches: {' and '.join(empty)} match no endpoint")
        else:
            cover = next((e for e in earlier if _covers(e, rule)), None)
            if cover is not None:
                same = "redundant" if cover.action == rule.action else "never applies"
                warnings.append(
                    f"{where} is shadowed by rule {cover.name!r}, which matches every flow it would ({same})"
                )
        earlier.append(rule)
    return warnings


def _matches_nothing(addresses: AddressSet) -> bool:
    return not addresses.any and not addresses.workloads and not addresses.cidrs


def _covers(first: CompiledRule, later: CompiledRule) -> bool:
    """True when every flow `later` matches is matched by `first` (conservative: may say False)."""
    return (
        _addresses_cover(first.src, later.src)
        and _addresses_cover(first.dst, later.dst)
        and _services_cover(first.services, later.services)
    )


def _addresses_cover(first: AddressSet, later: AddressSet) -> bool:
    if first.any:
        return True
    if later.any:
        return False
    return later.workloads <= first.workloads and all(
        any(cidr.version == outer.version and cidr.subnet_of(outer) for outer in first.cidrs)  # type: ignore[arg-type]
        for cidr in later.cidrs
    )


def _services_cover(first: Iterable[Service], later: Iterable[Service]) -> bool:
    first_list = list(first)
    later_list = list(later)
    if not first_list:
        return True  # empty: any service
    if not later_list:
        return False
    return all(any(_service_covers(f, s) for f in first_list) for s in later_list)


def _service_covers(first: Service, later: Service) -> bool:
    if first.proto == PROTO_ANY:
        return True
    return first.proto == later.proto and first.port_lo <= later.port_lo and later.port_hi <= first.port_hi
