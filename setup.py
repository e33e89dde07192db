"""Builds the compiled fastpath (Cython + libhs) and the wire program (eBPF, clang + libbpf). Metadata
lives in pyproject.toml.

The build fails loudly when the extension cannot be built: ngfw has no pure-Python
production path, only a reference twin used by tests.

NGFW_DEBUG_BUILD=1 builds the sanitizer twin instead (docs/fuzzing.md): clang, ASan + UBSan, libFuzzer
coverage counters, Cython bounds checks, into build/debug/ (never over the in-place modules).
"""

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

DEBUG = os.environ.get("NGFW_DEBUG_BUILD", "") not in ("", "0")
# the debug twin lives here: build/debug/ngfw/_fastpath/*.so, its C sources and objects beside it
DEBUG_DIR = os.path.join("build", "debug")
DEBUG_CFLAGS = [
    "-O1",
    "-g",
    "-fno-omit-frame-pointer",
    "-fsanitize=address,undefined",
    "-fno-sanitize-recover=undefined",
    "-fsanitize=fuzzer-no-link",
]


def pkg_config(*args: str, lib: str = "libhs") -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args, lib], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        hint = {
            "libhs": "libhs (Hyperscan) not found through pkg-config; install libhyperscan-dev "
            "(or libvectorscan-dev off x86)",
            "libcrypto": "libcrypto (OpenSSL) not found through pkg-config; install libssl-dev",
            "libpcre2-8": "libpcre2-8 (PCRE2) not found through pkg-config; install libpcre2-dev",
            "zlib": "zlib not found through pkg-config; install zlib1g-dev",
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
# file.data inflates gzip/deflate HTTP response bodies with zlib, as Suricata does (Debian zlib1g-dev)
cflags += pkg_config("--cflags", lib="zlib")
libs += pkg_config("--libs", lib="zlib")
# flow bypass: the packet loop fills the wire program's map through libbpf (Debian libbpf-dev)
cflags += pkg_config("--cflags", lib="libbpf")
libs += pkg_config("--libs", lib="libbpf")


def fastpath_extension(name: str, source: str) -> Extension:
    return Extension(
        name,
        sources=[source],
        include_dirs=["ngfw/_fastpath"] + [f[2:] for f in cflags if f.startswith("-I")],
        libraries=[f[2:] for f in libs if f.startswith("-l")],
        library_dirs=[f[2:] for f in libs if f.startswith("-L")],
        extra_compile_args=(DEBUG_CFLAGS if DEBUG else ["-O2", "-g0"])
        + ["-Wno-unused-function", "-Wno-unreachable-code"],
        # no sanitizer runtime is linked into the shared object: the fuzz runner preloads one (ASan, UBSan
        # and libFuzzer in one library), as a sanitized interpreter would have it
    )


def write_app_registry() -> None:
    """ngfw/_fastpath/app_registry.pxi from the App-ID parser registry (app_registry.py), so a build never uses a
    table that disagrees with the registry; an unchanged file is left alone (no rebuild)."""
    path = "ngfw/_fastpath/app_registry.py"
    spec = importlib.util.spec_from_file_location("ngfw_app_registry", path)
    assert spec is not None and spec.loader is not None
    registry = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = registry  # dataclasses look their module up by name
    spec.loader.exec_module(registry)
    try:
        if registry.write():
            print(f"ngfw build: {registry.GENERATED} written from {path}", file=sys.stderr)
    except registry.RegistryError as exc:
        sys.exit(f"ngfw build: {path}: {exc}")


def compile_wire_program(name: str = "wire") -> None:
    """A BPF program (ngfw/_fastpath/bpf/NAME.bpf.c) to an object shipped as package data, which
    ngfw._fastpath.wirebpf loads: `wire` (tc ingress, fail-open and bypass), `fanout` (the workers' fanout)."""
    source, target = f"ngfw/_fastpath/bpf/{name}.bpf.c", f"ngfw/_fastpath/bpf/{name}.bpf.o"
    clang = os.environ.get("CLANG", "clang")
    try:
        multiarch = subprocess.run(
            [clang, "-print-multiarch"], check=True, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(
            f"ngfw build: {clang} not found; install clang (it compiles the fail-open wire program to eBPF): {exc}"
        )
    command = [
        clang,
        "-O2",
        "-g",
        "-target",
        "bpf",
        "-mcpu=v3",
        "-Wall",
        "-I",
        f"/usr/include/{multiarch}",
        "-c",
        source,
        "-o",
        target,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        missing = "bpf/bpf_helpers.h" in done.stderr and "not found" in done.stderr
        hint = "bpf/bpf_helpers.h not found; install libbpf-dev" if missing else f"clang could not compile {source}"
        sys.exit(f"ngfw build: {hint}:\n{done.stderr.strip()}")
    print(f"ngfw build: {name} program {target} (clang, BPF)", file=sys.stderr)


class DebugBuildExt(build_ext):
    """Builds into build/debug/ whatever the command line says, so the normal modules stay as they are."""

    def finalize_options(self) -> None:
        self.inplace = 0
        self.build_lib = DEBUG_DIR
        self.build_temp = os.path.join(DEBUG_DIR, "tmp")
        super().finalize_options()


write_app_registry()
extensions = [
    fastpath_extension("ngfw._fastpath.engine", "ngfw/_fastpath/engine.pyx"),
    # test-only: the App-ID protocol parsers on their own, driven from Python
    fastpath_extension("ngfw._fastpath.parsers", "ngfw/_fastpath/parsers.pyx"),
]
if not DEBUG:  # the sanitizer twin is the fastpath's; the loader of the wire program is not fuzzed
    compile_wire_program("wire")
    compile_wire_program("fanout")
    bpf_libs = pkg_config("--libs", lib="libbpf")
    extensions.append(
        # the wire program's loader: libbpf only (no libhs), its own module so the engine does not link libbpf
        Extension(
            "ngfw._fastpath.wirebpf",
            sources=["ngfw/_fastpath/wirebpf.pyx"],
            include_dirs=["ngfw/_fastpath"],
            libraries=[f[2:] for f in bpf_libs if f.startswith("-l")],
            library_dirs=[f[2:] for f in bpf_libs if f.startswith("-L")],
            extra_compile_args=["-O2", "-g0", "-Wno-unused-function"],
        )
    )


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


directives = {"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False}
if DEBUG:
    # clang for libFuzzer's coverage counters; C division stays (UBSan reports a division by zero)
    os.environ["CC"] = os.environ.get("NGFW_DEBUG_CC", "clang")
    os.environ["LDSHARED"] = os.environ["CC"] + " -shared"
    directives.update(boundscheck=True, wraparound=True, initializedcheck=True)
    print("ngfw build: Debug (ASan + UBSan + libFuzzer counters, into build/debug/)", file=sys.stderr)
else:
    print(
        "ngfw build: Accelerated (Cython fastpath + libhs + libcrypto + libpcre2 "
        + " ".join(libs)
        + "; wire program loader + libbpf)",
        file=sys.stderr,
    )
setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives=directives,
        # the debug C sources must not replace the normal ones next to the .pyx
        build_dir=os.path.join(DEBUG_DIR, "c") if DEBUG else None,
    ),
    cmdclass={"build_py": build_py_with_rules, **({"build_ext": DebugBuildExt} if DEBUG else {})},
)
