"""Compiling policy resources into the fastpath's `CompiledPolicy`.

Names become indexes (vsys by sorted name, workloads by sorted vsys and name),
groups become sets of workload indexes, and each vsys's SecurityPolicies are
concatenated into one ordered rule list. The result depends only on what the
resources say, never on how they were spelt or split into files, so the digest
identifies a policy across hosts and commits.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from os import PathLike

from ngfw.compiler.build import BuildRecord
from ngfw.compiler.catalogue import Catalogue, load_catalogue
from ngfw.compiler.principals import group_principal, user_principal
from ngfw.compiler.tables import (
    Action,
    AddressSet,
    CompiledException,
    CompiledPolicy,
    CompiledProfile,
    CompiledRule,
    CompiledWorkload,
    IPNetwork,
    Service,
    VsysLimits,
)
from ngfw.compiler.threshold_config import parse_threshold_config
from ngfw.model import syntax
from ngfw.model.errors import PolicyError
from ngfw.model.loader import load_resources
from ngfw.model.resources import (
    Group,
    LoadedResource,
    Resource,
    Rule,
    SecurityPolicy,
    SignatureSet,
    ThreatProfile,
    UserGroup,
    VirtualSystem,
    Workload,
    dump,
    parse_sid,
    vsys_of,
)
from ngfw.model.validate import cross_check
from ngfw.wire import PROTO_ANY

__all__ = [
    "compile_resources",
    "compile_workload",
    "digest",
    "group_members",
    "load_policy",
    "policy_digest",
    "workloads_by_vsys",
]

_ACTIONS = {"allow": Action.ALLOW, "deny": Action.DENY, "reject": Action.REJECT}
_UNKNOWN_SOURCE = "<resources>"


def load_policy(path: str | PathLike[str], version: int = 1, catalogue: Catalogue | None = None) -> CompiledPolicy:
    """Load, validate and compile the policy at `path` (a file or a directory).

    A file that defines nothing, or no VirtualSystem, is refused: enforcing it would deny every flow, and
    that is what a truncated write or an emptied directory looks like. A policy meant to deny everything
    says so with a VirtualSystem (and no rules)."""
    resources = load_resources(path)
    if not resources:
        raise PolicyError(
            [
                f"{path}: the policy is empty: enforcing it would deny every flow (a truncated write?); "
                "a policy meant to deny everything defines a VirtualSystem with no rules"
            ]
        )
    if not any(isinstance(item.resource, VirtualSystem) for item in resources):
        raise PolicyError(
            [
                f"{path}: the policy defines no VirtualSystem: every workload's traffic would be denied; "
                "define the vsys its workloads and rules belong to"
            ]
        )
    return compile_resources(resources, version, catalogue)


def compile_resources(
    resources: Iterable[LoadedResource | Resource], version: int, catalogue: Catalogue | None = None
) -> CompiledPolicy:
    """Compile resources given in load order (the order of SecurityPolicies matters).

    Raises `PolicyError` when the resources do not form a valid policy, so that
    resources from any source (files, the control API) get the same checks.
    """
    loaded = [
        item if isinstance(item, LoadedResource) else LoadedResource(item, _UNKNOWN_SOURCE, i)
        for i, item in enumerate(resources)
    ]
    problems = cross_check(loaded)
    if problems:
        raise PolicyError(problems)

    items = [item.resource for item in loaded]
    vsys_by_name = {r.metadata.name: r for r in items if isinstance(r, VirtualSystem)}
    vsys_names = sorted(vsys_by_name)
    vsys_index = {name: i for i, name in enumerate(vsys_names)}
    vsys_limits = tuple(
        VsysLimits(vsys_by_name[name].spec.limits.max_sessions, vsys_by_name[name].spec.limits.new_sessions_per_second)
        for name in vsys_names
    )

    workloads = sorted((r for r in items if isinstance(r, Workload)), key=lambda w: (w.metadata.vsys, w.metadata.name))
    workload_index = {(w.metadata.vsys, w.metadata.name): i for i, w in enumerate(workloads)}
    by_vsys = workloads_by_vsys(workloads)
    groups = {
        (g.metadata.vsys, g.metadata.name): group_members(g, by_vsys.get(g.metadata.vsys, ()), workload_index)
        for g in items
        if isinstance(g, Group)
    }

    user_groups = {(g.metadata.vsys, g.metadata.name): g for g in items if isinstance(g, UserGroup)}
    if catalogue is None:
        catalogue = load_catalogue()  # the shipped one: applications are named in rules and logs
    rules: list[CompiledRule] = []
    app_problems: list[str] = []
    profiles: list[CompiledProfile] = []
    profile_index: dict[tuple[str, str], int] = {}

    def profile_of(rule: Rule, vsys: str) -> int:
        if rule.inspect is None:
            return -1
        key = (vsys, rule.inspect)
        if key not in profile_index:
            found = next(
                (
                    r
                    for r in items
                    if isinstance(r, ThreatProfile) and r.metadata.vsys == vsys and r.metadata.name == rule.inspect
                ),
                None,
            )
            if found is None:  # `default` without a resource of that name: every set, as written
                profiles.append(CompiledProfile(rule.inspect, vsys_index[vsys]))
            else:
                profiles.append(
                    CompiledProfile(
                        rule.inspect,
                        vsys_index[vsys],
                        tuple(found.spec.signatures),
                        found.spec.action,
                        found.spec.depth,
                        _exceptions(found, vsys, workload_index, groups),
                        parse_threshold_config(found.spec.thresholds),
                        capture=found.spec.capture.packets if found.spec.capture else 0,
                    )
                )
            profile_index[key] = len(profiles) - 1
        return profile_index[key]

    for vsys in vsys_names:
        for loaded_policy in (
            x for x in loaded if isinstance(x.resource, SecurityPolicy) and x.resource.metadata.vsys == vsys
        ):
            policy = loaded_policy.resource
            assert isinstance(policy, SecurityPolicy)
            for number, rule in enumerate(policy.spec.rules):
                apps = _applications(rule, catalogue, loaded_policy, number, app_problems)
                rules.append(
                    _compile_rule(
                        rule, vsys, vsys_index[vsys], workload_index, groups, apps, profile_of(rule, vsys), user_groups
                    )
                )
    if app_problems:
        raise PolicyError(app_problems)

    sources = tuple(dict.fromkeys(item.file for item in loaded if item.file != _UNKNOWN_SOURCE))
    return CompiledPolicy(
        version=version,
        vsys=tuple(vsys_names),
        workloads=tuple(compile_workload(w, vsys_index) for w in workloads),
        rules=tuple(rules),
        catalogue=catalogue,
        profiles=tuple(profiles),
        vsys_limits=vsys_limits,
        signature_sets=tuple(sorted((r.metadata.name, r.spec.sha256) for r in items if isinstance(r, SignatureSet))),
        build=BuildRecord(
            sources=sources,
            groups={(g.metadata.vsys, g.metadata.name): g for g in items if isinstance(g, Group)},
            group_members=groups,
            policy_resources=tuple(r for r in items if not isinstance(r, Workload)),
            workload_resources=tuple(workloads),
        ),
    )


def _exceptions(
    profile: ThreatProfile,
    vsys: str,
    workload_index: dict[tuple[str, str], int],
    groups: dict[tuple[str, str], frozenset[int]],
) -> tuple[CompiledException, ...]:
    out = []
    for index, exception in enumerate(profile.spec.exceptions):
        gid, sid = parse_sid(exception.sid)
        sides = {
            side: _address_set(items, vsys, workload_index, groups) if items else None
            for side, items in (
                ("source", exception.source),
                ("destination", exception.destination),
                ("endpoints", exception.endpoints),
            )
        }
        out.append(CompiledException(gid, sid, index, **sides))
    return tuple(out)


def _applications(
    rule: Rule, catalogue: Catalogue, loaded: LoadedResource, number: int, problems: list[str]
) -> frozenset[int]:
    """App ids a rule names (empty: any), each name checked against the catalogue."""
    if rule.applications == ["any"]:
        return frozenset()
    ids: set[int] = set()
    for i, name in enumerate(rule.applications):
        app_id = catalogue.by_name.get(name)
        if app_id is None:
            problems.append(
                loaded.problem(
                    f"spec.rules[{number}].applications[{i}]",
                    f"unknown application {name!r} (see `ngfw apps` or rules/apps/)",
                )
            )
        else:
            ids.add(app_id)
    return frozenset(ids)


def digest(resources: Sequence[Resource]) -> str:
    """sha256 of the canonical documents, in an order that carries meaning only where it matters.

    Documents are sorted by (kind, vsys, name), except that a vsys's SecurityPolicies
    keep their load order (it is their evaluation order). Defaults are filled in and
    values canonicalised, so `log: false` and no `log` hash alike.
    """

    def key(resource: Resource) -> tuple[str, str, str]:
        name = "" if isinstance(resource, SecurityPolicy) else resource.metadata.name
        return (resource.kind, vsys_of(resource), name)

    documents = [dump(r) for r in sorted(resources, key=key)]  # sorted() is stable
    canonical = json.dumps(documents, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def policy_digest(policy: CompiledPolicy) -> str:
    """`digest` of the resources `policy` was compiled from ("" for a policy built without resources).

    Computed when asked for (`ngfw check` does; an identity update on a host does not, and at 10,000 rules
    it would be a tenth of a second of the update)."""
    build = policy.build
    if not build.policy_resources and not build.workload_resources:
        return ""
    return digest(list(build.policy_resources) + list(build.workload_resources))


def workloads_by_vsys(workloads: Iterable[Workload]) -> dict[str, list[Workload]]:
    """Workloads grouped by vsys: a group's selector is matched against its own vsys's workloads only."""
    by_vsys: dict[str, list[Workload]] = {}
    for workload in workloads:
        by_vsys.setdefault(workload.metadata.vsys, []).append(workload)
    return by_vsys


def group_members(group: Group, workloads: Sequence[Workload], index: dict[tuple[str, str], int]) -> frozenset[int]:
    """Workload indexes of `group`: those of `workloads` (its vsys's, or all) its selector matches, and its members."""
    vsys = group.metadata.vsys
    members: set[int] = set()
    selector = group.spec.selector
    if selector:
        members.update(
            index[(vsys, w.metadata.name)]
            for w in workloads
            if w.metadata.vsys == vsys and all(w.metadata.labels.get(k) == v for k, v in selector.items())
        )
    for member in group.spec.members or []:
        members.add(index[(vsys, syntax.parse_ref(member).value)])
    return frozenset(members)


def compile_workload(workload: Workload, vsys_index: dict[str, int]) -> CompiledWorkload:
    """One Workload as the fastpath's table row (identity updates compile workloads alone with it)."""
    interfaces = workload.spec.interfaces
    return CompiledWorkload(
        name=workload.metadata.name,
        vsys=vsys_index[workload.metadata.vsys],
        macs=tuple(syntax.mac_bytes(i.mac) for i in interfaces),
        ips=tuple(ipaddress.ip_address(ip) for i in interfaces for ip in i.ips),
        port=interfaces[0].port,  # validation made every interface name the same port
        labels=tuple(sorted(workload.metadata.labels.items())),
        owner=workload.spec.owner,
    )


def _compile_rule(
    rule: Rule,
    vsys: str,
    vsys_number: int,
    workload_index: dict[tuple[str, str], int],
    groups: dict[tuple[str, str], frozenset[int]],
    apps: frozenset[int] = frozenset(),
    profile: int = -1,
    user_groups: dict[tuple[str, str], UserGroup] | None = None,
) -> CompiledRule:
    app_default = "application-default" in rule.services
    users = _users(rule, vsys, user_groups or {})
    return CompiledRule(
        name=rule.name,
        vsys=vsys_number,
        src=_address_set(rule.from_, vsys, workload_index, groups),
        dst=_address_set(rule.to, vsys, workload_index, groups),
        services=_services([s for s in rule.services if s != "application-default"]),
        action=_ACTIONS[rule.action],
        log=rule.log,
        apps=apps,
        app_default=app_default,
        profile=profile,
        capture=rule.capture.packets if rule.capture else 0,
        users=users.items,
        user_principals=users.principals,
        users_known=users.known,
        users_unknown=users.unknown,
    )


@dataclass(frozen=True)
class _RuleUsers:
    items: tuple[str, ...] = ()
    principals: tuple[tuple[int, int], ...] = ()
    known: int = -1
    unknown: int = -1


def _users(rule: Rule, vsys: str, user_groups: dict[tuple[str, str], UserGroup]) -> _RuleUsers:
    """A rule's `users:` as CompiledRule fields: a UserGroup is its static members (named here, so a commit
    changes them) and its directory group's principal (whose members control resolves and hosts look up)."""
    if rule.users == ["any"]:
        return _RuleUsers()
    principals: dict[int, int] = {}  # principal -> the first item naming it
    known = unknown = -1
    for index, item in enumerate(rule.users):
        ref = syntax.parse_user_ref(item)
        if ref.kind == "known-user":
            known = index
        elif ref.kind == "unknown":
            unknown = index
        elif ref.kind == "user":
            principals.setdefault(user_principal(ref.value), index)
        else:
            group = user_groups[(vsys, ref.value)]
            if group.spec.ldap is not None:
                principals.setdefault(group_principal(vsys, ref.value), index)
            for member in group.spec.members or []:
                principals.setdefault(user_principal(member), index)
    return _RuleUsers(tuple(rule.users), tuple(principals.items()), known, unknown)


def _address_set(
    items: Iterable[str],
    vsys: str,
    workload_index: dict[tuple[str, str], int],
    groups: dict[tuple[str, str], frozenset[int]],
) -> AddressSet:
    workloads: set[int] = set()
    cidrs: dict[IPNetwork, None] = {}  # ordered set: keeps the user's order, drops repeats
    refs: list[str] = []
    for item in items:
        ref = syntax.parse_ref(item)
        if ref.kind == "any":
            return AddressSet(any=True)
        if ref.kind == "vm":
            workloads.add(workload_index[(vsys, ref.value)])
            refs.append(item)
        elif ref.kind == "group":
            workloads |= groups[(vsys, ref.value)]
            refs.append(item)
        else:
            cidrs[ipaddress.ip_network(ref.value)] = None
    return AddressSet(workloads=frozenset(workloads), cidrs=tuple(cidrs), refs=tuple(refs))


def _services(items: Iterable[str]) -> tuple[Service, ...]:
    services: dict[Service, None] = {}
    for item in items:
        spec = syntax.parse_service(item)
        if spec.proto == PROTO_ANY:
            return ()  # `any` anywhere in the list: every service
        services[Service(spec.proto, spec.port_lo, spec.port_hi)] = None
    return tuple(services)
