"""What every test shares: the process's signal dispositions stay as Python set them."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _keep_sigpipe_ignored() -> Iterator[None]:
    """`ngfw.cli.main` of `rules`, `policy`, `replay`, `sessions`... sets SIGPIPE to its default (so that
    `ngfw replay ... | head` ends quietly); called in-process by a test, that would let a later test's write to a
    socket its peer closed (a TLS client whose certificate control refused) kill the whole pytest process."""
    before = signal.getsignal(signal.SIGPIPE)
    yield
    signal.signal(signal.SIGPIPE, before)
