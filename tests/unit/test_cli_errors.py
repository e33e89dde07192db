"""Mistakes a user makes on the command line get one clear sentence and a non-zero exit, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ngfw import cli
from ngfw.dataplane import fastpath

REPO = Path(__file__).resolve().parents[2]


def run_ngfw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ngfw", *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_missing_interface_is_one_sentence() -> None:
    r = run_ngfw("dataplane", "--wire", "nosuch0:nosuch1", "--policy", "rules/examples/lab.yaml")
    assert r.returncode == 1
    assert r.stderr.strip() == "ngfw dataplane: interface nosuch0 does not exist (in this network namespace)"


def test_bad_policy_names_file_resource_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((REPO / "rules/examples/lab.yaml").read_text().replace("action: reject", "action: refuse"))
    r = run_ngfw("policy", "check", str(bad))
    assert r.returncode == 1
    assert "bad.yaml" in r.stderr and "SecurityPolicy tenant-a/main" in r.stderr and ".action" in r.stderr
    assert "Traceback" not in r.stderr


def test_wire_needs_two_interfaces() -> None:
    r = run_ngfw("dataplane", "--wire", "eth0")
    assert r.returncode == 2 and "IF_A:IF_B" in r.stderr


def test_dataplane_without_ports_says_what_is_missing() -> None:
    r = run_ngfw("dataplane", "--policy", "rules/examples/lab.yaml")
    assert r.returncode == 2 and "--wire" in r.stderr


def test_missing_libhs_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def failing_import(name: str, *args, **kwargs):
        if name == "ngfw._fastpath" or name.startswith("ngfw._fastpath."):
            raise ImportError("libhs.so.5: cannot open shared object file: No such file or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    with pytest.raises(fastpath.FastpathMissing, match="cannot load libhs"):
        fastpath.engine_module()


def test_policy_check_prints_a_summary() -> None:
    r = run_ngfw("policy", "check", "rules/examples/lab.yaml")
    assert r.returncode == 0, r.stderr
    assert "1 vsys, 2 workloads, 6 rules" in r.stdout


def test_schema_is_json() -> None:
    import json

    r = run_ngfw("schema")
    assert r.returncode == 0
    assert "oneOf" in json.dumps(json.loads(r.stdout))


def test_parser_rejects_bad_timeout() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["dataplane", "--wire", "a:b", "--timeout", "udp=soon"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("--eve", "kafka://broker:9092"),
            "ngfw dataplane: --eve kafka://broker:9092: unknown kind 'kafka'; use a file "
            "path, file://, syslog://, syslog+tcp://, unix:// or unix+dgram://",
        ),
        (
            ("--eve", "syslog://loghost"),
            "ngfw dataplane: --eve syslog://loghost: give a host and a port (syslog://HOST:PORT)",
        ),
        (("--capture-file-size", "0"), "ngfw dataplane: --capture-file-size 0: give a size in MB above 0"),
        (
            ("--capture-max-size", "1", "--capture-file-size", "2"),
            "ngfw dataplane: capture space per vsys (1048576 bytes) is smaller than one file (2097152)",
        ),
    ],
)
def test_bad_eve_and_capture_options_are_one_sentence(args: tuple[str, ...], expected: str) -> None:
    r = run_ngfw("dataplane", "--wire", "nosuch0:nosuch1", *args)
    assert (r.returncode, r.stderr.strip()) in ((1, expected), (2, expected)), r.stderr
