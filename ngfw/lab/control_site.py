"""`ngfw control` and one `ngfw dataplane --control` per host, running in the two-host lab.

Control runs in the management namespace with a SQLite store and a tokens file in `workdir`;
db1 serves HTTP on tcp/8000 (`ngfw.lab.paced_http`, with a `big.bin` to stream, paced by `?rate=`); each host's
dataplane takes its bundle from control. Used by the namespace tests and bench/control_lab_bench.py.
Every process is started by us and stopped, by its handle, when the `control_site` context exits.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ngfw.control.auth import add_token
from ngfw.control.client import ControlClient
from ngfw.lab import dataplane_process
from ngfw.lab.dataplane_process import REPO_ROOT, DataplaneProcess, dataplane_env
from ngfw.lab.hosts import DataplaneHost, TwoHostLab
from ngfw.lab.netns import call_in, free_tcp_port, in_netns, run_in, stop_process

DB_PORT = 8000
DB_FILE_SIZE = 4 * 1024 * 1024
PRINCIPALS = {  # token name -> role: one of each role, and one dataplane token per host
    "admin": "security-admin",
    "alice": "tenant-admin:tenant-a",
    "bob": "tenant-admin:tenant-b",
    "ops": "vm-operator",
    "mapper": "user-mapper",
    "auditor": "viewer",
    "host-a": "dataplane:host-a",
    "host-b": "dataplane:host-b",
}


class SiteError(RuntimeError):
    """Control or a dataplane did not come up, or a version was not realized in time."""


@dataclass
class ControlSite:
    two: TwoHostLab
    workdir: Path
    tokens: dict[str, str]  # name -> token
    token_files: dict[str, Path]
    dataplanes: dict[str, DataplaneProcess] = field(default_factory=dict)  # host name -> process
    control_argv: list[str] = field(default_factory=list)
    control_process: subprocess.Popen[Any] | None = None
    control_log: IO[bytes] | None = None

    def restart_control(self, down: float = 0.0, ready_timeout: float = 30) -> None:
        """Stop `ngfw control` (SIGTERM, as systemd does), leave it down `down` seconds, start it again on the
        same store and address, and wait until it answers."""
        assert self.control_process is not None
        stop_process(self.control_process)
        time.sleep(down)
        self.control_process = run_in(
            self.two.mgmt_ns,
            self.control_argv,
            stdout=self.control_log,
            stderr=self.control_log,
            stdin=subprocess.DEVNULL,
            env=dataplane_env(),
            cwd=str(REPO_ROOT),
        )
        if not _wait(self._answers, ready_timeout):
            raise SiteError(
                f"ngfw control did not answer in {ready_timeout:.0f} s after a restart:\n"
                + (self.workdir / "control.log").read_text(errors="replace")[-3000:]
            )

    def _answers(self) -> bool:
        try:
            self.status()
            return True
        except Exception:  # noqa: BLE001 - not listening yet
            return False

    def api(self, who: str) -> ControlClient:
        return ControlClient(self.two.control_url, self.tokens[who], timeout=10)

    def call(self, who: str, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """One API call as `who`, made from the management namespace; raises ControlError on 4xx/5xx."""
        with in_netns(self.two.mgmt_ns):
            return self.api(who).request(method, path, body, query=query or None)[1]

    def cli(self, who: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`ngfw ARGS --control URL --token-file <who's token>` in the management namespace."""
        argv = [
            sys.executable,
            "-m",
            "ngfw",
            *args,
            "--control",
            self.two.control_url,
            "--token-file",
            str(self.token_files[who]),
        ]
        return call_in(self.two.mgmt_ns, argv, timeout=timeout, env=dataplane_env(), cwd=str(REPO_ROOT))

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("auditor", "GET", "/status")
        return result

    def running_version(self) -> int:
        return int(self.status()["version"])

    def realized(self, version: int, status: Mapping[str, Any]) -> bool:
        hosts = {h["host"]: h for h in status["hosts"]}
        return status["version"] == version and all(
            h.name in hosts and hosts[h.name]["current"] and hosts[h.name]["status"] == "applied"
            for h in self.two.hosts
        )

    def wait_realized(self, version: int, timeout: float = 15, interval: float = 0.02) -> dict[str, Any]:
        """Block until every host acknowledges `version` as applied and current; the status then."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if self.realized(version, status):
                return status
            if time.monotonic() > deadline:
                raise SiteError(f"version {version} not realized on every host in {timeout:.0f} s: {status}")
            time.sleep(interval)

    def commit_as(self, who: str, documents: list[dict[str, Any]], message: str) -> int:
        """Put `documents` into `who`'s candidate and commit it; the new version."""
        self.call(who, "POST", "/candidate/apply", {"documents": documents, "sources": ["lab"] * len(documents)})
        return int(self.call(who, "POST", "/commit", {"message": message})["version"])


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def site_dataplane_argv(site: ControlSite, host: DataplaneHost) -> dataplane_process.ArgvBuilder:
    def argv(policy: str, metrics: str, eve: str) -> list[str]:
        # no --policy: the dataplane drops everything until its agent has applied control's bundle
        return [
            sys.executable,
            "-m",
            "ngfw",
            "dataplane",
            "--wire",
            host.wire,
            "--metrics",
            metrics,
            "--eve",
            eve,
            "--control",
            site.two.control_url,
            "--host",
            host.name,
            "--token-file",
            str(site.token_files[host.name]),
            # each host fetches and verifies the signature sets control distributes, into a cache of its own
            "--signature-cache",
            str(site.workdir / host.name / "signature-sets"),
        ]

    return argv


