"""Real servers in the lab's server namespace: nginx (HTTP on :80 and :8443), dnsmasq (DNS), sshd.

nginx paces a response when the URL asks for it: `/big.bin?rate=2m` arrives at 2 MiB/s.

Every server runs in the foreground from a private temporary directory (config, keys, logs,
pid files) and is stopped, by its pid, when the `lab_services` context exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ngfw.lab.netns import call_in, read_proc_net, run_in, stop_process
from ngfw.lab.topology import Lab

HTTP_PORTS = (80, 8443)
DNS_PORT = 53
SSH_PORT = 22
DNS_NAME = "example.internal"
BIG_FILE = "big.bin"
BIG_FILE_SIZE = 10 * 1024 * 1024
INDEX_HTML = "<!doctype html><title>ngfw lab</title><p>hello from the ngfw lab server</p>\n"

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"


def render_nginx_conf(root: Path, addresses: list[str], ports: tuple[int, ...] = HTTP_PORTS, workers: int = 1) -> str:
    """An nginx.conf that serves `root` on every address:port, keeping all state under `root`'s parent."""
    base = root.parent
    listens = "\n".join(
        f"        listen {'[' + a + ']' if ':' in a else a}:{p} backlog=4096;" for a in addresses for p in ports
    )
    return f"""\
daemon off;
worker_processes {workers};
pid {base}/nginx.pid;
error_log {base}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {base}/client_body;
    proxy_temp_path {base}/proxy;
    fastcgi_temp_path {base}/fastcgi;
    default_type application/octet-stream;
    sendfile on;
    # `?rate=2m` paces a download (bytes per second, k/m suffixes): long enough to outlast a migration
    map $arg_rate $ngfw_limit_rate {{
        default 0;
        "~^[0-9]+[kKmM]?$" $arg_rate;
    }}
    server {{
{listens}
        root {root};
        limit_rate $ngfw_limit_rate;
        location / {{ index index.html; }}
    }}
}}
"""


def render_dnsmasq_args(base: Path, addresses: list[str], name: str, answer: str) -> list[str]:
    """dnsmasq argv: authoritative-looking answer `name A answer`, nothing read from /etc, no forwarding."""
    return [
        "dnsmasq",
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--bind-interfaces",
        *[f"--listen-address={a}" for a in addresses],
        "--except-interface=lo",
        f"--port={DNS_PORT}",
        f"--address=/{name}/{answer}",
        "--user=root",
        f"--pid-file={base}/dnsmasq.pid",
        f"--log-facility={base}/dnsmasq.log",
    ]


def render_sshd_config(base: Path, addresses: list[str], port: int = SSH_PORT) -> str:
    listens = "\n".join(f"ListenAddress {'[' + a + ']' if ':' in a else a}:{port}" for a in addresses)
    return f"""\
{listens}
HostKey {base}/ssh_host_ed25519_key
PidFile {base}/sshd.pid
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
StrictModes no
"""


def parse_listeners(proc_net_text: str, state: str) -> set[int]:
    """Local ports of sockets in `state` (hex, e.g. "0A" = LISTEN) from /proc/net/{tcp,udp}[6] text."""
    ports = set()
    for line in proc_net_text.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 3 and cols[3] == state:
            ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def listening(ns: str, proto: str) -> set[int]:
    """Ports with a listening TCP socket (proto "tcp") or a bound UDP socket (proto "udp") in `ns`."""
    state = TCP_LISTEN if proto == "tcp" else UDP_UNCONNECTED
    return parse_listeners(read_proc_net(ns, proto), state) | parse_listeners(read_proc_net(ns, proto + "6"), state)


@dataclass
class Services:
    """The running servers of one `lab_services` context."""

    lab: Lab
    workdir: Path
    procs: dict[str, subprocess.Popen[Any]] = field(default_factory=dict)

    @property
    def big_file_url(self) -> str:
        return f"http://{self.lab.srv.ipv4}/{BIG_FILE}"

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _wait(check: Any, what: str, procs: dict[str, subprocess.Popen[Any]], workdir: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        for name, proc in procs.items():
            if proc.poll() is not None:
                log = (workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}:\n{log}")
        time.sleep(0.05)
    raise TimeoutError(f"{what} not listening after {timeout:.0f} s")


def _write_site(root: Path) -> None:
    root.mkdir(parents=True)
    (root / "index.html").write_text(INDEX_HTML)
    block = bytes(range(256)) * 4096  # 1 MiB of a recognisable pattern
    with open(root / BIG_FILE, "wb") as f:
        for _ in range(BIG_FILE_SIZE // len(block)):
            f.write(block)


def _start(lab: Lab, name: str, argv: list[str], workdir: Path) -> subprocess.Popen[Any]:
    out = open(workdir / f"{name}.log", "ab")
    try:
        # A session of its own: a terminal's Ctrl-C reaches us, and we stop the servers in order.
        return run_in(lab.srv.ns, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    finally:
        out.close()


@contextlib.contextmanager
def lab_services(lab: Lab, timeout: float = 10.0, nginx_workers: int = 1) -> Iterator[Services]:
    """Run nginx (:80, :8443), a DNS server (example.internal -> srv) and sshd (:22) in the srv namespace."""
    workdir = Path(tempfile.mkdtemp(prefix=f"{lab.prefix}-srv-"))
    os.chmod(workdir, 0o755)  # nginx workers run as nobody and read the site from here
    services = Services(lab, workdir)
    addresses = [lab.srv.ipv4, lab.srv.ipv6]
    try:
        _write_site(workdir / "www")
        (workdir / "nginx.conf").write_text(render_nginx_conf(workdir / "www", addresses, workers=nginx_workers))
        services.procs["nginx"] = _start(lab, "nginx", ["nginx", "-c", str(workdir / "nginx.conf")], workdir)

        services.procs["dnsmasq"] = _start(
            lab, "dnsmasq", render_dnsmasq_args(workdir, addresses, DNS_NAME, lab.srv.ipv4), workdir
        )

        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / "ssh_host_ed25519_key")]
        subprocess.run(keygen, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        (workdir / "sshd_config").write_text(render_sshd_config(workdir, addresses))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        services.procs["sshd"] = _start(lab, "sshd", [sshd, "-D", "-e", "-f", str(workdir / "sshd_config")], workdir)

        ns, procs = lab.srv.ns, services.procs
        _wait(lambda: set(HTTP_PORTS) <= listening(ns, "tcp"), "nginx", procs, workdir, timeout)
        _wait(lambda: DNS_PORT in listening(ns, "udp"), "dnsmasq", procs, workdir, timeout)
        _wait(lambda: SSH_PORT in listening(ns, "tcp"), "sshd", procs, workdir, timeout)
        yield services
    finally:
        for proc in reversed(list(services.procs.values())):
            # nginx: SIGQUIT is its graceful shutdown, SIGTERM its fast one; we want fast.
            stop_process(proc, timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


def dns_lookup(lab: Lab, ns: str, name: str = DNS_NAME, timeout: float = 5.0) -> str:
    """Ask the lab DNS server for `name` A from namespace `ns` (with dig); returns the answer ("" if none)."""
    argv = ["dig", "+short", "+time=1", "+tries=1", f"@{lab.srv.ipv4}", name, "A"]
    return call_in(ns, argv, timeout=timeout).stdout.strip()
