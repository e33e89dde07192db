"""Fixtures: a real etcd (Debian's etcd-server) on loopback, stores of both kinds, a running control."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ngfw.control.store import StoreError, open_store
from tests.support.control import RunningControl, free_port, make_tokens


@pytest.fixture(scope="session")
def etcd_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HOST:PORT of an etcd started for this test session, loopback only, stopped at the end."""
    binary = shutil.which("etcd")
    assert binary, "etcd is not installed: deploy/install.sh installs etcd-server (deploy/packages-lab.txt)"
    data = tmp_path_factory.mktemp("etcd")
    client_port, peer_port = free_port(), free_port()
    client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    log = open(data / "etcd.log", "wb")
    process = subprocess.Popen(
        [
            binary,
            "--name",
            "test",
            "--data-dir",
            str(data / "data"),
            "--listen-client-urls",
            client_url,
            "--advertise-client-urls",
            client_url,
            "--listen-peer-urls",
            peer_url,
            "--initial-advertise-peer-urls",
            peer_url,
            "--initial-cluster",
            f"test={peer_url}",
            "--log-level",
            "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                open_store(f"etcd://127.0.0.1:{client_port}/probe").close()
                break
            except StoreError:
                assert process.poll() is None, f"etcd exited: {(data / 'etcd.log').read_text()[-2000:]}"
                assert time.monotonic() < deadline, "etcd did not answer within 20 s"
                time.sleep(0.1)
        yield f"127.0.0.1:{client_port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(params=["sqlite", "etcd"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/control.db"
    endpoint = request.getfixturevalue("etcd_endpoint")
    return f"etcd://{endpoint}/t-{uuid.uuid4().hex[:12]}"  # a prefix of its own: tests do not see each other


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/control.db"


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    return make_tokens(tmp_path / "tokens.json")


@pytest.fixture
def control(store_url: str, tmp_path: Path, tokens: dict[str, str]) -> Iterator[RunningControl]:
    running = RunningControl(store_url, tmp_path / "tokens.json")
    yield running
    running.stop()
