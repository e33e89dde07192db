"""Policies, role tokens and a running control server for the control-plane tests."""

from __future__ import annotations

import copy
import socket
import ssl
from pathlib import Path
from typing import Any

from ngfw.control.auth import TokenFile, add_token
from ngfw.control.client import ControlClient
from ngfw.control.server import ControlServer
from ngfw.control.service import Control
from ngfw.control.store import Store, open_store

ROLES = {
    "alice": "security-admin",
    "bob": "security-admin",
    "tina": "tenant-admin:tenant-a",
    "otto": "vm-operator",
    "uma": "user-mapper",
    "vera": "viewer",
    "host-a": "dataplane:host-a",
    "host-b": "dataplane:host-b",
    "fleet": "dataplane",
}


def resource_doc(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A resource document as control takes it."""
    return {"apiVersion": "ngfw/v1", "kind": kind, "metadata": metadata, "spec": spec}


def workload(vsys: str, name: str, mac: str, ip: str, **labels: str) -> dict[str, Any]:
    return resource_doc(
        "Workload",
        {"name": name, "vsys": vsys, "labels": labels},
        {"interfaces": [{"mac": mac, "ips": [ip]}], "host": "host-a"},
    )


def two_tenants() -> list[dict[str, Any]]:
    """tenant-a (web, db) may reach tenant-b's range on any TCP port; tenant-b admits tcp/80 only."""
    return copy.deepcopy(
        [
            resource_doc("VirtualSystem", {"name": "tenant-a"}, {"limits": {"maxSessions": 1000}}),
            workload("tenant-a", "web-01", "02:00:00:00:01:01", "10.77.0.11", tier="web"),
            workload("tenant-a", "db-01", "02:00:00:00:01:21", "10.77.0.21", tier="db"),
            resource_doc("Group", {"name": "web", "vsys": "tenant-a"}, {"selector": {"tier": "web"}}),
            resource_doc("Group", {"name": "db", "vsys": "tenant-a"}, {"selector": {"tier": "db"}}),
            resource_doc(
                "SecurityPolicy",
                {"name": "main", "vsys": "tenant-a"},
                {
                    "rules": [
                        {
                            "name": "web-to-db",
                            "from": ["group:web"],
                            "to": ["group:db"],
                            "services": ["tcp/5432"],
                            "action": "allow",
                        },
                        {
                            "name": "web-to-b",
                            "from": ["group:web"],
                            "to": ["cidr:10.78.0.0/24"],
                            "services": ["tcp"],
                            "action": "allow",
                        },
                        {"name": "default-deny", "from": ["any"], "to": ["any"], "action": "deny"},
                    ]
                },
            ),
            resource_doc("VirtualSystem", {"name": "tenant-b"}, {}),
            workload("tenant-b", "app-01", "02:00:00:00:02:01", "10.78.0.11", tier="app"),
            resource_doc("Group", {"name": "app", "vsys": "tenant-b"}, {"selector": {"tier": "app"}}),
            resource_doc(
                "SecurityPolicy",
                {"name": "main", "vsys": "tenant-b"},
                {
                    "rules": [
                        {
                            "name": "a-to-app-http",
                            "from": ["cidr:10.77.0.0/24"],
                            "to": ["group:app"],
                            "services": ["tcp/80"],
                            "action": "allow",
                        },
                    ]
                },
            ),
        ]
    )


def find(documents: list[dict[str, Any]], kind: str, name: str, vsys: str | None = None) -> dict[str, Any]:
    for document in documents:
        meta = document["metadata"]
        if document["kind"] == kind and meta["name"] == name and (vsys is None or meta.get("vsys", name) == vsys):
            return document
    raise KeyError((kind, vsys, name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningControl:
    """`ngfw control` in this process on 127.0.0.1: real HTTP, a real store, one client per role."""

    def __init__(
        self, store_url: str, tokens_path: Path, port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.store_url = store_url
        self.tokens_path = tokens_path
        self.ssl_context = ssl_context
        self.store: Store = open_store(store_url)
        self.control = Control(self.store)
        self.server = ControlServer(self.control, TokenFile(tokens_path), "127.0.0.1", port, ssl_context=ssl_context)
        self.server.start()
        self.url = self.server.url
        self.port = int(self.url.rsplit(":", 1)[1])
        self.stopped = False

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.server.stop()
            self.control.close()
            self.store.close()

    def restart(self) -> RunningControl:
        """A new control process on the same store and port (what a systemd restart does)."""
        self.stop()
        return RunningControl(self.store_url, self.tokens_path, self.port, self.ssl_context)


def make_tokens(path: Path) -> dict[str, str]:
    return {name: add_token(path, name, role) for name, role in ROLES.items()}


def client(control: RunningControl, tokens: dict[str, str], name: str | None) -> ControlClient:
    return ControlClient(control.url, tokens[name] if name else None, timeout=10)


USERS_SERVER_MAC = "02:00:00:00:02:01"  # where the User-ID tests' web-01 -> 10.77.0.100:80 frames go


def users_policy() -> list[dict[str, Any]]:
    """two_tenants with User-ID: `finance-web` allows web-01 -> 10.77.0.100:80 for tenant-a's UserGroup finance
    (alice), and a UserSource letting mappings name 10.99.0.0/24 (no workload's)."""
    documents = two_tenants()
    documents.append(resource_doc("UserGroup", {"name": "finance", "vsys": "tenant-a"}, {"members": ["alice"]}))
    documents.append(resource_doc("UserSource", {"name": "vpn"}, {"unboundAddresses": ["10.99.0.0/24"]}))
    rules = next(d for d in documents if d["kind"] == "SecurityPolicy" and d["metadata"]["vsys"] == "tenant-a")
    rules["spec"]["rules"].insert(
        0,
        {
            "name": "finance-web",
            "from": ["vm:web-01"],
            "to": ["cidr:10.77.0.100/32"],
            "services": ["tcp/80"],
            "users": ["group:finance"],
            "action": "allow",
        },
    )
    return documents


def put_user_mapping(c: ControlClient, **body: Any) -> dict[str, Any]:
    """PUT /identity/users with `body`; the answer."""
    return c.request("PUT", "/identity/users", body)[1]  # type: ignore[no-any-return]
