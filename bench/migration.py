"""Live migration at scale: 100 workloads with 1,000 established sessions each, migrated one after another
between two hosts, through a real `ngfw control` (HTTP on loopback, SQLite store, role tokens) and the real
dataplane migration agents of two fastpath engines whose packet loops run (no root: the engines' ports are
in memory, the sessions synthetic -- handshakes injected before the loops start).

    .venv/bin/python bench/migration.py [--workloads 100] [--sessions 1000] [--json]

Phase 1, unannounced: each workload "shows up" on host-b (its agent reports the arrival, as the event of its
first frame on the VM side does); control pulls all its sessions from host-a (cut-over). Phase 2, announced:
each moves back (`POST /migrations` by a vm-operator: precopy to host-a, then the arrival, then the delta).
Per workload: the transfer time control measures (cut-over requested -> the destination imported), the
sessions moved, lost (a full table, a quota, a record that did not verify) and refused by the policy.

Every workload also holds sessions to port 443 that a policy change denied after they were established
(the hosts did not see a packet of them since): they must not move. After both phases the loops stop and
one mid-stream segment of every session kind is injected where the workload is now: established sessions
pass, the denied ones must not (`denied_forwarded` must be 0), and nothing is left on the host it left.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw._fastpath import engine as fp
from ngfw.control.auth import TokenFile, add_token
from ngfw.control.client import ControlClient
from ngfw.control.server import ControlServer
from ngfw.control.service import Control
from ngfw.control.store import open_store
from ngfw.control.validation import compile_documents
from ngfw.dataplane.migration import MigrationAgent

SERVER_IP, SERVER_MAC = "10.90.0.1", "02:00:00:99:00:01"
VSYS = "bench"
DENIED_PER_WORKLOAD = 10


def workload_addr(i: int) -> tuple[str, str]:
    return f"02:00:00:10:{i >> 8:02x}:{i & 0xFF:02x}", f"10.80.{i >> 8}.{(i & 0xFF) + 1}"


def documents(n: int, https: bool) -> list[dict[str, Any]]:
    def doc(kind: str, meta: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": "ngfw/v1", "kind": kind, "metadata": meta, "spec": spec}

    rules = [
        {
            "name": "app-to-web",
            "from": ["group:app"],
            "to": [f"cidr:{SERVER_IP}/32"],
            "services": ["tcp/80"],
            "action": "allow",
        }
    ]
    if https:
        rules.append(
            {
                "name": "app-to-https",
                "from": ["group:app"],
                "to": [f"cidr:{SERVER_IP}/32"],
                "services": ["tcp/443"],
                "action": "allow",
            }
        )
    out = [
        doc("VirtualSystem", {"name": VSYS}, {}),
        doc("Group", {"name": "app", "vsys": VSYS}, {"selector": {"tier": "app"}}),
        doc("SecurityPolicy", {"name": "main", "vsys": VSYS}, {"rules": rules}),
    ]
    for i in range(n):
        mac, ip = workload_addr(i)
        out.append(
            doc(
                "Workload",
                {"name": f"w{i:03d}", "vsys": VSYS, "labels": {"tier": "app"}},
                {"interfaces": [{"mac": mac, "ips": [ip]}], "host": "host-a"},
            )
        )
    return out


def _mac(text: str) -> bytes:
    return bytes(int(x, 16) for x in text.split(":"))


def frame(
    src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, sport: int, dport: int, flags: int, seq: int, ack: int
) -> bytes:
    """Ethernet/IPv4/TCP without scapy (a hundred thousand handshakes are injected)."""
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    )
    return _mac(dst_mac) + _mac(src_mac) + b"\x08\x00" + ip + tcp


SYN, ACK, SYNACK = 0x02, 0x10, 0x12


class Host:
    fp = fp
    eve = None

    def __init__(self, name: str, policy: Any, capacity: int) -> None:
        self.name = name
        self.engine = fp.Engine(flow_capacity=capacity, event_capacity=1 << 18)
        self.vm = self.engine.add_sink_port("vm", 0)
        self.up = self.engine.add_sink_port("up", 0)
        self.engine.set_port_vm_side(self.vm, True)
        self.policy = policy
        self.engine.set_tables(fp.Tables(policy, {}))
        self.arrival_listeners: list[Any] = []
        self.migration_agent: MigrationAgent | None = None
        self.thread: threading.Thread | None = None

    def load(self, policy: Any) -> None:
        self.policy = policy
        self.engine.set_tables(fp.Tables(policy, {}, generation=policy.version))

    def forwarded(self) -> int:
        return sum(p["tx_packets"] for p in self.engine.stats()["ports"])

    def run(self) -> None:
        self.thread = threading.Thread(target=self.engine.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.engine.stop()
        if self.thread is not None:
            self.thread.join()


def establish(host: Host, n_workloads: int, sessions: int) -> dict[int, list[tuple[int, int]]]:
    """Handshakes: (sport, dport) per workload; `sessions` to :80 and DENIED_PER_WORKLOAD to :443."""
    out: dict[int, list[tuple[int, int]]] = {}
    for i in range(n_workloads):
        mac, ip = workload_addr(i)
        flows = [(10000 + s, 80) for s in range(sessions)] + [(30000 + s, 443) for s in range(DENIED_PER_WORKLOAD)]
        for sport, dport in flows:
            host.engine.inject(host.vm, frame(mac, SERVER_MAC, ip, SERVER_IP, sport, dport, SYN, 100, 0))
            host.engine.inject(host.up, frame(SERVER_MAC, mac, SERVER_IP, ip, dport, sport, SYNACK, 500, 101))
            host.engine.inject(host.vm, frame(mac, SERVER_MAC, ip, SERVER_IP, sport, dport, ACK, 101, 501))
        out[i] = flows
    host.engine.drain_events()
    return out


def wait_state(
    client: ControlClient, migration_id: str | None, workload: str, state: str, timeout: float = 10.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for m in client.get("/migrations")["migrations"]:
            if (m["id"] == migration_id or migration_id is None) and m["workload"] == workload:
                if m["state"] in (state, "failed") or time.monotonic() > deadline:
                    return m
                break
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {state} migration of {workload}")
        time.sleep(0.002)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n = args.workloads
    tmp = Path(tempfile.mkdtemp(prefix="ngfw-migration-bench-"))
    tokens_path = tmp / "tokens.json"
    tokens = {
        name: add_token(tokens_path, name, role)
        for name, role in (
            ("admin", "security-admin"),
            ("otto", "vm-operator"),
            ("vera", "viewer"),
            ("host-a", "dataplane:host-a"),
            ("host-b", "dataplane:host-b"),
        )
    }
    control = Control(open_store(f"sqlite:///{tmp}/control.db"))
    server = ControlServer(control, TokenFile(tokens_path), "127.0.0.1", 0)
    server.start()
    url = server.url
    admin, otto, vera = (ControlClient(url, tokens[x]) for x in ("admin", "otto", "vera"))
    docs = documents(n, https=True)
    admin.apply_documents(docs, ["bench"] * len(docs))
    admin.commit("bench")
    policy_v1 = compile_documents(docs, 1, lint_it=False).policy
    capacity = n * (args.sessions + DENIED_PER_WORKLOAD) + 4096
    hosts = {name: Host(name, policy_v1, capacity) for name in ("host-a", "host-b")}
    a, b = hosts["host-a"], hosts["host-b"]
    started = time.perf_counter()
    flows = establish(a, n, args.sessions)
    establish_s = time.perf_counter() - started
    # a policy change denies :443 after those sessions were established (both hosts run it)
    policy_v2 = compile_documents(documents(n, https=False), 2, lint_it=False).policy
    for host in hosts.values():
        host.load(policy_v2)
    for name, host in hosts.items():
        host.migration_agent = MigrationAgent(host, ControlClient(url, tokens[name]), name, wait=5.0)
        host.migration_agent.start()
        host.run()
    deadline = time.monotonic() + 10
    while not all(control.migrations.connected(h) for h in hosts) and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(n):  # where every workload is (what its first frames on host-a reported)
        a.migration_agent.on_arrival(VSYS, f"w{i:03d}", time.time())
    while any(control.migrations.location(VSYS, f"w{i:03d}") != "host-a" for i in range(n)):
        time.sleep(0.01)

    phases: dict[str, list[dict[str, Any]]] = {"unannounced": [], "announced": []}
    for i in range(n):  # phase 1: each shows up on host-b
        name = f"w{i:03d}"
        t0 = time.perf_counter()
        b.migration_agent.on_arrival(VSYS, name, time.time())
        m = wait_state(vera, None, name, "done")
        phases["unannounced"].append({**m, "wall_s": time.perf_counter() - t0})
    for i in range(n):  # phase 2: announced moves back
        name = f"w{i:03d}"
        t0 = time.perf_counter()
        m = otto.post("/migrations", {"workload": name, "to": "host-a"})["migration"]
        wait_state(vera, m["id"], name, "precopied")
        precopy_done = wait_precopy_result(vera, m["id"])
        a.migration_agent.on_arrival(VSYS, name, time.time())
        m = wait_state(vera, m["id"], name, "done")
        phases["announced"].append({**m, "wall_s": time.perf_counter() - t0, "precopy_s": precopy_done - t0})
    for host in hosts.values():
        host.migration_agent.stop()
        host.stop()

    # where they are now (host-a): established sessions pass, denied ones do not; host-b kept nothing
    before = a.forwarded()
    passed_denied = 0
    for i in range(n):
        mac, ip = workload_addr(i)
        for sport, dport in (flows[i][0], flows[i][-1]):
            sent = a.forwarded()
            a.engine.inject(a.vm, frame(mac, SERVER_MAC, ip, SERVER_IP, sport, dport, ACK, 101, 501))
            if dport == 443 and a.forwarded() > sent:
                passed_denied += 1
    established_passed = a.forwarded() - before - passed_denied
    b.engine.expire(b.engine.clock_ns() + 20_000_000_000)
    server.stop()

    def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        transfer = sorted(r["transfer_seconds"] for r in rows if r["transfer_seconds"] is not None)
        wall = sorted(r["wall_s"] for r in rows)
        return {
            "migrations": len(rows),
            "done": sum(r["state"] == "done" for r in rows),
            "transfer_ms_p50": round(1000 * statistics.median(transfer), 1) if transfer else None,
            "transfer_ms_p99": round(1000 * transfer[min(len(transfer) - 1, int(0.99 * len(transfer)))], 1)
            if transfer
            else None,
            "transfer_ms_max": round(1000 * transfer[-1], 1) if transfer else None,
            "wall_ms_p50": round(1000 * statistics.median(wall), 1),
            "sessions_moved": sum(r["sessions_moved"] for r in rows),
            "sessions_lost": sum(r["sessions_lost"] for r in rows),
            "sessions_refused_by_policy": sum(r["sessions_refused_by_policy"] for r in rows),
            **(
                {"precopy_ms_p50": round(1000 * statistics.median(r["precopy_s"] for r in rows), 1)}
                if rows and "precopy_s" in rows[0]
                else {}
            ),
        }

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} vCPU, {platform.release()}",
        "workloads": n,
        "sessions_per_workload": args.sessions,
        "denied_per_workload": DENIED_PER_WORKLOAD,
        "establish_seconds": round(establish_s, 1),
        "unannounced": summary(phases["unannounced"]),
        "announced": summary(phases["announced"]),
        "after": {
            "established_segments_passed": established_passed,
            "of": n,
            "denied_forwarded": passed_denied,
            "left_on_host_b": b.engine.stats()["flows_active"],
        },
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for mode in ("unannounced", "announced"):
            s = result[mode]
            print(
                f"{mode}: {s['done']}/{s['migrations']} done, transfer p50 {s['transfer_ms_p50']} ms p99 "
                f"{s['transfer_ms_p99']} ms, {s['sessions_moved']} sessions moved, {s['sessions_lost']} lost, "
                f"{s['sessions_refused_by_policy']} refused by the policy"
            )
        print(f"after: {result['after']}")
    return 0


def wait_precopy_result(client: ControlClient, migration_id: str, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in client.get("/migrations")["migrations"]:
            if m["id"] == migration_id and m["phases"].get("precopy", {}).get("results") is not None:
                return time.perf_counter()
        time.sleep(0.002)
    raise TimeoutError(f"precopy of {migration_id} not imported")


if __name__ == "__main__":
    sys.exit(main())
