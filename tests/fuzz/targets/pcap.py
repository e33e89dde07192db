"""The capture reader: any bytes as a pcap/pcapng file, replayed as `ngfw replay --rules` replays one."""

from __future__ import annotations

from functools import cache

from tests.fuzz.targets.pipeline import ReplayEngine


@cache
def _engine() -> ReplayEngine:
    return ReplayEngine()


def one_input(data: bytes) -> None:
    result, events = _engine().replay(data)
    # a damaged file is named, with the offset where the damage is, never past the file
    assert result["error"] is None or result["error_offset"] <= len(data), result
    for event in events:
        assert event["event"] in ("flow", "alert", "drop"), event
