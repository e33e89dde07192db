"""The capture reader: any bytes as a pcap/pcapng file, replayed both ways `ngfw replay` replays one: with
--rules (every flow inspected, records built from events, an exact-size copy so ASan sees any over-read)
and without (the file itself, read into the replayer's buffer, and the JSON lines the extension writes, which must
parse)."""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import orjson

from ngfw.dataplane.replay import Replayer
from tests.fuzz.targets.pipeline import ReplayEngine


@cache
def _engine() -> ReplayEngine:
    return ReplayEngine()


@cache
def _json_replayer() -> tuple[Replayer, Path]:
    base = "/dev/shm" if Path("/dev/shm").is_dir() else None
    return Replayer(flow_capacity=1024), Path(tempfile.mkdtemp(prefix="ngfw-fuzz-pcap-", dir=base)) / "fuzz.pcap"


def one_input(data: bytes) -> None:
    result, records = _engine().replay(data)
    # a damaged file is named, with the offset where the damage is, never past the file
    assert result["error"] is None or result["error_offset"] <= len(data), result
    orjson.dumps(records)
    replayer, path = _json_replayer()
    path.write_bytes(data)
    replayer.problems.clear()
    for line in replayer.replay_file_json(str(path)).splitlines():
        record = orjson.loads(line)
        assert record["event_type"] == "flow" and record["pcap_file"] == "fuzz.pcap", record
