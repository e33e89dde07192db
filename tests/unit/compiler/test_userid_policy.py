"""User-ID in the policy: `users:` on rules, UserGroup and UserSource resources, their errors, `explain --user`,
and the fastpath deciding with a user table (the reference twin agrees: test_reference_policy)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ngfw._fastpath import engine
from ngfw.compiler.policy import policy_digest
from ngfw.compiler.principals import group_principal, user_principal
from ngfw.control.explain import ExplainError, explain
from ngfw.model.errors import PolicyError
from ngfw.model.loader import load_resources
from ngfw.model.schema import json_schema
from tests.support.policies import compile_documents, security_policy, write_documents

ROOT = Path(__file__).resolve().parents[3]

BASE = """\
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-a}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: web-01, vsys: tenant-a}
spec: {interfaces: [{mac: "02:00:00:00:01:01", ips: ["10.77.0.11"]}]}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: desk-01, vsys: tenant-a}
spec: {interfaces: [{mac: "02:00:00:00:01:02", ips: ["10.77.0.12"]}], owner: Carol}
"""

FINANCE = """\
apiVersion: ngfw/v1
kind: UserGroup
metadata: {name: finance, vsys: tenant-a}
spec: {members: [alice, Bob]}
"""


def rules(*items: str) -> str:
    """tenant-a's SecurityPolicy with one rule per item (a flow mapping)."""
    return security_policy("".join(f"- {item}\n" for item in items))


