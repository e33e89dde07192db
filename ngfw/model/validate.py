"""Checks across resources: duplicates, references, and address bindings.

A single document can be well-formed and still make no sense next to the others:
a second `web-01`, a rule naming a group that does not exist (or exists in another
tenant), a MAC claimed by two workloads. These checks run once every document has
parsed, and report every problem, each from the point of view of the resource that
has to change.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence, Set

from ngfw.model import syntax
from ngfw.model.resources import (
    Group,
    LoadedResource,
    Resource,
    SecurityPolicy,
    SignatureSet,
    ThreatProfile,
    UserGroup,
    UserSource,
    VirtualSystem,
    Workload,
    vsys_of,
)

# (kind, vsys, name); a VirtualSystem is its own vsys.
Identity = tuple[str, str, str]


def identity(resource: Resource) -> Identity:
    return (resource.kind, vsys_of(resource), resource.metadata.name)


def cross_check(resources: Sequence[LoadedResource], broken: Set[Identity] = frozenset()) -> list[str]:
    """Every cross-resource problem, in resource order.

    `broken` names resources that exist but failed to parse; references to them
    are not reported again, so one typo yields one problem rather than a cascade.
    """
    checker = _Checker(resources, broken)
    return checker.run()


class _Checker:
    def __init__(self, resources: Sequence[LoadedResource], broken: Set[Identity]) -> None:
        self.resources = resources
        self.broken = broken
        self.problems: list[str] = []
        self.first: dict[Identity, LoadedResource] = {}
        for loaded in resources:
            self.first.setdefault(identity(loaded.resource), loaded)
        self.vsys_names = sorted(n for k, _, n in self.first if k == "VirtualSystem")
        # name -> vsys names holding a workload/group of that name, for "it is in tenant-b" hints
        self.homes: dict[tuple[str, str], list[str]] = {}
        for kind, vsys, name in list(self.first) + list(broken):
            self.homes.setdefault((kind, name), []).append(vsys)
        # UserSources with a directory, which UserGroups' `ldap` take members from
        self.directories = sorted(
            item.resource.metadata.name
            for item in resources
            if isinstance(item.resource, UserSource) and item.resource.spec.ldap is not None
        )

    def exists(self, kind: str, vsys: str, name: str) -> bool:
        key = (kind, vsys, name)
        return key in self.first or key in self.broken

    def run(self) -> list[str]:
        macs: dict[str, tuple[LoadedResource, str]] = {}
        ips: dict[str, tuple[LoadedResource, str]] = {}
        rule_names: dict[tuple[str, str], tuple[LoadedResource, int]] = {}
        for loaded in self.resources:
            self._check_unique(loaded)
            resource = loaded.resource
            if not isinstance(resource, VirtualSystem | SignatureSet | UserSource):
                self._check_vsys(loaded, resource.metadata.vsys)
            if isinstance(resource, Workload):
                self._check_bindings(loaded, resource, macs, ips)
            elif isinstance(resource, Group):
                self._check_group(loaded, resource)
            elif isinstance(resource, SecurityPolicy):
                self._check_rules(loaded, resource, rule_names)
            elif isinstance(resource, ThreatProfile):
                self._check_exceptions(loaded, resource)
            elif isinstance(resource, UserGroup):
                self._check_user_group(loaded, resource)
        return self.problems

    def _check_user_group(self, loaded: LoadedResource, group: UserGroup) -> None:
        """A directory group names the UserSource whose directory holds it, or there is exactly one."""
        ldap = group.spec.ldap
        if ldap is None:
            return
        if ldap.source is not None:
            if ldap.source not in self.directories:
                has = f" (UserSources with one: {', '.join(self.directories)})" if self.directories else ""
                self.problems.append(
                    loaded.problem("spec.ldap.source", f"UserSource {ldap.source!r} has no directory (spec.ldap){has}")
                )
        elif not self.directories:
            self.problems.append(
                loaded.problem(
                    "spec.ldap", "no UserSource has a directory (spec.ldap): add one to read this group from"
                )
            )
        elif len(self.directories) > 1:
            self.problems.append(
                loaded.problem(
                    "spec.ldap.source",
                    "several UserSources have a directory (" + ", ".join(self.directories) + "): name one",
                )
            )

    def _check_unique(self, loaded: LoadedResource) -> None:
        first = self.first[identity(loaded.resource)]
        if first is not loaded:
            self.problems.append(
                loaded.problem("metadata.name", f"duplicate {loaded.label} (first defined in {first.origin})")
            )

    def _check_vsys(self, loaded: LoadedResource, vsys: str) -> None:
        if self.exists("VirtualSystem", vsys, vsys):
            return
        close = difflib.get_close_matches(vsys, self.vsys_names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        self.problems.append(loaded.problem("metadata.vsys", f"VirtualSystem {vsys!r} does not exist{hint}"))

    def _check_bindings(
        self,
        loaded: LoadedResource,
        workload: Workload,
        macs: dict[str, tuple[LoadedResource, str]],
        ips: dict[str, tuple[LoadedResource, str]],
    ) -> None:
        # The dataplane maps a frame's source MAC and packet's source IP to exactly one
        # workload, across all tenants; a second claim would make identity ambiguous.
        ports: set[str | None] = set()
        for i, interface in enumerate(workload.spec.interfaces):
            ports.add(interface.port)
            bindings = [(f"spec.interfaces[{i}].mac", interface.mac, macs, "MAC")]
            bindings += [(f"spec.interfaces[{i}].ips[{j}]", ip, ips, "IP") for j, ip in enumerate(interface.ips)]
            for field, value, seen, what in bindings:
                if value in seen:
                    other, other_field = seen[value]
                    owner = "this workload" if other is loaded else f"{other.label} ({other.file})"
                    self.problems.append(
                        loaded.problem(field, f"{what} {value} is already bound to {owner} at {other_field}")
                    )
                else:
                    seen[value] = (loaded, field)
        if len(ports) > 1:
            # The compiled policy pins a workload to one port, not one port per MAC.
            listed = ", ".join(sorted(repr(p) if p else "none" for p in ports))
            self.problems.append(
                loaded.problem(
                    "spec.interfaces", f"all interfaces of a workload must name the same port (got {listed})"
                )
            )

    def _missing(self, kind: str, vsys: str, name: str) -> str | None:
        """Why `kind/name` cannot be referenced from `vsys`, or None when it can."""
        if self.exists(kind, vsys, name):
            return None
        elsewhere = sorted(set(self.homes.get((kind, name), [])) - {vsys})
        if elsewhere:
            hint = "; reference other tenants by cidr:" if kind in ("Workload", "Group") else ""
            return f"{kind} {name!r} does not exist in vsys {vsys!r} (it is in {', '.join(elsewhere)}{hint})"
        return f"{kind} {name!r} does not exist in vsys {vsys!r}"

    def _check_group(self, loaded: LoadedResource, group: Group) -> None:
        for i, member in enumerate(group.spec.members or []):
            why = self._missing("Workload", group.metadata.vsys, syntax.parse_ref(member).value)
            if why:
                self.problems.append(loaded.problem(f"spec.members[{i}]", why))

    def _check_rules(
        self,
        loaded: LoadedResource,
        policy: SecurityPolicy,
        rule_names: dict[tuple[str, str], tuple[LoadedResource, int]],
    ) -> None:
        vsys = policy.metadata.vsys
        for r, rule in enumerate(policy.spec.rules):
            key = (vsys, rule.name)
            if key in rule_names:
                other, other_index = rule_names[key]
                self.problems.append(
                    loaded.problem(
                        f"spec.rules[{r}].name",
                        f"duplicate rule name {rule.name!r} in vsys {vsys!r} "
                        f"(first used by {other.label} spec.rules[{other_index}], {other.file})",
                    )
                )
            else:
                rule_names[key] = (loaded, r)
            for side, items in (("from", rule.from_), ("to", rule.to)):
                for i, item in enumerate(items):
                    ref = syntax.parse_ref(item)
                    if ref.kind in ("vm", "group"):
                        kind = "Workload" if ref.kind == "vm" else "Group"
                        why = self._missing(kind, vsys, ref.value)
                        if why:
                            self.problems.append(loaded.problem(f"spec.rules[{r}].{side}[{i}]", f"{item}: {why}"))
            for i, item in enumerate(rule.users):
                user_ref = syntax.parse_user_ref(item)
                if user_ref.kind == "group":
                    why = self._missing("UserGroup", vsys, user_ref.value)
                    if why:
                        self.problems.append(loaded.problem(f"spec.rules[{r}].users[{i}]", f"{item}: {why}"))
            if rule.inspect is not None and rule.inspect != "default":
                why = self._missing("ThreatProfile", vsys, rule.inspect)
                if why:
                    self.problems.append(loaded.problem(f"spec.rules[{r}].inspect", why))

    def _check_exceptions(self, loaded: LoadedResource, profile: ThreatProfile) -> None:
        """An exception's `vm:`/`group:` endpoints name workloads and groups of the profile's vsys, as a rule's do."""
        vsys = profile.metadata.vsys
        for e, exception in enumerate(profile.spec.exceptions):
            for side in ("source", "destination", "endpoints"):
                for i, item in enumerate(getattr(exception, side) or []):
                    ref = syntax.parse_ref(item)
                    if ref.kind in ("vm", "group"):
                        why = self._missing("Workload" if ref.kind == "vm" else "Group", vsys, ref.value)
                        if why:
                            self.problems.append(loaded.problem(f"spec.exceptions[{e}].{side}[{i}]", f"{item}: {why}"))
