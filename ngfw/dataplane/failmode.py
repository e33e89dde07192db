"""Fail mode per wire: what passes between a wire's two interfaces while no healthy dataplane drives it.

- `closed` (the default): nothing. No program runs on the wire; one an earlier dataplane left is removed.
- `open`: the wire program (ngfw/_fastpath/bpf/wire.bpf.c), a tc ingress filter on both interfaces, sends
  each frame to the other interface when the packet loop's heartbeat (stored every turn in a memory-mapped
  BPF map) is older than STALE_AFTER_NS: the process died, was stopped, or its loop stalls. The filter and
  its maps stay in the kernel without this process; the next dataplane finds them on its interfaces, reads
  and logs what the kernel forwarded, and replaces them with its own instance once its loop runs.

`WireFailModes` is built with the ports (it refuses `open` at once where BPF is not allowed), started once
the packet loop runs and stopped after it ends; the metrics read `status()`.

Flow bypass (docs/dataplane.md) rides on the same program: with `bypass`, every wire carries it (a closed
one too: the mode only says what happens when the heartbeat is stale), the packet loop fills its bypass map,
and its ring filter keeps what the kernel forwards out of the dataplane's rings. Where BPF cannot be loaded,
bypass is off, said once, and the dataplane forwards every flow itself.

SYN flood protection (ngfw.dataplane.admission) rides on its ring filter too: with `syn_limits`, the filter on
every wire's ring sockets drops the SYNs over the limits before they are copied to the rings. It needs no tc
filter and works with or without bypass; where BPF cannot be loaded it is off, said once, and every SYN
reaches the packet loop (whose flow table makes room by early drop).
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ngfw.dataplane import admission
from ngfw.dataplane.admission import AdmissionReport, SynLimits
from ngfw.dataplane.ports import PortError

log = logging.getLogger("ngfw.dataplane.failmode")

FAIL_MODES = ("closed", "open")
# 30 turns of a loop that turns at least every 10 ms: a busy host does not open the wire by accident, and
# the kernel forwards about 0.3 s after the loop's last turn (the requirement: within 1 s)
STALE_AFTER_NS = 300_000_000
FIRST_TURN_TIMEOUT = 2.0  # seconds to wait for the loop's first heartbeat before taking the wire
MONITOR_INTERVAL = 0.25  # seconds between two looks at the program's counters (stall logging)
MIDSTREAM_PICKUP_SECONDS = 30  # after the kernel forwarded for us: unknown TCP connections are picked up this long
OBJECT_PATH = Path(__file__).resolve().parent.parent / "_fastpath" / "bpf" / "wire.bpf.o"


class FailModeError(PortError):
    """A wire's fail mode cannot be enforced here; the message is one sentence naming the wire."""


class HeartbeatEngine(Protocol):
    def set_heartbeat_address(self, address: int) -> None: ...
    def progress_ns(self) -> int: ...
    def allow_midstream(self, seconds: float) -> None: ...
    # flow bypass (Engine.enable_bypass, bypass.pxi)
    def enable_bypass(self, map_fd: int, filter_fd: int, ports: dict[int, tuple[int, int]]) -> None: ...
    def set_bypass_ifindex(self, index: int, ifindex: int) -> None: ...
    def attach_ring_filter(self, filter_fd: int, port_indexes: list[int]) -> None: ...


def wire_name(wire: tuple[str, str]) -> str:
    return f"{wire[0]}:{wire[1]}"


def wire_modes(wire_args: list[tuple[str, str, str | None]], default: str) -> dict[tuple[str, str], str]:
    """`--wire IF_A:IF_B[:MODE]` arguments and `--fail-mode` -> each wire's mode (its own, else the default)."""
    return {(a, b): mode or default for a, b, mode in wire_args}


@dataclass
class _Wire:
    ports: tuple[str, str]
    mode: str
    slot: int
    ifindexes: tuple[int, int] = (0, 0)
    attached: bool = False  # the program runs on both interfaces (open wires, and every wire with bypass)
    # what the kernel forwarded for this wire under programs earlier dataplanes left (read at take-over)
    carried_packets: int = 0
    carried_bytes: int = 0
    carried_activations: int = 0
    # the monitor's view, for logging stalls once each
    seen_activations: int = 0
    seen_packets: int = 0
    stalled_since_packets: int | None = None

    @property
    def name(self) -> str:
        return wire_name(self.ports)


