# cython: language_level=3
"""The wire program (bpf/wire.bpf.c) from the dataplane's side, through libbpf: load it, set up its maps,
attach it as a tc ingress filter, find the instance a dead dataplane left on an interface, read its counters.

Policy (which wires, which mode, what to log) lives in ngfw.dataplane.failmode; this module only speaks
libbpf and the layout of bpf/wire.h. Errors are OSError with the errno the kernel gave and, in `detail`,
what libbpf said (the verifier's log when it refused the program).
"""

from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from posix.mman cimport mmap, munmap, PROT_READ, PROT_WRITE, MAP_SHARED, MAP_FAILED
from posix.unistd cimport close

cdef extern from "<errno.h>":
    int errno
    enum:
        ENOENT
        EINVAL
        EEXIST

cdef extern from "<unistd.h>":
    long sysconf(int name)
    enum:
        _SC_PAGESIZE

cdef extern from "<linux/bpf.h>":
    struct bpf_prog_info:
        uint32_t id
        uint32_t nr_map_ids
        uint64_t map_ids
        char name[16]
    struct bpf_map_info:
        uint32_t id
        uint32_t value_size
        char name[16]

cdef extern from "<bpf/libbpf.h>":
    struct bpf_object:
        pass
    struct bpf_program:
        pass
    struct bpf_map:
        pass
    bpf_object *bpf_object__open_file(const char *path, const void *opts)
    int bpf_object__load(bpf_object *obj)
    void bpf_object__close(bpf_object *obj)
    bpf_program *bpf_object__find_program_by_name(const bpf_object *obj, const char *name)
    const char *bpf_program__section_name(const bpf_program *prog)
    int bpf_program__fd(const bpf_program *prog)
    bpf_map *bpf_object__find_map_by_name(const bpf_object *obj, const char *name)
    bpf_map *bpf_object__next_map(const bpf_object *obj, const bpf_map *map)
    const char *bpf_map__name(const bpf_map *map)
    uint32_t bpf_map__value_size(const bpf_map *map)
    uint32_t bpf_map__max_entries(const bpf_map *map)
    uint32_t bpf_map__map_flags(const bpf_map *map)
    int bpf_map__fd(const bpf_map *map)
    int libbpf_num_possible_cpus()
    ctypedef enum bpf_tc_attach_point:
        BPF_TC_INGRESS
    enum:
        BPF_TC_F_REPLACE
    struct bpf_tc_hook:
        size_t sz
        int ifindex
        bpf_tc_attach_point attach_point
        uint32_t parent
    struct bpf_tc_opts:
        size_t sz
        int prog_fd
        uint32_t flags
        uint32_t prog_id
        uint32_t handle
        uint32_t priority
    int bpf_tc_hook_create(bpf_tc_hook *hook)
    int bpf_tc_attach(const bpf_tc_hook *hook, bpf_tc_opts *opts)
    int bpf_tc_detach(const bpf_tc_hook *hook, const bpf_tc_opts *opts)
    int bpf_tc_query(const bpf_tc_hook *hook, bpf_tc_opts *opts)

cdef extern from "<bpf/bpf.h>":
    int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)
    int bpf_map_lookup_elem(int fd, const void *key, void *value)
    int bpf_map_delete_elem(int fd, const void *key)
    int bpf_prog_get_fd_by_id(uint32_t id)
    int bpf_map_get_fd_by_id(uint32_t id)
    int bpf_obj_get_info_by_fd(int fd, void *info, uint32_t *info_len)
    int bpf_map_get_next_key(int fd, const void *key, void *next_key)
    struct bpf_test_run_opts:
        size_t sz
        const void *data_in
        uint32_t data_size_in
        uint32_t retval
        int repeat
        uint32_t duration
    int bpf_prog_test_run_opts(int prog_fd, bpf_test_run_opts *opts)

cdef extern from "bpf/wire_libbpf.h":
    void ngfw_libbpf_collect()
    const char *ngfw_libbpf_collected()

