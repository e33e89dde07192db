# Stage 3a, tenancy: per-vsys quotas on new flows (`spec.limits.maxSessions`, `newSessionsPerSecond`), so one
# tenant cannot fill the flow table or take every new-flow slot from the others.
#
# Limits belong to a policy generation (tables_t.quota, by that generation's vsys index); what a vsys holds
# (sessions, tokens, drops) belongs to the engine, by a stable slot. `Engine.set_tables` matches vsys by name
# across generations and writes each one's slot into the new tables before the loop adopts them, so a reload
# that adds, removes or renames other vsys (and so shifts indexes) neither forgets a tenant's sessions nor
# refills its bucket. A flow remembers the slot it was charged to and gives it back when it ends.
#
# A new flow is charged to the vsys of its initiator's workload, else of its destination's, else to the vsys
# that decides unmanaged traffic: the source vsys of a cross-vsys flow (which also owns its logs) pays, never
# the destination, so a tenant cannot spend another's quota by opening flows towards it. The check runs before
# the flow is inserted or policy evaluated, so a refused flow leaves nothing behind (no entry, no rule hit).

cdef enum:
    VSYS_SLOTS = 1024          # vsys names an engine tracks at once (slots of vanished vsys are reused)
    QUOTA_SESSIONS = 0
    QUOTA_RATE = 1

cdef uint64_t TOKEN = 1000000000ull   # one new session, in nanotokens (the bucket refills per nanosecond)

ctypedef struct vsys_state_t:      # per engine and slot
    uint64_t sessions          # flows charged to the vsys that exist now
    uint64_t tokens            # nanotokens in the bucket (at most rate * TOKEN: one second's burst)
    uint64_t refilled_ns       # packet clock of the last refill
    uint64_t drops[2]          # refused new flows: [QUOTA_SESSIONS], [QUOTA_RATE]
    uint8_t primed             # the bucket has been filled once

cdef inline int32_t quota_vsys_of(const tables_t *t, int32_t src_wl, int32_t dst_wl,
                                  int32_t unmanaged_vsys) noexcept nogil:
    """The vsys index a new flow is charged to (-1: none), from its initiator's point of view."""
    if src_wl >= 0:
        return t.wl_vsys[src_wl]
    if dst_wl >= 0:
        return t.wl_vsys[dst_wl]
    if 0 <= unmanaged_vsys < <int32_t>t.n_vsys:
        return unmanaged_vsys
    return -1

cdef inline void bucket_refill(vsys_state_t *s, uint32_t rate, uint64_t now) noexcept nogil:
    cdef uint64_t full = <uint64_t>rate * TOKEN
    cdef uint64_t elapsed
    if not s.primed:
        s.primed = 1
        s.tokens = full
        s.refilled_ns = now
        return
    if now > s.refilled_ns:
        elapsed = now - s.refilled_ns
        if elapsed > TOKEN:
            elapsed = TOKEN        # a full bucket holds one second: more time adds nothing (and cannot overflow)
        s.tokens += elapsed * rate
    s.refilled_ns = now            # a replayed capture's clock may step back: start again from there
    if s.tokens > full:
        s.tokens = full            # also when a reload lowered the rate

cdef int quota_admit(const tables_t *t, vsys_state_t *states, int32_t vsys, uint64_t now,
                     uint16_t *charged) noexcept nogil:
    """Charge a new flow to `vsys`: R_NONE and `charged` = slot + 1 (0: nothing charged), or the quota's drop
    reason (counted for the vsys)."""
    cdef const vsys_quota_t *q
    cdef vsys_state_t *s
    charged[0] = 0
    if vsys < 0 or t.quota == NULL:
        return R_NONE
    q = &t.quota[vsys]
    if q.slot < 0:
        return R_NONE
    s = &states[q.slot]
    if q.max_sessions and s.sessions >= q.max_sessions:
        s.drops[QUOTA_SESSIONS] += 1
        return R_VSYS_SESSION_LIMIT
    if q.rate:
        bucket_refill(s, q.rate, now)
        if s.tokens < TOKEN:
            s.drops[QUOTA_RATE] += 1
            return R_VSYS_RATE_LIMIT
        s.tokens -= TOKEN
    s.sessions += 1
    charged[0] = <uint16_t>(q.slot + 1)
    return R_NONE

