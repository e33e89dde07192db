"""The fastpath's policy decision against its pure-Python twin (`ngfw.reference.policy`).

Hypothesis builds random compiled policies (vsys, workloads, rules mixing `any`, workload sets,
CIDRs and services) and random first packets between workloads and the outside; each packet is
injected into a fresh engine and the flow it creates must carry the twin's (action, rule, vsys).
Rules may name users (`users:`: user names, directory groups, `known-user`, `unknown`), and the flow's
source address may be mapped to a user in the engine's user table (User-ID).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from ngfw._fastpath import engine
from ngfw.compiler.principals import group_principal, user_principal
from ngfw.compiler.tables import (
    Action,
    AddressSet,
    CompiledPolicy,
    CompiledRule,
    CompiledWorkload,
    IPAddress,
    Service,
)
from ngfw.reference import policy as reference
from ngfw.wire import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP

logging.getLogger("scapy.runtime").setLevel(logging.ERROR)

ACTIONS = {"allow": int(Action.ALLOW), "deny": int(Action.DENY), "reject": int(Action.REJECT)}
OUTSIDE_MAC = "02:99:00:00:00:01"
PEER_MAC = "02:88:00:00:00:01"  # the frame's destination MAC; a wire does not look at it

# Small address pools, so prefixes, workloads and outside hosts overlap often.
V4_HOSTS = [f"10.0.0.{i}" for i in range(1, 9)] + [f"10.0.1.{i}" for i in range(1, 5)] + ["192.0.2.7", "198.51.100.1"]
V6_HOSTS = [f"fd00::{i}" for i in range(1, 9)] + [f"fd00:1::{i}" for i in range(1, 5)] + ["2001:db8::7"]
# IPv6 prefixes stay out of ::ffff:0:0/96; see test_an_ipv6_prefix_does_not_contain_ipv4_endpoints
PREFIXES = [
    "0.0.0.0/0",
    "10.0.0.0/8",
    "10.0.0.0/24",
    "10.0.0.0/29",
    "10.0.0.4/30",
    "10.0.0.8/29",
    "10.0.1.0/24",
    "10.0.0.3/32",
    "192.0.2.0/24",
    "fd00::/16",
    "fd00::/64",
    "fd00::/125",
    "fd00::4/126",
    "fd00:1::/64",
    "2000::/3",
    "2001:db8::7/128",
]
PORTS = [0, 22, 53, 80, 443, 1024, 8080, 65535]


@dataclass(frozen=True)
class Endpoint:
    """One side of a flow: a workload (index, its MAC and one of its IPs) or an outside host."""

    wl: int
    mac: str
    ip: str


@dataclass(frozen=True)
class Flow:
    src: Endpoint
    dst: Endpoint
    proto: int
    sport: int
    dport: int
    user: str | None = None  # the user mapped to the source address (USERS), None: no mapping


# User-ID: a few users and directory groups, each user in some of the groups
USERS = ["alice", "bob", "carol"]
DIRECTORY = {"alice": ["g0", "g1"], "bob": ["g1"], "carol": []}
USER_ITEMS = USERS + ["dave", "group:g0", "group:g1", "group:g2", "known-user", "unknown"]


# ---------------------------------------------------------------- strategies


# Strategies are built once: building them inside the composite per rule costs more than the test.
bits8 = st.integers(0, 255)
prefix_lists = st.lists(st.sampled_from(PREFIXES), max_size=2, unique=True)
ports = st.sampled_from(PORTS) | st.integers(0, 65535)
widths = st.sampled_from([0, 0, 1, 100, 65535])
FIXED_SERVICES = [Service(PROTO_ICMP), Service(PROTO_ICMPV6), Service(PROTO_TCP), Service(PROTO_UDP)]


def address_set(draw: st.DrawFn, members: list[int]) -> AddressSet:
    """`any`, or workloads of the rule's own vsys (the compiler's contract) and/or prefixes."""
    if draw(st.integers(0, 3)) == 0:
        return AddressSet(any=True)
    mask = draw(bits8)
    workloads = frozenset(w for i, w in enumerate(members) if mask >> i & 1)
    return AddressSet(workloads=workloads, cidrs=tuple(ipaddress.ip_network(n) for n in draw(prefix_lists)))


def user_fields(draw: st.DrawFn) -> dict[str, object]:
    """A rule's `users:` as the compiler writes it (ngfw.compiler.policy._users), or none (any user)."""
    if draw(st.integers(0, 2)) > 0:
        return {}
    items = draw(st.lists(st.sampled_from(USER_ITEMS), min_size=1, max_size=3, unique=True))
    principals: dict[int, int] = {}
    for index, item in enumerate(items):
        if item.startswith("group:"):
            principals.setdefault(group_principal("v", item[6:]), index)
        elif item not in ("known-user", "unknown"):
            principals.setdefault(user_principal(item), index)
    return {
        "users": tuple(items),
        "user_principals": tuple(principals.items()),
        "users_known": items.index("known-user") if "known-user" in items else -1,
        "users_unknown": items.index("unknown") if "unknown" in items else -1,
    }


