"""`PolicyError`, and the translation of pydantic's errors into the user's words.

A problem reads `FILE: RESOURCE: FIELD: MESSAGE`, one line each, so an editor or a
CI log points straight at it, and every problem of a load is reported at once: a user
fixing a policy should not discover the errors one run at a time.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable
from typing import Any, Union

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


class PolicyError(Exception):
    """A policy that cannot be loaded or compiled; `problems` holds one line per problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_loc(loc: Iterable[int | str]) -> str:
    """`("spec", "rules", 2, "action")` -> `spec.rules[2].action`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            # pydantic's marker for "the key itself was wrong"; the message says so.
            continue
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _got(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str] | None:
    """The field names (as the user spells them) accepted at `loc` in `model`."""
    current: Any = model
    for part in loc:
        current = _unwrap(current, part)
        if current is None:
            return None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return None


def _unwrap(annotation: Any, part: int | str) -> Any:
    """Follow one step of a location through a type annotation."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            candidates = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(candidates) != 1:
                return None
            annotation = candidates[0]
        else:
            break
    if isinstance(part, int):
        return typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if (info.alias or name) == part:
                return info.annotation
    return None


def describe(error: ErrorDetails, model: type[BaseModel]) -> str:
    """One pydantic error as `FIELD: MESSAGE`."""
    loc = tuple(error["loc"])
    where = format_loc(loc) or "(document)"
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "missing":
        return f"{where}: required field is missing"
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1]) or []
        field = str(loc[-1])
        close = difflib.get_close_matches(field, allowed, n=1)
        if close:
            hint = f" (did you mean {close[0]!r}?)"
        elif allowed:
            hint = f" (allowed: {', '.join(allowed)})"
        else:
            hint = ""
        return f"{where}: unknown field{hint}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return f"{where}: must be one of {', '.join(choices)} (got {_got(value)})"
    if kind in _TYPE_NAMES:
        hint = " - quote it in YAML" if kind == "string_type" and isinstance(value, (int, float, bool)) else ""
        return f"{where}: must be {_TYPE_NAMES[kind]} (got {_got(value)}{hint})"
    if kind == "greater_than":
        return f"{where}: must be greater than {ctx.get('gt')} (got {_got(value)})"
    if kind == "too_short":
        return f"{where}: must have at least {ctx.get('min_length')} item(s)"
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        if isinstance(value, (dict, type(None))) or "(got " in message:
            # a message that quotes the bad part itself (a threshold.config line) is not followed by the whole field
            return f"{where}: {message}"
        return f"{where}: {message} (got {_got(value)})"
    message = error["msg"]
    return f"{where}: {message[:1].lower()}{message[1:]} (got {_got(value)})"


def describe_all(exc: ValidationError, model: type[BaseModel]) -> list[str]:
    return [describe(error, model) for error in exc.errors()]
