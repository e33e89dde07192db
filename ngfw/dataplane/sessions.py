"""A running dataplane's live flows as an operator sees them (`ngfw sessions`): filtered, paged, cleared.

A filter is FIELD=VALUE words (`vm=web-01 port=443 app=tls`). `SessionFilter.parse` checks their syntax
(one sentence naming a bad field or value); `SessionTable` resolves names against the policies flows were
decided with and asks the fastpath for matching flows (`Engine.list_sessions`, `Engine.clear_sessions`,
ngfw/_fastpath/session_view.pxi). Every such request is served on the packet loop's thread between bursts and
looks at a bounded number of flow slots, so a page of a 250,000-flow table is many short requests, never one
stall; the filter runs in C, so only matching flows reach Python.

Records are named as EVE names a flow's end (ngfw.dataplane.eve): the same fields, plus what only a live flow
has (state, age, idle time, whether it is inspected, `bypass`: the kernel forwards it, flow bypass).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ngfw.dataplane.appnames import split_app
from ngfw.dataplane.eve import DEFAULT_RULE, eve_timestamp
from ngfw.wire import EVE_PROTO_NAMES, FILTER_PROTOCOLS, PROTO_TCP

log = logging.getLogger("ngfw.sessions")

# field -> what it matches, for `ngfw sessions --help` and errors
FILTER_FIELDS: dict[str, str] = {
    "vsys": "flows of this vsys: one of its workloads at an end, or decided by it",
    "vm": "flows of this workload at either end (NAME or VSYS/NAME)",
    "app": "flows of this application, or of one running over it (tls matches github)",
    "rule": "flows decided by this rule (egress or ingress; default-deny: the implicit one)",
    "src": "the client's address (IP or CIDR)",
    "dst": "the server's address (IP or CIDR)",
    "sport": "the client's port",
    "port": "the server's port",
    "dport": "the server's port (as port)",
    "proto": "tcp, udp, icmp, icmpv6 or a protocol number",
    "action": "allow, deny or reject",
    "state": "TCP state: syn_sent, syn_recv, established, fin_wait, closing, closed",
    "id": "the flow id (EVE's flow_id)",
    "user": "the user behind the client's address (User-ID): a name, known-user (any) or unknown (none)",
}
ACTIONS = ("allow", "deny", "reject")
USER_MODES = {"known-user": 2, "unknown": 3}  # session_view.pxi SV_USER_*; a name is 1 (SV_USER_IS)
TCP_STATES = ("none", "syn_sent", "syn_recv", "established", "fin_wait", "closing", "closed")
PAGE_DEFAULT = 500
PAGE_MAX = 5000
# flow slots one loop request looks at: ~16,000 slots are about a millisecond of the loop (bench/RESULTS.md)
SCAN_PER_REQUEST = 16384
CLEAR_PASSES = 3  # the table moves while it is cleared in steps: a pass that still finds flows is repeated


class FilterError(ValueError):
    """A filter that cannot be used; the message is one sentence naming the bad field or value."""


@dataclass(frozen=True)
class SessionFilter:
    """What a listing or a clear selects; every field None (or empty) matches every flow."""

    vsys: str | None = None
    vm: str | None = None
    app: str | None = None
    rule: str | None = None
    src: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    dst: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    sport: int | None = None
    dport: int | None = None
    proto: int | None = None
    action: str | None = None
    state: str | None = None
    flow_id: int | None = None
    user: str | None = None  # a canonical user name, known-user or unknown

    @classmethod
    def parse(cls, words: list[str] | Mapping[str, Any]) -> SessionFilter:
        """From FIELD=VALUE words (the CLI) or a {field: value} mapping (JSON); FilterError names what is wrong."""
        pairs: list[tuple[str, str]] = []
        if isinstance(words, Mapping):
            for key, value in words.items():
                if value is None or value == "":
                    continue
                if not isinstance(value, (str, int)) or isinstance(value, bool):
                    raise FilterError(f"filter field {key!r} must be a string, got {type(value).__name__}")
                pairs.append((str(key), str(value)))
        else:
            for word in words:
                key, sep, value = word.partition("=")
                if not sep or not key:
                    raise FilterError(
                        f"filter words are FIELD=VALUE (fields: {', '.join(FILTER_FIELDS)}), got {word!r}"
                    )
                pairs.append((key, value))
        values: dict[str, Any] = {}
        seen: set[str] = set()
        for key, value in pairs:
            name = key.strip().lower()
            if name not in FILTER_FIELDS:
                raise FilterError(f"unknown filter field {key!r} (fields: {', '.join(FILTER_FIELDS)})")
            if name in seen or (name in ("port", "dport") and ({"port", "dport"} & seen)):
                raise FilterError(f"filter field {name!r} is given twice")
            seen.add(name)
            value = value.strip()
            if not value:
                raise FilterError(f"filter field {name!r} has no value")
            attr, parsed = _parse_field(name, value)
            values[attr] = parsed
        return cls(**values)

    def as_dict(self) -> dict[str, str]:
        """The filter as {field: value} text: what travels to control and to other hosts (and is audited)."""
        out: dict[str, str] = {}
        for name in ("vsys", "vm", "app", "rule", "action", "state", "user"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        for name, attr in (("src", "src"), ("dst", "dst"), ("sport", "sport"), ("port", "dport"), ("id", "flow_id")):
            value = getattr(self, attr)
            if value is not None:
                out[name] = str(value)
        if self.proto is not None:
            names = {v: k for k, v in reversed(FILTER_PROTOCOLS.items())}
            out["proto"] = names.get(self.proto, str(self.proto))
        return out

    def words(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.as_dict().items()) or "(every flow)"

    @property
    def empty(self) -> bool:
        return not self.as_dict()

    def within(self, vsys: str) -> SessionFilter:
        """The same filter, restricted to `vsys` (a tenant admin's view); FilterError if it names another."""
        if self.vsys is not None and self.vsys != vsys:
            raise FilterError(f"vsys {self.vsys!r} is not yours (you administer {vsys!r})")
        if self.vm is not None and "/" in self.vm and self.vm.split("/", 1)[0] != vsys:
            raise FilterError(f"workload {self.vm!r} is not in your vsys {vsys!r}")
        from dataclasses import replace

        return replace(self, vsys=vsys)


def _parse_field(name: str, value: str) -> tuple[str, Any]:
    if name in ("vsys", "vm", "app", "rule"):
        return name, value
    if name == "user":
        if value.lower() in USER_MODES:
            return "user", value.lower()
        from ngfw.model.syntax import check_user_name

        try:
            return "user", check_user_name(value)
        except ValueError as exc:
            raise FilterError(f"user={value}: {exc} (or known-user, unknown)") from None
    if name in ("src", "dst"):
        try:
            return name, ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise FilterError(f"{name}={value}: {value!r} is not an IP address or network") from None
    if name in ("sport", "port", "dport"):
        if not value.isdigit() or not 0 <= int(value) <= 65535:
            raise FilterError(f"{name}={value}: a port is a number from 0 to 65535")
        return ("sport" if name == "sport" else "dport"), int(value)
    if name == "proto":
        number = FILTER_PROTOCOLS.get(value.lower())
        if number is None:
            if not value.isdigit() or not 0 < int(value) <= 255:
                raise FilterError(f"proto={value}: expected {', '.join(FILTER_PROTOCOLS)} or a number from 1 to 255")
            number = int(value)
        return "proto", number
    if name == "action":
        if value.lower() not in ACTIONS:
            raise FilterError(f"action={value}: expected {', '.join(ACTIONS)}")
        return "action", value.lower()
    if name == "state":
        if value.lower() not in TCP_STATES[1:]:
            raise FilterError(f"state={value}: expected one of {', '.join(TCP_STATES[1:])}")
        return "state", value.lower()
    if not value.isdigit() or not 0 < int(value) < 1 << 63:
        raise FilterError(f"id={value}: a flow id is a positive integer (EVE's flow_id)")
    return "flow_id", int(value)


@dataclass
class Page:
    sessions: list[dict[str, Any]]
    cursor: int  # where the next page starts; 0: there is no next page


@dataclass
class Cleared:
    cleared: int = 0
    resets: int = 0
    passes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"cleared": self.cleared, "resets": self.resets}


