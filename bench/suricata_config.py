"""suricata.yaml for the Suricata 7 baselines: the packaged configuration with our overrides, written out whole.

The packaged file (Debian's /etc/suricata/suricata.yaml, Suricata's own default) is read with every
scalar kept as text, so nothing is reinterpreted on the way back out (`1:2` stays a port range, `yes`
stays `yes`); the overrides replace whole subtrees by dotted path.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PACKAGED_CONFIG = Path("/etc/suricata/suricata.yaml")


class SuricataMissing(RuntimeError):
    """No Suricata 7 on this machine (deploy/install.sh installs it from bookworm-backports)."""


def suricata_binary() -> str:
    found = shutil.which("suricata")
    if not found:
        raise SuricataMissing(
            "suricata is not installed (deploy/install.sh installs Suricata 7 from bookworm-backports)"
        )
    return found


@lru_cache(maxsize=1)
def suricata_version() -> str:
    """'7.0.10' for 'This is Suricata version 7.0.10 RELEASE'."""
    out = subprocess.run([suricata_binary(), "-V"], capture_output=True, text=True, timeout=30).stdout
    m = re.search(r"version (\S+)", out)
    if not m:
        raise SuricataMissing(f"cannot tell the Suricata version from {out.strip()!r}")
    if not m.group(1).startswith("7."):
        raise SuricataMissing(f"Suricata {m.group(1)} found; the baseline is Suricata 7 (bookworm-backports)")
    return m.group(1)


def load_packaged(path: Path = PACKAGED_CONFIG) -> dict[str, Any]:
    if not path.exists():
        raise SuricataMissing(f"{path} is missing (is the suricata package installed?)")
    doc = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
    if not isinstance(doc, dict):
        raise SuricataMissing(f"{path} is not a Suricata configuration")
    return doc


def set_path(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """doc["a"]["b"] = value for "a.b", creating mappings on the way."""
    keys = dotted.split(".")
    node = doc
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[keys[-1]] = value


def _text(value: Any) -> Any:
    """Python values as the text Suricata reads (bools as yes/no, numbers as digits)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text(v) for v in value]
    return value


def render(overrides: Mapping[str, Any], base: dict[str, Any] | None = None) -> str:
    """The packaged configuration with `overrides` ({"dotted.path": value}) applied, as suricata.yaml text."""
    doc = base if base is not None else load_packaged()
    for dotted, value in overrides.items():
        set_path(doc, dotted, _text(value))
    return "%YAML 1.1\n---\n" + yaml.safe_dump(doc, default_flow_style=False, sort_keys=False, width=1000)


def alerts_only_outputs(eve_filename: str = "eve.json") -> list[dict[str, Any]]:
    """Outputs of an offline parity run: EVE alerts only (no payloads), nothing else."""
    return [
        {"eve-log": {
            "enabled": "yes", "filetype": "regular", "filename": eve_filename, "community-id": "no",
            "types": [{"alert": {"tagged-packets": "no", "metadata": "no"}}],
        }},
    ]  # fmt: skip


def logging_to_file(level: str = "info") -> dict[str, Any]:
    """Console at notice (our progress reading needs only the milestones), full log in suricata.log."""
    return {
        "default-log-level": "notice",
        "outputs": [
            {"console": {"enabled": "yes"}},
            {"file": {"enabled": "yes", "level": level, "filename": "suricata.log"}},
        ],
    }


def file_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()
