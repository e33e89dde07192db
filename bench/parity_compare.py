"""Alerts of two engines compared per (capture, flow, sid), both ways.

A flow is the unordered pair of endpoints plus the transport: Suricata logs an alert with the
direction of the packet that raised it, ngfw may log the same alert the other way round, and both
are the same (flow, sid) pair. Several alerts of one sid on one flow count once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# by number, as Suricata's EVE names them (upper-cased): ngfw's EVE writes other protocols' numbers
IP_PROTOCOLS = {1: "ICMP", 4: "IP-IN-IP", 6: "TCP", 17: "UDP", 41: "IPV6", 58: "ICMP", 132: "SCTP", 47: "GRE"}
PORTLESS = {"ICMP", "GRE", "ARP"}  # Suricata logs ICMP type/code, not ports: compare those flows by address only


def _proto(value: Any) -> str:
    if isinstance(value, int):
        return IP_PROTOCOLS.get(value, str(value))
    text = str(value or "").upper()
    if text in ("IPV6-ICMP", "ICMPV6", "ICMPV4", "ICMP6"):
        return "ICMP"
    if text.isdigit():
        return IP_PROTOCOLS.get(int(text), text)
    return text


def _ip(value: Any) -> str:
    """One spelling per address: Suricata writes IPv6 in full ("fd00:0001:..."), others compress it."""
    try:
        return ipaddress.ip_address(str(value)).compressed
    except ValueError:
        return str(value)


@dataclass(frozen=True, order=True)
class Flow:
    proto: str
    a: tuple[str, int]  # the lower endpoint
    b: tuple[str, int]

    @classmethod
    def of(cls, src_ip: Any, src_port: Any, dest_ip: Any, dest_port: Any, proto: Any) -> Flow:
        p = _proto(proto)
        sp, dp = (0, 0) if p in PORTLESS else (int(src_port or 0), int(dest_port or 0))
        one, two = (_ip(src_ip), sp), (_ip(dest_ip), dp)
        return cls(p, *sorted((one, two), key=_endpoint_order))

    def __str__(self) -> str:
        return f"{self.proto} {_endpoint(self.a)} <-> {_endpoint(self.b)}"


def _endpoint_order(e: tuple[str, int]) -> tuple[int, int, int]:
    try:
        addr = ipaddress.ip_address(e[0])
        return (addr.version, int(addr), e[1])
    except ValueError:
        return (0, 0, e[1])


def _endpoint(e: tuple[str, int]) -> str:
    host = f"[{e[0]}]" if ":" in e[0] else e[0]
    return f"{host}:{e[1]}" if e[1] else host


@dataclass(frozen=True)
class Alert:
    """One alert, reduced to what the comparison needs: where (capture, flow), which rule, its message."""

    capture: str
    flow: Flow
    sid: int
    gid: int = 1
    msg: str = ""

    @property
    def key(self) -> tuple[str, Flow, int]:
        return (self.capture, self.flow, self.sid)


def alert_from_eve(record: Mapping[str, Any], capture: str) -> Alert | None:
    """An EVE `alert` record (Suricata's, or ngfw's with the same fields) as an Alert; None for other records."""
    if record.get("event_type") != "alert":
        return None
    alert = record.get("alert") or {}
    if "arp" in record:  # an ARP frame's alert (Suricata 8's `arp` rules): the sender and target addresses
        arp = record["arp"]
        flow = Flow.of(arp.get("src_ip"), 0, arp.get("dest_ip"), 0, "ARP")
    else:
        flow = Flow.of(record.get("src_ip"), record.get("src_port"), record.get("dest_ip"), record.get("dest_port"),
                       record.get("proto"))  # fmt: skip
    return Alert(capture, flow, int(alert["signature_id"]), int(alert.get("gid", 1)), str(alert.get("signature", "")))


def alert_from_expected(record: Mapping[str, Any], capture: str) -> Alert:
    """A line of a suricata-verify case's expected.jsonl: the flat form with `signature_id` at the top."""
    flow = Flow.of(record.get("src_ip"), record.get("src_port"), record.get("dest_ip"), record.get("dest_port"),
                   record.get("proto"))  # fmt: skip
    return Alert(capture, flow, int(record["signature_id"]), int(record.get("gid", 1)), str(record.get("msg", "")))


@dataclass(frozen=True)
class Difference:
    capture: str
    flow: Flow
    sid: int
    msg: str
    only: str  # "suricata" or "ngfw": the side that raised it

    def as_dict(self) -> dict[str, Any]:
        return {"capture": self.capture, "flow": str(self.flow), "sid": self.sid, "msg": self.msg, "only": self.only}


def _ratio(matched: int, total: int) -> float:
    return 1.0 if total == 0 else matched / total


@dataclass
class Comparison:
    """Suricata's (flow, sid) pairs against ngfw's, per capture and in total."""

    suricata: dict[tuple[str, Flow, int], Alert] = field(default_factory=dict)
    ngfw: dict[tuple[str, Flow, int], Alert] = field(default_factory=dict)

    def add(self, suricata: Iterable[Alert] = (), ngfw: Iterable[Alert] = ()) -> Comparison:
        for a in suricata:
            self.suricata.setdefault(a.key, a)
        for a in ngfw:
            self.ngfw.setdefault(a.key, a)
        return self

    @property
    def matched(self) -> int:
        return len(self.suricata.keys() & self.ngfw.keys())

    @property
    def agreement_of_suricata(self) -> float:
        """Share of Suricata's pairs that ngfw raised too (1.0 when Suricata raised none)."""
        return _ratio(self.matched, len(self.suricata))

    @property
    def agreement_of_ngfw(self) -> float:
        """Share of ngfw's pairs that Suricata raised too (1.0 when ngfw raised none)."""
        return _ratio(self.matched, len(self.ngfw))

    @property
    def exact(self) -> bool:
        return self.suricata.keys() == self.ngfw.keys()

    def differences(self) -> list[Difference]:
        out = [Difference(a.capture, a.flow, a.sid, a.msg, "suricata")
               for k, a in self.suricata.items() if k not in self.ngfw]  # fmt: skip
        out += [Difference(a.capture, a.flow, a.sid, a.msg or self._msg(a.sid), "ngfw")
                for k, a in self.ngfw.items() if k not in self.suricata]  # fmt: skip
        return sorted(out, key=lambda d: (d.capture, d.flow, d.sid, d.only))

    def _msg(self, sid: int) -> str:
        return next((a.msg for a in self.suricata.values() if a.sid == sid and a.msg), "")

    def by_capture(self) -> dict[str, Comparison]:
        groups: dict[str, Comparison] = {}
        for side in ("suricata", "ngfw"):
            for key, a in getattr(self, side).items():
                getattr(groups.setdefault(a.capture, Comparison()), side)[key] = a
        return dict(sorted(groups.items()))

    def summary(self) -> dict[str, Any]:
        return {
            "pairs": {"suricata": len(self.suricata), "ngfw": len(self.ngfw), "matched": self.matched},
            "agreement": {"of_suricata": round(self.agreement_of_suricata, 4),
                          "of_ngfw": round(self.agreement_of_ngfw, 4)},
        }  # fmt: skip
