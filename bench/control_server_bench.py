"""Control's HTTP server under many clients: idle sockets, waiting long-polls, a commit that wakes them.

    .venv/bin/python bench/control_server_bench.py [--polls 200] [--idle 3000] [--quiet 5] [--server REV] [--tls]

`ngfw control` (SQLite store) runs in this process on 127.0.0.1; the clients run in another process
(spawned), so this process's threads and CPU time are the server's alone. Measured:
1. threads of the server process with `--idle` idle connections open;
2. its CPU seconds while `--polls` long-polls (`GET /bundle?wait=30`, one thread each on the client
   side) wait `--quiet` seconds with nothing changing;
3. commit -> the last of the long-polls has returned the new bundle (the clients stamp each return).
With `--server REV` the server module is taken from git revision REV (e.g. the ThreadingHTTPServer one)
instead of the working tree's, for a before/after comparison. With `--tls` control serves HTTPS (a
throwaway CA, ngfw.lab.pki; the clients verify it), and 4. measures `--requests` sequential GET /status,
each on a new connection as the CLI and agents make them (a TLS handshake each).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ngfw.control.auth import TokenFile, add_token  # noqa: E402
from ngfw.control.client import ControlClient  # noqa: E402
from ngfw.control.service import Control  # noqa: E402
from ngfw.control.store import open_store  # noqa: E402


def server_module(revision: str | None) -> ModuleType:
    if revision is None:
        import ngfw.control.server as current

        return current
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{revision}:ngfw/control/server.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "control_server_at_revision.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("control_server_at_revision", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def clients(url: str, token: str, polls: int, ready: Any, returned: Any, ca_file: str | None = None) -> None:
    """In the client process: `polls` long-polls, each reporting (wall time, version) when it returns."""
    client = ControlClient(url, token, timeout=60, ca_file=ca_file)
    known = client.get("/bundle", host="probe")["hash"]

    def poll(host: str) -> None:
        ready.put(host)
        bundle = client.bundle(host, known, 30.0)
        returned.put((time.time(), bundle["version"] if bundle else None))

    threads = [threading.Thread(target=poll, args=(f"host-{i:04d}",), daemon=True) for i in range(polls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(65)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--polls", type=int, default=200)
    parser.add_argument("--idle", type=int, default=3000)
    parser.add_argument("--quiet", type=float, default=5.0)
    parser.add_argument("--server", help="git revision whose ngfw/control/server.py to run")
    parser.add_argument("--tls", action="store_true", help="serve HTTPS (a throwaway CA)")
    parser.add_argument("--requests", type=int, default=500, help="sequential GET /status, a connection each")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * args.idle + 1024)), hard))

    workdir = Path(tempfile.mkdtemp(prefix="ngfw-control-server-bench-"))
    tokens = workdir / "tokens.json"
    admin = add_token(tokens, "admin", "security-admin")
    fleet = add_token(tokens, "fleet", "dataplane")
    store = open_store(f"sqlite:///{workdir}/control.db")
    module = server_module(args.server)
    context, ca_file = None, None
    if args.tls:
        from ngfw.control.tls import server_context
        from ngfw.lab.pki import LabCA

        ca = LabCA(workdir / "pki")
        issued = ca.issue("control", ips=("127.0.0.1",))
        context, ca_file = server_context(str(issued.cert), str(issued.key)), str(ca.cert)
        server = module.ControlServer(Control(store), TokenFile(tokens), ssl_context=context)
    else:
        server = module.ControlServer(Control(store), TokenFile(tokens))
    server.start()
    port = int(server.url.rsplit(":", 1)[1])
    admin_client = ControlClient(server.url, admin, timeout=60, ca_file=ca_file)
    vsys = {"apiVersion": "ngfw/v1", "kind": "VirtualSystem", "metadata": {"name": "tenant-a"}, "spec": {}}
    admin_client.apply_documents([vsys], ["bench"])
    admin_client.commit("baseline")
    results: dict[str, Any] = {
        "server": args.server or "working tree",
        "tls": args.tls,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} cpu",
        "python": sys.version.split()[0],
    }

    base_threads = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(args.idle)]
    time.sleep(1.0)
    results["idle_sockets"] = args.idle
    results["threads_before"] = base_threads
    results["threads_with_idle_sockets"] = threading.active_count()
    for s in idle:
        s.close()
    time.sleep(1.0)

    ctx = multiprocessing.get_context("spawn")
    ready, returned = ctx.Queue(), ctx.Queue()
    process = ctx.Process(target=clients, args=(server.url, fleet, args.polls, ready, returned, ca_file), daemon=True)
    process.start()
    for _ in range(args.polls):
        ready.get(timeout=60)
    time.sleep(1.0)  # every poll has reached the server and waits
    cpu = time.process_time()
    time.sleep(args.quiet)
    results["polls"] = args.polls
    results["threads_with_polls_waiting"] = threading.active_count()
    results["cpu_seconds_per_second_while_polls_wait"] = round((time.process_time() - cpu) / args.quiet, 3)

    documents = [{**vsys, "spec": {"limits": {"maxSessions": 1000}}}]
    admin_client.apply_documents(documents, ["bench"])
    committed = time.time()
    admin_client.commit("wake everyone")
    stamps = sorted(returned.get(timeout=60) for _ in range(args.polls))
    results["commit_to_first_poll_ms"] = round((stamps[0][0] - committed) * 1000, 1)
    results["commit_to_last_poll_ms"] = round((stamps[-1][0] - committed) * 1000, 1)
    results["polls_with_the_new_version"] = sum(1 for _, version in stamps if version == 2)
    process.join(10)

    viewer = ControlClient(server.url, admin, timeout=60, ca_file=ca_file)
    started = time.perf_counter()
    for _ in range(args.requests):
        viewer.get("/status")
    results["sequential_requests_per_second"] = round(args.requests / (time.perf_counter() - started))
    server.stop()
    store.close()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