def service_list(draw: st.DrawFn) -> tuple[Service, ...]:
    services = []
    for _ in range(draw(st.integers(0, 3))):  # none: any service
        if draw(st.booleans()):
            lo = draw(ports)
            services.append(Service(draw(st.sampled_from([PROTO_TCP, PROTO_UDP])), lo, min(lo + draw(widths), 65535)))
        else:
            services.append(draw(st.sampled_from(FIXED_SERVICES)))
    return tuple(services)


@st.composite
def policies(draw: st.DrawFn, min_vsys: int = 1) -> CompiledPolicy:
    n_vsys = draw(st.integers(min_vsys, 3))
    n_wl = draw(st.integers(1, 8))
    v4 = draw(st.lists(st.sampled_from(V4_HOSTS), min_size=n_wl, max_size=n_wl, unique=True))
    v6 = draw(st.lists(st.sampled_from(V6_HOSTS), min_size=n_wl, max_size=n_wl, unique=True))
    workloads = []
    for i in range(n_wl):
        ips: list[IPAddress] = [ipaddress.ip_address(v4[i])]
        if draw(st.booleans()):
            ips.append(ipaddress.ip_address(v6[i]))
        workloads.append(
            CompiledWorkload(
                name=f"wl{i}",
                vsys=draw(st.integers(0, n_vsys - 1)),
                macs=(bytes([2, 0, 0, 0, 0, i + 1]),),
                ips=tuple(ips),
                port=draw(st.sampled_from([None, None, "a"])),  # pinned to where the test injects
            )
        )
    rules = []
    for i in range(draw(st.integers(1, 15))):
        vsys = draw(st.integers(0, n_vsys - 1))
        members = [w for w, wl in enumerate(workloads) if wl.vsys == vsys]
        rules.append(
            CompiledRule(
                name=f"r{i}",
                vsys=vsys,
                src=address_set(draw, members),
                dst=address_set(draw, members),
                services=service_list(draw),
                action=draw(st.sampled_from([Action.ALLOW, Action.ALLOW, Action.DENY, Action.REJECT])),
                log=draw(st.booleans()),
                **user_fields(draw),  # type: ignore[arg-type]
            )
        )
    rules.sort(key=lambda r: r.vsys)  # stable: keeps each vsys' evaluation order
    return CompiledPolicy(
        version=1,
        vsys=tuple(f"v{i}" for i in range(n_vsys)),
        workloads=tuple(workloads),
        rules=tuple(rules),
    )


@st.composite
def flows(draw: st.DrawFn, policy: CompiledPolicy, outsiders: bool = True) -> Flow:
    v6 = draw(st.booleans())
    proto = draw(st.sampled_from([PROTO_TCP, PROTO_UDP, PROTO_ICMPV6 if v6 else PROTO_ICMP]))
    family = 6 if v6 else 4

    def endpoint() -> Endpoint:
        candidates = [w for w, wl in enumerate(policy.workloads) if any(ip.version == family for ip in wl.ips)]
        if candidates and (not outsiders or draw(st.integers(0, 3)) > 0):  # two outsiders are a dull case
            w = draw(st.sampled_from(candidates))
            wl = policy.workloads[w]
            ip = next(ip for ip in wl.ips if ip.version == family)
            return Endpoint(w, wl.macs[0].hex(":"), str(ip))
        # an outside host: an address no workload owns (the source would be a spoofed one otherwise)
        owned = {str(ip) for wl in policy.workloads for ip in wl.ips}
        pool = [h for h in (V6_HOSTS if v6 else V4_HOSTS) if h not in owned]
        return Endpoint(-1, OUTSIDE_MAC, draw(st.sampled_from(pool)))

    src = endpoint()
    dst = endpoint()
    user = draw(st.sampled_from([None, *USERS]))
    return Flow(src, dst, proto, draw(st.integers(1024, 65535)), draw(ports), user)


