"""Links that come and go under a running dataplane (root; see conftest): the lab's uplink veth deleted and
created again, set down and up, re-created with another MTU or as another kind of link, flapping; a VM's TAP
deleted; an open wire's fail-open program following its re-created interface. No restart, no SIGHUP."""

from __future__ import annotations

import contextlib
import os
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from ngfw.lab.dataplane_process import DataplaneProcess
from ngfw.lab.dataplane_process import start_dataplane as start_in
from ngfw.lab.legs import remove_bridge_leg, remove_leg, restore_leg, set_leg_state
from ngfw.lab.netns import call_in, free_tcp_port, socket_in
from ngfw.lab.probe import connects, time_to_connect
from tests.support.netns import LAB_POLICY, SERVER, metric, wait_for
from tests.support.tap import TAP_POLICY, move_tap_to_vm, tap_dataplane_argv

# the target is 2 s from the link being up to forwarding; a busy CI machine gets some slack
BACK_WITHIN = 2.0


def port_up(dp: DataplaneProcess, port: str) -> float:
    return metric(dp.metrics_text(), "ngfw_port_up", port=port)


def events(dp: DataplaneProcess, port: str) -> dict[str, float]:
    text = dp.metrics_text()
    return {
        e: metric(text, "ngfw_port_events_total", port=port, event=e) for e in ("down", "up", "removed", "reattached")
    }


def http_ok(lab) -> bool:
    r = call_in(
        lab.web1.ns,
        ["curl", "-sS", "-m", "2", "-o", "/dev/null", "-w", "%{http_code}", f"http://{SERVER}/"],
        timeout=10,
    )
    return r.returncode == 0 and r.stdout == "200"


