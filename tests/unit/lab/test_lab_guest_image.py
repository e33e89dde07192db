"""The guest image's pure parts: the initramfs archive, module dependencies, the kernel package, the key."""

from __future__ import annotations

import io
import lzma
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ngfw.lab.guest_image import (
    BOOT_MARKER,
    INIT_SCRIPT,
    READY_MARKER,
    CpioEntry,
    GuestImage,
    GuestImageError,
    PackageVersions,
    extract_vmlinux,
    image_key,
    initramfs_entries,
    load_order,
    modinfo_depends,
    parse_meta_depends,
    read_newc,
    write_newc,
)


def test_the_initramfs_archive_reads_back_and_busybox_cpio_lists_it(tmp_path: Path) -> None:
    entries = initramfs_entries(b"\x7fELF busybox", [("virtio", b"ko1"), ("virtio_net", b"ko22")])
    buffer = io.BytesIO()
    write_newc(entries, buffer)
    again = {e.name: e for e in read_newc(buffer.getvalue())}
    assert again["init"].data == INIT_SCRIPT.encode() and again["init"].mode == stat.S_IFREG | 0o755
    assert again["bin/sh"].mode & stat.S_IFLNK == stat.S_IFLNK and again["bin/sh"].data == b"busybox"
    assert again["dev/console"].rdev == (5, 1) and stat.S_ISCHR(again["dev/console"].mode)
    assert again["etc/modules-load"].data == b"virtio\nvirtio_net\n"  # the load order
    assert again["lib/modules/virtio_net.ko"].data == b"ko22"
    busybox = shutil.which("busybox")
    if busybox:  # a real cpio reader agrees (busybox-static is in deploy/packages-lab.txt)
        archive = tmp_path / "initrd.cpio"
        archive.write_bytes(buffer.getvalue())
        listed = subprocess.run(
            [busybox, "cpio", "-t"], stdin=archive.open("rb"), capture_output=True, text=True, check=True
        ).stdout.split()
        assert sorted(listed) == sorted(e.name for e in entries)


def test_a_newc_header_is_the_kernel_format() -> None:
    buffer = io.BytesIO()
    write_newc([CpioEntry("init", stat.S_IFREG | 0o755, b"#!/bin/sh\n")], buffer)
    data = buffer.getvalue()
    assert data.startswith(b"070701")
    assert len(data) % 4 == 0
    assert data[-(len(b"TRAILER!!!\x00") + 3) :].startswith(b"TRAILER!!!\x00")


def test_module_dependencies_come_from_modinfo_and_load_in_order() -> None:
    modinfo = b"\x00license=GPL\x00depends=net_failover,virtio,virtio_ring\x00retpoline=Y\x00name=virtio_net\x00"
    assert modinfo_depends(modinfo) == ["net_failover", "virtio", "virtio_ring"]
    assert modinfo_depends(b"\x00depends=\x00name=failover\x00") == []
    assert modinfo_depends(b"\x00depends=virtio-pci-legacy-dev\x00") == ["virtio_pci_legacy_dev"]
    deps = {
        "virtio_net": ["net_failover", "virtio", "virtio_ring"],
        "net_failover": ["failover"],
        "failover": [],
        "virtio": [],
        "virtio_ring": [],
        "virtio_pci": ["virtio", "virtio_ring", "virtio_pci_modern_dev"],
        "virtio_pci_modern_dev": [],
    }
    order = load_order(["virtio_pci", "virtio_net"], lambda name: deps[name], builtin={"virtio_ring"})
    assert "virtio_ring" not in order  # built into the kernel: nothing to load
    for name, needs in deps.items():
        for dep in needs:
            if dep in order:
                assert order.index(dep) < order.index(name), (dep, name)
    assert sorted(order) == sorted(set(deps) - {"virtio_ring"})


def test_a_module_dependency_cycle_is_named() -> None:
    with pytest.raises(GuestImageError, match="module dependency cycle through a"):
        load_order(["a"], lambda name: {"a": ["b"], "b": ["a"]}[name], builtin=set())


def test_the_kernel_package_is_what_the_meta_package_depends_on() -> None:
    show = "Package: linux-image-amd64\nVersion: 6.1.192-3\nDepends: linux-image-6.1.0-57-amd64 (= 6.1.192-3)\n"
    assert parse_meta_depends(show) == ("linux-image-6.1.0-57-amd64", "6.1.192-3")
    assert parse_meta_depends("Depends: linux-image-6.12.9+bpo-amd64\n") == ("linux-image-6.12.9+bpo-amd64", "")
    with pytest.raises(GuestImageError, match="names no linux-image package"):
        parse_meta_depends("Package: linux-image-amd64\nDepends: initramfs-tools\n")


def test_the_cache_key_follows_every_package_version() -> None:
    base = PackageVersions("linux-image-6.1.0-57-amd64", "6.1.192-3", "1:1.35.0-4+deb12u1+b1")
    assert base.kernel_release == "6.1.0-57-amd64"
    keys = {
        image_key(base),
        image_key(PackageVersions(base.kernel_package, "6.1.192-4", base.busybox_version)),
        image_key(PackageVersions(base.kernel_package, base.kernel_version, "1:1.36.1-1")),
    }
    assert len(keys) == 3
    assert image_key(base) == image_key(PackageVersions(*base.__dict__.values()))


def test_the_elf_kernel_is_found_inside_an_xz_bzimage() -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 64
    bzimage = b"MZ setup code \xfd7zXZ\x00 not really" + lzma.compress(elf, format=lzma.FORMAT_XZ) + b"\x00" * 32
    assert extract_vmlinux(bzimage) == elf
    assert extract_vmlinux(b"MZ gzip kernel \x1f\x8b\x08") is None


def test_the_command_line_gives_the_guest_its_name_and_addresses() -> None:
    line = GuestImage.cmdline("web1", "10.77.0.11/24", "fd77::11/64")
    assert line.split()[0] == "console=ttyS0"
    assert {"ngfw.name=web1", "ngfw.ipv4=10.77.0.11/24", "ngfw.ipv6=fd77::11/64"} <= set(line.split())
    assert "ngfw.ipv4" not in GuestImage.cmdline("probe")
    # the init script reads what the command line says and prints the line the lab waits for
    for word in ("ngfw.name=*", "ngfw.ipv4=*", "ngfw.ipv6=*", f'echo "{READY_MARKER}'):
        assert word in INIT_SCRIPT
    # the KVM probe boots without a NIC: it waits for a line /init says before it looks for eth0
    assert INIT_SCRIPT.index(f'echo "{BOOT_MARKER}"') < INIT_SCRIPT.index("/sys/class/net/eth0")
