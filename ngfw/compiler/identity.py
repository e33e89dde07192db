"""Identity updates: a compiled policy with new Workloads, without recompiling its rules.

A Workload's bindings (MACs, IPs, port) and labels change through the control API without a
policy commit. Compiling the whole policy again for that costs about a second at 10,000 rules;
here only what depends on Workloads is redone: the workload table (indexes by vsys and name),
group membership (selectors against the new labels) and the workload sets of the rules (and
threat profiles' exceptions) that name `vm:` or `group:` (from the references each `AddressSet` keeps). Rules, services,
applications and profiles are reused as they are.

Anything this cannot vouch for (a reference to a workload that is gone, a duplicate, an
unknown vsys) raises `PolicyError`; callers then compile in full, which names the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ngfw.compiler.policy import compile_workload, group_members, workloads_by_vsys
from ngfw.compiler.tables import AddressSet, CompiledPolicy, CompiledProfile, CompiledRule
from ngfw.model import syntax
from ngfw.model.errors import PolicyError
from ngfw.model.resources import Workload
from ngfw.values import replace

__all__ = ["with_workloads"]


def with_workloads(previous: CompiledPolicy, workloads: Iterable[Workload]) -> CompiledPolicy:
    """`previous` with `workloads` in place of its Workloads (same version, rules and vsys).

    When the set of workloads is the same (a relabel or a rebinding, the common case), workload
    indexes stay, and only the vsys whose workloads changed have their groups and rule sets
    recomputed; everything else is reused as it is. Adding or removing a workload renumbers
    workloads, so then every group and rule set is recomputed (each selector against its own
    vsys's workloads only).
    """
    if not previous.build.policy_resources:
        raise PolicyError(["the previous policy does not say what it was compiled from"])
    ordered = sorted(workloads, key=lambda w: (w.metadata.vsys, w.metadata.name))
    vsys_index = {name: i for i, name in enumerate(previous.vsys)}
    index: dict[tuple[str, str], int] = {}
    for i, workload in enumerate(ordered):
        key = (workload.metadata.vsys, workload.metadata.name)
        if key in index:
            raise PolicyError([f"duplicate Workload {key[0]}/{key[1]}"])
        if key[0] not in vsys_index:
            raise PolicyError([f"Workload {key[0]}/{key[1]}: VirtualSystem {key[0]!r} does not exist"])
        index[key] = i

    old = previous.build.workload_resources
    same_indexes = len(old) == len(ordered) and all(
        (a.metadata.vsys, a.metadata.name) == (b.metadata.vsys, b.metadata.name) for a, b in zip(old, ordered)
    )
    if same_indexes:
        # resources parsed from unchanged documents are the very same objects (the parse cache)
        unchanged = [a is b or a == b for a, b in zip(old, ordered)]
        changed_vsys: set[str] | None = {w.metadata.vsys for w, same in zip(ordered, unchanged) if not same}
        compiled = tuple(
            previous.workloads[i] if same else compile_workload(w, vsys_index)
            for i, (w, same) in enumerate(zip(ordered, unchanged))
        )
    else:
        changed_vsys = None  # every vsys: indexes moved
        compiled = tuple(compile_workload(w, vsys_index) for w in ordered)
    if changed_vsys is not None and not changed_vsys:
        return previous

    def affected(vsys: str) -> bool:
        return changed_vsys is None or vsys in changed_vsys

    by_vsys = workloads_by_vsys(ordered)
    try:
        groups = {
            key: group_members(group, by_vsys.get(key[0], ()), index)
            if affected(key[0])
            else previous.build.group_members[key]
            for key, group in previous.build.groups.items()
        }
    except KeyError as exc:  # a static member that is gone
        raise PolicyError([f"a Group names a Workload that no longer exists: {exc}"]) from None

    expanded: dict[tuple[str, tuple[str, ...]], frozenset[int]] = {}  # rules of a vsys share references

    def members_of(vsys: str, refs: tuple[str, ...]) -> frozenset[int]:
        found = expanded.get((vsys, refs))
        if found is None:
            members: set[int] = set()
            for item in refs:
                ref = syntax.parse_ref(item)
                key = (vsys, ref.value)
                if ref.kind == "vm":
                    if key not in index:
                        raise PolicyError([f"a rule of {vsys} names vm:{ref.value}, which no longer exists"])
                    members.add(index[key])
                else:
                    members |= groups[key]
            found = expanded[(vsys, refs)] = frozenset(members)
        return found

    def expand(side: AddressSet, vsys: str) -> AddressSet:
        if not side.refs:
            return side
        members = members_of(vsys, side.refs)
        return side if members == side.workloads else replace(side, workloads=members)

    rules: list[CompiledRule] = []
    vsys_names = previous.vsys
    for rule in previous.rules:
        vsys = vsys_names[rule.vsys]
        if (not rule.src.refs and not rule.dst.refs) or not affected(vsys):
            rules.append(rule)
            continue
        src, dst = expand(rule.src, vsys), expand(rule.dst, vsys)
        rules.append(rule if src is rule.src and dst is rule.dst else replace(rule, src=src, dst=dst))
    profiles = tuple(
        _expand_profile(profile, vsys_names[profile.vsys], expand) if affected(vsys_names[profile.vsys]) else profile
        for profile in previous.profiles
    )
    build = replace(previous.build, group_members=groups, workload_resources=tuple(ordered))
    return replace(previous, workloads=compiled, rules=tuple(rules), profiles=profiles, build=build)


def _expand_profile(
    profile: CompiledProfile, vsys: str, expand: Callable[[AddressSet, str], AddressSet]
) -> CompiledProfile:
    """A profile's exceptions with their `vm:`/`group:` endpoints expanded against the new workloads."""
    if not any(e.scoped for e in profile.exceptions):
        return profile
    exceptions = tuple(
        replace(
            e,
            **{
                side: expand(getattr(e, side), vsys)
                for side in ("source", "destination", "endpoints")
                if getattr(e, side) is not None
            },
        )
        for e in profile.exceptions
    )
    return replace(profile, exceptions=exceptions)
