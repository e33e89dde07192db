"""The dataplane's operations socket (`ngfw sessions` on this host) over an engine whose packet loop runs.

What a user would notice: a listing of thousands of flows arrives complete, page by page, while the loop keeps
turning; a client that stops reading is dropped after the write timeout and nobody else waits for it; a bad
request gets one sentence; only root (or the dataplane's user) is served.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ngfw.dataplane.opsocket import OperationsClient, OperationsError, OperationsSocket
from ngfw.dataplane.rulehits import RuleHits
from ngfw.dataplane.sessions import SessionTable
from tests.support.fastpath import fp, lab_policy, syn

S = 1_000_000_000


class LoopingDataplane:
    """What the socket needs of `ngfw dataplane`, around an engine whose loop runs in a thread."""

    def __init__(self, flows: int) -> None:
        engine = fp.Engine(flow_capacity=max(4096, flows * 2))
        vm = engine.add_sink_port("vm", 0)
        engine.add_sink_port("up", 0)
        engine.set_tables(fp.Tables(lab_policy(), {}))
        for n in range(flows):
            engine.inject(vm, syn(1024 + n % 60000, 80 + n // 60000))
        assert engine.stats()["flows_active"] == flows
        self.engine = engine
        self.host = "host-t"
        self.generations = {engine.tables.generation: engine.tables.policy}
        self.sessions = SessionTable(engine, lambda: self.generations, self.host)
        self.rule_hit_book = RuleHits()
        self._thread = threading.Thread(target=engine.run, daemon=True)

    def read_rule_hits(self) -> None:
        self.rule_hit_book.observe(self.engine.tables)

    def __enter__(self) -> LoopingDataplane:
        self._thread.start()
        deadline = time.monotonic() + 5
        while self.engine.progress_ns() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.engine.stop()
        self._thread.join(timeout=5)


@pytest.fixture
def served(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[LoopingDataplane, OperationsSocket]]:
    flows = getattr(request, "param", 3000)
    with LoopingDataplane(flows) as dp:
        server = OperationsSocket(dp, str(tmp_path / "ops" / "dp.sock"), write_timeout=0.5, idle_timeout=5)
        server.start()
        try:
            yield dp, server
        finally:
            server.stop()


def test_a_listing_arrives_complete_page_by_page_while_the_loop_runs(served: tuple[Any, OperationsSocket]) -> None:
    dp, server = served
    before = dp.engine.progress_ns()
    with OperationsClient(server.path) as client:
        records = list(client.sessions({}, page=500))
        assert len({r["flow_id"] for r in records}) == 3000
        assert {r["src_vm"] for r in records} == {"web-01"} and {r["state"] for r in records} == {"syn_sent"}
        only = list(client.sessions({"sport": "1500"}))
        assert [r["src_port"] for r in only] == [1500]
        hits = client.call({"op": "hits"})
        web = {(e["vsys"], e["rule"]): e for e in hits["rules"]}[("tenant-a", "web-to-server-http")]
        assert web["hits"] == 3000 and web["last"] is not None
    assert dp.engine.progress_ns() > before  # the loop turned (and served the requests between its bursts)
    assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600


def test_bad_requests_get_one_sentence(served: tuple[Any, OperationsSocket]) -> None:
    _, server = served
    with OperationsClient(server.path) as client:
        with pytest.raises(OperationsError, match="port=http: a port is a number") as bad:
            list(client.sessions({"port": "http"}))
        assert bad.value.kind == "filter"
        with pytest.raises(OperationsError, match="unknown filter field 'colour'"):
            list(client.sessions({"colour": "red"}))
        with pytest.raises(OperationsError, match="vm=web-99: no workload named 'web-99'"):
            list(client.sessions({"vm": "web-99"}))
        with pytest.raises(OperationsError, match="unknown op 'drop-table'"):
            client.call({"op": "drop-table"})
        with pytest.raises(OperationsError, match='an empty filter ends every flow: say so with "all": true'):
            client.call({"op": "clear", "filter": {}})
        assert client.call({"op": "clear", "filter": {"sport": "1500"}})["cleared"] == 1
    raw = socket.socket(socket.AF_UNIX)
    raw.connect(server.path)
    raw.sendall(b"{not json\n")
    answer = json.loads(raw.makefile("rb").readline())
    assert answer["error"].startswith("a request line must be JSON")
    raw.close()


@pytest.mark.parametrize("served", [20000], indirect=True)
def test_a_client_that_stops_reading_holds_nobody(served: tuple[Any, OperationsSocket]) -> None:
    dp, server = served
    stuck = socket.socket(socket.AF_UNIX)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(server.path)
    stuck.sendall(json.dumps({"op": "sessions", "filter": {}, "limit": 5000}).encode() + b"\n")  # ~3 MB; never read
    time.sleep(0.1)
    started = time.monotonic()
    progress = dp.engine.progress_ns()
    with OperationsClient(server.path) as other:
        assert len(list(other.sessions({"sport": "2000"}))) == 1
    assert time.monotonic() - started < 0.4  # answered while the stuck one is still being written to
    assert dp.engine.progress_ns() > progress  # and the loop kept turning
    deadline = time.monotonic() + 3
    while server.counters["write_timeouts"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.counters["write_timeouts"] == 1  # dropped after the write timeout (0.5 s here)
    stuck.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to connect as another user")
def test_only_root_is_served() -> None:
    import tempfile

    with LoopingDataplane(10) as dp, tempfile.TemporaryDirectory(prefix="ngfw-opsocket-") as directory:
        os.chmod(directory, 0o755)  # another user may reach the socket file ...
        server = OperationsSocket(dp, os.path.join(directory, "ops", "dp.sock"))
        server.start()
        try:
            # the refusal comes before any request is read
            probe = (
                "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                "print(s.makefile().readline())"
            )
            nobody = {"user": 65534, "group": 65534, "extra_groups": []}
            denied = subprocess.run(
                ["/usr/bin/python3", "-c", probe, server.path], capture_output=True, text=True, timeout=20, **nobody
            )
            assert "PermissionError" in denied.stderr  # ... not connect to it: its directory is 0700, it is 0600
            os.chmod(os.path.dirname(server.path), 0o755)
            os.chmod(server.path, 0o666)  # and even when the files let anyone connect,
            refused = subprocess.run(
                ["/usr/bin/python3", "-c", probe, server.path], capture_output=True, text=True, timeout=20, **nobody
            )
            assert "permission denied: the sessions socket serves root only (uid 65534 asked)" in refused.stdout
        finally:
            server.stop()
