"""What the lab benchmarks share (bench/run.py, bench/synflood.py): the machine a run measured, and one lab
under a locked prefix for the whole run, removed however the run ends (an error, Ctrl-C, SIGTERM)."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
from collections.abc import Callable
from typing import Any

from ngfw.lab.lock import lock_prefix, release
from ngfw.lab.signals import Terminated, raise_on_signals
from ngfw.lab.topology import Lab, lab_down, lab_up


def machine_info() -> dict[str, Any]:
    """The machine, as a result file records it next to the figures (a shared one is noisy)."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "loadavg_at_start": os.getloadavg(),
        "python": platform.python_version(),
    }


def in_locked_lab(prefix: str, body: Callable[[Lab], int], log: Callable[[str], None]) -> int:
    """Lock `prefix`, build the lab under it, run `body(lab)` and remove the lab; the exit status is 130 when
    interrupted (what was measured until then stays with the caller), else what `body` returned. LabBusy:
    another process holds the prefix (nothing was built)."""
    lock = lock_prefix(prefix)
    try:
        with raise_on_signals() as quiet:
            lab = lab_up(prefix)
            try:
                return body(lab)
            finally:
                quiet()
                lab_down(prefix)
    except (KeyboardInterrupt, Terminated) as exc:
        log(f"interrupted ({type(exc).__name__}); lab removed, reporting what was measured")
        return 130
    finally:
        release(lock)
