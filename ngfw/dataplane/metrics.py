"""Prometheus metrics read from the fastpath's C counters at scrape time (a custom collector).

Labels are bounded by configuration (port, reason, vsys, rule), never by traffic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from ngfw.dataplane.runner import Dataplane


class DataplaneCollector(Collector):
    def __init__(self, dataplane: "Dataplane") -> None:
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
            ("ngfw_port_kernel_drops_total", "Frames the kernel dropped because the receive ring was full", "kernel_drops"),
        ]
        for name, help_text, key in per_port:
            family = CounterMetricFamily(name, help_text, labels=["port"])
            for port in stats["ports"]:
                family.add_metric([port["name"]], port[key])
            yield family

        drops = CounterMetricFamily("ngfw_drops_total", "Frames dropped by the dataplane, by reason", labels=["reason"])
        for reason, value in stats["drops"].items():
            drops.add_metric([reason], value)
        yield drops

        hits = CounterMetricFamily("ngfw_rule_hits_total", "Flows decided by a rule, by vsys and rule",
                                   labels=["vsys", "rule"])
        for (vsys, rule), value in sorted(dp.rule_hits().items()):
            hits.add_metric([vsys, rule], value)
        yield hits

        apps = CounterMetricFamily("ngfw_app_flows_total", "Flows whose application was decided, by vsys and app",
                                   labels=["vsys", "app"])
        for (vsys, app), value in sorted(dp.app_flows().items()):
            apps.add_metric([vsys, app], value)
        yield apps
        yield CounterMetricFamily("ngfw_app_cuts_total", "Flows cut once their application was known",
                                  value=stats["app_cuts"])
        yield CounterMetricFamily("ngfw_appid_buffers_exhausted_total",
                                  "Flows classified without reassembly buffers because all were in use",
                                  value=stats["appid_buffers_exhausted"])
        yield GaugeMetricFamily("ngfw_flows_active", "Flows in the flow table", value=stats["flows_active"])
        yield GaugeMetricFamily("ngfw_flows_capacity", "Flows the flow table can hold", value=stats["flows_capacity"])
        yield CounterMetricFamily("ngfw_flows_created_total", "Flows created", value=stats["flows_created"])
        yield CounterMetricFamily("ngfw_flows_expired_total", "Flows ended and removed", value=stats["flows_expired"])
        yield CounterMetricFamily("ngfw_flows_cut_total", "Established flows cut because a new policy denies them",
                                  value=stats["flows_cut"])
        yield CounterMetricFamily("ngfw_flow_insert_failures_total", "New flows dropped because the flow table was full",
                                  value=stats["flow_insert_failures"])
        yield CounterMetricFamily("ngfw_events_lost_total", "Flow/drop events lost because the event ring was full",
                                  value=stats["events_lost"])

        policy = dp.policy
        yield GaugeMetricFamily("ngfw_policy_version", "Version of the policy in force",
                                value=policy.version if policy else 0)
        yield GaugeMetricFamily("ngfw_policy_rules", "Rules in the policy in force", value=len(policy.rules) if policy else 0)
        yield GaugeMetricFamily("ngfw_policy_load_seconds", "Time the last successful policy load took (parse, compile, build)",
                                value=dp.last_load_seconds)
        yield GaugeMetricFamily("ngfw_policy_loaded_timestamp_seconds", "When the policy in force was loaded",
                                value=dp.last_load_time)
        reloads = CounterMetricFamily("ngfw_policy_reloads_total", "Policy loads, by result", labels=["result"])
        reloads.add_metric(["success"], dp.reloads_ok)
        reloads.add_metric(["failure"], dp.reloads_failed)
        yield reloads
