"""ngfw.wire: the one definition of protocol numbers agrees with the kernel's, and every layer uses it."""

from __future__ import annotations

import socket

from ngfw import wire
from ngfw.model import syntax


def test_protocol_numbers_are_the_kernels() -> None:
    assert (wire.PROTO_ICMP, wire.PROTO_TCP, wire.PROTO_UDP, wire.PROTO_ICMPV6) == (
        socket.IPPROTO_ICMP,
        socket.IPPROTO_TCP,
        socket.IPPROTO_UDP,
        socket.IPPROTO_ICMPV6,
    )
    assert (wire.PROTO_HOPOPTS, wire.PROTO_ROUTING, wire.PROTO_FRAGMENT, wire.PROTO_AH, wire.PROTO_DSTOPTS) == (
        socket.IPPROTO_HOPOPTS,
        socket.IPPROTO_ROUTING,
        socket.IPPROTO_FRAGMENT,
        socket.IPPROTO_AH,
        socket.IPPROTO_DSTOPTS,
    )
    assert (wire.PROTO_GRE, wire.PROTO_ESP, wire.PROTO_SCTP) == (
        socket.IPPROTO_GRE,
        socket.IPPROTO_ESP,
        socket.IPPROTO_SCTP,
    )


def test_a_policy_service_names_the_protocol_number_the_fastpath_matches() -> None:
    assert syntax.parse_service(syntax.check_service("tcp/443")).proto == wire.PROTO_TCP
    assert syntax.parse_service(syntax.check_service("icmp6")).proto == wire.PROTO_ICMPV6
    assert syntax.parse_service("any").proto == wire.PROTO_ANY


def test_wire_is_a_leaf() -> None:
    # the model, the compiler and EVE import it; it must import none of them
    source = open(wire.__file__, encoding="utf-8").read()
    assert "import ngfw" not in source and "from ngfw" not in source


def test_the_app_registry_copy_agrees() -> None:
    # setup.py loads app_registry.py on its own, so it spells the two numbers out
    from ngfw._fastpath import app_registry

    assert app_registry.L4 == {"tcp": wire.PROTO_TCP, "udp": wire.PROTO_UDP}
