# Policy tables: `Tables`, one policy generation (rules, zones, workloads, App-ID catalogue, threat profiles)
# in C memory, built off the hot path and handed to `Engine.set_tables`; and the Hyperscan database cache.

# ---------------------------------------------------------------- compiled-database cache

def _hs_cache_file(prefix, h):
    """Where a Hyperscan database whose inputs hash to `h` is kept: compiling takes seconds, loading
    milliseconds."""
    from ngfw.compiler.catalogue import cache_dir
    return os.path.join(str(cache_dir()), f"{prefix}-{h.hexdigest()[:32]}.db")


def _hs_cache_path(signatures):
    """The cache file of the App-ID catalogue's signature database."""
    import hashlib
    h = hashlib.sha256(hs_version())
    for i, sig in enumerate(signatures):
        h.update(f"{i}\0{sig.hs_flags}\0{sig.pattern}\0".encode("utf-8", "surrogateescape"))
    return _hs_cache_file("hs-block", h)


cdef hs_database_t *_hs_cache_load(str path):
    cdef hs_database_t *db = NULL
    cdef bytes data
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return NULL
    if hs_deserialize_database(data, len(data), &db) != HS_SUCCESS:
        return NULL   # stale or from another libhs: compile afresh
    return db


cdef void _hs_cache_store(str path, hs_database_t *db):
    cdef char *raw = NULL
    cdef size_t n = 0
    if hs_serialize_database(db, &raw, &n) != HS_SUCCESS:
        return
    try:
        data = raw[:n]
    finally:
        free(raw)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass   # a cache that cannot be written only costs time


# ---------------------------------------------------------------- policy tables

