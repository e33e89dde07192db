# Stage 2b, users (User-ID): the user behind a flow's source address, looked up once per flow.
#
# Control maps addresses to users (logins read from syslog, the identity API, VM ownership) and resolves the
# members of directory groups; a host's agent (ngfw.dataplane.userid) turns that into this table: address ->
# the user's principal (ngfw.compiler.principals), and user -> the principals of its directory groups. Rules
# name principals too (policy.pxi), so the two tables never need each other's numbering: a login never
# rebuilds a rule table, and a commit never rebuilds this one.
#
# The table is immutable once the loop uses it. A change is a new table, made copy-on-write from the running
# one off the hot path (a login is one slot of 100,000: the arrays are copied with memcpy and the slot
# changed) and swapped in between bursts, as policy tables are. Each table has a generation of its own; a
# flow whose decision looked at a `users:` condition remembers the user and group stamp it was decided with,
# and on its next packet after a swap looks its user up again -- decided again only if they changed
# (worker.pxi). Other flows never look.

ctypedef struct uaddr_t:
    uint64_t k_hi          # the address as ip128_t (IPv4 mapped)
    uint64_t k_lo
    uint64_t user          # the user's principal; 0: an empty slot

ctypedef struct ugroups_t:
    uint64_t user          # the user's principal; 0: an empty slot
    uint32_t stamp         # differs whenever the user's groups do
    uint32_t off           # its groups: usertab_t.groups[off:off + n]
    uint32_t n

ctypedef struct usertab_t:
    uint32_t gen           # the table's generation (never 0: 0 is "no table" in a flow)
    uint32_t mask          # address slots - 1
    uint32_t count         # addresses mapped
    uaddr_t *addr
    uint32_t gmask         # user slots - 1
    uint32_t gcount        # users with groups
    ugroups_t *users
    uint64_t *groups

ctypedef struct userctx_t:     # a flow's user as policy matching sees it
    uint64_t user              # 0: no user is known behind the source address
    const uint64_t *groups
    uint32_t n_groups

cdef inline uint32_t uaddr_slot(uint32_t mask, uint64_t hi, uint64_t lo) noexcept nogil:
    return <uint32_t>(ngfw_mix64(hi ^ ngfw_mix64(lo ^ 0x55d1)) & mask)

cdef inline uint64_t usertab_user(const usertab_t *u, uint64_t hi, uint64_t lo) noexcept nogil:
    """The principal of the user behind an address, 0 for none."""
    cdef uint32_t s
    if u == NULL or u.count == 0:
        return 0
    s = uaddr_slot(u.mask, hi, lo)
    while u.addr[s].user:
        if u.addr[s].k_hi == hi and u.addr[s].k_lo == lo:
            return u.addr[s].user
        s = (s + 1) & u.mask
    return 0

cdef inline const ugroups_t *usertab_groups(const usertab_t *u, uint64_t user) noexcept nogil:
    """The directory groups of a user, NULL when it is in none."""
    cdef uint32_t s
    if u == NULL or u.gcount == 0 or user == 0:
        return NULL
    s = <uint32_t>(ngfw_mix64(user) & u.gmask)
    while u.users[s].user:
        if u.users[s].user == user:
            return &u.users[s]
        s = (s + 1) & u.gmask
    return NULL

cdef void uaddr_put(uaddr_t *slots, uint32_t mask, uint64_t hi, uint64_t lo, uint64_t user) noexcept nogil:
    """Map an address (there must be a free slot): a new one, or a new user for one mapped already."""
    cdef uint32_t s = uaddr_slot(mask, hi, lo)
    while slots[s].user:
        if slots[s].k_hi == hi and slots[s].k_lo == lo:
            slots[s].user = user
            return
        s = (s + 1) & mask
    slots[s].k_hi = hi
    slots[s].k_lo = lo
    slots[s].user = user

cdef bint uaddr_del(uaddr_t *slots, uint32_t mask, uint64_t hi, uint64_t lo) noexcept nogil:
    """Unmap an address, shifting later entries of its probe run back (no tombstones); False if unmapped."""
    cdef uint32_t s = uaddr_slot(mask, hi, lo)
    cdef uint32_t j, home
    while slots[s].user:
        if slots[s].k_hi == hi and slots[s].k_lo == lo:
            break
        s = (s + 1) & mask
    else:
        return False
    slots[s].user = 0
    j = s
    while True:
        j = (j + 1) & mask
        if not slots[j].user:
            return True
        home = uaddr_slot(mask, slots[j].k_hi, slots[j].k_lo)
        if (j > s and (home <= s or home > j)) or (j < s and (home <= s and home > j)):
            slots[s] = slots[j]
            slots[j].user = 0
            s = j

cdef inline bint usertab_contains(const uint64_t *groups, uint32_t n, uint64_t p) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        if groups[i] == p:
            return True
    return False

cdef inline uint32_t users_gen(const engine_t *e) noexcept nogil:
    return e.users.gen if e.users != NULL else 0

cdef inline void flow_user_lookup(engine_t *e, flow_t *f) noexcept nogil:
    """The user behind the flow's initiator, from the user table in force (once per flow and table)."""
    cdef const ugroups_t *g
    if f.init_is_a:
        f.user = usertab_user(e.users, f.key.a_hi, f.key.a_lo)
    else:
        f.user = usertab_user(e.users, f.key.b_hi, f.key.b_lo)
    g = usertab_groups(e.users, f.user)
    f.user_stamp = g.stamp if g != NULL else 0
    f.user_gen = users_gen(e)

cdef inline bint flow_user_changed(engine_t *e, flow_t *f) noexcept nogil:
    """After a swap of the user table: is the flow's user (or are its groups) another now?"""
    cdef uint64_t user = f.user
    cdef uint32_t stamp = f.user_stamp
    flow_user_lookup(e, f)
    return f.user != user or f.user_stamp != stamp
