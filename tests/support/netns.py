"""Helpers shared by the namespace tests: metrics as prometheus_client parses them, lab policies, waiting,
bridge forwarding tables, frames captured on an interface."""

from __future__ import annotations

import ipaddress
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from pyroute2 import IPRoute

from ngfw.lab.guest_agent import GuestAgent
from ngfw.lab.hosts import TwoHostLab
from ngfw.lab.netns import socket_in
from ngfw.lab.services import Services
from ngfw.lab.workloads import Placement, load_placements, workload_agent
from tests.support.policies import LAB_POLICY as LAB_POLICY  # the namespace tests take it from here
from tests.support.policies import REPO as REPO
from tests.support.policies import lab_resources, security_policy, write_documents

SERVER = "10.77.0.100"
ETH_P_ALL = 0x0003
NUD_REACHABLE = 0x02
ALL_NODES = ipaddress.IPv6Address("ff02::1").packed


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`, parsed by prometheus_client's parser."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def lab_policy_with(tmp_path: Path, rules: str, name: str = "policy.yaml") -> Path:
    """The lab's vsys, workloads and groups with another rule list, as a file `ngfw dataplane` reads."""
    return write_documents(tmp_path, lab_resources(), security_policy(rules), name=name)


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.1) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def bridge_fdb(ns: str, bridge: str) -> dict[str, str]:
    """MAC -> bridge port that `bridge` in `ns` learnt it on (dynamic entries: what traffic taught it)."""
    with IPRoute(netns=ns, flags=0) as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.link("dump")}
        master = next(index for index, name in names.items() if name == bridge)
        learnt = {}
        for entry in ipr.fdb("dump"):
            mac = entry.get_attr("NDA_LLADDR")
            if entry.get_attr("NDA_MASTER") == master and mac and entry["state"] & NUD_REACHABLE:
                learnt[mac] = names.get(entry["ifindex"], "?")
        return learnt


class FrameCapture:
    """Frames arriving at an interface inside a namespace, read by a thread (at most `limit` frames,
    for at most `seconds`): `with FrameCapture(ns, "br-vm") as cap: ...; cap.frames`."""

    def __init__(self, ns: str, ifname: str, seconds: float = 60.0, limit: int = 5000) -> None:
        self.frames: list[bytes] = []
        self._sock = socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW)
        self._sock.bind((ifname, ETH_P_ALL))
        self._sock.settimeout(0.1)
        self._deadline = time.monotonic() + seconds
        self._limit = limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline and len(self.frames) < self._limit:
            try:
                self.frames.append(self._sock.recv(65535))
            except TimeoutError:
                continue

    def __enter__(self) -> FrameCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def gratuitous_arps(self, mac: str) -> list[str]:
        """IPv4 addresses announced by `mac` (ARP whose sender and target address are the same)."""
        found = []
        for f in self.frames:
            if f[6:12] == bytes.fromhex(mac.replace(":", "")) and f[12:14] == b"\x08\x06" and f[28:32] == f[38:42]:
                found.append(socket.inet_ntoa(f[28:32]))
        return found

    def unsolicited_nas(self, mac: str) -> list[str]:
        """IPv6 targets of neighbour advertisements from `mac` to all nodes with override set, solicited clear."""
        found = []
        for f in self.frames:
            if (
                f[6:12] == bytes.fromhex(mac.replace(":", ""))
                and f[12:14] == b"\x86\xdd"
                and f[20] == 58
                and f[54] == 136
                and f[38:54] == ALL_NODES
                and f[58] & 0x60 == 0x20
            ):
                found.append(socket.inet_ntop(socket.AF_INET6, f[62:78]))
        return found


@dataclass
class TwoHostSite:
    """A two-host lab for one test: `two` (names and addresses), `services` (srv's nginx, DNS, sshd)."""

    two: TwoHostLab
    services: Services

    @property
    def prefix(self) -> str:
        return self.two.prefix

    def migrate(self, workload: str, to: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
        """`ngfw lab migrate WORKLOAD --to HOST`, as a person runs it (exit code and output, never raises)."""
        argv = [sys.executable, "-m", "ngfw", "lab", "migrate", workload, "--to", to, "--prefix", self.prefix]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )

    def agent(self, workload: str) -> GuestAgent:
        """The command agent of VM workload `workload`, on whichever host it runs now."""
        return workload_agent(self.prefix, workload)

    def placement(self, workload: str) -> Placement:
        return load_placements(self.prefix)[workload]
