"""The policy resources users write: VirtualSystem, Workload, Group, SecurityPolicy, ThreatProfile, SignatureSet,
UserGroup and UserSource (User-ID: docs/policy.md#users).

Each kind is a pydantic model that checks one document on its own (types, syntax,
unknown fields) and stores canonical spellings (lower-case MACs, compressed IPs,
`icmp6` for `ipv6-icmp`), so that equal policies dump equally. Checks that need
other documents (references, duplicates) live in `ngfw.model.validate`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)

from ngfw.model import syntax

API_VERSION = "ngfw/v1"


def _schema(**schema: Any) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", **schema})


# Strings checked (and canonicalised) by a `syntax.check_*` function; the JSON Schema
# says as much as a schema can (the checks can say more, e.g. "not multicast").
Name = Annotated[str, AfterValidator(syntax.check_name), _schema(pattern=syntax.NAME_PATTERN)]
LabelKey = Annotated[str, AfterValidator(syntax.check_label_key), _schema(pattern=syntax.LABEL_KEY_PATTERN)]
LabelValue = Annotated[str, AfterValidator(syntax.check_label_value), _schema(pattern=syntax.LABEL_VALUE_PATTERN)]
PortName = Annotated[str, AfterValidator(syntax.check_port_name), _schema(pattern=syntax.PORT_NAME_PATTERN)]
Mac = Annotated[
    str,
    AfterValidator(syntax.check_mac),
    _schema(pattern=syntax.MAC_PATTERN, description="Unicast MAC address; ':' or '-' separated, any case."),
]
IpAddress = Annotated[str, AfterValidator(syntax.check_ip), _schema(anyOf=[{"format": "ipv4"}, {"format": "ipv6"}])]
Reference = Annotated[
    str,
    AfterValidator(syntax.check_ref),
    _schema(pattern=syntax.REF_PATTERN, description="any, vm:NAME, group:NAME or cidr:PREFIX (IPv4 or IPv6)."),
]
Member = Annotated[str, AfterValidator(syntax.check_member), _schema(pattern=syntax.MEMBER_PATTERN)]
UserName = Annotated[
    str,
    AfterValidator(syntax.check_user_name),
    _schema(pattern=syntax.USER_NAME_PATTERN, description="A user name (compared in lower case)."),
]
UserRef = Annotated[
    str,
    AfterValidator(syntax.check_user_ref),
    _schema(
        pattern=syntax.USER_REF_PATTERN,
        description="any, known-user, unknown, group:NAME (a UserGroup of the rule's vsys) or a user name.",
    ),
]
ServiceName = Annotated[
    str,
    AfterValidator(syntax.check_service),
    _schema(
        pattern=syntax.SERVICE_PATTERN,
        description="any, tcp, udp, tcp/PORT, tcp/LO-HI, udp/PORT, udp/LO-HI, icmp, icmp6 (alias ipv6-icmp).",
    ),
]


class _Strict(BaseModel):
    # strict: YAML already gives typed values, and lax coercion would accept
    # `log: "no"` as False or `maxSessions: true` as 1 without a word.
    # extra=forbid: a misspelt field must be an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _NeedsOneOf(_Strict):
    """A spec that says nothing unless it sets at least one of `one_of` (field names): refused with `needs`."""

    one_of: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[str] = ""

    @model_validator(mode="after")
    def _sets_one_of(self) -> Self:
        if all(getattr(self, name) is None for name in self.one_of):
            raise ValueError(self.needs)
        return self


class ClusterMetadata(_Strict):
    name: Name


class VsysMetadata(_Strict):
    name: Name
    vsys: Name = Field(description="The VirtualSystem (tenant) this resource belongs to.")


class WorkloadMetadata(VsysMetadata):
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, description="Matched by Group selectors.")


class Limits(_Strict):
    max_sessions: int | None = Field(None, alias="maxSessions", gt=0, description="Concurrent sessions of the vsys.")
    new_sessions_per_second: int | None = Field(
        None, alias="newSessionsPerSecond", gt=0, description="New sessions per second of the vsys."
    )


class VirtualSystemSpec(_Strict):
    limits: Limits = Field(default_factory=lambda: Limits.model_validate({}))


class VirtualSystem(_Strict):
    """A tenant: its own rules, objects, logs, counters and quotas."""

    api_version: Literal["ngfw/v1"] = Field(alias="apiVersion")
    kind: Literal["VirtualSystem"]
    metadata: ClusterMetadata
    spec: VirtualSystemSpec = Field(default_factory=lambda: VirtualSystemSpec.model_validate({}))


class Interface(_Strict):
    mac: Mac
    ips: list[IpAddress] = Field(description="Addresses the workload sends from on this interface; may be empty.")
    port: PortName | None = Field(None, description="Dataplane interface the workload must arrive on (pins it).")


def _without(handler: SerializerFunctionWrapHandler, model: BaseModel, defaults: dict[str, Any]) -> dict[str, Any]:
    """The model's dump without the fields that hold their default: a field added later must not change the
    canonical documents (and digests, and diffs) of policies that do not use it."""
    data: dict[str, Any] = handler(model)
    for name, default in defaults.items():
        if name in data and data[name] == default:
            del data[name]
    return data


class WorkloadSpec(_Strict):
    interfaces: list[Interface] = Field(min_length=1)
    host: str | None = Field(None, min_length=1, description="Hypervisor host currently running the workload.")
    owner: UserName | None = Field(
        None,
        description="The user the workload belongs to (a VDI desktop): its flows are that user's, unless a "
        "login or an API mapping of its address says otherwise.",
    )

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without(handler, self, {"owner": None})


class Workload(_Strict):
    """A VM identity: moving it changes its bindings, never the rules that name it."""

    api_version: Literal["ngfw/v1"] = Field(alias="apiVersion")
    kind: Literal["Workload"]
    metadata: WorkloadMetadata
    spec: WorkloadSpec


class GroupSpec(_NeedsOneOf):
    one_of = ("selector", "members")
    needs = "a Group needs a selector, members, or both"

    selector: dict[LabelKey, LabelValue] | None = Field(
        None, description="Workloads of the vsys whose labels include all of these (matchLabels)."
    )
    members: list[Member] | None = Field(None, description="Static members, vm:NAME.")

    @model_validator(mode="after")
    def _selector_names_a_label(self) -> GroupSpec:
        # An empty selector would match every workload of the vsys (Kubernetes
        # semantics); in a firewall that is far more likely a mistake than intent,
        # and `any` already says "everyone".
        if self.selector is not None and not self.selector:
            raise ValueError("selector must name at least one label (use `any` in rules for every workload)")
        return self


class Group(_Strict):
    """A set of workloads of one vsys, by label selector and/or static members."""

    api_version: Literal["ngfw/v1"] = Field(alias="apiVersion")
    kind: Literal["Group"]
    metadata: VsysMetadata
    spec: GroupSpec


MAX_CAPTURE_PACKETS = 10000  # frames per flow the fastpath counts down (capture.pxi's CAP_MAX_PACKETS)


class Capture(_Strict):
    """Packet capture of a rule's flows (or a threat profile's alerting flows) to pcap files per vsys."""

    packets: int = Field(
        ge=1,
        le=MAX_CAPTURE_PACKETS,
        description="Frames of each flow written to the vsys's capture files: the first N (for a threat "
        "profile: kept back, written only if the flow alerts), and every frame a signature alerts on.",
    )


class Rule(_Strict):
    name: Name
    from_: list[Reference] = Field(alias="from", min_length=1)
    to: list[Reference] = Field(min_length=1)
    services: list[ServiceName] = Field(default_factory=lambda: ["any"], min_length=1)
    applications: list[str] = Field(
        default_factory=lambda: ["any"],
        min_length=1,
        description="Application names from the App-ID catalogue (rules/apps/), or [any].",
    )
    action: Literal["allow", "deny", "reject"]
    log: bool = False
    inspect: str | None = Field(
        None,
        description="Threat profile (a ThreatProfile of the rule's vsys, or `default`: every signature set, "
        "actions as written) that inspects the flows this rule allows.",
    )
    capture: Capture | None = Field(None, description="Write the frames of the flows this rule decides to pcap files.")
    description: str | None = None
    users: list[UserRef] = Field(
        default_factory=lambda: ["any"],
        min_length=1,
        description="Who must be behind the flow's source (User-ID): user names, group:NAME (a UserGroup of the "
        "vsys), known-user (any user), unknown (no user), or [any].",
    )

    @field_validator("users")
    @classmethod
    def _users_any_alone(cls, value: list[str]) -> list[str]:
        if "any" in value and len(value) > 1:
            raise ValueError("`any` stands alone: it already includes every user and no user")
        return value

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return _without(handler, self, {"users": ["any"]})

    @field_validator("services")
    @classmethod
    def _app_default_alone(cls, value: list[str]) -> list[str]:
        if "application-default" in value and len(value) > 1:
            raise ValueError("application-default stands alone: it means the identified application's own ports")
        return value

    @field_validator("applications")
    @classmethod
    def _app_names(cls, value: list[str]) -> list[str]:
        # names are checked against the catalogue when the policy is compiled
        if "any" in value and len(value) > 1:
            raise ValueError("`any` stands alone: it already includes every application")
        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9.+_-]*", name):
                raise ValueError(f"{name!r} is not an application name (lower case letters, digits, . + _ -)")
        return value


class SecurityPolicySpec(_Strict):
    rules: list[Rule] = Field(description="Evaluated in order; the first matching rule decides.")


class SecurityPolicy(_Strict):
    """Ordered rules of one vsys; several policies of a vsys are concatenated in load order."""

    api_version: Literal["ngfw/v1"] = Field(alias="apiVersion")
    kind: Literal["SecurityPolicy"]
    metadata: VsysMetadata
    spec: SecurityPolicySpec


DEFAULT_INSPECT_DEPTH = 1 << 20  # bytes per direction, Suricata's default stream depth


class ThreatProfileSpec(_Strict):
    signatures: list[str] = Field(
        default_factory=list,
        description="Signature sets (names given to the dataplane's --rules NAME=PATH); empty: all of them.",
    )
    action: Literal["as-written", "alert", "drop"] = Field(
        "as-written",
        description="`as-written`: each signature's own action; `alert`: audit mode, nothing is blocked; "
        "`drop`: alert signatures block too.",
    )
    depth: int = Field(
        DEFAULT_INSPECT_DEPTH,
        ge=0,
        le=1 << 31,
        description="Bytes of each direction of a flow inspected; later bytes pass uninspected (counted).",
    )
    exceptions: list[SignatureException] = Field(
        default_factory=list,
        description="Signatures this profile does not run, everywhere or for some endpoints (false positives).",
    )
    thresholds: ThresholdConfig = Field(
        default_factory=list,
        description="Suricata threshold.config lines, with Suricata's semantics: suppress, threshold, rate_filter.",
    )
    capture: Capture | None = Field(
        None, description="Write the frames of flows that alert (the alerting frame and the flow's first ones)."
    )


SID_PATTERN = r"^([0-9]+:)?[0-9]+$"


def _check_sid(value: int | str) -> int | str:
    """A signature by sid (generator 1) or `gid:sid`; canonical: the bare sid for gid 1, else `gid:sid`."""
    if isinstance(value, bool):
        raise ValueError("must be a signature id (2019401) or gid:sid (1:2019401)")
    text = str(value)
    if not re.fullmatch(SID_PATTERN, text):
        raise ValueError("must be a signature id (2019401) or gid:sid (1:2019401)")
    gid_text, _, sid_text = text.rpartition(":")
    gid, sid = int(gid_text or 1), int(sid_text)
    if not 0 < sid < 1 << 32 or not 0 < gid < 1 << 32:
        raise ValueError("gid and sid are numbers from 1 to 4294967295")
    return sid if gid == 1 else f"{gid}:{sid}"


def parse_sid(canonical: int | str) -> tuple[int, int]:
    """(gid, sid) of a canonical `SignatureException.sid`."""
    gid_text, _, sid_text = str(canonical).rpartition(":")
    return int(gid_text or 1), int(sid_text)


SignatureId = Annotated[
    int | str,
    AfterValidator(_check_sid),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 4294967295},
                {"type": "string", "pattern": SID_PATTERN},
            ],
            "description": "A signature's sid (generator 1), or gid:sid.",
        }
    ),
]
ExceptionScope = Annotated[
    list[Reference],
    Field(min_length=1),
]


class SignatureException(_Strict):
    """A signature this profile does not run: everywhere, or only for the endpoints named (false positives)."""

    sid: SignatureId
    source: ExceptionScope | None = Field(
        None, description="Only when the alerting packet comes from one of these (vm:, group:, cidr:)."
    )
    destination: ExceptionScope | None = Field(None, description="Only when the alerting packet goes to one of these.")
    endpoints: ExceptionScope | None = Field(
        None, description="Only when either address of the alerting packet is one of these."
    )
    description: str | None = Field(None, description="Why: a ticket, the false positive it silences.")

    @field_validator("source", "destination", "endpoints")
    @classmethod
    def _no_any(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and "any" in value:
            raise ValueError("`any` is every endpoint: leave the field out instead")
        return value


def _check_thresholds(value: str | list[str]) -> str | list[str]:
    from ngfw.compiler.threshold_config import parse_threshold_config  # the model needs no rule compiler

    parse_threshold_config(value)  # ThresholdConfigError is a ValueError naming the line
    return value


ThresholdConfig = Annotated[
    str | list[str],
    AfterValidator(_check_thresholds),
    WithJsonSchema(
        {
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
            "description": "Suricata threshold.config lines (suppress, threshold/event_filter, "
            "rate_filter): one text, or one line per item.",
        }
    ),
]


class ThreatProfile(_Strict):
    """Which signatures inspect the flows of a rule that names this profile (`inspect: NAME`), and how."""

    api_version: Literal["ngfw/v1"] = Field(alias="apiVersion")
    kind: Literal["ThreatProfile"]
    metadata: VsysMetadata
    spec: ThreatProfileSpec = Field(default_factory=ThreatProfileSpec)


SHA256_PATTERN = r"^[0-9a-f]{64}$"


class SignatureSetSpec(_Strict):
    sha256: Annotated[
        str,
        Field(
            pattern=SHA256_PATTERN,
            description="sha256 of the set's archive, as `ngfw rules push` stored it in control.",
        ),
    ]
    description: str | None = Field(None, description="Where it came from (suricata-update of a date, ...).")


class SignatureSet(_Strict):
    """Rule files control distributes to every host by content hash (`ngfw rules push NAME PATH`); profiles
    name it in `signatures` like a `--rules NAME=PATH` set. Site-wide: it belongs to no vsys."""

    api_version: Literal["ngfw/v1"] = Field(alias="apiVersion")
    kind: Literal["SignatureSet"]
    metadata: ClusterMetadata
    spec: SignatureSetSpec


class LdapGroup(_Strict):
    dn: str = Field(min_length=1, max_length=1024, description="The group's distinguished name in the directory.")
    source: Name | None = Field(
        None, description="The UserSource whose directory holds it (default: the only UserSource with `ldap`)."
    )


class UserGroupSpec(_NeedsOneOf):
    one_of = ("members", "ldap")
    needs = "a UserGroup needs members, ldap, or both"

    members: list[UserName] | None = Field(None, description="Users named here (static members).")
    ldap: LdapGroup | None = Field(
        None, description="Members from a directory group (nested groups included), refreshed by control."
    )


class UserGroup(_Strict):
    """A named set of users of one vsys, referenced as `group:NAME` in a rule's `users`."""

    api_version: Literal["ngfw/v1"] = Field(alias="apiVersion")
    kind: Literal["UserGroup"]
    metadata: VsysMetadata
    spec: UserGroupSpec