cdef class Tables:
    """One policy generation in C memory; built off the hot path, then handed to `Engine.set_tables`."""

    cdef tables_t t
    cdef readonly object policy
    cdef readonly double build_seconds
    cdef readonly list app_names
    cdef readonly InspectTables inspect
    cdef readonly list profile_tables   # InspectTables each profile uses (kept alive with the tables)
    cdef readonly Tables apps_owner   # the generation whose App-ID tables these share (None: their own)

    def __cinit__(self):
        memset(&self.t, 0, sizeof(tables_t))

    def __init__(self, policy, port_index=None, InspectTables inspect=None, generation=None, Tables apps_from=None):
        """`generation` (default: the policy's version) tells flows decided by other tables to be decided again;
        `apps_from`: share that generation's App-ID tables when the catalogue is the same (identity updates)."""
        port_index = port_index or {}
        started = time.perf_counter()
        self.policy = policy
        if apps_from is not None and apps_from.policy.catalogue is policy.catalogue:
            self.apps_owner = apps_from.apps_owner or apps_from
        self._build(policy, port_index)
        if generation is not None:
            self.t.generation = generation
        self._build_profiles(policy, inspect)
        self.build_seconds = time.perf_counter() - started

    cdef _build_profiles(self, policy, InspectTables inspect):
        """Threat profiles of the policy against the signature sets of `inspect`."""
        cdef tables_t *t = &self.t
        cdef uint32_t i
        profiles = tuple(getattr(policy, "profiles", ()) or ())
        self.inspect = inspect
        t.inspect = &inspect.T if inspect is not None else NULL
        t.n_profiles = len(profiles)
        t.profiles = <iprofile_t *>calloc(len(profiles) + 1, sizeof(iprofile_t))
        if t.profiles == NULL:
            raise MemoryError("not enough memory for the threat profiles")
        known = inspect.set_names if inspect is not None else []
        cdef InspectTables own
        self.profile_tables = []
        problems = []
        for i, prof in enumerate(profiles):
            names = []
            for name in (prof.signature_sets or known):
                if name not in known:
                    raise ValueError(f"threat profile {prof.name} names signature set {name!r}, which the dataplane "
                                     f"does not have (it has: {', '.join(known) or 'none; start it with --rules'})")
                if name not in names:
                    names.append(name)
            if inspect is None:
                continue
            # per profile its own databases, of its own sets only (built once per combination, cached)
            own = inspect.subset(names)
            self.profile_tables.append(own)
            t.profiles[i].T = &own.T
            # every set of the profile (1 to 64): `1 << n` in C int lost the sets from the 32nd on
            t.profiles[i].set_mask = (<uint64_t>0xFFFFFFFFFFFFFFFF) >> (64 - len(own.set_names)) if own.set_names else 0
            t.profiles[i].action_override = {"as-written": 0, "alert": 1, "drop": 2}[prof.action]
            t.profiles[i].depth = prof.depth
            t.profiles[i].vsys = prof.vsys
            vsys_name = policy.vsys_name(prof.vsys)
            if prof.exceptions or prof.thresholds:
                problems += signature_problems(prof, f"ThreatProfile {vsys_name}/{prof.name}", own,
                                               inspect.skipped_sids_of(names))
            profile_exceptions(&t.profiles[i], prof, own, len(policy.workloads), profile_key(vsys_name, prof.name))
        if problems:
            raise ValueError("; ".join(problems))
        for i, prof in enumerate(profiles):
            t.profiles[i].capture = min(getattr(prof, "capture", 0) or 0, CAP_MAX_PACKETS)
        for i, rule in enumerate(policy.rules):
            t.rules[i].profile = getattr(rule, "profile", -1)
            t.rules[i].capture = min(getattr(rule, "capture", 0) or 0, CAP_MAX_PACKETS)

    cdef _build(self, policy, dict port_index):
        cdef tables_t *t = &self.t
        cdef uint32_t n_wl = len(policy.workloads)
        cdef uint32_t n_rules = len(policy.rules)
        cdef uint32_t n_vsys = len(policy.vsys)
        cdef uint32_t words = (n_wl + 63) // 64
        cdef uint32_t i, w, nbits = 0, ncidr = 0, nsvc = 0
        cdef int32_t prev
        cdef ip128_t ip, mask
        cdef rule_t *r
        t.generation = policy.version
        t.n_wl = n_wl
        t.n_rules = n_rules
        t.n_vsys = n_vsys
        cat = policy.catalogue
        app_words = ((len(cat.apps) if cat is not None else 1) + 63) // 64
        napp_rules = 0
        for rule in policy.rules:
            nbits += (1 if rule.src.workloads else 0) + (1 if rule.dst.workloads else 0)
            napp_rules += 1 if rule.apps else 0
            ncidr += len(rule.src.cidrs) + len(rule.dst.cidrs)
            nsvc += len(rule.services)
        t.rules = <rule_t *>calloc(n_rules + 1, sizeof(rule_t))
        t.bits = <uint64_t *>calloc(nbits * words + napp_rules * app_words + 1, sizeof(uint64_t))
        t.app_words = app_words
        t.cidrs = <cidr_t *>calloc(ncidr + 1, sizeof(cidr_t))
        t.svcs = <svc_t *>calloc(nsvc + 1, sizeof(svc_t))
        t.wl_vsys = <int32_t *>calloc(n_wl + 1, sizeof(int32_t))
        t.wl_port = <int32_t *>calloc(n_wl + 1, sizeof(int32_t))
        t.cand_off = <uint32_t *>calloc(n_wl + n_vsys + 1, sizeof(uint32_t))
        t.cand_len = <uint32_t *>calloc(n_wl + n_vsys + 1, sizeof(uint32_t))
        t.rule_hits = <uint64_t *>calloc(n_rules + 1, sizeof(uint64_t))
        t.default_hits = <uint64_t *>calloc(n_vsys + 1, sizeof(uint64_t))
        t.wl_here = <uint8_t *>calloc(n_wl + 1, 1)
        if (t.wl_here == NULL or t.rules == NULL or t.bits == NULL or t.cidrs == NULL or t.svcs == NULL
                or t.wl_vsys == NULL or t.wl_port == NULL or t.cand_off == NULL or t.cand_len == NULL
                or t.rule_hits == NULL or t.default_hits == NULL):
            raise MemoryError("not enough memory for the policy tables")
        n_macs = sum(len(wl.macs) for wl in policy.workloads)
        n_ips = sum(len(wl.ips) for wl in policy.workloads)
        if idmap_init(&t.wl_by_mac, n_macs) < 0 or idmap_init(&t.wl_by_ip, n_ips) < 0:
            raise MemoryError("not enough memory for the identity tables")

        for w, wl in enumerate(policy.workloads):
            t.wl_vsys[w] = wl.vsys
            t.wl_port[w] = port_index.get(wl.port, -1) if wl.port else -1
            for mac in wl.macs:
                prev = idmap_put(&t.wl_by_mac, 0, mac_to_c(bytes(mac)), w)
                if prev >= 0:
                    raise ValueError(f"MAC {bytes(mac).hex(':')} is bound to workloads "
                                     f"{policy.workloads[prev].name} and {wl.name}")
            for addr in wl.ips:
                ip = ip_to_c(addr)
                prev = idmap_put(&t.wl_by_ip, ip.hi, ip.lo, w)
                if prev >= 0:
                    raise ValueError(f"IP {addr} is bound to workloads {policy.workloads[prev].name} and {wl.name}")

        nbits = 0
        ncidr = 0
        nsvc = 0
        prev_vsys = -1
        for i, rule in enumerate(policy.rules):
            if rule.vsys < prev_vsys:
                raise ValueError("compiled rules must be grouped by vsys")
            prev_vsys = rule.vsys
            r = &t.rules[i]
            r.vsys = rule.vsys
            r.action = int(rule.action)
            r.log = 1 if rule.log else 0
            for side in (0, 1):
                aset = rule.src if side == 0 else rule.dst
                bits_off = -1
                if aset.workloads:
                    bits_off = nbits * words
                    nbits += 1
                    for w in aset.workloads:
                        t.bits[bits_off + (w >> 6)] |= (<uint64_t>1) << (w & 63)
                first = ncidr
                for net in aset.cidrs:
                    ip = ip_to_c(net.network_address)
                    plen = net.prefixlen + (96 if net.version == 4 else 0)
                    mask_int = ((1 << plen) - 1) << (128 - plen) if plen else 0
                    mask = ip_from_int(mask_int)
                    t.cidrs[ncidr].mask_hi = mask.hi
                    t.cidrs[ncidr].mask_lo = mask.lo
                    t.cidrs[ncidr].net_hi = ip.hi & mask.hi
                    t.cidrs[ncidr].net_lo = ip.lo & mask.lo
                    t.cidrs[ncidr].v6 = 1 if net.version == 6 else 0
                    ncidr += 1
                if side == 0:
                    r.src_any = 1 if aset.any else 0
                    r.src_bits = bits_off
                    r.src_cidr = first
                    r.src_ncidr = ncidr - first
                else:
                    r.dst_any = 1 if aset.any else 0
                    r.dst_bits = bits_off
                    r.dst_cidr = first
                    r.dst_ncidr = ncidr - first
            r.app_bits = -1
            r.app_default = 1 if rule.app_default else 0
            r.svc = nsvc
            r.nsvc = len(rule.services)
            for svc in rule.services:
                t.svcs[nsvc].proto = svc.proto
                t.svcs[nsvc].lo = svc.port_lo
                t.svcs[nsvc].hi = svc.port_hi
                nsvc += 1
        self._build_users(policy)
        # application sets live after the member bitmaps
        app_off = nbits * words
        for i, rule in enumerate(policy.rules):
            if rule.apps:
                t.rules[i].app_bits = app_off
                for app_id in rule.apps:
                    t.bits[app_off + (app_id >> 6)] |= (<uint64_t>1) << (app_id & 63)
                app_off += app_words
        self._build_candidates(words)
        if self.apps_owner is None:
            self._build_apps(policy)
        else:
            self._share_apps()
        tenancy_build(t, policy)

    cdef _build_users(self, policy):
        """Rules' `users:` (User-ID, userid.pxi): the principals each names, in item order."""
        cdef tables_t *t = &self.t
        cdef uint32_t n = 0, i
        cdef rule_t *r
        for rule in policy.rules:
            n += len(getattr(rule, "user_principals", ()) or ())
        t.uprin = <uint64_t *>calloc(n + 1, sizeof(uint64_t))
        t.uprin_item = <uint16_t *>calloc(n + 1, sizeof(uint16_t))
        if t.uprin == NULL or t.uprin_item == NULL:
            raise MemoryError("not enough memory for the policy tables")
        n = 0
        for i, rule in enumerate(policy.rules):
            r = &t.rules[i]
            r.users = -1
            r.users_known = -1
            r.users_unknown = -1
            if not getattr(rule, "users", ()):
                continue
            if len(rule.users) > 255:
                raise ValueError(f"rule {rule.name}: at most 255 items in users")
            r.users = n
            r.users_known = rule.users_known
            r.users_unknown = rule.users_unknown
            for value, item in rule.user_principals:
                t.uprin[n] = value
                t.uprin_item[n] = item
                n += 1
            r.n_users = n - r.users

    cdef _share_apps(self):
        """The owner's App-ID tables (databases, maps), with flow counters of our own."""
        cdef apptables_t *a = &self.t.apps
        memcpy(a, &self.apps_owner.t.apps, sizeof(apptables_t))
        self.app_names = self.apps_owner.app_names
        a.app_flows = <uint64_t *>calloc((self.t.n_vsys + 1) * a.n_apps, sizeof(uint64_t))
        if a.app_flows == NULL:
            raise MemoryError("not enough memory for the App-ID tables")

    cdef _build_apps(self, policy):
        """App-ID tables from the policy's catalogue: Hyperscan database, host and port maps, rule app sets."""
        cdef tables_t *t = &self.t
        cdef apptables_t *a = &t.apps
        cdef uint32_t i, n
        cdef hs_compile_error_t *err = NULL
        cdef const char **exprs = NULL
        cdef unsigned int *flags = NULL
        cdef unsigned int *ids = NULL
        cdef uint32_t slot
        cdef bytes key
        cat = policy.catalogue
        self.app_names = [""] if cat is None else [app.name for app in cat.apps]
        a.n_apps = len(self.app_names)
        a.parent = <uint16_t *>malloc(a.n_apps * sizeof(uint16_t))
        a.port_app = <uint16_t *>calloc(2 * 65536, sizeof(uint16_t))
        a.app_flows = <uint64_t *>calloc((t.n_vsys + 1) * a.n_apps, sizeof(uint64_t))
        a.n_builtin = len(BUILTIN_APPS)
        a.builtin_app = <uint16_t *>calloc(a.n_builtin, sizeof(uint16_t))
        a.tls_variant = <uint16_t *>calloc(a.n_apps, sizeof(uint16_t))
        if a.parent == NULL or a.port_app == NULL or a.app_flows == NULL or a.builtin_app == NULL \
                or a.tls_variant == NULL:
            raise MemoryError("not enough memory for the App-ID tables")
        for i in range(a.n_apps):
            a.parent[i] = 0xffff
        n_ports = 0 if cat is None else sum(len(app.ports) for app in cat.apps)
        n_children = 0 if cat is None else len(cat.children_by_port)
        if idmap_init(&a.app_ports, n_ports + 1) < 0 or idmap_init(&a.port_children, n_children + 1) < 0:
            raise MemoryError("not enough memory for the App-ID tables")
        if cat is None:
            return
        by_name = cat.by_name
        for i, name in enumerate(BUILTIN_APPS):
            a.builtin_app[i] = by_name.get(name, 0) if name else 0
        for name, variant in STARTTLS_VARIANTS.items():
            if name in by_name and variant in by_name:
                a.tls_variant[by_name[name]] = by_name[variant]
        for app in cat.apps:
            if app.parent is not None:
                a.parent[app.id] = app.parent
            for l4, port in app.ports:
                idmap_put(&a.app_ports, 0, (<uint64_t>app.id << 32) | (<uint64_t>l4 << 16) | port, 1)
        for (l4, port), apps in cat.default_ports.items():
            if l4 in (6, 17) and apps:
                a.port_app[(0 if l4 == 6 else 1) * 65536 + port] = apps[0]
        for (parent, l4, port), child in cat.children_by_port.items():
            idmap_put(&a.port_children, 0, (<uint64_t>parent << 32) | (<uint64_t>l4 << 16) | port, child)
        for proto, app_id in cat.ip_protocols.items():
            a.ipproto_app[proto] = app_id
        a.unknown_tcp = by_name.get("unknown-tcp", 0)
        a.unknown_udp = by_name.get("unknown-udp", 0)
        a.unknown = by_name.get("unknown", 0)
        a.incomplete = by_name.get("incomplete", 0)
        a.insufficient = by_name.get("insufficient-data", 0)
        # host names: exact names as written, `*.domain` stored as ".domain" (subdomains only)
        n = 16
        while n < 2 * len(cat.hosts) + 2:
            n <<= 1
        a.hosts = <hostent_t *>calloc(n, sizeof(hostent_t))
        if a.hosts == NULL:
            raise MemoryError("not enough memory for the App-ID host table")
        a.host_mask = n - 1
        for rule in cat.hosts:
            key = (("." if rule.wildcard else "") + rule.domain.lower()).encode("ascii", "ignore")
            if not key or len(key) > HOST_MAX:
                continue
            if host_find(a, key, len(key)) != NULL:
                continue   # the catalogue orders the most specific rule first
            slot = host_hash(key, len(key)) & a.host_mask
            while a.hosts[slot].len:
                slot = (slot + 1) & a.host_mask
            memcpy(a.hosts[slot].name, <const char *>key, len(key))
            a.hosts[slot].len = len(key)
            a.hosts[slot].wildcard = rule.wildcard
            a.hosts[slot].app = rule.app
        # signatures: one block-mode database, expression id = signature id
        a.n_sigs = len(cat.signatures)
        if a.n_sigs:
            a.sig_app = <uint16_t *>calloc(a.n_sigs, sizeof(uint16_t))
            a.sig_l4 = <uint8_t *>calloc(a.n_sigs, 1)
            a.sig_dir = <uint8_t *>calloc(a.n_sigs, 1)
            a.sig_prio = <uint16_t *>calloc(a.n_sigs, sizeof(uint16_t))
            a.sig_minlen = <uint16_t *>calloc(a.n_sigs, sizeof(uint16_t))
            exprs = <const char **>calloc(a.n_sigs, sizeof(char *))
            flags = <unsigned int *>calloc(a.n_sigs, sizeof(unsigned int))
            ids = <unsigned int *>calloc(a.n_sigs, sizeof(unsigned int))
            patterns = [sig.pattern.encode("utf-8") for sig in cat.signatures]
            try:
                for i, sig in enumerate(cat.signatures):
                    a.sig_app[i] = sig.app
                    a.sig_l4[i] = sig.l4
                    a.sig_dir[i] = sig.direction
                    a.sig_prio[i] = sig.priority
                    a.sig_minlen[i] = sig.min_len
                    exprs[i] = patterns[i]
                    flags[i] = sig.hs_flags
                    ids[i] = i
                cache = _hs_cache_path(cat.signatures)
                a.db = _hs_cache_load(cache)
                if a.db == NULL:
                    if hs_compile_multi(exprs, flags, ids, a.n_sigs, HS_MODE_BLOCK, NULL, &a.db, &err) != HS_SUCCESS:
                        where = cat.signatures[err.expression].pattern if 0 <= err.expression < a.n_sigs else ""
                        message = err.message.decode(errors="replace")
                        hs_free_compile_error(err)
                        raise ValueError(f"App-ID signatures do not compile: {message} ({where!r})")
                    _hs_cache_store(cache, a.db)
                if hs_alloc_scratch(a.db, &a.scratch) != HS_SUCCESS:
                    raise MemoryError("not enough memory for Hyperscan scratch")
            finally:
                free(exprs)
                free(flags)
                free(ids)

    cdef _build_candidates(self, uint32_t words):
        """Per-source candidate lists, so a flow scans only the rules that can match its source."""
        cdef tables_t *t = &self.t
        cdef uint32_t lists = t.n_wl + t.n_vsys
        cdef uint32_t i, li, v, total = 0, pass_no
        cdef int32_t w
        cdef rule_t *r
        cdef uint32_t *first = <uint32_t *>calloc(t.n_vsys + 1, sizeof(uint32_t))
        cdef uint32_t *last = <uint32_t *>calloc(t.n_vsys + 1, sizeof(uint32_t))
        if first == NULL or last == NULL:
            free(first); free(last)
            raise MemoryError("not enough memory for the policy tables")
        for v in range(t.n_vsys):
            first[v] = t.n_rules
        for i in range(t.n_rules):
            v = t.rules[i].vsys
            if first[v] == t.n_rules:
                first[v] = i
            last[v] = i + 1
        # two passes: count, then fill
        for pass_no in range(2):
            total = 0
            for li in range(lists):
                if pass_no == 1:
                    t.cand_off[li] = total
                if li < t.n_wl:
                    w = li
                    v = t.wl_vsys[w]
                else:
                    w = -1
                    v = li - t.n_wl
                for i in range(first[v], last[v]):
                    r = &t.rules[i]
                    if (r.src_any or r.src_ncidr > 0 or
                            (w >= 0 and r.src_bits >= 0 and (t.bits[r.src_bits + (w >> 6)] >> (w & 63)) & 1)):
                        if pass_no == 1:
                            t.cand[total] = i
                        total += 1
                if pass_no == 1:
                    t.cand_len[li] = total - t.cand_off[li]
            if pass_no == 0:
                t.cand = <int32_t *>calloc(total + 1, sizeof(int32_t))
                if t.cand == NULL:
                    free(first); free(last)
                    raise MemoryError("not enough memory for the policy tables")
        free(first)
        free(last)

    def rule_hits(self) -> list:
        return [self.t.rule_hits[i] for i in range(self.t.n_rules)]

    def default_hits(self) -> list:
        return [self.t.default_hits[i] for i in range(self.t.n_vsys)]

    @property
    def generation(self) -> int:
        return self.t.generation

    def app_flows(self) -> dict:
        """Flows identified per (vsys index, app name), non-zero only."""
        cdef apptables_t *a = &self.t.apps
        out = {}
        if a.app_flows == NULL:
            return out
        for v in range(self.t.n_vsys):
            for i in range(a.n_apps):
                if a.app_flows[v * a.n_apps + i]:
                    out[(v, self.app_names[i])] = a.app_flows[v * a.n_apps + i]
        return out

    def __dealloc__(self):
        cdef apptables_t *a = &self.t.apps
        cdef uint32_t i
        if self.apps_owner is not None:
            free(a.app_flows)      # the rest is the owner's
            memset(a, 0, sizeof(apptables_t))
        if a.scratch != NULL:
            hs_free_scratch(a.scratch)
        if a.db != NULL:
            hs_free_database(a.db)
        free(a.builtin_app); free(a.tls_variant); free(a.sig_app); free(a.sig_l4); free(a.sig_dir); free(a.sig_prio)
        free(a.sig_minlen)
        free(a.port_app); free(a.hosts); free(a.parent); free(a.app_flows)
        idmap_free(&a.app_ports)
        idmap_free(&a.port_children)
        free(self.t.rules); free(self.t.bits); free(self.t.cidrs); free(self.t.svcs)
        free(self.t.wl_vsys); free(self.t.wl_port); free(self.t.cand_off); free(self.t.cand_len)
        if self.t.profiles != NULL:
            for i in range(self.t.n_profiles):
                free_profile_exceptions(&self.t.profiles[i])
        free(self.t.cand); free(self.t.rule_hits); free(self.t.default_hits); free(self.t.profiles)
        free(self.t.quota)
        free(self.t.wl_here)
        free(self.t.uprin)
        free(self.t.uprin_item)
        idmap_free(&self.t.wl_by_mac)
        idmap_free(&self.t.wl_by_ip)


