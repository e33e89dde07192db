"""The wheel and the Debian package (deploy/build-packages.sh, run first when dist/ is missing them or older
than the sources: minutes): the wheel carries the compiled fastpath and names its system libraries; the
.deb depends on runtime packages only and carries no build or test tooling."""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from ngfw.lab.artifacts import ensure_deb

REPO = Path(__file__).resolve().parents[3]
BUILD_OR_TEST = re.compile(
    r"^(gcc|g\+\+|cpp|clang|make|build-essential|cython3?|python3-dev|python3-pip|"
    r"python3-venv|libpython3[.\d]*-dev|.*-dev|pytest|python3-pytest|scapy|python3-scapy)$"
)


@pytest.fixture(scope="module")
def deb() -> Path:
    return ensure_deb()


def deb_field(deb: Path, name: str) -> str:
    return subprocess.run(["dpkg-deb", "-f", str(deb), name], capture_output=True, text=True, check=True).stdout.strip()


def test_depends_names_runtime_packages_only(deb: Path) -> None:
    depends = [re.split(r"[ (]", d.strip())[0] for d in deb_field(deb, "Depends").split(",")]
    assert not [d for d in depends if BUILD_OR_TEST.match(d)], depends
    # what the compiled fastpath links (found by dpkg-shlibdeps) and the interpreter of its virtualenv
    for needed in ("python3.11", "libhyperscan5", "libpcre2-8-0", "libssl3", "zlib1g", "libbpf1", "adduser"):
        assert needed in depends, depends


def test_the_package_holds_the_command_units_and_no_build_or_test_tooling(deb: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    files = {line.split()[5].lstrip(".") for line in listing.splitlines()}
    for path in (
        "/usr/bin/ngfw",
        "/lib/systemd/system/ngfw-dataplane.service",
        "/lib/systemd/system/ngfw-control.service",
        "/etc/logrotate.d/ngfw",
        "/usr/share/doc/ngfw/examples/dataplane.yaml",
        "/usr/share/doc/ngfw/examples/fail-open.conf",
    ):
        assert path in files, path
    site = "/opt/ngfw/venv/lib/python3.11/site-packages/"
    top = {p[len(site) :].split("/")[0].lower() for p in files if p.startswith(site)}
    for absent in ("cython", "scapy", "pytest", "hypothesis", "pip", "setuptools"):
        assert not any(t == absent or t.startswith(absent + "-") for t in top), absent
    assert any(p.startswith(site + "ngfw/_fastpath/engine.cpython-311") for p in files)
    assert not any(p.startswith(site + "ngfw/lab/") for p in files)  # development tooling
    assert any(p.startswith(site + "ngfw/_rules/apps/") for p in files)
    assert "/etc/logrotate.d/ngfw" in deb_field_conffiles(deb)


def deb_field_conffiles(deb: Path) -> str:
    return subprocess.run(["dpkg-deb", "--info", str(deb), "conffiles"], capture_output=True, text=True).stdout


def test_the_virtualenv_does_not_name_the_build_directory(deb: Path, tmp_path: Path) -> None:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    venv = tmp_path / "opt/ngfw/venv"
    assert (venv / "bin/ngfw").read_text().splitlines()[0] == "#!/opt/ngfw/venv/bin/python"
    assert "command = /usr/bin/python3.11 -m venv /opt/ngfw/venv" in (venv / "pyvenv.cfg").read_text()
    # the interpreter Depends names (python3.11), not /usr/bin/python3, which a minimal system lacks
    assert os.readlink(venv / "bin/python") in ("/usr/bin/python3.11", "python3.11")
    assert os.readlink(venv / "bin/python3.11") == "/usr/bin/python3.11"
    found = subprocess.run(["grep", "-rlI", str(REPO / "build"), str(venv)], capture_output=True, text=True).stdout
    assert found == ""


def test_the_wheel_carries_the_fastpath_and_names_its_system_libraries(deb: Path) -> None:
    wheel = next((REPO / "dist").glob("ngfw-*-cp311-cp311-linux_*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        metadata = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert any(re.match(r"ngfw/_fastpath/engine\.cpython-311-.*\.so$", n) for n in names)
    assert "ngfw/_rules/apps/web.yaml" in names and "ngfw/_rules/threats/lab.rules" in names
    assert not [n for n in names if re.match(r"ngfw/_fastpath/(engine|parsers|wirebpf)\.c$", n)]
    externals = re.findall(r"^Requires-External: (\S+)", metadata, re.M)
    assert externals == ["libhs", "libpcre2-8", "libcrypto", "zlib", "libbpf"]
    requires = re.findall(r"^Requires-Dist: ([A-Za-z0-9_.-]+)(?:[^;\n]*)$", metadata, re.M)  # no extra marker
    assert "aiohttp" in requires and not {"cython", "scapy", "Cython"} & set(requires)