@dataclass(frozen=True)
class WireStatus:
    """A wire's fail mode and what the kernel forwarded for it in fail-open (taken-over programs included)."""

    wire: str
    mode: str
    packets: int
    bytes: int
    activations: int


def _wirebpf() -> Any:
    import ngfw._fastpath.wirebpf as wirebpf

    return wirebpf


class WireFailModes:
    def __init__(
        self,
        wires: list[tuple[str, str]],
        modes: dict[tuple[str, str], str],
        ports: list[str],
        object_path: Path = OBJECT_PATH,
        stale_after_ns: int = STALE_AFTER_NS,
        bypass: bool = False,
        port_index: dict[str, int] | None = None,
        syn_limits: SynLimits | None = None,
    ) -> None:
        """`modes`: wire -> "closed" | "open" (a wire not named is closed); `ports`: every port the dataplane
        owns (a leftover program on any of them that is not a wire carrying ours is removed at start);
        `bypass`: flow bypass on the wires (needs `port_index`, port name -> the engine's port index);
        `syn_limits`: SYN flood protection on the wires' rings (needs `port_index` too)."""
        for wire, mode in modes.items():
            if wire not in wires:
                raise ValueError(f"fail mode given for {wire_name(wire)}, which is not a --wire of this dataplane")
            if mode not in FAIL_MODES:
                raise ValueError(f"fail mode {mode!r} of wire {wire_name(wire)} is neither closed nor open")
        self.wires = [_Wire(ports=w, mode=modes.get(w, "closed"), slot=i) for i, w in enumerate(wires)]
        self.ports = list(ports)
        self.stale_after_ns = stale_after_ns
        self.program: Any = None
        self._monitor: threading.Thread | None = None
        self._engine: HeartbeatEngine | None = None
        self._started = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.port_index = dict(port_index or {})
        self.bypass = bypass and bool(self.wires)
        self.syn_limits = syn_limits if syn_limits is not None and syn_limits.enabled and self.wires else None
        self.admission: AdmissionReport | None = None
        open_wires = [w for w in self.wires if w.mode == "open"]
        if open_wires:
            self.program = self._load(open_wires, object_path)
        elif self.bypass or self.syn_limits:
            purpose = "flow bypass" if self.bypass else "SYN flood protection"
            try:
                # SYN flood protection alone needs only the ring filter, no tc filter (nor its qdisc)
                self.program = self._load(self.wires if self.bypass else [], object_path, purpose=purpose)
            except FailModeError as exc:
                off = [
                    (what, then)
                    for what, on, then in (
                        ("flow bypass", self.bypass, "the dataplane forwards every flow itself"),
                        ("SYN flood protection", self.syn_limits, "every SYN reaches its rings"),
                    )
                    if on
                ]
                log.warning("%s; %s off: %s", exc, " and ".join(w for w, _ in off), " and ".join(t for _, t in off))
                self.bypass = False
                self.syn_limits = None
        if self.program is not None and self.syn_limits:
            try:
                admission.configure(self.program, self.syn_limits)
                self.admission = AdmissionReport(self.program, self.syn_limits)
            except (OSError, ValueError) as exc:
                log.warning("SYN flood protection is off (%s): every SYN reaches the dataplane's rings", exc)
                self.syn_limits = None

    # ---- start: load, check, configure (the wire is not touched yet)
    def _load(self, open_wires: list[_Wire], object_path: Path, purpose: str = "fail mode open") -> Any:
        """Load the program and configure every wire in its maps; `open_wires`: those whose interfaces get the
        clsact qdisc the tc filter needs (none for the ring filter alone)."""
        first = (open_wires or self.wires)[0].name
        try:
            wirebpf = _wirebpf()
        except ImportError as exc:
            raise FailModeError(
                f"wire {first}: {purpose} needs the wire program's loader "
                f"(ngfw._fastpath.wirebpf), which does not import ({exc}): rebuild ngfw with clang "
                "and libbpf-dev installed"
            ) from None
        if len(self.wires) > wirebpf.MAX_WIRES:
            raise FailModeError(
                f"wire {first}: {purpose} drives at most {wirebpf.MAX_WIRES} wires per "
                f"dataplane, this one has {len(self.wires)}"
            )
        if not object_path.exists():
            raise FailModeError(
                f"wire {first}: {purpose} needs the wire program {object_path}, which is "
                "missing: rebuild ngfw (setup.py compiles it with clang)"
            )
        try:
            program = wirebpf.WireProgram.load(str(object_path))
        except OSError as exc:
            log.debug("libbpf: %s", getattr(exc, "detail", ""))
            raise FailModeError(_refusal(first, exc, purpose)) from None
        program.set_liveness(self.stale_after_ns)
        for wire in self.wires:
            wire.ifindexes = (socket.if_nametoindex(wire.ports[0]), socket.if_nametoindex(wire.ports[1]))
            program.set_mode(wire.slot, wire.mode)
            program.set_port(wire.ifindexes[0], wire.ifindexes[1], wire.slot)
            program.set_port(wire.ifindexes[1], wire.ifindexes[0], wire.slot)
        for wire in open_wires:
            for name, ifindex in zip(wire.ports, wire.ifindexes):
                try:
                    wirebpf.add_clsact(ifindex)
                except OSError as exc:
                    way_out = {"flow bypass": "--no-bypass", "SYN flood protection": "--syn-limit-per-source off"}.get(
                        purpose, "--fail-mode closed"
                    )
                    raise FailModeError(
                        f"wire {wire.name}: {purpose} needs a tc clsact qdisc on {name}, and "
                        f"the kernel refused it ({exc.strerror}): use {way_out} or a "
                        "kernel with sch_clsact"
                    ) from None
        return program

    # ---- start: take the wires
    def start(self, engine: HeartbeatEngine) -> None:
        """Once the packet loop runs: point its heartbeat at the program, wait for its first turn, then take
        every wire (replace or remove what an earlier dataplane left), log the modes and watch for stalls."""
        self._started = True
        self._engine = engine
        if self.program is not None:
            engine.set_heartbeat_address(self.program.heartbeat_address())
        self._wait_first_turn(engine)
        try:
            wirebpf = _wirebpf()
        except ImportError as exc:
            log.warning(
                "cannot look for a fail-open program an earlier dataplane left on %s (%s)", ", ".join(self.ports), exc
            )
            wirebpf = None
        leftovers = self._find_leftovers(wirebpf) if wirebpf is not None else {}
        open_ports: set[str] = set()
        for wire in self.wires:
            if (wire.mode == "open" or self.bypass) and self._attach(wire):
                open_ports.update(wire.ports)
        for port in self.ports:
            if port in leftovers and port not in open_ports:
                try:
                    wirebpf.detach(socket.if_nametoindex(port))
                    log.warning(
                        "removed the fail-open program an earlier dataplane left on %s: it is closed while "
                        "no dataplane runs",
                        port,
                    )
                except OSError as exc:
                    log.error(
                        "cannot remove the fail-open program an earlier dataplane left on %s (%s): the kernel "
                        "may still forward its frames while no dataplane runs",
                        port,
                        exc,
                    )
        # a program whose counters cannot be read (the unit grants CAP_BPF, not CAP_SYS_ADMIN) may have
        # forwarded: its connections are picked up as if it had
        unreadable = any(program is None for program in leftovers.values())
        if self._read_leftovers(leftovers) or unreadable:
            self._pick_up_midstream(engine)
        for wire in self.wires:
            if wire.attached and wire.mode == "open":
                log.info(
                    "wire %s: fail mode open: the kernel forwards between %s and %s when the packet loop has "
                    "not turned for %d ms (tc program %s id %d)",
                    wire.name,
                    *wire.ports,
                    self.stale_after_ns // 1_000_000,
                    "ngfw_wire",
                    self.program.prog_id,
                )
            else:
                log.info("wire %s: fail mode closed: nothing passes while no dataplane runs", wire.name)
        if self.syn_limits:
            self._enable_admission(engine)
        if self.bypass:
            self._enable_bypass(engine)
        if self.program is not None:
            self._monitor = threading.Thread(target=self._watch, name="ngfw-failmode", daemon=True)
            self._monitor.start()

    def _enable_admission(self, engine: Any) -> None:
        """The ring filter on every wire's ring sockets: from now on SYNs over the limits stay out of the rings."""
        limits = self.syn_limits
        if limits is None:
            return
        indexes = [self.port_index[p] for wire in self.wires for p in wire.ports if p in self.port_index]
        try:
            engine.attach_ring_filter(self.program.ring_filter_fd(), indexes)
        except (OSError, ValueError) as exc:
            log.warning("SYN flood protection is off (%s): every SYN reaches the dataplane's rings", exc)
            self.syn_limits = None
            self.admission = None
            return
        log.info(
            "SYN flood protection on %s: %s; SYNs over it are dropped in the kernel, ahead of the packet loop",
            ", ".join(w.name for w in self.wires),
            limits.describe(),
        )

    def _enable_bypass(self, engine: Any) -> None:
        """The loop fills the program's bypass map for the wires that carry it; their ring sockets get the
        filter; then the programs start looking frames up."""
        ports: dict[int, tuple[int, int]] = {}
        for wire in self.wires:
            if not wire.attached:
                continue
            a, b = (self.port_index.get(p) for p in wire.ports)
            if a is None or b is None:
                continue
            ports[a] = (wire.ifindexes[0], b)
            ports[b] = (wire.ifindexes[1], a)
        if not ports:
            log.warning(
                "flow bypass is off: no wire carries the wire program; the dataplane forwards every flow itself"
            )
            self.bypass = False
            return
        try:
            map_fd, filter_fd = self.program.bypass_fds()
            engine.enable_bypass(map_fd, filter_fd, ports)
            self.program.set_bypass(True)
        except (OSError, ValueError) as exc:
            log.warning("flow bypass is off (%s); the dataplane forwards every flow itself", exc)
            self.bypass = False
            return
        log.info(
            "flow bypass on: the kernel forwards flows whose verdict is final on %s",
            ", ".join(w.name for w in self.wires if w.attached),
        )

    def _wait_first_turn(self, engine: HeartbeatEngine) -> None:
        deadline = time.monotonic() + FIRST_TURN_TIMEOUT
        while engine.progress_ns() == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        if engine.progress_ns() == 0:
            log.warning("the packet loop has not turned within %.0f s; taking the wires anyway", FIRST_TURN_TIMEOUT)

    def _find_leftovers(self, wirebpf: Any) -> dict[str, Any]:
        """Port -> the program our tc filter runs there now (None when it cannot be read)."""
        programs: dict[int, Any] = {}
        found: dict[str, Any] = {}
        for port in self.ports:
            try:
                prog_id = wirebpf.attached_program_id(socket.if_nametoindex(port))
            except OSError as exc:
                log.warning("cannot look for a fail-open program on %s (%s)", port, exc)
                continue
            if not prog_id:
                continue
            if prog_id not in programs:
                try:
                    programs[prog_id] = wirebpf.WireProgram.from_id(prog_id)
                except (OSError, LookupError) as exc:
                    why = "reading it needs CAP_SYS_ADMIN" if getattr(exc, "errno", None) == errno.EPERM else exc
                    log.warning(
                        "the tc filter an earlier dataplane left on %s runs BPF program %d, which cannot "
                        "be read (%s): it is replaced without its counters",
                        port,
                        prog_id,
                        why,
                    )
                    programs[prog_id] = None
            found[port] = programs[prog_id]
        return found

    def _attach(self, wire: _Wire) -> bool:
        try:
            for ifindex in wire.ifindexes:
                self.program.attach(ifindex)
        except OSError as exc:
            log.error(
                "wire %s: cannot attach the fail-open program (%s): the wire is closed while no dataplane runs",
                wire.name,
                exc,
            )
            return False
        wire.attached = True
        return True

    def _pick_up_midstream(self, engine: HeartbeatEngine) -> None:
        """The kernel forwarded while no packet loop ran: connections opened meanwhile are unknown here. For a
        while, their segments start flows that the policy decides (instead of being dropped mid-stream)."""
        engine.allow_midstream(MIDSTREAM_PICKUP_SECONDS)
        log.info(
            "TCP connections opened while a wire was open are picked up mid-stream for %d s, each decided "
            "by the policy",
            MIDSTREAM_PICKUP_SECONDS,
        )

    def _read_leftovers(self, leftovers: dict[str, Any]) -> int:
        """Log and carry over what the kernel forwarded under earlier programs (read after they were replaced
        or removed, so the count is final); returns the packets it forwarded."""
        read: set[tuple[int, int]] = set()
        forwarded = 0
        for wire in self.wires:
            for port, ifindex in zip(wire.ports, (socket.if_nametoindex(p) for p in wire.ports)):
                old = leftovers.get(port)
                if old is None:
                    continue
                where = old.port(ifindex)
                if where is None or (old.prog_id, where[1]) in read:
                    continue
                read.add((old.prog_id, where[1]))
                counters = old.wire(where[1])
                wire.carried_packets += counters["packets"]
                wire.carried_bytes += counters["bytes"]
                wire.carried_activations += counters["activations"]
                forwarded += counters["packets"]
                log.log(
                    logging.WARNING if counters["packets"] else logging.INFO,
                    "wire %s was open while no dataplane ran: %d packets forwarded by the kernel (%d bytes)",
                    wire.name,
                    counters["packets"],
                    counters["bytes"],
                )
        for old in {id(p): p for p in leftovers.values() if p is not None}.values():
            old.close()
        return forwarded

    # ---- running: stalls
    def _watch(self) -> None:
        while not self._stopping.wait(MONITOR_INTERVAL):
            try:
                self.check()
            except OSError as exc:
                log.warning("cannot read the fail-open counters (%s)", exc)
            if self.admission is not None:
                try:
                    self.admission.maybe_log()
                except OSError as exc:
                    log.warning("cannot read the SYN flood protection's counters (%s)", exc)

    def syn_stats(self) -> dict[str, Any]:
        """SYN flood protection for the metrics: on or off, its limits (SYN/s, 0: none), what it dropped."""
        limits = self.syn_limits
        out: dict[str, Any] = {
            "enabled": self.admission is not None,
            "per_source": limits.per_source.per_second if limits and limits.per_source else 0.0,
            "total": limits.total.per_second if limits and limits.total else 0.0,
            "seen": 0,
            "dropped_source": 0,
            "dropped_total": 0,
        }
        if self.admission is not None:
            try:
                out.update(self.admission.stats())
            except OSError as exc:
                log.debug("cannot read the SYN admission counters: %s", exc)
        return out

    def check(self) -> None:
        """Log a stall of the packet loop once when the kernel opened a wire for it, and once more when the
        loop took the wire back (a stopped process logs both together when it continues)."""
        program = self.program
        if program is None:
            return
        fresh = time.monotonic_ns() - program.heartbeat_ns <= self.stale_after_ns
        with self._lock:
            for wire in self.wires:
                if not wire.attached:
                    continue
                now = program.wire(wire.slot)
                if now["activations"] > wire.seen_activations and wire.stalled_since_packets is None:
                    wire.stalled_since_packets = wire.seen_packets
                    if not fresh:
                        log.warning(
                            "wire %s is open: the packet loop has not turned for %d ms, the kernel forwards "
                            "between %s and %s",
                            wire.name,
                            (time.monotonic_ns() - program.heartbeat_ns) // 1_000_000,
                            *wire.ports,
                        )
                if wire.stalled_since_packets is not None and fresh:
                    log.warning(
                        "wire %s was open while the packet loop stalled: %d packets forwarded by the kernel",
                        wire.name,
                        now["packets"] - wire.stalled_since_packets,
                    )
                    if now["packets"] > wire.stalled_since_packets and self._engine is not None:
                        self._pick_up_midstream(self._engine)
                    wire.stalled_since_packets = None
                wire.seen_activations = now["activations"]
                wire.seen_packets = now["packets"]

    # ---- running: interfaces that come and go (ngfw.dataplane.linkwatch)
    def interface_replaced(self, port: str, ifindex: int) -> None:
        """Port `port`'s interface was re-created as `ifindex`: the program forwards to and from the new one,
        and an open wire's program runs on it (the old filter went with the old interface). Called before the
        dataplane's ring moves to it, so a dataplane that dies meanwhile leaves the wire open."""
        for wire in self.wires:
            if port not in wire.ports:
                continue
            side = wire.ports.index(port)
            old, peer = wire.ifindexes[side], wire.ifindexes[1 - side]
            wire.ifindexes = (ifindex, peer) if side == 0 else (peer, ifindex)
            if self.bypass and self._engine is not None and port in self.port_index:
                self._engine.set_bypass_ifindex(self.port_index[port], ifindex)
            if self.program is None or old == ifindex:
                continue
            try:
                with self._lock:
                    if old:
                        self.program.forget_port(old)
                    self.program.set_port(ifindex, peer, wire.slot)
                    if peer:
                        self.program.set_port(peer, ifindex, wire.slot)
                    if wire.attached:
                        self.program.attach(ifindex)
            except OSError as exc:
                log.error(
                    "wire %s: cannot move the fail-open program to the new %s (%s): the wire is closed on "
                    "that side while no dataplane runs",
                    wire.name,
                    port,
                    exc,
                )
                continue
            if wire.attached:
                log.info("wire %s: fail-open program attached to the new %s (ifindex %d)", wire.name, port, ifindex)

    # ---- stop
    def stop(self, engine: HeartbeatEngine) -> None:
        """After the packet loop ended: open wires stay open (the program stays), closed ones closed."""
        if not self._started:
            return
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=2)
        if self.program is not None:
            engine.set_heartbeat_address(0)
        if self.bypass:
            # the kernel forwards nothing more for this dataplane's flows; a closed wire's program goes
            try:
                self.program.set_bypass(False)
            except OSError as exc:
                log.warning(
                    "cannot turn flow bypass off (%s): it stops %d ms after the loop's last turn",
                    exc,
                    self.stale_after_ns // 1_000_000,
                )
            wirebpf = _wirebpf()
            for wire in self.wires:
                if wire.attached and wire.mode != "open":
                    for ifindex in wire.ifindexes:
                        try:
                            wirebpf.detach(ifindex)
                        except OSError as exc:
                            log.warning("wire %s: cannot remove the wire program (%s)", wire.name, exc)
                    wire.attached = False
        for wire in self.wires:
            if wire.attached:
                log.warning(
                    "wire %s stays open: the kernel forwards between %s and %s until a dataplane takes the "
                    "wire back (fail mode open)",
                    wire.name,
                    *wire.ports,
                )
            else:
                log.info("wire %s is closed until a dataplane runs again (fail mode closed)", wire.name)
        # the program object stays referenced: its memory-mapped heartbeat must outlive any last store

    # ---- metrics
    def status(self) -> list[WireStatus]:
        out = []
        for wire in self.wires:
            packets, nbytes, activations = wire.carried_packets, wire.carried_bytes, wire.carried_activations
            if wire.mode == "open" and self.program is not None:
                try:
                    now = self.program.wire(wire.slot)
                except OSError:
                    now = {"packets": 0, "bytes": 0, "activations": 0}
                packets += now["packets"]
                nbytes += now["bytes"]
                activations += now["activations"]
            out.append(
                WireStatus(wire=wire.name, mode=wire.mode, packets=packets, bytes=nbytes, activations=activations)
            )
        return out


def _refusal(wire: str, exc: OSError, purpose: str = "fail mode open") -> str:
    way_out = {"flow bypass": "--no-bypass", "SYN flood protection": "--syn-limit-per-source off"}.get(
        purpose, "--fail-mode closed"
    )
    if exc.errno in (errno.EPERM, errno.EACCES):
        return (
            f"wire {wire}: {purpose} needs eBPF, and this process may not load BPF programs: run the "
            f"dataplane as root (or with CAP_BPF and CAP_NET_ADMIN) or use {way_out}"
        )
    return (
        f"wire {wire}: {purpose} needs eBPF, and this kernel refused the wire program "
        f"({exc.strerror or exc}): use {way_out} or a kernel with BPF and tc clsact"
    )
