"""Ctrl-C and SIGTERM as exceptions, so the lab is torn down in `finally` blocks, in this process only.

pyroute2 forks short-lived children to enter namespaces; a fork inherits Python signal handlers
and the whole call stack, so a signal landing in such a child would unwind *our* stack there
and run the cleanup code twice. Our handlers make a forked child exit at once instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from types import FrameType


class Terminated(BaseException):
    """SIGTERM arrived (raised like KeyboardInterrupt, so only `finally`/`except BaseException` see it)."""


@contextlib.contextmanager
def raise_on_signals() -> Iterator[Callable[[], None]]:
    """SIGINT raises KeyboardInterrupt, SIGTERM raises Terminated, within the block.

    Yields `quiet()`: call it when teardown starts, so a second Ctrl-C cannot cut it short.
    The previous handlers are back after the block.
    """
    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            os._exit(128 + signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Terminated(signal.Signals(signum).name)

    def quiet() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield quiet
    finally:
        for s, h in old.items():
            signal.signal(s, h)
