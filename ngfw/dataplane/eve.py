"""EVE-shaped JSON lines (Suricata's log format) for flow, drop, alert and stats events, plus ngfw's
identity fields. docs/eve-schema.json is the contract; tests validate every record they produce against it.

The fastpath reports numeric identities; this module names them with the policy generation
that decided the flow, so a record stays right after a reload renumbered workloads or rules.
Where Suricata has a field (`community_id`, `flow.state`, `tcp.tcp_flags`, `tls.sni`, `alert.metadata`,
`host`, ...) it has Suricata's name and shape.
"""

from __future__ import annotations

import functools

from ngfw.dataplane.appnames import split_app
from ngfw.wire import EVE_PROTO_NAMES

TYPE_CHECKING = False
if TYPE_CHECKING:  # `ngfw replay` imports this module: what only annotations need stays out of its start
    from collections.abc import Callable
    from typing import Any

    from ngfw.compiler.tables import CompiledPolicy

DEFAULT_RULE = "default-deny"


def eve_timestamp(epoch: float) -> str:
    """Suricata's timestamp shape: 2026-11-26T15:04:05.123456+0000."""
    micros = round(epoch * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_second(seconds)}.{fraction:06d}+0000"


@functools.lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    # records come in bursts from the same seconds: strftime once per second, not once per record
    import datetime as dt

    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def alert_fields(event: dict[str, Any]) -> dict[str, Any]:
    """EVE's `alert` object for an alert event (Suricata's field names and values)."""
    sig = event["signature"]
    if sig is None:  # the rule set was replaced long ago; the numbers are all that is left
        return {
            "signature_id": None,
            "gid": None,
            "rev": None,
            "signature": None,
            "category": None,
            "severity": None,
            "action": "blocked" if event["blocked"] else "allowed",
        }
    fields = {
        "action": "blocked" if event["blocked"] else "allowed",
        "gid": sig.gid,
        "signature_id": sig.sid,
        "rev": sig.rev,
        "signature": sig.msg,
        "category": sig.category,
        "severity": sig.severity,
    }
    metadata = getattr(sig, "metadata", ())
    if metadata:
        fields["metadata"] = rule_metadata(metadata)
    return fields


