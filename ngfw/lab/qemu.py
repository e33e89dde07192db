"""A small QEMU driver for the lab: guests in a network namespace, NICs on TAPs in a bridge, QMP, migration.

```python
from ngfw.lab.qemu import Drive, Guest, GuestSpec, Nic, cleanup, select_accelerator

accel = select_accelerator(kernel, initrd, marker=rb"ngfw-guest: ready", append=cmdline)  # "kvm" | "tcg"
spec = GuestSpec(
    name="fw.host-a",                        # instance name: its files in run_dir are fw.host-a.*
    netns="ngfw-host",                       # QEMU runs here; the TAPs are made here (None: our own)
    kernel=kernel, initrd=initrd, append="console=ttyS0 ...",  # or disk=Path("fw.qcow2"), disk_format="qcow2",
    drives=(Drive(Path("seed.iso"), readonly=True),),          #    and more disks (a cloud-init seed)
    nics=(Nic("02:00:00:00:00:a1", bridge="br-vm", tap="fw-vm"),
          Nic("02:00:00:00:00:a2", bridge="br-up", tap="fw-up")),
    memory_mb=512, cpus=1, serial_sockets=("agent",))  # ttyS0: console; ttyS1: "agent"; ...
guest = Guest.start(spec, run_dir=Path("/run/ngfw-lab/ngfw.qemu"), accel=accel)
guest.wait_console("login:", timeout=60)     # ttyS0's output is also kept in run_dir/NAME.console.log
with guest.qmp() as qmp:                     # a fresh QMP session (one client at a time)
    qmp.execute("query-status")
guest.shutdown(timeout=10, powerdown=True)   # ACPI power button (a guest with acpid/systemd powers
                                             # off), then QMP quit, then SIGKILL; TAPs deleted
cleanup(run_dir)                             # after a crash: every QEMU and TAP the run dir knows
```

What it guarantees:
- Networking is TAPs only: each `Nic` is a TAP that this module creates with pyroute2 (persistent,
  up, enslaved to `bridge` in `netns`) and deletes when the guest stops. `-nodefaults` leaves QEMU no
  NIC of its own, and `qemu_argv` refuses user-mode networking in `extra_args`.
- Files per instance in `run_dir`: `NAME.pid` (QEMU's `-pidfile`), `NAME.qmp` (QMP socket),
  `NAME.console.sock` (ttyS0, a socket to interact with) and `NAME.console.log` (everything ttyS0 said),
  `NAME.<serial>.sock` for each of `serial_sockets` (ttyS1, ttyS2, ...), `NAME.log` (QEMU's stderr),
  and `NAME.json` (the spec, pid, accelerator and TAPs): another process finds the guest with
  `Guest.attach(run_dir, NAME)`, and `cleanup(run_dir)` finds every QEMU and TAP after a crash (a pid
  counts only while its command line still names the pid file, so a reused pid is never killed).
- QEMU runs in a session of its own and outlives the process that started it (`ngfw lab up` exits).
- Accelerator: `select_accelerator` boots the caller's kernel under KVM and keeps KVM only if the
  guest prints `marker` within `timeout` s (answer cached per boot in `/run/ngfw-lab/accel-probe.json`);
  otherwise TCG with `-cpu max`. `NGFW_QEMU_ACCEL=kvm|tcg` decides without probing.
- Live migration: `Guest.start(replace(spec, name=..., netns=dest_ns, incoming="tcp:IP:PORT"))` on
  the destination, then `source.migrate("tcp:IP:PORT")` -> `MigrationStats` (QEMU's own total time,
  downtime, bytes); QEMU announces the guest on arrival (RARP, and virtio-net's GUEST_ANNOUNCE).

Guests of a lab belong in its run directory, `ngfw.lab.workloads.qemu_run_dir(prefix)`
(`/run/ngfw-lab/<prefix>.qemu`): `ngfw lab down` cleans that one.

API: `Nic`, `Drive`, `GuestSpec` (+ `to_json`/`from_json`), `RunFiles`, `qemu_argv(spec, files, accel)`,
`Guest` (`start`, `attach`, `alive`, `qmp`, `status`, `wait_running`, `console_text`,
`wait_console`, `serial_path`, `migrate`, `quit`, `shutdown`, `kill`), `MigrationStats`,
`create_tap`, `delete_tap`, `kvm_usable`, `probe_kvm`, `boots_under`, `select_accelerator`, `cleanup`,
`GuestError`, `MigrationFailed`; `QmpClient` and `QmpError` (from `ngfw.lab.qmp`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink.exceptions import NetlinkError

from ngfw.lab.lock import LOCK_DIR
from ngfw.lab.netns import in_netns, run_in
from ngfw.lab.qmp import QmpClient, QmpClosed, QmpError

__all__ = [
    "Nic",
    "Drive",
    "GuestSpec",
    "RunFiles",
    "Guest",
    "MigrationStats",
    "GuestError",
    "MigrationFailed",
    "QmpClient",
    "QmpError",
    "qemu_argv",
    "create_tap",
    "delete_tap",
    "kvm_usable",
    "probe_kvm",
    "boots_under",
    "select_accelerator",
    "cleanup",
    "QEMU_BINARY",
]

log = logging.getLogger(__name__)

QEMU_BINARY = "qemu-system-x86_64"
ACCEL_CACHE = Path(LOCK_DIR) / "accel-probe.json"
DEFAULT_PROBE_MARKER = rb"Run \S+ as init process"
IFNAMSIZ = 15


class GuestError(RuntimeError):
    """A guest could not be started, did not come up, or its QEMU exited."""


class MigrationFailed(RuntimeError):
    """A live migration ended in failure or did not complete in time (the source keeps running)."""


@dataclass(frozen=True)
class Nic:
    """One virtio-net NIC: `mac`, and the TAP `tap` (at most 15 characters) on bridge `bridge` of the netns."""

    mac: str
    bridge: str | None
    tap: str
    model: str = "virtio-net-pci"
    properties: tuple[tuple[str, str], ...] = ()  # more -device properties, e.g. (("mq", "on"),)


@dataclass(frozen=True)
class Drive:
    """One more disk (a cloud-init seed, a data disk): `-drive file=PATH,if=INTERFACE,format=FORMAT`."""

    path: Path
    format: str = "raw"
    snapshot: bool = False
    readonly: bool = False
    interface: str = "virtio"


@dataclass(frozen=True)
class GuestSpec:
    """What to boot and how it is wired; the same spec (with `incoming`) makes a migration target."""

    name: str
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = ""
    disk: Path | None = None
    disk_format: str = "raw"
    disk_snapshot: bool = False  # writes go to a temporary overlay: the image stays as it was
    drives: tuple[Drive, ...] = ()  # after `disk`
    netns: str | None = None
    nics: tuple[Nic, ...] = ()
    memory_mb: int = 256
    cpus: int = 1
    serial_sockets: tuple[str, ...] = ()  # ttyS1, ttyS2, ... each on a unix socket NAME.<serial>.sock
    incoming: str | None = None  # "tcp:IP:PORT" (or "defer"): wait for a live migration
    machine: str = "q35"
    extra_args: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("kernel", "initrd", "disk"):
            data[key] = str(data[key]) if data[key] is not None else None
        for drive in data["drives"]:
            drive["path"] = str(drive["path"])
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GuestSpec:
        values = dict(data)
        for key in ("kernel", "initrd", "disk"):
            values[key] = Path(values[key]) if values.get(key) else None
        values["nics"] = tuple(
            Nic(
                n["mac"],
                n["bridge"],
                n["tap"],
                n.get("model", "virtio-net-pci"),
                tuple(tuple(p) for p in n.get("properties", ())),
            )
            for n in values.get("nics", ())
        )
        values["drives"] = tuple(Drive(**{**d, "path": Path(d["path"])}) for d in values.get("drives", ()))
        values["serial_sockets"] = tuple(values.get("serial_sockets", ()))
        values["extra_args"] = tuple(values.get("extra_args", ()))
        return cls(**values)


@dataclass(frozen=True)
class RunFiles:
    """The paths of one guest instance in its run directory."""

    run_dir: Path
    name: str

    def _path(self, suffix: str) -> Path:
        return self.run_dir / f"{self.name}.{suffix}"

    @property
    def pid(self) -> Path:
        return self._path("pid")

    @property
    def qmp(self) -> Path:
        return self._path("qmp")

    @property
    def console_sock(self) -> Path:
        return self._path("console.sock")

    @property
    def console_log(self) -> Path:
        return self._path("console.log")

    @property
    def log(self) -> Path:
        return self._path("log")

    @property
    def meta(self) -> Path:
        return self._path("json")

    def serial(self, name: str) -> Path:
        return self._path(f"{name}.sock")

    def sockets(self, spec: GuestSpec) -> list[Path]:
        return [self.qmp, self.console_sock, *(self.serial(s) for s in spec.serial_sockets)]


def _check_name(what: str, name: str) -> None:
    if not name or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@-]*", name):
        raise ValueError(f"bad {what} {name!r}: letters, digits and _.@- only")


def qemu_argv(spec: GuestSpec, files: RunFiles, accel: str, binary: str = QEMU_BINARY) -> list[str]:
    """QEMU's command line for `spec` (pure). `accel` is "kvm" or "tcg"."""
    _check_name("guest name", spec.name)
    if accel not in ("kvm", "tcg"):
        raise ValueError(f"bad accelerator {accel!r}: kvm or tcg")
    if spec.kernel is None and spec.disk is None:
        raise ValueError(f"guest {spec.name}: give a kernel or a disk image to boot")
    joined = " ".join(spec.extra_args)
    if re.search(r"(^|[\s,=])user([\s,]|$)", joined) or "-nic" in spec.extra_args or "-net" in spec.extra_args:
        raise ValueError(f"guest {spec.name}: extra_args may not add QEMU networking (TAP NICs only): {joined}")
    for nic in spec.nics:
        if len(nic.tap) > IFNAMSIZ:
            raise ValueError(f"TAP name {nic.tap!r} is longer than {IFNAMSIZ} characters")
        if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", nic.mac):
            raise ValueError(f"bad MAC address {nic.mac!r}")
    for serial in spec.serial_sockets:
        _check_name("serial port name", serial)

    def sock(ident: str, path: Path, *more: str) -> list[str]:
        return ["-chardev", ",".join([f"socket,id={ident},path={path},server=on,wait=off", *more])]

    argv = [
        binary,
        "-name",
        f"{spec.name},debug-threads=on",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-machine",
        spec.machine,
        "-accel",
        accel,
        "-cpu",
        "max" if accel == "tcg" else "host",
        "-m",
        str(spec.memory_mb),
        "-smp",
        str(spec.cpus),
        "-pidfile",
        str(files.pid),
        *sock("qmp", files.qmp),
        "-mon",
        "chardev=qmp,mode=control",
        *sock("console", files.console_sock, f"logfile={files.console_log}", "logappend=on"),
        "-serial",
        "chardev:console",
    ]
    for i, serial in enumerate(spec.serial_sockets, start=1):
        argv += [*sock(f"serial{i}", files.serial(serial)), "-serial", f"chardev:serial{i}"]
    if spec.kernel is not None:
        argv += ["-kernel", str(spec.kernel)]
        if spec.initrd is not None:
            argv += ["-initrd", str(spec.initrd)]
        if spec.append:
            argv += ["-append", spec.append]
    if spec.disk is not None:
        drive = f"file={spec.disk},if=virtio,format={spec.disk_format}"
        argv += ["-drive", drive + (",snapshot=on" if spec.disk_snapshot else "")]
    for extra in spec.drives:
        drive = f"file={extra.path},if={extra.interface},format={extra.format}"
        argv += [
            "-drive",
            drive + (",snapshot=on" if extra.snapshot else "") + (",readonly=on" if extra.readonly else ""),
        ]
    for i, nic in enumerate(spec.nics):
        props = "".join(f",{k}={v}" for k, v in nic.properties)
        argv += [
            "-netdev",
            f"tap,id=net{i},ifname={nic.tap},script=no,downscript=no",
            # romfile=: no iPXE ROM (we never boot from the network; it would only slow the boot)
            "-device",
            f"{nic.model},netdev=net{i},mac={nic.mac},romfile={props}",
        ]
    if spec.incoming:
        argv += ["-incoming", spec.incoming]
    return argv + list(spec.extra_args)


