"""Pcap files of captured flows, per vsys: what the packet loop copied to its capture ring (capture.pxi),
written off the loop, rotated at a size and capped per vsys.

A rule's `capture: {packets: N}` writes the first N frames of each flow it decides, and the frames its
signatures alert on. A threat profile's keeps a flow's first N frames back (in memory, for a bounded
number of flows) and writes them with the alerting frame only if the flow alerts. Files are
`DIR/<vsys>/ngfw-<vsys>-<UTC time>-<n>.pcap`; EVE records of a captured flow name theirs (`capture.file`).
"""

from __future__ import annotations

import logging
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ngfw.wire import FILTER_PROTOCOLS

log = logging.getLogger("ngfw.dataplane.capture")

DEFAULT_DIR = "/var/log/ngfw/pcap"
DEFAULT_FILE_BYTES = 16 << 20
DEFAULT_VSYS_BYTES = 256 << 20
PENDING_FLOWS = 4096  # flows whose frames are kept back until they alert (a threat profile's capture)...
PENDING_BYTES = 64 << 20  # ... and the memory those frames may take
FLOW_FILES_KEPT = 65536  # flow id -> file, for the EVE records of flows still open
NO_VSYS = "_no-vsys"  # frames of flows no vsys decided

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # microseconds, Ethernet
RECORD = struct.Struct("<IIII")


