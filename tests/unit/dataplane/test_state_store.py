"""The state directory: what a starting dataplane continues from, and what it sets aside (said once, never
trusted): a table of another build, boot or host, a corrupt header, a snapshot that does not verify. Session
batches (snapshots, migrations) verify their records' sha256 and format before anything is used."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ngfw._fastpath import engine as fp
from ngfw.dataplane import state
from ngfw.dataplane.state import SessionBatch, StateError, StateStore

FORMAT = fp.record_format()


@pytest.fixture
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ngfw-state-test-", dir="/dev/shm"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def make_table(directory: Path, host: str = "host-a") -> dict:
    store = StateStore(directory, host)
    layout = fp.state_layout(256, 256)
    store.create_table(layout, ["fw-vm", "fw-up"])
    store.write_names(["", "http", "tls"])
    store.commit_table()
    store.close()
    return layout


def test_a_table_of_this_build_boot_and_host_is_continued(state_dir: Path) -> None:
    layout = make_table(state_dir)
    found = StateStore(state_dir, "host-a").find_previous(layout["fingerprint"], FORMAT)
    assert found.refused == [] and found.table is not None
    assert found.table.apps == ["", "http", "tls"] and found.table.layout == layout
    found.table.close()


def test_a_table_of_another_host_is_set_aside(state_dir: Path) -> None:
    layout = make_table(state_dir, host="host-a")
    found = StateStore(state_dir, "host-b").find_previous(layout["fingerprint"], FORMAT)
    assert found.table is None and len(found.refused) == 1
    assert "is from host 'host-a', this dataplane is 'host-b'" in found.refused[0]
    assert (state_dir / "flows.state.refused").exists() and not (state_dir / "flows.state").exists()


def test_a_table_of_another_boot_is_set_aside(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    layout = make_table(state_dir)
    monkeypatch.setattr(state, "boot_id", lambda: "another-boot")
    found = StateStore(state_dir, "host-a").find_previous(layout["fingerprint"], FORMAT)
    assert found.table is None and "from another boot" in found.refused[0]


def test_a_table_of_another_build_is_set_aside(state_dir: Path) -> None:
    make_table(state_dir)
    found = StateStore(state_dir, "host-a").find_previous("0" * 32, FORMAT)
    assert found.table is None and "written by another build of ngfw" in found.refused[0]


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda raw: raw[:100], "shorter than its header"),
        (lambda raw: b"garbage" + raw[7:], "has no ngfw state header"),
        (lambda raw: raw[:20] + bytes([raw[20] ^ 0xFF]) + raw[21:], "corrupt header (checksum)"),
    ],
)
def test_a_damaged_table_is_set_aside(state_dir: Path, damage, reason: str) -> None:
    layout = make_table(state_dir)
    path = state_dir / "flows.state"
    path.write_bytes(damage(path.read_bytes()))
    found = StateStore(state_dir, "host-a").find_previous(layout["fingerprint"], FORMAT)
    assert found.table is None and reason in found.refused[0], found.refused


def test_a_snapshot_that_does_not_verify_is_set_aside(state_dir: Path) -> None:
    layout = make_table(state_dir)
    store = StateStore(state_dir, "host-a")
    previous = store.find_previous(layout["fingerprint"], FORMAT)
    store.serial = previous.table.header["serial"]
    previous.table.close()
    store.write_snapshot(SessionBatch(records=b"\x00" * 64, apps=[], record_format=FORMAT, count=0))
    store.close()
    raw = bytearray((state_dir / "sessions.snapshot").read_bytes())
    raw[-1] ^= 0xFF
    (state_dir / "sessions.snapshot").write_bytes(bytes(raw))
    found = StateStore(state_dir, "host-a").find_previous(layout["fingerprint"], FORMAT)
    assert found.snapshot is None and "does not verify" in found.refused[0]
    assert found.table is not None  # the table it belonged to is still there to continue from
    found.table.close()


def test_one_dataplane_per_state_directory(state_dir: Path) -> None:
    first = StateStore(state_dir, "host-a")
    with pytest.raises(StateError, match="is in use by another running dataplane"):
        StateStore(state_dir, "host-a")
    first.close()


def test_a_state_directory_must_be_memory(tmp_path: Path) -> None:
    if state._is_tmpfs(str(tmp_path)):
        pytest.skip("the test machine's temporary directory is itself on tmpfs")
    with pytest.raises(StateError, match="is not on tmpfs"):
        StateStore(tmp_path / "state", "host-a")


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda raw: b"NOTABATCH" + raw[9:], "not a session batch"),
        (lambda raw: raw[:-1] + bytes([raw[-1] ^ 1]), "does not verify"),
        (lambda raw: raw[:14] + b"}" + raw[15:], "not JSON"),
    ],
)
def test_a_batch_that_does_not_verify_is_refused_whole(damage, reason: str) -> None:
    raw = SessionBatch(
        records=b"\x01" * 80, apps=["", "http"], record_format=FORMAT, count=1, meta={"workload": "web-01"}
    ).to_bytes()
    assert SessionBatch.from_bytes(raw, FORMAT).meta == {"workload": "web-01"}
    with pytest.raises(StateError, match=reason):
        SessionBatch.from_bytes(damage(raw), FORMAT)
    with pytest.raises(StateError, match="record format"):
        SessionBatch.from_bytes(raw, "sess0-another-build")
