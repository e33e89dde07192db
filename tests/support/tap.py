"""TAP devices whose far sides are VMs (here: namespaces): the two-VM policy and handing a TAP to its VM, shared
by the `--tap` namespace tests (the `tap_host` fixture is in tests/netns/conftest.py)."""

from __future__ import annotations

import sys

from pyroute2 import IPRoute

TAP_POLICY = """
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-t}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: vm-a, vsys: tenant-t, labels: {tier: app}}
spec: {interfaces: [{mac: "02:00:00:00:0a:01", ips: ["10.88.0.1"]}]}
---
apiVersion: ngfw/v1
kind: Workload
metadata: {name: vm-b, vsys: tenant-t, labels: {tier: db}}
spec: {interfaces: [{mac: "02:00:00:00:0a:02", ips: ["10.88.0.2"]}]}
---
apiVersion: ngfw/v1
kind: SecurityPolicy
metadata: {name: main, vsys: tenant-t}
spec:
  rules:
    - {name: ping, from: [any], to: [any], services: [icmp], action: allow}
    - {name: app-to-db, from: [vm:vm-a], to: [vm:vm-b], services: [tcp/5432], action: allow, log: true}
    - {name: default-deny, from: [any], to: [any], action: deny, log: true}
"""

TAP_VMS = {"tapa": ("02:00:00:00:0a:01", "10.88.0.1"), "tapb": ("02:00:00:00:0a:02", "10.88.0.2")}


def move_tap_to_vm(fw_ns: str, tap: str, vm_ns: str) -> None:
    """Hand the TAP's far side to the 'VM' namespace, as a hypervisor hands it to a guest."""
    mac, ip = TAP_VMS[tap]
    with IPRoute(netns=fw_ns, flags=0) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=tap)[0], net_ns_fd=vm_ns)
    with IPRoute(netns=vm_ns, flags=0) as ipr:
        index = ipr.link_lookup(ifname=tap)[0]
        ipr.link("set", index=index, address=mac)
        ipr.addr("add", index=index, address=ip, prefixlen=24)
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def tap_dataplane_argv(policy_path: str, metrics: str, eve: str) -> list[str]:
    """`ngfw dataplane` on the two TAPs of TAP_VMS, with no session table left behind (a namespace of its own)."""
    return [sys.executable, "-m", "ngfw", "dataplane", "--tap", "tapa", "--tap", "tapb"] + [
        "--policy",
        policy_path,
        "--metrics",
        metrics,
        "--eve",
        eve,
        "--state-dir",
        "none",
    ]
