"""/etc/ngfw/dataplane.yaml and control.yaml: every key is an option of the command; every mistake is one
sentence that names the file and the setting (what `systemctl status` shows)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ngfw.cli import build_parser
from ngfw.config import ConfigError, config_argv, subcommand_parser, with_config

REPO = Path(__file__).resolve().parents[2]


def dataplane_parser():
    return subcommand_parser(build_parser(), "dataplane")


def settings(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dataplane.yaml"
    path.write_text(text)
    return path


def run_ngfw(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ngfw", *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_settings_become_the_options_they_name(tmp_path: Path) -> None:
    path = settings(
        tmp_path,
        """
wires: [vmside0:uplink0]
policy: /etc/ngfw/policy
rules: {et: /etc/ngfw/rules/et-open}
vars: {HOME_NET: [10.0.0.0/8, 192.168.0.0/16], EXTERNAL_NET: "!$HOME_NET"}
timeouts: {udp: 20}
segment: {lan: [tap1, tap2]}
tx-thread: false
flow_capacity: 1000
control-wait: 30
""",
    )
    parser = build_parser()
    args = parser.parse_args(with_config(["dataplane", "--config", str(path)], "dataplane", parser, str(path)))
    assert args.wire == [("vmside0", "uplink0", None)]
    assert args.policy == "/etc/ngfw/policy"
    assert args.rules == ["et=/etc/ngfw/rules/et-open"]
    assert args.var == ["HOME_NET=[10.0.0.0/8,192.168.0.0/16]", "EXTERNAL_NET=!$HOME_NET"]
    assert args.timeout == [("udp", 20.0)]
    assert args.segment == [("lan", ["tap1", "tap2"])]
    assert args.tx_thread is False
    assert args.flow_capacity == 1000
    assert args.control_wait == 30.0


def test_the_command_line_wins_over_the_file(tmp_path: Path) -> None:
    path = settings(tmp_path, "wire: [a0:b0]\nflow-capacity: 1000\npolicy: /etc/ngfw/policy\n")
    parser = build_parser()
    words = ["dataplane", "--config", str(path), "--flow-capacity", "5", "--wire", "c0:d0"]
    args = parser.parse_args(with_config(words, "dataplane", parser, str(path)))
    assert args.flow_capacity == 5
    assert args.wire == [("a0", "b0", None), ("c0", "d0", None)]  # a repeatable option adds to the file's list
    assert args.policy == "/etc/ngfw/policy"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "wire: [ens9]\n",
            "dataplane.yaml: wire: expected IF_A:IF_B[:closed|open] with two different interfaces, got 'ens9'",
        ),
        ("flow-capacity: lots\n", "dataplane.yaml: flow-capacity: invalid int value: 'lots'"),
        ("tx-thread: 3\n", "dataplane.yaml: tx-thread: expected true or false, got 3"),
        ("polcy: /etc/ngfw/policy\n", "dataplane.yaml: unknown setting 'polcy'"),
        ("policy: [a, b]\n", "dataplane.yaml: policy: expected a single value"),
        ("- wire\n", "dataplane.yaml: expected a mapping of settings"),
        ("wire: [a0:b0\n", "dataplane.yaml: invalid YAML at line 2"),
        ("config: /etc/other.yaml\n", "dataplane.yaml: unknown setting 'config'"),
    ],
)
def test_a_bad_setting_is_named_with_its_file(tmp_path: Path, text: str, message: str) -> None:
    path = settings(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config_argv(str(path), dataplane_parser())
    assert str(caught.value).startswith(f"{tmp_path}/{message}")


def test_a_missing_settings_file_is_one_sentence(tmp_path: Path) -> None:
    r = run_ngfw("dataplane", "--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"ngfw dataplane: {tmp_path}/nope.yaml: no such settings file"


def test_a_missing_interface_names_the_settings_file(tmp_path: Path) -> None:
    path = settings(tmp_path, "wires: [nosuch0:nosuch1]\npolicy: rules/examples/lab.yaml\n")
    r = run_ngfw("dataplane", "--config", str(path))
    assert r.returncode == 1
    assert r.stderr.strip() == f"ngfw dataplane: {path}: interface nosuch0 does not exist (in this network namespace)"


def test_a_settings_file_without_ports_says_so(tmp_path: Path) -> None:
    path = settings(tmp_path, "policy: rules/examples/lab.yaml\n")
    r = run_ngfw("dataplane", "--config", str(path))
    assert r.returncode == 2
    assert f"{path}: give at least one --wire" in r.stderr and "wire: [IF_A:IF_B]" in r.stderr


def test_control_reads_its_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "control.yaml"
    path.write_text(f"listen: 127.0.0.1:0\nstore: sqlite:///{tmp_path}/c.db\ntokens: {tmp_path}/missing.json\n")
    r = run_ngfw("control", "--config", str(path))
    assert r.returncode == 1
    assert (
        r.stderr.strip()
        == f"ngfw control: {tmp_path}/missing.json: no tokens file (create tokens with `ngfw control token add`)"
    )


def test_the_shipped_examples_are_valid_settings() -> None:
    parser = build_parser()
    dataplane = config_argv(str(REPO / "deploy/etc/dataplane.yaml"), subcommand_parser(parser, "dataplane"))
    assert dataplane[:2] == ["--wire", "vmside0:uplink0"] and "--policy" in dataplane
    control = config_argv(str(REPO / "deploy/etc/control.yaml"), subcommand_parser(parser, "control"))
    assert control == [
        "--listen",
        "0.0.0.0:9660",
        "--tls-cert",
        "/etc/ngfw/control.crt",
        "--tls-key",
        "/etc/ngfw/control.key",
        "--store",
        "sqlite:///var/lib/ngfw/control.db",
        "--tokens",
        "/etc/ngfw/tokens.json",
    ]