@st.composite
def policies_and_flows(draw: st.DrawFn, min_vsys: int = 1, outsiders: bool = True) -> tuple[CompiledPolicy, list[Flow]]:
    policy = draw(policies(min_vsys))
    return policy, draw(st.lists(flows(policy, outsiders), min_size=1, max_size=4))


# ---------------------------------------------------------------- the engine side


def first_packet(flow: Flow) -> Packet:
    ip: Packet = (IPv6 if ":" in flow.src.ip else IP)(src=flow.src.ip, dst=flow.dst.ip)
    if flow.proto == PROTO_TCP:
        l4: Packet = TCP(sport=flow.sport, dport=flow.dport, flags="S")
    elif flow.proto == PROTO_UDP:
        l4 = UDP(sport=flow.sport, dport=flow.dport)
    elif flow.proto == PROTO_ICMP:
        l4 = ICMP(type=8, id=flow.sport)
    else:
        l4 = ICMPv6EchoRequest(id=flow.sport)
    return Ether(src=flow.src.mac, dst=PEER_MAC) / ip / l4


def engine_decision(policy: CompiledPolicy, flow: Flow) -> tuple[int, int, int]:
    """Inject the flow's first packet into a fresh engine; the decision the new flow carries."""
    e = engine.Engine(flow_capacity=4096)
    a = e.add_memory_port("a", 0)
    b = e.add_memory_port("b", 0)
    e.set_tables(engine.Tables(policy, {"a": a, "b": b}))
    if flow.user is not None:
        e.set_users(user_table({flow.src.ip: flow.user}))
    e.inject(a, bytes(first_packet(flow)))
    created = e.flows()
    assert len(created) == 1, f"expected one flow, got {created}; drops {e.stats()['drops']}"
    f = created[0]
    assert (f["src_ip"], f["dest_ip"]) == (flow.src.ip, flow.dst.ip)
    assert (f["src_wl"], f["dst_wl"]) == (flow.src.wl, flow.dst.wl)
    return ACTIONS[f["action"]], f["rule"], f["vsys"]


def user_table(mappings: dict[str, str]) -> engine.UserTable:
    """The engine's user table: addresses to users, and the users' directory groups (DIRECTORY)."""
    groups = {user_principal(u): (1, [group_principal("v", g) for g in DIRECTORY[u]]) for u in USERS}
    return engine.UserTable([(ipaddress.ip_address(ip), user_principal(u)) for ip, u in mappings.items()], groups)


def twin_decision(policy: CompiledPolicy, flow: Flow) -> tuple[int, int, int]:
    # an ICMP echo's identifier is the flow's "port" on both sides; only TCP/UDP services look at it
    dport = flow.dport if flow.proto in (PROTO_TCP, PROTO_UDP) else flow.sport
    user = user_principal(flow.user) if flow.user else 0
    groups = frozenset(group_principal("v", g) for g in DIRECTORY[flow.user]) if flow.user else frozenset()
    return reference.decide(policy, flow.src.wl, flow.src.ip, flow.dst.wl, flow.dst.ip, flow.proto, dport, user, groups)


def describe(policy: CompiledPolicy) -> str:
    lines = [f"vsys {policy.vsys}"]
    lines += [
        f"wl{i}: vsys {wl.vsys} {wl.macs[0].hex(':')} {[str(ip) for ip in wl.ips]} port {wl.port}"
        for i, wl in enumerate(policy.workloads)
    ]
    lines += [
        f"rule {i} {r.name}: vsys {r.vsys} {r.src} -> {r.dst} {r.services} {r.action.name} users {r.users}"
        for i, r in enumerate(policy.rules)
    ]
    return "\n".join(lines)


def assert_decided_alike(policy: CompiledPolicy, flows_: list[Flow]) -> None:
    for flow in flows_:
        expected = twin_decision(policy, flow)
        got = engine_decision(policy, flow)
        assert got == expected, f"{flow}: engine {got}, twin {expected}\n{describe(policy)}"


# ---------------------------------------------------------------- tests


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies_and_flows())
def test_engine_decides_flows_like_the_twin(case: tuple[CompiledPolicy, list[Flow]]) -> None:
    assert_decided_alike(*case)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies_and_flows(min_vsys=2, outsiders=False))
def test_engine_decides_flows_between_workloads_like_the_twin(case: tuple[CompiledPolicy, list[Flow]]) -> None:
    # workload to workload across 2-3 vsys: where egress and ingress rules both have a say
    assert_decided_alike(*case)


