"""`ngfw explain`: which vsys, rule and application decide a flow, and why.

Evaluated in Python over the compiled policy, with the same matching functions as the
fastpath's reference twin (ngfw.reference.policy), plus what that twin leaves out:
applications. A rule naming applications matches only once App-ID has named the flow's
application, so without `--app` such rules are listed as "if the application is ..." and
the rule that decides otherwise is given too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ngfw.compiler.principals import user_principal
from ngfw.compiler.tables import CompiledPolicy, CompiledRule, IPAddress
from ngfw.model import syntax
from ngfw.model.resources import SecurityPolicy
from ngfw.reference.policy import endpoint_matches, services_match, users_match
from ngfw.wire import PROTO_TCP, PROTO_UDP

MAX_SKIPPED_SHOWN = 20


class ExplainError(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    text: str  # as the user wrote it
    workload: int  # index into policy.workloads, -1 for the outside world
    ip: IPAddress

    def describe(self, policy: CompiledPolicy) -> str:
        if self.workload < 0:
            return f"{self.ip} (not a workload)"
        wl = policy.workloads[self.workload]
        return f"vm:{wl.name} of vsys {policy.vsys_name(wl.vsys)} ({self.ip})"


@dataclass
class Pass:
    """One vsys's look at the flow (egress of the source's vsys, ingress of the destination's)."""

    vsys: str
    direction: str  # "egress", "ingress", or "inbound" (only the destination is a workload)
    rule: str  # deciding rule, "default-deny" when none matches
    action: str
    why: str
    skipped: list[str] = field(default_factory=list)  # earlier rules that do not match, and why
    conditional: list[str] = field(default_factory=list)  # earlier rules that match only for some applications


def resolve(policy: CompiledPolicy, text: str, family: int | None = None) -> Endpoint:
    """`vm:NAME`, `vm:VSYS/NAME` or an IP address (a workload's address names that workload)."""
    if text.startswith("vm:"):
        name = text[3:]
        vsys, _, bare = name.rpartition("/")
        found = [
            i
            for i, w in enumerate(policy.workloads)
            if w.name == bare and (not vsys or policy.vsys_name(w.vsys) == vsys)
        ]
        if not found:
            raise ExplainError(f"{text}: no such workload in the policy")
        if len(found) > 1:
            homes = ", ".join(policy.vsys_name(policy.workloads[i].vsys) for i in found)
            raise ExplainError(f"{text}: workloads of that name in several vsys ({homes}); write vm:VSYS/{bare}")
        wl = policy.workloads[found[0]]
        ips = [ip for ip in wl.ips if family is None or ip.version == family] or list(wl.ips)
        if not ips:
            raise ExplainError(f"{text}: the workload has no IP address to explain a flow with")
        return Endpoint(text, found[0], ips[0])
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ExplainError(f"{text!r}: expected vm:NAME, vm:VSYS/NAME or an IP address") from None
    owner = next((i for i, w in enumerate(policy.workloads) if ip in w.ips), -1)
    return Endpoint(text, owner, ip)


