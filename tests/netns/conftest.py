"""Fixtures for tests that build network namespaces and send real traffic (root only).

- `lab`: the lab topology (session-wide, own prefix `nt<pid%1000>`), removed at the end.
- `lab_services`: nginx (:80, :8443), DNS and sshd on the lab server (session-wide).
- `bridged_fw`: the fw namespace bridged by a plain Linux bridge for one test (baseline).
- `start_dataplane(policy_path, extra_args=()) -> DataplaneProcess`: `ngfw dataplane` on the lab wire,
  ready when it returns (/metrics answers), stopped after the test.
- `ns_run(ns, argv, timeout=10) -> CompletedProcess`: run a client inside a namespace.
- `two_host_lab`: a two-host lab of its own (prefix `nm<N>`) for one test, both fw namespaces bridged
  (baseline), the lab servers running; a `TwoHostSite` (`.two`, `.services`, `.migrate(workload, to)`
  runs `ngfw lab migrate`, `.agent(workload)`, `.placement(workload)`).
- `tap_host`: namespaces `fw`, `tapa`, `tapb` for a `--tap` test (tests.support.tap hands a TAP to its VM).
- `vm_workloads`: web1 and web2 of `two_host_lab` as QEMU guests (`{name: Guest}`); only some with
  `@pytest.mark.parametrize("vm_workloads", [("web1",)], indirect=True)`. Mark such tests `vm`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from ngfw.lab import dataplane_process
from ngfw.lab import services as lab_services_mod
from ngfw.lab.dataplane_process import DataplaneProcess, DataplaneStartError, repo_path
from ngfw.lab.hosts import two_host_bridge_fw, two_host_up
from ngfw.lab.lock import claim_prefix, release
from ngfw.lab.netns import call_in, free_tcp_port, http_get
from ngfw.lab.qemu import Guest
from ngfw.lab.topology import Lab, lab_bridge_fw, lab_down, lab_unbridge_fw, lab_up
from ngfw.lab.workloads import VM_WORKLOADS, forget_workloads, record_namespace_workloads, start_vm_workloads
from tests.support.netns import TwoHostSite

HERE = Path(__file__).resolve().parent
NOT_ROOT_REASON = "netns tests need root (they create network namespaces, veth pairs and bridges); run as root"
DATAPLANE_READY_TIMEOUT = 20.0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/netns `netns`, and skip them all when not root. Tests marked `slow`
    (minutes on their own: the ngfw VM booted under TCG) run with the rest, as CI runs them; a developer
    leaves them out with `-m "not slow"`."""
    skip = pytest.mark.skip(reason=NOT_ROOT_REASON) if os.geteuid() != 0 else None
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.netns)
            if skip is not None:
                item.add_marker(skip)


