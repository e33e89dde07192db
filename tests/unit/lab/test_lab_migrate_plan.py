"""`ngfw lab migrate`'s decisions without a lab: what can move where, the report line, the CLI's arguments."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ngfw.lab.guest_image import GuestImage
from ngfw.lab.migrate import MigrateError, MoveReport, check_move
from ngfw.lab.qemu import MigrationStats
from ngfw.lab.workloads import LabHost, Placement, lab_endpoints, lab_hosts, vm_spec

TWO = lab_hosts("ngfw", two_hosts=True)
PLACES = {
    "web1": Placement("host-a", "vm", "web1.host-a"),
    "web2": Placement("host-a", "netns"),
    "db1": Placement("host-b", "netns"),
}


def test_a_workload_moves_to_the_other_host() -> None:
    assert check_move("ngfw", PLACES, TWO, "web1", "host-b") == PLACES["web1"]
    assert check_move("ngfw", PLACES, TWO, "db1", "host-a") == PLACES["db1"]


@pytest.mark.parametrize(
    ("workload", "to", "hosts", "message"),
    [
        ("web9", "host-b", TWO, "unknown workload 'web9': the lab's workloads are db1, web1, web2"),
        ("web1", "host-c", TWO, "unknown host 'host-c': the lab's hosts are host-a and host-b"),
        ("web2", "host-a", TWO, "web2 is already on host-a"),
        (
            "web1",
            "host-b",
            lab_hosts("ngfw", two_hosts=False),
            "lab 'ngfw' is not a two-host lab: build it with `ngfw lab up --hosts 2`",
        ),
    ],
)
def test_a_move_no_hypervisor_could_make_is_refused_in_one_sentence(
    workload: str, to: str, hosts: dict[str, LabHost], message: str
) -> None:
    with pytest.raises(MigrateError) as caught:
        check_move("ngfw", PLACES, hosts, workload, to)
    assert str(caught.value) == message


def test_the_hosts_receive_migrations_on_their_management_addresses() -> None:
    assert {h.name: (h.host_ns, h.mgmt_ip) for h in TWO.values()} == {
        "host-a": ("ngfw-host", "10.79.0.21"),
        "host-b": ("ngfw-host2", "10.79.0.22"),
    }


def test_the_report_line_says_what_moved_and_how_long_it_took() -> None:
    stats = MigrationStats(total_time_ms=329, downtime_ms=49, setup_time_ms=3, transferred_bytes=67_108_864, info={})
    vm = MoveReport("web1", "vm", "host-a", "host-b", 0.5432, stats=stats)
    assert vm.line() == (
        "web1 moved from host-a to host-b in 0.54 s (VM, QEMU live migration: total 329 ms, "
        "downtime 49 ms, 64.0 MiB sent)"
    )
    ns = MoveReport("db1", "netns", "host-b", "host-a", 0.3, link_down_ms=33.4, announcements=9)
    assert (
        ns.line()
        == "db1 moved from host-b to host-a in 0.30 s (namespace: link down 33 ms, 9 announcement frames sent)"
    )


def test_a_vm_workload_keeps_the_namespace_workloads_mac_address_and_bridge_port() -> None:
    web1 = lab_endpoints("ngfw")["web1"]
    image = GuestImage(
        kernel=Path("/c/vmlinux"), initrd=Path("/c/initrd.cpio"), kernel_release="6.1.0-57-amd64", key="k"
    )
    spec = vm_spec(web1, TWO["host-a"], image)
    assert spec.name == "web1.host-a" and spec.netns == "ngfw-host"
    assert [(n.mac, n.bridge, n.tap) for n in spec.nics] == [("02:00:00:00:01:01", "br-vm", "vm-web1")]
    assert "ngfw.ipv4=10.77.0.11/24" in spec.append.split() and "ngfw.ipv6=fd77::11/64" in spec.append.split()
    assert spec.serial_sockets == ("agent",)


def ngfw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ngfw", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_cli_names_a_missing_or_bad_argument() -> None:
    done = ngfw("lab", "migrate", "web1")
    assert done.returncode == 2 and "the following arguments are required: --to" in done.stderr
    done = ngfw("lab", "up", "--hosts", "3")
    assert done.returncode == 2 and "argument --hosts: invalid choice: 3" in done.stderr
    done = ngfw("lab", "reboot")
    assert done.returncode == 2 and "invalid choice: 'reboot'" in done.stderr
    assert "Traceback" not in done.stderr
