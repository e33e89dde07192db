"""`ngfw sessions` on memory-port engines: filters, paging across a table larger than a page, clearing (a
TCP connection is reset both ways, the EVE record says `cleared`), bad filters, and rule hits with their first
and last hit across a reload and a restart.

What a user would notice: the listing holds exactly the flows the filter names (and all of them, however many
pages), a cleared download's client gets a RST at once and its server one onward, a reload does not bring a
cleared flow back, a filter with a typo is refused with a sentence naming it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from ngfw.compiler.policy import load_policy
from ngfw.dataplane.eve import eve_record
from ngfw.dataplane.eve_schema import problems
from ngfw.dataplane.rulehits import RuleHits
from ngfw.dataplane.sessions import FilterError, SessionFilter, SessionTable
from tests.support.fastpath import SRV_IP, SRV_MAC, WEB1_IP, WEB1_MAC, WEB2_IP, WEB2_MAC, Wire, fp, syn, tcp
from tests.support.policies import compile_documents

S = 1_000_000_000
DB1_MAC, DB1_IP = "02:00:00:00:03:01", "10.77.0.21"

POLICY = """
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-a}
---
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-b}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: web-01, vsys: tenant-a, labels: {tier: web}}
spec: {interfaces: [{mac: "02:00:00:00:01:01", ips: ["10.77.0.11"]}]}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: web-02, vsys: tenant-a, labels: {tier: web}}
spec: {interfaces: [{mac: "02:00:00:00:01:02", ips: ["10.77.0.12"]}]}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: db-01, vsys: tenant-b}
spec: {interfaces: [{mac: "02:00:00:00:03:01", ips: ["10.77.0.21"]}]}
---
apiVersion: ngfw/v1
kind: Group
metadata: {name: web, vsys: tenant-a}
spec: {selector: {tier: web}}
---
apiVersion: ngfw/v1
kind: SecurityPolicy
metadata: {name: main, vsys: tenant-a}
spec:
  rules:
{extra}    - {name: web-http, from: [group:web], to: [cidr:10.77.0.100/32], services: [tcp/80], action: allow, log: true}
    - {name: web-dns, from: [group:web], to: [cidr:10.77.0.100/32], services: [udp/53], action: allow, log: true}
    - {name: to-db, from: [group:web], to: [cidr:10.77.0.21/32], services: [tcp/5432], action: allow}
    - {name: web-many, from: [group:web], to: [cidr:10.77.0.100/32], services: [tcp/10000-65000], action: allow}
---
apiVersion: ngfw/v1
kind: SecurityPolicy
metadata: {name: main, vsys: tenant-b}
spec:
  rules:
    - {name: db-in, from: [cidr:10.77.0.0/24], to: ["vm:db-01"], services: [tcp/5432], action: allow, log: true}
