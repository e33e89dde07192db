"""The lab's guest image: Debian's kernel and a busybox initramfs, made from Debian packages and cached.

`guest_image()` returns a `GuestImage` (a kernel and an initramfs) for `ngfw.lab.qemu`:

- the kernel is the one `linux-image-amd64` depends on, fetched with `apt-get download` and unpacked
  with `dpkg-deb -x` into a scratch directory (nothing is installed on the host). Its bzImage is
  unpacked once more into the ELF `vmlinux` inside it, which QEMU boots through the kernel's PVH entry:
  under TCG, decompressing the xz kernel at every boot would cost seconds (boot: ~4.5 s instead of
  ~8.5 s). The NIC's modules
  (virtio_net, virtio_pci and what their `depends=` name: net_failover, failover, virtio, virtio_ring,
  ...; Debian builds them as modules) go into the initramfs with their load order;
- the userland is the host's `busybox-static` (deploy/packages-lab.txt), linked under every applet name;
- `/init` (`INIT_SCRIPT`) sets eth0's addresses from the kernel command line (`ngfw.ipv4=A/L
  ngfw.ipv6=A/L ngfw.name=N`), serves `/www` with busybox httpd on :80 (`/index.html` names the guest,
  `/blob.bin` is 1 MiB), says `ngfw-guest: ready` on the console (ttyS0) and runs the command agent
  on the second serial port (ttyS1): see `ngfw.lab.guest_agent`.

The result lives in `~/.cache/ngfw/lab-guest/<kernel release>-<key>/` (`NGFW_CACHE_DIR` moves the
cache root), the key hashing the package versions, the init script and this builder's version; a
new kernel or busybox package, or a changed script, makes a new image. Building takes ~10 s once
(download and unpacking of the kernel package); afterwards it is a lookup.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ngfw.compiler.catalogue import cache_dir

BUILDER_VERSION = 2
KERNEL_META_PACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
BUSYBOX_PATH = Path("/bin/busybox")
# what a virtio-net-pci NIC needs; their dependencies are read from each module's modinfo
NIC_MODULES = ("virtio_pci", "virtio_net")
READY_MARKER = "ngfw-guest: ready"
BOOT_MARKER = "ngfw-guest: init"  # the first thing /init says: the kernel booted (what the KVM probe waits for)
AGENT_PORT = "ttyS1"  # the second serial port: the command agent (ngfw.lab.guest_agent)

AGENT_SHELL = r"""# The agent: one request per line, "ID SECONDS BASE64-SCRIPT"; the answer is the script's output
# between "<<ngfw ID begin>>" and "<<ngfw ID end RC>>" lines. Raw tty: no echo, no CR/LF mangling.
agent() {
    stty -F @TTY@ raw -echo
    while read -r id limit code; do
        echo "$code" | base64 -d > @TMP@/.agent-cmd
        printf '\n<<ngfw %s begin>>\n' "$id"
        timeout -s KILL "$limit" sh @TMP@/.agent-cmd < /dev/null 2>&1
        printf '\n<<ngfw %s end %d>>\n' "$id" "$?"
    done < @TTY@ > @TTY@ 2>&1
}
"""


# The agent runs in a child of PID 1, not in PID 1 itself: a background job the agent started is
# reparented to PID 1 when its shell exits, and the SIGCHLD of its end would interrupt a `read` in
# the middle of a request (busybox's `read` then fails and the line's first bytes are lost).
# PID 1 reaps those orphans.
AGENT_START = """( while :; do agent; sleep 1; done ) &
while :; do wait; sleep 1; done
"""


def agent_shell(tty: str = "/dev/ttyS1", scratch: str = "/tmp") -> str:
    """The guest agent's shell function `agent` (ngfw.lab.guest_agent speaks to it), reading `tty`;
    `AGENT_START` after it runs the agent as the guest's init does."""
    return AGENT_SHELL.replace("@TTY@", tty).replace("@TMP@", scratch)


