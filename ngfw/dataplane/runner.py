"""The dataplane process: ports, the engine thread, policy (re)loads, EVE drain and metrics.

Python here runs beside the packet loop, never inside it: it builds tables, swaps them in,
drains the event ring every `drain_interval` and answers scrapes.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ngfw import __version__
from ngfw.compiler.tables import CompiledPolicy
from ngfw.dataplane.admission import SynLimits
from ngfw.dataplane.eve import EveWriter
from ngfw.dataplane.failmode import WireFailModes
from ngfw.dataplane.fastpath import engine_module
from ngfw.dataplane.ports import Link, PortError, disable_superframe_offloads, link_as_left, open_tap, prepare_link
from ngfw.dataplane.rulehits import FILE_NAME as RULE_HITS_FILE
from ngfw.dataplane.rulehits import RuleHits
from ngfw.dataplane.sessions import SessionTable
from ngfw.dataplane.state import SessionBatch, StateStore, TakeOver

log = logging.getLogger("ngfw.dataplane")

GENERATIONS_KEPT = 16  # names of older policy generations, for flows decided before a reload


@dataclass
class PortPlan:
    """Which ports to open and how they are joined into segments."""

    wires: list[tuple[str, str]] = field(default_factory=list)
    taps: list[str] = field(default_factory=list)
    segments: dict[str, list[str]] = field(default_factory=dict)  # name -> port names (TAPs or links)
    fail_modes: dict[tuple[str, str], str] = field(default_factory=dict)  # wire -> "closed" | "open" (failmode.py)

    def segment_list(self) -> list[list[str]]:
        """Ports of each segment, in order; TAPs named in no segment share one."""
        out: list[list[str]] = [list(pair) for pair in self.wires]
        placed = {p for pair in self.wires for p in pair}
        for name, ports in self.segments.items():
            for port in ports:
                if port in placed:
                    raise PortError(f"interface {port} is in two segments (segment {name})")
                placed.add(port)
            out.append(list(ports))
        loose = [t for t in self.taps if t not in placed]
        if loose:
            out.append(loose)
        for seg in out:
            if len(seg) < 2:
                raise PortError(f"segment of {seg[0]} has one port: a segment needs at least two")
        return out


@dataclass
class EveOptions:
    """Where EVE records go and what besides flows they report (`--eve`, `--eve-stats-interval`, `--capture-*`)."""

    targets: list[str] = field(default_factory=list)  # file paths or syslog://, unix:// targets (eve_outputs)
    stats_interval: float = 0.0  # seconds between `stats` records; 0: none
    capture_dir: str = "/var/log/ngfw/pcap"
    capture_file_bytes: int = 16 << 20
    capture_vsys_bytes: int = 256 << 20
    capture_ring_bytes: int = 4 << 20


class Dataplane:
    def __init__(
        self,
        plan: PortPlan,
        policy_path: str | None = None,
        eve_path: str | None = None,
        flow_capacity: int = 262144,
        timeouts: dict[str, float] | None = None,
        drain_interval: float = 0.1,
        idle_spin_us: float = 200.0,
        idle_spin_quiet_us: float = 20000.0,
        appid: dict[str, int] | None = None,
        tx_thread: bool = True,
        inspect_flows: int | None = None,
        state_dir: str | None = None,
        host: str | None = None,
        max_workload_loss: float = 0.5,
        signature_cache: str | None = None,
        eve_options: EveOptions | None = None,
        bypass: bool = True,
        syn_limits: SynLimits | None = None,
        workers: int = 1,
    ) -> None:
        """`state_dir`: a tmpfs directory where the flow table lives, so a restarted dataplane continues its
        sessions (ngfw.dataplane.state); None: the heap (sessions end with the process). `signature_cache`:
        where signature sets named by SignatureSet resources are kept (default: the cache directory's
        signature-sets/). `workers`: packet loops (ngfw.dataplane.workers); 1 is a single Engine, no fanout."""
        from ngfw.dataplane.workers import check_workers

        check_workers(workers, plan.taps, plan.segments)  # one sentence before anything is opened
        if workers > (os.cpu_count() or 1):
            log.warning("--workers %d on %d CPUs: packet loops will share cores", workers, os.cpu_count() or 1)
        self.workers = workers
        fp = engine_module()
        self.fp = fp
        from ngfw.dataplane.capture import CaptureWriter

        self.eve_options = eve_options or EveOptions()
        if eve_path and eve_path not in self.eve_options.targets:
            self.eve_options.targets.insert(0, eve_path)
        if self.eve_options.stats_interval < 0:
            raise ValueError(f"--eve-stats-interval {self.eve_options.stats_interval}: give 0 (none) or more seconds")
        from ngfw.dataplane.eve_outputs import parse_target

        for target in self.eve_options.targets:
            parse_target(target)  # EveTargetError (a ValueError) before anything is set up
        # checked before anything is opened: a bad size is one sentence, not a half-started dataplane
        self.capture = CaptureWriter(
            self.eve_options.capture_dir, self.eve_options.capture_file_bytes, self.eve_options.capture_vsys_bytes
        )
        self.state: StateStore | None = None  # the state directory (its lock, the rule hits; one loop's table)
        self.stores: list[StateStore] = []  # where each packet loop's table lives: the directory, or worker-K/
        self.take_overs: list[TakeOver] | None = None  # what the last process left, per loop, until a policy
        self.sessions_continued: dict[str, int] = {}  # result -> flows, of the take-over at start
        self.arrival_listeners: list[Any] = []  # (vsys, workload, time) callbacks (ngfw.dataplane.migration)
        self.max_workload_loss = max_workload_loss  # a policy file reload losing a larger share is refused
        self.migration_agent: Any = None  # ngfw.dataplane.migration.MigrationAgent with --control
        self._names_written: list[str] | None = None
        state_memories: list[Any] = [None] * workers
        if state_dir:
            from ngfw.dataplane.workers import worker_state_stores

            self.state = StateStore(state_dir, host)
            # with N workers each has its table (and snapshot) in worker-K/; state of another worker count is
            # set aside (its flows would be on the wrong workers)
            self.stores = worker_state_stores(self.state, workers, host)
            per_loop = -(-flow_capacity // workers)
            inspect_per_loop = per_loop if inspect_flows is None else max(1, -(-inspect_flows // workers))
            layout = fp.state_layout(per_loop, inspect_per_loop)
            self.take_overs = []
            for k, store in enumerate(self.stores):
                take = store.find_previous(layout["fingerprint"], fp.record_format())
                for problem in take.refused:
                    log.warning("session state set aside, starting without it: %s", problem)
                self.take_overs.append(take)
                state_memories[k] = store.create_table(layout, [p for seg in plan.segment_list() for p in seg])
        self.engine: Any
        if workers > 1:
            from ngfw.dataplane.workers import EngineGroup

            self.engine = EngineGroup(
                fp,
                workers,
                flow_capacity,
                inspect_flows,
                timeouts=timeouts or {},
                idle_spin_us=idle_spin_us,
                idle_spin_quiet_us=idle_spin_quiet_us,
                capture_bytes=self.eve_options.capture_ring_bytes,
                states=state_memories,
                **(appid or {}),
            )
        else:
            self.engine = fp.Engine(
                flow_capacity=flow_capacity,
                timeouts=timeouts or {},
                idle_spin_us=idle_spin_us,
                idle_spin_quiet_us=idle_spin_quiet_us,
                inspect_slots=inspect_flows,
                state=state_memories[0],
                capture_bytes=self.eve_options.capture_ring_bytes,
                **(appid or {}),
            )
        self.signatures: Any = None  # threats.SignatureSets in force
        self.signature_sources: list[tuple[str, str]] = []
        self.local_signature_sources: list[tuple[str, str]] = []  # --rules
        self.bundle_signature_sets: tuple[tuple[str, str], ...] = ()  # (name, sha256) of SignatureSet resources
        self._signature_hashes: dict[str, str] = {}
        from ngfw.compiler.signature_archive import SignatureCache
        from ngfw.dataplane.threats import default_signature_cache

        self.signature_cache = SignatureCache(signature_cache or default_signature_cache())
        self.signature_variables: dict[str, str] = {}
        self.signature_digest = ""
        self.rules_reloads_ok = 0
        self.rules_reloads_failed = 0
        self.plan = plan
        self.tx_thread = tx_thread  # under load, flush TX rings from a second thread (run_loop, run_tx_loop)
        self._tx_threads: list[threading.Thread] = []
        self.policy_path = policy_path
        self.policy: CompiledPolicy | None = None
        self.generations: OrderedDict[int, CompiledPolicy] = OrderedDict()  # table generation -> policy
        self._last_generation = 0
        # rule hits by name with first/last hit, kept across reloads and (in the state directory) restarts
        self.rule_hit_book = RuleHits(os.path.join(state_dir, RULE_HITS_FILE) if state_dir else None)
        self._hits_read = 0.0
        self.apps_folded: dict[tuple[str, str], int] = {}
        self.version = 0
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.last_load_seconds = 0.0
        self.last_load_time = 0.0
        self.drain_interval = drain_interval
        self.eve = (
            EveWriter(self.eve_options.targets, host, capture_file_of=self.capture.file_of)
            if self.eve_options.targets
            else None
        )
        self._started_at = time.monotonic()
        self._next_stats = self._started_at + self.eve_options.stats_interval
        self.tap_fds: dict[str, int] = {}  # TAP port -> its descriptor (the link watch replaces re-created ones)
        self.port_links: dict[str, Link] = {}  # the interface each port was opened on
        self.link_watch: Any = None  # ngfw.dataplane.linkwatch.LinkWatch, while running
        self._loop_threads: list[threading.Thread] = []
        self._drain_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # one table build at a time: SIGHUP's re-apply and the control agent's apply must not interleave,
        # or the one that finishes last (possibly the older policy) would stay in force
        self._swap_lock = threading.RLock()
        self.policy_source_digest: str | None = None  # of the --policy files last loaded
        self._last_full_warning = 0.0
        self._last_insert_failures = 0
        self.port_index: dict[str, int] = {}
        self.host = host or ""
        # `ngfw sessions` (sessions.py). A weak reference back: a cycle would leave the engine to the garbage
        # collector, which may free it after the state file's mapping it lives in is gone
        this = weakref.ref(self)
        from ngfw.dataplane.userid import UserMap

        self.users = UserMap(fp, self.engine.set_users)  # User-ID: who is behind each address
        self._users_expired_at = 0.0
        self.sessions = SessionTable(
            self.engine,
            lambda: dp.policies() if (dp := this()) is not None else {},
            self.host,
            user_name=self.users.name_of,
        )
        self._links_to_check: list[str] = []
        try:
            self._open_ports()
            # refuses `open` here, before anything runs, where BPF is not allowed
            self.fail_modes = WireFailModes(
                plan.wires,
                plan.fail_modes,
                list(self.port_index),
                bypass=bypass,
                port_index=dict(self.port_index),
                syn_limits=SynLimits() if syn_limits is None else syn_limits,
            )
        except BaseException:
            # what the last process left stays for the next attempt
            for store in self.stores:
                if store is not self.state:
                    store.discard_table()
            if self.state is not None:
                self.state.discard_table()
            raise

    # ---- ports
    def _open_ports(self) -> None:
        taps = set(self.plan.taps)
        wire_uplinks = {b for _, b in self.plan.wires}
        for seg_no, ports in enumerate(self.plan.segment_list()):
            for name in ports:
                if name in self.port_index:
                    raise PortError(f"interface {name} is given twice")
                if name in taps:
                    fd, link = open_tap(name)
                    self.tap_fds[name] = fd
                    index = self.engine.add_tap_port(name, fd, link.mtu, seg_no)
                else:
                    # as the last dataplane left it (a restart): open the ring now, check offloads once
                    # forwarding (check_links); else set it up with pyroute2 first
                    left = link_as_left(name)
                    if left is None:
                        link = prepare_link(name)
                    else:
                        link = left
                        self._links_to_check.append(name)
                    try:
                        index = self.engine.add_ring_port(name, link.ifindex, link.mtu, seg_no)
                    except PermissionError:
                        raise PortError(
                            f"no permission to open a packet socket on {name}: run the dataplane as "
                            "root (or with CAP_NET_RAW)"
                        ) from None
                    except OSError as exc:
                        raise PortError(str(exc)) from None
                self.port_index[name] = index
                self.port_links[name] = link
                # a wire's first interface faces the workloads (its second the uplink); TAPs and segment
                # ports are workloads' own: a workload's first frame there is an arrival (it may have moved)
                self.engine.set_port_vm_side(index, name not in wire_uplinks)
                log.info("port %s: segment %d, MTU %d", name, seg_no, link.mtu)

    # ---- threat signatures
    def load_signatures(
        self, sources: list[tuple[str, str]], variables: dict[str, str] | None = None, strict: bool = False
    ) -> bool:
        """The `--rules` sets: compiled off the hot path (with the sets the policy's SignatureSets name), in
        force with the next `load`. False when nothing changed. Raises RulesError (the running set stays)."""
        self.local_signature_sources = list(sources)
        return self._compile_signatures(variables, strict)

    def _use_bundle_sets(self, sets: tuple[tuple[str, str], ...]) -> None:
        """The signature sets a policy's SignatureSet resources name, from the cache (where the agent put them,
        verified): compiled with the --rules sets, strictly (a set with malformed rules is refused). A name
        given to --rules too is the policy's from then on. RulesError keeps the running sets."""
        from ngfw.dataplane.threats import RulesError

        if sets == self.bundle_signature_sets:
            return
        for name, digest in sets:
            if not self.signature_cache.has(digest):
                raise RulesError(
                    f"signature set {name} (sha256 {digest}) is not in {self.signature_cache.directory} "
                    "(with --control the agent fetches it; else push it to control, or copy it there)"
                )
        previous = self.bundle_signature_sets
        self.bundle_signature_sets = sets
        try:
            self._compile_signatures(self.signature_variables, strict=True)
        except RulesError:
            self.bundle_signature_sets = previous
            raise

    def _compile_signatures(self, variables: dict[str, str] | None, strict: bool) -> bool:
        from ngfw.compiler.catalogue import load_catalogue
        from ngfw.dataplane.threats import load_signature_sets, set_hashes, sources_digest

        bundle_names = {name for name, _ in self.bundle_signature_sets}
        for name, path in self.local_signature_sources:
            if name in bundle_names:
                log.warning(
                    "signature set %s: --rules %s is replaced by the policy's SignatureSet %s", name, path, name
                )
        sources = [(n, p) for n, p in self.local_signature_sources if n not in bundle_names] + [
            (name, str(self.signature_cache.files_of(digest))) for name, digest in self.bundle_signature_sets
        ]
        if not sources:
            self.signatures, self.signature_sources, self._signature_hashes = None, [], {}
            return True

        digest = sources_digest(sources, variables or {})
        if self.signatures is not None and digest == self.signature_digest:
            return False
        catalogue = self.policy.catalogue if self.policy is not None else load_catalogue()
        signatures = load_signature_sets(sources, variables, catalogue, strict=strict)
        self.signatures = signatures
        self.signature_sources = list(sources)
        self.signature_variables = dict(variables or {})
        self.signature_digest = digest
        self._signature_hashes = set_hashes(sources, dict(self.bundle_signature_sets))
        log.info("signatures: %s", signatures.summary())
        for line in signatures.malformed[:20]:
            log.warning("rule skipped: %s", line)
        return True

    def reload_signatures(self) -> bool:
        """SIGHUP: recompile changed rule files; a set with malformed rules is refused, the running one stays.
        True when a new rule set was compiled (it takes effect with the next table build)."""
        from ngfw.dataplane.threats import RulesError

        if not self.signature_sources:
            return False
        try:
            if self._compile_signatures(self.signature_variables, strict=True):
                self.rules_reloads_ok += 1
                return True
        except RulesError as exc:
            self.rules_reloads_failed += 1
            log.error("signature reload refused, the running rule set stays: %s", exc)
        return False

    def signature_hashes(self) -> dict[str, str]:
        """{set name: sha256 of its rule files' archive} of the sets in force: the same files give the same hash
        on every host (ngfw.compiler.signature_archive), so `ngfw status` shows who runs what."""
        return dict(self._signature_hashes)

    # ---- policy
    def load(self, policy: CompiledPolicy) -> None:
        """Build tables for `policy` off the hot path and swap them in atomically (after compiling the
        signature sets its SignatureSets name, when they changed)."""
        self._use_bundle_sets(tuple(policy.signature_sets))
        self._swap(policy, identity_only=False)

    def apply_identity(self, policy: CompiledPolicy) -> None:
        """Workloads changed, rules did not (`ngfw.compiler.identity`): new identity tables (workload maps,
        group bitmaps, candidate lists) that share the running generation's App-ID tables, swapped in
        atomically; flows are decided again on their next packet, as after a reload."""
        self._swap(policy, identity_only=True)

    def reapply(self) -> None:
        """Build the running policy's tables again (new signatures), without compiling the policy again."""
        with self._swap_lock:
            if self.policy is not None:
                self._swap(self.policy, identity_only=False)

    def _swap(self, policy: CompiledPolicy, identity_only: bool) -> None:
        with self._swap_lock:
            self._swap_locked(policy, identity_only)

    def _swap_locked(self, policy: CompiledPolicy, identity_only: bool) -> None:
        started = time.perf_counter()
        inspect = self.signatures.inspect if self.signatures is not None else None
        with self._lock:
            # a generation number per table set, not per version: an identity update keeps the version,
            # and flows must still be decided again (and their workload indexes named by the right tables)
            generation = self._last_generation + 1 if identity_only else max(policy.version, self._last_generation + 1)
            running = self.engine.tables if identity_only else None
        if self.workers > 1:  # one Tables per worker (own counters and scratch), read as one (workers.py)
            tables = self.engine.build_tables(policy, self.port_index, inspect, generation, running)
        else:
            tables = self.fp.Tables(policy, self.port_index, inspect, generation=generation, apps_from=running)
        with self._lock:
            old = self.engine.tables
            self.engine.set_tables(tables)
            if old is not None:
                self._fold_hits(old)
            self.rule_hit_book.observe(tables)  # the rules in force now (a deleted rule's series goes)
            self.policy = policy
            self._last_generation = generation
            self.generations[generation] = policy
            while len(self.generations) > GENERATIONS_KEPT:
                self.generations.popitem(last=False)
        self.users.set_owners(policy)  # workloads' spec.owner: their addresses are their owners'
        if self.stores and tables.app_names != self._names_written:
            for store in self.stores:
                store.write_names(list(tables.app_names))
            self._names_written = list(tables.app_names)
        if self.take_overs is not None:
            self._continue_sessions()
        self.last_load_seconds = time.perf_counter() - started
        self.last_load_time = time.time()
        self.reloads_ok += 1

    def _continue_sessions(self) -> None:
        """With the first policy in force: the last process's sessions, each decided again by it."""
        from ngfw.dataplane.workers import engines_of

        takes, self.take_overs = self.take_overs, None
        assert takes is not None
        started = time.perf_counter()
        results: dict[str, int] = {}
        sources: list[str] = []
        # each loop continues its own table: the same worker count, so the same flows hash to it
        for store, take, loop in zip(self.stores, takes, engines_of(self.engine), strict=True):
            result: dict[str, Any] | None = None
            source = ""
            try:
                if take.snapshot is not None:
                    source = f"snapshot {store.snapshot_path}"
                    result = loop.import_sessions(take.snapshot.records, take.snapshot.apps)
                elif take.table is not None:
                    source = f"table {store.table_path}"
                    result = loop.adopt_sessions(take.table.memory, take.table.layout, take.table.apps)
            except (RuntimeError, ValueError, TimeoutError, MemoryError) as exc:
                log.error("sessions of the previous dataplane not continued (%s): %s", source, exc)
            finally:
                if take.table is not None:
                    take.table.close()
            store.commit_table()
            if result is not None:
                sources.append(source)
                for key, n in result["results"].items():
                    results[key] = results.get(key, 0) + n
        if sources:
            self.sessions_continued = results
            log.info(
                "sessions of the previous dataplane continued from its %s in %.3f s: %s",
                ", ".join(sources),
                time.perf_counter() - started,
                ", ".join(f"{n} {k}" for k, n in sorted(results.items())) or "none",
            )

    def load_file(self) -> CompiledPolicy:
        """Load, validate and compile the policy file; raises PolicyError and keeps the running policy."""
        # compiled once, then from the cache: a restart enforces without importing pydantic
        from ngfw.compiler.policy_cache import load_policy_cached

        assert self.policy_path is not None
        started = time.perf_counter()
        source = self._policy_source_digest()
        try:
            policy = load_policy_cached(self.policy_path, version=self.version + 1)
            self._check_workload_loss(policy)
        except Exception:
            self.reloads_failed += 1
            raise
        self.version = policy.version
        self.load(policy)
        self.policy_source_digest = source
        self.last_load_seconds = time.perf_counter() - started
        return policy

    def _check_workload_loss(self, policy: CompiledPolicy) -> None:
        """A reload that would stop enforcing most workloads' policy is more likely a half-written file or a
        wrong directory than an intent: refused beyond `max_workload_loss` of the running ones."""
        from ngfw.model.errors import PolicyError

        if self.policy is None or not self.policy.workloads:
            return
        running = {(self.policy.vsys_name(w.vsys), w.name) for w in self.policy.workloads}
        kept = {(policy.vsys_name(w.vsys), w.name) for w in policy.workloads}
        lost = sorted(running - kept)
        share = len(lost) / len(running)
        if share > self.max_workload_loss:
            names = ", ".join(f"{v}/{n}" for v, n in lost[:5]) + (", ..." if len(lost) > 5 else "")
            raise PolicyError(
                [
                    f"{self.policy_path}: the new policy drops {len(lost)} of the {len(running)} running "
                    f"workloads ({share:.0%}, more than --max-workload-loss {self.max_workload_loss:.0%}): "
                    f"{names}; start the dataplane with a higher --max-workload-loss to accept it"
                ]
            )

    def _policy_source_digest(self) -> str | None:
        """sha256 of the --policy files' names and bytes; None when they cannot be read."""
        import hashlib
        from pathlib import Path

        from ngfw.model.files import NoPolicyFiles, policy_files  # not the models: no pydantic at start

        assert self.policy_path is not None
        h = hashlib.sha256()
        try:
            for file in policy_files(Path(self.policy_path)):
                h.update(str(file).encode() + b"\0" + file.read_bytes() + b"\0")
        except (OSError, NoPolicyFiles):
            return None
        return h.hexdigest()

    def reload(self) -> bool:
        """SIGHUP: reopen the EVE file (log rotation), then rebuild only what changed: changed rule files are
        recompiled, a changed policy file is loaded again (a bad one is refused and the running one stays),
        and the tables are rebuilt only if either changed. In --control mode the policy is control's: only
        the rule files are looked at."""
        if self.eve is not None:
            self.eve.reopen()
        rules_changed = self.reload_signatures()
        policy_changed = bool(self.policy_path) and self._policy_source_digest() != self.policy_source_digest
        if policy_changed:
            try:
                policy = self.load_file()
            except Exception as exc:  # noqa: BLE001 - every failure keeps the running policy
                log.error(
                    "policy reload refused, version %s stays in force: %s",
                    self.policy.version if self.policy else "none",
                    exc,
                )
                return False
            log.info(
                "policy version %d loaded from %s: %d workloads, %d rules",
                policy.version,
                self.policy_path,
                len(policy.workloads),
                len(policy.rules),
            )
        elif rules_changed:
            self.reapply()
            log.info(
                "reload: rule files changed; policy version %s kept, its tables rebuilt",
                self.policy.version if self.policy else "none",
            )
        else:
            log.info("reload: EVE file reopened; policy and rule files unchanged, nothing recompiled")
        return True

    def status_line(self) -> str:
        """What `systemctl status` shows next to the unit: the policy in force and the ports."""
        if self.policy is None:
            return f"no policy yet: dropping every frame on {', '.join(self.port_index)}"
        return (
            f"enforcing policy version {self.policy.version} ({len(self.policy.rules)} rules) on "
            f"{', '.join(self.port_index)}"
        )

    def _fold_hits(self, tables: Any) -> None:
        """Keep rule hit and app counters monotonic across generations (labels are names, not indexes)."""
        self.rule_hit_book.observe(tables)  # its last counts, before the next generation's start at 0
        for key, value in self._apps_of(tables).items():
            self.apps_folded[key] = self.apps_folded.get(key, 0) + value

    @staticmethod
    def _apps_of(tables: Any) -> dict[tuple[str, str], int]:
        policy: CompiledPolicy = tables.policy
        return {(policy.vsys_name(v), app): n for (v, app), n in tables.app_flows().items()}

    def app_flows(self) -> dict[tuple[str, str], int]:
        """Flows identified per (vsys, app) since the dataplane started."""
        with self._lock:
            out = dict(self.apps_folded)
            if self.engine.tables is not None:
                for key, value in self._apps_of(self.engine.tables).items():
                    out[key] = out.get(key, 0) + value
        return out

    def read_rule_hits(self) -> None:
        """Bring the rule hit book up to date with the counters of the tables in force."""
        with self._lock:
            if self.engine.tables is not None:
                self.rule_hit_book.observe(self.engine.tables)
            self._hits_read = time.monotonic()

    def rule_hits(self) -> dict[tuple[str, str], int]:
        """Hits of the rules in force, by (vsys, rule): counted across reloads and restarts (rulehits.py)."""
        self.read_rule_hits()
        return self.rule_hit_book.totals()

    def policies(self) -> dict[int, CompiledPolicy]:
        """The policy of each table generation flows may still be decided by (oldest first)."""
        with self._lock:
            return dict(self.generations)

    def policy_for(self, generation: int) -> CompiledPolicy | None:
        return self.generations.get(generation)

    def build_info(self) -> dict[str, str]:
        return {"version": __version__, "fastpath": "compiled", **{k: str(v) for k, v in self.fp.BUILD_INFO.items()}}

    # ---- running
    def start(self) -> None:
        self.start_forwarding()
        self.start_watching()

    def start_forwarding(self) -> None:
        """The packet loop and the wires: from its return the policy is enforced."""
        from ngfw.dataplane.workers import engines_of

        loops = engines_of(self.engine)
        for k, loop in enumerate(loops):
            # one worker keeps the names it always had; workers are ngfw-fp0, ngfw-fp1, ... (and ngfw-tx0, ...)
            suffix = str(k) if len(loops) > 1 else ""
            if self.tx_thread:
                loop.use_tx_thread()
                thread = _named_thread(f"ngfw-tx{suffix}", loop.run_tx)
                thread.start()
                self._tx_threads.append(thread)
            thread = _named_thread(f"ngfw-fp{suffix}" if suffix else "ngfw-fastpath", loop.run)
            thread.start()
            self._loop_threads.append(thread)
        self._drain_thread = _named_thread("ngfw-events", self._drain_forever)
        self._drain_thread.start()
        self.fail_modes.start(self.engine)  # after the loop's first turn: take the wires
        log.info(
            "forwarding on %s%s",
            ", ".join(self.port_index),
            f" with {self.workers} workers" if self.workers > 1 else "",
        )

    def start_watching(self) -> None:
        """After start_forwarding: follow the ports' links (netlink) and check the offloads of links an earlier
        dataplane set up -- a few hundred milliseconds of imports and netlink that traffic need not wait for."""
        self._start_link_watch()
        for name in self._links_to_check:  # set up by an earlier dataplane: offloads may have changed since
            disable_superframe_offloads(name)
        self._links_to_check.clear()

    # ---- links that come and go (ngfw.dataplane.linkwatch)
    def _start_link_watch(self) -> None:
        from ngfw.dataplane.linkwatch import LinkWatch

        self.link_watch = LinkWatch(
            self.engine, self.port_index, self.port_links, set(self.plan.taps), self.tap_fds, self.fail_modes
        )
        self.link_watch.start()

    def _stop_link_watch(self) -> None:
        if self.link_watch is not None:
            self.link_watch.stop()  # kept: its counts stay readable

    def port_events(self) -> dict[tuple[str, str], int]:
        """(port, event) -> times it happened: down, up, removed, reattached (ngfw.dataplane.links)."""
        return self.link_watch.events() if self.link_watch is not None else {}

    def _drain_forever(self) -> None:
        while not self._stopping.wait(self.drain_interval):
            try:
                self.drain()
            except Exception:  # noqa: BLE001 - a bad event must not stop the logging of every later one
                log.exception("event drain failed; it goes on")

    def drain(self) -> None:
        if time.monotonic() - self._users_expired_at >= 1.0:
            self._users_expired_at = time.monotonic()
            self.users.expire()
        # frames first: a flow's record names the capture file its frames went to
        while frames := self.engine.drain_captures():
            self.capture.add(frames, self._vsys_name)
        events = self.engine.drain_events()
        while events:
            for event in events:
                if event.get("user"):
                    event["user_name"] = self.users.name_of(event["user"])
            arrivals = [e for e in events if e["event"] == "arrival"]
            if arrivals:
                events = [e for e in events if e["event"] != "arrival"]
                self._on_arrivals(arrivals)
            if self.eve is not None and events:
                self.eve.write_events(events, self.policy_for)
            events = self.engine.drain_events()
        if time.monotonic() - self._hits_read >= 1.0:
            # a counter that moved is a hit at this second (first/last hit, rulehits.py)
            self.read_rule_hits()
            self.rule_hit_book.save_if_due()
        failures = self.engine.stats()["flow_insert_failures"]
        if failures > self._last_insert_failures and time.monotonic() - self._last_full_warning >= 1.0:
            log.warning("flow table full (%d flows): %d new flows dropped so far", self.engine.flow_capacity, failures)
            self._last_full_warning = time.monotonic()
            self._last_insert_failures = failures
        if self.eve is not None and self.eve_options.stats_interval > 0 and time.monotonic() >= self._next_stats:
            self._next_stats = time.monotonic() + self.eve_options.stats_interval
            self.eve.write_record(self.stats_record())

    def stats_record(self) -> dict[str, Any]:
        """Suricata's `stats` event from the dataplane's counters."""
        from ngfw.dataplane.eve import stats_record

        app_flows: dict[str, int] = {}
        for (_, app), n in self.app_flows().items():
            app_flows[app] = app_flows.get(app, 0) + n
        extra: dict[str, Any] = {
            "app_layer": {"flow": app_flows},
            "capture_files": self.capture.counters(),
            "policy": {"version": self.policy.version if self.policy else 0},
        }
        if self.eve is not None:
            extra["eve"] = {"outputs": self.eve.counters()}
        return stats_record(self.engine.stats(), time.monotonic() - self._started_at, extra)

    def capture_on_demand(self, seconds: float, packets: int = 100, **match: Any) -> None:
        """`ngfw sessions capture`: flows matching `match` (vm, network, port, proto) write their next `packets`
        frames to the capture files for `seconds` (ngfw.dataplane.capture.request_capture)."""
        from ngfw.dataplane.capture import request_capture

        request_capture(self.engine, self.policy, seconds, packets, **match)

    def _vsys_name(self, vsys: int, generation: int) -> str:
        policy = self.policy_for(generation) or self.policy
        return (policy.vsys_name(vsys) if policy is not None else "") or ""

    def _on_arrivals(self, arrivals: list[dict[str, Any]]) -> None:
        """Workloads first seen on this dataplane's VM side (they may have moved here): the migration agent,
        when there is one, asks control for their sessions."""
        for event in arrivals:
            policy = self.policy_for(event["generation"])
            name = policy.workload_name(event["workload"]) if policy is not None else ""
            vsys = policy.vsys_name(policy.workloads[event["workload"]].vsys) if policy is not None and name else ""
            if name:
                log.debug("workload %s/%s seen on %s", vsys, name, event["in_port"])
                for listener in self.arrival_listeners:
                    listener(vsys, name, event["time"])

    def _save_sessions(self) -> None:
        """A graceful stop with a state directory: every flow (with its inspection streams) for the next
        process, which continues them; none is logged as ended."""
        from ngfw.dataplane.workers import engines_of

        if self.take_overs is not None:
            return  # never had a policy: what the last process left is still there to continue
        tables = self.engine.tables
        for store, loop in zip(self.stores, engines_of(self.engine), strict=True):
            out = loop.export_sessions(streams=True)
            batch = SessionBatch(
                records=out["records"],
                apps=list(tables.app_names) if tables is not None else [],
                record_format=self.fp.record_format(),
                count=out["count"],
                meta={"kind": "snapshot"},
            )
            try:
                store.write_snapshot(batch)
                log.info("%d sessions saved for the next dataplane in %s", out["count"], store.snapshot_path)
            except OSError as exc:
                log.error(
                    "sessions not saved in %s (%s): the next dataplane continues from the table",
                    store.snapshot_path,
                    exc,
                )

    def stop(self) -> None:
        """Stop the loop; save every flow for the next process (with a state directory) or log it as ended by
        shutdown; close ports and logs."""
        self._stop_link_watch()
        self._stopping.set()
        self.engine.stop()
        for thread in self._loop_threads + self._tx_threads:
            thread.join(timeout=5)
        if self._drain_thread is not None:
            self._drain_thread.join(timeout=5)
        self.fail_modes.stop(self.engine)
        self.drain()
        self.read_rule_hits()
        self.rule_hit_book.save()
        if self.state is not None:
            self._save_sessions()
        else:
            self.engine.end_all_flows()
            self.drain()
        if self.eve is not None:
            self.eve.close()
        self.capture.close()
        for fd in self.tap_fds.values():
            os.close(fd)
        self.tap_fds.clear()


