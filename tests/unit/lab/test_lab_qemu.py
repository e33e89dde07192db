"""The QEMU driver's pure parts: the command line it builds, its refusals, and its crash bookkeeping."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ngfw.lab.qemu import Drive, Guest, GuestSpec, Nic, RunFiles, cleanup, qemu_argv, select_accelerator

KERNEL = Path("/cache/vmlinux")


def spec(**changes: object) -> GuestSpec:
    base = GuestSpec(
        name="web1.host-a",
        kernel=KERNEL,
        initrd=Path("/cache/initrd.cpio"),
        append="console=ttyS0",
        netns="ngfw-host",
        nics=(Nic("02:00:00:00:01:01", "br-vm", "vm-web1"),),
        serial_sockets=("agent",),
    )
    return GuestSpec(**{**base.__dict__, **changes})  # type: ignore[arg-type]


def option_values(argv: list[str], option: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == option]


def test_nics_are_taps_on_the_bridge_with_fixed_macs_and_qemu_gets_no_network_of_its_own(tmp_path: Path) -> None:
    two_nics = spec(nics=(Nic("02:00:00:00:00:a1", "br-vm", "fw-vm"), Nic("02:00:00:00:00:a2", "br-up", "fw-up")))
    argv = qemu_argv(two_nics, RunFiles(tmp_path, "fw"), "tcg")
    assert "-nodefaults" in argv  # no default NIC, monitor or serial port
    assert option_values(argv, "-netdev") == [
        "tap,id=net0,ifname=fw-vm,script=no,downscript=no",
        "tap,id=net1,ifname=fw-up,script=no,downscript=no",
    ]
    assert option_values(argv, "-device") == [
        "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:a1,romfile=",
        "virtio-net-pci,netdev=net1,mac=02:00:00:00:00:a2,romfile=",
    ]
    assert "-nic" not in argv and "-net" not in argv


def test_tcg_runs_cpu_max_and_kvm_the_host_cpu(tmp_path: Path) -> None:
    files = RunFiles(tmp_path, "g")
    tcg, kvm = qemu_argv(spec(), files, "tcg"), qemu_argv(spec(), files, "kvm")
    assert option_values(tcg, "-accel") == ["tcg"] and option_values(tcg, "-cpu") == ["max"]
    assert option_values(kvm, "-accel") == ["kvm"] and option_values(kvm, "-cpu") == ["host"]
    with pytest.raises(ValueError, match="bad accelerator 'hvf': kvm or tcg"):
        qemu_argv(spec(), files, "hvf")


def test_run_files_qmp_console_and_serial_ports_live_in_the_run_directory(tmp_path: Path) -> None:
    files = RunFiles(tmp_path, "web1.host-a")
    argv = qemu_argv(spec(serial_sockets=("agent", "debug")), files, "tcg")
    assert option_values(argv, "-pidfile") == [str(tmp_path / "web1.host-a.pid")]
    chardevs = option_values(argv, "-chardev")
    assert chardevs[0] == f"socket,id=qmp,path={tmp_path}/web1.host-a.qmp,server=on,wait=off"
    assert chardevs[1].startswith(f"socket,id=console,path={tmp_path}/web1.host-a.console.sock,server=on,wait=off")
    assert f"logfile={tmp_path}/web1.host-a.console.log" in chardevs[1]
    assert chardevs[2] == f"socket,id=serial1,path={tmp_path}/web1.host-a.agent.sock,server=on,wait=off"
    assert chardevs[3] == f"socket,id=serial2,path={tmp_path}/web1.host-a.debug.sock,server=on,wait=off"
    # ttyS0 is the console, ttyS1 the first named port, and so on
    assert option_values(argv, "-serial") == ["chardev:console", "chardev:serial1", "chardev:serial2"]
    assert option_values(argv, "-mon") == ["chardev=qmp,mode=control"]


def test_a_migration_target_has_the_same_command_line_plus_incoming(tmp_path: Path) -> None:
    source = qemu_argv(spec(), RunFiles(tmp_path, "g"), "tcg")
    target = qemu_argv(spec(incoming="tcp:10.79.0.22:4444"), RunFiles(tmp_path, "g"), "tcg")
    assert target == [*source, "-incoming", "tcp:10.79.0.22:4444"]


def test_a_disk_image_boots_with_or_without_a_kernel(tmp_path: Path) -> None:
    argv = qemu_argv(
        spec(kernel=None, initrd=None, append="", disk=Path("/img/fw.qcow2"), disk_format="qcow2", disk_snapshot=True),
        RunFiles(tmp_path, "fw"),
        "tcg",
    )
    assert option_values(argv, "-drive") == ["file=/img/fw.qcow2,if=virtio,format=qcow2,snapshot=on"]
    assert "-kernel" not in argv
    seeded = qemu_argv(
        spec(disk=Path("/img/fw.raw"), drives=(Drive(Path("/img/seed.iso"), readonly=True),)),
        RunFiles(tmp_path, "fw"),
        "tcg",
    )
    assert option_values(seeded, "-drive") == [
        "file=/img/fw.raw,if=virtio,format=raw",
        "file=/img/seed.iso,if=virtio,format=raw,readonly=on",
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"extra_args": ("-netdev", "user,id=n9")}, "may not add QEMU networking"),
        ({"extra_args": ("-nic", "tap")}, "may not add QEMU networking"),
        (
            {"nics": (Nic("02:00:00:00:01:01", "br-vm", "a-very-long-tap-name"),)},
            "'a-very-long-tap-name' is longer than 15",
        ),
        ({"nics": (Nic("02:00:00:00:01", "br-vm", "vm-web1"),)}, "bad MAC address '02:00:00:00:01'"),
        ({"kernel": None}, "give a kernel or a disk image"),
        ({"name": "web 1"}, "bad guest name 'web 1'"),
        ({"serial_sockets": ("../x",)}, "bad serial port name '../x'"),
    ],
)
def test_bad_specs_are_refused_with_the_bad_value_named(
    tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        qemu_argv(spec(**changes), RunFiles(tmp_path, "g"), "tcg")


def test_a_spec_survives_its_json_record_for_another_process(tmp_path: Path) -> None:
    original = spec(
        disk=Path("/img/d.raw"),
        drives=(Drive(Path("/img/seed.iso"), readonly=True),),
        nics=(Nic("02:00:00:00:01:01", "br-vm", "vm-web1", properties=(("mq", "on"),)),),
        incoming="defer",
        extra_args=("-rtc", "base=utc"),
    )
    again = GuestSpec.from_json(json.loads(json.dumps(original.to_json())))
    assert again == original


def fake_qemu(files: RunFiles) -> subprocess.Popen[bytes]:
    """A process that looks like our QEMU to the bookkeeping: its command line names the pid file."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-pidfile", str(files.pid)])
    files.pid.write_text(f"{proc.pid}\n")
    files.meta.write_text(
        json.dumps({"spec": GuestSpec(name=files.name, kernel=KERNEL).to_json(), "pid": proc.pid, "accel": "tcg"})
    )
    return proc


