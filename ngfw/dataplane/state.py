"""Session state that outlives the dataplane process: the flow table in a shared-memory file, snapshots,
and the batch format sessions travel in.

- The live flow table (with flows' host names and inspection positions) is a file on tmpfs
  (`STATE_DIR/flows.state`, default /run/ngfw or /dev/shm/ngfw) that the packet loop uses as its memory. A
  dataplane killed with SIGKILL leaves it as it was; the next one maps it read-only, checks its header
  (format, this build's layout fingerprint, same boot, same host) and imports every flow through the
  fastpath's one import path, which decides each again with the policy it now runs (`Engine.adopt_sessions`).
  A table it cannot read is set aside and named once in the log; the dataplane starts empty and enforcing.
- A graceful stop (SIGTERM) writes every flow, with Hyperscan's compressed stream state, to
  `STATE_DIR/sessions.snapshot` (a `SessionBatch`); the next start prefers it to the table it belongs to.
- A `SessionBatch` is also what a workload's sessions move in between hosts (ngfw.dataplane.migration):
  a JSON header (record format, exporter, the exporter's app names, count, sha256) and the records.

Nothing here runs per packet.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import mmap
import os
import secrets
import socket
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("ngfw.dataplane.state")

TMPFS_MAGIC = 0x01021994
STATE_MAGIC = b"NGFWSTATE1"
NAMES_MAGIC = b"NGFWAPPS1"
BATCH_MAGIC = b"NGFWSESS1"
TABLE_FILE = "flows.state"
SNAPSHOT_FILE = "sessions.snapshot"
LOCK_FILE = "lock"
MAX_BATCH_HEADER = 1 << 20


class StateError(Exception):
    """A state directory, table or batch cannot be used; the message is one sentence naming it."""


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def default_state_dir() -> str:
    """/run/ngfw where /run is tmpfs (systemd's RuntimeDirectory), else /dev/shm/ngfw."""
    try:
        if _is_tmpfs("/run"):
            return "/run/ngfw"
    except OSError:
        pass
    return "/dev/shm/ngfw"


def auto_state_dir(plan: Any) -> str:
    """The state directory of a dataplane with these ports in this network namespace: the same one again
    after a restart, another one for every other dataplane on the machine (lab hosts share /run)."""
    try:
        netns = os.stat("/proc/self/ns/net").st_ino
    except OSError:
        netns = 0
    ports = "_".join(p for seg in plan.segment_list() for p in seg)
    return os.path.join(default_state_dir(), f"{netns}-{ports}"[:200])


def _is_tmpfs(path: str) -> bool:
    # os.statvfs has no f_type; statfs through ctypes would be one more dependency: read /proc/mounts
    path = os.path.realpath(path)
    best, fstype = "", ""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) < 3:
                continue
            mount_point = parts[1].replace("\\040", " ")
            if (path == mount_point or path.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) >= len(
                best
            ):
                best, fstype = mount_point, parts[2]
    return fstype == "tmpfs"


# ---------------------------------------------------------------- batches


@dataclass
class SessionBatch:
    """Session records and what they need to be read elsewhere (the exporter's app names by id)."""

    records: bytes
    apps: list[str]
    record_format: str
    count: int
    meta: dict[str, Any] = field(default_factory=dict)  # exporter host, workload, vsys, phase, serial, ...

    def to_bytes(self) -> bytes:
        header = {
            "format": self.record_format,
            "apps": self.apps,
            "count": self.count,
            "sha256": hashlib.sha256(self.records).hexdigest(),
            "bytes": len(self.records),
            **self.meta,
        }
        raw = json.dumps(header, separators=(",", ":")).encode()
        return BATCH_MAGIC + struct.pack("<I", len(raw)) + raw + self.records

    @classmethod
    def from_bytes(cls, data: bytes, expected_format: str) -> SessionBatch:
        """Parse and verify; StateError names what is wrong (nothing of a bad batch is used)."""
        if not data.startswith(BATCH_MAGIC) or len(data) < len(BATCH_MAGIC) + 4:
            raise StateError("not a session batch (bad magic)")
        (n,) = struct.unpack_from("<I", data, len(BATCH_MAGIC))
        start = len(BATCH_MAGIC) + 4
        if n > MAX_BATCH_HEADER or start + n > len(data):
            raise StateError(f"session batch header length {n} runs past the batch")
        try:
            header = json.loads(data[start : start + n])
        except ValueError as exc:
            raise StateError(f"session batch header is not JSON: {exc}") from None
        if not isinstance(header, dict):
            raise StateError("session batch header is not an object")
        records = data[start + n :]
        if header.get("format") != expected_format:
            raise StateError(
                f"session batch of record format {header.get('format')!r}, this build reads {expected_format!r}"
            )
        if header.get("bytes") != len(records) or header.get("sha256") != hashlib.sha256(records).hexdigest():
            raise StateError("session batch does not verify: its records do not hash to its sha256")
        apps = header.get("apps")
        count = header.get("count")
        if not isinstance(apps, list) or not all(isinstance(a, str) for a in apps) or not isinstance(count, int):
            raise StateError("session batch header lacks its app names or count")
        meta = {k: v for k, v in header.items() if k not in ("format", "apps", "count", "sha256", "bytes")}
        return cls(records=records, apps=apps, record_format=header["format"], count=count, meta=meta)


