"""Where the shared reference corpora live (`../shared/corpus` beside the repository, as CI lays it out)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """`$NGFW_SHARED`, else `shared/` beside the repository, else the workplace's `/work/shared`."""
    configured = os.environ.get("NGFW_SHARED")
    if configured:
        return Path(configured)
    beside = REPO.parent / "shared"
    return beside if beside.is_dir() else Path("/work/shared")


def corpus(name: str) -> Path:
    """A corpus under `shared/corpus/` (appid, et-open, suricata-verify)."""
    return shared_dir() / "corpus" / name
