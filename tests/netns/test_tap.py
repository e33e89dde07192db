"""`--tap`: the dataplane creates TAP devices whose far sides are VMs (here: namespaces), switched in one
segment through the fastpath, so VM-to-VM traffic on a host is policed."""

from __future__ import annotations

import contextlib
import socket
import textwrap
import time
from pathlib import Path

import pytest

from ngfw.lab.dataplane_process import start_dataplane
from ngfw.lab.netns import call_in, free_tcp_port, socket_in
from tests.support.tap import TAP_POLICY, move_tap_to_vm, tap_dataplane_argv


def test_vm_to_vm_through_taps_is_policed(tap_host: dict[str, str], tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(textwrap.dedent(TAP_POLICY))

    dp = start_dataplane(
        tap_host["fw"], policy, free_tcp_port(tap_host["fw"]), workdir=tmp_path, argv_builder=tap_dataplane_argv
    )
    try:
        for tap in ("tapa", "tapb"):
            move_tap_to_vm(tap_host["fw"], tap, tap_host[tap])
        # ping (allowed), through the dataplane's TAP segment
        r = call_in(tap_host["tapa"], ["ping", "-c", "3", "-i", "0.2", "-W", "2", "10.88.0.2"], timeout=20)
        assert r.returncode == 0, r.stdout + r.stderr
        with contextlib.closing(socket_in(tap_host["tapb"])) as server:
            server.bind(("10.88.0.2", 5432))
            server.listen()
            other = socket_in(tap_host["tapb"])
            other.bind(("10.88.0.2", 5433))
            other.listen()
            # app-to-db on 5432 is allowed
            with contextlib.closing(socket_in(tap_host["tapa"])) as client:
                client.settimeout(3)
                client.connect(("10.88.0.2", 5432))
            # 5433 is not: silently dropped
            with contextlib.closing(socket_in(tap_host["tapa"])) as client:
                client.settimeout(1.5)
                with pytest.raises(socket.timeout):
                    client.connect(("10.88.0.2", 5433))
            other.close()
        text = dp.metrics_text()
        assert 'ngfw_rule_hits_total{rule="app-to-db",vsys="tenant-t"} 1.0' in text
        assert 'ngfw_rule_hits_total{rule="default-deny",vsys="tenant-t"} 1.0' in text
        assert 'ngfw_port_rx_packets_total{port="tapa"}' in text
    finally:
        dp.stop()
    time.sleep(0.1)
    drops = [r for r in dp.eve_records() if r["event_type"] == "drop"]
    assert [(r["src_vm"], r["dest_vm"], r["dest_port"]) for r in drops] == [("vm-a", "vm-b", 5433)]
