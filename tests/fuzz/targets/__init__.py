"""The fuzz targets, one module per input surface; each has `one_input(data: bytes) -> None`.

A target returns normally for any input the surface handles, including a documented refusal (the
project's own error classes, a ValueError with a message); anything else it lets through (another
exception, a sanitizer report, a crash, a hang) is a finding. The same functions replay the
regression inputs on the normal build (tests/unit/test_fuzz_regressions.py).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Target:
    name: str
    summary: str
    max_len: int  # libFuzzer's -max_len: the largest input worth mutating
    # the Python packages of the surface, instrumented by atheris for coverage (all of ngfw would be ~50x slower)
    instrument: tuple[str, ...] = ()

    @property
    def leak_check(self) -> bool:
        """libFuzzer's per-input LeakSanitizer pass: for the C surfaces. A Python surface's objects are the
        garbage collector's, invisible to LSan, and its caches would make every input pay a heap scan."""
        return not self.instrument

    def module(self) -> ModuleType:
        return importlib.import_module(f"tests.fuzz.targets.{self.name}")


TARGETS = {
    t.name: t
    for t in (
        Target(
            "pcap",
            "pcap/pcapng reader: Engine.replay_capture over the bytes of a file, App-ID and inspection on",
            65536,
        ),
        Target("decode", "frames through engine.decode and a whole inline pipeline (App-ID, inspection)", 8192),
        Target("appid", "every App-ID parser on its own, and the dispatcher, over fuzzed flows", 8192),
        Target("inspect", "TCP/UDP flows with fuzzed payloads against signatures on every buffer and transform", 16384),
        Target(
            "suricata",
            "Suricata rule text -> signatures -> the fastpath's inspection tables",
            4096,
            ("ngfw.compiler.suricata",),
        ),
        Target(
            "policy",
            "policy YAML text -> resources -> compiled policy -> fastpath tables",
            8192,
            ("ngfw.model", "ngfw.compiler.policy", "ngfw.compiler.lint", "ngfw.compiler.identity"),
        ),
        Target(
            "control",
            "the control API's request parsing: path values, query values and bodies",
            8192,
            (
                "ngfw.control.server",
                "ngfw.control.service",
                "ngfw.control.documents",
                "ngfw.control.validation",
                "ngfw.control.diff",
                "ngfw.model.yamldoc",
            ),
        ),
    )
}
