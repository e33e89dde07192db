"""Numbers the wire defines: IP protocol numbers, EtherTypes, and the names logs and filters give them.

A leaf module (it imports nothing of ngfw) so that the model, the compiler, EVE, the session view and the
reference decoder share one definition without leaning on each other. The fastpath's C code keeps its own
enum (`P_TCP`, ... in defs.pxi): Cython needs them at compile time.
"""

from __future__ import annotations

# IP protocol numbers (IANA "Assigned Internet Protocol Numbers")
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47
PROTO_ESP = 50
PROTO_ICMPV6 = 58
PROTO_SCTP = 132
# In a compiled Service, 0 means "every protocol"; on the wire 0 is IPv6's hop-by-hop header (below).
PROTO_ANY = 0

# IPv6 extension headers (RFC 8200, RFC 4302): next-header values the decoder walks past
PROTO_HOPOPTS = 0
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_AH = 51
PROTO_DSTOPTS = 60

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_ARP = 0x0806
ETHERTYPE_RARP = 0x8035  # ARP's shape; hypervisors announce a migrated guest's MAC with it
ETHERTYPE_NSH = 0x894F
ETHERTYPE_IPV6 = 0x86DD

# EVE's `proto` field, spelled as Suricata spells it; other numbers are written as digits
EVE_PROTO_NAMES: dict[int, str] = {PROTO_ICMP: "ICMP", PROTO_TCP: "TCP", PROTO_UDP: "UDP", PROTO_ICMPV6: "IPv6-ICMP"}

# the names a policy's `services:` entries use (`tcp/443`, `icmp6`)
SERVICE_PROTOCOLS: dict[str, int] = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP, "icmp6": PROTO_ICMPV6}

# the names a session filter's `proto=` accepts; the first name of a number is the one written back
FILTER_PROTOCOLS: dict[str, int] = {
    "tcp": PROTO_TCP,
    "udp": PROTO_UDP,
    "icmp": PROTO_ICMP,
    "icmpv6": PROTO_ICMPV6,
    "ipv6-icmp": PROTO_ICMPV6,
    "sctp": PROTO_SCTP,
    "gre": PROTO_GRE,
    "esp": PROTO_ESP,
}
