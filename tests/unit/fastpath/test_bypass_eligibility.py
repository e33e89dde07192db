"""Which flows may leave the packet loop for the kernel (flow bypass, bypass.pxi `bypass_check`), with frames
through an engine on two memory ports (no root, no BPF): the decision is judged as if the ports carried the
wire program, and `Engine.flows()` says it per flow (`bypass`: "eligible" or why not; `bypass_ways`: what each
direction's entry would forward)."""

from __future__ import annotations

from pathlib import Path

from tests.support.fastpath import ICMP, UDP, Wire, fp, lab_policy, srv_to_web1, tcp, web1_to_srv
from tests.support.inspection import handshake, send, wire
from tests.support.policies import lab_with_rules

SHALLOW = """
    ---
    apiVersion: ngfw/v1
    kind: ThreatProfile
    metadata: {name: shallow, vsys: tenant-a}
    spec: {depth: 100}
    """
REQUEST = b"GET / HTTP/1.1\r\nHost: srv\r\nUser-Agent: test\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n"


def state(w: Wire, sport: int) -> tuple[str, tuple]:
    [flow] = [f for f in w.engine.flows() if sport in (f["src_port"], f["dest_port"])]
    return flow["bypass"], flow["bypass_ways"]


def test_an_uninspected_connection_is_eligible_both_ways_once_established_and_its_app_known(tmp_path: Path) -> None:
    w = wire(tmp_path)
    assert w.from_vm(web1_to_srv(tcp(41100, 8080, "S", seq=100)))[0]
    assert state(w, 41100)[0] == "tcp_state"  # the handshake is the loop's
    assert w.from_up(srv_to_web1(tcp(8080, 41100, "SA", seq=500, ack=101)))[0]
    assert w.from_vm(web1_to_srv(tcp(41100, 8080, "A", seq=101, ack=501)))[0]
    assert state(w, 41100)[0] == "app_pending"  # established, application not known yet
    send(w, 41100, 101, REQUEST, dport=8080)
    assert w.from_up(srv_to_web1(tcp(8080, 41100, "PA", seq=501, ack=101 + len(REQUEST), payload=RESPONSE)))[0]
    assert state(w, 41100) == ("eligible", ("all", "all"))
    # a FIN takes it back: the loop follows the close and ends the flow
    assert w.from_vm(web1_to_srv(tcp(41100, 8080, "FA", seq=101 + len(REQUEST), ack=501 + len(RESPONSE))))[0]
    assert state(w, 41100)[0] == "tcp_state"


def test_an_inspected_direction_is_bypassed_whole_only_past_its_depth(tmp_path: Path) -> None:
    w = wire(tmp_path, inspect="shallow", profiles=SHALLOW)
    seq, _ = handshake(w, 41101)
    send(w, 41101, seq, REQUEST)
    assert w.from_up(srv_to_web1(tcp(80, 41101, "PA", seq=501, ack=seq + len(REQUEST), payload=RESPONSE)))[0]
    assert state(w, 41101)[0] == "inspecting"  # neither direction has reached its 100 bytes
    # the response goes past the depth: that direction is the kernel's, the request direction's empty
    # segments (ACKs) too, while its payload is still inspected
    assert w.from_up(
        srv_to_web1(tcp(80, 41101, "A", seq=501 + len(RESPONSE), ack=seq + len(REQUEST), payload=b"x" * 200))
    )[0]
    assert w.engine.inspect_stats()["depth_reached"] == 1
    assert state(w, 41101) == ("eligible", ("empty", "all"))
    send(w, 41101, seq + len(REQUEST), b"y" * 100)  # the request direction past its depth too
    assert state(w, 41101) == ("eligible", ("all", "all"))


def test_an_inspected_connection_with_header_rules_for_every_segment_stays_in_the_loop(tmp_path: Path) -> None:
    # a rule without content may match any segment, payload or not: nothing of the flow may skip the loop
    w = wire(
        tmp_path,
        rules='alert tcp any any -> any any (msg:"any ack"; flags:A; sid:7001; rev:1;)\n',
        inspect="shallow",
        profiles=SHALLOW,
    )
    seq, _ = handshake(w, 41102)
    send(w, 41102, seq, REQUEST)
    assert w.from_up(srv_to_web1(tcp(80, 41102, "PA", seq=501, ack=seq + len(REQUEST), payload=RESPONSE)))[0]
    send(w, 41102, seq + len(REQUEST), b"z" * 100)
    assert w.engine.inspect_stats()["depth_reached"] == 1
    assert state(w, 41102)[0] == "inspecting"


def test_denied_flows_inspected_udp_and_icmp_are_not_eligible(tmp_path: Path) -> None:
    w = wire(tmp_path, inspect="shallow", profiles=SHALLOW)
    assert not w.from_vm(web1_to_srv(tcp(41103, 9999, "S", seq=100)))[0]  # no rule allows tcp/9999
    assert state(w, 41103)[0] == "verdict"
    w.from_vm(web1_to_srv(ICMP(type=8, id=77, seq=1)))
    icmp = [f for f in w.engine.flows() if f["proto"] == 1]
    assert icmp and icmp[0]["bypass"] in ("protocol", "verdict")
    w.from_vm(web1_to_srv(UDP(sport=5353, dport=80) / (b"q" * 200)))
    udp = [f for f in w.engine.flows() if f["proto"] == 17]
    assert udp and udp[0]["bypass"] in ("verdict", "inspecting", "app_pending")


def test_a_flow_decided_again_by_a_policy_that_denies_it_is_not_eligible(tmp_path: Path) -> None:
    w = wire(tmp_path)
    assert w.from_vm(web1_to_srv(tcp(41104, 8080, "S", seq=100)))[0]
    assert w.from_up(srv_to_web1(tcp(8080, 41104, "SA", seq=500, ack=101)))[0]
    assert w.from_vm(web1_to_srv(tcp(41104, 8080, "A", seq=101, ack=501)))[0]
    send(w, 41104, 101, REQUEST, dport=8080)
    w.from_up(srv_to_web1(tcp(8080, 41104, "PA", seq=501, ack=101 + len(REQUEST), payload=RESPONSE)))
    assert state(w, 41104)[0] == "eligible"

    w.engine.set_tables(
        fp.Tables(_without_8080(tmp_path), {"vm": w.vm, "up": w.up}, w.signatures.inspect, generation=2)
    )
    assert not w.from_vm(
        web1_to_srv(tcp(41104, 8080, "A", seq=101 + len(REQUEST), ack=501 + len(RESPONSE), payload=b"more"))
    )[0]
    assert state(w, 41104)[0] == "verdict"


def _without_8080(tmp_path: Path):
    return lab_with_rules(
        tmp_path,
        "- {name: only-http, from: [group:web], to: [any], services: [tcp/80], action: allow}",
        name="deny.yaml",
    )


def test_a_replay_engine_bypasses_nothing() -> None:
    engine = fp.Engine(flow_capacity=64, replay=True)
    vm = engine.add_memory_port("vm", 0)
    up = engine.add_memory_port("up", 0)
    engine.set_tables(fp.Tables(lab_policy(), {"vm": vm, "up": up}))
    engine.inject(vm, bytes(web1_to_srv(UDP(sport=5000, dport=53) / (b"x" * 40))))
    assert [f["bypass"] for f in engine.flows()] == ["replay"]
