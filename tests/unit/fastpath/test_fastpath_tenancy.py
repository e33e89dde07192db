"""Per-vsys quotas in the fastpath: maxSessions and newSessionsPerSecond, counted per vsys."""

from __future__ import annotations

import re
from pathlib import Path

from ngfw.compiler.policy import load_policy
from ngfw.compiler.tables import CompiledPolicy
from tests.support.fastpath import IP, Ether, Wire, tcp

TWO_TENANTS = Path(__file__).resolve().parents[3] / "rules" / "examples" / "two-tenants.yaml"
WEB1 = ("02:00:00:00:01:01", "10.77.0.11")  # tenant-a
BACKUP = ("02:00:00:00:02:02", "10.78.0.22")  # tenant-b
DB = ("02:00:00:00:02:01", "10.78.0.21")  # tenant-b
T0 = 1_000 * 10**9  # packet clock (ns)
SECOND = 10**9


def tenants(tmp_path: Path, a: str = "{}", b: str = "{}", version: int = 1, extra_vsys: str = "") -> CompiledPolicy:
    """two-tenants.yaml with the limits given (`{maxSessions: 2}`); `extra_vsys` adds a vsys named so."""
    text = TWO_TENANTS.read_text()
    text = re.sub(r"(name: tenant-a\}\nspec:\n  limits: )\{[^}]*\}", lambda m: m.group(1) + a, text)
    text = re.sub(r"(name: tenant-b\}\nspec:\n  limits: )\{[^}]*\}", lambda m: m.group(1) + b, text)
    if extra_vsys:
        text = f"apiVersion: ngfw/v1\nkind: VirtualSystem\nmetadata: {{name: {extra_vsys}}}\n---\n" + text
    path = tmp_path / f"tenants-{version}.yaml"
    path.write_text(text)
    return load_policy(path, version=version)


def syn(src: tuple[str, str], sport: int, dst: tuple[str, str] = DB) -> Ether:
    return Ether(src=src[0], dst=dst[0]) / IP(src=src[1], dst=dst[1]) / tcp(sport, 5432, "S")


def opened(w: Wire, src: tuple[str, str], sport: int, now: int = T0) -> bool:
    """Whether a new connection's SYN got through the firewall."""
    return len(w.from_vm(syn(src, sport), now)[0]) == 1


def vsys(w: Wire, name: str) -> dict:
    return w.engine.stats()["vsys"][name]


def test_vsys_at_max_sessions_refuses_the_next_flow_while_another_vsys_still_opens(tmp_path: Path) -> None:
    w = Wire(tenants(tmp_path, a="{maxSessions: 2}"))
    assert opened(w, WEB1, 40001) and opened(w, WEB1, 40002)
    assert not opened(w, WEB1, 40003)
    assert opened(w, BACKUP, 40004)  # tenant-b is not affected
    assert w.drops() == {"vsys_session_limit": 1}
    assert len(w.engine.flows()) == 3  # the refused flow left nothing in the flow table
    a = vsys(w, "tenant-a")
    assert (a["sessions"], a["max_sessions"]) == (2, 2)
    assert a["drops"] == {"vsys_session_limit": 1, "vsys_rate_limit": 0}
    assert vsys(w, "tenant-b")["sessions"] == 1
    # the established flows of the vsys at its limit keep passing
    assert (
        len(w.from_vm(Ether(src=WEB1[0], dst=DB[0]) / IP(src=WEB1[1], dst=DB[1]) / tcp(40001, 5432, "A"), T0)[0]) == 1
    )


def test_cross_vsys_flow_counts_against_the_source_vsys(tmp_path: Path) -> None:
    # web-01 (tenant-a) -> db-01 (tenant-b): allowed by both, paid by tenant-a only
    w = Wire(tenants(tmp_path, a="{maxSessions: 1}", b="{maxSessions: 1}"))
    assert opened(w, WEB1, 40001)
    assert (vsys(w, "tenant-a")["sessions"], vsys(w, "tenant-b")["sessions"]) == (1, 0)
    assert opened(w, BACKUP, 40002)  # tenant-b's own slot is still free


