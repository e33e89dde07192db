"""Where the files shipped with ngfw (`rules/`: the App-ID catalogue, example policies, the lab's
signatures) are: the source tree's `rules/` when running from a clone, else the copy an installed
wheel carries as `ngfw/_rules/` (setup.py puts it there)."""

from __future__ import annotations

import os

_PACKAGE = os.path.dirname(os.path.realpath(__file__))
_SOURCE_RULES = os.path.join(os.path.dirname(_PACKAGE), "rules")
RULES_DIR = _SOURCE_RULES if os.path.isdir(os.path.join(_SOURCE_RULES, "apps")) else os.path.join(_PACKAGE, "_rules")


def shipped(relative: str) -> str:
    """`rules/...` (a path as written in the source tree) -> where it is in this installation."""
    parts = relative.split("/", 1)
    if parts[0] != "rules" or len(parts) == 1:
        raise ValueError(f"{relative!r} is not under rules/")
    return os.path.join(RULES_DIR, parts[1])
