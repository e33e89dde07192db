"""Frames: the decoder alone (engine.decode) and a whole inline pipeline, frame after frame in one input,
so flows open, carry payload to App-ID and inspection, and close."""

from __future__ import annotations

from functools import cache

from ngfw.dataplane.fastpath import engine_module
from tests.fuzz.targets import records
from tests.fuzz.targets.pipeline import InlineWire


@cache
def _wire() -> InlineWire:
    return InlineWire()


def one_input(data: bytes) -> None:
    decode = engine_module().decode
    wire = _wire()
    wire.start_input()
    for flag, frame in records.split(data, limit=24):
        decoded = decode(frame)
        assert isinstance(decoded, dict), decoded
        wire.send(flag & 1, frame)