cdef extern from "bpf/wire.h":
    enum:
        WIRE_LAYOUT
        WIRE_MAX
        WIRE_MODE_CLOSED
        WIRE_MODE_OPEN
        WIRE_TC_HANDLE
        WIRE_TC_PRIORITY
    const char *WIRE_PROG_NAME
    const char *WIRE_MAP_PORTS
    const char *WIRE_MAP_WIRES
    const char *WIRE_MAP_FAILOPEN
    const char *WIRE_MAP_LIVENESS
    const char *WIRE_MAP_BYPASS
    const char *WIRE_PROG_RING_FILTER
    const char *WIRE_MAP_ADMISSION
    const char *WIRE_MAP_ADMISSION_STATS
    const char *WIRE_MAP_SYN_SOURCES
    enum:
        SYN_SOURCES_MAX
    struct admission_config:
        uint64_t source_interval_ns
        uint64_t source_tau_ns
        uint64_t total_interval_ns
        uint64_t total_tau_ns
        uint64_t total_tat_ns
    struct syn_source:
        uint64_t tat_ns
        uint64_t admitted
        uint64_t dropped
        uint64_t last_drop_ns
    enum:
        ADMIT_SYN_SEEN
        ADMIT_DROPPED_SOURCE
        ADMIT_DROPPED_TOTAL
    struct wire_port:
        uint32_t peer_ifindex
        uint32_t wire
    struct wire_state:
        uint32_t mode
        uint32_t open
        uint64_t activations
        uint64_t opened_ns
    struct wire_counters:
        uint64_t packets
        uint64_t bytes
    struct bypass_value:
        uint64_t packets
    struct wire_liveness:
        uint64_t heartbeat_ns
        uint64_t stale_after_ns
        uint32_t layout
        uint32_t bypass

cdef extern from *:
    """
    static inline uint64_t ngfw_wire_load_u64(const void *p) {
        return __atomic_load_n((const uint64_t *)p, __ATOMIC_ACQUIRE);
    }
    static inline void ngfw_wire_store_u64(void *p, uint64_t v) {
        __atomic_store_n((uint64_t *)p, v, __ATOMIC_RELEASE);
    }
    """
    uint64_t ngfw_wire_load_u64(const void *p)
    void ngfw_wire_store_u64(void *p, uint64_t v)

LAYOUT = WIRE_LAYOUT
MAX_WIRES = WIRE_MAX
MODES = {"closed": WIRE_MODE_CLOSED, "open": WIRE_MODE_OPEN}
TC_HANDLE = WIRE_TC_HANDLE
TC_PRIORITY = WIRE_TC_PRIORITY
PROGRAM_NAME = WIRE_PROG_NAME.decode()
MAP_NAMES = tuple(n.decode() for n in (WIRE_MAP_PORTS, WIRE_MAP_WIRES, WIRE_MAP_FAILOPEN, WIRE_MAP_LIVENESS))
SYN_SOURCES_TRACKED = SYN_SOURCES_MAX


class WireBpfError(OSError):
    """libbpf or the kernel refused; `errno` says why, `detail` carries libbpf's own messages."""

    def __init__(self, code: int, what: str, detail: str = "") -> None:
        import os

        super().__init__(code, f"{what}: {os.strerror(code)}")
        self.detail = detail


cdef _error(int code, what):
    return WireBpfError(code if code > 0 else -code, what, ngfw_libbpf_collected().decode(errors="replace"))


cdef bpf_object *_load_object(str path, str what, const char *prog_name, int *prog_fd) except NULL:
    """Open and load an object file into the kernel (verifier, JIT) and find its program: the object, owned by
    the caller, or an error naming `what` with libbpf's own messages."""
    cdef bpf_object *obj
    cdef bpf_program *prog
    cdef int err
    ngfw_libbpf_collect()
    obj = bpf_object__open_file(path.encode(), NULL)
    if obj == NULL:
        raise _error(errno, f"cannot open {path}")
    err = bpf_object__load(obj)
    if err:
        bpf_object__close(obj)
        raise _error(err, f"the kernel refused the {what}")
    prog = bpf_object__find_program_by_name(obj, prog_name)
    if prog == NULL:
        bpf_object__close(obj)
        raise WireBpfError(ENOENT, f"{path} has no program {prog_name.decode()}")
    prog_fd[0] = bpf_program__fd(prog)
    return obj