"""


def policy(tmp_path: Path, version: int = 1, extra: str = "") -> Any:
    return compile_documents(
        tmp_path,
        POLICY.replace("{extra}", textwrap.indent(extra, "    ")),
        version=version,
        name=f"policy-{version}.yaml",
    )


def frame(src: tuple[str, str], dst: tuple[str, str], l4: Any) -> Ether:
    return Ether(src=src[0], dst=dst[0]) / IP(src=src[1], dst=dst[1]) / l4


WEB1, WEB2, SRV, DB1 = (WEB1_MAC, WEB1_IP), (WEB2_MAC, WEB2_IP), (SRV_MAC, SRV_IP), (DB1_MAC, DB1_IP)


class Host:
    """A Wire whose policies are kept by generation, as `ngfw dataplane` keeps them."""

    def __init__(self, tmp_path: Path, capacity: int = 4096, scan: int = 16384) -> None:
        self.wire = Wire(flow_capacity=capacity)
        self.generations: dict[int, Any] = {}
        self.table = SessionTable(self.wire.engine, lambda: self.generations, "host-a", scan=scan)
        self.load(policy(tmp_path))

    def load(self, p: Any) -> None:
        self.wire.load(p)
        self.generations[self.wire.engine.tables.generation] = p

    def connect(
        self,
        client: tuple[str, str],
        server: tuple[str, str],
        sport: int,
        dport: int,
        payload: bytes = b"",
        now: int = 10 * S,
    ) -> None:
        w = self.wire
        w.engine.inject(w.vm, bytes(frame(client, server, tcp(sport, dport, "S", seq=100))), now)
        w.engine.inject(w.up, bytes(frame(server, client, tcp(dport, sport, "SA", seq=500, ack=101))), now)
        w.engine.inject(w.vm, bytes(frame(client, server, tcp(sport, dport, "A", seq=101, ack=501))), now)
        if payload:
            w.engine.inject(
                w.vm, bytes(frame(client, server, tcp(sport, dport, "PA", seq=101, ack=501, payload=payload))), now
            )
        w.engine.take_tx(w.vm)
        w.engine.take_tx(w.up)

    def listing(self, **fields: str) -> list[dict[str, Any]]:
        return list(self.table.iterate(SessionFilter.parse(fields)))


def ports(records: list[dict[str, Any]]) -> list[int]:
    return sorted(r["src_port"] for r in records)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    h = Host(tmp_path)
    h.connect(WEB1, SRV, 41001, 80, b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n")
    h.connect(WEB2, SRV, 41002, 80, b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n")
    h.connect(WEB1, DB1, 41003, 5432)
    h.connect(WEB2, SRV, 41004, 22)  # no rule: the implicit default deny (the flow is kept to drop retries)
    dns = bytes(frame(WEB1, SRV, UDP(sport=41005, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.org"))))
    h.wire.engine.inject(h.wire.vm, dns, 10 * S)
    h.wire.engine.take_tx(h.wire.up)
    return h


def test_each_filter_field_selects_exactly_its_flows(host: Host) -> None:
    everything = host.listing()
    assert ports(everything) == [41001, 41002, 41003, 41004, 41005]
    assert ports(host.listing(vm="web-01")) == [41001, 41003, 41005]
    assert ports(host.listing(vm="tenant-b/db-01")) == [41003]
    # a vsys sees flows one of its workloads is in, or that it decided
    assert ports(host.listing(vsys="tenant-b")) == [41003]
    assert ports(host.listing(vsys="tenant-a")) == [41001, 41002, 41003, 41004, 41005]
    assert ports(host.listing(app="http")) == [41001, 41002]
    assert ports(host.listing(app="dns")) == [41005]
    assert ports(host.listing(rule="web-http")) == [41001, 41002]
    assert ports(host.listing(rule="db-in")) == [41003]  # the ingress rule of a cross-vsys flow
    assert ports(host.listing(rule="default-deny")) == [41004]
    assert ports(host.listing(port="80")) == [41001, 41002]
    assert ports(host.listing(sport="41003")) == [41003]
    assert ports(host.listing(proto="udp")) == [41005]
    assert ports(host.listing(src="10.77.0.12")) == [41002, 41004]
    assert ports(host.listing(dst="10.77.0.16/28")) == [41003]
    assert ports(host.listing(action="deny")) == [41004]
    assert ports(host.listing(state="established", action="allow")) == [41001, 41002, 41003]
    assert ports(host.listing(vm="web-01", port="80", app="http")) == [41001]
    flow_id = host.listing(sport="41002")[0]["flow_id"]
    assert ports(host.listing(id=str(flow_id))) == [41002]


def test_a_listed_session_says_what_an_operator_asks(host: Host) -> None:
    (web,) = host.listing(sport="41001")
    assert (web["vsys"], web["src_vm"], web["dest_ip"], web["dest_port"], web["proto"]) == (
        "tenant-a",
        "web-01",
        SRV_IP,
        80,
        "TCP",
    )
    assert (web["app_proto"], web["app"], web["app_host"], web["rule"], web["state"]) == (
        "http",
        "http",
        "a.example",
        "web-http",
        "established",
    )
    assert web["pkts_toserver"] == 3 and web["pkts_toclient"] == 1 and web["bypass"] is False
    assert web["host"] == "host-a" and web["action"] == "allow" and web["age"] >= 0
    assert web["inspected"] is False  # its rule names no threat profile
    (db,) = host.listing(vm="db-01")
    assert (db["dest_vm"], db["rule"], db["rule_ingress"]) == ("db-01", "to-db", "db-in")
    (denied,) = host.listing(action="deny")
    assert (denied["rule"], denied["action"]) == ("default-deny", "deny")
    (dns,) = host.listing(proto="udp")
    assert dns["state"] == "unreplied" and dns["app_host"] == "example.org"


def test_paging_covers_a_table_larger_than_a_page_in_short_requests(tmp_path: Path) -> None:
    h = Host(tmp_path, capacity=8192, scan=1000)  # every loop request looks at 1,000 slots at most
    engine = h.wire.engine
    for n in range(3000):
        engine.inject(h.wire.vm, syn(20000 + n, 10000 + n), 10 * S)
    engine.take_tx(h.wire.up)
    assert engine.stats()["flows_active"] == 3000
    pages = []
    cursor = 0
    while True:
        page = h.table.page(SessionFilter(), cursor, limit=400)
        pages.append(len(page.sessions))
        cursor = page.cursor
        if cursor == 0:
            break
    assert sum(pages) == 3000 and max(pages) == 400 and len(pages) >= 8
    # one loop request never looks at more slots than it was given, and reports where it stopped
    out = engine.list_sessions({}, cursor=0, limit=10_000, max_scan=1000)
    assert out["scanned"] == 1000 and out["cursor"] == 1000
    assert len({r["flow_id"] for r in h.table.iterate(SessionFilter(), page_size=250)}) == 3000
    # a selective filter still reads only the matching flows through Python
    assert len(h.listing(sport="20007")) == 1


def test_a_request_never_goes_past_its_slots_over_pages_that_hold_no_flow(tmp_path: Path) -> None:
    """Pages of the table that never held a flow are skipped whole, but not beyond the request's `max_scan`:
    otherwise `scanned` and the cursor ran past what was asked (seen with 3,000 flows whose hash left a page empty)."""
    h = Host(tmp_path, capacity=8192, scan=1000)
    engine = h.wire.engine
    for n in range(3):
        engine.inject(h.wire.vm, syn(21000 + n, 11000 + n), 10 * S)
    engine.take_tx(h.wire.up)
    cursor, seen, requests = 0, 0, 0
    while True:
        out = engine.list_sessions({}, cursor=cursor, limit=10_000, max_scan=1000)
        assert out["scanned"] <= 1000 and (out["cursor"] == 0 or out["cursor"] - cursor <= 1000), out
        seen += len(out["sessions"])
        requests += 1
        cursor = out["cursor"]
        if cursor == 0:
            break
    assert seen == 3 and requests >= engine.table_slots() // 1000


def test_clearing_a_connection_resets_both_ends_and_logs_cleared(host: Host) -> None:
    w = host.wire
    w.engine.drain_events()
    done = host.table.clear(SessionFilter.parse(["vm=web-01", "port=80"]))
    assert (done.cleared, done.resets) == (1, 1)
    (ended,) = [e for e in w.engine.drain_events() if e["event"] == "flow"]
    assert ended["end_reason"] == "cleared" and ended["src_port"] == 41001
    # the record as EveWriter writes it (the writer adds `host`)
    record = eve_record(ended, host.generations[w.engine.tables.generation]) | {"host": "fw-1"}
    assert record["flow"]["reason"] == "cleared" and problems([record]) == []
    assert ports(host.listing()) == [41002, 41003, 41004, 41005]  # gone for the operator at once
    # the client's next segment: a RST back to it, and one onward to the server in its place
    onward, back = w.from_vm(frame(WEB1, SRV, tcp(41001, 80, "PA", seq=140, ack=501, payload=b"more")), 11 * S)
    assert [bytes(f)[47] & 0x04 for f in back] == [0x04] and Ether(back[0])[TCP].dport == 41001
    assert len(onward) == 1 and Ether(onward[0])[TCP].flags == "RA" and Ether(onward[0])[TCP].seq == 140
    # and nothing of it passes afterwards, from either side
    assert w.from_up(frame(SRV, WEB1, tcp(80, 41001, "PA", seq=501, ack=144, payload=b"late")), 11 * S)[0] == []
    assert w.drops()["session_cleared"] == 2
    # a reload does not bring it back
    host.load(policy(Path(host.generations[1].build.sources[0]).parent, version=2))
    assert w.from_vm(frame(WEB1, SRV, tcp(41001, 80, "PA", seq=144, ack=501, payload=b"x")), 11 * S)[0] == []
    # the other connections go on
    assert w.from_vm(frame(WEB2, SRV, tcp(41002, 80, "PA", seq=140, ack=501, payload=b"y")), 11 * S)[0]


def test_a_silent_clear_sends_nothing_and_a_new_flow_starts_afresh(host: Host) -> None:
    w = host.wire
    old = host.listing(proto="udp")[0]["flow_id"]
    done = host.table.clear(SessionFilter.parse(["vm=web-01"]), silent=True)
    assert (done.cleared, done.resets) == (3, 0)
    assert w.from_vm(frame(WEB1, SRV, tcp(41001, 80, "PA", seq=140, ack=501, payload=b"x")), 11 * S) == ([], [])
    # UDP: the next datagram is a new flow, decided by the policy again
    dns = frame(WEB1, SRV, UDP(sport=41005, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.org")))
    assert w.from_vm(dns, 11 * S)[0]
    (again,) = host.listing(proto="udp")
    assert again["flow_id"] != old


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["colour=red"], "unknown filter field 'colour'"),
        (["web-01"], "filter words are FIELD=VALUE"),
        (["src=10.77.0.300"], "src=10.77.0.300: '10.77.0.300' is not an IP address"),
        (["port=http"], "port=http: a port is a number from 0 to 65535"),
        (["port=70000"], "port=70000"),
        (["proto=tcpp"], "proto=tcpp"),
        (["state=open"], "state=open"),
        (["vm=web-01", "vm=web-02"], "'vm' is given twice"),
        (["id=-4"], "id=-4"),
    ],
)
def test_a_malformed_filter_is_one_sentence_naming_the_value(words: list[str], message: str) -> None:
    with pytest.raises(FilterError, match=message.replace("(", r"\(").replace(".", r"\.")):
        SessionFilter.parse(words)


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("vm=web-99", "vm=web-99: no workload named 'web-99'"),
        ("vsys=tenant-z", "vsys=tenant-z: no vsys"),
        ("rule=web-htp", "rule=web-htp: no rule"),
        ("app=htttp", "app=htttp: no application"),
    ],
)
def test_a_name_the_dataplane_does_not_know_is_refused(host: Host, field: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        host.table.page(SessionFilter.parse([field]))


def test_rule_hits_keep_first_and_last_hit_by_name_across_a_reload_and_a_restart(tmp_path: Path) -> None:
    clock = [1000.0]
    book_path = tmp_path / "state" / "rule-hits.json"
    book = RuleHits(book_path, clock=lambda: clock[0])
    h = Host(tmp_path)
    book.observe(h.wire.engine.tables)
    h.connect(WEB1, SRV, 42001, 80)
    clock[0] = 1010.0
    book.observe(h.wire.engine.tables)
    # a reload that renumbers rules (one in front) and deletes web-dns
    old = h.wire.engine.tables
    reloaded = policy(tmp_path, 2, extra="- {name: first, from: [any], to: [any], services: [tcp/7], action: allow}\n")
    reloaded_doc = (
        (tmp_path / "policy-2.yaml")
        .read_text()
        .replace(
            "    - {name: web-dns, from: [group:web], to: [cidr:10.77.0.100/32], services: [udp/53], action: allow, log: true}\n",
            "",
        )
    )
    (tmp_path / "policy-2.yaml").write_text(reloaded_doc)
    reloaded = load_policy(tmp_path / "policy-2.yaml", version=2)
    h.load(reloaded)
    book.observe(old)  # the old generation's last counts
    book.observe(h.wire.engine.tables)  # the new one's rules are the ones in force
    clock[0] = 1050.0
    h.connect(WEB2, SRV, 42002, 80)
    book.observe(h.wire.engine.tables)
    hits = {(e["vsys"], e["rule"]): e for e in book.entries()}
    assert (
        hits[("tenant-a", "web-http")]["hits"],
        hits[("tenant-a", "web-http")]["first"],
        hits[("tenant-a", "web-http")]["last"],
    ) == (2, 1010.0, 1050.0)
    assert hits[("tenant-a", "first")]["hits"] == 0 and hits[("tenant-a", "first")]["since"] == 1010.0
    # the metric's series: rules in force only; the deleted rule's history stays readable
    assert ("tenant-a", "web-dns") not in book.totals() and book.totals()[("tenant-a", "web-http")] == 2
    gone = {(e["vsys"], e["rule"]): e for e in book.entries(include_gone=True)}
    assert gone[("tenant-a", "web-dns")]["running"] is False
    # a restart: a new book on the same file goes on from there
    book.save()
    clock[0] = 2000.0
    again = RuleHits(book_path, clock=lambda: clock[0])
    fresh = Host(tmp_path)
    fresh.load(reloaded)
    again.observe(fresh.wire.engine.tables)
    fresh.connect(WEB1, SRV, 42003, 80)
    again.observe(fresh.wire.engine.tables)
    entry = {(e["vsys"], e["rule"]): e for e in again.entries()}[("tenant-a", "web-http")]
    assert (entry["hits"], entry["first"], entry["last"]) == (3, 1010.0, 2000.0)
    # a corrupt book is set aside, not trusted
    book_path.write_text("{not json")
    assert RuleHits(book_path).entries() == []
    assert book_path.with_name("rule-hits.json.refused").exists()


def test_a_cleared_connection_is_not_taken_over_by_the_next_process(tmp_path: Path) -> None:
    """Killed while a cleared connection waits for its reset: the next dataplane must not decide it again."""
    layout = fp.state_layout(4096, 4096)
    memory = bytearray(layout["size"])
    engine = fp.Engine(flow_capacity=4096, state=memory)
    vm, up = engine.add_memory_port("vm", 0), engine.add_memory_port("up", 0)
    engine.set_tables(fp.Tables(policy(tmp_path), {"vm": vm, "up": up}))
    for sport in (43001, 43002):
        engine.inject(vm, bytes(frame(WEB1, SRV, tcp(sport, 80, "S", seq=100))), 10 * S)
        engine.inject(up, bytes(frame(SRV, WEB1, tcp(80, sport, "SA", seq=500, ack=101))), 10 * S)
        engine.inject(vm, bytes(frame(WEB1, SRV, tcp(sport, 80, "A", seq=101, ack=501))), 10 * S)
    in_force = engine.tables.policy
    table = SessionTable(engine, lambda: {1: in_force})
    assert table.clear(SessionFilter.parse(["sport=43001"])).resets == 1
    del table, engine  # the process dies before the connection's next segment
    after = Host(tmp_path)
    assert after.wire.engine.adopt_sessions(memory, layout, now_ns=12 * S)["results"] == {"imported": 1}
    assert ports(after.listing()) == [43002]