# --- TAPs ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _netns(ns: str | None) -> Iterator[None]:
    if ns is None:
        yield
    else:
        with in_netns(ns):
            yield


def create_tap(ns: str | None, name: str, bridge: str | None = None) -> None:
    """A persistent TAP `name` in namespace `ns`, up, enslaved to `bridge` (made with pyroute2)."""
    with _netns(ns), IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="tuntap", mode="tap")
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise GuestError(f"TAP {name} was not created in {ns or 'this namespace'}")
        if bridge is not None:
            master = ipr.link_lookup(ifname=bridge)
            if not master:
                raise GuestError(f"bridge {bridge} not found in {ns or 'this namespace'}")
            ipr.link("set", index=found[0], master=master[0])
        ipr.link("set", index=found[0], state="up")


def delete_tap(ns: str | None, name: str) -> bool:
    """Delete TAP `name` from `ns` if it is there (also when the namespace is gone). True if deleted."""
    if ns is not None and ns not in pyroute2_netns.listnetns():
        return False
    with _netns(ns), IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            try:
                ipr.link("del", index=index)
                return True
            except NetlinkError as exc:
                if exc.code != 19:  # ENODEV: gone meanwhile
                    raise
    return False


# --- processes -----------------------------------------------------------------------------------


def _proc_state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[-1][:1]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _alive(pid: int) -> bool:
    state = _proc_state(pid)
    return state is not None and state != "Z"


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\x00") if a]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _ours(pid: int, files: RunFiles) -> bool:
    """Whether `pid` is the QEMU of this instance (its command line names our pid file)."""
    return str(files.pid) in _cmdline(pid)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pid: int, timeout: float, proc: subprocess.Popen[Any] | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return True
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return not _alive(pid)


