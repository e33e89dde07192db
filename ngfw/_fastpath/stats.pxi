# Counters as Python sees them: Engine.stats, every stage's counters in one dict (the inspection stage's:
# inspect.pxi `inspect_stats_dict`).

cdef object engine_stats(Engine self):
    cdef uint32_t i
    cdef port_t *p
    ports = []
    for i in range(self.e.n_ports):
        p = &self.e.ports[i]
        ports.append({"name": self.port_names[i], "rx_packets": p.rx_packets, "rx_bytes": p.rx_bytes,
                      "tx_packets": p.tx_packets, "tx_bytes": p.tx_bytes, "tx_errors": p.tx_errors,
                      "kernel_drops": port_kernel_drops(self, i)})
    return {
        "ports": ports,
        "drops": {_name(DROP_REASONS, i): self.e.drops[i] for i in range(1, R_COUNT)},
        "flows_active": self.e.flows.count,
        "flows_capacity": self.e.flows.capacity,
        "flows_created": self.e.flows_created,
        "flows_expired": self.e.flows_expired,
        "flows_cut": self.e.flows_cut,
        "flows_early_dropped": self.e.flows_early_dropped,
        "records_unlogged": self.e.records_unlogged,
        "flows_handed_over": self.e.flows_handed_over,
        "flows_user_redecided": self.e.user_redecided,
        "arrivals": self.e.arrivals,
        "flow_insert_failures": self.e.drops[R_FLOW_TABLE_FULL],
        # memory given back to the system after floods (flow.pxi), and what of the table is given back now
        "memory_given_back": {"flows": self.e.flows.bytes_given_back,
                              "inspect": self.e.ins.pool.bytes_given_back if self.e.ins != NULL else 0},
        "flow_table_bytes": <uint64_t>(self.e.flows.mask + 1) * sizeof(flow_t),
        "flow_table_bytes_released": <uint64_t>self.e.flows.n_released * mem_page,
        "events_lost": self.e.events.lost,
        "drop_events_suppressed": self.e.pktdrop_suppressed,
        "capture_frames": self.e.capture.frames,
        "capture_lost": self.e.capture.lost,
        "app_cuts": self.e.app_cuts,
        "appid_buffers_exhausted": self.e.cls.exhausted,
        "inspect": self.inspect_stats(),
        "bypass": self.bypass_stats(),
        "vsys": self.vsys_stats(),
    }