def rule_metadata(pairs: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """A rule's `metadata:` keyword as Suricata's alert.metadata: each key with its values, in rule order."""
    out: dict[str, list[str]] = {}
    for key, value in pairs:
        out.setdefault(key, []).append(value)
    return out


def tcp_flags_hex(flags: int) -> str:
    """Suricata's tcp_flags: the byte in two lower-case hex digits."""
    return f"{flags:02x}"


TCP_FLAG_NAMES = (
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ecn", 0x40),
    ("cwr", 0x80),
)


def tcp_fields(event: dict[str, Any]) -> dict[str, Any]:
    """EVE's `tcp` object of a flow: the flags seen (both ways, and each way) and the state."""
    ts, tc = event.get("tcp_flags_ts") or 0, event.get("tcp_flags_tc") or 0
    fields: dict[str, Any] = {
        "tcp_flags": tcp_flags_hex(ts | tc),
        "tcp_flags_ts": tcp_flags_hex(ts),
        "tcp_flags_tc": tcp_flags_hex(tc),
    }
    for name, bit in TCP_FLAG_NAMES:
        if (ts | tc) & bit:
            fields[name] = True
    fields["state"] = event["tcp_state"]
    return fields


def flow_state(event: dict[str, Any]) -> str:
    """Suricata's flow.state: new (no answer yet / handshake), established, closed (TCP ended)."""
    if event["proto"] == 6:
        state = event["tcp_state"]
        if state in ("closing", "closed"):
            return "closed"
        return "established" if state in ("established", "fin_wait") else "new"
    return "established" if event.get("pkts_toclient") else "new"


def app_layer_fields(app_proto: str | None, host: str | None) -> dict[str, Any]:
    """The host name the flow carried, where Suricata puts it for its protocol."""
    if not host or not app_proto:
        return {}
    if app_proto == "tls":
        return {"tls": {"sni": host}}
    if app_proto == "quic":
        return {"quic": {"sni": host}}
    if app_proto in ("http", "http2"):
        return {"http": {"hostname": host}}
    if app_proto == "dns":
        return {"dns": {"query": [{"type": "query", "rrname": host}]}}
    return {}


def eve_record(event: dict[str, Any], policy: CompiledPolicy | None) -> dict[str, Any]:
    """One EVE record for a fastpath event (`Engine.drain_events` / `Engine.flows` shape)."""

    def wl(index: int) -> str | None:
        return policy.workload_name(index) or None if policy is not None and index >= 0 else None

    rule_index = event["rule"]
    if event["vsys"] < 0 or event["flow_id"] is None:  # no vsys, or a frame refused before any rule saw it
        rule = None
    elif rule_index < 0:
        rule = DEFAULT_RULE
    else:
        rule = policy.rule_name(rule_index) if policy is not None else None
    proto = EVE_PROTO_NAMES.get(event["proto"], str(event["proto"]))
    # an alert names the packet's own source and destination (Suricata's habit)
    src, dst = ("dest", "src") if event.get("pkt_to_client") else ("src", "dest")
    record: dict[str, Any] = {
        "timestamp": eve_timestamp(event["start"] if event["event"] == "drop" else event["end"]),
    }
    if event["flow_id"] is not None:  # a drop of a frame that made no flow has none
        record["flow_id"] = event["flow_id"]
    record.update({"in_iface": event["in_port"], "event_type": event["event"]})
    if event.get("arp"):
        # an ARP frame's alert (Suricata 8's `arp` rules): no IP header, no flow; the MACs and the ARP fields
        record.update({"ether": event["ether"], "arp": event["arp"]})
    else:
        record.update(
            {
                "src_ip": event[f"{src}_ip"],
                "src_port": event[f"{src}_port"],
                "dest_ip": event[f"{dst}_ip"],
                "dest_port": event[f"{dst}_port"],
                "proto": proto,
                "community_id": event["community_id"],
            }
        )
    if event.get("icmp_type") is not None:
        record["icmp_type"], record["icmp_code"] = event["icmp_type"], event["icmp_code"]
    if event.get("vlan"):
        record["vlan"] = [event["vlan"]]
    record.update(
        {
            "vsys": policy.vsys_name(event["vsys"]) or None if policy is not None else None,
            "src_vm": wl(event["src_wl" if src == "src" else "dst_wl"]),
            "dest_vm": wl(event["dst_wl" if src == "src" else "src_wl"]),
            "rule": rule,
            "action": event["action"],
            # table generations outnumber versions (an identity update keeps the version)
            "policy_version": policy.version if policy is not None else event["generation"],
        }
    )
    if event.get("user_name"):
        record["src_user"] = event["user_name"]
        via = (event.get("user_via") or (0, 0))[0]
        if via and policy is not None and 0 <= rule_index < len(policy.rules):
            users = policy.rules[rule_index].users
            if via <= len(users):
                record["src_user_match"] = users[via - 1]  # the `users:` item that decided: group:finance
    if event.get("app_proto"):
        record["app_proto"], record["app"] = split_app(policy.catalogue if policy else None, event["app_proto"])
        record["app_confidence"] = event.get("app_confidence")
    if event.get("app_host"):
        record["app_host"] = event["app_host"]
        record.update(app_layer_fields(record.get("app_proto"), event["app_host"]))
    if event.get("ssh"):
        record["ssh"] = event["ssh"]  # Suricata's place for SSH software versions
    if event["event"] == "flow":
        record["flow"] = {
            "pkts_toserver": event["pkts_toserver"],
            "pkts_toclient": event["pkts_toclient"],
            "bytes_toserver": event["bytes_toserver"],
            "bytes_toclient": event["bytes_toclient"],
            "start": eve_timestamp(event["start"]),
            "end": eve_timestamp(event["end"]),
            "age": int(round(event["end"] - event["start"])),
            "reason": event["end_reason"],
            "state": flow_state(event),
            "alerted": bool(event.get("alerted")),
            "action": "pass" if event["action"] == "allow" else "drop",
        }
        if proto == "TCP":
            record["tcp"] = tcp_fields(event)
    elif event["event"] == "alert":
        record["alert"] = alert_fields(event)
    else:
        record["drop"] = {"reason": event["drop_reason"]}
        if event.get("suppressed"):
            # drops of frames that made no flow are rate-limited: this record stands for these too
            record["drop"]["suppressed"] = event["suppressed"]
        if proto == "TCP":
            record["tcp"] = tcp_fields(event)
            if event["flow_id"] is None:
                del record["tcp"]["state"]  # a frame that made no flow has no connection state
    return record


def stats_record(stats: dict[str, Any], uptime: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Suricata's `stats` event from the engine's counters (`Engine.stats()`), grouped as Suricata groups them."""
    import time

    ports = stats.get("ports", [])
    inspect = stats.get("inspect", {})
    alerts = sum(inspect.get("alerts", {}).values())
    drops = {k: v for k, v in stats.get("drops", {}).items() if v}
    out: dict[str, Any] = {
        "uptime": int(uptime),
        "capture": {
            "kernel_packets": sum(p["rx_packets"] for p in ports),
            "kernel_drops": sum(p["kernel_drops"] for p in ports),
        },
        "decoder": {"pkts": sum(p["rx_packets"] for p in ports), "bytes": sum(p["rx_bytes"] for p in ports)},
        "flow": {
            "active": stats.get("flows_active", 0),
            "total": stats.get("flows_created", 0),
            "expired": stats.get("flows_expired", 0),
            "cut": stats.get("flows_cut", 0),
            "early_dropped": stats.get("flows_early_dropped", 0),
            "insert_failures": stats.get("flow_insert_failures", 0),
        },
        "detect": {
            "alert": alerts,
            "flows_inspected": inspect.get("flows_inspected", 0),
            "flows_blocked": inspect.get("flows_blocked", 0),
            "bytes_inspected": inspect.get("bytes_inspected", 0),
        },
        "drop": {
            "total": sum(drops.values()),
            "reasons": drops,
            "events_suppressed": stats.get("drop_events_suppressed", 0),
        },
        "app_layer": {"flow": {}},
        "ports": {
            p["name"]: {
                "rx_packets": p["rx_packets"],
                "rx_bytes": p["rx_bytes"],
                "tx_packets": p["tx_packets"],
                "tx_bytes": p["tx_bytes"],
                "tx_errors": p["tx_errors"],
                "kernel_drops": p["kernel_drops"],
            }
            for p in ports
        },
        "eve": {"events_lost": stats.get("events_lost", 0)},
        "capture_ring": {"frames": stats.get("capture_frames", 0), "lost": stats.get("capture_lost", 0)},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key].update(value)
        else:
            out[key] = value
    return {"timestamp": eve_timestamp(time.time()), "event_type": "stats", "stats": out}


class EveWriter:
    """Writes EVE lines to every output (`--eve`, repeatable: a file, syslog, a unix socket) with the sensor's
    `host` name in each record and, for flows that are captured, the capture file (`capture.file`);
    `reopen()` follows log rotation (the dataplane calls it on SIGHUP)."""

    def __init__(
        self,
        targets: str | list[str],
        host: str | None = None,
        capture_file_of: Callable[[int], str | None] | None = None,
    ) -> None:
        import socket

        from ngfw.dataplane.eve_outputs import open_output, parse_target

        texts = [targets] if isinstance(targets, str) else list(targets)
        self.host = host or socket.gethostname()
        parsed = [parse_target(t) for t in texts]  # every target checked before any is opened
        self.outputs = []
        try:
            for target in parsed:
                self.outputs.append(open_output(target, self.host))
        except BaseException:
            self.close()
            raise
        self.capture_file_of = capture_file_of
        self.written = 0

    @property
    def path(self) -> str | None:
        """The first file output's path (None: no file)."""
        return next((o.target.path for o in self.outputs if o.target.kind == "file"), None)

    def record(self, event: dict[str, Any], policy: CompiledPolicy | None) -> dict[str, Any]:
        record = eve_record(event, policy)
        record["host"] = self.host
        if event.get("capture") and self.capture_file_of is not None and event.get("flow_id") is not None:
            path = self.capture_file_of(event["flow_id"])
            if path:
                record["capture"] = {"file": path}
        return record

    def write_events(self, events: list[dict[str, Any]], policy_for: Callable[[int], CompiledPolicy | None]) -> None:
        if not events:
            return
        import orjson

        self._write([orjson.dumps(self.record(e, policy_for(e["generation"]))) for e in events])

    def write_record(self, record: dict[str, Any]) -> None:
        """One record that is not a fastpath event (a migration, stats, ...), already in EVE's shape."""
        import orjson

        if "host" not in record:
            record = {**record, "host": self.host}
        self._write([orjson.dumps(record)])

    def _write(self, lines: list[bytes]) -> None:
        for output in self.outputs:
            output.write(lines)
        self.written += len(lines)

    def counters(self) -> dict[str, dict[str, int]]:
        """Per output label: lines written, dropped (queue full, unreachable) and send errors."""
        return {o.target.label: {"written": o.written, "dropped": o.dropped, "errors": o.errors} for o in self.outputs}

    def reopen(self) -> None:
        for output in self.outputs:
            output.reopen()

    def close(self) -> None:
        for output in self.outputs:
            output.close()
