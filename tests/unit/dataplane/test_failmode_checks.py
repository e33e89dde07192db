"""Fail mode per wire without root: the command line, the checks made before anything runs, and the shipped
wire program's layout (read from the object file, no kernel involved). The traffic: tests/netns/test_failmode.py."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ngfw import cli
from ngfw.dataplane.failmode import OBJECT_PATH, FailModeError, WireFailModes, WireStatus, wire_modes

REPO = Path(__file__).resolve().parents[3]
BPF_F_MMAPABLE = 1 << 10


def parse(*argv: str):
    return cli.build_parser(with_control=False).parse_args(["dataplane", *argv])


def run_dataplane(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ngfw", "dataplane", *argv], capture_output=True, text=True, timeout=60, cwd=REPO
    )


def test_closed_is_the_default_and_open_applies_to_every_wire() -> None:
    args = parse("--wire", "a0:b0", "--wire", "a1:b1")
    assert wire_modes(args.wire, args.fail_mode) == {("a0", "b0"): "closed", ("a1", "b1"): "closed"}
    args = parse("--wire", "a0:b0", "--wire", "a1:b1", "--fail-mode", "open")
    assert wire_modes(args.wire, args.fail_mode) == {("a0", "b0"): "open", ("a1", "b1"): "open"}


def test_a_wire_names_its_own_mode() -> None:
    args = parse("--wire", "a0:b0:open", "--wire", "a1:b1")
    assert wire_modes(args.wire, args.fail_mode) == {("a0", "b0"): "open", ("a1", "b1"): "closed"}
    args = parse("--wire", "a0:b0:closed", "--wire", "a1:b1", "--fail-mode", "open")
    assert wire_modes(args.wire, args.fail_mode) == {("a0", "b0"): "closed", ("a1", "b1"): "open"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--wire", "a0:b0:opne"], "fail mode 'opne' of wire a0:b0 is neither closed nor open"),
        (["--wire", "a0:b0:"], "fail mode '' of wire a0:b0 is neither closed nor open"),
        (["--wire", "a0:b0", "--fail-mode", "sideways"], "argument --fail-mode: invalid choice: 'sideways'"),
        (
            ["--tap", "t0", "--fail-mode", "open"],
            "ngfw dataplane: --fail-mode open applies to wires, and this dataplane has no --wire",
        ),
    ],
)
def test_a_bad_fail_mode_is_one_sentence(argv: list[str], message: str) -> None:
    r = run_dataplane(*argv)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_closed_wires_load_nothing() -> None:
    modes = WireFailModes([("a0", "b0"), ("a1", "b1")], {("a1", "b1"): "closed"}, ["a0", "b0", "a1", "b1"])
    assert modes.program is None
    assert modes.status() == [WireStatus("a0:b0", "closed", 0, 0, 0), WireStatus("a1:b1", "closed", 0, 0, 0)]


def test_a_mode_for_a_wire_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="fail mode given for a0:x9, which is not a --wire of this dataplane"):
        WireFailModes([("a0", "b0")], {("a0", "x9"): "open"}, ["a0", "b0"])


def test_open_without_the_wire_program_says_to_rebuild(tmp_path: Path) -> None:
    missing = tmp_path / "wire.bpf.o"
    with pytest.raises(FailModeError) as raised:
        WireFailModes([("a0", "b0")], {("a0", "b0"): "open"}, ["a0", "b0"], object_path=missing)
    assert str(raised.value) == (
        f"wire a0:b0: fail mode open needs the wire program {missing}, which is missing: "
        "rebuild ngfw (setup.py compiles it with clang)"
    )


def test_the_shipped_wire_program_matches_its_loader() -> None:
    """The object setup.py compiled holds the tc program and its maps (flow bypass's too), with the value sizes the loader
    was compiled with (bpf/wire.h on both sides), and a heartbeat map the dataplane can memory-map."""
    from ngfw._fastpath import wirebpf

    found = wirebpf.describe_object(str(OBJECT_PATH))
    assert (found["program"], found["section"]) == ("ngfw_wire", "tc")
    assert {name: m["value_size"] for name, m in found["maps"].items()} == wirebpf.expected_value_sizes()
    assert found["maps"]["ngfw_liveness"]["flags"] & BPF_F_MMAPABLE
    assert (
        found["maps"]["ngfw_wires"]["max_entries"] == found["maps"]["ngfw_failopen"]["max_entries"] == wirebpf.MAX_WIRES
    )


def test_syn_flood_protection_without_the_wire_program_is_off_and_says_so_once(tmp_path: Path, caplog) -> None:
    from ngfw.dataplane.admission import SynLimits

    caplog.set_level(logging.WARNING, logger="ngfw.dataplane.failmode")
    modes = WireFailModes(
        [("a0", "b0")],
        {},
        ["a0", "b0"],
        object_path=tmp_path / "wire.bpf.o",
        port_index={"a0": 0, "b0": 1},
        syn_limits=SynLimits(),
    )
    assert modes.program is None and modes.syn_limits is None
    assert modes.syn_stats() == {
        "enabled": False,
        "per_source": 0.0,
        "total": 0.0,
        "seen": 0,
        "dropped_source": 0,
        "dropped_total": 0,
    }
    [record] = caplog.records
    assert record.getMessage().startswith("wire a0:b0: SYN flood protection needs the wire program")
    assert record.getMessage().endswith("; SYN flood protection off: every SYN reaches its rings")
