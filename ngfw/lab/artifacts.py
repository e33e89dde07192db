"""The built deployment artifacts of a source tree -- dist/ngfw_*.deb (deploy/build-packages.sh) and the
VM image in dist/vm/ (deploy/vm/build-image.sh) -- and whether they are older than what they are built
from, for the lab (`--fw-vm`) and the tests that boot them."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ngfw.lab.dataplane_process import REPO_ROOT

# what the package is built from: code, shipped rules, build files, units and packaging
PACKAGE_SOURCES = (
    "ngfw",
    "rules",
    "setup.py",
    "pyproject.toml",
    "deploy/systemd",
    "deploy/deb",
    "deploy/etc",
    "deploy/logrotate",
    "deploy/build-packages.sh",
)
IMAGE_SOURCES = ("deploy/vm",)
SOURCE_SUFFIXES = (
    ".py",
    ".pyx",
    ".pxi",
    ".pxd",
    ".h",
    ".c",
    ".yaml",
    ".yml",
    ".rules",
    ".toml",
    ".sh",
    ".service",
    ".conf",
    ".network",
    ".cfg",
    ".in",
    ".txt",
    "",
)


class ArtifactError(RuntimeError):
    pass


@dataclass(frozen=True)
class VmImage:
    disk: Path
    kernel: Path
    initrd: Path

    def exists(self) -> bool:
        return self.disk.exists() and self.kernel.exists() and self.initrd.exists()


def dist_dir(repo: Path = REPO_ROOT) -> Path:
    return repo / "dist"


def vm_image(repo: Path = REPO_ROOT) -> VmImage:
    out = dist_dir(repo) / "vm"
    return VmImage(out / "ngfw-vm.img", out / "vmlinuz", out / "initrd.img")


def newest_deb(repo: Path = REPO_ROOT) -> Path | None:
    debs = sorted(dist_dir(repo).glob("ngfw_*.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def _newest_source(repo: Path, roots: tuple[str, ...]) -> tuple[float, str]:
    newest, which = 0.0, ""
    for root in roots:
        path = repo / root
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file.suffix not in SOURCE_SUFFIXES or file.name.endswith(".so"):
                continue
            if file.is_relative_to(repo / "ngfw/lab"):
                continue  # not in the package (pyproject.toml: the lab is development tooling)
            mtime = file.stat().st_mtime
            if mtime > newest:
                newest, which = mtime, str(file.relative_to(repo))
    return newest, which


def deb_stale(repo: Path = REPO_ROOT) -> str | None:
    """Why dist/ngfw_*.deb must be built (again); None when it is newer than everything it is built from."""
    deb = newest_deb(repo)
    if deb is None:
        return "there is no dist/ngfw_*.deb"
    newest, which = _newest_source(repo, PACKAGE_SOURCES)
    return f"{which} is newer than {deb.name}" if newest > deb.stat().st_mtime else None


def image_stale(repo: Path = REPO_ROOT) -> str | None:
    """Why the VM image must be built (again); None when it is newer than its package and deploy/vm."""
    image = vm_image(repo)
    if not image.exists():
        return f"there is no {image.disk.relative_to(repo)}"
    problem = deb_stale(repo)
    if problem:
        return problem
    deb = newest_deb(repo)
    assert deb is not None
    newest, which = _newest_source(repo, IMAGE_SOURCES)
    built = image.disk.stat().st_mtime
    if deb.stat().st_mtime > built:
        return f"{deb.name} is newer than the image"
    return f"{which} is newer than the image" if newest > built else None


def _run(argv: list[str], what: str, log: Path) -> None:
    with open(log, "wb") as out:
        done = subprocess.run(argv, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise ArtifactError(f"{what} failed (exit {done.returncode}; log {log}):\n{tail}")


def ensure_deb(repo: Path = REPO_ROOT, say: object = None) -> Path:
    """dist/ngfw_*.deb, built first (deploy/build-packages.sh: minutes) when missing or stale; no root needed."""
    reason = deb_stale(repo)
    if reason is not None:
        logs = dist_dir(repo) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        if callable(say):
            say(f"building the ngfw packages ({reason}); log in {logs}")
        _run(["bash", "deploy/build-packages.sh"], "deploy/build-packages.sh", logs / "build-packages.log")
    deb = newest_deb(repo)
    assert deb is not None
    return deb


def ensure_vm_image(repo: Path = REPO_ROOT, say: object = None) -> VmImage:
    """The VM image, built first (package, then image: minutes, Debian's mirrors) when missing or stale."""
    reason = image_stale(repo)
    if reason is None:
        return vm_image(repo)
    if os.geteuid() != 0:
        raise ArtifactError(f"the ngfw VM image must be built ({reason}): run deploy/vm/build-image.sh as root")
    logs = dist_dir(repo) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if callable(say):
        say(f"building the ngfw VM image ({reason}); logs in {logs}")
    if deb_stale(repo):
        _run(["bash", "deploy/build-packages.sh"], "deploy/build-packages.sh", logs / "build-packages.log")
    _run(["bash", "deploy/vm/build-image.sh"], "deploy/vm/build-image.sh", logs / "build-image.log")
    return vm_image(repo)
