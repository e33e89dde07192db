"""The App-ID catalogue: `rules/apps/*.yaml` -> plain, numbered tables for the fastpath.

A catalogue load is all or nothing, like a policy load: it returns a `Catalogue` or raises
one `PolicyError` listing every problem as `FILE: app NAME: FIELD: MESSAGE`. Every signature
is compiled with Hyperscan here, one by one (so an error names its app and field) and then
all together into one block-mode database, as the fastpath will, so a catalogue that loads
is one the fastpath can build.

Id conventions (the fastpath may hard-code them):
- app ids 0..4 are the reserved states, always in `RESERVED` order: 0 `unknown`, 1
  `unknown-tcp`, 2 `unknown-udp`, 3 `incomplete`, 4 `insufficient-data`; the other apps
  follow sorted by name, so ids do not depend on how the catalogue is split into files;
- signature ids are indexes into `Catalogue.signatures` (the Hyperscan expression ids),
  ordered by app id and then by position in the app's entry.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ngfw.compiler.catalogue import (  # noqa: F401 - re-exported: the compiler's public names
    DEFAULT_CATALOGUE,
    RESERVED,
    SUFFIXES,
    AppDef,
    Catalogue,
    HostRule,
    Signature,
    cache_dir,
    catalogue_files,
    load_catalogue,
)
from ngfw.model.errors import PolicyError, describe_all
from ngfw.model.yamldoc import YamlProblem, parse_documents
from ngfw.values import asdict
from ngfw.wire import PROTO_ANY, PROTO_TCP, PROTO_UDP

__all__ = [
    "APP_INCOMPLETE",
    "APP_INSUFFICIENT_DATA",
    "APP_UNKNOWN",
    "APP_UNKNOWN_TCP",
    "APP_UNKNOWN_UDP",
    "DEFAULT_CATALOGUE",
    "DIR_ANY",
    "DIR_TO_CLIENT",
    "DIR_TO_SERVER",
    "RESERVED",
    "AppDef",
    "Catalogue",
    "HostRule",
    "Signature",
    "load_catalogue",
]


APP_UNKNOWN, APP_UNKNOWN_TCP, APP_UNKNOWN_UDP, APP_INCOMPLETE, APP_INSUFFICIENT_DATA = range(len(RESERVED))

L4_ANY, L4_TCP, L4_UDP = PROTO_ANY, PROTO_TCP, PROTO_UDP
_L4 = {"any": L4_ANY, "tcp": L4_TCP, "udp": L4_UDP}
DIR_ANY, DIR_TO_SERVER, DIR_TO_CLIENT = 0, 1, 2
_DIRECTION = {"any": DIR_ANY, "to_server": DIR_TO_SERVER, "to_client": DIR_TO_CLIENT}

# Hyperscan flag values (hs.h); spelled out so this module imports without the binding.
HS_FLAG_CASELESS = 1
HS_FLAG_DOTALL = 2
HS_FLAG_SINGLEMATCH = 8

_NAME = r"^[a-z0-9][a-z0-9._+-]*$"
_PORT = re.compile(r"^(tcp|udp)/([0-9]{1,5})$")
_LABEL = r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)"
_HOST = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")


# ---------------------------------------------------------------- the YAML shape


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SignatureSpec(_Strict):
    l4: Literal["tcp", "udp", "any"] = "any"
    direction: Literal["to_server", "to_client", "any"] = "any"
    pattern: Annotated[str, Field(min_length=1)]
    nocase: bool = False
    priority: Annotated[int, Field(ge=0, le=1000)] = 50
    min_len: Annotated[int, Field(ge=0, le=65535)] | None = None


class AppSpec(_Strict):
    name: Annotated[str, Field(pattern=_NAME, max_length=63)]
    category: str = "unknown"
    risk: Annotated[int, Field(ge=1, le=5)] = 1
    description: str = ""
    ports: list[str] = []
    parent: Annotated[str, Field(pattern=_NAME)] | None = None
    hosts: list[str] = []
    # Most apps are one IP protocol at most; IPsec is two (ESP 50, AH 51).
    ip_protocol: Annotated[int, Field(ge=0, le=255)] | list[Annotated[int, Field(ge=0, le=255)]] | None = None
    signatures: list[SignatureSpec] = []

    @field_validator("ports")
    @classmethod
    def _ports(cls, ports: list[str]) -> list[str]:
        for port in ports:
            match = _PORT.match(port)
            if not match or not 1 <= int(match.group(2)) <= 65535:
                raise ValueError(f"port {port!r} must look like tcp/443 or udp/53 (1..65535)")
        return ports

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, hosts: list[str]) -> list[str]:
        for host in hosts:
            if not _HOST.match(host):
                raise ValueError(f"host {host!r} must be a lower-case DNS name, or *.suffix for its subdomains")
        return hosts


class CatalogueFile(_Strict):
    apps: list[dict[str, Any]]


# The compiled tables (AppDef, Signature, HostRule, Catalogue) live in ngfw.compiler.catalogue.


# ---------------------------------------------------------------- loading


@dataclass
class _Entry:
    file: str
    spec: AppSpec


def _read(files: Iterable[str], problems: list[str]) -> list[_Entry]:
    entries: list[_Entry] = []
    for path in files:
        name = str(path)
        try:
            with open(path, encoding="utf-8") as f:
                documents = parse_documents(f.read())
        except UnicodeDecodeError as exc:
            problems.append(f"{name}: not UTF-8 text (byte {exc.start})")
            continue
        except OSError as exc:
            problems.append(f"{name}: cannot read: {exc.strerror or exc}")
            continue
        except YamlProblem as exc:
            problems.append(f"{name}:{exc.line}:{exc.column}: invalid YAML: {exc.message}")
            continue
        for document in documents:
            if document.data is None:
                continue
            try:
                data = CatalogueFile.model_validate(document.data)
            except ValidationError as exc:
                where = f"document {document.index + 1} (line {document.line})"
                problems.extend(f"{name}: {where}: {line}" for line in describe_all(exc, CatalogueFile))
                continue
            for index, raw in enumerate(data.apps):
                who = f"app {raw['name']}" if isinstance(raw.get("name"), str) else f"apps[{index}]"
                try:
                    entries.append(_Entry(name, AppSpec.model_validate(raw)))
                except ValidationError as exc:
                    problems.extend(f"{name}: {who}: {line}" for line in describe_all(exc, AppSpec))
    return entries


def _hs_flags(spec: SignatureSpec) -> int:
    return HS_FLAG_SINGLEMATCH | HS_FLAG_DOTALL | (HS_FLAG_CASELESS if spec.nocase else 0)


def _hs_error(pattern: str, flags: int) -> str | None:
    """Hyperscan's complaint about one pattern, or None when it compiles."""
    import hyperscan

    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(expressions=[pattern.encode("utf-8")], ids=[0], flags=[flags])
    except hyperscan.error as exc:
        return str(exc.args[0] if exc.args else exc)
    return None