INIT_SCRIPT = r"""#!/bin/busybox sh
# PID 1 of the ngfw lab guest (ngfw.lab.guest_image): network from the kernel command line,
# busybox httpd on :80, and a command agent on ttyS1 for the lab (ngfw.lab.guest_agent).
echo "ngfw-guest: init"
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
for m in $(cat /etc/modules-load); do insmod "/lib/modules/$m.ko" || echo "ngfw-guest: insmod $m failed"; done
NAME=guest IPV4= IPV6=
for w in $(cat /proc/cmdline); do
    case "$w" in
        ngfw.name=*) NAME="${w#*=}" ;;
        ngfw.ipv4=*) IPV4="${w#*=}" ;;
        ngfw.ipv6=*) IPV6="${w#*=}" ;;
    esac
done
hostname "$NAME"
ip link set lo up
n=0
while [ ! -e /sys/class/net/eth0 ] && [ $n -lt 100 ]; do sleep 0.05; n=$((n + 1)); done
# like the lab's namespaces: the address is usable at once (no duplicate address detection)
echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad
ip link set eth0 up
[ -n "$IPV4" ] && ip addr add "$IPV4" dev eth0
[ -n "$IPV6" ] && ip -6 addr add "$IPV6" dev eth0
mkdir -p /www
echo "hello from $NAME" > /www/index.html
yes ngfw-lab-guest | head -c 1048576 > /www/blob.bin
httpd -p 80 -h /www
stty -F /dev/ttyS1 raw -echo
echo "ngfw-guest: ready name=$NAME mac=$(cat /sys/class/net/eth0/address) ipv4=$IPV4 ipv6=$IPV6"

@AGENT@
""".replace("@AGENT@\n", agent_shell() + AGENT_START)


class GuestImageError(RuntimeError):
    """The guest image cannot be made (a package cannot be found or fetched, a module is missing)."""


class KernelDownloadFailed(GuestImageError):
    """`apt-get download` of the kernel package failed."""


@dataclass(frozen=True)
class GuestImage:
    """A bootable guest: `kernel` and `initrd` paths, the kernel release, and the cache key."""

    kernel: Path
    initrd: Path
    kernel_release: str
    key: str

    @staticmethod
    def cmdline(name: str, ipv4: str | None = None, ipv6: str | None = None, extra: str = "") -> str:
        """The kernel command line for one guest: console on ttyS0, eth0's addresses ("10.77.0.11/24")."""
        words = ["console=ttyS0", "panic=-1", "quiet", "loglevel=4", f"ngfw.name={name}"]
        if ipv4:
            words.append(f"ngfw.ipv4={ipv4}")
        if ipv6:
            words.append(f"ngfw.ipv6={ipv6}")
        return " ".join([*words, *extra.split()])


@dataclass(frozen=True)
class PackageVersions:
    kernel_package: str  # linux-image-6.1.0-57-amd64
    kernel_version: str  # 6.1.192-3
    busybox_version: str

    @property
    def kernel_release(self) -> str:
        return self.kernel_package.removeprefix("linux-image-")


def guest_cache_root() -> Path:
    return Path(cache_dir()) / "lab-guest"