def problems(tmp_path: Path, *documents: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        compile_documents(tmp_path, *documents)
    return info.value.problems


def test_users_compile_to_principals_in_item_order(tmp_path: Path) -> None:
    policy = compile_documents(
        tmp_path,
        BASE,
        FINANCE,
        rules(
            "{name: fin, from: [any], to: [any], users: [Dave, group:finance, known-user], action: allow}",
            "{name: anon, from: [any], to: [any], users: [unknown], action: deny}",
            "{name: all, from: [any], to: [any], action: allow}",
        ),
    )
    fin, anon, everyone = policy.rules
    assert fin.users == ("dave", "group:finance", "known-user")
    # a static UserGroup is its members, named in the rule (lower case: names compare case-insensitively)
    assert dict(fin.user_principals) == {
        user_principal("dave"): 0,
        user_principal("alice"): 1,
        user_principal("bob"): 1,
    }
    assert (fin.users_known, fin.users_unknown) == (2, -1)
    assert (anon.users, anon.user_principals, anon.users_known, anon.users_unknown) == (("unknown",), (), -1, 0)
    assert everyone.users == ()  # no condition at all
    assert policy.workloads[0].owner == "carol" and policy.workloads[1].owner is None


def test_a_directory_group_is_its_principal(tmp_path: Path) -> None:
    source = (
        "apiVersion: ngfw/v1\nkind: UserSource\nmetadata: {name: corp}\nspec: {ldap: {url: 'ldap://127.0.0.1:3389'}}\n"
    )
    group = (
        "apiVersion: ngfw/v1\nkind: UserGroup\nmetadata: {name: fin-dir, vsys: tenant-a}\n"
        "spec: {ldap: {dn: 'cn=finance,ou=groups,dc=lab'}}\n"
    )
    policy = compile_documents(
        tmp_path, BASE, source, group, rules("{name: r, from: [any], to: [any], users: [group:fin-dir], action: allow}")
    )
    assert policy.rules[0].user_principals == ((group_principal("tenant-a", "fin-dir"), 0),)


def test_users_do_not_change_the_digest_of_policies_without_them(tmp_path: Path) -> None:
    plain = compile_documents(tmp_path, BASE, rules("{name: r, from: [any], to: [any], action: allow}"))
    explicit = compile_documents(
        tmp_path, BASE, rules("{name: r, from: [any], to: [any], users: [any], action: allow}")
    )
    assert policy_digest(plain) == policy_digest(explicit)
    named = compile_documents(tmp_path, BASE, rules("{name: r, from: [any], to: [any], users: [alice], action: allow}"))
    assert policy_digest(named) != policy_digest(plain)


def test_errors_name_the_resource_and_the_field(tmp_path: Path) -> None:
    dangling = problems(
        tmp_path, BASE, rules("{name: a, from: [any], to: [any], users: [group:nosuch], action: allow}")
    )
    assert (
        "SecurityPolicy tenant-a/main: spec.rules[0].users[0]: group:nosuch: UserGroup 'nosuch' does not "
        "exist in vsys 'tenant-a'" in dangling[0]
    )
    found = problems(
        tmp_path,
        BASE,
        rules(
            "{name: a, from: [any], to: [any], users: [group:finance], action: allow}",
            "{name: b, from: [any], to: [any], users: [any, alice], action: allow}",
            "{name: c, from: [any], to: [any], users: ['al ice'], action: allow}",
            "{name: d, from: [any], to: [any], users: [Known-User], action: allow}",
            "{name: e, from: [any], to: [any], users: [], action: allow}",
        ),
    )
    text = "\n".join(found)
    assert "spec.rules[1].users: " in text and "`any` stands alone" in text
    assert "spec.rules[2].users[0]: must be a user name" in text and "'al ice'" in text
    assert "spec.rules[3].users[0]: write 'known-user' in lower case" in text
    assert "spec.rules[4].users: " in text


def test_a_login_regex_without_user_or_ip_is_refused_naming_the_field(tmp_path: Path) -> None:
    source = (
        "apiVersion: ngfw/v1\nkind: UserSource\nmetadata: {name: sshd}\n"
        "spec: {syslog: {login: 'Accepted \\\\S+ for (?P<name>\\\\S+) from (?P<ip>\\\\S+)'}}\n"
    )
    found = problems(tmp_path, BASE, source)
    assert len(found) == 1, found
    assert "UserSource sshd: spec.syslog.login: the regex has no named group `user`" in found[0]
    broken = source.replace("(?P<name>", "(?P<user>").replace("(?P<ip>\\\\S+)", "(?P<ip>[")
    assert "spec.syslog.login: is not a regular expression" in problems(tmp_path, BASE, broken)[0]


def test_a_directory_group_needs_a_directory(tmp_path: Path) -> None:
    group = (
        "apiVersion: ngfw/v1\nkind: UserGroup\nmetadata: {name: fin, vsys: tenant-a}\n"
        "spec: {ldap: {dn: 'cn=finance,dc=lab'}}\n"
    )
    found = problems(tmp_path, BASE, group)
    assert found == [
        f"{tmp_path / 'policy.yaml'}: UserGroup tenant-a/fin: spec.ldap: no UserSource has a "
        "directory (spec.ldap): add one to read this group from"
    ]
    empty = "apiVersion: ngfw/v1\nkind: UserGroup\nmetadata: {name: fin, vsys: tenant-a}\nspec: {}\n"
    assert (
        "UserGroup tenant-a/fin: spec: a UserGroup needs members, ldap, or both" in problems(tmp_path, BASE, empty)[0]
    )


def test_the_published_schema_knows_the_new_kinds() -> None:
    schema = json_schema()
    published = json.loads((ROOT / "docs" / "policy-schema.json").read_text())
    assert published == schema
    text = json.dumps(schema)
    assert "UserGroup" in text and "UserSource" in text and "known-user" in text


# ---------------------------------------------------------------- explain --user


def test_explain_names_the_users_item_that_matched(tmp_path: Path) -> None:
    policy = compile_documents(
        tmp_path,
        BASE,
        FINANCE,
        rules(
            "{name: fin, from: [vm:web-01], to: [any], services: [tcp/80], users: [group:finance], action: allow}",
            "{name: rest, from: [any], to: [any], action: deny}",
        ),
    )
    documents = [item.resource.model_dump(by_alias=True) for item in load_resources(tmp_path / "policy.yaml")]
    allowed = explain(policy, documents, "vm:web-01", "10.77.0.100", "tcp/80", user="Alice")
    assert (allowed["verdict"], allowed["rule"], allowed["user"]) == ("allow", "fin", "alice")
    assert "users group:finance" in allowed["why"]
    nobody = explain(policy, documents, "vm:web-01", "10.77.0.100", "tcp/80")
    assert (nobody["verdict"], nobody["rule"]) == ("deny", "rest")
    assert any("do not include no user known" in s for s in nobody["passes"][0]["skipped"])
    with pytest.raises(ExplainError, match="--user 'al ice': must be a user name"):
        explain(policy, documents, "vm:web-01", "10.77.0.100", "tcp/80", user="al ice")


def test_explain_cli_takes_user(tmp_path: Path) -> None:
    path = write_documents(
        tmp_path, BASE, FINANCE, rules("{name: fin, from: [any], to: [any], users: [bob], action: allow}")
    )
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "ngfw.cli",
            "explain",
            "--policy",
            str(path),
            "--from",
            "vm:web-01",
            "--to",
            "10.77.0.100",
            "--service",
            "tcp/80",
            "--user",
            "bob",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "user bob" in run.stdout and "ALLOW by rule 'fin'" in run.stdout


# ---------------------------------------------------------------- the fastpath decides with the user table

WEB_MAC, WEB_IP, SRV_MAC, SRV_IP = "02:00:00:00:01:01", "10.77.0.11", "02:00:00:00:00:99", "10.77.0.100"


def syn(sport: int = 40000) -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=WEB_MAC, dst=SRV_MAC) / IP(src=WEB_IP, dst=SRV_IP) / TCP(sport=sport, dport=80, flags="S"))


