"""A client of the QEMU guest agent (qemu-ga, Debian's qemu-guest-agent) over its virtio-serial port: run
a command in a guest and read a guest's file, without a network path into it (the ngfw VM's two NICs are
the wire; it has no management NIC in the lab).

QEMU side: `qga_qemu_args(socket_path)`. Protocol: JSON commands, one per line, over a chardev socket
that serves one client at a time; `guest-sync` with a fresh id skips whatever an earlier, interrupted
client left unread.
"""

from __future__ import annotations

import base64
import json
import random
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

AGENT_PORT = "org.qemu.guest_agent.0"


class AgentError(RuntimeError):
    pass


def qga_qemu_args(socket_path: Path) -> tuple[str, ...]:
    """QEMU arguments for a guest agent channel on `socket_path` (a unix socket QEMU serves)."""
    return (
        "-device",
        "virtio-serial-pci,id=qga-serial",
        "-chardev",
        f"socket,id=qga,path={socket_path},server=on,wait=off",
        "-device",
        f"virtserialport,bus=qga-serial.0,chardev=qga,name={AGENT_PORT}",
    )


class QemuGuestAgent:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def call(self, command: str, arguments: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
        """One command; its "return" value. AgentError when the agent does not answer within `timeout`."""
        sync_id = random.randrange(1, 1 << 31)
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(timeout)
                sock.connect(str(self.socket_path))
                stream = sock.makefile("rwb")
                stream.write(json.dumps({"execute": "guest-sync", "arguments": {"id": sync_id}}).encode() + b"\n")
                stream.flush()
                while True:
                    line = stream.readline()
                    if not line:
                        raise AgentError(f"guest agent on {self.socket_path} closed the connection")
                    try:
                        if json.loads(line).get("return") == sync_id:
                            break
                    except ValueError:
                        continue  # a fragment an earlier client left
                request: dict[str, Any] = {"execute": command}
                if arguments:
                    request["arguments"] = arguments
                stream.write(json.dumps(request).encode() + b"\n")
                stream.flush()
                reply = json.loads(stream.readline() or b"{}")
        except (OSError, ValueError) as exc:
            raise AgentError(f"guest agent on {self.socket_path}: {exc}") from None
        if "error" in reply:
            raise AgentError(f"guest agent: {command}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def wait(self, timeout: float) -> None:
        """Until the agent answers (the guest booted far enough to start it)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                self.call("guest-ping", timeout=min(5.0, max(0.5, deadline - time.monotonic())))
                return
            except AgentError as exc:
                last = str(exc)
                time.sleep(1.0)
        raise AgentError(f"the guest agent did not answer within {timeout:.0f} s ({last})")

    def run(
        self, argv: list[str] | str, timeout: float = 60.0, input: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the guest (a string goes to /bin/sh -c) and wait for it."""
        if isinstance(argv, str):
            argv = ["/bin/sh", "-c", argv]
        arguments: dict[str, Any] = {"path": argv[0], "arg": argv[1:], "capture-output": True}
        if input is not None:
            arguments["input-data"] = base64.b64encode(input.encode()).decode()
        pid = self.call("guest-exec", arguments)["pid"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.call("guest-exec-status", {"pid": pid})
            if status.get("exited"):
                break
            if time.monotonic() > deadline:
                raise AgentError(f"{' '.join(argv)} did not finish in the guest within {timeout:.0f} s")
            time.sleep(0.2)
        done = subprocess.CompletedProcess(
            argv,
            int(status.get("exitcode", -1)),
            base64.b64decode(status.get("out-data", "")).decode(errors="replace"),
            base64.b64decode(status.get("err-data", "")).decode(errors="replace"),
        )
        if check and done.returncode != 0:
            raise AgentError(f"{' '.join(argv)} exited with {done.returncode} in the guest: {done.stdout}{done.stderr}")
        return done

    def read_file(self, path: str, limit: int = 64 << 20) -> bytes:
        handle = self.call("guest-file-open", {"path": path, "mode": "r"})
        chunks = []
        try:
            total = 0
            while total < limit:
                part = self.call("guest-file-read", {"handle": handle, "count": 1 << 20})
                data = base64.b64decode(part.get("buf-b64", ""))
                chunks.append(data)
                total += len(data)
                if part.get("eof") or not data:
                    break
        finally:
            self.call("guest-file-close", {"handle": handle})
        return b"".join(chunks)