PolicySource = Callable[[], Mapping[int, Any]]  # table generation -> the CompiledPolicy it was built from


@dataclass
class SessionTable:
    """One engine's flows for operators. `policies` gives the policy of every generation flows may still be
    decided by (the running one last); `host` names the dataplane in records."""

    engine: Any
    policies: PolicySource
    host: str = ""
    scan: int = SCAN_PER_REQUEST
    user_name: Callable[[int], str | None] = lambda user: None  # a user principal's name (ngfw.dataplane.userid)
    _clear_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _name_cache: dict[int, PolicyNames] = field(default_factory=dict, repr=False)
    _names_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # ---- filters: names -> what the fastpath compares
    def compiled(self, flt: SessionFilter) -> dict[str, Any]:
        """The filter with names resolved (FilterError for a name this dataplane does not know)."""
        generations = dict(self.policies())
        tables = self.engine.tables
        if tables is None:
            raise FilterError("no policy is loaded on this dataplane: it holds no sessions")
        running = tables.policy
        out: dict[str, Any] = {
            "proto": flt.proto,
            "sport": flt.sport,
            "dport": flt.dport,
            "src": flt.src,
            "dst": flt.dst,
            "flow_id": flt.flow_id,
        }
        if flt.action is not None:
            out["action"] = ACTIONS.index(flt.action)
        if flt.state is not None:
            out["tcp_state"] = TCP_STATES.index(flt.state)
        if flt.user is not None:
            from ngfw.compiler.principals import user_principal

            # a name no flow has is not an error: nobody of that name is logged in here (yet)
            out["user_mode"] = USER_MODES.get(flt.user, 1)
            out["user"] = user_principal(flt.user) if out["user_mode"] == 1 else 0
        vm_vsys = None
        if flt.vm is not None:
            # the name alone may be a workload of several vsys (a vsys= of the filter narrows the flows, not
            # the name: a tenant's admin sees its flows with another tenant's workloads by their names)
            vm_vsys, _, name = flt.vm.rpartition("/")
            found = [
                i
                for i, wl in enumerate(running.workloads)
                if wl.name == name and (not vm_vsys or running.vsys_name(wl.vsys) == vm_vsys)
            ]
            if not found:
                where = f" in vsys {vm_vsys}" if vm_vsys else ""
                raise FilterError(f"vm={flt.vm}: no workload named {name!r}{where} in the running policy")
            out["workloads"] = found[:16]
        if flt.vsys is not None:
            pairs = [
                (gen, policy.vsys.index(flt.vsys)) for gen, policy in generations.items() if flt.vsys in policy.vsys
            ]
            if not pairs and flt.vsys not in running.vsys:
                raise FilterError(f"vsys={flt.vsys}: no vsys of that name in the running policy")
            out.update(
                has_vsys=True,
                vsys=running.vsys.index(flt.vsys) if flt.vsys in running.vsys else -1,
                vsys_pairs=pairs[-128:],
            )
        if flt.rule is not None:
            pairs = []
            for gen, policy in generations.items():
                for index, rule in enumerate(policy.rules):
                    if rule.name == flt.rule and (flt.vsys is None or policy.vsys_name(rule.vsys) == flt.vsys):
                        pairs.append((gen, index))
                if flt.rule == DEFAULT_RULE:
                    pairs.append((gen, -1))
            if not pairs:
                raise FilterError(f"rule={flt.rule}: no rule of that name in the running policy")
            out.update(has_rule=True, rule_pairs=pairs[-128:])
        if flt.app is not None:
            catalogue = running.catalogue
            if catalogue is None or flt.app not in catalogue.by_name:
                raise FilterError(f"app={flt.app}: no application of that name (`ngfw apps` lists them)")
            out["app"] = catalogue.by_name[flt.app]
        return out

    # ---- listing
    def page(self, flt: SessionFilter, cursor: int = 0, limit: int = PAGE_DEFAULT) -> Page:
        """Up to `limit` matching flows from `cursor` on, as records; several short loop requests."""
        compiled = self.compiled(flt)
        limit = max(1, min(limit, PAGE_MAX))
        slots = self.engine.table_slots()
        if not 0 <= cursor < slots:
            raise FilterError(f"cursor {cursor} is not a position in this dataplane's flow table (0..{slots - 1})")
        names = self._names(dict(self.policies()))
        records: list[dict[str, Any]] = []
        while True:
            out = self.engine.list_sessions(compiled, cursor=cursor, limit=limit - len(records), max_scan=self.scan)
            for flow in out["sessions"]:
                records.append(session_record(flow, names.get(flow["generation"]), self.host, self.user_name))
            cursor = out["cursor"]
            if cursor == 0 or len(records) >= limit:
                return Page(records, cursor)

    def _names(self, generations: dict[int, Any]) -> dict[int, PolicyNames]:
        with self._names_lock:
            cache = self._name_cache
            for gen, policy in generations.items():
                if gen not in cache or cache[gen].policy is not policy:
                    cache[gen] = PolicyNames(policy)
            for gen in [g for g in cache if g not in generations]:
                del cache[gen]
            return dict(cache)

    def iterate(self, flt: SessionFilter, page_size: int = PAGE_DEFAULT) -> Iterator[dict[str, Any]]:
        """Every matching flow, page by page; a flow the table moved during the listing is given once."""
        seen: set[int] = set()
        cursor = 0
        while True:
            page = self.page(flt, cursor, page_size)
            for record in page.sessions:
                if record["flow_id"] not in seen:
                    seen.add(record["flow_id"])
                    yield record
            if page.cursor == 0:
                return
            cursor = page.cursor

    # ---- clearing
    def clear(self, flt: SessionFilter, silent: bool = False, who: str = "") -> Cleared:
        """End every matching flow (see session_view.pxi for what a TCP connection sees)."""
        compiled = self.compiled(flt)
        done = Cleared()
        with self._clear_lock:
            while done.passes < CLEAR_PASSES:
                done.passes += 1
                found = 0
                cursor = 0
                while True:
                    out = self.engine.clear_sessions(compiled, silent=silent, cursor=cursor, max_scan=self.scan)
                    found += out["cleared"]
                    done.resets += out["resets"]
                    cursor = out["cursor"]
                    if cursor == 0:
                        break
                done.cleared += found
                if found == 0:
                    break
        log.info(
            "sessions cleared%s: %s: %d flows (%d TCP connections reset at their next segment)",
            f" by {who}" if who else "",
            flt.words(),
            done.cleared,
            done.resets,
        )
        return done


