"""Run commands in a lab guest and read their output and exit status, over its second serial port.

The lab guest's init (`ngfw.lab.guest_image.INIT_SCRIPT`) reads requests on ttyS1, which QEMU
connects to a unix socket (`GuestSpec.serial_sockets=("agent",)`). A request is one line,
`ID SECONDS BASE64-SCRIPT`; the guest runs the script with `sh` (killed after SECONDS) and answers

    <<ngfw ID begin>>
    ...the script's stdout and stderr...
    <<ngfw ID end RC>>

```python
agent = GuestAgent(guest.serial_path("agent"))
agent.run("ip -o -4 addr show eth0", timeout=10)   # -> GuestResult(returncode=0, output="2: eth0 ...")
job = agent.start("wget -q -O - http://10.77.0.100/big.bin | sha256sum")   # runs in the background
agent.wait(job, timeout=60)                          # -> GuestResult of the job
guest_exec(guest.serial_path("agent"), "uname -r", timeout=10)
```
The socket serves one client at a time: each call connects, asks, reads and disconnects, so calls
from several processes take turns (a call waits while another holds the socket). The agent's state
lives in the guest (jobs write `/tmp/job-ID.out` and `.rc`), so it survives a live migration; after
one, talk to the destination instance's socket.
"""

from __future__ import annotations

import base64
import re
import secrets
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path

CONNECT_TIMEOUT = 10.0


class GuestAgentError(RuntimeError):
    """The guest did not answer in time, or its socket is gone."""


@dataclass(frozen=True)
class GuestResult:
    returncode: int
    output: str


@dataclass(frozen=True)
class GuestJob:
    """A script started in the background in the guest (`GuestAgent.start`)."""

    ident: str
    script: str


def encode_request(ident: str, script: str, limit_s: int) -> bytes:
    """One request line: `ID SECONDS BASE64`."""
    if not re.fullmatch(r"[0-9a-zA-Z_]+", ident):
        raise ValueError(f"bad request id {ident!r}")
    return f"{ident} {max(1, int(limit_s))} {base64.b64encode(script.encode()).decode()}\n".encode()


def parse_reply(buffer: bytes, ident: str) -> GuestResult | None:
    """The result for request `ident` if `buffer` holds all of it (anything before its begin line is
    ignored: a late answer to an abandoned request, or noise), else None."""
    begin = re.search(rb"<<ngfw " + ident.encode() + rb" begin>>\r?\n", buffer)
    if not begin:
        return None
    end = re.compile(rb"\r?\n<<ngfw " + ident.encode() + rb" end (\d+)>>").search(buffer, begin.end() - 1)
    if not end:
        return None
    # the agent prints a newline of its own before the end line: the output is what lies between
    output = buffer[begin.end() : end.start()] if end.start() >= begin.end() else b""
    return GuestResult(int(end.group(1)), output.decode(errors="replace"))


class GuestAgent:
    """Client of the lab guest's command agent on a serial port's unix socket."""

    def __init__(self, socket_path: str | Path, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.socket_path = Path(socket_path)
        self.connect_timeout = connect_timeout

    def _connect(self, deadline: float) -> socket.socket:
        last: OSError | None = None
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(self.socket_path))
                return sock
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                sock.close()
                last = exc
            if time.monotonic() >= deadline:
                raise GuestAgentError(f"guest agent socket {self.socket_path} does not accept connections: {last}")
            time.sleep(0.05)

    def run(self, script: str, timeout: float = 30.0) -> GuestResult:
        """Run `script` (sh) in the guest; its output and exit status. The guest kills it after `timeout` s."""
        ident = secrets.token_hex(6)
        # the guest kills the script after `timeout`; then its answer has to come back through a busy TCG guest
        deadline = time.monotonic() + timeout + min(5.0, 1.0 + timeout)
        sock = self._connect(time.monotonic() + self.connect_timeout)
        try:
            sock.sendall(encode_request(ident, script, int(timeout + 0.999)))
            buffer = b""
            while True:
                found = parse_reply(buffer, ident)
                if found is not None:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GuestAgentError(
                        f"guest did not answer {script[:80]!r} within {timeout:g} s (got {buffer[-300:]!r})"
                    )
                sock.settimeout(remaining)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise GuestAgentError(f"guest agent socket closed while running {script[:80]!r}")
                buffer += chunk
        finally:
            sock.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the agent answers (the guest has booted this far)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if self.run("echo ok", timeout=min(3.0, max(1.0, deadline - time.monotonic()))).output.strip() == "ok":
                    return
            except GuestAgentError as exc:
                last = exc
            time.sleep(0.1)
        raise GuestAgentError(f"guest agent at {self.socket_path} not ready within {timeout:.0f} s: {last}")

    def start(self, script: str, timeout: float = 10.0) -> GuestJob:
        """Start `script` in the background in the guest; `wait` returns its result."""
        job = GuestJob(secrets.token_hex(6), script)
        body = (
            f"( {script}\n) > /tmp/job-{job.ident}.out 2>&1 < /dev/null; "
            f"echo $? > /tmp/job-{job.ident}.rc.tmp; mv /tmp/job-{job.ident}.rc.tmp /tmp/job-{job.ident}.rc"
        )
        done = self.run(f"sh -c {shlex.quote(body)} > /dev/null 2>&1 &\necho started", timeout=timeout)
        if done.returncode != 0 or "started" not in done.output:
            raise GuestAgentError(f"guest could not start {script[:80]!r}: {done.output[-300:]}")
        return job

    def poll(self, job: GuestJob, timeout: float = 10.0) -> GuestResult | None:
        """The job's result if it has ended, else None."""
        done = self.run(
            f"if [ -e /tmp/job-{job.ident}.rc ]; then cat /tmp/job-{job.ident}.rc; "
            f"cat /tmp/job-{job.ident}.out; else echo running; fi",
            timeout=timeout,
        )
        first, _, rest = done.output.partition("\n")
        if first.strip() == "running":
            return None
        return GuestResult(int(first.strip()), rest)

    def wait(self, job: GuestJob, timeout: float, interval: float = 0.5) -> GuestResult:
        """Poll until the job ends; GuestAgentError after `timeout` s (the job runs on in the guest)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.poll(job)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise GuestAgentError(f"guest job {job.script[:80]!r} still running after {timeout:.0f} s")
            time.sleep(interval)


def guest_exec(socket_path: str | Path, script: str, timeout: float = 30.0) -> GuestResult:
    """Run `script` in the guest whose agent listens on `socket_path`: (returncode, output)."""
    return GuestAgent(socket_path).run(script, timeout)
