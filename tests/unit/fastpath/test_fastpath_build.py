"""The compiled fastpath is the one in use (a silent fallback to Python would fail here)."""

import importlib.machinery

from ngfw._fastpath import engine
from ngfw.dataplane.fastpath import engine_module


def test_engine_is_a_compiled_extension() -> None:
    assert engine.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


def test_dataplane_uses_the_compiled_engine() -> None:
    assert engine_module() is engine


def test_build_links_hyperscan() -> None:
    # hs_version() is called through libhs's C API at import
    assert engine.BUILD_INFO["hyperscan"][0].isdigit()


def test_wire_program_loader_is_compiled_and_links_libbpf() -> None:
    """--fail-mode open loads the wire program through this module (ngfw/_fastpath/wirebpf.pyx)."""
    from ngfw._fastpath import wirebpf

    assert wirebpf.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    assert wirebpf.PROGRAM_NAME == "ngfw_wire"
