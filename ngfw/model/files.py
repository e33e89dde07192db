"""Which files a policy path means (no pydantic here: the dataplane's start asks without compiling)."""

from __future__ import annotations

from pathlib import Path

SUFFIXES = (".yaml", ".yml")


class NoPolicyFiles(Exception):
    """`path` names no policy file; the message is one sentence naming it."""


def policy_files(path: Path) -> list[Path]:
    """`path` itself, or every `*.yaml`/`*.yml` under it, sorted by relative path.

    Hidden files and directories are skipped: editors and VCS keep their own files
    there (`.#main.yaml`, `.git/`), and they are never policy.
    """
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise NoPolicyFiles(f"{path}: no such file or directory")
    files = [
        p
        for p in path.rglob("*")
        if p.suffix in SUFFIXES and p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    ]
    if not files:
        # An empty policy denies everything; from a directory that is more likely
        # a wrong path than intent, so say so instead of loading nothing.
        raise NoPolicyFiles(f"{path}: no *.yaml or *.yml files in this directory")
    return sorted(files, key=lambda p: p.relative_to(path).parts)
