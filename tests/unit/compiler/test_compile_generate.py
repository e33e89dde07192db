"""The benchmark's synthetic identity policy."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from ngfw.compiler.generate import identity_policy
from ngfw.compiler.lint import lint
from ngfw.compiler.policy import load_policy
from ngfw.compiler.tables import Action

CLIENTS = [("client-01", "02:00:00:00:01:01", "10.77.0.11"), ("client-02", "02:00:00:00:01:02", "10.77.0.12")]


@pytest.mark.parametrize("n_rules", [2, 3, 50])
def test_generated_policy_loads_with_the_requested_rule_count(tmp_path: Path, n_rules: int) -> None:
    path = tmp_path / "identity.yaml"
    path.write_text(identity_policy(n_rules, CLIENTS, "10.77.0.100/32"))
    compiled = load_policy(path)
    assert len(compiled.rules) == n_rules
    assert compiled.vsys == ("bench",)
    assert lint(compiled) == []


def test_only_the_last_rules_name_the_benchmark_workloads(tmp_path: Path) -> None:
    path = tmp_path / "identity.yaml"
    path.write_text(identity_policy(1000, CLIENTS, "10.77.0.100/32", vsys="perf"))
    compiled = load_policy(path)
    clients = frozenset(i for i, w in enumerate(compiled.workloads) if w.name.startswith("client-"))
    synthetic = [w for w in compiled.workloads if w.name not in {"client-01", "client-02"}]
    assert len(clients) == 2 and len(synthetic) == 998
    for rule in compiled.rules[:-2]:
        assert not rule.src.any and not rule.dst.any and not rule.src.cidrs and not rule.dst.cidrs
        assert not (rule.src.workloads | rule.dst.workloads) & clients
    assert len({r.services for r in compiled.rules[:-2]}) == 998  # each on its own service
    out, back = compiled.rules[-2:]
    server = (ipaddress.ip_network("10.77.0.100/32"),)
    assert (out.src.workloads, out.dst.cidrs, out.action) == (clients, server, Action.ALLOW)
    assert (back.src.cidrs, back.dst.workloads, back.action) == (server, clients, Action.ALLOW)
    for w in synthetic:
        assert w.macs[0][:2] == b"\x02\xaa"
        v4, v6 = w.ips
        assert v4 in ipaddress.ip_network("10.200.0.0/16") and v6 in ipaddress.ip_network("fd00:200::/64")


def test_too_few_rules_is_refused() -> None:
    with pytest.raises(ValueError):
        identity_policy(1, CLIENTS, "10.77.0.100/32")


def test_workloads_may_be_given_as_mappings_with_several_ips(tmp_path: Path) -> None:
    clients: list[dict[str, Any]] = [
        {"name": "web1", "mac": "02:00:00:00:01:01", "ips": ["10.77.0.11", "fd77::11"]},
        {"name": "web2", "mac": "02:00:00:00:01:02", "ip": "10.77.0.12"},
    ]
    path = tmp_path / "identity.yaml"
    path.write_text(identity_policy(10, clients, "10.77.0.100/32"))
    compiled = load_policy(path)
    index = {w.name: i for i, w in enumerate(compiled.workloads)}
    web1, web2 = compiled.workloads[index["web1"]], compiled.workloads[index["web2"]]
    assert web1.ips == (ipaddress.ip_address("10.77.0.11"), ipaddress.ip_address("fd77::11"))
    assert web2.ips == (ipaddress.ip_address("10.77.0.12"),)
    assert compiled.rules[-1].dst.workloads == {index["web1"], index["web2"]}