# ---------------------------------------------------------------- Engine.set_tables

cdef object tables_swap_in(Engine self, Tables tables, double timeout):
    cdef double deadline
    cdef uint32_t i
    if any(getattr(r, "capture", 0) for r in tables.policy.rules) or \
            any(getattr(p, "capture", 0) for p in (getattr(tables.policy, "profiles", ()) or ())):
        capture_ring_alloc(self)
    if self.current is not None and self.current.t.wl_here != NULL and tables.t.wl_here != NULL:
        # which workloads this dataplane has seen on its VM side, by name (indexes change)
        old_policy, new_policy = self.current.policy, tables.policy
        old_index = {(old_policy.vsys_name(wl.vsys), wl.name): i for i, wl in enumerate(old_policy.workloads)}
        for i, wl in enumerate(new_policy.workloads):
            j = old_index.get((new_policy.vsys_name(wl.vsys), wl.name))
            if j is not None and j < self.current.t.n_wl:
                tables.t.wl_here[i] = self.current.t.wl_here[<uint32_t>j]
    tenancy_bind(self.e.vsys, self.vsys_slots, &tables.t, tuple(tables.policy.vsys),
                 tuple(self.current.policy.vsys) if self.current is not None else ())
    self.app_names = tables.app_names
    for own in ([tables.inspect] if tables.inspect is not None else []) + list(tables.profile_tables or []):
        self.rulesets.pop(own.id, None)
        self.rulesets[own.id] = own
    while len(self.rulesets) > 16:
        del self.rulesets[next(iter(self.rulesets))]
    if not ngfw_load_u32(&self.e.running):
        self.e.tables = &tables.t
        self.current = tables
        return
    ngfw_store_ptr(<void **>&self.e.pending, <void *>&tables.t)
    engine_wake(self.e)
    deadline = time.monotonic() + timeout
    while ngfw_load_ptr(<void **>&self.e.pending) != NULL:
        if time.monotonic() > deadline:
            raise TimeoutError("the packet loop did not pick up the new policy")
        time.sleep(0.0005)
    self.current = tables

cdef inline void adopt_tables(engine_t *e) noexcept nogil:
    cdef tables_t *p = <tables_t *>ngfw_load_ptr(<void **>&e.pending)
    cdef usertab_t *u = <usertab_t *>ngfw_load_ptr(<void **>&e.users_pending)
    if p != NULL:
        e.tables = p
        # bypassed flows come back before the swap is acknowledged: the new policy decides their next frame
        bypass_leave_all(e, ngfw_now_ns())
        ngfw_store_ptr(<void **>&e.pending, NULL)
    if u != NULL:
        e.users = u
        if p == NULL:
            # bypassed flows whose user changed come back before the swap is acknowledged (bypass.pxi)
            bypass_leave_user_changed(e, ngfw_now_ns())
        ngfw_store_ptr(<void **>&e.users_pending, NULL)
