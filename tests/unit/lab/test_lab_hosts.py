"""The two-host lab's names and addresses (pure: no namespaces are created)."""

import ipaddress

from ngfw.lab.hosts import two_host_plan
from ngfw.lab.topology import HOST_B_ROLES, IFNAMSIZ


def test_host_a_is_the_one_host_lab_and_host_b_adds_four_namespaces():
    two = two_host_plan("nc7")
    assert two.lab.namespaces == ("nc7-host", "nc7-fw", "nc7-web1", "nc7-web2", "nc7-srv")
    assert two.added_namespaces == ("nc7-host2", "nc7-fw2", "nc7-db1", "nc7-mgmt")
    # `ngfw lab down` (topology.lab_exists) knows them, so it removes both hosts
    assert {f"nc7-{role}" for role in HOST_B_ROLES} == set(two.added_namespaces)


def test_db1_shares_the_workload_subnet_and_control_is_on_the_management_network():
    two = two_host_plan("x")
    assert ipaddress.ip_address(two.db1.ipv4) in ipaddress.ip_network(two.lab.subnet4)
    assert two.db1.mac not in {e.mac for e in two.lab.endpoints}
    mgmt = ipaddress.ip_network("10.79.0.0/24")
    assert {ipaddress.ip_address(a) in mgmt for a in (two.control_ip, two.host_a.mgmt_ip, two.host_b.mgmt_ip)} == {True}
    # the hypervisors' own addresses (a live migration's stream), apart from the firewalls'
    assert (two.host_a.host_mgmt_ip, two.host_b.host_mgmt_ip) == ("10.79.0.21", "10.79.0.22")
    addresses = [two.control_ip, *(h.mgmt_ip for h in two.hosts), *(h.host_mgmt_ip for h in two.hosts)]
    assert len(set(addresses)) == len(addresses)
    assert two.control_url == "http://10.79.0.1:9660"
    assert [h.name for h in two.hosts] == ["host-a", "host-b"]


def test_interface_names_fit_the_kernel_limit_and_are_unique_per_namespace():
    for ns, names in two_host_plan("a-rather-long-test-prefix").interface_names().items():
        assert len(names) == len(set(names)), ns
        assert all(len(n) <= IFNAMSIZ for n in names), names
