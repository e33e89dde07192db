"""Every class of policy error names the file, the resource and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ngfw.compiler.policy import compile_resources, load_policy
from ngfw.model.errors import PolicyError
from ngfw.model.loader import load_resources

VSYS_A = """\
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-a}
"""
VSYS_B = """\
apiVersion: ngfw/v1
kind: VirtualSystem
metadata: {name: tenant-b}
"""


def workload(
    name: str = "web-01", mac: str = "02:00:00:00:01:01", ip: str = "10.77.0.11", vsys: str = "tenant-a"
) -> str:
    return f"""\
apiVersion: ngfw/v1
kind: Workload
metadata: {{name: {name}, vsys: {vsys}, labels: {{tier: web}}}}
spec:
  interfaces: [{{mac: "{mac}", ips: ["{ip}"]}}]
"""


def policy(*rules: str, name: str = "main", vsys: str = "tenant-a") -> str:
    body = "".join(f"    - {rule}\n" for rule in rules)
    return (
        f"apiVersion: ngfw/v1\nkind: SecurityPolicy\nmetadata: {{name: {name}, vsys: {vsys}}}\nspec:\n  rules:\n{body}"
    )


def problems(tmp_path: Path, *documents: str, name: str = "policy.yaml") -> tuple[str, list[str]]:
    """The file name and the problems of loading `documents` from it."""
    path = tmp_path / name
    path.write_text("---\n".join(textwrap.dedent(d) for d in documents))
    with pytest.raises(PolicyError) as info:
        load_resources(path)
    assert str(info.value) == "\n".join(info.value.problems)
    return str(path), info.value.problems


def only(found: list[str]) -> str:
    assert len(found) == 1, found
    return found[0]


def test_wrong_action_reads_like_the_documented_example(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path,
        VSYS_A,
        policy(
            "{name: a, from: [any], to: [any], action: allow}",
            "{name: b, from: [any], to: [any], action: deny}",
            "{name: c, from: [any], to: [any], action: permit}",
        ),
    )
    assert only(found) == (
        f"{file}: SecurityPolicy tenant-a/main: spec.rules[2].action: must be one of allow, deny, reject (got 'permit')"
    )


def test_unknown_kind(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A, "apiVersion: ngfw/v1\nkind: Firewall\nmetadata: {name: x}\n")
    assert only(found) == (
        f"{file}: document 2 (line 5): kind: unknown kind 'Firewall' "
        "(expected one of VirtualSystem, Workload, Group, SecurityPolicy, ThreatProfile, SignatureSet, UserGroup, "
        "UserSource)"
    )


def test_wrong_api_version(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A.replace("ngfw/v1", "ngfw/v2"))
    assert only(found) == f"{file}: VirtualSystem tenant-a: apiVersion: must be one of ngfw/v1 (got 'ngfw/v2')"


def test_unknown_field_suggests_the_right_one(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path, VSYS_A, policy("{name: a, from: [any], to: [any], service: [tcp/80], action: allow}")
    )
    assert (
        only(found)
        == f"{file}: SecurityPolicy tenant-a/main: spec.rules[0].service: unknown field (did you mean 'services'?)"
    )


def test_unknown_field_lists_the_allowed_ones(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A + "spec: {quota: 5}\n")
    assert only(found) == f"{file}: VirtualSystem tenant-a: spec.quota: unknown field (allowed: limits)"


def test_missing_field(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A, policy("{name: a, from: [any], action: allow}"))
    assert only(found) == f"{file}: SecurityPolicy tenant-a/main: spec.rules[0].to: required field is missing"


def test_missing_metadata_name_still_names_the_document(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path, VSYS_A, "apiVersion: ngfw/v1\nkind: Group\nmetadata: {vsys: tenant-a}\nspec: {selector: {a: b}}\n"
    )
    assert only(found) == f"{file}: Group in document 2 (line 5): metadata.name: required field is missing"


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ("{name: a, from: any, to: [any], action: allow}", "spec.rules[0].from", "must be a list (got 'any')"),
        (
            "{name: a, from: [any], to: [any], action: allow, log: 'yes'}",
            "spec.rules[0].log",
            "must be true or false (got 'yes')",
        ),
        (
            "{name: 7, from: [any], to: [any], action: allow}",
            "spec.rules[0].name",
            "must be a string (got 7 - quote it in YAML)",
        ),
    ],
)
def test_wrong_types(tmp_path: Path, rule: str, field: str, message: str) -> None:
    file, found = problems(tmp_path, VSYS_A, policy(rule))
    assert only(found) == f"{file}: SecurityPolicy tenant-a/main: {field}: {message}"


def test_limits_must_be_positive_integers(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A + "spec: {limits: {maxSessions: 0, newSessionsPerSecond: '10'}}\n")
    assert found == [
        f"{file}: VirtualSystem tenant-a: spec.limits.maxSessions: must be greater than 0 (got 0)",
        f"{file}: VirtualSystem tenant-a: spec.limits.newSessionsPerSecond: must be an integer (got '10')",
    ]


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("tcp/0", "port 0 is out of range 1-65535"),
        ("udp/65536", "port 65536 is out of range 1-65535"),
        ("tcp/9000-8000", "port range 9000-8000 is reversed (low end above high end)"),
        ("sctp/80", "must be any, icmp, icmp6, tcp/PORT, tcp/LO-HI, udp/PORT or udp/LO-HI"),
    ],
)
def test_bad_services(tmp_path: Path, service: str, message: str) -> None:
    file, found = problems(
        tmp_path, VSYS_A, policy(f"{{name: a, from: [any], to: [any], services: [icmp, '{service}'], action: allow}}")
    )
    assert (
        only(found) == f"{file}: SecurityPolicy tenant-a/main: spec.rules[0].services[1]: {message} (got '{service}')"
    )


def test_application_default_stands_alone(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path,
        VSYS_A,
        policy("{name: a, from: [any], to: [any], services: [icmp, application-default], action: allow}"),
    )
    assert only(found).startswith(
        f"{file}: SecurityPolicy tenant-a/main: spec.rules[0].services: application-default stands alone"
    )


def test_applications_any_stands_alone(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path, VSYS_A, policy("{name: a, from: [any], to: [any], applications: [any, http], action: allow}")
    )
    assert only(found).startswith(
        f"{file}: SecurityPolicy tenant-a/main: spec.rules[0].applications: `any` stands alone"
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("cidr:10.0.0.1/8", "has host bits set (did you mean cidr:10.0.0.0/8?)"),
        ("cidr:10.0.0.0/33", "is not an IPv4 or IPv6 prefix"),
        ("cidr:fd00::/129", "is not an IPv4 or IPv6 prefix"),
        ("10.0.0.0/8", "must be any, vm:NAME, group:NAME or cidr:PREFIX (did you mean cidr:10.0.0.0/8?)"),
        ("host:web-01", "must be any, vm:NAME, group:NAME or cidr:PREFIX"),
    ],
)
def test_bad_references(tmp_path: Path, ref: str, message: str) -> None:
    file, found = problems(tmp_path, VSYS_A, policy(f"{{name: a, from: [any], to: [any, '{ref}'], action: allow}}"))
    assert only(found) == f"{file}: SecurityPolicy tenant-a/main: spec.rules[0].to[1]: {message} (got '{ref}')"


@pytest.mark.parametrize(
    ("mac", "message"),
    [
        ("01:00:5e:00:00:01", "must be a unicast MAC address (the multicast bit is set)"),
        ("ff:ff:ff:ff:ff:ff", "must be a unicast MAC address (the multicast bit is set)"),
        ("00:00:00:00:00:00", "must not be the all-zero MAC address"),
        ("02:00:00:00:01", "must be a MAC address like 02:00:00:00:01:01"),
    ],
)
def test_bad_macs(tmp_path: Path, mac: str, message: str) -> None:
    file, found = problems(tmp_path, VSYS_A, workload(mac=mac))
    assert only(found) == f"{file}: Workload tenant-a/web-01: spec.interfaces[0].mac: {message} (got '{mac}')"


@pytest.mark.parametrize("ip", ["10.77.0.300", "0.0.0.0", "224.0.0.1", "10.77.0.0/24"])
def test_bad_ips(tmp_path: Path, ip: str) -> None:
    file, found = problems(tmp_path, VSYS_A, workload(ip=ip))
    assert only(found).startswith(f"{file}: Workload tenant-a/web-01: spec.interfaces[0].ips[0]: must be ")


def test_mac_bound_to_two_workloads_names_both(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path, VSYS_A, VSYS_B, workload("web-01"), workload("db-01", ip="10.78.0.1", vsys="tenant-b")
    )
    assert only(found) == (
        f"{file}: Workload tenant-b/db-01: spec.interfaces[0].mac: MAC 02:00:00:00:01:01 is already bound to "
        f"Workload tenant-a/web-01 ({file}) at spec.interfaces[0].mac"
    )


def test_ip_bound_to_two_workloads_names_both(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A, workload("web-01"), workload("web-02", mac="02-00-00-00-01-02"))
    assert only(found) == (
        f"{file}: Workload tenant-a/web-02: spec.interfaces[0].ips[0]: IP 10.77.0.11 is already bound to "
        f"Workload tenant-a/web-01 ({file}) at spec.interfaces[0].ips[0]"
    )


def test_macs_are_compared_after_normalisation(tmp_path: Path) -> None:
    _, found = problems(
        tmp_path, VSYS_A, workload("web-01"), workload("web-02", mac="02-00-00-00-01-01", ip="10.77.0.12")
    )
    assert "MAC 02:00:00:00:01:01 is already bound to Workload tenant-a/web-01" in only(found)


def test_duplicate_resource_names(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A, workload(), VSYS_A)
    assert (
        only(found)
        == f"{file}: VirtualSystem tenant-a: metadata.name: duplicate VirtualSystem tenant-a (first defined in {file}, document 1)"
    )


def test_same_name_in_two_vsys_is_not_a_duplicate(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "---\n".join(
            [
                VSYS_A,
                VSYS_B,
                policy("{name: a, from: [any], to: [any], action: allow}"),
                policy("{name: a, from: [any], to: [any], action: allow}", vsys="tenant-b"),
            ]
        )
    )
    assert len(load_resources(path)) == 4


def test_duplicate_rule_names_across_policies_of_a_vsys(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VSYS_A + "---\n" + policy("{name: same, from: [any], to: [any], action: allow}"))
    (tmp_path / "b.yaml").write_text(policy("{name: same, from: [any], to: [any], action: deny}", name="extra"))
    with pytest.raises(PolicyError) as info:
        load_resources(tmp_path)
    assert only(info.value.problems) == (
        f"{tmp_path / 'b.yaml'}: SecurityPolicy tenant-a/extra: spec.rules[0].name: duplicate rule name 'same' in vsys "
        f"'tenant-a' (first used by SecurityPolicy tenant-a/main spec.rules[0], {tmp_path / 'a.yaml'})"
    )


def test_reference_to_a_missing_virtual_system(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path,
        VSYS_A,
        workload(vsys="shop"),
        policy("{name: a, from: [any], to: [any], action: allow}", vsys="tenant-aa"),
    )
    assert found == [
        f"{file}: Workload shop/web-01: metadata.vsys: VirtualSystem 'shop' does not exist",
        f"{file}: SecurityPolicy tenant-aa/main: metadata.vsys: VirtualSystem 'tenant-aa' does not exist (did you mean 'tenant-a'?)",
    ]


def test_workload_without_any_virtual_system(tmp_path: Path) -> None:
    file, found = problems(tmp_path, workload())
    assert only(found) == f"{file}: Workload tenant-a/web-01: metadata.vsys: VirtualSystem 'tenant-a' does not exist"


def test_dangling_references(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path,
        VSYS_A,
        "apiVersion: ngfw/v1\nkind: Group\nmetadata: {name: g, vsys: tenant-a}\nspec: {members: [vm:ghost]}\n",
        policy("{name: a, from: [vm:nobody], to: [group:nothing], action: allow}"),
    )
    assert found == [
        f"{file}: Group tenant-a/g: spec.members[0]: Workload 'ghost' does not exist in vsys 'tenant-a'",
        f"{file}: SecurityPolicy tenant-a/main: spec.rules[0].from[0]: vm:nobody: Workload 'nobody' does not exist in vsys 'tenant-a'",
        f"{file}: SecurityPolicy tenant-a/main: spec.rules[0].to[0]: group:nothing: Group 'nothing' does not exist in vsys 'tenant-a'",
    ]


def test_reference_into_another_vsys_is_dangling(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path,
        VSYS_A,
        VSYS_B,
        workload("db-01", vsys="tenant-b"),
        policy("{name: a, from: [any], to: [vm:db-01], action: allow}"),
    )
    assert only(found) == (
        f"{file}: SecurityPolicy tenant-a/main: spec.rules[0].to[0]: vm:db-01: Workload 'db-01' does not exist in "
        "vsys 'tenant-a' (it is in tenant-b; reference other tenants by cidr:)"
    )


def test_group_needs_selector_or_members(tmp_path: Path) -> None:
    file, found = problems(
        tmp_path,
        VSYS_A,
        "apiVersion: ngfw/v1\nkind: Group\nmetadata: {name: g, vsys: tenant-a}\nspec: {selector: {}}\n",
    )
    assert only(found).startswith(f"{file}: Group tenant-a/g: spec: selector must name at least one label")


def test_interfaces_of_a_workload_must_share_a_port(tmp_path: Path) -> None:
    doc = workload().replace(
        'ips: ["10.77.0.11"]}]', 'ips: ["10.77.0.11"], port: veth1}, {mac: "02:00:00:00:01:09", ips: [], port: veth2}]'
    )
    file, found = problems(tmp_path, VSYS_A, doc)
    assert (
        only(found)
        == f"{file}: Workload tenant-a/web-01: spec.interfaces: all interfaces of a workload must name the same port (got 'veth1', 'veth2')"
    )


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A, "apiVersion: ngfw/v1\nkind: Workload\nmetadata: {name: [x}\n")
    assert only(found).startswith(f"{file}:7:")
    assert "invalid YAML" in found[0]


def test_duplicate_yaml_keys_are_an_error(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A, policy("{name: a, from: [any], to: [any], action: allow, action: deny}"))
    assert only(found).startswith(f"{file}:10:")
    assert "duplicate key 'action'" in found[0]


def test_document_must_be_a_mapping(tmp_path: Path) -> None:
    file, found = problems(tmp_path, VSYS_A, "- just\n- a list\n")
    assert only(found) == f"{file}: document 2 (line 5): must be a mapping with apiVersion, kind, metadata and spec"


def test_all_problems_of_a_load_are_reported_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        VSYS_A
        + "---\n"
        + policy(
            "{name: a, from: [any], to: [any], action: permit}", "{name: b, from: [vm:x], to: [any], action: allow}"
        )
    )
    (tmp_path / "b.yaml").write_text("kind: [\n")
    (tmp_path / "c.yaml").write_text(workload(vsys="nowhere"))
    with pytest.raises(PolicyError) as info:
        load_resources(tmp_path)
    files = [line.split(":")[0] for line in info.value.problems]
    assert files == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml"), str(tmp_path / "c.yaml")]


def test_a_broken_resource_is_reported_once_not_at_every_reference(tmp_path: Path) -> None:
    broken = workload().replace("02:00:00:00:01:01", "nonsense")
    _, found = problems(tmp_path, VSYS_A, broken, policy("{name: a, from: [vm:web-01], to: [any], action: allow}"))
    assert len(found) == 1 and "spec.interfaces[0].mac" in found[0]


def test_failed_load_returns_nothing(tmp_path: Path) -> None:
    # Candidate semantics: one bad document and nothing of the load is usable.
    path = tmp_path / "p.yaml"
    path.write_text("---\n".join([VSYS_A, workload(), policy("{name: a, from: [any], to: [any], action: permit}")]))
    result = None
    with pytest.raises(PolicyError):
        result = load_resources(path)
    assert result is None
    with pytest.raises(PolicyError):
        result = load_policy(path)  # type: ignore[assignment]
    assert result is None


def test_compile_checks_resources_that_did_not_come_from_files(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "---\n".join([VSYS_A, workload(), policy("{name: a, from: [vm:web-01], to: [any], action: allow}")])
    )
    resources = [r.resource for r in load_resources(path)]
    with pytest.raises(PolicyError) as info:
        compile_resources(resources[1:], version=1)  # the VirtualSystem is gone
    assert len(info.value.problems) == 2
    assert all(p.startswith("<resources>: ") and "metadata.vsys" in p for p in info.value.problems)


def test_ipv4_mapped_workload_address_is_refused(tmp_path) -> None:
    import pytest

    from ngfw.compiler.policy import load_policy
    from ngfw.model.errors import PolicyError

    path = tmp_path / "mapped.yaml"
    path.write_text(
        "apiVersion: ngfw/v1\nkind: VirtualSystem\nmetadata: {name: t}\n---\n"
        "apiVersion: ngfw/v1\nkind: Workload\nmetadata: {name: w, vsys: t}\n"
        "spec: {interfaces: [{mac: '02:00:00:00:00:01', ips: ['::ffff:10.0.0.1']}]}\n"
    )
    with pytest.raises(
        PolicyError, match=r"mapped.yaml: Workload t/w: spec.interfaces\[0\].ips\[0\]: .*write it as 10.0.0.1"
    ):
        load_policy(path)
