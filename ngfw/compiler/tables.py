"""The compiled policy: the contract between the policy compiler and the fastpath.

Everything here is plain, immutable data with numeric identities. The compiler
(`ngfw.compiler.policy`) produces a `CompiledPolicy` from resources; the fastpath
(`ngfw._fastpath`) turns it into C tables off the hot path and swaps them in.
Names live only here (for logs and metrics); the fastpath sees indexes.
"""

from __future__ import annotations

import enum
import ipaddress

from ngfw.compiler.build import BuildRecord
from ngfw.values import field, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Action(enum.IntEnum):
    """What a rule does to a flow; values are the fastpath's verdict codes."""

    ALLOW = 0
    DENY = 1  # silent drop
    REJECT = 2  # TCP RST / ICMP unreachable sent by the dataplane


@value
class AddressSet:
    """One side (`from` or `to`) of a rule.

    Matches when `any` is set, or the endpoint is one of `workloads` (indexes into
    `CompiledPolicy.workloads`; groups are expanded to members at compile time),
    or the endpoint's IP is inside one of `cidrs`.
    """

    any: bool = False
    workloads: frozenset[int] = frozenset()
    cidrs: tuple[IPNetwork, ...] = ()
    # the `vm:`/`group:` references `workloads` was expanded from, so that an identity update
    # (ngfw.compiler.identity) can expand them again without recompiling the rule
    refs: tuple[str, ...] = field(default=(), compare=False)


@value
class Service:
    """A protocol and an inclusive destination-port range.

    `proto` is an IP protocol number (`ngfw.wire.PROTO_ANY` matches every protocol). For
    ICMP/ICMPv6 the port range is unused (0..65535).
    """

    proto: int
    port_lo: int = 0
    port_hi: int = 65535


@value
class CompiledRule:
    name: str
    vsys: int  # index into CompiledPolicy.vsys
    src: AddressSet
    dst: AddressSet
    services: tuple[Service, ...] = ()  # empty: any service
    action: Action = Action.DENY
    log: bool = False
    apps: frozenset[int] = frozenset()  # catalogue app ids; empty: any application
    app_default: bool = False  # services: [application-default]: the identified app's default ports
    profile: int = -1  # index into CompiledPolicy.profiles (`inspect:`); -1: not inspected
    capture: int = 0  # `capture.packets`: frames of each flow written to the capture files; 0: none
    # User-ID (`users:`): the items as written (empty: any user, or none); the principals that match
    # (ngfw.compiler.principals: a user, or a directory group's members) with the item each comes from;
    # the item index of `known-user` (any user) and `unknown` (no user), -1 when absent
    users: tuple[str, ...] = ()
    user_principals: tuple[tuple[int, int], ...] = ()
    users_known: int = -1
    users_unknown: int = -1


@value
class CompiledException:
    """A signature a profile does not run (`spec.exceptions[index]`): everywhere when no side is given,
    else only for alerting packets whose source is in `source`, destination in `destination`, and either
    address in `endpoints` (each side given must hold; workloads by index, as rule sides)."""

    gid: int
    sid: int
    index: int = 0
    source: AddressSet | None = None
    destination: AddressSet | None = None
    endpoints: AddressSet | None = None

    @property
    def scoped(self) -> bool:
        return self.source is not None or self.destination is not None or self.endpoints is not None


@value
class CompiledProfile:
    """A threat profile: signature sets by name (empty: every set the dataplane has), an action
    override (`as-written`, `alert`, `drop`), the inspection depth per direction in bytes, the
    signatures it does not run (`exceptions`) and its threshold.config lines (`thresholds`,
    ngfw.compiler.suricata.threshold_config.ThresholdEntry)."""

    name: str
    vsys: int
    signature_sets: tuple[str, ...] = ()
    action: str = "as-written"
    depth: int = 1 << 20
    exceptions: tuple[CompiledException, ...] = ()
    thresholds: tuple[Any, ...] = ()
    capture: int = 0  # `capture.packets`: frames of alerting flows written to the capture files; 0: none


@value
class CompiledWorkload:
    name: str
    vsys: int  # index into CompiledPolicy.vsys
    macs: tuple[bytes, ...]  # 6 bytes each
    ips: tuple[IPAddress, ...]
    port: str | None = None  # dataplane interface the workload must arrive on, if pinned
    labels: tuple[tuple[str, str], ...] = ()
    owner: str | None = None  # the user its flows belong to (`spec.owner`), unless a mapping says otherwise


@value
class VsysLimits:
    """A vsys's quotas (`spec.limits`); None: no limit. Enforced by the fastpath when a flow is created."""

    max_sessions: int | None = None  # flows charged to the vsys that may exist at once
    new_sessions_per_second: int | None = None  # token bucket, one second's worth of burst


@value
class CompiledPolicy:
    """A whole policy, ready for the fastpath.

    `rules` are ordered by vsys (all rules of vsys 0, then vsys 1, ...) and, within a
    vsys, in evaluation order: the first matching rule decides. A flow that no rule
    matches is denied by the implicit default rule.
    """

    version: int
    vsys: tuple[str, ...]
    workloads: tuple[CompiledWorkload, ...]
    rules: tuple[CompiledRule, ...]
    catalogue: Any = None  # ngfw.compiler.apps.Catalogue the rules' app ids refer to (None: no App-ID)
    profiles: tuple[CompiledProfile, ...] = ()  # threat profiles rules name (`inspect:`)
    vsys_limits: tuple[VsysLimits, ...] = ()  # parallel to `vsys`; shorter (or empty): no limits
    # signature sets control distributes (SignatureSet resources): (name, sha256) in name order
    signature_sets: tuple[tuple[str, str], ...] = ()
    # what the compiler built it from (files, resources, groups); the engine does not read it
    build: BuildRecord = field(default_factory=BuildRecord)

    def limits_of(self, index: int) -> VsysLimits:
        return self.vsys_limits[index] if 0 <= index < len(self.vsys_limits) else VsysLimits()

    def rule_name(self, index: int) -> str:
        return self.rules[index].name if 0 <= index < len(self.rules) else "default-deny"

    def workload_name(self, index: int) -> str:
        return self.workloads[index].name if 0 <= index < len(self.workloads) else ""

    def vsys_name(self, index: int) -> str:
        return self.vsys[index] if 0 <= index < len(self.vsys) else ""

    def app_name(self, index: int) -> str | None:
        if self.catalogue is None or not 0 < index < len(self.catalogue.apps):
            return None
        return str(self.catalogue.apps[index].name)
