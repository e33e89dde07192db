"""Consecutive commits while established sessions run through both hosts' dataplanes: what they lost.

The load starts before the first commit and outlives the last one (or the report says it did
not): a 100 pps ping through each host's dataplane (web1 -> srv on host-a, db1 -> srv on
host-b), an HTTP download through host-a's (web1 -> srv) and one through both (web1 -> db1),
both rate-limited so they stay open for seconds. Each commit changes a rule of each tenant that
none of these sessions uses, and the next one is made once every host has acknowledged it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ngfw.lab.control_site import DB_FILE_SIZE, DB_PORT, ControlSite
from ngfw.lab.netns import run_in, stop_process
from ngfw.lab.services import BIG_FILE_SIZE

# Documents -> the documents of commit n (changed rules only; what the sessions use stays allowed)
Churn = Callable[[int], list[dict[str, Any]]]


@dataclass
class CommitLoadReport:
    commit_seconds: list[float] = field(default_factory=list)  # commit call -> acknowledged by every host
    versions: list[int] = field(default_factory=list)
    outlived: list[str] = field(default_factory=list)  # loads still running when the last commit was realized
    pings: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (sent, received)
    streams: dict[str, tuple[int, str, int]] = field(default_factory=dict)  # name -> (curl exit, "code bytes", size)
    errors: dict[str, str] = field(default_factory=dict)  # name -> a client's stderr

    @property
    def loads(self) -> list[str]:
        return [*self.pings, *self.streams]

    @property
    def lost_pings(self) -> int:
        return sum(sent - received for sent, received in self.pings.values())

    @property
    def broken_streams(self) -> list[str]:
        return [name for name, (code, seen, size) in self.streams.items() if code != 0 or seen != f"200 {size}"]


def ping_counts(output: str) -> tuple[int, int]:
    """(transmitted, received) from ping's summary; (0, 0) when there is none."""
    m = re.search(r"(\d+) packets transmitted, (\d+) received", output)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def churn_rules(tenant_a: dict[str, Any], tenant_b: dict[str, Any]) -> Churn:
    """Commit n: each tenant's SecurityPolicy with a rule `churn` for port 9000+n to the server, before default-deny."""

    def documents(n: int) -> list[dict[str, Any]]:
        out = []
        for policy, group, proto in ((tenant_a, "group:web", "tcp"), (tenant_b, "group:db", "udp")):
            copy = json.loads(json.dumps(policy))
            rules = copy["spec"]["rules"]
            rules.insert(
                len(rules) - 1,
                {
                    "name": "churn",
                    "from": [group],
                    "to": ["cidr:10.77.0.100/32"],
                    "services": [f"{proto}/{9000 + n}"],
                    "action": "allow",
                },
            )
            out.append(copy)
        return out

    return documents


def commits_under_load(
    site: ControlSite, churn: Churn, commits: int = 20, pings: int = 1000, seconds: float = 10.0
) -> CommitLoadReport:
    """Run the load (about `seconds` long), make `commits` commits as `admin` through it; what the clients saw."""
    lab, db1 = site.two.lab, site.two.db1
    report = CommitLoadReport()
    text = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    interval = max(0.01, seconds / pings)
    loads: dict[str, subprocess.Popen[str]] = {}
    sizes: dict[str, int] = {}
    try:
        for name, ns, dest in (("ping web1->srv", lab.web1.ns, lab.srv.ipv4), ("ping db1->srv", db1.ns, lab.srv.ipv4)):
            loads[name] = run_in(ns, ["ping", "-c", str(pings), "-i", f"{interval:.3f}", "-W", "1", dest], **text)
        # the lab's nginx paces its download too (`?rate=`): a client's --limit-rate only slows its reads, and a
        # flow the kernel forwards (flow bypass) may arrive, and end, long before the commits do
        for name, url, size in (
            ("tcp web1->srv", f"http://{lab.srv.ipv4}/big.bin?rate={int(BIG_FILE_SIZE / seconds)}", BIG_FILE_SIZE),
            ("tcp web1->db1", f"http://{db1.ipv4}:{DB_PORT}/big.bin?rate={int(DB_FILE_SIZE / seconds)}", DB_FILE_SIZE),
        ):
            rate = int(size / seconds)
            loads[name] = run_in(
                lab.web1.ns,
                [
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code} %{size_download}",
                    "--limit-rate",
                    str(rate),
                    "--max-time",
                    str(int(seconds * 4)),
                    url,
                ],
                **text,
            )
            sizes[name] = size
        time.sleep(0.5)  # every session established before the first commit
        for n in range(commits):
            started = time.monotonic()
            version = site.commit_as("admin", churn(n), f"churn {n}")
            site.wait_realized(version)
            report.commit_seconds.append(time.monotonic() - started)
            report.versions.append(version)
        report.outlived = [name for name, proc in loads.items() if proc.poll() is None]
        for name, proc in loads.items():
            out, err = proc.communicate(timeout=seconds * 4 + 5)
            if name in sizes:
                report.streams[name] = (proc.returncode, out.strip(), sizes[name])
            else:
                report.pings[name] = ping_counts(out)
            if err.strip():
                report.errors[name] = err.strip()[-500:]
    finally:
        for proc in loads.values():
            stop_process(proc)
    return report
