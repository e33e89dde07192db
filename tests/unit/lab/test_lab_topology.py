"""The lab's names and addresses (pure: no namespaces are created)."""

import ipaddress

import pytest

from ngfw.lab.topology import IFNAMSIZ, lab_plan, namespace_names


def test_namespaces_derive_from_the_prefix():
    lab = lab_plan("nt42")
    assert lab.namespaces == ("nt42-host", "nt42-fw", "nt42-web1", "nt42-web2", "nt42-srv")
    assert namespace_names("nt42")["fw"] == lab.fw_ns


def test_default_prefix_is_ngfw():
    assert lab_plan().host_ns == "ngfw-host"


def test_addresses_and_macs_are_the_documented_ones():
    lab = lab_plan("x")
    assert (lab.web1.mac, lab.web1.ipv4, lab.web1.ipv6) == ("02:00:00:00:01:01", "10.77.0.11", "fd77::11")
    assert (lab.web2.mac, lab.web2.ipv4, lab.web2.ipv6) == ("02:00:00:00:01:02", "10.77.0.12", "fd77::12")
    assert (lab.srv.mac, lab.srv.ipv4, lab.srv.ipv6) == ("02:00:00:00:02:01", "10.77.0.100", "fd77::100")


def test_every_endpoint_is_in_one_l2_subnet():
    lab = lab_plan("x")
    net4, net6 = ipaddress.ip_network(lab.subnet4), ipaddress.ip_network(lab.subnet6)
    for e in lab.endpoints:
        assert ipaddress.ip_address(e.ipv4) in net4
        assert ipaddress.ip_address(e.ipv6) in net6


def test_workloads_sit_on_br_vm_and_the_server_on_br_up():
    lab = lab_plan("x")
    assert {e.bridge for e in lab.workloads} == {lab.br_vm}
    assert lab.srv.bridge == lab.br_up


def test_the_dataplane_wire_is_fw_vm_to_fw_up():
    assert lab_plan("x").wire == "fw-vm:fw-up"


def test_interface_names_fit_the_kernel_limit_and_are_unique_per_namespace():
    lab = lab_plan("a-rather-long-test-prefix")
    for ns, names in lab.interface_names().items():
        assert len(names) == len(set(names)), ns
        assert all(len(n) <= IFNAMSIZ for n in names), names


@pytest.mark.parametrize("prefix", ["", "a/b", ".hidden"])
def test_prefixes_that_are_not_file_names_are_refused(prefix):
    with pytest.raises(ValueError):
        lab_plan(prefix)
