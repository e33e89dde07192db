"""A signature set as one content-addressed archive: its `.rules` files in a deterministic tar.

`ngfw rules push NAME PATH` packs a rule file, or the `*.rules` of a directory (suricata-update's
output directory, ET Open's download), into a tar whose bytes depend only on the files' names and
contents (sorted, no times, owners or modes of the machine), and names it by the sha256 of those
bytes. Control stores it once by that hash, a `SignatureSet` resource references it (name + sha256),
and every host fetches what it does not have, checks the hash, and keeps it in a cache directory
(`SignatureCache`) from which the dataplane compiles it. The same files give the same hash anywhere,
so `ngfw status` can show that every host runs the same set, whatever path it was pushed from.
On the wire and in the store the archive is gzip-compressed (ET Open: 30 MB of rules, 5 MB sent).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import tarfile
import zlib
from pathlib import Path

MAX_ARCHIVE_BYTES = 256 << 20  # uncompressed; ET Open is ~30 MB
MAX_FILES = 10_000
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.rules$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ArchiveError(ValueError):
    """Rule files that cannot be packed, or bytes that are not an archive of them; the message says which."""


def rule_files(path: str | Path) -> list[Path]:
    """The files a set is made of: PATH itself, or the `*.rules` files of directory PATH, sorted."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.glob("*.rules") if f.is_file())
        if not files:
            raise ArchiveError(f"{path}: a directory without *.rules files")
        return files
    if not p.is_file():
        raise ArchiveError(f"{path}: no such rule file or directory")
    return [p]


def pack(files: list[tuple[str, bytes]]) -> bytes:
    """The archive of (name, content) pairs: a ustar tar, members sorted by name, metadata zeroed."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in sorted(files):
            if not _FILE_NAME.match(name):
                raise ArchiveError(f"{name!r} is not a rule file name (letters, digits, . _ + -, ending in .rules)")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def pack_path(path: str | Path) -> bytes:
    """The archive of the rule files at `path` (a file: named after it; a directory: its `*.rules`)."""
    files = rule_files(path)
    total = 0
    members = []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError as exc:
            raise ArchiveError(f"{f}: {exc.strerror or exc}") from None
        total += len(data)
        if total > MAX_ARCHIVE_BYTES:
            raise ArchiveError(f"{path}: more than {MAX_ARCHIVE_BYTES >> 20} MiB of rules")
        name = f.name if f.name.endswith(".rules") else f.name + ".rules"
        members.append((name, data))
    return pack(members)


def sha256(archive: bytes) -> str:
    return hashlib.sha256(archive).hexdigest()


def unpack(archive: bytes) -> list[tuple[str, bytes]]:
    """(name, content) of every member; ArchiveError for anything but plain `.rules` files."""
    members: list[tuple[str, bytes]] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tar:
            for info in tar:
                if not info.isfile() or not _FILE_NAME.match(info.name) or "/" in info.name:
                    raise ArchiveError(f"archive member {info.name!r} is not a plain .rules file")
                if len(members) >= MAX_FILES:
                    raise ArchiveError(f"more than {MAX_FILES} files")
                handle = tar.extractfile(info)
                assert handle is not None
                members.append((info.name, handle.read()))
    except (tarfile.TarError, EOFError) as exc:
        raise ArchiveError(f"not a signature archive: {exc}") from None
    if not members:
        raise ArchiveError("the archive holds no rule file")
    if len({name for name, _ in members}) != len(members):
        raise ArchiveError("the archive names a file twice")
    return members


def compress(archive: bytes) -> bytes:
    return gzip.compress(archive, compresslevel=6, mtime=0)


def decompress(data: bytes, limit: int = MAX_ARCHIVE_BYTES) -> bytes:
    """gzip -> archive, refusing more than `limit` bytes (a small body must not expand without bound)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise ArchiveError(f"not gzip data: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise ArchiveError(f"it expands to more than {limit >> 20} MiB")
    if not inflater.eof:
        raise ArchiveError("the gzip data is cut short")
    return out


class SignatureCache:
    """Signature sets a host holds, by sha256: `DIR/SHA256.tar` (what was verified) and `DIR/SHA256/`
    (its files, which the dataplane compiles). A set is kept while a bundle may name it again
    (rollbacks); `prune` drops the others."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def files_of(self, digest: str) -> Path:
        return self.directory / digest

    def has(self, digest: str) -> bool:
        """The set is here, and its archive still hashes to its name (the disk is not trusted blindly)."""
        archive = self.directory / f"{digest}.tar"
        try:
            data = archive.read_bytes()
        except OSError:
            return False
        return sha256(data) == digest and self.files_of(digest).is_dir()

    def add(self, digest: str, archive: bytes) -> Path:
        """Keep `archive` as set `digest` (ArchiveError unless it hashes to it and unpacks); its files' directory."""
        found = sha256(archive)
        if found != digest:
            raise ArchiveError(f"sha256 mismatch: the archive hashes to {found}, not {digest}")
        members = unpack(archive)
        self.directory.mkdir(parents=True, exist_ok=True)
        target = self.files_of(digest)
        staging = self.directory / f".{digest}.{os.getpid()}"
        staging.mkdir(parents=True, exist_ok=True)
        for name, data in members:
            (staging / name).write_bytes(data)
        if target.exists():
            for old in target.iterdir():
                old.unlink()
            target.rmdir()
        os.replace(staging, target)
        tmp = self.directory / f".{digest}.tar.{os.getpid()}"
        tmp.write_bytes(archive)
        os.replace(tmp, self.directory / f"{digest}.tar")
        return target

    def prune(self, keep: set[str], spare: int = 4) -> None:
        """Drop sets not in `keep`, except the `spare` most recently added (a rollback finds them here)."""
        archives = sorted(self.directory.glob("*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
        for archive in archives[spare:]:
            digest = archive.name[:-4]
            if digest in keep or not SHA256.match(digest):
                continue
            archive.unlink(missing_ok=True)
            files = self.files_of(digest)
            if files.is_dir():
                for f in files.iterdir():
                    f.unlink()
                files.rmdir()
