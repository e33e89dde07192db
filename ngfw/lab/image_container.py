"""The ngfw VM image's root file system booted by systemd-nspawn: the real systemd of the image, at native
speed, for testing and measuring the packaged units (READY, watchdog, restarts, reloads, bad settings)
where a TCG guest would take minutes per boot.

The image's root partition is mounted read-only (a loop mount of partition 2 of the raw disk) and booted
with `--volatile=overlay`, so the container writes to a tmpfs and the image stays as built. The container's
network is a namespace the caller names -- the lab's fw namespace, whose two ports then are the wire of the
packaged dataplane unit.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

NSPAWN_RUN = Path("/run/systemd/nspawn")


class ContainerError(RuntimeError):
    pass


def root_partition_offset(image: Path) -> int:
    """Byte offset of the root (second) partition of the raw disk image."""
    table = json.loads(subprocess.run(["sfdisk", "-J", str(image)], check=True, capture_output=True, text=True).stdout)[
        "partitiontable"
    ]
    sector = int(table.get("sectorsize", 512))
    return int(table["partitions"][1]["start"]) * sector


def unavailable() -> str | None:
    """Why the image cannot be booted in a container here (None when it can)."""
    if os.geteuid() != 0:
        return "booting the image's systemd in a container needs root"
    for tool in ("systemd-nspawn", "nsenter", "sfdisk"):
        if shutil.which(tool) is None:
            return f"{tool} is missing (deploy/packages-vm.txt)"
    return None


class ImageContainer:
    """`with ImageContainer(image, "ngfw-t1", netns="nt1-fw") as c: c.run("systemctl start ngfw-dataplane")`."""

    def __init__(self, image: Path, name: str, netns: str | None = None, boot_timeout: float = 90.0) -> None:
        self.image = image
        self.name = name
        self.netns = netns
        self.boot_timeout = boot_timeout
        self.mountpoint: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader = 0
        self.log_path: Path | None = None

    def __enter__(self) -> ImageContainer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        problem = unavailable()
        if problem:
            raise ContainerError(problem)
        # nspawn removes its propagation directory when done and refuses to unless /run is a tmpfs (it is
        # on a booted host; not in every build container)
        NSPAWN_RUN.mkdir(parents=True, exist_ok=True)
        if (
            subprocess.run(
                ["findmnt", "-n", "-o", "FSTYPE", "--target", str(NSPAWN_RUN)], capture_output=True, text=True
            ).stdout.strip()
            != "tmpfs"
        ):
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(NSPAWN_RUN)], check=True)
        self.mountpoint = Path(tempfile.mkdtemp(prefix=f"{self.name}-root-"))
        subprocess.run(
            [
                "mount",
                "-o",
                f"loop,ro,offset={root_partition_offset(self.image)}",
                str(self.image),
                str(self.mountpoint),
            ],
            check=True,
            capture_output=True,
        )
        self.log_path = Path(tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")[1])
        argv = [
            "systemd-nspawn",
            "--quiet",
            "-D",
            str(self.mountpoint),
            "--volatile=overlay",
            "-M",
            self.name,
            "--register=no",
            "--keep-unit",
            "--console=pipe",
            "--boot",
            # nspawn drops CAP_NET_ADMIN from a container on a network it was given (the dataplane
            # configures links), and keeps CAP_BPF and bpf() from every container: a VM's systemd has
            # both, for the units that ask (the fail-open drop-in)
            "--capability=CAP_NET_ADMIN,CAP_BPF",
            "--system-call-filter=bpf",
        ]
        argv += [f"--network-namespace-path=/run/netns/{self.netns}"] if self.netns else ["--private-network"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + self.boot_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ContainerError(f"systemd-nspawn exited with {self.proc.returncode}: {self.log()}")
            self.leader = self._leader()
            if self.leader:
                state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.2)
        raise ContainerError(
            f"the image's systemd did not finish booting within {self.boot_timeout:.0f} s: {self.log()}"
        )

    def _leader(self) -> int:
        """The container's PID 1, as the host sees it."""
        assert self.proc is not None
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        except OSError:
            return 0
        return int(children[0]) if children else 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path and self.log_path.exists() else ""

    def run(
        self, argv: list[str] | str, timeout: float = 60.0, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (a string goes to /bin/sh -c)."""
        if isinstance(argv, str):
            argv = ["/bin/sh", "-c", argv]
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-C", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and done.returncode != 0:
            raise ContainerError(f"{' '.join(argv)} exited with {done.returncode}: {done.stdout}{done.stderr}")
        return done

    def copy_in(self, source: Path, path: str) -> None:
        """A host file into the container (its overlay: the image stays as built)."""
        with open(source, "rb") as data:
            done = subprocess.run(
                [
                    "nsenter",
                    "-t",
                    str(self.leader),
                    "-m",
                    "-u",
                    "-i",
                    "-n",
                    "-p",
                    "-C",
                    "--",
                    "/bin/sh",
                    "-c",
                    f"cat > {path}",
                ],
                stdin=data,
                capture_output=True,
                timeout=120,
            )
        if done.returncode != 0:
            raise ContainerError(f"copying {source} to {path}: {done.stderr.decode(errors='replace')}")

    def write(self, path: str, text: str, mode: str = "0640", owner: str = "root:ngfw") -> None:
        self.run(
            f'mkdir -p "$(dirname {path})" && cat > {path} && chown {owner} {path} && chmod {mode} {path}', input=text
        )

    def host_pid(self, unit: str) -> int:
        """The MainPID of `unit`, as the host sees it (for signals and ptrace from the host)."""
        inner = int(self.run(["systemctl", "show", "-P", "MainPID", unit]).stdout.strip() or 0)
        if not inner:
            return 0
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("NSpid:"):
                    pids = line.split()[1:]
                    if len(pids) >= 2 and int(pids[-1]) == inner and self._in_container(int(pids[0])):
                        return int(pids[0])
        return 0

    def _in_container(self, pid: int) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(f"/proc/{self.leader}/ns/pid")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # nspawn turns SIGTERM into an orderly shutdown of the container's systemd
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.mountpoint is not None:
            subprocess.run(["umount", str(self.mountpoint)], capture_output=True)
            try:
                self.mountpoint.rmdir()
            except OSError:
                pass
            self.mountpoint = None
        if self.log_path is not None:
            self.log_path.unlink(missing_ok=True)
            self.log_path = None
