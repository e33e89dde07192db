"""Who owns a lab prefix: an flock held for as long as a test session or benchmark uses the lab.

`lab_up` first removes whatever exists under its prefix (a crashed run's leftovers); the lock
keeps it from removing a lab that a concurrent run is still using.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable
from typing import IO

LOCK_DIR = "/run/ngfw-lab"


class LabBusy(RuntimeError):
    """Another live process holds the lab prefix."""


def lock_prefix(prefix: str) -> IO[str]:
    """Take the lock of `prefix` without waiting (LabBusy if held). Keep the returned file open to hold it."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    f = open(os.path.join(LOCK_DIR, f"{prefix}.lock"), "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise LabBusy(f"lab prefix {prefix!r} is in use by another process") from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def claim_prefix(candidates: Iterable[str]) -> tuple[str, IO[str]]:
    """The first candidate prefix nobody holds, locked for the caller."""
    for prefix in candidates:
        try:
            return prefix, lock_prefix(prefix)
        except LabBusy:
            continue
    raise LabBusy("every candidate lab prefix is in use")


def release(lock: IO[str]) -> None:
    lock.close()  # closing the file drops the flock