def test_cleanup_finds_a_crashed_runs_qemu_by_its_pid_file_and_leaves_a_reused_pid_alone(tmp_path: Path) -> None:
    ours = fake_qemu(RunFiles(tmp_path, "web1.host-a"))
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # a pid file whose pid now belongs to another program (reused after a reboot, say)
        RunFiles(tmp_path, "web2.host-a").pid.write_text(f"{stranger.pid}\n")
        (tmp_path / "web1.host-a.console.log").write_text("booted\n")
        assert Guest.attach(tmp_path, "web1.host-a").alive()
        assert sorted(cleanup(tmp_path)) == ["web1.host-a", "web2.host-a"]
        assert ours.wait(timeout=10) is not None
        assert stranger.poll() is None
        assert not tmp_path.exists()  # nothing left: the run directory went too
    finally:
        for proc in (ours, stranger):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_cleanup_of_a_run_directory_that_does_not_exist_finds_nothing(tmp_path: Path) -> None:
    assert cleanup(tmp_path / "none") == []


def test_attach_names_the_instance_that_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=f"no guest 'web9.host-a' in {tmp_path}"):
        Guest.attach(tmp_path, "web9.host-a")


def test_the_accelerator_can_be_forced_and_a_probe_answer_is_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF")
    monkeypatch.setenv("NGFW_QEMU_ACCEL", "tcg")
    assert select_accelerator(kernel, cache=None) == "tcg"
    monkeypatch.setenv("NGFW_QEMU_ACCEL", "xen")
    with pytest.raises(ValueError, match="NGFW_QEMU_ACCEL='xen': kvm or tcg"):
        select_accelerator(kernel, cache=None)
    monkeypatch.delenv("NGFW_QEMU_ACCEL")
    if not Path("/dev/kvm").exists():
        assert select_accelerator(kernel, cache=None) == "tcg"
        return
    # this "kernel" boots under nothing: the probe says TCG and the answer is kept for the next guest
    cache = tmp_path / "accel.json"
    started = time.monotonic()
    assert select_accelerator(kernel, cache=cache, timeout=2.0) == "tcg"
    assert time.monotonic() - started < 15
    assert list(json.loads(cache.read_text()).values()) == ["tcg"]
    key = next(iter(json.loads(cache.read_text())))
    cache.write_text(json.dumps({key: "kvm"}))  # what a machine where KVM works would have found
    assert select_accelerator(kernel, cache=cache) == "kvm"