def _named_thread(name: str, body: Any) -> threading.Thread:
    """A daemon thread that also carries `name` in the kernel (`top -H`, `ps -L`, /proc/PID/task/*/comm),
    so an operator (or a test) can tell the packet loop from the threads around it."""

    def run() -> None:
        try:
            with open(f"/proc/self/task/{threading.get_native_id()}/comm", "w") as comm:
                comm.write(name[:15])
        except OSError:
            pass
        body()

    return threading.Thread(target=run, name=name, daemon=True)


def serve(dp: Dataplane, metrics_addr: tuple[str, int] | None, sessions_socket: str | None = None) -> int:
    """Run until SIGINT/SIGTERM; SIGHUP reloads the policy. `sessions_socket`: serve `ngfw sessions` and
    `ngfw policy hits` there (ngfw.dataplane.opsocket). Returns the exit status."""
    from ngfw import systemd

    wake = threading.Event()
    wanted = {"reload": False, "stop": False}

    def on_hup(signum: int, frame: Any) -> None:
        wanted["reload"] = True
        wake.set()

    def on_stop(signum: int, frame: Any) -> None:
        wanted["stop"] = True
        wake.set()

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    # forwarding first: after a restart, every millisecond before the loop runs is traffic held up
    dp.start_forwarding()
    # systemd (Type=notify): READY once a policy is enforced -- now, if the loop started with one; the
    # watchdog is fed while the packet loop turns
    ready = False
    if dp.policy is not None:
        systemd.notify("READY=1", f"STATUS={dp.status_line()}")
        ready = True
    dp.start_watching()
    watchdog = systemd.Watchdog.for_unit(dp.engine.progress_ns)
    if watchdog is not None:
        watchdog.start()
    operations = None
    try:
        if sessions_socket:
            from ngfw.dataplane.opsocket import OperationsSocket, SocketError

            operations = OperationsSocket(dp, sessions_socket)
            try:
                operations.start()
            except SocketError as exc:
                operations = None
                log.error("%s: stopping", exc)
                return 1
        if metrics_addr is not None:
            from prometheus_client import CollectorRegistry, start_http_server

            from ngfw.dataplane.metrics import DataplaneCollector

            registry = CollectorRegistry()
            registry.register(DataplaneCollector(dp))
            start_http_server(metrics_addr[1], addr=metrics_addr[0], registry=registry)
            log.info("metrics on http://%s:%d/metrics", *metrics_addr)
        while not wanted["stop"]:
            if not ready and dp.policy is not None:
                systemd.notify("READY=1", f"STATUS={dp.status_line()}")
                ready = True
            wake.wait(1.0)
            wake.clear()
            if wanted["reload"]:
                wanted["reload"] = False
                systemd.notify("RELOADING=1", "STATUS=reloading")
                dp.reload()
                ready = False  # READY=1 again, with the new status, at the top of the loop
    finally:
        systemd.notify("STOPPING=1", "STATUS=stopping: logging open flows")
        if watchdog is not None:
            watchdog.stop()
        if operations is not None:
            operations.stop()
        dp.stop()
    return 0
