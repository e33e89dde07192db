"""Frozen value classes, as `@dataclass(frozen=True)` makes them, without importing `dataclasses`.

The compiled policy and the App-ID catalogue (`ngfw.compiler.tables`, `ngfw.compiler.catalogue`) are on
`ngfw replay`'s start, where `dataclasses` (and the `inspect`, `ast` and `dis` it imports) was a sixth of
replaying the App-ID corpus. `@value` gives a class what those modules used: an `__init__` with the
annotated fields in order (defaults and `field(default_factory=...)` as dataclasses take them), equality
and hashing over the fields with `compare=True`, a `repr`, assignment refused, pickling; `replace` and
`asdict` as in `dataclasses` (shallow: these classes hold tuples of plain values).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:  # `typing` stays off replay's start: the decorator only tells type checkers what `value` makes

    def dataclass_transform(**_: object) -> Callable[[T], T]:
        return lambda decorated: decorated


_MISSING: Any = object()
_FACTORY: Any = object()  # an __init__ default: call the field's factory


class Field:
    __slots__ = ("default", "default_factory", "compare", "repr")

    def __init__(
        self, default: Any = _MISSING, default_factory: Any = _MISSING, compare: bool = True, repr: bool = True
    ) -> None:
        self.default = default
        self.default_factory = default_factory
        self.compare = compare
        self.repr = repr


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | Any = _MISSING,
    compare: bool = True,
    repr: bool = True,
) -> Any:
    return Field(default, default_factory, compare, repr)


class FrozenInstanceError(AttributeError):
    pass


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def value(cls: type[T]) -> type[T]:
    """The class decorator: `cls`'s annotations (in order) are its fields."""
    specs: dict[str, Field] = {}
    for name in cls.__dict__.get("__annotations__", {}):
        declared = cls.__dict__.get(name, _MISSING)
        spec = declared if isinstance(declared, Field) else Field(default=declared)
        if (
            spec.default is _MISSING
            and spec.default_factory is _MISSING
            and any(s.default is not _MISSING or s.default_factory is not _MISSING for s in specs.values())
        ):
            raise TypeError(f"{cls.__name__}: non-default field {name!r} follows a default field")
        if isinstance(declared, Field):
            delattr(cls, name)  # a plain default stays a class attribute, as with dataclasses
        specs[name] = spec
    env: dict[str, Any] = {"_FACTORY": _FACTORY}
    params, body = [], []
    for name, spec in specs.items():
        if spec.default_factory is not _MISSING:
            env[f"_factory_{name}"] = spec.default_factory
            params.append(f"{name}=_FACTORY")
            body.append(f"    _own[{name!r}] = _factory_{name}() if {name} is _FACTORY else {name}")
            continue
        if spec.default is not _MISSING:
            env[f"_default_{name}"] = spec.default
            params.append(f"{name}=_default_{name}")
        else:
            params.append(name)
        body.append(f"    _own[{name!r}] = {name}")
    compared = [name for name, spec in specs.items() if spec.compare]
    key = "(" + "".join(f"self.{name}, " for name in compared) + ")"
    other_key = key.replace("self.", "other.")
    source = "\n".join(
        [
            f"def __init__(self, {', '.join(params)}):",
            "    _own = self.__dict__",
            *body,
            "def __eq__(self, other):",
            f"    if other.__class__ is self.__class__:\n        return {key} == {other_key}",
            "    return NotImplemented",
            "def __hash__(self):",
            f"    return hash({key})",
        ]
    )
    exec(source, env)  # generated once per class, like dataclasses' methods: plain attribute code per call
    shown = [name for name, spec in specs.items() if spec.repr]

    def __repr__(self: Any) -> str:
        return f"{type(self).__qualname__}({', '.join(f'{n}={getattr(self, n)!r}' for n in shown)})"

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    for method in (env["__init__"], env["__eq__"], env["__hash__"], __repr__, __setattr__, __delattr__):
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, method.__name__, method)
    cls.__value_fields__ = tuple(specs)  # type: ignore[attr-defined]
    cls.__match_args__ = tuple(specs)  # type: ignore[attr-defined,misc]  # set on a class mypy sees as type[T]
    return cls


def fields(obj: Any) -> tuple[str, ...]:
    return type(obj).__value_fields__


def replace(obj: T, **changes: Any) -> T:
    """A copy of `obj` with `changes`, through `__init__` (factories are not re-run for kept fields)."""
    kwargs = {name: getattr(obj, name) for name in fields(obj)}
    unknown = set(changes) - set(kwargs)
    if unknown:
        raise TypeError(f"{type(obj).__name__} has no field {sorted(unknown)[0]!r}")
    kwargs.update(changes)
    return type(obj)(**kwargs)


def asdict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in fields(obj)}
