"""Prometheus metrics of `ngfw control`, served at `GET /metrics` without a token.

What a dashboard and the alerts of deploy/prometheus need from control: the running version, the
version each host acknowledged (and whether it is connected, behind, or refused a bundle), commits,
refused requests, request latency per route, migrations. Requests are counted as they are answered;
everything else is read from `Control` and the store when Prometheus scrapes.

Labels are bounded: route templates (never paths), the route table's methods, HTTP statuses,
host names (of hosts that acknowledged a bundle or polled for one with a dataplane's credentials),
migration states. Never tokens, principals, addresses or flow ids: that is why /metrics needs no token.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from ngfw import __version__
from ngfw.control.migrations import ACTIVE

if TYPE_CHECKING:
    from ngfw.control.service import Control

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# seconds; long-polls (GET /bundle, GET /tasks) last up to their `wait` (60 s at most)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# an agent re-polls as soon as a poll ends: one whose last poll ended longer ago than this is gone
HOST_LIVE_SECONDS = 10.0
REFUSAL_REASONS = ("unauthenticated", "denied", "conflict", "invalid", "not_found")
COMMIT_RESULTS = ("ok", "conflict", "refused")
# ControlServer.counters keys -> the `event` label of ngfw_control_server_events_total
SERVER_EVENTS = {
    "internal_errors": "internal_error",
    "bad_requests": "malformed_request",
    "refused_connections": "connection_over_limit",
    "timeouts": "timeout",
    "tls_handshake_failures": "tls_handshake_failed",
    "plain_http_refused": "plain_http_refused",
}


def refusal_reason(status: int) -> str | None:
    """What kind of refusal an HTTP status is (the audit log's words), None for an answer that is not one."""
    if status == 401:
        return "unauthenticated"
    if status == 403:
        return "denied"
    if status == 409:
        return "conflict"
    if status in (404, 405):
        return "not_found"
    if 400 <= status < 500:
        return "invalid"
    return None


class ControlMetrics(Collector):
    """Request counts kept as requests are answered, and control's state read at scrape time."""

    def __init__(
        self,
        control: Control,
        server_counters: Callable[[], dict[str, int]],
        server_gauges: Callable[[], dict[str, int]],
    ) -> None:
        self.control = control
        self._server_counters = server_counters
        self._server_gauges = server_gauges
        self._lock = threading.Lock()
        # (method, route, status) -> (bucket counts, not cumulative; sum of seconds)
        self._requests: dict[tuple[str, str, str], tuple[list[int], list[float]]] = {}
        self._refusals = dict.fromkeys(REFUSAL_REASONS, 0)
        self._commits = {(action, result): 0 for action in ("commit", "rollback") for result in COMMIT_RESULTS}
        self._polls: dict[str, int] = {}  # host -> bundle/task polls in flight
        self._last_poll: dict[str, float] = {}  # host -> monotonic time its last poll ended
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # ---- kept as requests are answered (on the event loop; short critical sections)
    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, str(status))
        reason = refusal_reason(status)
        with self._lock:
            entry = self._requests.get(key)
            if entry is None:
                entry = self._requests[key] = ([0] * (len(REQUEST_BUCKETS) + 1), [0.0])
            entry[0][bisect.bisect_left(REQUEST_BUCKETS, seconds)] += 1
            entry[1][0] += seconds
            if reason is not None:
                self._refusals[reason] += 1
            if method == "POST" and route in ("/commit", "/rollback"):
                result = "ok" if status == 201 else "conflict" if status == 409 else "refused"
                self._commits[(route[1:], result)] += 1

    def poll_started(self, host: str) -> None:
        with self._lock:
            self._polls[host] = self._polls.get(host, 0) + 1

    def poll_ended(self, host: str) -> None:
        with self._lock:
            self._polls[host] -= 1
            self._last_poll[host] = time.monotonic()

    def connected(self, host: str) -> bool:
        """A dataplane of `host` polls this controller for bundles or tasks now (or did a moment ago)."""
        with self._lock:
            return self._connected(host, time.monotonic())

    def _connected(self, host: str, now: float) -> bool:
        return self._polls.get(host, 0) > 0 or now - self._last_poll.get(host, -1e9) < HOST_LIVE_SECONDS

    def exposition(self) -> bytes:
        """The text Prometheus scrapes (reads the store: call it off the event loop)."""
        return generate_latest(self.registry)

    # ---- read at scrape time
    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("ngfw_control_build", "ngfw control build information")
        info.add_metric([], {"version": __version__})
        yield info
        yield from self._requests_families()
        yield from self._configuration()
        yield from self._migrations()
        yield from self._users()
        counters = self._server_counters()
        events = CounterMetricFamily(
            "ngfw_control_server_events_total",
            "Connections and requests the HTTP server refused or failed, by event",
            labels=["event"],
        )
        for key, event in SERVER_EVENTS.items():
            events.add_metric([event], counters.get(key, 0))
        yield events
        gauges = self._server_gauges()
        yield GaugeMetricFamily("ngfw_control_connections", "Connections open now", value=gauges["connections"])
        yield GaugeMetricFamily(
            "ngfw_control_long_polls_waiting",
            "Long-polls (bundles, tasks) waiting for a change now",
            value=gauges["long_polls_waiting"],
        )

    def _users(self) -> Iterator[Any]:
        """User-ID: mappings, refusals, syslog lines, directories (labels: outcomes and UserSource names)."""
        users = self.control.users
        yield GaugeMetricFamily(
            "ngfw_control_user_mappings", "Addresses mapped to a user now (User-ID)", value=len(users.mappings)
        )
        changes = CounterMetricFamily(
            "ngfw_control_user_mapping_changes_total",
            "User mappings made, ended and "
            "expired, and mappings refused (an address of no workload that no "
            "UserSource allows, or over the limit)",
            labels=["outcome"],
        )
        for outcome, key in (
            ("mapped", "mapped"),
            ("unmapped", "unmapped"),
            ("expired", "expired"),
            ("unbound_accepted", "unbound_accepted"),
            ("unbound_refused", "unbound_refused"),
            ("over_limit", "refused"),
        ):
            changes.add_metric([outcome], users.counters.get(key, 0))
        yield changes
        restored = CounterMetricFamily(
            "ngfw_control_user_mappings_restored_total",
            "User mappings read back from "
            "the store when control started: restored, or dropped (their lifetime ended "
            "while control was down)",
            labels=["outcome"],
        )
        restored.add_metric(["restored"], users.counters.get("restored", 0))
        restored.add_metric(["expired"], users.counters.get("restored_expired", 0))
        yield restored
        writes = CounterMetricFamily(
            "ngfw_control_user_store_writes_total",
            "Writes of user mappings to control's "
            "store (a syslog batch or a request is one), by result (failed: written again "
            "with the next)",
            labels=["result"],
        )
        writes.add_metric(["ok"], users.counters.get("store_writes", 0))
        writes.add_metric(["failed"], users.counters.get("store_failures", 0))
        yield writes
        syslog = self.control.syslog
        if syslog is not None:
            lines = CounterMetricFamily(
                "ngfw_control_syslog_lines_total", "Syslog lines received, by what came of them", labels=["result"]
            )
            for result in ("logins", "logouts", "unmatched", "malformed", "refused"):
                lines.add_metric([result], syslog.counters.get(result, 0))
            yield lines
        directories = self.control.directories.status() if self.control.directories is not None else []
        refreshes = CounterMetricFamily(
            "ngfw_control_directory_refreshes_total",
            "Directory group refreshes, by UserSource and outcome",
            labels=["source", "outcome"],
        )
        stale = GaugeMetricFamily(
            "ngfw_control_directory_stale",
            "1 while a directory's last refresh failed (its last good groups are kept)",
            labels=["source"],
        )
        for d in directories:
            refreshes.add_metric([d["source"], "ok"], d["ok"])
            refreshes.add_metric([d["source"], "failed"], d["failed"])
            stale.add_metric([d["source"]], 1 if d["stale"] else 0)
        yield refreshes
        yield stale

    def _requests_families(self) -> Iterator[Any]:
        with self._lock:
            requests = {k: (list(v[0]), v[1][0]) for k, v in self._requests.items()}
            refusals = dict(self._refusals)
            commits = dict(self._commits)
        histogram = HistogramMetricFamily(
            "ngfw_control_request_duration_seconds",
            "API requests answered, by route "
            "template and status: time from the request head to the answer (a "
            "long-poll's includes its wait)",
            labels=["method", "route", "status"],
        )
        for (method, route, status), (counts, total) in sorted(requests.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*REQUEST_BUCKETS, float("inf")), counts):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            histogram.add_metric([method, route, status], buckets, total)
        yield histogram
        family = CounterMetricFamily(
            "ngfw_control_refusals_total",
            "API requests refused, by reason (401 "
            "unauthenticated, 403 denied, 409 conflict, 404/405 not_found, other 4xx "
            "invalid)",
            labels=["reason"],
        )
        for reason, value in refusals.items():
            family.add_metric([reason], value)
        yield family
        family = CounterMetricFamily(
            "ngfw_control_commits_total",
            "Commits and rollbacks asked of this controller, "
            "by result (ok: a new version; conflict: 409; refused: any other refusal)",
            labels=["action", "result"],
        )
        for (action, result), value in commits.items():
            family.add_metric([action, result], value)
        yield family

    def _configuration(self) -> Iterator[Any]:
        control = self.control
        version, identity = control.store.latest()
        current = control.bundle(version, identity).hash if version > 0 else ""
        acks = sorted(control.store.acks(), key=lambda a: a.host)
        yield GaugeMetricFamily(
            "ngfw_control_policy_version", "The running (latest committed) policy version", value=version
        )
        yield GaugeMetricFamily(
            "ngfw_control_identity_revision",
            "The running identity revision (Workload bindings and labels)",
            value=identity,
        )
        runs = GaugeMetricFamily(
            "ngfw_control_host_policy_version", "The policy version a host acknowledged running", labels=["host"]
        )
        runs_identity = GaugeMetricFamily(
            "ngfw_control_host_identity_revision", "The identity revision a host acknowledged running", labels=["host"]
        )
        up_to_date = GaugeMetricFamily(
            "ngfw_control_host_current",
            "1 when a host runs the running bundle (version and identity), 0 when it is behind",
            labels=["host"],
        )
        refused = GaugeMetricFamily(
            "ngfw_control_host_refused_version",
            "The version a host refused or failed to "
            "apply (it keeps its last good one); no sample while it has no such problem",
            labels=["host", "status"],
        )
        last_ack = GaugeMetricFamily(
            "ngfw_control_host_last_ack_timestamp_seconds", "When a host last reported what it runs", labels=["host"]
        )
        for ack in acks:
            runs.add_metric([ack.host], ack.version)
            runs_identity.add_metric([ack.host], ack.identity)
            up_to_date.add_metric([ack.host], 1 if ack.hash == current else 0)
            if ack.status != "applied":
                refused.add_metric([ack.host, ack.status], ack.problem_version)
            last_ack.add_metric([ack.host], ack.time)
        yield from (runs, runs_identity, up_to_date, refused, last_ack)
        connected = GaugeMetricFamily(
            "ngfw_control_host_connected",
            "1 while a host's dataplane polls this controller for bundles (with several controllers: max by host)",
            labels=["host"],
        )
        now = time.monotonic()
        with self._lock:
            hosts = sorted({a.host for a in acks} | set(self._polls) | set(self._last_poll))
            for host in hosts:
                connected.add_metric([host], 1 if self._connected(host, now) else 0)
        yield connected

    def _migrations(self) -> Iterator[Any]:
        coordinator = self.control.migrations
        finished = CounterMetricFamily(
            "ngfw_control_migrations_total",
            "Migrations this controller brokered that ended, by result",
            labels=["result"],
        )
        for result, n in sorted(coordinator.counts.items()):
            finished.add_metric([result], n)
        yield finished
        active = GaugeMetricFamily(
            "ngfw_control_migrations_active", "Migrations in progress, by state", labels=["state"]
        )
        states = dict.fromkeys(ACTIVE, 0)
        for m in coordinator.list(lambda vsys: True):
            if m["state"] in states:
                states[m["state"]] += 1
        for state, n in states.items():
            active.add_metric([state], n)
        yield active