# ---------------------------------------------------------------- the live table


@dataclass
class PreviousTable:
    """A dead (or stopped) dataplane's table, mapped read-only, ready for `Engine.adopt_sessions`."""

    path: Path
    memory: mmap.mmap
    layout: dict[str, Any]
    apps: list[str] | None
    header: dict[str, Any]

    def close(self) -> None:
        try:
            self.memory.close()
        except BufferError:
            pass  # still exported to the engine for a moment: the mapping goes with the object


@dataclass
class TakeOver:
    """What a starting dataplane found to continue from."""

    table: PreviousTable | None = None
    snapshot: SessionBatch | None = None
    refused: list[str] = field(default_factory=list)  # one sentence each: what was set aside and why


class StateStore:
    """One dataplane's state directory: its live table file, its snapshot and a lock (one dataplane each)."""

    def __init__(self, directory: str | os.PathLike[str], host: str | None = None) -> None:
        self.dir = Path(directory)
        self.host = host or socket.gethostname()
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StateError(f"state directory {self.dir} cannot be created: {exc.strerror or exc}") from None
        if not _is_tmpfs(str(self.dir)):
            raise StateError(
                f"state directory {self.dir} is not on tmpfs: the flow table is memory the packet "
                "loop writes at line rate (use /run/ngfw or /dev/shm/ngfw)"
            )
        self._lock = open(self.dir / LOCK_FILE, "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise StateError(f"state directory {self.dir} is in use by another running dataplane") from None
        self.memory: mmap.mmap | None = None
        self.layout: dict[str, Any] | None = None
        self.serial = ""
        self._pending_path: Path | None = None
        self._header: dict[str, Any] = {}

    @property
    def table_path(self) -> Path:
        return self.dir / TABLE_FILE

    @property
    def snapshot_path(self) -> Path:
        return self.dir / SNAPSHOT_FILE

    # ---- reading what the last process left
    def find_previous(self, fingerprint: str, record_format: str) -> TakeOver:
        found = TakeOver()
        if self.table_path.exists():
            try:
                found.table = self._open_previous_table(fingerprint)
            except StateError as exc:
                found.refused.append(str(exc))
                self._set_aside(self.table_path)
        if self.snapshot_path.exists():
            try:
                batch = SessionBatch.from_bytes(self.snapshot_path.read_bytes(), record_format)
                self._check_origin(batch.meta, f"snapshot {self.snapshot_path}")
                if found.table is not None and batch.meta.get("serial") != found.table.header.get("serial"):
                    raise StateError(f"snapshot {self.snapshot_path} belongs to another table than {self.table_path}")
                found.snapshot = batch
            except (StateError, OSError) as exc:
                found.refused.append(
                    str(exc) if isinstance(exc, StateError) else f"snapshot {self.snapshot_path} unreadable: {exc}"
                )
                self._set_aside(self.snapshot_path)
        return found

    def _check_origin(self, header: dict[str, Any], what: str) -> None:
        if header.get("boot_id") != boot_id():
            raise StateError(f"{what} is from another boot of this machine")
        if header.get("host") != self.host:
            raise StateError(f"{what} is from host {header.get('host')!r}, this dataplane is {self.host!r}")

    def _open_previous_table(self, fingerprint: str) -> PreviousTable:
        path = self.table_path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise StateError(f"session table {path} unreadable: {exc.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size < 4096:
                raise StateError(f"session table {path} is {size} bytes, shorter than its header")
            memory = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        try:
            header = _read_header(memory, path)
            if header.get("fingerprint") != fingerprint:
                raise StateError(
                    f"session table {path} was written by another build of ngfw (layout "
                    f"{header.get('fingerprint')}, this build {fingerprint})"
                )
            self._check_origin(header, f"session table {path}")
            layout = header.get("layout")
            if not isinstance(layout, dict) or layout.get("fingerprint") != fingerprint or layout.get("size", 0) > size:
                raise StateError(f"session table {path} does not match its own layout")
            apps = _read_names(memory, layout)
        except StateError:
            memory.close()
            raise
        return PreviousTable(path=path, memory=memory, layout=layout, apps=apps, header=header)

    def _set_aside(self, path: Path) -> None:
        try:
            os.replace(path, path.with_name(path.name + ".refused"))
        except OSError:
            pass

    # ---- the new table
    def create_table(self, layout: dict[str, Any], ports: list[str]) -> mmap.mmap:
        """A fresh, sparse table file for the engine's memory (renamed into place by `commit_table`)."""
        free = os.statvfs(self.dir)
        if free.f_bavail * free.f_frsize < layout["size"]:
            raise StateError(
                f"state directory {self.dir} has {free.f_bavail * free.f_frsize >> 20} MiB free, the "
                f"flow table needs {layout['size'] >> 20} MiB (lower --flow-capacity or grow the tmpfs)"
            )
        pending = self.dir / (TABLE_FILE + ".new")
        fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, layout["size"])
            memory = mmap.mmap(fd, layout["size"], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.serial = secrets.token_hex(8)
        self._header = {
            "fingerprint": layout["fingerprint"],
            "layout": layout,
            "boot_id": boot_id(),
            "host": self.host,
            "serial": self.serial,
            "pid": os.getpid(),
            "created": time.time(),
            "ports": ports,
            "state": "running",
        }
        _write_header(memory, self._header)
        self.memory, self.layout, self._pending_path = memory, layout, pending
        return memory

    def commit_table(self) -> None:
        """The new table is the one to continue from (after what the last process left was imported)."""
        if self._pending_path is not None:
            os.replace(self._pending_path, self.table_path)
            self._pending_path = None
        try:
            self.snapshot_path.unlink()
        except FileNotFoundError:
            pass

    def discard_table(self) -> None:
        """This process will not run: drop the table it was preparing, release the directory."""
        if self._pending_path is not None:
            self._pending_path.unlink(missing_ok=True)
            self._pending_path = None
        self.close()
        if not self.table_path.exists() and not self.snapshot_path.exists():
            (self.dir / LOCK_FILE).unlink(missing_ok=True)  # nothing kept here: leave no directory behind
            try:
                self.dir.rmdir()
            except OSError:
                pass

    def write_names(self, apps: list[str]) -> None:
        """The catalogue's app names by id, next to the table whose flows carry those ids."""
        if self.memory is None or self.layout is None:
            return
        raw = json.dumps(apps, separators=(",", ":")).encode()
        room = self.layout["names_bytes"] - len(NAMES_MAGIC) - 8
        if len(raw) > room:
            log.warning(
                "app names (%d bytes) do not fit the state file's %d: a restart re-classifies flows", len(raw), room
            )
            raw = b"[]"
        off = self.layout["names_off"]
        blob = NAMES_MAGIC + struct.pack("<II", len(raw), zlib.crc32(raw)) + raw
        self.memory[off : off + len(blob)] = blob

    def write_snapshot(self, batch: SessionBatch) -> None:
        batch.meta.update({"boot_id": boot_id(), "host": self.host, "serial": self.serial, "written": time.time()})
        tmp = self.snapshot_path.with_name(SNAPSHOT_FILE + ".tmp")
        tmp.write_bytes(batch.to_bytes())
        os.replace(tmp, self.snapshot_path)
        if self.memory is not None:
            self._header["state"] = "stopped"
            _write_header(self.memory, self._header)

    def close(self) -> None:
        self._lock.close()


def _write_header(memory: mmap.mmap, header: dict[str, Any]) -> None:
    raw = json.dumps(header, separators=(",", ":")).encode()
    blob = STATE_MAGIC + struct.pack("<II", len(raw), zlib.crc32(raw)) + raw
    if len(blob) > 4096:
        raise StateError("state header does not fit its 4096 bytes")
    memory[0 : len(blob)] = blob


def _read_header(memory: mmap.mmap, path: Path) -> dict[str, Any]:
    if memory[: len(STATE_MAGIC)] != STATE_MAGIC:
        raise StateError(f"session table {path} has no ngfw state header")
    n, crc = struct.unpack_from("<II", memory, len(STATE_MAGIC))
    start = len(STATE_MAGIC) + 8
    if start + n > 4096:
        raise StateError(f"session table {path} has a header longer than its 4096 bytes")
    raw = memory[start : start + n]
    if zlib.crc32(raw) != crc:
        raise StateError(f"session table {path} has a corrupt header (checksum)")
    try:
        header = json.loads(raw)
    except ValueError:
        raise StateError(f"session table {path} has a corrupt header (not JSON)") from None
    if not isinstance(header, dict):
        raise StateError(f"session table {path} has a corrupt header (not an object)")
    return header


def _read_names(memory: mmap.mmap, layout: dict[str, Any]) -> list[str] | None:
    """The app names the dead process's flows' app ids mean; None when it never wrote them (or they are
    torn): its flows are classified again."""
    off = layout.get("names_off", 0)
    if memory[off : off + len(NAMES_MAGIC)] != NAMES_MAGIC:
        return None
    n, crc = struct.unpack_from("<II", memory, off + len(NAMES_MAGIC))
    start = off + len(NAMES_MAGIC) + 8
    if n > layout.get("names_bytes", 0):
        return None
    raw = memory[start : start + n]
    if zlib.crc32(raw) != crc:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        return None
    return names if isinstance(names, list) and all(isinstance(x, str) for x in names) else None