def _policy(workloads: list[CompiledWorkload], rules: list[CompiledRule], n_vsys: int = 2) -> CompiledPolicy:
    return CompiledPolicy(1, tuple(f"v{i}" for i in range(n_vsys)), tuple(workloads), tuple(rules))


def _wl(i: int, vsys: int, ip: str) -> CompiledWorkload:
    return CompiledWorkload(f"wl{i}", vsys, (bytes([2, 0, 0, 0, 0, i + 1]),), (ipaddress.ip_address(ip),))


def _rule(name: str, vsys: int, src: AddressSet, dst: AddressSet, action: Action, *svc: Service) -> CompiledRule:
    return CompiledRule(name, vsys, src, dst, tuple(svc), action)


ANY = AddressSet(any=True)


def _cidrs(*prefixes: str) -> AddressSet:
    return AddressSet(cidrs=tuple(ipaddress.ip_network(p) for p in prefixes))


def _flow(policy: CompiledPolicy, src: int | str, dst: int | str, proto: int = PROTO_TCP, dport: int = 80) -> Flow:
    def ep(x: int | str) -> Endpoint:
        if isinstance(x, int):
            return Endpoint(x, policy.workloads[x].macs[0].hex(":"), str(policy.workloads[x].ips[0]))
        return Endpoint(-1, OUTSIDE_MAC, x)

    return Flow(ep(src), ep(dst), proto, 40000, dport)


def test_a_cross_vsys_flow_needs_both_allows() -> None:
    policy = _policy(
        [_wl(0, 0, "10.0.0.1"), _wl(1, 1, "10.0.1.1")],
        [
            _rule("egress", 0, AddressSet(workloads=frozenset({0})), _cidrs("10.0.1.0/24"), Action.ALLOW),
            _rule("ingress-ssh", 1, _cidrs("10.0.0.0/24"), ANY, Action.ALLOW, Service(PROTO_TCP, 22, 22)),
            _rule("ingress-web", 1, ANY, ANY, Action.REJECT, Service(PROTO_TCP, 80, 80)),
        ],
    )
    allow = int(Action.ALLOW)
    # both allow: the egress rule names the flow, in the source's vsys
    ssh = _flow(policy, 0, 1, dport=22)
    assert engine_decision(policy, ssh) == twin_decision(policy, ssh) == (allow, 0, 0)
    # the destination's vsys refuses: its rule and vsys name the flow
    assert engine_decision(policy, _flow(policy, 0, 1)) == (int(Action.REJECT), 2, 1)
    # the destination's vsys has no rule for it: its implicit default deny
    assert engine_decision(policy, _flow(policy, 0, 1, dport=443)) == (int(Action.DENY), -1, 1)


def test_only_one_workload_means_its_vsys_decides() -> None:
    policy = _policy([_wl(0, 1, "10.0.0.1")], [_rule("in", 1, ANY, ANY, Action.ALLOW, Service(PROTO_UDP, 53, 53))])
    assert engine_decision(policy, _flow(policy, "192.0.2.7", 0, PROTO_UDP, 53)) == (int(Action.ALLOW), 0, 1)
    assert engine_decision(policy, _flow(policy, 0, "192.0.2.7", PROTO_UDP, 54)) == (int(Action.DENY), -1, 1)


def test_no_workload_on_either_side_is_denied_without_a_vsys() -> None:
    policy = _policy([_wl(0, 0, "10.0.0.1")], [_rule("all", 0, ANY, ANY, Action.ALLOW)])
    flow = _flow(policy, "192.0.2.7", "198.51.100.1")
    assert engine_decision(policy, flow) == twin_decision(policy, flow) == (int(Action.DENY), -1, -1)


def test_an_ipv6_prefix_does_not_contain_ipv4_endpoints() -> None:
    policy = _policy(
        [_wl(0, 0, "10.0.0.1")],
        [_rule("v6-only", 0, ANY, _cidrs("::/0"), Action.ALLOW)],
        n_vsys=1,
    )
    flow = _flow(policy, 0, "192.0.2.7")
    # docs/policy.md: `cidr:` matches "every endpoint whose IP is in PREFIX"; 192.0.2.7 is not in ::/0
    assert twin_decision(policy, flow) == (int(Action.DENY), -1, 0)
    assert engine_decision(policy, flow) == (int(Action.DENY), -1, 0)
