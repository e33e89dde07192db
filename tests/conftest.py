"""Every EVE file a test makes ngfw write is validated against docs/eve-schema.json when the test ends.

In-process writers announce their files (ngfw.dataplane.eve_outputs.FILE_OPENED_HOOKS), dataplane processes theirs
(ngfw.lab.dataplane_process.EVE_FILE_HOOKS: every namespace test's dataplane); replay records are checked where
the replay tests read them.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from ngfw.dataplane import eve_outputs
from ngfw.dataplane.eve_schema import file_problems
from ngfw.lab import dataplane_process


@pytest.fixture(autouse=True)
def _eve_files_follow_the_schema() -> Iterator[None]:
    # set up before, so torn down after, the fixtures that stop the test's dataplanes
    opened: list[str] = []
    eve_outputs.FILE_OPENED_HOOKS.append(opened.append)
    dataplane_process.EVE_FILE_HOOKS.append(opened.append)
    try:
        yield
    finally:
        eve_outputs.FILE_OPENED_HOOKS.remove(opened.append)
        dataplane_process.EVE_FILE_HOOKS.remove(opened.append)
    found = [p for path in dict.fromkeys(opened) for p in file_problems(path)]
    if found:
        pytest.fail("EVE records that do not follow docs/eve-schema.json:\n" + "\n".join(found[:30]), pytrace=False)


@pytest.fixture(autouse=True)
def _keep_sigpipe_ignored() -> Iterator[None]:
    """`ngfw.cli.main` of `rules`, `policy`, `replay`, `sessions`... sets SIGPIPE to its default (so that
    `ngfw replay ... | head` ends quietly); called in-process by a test, that would let a later test's write to a
    socket its peer closed (a TLS client whose certificate control refused) kill the whole pytest process."""
    before = signal.getsignal(signal.SIGPIPE)
    yield
    signal.signal(signal.SIGPIPE, before)
