"""Engines the fastpath targets share: an allow-all policy that runs App-ID and inspects every flow
with tests/fuzz/inspect.rules, wired as `ngfw replay` runs it or as an inline wire."""

from __future__ import annotations

import ctypes
from functools import cache
from pathlib import Path
from typing import Any

RULES = Path(__file__).resolve().parents[1] / "inspect.rules"
HOUR_NS = 3600 * 10**9


def exact(data: bytes) -> memoryview:
    """`data` in a heap block of exactly its size (with PYTHONMALLOC=malloc), so ASan sees a read past it;
    a bytes object is followed by its NUL and its neighbours in the same arena."""
    block = (ctypes.c_char * len(data)).from_buffer_copy(data)
    return memoryview(block).cast("B")


@cache
def signatures() -> Any:
    from ngfw.dataplane.threats import load_signature_sets

    return load_signature_sets([("fuzz", str(RULES))])


@cache
def tables() -> Any:
    from ngfw.dataplane.fastpath import engine_module
    from ngfw.dataplane.replay import allow_all_policy

    return engine_module().Tables(allow_all_policy(inspect=True), {}, signatures().inspect)


def drain(engine: Any) -> list[dict[str, Any]]:
    events = []
    while batch := engine.drain_events(4096):
        events.extend(batch)
    return events


class ReplayEngine:
    """An engine in replay mode with `ngfw replay --rules`' policy (every flow inspected), reused input after
    input as `ngfw replay` reuses one file after file; its events become replay's records."""

    def __init__(self) -> None:
        from ngfw.dataplane.fastpath import engine_module
        from ngfw.dataplane.replay import Replayer

        self.replayer = Replayer(flow_capacity=1024, signatures=signatures())
        self.engine = engine_module().Engine(
            flow_capacity=1024, replay=True, unmanaged_vsys=0, appid_slots=1024, event_capacity=8192
        )
        self.port = self.engine.add_sink_port("capture", 0)
        self.engine.add_sink_port("discard", 0)
        self.engine.set_tables(self.replayer.tables)

    def replay(self, data: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The capture in an exact-size heap block; the result and the flow and alert records."""
        result = self.engine.replay_capture(exact(data), self.port)
        self.engine.end_all_flows()
        events = drain(self.engine)
        self.engine.replay_reset()
        records = [
            self.replayer.record(e, "fuzz.pcap") if e["event"] == "flow" else self.replayer.alert_record(e, "fuzz.pcap")
            for e in events
            if e["event"] in ("flow", "alert")
        ]
        return result, records


class InlineWire:
    """An inline engine between two memory ports, on a clock of its own: each input starts an hour after
    the last, once every flow of the last one has expired, so inputs do not depend on each other."""

    def __init__(self) -> None:
        from ngfw.dataplane.fastpath import engine_module

        self.engine = engine_module().Engine(flow_capacity=1024, unmanaged_vsys=0, event_capacity=8192)
        self.ports = (self.engine.add_memory_port("vm", 0), self.engine.add_memory_port("up", 0))
        self.engine.set_tables(tables())
        self.now = HOUR_NS

    def start_input(self) -> None:
        self.now += HOUR_NS
        self.engine.expire(self.now)
        drain(self.engine)

    def send(self, side: int, frame: bytes) -> list[bytes]:
        """`frame` in on port `side` (0 vm, 1 up), a millisecond after the last; what both ports sent."""
        self.now += 10**6
        self.engine.inject(self.ports[side], frame, self.now)
        return self.engine.take_tx(self.ports[0]) + self.engine.take_tx(self.ports[1])
