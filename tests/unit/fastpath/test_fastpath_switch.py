"""Segments of more than two ports: MAC learning, flooding, hairpin, VM-to-VM through the fastpath."""

from __future__ import annotations

from scapy.layers.l2 import ARP

from tests.support.fastpath import (
    IP,
    SRV_IP,
    SRV_MAC,
    UDP,
    WEB1_IP,
    WEB1_MAC,
    WEB2_IP,
    WEB2_MAC,
    Ether,
    fp,
    lab_policy,
    tcp,
)


class Segment:
    """Three memory ports in one segment: two VM TAPs and an uplink."""

    def __init__(self) -> None:
        self.engine = fp.Engine(flow_capacity=1024)
        self.ports = {name: self.engine.add_memory_port(name, 0) for name in ("tap1", "tap2", "uplink")}
        self.engine.set_tables(fp.Tables(lab_policy(), self.ports))

    def send(self, port: str, frame) -> dict[str, int]:
        """Inject on `port`; returns how many frames each port transmitted."""
        self.engine.inject(self.ports[port], bytes(frame))
        return {name: len(self.engine.take_tx(index)) for name, index in self.ports.items()}


def test_unknown_destination_floods_then_learned_one_is_switched() -> None:
    seg = Segment()
    arp = Ether(src=WEB1_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=WEB1_MAC, psrc=WEB1_IP, pdst=SRV_IP)
    assert seg.send("tap1", arp) == {"tap1": 0, "tap2": 1, "uplink": 1}
    reply = Ether(src=SRV_MAC, dst=WEB1_MAC) / ARP(op=2, hwsrc=SRV_MAC, psrc=SRV_IP, hwdst=WEB1_MAC, pdst=WEB1_IP)
    assert seg.send("uplink", reply) == {"tap1": 1, "tap2": 0, "uplink": 0}
    # both MACs learned: a flow goes only where its destination lives
    syn = Ether(src=WEB1_MAC, dst=SRV_MAC) / IP(src=WEB1_IP, dst=SRV_IP) / tcp(45000, 80, "S")
    assert seg.send("tap1", syn) == {"tap1": 0, "tap2": 0, "uplink": 1}


def test_vm_to_vm_on_one_host_is_policed() -> None:
    seg = Segment()
    seg.send("tap2", Ether(src=WEB2_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=WEB2_MAC, psrc=WEB2_IP, pdst=WEB1_IP))
    # the lab policy allows nothing between the two web servers but ping
    udp = Ether(src=WEB1_MAC, dst=WEB2_MAC) / IP(src=WEB1_IP, dst=WEB2_IP) / UDP(sport=1, dport=53)
    assert seg.send("tap1", udp) == {"tap1": 0, "tap2": 0, "uplink": 0}
    from scapy.layers.inet import ICMP

    ping = Ether(src=WEB1_MAC, dst=WEB2_MAC) / IP(src=WEB1_IP, dst=WEB2_IP) / ICMP(id=3)
    assert seg.send("tap1", ping) == {"tap1": 0, "tap2": 1, "uplink": 0}


def test_frame_for_the_port_it_came_from_is_not_sent_back() -> None:
    seg = Segment()
    seg.send("tap1", Ether(src=WEB1_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(hwsrc=WEB1_MAC, psrc=WEB1_IP, pdst=SRV_IP))
    hairpin = Ether(src=WEB2_MAC, dst=WEB1_MAC) / ARP(op=2, hwsrc=WEB2_MAC, psrc=WEB2_IP, pdst=WEB1_IP)
    assert seg.send("tap1", hairpin) == {"tap1": 0, "tap2": 0, "uplink": 0}
    assert seg.engine.stats()["drops"]["hairpin"] == 1
