"""Threat inspection on memory-port engines: a policy whose web rule inspects with a profile, signature sets
written for the test, and a TCP connection web-01 -> server driven segment by segment."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ngfw.compiler.policy import load_policy
from ngfw.dataplane.threats import load_signature_sets
from tests.support.fastpath import Wire, fp, srv_to_web1, tcp, web1_to_srv
from tests.support.policies import lab_resources

RULES = r"""
alert http any any -> any any (msg:"admin page"; flow:established,to_server; http.uri; content:"/admin"; sid:1001; rev:2; classtype:web-application-attack;)
drop tcp any any -> any any (msg:"exploit string"; flow:to_server; content:"EVIL-PAYLOAD-XYZ"; sid:1002; rev:1;)
reject tcp any any -> any any (msg:"shell upload"; flow:to_server; content:"cmd.exe"; nocase; sid:1003; rev:1;)
alert tcp any any -> any any (msg:"anchored"; content:"HELLO"; offset:0; depth:5; sid:1004; rev:1;)
alert tcp any any -> any any (msg:"response leak"; flow:to_client; content:"SECRET-TOKEN"; sid:1005; rev:1;)
alert http any any -> any any (msg:"curl"; http.user_agent; content:"curl/"; startswith; http.method; content:"POST"; sid:1006; rev:1;)
alert http any any -> any any (msg:"pcre backref"; http.uri; content:"/dup/"; pcre:"/\/dup\/(\w+)\/\1/"; sid:1007; rev:1;)
"""


def write_policy(tmp_path: Path, inspect: str = "default", profiles: str = "", rule_extra: str = "") -> object:
    body = (
        lab_resources()
        + textwrap.dedent(profiles)
        + textwrap.dedent(f"""
        ---
        apiVersion: ngfw/v1
        kind: SecurityPolicy
        metadata: {{name: main, vsys: tenant-a}}
        spec:
          rules:
            - {{name: inspected-http, from: [group:web], to: [any], services: [tcp/80], action: allow, inspect: {inspect}{rule_extra}}}
            - {{name: plain-8080, from: [group:web], to: [any], services: [tcp/8080], action: allow}}
        """)
    )
    (tmp_path / "policy.yaml").write_text(body)
    return load_policy(tmp_path / "policy.yaml")


def rule_sets(tmp_path: Path, **sets: str) -> object:
    sources = []
    for name, text in sets.items():
        (tmp_path / f"{name}.rules").write_text(textwrap.dedent(text).strip() + "\n")
        sources.append((name, str(tmp_path / f"{name}.rules")))
    return load_signature_sets(sources)


class InspectWire(Wire):
    def __init__(self, policy, signatures) -> None:
        self.signatures = signatures
        super().__init__(policy)

    def load(self, policy) -> None:
        self.engine.set_tables(fp.Tables(policy, {"vm": self.vm, "up": self.up}, self.signatures.inspect))

    def alerts(self) -> list[dict]:
        return [e for e in self.engine.drain_events() if e["event"] == "alert"]


def wire(tmp_path: Path, rules: str = RULES, **policy_args: str) -> InspectWire:
    return InspectWire(write_policy(tmp_path, **policy_args), rule_sets(tmp_path, default=rules))


def handshake(w: Wire, sport: int, dport: int = 80) -> tuple[int, int]:
    """Open a TCP connection web-01 -> server; returns the next client and server sequence numbers."""
    assert w.from_vm(web1_to_srv(tcp(sport, dport, "S", seq=100)))[0]
    assert w.from_up(srv_to_web1(tcp(dport, sport, "SA", seq=500, ack=101)))[0]
    assert w.from_vm(web1_to_srv(tcp(sport, dport, "A", seq=101, ack=501)))[0]
    return 101, 501


def send(w: Wire, sport: int, seq: int, payload: bytes, dport: int = 80) -> tuple[list[bytes], list[bytes]]:
    return w.from_vm(web1_to_srv(tcp(sport, dport, "PA", seq=seq, ack=501, payload=payload)))


def sids(alerts: list[dict]) -> list[int]:
    return [a["signature"].sid for a in alerts]