def _compile_all(signatures: tuple[Signature, ...]) -> str | None:
    if not signatures:
        return None
    import hyperscan

    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(
            expressions=[s.pattern.encode("utf-8") for s in signatures],
            ids=list(range(len(signatures))),
            flags=[s.hs_flags for s in signatures],
        )
    except hyperscan.error as exc:
        return str(exc.args[0] if exc.args else exc)
    return None


def compile_catalogue(path: str | PathLike[str] = DEFAULT_CATALOGUE) -> Catalogue:
    """Read, validate and compile the catalogue (no cache)."""
    problems: list[str] = []
    entries = _read(catalogue_files(path), problems)

    first: dict[str, _Entry] = {}
    for entry in entries:
        other = first.get(entry.spec.name)
        if other is not None:
            problems.append(f"{entry.file}: app {entry.spec.name}: name: already defined in {other.file}")
        else:
            first[entry.spec.name] = entry
    for name in RESERVED:
        if name not in first:
            problems.append(
                f"{path}: app {name}: reserved app is missing (the catalogue must define {', '.join(RESERVED)})"
            )

    order = [n for n in RESERVED if n in first] + sorted(n for n in first if n not in RESERVED)
    by_name = {name: index for index, name in enumerate(order)}

    for name in order:
        entry = first[name]
        spec, who = entry.spec, f"{entry.file}: app {name}"
        if name in RESERVED:
            for field in ("signatures", "hosts", "ports", "parent", "ip_protocol"):
                if getattr(spec, field):
                    problems.append(f"{who}: {field}: a reserved app is a classification state and takes no {field}")
        if spec.parent is not None:
            if spec.parent not in by_name:
                close = _close(spec.parent, order)
                problems.append(f"{who}: parent: no app named {spec.parent!r}{close}")
            elif spec.parent == name or _cycle(name, first):
                problems.append(f"{who}: parent: {spec.parent!r} makes a cycle of parents")

    apps: list[AppDef] = []
    signatures: list[Signature] = []
    hosts: list[HostRule] = []
    host_owner: dict[str, str] = {}
    ip_protocols: dict[int, int] = {}
    default_ports: dict[tuple[int, int], list[int]] = {}
    children_by_port: dict[tuple[int, int, int], int] = {}
    # Ports are listed in file order, then entry order: the first app to claim a port is
    # the port's best guess, whatever its id.
    declared = [e for e in entries if first[e.spec.name] is e]

    for name in order:
        entry = first[name]
        spec, who, app_id = entry.spec, f"{entry.file}: app {name}", by_name[name]
        parent = by_name.get(spec.parent) if spec.parent else None
        ports = tuple(
            (L4_TCP if m.group(1) == "tcp" else L4_UDP, int(m.group(2))) for m in map(_PORT.match, spec.ports) if m
        )
        protocols = (
            ()
            if spec.ip_protocol is None
            else tuple(spec.ip_protocol)
            if isinstance(spec.ip_protocol, list)
            else (spec.ip_protocol,)
        )
        if name in RESERVED:
            kind = "reserved"
        elif spec.hosts and not (spec.signatures or spec.ports or protocols):
            kind = "service"
        else:
            kind = "protocol"
        apps.append(
            AppDef(
                app_id,
                name,
                spec.category,
                spec.risk,
                parent,
                ports,
                tuple(spec.hosts),
                protocols,
                spec.description,
                entry.file,
                kind,
            )
        )
        for number in protocols:
            if number in ip_protocols:
                problems.append(f"{who}: ip_protocol: {number} already belongs to {order[ip_protocols[number]]}")
            else:
                ip_protocols[number] = app_id
        for index, sig in enumerate(spec.signatures):
            flags = _hs_flags(sig)
            error = _hs_error(sig.pattern, flags)
            if error is not None:
                problems.append(
                    f"{who}: signatures[{index}].pattern: Hyperscan cannot compile {sig.pattern!r}: {error}"
                )
                continue
            signatures.append(
                Signature(
                    app_id, _L4[sig.l4], _DIRECTION[sig.direction], sig.pattern, flags, sig.priority, sig.min_len or 0
                )
            )
        for index, host in enumerate(spec.hosts):
            owner = host_owner.get(host)
            if owner is not None:
                problems.append(f"{who}: hosts[{index}]: {host!r} already belongs to {owner}")
                continue
            host_owner[host] = name
            wildcard = host.startswith("*.")
            hosts.append(HostRule(host, host[2:] if wildcard else host, wildcard, app_id))
        if parent is not None:
            for index, (l4, port) in enumerate(ports):
                key = (parent, l4, port)
                if key in children_by_port:
                    problems.append(
                        f"{who}: ports[{index}]: {spec.ports[index]} under {spec.parent} already picks {order[children_by_port[key]]}"
                    )
                else:
                    children_by_port[key] = app_id

    for entry in declared:
        app_id = by_name[entry.spec.name]
        for l4_port in apps[app_id].ports:
            default_ports.setdefault(l4_port, []).append(app_id)

    frozen_signatures = tuple(signatures)
    if not problems:
        error = _compile_all(frozen_signatures)
        if error is not None:
            problems.append(f"{path}: signatures: Hyperscan cannot build one database of all signatures: {error}")
    if problems:
        raise PolicyError(problems)

    # Most specific first: exact names, then wildcards with the longest suffix.
    hosts.sort(key=lambda h: (h.wildcard, -len(h.domain), h.domain))
    tables = {
        "apps": [asdict(a) | {"source": ""} for a in apps],
        "signatures": [asdict(s) for s in frozen_signatures],
        "hosts": [asdict(h) for h in hosts],
        "ip_protocols": sorted(ip_protocols.items()),
        "default_ports": sorted((k, v) for k, v in default_ports.items()),
        "children_by_port": sorted(children_by_port.items()),
    }
    digest = hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()
    return Catalogue(
        apps=tuple(apps),
        by_name=by_name,
        signatures=frozen_signatures,
        hosts=tuple(hosts),
        ip_protocols=ip_protocols,
        default_ports={k: tuple(v) for k, v in default_ports.items()},
        children_by_port=children_by_port,
        digest=digest,
    )


def _close(name: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _cycle(name: str, entries: dict[str, _Entry]) -> bool:
    seen = {name}
    current = entries[name].spec.parent
    while current is not None and current in entries:
        if current in seen:
            return True
        seen.add(current)
        current = entries[current].spec.parent
    return False
