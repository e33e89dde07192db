"""Resource documents as control stores and ships them: canonical JSON, identities, hashes.

Control keeps every resource as its canonical document (`ngfw.model.resources.dump`: user
spellings, defaults filled in), so that equal policies are byte-equal and a hash computed by
control can be recomputed by an agent from the documents alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ngfw.model.errors import describe_all
from ngfw.model.resources import API_VERSION, KINDS, SITE_KINDS, Resource, dump

Document = dict[str, Any]
# (kind, vsys, name); a VirtualSystem is its own vsys (as in ngfw.model.validate.Identity)
Key = tuple[str, str, str]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request, named as the user wrote it."""

    resource: str  # "SecurityPolicy tenant-a/main", or "document 3" when it cannot be named
    field: str  # "spec.rules[0].action", "" when the whole document is wrong
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "field": self.field, "message": self.message}

    @classmethod
    def from_text(cls, text: str) -> Problem:
        """Split the model's `SOURCE: RESOURCE: FIELD: MESSAGE` lines (ngfw.model.errors)."""
        parts = text.split(": ", 3)
        if len(parts) == 4:
            return cls(parts[1], parts[2], parts[3])
        return cls("", "", text)


class InvalidDocuments(Exception):
    """Documents that do not form resources (or a policy); `problems` names each one."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.resource}: {p.field}: {p.message}" for p in problems))


def canonical_json(value: Any) -> bytes:
    """The one byte encoding hashes are computed over (sorted keys, no spaces, UTF-8)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(documents: list[Document]) -> str:
    return sha256_hex(canonical_json(documents))


def is_workload(document: Document) -> bool:
    return isinstance(document, dict) and document.get("kind") == "Workload"


def part_hash(documents: list[Document]) -> str:
    """sha256 of one part of a bundle (its policy documents, or its Workloads), in the order given."""
    return sha256_hex(canonical_json(documents))


def bundle_hash_of_parts(version: int, identity: int, policy_hash: str, workloads_hash: str) -> str:
    return sha256_hex(
        canonical_json({"version": version, "identity": identity, "policy": policy_hash, "workloads": workloads_hash})
    )


def bundle_hash(version: int, identity: int, documents: list[Document]) -> str:
    """sha256 of the canonical bundle: what an agent recomputes before it trusts a bundle.

    It hashes the two parts of the bundle separately (the policy documents, in order, and the
    Workloads), then the version, identity and both part hashes: an agent that verified version
    N's policy once can verify an identity update of N from its Workloads alone.
    """
    policy = [d for d in documents if not is_workload(d)]
    workloads = [d for d in documents if is_workload(d)]
    return bundle_hash_of_parts(version, identity, part_hash(policy), part_hash(workloads))


def key_of(document: Document) -> Key:
    kind = document["kind"]
    metadata = document["metadata"]
    vsys = metadata["name"] if kind == "VirtualSystem" else "" if kind in SITE_KINDS else metadata["vsys"]
    return (kind, vsys, metadata["name"])


def label_of(key: Key) -> str:
    """How messages name a resource, as ngfw.model.resources.label does."""
    kind, vsys, name = key
    return f"{kind} {name}" if kind == "VirtualSystem" or kind in SITE_KINDS else f"{kind} {vsys}/{name}"


def parse_resource(data: Any, where: str) -> Resource:
    """One document as a resource, or InvalidDocuments naming the resource and field.

    `where` names the document when it cannot name itself ("document 2 of the request").
    """
    if not isinstance(data, dict):
        raise InvalidDocuments([Problem(where, "", "must be a mapping with apiVersion, kind, metadata and spec")])
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        problems = []
        if data.get("apiVersion") != API_VERSION:
            problems.append(Problem(where, "apiVersion", f"must be {API_VERSION} (got {data.get('apiVersion')!r})"))
        expected = ", ".join(KINDS)
        message = "required field is missing" if kind is None else f"unknown kind {kind!r}"
        problems.append(Problem(where, "kind", f"{message} (expected one of {expected})"))
        raise InvalidDocuments(problems)
    model = KINDS[kind]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        who = _raw_label(kind, data.get("metadata"), where)
        raise InvalidDocuments([_split(who, line) for line in describe_all(exc, model)]) from None


def canonical(resource: Resource) -> Document:
    return dump(resource)


def _raw_label(kind: str, metadata: Any, where: str) -> str:
    name = metadata.get("name") if isinstance(metadata, dict) else None
    vsys = metadata.get("vsys") if isinstance(metadata, dict) else None
    if (kind == "VirtualSystem" or kind in SITE_KINDS) and isinstance(name, str):
        return f"{kind} {name}"
    if isinstance(name, str) and isinstance(vsys, str):
        return f"{kind} {vsys}/{name}"
    return f"{kind} in {where}"


def _split(resource: str, line: str) -> Problem:
    field, _, message = line.partition(": ")
    return Problem(resource, field, message)
