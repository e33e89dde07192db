# User-ID tables (userid.pxi reads them in the loop): `UserTable`, built and derived by
# ngfw.dataplane.userid and handed to `Engine.set_users`.

# Every user table has a generation of its own. It starts at a random number, so a flow restored from an
# earlier process's state file never takes that process's generation for the one in force here.
cdef uint32_t _user_table_gen = <uint32_t>int.from_bytes(os.urandom(4), "little")


cdef uint32_t _slots_for(uint32_t count):
    cdef uint32_t n = 64
    while n < count * 2 + 2:
        n <<= 1
    return n


cdef class UserTable:
    """The user behind each address, and the directory groups of each user, as the packet loop reads them
    (userid.pxi). Immutable once built: `derive` makes the next table copy-on-write (a memcpy and the
    changed slots); `Engine.set_users` swaps one in. ngfw.dataplane.userid builds them from control's state."""

    cdef usertab_t t
    cdef readonly UserTable groups_owner   # the table whose group arrays these share (None: their own)

    def __cinit__(self):
        memset(&self.t, 0, sizeof(usertab_t))

    def __init__(self, addresses=(), groups=None):
        """`addresses`: (ipaddress address, user principal) pairs; `groups`: {user principal: (stamp, [group
        principals])} (ngfw.compiler.principals)."""
        global _user_table_gen
        items = list(addresses)
        self._alloc_addresses(_slots_for(len(items)))
        self._put_all(items)
        self._set_groups(groups or {})
        _user_table_gen += 1
        self.t.gen = _user_table_gen or 1

    cdef _alloc_addresses(self, uint32_t slots):
        self.t.addr = <uaddr_t *>calloc(slots, sizeof(uaddr_t))
        if self.t.addr == NULL:
            raise MemoryError("not enough memory for the user table")
        self.t.mask = slots - 1

    cdef _put_all(self, list items):
        cdef ip128_t ip
        cdef uint64_t user
        for address, principal in items:
            ip = ip_to_c(address)
            user = principal
            if user == 0:
                raise ValueError("a user principal is never 0")
            if usertab_user(&self.t, ip.hi, ip.lo) == 0:
                self.t.count += 1
            uaddr_put(self.t.addr, self.t.mask, ip.hi, ip.lo, user)

    cdef _set_groups(self, dict groups):
        cdef uint32_t slots = _slots_for(len(groups))
        cdef uint32_t n = 0, s
        cdef uint64_t user
        total = sum(len(g[1]) for g in groups.values())
        self.t.users = <ugroups_t *>calloc(slots, sizeof(ugroups_t))
        self.t.groups = <uint64_t *>calloc(total + 1, sizeof(uint64_t))
        if self.t.users == NULL or self.t.groups == NULL:
            raise MemoryError("not enough memory for the user table")
        self.t.gmask = slots - 1
        self.t.gcount = 0
        for principal, (stamp, members_of) in groups.items():
            user = principal
            if user == 0:
                raise ValueError("a user principal is never 0")
            s = <uint32_t>(ngfw_mix64(user) & self.t.gmask)
            while self.t.users[s].user:
                if self.t.users[s].user == user:
                    raise ValueError(f"user principal {principal} is given twice")
                s = (s + 1) & self.t.gmask
            self.t.users[s].user = user
            self.t.users[s].stamp = stamp
            self.t.users[s].off = n
            for group in members_of:
                self.t.groups[n] = group
                n += 1
            self.t.users[s].n = n - self.t.users[s].off
            self.t.gcount += 1

    def derive(self, puts=(), deletes=(), groups=None) -> UserTable:
        """A new table: this one with `puts` ((address, principal) pairs) mapped, `deletes` (addresses)
        unmapped, and `groups` ({principal: (stamp, [group principals])}) in place of its groups when given."""
        cdef UserTable new = UserTable.__new__(UserTable)
        cdef ip128_t ip
        cdef uint32_t slots = self.t.mask + 1
        cdef uint32_t s
        global _user_table_gen
        puts = list(puts)
        deletes = list(deletes)
        if (self.t.count + len(puts)) * 2 + 2 > slots:
            slots = _slots_for(self.t.count + len(puts))
            new._alloc_addresses(slots)
            for s in range(self.t.mask + 1):   # rehashed into the larger table
                if self.t.addr[s].user:
                    uaddr_put(new.t.addr, new.t.mask, self.t.addr[s].k_hi, self.t.addr[s].k_lo, self.t.addr[s].user)
        else:
            new._alloc_addresses(slots)
            memcpy(new.t.addr, self.t.addr, <size_t>slots * sizeof(uaddr_t))
        new.t.count = self.t.count
        for address in deletes:
            ip = ip_to_c(address)
            if uaddr_del(new.t.addr, new.t.mask, ip.hi, ip.lo):
                new.t.count -= 1
        new._put_all(puts)
        if groups is not None:
            new._set_groups(groups)
        else:
            new.groups_owner = self.groups_owner or self
            new.t.users = self.t.users
            new.t.groups = self.t.groups
            new.t.gmask = self.t.gmask
            new.t.gcount = self.t.gcount
        _user_table_gen += 1
        new.t.gen = _user_table_gen or 1
        return new

    def user_of(self, address) -> int:
        """The principal of the user behind `address` (0: none)."""
        cdef ip128_t ip = ip_to_c(address)
        return usertab_user(&self.t, ip.hi, ip.lo)

    def groups_of(self, uint64_t user) -> tuple:
        """(stamp, [group principals]) of a user, or None."""
        cdef const ugroups_t *g = usertab_groups(&self.t, user)
        if g == NULL:
            return None
        return g.stamp, [self.t.groups[g.off + i] for i in range(g.n)]

    @property
    def generation(self) -> int:
        return self.t.gen

    def __len__(self) -> int:
        return self.t.count

    def __dealloc__(self):
        free(self.t.addr)
        if self.groups_owner is None:
            free(self.t.users)
            free(self.t.groups)


# ---------------------------------------------------------------- Engine.set_users

cdef object users_swap_in(Engine self, UserTable users, double timeout):
    cdef double deadline
    if not ngfw_load_u32(&self.e.running):
        self.e.users = &users.t
        self.users_current = users
        return
    ngfw_store_ptr(<void **>&self.e.users_pending, <void *>&users.t)
    engine_wake(self.e)
    deadline = time.monotonic() + timeout
    while ngfw_load_ptr(<void **>&self.e.users_pending) != NULL:
        if time.monotonic() > deadline:
            if ngfw_cas_ptr(<void **>&self.e.users_pending, <void *>&users.t, NULL):
                raise TimeoutError("the packet loop did not pick up the new user table")
            break   # taken just now
        time.sleep(0.0002)
    self.users_current = users
