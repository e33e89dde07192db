"""Hostile payloads through an inspected flow: the parsers that cut buffers (HTTP/1, HTTP/2 HPACK, TLS
certificates, DNS, SSH) and the matcher must never crash, hang or read past what they were given.

Every payload is built on a prefix that steers it into one parser, then mutated; the engine forwards or
drops each segment, and a clean request afterwards is still inspected (the engine is intact).
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fastpath import srv_to_web1, tcp
from tests.support.inspection import InspectWire, handshake, rule_sets, send, sids, write_policy

RULES = r"""
alert http any any -> any any (msg:"uri"; http.uri; content:"/x"; pcre:"/\/x(\d+)\/\1/"; sid:1;)
alert http any any -> any any (msg:"host"; http.host; content:"evil"; sid:2;)
alert tls any any -> any any (msg:"cert"; tls.cert_subject; content:"CN="; sid:3;)
alert tcp any any -> any any (msg:"payload"; content:"MAGIC"; distance:0; content:"END"; within:20; sid:4;)
alert http any any -> any any (msg:"ua"; http.user_agent; content:"bot"; nocase; sid:5;)
"""

PREFIXES = [
    b"GET /",
    b"POST /x1/1 HTTP/1.1\r\nHost: ",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x10\x01\x25\x00\x00\x00\x01",
    b"\x16\x03\x03\x01\x00\x02\x00\x00\x46\x03\x03",
    b"\x16\x03\x03\x40\x00\x0b\x00\x3f\xfc\x00\x3f\xf9",
    b"SSH-2.0-",
    b"MAGIC",
]

payloads = st.builds(lambda prefix, tail: prefix + tail, st.sampled_from(PREFIXES), st.binary(max_size=1400))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(client=st.lists(payloads, min_size=1, max_size=3), server=st.lists(payloads, max_size=3))
def test_hostile_payloads_never_break_the_engine(tmp_path_factory, client: list[bytes], server: list[bytes]) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    w = InspectWire(write_policy(tmp), rule_sets(tmp, default=RULES))
    seq, srv_seq = handshake(w, 42000)
    for data in client:
        send(w, 42000, seq, data)
        seq += len(data)
    for data in server:
        w.from_up(srv_to_web1(tcp(80, 42000, "PA", seq=srv_seq, ack=seq, payload=data)))
        srv_seq += len(data)
    w.alerts()
    # the engine still works: a new flow with a known-bad request alerts
    seq2, _ = handshake(w, 42001)
    send(w, 42001, seq2, b"GET /x7/7 HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    assert sorted(sids(w.alerts())) == [1, 2]
