"""The systemd units and logrotate file of deploy/, checked the way systemd and logrotate read them (no root).
Running them for real: tests/netns/test_deploy_units_live.py (the VM image's systemd in a container)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
UNITS = REPO / "deploy/systemd"
# the exposure `systemd-analyze security` gave when the units were written (docs/deploy.md); a change that
# loosens the sandbox shows up here
EXPOSURE = {"ngfw-dataplane.service": 2.0, "ngfw-control.service": 1.2}

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing: deploy/install-lab.sh installs systemd"
)


def ngfw_executable() -> str:
    found = shutil.which("ngfw") or str(Path(sys.executable).with_name("ngfw"))
    assert Path(found).exists(), "the ngfw command is not installed next to this Python (pip install -e .)"
    return found


def units_with_this_ngfw(tmp_path: Path) -> list[Path]:
    """The units as shipped, except that ExecStart names an ngfw that exists here (verify checks it)."""
    out = []
    for unit in sorted(UNITS.glob("*.service")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/usr/bin/ngfw", ngfw_executable()))
        out.append(copy)
    return out


@needs_systemd
def test_units_verify(tmp_path: Path) -> None:
    units = units_with_this_ngfw(tmp_path)
    assert [u.name for u in units] == ["ngfw-control.service", "ngfw-dataplane.service"]
    done = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


@needs_systemd
@pytest.mark.parametrize("unit", sorted(EXPOSURE))
def test_hardening_exposure_does_not_grow(tmp_path: Path, unit: str) -> None:
    path = next(u for u in units_with_this_ngfw(tmp_path) if u.name == unit)
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(path)], capture_output=True, text=True, timeout=60
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= EXPOSURE[unit], done.stdout


def settings(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_dataplane_unit_runs_unprivileged_with_only_packet_and_link_capabilities() -> None:
    unit = settings("ngfw-dataplane.service")
    assert unit["User"] == ["ngfw"] and unit["Type"] == ["notify"]
    assert unit["CapabilityBoundingSet"] == ["CAP_NET_RAW CAP_NET_ADMIN"]
    assert unit["AmbientCapabilities"] == ["CAP_NET_RAW CAP_NET_ADMIN"]
    assert unit["ExecStart"] == ["/usr/bin/ngfw dataplane --config /etc/ngfw/dataplane.yaml"]
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    # the caches a restart reuses, and the session state a restart adopts, are writable and kept
    assert unit["CacheDirectory"] == ["ngfw"] and unit["Environment"] == ["NGFW_CACHE_DIR=/var/cache/ngfw"]
    assert unit["RuntimeDirectory"] == ["ngfw"] and unit["RuntimeDirectoryPreserve"] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]


@needs_systemd
def test_fail_open_drop_in_adds_bpf_and_nothing_else(tmp_path: Path) -> None:
    units = units_with_this_ngfw(tmp_path)
    dropins = tmp_path / "ngfw-dataplane.service.d"
    dropins.mkdir()
    shutil.copy(UNITS / "ngfw-dataplane.service.d/fail-open.conf", dropins)
    done = subprocess.run(["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    text = (dropins / "fail-open.conf").read_text()
    assert "CapabilityBoundingSet=CAP_BPF" in text and "SystemCallFilter=bpf" in text


@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate missing: deploy/install-lab.sh installs it")
def test_logrotate_rotates_the_eve_file_and_reloads_the_dataplane(tmp_path: Path) -> None:
    """The shipped file with its paths moved under tmp_path: rotated once forced, and the postrotate
    reload runs (here: a stand-in `systemctl` that records its arguments)."""
    logs = tmp_path / "log"
    logs.mkdir()
    (logs / "eve.json").write_text('{"event_type":"flow"}\n')
    calls = tmp_path / "calls"
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (fake / "systemctl").chmod(0o755)
    conf = (REPO / "deploy/logrotate/ngfw").read_text().replace("/var/log/ngfw", str(logs))
    conf = re.sub(r"\n\s*su ngfw ngfw", "", conf)  # the test runs as whoever runs it
    (tmp_path / "ngfw.conf").write_text(conf)
    done = subprocess.run(
        ["logrotate", "-f", "-s", str(tmp_path / "state"), str(tmp_path / "ngfw.conf")],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": f"{fake}:/usr/sbin:/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert (logs / "eve.json.1").read_text() == '{"event_type":"flow"}\n'
    assert calls.read_text().split() == ["reload", "ngfw-dataplane.service"]
