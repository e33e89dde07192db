"""Builds the compiled fastpath (Cython + libhs) and the wire program (eBPF, clang + libbpf). Metadata
lives in pyproject.toml.

The build fails loudly when the extension cannot be built: ngfw has no pure-Python
production path, only a reference twin used by tests.
"""

import os
import shlex
import subprocess
import sys

import os
import shutil

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py


def pkg_config(*args: str, lib: str = "libhs") -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args, lib], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        hint = {
            "libhs": "libhs (Hyperscan) not found through pkg-config; install libhyperscan-dev "
            "(or libvectorscan-dev off x86)",
            "libcrypto": "libcrypto (OpenSSL) not found through pkg-config; install libssl-dev",
            "libpcre2-8": "libpcre2-8 (PCRE2) not found through pkg-config; install libpcre2-dev",
            "libbpf": "libbpf not found through pkg-config; install libbpf-dev (the fail-open wire program is "
            "loaded through it)",
        }[lib]
        sys.exit(f"ngfw build: {hint} and pkg-config: {exc}")
    return shlex.split(out)


cflags = pkg_config("--cflags")
libs = pkg_config("--libs")
# App-ID decrypts QUIC Initial packets with libcrypto (Debian libssl-dev)
cflags += pkg_config("--cflags", lib="libcrypto")
libs += pkg_config("--libs", lib="libcrypto")
# threat inspection verifies `pcre` with PCRE2, as Suricata does (Debian libpcre2-dev)
cflags += pkg_config("--cflags", lib="libpcre2-8")
libs += pkg_config("--libs", lib="libpcre2-8")


def fastpath_extension(name: str, source: str) -> Extension:
    return Extension(
        name,
        sources=[source],
        include_dirs=["ngfw/_fastpath"] + [f[2:] for f in cflags if f.startswith("-I")],
        libraries=[f[2:] for f in libs if f.startswith("-l")],
        library_dirs=[f[2:] for f in libs if f.startswith("-L")],
        extra_compile_args=["-O2", "-g0", "-Wno-unused-function", "-Wno-unreachable-code"],
    )


def compile_wire_program() -> None:
    """The wire program (ngfw/_fastpath/bpf/wire.bpf.c, tc ingress) to a BPF object shipped as package data,
    which ngfw._fastpath.wirebpf loads when a wire fails open."""
    source, target = "ngfw/_fastpath/bpf/wire.bpf.c", "ngfw/_fastpath/bpf/wire.bpf.o"
    clang = os.environ.get("CLANG", "clang")
    try:
        multiarch = subprocess.run([clang, "-print-multiarch"], check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(f"ngfw build: {clang} not found; install clang (it compiles the fail-open wire program to eBPF): {exc}")
    command = [clang, "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall",
               "-I", f"/usr/include/{multiarch}", "-c", source, "-o", target]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        missing = "bpf/bpf_helpers.h" in done.stderr and "not found" in done.stderr
        hint = ("bpf/bpf_helpers.h not found; install libbpf-dev" if missing
                else f"clang could not compile {source}")
        sys.exit(f"ngfw build: {hint}:\n{done.stderr.strip()}")
    print(f"ngfw build: wire program {target} (clang, BPF)", file=sys.stderr)


compile_wire_program()
bpf_libs = pkg_config("--libs", lib="libbpf")

extensions = [
    fastpath_extension("ngfw._fastpath.engine", "ngfw/_fastpath/engine.pyx"),
    # test-only: the App-ID protocol parsers on their own, driven from Python
    fastpath_extension("ngfw._fastpath.parsers", "ngfw/_fastpath/parsers.pyx"),
    # the wire program's loader: libbpf only (no libhs), its own module so the engine does not link libbpf
    Extension(
        "ngfw._fastpath.wirebpf",
        sources=["ngfw/_fastpath/wirebpf.pyx"],
        include_dirs=["ngfw/_fastpath"],
        libraries=[f[2:] for f in bpf_libs if f.startswith("-l")],
        library_dirs=[f[2:] for f in bpf_libs if f.startswith("-L")],
        extra_compile_args=["-O2", "-g0", "-Wno-unused-function"],
    ),
]

class build_py_with_rules(build_py):
    """A wheel (an installed copy) carries the shipped rules/ -- the App-ID catalogue, example policies,
    the lab's signatures -- as ngfw/_rules (ngfw/shipped.py finds them); an editable install reads the
    source tree's."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        # Cython's C output (8 MB) is no part of an installed copy: the compiled modules are
        for name in ("engine.c", "parsers.c", "wirebpf.c"):
            generated = os.path.join(self.build_lib, "ngfw", "_fastpath", name)
            if os.path.exists(generated):
                os.remove(generated)
        target = os.path.join(self.build_lib, "ngfw", "_rules")
        shutil.rmtree(target, ignore_errors=True)
        for part in ("apps", "examples", "threats"):
            shutil.copytree(os.path.join("rules", part), os.path.join(target, part))


print("ngfw build: Accelerated (Cython fastpath + libhs + libcrypto + libpcre2 " + " ".join(libs) + "; wire program loader + libbpf)", file=sys.stderr)
setup(
    cmdclass={"build_py": build_py_with_rules},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False},
    )
)
