"""`ngfw dataplane --workers N`: N packet loops, each an Engine of its own (flow table shard, event ring, inspection
workspace, Hyperscan scratch), behind the one Engine API the dataplane speaks (`EngineGroup`).

Every interface gets one AF_PACKET ring socket per worker, all in one PACKET_FANOUT_EBPF group whose program
(ngfw/_fastpath/bpf/fanout.bpf.c, the hash of bpf/shard.h) sends both directions of a flow to one worker; the
workers join each group in order, so worker k gets the frames whose hash is k modulo N. The same hash, computed
here through the extension (wirebpf.flow_hash_tuple), routes imported session records to their worker.

What is shared and what is not (docs/dataplane.md, Workers):
  - per worker: the Engine (flows, events, capture ring, App-ID buffers), its Tables (rule and App-ID counters,
    App-ID Hyperscan scratch) and its InspectTables (a twin: counters, match state, Hyperscan scratch);
  - shared, read-only in the loops: the compiled policy, the User-ID table, the bypass map and ring filter (one
    BPF program for every socket), the fanout program;
  - a policy or user table swap is acknowledged once every worker has taken it (Engine.set_tables returns when
    its loop uses the new tables): after the acknowledgement no worker forwards a flow the new policy denies.

With one worker (the default) the dataplane keeps its single Engine: none of this runs.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import struct
from pathlib import Path
from typing import Any

FANOUT_OBJECT_PATH = Path(__file__).resolve().parent.parent / "_fastpath" / "bpf" / "fanout.bpf.o"
MAX_WORKERS = 64
_REC_LEN = struct.Struct("<I")
_V4_MAPPED = b"\0" * 10 + b"\xff\xff"
log = logging.getLogger("ngfw.dataplane")


class WorkersError(ValueError):
    """`--workers` cannot be used as asked; the message is one sentence naming the option."""


def check_workers(workers: int, taps: list[str], segments: dict[str, list[str]]) -> None:
    """Refuse, before anything is opened, what N workers do not support (yet), naming the option."""
    if not 1 <= workers <= MAX_WORKERS:
        raise WorkersError(f"--workers {workers}: give 1 to {MAX_WORKERS} packet loops")
    if workers == 1:
        return
    if taps:
        raise WorkersError(
            f"--workers {workers} does not support TAP ports (--tap {taps[0]}) yet: a TAP device needs one queue per "
            "worker (IFF_MULTI_QUEUE); run TAP ports with --workers 1"
        )
    if segments:
        name = next(iter(segments))
        raise WorkersError(
            f"--workers {workers} does not support switched segments (--segment {name}) yet: MAC learning would be "
            "split between the workers; run segments with --workers 1"
        )


WORKERS_FILE = "workers"  # in a state directory: how many workers wrote its tables


def worker_state_stores(top: Any, workers: int, host: str | None) -> list[Any]:
    """The state stores of `workers` packet loops in state directory `top` (ngfw.dataplane.state.StateStore): the
    directory itself for one loop, worker-0/ ... worker-(N-1)/ for N. Tables and snapshots another worker count
    left are set aside (`.refused`, a warning): their flows hash to other workers."""
    from ngfw.dataplane.state import StateStore

    marker = top.dir / WORKERS_FILE
    try:
        previous = int(marker.read_text())
    except (OSError, ValueError):
        previous = 1
    if previous != workers:
        old = [top.table_path, top.snapshot_path] + [
            p for d in sorted(top.dir.glob("worker-*")) for p in (d / top.table_path.name, d / top.snapshot_path.name)
        ]
        found = [p for p in old if p.exists()]
        for path in found:
            os.replace(path, path.with_name(path.name + ".refused"))
        if found:
            log.warning(
                "session state of a dataplane with %d worker(s) set aside, starting without it: this one runs %d, "
                "and flows hash to other workers",
                previous,
                workers,
            )
    if workers == 1:
        marker.unlink(missing_ok=True)
        return [top]
    marker.write_text(f"{workers}\n")
    return [StateStore(top.dir / f"worker-{k}", host) for k in range(workers)]


def flow_hash(src: str, dst: str, sport: int, dport: int, proto: int) -> int:
    """The fanout program's hash of a flow (bpf/shard.h): ports count for TCP only."""
    from ngfw._fastpath import wirebpf

    def packed(addr: str) -> bytes:
        ip = ipaddress.ip_address(addr)
        return _V4_MAPPED + ip.packed if ip.version == 4 else ip.packed

    if proto != 6:
        sport = dport = 0
    return wirebpf.flow_hash_tuple(packed(src), packed(dst), sport, dport, proto)