def describe_object(path: str) -> dict:
    """The program and maps an object file holds, read without the kernel (no privilege needed)."""
    cdef bpf_object *obj
    cdef bpf_program *prog
    cdef bpf_map *m = NULL
    ngfw_libbpf_collect()
    obj = bpf_object__open_file(path.encode(), NULL)
    if obj == NULL:
        raise _error(errno, f"cannot open {path}")
    try:
        prog = bpf_object__find_program_by_name(obj, WIRE_PROG_NAME)
        maps = {}
        while True:
            m = bpf_object__next_map(obj, m)
            if m == NULL:
                break
            maps[bpf_map__name(m).decode()] = {"value_size": bpf_map__value_size(m),
                                               "max_entries": bpf_map__max_entries(m),
                                               "flags": bpf_map__map_flags(m)}
        return {"program": PROGRAM_NAME if prog != NULL else None,
                "section": bpf_program__section_name(prog).decode() if prog != NULL else None,
                "maps": maps}
    finally:
        bpf_object__close(obj)


def expected_value_sizes() -> dict:
    """Value sizes of the maps as this module was compiled (bpf/wire.h): what the object must match."""
    return {WIRE_MAP_PORTS.decode(): sizeof(wire_port), WIRE_MAP_WIRES.decode(): sizeof(wire_state),
            WIRE_MAP_FAILOPEN.decode(): sizeof(wire_counters), WIRE_MAP_LIVENESS.decode(): sizeof(wire_liveness),
            WIRE_MAP_BYPASS.decode(): sizeof(bypass_value), WIRE_MAP_ADMISSION.decode(): sizeof(admission_config),
            WIRE_MAP_ADMISSION_STATS.decode(): sizeof(uint64_t),
            WIRE_MAP_SYN_SOURCES.decode(): sizeof(syn_source)}


cdef void _tc_target(bpf_tc_hook *hook, bpf_tc_opts *opts, int ifindex):
    memset(hook, 0, sizeof(bpf_tc_hook))
    hook.sz = sizeof(bpf_tc_hook)
    hook.ifindex = ifindex
    hook.attach_point = BPF_TC_INGRESS
    memset(opts, 0, sizeof(bpf_tc_opts))
    opts.sz = sizeof(bpf_tc_opts)
    opts.handle = WIRE_TC_HANDLE
    opts.priority = WIRE_TC_PRIORITY


def attached_program_id(int ifindex) -> int:
    """The id of the program in our tc filter on `ifindex`'s ingress (0: none). Needs only CAP_NET_ADMIN."""
    cdef bpf_tc_hook hook
    cdef bpf_tc_opts opts
    _tc_target(&hook, &opts, ifindex)
    ngfw_libbpf_collect()
    cdef int err = bpf_tc_query(&hook, &opts)
    if err == -ENOENT or err == -EINVAL:   # no such filter, or no clsact qdisc at all
        return 0
    if err:
        raise _error(err, f"cannot query the tc filters of interface {ifindex}")
    return opts.prog_id


def add_clsact(int ifindex) -> None:
    """Give `ifindex` a clsact qdisc (where tc ingress filters hang) if it has none: proves the kernel has
    clsact and that this process may change it, without attaching anything."""
    cdef bpf_tc_hook hook
    cdef bpf_tc_opts opts
    _tc_target(&hook, &opts, ifindex)
    ngfw_libbpf_collect()
    cdef int err = bpf_tc_hook_create(&hook)
    if err and err != -EEXIST:
        raise _error(err, f"cannot add a clsact qdisc to interface {ifindex}")


def detach(int ifindex) -> bool:
    """Remove our tc filter from `ifindex`'s ingress; False when there was none. The clsact qdisc stays
    (other filters may use it)."""
    cdef bpf_tc_hook hook
    cdef bpf_tc_opts opts
    _tc_target(&hook, &opts, ifindex)
    ngfw_libbpf_collect()
    cdef int err = bpf_tc_detach(&hook, &opts)
    if err == -ENOENT or err == -EINVAL:
        return False
    if err:
        raise _error(err, f"cannot remove the tc filter of interface {ifindex}")
    return True