def safe_name(vsys: str) -> str:
    """A vsys name as a directory name (names are DNS labels already; this keeps it so)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in vsys).strip(".")
    return cleaned or NO_VSYS


class PcapFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[bytes] = open(path, "wb")
        self._file.write(PCAP_HEADER)
        self.size = len(PCAP_HEADER)

    def write(self, ts: float, frame: bytes, origlen: int) -> None:
        seconds = int(ts)
        micros = min(int(round((ts - seconds) * 1e6)), 999999)
        self._file.write(RECORD.pack(seconds, micros, len(frame), max(origlen, len(frame))) + frame)
        self.size += RECORD.size + len(frame)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class CaptureWriter:
    """Frames from `Engine.drain_captures()` into pcap files per vsys."""

    def __init__(
        self, directory: str = DEFAULT_DIR, file_bytes: int = DEFAULT_FILE_BYTES, vsys_bytes: int = DEFAULT_VSYS_BYTES
    ) -> None:
        if file_bytes < 4096:
            raise ValueError(f"capture file size {file_bytes} bytes is too small: give at least 4096")
        if vsys_bytes < file_bytes:
            raise ValueError(f"capture space per vsys ({vsys_bytes} bytes) is smaller than one file ({file_bytes})")
        self.directory = Path(directory)
        self.file_bytes = file_bytes
        self.vsys_bytes = vsys_bytes
        self._open: dict[str, PcapFile] = {}
        self._serial = 0
        self._pending: OrderedDict[int, list[tuple[float, bytes, int]]] = OrderedDict()
        self._pending_bytes = 0
        self._alerted: OrderedDict[int, None] = OrderedDict()  # alert-mode flows that alerted: written from then on
        self._files: OrderedDict[int, str] = OrderedDict()
        self._last: dict[int, tuple[float, bytes]] = {}  # each flow's last frame (an alert repeats it)
        self.frames_written = 0
        self.frames_discarded = 0  # kept back for flows that never alerted, or evicted
        self.files_opened = 0
        self.files_removed = 0
        self.errors = 0
        self._warned = False

    def file_of(self, flow_id: int) -> str | None:
        return self._files.get(flow_id)

    def add(self, frames: list[tuple[Any, ...]], vsys_name: Callable[[int, int], str]) -> None:
        """`frames`: Engine.drain_captures() tuples; `vsys_name(vsys, generation)` names a vsys index."""
        touched: set[str] = set()
        for flow_id, vsys, generation, kind, mode, ts, _port, origlen, frame in frames:
            name = safe_name(vsys_name(vsys, generation) if vsys >= 0 else NO_VSYS)
            if kind == "alert":
                # the alerting frame may be one of the first N, already kept: written once
                duplicate = self._last.get(flow_id) == (ts, frame)
                if mode == "alert" and flow_id not in self._alerted:
                    self._remember(self._alerted, flow_id, None, PENDING_FLOWS)
                    for kept in self._pending.pop(flow_id, []):
                        self._pending_bytes -= len(kept[1])
                        self._write(name, flow_id, *kept)
                if not duplicate:
                    self._write(name, flow_id, ts, frame, origlen)
            elif mode == "alert" and flow_id not in self._alerted:
                self._keep_back(flow_id, ts, frame, origlen)
                continue
            else:
                self._write(name, flow_id, ts, frame, origlen)
            touched.add(name)
        for name in touched:
            pcap = self._open.get(name)
            if pcap is not None:
                pcap.flush()
        if len(self._last) > FLOW_FILES_KEPT:
            for key in list(self._last)[: len(self._last) - FLOW_FILES_KEPT]:
                del self._last[key]

    def _keep_back(self, flow_id: int, ts: float, frame: bytes, origlen: int) -> None:
        """A frame of a flow that has not alerted (yet): held in memory, the oldest flows' frames given up
        beyond PENDING_FLOWS flows or PENDING_BYTES."""
        held = self._pending.setdefault(flow_id, [])
        self._pending.move_to_end(flow_id)
        held.append((ts, frame, origlen))
        self._pending_bytes += len(frame)
        self._last[flow_id] = (ts, frame)
        while len(self._pending) > PENDING_FLOWS or self._pending_bytes > PENDING_BYTES:
            _, dropped = self._pending.popitem(last=False)
            self.frames_discarded += len(dropped)
            self._pending_bytes -= sum(len(f) for _, f, _ in dropped)

    def _remember(self, table: OrderedDict[int, Any], key: int, value: Any, limit: int) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > limit:
            table.popitem(last=False)

    def _write(self, vsys: str, flow_id: int, ts: float, frame: bytes, origlen: int) -> None:
        try:
            pcap = self._file_for(vsys, RECORD.size + len(frame))
            pcap.write(ts, frame, origlen)
        except OSError as exc:
            self.errors += 1
            if not self._warned:
                log.warning(
                    "capture files cannot be written in %s (%s): frames are counted and dropped",
                    self.directory,
                    exc.strerror or exc,
                )
                self._warned = True
            return
        self.frames_written += 1
        self._last[flow_id] = (ts, frame)
        if flow_id not in self._files:
            self._remember(self._files, flow_id, str(pcap.path), FLOW_FILES_KEPT)

    def _file_for(self, vsys: str, need: int) -> PcapFile:
        pcap = self._open.get(vsys)
        if pcap is not None and pcap.size + need <= self.file_bytes:
            return pcap
        if pcap is not None:
            pcap.close()
        folder = self.directory / vsys
        folder.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        pcap = PcapFile(folder / f"ngfw-{vsys}-{stamp}-{os.getpid()}-{self._serial}.pcap")
        self._open[vsys] = pcap
        self.files_opened += 1
        self._enforce_cap(folder, pcap.path)
        return pcap

    def _enforce_cap(self, folder: Path, current: Path) -> None:
        """Oldest files of the vsys go until its files fit in `vsys_bytes` (the one being written stays)."""
        files = sorted((p for p in folder.glob("ngfw-*.pcap") if p != current), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files) + self.file_bytes
        while files and total > self.vsys_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            oldest.unlink(missing_ok=True)
            self.files_removed += 1

    def counters(self) -> dict[str, int]:
        return {
            "frames_written": self.frames_written,
            "frames_discarded": self.frames_discarded,
            "files_opened": self.files_opened,
            "files_removed": self.files_removed,
            "errors": self.errors,
        }

    def close(self) -> None:
        for pcap in self._open.values():
            pcap.close()
        self._open.clear()


# the protocols an on-demand capture may name, numbered by ngfw.wire
PROTOCOLS = {name: FILTER_PROTOCOLS[name] for name in ("tcp", "udp", "icmp", "icmpv6")}


class CaptureRequestError(ValueError):
    """An on-demand capture that cannot be started, in one sentence naming the bad value."""


def request_capture(
    engine: Any,
    policy: Any,
    seconds: float,
    packets: int = 100,
    vm: str | None = None,
    network: str | None = None,
    port: int = 0,
    proto: str | None = None,
) -> None:
    """An operator's capture (the hook behind `ngfw sessions capture FILTER --seconds S`): for `seconds`, flows
    of workload `vm` (NAME or VSYS/NAME), with an end in `network`, on `port`, of `proto`, write their next
    `packets` frames to the capture files, as a rule's `capture:` does. One request at a time (a new one
    replaces it); the workload is resolved in the policy in force now."""
    import ipaddress

    if not 0 < seconds <= 86400:
        raise CaptureRequestError(f"capture seconds must be above 0 and at most 86400, got {seconds}")
    if not 0 < packets <= 10000:
        raise CaptureRequestError(f"capture packets must be 1 to 10000, got {packets}")
    workload = -1
    if vm:
        if policy is None:
            raise CaptureRequestError("no policy is loaded: no workload can be named")
        vsys, _, name = vm.rpartition("/")
        found = [
            i
            for i, w in enumerate(policy.workloads)
            if w.name == name and (not vsys or policy.vsys_name(w.vsys) == vsys)
        ]
        if len(found) != 1:
            raise CaptureRequestError(
                f"workload {vm!r} is {'ambiguous (name its vsys: VSYS/NAME)' if found else 'not in the policy in force'}"
            )
        workload = found[0]
    net = None
    if network:
        try:
            net = ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise CaptureRequestError(f"{network!r} is not an address or network") from None
    if not 0 <= port <= 65535:
        raise CaptureRequestError(f"port {port} is not 0 to 65535")
    number = 0
    if proto:
        if proto.lower() not in PROTOCOLS:
            raise CaptureRequestError(f"protocol {proto!r} is not one of {', '.join(PROTOCOLS)}")
        number = PROTOCOLS[proto.lower()]
    engine.capture_matching(seconds, packets, workload, net, port, number)
