"""Compiling resources into the fastpath's CompiledPolicy."""

from __future__ import annotations

import ipaddress
import textwrap
from pathlib import Path

from ngfw.compiler.policy import compile_resources, load_policy, policy_digest
from ngfw.compiler.tables import Action, AddressSet, Service
from ngfw.model.loader import load_resources
from ngfw.wire import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP

EXAMPLES = Path(__file__).resolve().parents[3] / "rules" / "examples"


def vsys(name: str) -> str:
    return f"apiVersion: ngfw/v1\nkind: VirtualSystem\nmetadata: {{name: {name}}}\n"


def workload(name: str, vsys: str, mac: str, ip: str, labels: str = "{}") -> str:
    return (
        f"apiVersion: ngfw/v1\nkind: Workload\nmetadata: {{name: {name}, vsys: {vsys}, labels: {labels}}}\n"
        f'spec: {{interfaces: [{{mac: "{mac}", ips: ["{ip}"]}}]}}\n'
    )


def group(name: str, vsys: str, spec: str) -> str:
    return f"apiVersion: ngfw/v1\nkind: Group\nmetadata: {{name: {name}, vsys: {vsys}}}\nspec: {spec}\n"


def policy(name: str, vsys: str, *rules: str) -> str:
    body = "".join(f"    - {rule}\n" for rule in rules)
    return (
        f"apiVersion: ngfw/v1\nkind: SecurityPolicy\nmetadata: {{name: {name}, vsys: {vsys}}}\nspec:\n  rules:\n{body}"
    )