cdef class WireProgram:
    """One instance of the wire program with its maps: loaded from the object file (`load`), or the one a
    filter on an interface runs (`from_id`, what a dead dataplane left)."""

    cdef bpf_object *obj
    cdef int prog_fd
    cdef int ports_fd
    cdef int wires_fd
    cdef int failopen_fd
    cdef int liveness_fd
    cdef int bypass_fd              # the flow bypass map (load only; -1 for an instance found by id)
    cdef int filter_fd              # the ring filter program (load only)
    cdef int admission_fd           # new-flow admission: its limits, counters and sources (load only)
    cdef int admit_stats_fd
    cdef int sources_fd
    cdef bint own_fds               # from_id opened them; with `load`, libbpf's object owns them
    cdef wire_liveness *live        # the mmapped liveness value (load only)
    cdef size_t live_len
    cdef int ncpus
    cdef readonly uint32_t prog_id

    def __cinit__(self):
        self.prog_fd = self.ports_fd = self.wires_fd = self.failopen_fd = self.liveness_fd = -1
        self.bypass_fd = self.filter_fd = -1
        self.admission_fd = self.admit_stats_fd = self.sources_fd = -1

    def __dealloc__(self):
        self._release()

    cdef void _release(self):
        if self.live != NULL:
            munmap(self.live, self.live_len)
            self.live = NULL
        if self.own_fds:
            for fd in (self.prog_fd, self.ports_fd, self.wires_fd, self.failopen_fd, self.liveness_fd):
                if fd >= 0:
                    close(fd)
        if self.obj != NULL:
            bpf_object__close(self.obj)
            self.obj = NULL
        self.prog_fd = self.ports_fd = self.wires_fd = self.failopen_fd = self.liveness_fd = -1
        self.bypass_fd = self.filter_fd = -1
        self.admission_fd = self.admit_stats_fd = self.sources_fd = -1

    def close(self) -> None:
        """Drop this process's references; an attached filter keeps the program and maps in the kernel.
        Never while a packet loop still stores its heartbeat at `heartbeat_address()`."""
        self._release()

    @staticmethod
    def load(path: str) -> WireProgram:
        """Load the object file into the kernel (verifier, JIT); maps start empty, heartbeat 0."""
        cdef WireProgram self = WireProgram.__new__(WireProgram)
        cdef bpf_program *prog
        cdef bpf_map *m
        self.obj = _load_object(path, "wire program", WIRE_PROG_NAME, &self.prog_fd)
        fds = []
        for name in (WIRE_MAP_PORTS, WIRE_MAP_WIRES, WIRE_MAP_FAILOPEN, WIRE_MAP_LIVENESS):
            m = bpf_object__find_map_by_name(self.obj, name)
            if m == NULL:
                raise WireBpfError(ENOENT, f"{path} has no map {name.decode()}")
            fds.append(bpf_map__fd(m))
        self.ports_fd, self.wires_fd, self.failopen_fd, self.liveness_fd = fds
        m = bpf_object__find_map_by_name(self.obj, WIRE_MAP_BYPASS)
        if m == NULL:
            raise WireBpfError(ENOENT, f"{path} has no map {WIRE_MAP_BYPASS.decode()}")
        self.bypass_fd = bpf_map__fd(m)
        prog = bpf_object__find_program_by_name(self.obj, WIRE_PROG_RING_FILTER)
        if prog == NULL:
            raise WireBpfError(ENOENT, f"{path} has no program {WIRE_PROG_RING_FILTER.decode()}")
        self.filter_fd = bpf_program__fd(prog)
        fds = []
        for name in (WIRE_MAP_ADMISSION, WIRE_MAP_ADMISSION_STATS, WIRE_MAP_SYN_SOURCES):
            m = bpf_object__find_map_by_name(self.obj, name)
            if m == NULL:
                raise WireBpfError(ENOENT, f"{path} has no map {name.decode()}")
            fds.append(bpf_map__fd(m))
        self.admission_fd, self.admit_stats_fd, self.sources_fd = fds
        self._finish()
        return self

    @staticmethod
    def from_id(uint32_t prog_id) -> WireProgram:
        """The instance a tc filter runs (`attached_program_id`); its maps found by name through the
        program's map ids. Raises LookupError when the program is not a wire program of this layout."""
        cdef WireProgram self = WireProgram.__new__(WireProgram)
        cdef bpf_prog_info info
        cdef bpf_map_info minfo
        cdef uint32_t length, i, n
        cdef uint32_t ids[16]
        cdef int fd
        self.own_fds = True
        ngfw_libbpf_collect()
        self.prog_fd = bpf_prog_get_fd_by_id(prog_id)
        if self.prog_fd < 0:
            raise _error(errno, f"cannot open BPF program {prog_id}")
        memset(&info, 0, sizeof(info))
        info.nr_map_ids = 16
        info.map_ids = <uint64_t><size_t>ids
        length = sizeof(info)
        if bpf_obj_get_info_by_fd(self.prog_fd, &info, &length):
            raise _error(errno, f"cannot read BPF program {prog_id}")
        if info.name[:16].split(b"\0")[0] != WIRE_PROG_NAME:
            raise LookupError(f"BPF program {prog_id} is {info.name[:16].split(b'\0')[0].decode(errors='replace')}, "
                              f"not {PROGRAM_NAME}")
        n = min(info.nr_map_ids, 16)
        found = {}
        for i in range(n):
            fd = bpf_map_get_fd_by_id(ids[i])
            if fd < 0:
                continue
            memset(&minfo, 0, sizeof(minfo))
            length = sizeof(minfo)
            if bpf_obj_get_info_by_fd(fd, &minfo, &length) == 0:
                name = minfo.name[:16].split(b"\0")[0]
                if name not in found:
                    found[name] = (fd, minfo.value_size)
                    continue
            close(fd)
        expected = expected_value_sizes()
        for name in (WIRE_MAP_PORTS, WIRE_MAP_WIRES, WIRE_MAP_FAILOPEN, WIRE_MAP_LIVENESS):
            fd_size = found.get(name)
            if fd_size is None or fd_size[1] != expected[name.decode()]:
                for fd, _ in found.values():
                    close(fd)
                raise LookupError(f"BPF program {prog_id} has no map {name.decode()} of this layout")
        self.ports_fd = found.pop(WIRE_MAP_PORTS)[0]
        self.wires_fd = found.pop(WIRE_MAP_WIRES)[0]
        self.failopen_fd = found.pop(WIRE_MAP_FAILOPEN)[0]
        self.liveness_fd = found.pop(WIRE_MAP_LIVENESS)[0]
        for fd, _ in found.values():
            close(fd)
        self._finish()
        if self.layout != WIRE_LAYOUT:
            raise LookupError(f"BPF program {prog_id} has map layout {self.layout}, this dataplane {WIRE_LAYOUT}")
        return self

    cdef _finish(self):
        cdef bpf_prog_info info
        cdef uint32_t length = sizeof(info)
        memset(&info, 0, sizeof(info))
        if bpf_obj_get_info_by_fd(self.prog_fd, &info, &length):
            raise _error(errno, "cannot read the wire program's id")
        self.prog_id = info.id
        self.ncpus = libbpf_num_possible_cpus()
        if self.ncpus <= 0:
            raise _error(-self.ncpus, "cannot count the possible CPUs")

    cdef void _check(self) except *:
        if self.prog_fd < 0:
            raise ValueError("the wire program was closed")

    # ---- configuration (before attaching: the kernel does not read these mid-update)
    def set_port(self, uint32_t ifindex, uint32_t peer_ifindex, uint32_t wire) -> None:
        """Frames arriving on `ifindex` go to `peer_ifindex`'s egress while wire `wire` is open."""
        cdef wire_port value
        self._check()
        if wire >= WIRE_MAX:
            raise ValueError(f"wire slot {wire} beyond {WIRE_MAX}")
        value.peer_ifindex = peer_ifindex
        value.wire = wire
        if bpf_map_update_elem(self.ports_fd, &ifindex, &value, 0):
            raise _error(errno, f"cannot configure interface {ifindex}")

    def forget_port(self, uint32_t ifindex) -> None:
        """The interface `ifindex` is gone (its name was re-created with another index): drop its entry, so
        interfaces that come and go do not fill the map."""
        self._check()
        if bpf_map_delete_elem(self.ports_fd, &ifindex) and errno != ENOENT:
            raise _error(errno, f"cannot forget interface {ifindex}")

    def port(self, uint32_t ifindex):
        """(peer_ifindex, wire) of `ifindex`, or None when the program does not know it."""
        cdef wire_port value
        self._check()
        if bpf_map_lookup_elem(self.ports_fd, &ifindex, &value):
            return None
        return (value.peer_ifindex, value.wire)

    def set_mode(self, uint32_t wire, str mode) -> None:
        """Set wire `wire`'s mode ("closed" or "open"); its counters and state start at zero."""
        cdef wire_state value
        self._check()
        if wire >= WIRE_MAX:
            raise ValueError(f"wire slot {wire} beyond {WIRE_MAX}")
        memset(&value, 0, sizeof(value))
        value.mode = MODES[mode]
        if bpf_map_update_elem(self.wires_fd, &wire, &value, 0):
            raise _error(errno, f"cannot configure wire {wire}")

    def set_liveness(self, uint64_t stale_after_ns, uint64_t heartbeat_ns=0) -> None:
        """The heartbeat's age beyond which the wire opens, the layout, and a first heartbeat."""
        cdef wire_liveness value
        cdef uint32_t zero = 0
        self._check()
        memset(&value, 0, sizeof(value))
        value.heartbeat_ns = heartbeat_ns
        value.stale_after_ns = stale_after_ns
        value.layout = WIRE_LAYOUT
        value.bypass = 0
        if bpf_map_update_elem(self.liveness_fd, &zero, &value, 0):
            raise _error(errno, "cannot set the wire program's liveness")

    def set_bypass(self, bint on) -> None:
        """Turn flow bypass on or off in both programs (the liveness value's `bypass` word)."""
        cdef wire_liveness value
        cdef uint32_t zero = 0
        self._liveness(&value)
        value.bypass = on
        if bpf_map_update_elem(self.liveness_fd, &zero, &value, 0):
            raise _error(errno, "cannot turn flow bypass on")

    def bypass_fds(self) -> tuple:
        """(bypass map fd, ring filter program fd) of a loaded instance, for `Engine.enable_bypass`; they stay
        open until `close()`."""
        self._check()
        if self.bypass_fd < 0 or self.filter_fd < 0:
            raise ValueError("this instance of the wire program was not loaded by this process")
        return (self.bypass_fd, self.filter_fd)

    def ring_filter_fd(self) -> int:
        """The ring filter program's fd (a loaded instance): attach it to the dataplane's ring sockets."""
        self._check()
        if self.filter_fd < 0:
            raise ValueError("this instance of the wire program was not loaded by this process")
        return self.filter_fd

    # ---- new-flow admission (SYN flood protection)
    cdef void _check_admission(self) except *:
        self._check()
        if self.admission_fd < 0:
            raise ValueError("this instance of the wire program was not loaded by this process")

    def set_syn_limits(self, double per_source, double per_source_burst, double total, double total_burst) -> None:
        """SYNs per second admitted into the rings from one source address, and from all (0: no such limit);
        the bursts: SYNs a bucket holds (at least 1). The total bucket starts full; sources start full when
        first seen."""
        cdef admission_config cfg
        cdef uint32_t zero = 0
        self._check_admission()
        memset(&cfg, 0, sizeof(cfg))
        if per_source > 0:
            cfg.source_interval_ns = max(1, <uint64_t>(1e9 / per_source))
            cfg.source_tau_ns = <uint64_t>(max(per_source_burst, 1.0) - 1.0) * cfg.source_interval_ns
        if total > 0:
            cfg.total_interval_ns = max(1, <uint64_t>(1e9 / total))
            cfg.total_tau_ns = <uint64_t>(max(total_burst, 1.0) - 1.0) * cfg.total_interval_ns
        if bpf_map_update_elem(self.admission_fd, &zero, &cfg, 0):
            raise _error(errno, "cannot set the SYN admission limits")

    def syn_stats(self) -> dict:
        """What the ring filter did with SYNs (summed over CPUs): seen, dropped over the per-source limit,
        dropped over the total limit."""
        cdef uint64_t *per_cpu
        cdef uint32_t key
        cdef int cpu
        self._check_admission()
        per_cpu = <uint64_t *>malloc(sizeof(uint64_t) * self.ncpus)
        if per_cpu == NULL:
            raise MemoryError()
        out = {}
        try:
            for name, key in (("seen", ADMIT_SYN_SEEN), ("dropped_source", ADMIT_DROPPED_SOURCE),
                              ("dropped_total", ADMIT_DROPPED_TOTAL)):
                if bpf_map_lookup_elem(self.admit_stats_fd, &key, per_cpu):
                    raise _error(errno, "cannot read the SYN admission counters")
                out[name] = sum(per_cpu[cpu] for cpu in range(self.ncpus))
        finally:
            free(per_cpu)
        return out

    def syn_sources(self, uint64_t min_dropped=1) -> list:
        """The sources the program tracks now whose dropped count is at least `min_dropped`:
        [(address as 16 bytes, admitted, dropped, last drop ns)]. A walk of the map: the kernel may evict
        or add entries meanwhile (an entry may be missed, none is read twice)."""
        cdef unsigned char key[16]
        cdef unsigned char next_key[16]
        cdef syn_source value
        cdef void *prev = NULL
        cdef int n = 0
        self._check_admission()
        out = []
        while n < SYN_SOURCES_MAX and bpf_map_get_next_key(self.sources_fd, prev, next_key) == 0:
            n += 1
            memcpy(key, next_key, 16)
            prev = key
            if bpf_map_lookup_elem(self.sources_fd, key, &value) == 0 and value.dropped >= min_dropped:
                out.append((bytes(key[:16]), value.admitted, value.dropped, value.last_drop_ns))
        return out

    def run_ring_filter(self, bytes frame, int repeat=1) -> tuple:
        """Run the ring filter on `frame` (from its Ethernet header) in the kernel, `repeat` times in a row, as
        if it arrived on the loopback interface (BPF_PROG_TEST_RUN; root): (the last run's verdict -- the
        bytes a ring would copy, 0 for a drop --, mean ns per run)."""
        cdef bpf_test_run_opts opts
        self._check()
        if self.filter_fd < 0:
            raise ValueError("this instance of the wire program was not loaded by this process")
        # the test run hands a socket filter the frame past a link header it strips itself (eth_type_trans),
        # where a packet socket hands it the whole frame: a second Ethernet header goes in front for it to strip
        data = frame[:14] + frame
        memset(&opts, 0, sizeof(opts))
        opts.sz = sizeof(opts)
        opts.data_in = <const char *>data
        opts.data_size_in = len(data)
        opts.repeat = repeat
        ngfw_libbpf_collect()
        cdef int err = bpf_prog_test_run_opts(self.filter_fd, &opts)
        if err:
            raise _error(err, "cannot run the ring filter")
        return (opts.retval, opts.duration)

    cdef int _liveness(self, wire_liveness *value) except -1:
        cdef uint32_t zero = 0
        self._check()
        if bpf_map_lookup_elem(self.liveness_fd, &zero, value):
            raise _error(errno, "cannot read the wire program's liveness")
        return 0

    @property
    def layout(self) -> int:
        cdef wire_liveness value
        self._liveness(&value)
        return value.layout

    @property
    def stale_after_ns(self) -> int:
        cdef wire_liveness value
        self._liveness(&value)
        return value.stale_after_ns

    @property
    def heartbeat_ns(self) -> int:
        """The latest heartbeat (CLOCK_MONOTONIC ns), as the program sees it."""
        cdef wire_liveness value
        if self.live != NULL:
            return ngfw_wire_load_u64(&self.live.heartbeat_ns)
        self._liveness(&value)
        return value.heartbeat_ns

    def heartbeat_address(self) -> int:
        """Address of the heartbeat word in this process (the liveness map, memory-mapped): give it to
        `Engine.set_heartbeat_address`. Mapped until `close()`."""
        cdef void *m
        cdef long page = sysconf(_SC_PAGESIZE)
        self._check()
        if self.live == NULL:
            length = (sizeof(wire_liveness) + page - 1) // page * page
            m = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_SHARED, self.liveness_fd, 0)
            if m == MAP_FAILED:
                raise _error(errno, "cannot map the wire program's liveness")
            self.live = <wire_liveness *>m
            self.live_len = length
        return <size_t>&self.live.heartbeat_ns

    def store_heartbeat(self, uint64_t now_ns) -> None:
        """Store a heartbeat by hand (the packet loop stores its own every turn)."""
        self.heartbeat_address()
        ngfw_wire_store_u64(&self.live.heartbeat_ns, now_ns)

    # ---- what the program did
    def wire(self, uint32_t wire) -> dict:
        """Wire `wire`'s mode, whether it is open, how often it opened, and what the kernel forwarded in
        fail-open (summed over CPUs)."""
        cdef wire_state state
        cdef wire_counters *per_cpu
        cdef uint64_t packets = 0, nbytes = 0
        cdef int cpu
        self._check()
        if wire >= WIRE_MAX:
            raise ValueError(f"wire slot {wire} beyond {WIRE_MAX}")
        if bpf_map_lookup_elem(self.wires_fd, &wire, &state):
            raise _error(errno, f"cannot read wire {wire}")
        per_cpu = <wire_counters *>malloc(sizeof(wire_counters) * self.ncpus)
        if per_cpu == NULL:
            raise MemoryError()
        try:
            if bpf_map_lookup_elem(self.failopen_fd, &wire, per_cpu):
                raise _error(errno, f"cannot read the fail-open counters of wire {wire}")
            for cpu in range(self.ncpus):
                packets += per_cpu[cpu].packets
                nbytes += per_cpu[cpu].bytes
        finally:
            free(per_cpu)
        mode = "open" if state.mode == WIRE_MODE_OPEN else "closed"
        return {"mode": mode, "open": bool(state.open), "activations": state.activations,
                "opened_ns": state.opened_ns, "packets": packets, "bytes": nbytes}

    # ---- tc
    def attach(self, int ifindex) -> None:
        """Run this instance on `ifindex`'s ingress: creates the clsact qdisc if needed, and replaces our
        filter (an earlier instance) atomically, so frames never meet no filter in between."""
        cdef bpf_tc_hook hook
        cdef bpf_tc_opts opts
        cdef int err
        self._check()
        _tc_target(&hook, &opts, ifindex)
        ngfw_libbpf_collect()
        err = bpf_tc_hook_create(&hook)
        if err and err != -EEXIST:
            raise _error(err, f"cannot add a clsact qdisc to interface {ifindex}")
        opts.prog_fd = self.prog_fd
        opts.flags = BPF_TC_F_REPLACE
        err = bpf_tc_attach(&hook, &opts)
        if err:
            raise _error(err, f"cannot attach the wire program to interface {ifindex}")


