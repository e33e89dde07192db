"""SYN flood protection's settings and reports (no root): the option's values, the settings file, the log line
naming the sources the kernel limited. The kernel side is tests/netns/test_syn_admission.py."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from ngfw import cli
from ngfw.config import with_config
from ngfw.dataplane.admission import DEFAULT_PER_SOURCE, AdmissionReport, Rate, SynLimits, parse_rate

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("10000/s", Rate(10000, 10000)),
        ("2500", Rate(2500, 2500)),
        ("300/s,20", Rate(300, 20)),
        (" 0.5 / s ", Rate(0.5, 1)),
        ("off", None),
        ("0", None),
        ("OFF", None),
    ],
)
def test_rates_are_read_as_operators_write_them(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("10k", "is not a rate"),
        ("-5/s", "is not a rate"),
        ("5/m", "is not a rate"),
        ("1e12", "is not a rate"),
        ("200000000/s", "at most"),
        ("10/s,0", "burst must be at least 1"),
    ],
)
def test_a_bad_rate_is_refused_in_one_sentence_naming_it(text: str, says: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_rate(text)
    assert says in str(exc.value) and repr(text) in str(exc.value)


def test_the_default_protects_per_source_and_leaves_the_total_alone() -> None:
    args = cli.build_parser().parse_args(["dataplane", "--wire", "a:b"])
    assert args.syn_limit_per_source == Rate(DEFAULT_PER_SOURCE, DEFAULT_PER_SOURCE)
    assert args.syn_limit_total is None
    assert SynLimits().per_source == args.syn_limit_per_source and SynLimits().enabled


def test_the_settings_file_takes_the_limits_and_a_bare_off(tmp_path: Path) -> None:
    settings = tmp_path / "dataplane.yaml"
    settings.write_text("wire: [a:b]\nsyn-limit-per-source: off\nsyn-limit-total: 50000/s,5000\n")
    parser = cli.build_parser()
    words = ["dataplane", "--config", str(settings)]
    args = parser.parse_args(with_config(words, "dataplane", parser, str(settings)))
    assert args.syn_limit_per_source is None
    assert args.syn_limit_total == Rate(50000, 5000)


def test_a_bad_value_on_the_command_line_is_one_line_without_a_traceback() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ngfw", "dataplane", "--wire", "a:b", "--syn-limit-per-source", "lots"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "--syn-limit-per-source: 'lots' is not a rate" in done.stderr.strip().splitlines()[-1]


class FakeProgram:
    """What AdmissionReport reads of the wire program: counters and the tracked sources."""

    def __init__(self) -> None:
        self.stats = {"seen": 0, "dropped_source": 0, "dropped_total": 0}
        self.sources: dict[bytes, int] = {}
        self.walks = 0

    def syn_stats(self) -> dict[str, int]:
        return dict(self.stats)

    def syn_sources(self, min_dropped: int) -> list[tuple[bytes, int, int, int]]:
        self.walks += 1
        return [(raw, 10, n, 0) for raw, n in self.sources.items() if n >= min_dropped]


def v4(text: str) -> bytes:
    return bytes(10) + b"\xff\xff" + bytes(int(x) for x in text.split("."))


def test_the_worst_sources_are_logged_with_what_they_lost_since_the_last_report(caplog) -> None:
    program = FakeProgram()
    report = AdmissionReport(program, SynLimits(), now=99.0)
    caplog.set_level(logging.WARNING, logger="ngfw.dataplane.admission")
    assert report.maybe_log(now=100.0) == []  # nothing dropped: no walk of the sources, no line
    assert program.walks == 0 and not caplog.records
    program.stats["dropped_source"] = 1_500_000
    program.sources = {v4("10.77.0.11"): 1_400_000, v4("10.77.0.12"): 100_000}
    assert report.maybe_log(now=101.0) == [("10.77.0.11", 1_400_000), ("10.77.0.12", 100_000)]
    line = caplog.records[-1].getMessage()
    assert (
        "1,500,000 SYNs dropped in the kernel in 1.0 s" in line and "10.77.0.11 1,400,000, 10.77.0.12 100,000" in line
    )
    assert "10,000 SYN/s per source" in line
    # within the interval: no second line, however much more is dropped
    program.stats["dropped_source"] = 2_000_000
    program.sources[v4("10.77.0.11")] = 1_900_000
    assert report.maybe_log(now=105.0) == []
    # the next report counts from the last one
    assert report.maybe_log(now=112.0) == [("10.77.0.11", 500_000)]
    assert "500,000 SYNs dropped in the kernel in 11.0 s" in caplog.records[-1].getMessage()