def write(path: Path, *documents: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n".join(textwrap.dedent(d) for d in documents))
    return path


def test_lab_example_compiles_to_the_lab_facts() -> None:
    compiled = load_policy(EXAMPLES / "lab.yaml", version=7)
    assert compiled.version == 7
    assert compiled.vsys == ("tenant-a",)
    assert compiled.build.sources == (str(EXAMPLES / "lab.yaml"),)
    web_01, web_02 = compiled.workloads
    assert (web_01.name, web_01.macs, web_01.ips) == (
        "web-01",
        (bytes.fromhex("020000000101"),),
        (ipaddress.ip_address("10.77.0.11"), ipaddress.ip_address("fd77::11")),
    )
    assert (web_02.name, web_02.macs, web_02.ips) == (
        "web-02",
        (bytes.fromhex("020000000102"),),
        (ipaddress.ip_address("10.77.0.12"), ipaddress.ip_address("fd77::12")),
    )
    assert web_01.labels == (("env", "prod"), ("tier", "web"))
    assert [r.name for r in compiled.rules] == [
        "web-to-server-http",
        "ping",
        "web-to-server-dns",
        "reject-8443",
        "ssh-from-server",
        "default-deny",
    ]
    server = AddressSet(cidrs=(ipaddress.ip_network("10.77.0.100/32"),))
    web = AddressSet(workloads=frozenset({0, 1}))
    http, ping, dns, reject, ssh, deny = compiled.rules
    assert (http.src, http.dst, http.services, http.action, http.log) == (
        web,
        server,
        (Service(PROTO_TCP, 80, 80),),
        Action.ALLOW,
        True,
    )
    assert (ping.src.any, ping.dst.any, ping.services) == (True, True, (Service(PROTO_ICMP),))
    assert (dns.services, dns.action, dns.log) == ((Service(PROTO_UDP, 53, 53),), Action.ALLOW, False)
    assert (reject.src.any, reject.dst, reject.action, reject.log) == (True, server, Action.REJECT, True)
    assert (ssh.src, ssh.dst, ssh.services) == (server, web, (Service(PROTO_TCP, 22, 22),))
    assert (deny.src.any, deny.dst.any, deny.services, deny.action, deny.log) == (True, True, (), Action.DENY, True)
    assert all(r.vsys == 0 for r in compiled.rules)


def test_indexes_follow_sorted_names_and_rules_are_grouped_by_vsys(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        vsys("zeta"),
        vsys("alpha"),
        workload("b", "alpha", "02:00:00:00:00:02", "10.0.0.2"),
        workload("z", "zeta", "02:00:00:00:00:03", "10.0.0.3"),
        workload("a", "alpha", "02:00:00:00:00:01", "10.0.0.1"),
        policy("p1", "zeta", "{name: z1, from: [vm:z], to: [any], action: allow}"),
        policy("p2", "alpha", "{name: a1, from: [vm:a], to: [vm:b], action: allow}"),
        policy("p3", "zeta", "{name: z2, from: [any], to: [any], action: deny}"),
    )
    compiled = load_policy(path)
    assert compiled.vsys == ("alpha", "zeta")
    assert [(w.vsys, w.name) for w in compiled.workloads] == [(0, "a"), (0, "b"), (1, "z")]
    assert [(r.vsys, r.name) for r in compiled.rules] == [(0, "a1"), (1, "z1"), (1, "z2")]
    assert compiled.rules[0].src.workloads == {0} and compiled.rules[0].dst.workloads == {1}
    assert compiled.rules[1].src.workloads == {2}


def test_policies_of_a_vsys_concatenate_in_file_then_document_order(tmp_path: Path) -> None:
    write(
        tmp_path / "10-base.yaml", vsys("t"), policy("first", "t", "{name: r1, from: [any], to: [any], action: allow}")
    )
    write(
        tmp_path / "20-more" / "x.yaml",
        policy("second", "t", "{name: r2, from: [any], to: [any], action: deny}"),
        policy("third", "t", "{name: r3, from: [any], to: [any], action: reject}"),
    )
    compiled = load_policy(tmp_path)
    assert [r.name for r in compiled.rules] == ["r1", "r2", "r3"]
    assert compiled.build.sources == (str(tmp_path / "10-base.yaml"), str(tmp_path / "20-more" / "x.yaml"))


def test_groups_expand_to_workloads_by_all_labels_and_static_members(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        vsys("t"),
        vsys("u"),
        workload("web-prod", "t", "02:00:00:00:00:01", "10.0.0.1", "{tier: web, env: prod}"),
        workload("web-dev", "t", "02:00:00:00:00:02", "10.0.0.2", "{tier: web, env: dev}"),
        workload("db-prod", "t", "02:00:00:00:00:03", "10.0.0.3", "{tier: db, env: prod}"),
        workload("other-web", "u", "02:00:00:00:00:04", "10.0.0.4", "{tier: web, env: prod}"),
        group("web", "t", "{selector: {tier: web}}"),
        group("web-prod", "t", "{selector: {tier: web, env: prod}}"),
        group("mixed", "t", "{selector: {tier: db}, members: [vm:web-dev]}"),
        group("nobody", "t", "{selector: {tier: cache}}"),
        policy(
            "p",
            "t",
            "{name: r1, from: [group:web], to: [group:web-prod], action: allow}",
            "{name: r2, from: [group:mixed], to: [group:nobody], action: allow}",
            "{name: r3, from: [group:web, vm:db-prod, cidr:192.0.2.0/24], to: [any, group:web], action: allow}",
        ),
    )
    compiled = load_policy(path)
    index = {w.name: i for i, w in enumerate(compiled.workloads)}
    r1, r2, r3 = compiled.rules
    assert r1.src.workloads == {index["web-prod"], index["web-dev"]}  # never other-web: selectors stay in their vsys
    assert r1.dst.workloads == {index["web-prod"]}
    assert r2.src.workloads == {index["db-prod"], index["web-dev"]}
    assert r2.dst == AddressSet()  # an empty group matches nobody, it does not mean any
    assert r3.src == AddressSet(
        workloads=frozenset({index["web-prod"], index["web-dev"], index["db-prod"]}),
        cidrs=(ipaddress.ip_network("192.0.2.0/24"),),
    )
    assert r3.dst == AddressSet(any=True)


def test_services_compile_to_protocols_and_port_ranges(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        vsys("t"),
        policy(
            "p",
            "t",
            "{name: r1, from: [any], to: [any], services: [tcp/8000-8080, udp/53, tcp, icmp, icmp6, ipv6-icmp], action: allow}",
            "{name: r2, from: [any], to: [any], services: [tcp/80, any], action: allow}",
            "{name: r3, from: [any], to: [any], action: allow}",
        ),
    )
    r1, r2, r3 = load_policy(path).rules
    assert r1.services == (
        Service(PROTO_TCP, 8000, 8080),
        Service(PROTO_UDP, 53, 53),
        Service(PROTO_TCP, 0, 65535),
        Service(PROTO_ICMP),
        Service(PROTO_ICMPV6),
    )
    assert r2.services == () and r3.services == ()


def test_resources_without_virtual_systems_compile_empty() -> None:
    # a policy *file* without one is refused (test_policy_refusal.py); control's candidates start like this
    compiled = compile_resources([], 1)
    assert (compiled.vsys, compiled.workloads, compiled.rules) == ((), (), ())
    assert compiled.rule_name(0) == "default-deny"


def test_digest_is_stable_and_ignores_spelling_and_file_layout(tmp_path: Path) -> None:
    documents = [
        vsys("t"),
        workload("w", "t", "02:00:00:00:00:01", "fd00::1", "{a: b}"),
        policy("p", "t", "{name: r1, from: [vm:w], to: [cidr:10.0.0.0/8], services: [tcp/80], action: allow}"),
    ]
    one_file = load_policy(write(tmp_path / "one" / "p.yaml", *documents))
    respelt = [
        documents[2].replace("services: [tcp/80]", "services: [tcp/80-80], log: false"),
        documents[1].replace("02:00:00:00:00:01", "02-00-00-00-00-01").replace("fd00::1", "FD00:0::1"),
        documents[0],
    ]
    write(tmp_path / "split" / "a.yaml", respelt[0])
    write(tmp_path / "split" / "b.yaml", respelt[1], respelt[2])
    split = load_policy(tmp_path / "split", version=2)
    assert len(policy_digest(one_file)) == 64
    assert policy_digest(split) == policy_digest(one_file)
    assert policy_digest(load_policy(tmp_path / "one" / "p.yaml")) == policy_digest(one_file)
    changed = load_policy(write(tmp_path / "changed.yaml", *documents[:2], documents[2].replace("allow", "deny")))
    assert policy_digest(changed) != policy_digest(one_file)


def test_digest_changes_with_rule_order_across_policies(tmp_path: Path) -> None:
    a = policy("a", "t", "{name: r1, from: [any], to: [any], action: allow}")
    b = policy("b", "t", "{name: r2, from: [any], to: [any], action: deny}")
    first = load_policy(write(tmp_path / "1.yaml", vsys("t"), a, b))
    second = load_policy(write(tmp_path / "2.yaml", vsys("t"), b, a))
    assert [r.name for r in first.rules] == ["r1", "r2"] and [r.name for r in second.rules] == ["r2", "r1"]
    assert policy_digest(first) != policy_digest(second)


def test_compile_accepts_bare_resources(tmp_path: Path) -> None:
    loaded = load_resources(EXAMPLES / "two-tenants.yaml")
    from_files = compile_resources(loaded, version=3)
    bare = compile_resources([r.resource for r in loaded], version=3)
    assert (
        policy_digest(bare) == policy_digest(from_files)
        and bare.rules == from_files.rules
        and bare.workloads == from_files.workloads
    )
    assert bare.build.sources == ()


def test_pinned_port_is_compiled(tmp_path: Path) -> None:
    doc = workload("w", "t", "02:00:00:00:00:01", "10.0.0.1").replace(
        'ips: ["10.0.0.1"]}', 'ips: ["10.0.0.1"], port: veth-w}'
    )
    (compiled,) = load_policy(write(tmp_path / "p.yaml", vsys("t"), doc)).workloads
    assert compiled.port == "veth-w"
