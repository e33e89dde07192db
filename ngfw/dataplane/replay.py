"""`ngfw replay`: the compiled pipeline over pcap/pcapng files, one record per flow.

Each file runs through a fresh engine in replay mode (mid-stream TCP pick-up, identity by IP,
the capture's own clock) whose two ports discard what is forwarded; the verdicts, App-ID and
flow counters are exactly what a live dataplane with the same policy would have produced.
"""

from __future__ import annotations

import mmap
import os

from ngfw.dataplane.appnames import split_app
from ngfw.dataplane.eve import DEFAULT_RULE, alert_fields, eve_timestamp
from ngfw.dataplane.fastpath import engine_module
from ngfw.wire import EVE_PROTO_NAMES

# what only annotations need is not imported: `ngfw replay` starts in a tenth of a second
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from ngfw.compiler.tables import CompiledPolicy

REPLAY_VSYS = "default"
READ_MAX = 16 << 20  # captures up to this size are read into a buffer kept for the next one; larger ones are mapped


def allow_all_policy(inspect: bool = False) -> CompiledPolicy:
    """The policy of a replay without --policy: one vsys that allows everything (and decides unmanaged
    flows); with `inspect`, every flow is inspected with every signature, actions as written."""
    from ngfw.compiler.catalogue import load_catalogue
    from ngfw.compiler.tables import Action, AddressSet, CompiledPolicy, CompiledProfile, CompiledRule

    rule = CompiledRule(
        "allow-all", 0, AddressSet(any=True), AddressSet(any=True), (), Action.ALLOW, True, profile=0 if inspect else -1
    )
    profiles = (CompiledProfile("default", 0),) if inspect else ()
    return CompiledPolicy(
        version=1, vsys=(REPLAY_VSYS,), workloads=(), rules=(rule,), catalogue=load_catalogue(), profiles=profiles
    )


