"""Run programs and open sockets inside a named network namespace, without `ip netns exec`.

A child process enters the namespace in `preexec_fn` (after fork, before exec) through
`pyroute2.netns.setns`; the calling thread enters one temporarily with `in_netns` to open
sockets or touch per-namespace files (`/proc/sys/net`, `/proc/thread-self/net`), which keep
their namespace after the thread leaves it.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pyroute2 import netns

NETNS_RUN_DIR = "/var/run/netns"

# Loaded in the parent: loading a library between fork and exec is not async-signal-safe.
_LIBC = ctypes.CDLL(None, use_errno=True)


class NamespaceMissing(RuntimeError):
    """The named network namespace does not exist."""


def ns_exists(ns: str) -> bool:
    return ns in netns.listnetns()


def _require(ns: str) -> None:
    if not ns_exists(ns):
        raise NamespaceMissing(f"network namespace {ns!r} does not exist (is the lab up?)")


def _enter(ns: str, then: Callable[[], Any] | None) -> Callable[[], None]:
    def preexec() -> None:
        # flags=0: never create a namespace by accident from inside a forked child.
        netns.setns(ns, flags=0, libc=_LIBC)
        if then is not None:
            then()

    return preexec


def run_in(ns: str, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
    """Start `argv` inside namespace `ns`; keyword arguments go to `subprocess.Popen`."""
    _require(ns)
    then = popen_kwargs.pop("preexec_fn", None)
    return subprocess.Popen(list(argv), preexec_fn=_enter(ns, then), **popen_kwargs)


def call_in(ns: str, argv: Sequence[str], timeout: float, **popen_kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside `ns` to completion (killed after `timeout` s); return code and text output."""
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    popen_kwargs.setdefault("stdout", subprocess.PIPE)
    popen_kwargs.setdefault("stderr", subprocess.PIPE)
    with run_in(ns, argv, text=True, **popen_kwargs) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise subprocess.TimeoutExpired(list(argv), timeout, output=out, stderr=err) from None
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


def check_output_in(ns: str, argv: Sequence[str], timeout: float) -> str:
    """Run `argv` inside `ns`; return its stdout, raise CalledProcessError on a non-zero exit."""
    done = call_in(ns, argv, timeout)
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, list(argv), done.stdout, done.stderr)
    return done.stdout


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
    """Stop one process we started: `sig`, then SIGKILL after `timeout` s. Returns its exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass
    return proc.returncode


@contextlib.contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Move the calling thread into `ns` for the block, and back afterwards (also on errors)."""
    _require(ns)
    netns.pushns()
    try:
        netns.setns(ns, flags=0, libc=_LIBC)
        yield
    finally:
        netns.popns(libc=_LIBC)


def socket_in(ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket that lives in namespace `ns`."""
    with in_netns(ns):
        return socket.socket(family, kind)


def write_sysctl(ns: str, key: str, value: str | int) -> None:
    """Set a `net.*` sysctl in `ns` (key in dotted form, e.g. net.ipv6.conf.all.disable_ipv6)."""
    path = "/proc/sys/" + key.replace(".", "/")
    with in_netns(ns), open(path, "w") as f:
        f.write(f"{value}\n")


def read_proc_net(ns: str, name: str) -> str:
    """The text of /proc/net/NAME (tcp, tcp6, udp, udp6, ...) as seen from `ns`."""
    with in_netns(ns), open(f"/proc/thread-self/net/{name}") as f:
        return f.read()


class _NetnsHTTPConnection(http.client.HTTPConnection):
    def __init__(self, ns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ns = ns

    def connect(self) -> None:
        with in_netns(self._ns):
            self.sock = socket.create_connection((self.host, self.port), self.timeout)


def http_get(ns: str, host: str, port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    """GET http://host:port/path from inside `ns`; returns (status, body). Raises OSError if unreachable."""
    conn = _NetnsHTTPConnection(ns, host, port, timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer from {host}:{port}: {exc!r}") from exc
    finally:
        conn.close()


def free_tcp_port(ns: str, host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on in `ns` right now (the kernel picks it)."""
    with contextlib.closing(socket_in(ns)) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def pids_in(ns: str) -> list[int]:
    """Pids of processes whose network namespace is `ns` (for cleaning up after a crashed run)."""
    return [pid for pid in netns.ns_pids().get(ns, []) if pid != os.getpid()]
