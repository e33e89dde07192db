"""Identity updates: Workloads change without recompiling rules, and the fastpath follows at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ngfw.compiler.identity import with_workloads
from ngfw.compiler.policy import compile_resources, policy_digest
from ngfw.dataplane.runner import Dataplane, PortPlan
from ngfw.model.errors import PolicyError
from ngfw.model.loader import load_resources
from ngfw.model.resources import Workload
from tests.support.fastpath import IP, LAB_POLICY, SRV_IP, SRV_MAC, WEB2_IP, WEB2_MAC, Ether, tcp

TWO_TENANTS = Path(__file__).resolve().parents[3] / "rules" / "examples" / "two-tenants.yaml"


def resources(path: Path = LAB_POLICY) -> list:
    return [item.resource for item in load_resources(path)]


def relabel(items: list, name: str, **labels: str) -> list:
    out = []
    for r in items:
        if isinstance(r, Workload) and r.metadata.name == name:
            r = r.model_copy(update={"metadata": r.metadata.model_copy(update={"labels": labels})})
        out.append(r)
    return out


def moved(items: list, name: str, ip: str) -> list:
    out = []
    for r in items:
        if isinstance(r, Workload) and r.metadata.name == name:
            iface = r.spec.interfaces[0].model_copy(update={"ips": [ip]})
            r = r.model_copy(update={"spec": r.spec.model_copy(update={"interfaces": [iface]})})
        out.append(r)
    return out


def workloads(items: list) -> list[Workload]:
    return [r for r in items if isinstance(r, Workload)]


@pytest.mark.parametrize("change", ["label", "address", "added"])
def test_identity_update_equals_a_full_compile(change: str) -> None:
    before = resources(TWO_TENANTS)
    previous = compile_resources(before, 3)
    if change == "label":
        after = relabel(before, "backup-01", tier="db")  # backup-01 joins group db
    elif change == "address":
        after = moved(before, "web-01", "10.77.0.55")
    else:
        extra = next(r for r in before if isinstance(r, Workload) and r.metadata.name == "web-01")
        iface = extra.spec.interfaces[0].model_copy(update={"mac": "02:00:00:00:01:09", "ips": ["10.77.0.19"]})
        after = before + [
            extra.model_copy(
                update={
                    "metadata": extra.metadata.model_copy(update={"name": "aaa-web"}),  # sorts first: indexes shift
                    "spec": extra.spec.model_copy(update={"interfaces": [iface]}),
                }
            )
        ]
    full = compile_resources(after, 3)
    quick = with_workloads(previous, workloads(after))
    assert quick.workloads == full.workloads
    assert quick.rules == full.rules
    assert policy_digest(quick) == policy_digest(full)
    assert quick.version == 3


def test_identity_update_recomputes_only_the_vsys_that_changed() -> None:
    before = resources(TWO_TENANTS)
    previous = compile_resources(before, 3)
    after = relabel(before, "backup-01", tier="db")
    changed_vsys = next(w.metadata.vsys for w in workloads(after) if w.metadata.name == "backup-01")
    quick = with_workloads(previous, workloads(after))
    full = compile_resources(after, 3)
    assert quick.build.group_members == full.build.group_members
    other = [i for i, r in enumerate(previous.rules) if previous.vsys[r.vsys] != changed_vsys]
    assert other and all(quick.rules[i] is previous.rules[i] for i in other)  # reused, not rebuilt
    assert with_workloads(previous, workloads(before)) is previous  # nothing changed


def test_identity_update_refuses_what_it_cannot_vouch_for() -> None:
    items = resources(TWO_TENANTS)
    previous = compile_resources(items, 1)
    with pytest.raises(PolicyError, match="duplicate"):
        with_workloads(previous, workloads(items) + workloads(items)[:1])
    with pytest.raises(PolicyError, match="backup-01"):  # group db-clients names it as a static member
        with_workloads(previous, [w for w in workloads(items) if w.metadata.name != "backup-01"])


def web2_syn(sport: int) -> Ether:
    return Ether(src=WEB2_MAC, dst=SRV_MAC) / IP(src=WEB2_IP, dst=SRV_IP) / tcp(sport, 80, "S")


def test_relabelled_workload_leaves_its_group_in_the_fastpath() -> None:
    dp = Dataplane(PortPlan())
    vm = dp.engine.add_memory_port("vm", 0)
    up = dp.engine.add_memory_port("up", 0)
    items = resources()
    dp.load(compile_resources(items, 1))
    dp.engine.inject(vm, bytes(web2_syn(40001)))
    assert len(dp.engine.take_tx(up)) == 1  # web-02 is in group web: http allowed
    running = dp.engine.tables

    dp.apply_identity(with_workloads(dp.policy, workloads(relabel(items, "web-02", tier="app"))))
    assert dp.engine.tables.apps_owner is running  # App-ID tables reused, not rebuilt
    assert dp.policy.version == 1
    dp.engine.inject(vm, bytes(web2_syn(40002)))
    assert dp.engine.take_tx(up) == []  # a new flow is refused at once
    dp.engine.inject(vm, bytes(Ether(src=WEB2_MAC, dst=SRV_MAC) / IP(src=WEB2_IP, dst=SRV_IP) / tcp(40001, 80, "A")))
    assert dp.engine.take_tx(up) == []  # and the established one is cut
    assert dp.engine.stats()["flows_cut"] == 1