def split_records(records: bytes) -> list[bytes]:
    """Session records (Engine.export_sessions) one by one, by their length field."""
    out: list[bytes] = []
    off = 0
    while off + 4 <= len(records):
        (length,) = _REC_LEN.unpack_from(records, off)
        if length < 4 or off + length > len(records):
            break  # the engine refuses what is left as malformed, as it would without workers
        out.append(records[off : off + length])
        off += length
    if off < len(records):
        out.append(records[off:])
    return out


def _sum_into(total: Any, value: Any) -> Any:
    """Counters of several workers as one: numbers summed, dicts by key, lists of dicts by position."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return total
    if isinstance(value, (int, float)):
        return total + value
    if isinstance(value, dict):
        for key, v in value.items():
            total[key] = _sum_into(total[key], v) if key in total else _copy(v)
        return total
    if isinstance(value, list):
        for i, v in enumerate(value):
            if i < len(total):
                total[i] = _sum_into(total[i], v)
            else:
                total.append(_copy(v))
        return total
    return total


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def merge_stats(per_worker: list[dict[str, Any]]) -> dict[str, Any]:
    out = _copy(per_worker[0])
    for stats in per_worker[1:]:
        _sum_into(out, stats)
    return out


def worker_share(policy: Any, workers: int) -> Any:
    """`policy` as one of `workers` enforces it: each vsys's quotas (maxSessions, newSessionsPerSecond) divided
    among the workers, rounded up, so the vsys holds at most its limit (plus the rounding) however its flows
    spread; a worker whose share is used up refuses new flows of the vsys while another may still have room."""
    limits = getattr(policy, "vsys_limits", ())
    if not limits:
        return policy
    from ngfw.values import replace

    def share(n: int | None) -> int | None:
        return -(-n // workers) if n else n

    return replace(
        policy,
        vsys_limits=tuple(
            replace(q, max_sessions=share(q.max_sessions), new_sessions_per_second=share(q.new_sessions_per_second))
            for q in limits
        ),
    )


class TablesGroup:
    """One policy generation's Tables, one per worker, read as one: names from the first, counters summed."""

    def __init__(self, members: list[Any], policy: Any = None) -> None:
        self.members = members
        self._policy = policy  # the policy as compiled (the members' may carry their share of vsys quotas)

    @property
    def policy(self) -> Any:
        return self._policy if self._policy is not None else self.members[0].policy

    @property
    def app_names(self) -> list[str]:
        return self.members[0].app_names

    @property
    def inspect(self) -> Any:
        return self.members[0].inspect

    @property
    def profile_tables(self) -> list[Any]:
        return self.members[0].profile_tables

    @property
    def build_seconds(self) -> float:
        return sum(t.build_seconds for t in self.members)

    def generation(self) -> int:
        return self.members[0].generation()

    def rule_hits(self) -> list[int]:
        return [sum(col) for col in zip(*(t.rule_hits() for t in self.members), strict=True)]

    def default_hits(self) -> list[int]:
        return [sum(col) for col in zip(*(t.default_hits() for t in self.members), strict=True)]

    def app_flows(self) -> dict[Any, int]:
        out: dict[Any, int] = {}
        for t in self.members:
            for key, n in t.app_flows().items():
                out[key] = out.get(key, 0) + n
        return out


