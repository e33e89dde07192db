"""User-ID benchmark: login line -> enforced on every host, syslog lines/s, the packet loop with 100,000 mappings.

    .venv/bin/python bench/userid_bench.py [--agents 10] [--logins 100] [--lines 50000] [--json]

One machine. `ngfw control` (SQLite store, its syslog receiver on 127.0.0.1 UDP) runs in this process;
each agent is a process of its own running `ngfw.dataplane.userid.UserAgent` (long-poll of
/identity/users/changes, sha256 check) feeding a `UserMap` over a real fastpath engine (no ports): every delta
becomes a copy-on-write user table swapped into the engine. Agents report (address, time) through a queue
when the table in force maps the address; clocks are the same machine's.

1. login -> enforced on every host: an sshd "Accepted publickey for USER from IP" line is sent over UDP;
   latency is to the moment the last of the agents' engines runs a user table that maps IP. Target p99 <= 1 s.
2. syslog lines/s in control: LINES login lines through `SyslogReceiver.handle_lines` (batches of 512, as the
   UDP reader hands them over), CPU time of the handling thread, CPU time of the whole process (the writer
   thread that stores the mappings included) and wall time until every mapping is in the SQLite store; and
   over TCP (RFC 6587 octet counting), wall time until the receiver counted them all. Target >= 10,000 lines/s.
3. the packet loop with 100,000 mappings: first packets of 50,000 new flows injected into an engine whose
   policy has a `users:` rule, with a user table of one mapping (the client's) and of 100,001; ns per flow.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ngfw.control.auth import TokenFile, add_token
from ngfw.control.client import ControlClient
from ngfw.control.server import ControlServer
from ngfw.control.service import Control
from ngfw.control.store import open_store
from ngfw.control.syslog import SyslogReceiver, bench_lines


def doc(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "ngfw/v1", "kind": kind, "metadata": metadata, "spec": spec}


POLICY = [
    doc("VirtualSystem", {"name": "tenant-a"}, {}),
    doc(
        "Workload",
        {"name": "web-01", "vsys": "tenant-a"},
        {"interfaces": [{"mac": "02:00:00:00:01:01", "ips": ["10.77.0.11"]}]},
    ),
    doc("UserGroup", {"name": "finance", "vsys": "tenant-a"}, {"members": ["alice"]}),
    doc(
        "UserSource",
        {"name": "sshd"},
        {
            "syslog": {"login": r"Accepted \S+ for (?P<user>\S+) from (?P<ip>\S+)", "ttl": 3600},
            "unboundAddresses": ["10.0.0.0/8"],
        },
    ),
    doc(
        "SecurityPolicy",
        {"name": "main", "vsys": "tenant-a"},
        {
            "rules": [
                {
                    "name": "finance-web",
                    "from": ["any"],
                    "to": ["cidr:10.77.0.100/32"],
                    "services": ["tcp/80"],
                    "users": ["group:finance"],
                    "action": "allow",
                }
            ]
        },
    ),
]


def agent_main(url: str, token: str, host: str, reports: Any, ready: Any) -> None:
    from ngfw._fastpath import engine
    from ngfw.dataplane.userid import UserAgent, UserMap

    eng = engine.Engine(flow_capacity=1024)
    users = UserMap(engine, eng.set_users)
    agent = UserAgent(users, ControlClient(url, token, timeout=10), host, wait=20)
    agent.sync_once(0)  # the snapshot
    ready.put(host)
    seen: set[str] = set(str(a) for a in users.in_table)
    while True:
        agent.sync_once(20)
        now = time.time()
        new = [str(a) for a in users.in_table if str(a) not in seen]
        for address in new:
            seen.add(address)
            reports.put((host, address, now))


def login_latency(
    control: Control, url: str, tokens: dict[str, str], receiver: SyslogReceiver, n_agents: int, logins: int
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    reports, ready = ctx.Queue(), ctx.Queue()
    procs = [
        ctx.Process(target=agent_main, args=(url, tokens[f"host-{i}"], f"host-{i}", reports, ready), daemon=True)
        for i in range(n_agents)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    latencies = []
    try:
        for i in range(logins):
            address = f"10.1.{i // 250}.{i % 250 + 1}"
            line = f"<38>Dec  5 04:00:00 jump sshd[7]: Accepted publickey for alice from {address} port 22 ssh2"
            sent = time.time()
            sender.sendto(line.encode(), ("127.0.0.1", receiver.port))
            hosts: set[str] = set()
            last = sent
            while len(hosts) < n_agents:
                host, got, at = reports.get(timeout=10)
                if got == address:
                    hosts.add(host)
                    last = max(last, at)
            latencies.append(last - sent)
            time.sleep(0.02)
    finally:
        for p in procs:
            p.terminate()
    latencies.sort()
    return {
        "agents": n_agents,
        "logins": logins,
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
    }


def syslog_rate(receiver: SyslogReceiver, lines: int) -> dict[str, Any]:
    text = bench_lines(lines)
    started, started_process, started_wall = time.thread_time(), time.process_time(), time.perf_counter()
    for i in range(0, lines, 512):
        receiver.handle_lines(text[i : i + 512])
    cpu_rate = lines / (time.thread_time() - started)
    receiver.control.users.flush()  # the writer thread's last batch: every mapping is in the store now
    process_rate = lines / (time.process_time() - started_process)
    stored_rate = lines / (time.perf_counter() - started_wall)
    before = receiver.counters["lines"]
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", receiver.port)) as tcp:
        payload = b"".join(str(len(b)).encode() + b" " + b for b in (t.encode() for t in text))
        tcp.sendall(payload)
    while receiver.counters["lines"] - before < lines and time.perf_counter() - started < 60:
        time.sleep(0.01)
    tcp_rate = (receiver.counters["lines"] - before) / (time.perf_counter() - started)
    return {
        "lines": lines,
        "handle_cpu_lines_per_s": round(cpu_rate),
        "process_cpu_lines_per_s": round(process_rate),
        "stored_wall_lines_per_s": round(stored_rate),
        "tcp_wall_lines_per_s": round(tcp_rate),
    }


def loop_cost(flows: int = 50_000, mappings: int = 100_000) -> dict[str, Any]:
    import ipaddress

    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    from ngfw._fastpath import engine
    from ngfw.compiler.principals import user_principal
    from ngfw.control.validation import compile_documents

    policy = compile_documents(POLICY, 1).policy
    template = bytes(
        Ether(src="02:00:00:00:01:01", dst="02:00:00:00:02:01")
        / IP(src="10.77.0.11", dst="10.77.0.100")
        / TCP(sport=1, dport=80, flags="S")
    )
    frames = []
    for i in range(flows):
        raw = bytearray(template)
        raw[34:36] = (1024 + i % 60000).to_bytes(2, "big")
        raw[26:30] = bytes([10, 77, 0, 11])
        frames.append(bytes(raw))
    out: dict[str, Any] = {"flows": flows}
    for label, n in (("one_mapping", 0), ("mapped_100k", mappings)):
        e = engine.Engine(flow_capacity=1 << 17)
        a = e.add_memory_port("a", 0)
        b = e.add_memory_port("b", 0)
        e.set_tables(engine.Tables(policy, {"a": a, "b": b}))
        pairs = [
            (ipaddress.ip_address(f"10.{100 + k // 65536}.{k // 256 % 256}.{k % 256}"), user_principal(f"u{k}"))
            for k in range(n)
        ]
        pairs.append((ipaddress.ip_address("10.77.0.11"), user_principal("alice")))
        e.set_users(engine.UserTable(pairs))
        started = time.perf_counter()
        for frame in frames:
            e.inject(a, frame)
        out[f"{label}_ns_per_flow"] = round((time.perf_counter() - started) / flows * 1e9)
        out[f"{label}_allowed"] = len(e.take_tx(b))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--logins", type=int, default=100)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ngfw-userid-bench-"))
    tokens_path = work / "tokens.json"
    tokens = {"admin": add_token(tokens_path, "admin", "security-admin")}
    for i in range(args.agents):
        tokens[f"host-{i}"] = add_token(tokens_path, f"host-{i}", f"dataplane:host-{i}")
    store = open_store(f"sqlite:///{work / 'control.db'}")
    control = Control(store)
    server = ControlServer(control, TokenFile(tokens_path), "127.0.0.1", 0)
    server.start()
    receiver = SyslogReceiver(control, "127.0.0.1", 0)
    control.syslog = receiver
    receiver.start()
    admin = ControlClient(server.url, tokens["admin"], timeout=30)
    admin.apply_documents(POLICY, ["bench"] * len(POLICY))
    admin.commit("user-id bench")
    results = {
        "machine": f"{platform.machine()} {multiprocessing.cpu_count()} CPU, Python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
    }
    try:
        results["login_to_enforced"] = login_latency(control, server.url, tokens, receiver, args.agents, args.logins)
        results["syslog"] = syslog_rate(receiver, args.lines)
        results["packet_loop"] = loop_cost()
    finally:
        receiver.stop()
        server.stop()
        control.close()
        store.close()
    print(json.dumps(results, indent=None if args.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