def test_the_engine_decides_with_the_user_behind_the_source(tmp_path: Path) -> None:
    policy = compile_documents(
        tmp_path,
        BASE,
        FINANCE,
        rules(
            "{name: fin, from: [vm:web-01], to: [any], services: [tcp/80], users: [group:finance], action: allow}",
            "{name: rest, from: [any], to: [any], action: deny}",
        ),
    )
    e = engine.Engine(flow_capacity=1024)
    a = e.add_memory_port("a", 0)
    b = e.add_memory_port("b", 0)
    e.set_tables(engine.Tables(policy, {"a": a, "b": b}))
    e.inject(a, syn(40000))
    e.set_users(engine.UserTable([(ipaddress.ip_address(WEB_IP), user_principal("alice"))]))
    e.inject(a, syn(40001))
    e.set_users(engine.UserTable([(ipaddress.ip_address(WEB_IP), user_principal("mallory"))]))
    e.inject(a, syn(40002))
    by_port = {f["src_port"]: f for f in e.flows()}
    assert (by_port[40000]["action"], by_port[40000]["user"]) == ("deny", 0)
    assert (by_port[40001]["action"], by_port[40001]["user"]) == ("allow", user_principal("alice"))
    assert by_port[40001]["user_via"] == (1, 0)  # the rule's first `users:` item (group:finance) matched
    assert (by_port[40002]["action"], by_port[40002]["user"]) == ("deny", user_principal("mallory"))


def test_a_user_table_derives_copy_on_write() -> None:
    first = engine.UserTable(
        [(ipaddress.ip_address("10.0.0.1"), 11), (ipaddress.ip_address("fd00::1"), 12)], {11: (1, [100, 101])}
    )
    second = first.derive(puts=[(ipaddress.ip_address("10.0.0.2"), 13)], deletes=[ipaddress.ip_address("10.0.0.1")])
    assert (len(first), len(second)) == (2, 2)
    assert (first.user_of(ipaddress.ip_address("10.0.0.1")), second.user_of(ipaddress.ip_address("10.0.0.1"))) == (
        11,
        0,
    )
    assert (
        second.user_of(ipaddress.ip_address("fd00::1")) == 12 and second.user_of(ipaddress.ip_address("10.0.0.2")) == 13
    )
    assert second.groups_of(11) == (1, [100, 101]) and second.generation != first.generation
    # growth past the table's size rehashes: every address is still found
    many = second.derive(puts=[(ipaddress.ip_address(f"10.1.{i // 256}.{i % 256}"), 1000 + i) for i in range(5000)])
    assert len(many) == 5002
    assert all(many.user_of(ipaddress.ip_address(f"10.1.{i // 256}.{i % 256}")) == 1000 + i for i in range(0, 5000, 7))
    fewer = many.derive(deletes=[ipaddress.ip_address(f"10.1.{i // 256}.{i % 256}") for i in range(0, 5000, 2)])
    assert len(fewer) == 2502
    assert all(
        fewer.user_of(ipaddress.ip_address(f"10.1.{i // 256}.{i % 256}")) == (0 if i % 2 == 0 else 1000 + i)
        for i in range(5000)
    )