def _stop_pid(pid: int, files: RunFiles, timeout: float, proc: subprocess.Popen[Any] | None = None) -> None:
    if not _ours(pid, files) or not _alive(pid):
        return
    _signal(pid, signal.SIGTERM)  # QEMU quits cleanly on SIGTERM
    if not _wait_gone(pid, timeout, proc):
        log.warning("QEMU %s (pid %d) ignored SIGTERM: killing it", files.name, pid)
        _signal(pid, signal.SIGKILL)
        _wait_gone(pid, 5.0, proc)


@dataclass(frozen=True)
class MigrationStats:
    """What QEMU's `query-migrate` said when the migration completed."""

    total_time_ms: int
    downtime_ms: int
    setup_time_ms: int
    transferred_bytes: int
    info: dict[str, Any]

    @classmethod
    def from_query(cls, info: dict[str, Any]) -> MigrationStats:
        return cls(
            int(info.get("total-time", 0)),
            int(info.get("downtime", 0)),
            int(info.get("setup-time", 0)),
            int(info.get("ram", {}).get("transferred", 0)),
            info,
        )


class Guest:
    """One running QEMU instance (started here with `start`, or found with `attach`)."""

    def __init__(
        self, spec: GuestSpec, files: RunFiles, pid: int, accel: str, proc: subprocess.Popen[Any] | None = None
    ) -> None:
        self.spec = spec
        self.files = files
        self.pid = pid
        self.accel = accel
        self._proc = proc

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def netns(self) -> str | None:
        return self.spec.netns

    @classmethod
    def start(
        cls, spec: GuestSpec, run_dir: Path, accel: str = "tcg", qmp_timeout: float = 15.0, binary: str = QEMU_BINARY
    ) -> Guest:
        """Create the TAPs, start QEMU, return once its QMP socket answers (the guest is then booting).

        A previous instance of the same name in `run_dir` is stopped first. On failure nothing is left
        running and the TAPs are gone; the error carries the end of QEMU's stderr.
        """
        if shutil.which(binary) is None:
            raise GuestError(f"{binary} is not installed (Debian package qemu-system-x86)")
        run_dir.mkdir(parents=True, exist_ok=True)
        files = RunFiles(run_dir, spec.name)
        argv = qemu_argv(spec, files, accel, binary)
        _cleanup_instance(files)
        for path in (files.console_log, files.log):
            path.unlink(missing_ok=True)
        made: list[str] = []
        proc: subprocess.Popen[Any] | None = None
        try:
            for nic in spec.nics:
                create_tap(spec.netns, nic.tap, nic.bridge)
                made.append(nic.tap)
            _write_meta(files, spec, None, accel, argv)
            with open(files.log, "ab") as err:
                popen: dict[str, Any] = dict(
                    stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True
                )  # outlives us; no terminal signals
                proc = run_in(spec.netns, argv, **popen) if spec.netns else subprocess.Popen(argv, **popen)
            _write_meta(files, spec, proc.pid, accel, argv)
            guest = cls(spec, files, proc.pid, accel, proc)
            guest._wait_qmp(qmp_timeout)
            return guest
        except BaseException:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
            for tap in made:
                with contextlib.suppress(Exception):
                    delete_tap(spec.netns, tap)
            for path in (files.meta, files.pid, *files.sockets(spec)):
                path.unlink(missing_ok=True)
            raise

    @classmethod
    def attach(cls, run_dir: Path, name: str) -> Guest:
        """The guest instance `name` of `run_dir`, started by this or another process."""
        files = RunFiles(run_dir, name)
        try:
            meta = json.loads(files.meta.read_text())
        except FileNotFoundError:
            raise GuestError(f"no guest {name!r} in {run_dir}") from None
        return cls(GuestSpec.from_json(meta["spec"]), files, int(meta.get("pid") or 0), meta["accel"])

    def _wait_qmp(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise GuestError(f"QEMU {self.name} exited at start: {self.log_tail()}")
            try:
                with QmpClient.connect(self.files.qmp, timeout=min(1.0, max(0.1, deadline - time.monotonic()))):
                    return
            except (TimeoutError, QmpClosed, OSError):
                if time.monotonic() >= deadline:
                    raise GuestError(
                        f"QEMU {self.name}: no QMP answer within {timeout:.0f} s: {self.log_tail()}"
                    ) from None

    def alive(self) -> bool:
        if self._proc is not None:
            return self._proc.poll() is None
        return bool(self.pid) and _alive(self.pid) and _ours(self.pid, self.files)

    def qmp(self, timeout: float = 10.0) -> QmpClient:
        """A new, negotiated QMP session (close it, or use `with`: QEMU serves one client at a time)."""
        return QmpClient.connect(self.files.qmp, timeout=timeout)

    def status(self) -> str:
        """QEMU's run state: "running", "inmigrate", "postmigrate", "paused", ..."""
        with self.qmp() as q:
            return str(q.execute("query-status")["status"])

    def wait_running(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        status = "?"
        while time.monotonic() < deadline:
            status = self.status()
            if status == "running":
                return
            time.sleep(0.05)
        raise GuestError(f"guest {self.name} is {status!r}, not running, after {timeout:.0f} s")

    def console_text(self) -> str:
        """Everything the guest wrote to its console (ttyS0) since this instance started."""
        try:
            return self.files.console_log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 1500) -> str:
        try:
            text = self.files.log.read_text(errors="replace").strip()
        except FileNotFoundError:
            text = ""
        return text[-chars:] or "(QEMU wrote nothing to stderr)"

    def wait_console(self, pattern: str | bytes, timeout: float) -> str:
        """Wait until the console shows `pattern` (a regular expression); the text that matched."""
        regex = re.compile(pattern.decode() if isinstance(pattern, bytes) else pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = regex.search(self.console_text())
            if found:
                return found.group(0)
            if not self.alive():
                raise GuestError(
                    f"QEMU {self.name} exited before its console showed {regex.pattern!r}: "
                    f"{self.log_tail()}\nconsole: {self.console_text()[-1500:]}"
                )
            if time.monotonic() >= deadline:
                raise GuestError(
                    f"guest {self.name}: console did not show {regex.pattern!r} within "
                    f"{timeout:.0f} s; console: {self.console_text()[-1500:]}"
                )
            time.sleep(0.05)

    def serial_path(self, name: str) -> Path:
        """The unix socket of serial port `name` (one of `spec.serial_sockets`)."""
        if name not in self.spec.serial_sockets:
            raise ValueError(f"guest {self.name} has no serial port {name!r}: {', '.join(self.spec.serial_sockets)}")
        return self.files.serial(name)

    def migrate(
        self, uri: str, timeout: float = 120.0, max_bandwidth: int | None = None, downtime_limit_ms: int | None = None
    ) -> MigrationStats:
        """Live-migrate to the QEMU listening at `uri` (started with `incoming=uri`); return when completed.

        Cancels the migration on timeout (the source then runs on); raises MigrationFailed either way.
        """
        params: dict[str, Any] = {}
        if max_bandwidth is not None:
            params["max-bandwidth"] = max_bandwidth
        if downtime_limit_ms is not None:
            params["downtime-limit"] = downtime_limit_ms
        with self.qmp() as q:
            if params:
                q.execute("migrate-set-parameters", params)
            q.execute("migrate", {"uri": uri})
            deadline = time.monotonic() + timeout
            while True:
                info = q.execute("query-migrate")
                status = info.get("status")
                if status == "completed":
                    return MigrationStats.from_query(info)
                if status in ("failed", "cancelled"):
                    raise MigrationFailed(
                        f"migration of {self.name} to {uri} {status}: {info.get('error-desc', 'no reason given')}"
                    )
                if time.monotonic() >= deadline:
                    with contextlib.suppress(QmpError):
                        q.execute("migrate_cancel")
                    raise MigrationFailed(
                        f"migration of {self.name} to {uri} did not complete within "
                        f"{timeout:.0f} s (status {status}); cancelled"
                    )
                time.sleep(0.05)

    def quit(self, timeout: float = 5.0) -> None:
        """QMP `quit` (QEMU exits at once, the guest is not asked), then as `kill`; TAPs and files removed."""
        if self.alive():
            with contextlib.suppress(OSError, TimeoutError, QmpClosed, QmpError):
                with self.qmp(timeout=min(timeout, 3.0)) as q:
                    q.execute("quit", timeout=timeout)
            _wait_gone(self.pid, timeout, self._proc)
        self.kill()

    def shutdown(self, timeout: float = 10.0, powerdown: bool = False) -> None:
        """Stop the guest: with `powerdown`, press the ACPI power button and wait up to `timeout` s for
        the guest to power off; then QMP quit; then SIGKILL. TAPs and run files are removed."""
        if powerdown and self.alive():
            with contextlib.suppress(OSError, TimeoutError, QmpClosed, QmpError):
                with self.qmp(timeout=3.0) as q:
                    q.execute("system_powerdown")
            _wait_gone(self.pid, timeout, self._proc)
        self.quit(timeout=min(timeout, 5.0))

    def kill(self) -> None:
        """SIGKILL QEMU if it still runs, delete its TAPs and run files (the logs stay)."""
        if self.alive():
            if self._proc is not None:
                self._proc.kill()
            else:
                _signal(self.pid, signal.SIGKILL)
            _wait_gone(self.pid, 5.0, self._proc)
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=1)
        _remove_instance(self.files, self.spec)


def _write_meta(files: RunFiles, spec: GuestSpec, pid: int | None, accel: str, argv: Sequence[str]) -> None:
    meta = {"spec": spec.to_json(), "pid": pid, "accel": accel, "argv": list(argv), "started": time.time()}
    fd, tmp = tempfile.mkstemp(dir=files.run_dir, prefix=f".{files.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(tmp, files.meta)


def _remove_instance(files: RunFiles, spec: GuestSpec) -> None:
    for nic in spec.nics:
        try:
            delete_tap(spec.netns, nic.tap)
        except (OSError, NetlinkError) as exc:
            log.warning("cannot delete TAP %s in %s: %s", nic.tap, spec.netns, exc)
    for path in (files.meta, files.pid, *files.sockets(spec)):
        path.unlink(missing_ok=True)


def _pid_from_files(files: RunFiles, meta: dict[str, Any] | None) -> int:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return int(files.pid.read_text().strip())
    return int((meta or {}).get("pid") or 0)


def _cleanup_instance(files: RunFiles) -> bool:
    """Stop what is left of instance `files.name` (QEMU by pid file, TAPs by its json). True if found."""
    meta: dict[str, Any] | None = None
    with contextlib.suppress(FileNotFoundError, ValueError):
        meta = json.loads(files.meta.read_text())
    if meta is None and not files.pid.exists():
        return False
    pid = _pid_from_files(files, meta)
    if pid:
        _stop_pid(pid, files, timeout=3.0)
    spec = GuestSpec.from_json(meta["spec"]) if meta else GuestSpec(name=files.name)
    _remove_instance(files, spec)
    return True


def cleanup(run_dir: Path) -> list[str]:
    """Stop every QEMU recorded in `run_dir` and delete its TAPs and files (also after a crash).

    Returns the instance names found. The run directory itself is removed when nothing is left in it.
    """
    if not run_dir.is_dir():
        return []
    names = sorted(
        {p.name.removesuffix(".json") for p in run_dir.glob("*.json")}
        | {p.name.removesuffix(".pid") for p in run_dir.glob("*.pid")}
    )
    found = [name for name in names if _cleanup_instance(RunFiles(run_dir, name))]
    for leftover in run_dir.iterdir():
        if leftover.suffix in (".log", ".sock", ".qmp") or leftover.name.startswith("."):
            leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        run_dir.rmdir()
    return found


# --- accelerator ---------------------------------------------------------------------------------


def kvm_usable() -> bool:
    """Whether /dev/kvm can be opened (KVM may still fail to run a guest: see `probe_kvm`)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def probe_kvm(
    kernel: Path,
    initrd: Path | None = None,
    append: str = "console=ttyS0 panic=-1",
    marker: bytes = DEFAULT_PROBE_MARKER,
    timeout: float = 5.0,
    binary: str = QEMU_BINARY,
) -> bool:
    """Boot `kernel` under KVM without any NIC; True if its console shows `marker` within `timeout` s."""
    if not kvm_usable():
        return False
    return boots_under("kvm", kernel, initrd, append, marker, timeout, binary)


def boots_under(
    accel: str,
    kernel: Path,
    initrd: Path | None = None,
    append: str = "console=ttyS0 panic=-1",
    marker: bytes = DEFAULT_PROBE_MARKER,
    timeout: float = 5.0,
    binary: str = QEMU_BINARY,
) -> bool:
    """Whether `kernel` booted under `accel`, no NIC, shows `marker` on its console within `timeout` s."""
    if shutil.which(binary) is None:
        return False
    regex = re.compile(marker)
    with tempfile.TemporaryDirectory(prefix="ngfw-kvm-probe-") as tmp:
        console = Path(tmp) / "console.log"
        argv = [
            binary,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-accel",
            accel,
            "-cpu",
            "host" if accel == "kvm" else "max",
            "-m",
            "256",
            "-serial",
            f"file:{console}",
            "-kernel",
            str(kernel),
            "-append",
            append,
            *(["-initrd", str(initrd)] if initrd else []),
        ]
        with open(Path(tmp) / "qemu.log", "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None:
                if console.exists() and regex.search(console.read_bytes()):
                    return True
                time.sleep(0.05)
            return bool(console.exists() and regex.search(console.read_bytes()))
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)


def _qemu_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
        return done.stdout.split("\n")[0]
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def select_accelerator(
    kernel: Path,
    initrd: Path | None = None,
    append: str = "console=ttyS0 panic=-1",
    marker: bytes = DEFAULT_PROBE_MARKER,
    timeout: float = 5.0,
    cache: Path | None = ACCEL_CACHE,
    binary: str = QEMU_BINARY,
) -> str:
    """ "kvm" if a guest boots under KVM here (probed once per boot of this machine), else "tcg".

    `NGFW_QEMU_ACCEL=kvm|tcg` overrides the probe.
    """
    forced = os.environ.get("NGFW_QEMU_ACCEL", "").strip().lower()
    if forced:
        if forced not in ("kvm", "tcg"):
            raise ValueError(f"NGFW_QEMU_ACCEL={forced!r}: kvm or tcg")
        return forced
    if not kvm_usable():
        return "tcg"
    st = kernel.stat()
    key = f"{os.uname().release}|{_qemu_version(binary)}|{kernel}|{st.st_size}|{st.st_mtime_ns}"
    known: dict[str, str] = {}
    if cache is not None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            known = json.loads(cache.read_text())
        if known.get(key) in ("kvm", "tcg"):
            return known[key]
    accel = "kvm" if probe_kvm(kernel, initrd, append, marker, timeout, binary) else "tcg"
    log.info("accelerator: %s (KVM probe %s)", accel, "booted" if accel == "kvm" else "did not boot in time")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        known[key] = accel
        tmp = cache.with_name(cache.name + f".{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1))
        os.replace(tmp, cache)
    return accel