cdef inline void quota_release(vsys_state_t *states, uint16_t charged) noexcept nogil:
    """A flow charged to slot `charged - 1` ended (or was never inserted)."""
    if charged and states[charged - 1].sessions > 0:
        states[charged - 1].sessions -= 1


# ---- Python side: building the limits of a generation, binding slots, reading counters

cdef tenancy_build(tables_t *t, policy):
    """tables_t.quota from the policy's `vsys_limits` (slots are bound later, by the engine)."""
    cdef uint32_t v
    limits_of = getattr(policy, "limits_of", None)
    t.quota = <vsys_quota_t *>calloc(t.n_vsys + 1, sizeof(vsys_quota_t))
    if t.quota == NULL:
        raise MemoryError("not enough memory for the vsys quotas")
    for v in range(t.n_vsys):
        t.quota[v].slot = -1
        limits = limits_of(v) if limits_of is not None else None
        if limits is None:
            continue
        # a flow table holds far fewer than 2**32 flows: larger limits mean "no limit in practice"
        t.quota[v].max_sessions = min(limits.max_sessions or 0, 0xffffffff)
        t.quota[v].rate = min(limits.new_sessions_per_second or 0, 0xffffffff)


cdef tenancy_bind(vsys_state_t *states, dict slots, tables_t *t, tuple names, tuple current_names):
    """Give each vsys of a new generation its engine slot, by name; a vsys seen for the first time gets a
    free slot. Called before the loop can see the generation."""
    cdef uint32_t v
    cdef int32_t slot
    used = set(slots.values())
    for v in range(t.n_vsys):
        name = names[v]
        slot = slots.get(name, -1)
        if slot < 0:
            free_slot = next((i for i in range(VSYS_SLOTS) if i not in used), None)
            if free_slot is None:
                free_slot = _reclaim_slot(states, slots, set(names) | set(current_names))
            slot = free_slot
            memset(&states[slot], 0, sizeof(vsys_state_t))
            slots[name] = slot
            used.add(slot)
        t.quota[v].slot = slot


cdef int32_t _reclaim_slot(vsys_state_t *states, dict slots, set keep) except -1:
    """A slot of a vsys that neither the running nor the new generation has, and that holds no flow."""
    for name, slot in list(slots.items()):
        if name not in keep and states[<int32_t>slot].sessions == 0:
            del slots[name]
            return slot
    raise ValueError(f"more than {VSYS_SLOTS} virtual systems hold flows at once")


cdef dict tenancy_stats(const vsys_state_t *states, dict slots, const tables_t *t, tuple names):
    """Per vsys name: sessions now, limits in force (None: none), quota drops by reason. Vsys that left the
    policy stay listed while their flows last."""
    cdef uint32_t v
    cdef int32_t slot
    limits = {}
    if t != NULL and t.quota != NULL:
        for v in range(t.n_vsys):
            limits[names[v]] = (t.quota[v].max_sessions or None, t.quota[v].rate or None)
    out = {}
    for name, slot in slots.items():
        if name not in limits and states[slot].sessions == 0:
            continue
        max_sessions, rate = limits.get(name, (None, None))
        out[name] = {"sessions": states[slot].sessions, "max_sessions": max_sessions,
                     "new_sessions_per_second": rate,
                     "drops": {"vsys_session_limit": states[slot].drops[QUOTA_SESSIONS],
                               "vsys_rate_limit": states[slot].drops[QUOTA_RATE]}}
    return out