def _check_login_regex(value: str) -> str:
    try:
        compiled = re.compile(value)
    except re.error as exc:
        raise ValueError(f"is not a regular expression: {exc}") from None
    missing = [g for g in ("user", "ip") if g not in compiled.groupindex]
    if missing:
        raise ValueError(
            "the regex has no named group "
            + " and no ".join(f"`{g}`" for g in missing)
            + " (write (?P<user>...) and (?P<ip>...) around the user name and the address)"
        )
    return value


LoginRegex = Annotated[
    str,
    AfterValidator(_check_login_regex),
    WithJsonSchema(
        {
            "type": "string",
            "description": "A Python regular expression with named groups `user` and "
            "`ip`, searched in a syslog message.",
        }
    ),
]


class SyslogProfile(_Strict):
    login: LoginRegex = Field(description="A login: (?P<user>...) logged in from (?P<ip>...).")
    logout: LoginRegex | None = Field(None, description="A logout: the mapping of (?P<ip>...) to (?P<user>...) ends.")
    ttl: int = Field(3600, gt=0, le=30 * 86400, description="Seconds a login's mapping lasts without a logout.")


class LdapDirectory(_Strict):
    url: Annotated[str, Field(pattern=r"^ldaps?://[^\s/]+/?$", description="ldap://HOST:PORT or ldaps://HOST:PORT")]
    bind_dn: str | None = Field(None, alias="bindDN", description="Who control binds as (default: anonymous).")
    password_file: str | None = Field(
        None, alias="passwordFile", description="File on control's host holding the bind password."
    )
    ca_file: str | None = Field(
        None,
        alias="caFile",
        description="ldaps://: PEM file of the CAs the directory's certificate must chain to "
        "(default: the system's); its name must match the URL's host.",
    )
    refresh: int = Field(300, ge=1, le=86400, description="Seconds between two reads of the groups.")
    timeout: float = Field(5.0, gt=0, le=120, description="Seconds an answer of the directory may take.")
    user_attribute: str = Field(
        "uid",
        alias="userAttribute",
        pattern=r"^[A-Za-z][A-Za-z0-9-]{0,63}$",
        description="The attribute of a member entry that is its user name (uid; sAMAccountName for AD).",
    )


