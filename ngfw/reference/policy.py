"""Twin of the fastpath's policy stage: which rule of which vsys decides a new flow.

Written from docs/policy.md ("Evaluation") over a `CompiledPolicy`, by scanning every rule
in order: the fastpath's per-source candidate lists are an optimisation and must give the
same answers as this plain scan.
"""

from __future__ import annotations

import ipaddress

from ngfw.compiler.tables import (
    Action,
    AddressSet,
    CompiledPolicy,
    CompiledRule,
    IPAddress,
    Service,
)
from ngfw.wire import PROTO_ANY, PROTO_TCP, PROTO_UDP

NO_RULE = -1  # the implicit default deny, and the verdict of a flow with no workload at all
NO_VSYS = -1


def decide(
    policy: CompiledPolicy,
    src_wl: int,
    src_ip: IPAddress | str,
    dst_wl: int,
    dst_ip: IPAddress | str,
    proto: int,
    dport: int,
    user: int = 0,
    groups: frozenset[int] = frozenset(),
) -> tuple[int, int, int]:
    """(action, rule, vsys) for a flow from `src_*` (the initiator) to `dst_*`.

    `user` is the principal of the user behind the source address (ngfw.compiler.principals; 0: none) and
    `groups` the principals of the directory groups it is in.

    `src_wl`/`dst_wl` index `policy.workloads`, -1 for an endpoint that is not a workload.
    `rule` is the deciding rule's index, -1 for the implicit default deny; `vsys` is the vsys
    that decided (and owns the flow's logs), -1 when neither endpoint is a workload.
    """
    sip = ipaddress.ip_address(src_ip)
    dip = ipaddress.ip_address(dst_ip)
    src_vsys = policy.workloads[src_wl].vsys if src_wl >= 0 else NO_VSYS
    dst_vsys = policy.workloads[dst_wl].vsys if dst_wl >= 0 else NO_VSYS
    if src_vsys == NO_VSYS and dst_vsys == NO_VSYS:
        return int(Action.DENY), NO_RULE, NO_VSYS
    if src_vsys == NO_VSYS:
        # only the destination is a workload: its vsys decides, the source is the outside world
        return _verdict(
            policy, dst_vsys, first_match(policy, dst_vsys, -1, sip, dst_wl, dip, proto, dport, user, groups)
        )
    egress = _verdict(
        policy, src_vsys, first_match(policy, src_vsys, src_wl, sip, dst_wl, dip, proto, dport, user, groups)
    )
    if egress[0] != Action.ALLOW or dst_vsys in (NO_VSYS, src_vsys):
        return egress
    # workloads of two vsys: the destination's vsys must allow it too, and sees the source as
    # outside (`vm:`/`group:` name workloads of the rule's own vsys only)
    ingress_rule = first_match(policy, dst_vsys, -1, sip, dst_wl, dip, proto, dport, user, groups)
    ingress = _verdict(policy, dst_vsys, ingress_rule)
    if ingress[0] != Action.ALLOW:
        return ingress
    return egress  # both allow: the source's rule names the flow


def first_match(
    policy: CompiledPolicy,
    vsys: int,
    src_wl: int,
    src_ip: IPAddress,
    dst_wl: int,
    dst_ip: IPAddress,
    proto: int,
    dport: int,
    user: int = 0,
    groups: frozenset[int] = frozenset(),
) -> int:
    """Index of the first rule of `vsys` matching the flow, or -1."""
    for index, rule in enumerate(policy.rules):
        if rule.vsys != vsys:
            continue
        if (
            endpoint_matches(rule.src, src_wl, src_ip)
            and endpoint_matches(rule.dst, dst_wl, dst_ip)
            and services_match(rule.services, proto, dport)
            and users_match(rule, user, groups) >= 0
        ):
            return index
    return NO_RULE


def users_match(rule: CompiledRule, user: int, groups: frozenset[int] = frozenset()) -> int:
    """Which item of the rule's `users` the flow's user matches (0 for a rule without `users`), or -1.

    `user` is the user's principal (0: no user is known behind the source address), `groups` the principals
    of its directory groups. `unknown` matches only the absence of a user, `known-user` any user."""
    if not rule.users:
        return 0
    if user == 0:
        return rule.users_unknown
    # the first item that matches (principals are listed in the order of their items)
    found = next((item for value, item in rule.user_principals if value == user or value in groups), -1)
    if rule.users_known >= 0 and (found < 0 or rule.users_known < found):
        return rule.users_known
    return found


def endpoint_matches(side: AddressSet, wl: int, ip: IPAddress) -> bool:
    # `in` is False across families: an IPv6 prefix never contains an IPv4 endpoint, and back
    return side.any or (wl >= 0 and wl in side.workloads) or any(ip in net for net in side.cidrs)


def services_match(services: tuple[Service, ...], proto: int, dport: int) -> bool:
    if not services:
        return True  # `any`
    for svc in services:
        if svc.proto != PROTO_ANY and svc.proto != proto:
            continue
        # only TCP and UDP have destination ports; ICMP identifiers are no ports to match
        if proto in (PROTO_TCP, PROTO_UDP) and not svc.port_lo <= dport <= svc.port_hi:
            continue
        return True
    return False


def _verdict(policy: CompiledPolicy, vsys: int, rule: int) -> tuple[int, int, int]:
    if rule == NO_RULE:
        return int(Action.DENY), NO_RULE, vsys
    return int(policy.rules[rule].action), rule, vsys
