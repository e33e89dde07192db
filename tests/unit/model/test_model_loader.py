"""Loading resources from files and directories (no root needed)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ngfw.model.errors import PolicyError
from ngfw.model.loader import load_resources
from ngfw.model.resources import SecurityPolicy, VirtualSystem, Workload

EXAMPLES = Path(__file__).resolve().parents[3] / "rules" / "examples"

VSYS = """\
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-a}
"""

WORKLOAD = """\
apiVersion: ngfw/v1
kind: Workload
metadata: {name: web-01, vsys: tenant-a, labels: {tier: web}}
spec:
  interfaces: [{mac: "02:00:00:00:01:01", ips: ["10.77.0.11"]}]
"""


def write(path: Path, *documents: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n".join(textwrap.dedent(d) for d in documents))
    return path


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_loads(example: str) -> None:
    resources = load_resources(EXAMPLES / example)
    assert resources
    assert all(r.file == str(EXAMPLES / example) for r in resources)


def test_the_examples_directory_has_the_documented_examples() -> None:
    assert {"lab.yaml", "allow-all.yaml", "two-tenants.yaml"} <= {p.name for p in EXAMPLES.glob("*.yaml")}


def test_resources_keep_file_and_document_order(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", VSYS, WORKLOAD)
    resources = load_resources(path)
    assert [type(r.resource) for r in resources] == [VirtualSystem, Workload]
    assert [(r.file, r.index) for r in resources] == [(str(path), 0), (str(path), 1)]
    assert resources[1].label == "Workload tenant-a/web-01"


def test_directory_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path / "b" / "policy.yml", WORKLOAD)
    write(tmp_path / "a.yaml", VSYS)
    write(tmp_path / "notes.txt", "not: policy")
    write(tmp_path / ".hidden" / "x.yaml", "kind: Garbage")
    write(tmp_path / ".#a.yaml", "kind: Garbage")
    resources = load_resources(tmp_path)
    assert [r.file for r in resources] == [str(tmp_path / "a.yaml"), str(tmp_path / "b" / "policy.yml")]


def test_empty_documents_are_skipped_and_indexes_stay_true(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("---\n" + VSYS + "---\n---\n" + WORKLOAD + "---\n")
    resources = load_resources(path)
    assert len(resources) == 2
    assert resources[1].index > resources[0].index


def test_a_policy_without_virtual_systems_is_valid_and_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing yet\n")
    assert load_resources(path) == []


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_resources(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)


def test_directory_without_policy_files_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no \\*.yaml"):
        load_resources(tmp_path)


def test_values_are_canonicalised(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        VSYS,
        """\
        apiVersion: ngfw/v1
        kind: Workload
        metadata: {name: web-01, vsys: tenant-a}
        spec:
          interfaces: [{mac: "02-00-00-0A-01-FF", ips: ["FD00:0:0::11"]}]
        """,
        """\
        apiVersion: ngfw/v1
        kind: SecurityPolicy
        metadata: {name: main, vsys: tenant-a}
        spec:
          rules:
            - {name: r, from: [any], to: ["cidr:FD00::0/64"], services: [ipv6-icmp, tcp/80-80], action: allow}
        """,
    )
    workload, policy = load_resources(path)[1:]
    assert isinstance(workload.resource, Workload) and isinstance(policy.resource, SecurityPolicy)
    interface = workload.resource.spec.interfaces[0]
    assert (interface.mac, interface.ips) == ("02:00:00:0a:01:ff", ["fd00::11"])
    rule = policy.resource.spec.rules[0]
    assert (rule.to, rule.services, rule.applications, rule.log) == (
        ["cidr:fd00::/64"],
        ["icmp6", "tcp/80"],
        ["any"],
        False,
    )


def test_unquoted_all_digit_mac_stays_a_mac(tmp_path: Path) -> None:
    # YAML 1.1 reads 10:20:30:40:50:52 as a base-60 integer; the loader must not.
    path = write(
        tmp_path / "p.yaml",
        VSYS,
        """\
        apiVersion: ngfw/v1
        kind: Workload
        metadata: {name: web-01, vsys: tenant-a}
        spec:
          interfaces: [{mac: 10:20:30:40:50:52, ips: []}]
        """,
    )
    workload = load_resources(path)[1].resource
    assert isinstance(workload, Workload)
    assert workload.spec.interfaces[0].mac == "10:20:30:40:50:52"


def test_inspect_and_description_are_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.yaml",
        VSYS,
        """\
        apiVersion: ngfw/v1
        kind: SecurityPolicy
        metadata: {name: main, vsys: tenant-a}
        spec:
          rules:
            - {name: r, from: [any], to: [any], action: allow, inspect: default, description: why}
        """,
    )
    policy = load_resources(path)[1].resource
    assert isinstance(policy, SecurityPolicy)
    assert (policy.spec.rules[0].inspect, policy.spec.rules[0].description) == ("default", "why")


def test_fragments_load_without_reference_checks(tmp_path: Path) -> None:
    path = write(tmp_path / "p.yaml", WORKLOAD)  # its VirtualSystem lives elsewhere
    with pytest.raises(PolicyError):
        load_resources(path)
    assert len(load_resources(path, check_references=False)) == 1