@contextlib.contextmanager
def control_site(
    two: TwoHostLab, workdir: Path, policy: Path, ready_timeout: float = 30, control_args: Sequence[str] = ()
) -> Iterator[ControlSite]:
    """Control with `policy` committed as version 1 by `admin`, both hosts' dataplanes running it.
    `control_args`: more options of `ngfw control` (`--syslog HOST:PORT`)."""
    procs: list[subprocess.Popen[Any]] = []
    logs: list[IO[bytes]] = []
    site: ControlSite | None = None
    try:
        www = workdir / "db1-www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text("tenant-b database front\n")
        (www / "big.bin").write_bytes(b"\x5a" * DB_FILE_SIZE)
        logs.append(open(workdir / "db1-http.log", "ab"))
        procs.append(
            run_in(
                two.db1.ns,
                [
                    sys.executable,
                    "-m",
                    "ngfw.lab.paced_http",
                    str(DB_PORT),
                    "--bind",
                    two.db1.ipv4,
                    "--directory",
                    str(www),
                ],
                stdout=logs[-1],
                stderr=logs[-1],
                stdin=subprocess.DEVNULL,
            )
        )

        tokens_file = workdir / "tokens.json"
        tokens = {name: add_token(tokens_file, name, role) for name, role in PRINCIPALS.items()}
        token_files = {}
        for name, token in tokens.items():
            token_files[name] = workdir / f"{name}.token"
            token_files[name].write_text(token + "\n")
        logs.append(open(workdir / "control.log", "ab"))
        argv = [
            sys.executable,
            "-m",
            "ngfw",
            "control",
            "--listen",
            f"{two.control_ip}:{two.control_port}",
            "--store",
            f"sqlite:///{workdir / 'control.db'}",
            "--tokens",
            str(tokens_file),
            "--insecure-http",  # the lab's management network is a namespace's: nothing else sees it
            *control_args,
        ]
        site = ControlSite(two, workdir, tokens, token_files, control_argv=argv, control_log=logs[-1])
        site.control_process = run_in(
            two.mgmt_ns,
            argv,
            stdout=logs[-1],
            stderr=logs[-1],
            stdin=subprocess.DEVNULL,
            env=dataplane_env(),
            cwd=str(REPO_ROOT),
        )
        if not _wait(site._answers, ready_timeout):
            raise SiteError(
                f"ngfw control did not answer in {ready_timeout:.0f} s:\n"
                + (workdir / "control.log").read_text(errors="replace")[-3000:]
            )
        for step in (("apply", "-f", str(policy)), ("commit", "-m", f"{policy.name}: two tenants, two hosts")):
            done = site.cli("admin", *step)
            if done.returncode != 0:
                raise SiteError(f"ngfw {step[0]} failed: {done.stderr}")

        for host in two.hosts:
            hostdir = workdir / host.name
            hostdir.mkdir(exist_ok=True)
            site.dataplanes[host.name] = dataplane_process.start_dataplane(
                host.fw_ns,
                "-",
                free_tcp_port(host.fw_ns),
                workdir=hostdir,
                argv_builder=site_dataplane_argv(site, host),
                ready_timeout=ready_timeout,
            )
        site.wait_realized(1, timeout=ready_timeout)
        yield site
    finally:
        if site is not None:
            for dp in site.dataplanes.values():
                dp.stop()
            if site.control_process is not None:
                stop_process(site.control_process)
        for proc in reversed(procs):
            stop_process(proc)
        for f in logs:
            f.close()