NetworkText = Annotated[str, AfterValidator(syntax.check_network), _schema(description="An IPv4 or IPv6 prefix.")]


class UserSourceSpec(_NeedsOneOf):
    one_of = ("syslog", "ldap", "unbound_addresses")
    needs = "a UserSource needs syslog, ldap or unboundAddresses"

    syslog: SyslogProfile | None = Field(
        None, description="Login/logout lines control's syslog receiver (`ngfw control --syslog`) parses."
    )
    ldap: LdapDirectory | None = Field(None, description="A directory UserGroups take members from.")
    unbound_addresses: list[NetworkText] | None = Field(
        None,
        alias="unboundAddresses",
        description="Addresses of no workload that user mappings may still name (a VPN pool): off by default.",
    )


class UserSource(_Strict):
    """Where user identities come from, for the whole site: login lines of syslog, a directory, and the
    addresses outside every workload that may be mapped to users."""

    api_version: Literal["ngfw/v1"] = Field(alias="apiVersion")
    kind: Literal["UserSource"]
    metadata: ClusterMetadata
    spec: UserSourceSpec


Resource = VirtualSystem | Workload | Group | SecurityPolicy | ThreatProfile | SignatureSet | UserGroup | UserSource

KINDS: dict[
    str,
    type[VirtualSystem]
    | type[Workload]
    | type[Group]
    | type[SecurityPolicy]
    | type[ThreatProfile]
    | type[SignatureSet]
    | type[UserGroup]
    | type[UserSource],
] = {
    "VirtualSystem": VirtualSystem,
    "Workload": Workload,
    "Group": Group,
    "SecurityPolicy": SecurityPolicy,
    "ThreatProfile": ThreatProfile,
    "SignatureSet": SignatureSet,
    "UserGroup": UserGroup,
    "UserSource": UserSource,
}
SITE_KINDS = ("SignatureSet", "UserSource")  # resources of the whole site: no vsys ("" where a vsys is asked for)


