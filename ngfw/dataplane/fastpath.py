"""Import the compiled fastpath, with one clear sentence when it is not there."""

from __future__ import annotations

from types import ModuleType


class FastpathMissing(Exception):
    pass


def engine_module() -> ModuleType:
    try:
        from ngfw._fastpath import engine
    except ImportError as exc:
        if "libhs" in str(exc):
            raise FastpathMissing(
                f"the fastpath cannot load libhs (Hyperscan): install libhyperscan-dev ({exc})"
            ) from None
        raise FastpathMissing(
            f"the compiled fastpath is not built: run `pip install -e .` with Cython, a C compiler "
            f"and libhyperscan-dev installed ({exc})"
        ) from None
    return engine
