"""Server configs of the lab (rendered text only) and the listener parser used to wait for them."""

from pathlib import Path

from ngfw.lab.services import (
    TCP_LISTEN,
    UDP_UNCONNECTED,
    parse_listeners,
    render_dnsmasq_args,
    render_nginx_conf,
    render_sshd_config,
)


def test_nginx_listens_on_every_address_and_port_and_keeps_state_in_its_directory():
    conf = render_nginx_conf(Path("/tmp/x/www"), ["10.77.0.100", "fd77::100"], (80, 8443))
    for listen in ("10.77.0.100:80", "10.77.0.100:8443", "[fd77::100]:80", "[fd77::100]:8443"):
        assert f"listen {listen} " in conf
    assert "daemon off;" in conf
    assert "pid /tmp/x/nginx.pid;" in conf
    assert "root /tmp/x/www;" in conf
    assert conf.count("{") == conf.count("}")


def test_dnsmasq_answers_the_lab_name_and_reads_nothing_from_etc():
    argv = render_dnsmasq_args(Path("/tmp/x"), ["10.77.0.100"], "example.internal", "10.77.0.100")
    assert "--address=/example.internal/10.77.0.100" in argv
    assert "--conf-file=/dev/null" in argv and "--no-resolv" in argv and "--no-hosts" in argv
    assert "--listen-address=10.77.0.100" in argv
    assert "--keep-in-foreground" in argv


def test_sshd_uses_its_own_host_key_and_listens_on_the_server_addresses():
    conf = render_sshd_config(Path("/tmp/x"), ["10.77.0.100", "fd77::100"])
    assert "HostKey /tmp/x/ssh_host_ed25519_key" in conf
    assert "ListenAddress 10.77.0.100:22" in conf
    assert "ListenAddress [fd77::100]:22" in conf


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 644D4D0A:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0
   1: 644D4D0A:20FB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0
   2: 644D4D0A:0050 0B4D4D0A:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0
"""

PROC_NET_UDP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 0000000000000000FFFF0000644D4D0A:0035 00000000000000000000000000000000:0000 07 00000000:00000000
"""


def test_listening_tcp_ports_are_found_and_established_ones_ignored():
    assert parse_listeners(PROC_NET_TCP, TCP_LISTEN) == {80, 8443}


def test_bound_udp_ports_are_found_in_ipv6_tables():
    assert parse_listeners(PROC_NET_UDP6, UDP_UNCONNECTED) == {53}


def test_an_empty_table_has_no_listeners():
    assert parse_listeners(PROC_NET_TCP.splitlines()[0], TCP_LISTEN) == set()
