"""What `ngfw lab up|down|migrate` and `ngfw demo` call: each prints a summary for a person and returns an exit code."""

from __future__ import annotations

import io
import os
import sys
from typing import TextIO

from ngfw.lab.dataplane_process import ArgvBuilder, default_dataplane_argv
from ngfw.lab.topology import describe, lab_down, lab_exists, lab_up


def lab_up_cmd(
    prefix: str = "ngfw", hosts: int = 1, out: TextIO = sys.stdout, vm_workloads: bool = False, fw_vm: bool = False
) -> int:
    """Build lab `prefix` (rebuilding it if it exists) and print what exists; `hosts=2` adds host-b (ngfw.lab.hosts);
    `vm_workloads` makes web1 and web2 QEMU guests (ngfw.lab.workloads); `fw_vm` boots the ngfw VM as the
    firewall (ngfw.lab.fw_vm)."""
    from ngfw.lab.workloads import record_namespace_workloads, start_vm_workloads

    if fw_vm and hosts != 1:
        print(
            f"lab {prefix!r}: --fw-vm builds a one-host lab (the firewall VM replaces host-a's fw namespace)", file=out
        )
        return 2
    booted = []
    firewall = None
    try:
        if hosts == 2:
            from ngfw.lab.hosts import two_host_up

            two = two_host_up(prefix)
            lab = two.lab
        else:
            two = None
            lab = lab_up(prefix)
        record_namespace_workloads(prefix)
        if vm_workloads:
            booted = start_vm_workloads(prefix, progress=lambda msg: print(f"lab {prefix!r}: {msg}", file=out))
        if fw_vm:
            from ngfw.lab.artifacts import ensure_vm_image
            from ngfw.lab.fw_vm import start_fw_vm

            def progress(msg: str) -> None:
                print(f"lab {prefix!r}: {msg}", file=out, flush=True)

            firewall = start_fw_vm(lab, ensure_vm_image(say=progress), say=progress)
    except Exception as exc:  # noqa: BLE001 - reported to the user, exit code 1
        print(f"lab {prefix!r}: could not be built: {exc}", file=out)
        lab_down_cmd(prefix, out=io.StringIO())  # also the guests and TAPs a half-built lab left
        return 1
    if firewall is not None:
        print(
            f"lab {prefix!r} is up; the firewall is the ngfw VM (QEMU pid {firewall.pid}, {firewall.accel}), "
            f"enforcing rules/examples/lab.yaml {firewall.boot_seconds:.1f} s after it started; console log "
            f"{firewall.guest.files.console_log}; `ngfw lab down` stops it:",
            file=out,
        )
    else:
        print(f"lab {prefix!r} is up (no firewall in the path yet: start `ngfw dataplane` in {lab.fw_ns}):", file=out)
    for line in describe(prefix):
        print(f"  {line}", file=out)
    print(
        f"  workloads: web1 {lab.web1.ipv4} / {lab.web1.ipv6} ({lab.web1.mac}), "
        f"web2 {lab.web2.ipv4} / {lab.web2.ipv6} ({lab.web2.mac}); "
        f"server: srv {lab.srv.ipv4} / {lab.srv.ipv6} ({lab.srv.mac})",
        file=out,
    )
    for vm in booted:
        g = vm.guest
        print(
            f"  {vm.name} is a QEMU guest ({g.accel}, {g.spec.memory_mb} MiB, pid {g.pid}) on TAP "
            f"{g.spec.nics[0].tap} in {g.netns}, booted in {vm.boot_seconds:.1f} s; console log "
            f"{g.files.console_log}",
            file=out,
        )
    if firewall is None:
        print(f"  dataplane wire: --wire {lab.wire} (inside {lab.fw_ns})", file=out)
    if two is not None:
        print(
            f"  host-b: tenant-b's db1 {two.db1.ipv4} / {two.db1.ipv6} ({two.db1.mac}) behind {two.host_b.fw_ns}",
            file=out,
        )
        print(
            f"  control: run `ngfw control --listen {two.control_ip}:{two.control_port} --insecure-http` in {two.mgmt_ns}; then "
            f"`ngfw dataplane --wire {lab.wire} --control {two.control_url} --host host-a|host-b --token-file F` "
            f"in {two.host_a.fw_ns} / {two.host_b.fw_ns}; policy: rules/examples/lab-two-hosts.yaml",
            file=out,
        )
    return 0


def lab_down_cmd(prefix: str = "ngfw", out: TextIO = sys.stdout) -> int:
    """Remove lab `prefix` (also a crashed run's leftovers) and print what was removed."""
    from ngfw.lab.workloads import forget_workloads

    guests = forget_workloads(prefix)
    if guests:
        print(f"lab {prefix!r}: stopped QEMU guests {', '.join(guests)} and removed their TAPs", file=out)
    removed = lab_down(prefix)
    left = lab_exists(prefix)
    if removed:
        print(f"lab {prefix!r}: removed namespaces {', '.join(removed)}", file=out)
    else:
        print(f"lab {prefix!r}: nothing to remove", file=out)
    if left:
        print(f"lab {prefix!r}: still present: {', '.join(left)}", file=out)
        return 1
    return 0


def lab_migrate_cmd(prefix: str, workload: str, to: str, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """`ngfw lab migrate WORKLOAD --to HOST`: one line saying what moved and how long it took."""
    from ngfw.lab.migrate import MigrateError, migrate_workload

    if os.geteuid() != 0:
        print("ngfw lab migrate: needs root (it moves links between network namespaces and drives QEMU)", file=err)
        return 1
    try:
        report = migrate_workload(prefix, workload, to)
    except MigrateError as exc:
        print(f"ngfw lab migrate: {exc}", file=err)
        return 1
    except Exception as exc:  # noqa: BLE001 - a failure of the lab itself (QEMU, netlink): said, not a traceback
        print(f"ngfw lab migrate: {workload} could not move to {to}: {type(exc).__name__}: {exc}", file=err)
        return 1
    print(report.line(), file=out)
    return 0


def demo_cmd(
    prefix: str = "ngfw",
    baseline: bool = False,
    policy: str | None = None,
    dataplane_argv_builder: ArgvBuilder | None = default_dataplane_argv,
    fw_vm: bool = False,
) -> int:
    """`ngfw demo`: see `ngfw.lab.demo.run_demo`."""
    from ngfw.lab.demo import run_demo

    return run_demo(dataplane_argv_builder, prefix=prefix, baseline=baseline, policy=policy, fw_vm=fw_vm)
