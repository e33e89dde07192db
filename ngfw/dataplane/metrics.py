"""Prometheus metrics read from the fastpath's C counters at scrape time (a custom collector).

Labels are bounded by configuration (port, reason, vsys, rule), never by traffic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ngfw.dataplane.runner import Dataplane


class DataplaneCollector(Collector):
    def __init__(self, dataplane: Dataplane) -> None:
        self.dp = dataplane

    def collect(self) -> Iterator:
        dp = self.dp
        stats = dp.engine.stats()
        info = InfoMetricFamily("ngfw_build", "ngfw build and fastpath information")
        info.add_metric([], dp.build_info())
        yield info

        per_port = [
            ("ngfw_port_rx_packets_total", "Frames received on a port", "rx_packets"),
            ("ngfw_port_rx_bytes_total", "Bytes received on a port", "rx_bytes"),
            ("ngfw_port_tx_packets_total", "Frames transmitted on a port", "tx_packets"),
            ("ngfw_port_tx_bytes_total", "Bytes transmitted on a port", "tx_bytes"),
            ("ngfw_port_tx_errors_total", "Frames a port failed to transmit", "tx_errors"),
            (
                "ngfw_port_kernel_drops_total",
                "Frames the kernel dropped because the receive ring was full",
                "kernel_drops",
            ),
        ]
        for name, help_text, key in per_port:
            family = CounterMetricFamily(name, help_text, labels=["port"])
            for port in stats["ports"]:
                family.add_metric([port["name"]], port[key])
            yield family

        yield from self._port_links(dp)

        drops = CounterMetricFamily("ngfw_drops_total", "Frames dropped by the dataplane, by reason", labels=["reason"])
        for reason, value in stats["drops"].items():
            drops.add_metric([reason], value)
        yield drops

        hits = CounterMetricFamily(
            "ngfw_rule_hits_total", "Flows decided by a rule, by vsys and rule", labels=["vsys", "rule"]
        )
        for (vsys, rule), value in sorted(dp.rule_hits().items()):
            hits.add_metric([vsys, rule], value)
        yield hits

        apps = CounterMetricFamily(
            "ngfw_app_flows_total", "Flows whose application was decided, by vsys and app", labels=["vsys", "app"]
        )
        for (vsys, app), value in sorted(dp.app_flows().items()):
            apps.add_metric([vsys, app], value)
        yield apps
        yield CounterMetricFamily(
            "ngfw_app_cuts_total", "Flows cut once their application was known", value=stats["app_cuts"]
        )
        yield CounterMetricFamily(
            "ngfw_appid_buffers_exhausted_total",
            "Flows classified without reassembly buffers because all were in use",
            value=stats["appid_buffers_exhausted"],
        )
        yield GaugeMetricFamily("ngfw_flows_active", "Flows in the flow table", value=stats["flows_active"])
        yield GaugeMetricFamily("ngfw_flows_capacity", "Flows the flow table can hold", value=stats["flows_capacity"])
        yield CounterMetricFamily("ngfw_flows_created_total", "Flows created", value=stats["flows_created"])
        yield CounterMetricFamily("ngfw_flows_expired_total", "Flows ended and removed", value=stats["flows_expired"])
        yield CounterMetricFamily(
            "ngfw_flows_cut_total", "Established flows cut because a new policy denies them", value=stats["flows_cut"]
        )
        yield CounterMetricFamily(
            "ngfw_flow_insert_failures_total",
            "New flows dropped because the flow table was full",
            value=stats["flow_insert_failures"],
        )
        yield CounterMetricFamily(
            "ngfw_events_lost_total",
            "Flow/drop events lost because the event ring was full",
            value=stats["events_lost"],
        )
        yield from self._eve(stats)
        yield CounterMetricFamily(
            "ngfw_flows_early_dropped_total",
            "Embryonic flows ended to make room for new ones while the flow table was full",
            value=stats["flows_early_dropped"],
        )
        yield CounterMetricFamily(
            "ngfw_flow_records_unlogged_total",
            "Flow and drop records of flows that never became a conversation, not written (1,000 a second are)",
            value=stats["records_unlogged"],
        )
        given_back = CounterMetricFamily(
            "ngfw_memory_given_back_bytes_total",
            "Memory of the flow table and of the inspection state given back to the system after floods",
            labels=["pool"],
        )
        for pool, value in sorted(stats["memory_given_back"].items()):
            given_back.add_metric([pool], value)
        yield given_back
        yield GaugeMetricFamily(
            "ngfw_flow_table_bytes",
            "Memory the flow table spans (resident only where flows are, or were since a flood)",
            value=stats["flow_table_bytes"],
        )
        yield GaugeMetricFamily(
            "ngfw_flow_table_given_back_bytes",
            "Memory of the flow table given back now: pages no flow has used since",
            value=stats["flow_table_bytes_released"],
        )
        yield CounterMetricFamily(
            "ngfw_flows_handed_over_total",
            "Flows handed to the host their workload moved to that ended here unlogged",
            value=stats["flows_handed_over"],
        )
        yield CounterMetricFamily(
            "ngfw_flows_user_redecided_total",
            "Flows a users: rule decided, decided again because the user behind their address (or its groups) changed",
            value=stats["flows_user_redecided"],
        )
        users = getattr(self.dp, "users", None)
        if users is not None:
            user_stats = users.stats()
            yield GaugeMetricFamily(
                "ngfw_user_mappings",
                "Addresses the user table in force maps to a user (User-ID)",
                value=user_stats["mapped"],
            )
            yield CounterMetricFamily(
                "ngfw_user_table_swaps_total",
                "User tables built and swapped into the packet "
                "loop (a login, a logout, a lifetime's end, a group change)",
                value=user_stats["swaps"],
            )
            yield CounterMetricFamily(
                "ngfw_user_mappings_expired_total",
                "User mappings whose lifetime ended on this host",
                value=user_stats["expired"],
            )
        agent = getattr(self.dp, "user_agent", None)
        if agent is not None:
            updates = CounterMetricFamily(
                "ngfw_user_updates_total",
                "User mapping updates from control, by kind "
                "(snapshot: at start and after control restarted; delta; refused: did "
                "not verify)",
                labels=["kind"],
            )
            updates.add_metric(["snapshot"], agent.snapshots)
            updates.add_metric(["delta"], agent.applied - agent.snapshots)
            updates.add_metric(["refused"], agent.refused)
            yield updates
        bypass = stats["bypass"]
        yield GaugeMetricFamily(
            "ngfw_bypass_enabled",
            "1 while flow bypass runs (the kernel forwards flows whose "
            "verdict is final), 0 when it is off or not available",
            value=int(bypass["enabled"]),
        )
        yield GaugeMetricFamily("ngfw_bypass_flows_active", "Flows the kernel forwards now", value=bypass["active"])
        yield CounterMetricFamily(
            "ngfw_bypass_flows_total", "Flows put in bypass (again after a policy change)", value=bypass["flows"]
        )
        yield CounterMetricFamily(
            "ngfw_bypass_packets_total",
            "Frames the kernel forwarded for bypassed flows (folded into their flows about every second)",
            value=bypass["packets"],
        )
        yield CounterMetricFamily(
            "ngfw_bypass_bytes_total", "Bytes the kernel forwarded for bypassed flows", value=bypass["bytes"]
        )
        yield CounterMetricFamily(
            "ngfw_bypass_map_full_total",
            "Times a flow stayed in the packet loop because the bypass map was full",
            value=bypass["map_full"],
        )
        yield from self._migrations()
        continued = CounterMetricFamily(
            "ngfw_sessions_continued_total",
            "Sessions of the previous dataplane process (crash or restart), by what importing them did",
            labels=["result"],
        )
        for result, value in sorted(dp.sessions_continued.items()):
            continued.add_metric([result], value)
        yield continued

        yield from self._tenancy(stats["vsys"])
        yield from self._fail_modes()
        yield from self._syn_flood_protection()
        yield from self._inspection(stats["inspect"])

        policy = dp.policy
        yield GaugeMetricFamily(
            "ngfw_policy_version", "Version of the policy in force", value=policy.version if policy else 0
        )
        yield GaugeMetricFamily(
            "ngfw_policy_rules", "Rules in the policy in force", value=len(policy.rules) if policy else 0
        )
        yield GaugeMetricFamily(
            "ngfw_policy_load_seconds",
            "Time the last successful policy load took (parse, compile, build)",
            value=dp.last_load_seconds,
        )
        yield GaugeMetricFamily(
            "ngfw_policy_loaded_timestamp_seconds", "When the policy in force was loaded", value=dp.last_load_time
        )
        reloads = CounterMetricFamily("ngfw_policy_reloads_total", "Policy loads, by result", labels=["result"])
        reloads.add_metric(["success"], dp.reloads_ok)
        reloads.add_metric(["failure"], dp.reloads_failed)
        yield reloads

    def _eve(self, stats: dict) -> Iterator:
        """EVE outputs (records written and dropped per output) and packet capture."""
        dp = self.dp
        yield CounterMetricFamily(
            "ngfw_eve_drop_records_suppressed_total",
            "Drop records of frames that made no "
            "flow (spoofing, quotas, a full table) the rate limit kept from the log; the frames "
            "are counted in ngfw_drops_total",
            value=stats.get("drop_events_suppressed", 0),
        )
        written = CounterMetricFamily("ngfw_eve_records_total", "EVE records handed to an output", labels=["output"])
        dropped = CounterMetricFamily(
            "ngfw_eve_records_dropped_total",
            "EVE records an output lost: its queue was full (a slow consumer) or its destination unreachable",
            labels=["output"],
        )
        errors = CounterMetricFamily(
            "ngfw_eve_output_errors_total", "Failed sends and connection attempts of an EVE output", labels=["output"]
        )
        eve = getattr(dp, "eve", None)
        for label, counts in (eve.counters() if eve is not None else {}).items():
            written.add_metric([label], counts["written"])
            dropped.add_metric([label], counts["dropped"])
            errors.add_metric([label], counts["errors"])
        yield written
        yield dropped
        yield errors
        yield CounterMetricFamily(
            "ngfw_capture_frames_total",
            "Frames the packet loop copied for capture",
            value=stats.get("capture_frames", 0),
        )
        yield CounterMetricFamily(
            "ngfw_capture_frames_lost_total",
            "Frames to capture that did not fit in the capture ring",
            value=stats.get("capture_lost", 0),
        )
        capture = getattr(dp, "capture", None)
        counts = capture.counters() if capture is not None else {}
        yield CounterMetricFamily(
            "ngfw_capture_frames_written_total",
            "Captured frames written to pcap files",
            value=counts.get("frames_written", 0),
        )
        yield CounterMetricFamily(
            "ngfw_capture_files_total", "Capture files opened", value=counts.get("files_opened", 0)
        )

    def _migrations(self) -> Iterator:
        agent = self.dp.migration_agent
        done = CounterMetricFamily(
            "ngfw_migrations_total", "Workload migrations into this host, by result", labels=["result"]
        )
        sessions = CounterMetricFamily(
            "ngfw_migration_sessions_total",
            "Sessions of workloads that moved here, by what importing them did",
            labels=["result"],
        )
        if agent is not None:
            for result, n in sorted(agent.migrations.items()):
                done.add_metric([result], n)
            for result, n in sorted(agent.sessions.items()):
                sessions.add_metric([result], n)
        yield done
        yield sessions
        histogram = HistogramMetricFamily(
            "ngfw_migration_transfer_seconds",
            "Time from the source's cut-over export to this host's import of a migrating workload's sessions",
        )
        if agent is not None:
            buckets, total = agent.transfer_histogram()
            histogram.add_metric([], buckets, total)
        yield histogram
        yield CounterMetricFamily(
            "ngfw_migration_sessions_exported_total",
            "Sessions this host sent to the host their workload moved to",
            value=agent.exported if agent is not None else 0,
        )

    @staticmethod
    def _port_links(dp: Dataplane) -> Iterator:
        """Whether each port's link is usable now, and how often it went down, came up, was removed and
        re-attached (ngfw.dataplane.linkwatch)."""
        up = GaugeMetricFamily(
            "ngfw_port_up",
            "1 while the port has its interface and the link is up (frames for it are dropped as port_down otherwise)",
            labels=["port"],
        )
        for state in dp.engine.port_states():
            up.add_metric([state["name"]], 1 if state["attached"] and not state["down"] else 0)
        yield up
        events = CounterMetricFamily(
            "ngfw_port_events_total",
            "Changes of a port's link: down, up, removed (its "
            "interface disappeared), reattached (a new ring or TAP on its re-created "
            "interface)",
            labels=["port", "event"],
        )
        for (port, event), value in sorted(dp.port_events().items()):
            events.add_metric([port, event], value)
        yield events

    @staticmethod
    def _tenancy(per_vsys: dict) -> Iterator:
        """Sessions and quotas per vsys (a vsys without maxSessions has no ngfw_vsys_session_limit sample)."""
        sessions = GaugeMetricFamily(
            "ngfw_vsys_sessions",
            "Flows charged to a vsys that exist now (the source vsys pays for a cross-vsys flow)",
            labels=["vsys"],
        )
        limit = GaugeMetricFamily("ngfw_vsys_session_limit", "A vsys's maxSessions", labels=["vsys"])
        rate = GaugeMetricFamily(
            "ngfw_vsys_new_sessions_per_second_limit", "A vsys's newSessionsPerSecond", labels=["vsys"]
        )
        drops = CounterMetricFamily(
            "ngfw_vsys_quota_drops_total",
            "New flows refused because their vsys was at a quota, by vsys and reason",
            labels=["vsys", "reason"],
        )
        for name, entry in sorted(per_vsys.items()):
            sessions.add_metric([name], entry["sessions"])
            if entry["max_sessions"] is not None:
                limit.add_metric([name], entry["max_sessions"])
            if entry["new_sessions_per_second"] is not None:
                rate.add_metric([name], entry["new_sessions_per_second"])
            for reason, value in entry["drops"].items():
                drops.add_metric([name, reason], value)
        yield sessions
        yield limit
        yield rate
        yield drops

    def _fail_modes(self) -> Iterator:
        """Each wire's fail mode, and what the kernel forwarded for it in fail-open (docs/dataplane.md)."""
        mode = GaugeMetricFamily(
            "ngfw_wire_fail_mode", "A wire's fail mode: 1 for the configured one", labels=["wire", "mode"]
        )
        packets = CounterMetricFamily(
            "ngfw_failopen_packets_total",
            "Frames the kernel forwarded on an open wire "
            "while no healthy dataplane ran (programs of earlier dataplanes included)",
            labels=["wire"],
        )
        nbytes = CounterMetricFamily(
            "ngfw_failopen_bytes_total",
            "Bytes the kernel forwarded on an open wire while no healthy dataplane ran",
            labels=["wire"],
        )
        activations = CounterMetricFamily(
            "ngfw_failopen_activations_total",
            "Times the kernel started forwarding on an open wire (the dataplane died, stopped or stalled)",
            labels=["wire"],
        )
        for wire in self.dp.fail_modes.status():
            for name in ("closed", "open"):
                mode.add_metric([wire.wire, name], 1 if wire.mode == name else 0)
            packets.add_metric([wire.wire], wire.packets)
            nbytes.add_metric([wire.wire], wire.bytes)
            activations.add_metric([wire.wire], wire.activations)
        yield mode
        yield packets
        yield nbytes
        yield activations

    def _syn_flood_protection(self) -> Iterator:
        """What the wire program's ring filter did with SYNs (ngfw.dataplane.admission)."""
        syn = self.dp.fail_modes.syn_stats()
        yield GaugeMetricFamily(
            "ngfw_dos_syn_protection_enabled",
            "1 while SYN flood protection runs in the kernel "
            "ahead of the packet rings, 0 when it is off or not available",
            value=int(syn["enabled"]),
        )
        limit = GaugeMetricFamily(
            "ngfw_dos_syn_limit",
            "SYNs per second admitted into the rings, per source address and in all (0: no such limit)",
            labels=["scope"],
        )
        limit.add_metric(["per_source"], syn["per_source"])
        limit.add_metric(["total"], syn["total"])
        yield limit
        yield CounterMetricFamily(
            "ngfw_dos_syn_seen_total", "TCP SYNs (without ACK) the ring filter saw on the wires", value=syn["seen"]
        )
        dropped = CounterMetricFamily(
            "ngfw_dos_dropped_total",
            "Frames dropped in the kernel before the packet rings by SYN flood protection, by the limit they were over",
            labels=["reason"],
        )
        dropped.add_metric(["syn_per_source"], syn["dropped_source"])
        dropped.add_metric(["syn_total"], syn["dropped_total"])
        yield dropped

    def _inspection(self, ins: dict) -> Iterator:
        dp = self.dp
        policy = dp.policy
        alerts = CounterMetricFamily(
            "ngfw_alerts_total",
            "Signature alerts, by vsys, severity and whether the packet was blocked",
            labels=["vsys", "severity", "action"],
        )
        for (vsys, severity, blocked), value in sorted(ins["alerts"].items()):
            name = policy.vsys_name(vsys) if policy is not None and vsys >= 0 else ""
            alerts.add_metric([name, str(severity), "blocked" if blocked else "allowed"], value)
        yield alerts
        quiet = CounterMetricFamily(
            "ngfw_alerts_suppressed_total",
            "Signature matches that raised no alert, by vsys "
            "and reason: exception (the profile does not run the signature there), suppress "
            "(threshold.config), threshold (a threshold or limit)",
            labels=["vsys", "reason"],
        )
        for (vsys, reason), value in sorted(ins.get("suppressed", {}).items()):
            name = policy.vsys_name(vsys) if policy is not None and vsys >= 0 else ""
            quiet.add_metric([name, reason], value)
        yield quiet
        yield CounterMetricFamily("ngfw_inspect_flows_total", "Flows that were inspected", value=ins["flows_inspected"])
        yield CounterMetricFamily(
            "ngfw_inspect_flows_blocked_total", "Flows blocked by a signature (drop/reject)", value=ins["flows_blocked"]
        )
        yield CounterMetricFamily("ngfw_inspect_bytes_total", "Payload bytes inspected", value=ins["bytes_inspected"])
        yield CounterMetricFamily(
            "ngfw_inspect_depth_reached_total",
            "Flow directions that reached the inspection depth (later bytes pass uninspected)",
            value=ins["depth_reached"],
        )
        events = CounterMetricFamily(
            "ngfw_inspect_stream_events_total", "TCP stream events seen by inspection, by kind", labels=["kind"]
        )
        events.add_metric(["out_of_order"], ins["out_of_order"])
        events.add_metric(["overlap"], ins["overlaps"])
        events.add_metric(["overlap_mismatch_dropped"], ins["overlap_mismatch"])
        events.add_metric(["fragment_dropped"], ins["fragments_dropped"])
        events.add_metric(["candidates_overflow"], ins["candidates_overflow"])
        events.add_metric(["state_exhausted"], ins["state_exhausted"])
        # HTTP response bodies: inflated past 100:1 to the decode limit, decoded to the limit, no decoder free
        events.add_metric(["decompression_bomb"], ins.get("decompression_bomb", 0))
        events.add_metric(["body_limit"], ins.get("body_limit", 0))
        events.add_metric(["decoders_exhausted"], ins.get("decoders_exhausted", 0))
        # HTTP/2 header compression: blocks not valid HPACK, too large to assemble, fields naming a dynamic
        # entry not known, connections without a table slot (docs/inspection.md)
        for kind in ("hpack_malformed", "hpack_block_too_large", "hpack_unresolved", "hpack_tables_exhausted"):
            events.add_metric([kind], ins.get(kind, 0))
        yield events
        sigs = dp.signatures
        loaded = GaugeMetricFamily(
            "ngfw_signatures_loaded", "Signatures in the rule set in force, by set", labels=["set"]
        )
        skipped = GaugeMetricFamily(
            "ngfw_signatures_skipped", "Signatures that did not load, by reason", labels=["reason"]
        )
        if sigs is not None:
            per_set: dict[str, int] = {}
            for index in sigs.inspect.rule_sets:
                name = sigs.inspect.set_names[index]
                per_set[name] = per_set.get(name, 0) + 1
            for name, n in per_set.items():
                loaded.add_metric([name], n)
            for reason, n in sigs.reasons().items():
                skipped.add_metric([reason], n)
        yield loaded
        yield skipped
        yield GaugeMetricFamily(
            "ngfw_signatures_compile_seconds",
            "Time the rule set in force took to parse and compile",
            value=(sigs.parse_seconds + sigs.compile_seconds) if sigs is not None else 0,
        )
        yield GaugeMetricFamily(
            "ngfw_signatures_address_index_bytes",
            "Memory of the address index of the rules without a fast pattern (Suricata's IP-only engine)",
            value=sigs.inspect.address_index["bytes"] if sigs is not None else 0,
        )
        sets = GaugeMetricFamily(
            "ngfw_signature_set_info",
            "Signature sets in force and the sha256 of their rule "
            "files (the same on every host that runs the same set)",
            labels=["set", "sha256"],
        )
        for name, digest in sorted(dp.signature_hashes().items()):
            sets.add_metric([name, digest], 1)
        yield sets
        rl = CounterMetricFamily("ngfw_signature_reloads_total", "Signature set reloads, by result", labels=["result"])
        rl.add_metric(["success"], dp.rules_reloads_ok)
        rl.add_metric(["failure"], dp.rules_reloads_failed)
        yield rl
