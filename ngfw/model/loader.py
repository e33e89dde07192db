"""Loading resources from a YAML file or a directory of them.

A load is all or nothing, like a candidate configuration: it either returns every
resource, checked on its own and against the others, or raises one `PolicyError`
listing every problem found — never a partial policy.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ngfw.model import files
from ngfw.model.errors import PolicyError, describe_all
from ngfw.model.resources import API_VERSION, KINDS, SITE_KINDS, LoadedResource
from ngfw.model.validate import Identity, cross_check
from ngfw.model.yamldoc import Document, YamlProblem, parse_documents

__all__ = ["LoadedResource", "PolicyError", "load_resources", "policy_files"]

SUFFIXES = files.SUFFIXES


def policy_files(path: Path) -> list[Path]:
    """`path` itself, or every `*.yaml`/`*.yml` under it (ngfw.model.files); PolicyError when there is none."""
    try:
        return files.policy_files(path)
    except files.NoPolicyFiles as exc:
        raise PolicyError([str(exc)]) from None


def load_resources(path: str | PathLike[str], *, check_references: bool = True) -> list[LoadedResource]:
    """Every resource under `path`, in (file, document) order.

    With `check_references=False` only each document on its own is checked (for
    fragments that are merged with other resources before compiling).
    """
    problems: list[str] = []
    loaded: list[LoadedResource] = []
    broken: set[Identity] = set()
    for file in policy_files(Path(path)):
        name = str(file)
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            problems.append(f"{name}: not UTF-8 text (byte {exc.start})")
            continue
        except OSError as exc:
            problems.append(f"{name}: cannot read: {exc.strerror or exc}")
            continue
        try:
            documents = parse_documents(text)
        except YamlProblem as exc:
            problems.append(f"{name}:{exc.line}:{exc.column}: invalid YAML: {exc.message}")
            continue
        for document in documents:
            if document.data is None:
                continue  # an empty document, e.g. after a trailing `---`
            resource, document_problems, identity = _validate_document(document, name)
            if resource is not None:
                loaded.append(resource)
            problems += document_problems
            if identity is not None:
                broken.add(identity)
    if check_references:
        problems += cross_check(loaded, broken)
    if problems:
        raise PolicyError(problems)
    return loaded


def _validate_document(document: Document, file: str) -> tuple[LoadedResource | None, list[str], Identity | None]:
    """The resource, or the problems and (if it can be told) the identity of the broken resource."""
    data = document.data
    anonymous = f"document {document.index + 1} (line {document.line})"
    if not isinstance(data, dict):
        return None, [f"{file}: {anonymous}: must be a mapping with apiVersion, kind, metadata and spec"], None
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        problems = []
        if data.get("apiVersion") != API_VERSION:
            problems.append(f"{file}: {anonymous}: apiVersion: must be {API_VERSION} (got {data.get('apiVersion')!r})")
        expected = ", ".join(KINDS)
        if kind is None:
            problems.append(f"{file}: {anonymous}: kind: required field is missing (one of {expected})")
        else:
            problems.append(f"{file}: {anonymous}: kind: unknown kind {kind!r} (expected one of {expected})")
        return None, problems, None
    model = KINDS[kind]
    try:
        resource = model.model_validate(data)
    except ValidationError as exc:
        who, identity = _describe_raw(kind, data.get("metadata"), anonymous)
        return None, [f"{file}: {who}: {line}" for line in describe_all(exc, model)], identity
    return LoadedResource(resource, file, document.index), [], None


def _describe_raw(kind: str, metadata: Any, anonymous: str) -> tuple[str, Identity | None]:
    """Name a resource that failed validation as well as its raw metadata allows."""
    name = metadata.get("name") if isinstance(metadata, dict) else None
    vsys = metadata.get("vsys") if isinstance(metadata, dict) else None
    if kind == "VirtualSystem" and isinstance(name, str):
        return f"{kind} {name}", (kind, name, name)
    if kind in SITE_KINDS and isinstance(name, str):
        return f"{kind} {name}", (kind, "", name)
    if isinstance(name, str) and isinstance(vsys, str):
        return f"{kind} {vsys}/{name}", (kind, vsys, name)
    return f"{kind} in {anonymous}", None
