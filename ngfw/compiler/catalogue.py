"""The App-ID catalogue as the fastpath sees it: plain, frozen data (ids, signatures, host and port
tables), and its loader, which keeps compiled catalogues in a cache so that starting a replay or a
dataplane does not validate every signature again. The YAML format and its compiler are in
`ngfw.compiler.apps` (imported only when the cache has no copy).
"""

from __future__ import annotations

import hashlib
import os
import pickle

from ngfw.shipped import shipped
from ngfw.values import value

# paths are os.path strings here: pathlib (and the urllib.parse it imports) is not on `ngfw replay`'s start
TYPE_CHECKING = False
if TYPE_CHECKING:
    from os import PathLike

HERE = os.path.dirname(os.path.realpath(__file__))
DEFAULT_CATALOGUE = shipped("rules/apps")
SUFFIXES = (".yaml", ".yml")
# Reserved names: classification states, ids 0-4 whatever the files say.
RESERVED = ("unknown", "unknown-tcp", "unknown-udp", "incomplete", "insufficient-data")


@value
class AppDef:
    id: int
    name: str
    category: str
    risk: int
    parent: int | None  # app id of the parent (github -> tls), None for top-level apps
    ports: tuple[tuple[int, int], ...]  # (l4 6/17, port): the app's default ports
    hosts: tuple[str, ...]  # host patterns as written
    ip_protocols: tuple[int, ...]
    description: str
    source: str  # file the app was defined in, for messages
    # "reserved" (a classification state), "protocol" (what the flow speaks: parsers,
    # signatures, ports, IP protocols decide it) or "service" (host-based: a name the flow
    # carries decides it; it refines the protocol and is logged beside it, never instead).
    kind: str = "protocol"

    @property
    def reserved(self) -> bool:
        return self.id < len(RESERVED)


@value
class Signature:
    app: int
    l4: int  # an IP protocol number (ngfw.wire): PROTO_ANY, PROTO_TCP or PROTO_UDP
    direction: int  # DIR_ANY, DIR_TO_SERVER, DIR_TO_CLIENT
    pattern: str
    hs_flags: int  # SINGLEMATCH|DOTALL, plus CASELESS for nocase
    priority: int  # higher wins; a parser's answer beats every signature
    min_len: int  # the packet's payload must be at least this long (0: no minimum)


@value
class HostRule:
    """`github.com` matches that name only; `*.github.com` matches its subdomains, not itself.

    `Catalogue.hosts` is ordered so the first rule that matches is the most specific one:
    exact names first, then wildcards by longest suffix.
    """

    pattern: str  # as written
    domain: str  # the pattern without its `*.`
    wildcard: bool
    app: int


@value
class Catalogue:
    apps: tuple[AppDef, ...]  # index = app id
    by_name: dict[str, int]
    signatures: tuple[Signature, ...]  # index = signature id = Hyperscan expression id
    hosts: tuple[HostRule, ...]
    ip_protocols: dict[int, int]  # IP protocol number -> app id
    default_ports: dict[tuple[int, int], tuple[int, ...]]  # (l4, port) -> app ids, in catalogue order
    children_by_port: dict[tuple[int, int, int], int]  # (parent app id, l4, port) -> child app id
    digest: str  # sha256 of the compiled tables; changes whenever anything the fastpath sees does

    def app(self, name: str) -> AppDef:
        return self.apps[self.by_name[name]]

    def match_host(self, host: str) -> int | None:
        """The app of the most specific host rule matching `host`, if any (the fastpath's C twin)."""
        name = host.lower().rstrip(".")
        for rule in self.hosts:
            if rule.wildcard:
                if name.endswith("." + rule.domain):
                    return rule.app
            elif name == rule.domain:
                return rule.app
        return None


def catalogue_files(path: str | PathLike[str]) -> list[str]:
    """`path` itself, or the `*.yaml`/`*.yml` files under it (hidden ones left out), in path order."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        from ngfw.model.errors import PolicyError

        raise PolicyError([f"{path}: no such file or directory"])
    found: list[tuple[tuple[str, ...], str]] = []
    for directory, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            full = os.path.join(directory, name)
            if not name.startswith(".") and os.path.splitext(name)[1] in SUFFIXES and os.path.isfile(full):
                found.append((tuple(os.path.relpath(full, path).split(os.sep)), full))
    if not found:
        from ngfw.model.errors import PolicyError

        raise PolicyError([f"{path}: no *.yaml or *.yml files in this directory"])
    return [full for _, full in sorted(found)]


_LOADED: dict[str, Catalogue] = {}


def cache_dir() -> str:
    """Where compiled catalogues and signature databases are kept between runs."""
    return os.environ.get("NGFW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "ngfw"
    )


def load_catalogue(path: str | PathLike[str] = DEFAULT_CATALOGUE, cache: bool = True) -> Catalogue:
    """The catalogue under `path` (a file or a directory of `*.yaml`), or `PolicyError` with every problem.

    Validating every signature with Hyperscan takes seconds, so a catalogue that loaded cleanly is
    kept (in this process, and pickled in the cache directory) under the hash of its files and of
    this compiler; any change to either loads it afresh.
    """
    files = catalogue_files(path)
    h = hashlib.sha256(_read_bytes(os.path.join(HERE, "catalogue.py")) + _read_bytes(os.path.join(HERE, "apps.py")))
    for file in files:
        h.update(file.encode() + b"\0" + _read_bytes(file) + b"\0")
    key = h.hexdigest()
    if cache and key in _LOADED:
        return _LOADED[key]
    stored = os.path.join(cache_dir(), f"catalogue-{key[:32]}.pickle")
    if cache:
        try:
            with open(stored, "rb") as f:
                catalogue = pickle.load(f)
            if isinstance(catalogue, Catalogue):
                _LOADED[key] = catalogue
                return catalogue
        except (OSError, pickle.PickleError, EOFError, AttributeError, ImportError):
            pass
    from ngfw.compiler.apps import compile_catalogue  # pydantic and Hyperscan: only on a cache miss

    catalogue = compile_catalogue(path)
    _LOADED[key] = catalogue
    if cache:
        try:
            os.makedirs(os.path.dirname(stored), exist_ok=True)
            tmp = f"{stored}.{os.getpid()}.tmp"
            with open(tmp, "wb") as f:
                pickle.dump(catalogue, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, stored)
        except OSError:
            pass  # only costs time next run
    return catalogue


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