def parse_meta_depends(apt_show: str) -> tuple[str, str]:
    """(kernel package, version) from `apt-cache show linux-image-amd64` ("Depends: linux-image-X (= V)")."""
    for line in apt_show.splitlines():
        if line.startswith("Depends:"):
            found = re.search(r"(linux-image-[\w.+-]+)(?:\s*\(=\s*([^)\s]+)\))?", line)
            if found:
                return found.group(1), found.group(2) or ""
    raise GuestImageError(f"{KERNEL_META_PACKAGE} names no linux-image package in its Depends")


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 300) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise GuestImageError(f"{argv[0]} is not installed") from exc
    if done.returncode != 0:
        raise GuestImageError(f"`{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return done.stdout


def package_versions() -> PackageVersions:
    """Which kernel package `linux-image-amd64` stands for now, and the installed busybox-static's version."""
    show = _run(["apt-cache", "show", "--no-all-versions", KERNEL_META_PACKAGE], timeout=60)
    kernel_package, kernel_version = parse_meta_depends(show)
    if not kernel_version:
        policy = _run(["apt-cache", "policy", kernel_package], timeout=60)
        found = re.search(r"Candidate:\s*(\S+)", policy)
        if not found or found.group(1) == "(none)":
            raise GuestImageError(f"no installable version of {kernel_package} (run `apt-get update`)")
        kernel_version = found.group(1)
    try:
        busybox = _run(["dpkg-query", "-W", "-f", "${Version}", BUSYBOX_PACKAGE], timeout=30).strip()
    except GuestImageError:
        raise GuestImageError(f"{BUSYBOX_PACKAGE} is not installed (it is in deploy/packages-lab.txt)") from None
    return PackageVersions(kernel_package, kernel_version, busybox)


def image_key(versions: PackageVersions) -> str:
    material = json.dumps(
        [
            BUILDER_VERSION,
            versions.kernel_package,
            versions.kernel_version,
            versions.busybox_version,
            INIT_SCRIPT,
            NIC_MODULES,
        ]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def modinfo_depends(module: bytes) -> list[str]:
    """The `depends=` names of a kernel module (from its .modinfo strings), '-' read as '_'."""
    found = re.search(rb"(?:^|\x00)depends=([^\x00]*)\x00", module)
    if not found or not found.group(1):
        return []
    return [name.decode().replace("-", "_") for name in found.group(1).split(b",") if name]


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF kernel inside an xz-compressed bzImage (what scripts/extract-vmlinux does), or None."""
    start = bzimage.find(b"\xfd7zXZ\x00")
    while start >= 0:
        try:
            elf = lzma.LZMADecompressor().decompress(bzimage[start:])
        except lzma.LZMAError:
            elf = b""
        if elf[:4] == b"\x7fELF":
            return elf
        start = bzimage.find(b"\xfd7zXZ\x00", start + 1)
    return None


def load_order(wanted: Iterable[str], depends: Callable[[str], list[str]], builtin: set[str]) -> list[str]:
    """Modules to load, each after those it depends on (builtin ones are skipped)."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in builtin or name in order:
            return
        if name in visiting:
            raise GuestImageError(f"module dependency cycle through {name}")
        visiting.add(name)
        for dep in depends(name):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


# --- initramfs (cpio "newc") --------------------------------------------------------------------


@dataclass(frozen=True)
class CpioEntry:
    name: str  # without a leading "/"
    mode: int  # type and permission bits (stat.S_IFREG | 0o755, ...)
    data: bytes = b""  # contents, or a symlink's target
    rdev: tuple[int, int] = (0, 0)


def write_newc(entries: Iterable[CpioEntry], out: io.BufferedIOBase | io.BytesIO) -> None:
    """Write `entries` as a cpio archive in the kernel's initramfs format (SVR4 "newc", no checksums)."""

    def pad(n: int) -> bytes:
        return b"\x00" * (-n % 4)

    def record(ino: int, entry: CpioEntry) -> None:
        name = entry.name.encode() + b"\x00"
        fields = [ino, entry.mode, 0, 0, 1, 0, len(entry.data), 0, 0, entry.rdev[0], entry.rdev[1], len(name), 0]
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        out.write(header + name + pad(len(header) + len(name)))
        out.write(entry.data + pad(len(entry.data)))

    ino = 0
    for ino, entry in enumerate(entries, start=1):
        record(ino, entry)
    record(ino + 1, CpioEntry("TRAILER!!!", 0))


def read_newc(data: bytes) -> list[CpioEntry]:
    """The entries of a newc archive (the inverse of `write_newc`; used to check images)."""
    entries: list[CpioEntry] = []
    pos = 0
    while True:
        if data[pos : pos + 6] != b"070701":
            raise ValueError(f"bad cpio header at {pos}")
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name_start = pos + 110
        name = data[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        body = data[data_start : data_start + filesize]
        pos = data_start + filesize + (-filesize % 4)
        if name == "TRAILER!!!":
            return entries
        entries.append(CpioEntry(name, fields[1], body, (fields[9], fields[10])))


def initramfs_entries(busybox: bytes, modules: list[tuple[str, bytes]]) -> list[CpioEntry]:
    """The guest's root: busybox, /init, the modules and their load order, /dev/console for early output."""
    d, f = stat.S_IFDIR | 0o755, stat.S_IFREG
    entries = [
        CpioEntry(name, d) for name in ("bin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "tmp", "www", "root")
    ]
    entries += [
        CpioEntry("dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1)),
        CpioEntry("bin/busybox", f | 0o755, busybox),
        CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"busybox"),
        CpioEntry("init", f | 0o755, INIT_SCRIPT.encode()),
        CpioEntry("etc/modules-load", f | 0o644, "".join(f"{name}\n" for name, _ in modules).encode()),
    ]
    entries += [CpioEntry(f"lib/modules/{name}.ko", f | 0o644, data) for name, data in modules]
    return entries


# --- building -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build of the same image finishes first
        yield


def _cached(root: Path, key: str) -> GuestImage | None:
    for path in root.glob(f"*-{key}/manifest.json"):
        manifest = json.loads(path.read_text())
        image = GuestImage(path.parent / "vmlinux", path.parent / "initrd.cpio", manifest["kernel_release"], key)
        if image.kernel.exists() and image.initrd.exists():
            return image
    return None


def _newest_cached(root: Path) -> GuestImage | None:
    manifests = sorted(root.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in manifests:
        found = _cached(root, json.loads(path.read_text())["key"])
        if found:
            return found
    return None


def guest_image(root: Path | None = None, progress: Callable[[str], None] | None = None) -> GuestImage:
    """The cached guest image for the current package versions, built first if there is none."""
    root = root or guest_cache_root()
    say = progress or (lambda _msg: None)
    with _locked(root):
        try:
            versions = package_versions()
        except GuestImageError:
            fallback = _newest_cached(root)
            if fallback:  # apt's lists are gone (a cleaned image): an earlier build still boots
                return fallback
            raise
        key = image_key(versions)
        found = _cached(root, key)
        if found:
            return found
        say(
            f"building the lab guest image from {versions.kernel_package} {versions.kernel_version} and "
            f"{BUSYBOX_PACKAGE} {versions.busybox_version} (once; cached in {root})"
        )
        try:
            return _build(root, versions, key)
        except KernelDownloadFailed:
            # apt's lists name a version the archive no longer has (a security update replaced it)
            say("apt-get download failed: running apt-get update and trying again")
            _run(["apt-get", "update", "-q"], timeout=600)
            versions = package_versions()
            key = image_key(versions)
            return _cached(root, key) or _build(root, versions, key)


def _build(root: Path, versions: PackageVersions, key: str) -> GuestImage:
    release = versions.kernel_release
    final = root / f"{release}-{key}"
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        os.chmod(scratch, 0o755)  # apt-get download drops privileges to _apt where it can
        try:
            _run(["apt-get", "download", f"{versions.kernel_package}={versions.kernel_version}"], cwd=scratch)
        except GuestImageError as exc:
            raise KernelDownloadFailed(str(exc)) from None
        debs = list(scratch.glob("*.deb"))
        if len(debs) != 1:
            raise GuestImageError(f"apt-get download of {versions.kernel_package} left {len(debs)} .deb files")
        tree = scratch / "tree"
        _run(["dpkg-deb", "-x", str(debs[0]), str(tree)])
        kernel = tree / "boot" / f"vmlinuz-{release}"
        moddir = tree / "lib" / "modules" / release
        if not kernel.exists():
            raise GuestImageError(f"{debs[0].name} has no boot/vmlinuz-{release}")
        by_name = {p.name.removesuffix(".ko").replace("-", "_"): p for p in moddir.rglob("*.ko")}
        builtin_list = moddir / "modules.builtin"
        builtin = {
            Path(line).name.removesuffix(".ko").replace("-", "_")
            for line in (builtin_list.read_text().split() if builtin_list.exists() else [])
        }

        def depends(name: str) -> list[str]:
            if name not in by_name:
                raise GuestImageError(f"module {name} is neither built in nor in {versions.kernel_package}")
            return modinfo_depends(by_name[name].read_bytes())

        order = load_order(NIC_MODULES, depends, builtin)
        modules = [(name, by_name[name].read_bytes()) for name in order]
        work = scratch / "out"
        work.mkdir()
        vmlinux = extract_vmlinux(kernel.read_bytes())
        if vmlinux is None:  # not xz-compressed: QEMU boots the bzImage itself
            shutil.copyfile(kernel, work / "vmlinux")
        else:
            (work / "vmlinux").write_bytes(vmlinux)
        with open(work / "initrd.cpio", "wb") as out:
            write_newc(initramfs_entries(BUSYBOX_PATH.read_bytes(), modules), out)
        manifest = {
            "key": key,
            "kernel_release": release,
            "kernel_package": versions.kernel_package,
            "kernel_version": versions.kernel_version,
            "busybox_version": versions.busybox_version,
            "modules": order,
            "builder": BUILDER_VERSION,
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if final.exists():
            shutil.rmtree(final)
        os.rename(work, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for older in root.iterdir():  # images of earlier package versions: ~75 MB each, never used again
        if older.is_dir() and older != final and not older.name.startswith("."):
            shutil.rmtree(older, ignore_errors=True)
    return GuestImage(final / "vmlinux", final / "initrd.cpio", release, key)