def test_ending_a_flow_frees_its_slot(tmp_path: Path) -> None:
    w = Wire(tenants(tmp_path, a="{maxSessions: 1}"), tcp_syn=5.0)
    assert opened(w, WEB1, 40001)
    assert not opened(w, WEB1, 40002, T0 + SECOND)
    w.engine.expire(T0 + 10 * SECOND)  # the half-open flow times out
    assert vsys(w, "tenant-a")["sessions"] == 0
    assert opened(w, WEB1, 40003, T0 + 10 * SECOND)


def test_rate_limit_refuses_a_burst_and_recovers_with_time(tmp_path: Path) -> None:
    w = Wire(tenants(tmp_path, b="{newSessionsPerSecond: 3}"))
    burst = [opened(w, BACKUP, 41000 + i) for i in range(5)]
    assert burst == [True, True, True, False, False]
    assert vsys(w, "tenant-b")["drops"]["vsys_rate_limit"] == 2
    assert opened(w, WEB1, 42000)  # tenant-a has no rate limit
    assert not opened(w, BACKUP, 41010, T0 + SECOND // 10)  # 0.3 of a session refilled: not yet
    assert opened(w, BACKUP, 41011, T0 + SECOND // 2)  # 1.5 refilled
    later = [opened(w, BACKUP, 41100 + i, T0 + 5 * SECOND) for i in range(4)]
    assert later == [True, True, True, False]  # the bucket holds one second's worth, not five
    assert w.drops() == {"vsys_rate_limit": 4}


def test_session_counts_survive_a_reload_that_shifts_vsys_indexes(tmp_path: Path) -> None:
    w = Wire(tenants(tmp_path, a="{maxSessions: 2}"), tcp_syn=5.0)
    assert opened(w, WEB1, 40001) and opened(w, WEB1, 40002)
    # "aaa" sorts first: tenant-a is vsys 1 in the new generation, not 0
    w.load(tenants(tmp_path, a="{maxSessions: 2}", version=2, extra_vsys="aaa"))
    assert w.engine.tables.policy.vsys.index("tenant-a") == 1
    assert not opened(w, WEB1, 40003)
    assert vsys(w, "tenant-a")["sessions"] == 2
    w.engine.expire(T0 + 10 * SECOND)
    assert vsys(w, "tenant-a")["sessions"] == 0
    assert opened(w, WEB1, 40004, T0 + 10 * SECOND)


def test_raising_the_limit_on_reload_admits_flows_at_once(tmp_path: Path) -> None:
    w = Wire(tenants(tmp_path, a="{maxSessions: 1}"))
    assert opened(w, WEB1, 40001)
    assert not opened(w, WEB1, 40002)
    w.load(tenants(tmp_path, a="{maxSessions: 3}", version=2))
    assert opened(w, WEB1, 40003) and opened(w, WEB1, 40004)
    assert not opened(w, WEB1, 40005)
    assert vsys(w, "tenant-a")["max_sessions"] == 3


def test_quota_metrics(tmp_path: Path) -> None:
    from ngfw.dataplane.metrics import DataplaneCollector
    from ngfw.dataplane.runner import Dataplane, PortPlan

    dp = Dataplane(PortPlan())
    vm = dp.engine.add_memory_port("vm", 0)
    dp.engine.add_memory_port("up", 0)
    dp.load(tenants(tmp_path, a="{maxSessions: 1}", b="{newSessionsPerSecond: 1}"))
    for sport in (40001, 40002):
        dp.engine.inject(vm, bytes(syn(WEB1, sport)), T0)
        dp.engine.inject(vm, bytes(syn(BACKUP, sport)), T0)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in DataplaneCollector(dp).collect()
        if m.name.startswith("ngfw_vsys_")
        for s in m.samples
    }
    assert samples[("ngfw_vsys_sessions", (("vsys", "tenant-a"),))] == 1
    assert samples[("ngfw_vsys_session_limit", (("vsys", "tenant-a"),))] == 1
    assert ("ngfw_vsys_session_limit", (("vsys", "tenant-b"),)) not in samples  # no maxSessions: no limit
    assert samples[("ngfw_vsys_quota_drops_total", (("reason", "vsys_session_limit"), ("vsys", "tenant-a")))] == 1
    assert samples[("ngfw_vsys_quota_drops_total", (("reason", "vsys_rate_limit"), ("vsys", "tenant-b")))] == 1
