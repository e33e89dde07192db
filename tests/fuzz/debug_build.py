"""The sanitizer build of the fastpath (NGFW_DEBUG_BUILD=1, setup.py) and the runtime it needs.

build/debug/ngfw/_fastpath/*.so are the extension modules compiled by clang with ASan, UBSan and
libFuzzer's coverage counters; build/debug/asan_with_fuzzer.so is clang's ASan runtime (UBSan's handlers
included) linked with libFuzzer, preloaded into the interpreter that imports them. Nothing here touches
the normal in-place modules.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEBUG_DIR = REPO / "build" / "debug"
MODULES = DEBUG_DIR / "ngfw" / "_fastpath"
RUNTIME = DEBUG_DIR / "asan_with_fuzzer.so"
# app_registry.py: the App-ID parser table setup.py generates app_registry.pxi from
SOURCES = [
    REPO / "setup.py",
    REPO / "ngfw" / "_fastpath" / "app_registry.py",
    *sorted((REPO / "ngfw" / "_fastpath").glob("*.p[yx][xid]")),
    *sorted((REPO / "ngfw" / "_fastpath").glob("*.h")),
]


class BuildError(Exception):
    """The debug build or its runtime could not be made; the message says what is missing."""


def _stale() -> bool:
    built = list(MODULES.glob("engine*.so")) + list(MODULES.glob("parsers*.so"))
    if len(built) < 2:
        return True
    oldest = min(p.stat().st_mtime for p in built)
    return any(s.stat().st_mtime > oldest for s in SOURCES)


def _locked(function):  # type: ignore[no-untyped-def]
    """One build at a time: runs of several targets started together wait for the first one's build."""

    def locked(*args, **kwargs):  # type: ignore[no-untyped-def]
        DEBUG_DIR.mkdir(parents=True, exist_ok=True)
        with open(DEBUG_DIR / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return function(*args, **kwargs)

    return locked


@_locked
def build_modules(log: Path | None = None) -> None:
    """Compile the debug extension into build/debug/ if a fastpath source changed since (1-3 minutes)."""
    if not _stale():
        return
    env = dict(os.environ, NGFW_DEBUG_BUILD="1")
    out = open(log, "w") if log else subprocess.DEVNULL
    try:
        done = subprocess.run(
            [sys.executable, "setup.py", "build_ext", "-j", "2"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        if log:
            out.close()
    if done.returncode != 0:
        raise BuildError(f"the debug build failed (exit {done.returncode})" + (f"; see {log}" if log else ""))
    # setuptools leaves an up-to-date module's mtime alone: mark the build as newer than its sources
    for p in MODULES.glob("*.so"):
        p.touch()


def _clang_runtime_dir() -> Path:
    try:
        resource = subprocess.run(
            ["clang", "-print-resource-dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"clang is needed for the debug build (Debian: clang): {exc}") from None
    lib = Path(resource) / "lib" / "linux"
    if not (lib / "libclang_rt.asan-x86_64.a").exists():
        raise BuildError(f"clang's sanitizer runtimes are not in {lib} (Debian: libclang-rt-14-dev)")
    return lib


@_locked
def build_runtime() -> Path:
    """build/debug/asan_with_fuzzer.so: ASan's runtime without its preinit object (not allowed in a shared
    object) and libFuzzer whole, so libFuzzer's coverage callbacks replace ASan's weak no-op ones."""
    if RUNTIME.exists():
        return RUNTIME
    lib = _clang_runtime_dir()
    DEBUG_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["ar", "x", str(lib / "libclang_rt.asan-x86_64.a")], cwd=tmp, check=True)
        objects = sorted(str(p) for p in Path(tmp).glob("*.o") if not p.name.startswith("asan_preinit"))
        partial = RUNTIME.with_suffix(".tmp")
        done = subprocess.run(
            [
                "clang",
                "-shared",
                "-o",
                str(partial),
                *objects,
                "-Wl,--whole-archive",
                str(lib / "libclang_rt.fuzzer_no_main-x86_64.a"),
                "-Wl,--no-whole-archive",
                "-lpthread",
                "-ldl",
                "-lrt",
                "-lm",
                "-lstdc++",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise BuildError(f"linking the ASan+libFuzzer runtime failed: {done.stderr.strip()[-500:]}")
        partial.rename(RUNTIME)
    return RUNTIME


def use_debug_modules() -> None:
    """Import ngfw._fastpath's extension modules from build/debug/ (before anything imports them)."""
    import ngfw._fastpath as package

    if "ngfw._fastpath.engine" in sys.modules:
        raise RuntimeError("ngfw._fastpath.engine was imported before the debug build was put first")
    package.__path__.insert(0, str(MODULES))