@pytest.fixture
def tap_host(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Namespaces for a `--tap` test: `fw` (its loopback up, for /metrics), `tapa` and `tapb` (the VMs)."""
    tag = f"tt{os.getpid() % 1000}"
    names = {"fw": f"{tag}-fw", "tapa": f"{tag}-a", "tapb": f"{tag}-b"}
    for ns in names.values():
        netns.create(ns)
    with IPRoute(netns=names["fw"], flags=0) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")  # metrics listen on 127.0.0.1
    try:
        yield names
    finally:
        for ns in names.values():
            with contextlib.suppress(OSError):
                netns.remove(ns)


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    # nt<pid%1000>, or the next number a concurrent session does not hold.
    pid = os.getpid()
    prefix, lock = claim_prefix(f"nt{(pid + i) % 1000}" for i in range(1000))
    try:
        built = lab_up(prefix)
        try:
            yield built
        finally:
            lab_down(prefix)
    finally:
        release(lock)


@pytest.fixture(scope="session")
def lab_services(lab: Lab) -> Iterator[lab_services_mod.Services]:
    with lab_services_mod.lab_services(lab) as running:
        yield running


@pytest.fixture
def bridged_fw(lab: Lab) -> Iterator[Lab]:
    """The lab with a plain Linux bridge in place of the dataplane, for this test only."""
    lab_bridge_fw(lab)
    try:
        yield lab
    finally:
        lab_unbridge_fw(lab)


StartDataplane = Callable[..., DataplaneProcess]
STATE_ROOT = Path("/dev/shm/ngfw-tests")


def _test_state_dir(workdir: Path) -> Path:
    """A tmpfs directory for one dataplane's session table, removed with the test session's leftovers."""
    path = STATE_ROOT / f"{os.getpid()}-{abs(hash(str(workdir))):x}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def _remove_test_state() -> Iterator[None]:
    yield
    import shutil

    for path in STATE_ROOT.glob(f"{os.getpid()}-*"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A session-state directory on tmpfs for dataplanes a test restarts (`--state-dir`)."""
    return _test_state_dir(tmp_path)


@pytest.fixture
def start_dataplane_factory(lab: Lab, tmp_path: Path) -> Iterator[StartDataplane]:
    started: list[DataplaneProcess] = []

    def start(policy_path: str | Path, extra_args: Sequence[str] = ()) -> DataplaneProcess:
        policy = Path(policy_path)
        if not policy.is_absolute():
            policy = repo_path(str(policy_path))
        lab_unbridge_fw(lab)  # the dataplane, not a bridge, joins fw-vm and fw-up
        workdir = tmp_path / f"dataplane{len(started)}"
        workdir.mkdir()
        if "--state-dir" not in extra_args:
            # each test's dataplane its own session table (the default is one per namespace and ports)
            extra_args = [*extra_args, "--state-dir", str(_test_state_dir(workdir))]
        try:
            dp = dataplane_process.start_dataplane(
                lab.fw_ns, policy, free_tcp_port(lab.fw_ns), workdir=workdir, extra_args=extra_args,
                ready_timeout=DATAPLANE_READY_TIMEOUT,
            )  # fmt: skip
        except DataplaneStartError as exc:
            failure = str(exc)
        else:
            started.append(dp)
            return dp
        pytest.fail(failure, pytrace=False)  # outside `except`: the report shows stderr once

    try:
        yield start
    finally:
        for dp in started:
            dp.stop()
    # (tests/conftest.py then checks every record they wrote against docs/eve-schema.json)


@pytest.fixture
def dataplane(start_dataplane_factory: StartDataplane) -> StartDataplane:
    """`dataplane(policy_path, extra_args=())` starts `ngfw dataplane` in the fw namespace (see module doc)."""
    return start_dataplane_factory


@pytest.fixture
def start_dataplane(start_dataplane_factory: StartDataplane) -> StartDataplane:
    """Same as `dataplane`, under the name a test reads best: `dp = start_dataplane("rules/examples/lab.yaml")`."""
    return start_dataplane_factory


def _ns_run(ns: str, argv: Sequence[str], timeout: float = 10.0) -> subprocess.CompletedProcess[str]:
    return call_in(ns, argv, timeout=timeout)


@pytest.fixture
def ns_run() -> Callable[..., subprocess.CompletedProcess[str]]:
    """`ns_run(ns, argv, timeout=10)`: run argv inside namespace `ns` -> CompletedProcess (no raise on exit code)."""
    return _ns_run


@pytest.fixture
def ns_http_get() -> Callable[..., tuple[int, bytes]]:
    """`ns_http_get(ns, host, port, path="/", timeout=2)` -> (status, body), from inside `ns` (no curl)."""
    return http_get


@pytest.fixture
def two_host_lab() -> Iterator[TwoHostSite]:
    """A two-host lab of this test's own, plain Linux bridges in both fw namespaces, servers running."""
    prefix, lock = claim_prefix(f"nm{(os.getpid() + i) % 1000}" for i in range(1000))
    try:
        two = two_host_up(prefix)
        try:
            record_namespace_workloads(prefix)
            two_host_bridge_fw(two)
            with lab_services_mod.lab_services(two.lab) as running:
                yield TwoHostSite(two, running)
        finally:
            lab_down(prefix)  # QEMU guests and TAPs too
    finally:
        release(lock)


@pytest.fixture
def vm_workloads(request: pytest.FixtureRequest, two_host_lab: TwoHostSite) -> Iterator[dict[str, Guest]]:
    """Workloads of `two_host_lab` as QEMU guests (web1 and web2, or `request.param`), booted and answering."""
    names = tuple(getattr(request, "param", VM_WORKLOADS))
    try:
        booted = start_vm_workloads(two_host_lab.prefix, names)
        yield {vm.name: vm.guest for vm in booted}
    finally:
        forget_workloads(two_host_lab.prefix)
