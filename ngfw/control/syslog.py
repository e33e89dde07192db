"""`ngfw control --syslog HOST:PORT`: logins and logouts read from syslog become user mappings (User-ID).

Syslog arrives over UDP (one message per datagram) and TCP (RFC 6587: octet-counted `LEN MSG` frames, or
one message per line), in RFC 5424 or RFC 3164 form; the message part is searched with the `login` and
`logout` regular expressions of every `UserSource` with `spec.syslog` in the running configuration (named
groups `user` and `ip`). A login maps the address to the user for the profile's `ttl`; a logout ends the
mapping of that address if it is that user's. A line that matches no profile is counted (`unmatched`), never
fatal; a login for an address that is no workload's (and that no `unboundAddresses` allow) is counted as
refused. Lines are handled in batches: one revision notification per batch, so a burst of 10,000 logins
costs hosts one delta, not 10,000.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE = 8192
# RFC 5424: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP STRUCTURED-DATA [SP MSG]
_RFC5424 = re.compile(
    r"^<\d{1,3}>\d{1,2} \S+ \S+ \S+ \S+ \S+ (?:-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<msg>.*))?$", re.DOTALL
)
# RFC 3164: <PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG (the timestamp and host are often missing or odd)
_RFC3164 = re.compile(r"^<\d{1,3}>(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ )?(?P<msg>.*)$", re.DOTALL)


def message_of(line: str) -> str | None:
    """The MSG part of a syslog line (RFC 5424 or 3164), None when it is not syslog at all."""
    line = line.rstrip("\r\n\x00")
    if line.startswith("\ufeff"):
        line = line[1:]
    match = _RFC5424.match(line)
    if match:
        msg = match.group("msg") or ""
        return msg[1:] if msg.startswith("\ufeff") else msg
    match = _RFC3164.match(line)
    return match.group("msg") if match else None


@dataclass(frozen=True)
class Profile:
    name: str
    login: re.Pattern[str]
    logout: re.Pattern[str] | None
    ttl: int


class SyslogReceiver:
    """Reads syslog on UDP and TCP `host:port` and feeds `control.users` (ngfw.control.userid)."""

    def __init__(self, control: Any, host: str, port: int, batch: int = 512) -> None:
        self.control = control
        self.batch = batch
        self.counters: dict[str, int] = {
            "lines": 0,
            "logins": 0,
            "logouts": 0,
            "unmatched": 0,
            "malformed": 0,
            "refused": 0,
        }
        self._profiles: tuple[Any, list[Profile]] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.udp, self.tcp = self._bind_pair(host, port)
        self.port = self.udp.getsockname()[1]
        self.tcp.listen(64)
        self._threads: list[threading.Thread] = []

    @staticmethod
    def _bind_pair(host: str, port: int) -> tuple[socket.socket, socket.socket]:
        """UDP and TCP sockets on the same port. With port 0 the kernel picks the UDP port, and that number
        may be taken on TCP by someone else: try again with a fresh pick rather than fail."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for _attempt in range(64 if port == 0 else 1):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            udp.bind((host, port))
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((host, udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                if port != 0:
                    raise
                continue
            return udp, tcp
        raise OSError(f"no port free on both UDP and TCP at {host}")

    # ---- running
    def start(self) -> None:
        for target, name in ((self._serve_udp, "ngfw-syslog-udp"), (self._serve_tcp, "ngfw-syslog-tcp")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for sock in (self.udp, self.tcp):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _serve_udp(self) -> None:
        self.udp.settimeout(0.5)
        while not self._stop.is_set():
            try:
                first = self.udp.recv(MAX_LINE)
            except TimeoutError:
                continue
            except OSError:
                return
            lines = [first]
            self.udp.setblocking(False)
            try:  # what else is queued already: one batch, one notification
                while len(lines) < self.batch:
                    lines.append(self.udp.recv(MAX_LINE))
            except (BlockingIOError, OSError):
                pass
            self.udp.settimeout(0.5)
            self.handle_lines([data.decode("utf-8", "replace") for data in lines])

    def _serve_tcp(self) -> None:
        self.tcp.settimeout(0.5)
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve_connection, args=(conn,), name="ngfw-syslog-conn", daemon=True).start()

    def _serve_connection(self, conn: socket.socket) -> None:
        buffer = b""
        conn.settimeout(1.0)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    break
                buffer += data
                lines, buffer = split_frames(buffer)
                if len(buffer) > 4 * MAX_LINE:  # no end of frame in sight: not syslog
                    self.counters["malformed"] += 1
                    buffer = b""
                if lines:
                    self.handle_lines([line.decode("utf-8", "replace") for line in lines])
            if buffer.strip():
                self.handle_lines([buffer.decode("utf-8", "replace")])

    # ---- lines
    def profiles(self) -> list[Profile]:
        """The syslog profiles of the running configuration's UserSources (compiled once per version)."""
        key = self.control.store.latest()
        if self._profiles is None or self._profiles[0] != key:
            found = []
            documents = self.control.effective(*key) if key[0] > 0 else []
            for d in documents:
                spec = d.get("spec") or {}
                if d.get("kind") == "UserSource" and spec.get("syslog"):
                    s = spec["syslog"]
                    found.append(
                        Profile(
                            d["metadata"]["name"],
                            re.compile(s["login"]),
                            re.compile(s["logout"]) if s.get("logout") else None,
                            int(s.get("ttl", 3600)),
                        )
                    )
            self._profiles = (key, found)
        return self._profiles[1]

    def handle_lines(self, lines: list[str]) -> None:
        from ngfw.control.service import ApiError
        from ngfw.control.userid import MappingError

        profiles = self.profiles()
        book = self.control._addresses()  # once per batch: the store is read once, not per line
        users = self.control.users
        changed = False
        with self._lock:
            for line in lines:
                self.counters["lines"] += 1
                message = message_of(line)
                if message is None:
                    self.counters["malformed"] += 1
                    continue
                for profile in profiles:
                    if profile.logout is not None and (m := profile.logout.search(message)):
                        if users.delete(m.group("ip"), m.group("user"), notify=False) is not None:
                            changed = True
                        self.counters["logouts"] += 1
                        break
                    if m := profile.login.search(message):
                        try:
                            address, vm = self.control.resolve_address(m.group("ip"), book)
                            users.put(
                                address,
                                m.group("user"),
                                profile.ttl,
                                f"syslog:{profile.name}",
                                vm,
                                "syslog",
                                notify=False,
                            )
                            changed = True
                            self.counters["logins"] += 1
                        except (ApiError, MappingError) as exc:
                            self.counters["refused"] += 1
                            log.debug("syslog login refused: %s", getattr(exc, "message", exc))
                        break
                else:
                    self.counters["unmatched"] += 1
        if changed:
            users.notify()


def split_frames(buffer: bytes) -> tuple[list[bytes], bytes]:
    """Complete messages of a TCP syslog stream (RFC 6587 octet counting, or newline-terminated) and the rest."""
    out = []
    while buffer:
        head, space, rest = buffer.partition(b" ")
        if head.isdigit() and space and len(head) <= 5:  # octet counting: "LEN SP MSG"
            n = int(head)
            if len(rest) < n:
                break
            out.append(rest[:n])
            buffer = rest[n:]
            continue
        line, newline, rest = buffer.partition(b"\n")
        if not newline:
            break
        if line.strip():
            out.append(line)
        buffer = rest
    return out, buffer


def bench_lines(
    n: int, template: str = "<38>{ts} host sshd[1]: Accepted publickey for user{i} from {ip} port 22 ssh2"
) -> list[str]:
    ts = time.strftime("%b %d %H:%M:%S").replace(" 0", "  ", 1)
    return [template.format(ts=ts, i=i, ip=f"10.77.{i // 250 % 250}.{i % 250 + 1}") for i in range(n)]