def explain(
    policy: CompiledPolicy,
    documents: Sequence[Any],
    source: str,
    destination: str,
    service: str,
    app: str | None = None,
    user: str | None = None,
    directory_groups: Sequence[int] = (),
) -> dict[str, Any]:
    """The decision for a new flow from `source` to `destination` on `service` (tcp/80, udp/53, icmp).

    `user` is who is behind the source (None or `unknown`: nobody is mapped to it); `directory_groups`
    the principals of the directory groups control knows that user to be in (a UserGroup's static members
    are in the policy itself)."""
    principal = 0
    if user is not None and user != "unknown":
        try:
            principal = user_principal(syntax.check_user_name(user))
        except ValueError as exc:
            raise ExplainError(f"--user {user!r}: {exc}") from None
    try:
        spec = syntax.parse_service(syntax.check_service(service))
    except (ValueError, KeyError):
        raise ExplainError(f"{service!r}: expected tcp/PORT, udp/PORT, icmp or icmp6") from None
    if spec.proto in (PROTO_TCP, PROTO_UDP) and spec.port_lo != spec.port_hi:
        raise ExplainError(f"{service!r}: name one destination port (a flow has one)")
    app_id = None
    if app is not None:
        if policy.catalogue is None or app not in policy.catalogue.by_name:
            raise ExplainError(f"unknown application {app!r} (see `ngfw apps`)")
        app_id = policy.catalogue.by_name[app]
    src = resolve(policy, source)
    dst = resolve(policy, destination, src.ip.version)
    if src.workload >= 0 and dst.workload < 0 and dst.ip.version != src.ip.version:
        src = resolve(policy, source, dst.ip.version)
    rules = _rule_texts(documents)
    flow = _Flow(policy, rules, src, dst, spec.proto, spec.port_lo, app_id, principal, frozenset(directory_groups))

    src_vsys = policy.workloads[src.workload].vsys if src.workload >= 0 else -1
    dst_vsys = policy.workloads[dst.workload].vsys if dst.workload >= 0 else -1
    passes: list[Pass] = []
    if src_vsys < 0 and dst_vsys < 0:
        verdict = {
            "action": "deny",
            "rule": "default-deny",
            "vsys": None,
            "why": "neither endpoint is a workload: no vsys owns the flow",
        }
    elif src_vsys < 0:
        passes.append(flow.evaluate(dst_vsys, "inbound", src_workload=-1))
    else:
        passes.append(flow.evaluate(src_vsys, "egress", src_workload=src.workload))
        if passes[0].action == "allow" and dst_vsys not in (-1, src_vsys):
            # the destination's vsys must allow it too, and sees the source as the outside world
            passes.append(flow.evaluate(dst_vsys, "ingress", src_workload=-1))
    if passes:
        deciding = next((p for p in passes if p.action != "allow"), passes[0])
        verdict = {"action": deciding.action, "rule": deciding.rule, "vsys": deciding.vsys, "why": deciding.why}
    inspection = _inspection(policy, passes, src, dst) if verdict["action"] == "allow" else None
    return {
        "from": src.describe(policy),
        "to": dst.describe(policy),
        "service": service,
        "application": app,
        "user": user.lower() if user is not None and principal else None,
        "verdict": verdict["action"],
        "rule": verdict["rule"],
        "vsys": verdict["vsys"],
        "why": verdict["why"],
        "passes": [p.__dict__ for p in passes],
        "policy_version": policy.version,
        "inspection": inspection,
    }


def _inspection(policy: CompiledPolicy, passes: list[Pass], src: Endpoint, dst: Endpoint) -> dict[str, Any] | None:
    """The threat profile that inspects an allowed flow (the source vsys' rule's, else the destination's),
    and which of its exceptions hold for the flow's packets, each way."""
    for p in passes:
        vsys_index = policy.vsys.index(p.vsys) if p.vsys in policy.vsys else -1
        rule = next((r for r in policy.rules if r.vsys == vsys_index and r.name == p.rule), None)
        if rule is None or rule.profile < 0:
            continue
        profile = policy.profiles[rule.profile]
        ends = {"client": (src.workload, src.ip), "server": (dst.workload, dst.ip)}
        excepted = []
        for e in profile.exceptions:
            ways = []
            for sender, receiver in (("client", "server"), ("server", "client")):
                (swl, sip), (rwl, rip) = ends[sender], ends[receiver]
                if (
                    (e.source is None or endpoint_matches(e.source, swl, sip))
                    and (e.destination is None or endpoint_matches(e.destination, rwl, rip))
                    and (
                        e.endpoints is None
                        or endpoint_matches(e.endpoints, swl, sip)
                        or endpoint_matches(e.endpoints, rwl, rip)
                    )
                ):
                    ways.append(f"from the {sender}")
            if len(ways) == 2:
                excepted.append(f"signature {e.gid}:{e.sid} does not run (spec.exceptions[{e.index}])")
            elif ways:
                excepted.append(
                    f"signature {e.gid}:{e.sid} does not run on packets {ways[0]} (spec.exceptions[{e.index}])"
                )
        return {
            "profile": profile.name,
            "vsys": p.vsys,
            "signature_sets": list(profile.signature_sets) or ["all"],
            "action": profile.action,
            "depth": profile.depth,
            "exceptions": excepted,
            "threshold_lines": len(profile.thresholds),
        }
    return None


def format_explanation(result: dict[str, Any]) -> list[str]:
    app = f", application {result['application']}" if result["application"] else ""
    user = f", user {result['user']}" if result.get("user") else ", no user known"
    lines = [
        f"flow {result['from']} -> {result['to']} {result['service']}{app}{user}",
        f"verdict: {result['verdict'].upper()} by rule {result['rule']!r} of vsys {result['vsys']} "
        f"(policy version {result['policy_version']})",
        f"why: {result['why']}",
    ]
    for p in result["passes"]:
        lines.append(f"  {p['direction']} in vsys {p['vsys']}: {p['action']} by {p['rule']!r} - {p['why']}")
        for line in p["conditional"]:
            lines.append(f"    before it, {line}")
        for line in p["skipped"]:
            lines.append(f"    skipped {line}")
    inspection = result.get("inspection")
    if inspection:
        lines.append(
            f"inspected by threat profile {inspection['profile']!r} of vsys {inspection['vsys']} (signature "
            f"sets {', '.join(inspection['signature_sets'])}, action {inspection['action']}, "
            f"{inspection['threshold_lines']} threshold.config lines)"
        )
        for line in inspection["exceptions"]:
            lines.append(f"  exception for this flow: {line}")
    elif result["verdict"] == "allow":
        lines.append("not inspected (the rule names no threat profile)")
    return lines