# ---------------------------------------------------------------- workers: the fanout program (bpf/fanout.bpf.c)

cdef extern from "bpf/shard_frame.h":
    uint32_t ngfw_shard_of_frame(const unsigned char *frame, unsigned int len)
    uint32_t ngfw_shard_tuple(const unsigned char *a, const unsigned char *b, unsigned short pa, unsigned short pb,
                              unsigned char proto)

FANOUT_PROGRAM_NAME = "ngfw_fanout"


def flow_hash_frame(const unsigned char[:] frame) -> int:
    """The fanout program's hash of an Ethernet frame (bpf/shard.h), computed here: worker = hash % N."""
    if frame.shape[0] == 0:
        return 0
    return ngfw_shard_of_frame(&frame[0], <unsigned int>frame.shape[0])


def flow_hash_tuple(bytes a, bytes b, unsigned short port_a, unsigned short port_b, unsigned char proto) -> int:
    """The hash of a flow's key (16-byte addresses, IPv4 as ::ffff:a.b.c.d), as its frames get it: pass the
    ports of TCP flows only (others are hashed on their addresses, bpf/shard.h)."""
    if len(a) != 16 or len(b) != 16:
        raise ValueError("addresses are 16 bytes (IPv4 as ::ffff:a.b.c.d)")
    return ngfw_shard_tuple(a, b, port_a, port_b, proto)


