"""Builds the compiled fastpath (Cython + libhs). Metadata lives in pyproject.toml.

The build fails loudly when the extension cannot be built: ngfw has no pure-Python
production path, only a reference twin used by tests.
"""

import shlex
import subprocess
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup


def pkg_config(*args: str) -> list[str]:
    try:
        out = subprocess.run(["pkg-config", *args, "libhs"], check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        sys.exit(
            "ngfw build: libhs (Hyperscan) not found through pkg-config; install libhyperscan-dev "
            f"(or libvectorscan-dev off x86) and pkg-config: {exc}"
        )
    return shlex.split(out)


cflags = pkg_config("--cflags")
libs = pkg_config("--libs")

extensions = [
    Extension(
        "ngfw._fastpath.engine",
        sources=["ngfw/_fastpath/engine.pyx"],
        include_dirs=["ngfw/_fastpath"] + [f[2:] for f in cflags if f.startswith("-I")],
        libraries=[f[2:] for f in libs if f.startswith("-l")],
        library_dirs=[f[2:] for f in libs if f.startswith("-L")],
        extra_compile_args=["-O2", "-g0", "-Wno-unused-function", "-Wno-unreachable-code"],
    )
]

print("ngfw build: Accelerated (Cython fastpath + libhs " + " ".join(libs) + ")", file=sys.stderr)
setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True, "initializedcheck": False},
    )
)