def open_fds(pid: int) -> list[str]:
    """What the process holds open (file descriptors, and the packet rings it has mapped)."""
    fds = sorted(os.readlink(f"/proc/{pid}/fd/{fd}").split(":")[0] for fd in os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/maps") as maps:
        rings = [line for line in maps if "socket:[" in line]
    return fds + ["ring"] * len(rings)


@pytest.fixture
def uplink(lab) -> Iterator[None]:
    """The lab's uplink leg as every other test expects it afterwards: a veth pair, MTU 1500, up."""
    yield
    remove_bridge_leg(lab, "up")
    restore_leg(lab, "up")


def test_uplink_deleted_and_created_again_forwards_again(lab, lab_services, start_dataplane, uplink) -> None:
    dp = start_dataplane(LAB_POLICY)
    assert wait_for(lambda: http_ok(lab), timeout=6)  # (the first request of a session's lab resolves ARP)
    assert port_up(dp, lab.fw_up) == 1

    remove_leg(lab, "up")
    assert wait_for(lambda: port_up(dp, lab.fw_up) == 0)
    assert not http_ok(lab)
    assert not connects(lab.web1.ns, (SERVER, 80), timeout=0.5)
    assert events(dp, lab.fw_up)["removed"] == 1
    assert metric(dp.metrics_text(), "ngfw_drops_total", reason="port_down") >= 1  # the SYNs above
    assert "port fw-up: interface removed" in dp.stderr_text()

    restore_leg(lab, "up")
    took = time_to_connect(lab.web1.ns, (SERVER, 80), since=time.monotonic(), limit=5.0)
    assert took is not None and took <= BACK_WITHIN, f"first handshake {took} s after the uplink was up"
    assert http_ok(lab)
    assert port_up(dp, lab.fw_up) == 1
    assert events(dp, lab.fw_up) == {"down": 0, "up": 1, "removed": 1, "reattached": 1}
    assert events(dp, lab.fw_vm) == {"down": 0, "up": 0, "removed": 0, "reattached": 0}
    assert "port fw-up: re-attached to interface fw-up (ifindex" in dp.stderr_text()


def test_link_down_and_up_is_noticed_and_forwarding_resumes(lab, lab_services, start_dataplane, uplink) -> None:
    dp = start_dataplane(LAB_POLICY)
    assert http_ok(lab)
    set_leg_state(lab, "up", "down")
    assert wait_for(lambda: port_up(dp, lab.fw_up) == 0)
    assert not connects(lab.web1.ns, (SERVER, 80), timeout=0.5)
    assert "port fw-up: link down (administratively down)" in dp.stderr_text()
    set_leg_state(lab, "up", "up")
    took = time_to_connect(lab.web1.ns, (SERVER, 80), since=time.monotonic(), limit=5.0)
    assert took is not None and took <= BACK_WITHIN, took
    assert wait_for(lambda: port_up(dp, lab.fw_up) == 1)

    # its peer down: the dataplane's end loses its carrier
    set_leg_state(lab, "up", "down", side="host")
    assert wait_for(lambda: port_up(dp, lab.fw_up) == 0)
    assert "port fw-up: link down (no carrier" in dp.stderr_text()
    set_leg_state(lab, "up", "up", side="host")
    assert time_to_connect(lab.web1.ns, (SERVER, 80), since=time.monotonic(), limit=5.0) is not None
    assert http_ok(lab)
    assert events(dp, lab.fw_up) == {"down": 2, "up": 2, "removed": 0, "reattached": 0}
    assert metric(dp.metrics_text(), "ngfw_drops_total", reason="port_down") >= 1


def test_recreated_with_another_mtu_and_as_another_kind(lab, lab_services, start_dataplane, uplink) -> None:
    dp = start_dataplane(LAB_POLICY)
    remove_leg(lab, "up")
    restore_leg(lab, "up", mtu=9000)
    assert wait_for(lambda: "MTU 9000); its MTU was 1500" in dp.stderr_text()), dp.stderr_text()
    assert time_to_connect(lab.web1.ns, (SERVER, 80), since=time.monotonic(), limit=5.0) is not None
    assert http_ok(lab)
    # a bridge holding a new veth, under the uplink's name: an Ethernet link, so the port attaches to it
    remove_leg(lab, "up")
    restore_leg(lab, "up", kind="bridge")
    assert wait_for(lambda: "a bridge link now, it was veth" in dp.stderr_text()), dp.stderr_text()
    assert time_to_connect(lab.web1.ns, (SERVER, 80), since=time.monotonic(), limit=5.0) is not None
    assert http_ok(lab)
    assert events(dp, lab.fw_up)["reattached"] == 2


def test_flapping_leaks_no_descriptor_and_no_ring(lab, lab_services, start_dataplane, uplink) -> None:
    dp = start_dataplane(LAB_POLICY)
    assert http_ok(lab)
    held = open_fds(dp.pid)
    for _ in range(20):
        remove_leg(lab, "up")
        restore_leg(lab, "up")
    for _ in range(20):
        set_leg_state(lab, "up", "down")
        set_leg_state(lab, "up", "up")
    assert time_to_connect(lab.web1.ns, (SERVER, 80), since=time.monotonic(), limit=5.0) is not None
    assert http_ok(lab)
    assert wait_for(lambda: open_fds(dp.pid) == held), (held, open_fds(dp.pid))
    seen = events(dp, lab.fw_up)
    # every removal it saw was followed by a re-attachment; how many it saw depends on how fast it looked
    assert seen["removed"] >= 1 and seen["removed"] == seen["reattached"], seen
    assert port_up(dp, lab.fw_up) == 1


def remove_clsact(lab) -> None:
    for ifname in (lab.fw_vm, lab.fw_up):
        call_in(lab.fw_ns, ["tc", "qdisc", "del", "dev", ifname, "clsact"], timeout=10)


def test_an_open_wire_stays_open_on_its_recreated_interface(lab, lab_services, start_dataplane, uplink) -> None:
    remove_clsact(lab)
    try:
        dp = start_dataplane(LAB_POLICY, extra_args=["--fail-mode", "open"])
        assert wait_for(lambda: f"wire {lab.wire}: fail mode open" in dp.stderr_text()), dp.stderr_text()
        remove_leg(lab, "up")
        restore_leg(lab, "up")
        assert wait_for(lambda: "fail-open program attached to the new fw-up" in dp.stderr_text()), dp.stderr_text()
        filters = call_in(lab.fw_ns, ["tc", "filter", "show", "dev", lab.fw_up, "ingress"], timeout=10).stdout
        assert "ngfw_wire" in filters
        assert time_to_connect(lab.web1.ns, (SERVER, 80), since=time.monotonic(), limit=5.0) is not None
        # the dataplane dies: the kernel forwards through the new interface
        os.kill(dp.pid, signal.SIGKILL)
        dp.proc.wait(timeout=5)
        took = time_to_connect(lab.web1.ns, (SERVER, 80), since=time.monotonic(), limit=3.0)
        assert took is not None and took <= 1.0, took
    finally:
        remove_clsact(lab)


def test_a_deleted_tap_is_created_again_and_its_vm_reaches_the_other(tap_host, tmp_path: Path) -> None:
    fw = tap_host["fw"]
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(TAP_POLICY))

    dp = start_in(fw, policy, free_tcp_port(fw), workdir=tmp_path, argv_builder=tap_dataplane_argv)
    try:
        for tap in ("tapa", "tapb"):
            move_tap_to_vm(fw, tap, tap_host[tap])
        assert ping(tap_host["tapa"], "10.88.0.2")
        held = open_fds(dp.pid)

        # the VM side deletes it (the dataplane's namespace sees nothing: the descriptor says it)
        delete_link(tap_host["tapa"], "tapa")
        assert wait_for(lambda: link_exists(fw, "tapa")), dp.stderr_text()
        assert wait_for(lambda: events(dp, "tapa")["reattached"] == 1)
        # deleted again while it is in the dataplane's own namespace (netlink says it)
        delete_link(fw, "tapa")
        assert wait_for(lambda: events(dp, "tapa")["reattached"] == 2 and link_exists(fw, "tapa")), dp.stderr_text()
        assert events(dp, "tapa")["removed"] == 2
        stderr = dp.stderr_text()
        assert "port tapa: TAP device deleted" in stderr
        assert "port tapa: re-attached to its TAP device, created again" in stderr

        move_tap_to_vm(fw, "tapa", tap_host["tapa"])  # the hypervisor plugs the VM in again
        assert ping(tap_host["tapa"], "10.88.0.2")
        with contextlib.closing(socket_in(tap_host["tapb"])) as server:
            server.bind(("10.88.0.2", 5432))
            server.listen()
            with contextlib.closing(socket_in(tap_host["tapa"])) as client:
                client.settimeout(3)
                client.connect(("10.88.0.2", 5432))  # app-to-db: through the re-created TAP, by the policy
        assert port_up(dp, "tapa") == 1 and port_up(dp, "tapb") == 1
        # three hand-overs to the VMs; a deletion is never taken for one
        assert dp.stderr_text(tail=100_000).count("moved to another network namespace") == 3
        assert wait_for(lambda: open_fds(dp.pid) == held), (held, open_fds(dp.pid))
    finally:
        dp.stop()


def ping(ns: str, address: str) -> bool:
    return call_in(ns, ["ping", "-c", "2", "-i", "0.2", "-W", "2", address], timeout=15).returncode == 0


def delete_link(ns: str, name: str) -> None:
    with IPRoute(netns=ns, flags=0) as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname=name)[0])


def link_exists(ns: str, name: str) -> bool:
    with IPRoute(netns=ns, flags=0) as ipr:
        return bool(ipr.link_lookup(ifname=name))
