"""EVE-shaped JSON lines (Suricata's log format) for flow and drop events, plus ngfw's identity fields.

The fastpath reports numeric identities; this module names them with the policy generation
that decided the flow, so a record stays right after a reload renumbered workloads or rules.
"""

from __future__ import annotations

import functools
import os

from ngfw.dataplane.appnames import split_app
from ngfw.wire import EVE_PROTO_NAMES

TYPE_CHECKING = False
if TYPE_CHECKING:   # `ngfw replay` imports this module: what only annotations need stays out of its start
    from collections.abc import Callable
    from typing import IO, Any

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
    if sig is None:   # the rule set was replaced long ago; the numbers are all that is left
        return {"signature_id": None, "gid": None, "rev": None, "signature": None, "category": None,
                "severity": None, "action": "blocked" if event["blocked"] else "allowed"}
    return {"action": "blocked" if event["blocked"] else "allowed", "gid": sig.gid, "signature_id": sig.sid,
            "rev": sig.rev, "signature": sig.msg, "category": sig.category, "severity": sig.severity}


def eve_record(event: dict[str, Any], policy: CompiledPolicy | None) -> dict[str, Any]:
    """One EVE record for a fastpath event (`Engine.drain_events` / `Engine.flows` shape)."""
    def wl(index: int) -> str | None:
        return policy.workload_name(index) or None if policy is not None and index >= 0 else None

    rule_index = event["rule"]
    if event["vsys"] < 0:
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
        "flow_id": event["flow_id"],
        "in_iface": event["in_port"],
        "event_type": event["event"],
        "src_ip": event[f"{src}_ip"],
        "src_port": event[f"{src}_port"],
        "dest_ip": event[f"{dst}_ip"],
        "dest_port": event[f"{dst}_port"],
        "proto": proto,
    }
    if event.get("vlan"):
        record["vlan"] = [event["vlan"]]
    record.update({
        "vsys": policy.vsys_name(event["vsys"]) or None if policy is not None else None,
        "src_vm": wl(event["src_wl" if src == "src" else "dst_wl"]),
        "dest_vm": wl(event["dst_wl" if src == "src" else "src_wl"]),
        "rule": rule,
        "action": event["action"],
        # table generations outnumber versions (an identity update keeps the version)
        "policy_version": policy.version if policy is not None else event["generation"],
    })
    if event.get("user_name"):
        record["src_user"] = event["user_name"]
        via = (event.get("user_via") or (0, 0))[0]
        if via and policy is not None and 0 <= rule_index < len(policy.rules):
            users = policy.rules[rule_index].users
            if via <= len(users):
                record["src_user_match"] = users[via - 1]   # the `users:` item that decided: group:finance
    if event.get("app_proto"):
        record["app_proto"], record["app"] = split_app(policy.catalogue if policy else None, event["app_proto"])
        record["app_confidence"] = event.get("app_confidence")
    if event.get("app_host"):
        record["app_host"] = event["app_host"]
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
            "action": "pass" if event["action"] == "allow" else "drop",
        }
        if proto == "TCP":
            record["tcp"] = {"state": event["tcp_state"]}
    elif event["event"] == "alert":
        record["alert"] = alert_fields(event)
    else:
        record["drop"] = {"reason": event["drop_reason"]}
    return record


class EveWriter:
    """Appends EVE lines to a file; `reopen()` follows log rotation (the dataplane calls it on SIGHUP)."""

    def __init__(self, path: str) -> None:
        self.path = path
        import threading

        self._lock = threading.Lock()
        self._file: IO[str] = self._open()
        self.written = 0

    def _open(self) -> IO[str]:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        return open(self.path, "a", encoding="utf-8", buffering=1)

    def write_events(self, events: list[dict[str, Any]], policy_for: Callable[[int], CompiledPolicy | None]) -> None:
        if not events:
            return
        import orjson

        lines = [orjson.dumps(eve_record(e, policy_for(e["generation"]))) for e in events]
        with self._lock:
            self._file.write(b"\n".join(lines).decode("utf-8") + "\n")
            self.written += len(lines)

    def write_record(self, record: dict[str, Any]) -> None:
        """One record that is not a fastpath event (a migration, ...), already in EVE's shape."""
        import orjson

        line = orjson.dumps(record).decode("utf-8")
        with self._lock:
            self._file.write(line + "\n")
            self.written += 1

    def reopen(self) -> None:
        with self._lock:
            self._file.close()
            self._file = self._open()

    def close(self) -> None:
        with self._lock:
            self._file.close()