class EngineGroup:
    """N Engines, one packet loop each, behind the Engine API the dataplane uses."""

    def __init__(
        self,
        fp: Any,
        workers: int,
        flow_capacity: int,
        inspect_slots: int | None,
        states: list[Any] | None = None,
        **engine_kwargs: Any,
    ):
        """`states`: each worker's state memory (its table file, ngfw.dataplane.state), or None: the heap."""
        if workers < 2:
            raise WorkersError(f"--workers {workers}: a group needs at least two workers")
        self._fanout: Any = None  # loaded with the first ring port (memory ports need none)
        self.fp = fp
        # the capacities are the dataplane's: each worker holds its share (flows are spread by the hash)
        per_worker = -(-flow_capacity // workers)
        per_inspect = None if inspect_slots is None else max(1, -(-inspect_slots // workers))
        states = states or [None] * workers
        self.workers = [
            fp.Engine(flow_capacity=per_worker, inspect_slots=per_inspect, state=states[k], **engine_kwargs)
            for k in range(workers)
        ]
        self.flow_capacity = per_worker * workers
        self._tables: TablesGroup | None = None
        self._users: Any = None
        self._twins: tuple[Any, list[Any]] | None = None  # (InspectTables, its twins for workers 1..N-1)
        self.fanout_groups: dict[int, int] = {}  # port index -> fanout group id

    def __len__(self) -> int:
        return len(self.workers)

    @property
    def fanout(self) -> Any:
        """The fanout program (wirebpf.FanoutProgram), loaded on first use."""
        if self._fanout is None:
            from ngfw._fastpath import wirebpf

            try:
                self._fanout = wirebpf.FanoutProgram.load(str(FANOUT_OBJECT_PATH))
            except OSError as exc:
                raise WorkersError(
                    f"--workers {len(self.workers)} needs the fanout eBPF program {FANOUT_OBJECT_PATH} loaded into "
                    f"the kernel (root or CAP_BPF), which failed: {exc.strerror or exc}"
                ) from None
        return self._fanout

    # ---- ports
    def add_ring_port(self, name: str, ifindex: int, mtu: int, segment: int) -> int:
        first = self.workers[0]
        try:
            index = first.add_ring_port(name, ifindex, mtu, segment, fanout_prog_fd=self.fanout.fd)
            group = first.fanout_group(index)
            for worker in self.workers[1:]:
                if worker.add_ring_port(name, ifindex, mtu, segment, fanout_group=group) != index:
                    raise RuntimeError(f"port {name}: the workers disagree on its index")
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            raise WorkersError(
                f"--workers {len(self.workers)}: this kernel refuses to join the ring sockets of {name} in an eBPF "
                "fanout group that ignores outgoing frames (PACKET_FANOUT_EBPF with "
                "PACKET_FANOUT_FLAG_IGNORE_OUTGOING); run with --workers 1"
            ) from None
        self.fanout_groups[index] = group
        return index

    def add_memory_port(self, name: str, segment: int, mtu: int = 1500, capacity: int = 1 << 22) -> int:
        """Tests: a memory port on every worker; `inject` plays the fanout (the same hash, computed here)."""
        indexes = {w.add_memory_port(name, segment, mtu, capacity) for w in self.workers}
        if len(indexes) != 1:
            raise RuntimeError(f"port {name}: the workers disagree on its index")
        return indexes.pop()

    def worker_of(self, frame: bytes) -> int:
        """The worker the fanout program gives `frame` (from its Ethernet header)."""
        from ngfw._fastpath import wirebpf

        return int(wirebpf.flow_hash_frame(frame)) % len(self.workers)

    def inject(self, port: int, frame: bytes, now_ns: int | None = None) -> None:
        self.workers[self.worker_of(frame)].inject(port, frame, now_ns)

    def take_tx(self, port: int) -> list[bytes]:
        return [f for w in self.workers for f in w.take_tx(port)]

    def add_tap_port(self, name: str, fd: int, mtu: int, segment: int) -> int:
        raise WorkersError(f"--workers {len(self.workers)} does not support TAP ports (--tap {name}) yet")

    def reattach_ring_port(self, index: int, ifindex: int, mtu: int, timeout: float = 2.0) -> None:
        """A re-created interface: a new group, the workers joining it in order (worker k keeps hash % N == k)."""
        first = self.workers[0]
        first.reattach_ring_port(index, ifindex, mtu, timeout=timeout, fanout_prog_fd=self.fanout.fd)
        group = first.fanout_group(index)
        for worker in self.workers[1:]:
            worker.reattach_ring_port(index, ifindex, mtu, timeout=timeout, fanout_group=group)
        self.fanout_groups[index] = group

    def reattach_tap_port(self, index: int, fd: int, mtu: int, timeout: float = 2.0) -> int:
        raise WorkersError("TAP ports are not supported with --workers above 1")

    def detach_port(self, index: int, timeout: float = 2.0) -> int:
        return [w.detach_port(index, timeout) for w in self.workers][0]

    def set_port_down(self, index: int, down: bool) -> None:
        for w in self.workers:
            w.set_port_down(index, down)

    def set_port_vm_side(self, index: int, vm_side: bool) -> None:
        for w in self.workers:
            w.set_port_vm_side(index, vm_side)

    def port_states(self) -> list[dict[str, Any]]:
        return self.workers[0].port_states()

    @property
    def port_notify_fd(self) -> int:
        return self.workers[0].port_notify_fd

    # ---- tables
    def build_tables(
        self, policy: Any, port_index: dict[str, int], inspect: Any, generation: int, running: TablesGroup | None
    ) -> TablesGroup:
        """One Tables per worker: each its own counters and App-ID scratch, its own InspectTables twin, its share
        of the vsys quotas."""
        inspects = [inspect] + self._inspect_twins(inspect)
        share = worker_share(policy, len(self.workers))
        return TablesGroup(
            [
                self.fp.Tables(
                    share,
                    port_index,
                    inspects[k],
                    generation=generation,
                    apps_from=running.members[k] if running is not None else None,
                )
                for k in range(len(self.workers))
            ],
            policy,
        )

    def _inspect_twins(self, inspect: Any) -> list[Any]:
        if inspect is None:
            return [None] * (len(self.workers) - 1)
        if self._twins is None or self._twins[0] is not inspect:
            self._twins = (inspect, [inspect.twin() for _ in self.workers[1:]])
        return self._twins[1]

    def set_tables(self, tables: TablesGroup, timeout: float = 2.0) -> None:
        """Returns once every worker's loop uses `tables` (the acknowledgement of a policy)."""
        for worker, member in zip(self.workers, tables.members, strict=True):
            worker.set_tables(member, timeout)
        self._tables = tables

    @property
    def tables(self) -> TablesGroup | None:
        return self._tables

    def set_users(self, users: Any, timeout: float = 2.0) -> None:
        for w in self.workers:
            w.set_users(users, timeout)
        self._users = users

    @property
    def users(self) -> Any:
        return self._users

    # ---- running (the dataplane starts a loop thread, and a TX thread, per worker)
    def use_tx_thread(self) -> None:
        for w in self.workers:
            w.use_tx_thread()

    def stop(self) -> None:
        for w in self.workers:
            w.stop()

    def progress_ns(self) -> int:
        """The oldest worker's last turn: the systemd watchdog fires when any loop stalls."""
        return min(w.progress_ns() for w in self.workers)

    def set_heartbeat_address(self, address: int) -> None:
        for w in self.workers:
            w.set_heartbeat_address(address)

    def allow_midstream(self, seconds: float) -> None:
        for w in self.workers:
            w.allow_midstream(seconds)

    def clock_ns(self) -> int:
        return self.workers[0].clock_ns()

    # ---- bypass and admission: one program and map for every worker's sockets
    def enable_bypass(self, map_fd: int, filter_fd: int, ports: dict[int, tuple[int, int]]) -> None:
        for w in self.workers:
            w.enable_bypass(map_fd, filter_fd, ports)

    def attach_ring_filter(self, filter_fd: int, port_indexes: list[int]) -> None:
        for w in self.workers:
            w.attach_ring_filter(filter_fd, port_indexes)

    def set_bypass_ifindex(self, index: int, ifindex: int) -> None:
        for w in self.workers:
            w.set_bypass_ifindex(index, ifindex)

    def bypass_enabled(self) -> bool:
        return self.workers[0].bypass_enabled()

    # ---- observability
    def stats(self) -> dict[str, Any]:
        return merge_stats([w.stats() for w in self.workers])

    def worker_stats(self) -> list[dict[str, Any]]:
        """Per worker: packets received on its sockets, its active flows (ngfw_worker_* metrics)."""
        out = []
        for w in self.workers:
            s = w.stats()
            out.append(
                {
                    "packets": sum(p["rx_packets"] for p in s["ports"]),
                    "flows_active": s["flows_active"],
                    "flows_created": s["flows_created"],
                }
            )
        return out

    @property
    def events_lost(self) -> int:
        return sum(w.events_lost for w in self.workers)

    def drain_events(self, max_events: int = 4096) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for w in self.workers:
            out.extend(w.drain_events(max_events))
        return out

    def drain_captures(self, max_frames: int = 4096) -> list[Any]:
        out: list[Any] = []
        for w in self.workers:
            out.extend(w.drain_captures(max_frames))
        return out

    def capture_matching(self, *args: Any, **kwargs: Any) -> None:
        for w in self.workers:
            w.capture_matching(*args, **kwargs)

    def flows(self) -> list[Any]:
        return [f for w in self.workers for f in w.flows()]

    def end_all_flows(self) -> None:
        for w in self.workers:
            w.end_all_flows()

    # ---- sessions: a cursor is (worker, slot) as one number: worker * slots + slot
    def table_slots(self) -> int:
        return sum(w.table_slots() for w in self.workers)

    def _page(self, method: str, flow_filter: dict[str, Any], cursor: int, **kwargs: Any) -> dict[str, Any]:
        slots = self.workers[0].table_slots()
        k, local = divmod(cursor, slots)
        out = getattr(self.workers[k], method)(flow_filter, cursor=local, **kwargs)
        if out["cursor"] != 0:
            out["cursor"] += k * slots
        elif k + 1 < len(self.workers):
            out["cursor"] = (k + 1) * slots
        return out

    def list_sessions(self, flow_filter: dict[str, Any], cursor: int = 0, **kwargs: Any) -> dict[str, Any]:
        return self._page("list_sessions", flow_filter, cursor, **kwargs)

    def clear_sessions(self, flow_filter: dict[str, Any], cursor: int = 0, **kwargs: Any) -> dict[str, Any]:
        return self._page("clear_sessions", flow_filter, cursor, **kwargs)

    def export_sessions(
        self, workload: int = -1, changed_since: int = 0, cursor: int = 0, limit: int = 0, **kwargs: Any
    ) -> dict[str, Any]:
        """Every worker's matching flows; `now` is the earliest worker's (a later `changed_since` misses none)."""
        if cursor or limit:
            raise WorkersError("paged session exports (cursor, limit) are not supported with --workers above 1")
        outs = [w.export_sessions(workload=workload, changed_since=changed_since, **kwargs) for w in self.workers]
        return {
            "records": b"".join(o["records"] for o in outs),
            "keys": b"".join(o["keys"] for o in outs),
            "count": sum(o["count"] for o in outs),
            "cursor": 0,
            "now": min(o["now"] for o in outs),
        }

    def route_records(self, records: bytes) -> list[bytes]:
        """Session records split by the worker their flow's frames go to (the fanout hash)."""
        parts: list[list[bytes]] = [[] for _ in self.workers]
        for record in split_records(records):
            decoded = self.fp.decode_records(record)
            if not decoded:
                parts[0].append(record)  # malformed: worker 0 refuses and counts it
                continue
            r = decoded[0]
            shard = flow_hash(str(r["src_ip"]), str(r["dest_ip"]), r["src_port"], r["dest_port"], r["proto"])
            parts[shard % len(self.workers)].append(record)
        return [b"".join(p) for p in parts]

    def import_sessions(self, records: bytes, exporter_apps: Any = None, **kwargs: Any) -> dict[str, Any]:
        results: dict[str, int] = {}
        restored = 0
        for worker, part in zip(self.workers, self.route_records(bytes(records)), strict=True):
            if not part:
                continue
            out = worker.import_sessions(part, exporter_apps, **kwargs)
            for key, n in out["results"].items():
                results[key] = results.get(key, 0) + n
            restored += out.get("streams_restored", 0)
        return {"results": results, "streams_restored": restored}

    def forget_presence(self, workload: int, timeout: float = 10.0) -> None:
        for w in self.workers:
            w.forget_presence(workload, timeout)


def engines_of(engine: Any) -> list[Any]:
    """The packet loops behind `engine`: a group's workers, or the engine itself."""
    return list(engine.workers) if isinstance(engine, EngineGroup) else [engine]