class FileProblem:
    """A capture that could not be read, or not wholly."""

    __slots__ = ("path", "message")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileProblem) and (self.path, self.message) == (other.path, other.message)

    def __repr__(self) -> str:
        return f"FileProblem(path={self.path!r}, message={self.message!r})"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class Replayer:
    def __init__(
        self, policy: CompiledPolicy | None = None, flow_capacity: int = 262144, signatures: Any = None
    ) -> None:
        """`signatures`: a rule set (`threats.SignatureSets`) to inspect flows with; without a
        policy every flow is inspected with all of it."""
        self.fp = engine_module()
        self.policy = policy or allow_all_policy(inspect=signatures is not None)
        # without a policy every flow is decided by the built-in allow-all vsys
        self.unmanaged_vsys = 0 if policy is None else -1
        self.flow_capacity = flow_capacity
        self.signatures = signatures
        self.tables = self.fp.Tables(self.policy, {}, signatures.inspect if signatures is not None else None)
        self.problems: list[FileProblem] = []
        self._engine: Any = None  # the engine of the last file (its stats)
        self._engines: dict[int, tuple[Any, int]] = {}  # by table size: (engine, capture port), file to file
        self._lost_seen: dict[int, int] = {}  # events_lost of each engine already reported
        self._json_names: tuple[Any, ...] | None = None  # the policy's names as JSON values, for replay_file_json
        self.fast_records = True  # flow records from the extension's JSON lines (tests compare both ways)
        self._read_buffer = bytearray()  # the capture being replayed, when it is read rather than mapped

    def replay(self, paths: list[str]) -> Iterator[dict[str, Any]]:
        """Flow records of every file, file by file, each file's flows in order of their first packet."""
        for path in paths:
            yield from self.replay_file(path)

    def replay_file(self, path: str) -> list[dict[str, Any]]:
        if self.signatures is None and self.fast_records:
            # no alerts without signatures: the records the extension writes, read back (a fifth of the
            # cost of building them from event dicts)
            import orjson

            return [orjson.loads(line) for line in self.replay_file_json(path).splitlines()]
        engine = self._run_capture(path)
        if engine is None:
            return []
        name = os.path.basename(path)
        events: list[dict[str, Any]] = []
        while batch := engine.drain_events(65536):
            events.extend(e for e in batch if e["event"] in ("flow", "alert"))
        self._after_capture(engine, path)
        # flows in order of their first packet, each flow's alerts in order right after it
        first_seen = {e["flow_id"]: e["start"] for e in events if e["event"] == "flow"}
        events.sort(
            key=lambda e: (first_seen.get(e["flow_id"], e["start"]), e["flow_id"] or 0, e["event"] == "alert", e["end"])
        )
        return [self.record(e, name) if e["event"] == "flow" else self.alert_record(e, name) for e in events]

    def replay_file_json(self, path: str) -> bytes:
        """`replay_file`'s records as JSON lines (the bytes orjson writes for each), written by the
        extension without a dict per record: `ngfw replay --json` without signatures."""
        if self.signatures is not None:
            raise ValueError("replay_file_json does not write alerts; use replay_file")
        engine = self._run_capture(path)
        if engine is None:
            return b""
        if self._json_names is None:
            quote = self.fp.json_quote
            policy, catalogue = self.policy, self.policy.catalogue

            def pair(app_name: str) -> bytes:
                app_proto, app = split_app(catalogue, app_name or None)
                return b'"app_proto":' + quote(app_proto) + b',"app":' + quote(app)

            self._json_names = (
                tuple(quote(v or None) for v in policy.vsys),
                tuple(quote(w.name or None) for w in policy.workloads),
                tuple(quote(r.name) for r in policy.rules),
                tuple(pair(n) for n in self.tables.app_names),
                tuple(quote(EVE_PROTO_NAMES.get(p, str(p))) for p in range(256)),
                tuple(quote(a) for a in self.fp.ACTION_NAMES),
                quote(DEFAULT_RULE),
            )
        # every flow of the capture, in order of their first packet
        lines = engine.drain_flow_json(self.fp.json_quote(os.path.basename(path)), *self._json_names)
        self._after_capture(engine, path)
        return lines

    def _run_capture(self, path: str) -> Any:
        """Every packet of `path` through the engine and every flow ended; the engine, or None when
        the file cannot be read (a problem is noted)."""
        try:
            # the descriptor alone (no file object): a small capture costs little more than its system calls
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                size = os.fstat(fd).st_size
                engine, port_in = self._engine_for(size)
                if size > READ_MAX:
                    mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                    try:
                        result = engine.replay_capture(mapped, port_in)
                    finally:
                        mapped.close()
                else:
                    # read into one buffer kept from file to file: mapping each small file cost more than reading it
                    if len(self._read_buffer) < size:
                        self._read_buffer = bytearray(size)
                    with memoryview(self._read_buffer) as buffer:
                        got = 0
                        while got < size:
                            with buffer[got:size] as room:
                                n = os.readv(fd, [room])
                            if not n:
                                break  # shorter than it was a moment ago: what there is
                            got += n
                        with buffer[:got] as data:
                            result = engine.replay_capture(data, port_in)
            finally:
                os.close(fd)
        except OSError as exc:
            self.problems.append(FileProblem(path, f"cannot read: {exc.strerror or exc}"))
            return None
        if result["error"] and result["packets"] == 0 and result["error_offset"] == 0:
            self.problems.append(FileProblem(path, result["error"]))  # never was a capture
        elif result["error"]:
            self.problems.append(
                FileProblem(
                    path,
                    f"damaged at byte {result['error_offset']}: {result['error']}"
                    f" ({result['packets']} packets before it were replayed)",
                )
            )
        engine.end_all_flows()
        return engine

    def _after_capture(self, engine: Any, path: str) -> None:
        """Once a capture's events are drained: note lost records, ready the engine for the next file."""
        total_lost = engine.events_lost
        lost = total_lost - self._lost_seen.get(id(engine), 0)
        self._lost_seen[id(engine)] = total_lost
        if self.signatures is None:
            engine.replay_reset()
        else:
            # inspection keeps per-signature state (thresholds): a fresh engine per file
            self._engines.clear()
            self._lost_seen.clear()
        if lost:
            self.problems.append(
                FileProblem(
                    path, f"{lost} flow records were lost: the capture has more flows than one pass can hold (split it)"
                )
            )

    def stats(self) -> dict[str, Any]:
        """The counters of the engine that replayed the last file (drops by reason, flows, ...)."""
        return self._engine.stats() if self._engine is not None else {}

    def _engine_for(self, size: int) -> tuple[Any, int]:
        """An engine whose tables hold a capture of `size` bytes, and its capture port. Engines serve file
        after file (creating one per file was a fifth of replaying the App-ID corpus), one per size class
        (tables of 1,024 flows, then x8): ending a small capture's flows scans a small table, whatever
        size of file came before it."""
        # a flow needs at least one ~60-byte record: size the table to the file, not to a host
        needed = max(1024, min(self.flow_capacity, size // 60))
        capacity = 1024
        while capacity < needed:
            capacity = min(capacity * 8, max(self.flow_capacity, 1024))
        # every flow of the file is an event before anything drains them: one per record at most
        events = max(4096, 1 << (min(2 * max(capacity, size // 60), 1 << 20) - 1).bit_length())  # a power of two
        key = capacity << 32 | events
        if key not in self._engines:
            engine = self.fp.Engine(
                flow_capacity=capacity,
                replay=True,
                unmanaged_vsys=self.unmanaged_vsys,
                appid_slots=min(1024, capacity),
                event_capacity=events,
            )
            port_in = engine.add_sink_port("capture", 0)
            engine.add_sink_port("discard", 0)
            engine.set_tables(self.tables)
            self._engines[key] = (engine, port_in)
        self._engine, port_in = self._engines[key]
        return self._engine, port_in

    def alert_record(self, event: dict[str, Any], pcap_file: str) -> dict[str, Any]:
        """An EVE-shaped alert: the packet's own source and destination, the signature, the flow's app."""
        policy = self.policy
        if event.get("arp"):
            # an ARP frame's alert: no flow, no IP header (Suricata 8's EVE has none either)
            return {
                "event_type": "alert",
                "pcap_file": pcap_file,
                "timestamp": eve_timestamp(event["end"]),
                "ether": event["ether"],
                "arp": event["arp"],
                "vsys": policy.vsys_name(event["vsys"]) or None,
                "alert": alert_fields(event),
            }
        src, dst = ("dest", "src") if event["pkt_to_client"] else ("src", "dest")
        app_proto, _ = split_app(policy.catalogue, event.get("app_proto"))
        return {
            "event_type": "alert",
            "pcap_file": pcap_file,
            "flow_id": event["flow_id"],
            "timestamp": eve_timestamp(event["end"]),
            "src_ip": event[f"{src}_ip"],
            "src_port": event[f"{src}_port"],
            "dest_ip": event[f"{dst}_ip"],
            "dest_port": event[f"{dst}_port"],
            "proto": EVE_PROTO_NAMES.get(event["proto"], str(event["proto"])),
            "community_id": event["community_id"],
            "app_proto": app_proto,
            "vsys": policy.vsys_name(event["vsys"]) or None,
            "src_vm": policy.workload_name(event["src_wl" if src == "src" else "dst_wl"]) or None,
            "dest_vm": policy.workload_name(event["dst_wl" if src == "src" else "src_wl"]) or None,
            "alert": alert_fields(event),
        }

    def record(self, event: dict[str, Any], pcap_file: str) -> dict[str, Any]:
        policy = self.policy
        rule = event["rule"]
        app_proto, app = split_app(policy.catalogue, event.get("app_proto"))
        record: dict[str, Any] = {
            "event_type": "flow",
            "pcap_file": pcap_file,
            "flow_id": event["flow_id"],
            "timestamp": eve_timestamp(event["start"]),
            "src_ip": event["src_ip"],
            "src_port": event["src_port"],
            "dest_ip": event["dest_ip"],
            "dest_port": event["dest_port"],
            "proto": EVE_PROTO_NAMES.get(event["proto"], str(event["proto"])),
            "community_id": event["community_id"],
        }
        if event.get("icmp_type") is not None:
            record["icmp_type"], record["icmp_code"] = event["icmp_type"], event["icmp_code"]
        record.update(
            {
                "app_proto": app_proto,
                "app": app,
                "app_host": event.get("app_host"),
                **({"ssh": event["ssh"]} if event.get("ssh") else {}),
                "app_confidence": event.get("app_confidence"),
                "app_pkts": event.get("app_pkts"),
                "vsys": policy.vsys_name(event["vsys"]) or None,
                "src_vm": policy.workload_name(event["src_wl"]) or None,
                "dest_vm": policy.workload_name(event["dst_wl"]) or None,
                "rule": None if event["vsys"] < 0 else (DEFAULT_RULE if rule < 0 else policy.rule_name(rule)),
                "action": event["action"],
                "pkts_toserver": event["pkts_toserver"],
                "pkts_toclient": event["pkts_toclient"],
                "bytes_toserver": event["bytes_toserver"],
                "bytes_toclient": event["bytes_toclient"],
            }
        )
        return record


def format_table(records: list[dict[str, Any]]) -> list[str]:
    """A readable line per flow (without --json)."""
    lines = []
    for r in records:
        if r.get("event_type") == "alert":
            a = r["alert"]
            lines.append(
                f"{r['pcap_file']:<28} ALERT [{a['gid']}:{a['signature_id']}:{a['rev']}] {a['signature']} "
                f"[{a['category'] or '-'}] [severity {a['severity']}] {r['src_ip']}:{r['src_port']} -> "
                f"{r['dest_ip']}:{r['dest_port']} {a['action']}"
            )
            continue
        src = f"{r['src_ip']}:{r['src_port']}"
        dst = f"{r['dest_ip']}:{r['dest_port']}"
        host = f" {r['app_host']}" if r.get("app_host") else ""
        app = r.get("app_proto") or "-"
        if r.get("app") and r.get("app") != r.get("app_proto"):
            app = f"{app}/{r['app']}"
        lines.append(f"{r['pcap_file']:<28} {r['proto']:<5} {src:>28} -> {dst:<28} {app:<18}{host}  {r['action']}")
    return lines


__all__ = ["FileProblem", "Replayer", "allow_all_policy", "format_table"]
