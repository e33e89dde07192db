"""`ngfw lab migrate`: a workload moves from host-a to host-b as a hypervisor would move it, mid-download.

The baseline of the migration tests: plain Linux bridges stand in for both hosts' dataplanes, so what
these tests show is what the lab itself does (the link or the VM moves, the workload announces
itself, the network learns where it is); the lead's tests put ngfw in the middle of the same moves.
A namespace workload's link moves between the hosts' br-vm; a VM workload (QEMU, TCG on machines
where KVM cannot run a guest) is live-migrated over the management network.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ngfw.lab.guest_image import BOOT_MARKER, GuestImage, guest_image
from ngfw.lab.netns import call_in, run_in, socket_in
from ngfw.lab.qemu import boots_under
from ngfw.lab.services import BIG_FILE_SIZE
from ngfw.lab.topology import Lab, interface_stats
from ngfw.lab.workloads import qemu_run_dir, state_path
from tests.support.netns import FrameCapture, TwoHostSite, bridge_fdb, wait_for

SESSION_PORT = 7000
# srv's 10 MiB file, paced so that it outlasts the move several times over, also on a loaded machine:
# 5 s for a namespace's move (~1 s with the command's start), 10 s for a live migration (1-4 s)
PACED = "?rate=2m"
PACED_VM = "?rate=1m"


def big_file_sha256(site: TwoHostSite) -> str:
    return hashlib.sha256((site.services.workdir / "www" / "big.bin").read_bytes()).hexdigest()


def host_b_fw_sent(site: TwoHostSite) -> int:
    """Bytes host-b's fw namespace has sent towards its VMs (its bridge's fw-vm port)."""
    return interface_stats(site.two.host_b.fw_ns, "fw-vm")["tx_bytes"]


def host_a_fw_sent(site: TwoHostSite) -> int:
    return interface_stats(site.two.host_a.fw_ns, "fw-vm")["tx_bytes"]


def ping(ns: str, dest: str) -> subprocess.CompletedProcess[str]:
    return call_in(ns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", dest], timeout=15)


def talk(sock: socket.socket, line: bytes) -> None:
    sock.sendall(line)


def hear(sock: socket.socket, size: int) -> bytes:
    got = b""
    sock.settimeout(10)
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        if not chunk:
            break
        got += chunk
    return got


@contextlib.contextmanager
def tcp_session(client_ns: str, server_ns: str, server_ip: str) -> Iterator[tuple[socket.socket, socket.socket]]:
    """An interactive TCP session: a listener in `server_ns`, a client in `client_ns`, both ends ours."""
    listener = socket_in(server_ns)
    client = socket_in(client_ns)
    try:
        listener.bind((server_ip, SESSION_PORT))
        listener.listen(1)
        listener.settimeout(10)
        client.settimeout(10)
        client.connect((server_ip, SESSION_PORT))
        server, _ = listener.accept()
        try:
            yield client, server
        finally:
            server.close()
    finally:
        client.close()
        listener.close()


def ngfw_lab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ngfw", "lab", *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_migrate_refuses_what_a_hypervisor_could_not_do(two_host_lab: TwoHostSite, lab: Lab) -> None:
    site = two_host_lab
    cases = {
        ("web9", "host-b"): "unknown workload 'web9': the lab's workloads are db1, web1, web2",
        ("web1", "host-c"): "unknown host 'host-c': the lab's hosts are host-a and host-b",
        ("web1", "host-a"): "web1 is already on host-a",
        ("db1", "host-b"): "db1 is already on host-b",
    }
    for (workload, to), message in cases.items():
        done = site.migrate(workload, to)
        assert done.returncode == 1 and done.stderr.strip() == f"ngfw lab migrate: {message}", done
    assert site.placement("web1").host == "host-a" and site.placement("db1").host == "host-b"
    # the session's one-host lab has nowhere to move to; a prefix with no lab at all has nothing to move
    done = ngfw_lab("migrate", "web1", "--to", "host-b", "--prefix", lab.prefix)
    assert done.returncode == 1, done
    assert done.stderr.strip() == (
        f"ngfw lab migrate: lab {lab.prefix!r} is not a two-host lab: build it with `ngfw lab up --hosts 2`"
    )
    done = ngfw_lab("migrate", "web1", "--to", "host-b", "--prefix", "nolab")
    assert done.returncode == 1
    assert done.stderr.strip() == "ngfw lab migrate: there is no lab 'nolab': build one with `ngfw lab up --hosts 2`"


def test_a_namespace_workload_moves_to_host_b_mid_download_and_keeps_its_sessions(
    two_host_lab: TwoHostSite, tmp_path: Path
) -> None:
    site = two_host_lab
    lab, web1 = site.two.lab, site.two.lab.web1
    out = tmp_path / "big.bin"
    with tcp_session(web1.ns, lab.srv.ns, lab.srv.ipv4) as (client, server):
        talk(client, b"before from web1\n")
        assert hear(server, 17) == b"before from web1\n"
        curl = run_in(
            web1.ns,
            [
                "curl",
                "-sS",
                "--max-time",
                "60",
                "-o",
                str(out),
                "-w",
                "%{http_code} %{size_download}",
                site.services.big_file_url + PACED,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert wait_for(lambda: out.exists() and out.stat().st_size >= 256 << 10, timeout=10), (
                "download not started"
            )
            sent_via_b = host_b_fw_sent(site)
            with FrameCapture(site.two.host_b.host_ns, "br-vm") as capture:
                moved = site.migrate("web1", "host-b")
                time.sleep(0.3)  # the last announcement round
            assert moved.returncode == 0, moved.stderr
            assert re.fullmatch(
                r"web1 moved from host-a to host-b in [\d.]+ s \(namespace: link down \d+ ms, "
                r"\d+ announcement frames sent\)\n",
                moved.stdout,
            ), moved.stdout
            assert curl.poll() is None, "the download ended before the move: it proves nothing"
            stdout, stderr = curl.communicate(timeout=60)
        finally:
            if curl.poll() is None:
                curl.kill()
                curl.communicate()
        assert curl.returncode == 0 and stdout == f"200 {BIG_FILE_SIZE}", (stdout, stderr)
        assert hashlib.sha256(out.read_bytes()).hexdigest() == big_file_sha256(site)

        # the rest of the download came through host-b: its bridges and its fw namespace
        assert host_b_fw_sent(site) - sent_via_b > 1 << 20
        assert bridge_fdb(site.two.host_b.host_ns, "br-vm").get(web1.mac) == web1.host_port
        assert bridge_fdb(lab.host_ns, "br-up").get(web1.mac) == "up-host2"
        # web1 announced itself from its new place, as a guest's kernel does after a move
        assert lab.web1.ipv4 in capture.gratuitous_arps(web1.mac)
        assert web1.ipv6 in capture.unsolicited_nas(web1.mac)

        # the interactive session goes on, both ways
        talk(client, b"after from web1\n")
        assert hear(server, 16) == b"after from web1\n"
        talk(server, b"reply from srv\n")
        assert hear(client, 15) == b"reply from srv\n"
    assert ping(lab.srv.ns, web1.ipv4).returncode == 0
    assert call_in(lab.srv.ns, ["ping", "-6", "-c", "1", "-W", "2", web1.ipv6], timeout=10).returncode == 0
    assert site.placement("web1").host == "host-b"

    # and back again: the record says where it is
    back = site.migrate("web1", "host-a")
    assert back.returncode == 0, back.stderr
    assert ping(lab.srv.ns, web1.ipv4).returncode == 0
    assert bridge_fdb(lab.host_ns, "br-vm").get(web1.mac) == web1.host_port


def process_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def guest_uptime(site: TwoHostSite) -> float:
    done = site.agent("web1").run("cut -d' ' -f1 /proc/uptime", timeout=10)
    return float(done.output.strip())


@pytest.mark.vm
@pytest.mark.parametrize("vm_workloads", [("web1",)], indirect=True)
def test_a_vm_workload_live_migrates_to_host_b_mid_download_and_keeps_its_sessions(
    two_host_lab: TwoHostSite, vm_workloads: dict[str, object]
) -> None:
    site = two_host_lab
    lab, web1 = site.two.lab, site.two.lab.web1
    source = site.placement("web1")
    assert source.kind == "vm" and source.host == "host-a"
    agent = site.agent("web1")
    assert agent.run("echo kept across the move > /tmp/marker").returncode == 0
    uptime_before = guest_uptime(site)
    agent.start(f"nc -ll -p {SESSION_PORT} -e cat")  # an echo server: the session goes both ways
    time.sleep(0.3)

    srv_sock = socket_in(lab.srv.ns)
    try:
        srv_sock.settimeout(10)
        srv_sock.connect((web1.ipv4, SESSION_PORT))
        talk(srv_sock, b"before the move\n")
        assert hear(srv_sock, 16) == b"before the move\n"

        before_a = host_a_fw_sent(site)
        download = agent.start(f"set -o pipefail; wget -q -O - '{site.services.big_file_url}{PACED_VM}' | sha256sum")
        assert wait_for(lambda: host_a_fw_sent(site) - before_a > 256 << 10, timeout=15), "download not started"
        sent_via_b = host_b_fw_sent(site)
        with FrameCapture(site.two.host_b.host_ns, "br-vm") as capture:
            moved = site.migrate("web1", "host-b")
            time.sleep(1.0)  # QEMU's announce rounds (50 ms, then every 100 ms more, 5 rounds)
        assert moved.returncode == 0, moved.stderr
        found = re.fullmatch(
            r"web1 moved from host-a to host-b in ([\d.]+) s \(VM, QEMU live migration: "
            r"total (\d+) ms, downtime (\d+) ms, ([\d.]+) MiB sent\)\n",
            moved.stdout,
        )
        assert found, moved.stdout
        agent = site.agent("web1")  # the destination QEMU's agent socket
        assert agent.poll(download) is None, "the download ended before the migration: it proves nothing"
        result = agent.wait(download, timeout=60)
        assert result.returncode == 0, result.output
        assert result.output.split()[0] == big_file_sha256(site)

        # the same guest, not a new one: its memory came along
        assert agent.run("cat /tmp/marker").output == "kept across the move\n"
        assert guest_uptime(site) > uptime_before
        talk(srv_sock, b"after the move\n")
        assert hear(srv_sock, 15) == b"after the move\n"
    finally:
        srv_sock.close()

    # the rest of the download came through host-b
    assert host_b_fw_sent(site) - sent_via_b > 1 << 20
    assert bridge_fdb(site.two.host_b.host_ns, "br-vm").get(web1.mac) == web1.host_port
    assert bridge_fdb(lab.host_ns, "br-up").get(web1.mac) == "up-host2"
    # QEMU announced the guest (RARP), and the guest's kernel did (virtio-net GUEST_ANNOUNCE)
    mac = bytes.fromhex(web1.mac.replace(":", ""))
    assert any(f[6:12] == mac and f[12:14] == b"\x80\x35" for f in capture.frames)
    assert web1.ipv4 in capture.gratuitous_arps(web1.mac)
    assert web1.ipv6 in capture.unsolicited_nas(web1.mac)
    assert ping(lab.srv.ns, web1.ipv4).returncode == 0

    # the source QEMU quit and took its TAP along
    placed = site.placement("web1")
    assert placed.host == "host-b" and placed.instance == "web1.host-b"
    old = vm_workloads["web1"]
    assert not old.alive()  # type: ignore[attr-defined]
    assert "vm-web1" not in bridge_fdb(lab.host_ns, "br-vm").values()

    # `ngfw lab down`, another process than the one that started the guests, finds them by their run
    # files (as after a crash) and stops them
    run_dir = qemu_run_dir(site.prefix)
    pid = int((run_dir / "web1.host-b.pid").read_text())
    down = ngfw_lab("down", "--prefix", site.prefix)
    assert down.returncode == 0, down.stderr
    assert f"lab {site.prefix!r}: stopped QEMU guests web1.host-b and removed their TAPs" in down.stdout
    assert wait_for(lambda: not process_alive(pid), timeout=5)
    assert not run_dir.exists() and not state_path(site.prefix).exists()


@pytest.mark.vm
def test_the_accelerator_probe_sees_the_lab_guest_boot(tmp_path: Path) -> None:
    # KVM cannot run a guest on the project's machines, so the probe's "it booted" answer is checked
    # under TCG: the same boot, console and marker as a KVM probe, only slower
    image = guest_image()
    assert boots_under("tcg", image.kernel, image.initrd, GuestImage.cmdline("probe"), BOOT_MARKER.encode(), timeout=60)
    not_a_kernel = tmp_path / "vmlinux"
    not_a_kernel.write_bytes(b"\x7fELF but nothing more")
    assert not boots_under("tcg", not_a_kernel, None, "console=ttyS0", BOOT_MARKER.encode(), timeout=10)
