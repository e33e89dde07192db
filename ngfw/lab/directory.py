"""A real LDAP directory for the lab and the tests: Debian's slapd on loopback, with a small tree it loads.

    with Directory(tmp_dir) as d:           # slapd -h ldap://127.0.0.1:PORT/, suffix dc=lab, mdb backend
        d.load_lab_tree()                   # ou=people (alice, bob, carol, dave), ou=groups (finance nests
        d.set_members("finance", [...])     #   finance-auditors), changed as the tests need

Users are inetOrgPerson entries `uid=NAME,ou=people,dc=lab`; groups are groupOfNames `cn=NAME,ou=groups,dc=lab`
whose `member`s are users or other groups (nested).

    Directory(tmp_dir, tls=(cert, key), require_bind=True)   # ldaps:// on a second port (`ldaps_url`), and
                                                              # nothing readable without a bind: control binds as
                                                              # READER_DN with READER_PASSWORD (load_lab_tree adds it)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

SLAPD = shutil.which("slapd") or "/usr/sbin/slapd"
SUFFIX = "dc=lab"
ADMIN_DN = "cn=admin,dc=lab"
ADMIN_PASSWORD = "lab-admin"
READER_DN = "cn=ngfw-reader,dc=lab"  # the account a firewall reads groups as
READER_PASSWORD = "reader-secret"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
LAB_USERS = ("alice", "bob", "carol", "dave")
LAB_GROUPS = {
    "finance-auditors": ["user:dave"],
    "finance": ["user:alice", "user:bob", "group:finance-auditors"],
    "engineering": ["user:carol"],
}


def user_dn(name: str) -> str:
    return f"uid={name},ou=people,{SUFFIX}"


def group_dn(name: str) -> str:
    return f"cn={name},ou=groups,{SUFFIX}"


def _member_dn(ref: str) -> str:
    kind, _, name = ref.partition(":")
    return group_dn(name) if kind == "group" else user_dn(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Directory:
    def __init__(
        self,
        directory: str | Path,
        port: int | None = None,
        netns: str | None = None,
        tls: tuple[Path, Path] | None = None,
        require_bind: bool = False,
    ) -> None:
        """`netns`: run slapd (and talk to it) inside that network namespace, on its loopback. `tls`: (certificate,
        key) PEM files: slapd also serves ldaps:// on `ldaps_port`. `require_bind`: anonymous clients may only
        bind (read nothing)."""
        self.dir = Path(directory)
        self.netns = netns
        self.port = port or _free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.tls = tls
        self.ldaps_port = _free_port() if tls else 0
        self.ldaps_url = f"ldaps://127.0.0.1:{self.ldaps_port}" if tls else ""
        self.require_bind = require_bind
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Directory:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        if not os.path.exists(SLAPD):
            raise RuntimeError("slapd is not installed (Debian package slapd, deploy/packages-lab.txt)")
        db = self.dir / "db"
        db.mkdir(parents=True, exist_ok=True)
        conf = self.dir / "slapd.conf"
        conf.write_text(
            "\n".join(
                [f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS]
                + [
                    f"pidfile {self.dir / 'slapd.pid'}",
                    "modulepath /usr/lib/ldap",
                    "moduleload back_mdb",
                    "database mdb",
                    f'suffix "{SUFFIX}"',
                    f'rootdn "{ADMIN_DN}"',
                    f"rootpw {ADMIN_PASSWORD}",
                    f"directory {db}",
                    "maxsize 104857600",
                ]
                + (
                    [
                        "access to attrs=userPassword by anonymous auth by * none",
                        "access to * by users read by anonymous auth by * none",
                    ]
                    if self.require_bind
                    else ["access to * by * read"]
                )
            )
            + "\n"
        )
        listen = f"{self.url}/"
        if self.tls:
            cert, key = self.tls
            with conf.open("r+") as f:  # global TLS options go before the first `database`
                text = f.read()
                f.seek(0)
                f.write(f"TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n" + text)
            listen += f" {self.ldaps_url}/"
        # -d 0: stay in the foreground (the test owns the process), log nothing
        argv = [SLAPD, "-f", str(conf), "-h", listen, "-d", "0"]
        if self.netns:
            from ngfw.lab.netns import run_in

            self.process = run_in(self.netns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        else:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"slapd exited: {self.process.stderr.read().decode(errors='replace')[-500:]}"
                    if self.process.stderr
                    else "slapd exited"
                )
            try:
                with self._here():
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd did not listen on {self.url} within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def pause(self) -> None:
        """Stop answering (SIGSTOP): the directory is down."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def _here(self) -> Any:
        """Where slapd's loopback is: its namespace (for this thread), or here."""
        if self.netns:
            from ngfw.lab.netns import in_netns

            return in_netns(self.netns)
        import contextlib

        return contextlib.nullcontext()

    # ---- the tree
    def connect(self) -> Any:
        from ldap3 import Connection, Server

        return Connection(
            Server("127.0.0.1", port=self.port, connect_timeout=5),
            user=ADMIN_DN,
            password=ADMIN_PASSWORD,
            auto_bind=True,
            raise_exceptions=True,
        )

    def load_lab_tree(self, users: tuple[str, ...] = LAB_USERS, groups: dict[str, list[str]] | None = None) -> None:
        groups = LAB_GROUPS if groups is None else groups
        with self._here():
            conn = self.connect()
        try:
            conn.add(SUFFIX, ["dcObject", "organization"], {"o": "ngfw lab", "dc": "lab"})
            conn.add(f"ou=people,{SUFFIX}", ["organizationalUnit"], {"ou": "people"})
            conn.add(f"ou=groups,{SUFFIX}", ["organizationalUnit"], {"ou": "groups"})
            conn.add(
                READER_DN,
                ["organizationalRole", "simpleSecurityObject"],
                {"cn": "ngfw-reader", "userPassword": READER_PASSWORD},
            )
            for name in users:
                conn.add(user_dn(name), ["inetOrgPerson"], {"uid": name, "cn": name, "sn": name})
            for name, members in groups.items():
                conn.add(group_dn(name), ["groupOfNames"], {"cn": name, "member": [_member_dn(m) for m in members]})
        finally:
            conn.unbind()

    def set_members(self, group: str, members: list[str]) -> None:
        from ldap3 import MODIFY_REPLACE

        with self._here():
            conn = self.connect()
        try:
            conn.modify(group_dn(group), {"member": [(MODIFY_REPLACE, [_member_dn(m) for m in members])]})
        finally:
            conn.unbind()
