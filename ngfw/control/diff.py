"""Comparing and merging configurations resource by resource.

A configuration is an ordered list of canonical documents; resources are matched by
(kind, vsys, name), so a diff says "SecurityPolicy tenant-a/main modified" with a unified
YAML diff of that resource, and a three-way merge can tell a change made by someone else
from one's own.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import yaml

from ngfw.control.documents import Document, Key, canonical_json, key_of, label_of

_Dumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _yaml(document: Document | None) -> list[str]:
    if document is None:
        return []
    text: str = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16)
    return text.splitlines(keepends=True)


def diff_documents(
    old: Sequence[Document],
    new: Sequence[Document],
    old_name: str = "a",
    new_name: str = "b",
    visible: Callable[[Key], bool] | None = None,
) -> list[dict[str, Any]]:
    """One entry per added, removed or modified resource, in `new`'s order then removed ones.

    `visible` hides resources the caller may not see (a tenant-admin sees its own vsys only).
    """
    old_by_key = {key_of(d): d for d in old}
    new_by_key = {key_of(d): d for d in new}
    keys = list(new_by_key) + [k for k in old_by_key if k not in new_by_key]
    changes = []
    for key in keys:
        if visible is not None and not visible(key):
            continue
        before, after = old_by_key.get(key), new_by_key.get(key)
        if before is not None and after is not None and canonical_json(before) == canonical_json(after):
            continue
        change = "added" if before is None else "removed" if after is None else "modified"
        text = "".join(
            difflib.unified_diff(
                _yaml(before), _yaml(after), f"{old_name}: {label_of(key)}", f"{new_name}: {label_of(key)}"
            )
        )
        changes.append(
            {"resource": label_of(key), "kind": key[0], "vsys": key[1], "name": key[2], "change": change, "diff": text}
        )
    return changes


def changed_keys(old: Sequence[Document], new: Sequence[Document]) -> set[Key]:
    old_by_key = {key_of(d): canonical_json(d) for d in old}
    new_by_key = {key_of(d): canonical_json(d) for d in new}
    return {k for k in old_by_key.keys() | new_by_key.keys() if old_by_key.get(k) != new_by_key.get(k)}


def merge(
    base: Sequence[Document], ours: Sequence[Document], theirs: Sequence[Document]
) -> tuple[list[Document], list[Key]]:
    """Our changes (base -> ours) replayed onto theirs; also the resources both sides changed differently.

    Their order is kept: our modified resources replace theirs in place, our new ones are
    appended in our order (a vsys's SecurityPolicies are evaluated in document order).
    """
    ours_by_key = {key_of(d): d for d in ours}
    theirs_by_key = {key_of(d): d for d in theirs}
    ours_changed = changed_keys(base, ours)
    theirs_changed = changed_keys(base, theirs)
    conflicts = [
        k for k in ours_changed & theirs_changed if _encoded(ours_by_key.get(k)) != _encoded(theirs_by_key.get(k))
    ]
    merged: list[Document] = []
    for document in theirs:
        key = key_of(document)
        if key in ours_changed and key not in conflicts:
            if key in ours_by_key:
                merged.append(ours_by_key[key])  # modified by us (deleted by us: dropped)
        else:
            merged.append(document)
    merged += [
        d for d in ours if key_of(d) in ours_changed and key_of(d) not in theirs_by_key and key_of(d) not in conflicts
    ]
    return merged, conflicts


def _encoded(document: Document | None) -> bytes | None:
    return None if document is None else canonical_json(document)
