"""A policy file compiled once, loaded fast: what a restarted dataplane enforces before its first packet.

Validating and compiling a policy imports pydantic and the resource models: a third of a dataplane's start, and
after a crash or an upgrade every millisecond before the packet loop runs is traffic held up. A policy that
compiled cleanly is pickled in the cache directory (as the App-ID catalogue is) under the hash of its files,
of the compiler's and model's sources and of ngfw's version; the same files load it back without pydantic.
Any change to any of them compiles afresh (and refusals -- an empty file, errors -- always come from a full
compile: only a policy that compiled is kept).

What is kept is the fastpath's contract only: the compiled rules and workloads, not the source resources an
identity update re-expands groups from (a policy file has no identity updates; `ngfw control`'s agents do
not use this cache).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

from ngfw import __version__
from ngfw.compiler.build import BuildRecord
from ngfw.compiler.catalogue import DEFAULT_CATALOGUE, cache_dir, catalogue_files, load_catalogue
from ngfw.compiler.tables import CompiledPolicy
from ngfw.model.files import NoPolicyFiles, policy_files
from ngfw.values import replace

HERE = Path(__file__).resolve().parent
SOURCES = (HERE, HERE.parent / "model")  # what decides how a file compiles


def _key(path: Path) -> str | None:
    try:
        files = policy_files(path)
    except NoPolicyFiles:
        return None
    h = hashlib.sha256(__version__.encode() + b"\0")
    for directory in SOURCES:
        for source in sorted(directory.glob("*.py")):
            h.update(source.name.encode() + b"\0" + source.read_bytes() + b"\0")
    for file in files:
        h.update(str(file).encode() + b"\0" + file.read_bytes() + b"\0")
    for catalogue_file in catalogue_files(DEFAULT_CATALOGUE):  # the app ids rules name
        h.update(catalogue_file.encode() + b"\0" + Path(catalogue_file).read_bytes() + b"\0")
    return h.hexdigest()


def load_policy_cached(path: str | os.PathLike[str], version: int = 1) -> CompiledPolicy:
    """`ngfw.compiler.policy.load_policy(path, version)`, from the cache when these files compiled before."""
    catalogue = load_catalogue()
    try:
        key = _key(Path(path))
    except OSError:
        key = None
    stored = os.path.join(cache_dir(), f"policy-{key[:32]}.pickle") if key else None
    if stored is not None:
        try:
            with open(stored, "rb") as f:
                policy = pickle.load(f)
            if isinstance(policy, CompiledPolicy):
                return replace(policy, version=version, catalogue=catalogue)
        except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError, TypeError):
            pass
    from ngfw.compiler.policy import load_policy  # pydantic and the models: only on a cache miss

    policy = load_policy(path, version=version, catalogue=catalogue)
    if stored is not None:
        kept = replace(policy, catalogue=None, build=BuildRecord(sources=policy.build.sources))
        tmp = f"{stored}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(stored), exist_ok=True)
            with open(tmp, "wb") as f:
                pickle.dump(kept, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, stored)
        except OSError:
            pass  # a cache that cannot be written only costs time
    return policy
