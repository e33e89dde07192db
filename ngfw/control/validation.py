"""Checking a whole configuration the way a commit does: parse, cross-check, compile, lint.

Control runs this on every candidate edit (so a candidate is always a valid policy and a bad
edit leaves it as it was), on commit, rollback and identity updates; agents run the same
compile on the bundle they receive. Reusing `ngfw.compiler.policy` means a policy accepted
by control is exactly a policy the dataplane can load.
"""

from __future__ import annotations

import marshal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ngfw.compiler.identity import with_workloads
from ngfw.compiler.lint import lint
from ngfw.compiler.policy import compile_resources
from ngfw.compiler.tables import CompiledPolicy
from ngfw.control.documents import (
    Document,
    InvalidDocuments,
    Key,
    Problem,
    is_workload,
    key_of,
    label_of,
    parse_resource,
)
from ngfw.model.errors import PolicyError
from ngfw.model.resources import Group, LoadedResource, Resource, VirtualSystem, Workload
from ngfw.model.validate import cross_check

CANDIDATE = "candidate"  # the source named in problems of resources that were already in the candidate
PARSED_CACHE_SIZE = 100_000

# Parsed resources by their encoded document. A commit or a label change touches a few documents
# of thousands; re-validating the unchanged ones with pydantic was half of every compile.
# Resources are frozen models, so sharing them between compiles is safe. marshal is the
# cheapest exact encoding of JSON values; a document spelt with its keys in another order
# is merely a miss.
_parsed: dict[bytes, Resource] = {}


def _parse(document: Document, where: str) -> Resource:
    try:
        encoded = marshal.dumps(document)
    except ValueError:  # not plain JSON data: parse_resource says what is wrong with it
        return parse_resource(document, where)
    resource = _parsed.get(encoded)
    if resource is None:
        resource = parse_resource(document, where)
        if len(_parsed) >= PARSED_CACHE_SIZE:
            _parsed.clear()
        _parsed[encoded] = resource
    return resource


@dataclass(frozen=True)
class Validated:
    policy: CompiledPolicy
    warnings: list[str]


def compile_documents(
    documents: Sequence[Document], version: int, sources: Mapping[Key, str] | None = None, lint_it: bool = True
) -> Validated:
    """Compile canonical documents; InvalidDocuments names every resource and field at fault.

    `sources` names where a document came from (a request's file) for documents of this
    request; the others are named as part of the candidate. Agents pass `lint_it=False`:
    warnings are for the people who commit, not for hosts.
    """
    loaded: list[LoadedResource] = []
    problems: list[Problem] = []
    for index, document in enumerate(documents):
        try:
            resource = _parse(document, f"document {index + 1}")
        except InvalidDocuments as exc:
            problems += exc.problems
            continue
        source = (sources or {}).get(key_of(document), CANDIDATE)
        loaded.append(LoadedResource(resource, source, index))
    if problems:
        raise InvalidDocuments(problems)
    try:
        policy = compile_resources(loaded, version)
    except PolicyError as exc:
        raise InvalidDocuments([Problem.from_text(line) for line in exc.problems]) from None
    return Validated(policy, lint(policy) if lint_it else [])


def compile_identity(previous: CompiledPolicy, documents: Sequence[Document]) -> CompiledPolicy:
    """A bundle that changed only Workloads since `previous` (same version): only its Workloads are
    parsed and compiled (`ngfw.compiler.identity`), the rules are reused. InvalidDocuments or
    PolicyError when that cannot be vouched for: compile the whole bundle then."""
    workloads: list[Workload] = []
    for index, document in enumerate(documents):
        if document.get("kind") == "Workload":
            resource = _parse(document, f"document {index + 1}")
            assert isinstance(resource, Workload)
            workloads.append(resource)
    return with_workloads(previous, workloads)


def validate_identity(
    previous: CompiledPolicy, documents: Sequence[Document], sources: Mapping[Key, str] | None = None
) -> CompiledPolicy:
    """Control's check of an identity update: `previous` (the running compiled policy) with the
    Workloads of `documents`, checked as a commit would check them, without compiling the rules.

    The workloads are cross-checked with the VirtualSystems and Groups (vsys exists, names and
    MAC/IP bindings unique, static group members exist) and the rules' `vm:`/`group:` sets are
    recomputed (`with_workloads`). InvalidDocuments names a bad field; PolicyError means a rule
    would name a workload that is gone: compile in full (`compile_documents`) to name the rule.
    """
    loaded: list[LoadedResource] = [
        LoadedResource(r, CANDIDATE, i)
        for i, r in enumerate(previous.build.policy_resources)
        if isinstance(r, VirtualSystem | Group)
    ]
    workloads: list[Workload] = []
    problems: list[Problem] = []
    for index, document in enumerate(documents):
        if not is_workload(document):
            continue
        try:
            resource = _parse(document, f"document {index + 1}")
        except InvalidDocuments as exc:
            problems += exc.problems
            continue
        assert isinstance(resource, Workload)
        workloads.append(resource)
        loaded.append(LoadedResource(resource, (sources or {}).get(key_of(document), CANDIDATE), len(loaded)))
    if problems:
        raise InvalidDocuments(problems)
    # the request's workloads last: a clash between one of them and a running workload names the request
    loaded.sort(key=lambda item: item.file != CANDIDATE)
    found = cross_check(loaded)
    if found:
        raise InvalidDocuments([Problem.from_text(line) for line in found])
    return with_workloads(previous, workloads)


def duplicates(documents: Sequence[Document]) -> list[Problem]:
    """Documents of one request that name the same resource twice."""
    seen: set[Key] = set()
    problems = []
    for document in documents:
        key = key_of(document)
        if key in seen:
            problems.append(Problem(label_of(key), "metadata.name", f"duplicate {label_of(key)} in this request"))
        seen.add(key)
    return problems