cdef class FanoutProgram:
    """The fanout program loaded into the kernel: its fd goes to PACKET_FANOUT_DATA of every fanout group the
    workers' ring sockets form (ngfw.dataplane.workers). Stays loaded while a group uses it."""

    cdef bpf_object *obj
    cdef readonly int fd

    def __cinit__(self):
        self.fd = -1

    def __dealloc__(self):
        self.close()

    def close(self) -> None:
        if self.obj != NULL:
            bpf_object__close(self.obj)
            self.obj = NULL
        self.fd = -1

    @staticmethod
    def load(path: str) -> FanoutProgram:
        cdef FanoutProgram self = FanoutProgram.__new__(FanoutProgram)
        name = FANOUT_PROGRAM_NAME.encode()
        self.obj = _load_object(path, "fanout program", name, &self.fd)
        return self

    def run(self, bytes frame) -> int:
        """The program's result on `frame` (from its Ethernet header), run by the kernel (BPF_PROG_TEST_RUN;
        root): the kernel strips the Ethernet header (eth_type_trans) as a receiving interface does."""
        cdef bpf_test_run_opts opts
        if self.fd < 0:
            raise ValueError("the fanout program is closed")
        memset(&opts, 0, sizeof(opts))
        opts.sz = sizeof(opts)
        opts.data_in = <const char *>frame
        opts.data_size_in = len(frame)
        opts.repeat = 1
        ngfw_libbpf_collect()
        cdef int err = bpf_prog_test_run_opts(self.fd, &opts)
        if err:
            raise _error(err, "cannot run the fanout program")
        return opts.retval