def vsys_of(resource: Resource) -> str:
    """The vsys a resource belongs to (a VirtualSystem belongs to itself, a SignatureSet to none: "")."""
    if isinstance(resource, VirtualSystem):
        return resource.metadata.name
    if isinstance(resource, SignatureSet | UserSource):
        return ""
    return resource.metadata.vsys


def label(resource: Resource) -> str:
    """How messages name a resource: `Workload tenant-a/web-01`, `VirtualSystem tenant-a`, `SignatureSet et`."""
    if isinstance(resource, VirtualSystem | SignatureSet | UserSource):
        return f"{resource.kind} {resource.metadata.name}"
    return f"{resource.kind} {resource.metadata.vsys}/{resource.metadata.name}"


def dump(resource: Resource) -> dict[str, Any]:
    """The canonical document: user spellings of field names, every default filled in."""
    return resource.model_dump(mode="json", by_alias=True)


@dataclass(frozen=True)
class LoadedResource:
    """A resource and where it came from."""

    resource: Resource
    file: str
    index: int  # document index within the file, 0-based

    @property
    def label(self) -> str:
        return label(self.resource)

    @property
    def origin(self) -> str:
        return f"{self.file}, document {self.index + 1}"

    def problem(self, field: str, message: str) -> str:
        return f"{self.file}: {self.label}: {field}: {message}"