def _rule_texts(documents: Sequence[Any]) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for document in documents:
        resource = document if isinstance(document, SecurityPolicy) else None
        if resource is None and isinstance(document, dict) and document.get("kind") == "SecurityPolicy":
            for rule in document["spec"]["rules"]:
                out[(document["metadata"]["vsys"], rule["name"])] = rule
    return out


@dataclass
class _Flow:
    policy: CompiledPolicy
    rules: dict[tuple[str, str], dict[str, Any]]
    src: Endpoint
    dst: Endpoint
    proto: int
    dport: int
    app: int | None
    user: int = 0
    groups: frozenset[int] = frozenset()

    def _text(self, vsys: str, rule: CompiledRule) -> dict[str, Any]:
        return self.rules.get((vsys, rule.name), {})

    def evaluate(self, vsys_index: int, direction: str, src_workload: int) -> Pass:
        vsys = self.policy.vsys_name(vsys_index)
        skipped: list[str] = []
        conditional: list[str] = []
        for rule in (r for r in self.policy.rules if r.vsys == vsys_index):
            text = self._text(vsys, rule)
            misses = []
            if not endpoint_matches(rule.src, src_workload, self.src.ip):
                outside = (
                    " (seen from this vsys the source is the outside world)"
                    if src_workload < 0 <= self.src.workload
                    else ""
                )
                misses.append(f"from {text.get('from', '?')} does not match the source{outside}")
            if not endpoint_matches(rule.dst, self.dst.workload, self.dst.ip):
                misses.append(f"to {text.get('to', '?')} does not match the destination")
            if not rule.app_default and not services_match(rule.services, self.proto, self.dport):
                misses.append(f"services {text.get('services', ['any'])} do not include it")
            matched_user = users_match(rule, self.user, self.groups)
            if matched_user < 0:
                who = "the user" if self.user else "no user known behind the source (try --user NAME)"
                misses.append(f"users {list(rule.users)} do not include {who}")
            if misses:
                if len(skipped) < MAX_SKIPPED_SHOWN:
                    skipped.append(f"{rule.name!r}: {'; '.join(misses)}")
                continue
            apps = self._app_names(rule)
            if rule.apps or rule.app_default:
                condition = self._app_condition(rule, apps)
                if condition is not None:  # cannot be decided without knowing the application
                    if condition:
                        conditional.append(f"{rule.name!r} would {rule.action.name.lower()} {condition}")
                    elif len(skipped) < MAX_SKIPPED_SHOWN:
                        skipped.append(
                            f"{rule.name!r}: application {self._app_name()} is not one it names "
                            f"({', '.join(apps) or 'on its default ports'})"
                        )
                    continue
            why = (
                f"rule {rule.name!r} matches: from {text.get('from', '?')}, to {text.get('to', '?')}, "
                f"services {text.get('services', ['any'])}"
                + (f", applications {text.get('applications')}" if rule.apps else "")
                + (f", users {rule.users[matched_user]}" if rule.users else "")
            )
            return Pass(vsys, direction, rule.name, rule.action.name.lower(), why, skipped, conditional)
        why = f"no rule of vsys {vsys} matches, so the implicit default rule denies it"
        return Pass(vsys, direction, "default-deny", "deny", why, skipped, conditional)

    def _app_name(self) -> str:
        return self.policy.app_name(self.app) or "?" if self.app is not None else "?"

    def _app_names(self, rule: CompiledRule) -> list[str]:
        return sorted(n for n in (self.policy.app_name(a) for a in rule.apps) if n)

    def _app_condition(self, rule: CompiledRule, apps: list[str]) -> str | None:
        """None: the rule matches this flow's (known) application; "": it does not; else the condition."""
        catalogue = self.policy.catalogue
        if self.app is None:
            names = ", ".join(apps) if apps else "any application"
            ports = " on its default ports" if rule.app_default else ""
            return f"if the application is {names}{ports} (App-ID decides it on the first payload packets)"
        if rule.apps and self.app not in rule.apps:
            return ""
        if rule.app_default and catalogue is not None:
            l4 = self.proto
            if (l4, self.dport) not in catalogue.apps[self.app].ports:
                return ""
        return None