class PolicyNames:
    """One policy generation's names by index, made once per generation (not looked up once per flow)."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.version = policy.version
        self.vsys = [v or None for v in policy.vsys]
        self.workloads = [w.name or None for w in policy.workloads]
        self.rules = [r.name for r in policy.rules]
        self._apps: dict[str, tuple[str | None, str | None]] = {}

    def app(self, name: str) -> tuple[str | None, str | None]:
        split = self._apps.get(name)
        if split is None:
            split = self._apps[name] = split_app(self.policy.catalogue, name)
        return split


def session_record(
    flow: dict[str, Any],
    names: PolicyNames | None,
    host: str = "",
    user_name: Callable[[int], str | None] | None = None,
) -> dict[str, Any]:
    """A listed flow (`Engine.list_sessions`) named with the policy that decided it (EVE's field names)."""
    vsys, rule_index, ingress = flow["vsys"], flow["rule"], flow["rule_ingress"]
    src_wl, dst_wl = flow["src_wl"], flow["dst_wl"]
    if vsys < 0:
        rule = None
    elif rule_index < 0:
        rule = None if flow["action"] == "allow" else DEFAULT_RULE  # allowed for now: its app decides
    else:
        rule = names.rules[rule_index] if names is not None and rule_index < len(names.rules) else None
    proto_number = flow["proto"]
    app_proto, app = (None, None)
    if flow["app_proto"]:
        app_proto, app = names.app(flow["app_proto"]) if names is not None else (flow["app_proto"], flow["app_proto"])
    if proto_number == PROTO_TCP:
        state = flow["tcp_state"]
    else:
        state = "active" if flow["pkts_toclient"] else "unreplied"
    record: dict[str, Any] = {
        "flow_id": flow["flow_id"],
        "host": host or None,
        "vsys": names.vsys[vsys] if names is not None and 0 <= vsys < len(names.vsys) else None,
        "src_ip": flow["src_ip"],
        "src_port": flow["src_port"],
        "dest_ip": flow["dest_ip"],
        "dest_port": flow["dest_port"],
        "proto": EVE_PROTO_NAMES.get(proto_number) or str(proto_number),
        "src_vm": names.workloads[src_wl] if names is not None and 0 <= src_wl < len(names.workloads) else None,
        "dest_vm": names.workloads[dst_wl] if names is not None and 0 <= dst_wl < len(names.workloads) else None,
        # the user behind the client's address (User-ID), as the flow was decided or last looked up
        "src_user": user_name(flow["user"]) if user_name is not None and flow.get("user") else None,
        "app_proto": app_proto,
        "app": app,
        "app_host": flow["app_host"],
        "rule": rule,
        "rule_ingress": names.rules[ingress] if names is not None and 0 <= ingress < len(names.rules) else None,
        "action": flow["action"],
        "state": state,
        "start": eve_timestamp(flow["start"]),
        "age": flow["age_ns"] // 1_000_000 / 1000,
        "idle": flow["idle_ns"] // 1_000_000 / 1000,
        "pkts_toserver": flow["pkts_toserver"],
        "pkts_toclient": flow["pkts_toclient"],
        "bytes_toserver": flow["bytes_toserver"],
        "bytes_toclient": flow["bytes_toclient"],
        "inspected": flow["inspected"],
        "bypass": flow.get("bypass", False),  # the kernel forwards it (flow bypass, docs/dataplane.md)
        "in_iface": flow["in_port"],
        "policy_version": names.version if names is not None else flow["generation"],
    }
    if flow["vlan"]:
        record["vlan"] = flow["vlan"]
    if flow["threat"]:
        record["threat"] = flow["threat"]
    if flow["classifying"]:
        record["classifying"] = True
    if flow["migrating"]:
        record["migrating"] = True
    if flow["cut"]:
        record["cut"] = True
    return record
