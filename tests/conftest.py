"""Every EVE file a test makes ngfw write is validated against docs/eve-schema.json when the test ends.

In-process writers announce their files (ngfw.dataplane.eve_outputs.FILE_OPENED_HOOKS); dataplane processes of
the namespace tests are checked when their fixture stops them (tests/netns/conftest.py), replay records where
the replay tests read them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ngfw.dataplane import eve_outputs
from ngfw.dataplane.eve_schema import file_problems


@pytest.fixture(autouse=True)
def _eve_files_follow_the_schema() -> Iterator[None]:
    opened: list[str] = []
    eve_outputs.FILE_OPENED_HOOKS.append(opened.append)
    try:
        yield
    finally:
        eve_outputs.FILE_OPENED_HOOKS.remove(opened.append)
    found = [p for path in dict.fromkeys(opened) for p in file_problems(path)]
    if found:
        pytest.fail("EVE records that do not follow docs/eve-schema.json:\n" + "\n".join(found[:30]), pytrace=False)
