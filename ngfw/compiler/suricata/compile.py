"""One rule's text -> CompiledSignature, or RuleError saying why it cannot load.

Options are applied in rule order, as Suricata does: content modifiers attach to
the content just before them, sticky buffers switch the buffer for what follows,
and the first unsupported keyword or malformed option decides the skip reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

import hyperscan

from ngfw.compiler.suricata import patterns
from ngfw.compiler.suricata.addresses import Resolver
from ngfw.compiler.suricata.buffers import LEGACY_MODIFIERS, PROTOCOLS, STICKY_BUFFERS, Transport
from ngfw.compiler.suricata.classification import DEFAULT_PRIORITY
from ngfw.compiler.suricata.lexer import RawRule, RuleError, is_decimal, split_options, split_rule, unescape, unquote
from ngfw.compiler.suricata.model import (
    PAYLOAD,
    Action,
    BufferMatches,
    ByteJump,
    ByteTest,
    CompiledSignature,
    ContentMatch,
    DataAt,
    FastPattern,
    FlowbitOp,
    FlowConstraint,
    Match,
    NumberCheck,
    PcreMatch,
    Threshold,
)

ACTIONS: dict[str, Action] = {
    "alert": "alert",
    "drop": "drop",
    "pass": "pass",
    "reject": "reject",
    "rejectsrc": "reject",
    "rejectdst": "reject",
    "rejectboth": "reject",
}

# The app-layer protocols a buffer implies; a rule for another app protocol cannot use it.
_BUFFER_APPS: dict[str, tuple[str, ...]] = {
    "http.": ("http", "http2"),
    "tls.": ("tls",),
    "ja3": ("tls",),
    "dns.": ("dns",),
    "ssh.": ("ssh",),
    "quic.": ("quic",),
}

_FLOW_OPTIONS: dict[str, tuple[str, str]] = {
    "to_server": ("direction", "to_server"),
    "from_client": ("direction", "to_server"),
    "to_client": ("direction", "to_client"),
    "from_server": ("direction", "to_client"),
    "established": ("state", "established"),
    "not_established": ("state", "not_established"),
    "stateless": ("state", "stateless"),
    "only_stream": ("stream", "only_stream"),
    "no_stream": ("stream", "no_stream"),
    "only_frag": ("fragments", "only_frag"),
    "no_frag": ("fragments", "no_frag"),
}

# Transforms the engine applies to a sticky buffer before matching (pure byte
# functions); others (to_md5, pcrexform, xor, url_decode, ...) skip the rule.
TRANSFORMS = frozenset({"dotprefix", "to_lowercase", "to_uppercase", "strip_whitespace", "compress_whitespace"})

# A buffer as matches see it: its name and the transforms applied to it, in order.
Key = tuple[str, tuple[str, ...]]
PAYLOAD_KEY: Key = (PAYLOAD, ())

_TCP_FLAG_CHARS = set("FSRPAUCEN012*+!,")
_SID_TEXT = re.compile(r"\bsid\s*:\s*\d+")
# Keywords Suricata refuses to see twice in a rule, and keywords that take no value.
_ONCE = frozenset({"msg", "rev", "gid", "classtype", "priority"})
_BARE = frozenset(
    {"nocase", "rawbytes", "startswith", "endswith", "noalert", *STICKY_BUFFERS, *LEGACY_MODIFIERS, *TRANSFORMS}
)


@dataclass
class _Content:
    """A content being built: modifiers arrive after it, one option at a time."""

    pattern: bytes
    negated: bool
    key: Key
    nocase: bool = False
    offset: int | None = None
    depth: int | None = None
    distance: int | None = None
    within: int | None = None
    startswith: bool = False
    endswith: bool = False
    fast_pattern: bool = False
    fast_pattern_only: bool = False
    fast_pattern_chop: tuple[int, int] | None = None

    def freeze(self) -> ContentMatch:
        return ContentMatch(
            pattern=self.pattern,
            hs_expression=patterns.literal_expression(self.pattern),
            hs_flags=hyperscan.HS_FLAG_CASELESS if self.nocase else 0,
            negated=self.negated,
            nocase=self.nocase,
            offset=self.offset,
            depth=self.depth,
            distance=self.distance,
            within=self.within,
            startswith=self.startswith,
            endswith=self.endswith,
            fast_pattern=self.fast_pattern,
            fast_pattern_only=self.fast_pattern_only,
            fast_pattern_chop=self.fast_pattern_chop,
        )


@dataclass
class _Builder:
    """Mutable state while a rule's options are applied."""

    protocol: str
    transport: Transport
    app_proto: str | None
    classifications: dict[str, tuple[str, int]]
    sticky: str = PAYLOAD
    transforms: tuple[str, ...] = ()
    transforms_consumed: bool = False  # a match was written to the transformed buffer
    entries: list[tuple[Key, _Content | PcreMatch | DataAt | ByteTest | ByteJump]] = field(default_factory=list)
    sizes: dict[Key, NumberCheck] = field(default_factory=dict)
    sid: int | None = None
    gid: int = 1
    rev: int = 0
    msg: str = ""
    classtype: str | None = None
    priority: int | None = None
    metadata: list[tuple[str, str]] = field(default_factory=list)
    references: list[tuple[str, str]] = field(default_factory=list)
    target: Literal["src_ip", "dest_ip"] | None = None
    flow: FlowConstraint = FlowConstraint()
    flowbits: list[FlowbitOp] = field(default_factory=list)
    noalert: bool = False
    dsize: NumberCheck | None = None
    threshold: Threshold | None = None
    detection_filter: Threshold | None = None
    tcp_flags: str | None = None
    icmp_type: NumberCheck | None = None
    icmp_code: NumberCheck | None = None
    ip_proto: int | None = None

    # -- helpers ---------------------------------------------------------------------------
    def last_content(self, keyword: str) -> _Content:
        for _, entry in reversed(self.entries):
            if isinstance(entry, _Content):
                return entry
        raise RuleError("malformed rule", f"{keyword} needs a preceding content")

    @property
    def sticky_key(self) -> Key:
        return (self.sticky, self.transforms)

    def last_match_key(self) -> Key | None:
        for key, entry in reversed(self.entries):
            if isinstance(entry, _Content):
                return entry.key  # where a legacy modifier may have moved it
            if isinstance(entry, PcreMatch):
                return key
        return None

    def match_keys(self) -> set[Key]:
        """The buffers holding a content or pcre so far (where legacy modifiers put them)."""
        return {
            e.key if isinstance(e, _Content) else k
            for k, e in self.entries
            if not isinstance(e, (DataAt, ByteTest, ByteJump))
        }

    def add(self, key: Key, entry: _Content | PcreMatch | DataAt | ByteTest | ByteJump) -> None:
        self.entries.append((key, entry))
        if key[1] and key == self.sticky_key:
            self.transforms_consumed = True

    def use_buffer(self, buffer: str) -> None:
        """A buffer of an app protocol makes the rule one of that protocol (Suricata sets
        the rule's app-layer protocol from it), unless it already is another one."""
        if buffer == "ether.hdr" and self.transport != "arp":
            raise RuleError("unsupported keyword: ether.hdr outside arp rules", f"ether.hdr in a {self.protocol} rule")
        for prefix, apps in _BUFFER_APPS.items():
            if buffer.startswith(prefix):
                if self.transport == "arp":
                    raise RuleError("conflicting protocol", f"{buffer} in an arp rule")
                if self.app_proto is None:
                    app_transport = PROTOCOLS[apps[0]][0]
                    if self.transport == "ip" or self.transport == app_transport:
                        self.transport = app_transport
                    elif app_transport != "tcp/udp":
                        raise RuleError("conflicting protocol", f"{buffer} in a {self.protocol} rule")
                    self.app_proto = apps[0]
                elif self.app_proto not in apps:
                    raise RuleError("conflicting protocol", f"{buffer} in a {self.protocol} rule")


def compile_rule(
    raw: RawRule, resolver: Resolver, classifications: dict[str, tuple[str, int]], file: str
) -> CompiledSignature:
    header, body = split_rule(raw.text)
    if len(header) != 7:
        raise RuleError("malformed rule", f"header needs 7 fields, has {len(header)}: {' '.join(header)[:80]!r}")
    action_text, protocol, src, src_port, direction, dst, dst_port = header
    options = split_options(body)
    action = ACTIONS.get(action_text.lower())
    if action is None:
        raise RuleError("malformed rule", f"unknown action {action_text!r}")
    protocol = protocol.lower()
    known = PROTOCOLS.get(protocol)
    if known is None:
        raise RuleError(f"unsupported protocol: {protocol}")
    if direction not in ("->", "<>"):
        raise RuleError("malformed rule", f"bad direction {direction!r}")
    transport, app_proto = known
    builder = _Builder(protocol=protocol, transport=transport, app_proto=app_proto, classifications=classifications)
    # The sid comes first so that every later error can name it.
    for name, value in options:
        if name == "sid":
            if builder.sid is not None:
                raise RuleError("malformed rule", "sid given twice")
            builder.sid = _int(name, value, 1, UINT32_MAX)
    if builder.sid is None and not _SID_TEXT.search(body):
        raise RuleError("missing sid")
    src_matcher, dst_matcher = resolver.address(src), resolver.address(dst)
    src_ports, dst_ports = resolver.ports(src_port), resolver.ports(dst_port)
    if transport == "arp":
        _arp_header(src_matcher.is_any and dst_matcher.is_any, src_ports.is_any and dst_ports.is_any, header)
    seen: set[str] = set()
    for name, value in options:
        if transport == "arp" and name in _NOT_IN_ARP:
            raise RuleError(f"unsupported keyword: {name} in an arp rule", _NOT_IN_ARP[name])
        handler = _HANDLERS.get(name)
        if name in _ONCE:
            if name in seen:
                raise RuleError("malformed rule", f"{name} given twice")
            seen.add(name)
        if name in _BARE and value is not None:
            raise RuleError("malformed rule", f"{name} takes no value")
        if handler is not None:
            handler(builder, name, value)
        elif name in STICKY_BUFFERS:
            if builder.transforms and not builder.transforms_consumed:
                raise RuleError("malformed rule", f"transforms {', '.join(builder.transforms)} not used before {name}")
            builder.sticky = STICKY_BUFFERS[name]
            builder.transforms, builder.transforms_consumed = (), False
            builder.use_buffer(builder.sticky)
        elif name in LEGACY_MODIFIERS:
            content = builder.last_content(name)
            content.key = (LEGACY_MODIFIERS[name], ())
            builder.use_buffer(content.key[0])
        else:
            raise RuleError(f"unsupported keyword: {name}")
    _validate(builder)
    if builder.sid is None:
        # "sid:N" is in the text but swallowed by another option (an unterminated value).
        raise RuleError("malformed rule", "sid is not an option of its own")
    buffers = _buffers(builder)
    category, priority = "", DEFAULT_PRIORITY
    if builder.classtype is not None:
        category, priority = builder.classifications[builder.classtype]
    if builder.priority is not None:
        priority = builder.priority
    return CompiledSignature(
        sid=builder.sid,
        gid=builder.gid,
        rev=builder.rev,
        msg=builder.msg,
        action=action,
        protocol=protocol,
        transport=builder.transport,
        app_proto=builder.app_proto,
        src=src_matcher,
        src_ports=src_ports,
        direction=cast(Literal["->", "<>"], direction),
        dst=dst_matcher,
        dst_ports=dst_ports,
        classtype=builder.classtype,
        category=category,
        priority=priority,
        flow=builder.flow,
        flowbits=tuple(builder.flowbits),
        noalert=builder.noalert,
        dsize=builder.dsize,
        threshold=builder.threshold,
        detection_filter=builder.detection_filter,
        buffers=buffers,
        fast_pattern=_fast_pattern(buffers),
        tcp_flags=builder.tcp_flags,
        icmp_type=builder.icmp_type,
        icmp_code=builder.icmp_code,
        ip_proto=builder.ip_proto,
        target=builder.target,
        metadata=tuple(builder.metadata),
        references=tuple(builder.references),
        file=file,
        line=raw.line,
    )


# What an ARP frame does not have (Suricata 8/9 give `arp` rules no flow, no payload, no IP header).
_NOT_IN_ARP: dict[str, str] = {
    "flow": "an ARP frame belongs to no flow",
    "flowbits": "an ARP frame belongs to no flow",
    "dsize": "an ARP frame has no payload",
    "threshold": "ARP frames are not tracked by address",
    "detection_filter": "ARP frames are not tracked by address",
    "flags": "an ARP frame has no TCP header",
    "itype": "an ARP frame has no ICMP header",
    "icode": "an ARP frame has no ICMP header",
    "ip_proto": "an ARP frame has no IP header",
    "target": "an ARP frame has no IP header",
    "urilen": "an ARP frame has no HTTP",
}


def _arp_header(any_address: bool, any_port: bool, header: list[str]) -> None:
    """An `arp` rule matches every ARP frame: its addresses and ports can only be `any`."""
    if not (any_address and any_port):
        raise RuleError(
            "unsupported protocol: arp with addresses or ports",
            f"{' '.join(header[2:])}: an ARP frame has no IP header; write any any -> any any",
        )


def _arp_matches(builder: _Builder) -> None:
    """Suricata gives an ARP frame no payload: what an arp rule inspects is `ether.hdr`."""
    keys = builder.match_keys() | set(builder.sizes) | {key for key, _ in builder.entries}
    if any(key[0] != "ether.hdr" for key in keys):
        raise RuleError(
            "unsupported keyword: payload match in an arp rule", "an ARP frame has no payload; use ether.hdr"
        )


def _validate(builder: _Builder) -> None:
    """Whole-rule checks Suricata makes once every option is read (it refuses these rules)."""
    if builder.transport == "arp":
        _arp_matches(builder)
    contents = [entry for _, entry in builder.entries if isinstance(entry, _Content)]
    for content in contents:
        if content.key[0] == "http.host" and not content.nocase and content.pattern.lower() != content.pattern:
            # Suricata normalizes the host to lower case, so this content could never match.
            raise RuleError("malformed rule", f"http.host content {content.pattern[:40]!r} has upper case")
    if builder.dsize is not None:
        largest = _largest(builder.dsize)
        for content in contents:
            if (
                content.key == PAYLOAD_KEY
                and not content.negated
                and largest is not None
                and len(content.pattern) > largest
            ):
                raise RuleError("malformed rule", f"content of {len(content.pattern)} bytes exceeds dsize {largest}")


def _largest(check: NumberCheck) -> int | None:
    """The largest size a NumberCheck admits, None when unbounded."""
    if check.op in ("=", "<="):
        return check.value
    if check.op == "<":
        return check.value - 1
    if check.op == "<>":
        assert check.high is not None
        return check.high - 1
    return None


def _buffers(builder: _Builder) -> tuple[BufferMatches, ...]:
    """Group the matches by buffer, first-used buffer first, rule order inside a buffer."""
    grouped: dict[Key, list[Match]] = {}
    for key, entry in builder.entries:
        if isinstance(entry, _Content):
            # A legacy modifier may have moved the content after it was written.
            grouped.setdefault(entry.key, []).append(entry.freeze())
        else:
            grouped.setdefault(key, []).append(entry)
    for key in builder.sizes:
        grouped.setdefault(key, [])
    return tuple(
        BufferMatches(key[0], tuple(matches), builder.sizes.get(key), key[1]) for key, matches in grouped.items()
    )


def _fast_pattern(buffers: tuple[BufferMatches, ...]) -> FastPattern | None:
    """The explicit `fast_pattern`, else the longest positive content (Suricata's default choice)."""
    best: tuple[int, BufferMatches, int, ContentMatch] | None = None
    for group in buffers:
        for index, match in enumerate(group.matches):
            if not isinstance(match, ContentMatch) or match.negated:
                continue
            if match.fast_pattern:
                return _fast(group, index, match)
            if best is None or len(match.pattern) > best[0]:
                best = (len(match.pattern), group, index, match)
    return _fast(best[1], best[2], best[3]) if best else None


def _fast(group: BufferMatches, index: int, match: ContentMatch) -> FastPattern:
    pattern = match.pattern
    if match.fast_pattern_chop is not None:
        start, length = match.fast_pattern_chop
        pattern = pattern[start : start + length]
    # The prefilter hit alone proves the content when nothing about its position or
    # extent remains to check.
    only = match.fast_pattern_only or (
        match.fast_pattern_chop is None
        and not match.startswith
        and not match.endswith
        and match.offset is None
        and match.depth is None
        and not match.relative
    )
    return FastPattern(group.buffer, index, pattern, match.nocase, only, group.transforms)


# -- option handlers --------------------------------------------------------------------------

# the fastpath keeps sid/gid/rev and numeric checks in 32 unsigned bits (as Suricata does), offsets in 32
# signed bits: a larger number is a malformed rule, not an OverflowError while the tables are built (fuzzing)
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1


def _bounded(name: str, number: int, low: int | None, high: int) -> int:
    if low is not None and number < low:
        raise RuleError("malformed rule", f"{name}:{number} is below {low}")
    if number > high:
        raise RuleError("malformed rule", f"{name}:{number} is above {high}")
    return number


def _int(name: str, value: str | None, low: int | None = None, high: int = INT32_MAX) -> int:
    text = (value or "").strip()
    try:
        number = int(text)
    except ValueError:
        raise RuleError("malformed rule", f"{name}:{text[:40]} is not an integer") from None
    return _bounded(name, number, low, high)


def _msg(b: _Builder, name: str, value: str | None) -> None:
    b.msg = unescape(unquote(value, "msg"))


def _gid(b: _Builder, name: str, value: str | None) -> None:
    b.gid = _int(name, value, 0, UINT32_MAX)


def _rev(b: _Builder, name: str, value: str | None) -> None:
    b.rev = _int(name, value, 0, UINT32_MAX)


def _classtype(b: _Builder, name: str, value: str | None) -> None:
    name = (value or "").strip().lower()
    if name not in b.classifications:
        raise RuleError("unknown classtype", name)
    b.classtype = name


def _priority(b: _Builder, name: str, value: str | None) -> None:
    b.priority = _int(name, value, 1, 255)


def _metadata(b: _Builder, name: str, value: str | None) -> None:
    for item in (value or "").split(","):
        key, _, setting = item.strip().partition(" ")
        if key:
            b.metadata.append((key, setting.strip()))


def _reference(b: _Builder, name: str, value: str | None) -> None:
    kind, comma, where = (value or "").partition(",")
    if not comma:
        raise RuleError("malformed rule", f"reference:{(value or '')[:40]} needs type,value")
    b.references.append((kind.strip(), where.strip()))


def _target(b: _Builder, name: str, value: str | None) -> None:
    value = (value or "").strip()
    if value not in ("src_ip", "dest_ip") or b.target not in (None, value):
        raise RuleError("malformed rule", f"target:{value}")
    b.target = cast(Literal["src_ip", "dest_ip"], value)


def _content(b: _Builder, name: str, value: str | None) -> None:
    value = (value or "").strip()
    negated = value.startswith("!")
    if negated:
        value = value[1:].strip()
    pattern = patterns.parse_content(unquote(value, "content"))
    b.add(b.sticky_key, _Content(pattern, negated, b.sticky_key))


def _nocase(b: _Builder, name: str, value: str | None) -> None:
    b.last_content("nocase").nocase = True


def _absolute(b: _Builder, name: str, value: str | None) -> None:
    content = b.last_content(name)
    if content.distance is not None or content.within is not None:
        raise RuleError("malformed rule", f"{name} mixed with distance/within on one content")
    if name == "offset":
        content.offset = _int(name, value, 0)
    else:
        depth = _int(name, value, 1)
        if depth < len(content.pattern):
            raise RuleError("malformed rule", f"depth:{depth} shorter than its content ({len(content.pattern)} bytes)")
        content.depth = depth


def _relative(b: _Builder, name: str, value: str | None) -> None:
    content = b.last_content(name)
    if content.offset is not None or content.depth is not None:
        raise RuleError("malformed rule", f"{name} mixed with offset/depth on one content")
    if name == "distance":
        content.distance = _int(name, value)
    else:
        within = _int(name, value, 1)
        if within < len(content.pattern):
            raise RuleError(
                "malformed rule", f"within:{within} shorter than its content ({len(content.pattern)} bytes)"
            )
        content.within = within


def _startswith(b: _Builder, name: str, value: str | None) -> None:
    b.last_content("startswith").startswith = True


def _endswith(b: _Builder, name: str, value: str | None) -> None:
    b.last_content("endswith").endswith = True


def _fast_pattern_option(b: _Builder, name: str, value: str | None) -> None:
    content = b.last_content("fast_pattern")
    if any(isinstance(e, _Content) and e.fast_pattern for _, e in b.entries):
        raise RuleError("malformed rule", "fast_pattern on more than one content")
    content.fast_pattern = True
    value = (value or "").strip()
    if value == "only":
        content.fast_pattern_only = True
    elif value:
        start, comma, length = value.partition(",")
        if not comma or not is_decimal(start.strip()) or not is_decimal(length.strip()):
            raise RuleError("malformed rule", f"fast_pattern:{value[:40]}")
        chop = (int(start), int(length))
        if chop[1] == 0 or chop[0] + chop[1] > len(content.pattern):
            raise RuleError("malformed rule", f"fast_pattern:{value} outside its content")
        content.fast_pattern_chop = chop


def _rawbytes(b: _Builder, name: str, value: str | None) -> None:
    # Suricata ignores rawbytes (it inspects raw bytes anyway); so do we.
    b.last_content("rawbytes")


def _isdataat(b: _Builder, name: str, value: str | None) -> None:
    value = (value or "").strip()
    negated = value.startswith("!")
    parts = [p.strip() for p in value.lstrip("!").split(",")]
    relative = False
    for extra in parts[1:]:
        if extra == "relative":
            relative = True
        elif extra != "rawbytes":
            raise RuleError("malformed rule", f"isdataat:{value[:40]}")
    if not is_decimal(parts[0]):
        raise RuleError("malformed rule", f"isdataat:{value[:40]}")
    key = (b.last_match_key() if relative else None) or b.sticky_key
    b.add(key, DataAt(_bounded(name, int(parts[0]), 0, INT32_MAX), relative, negated))


_BYTE_OPS = frozenset({"<", ">", "=", "<=", ">=", "&", "^"})


def _byte_number(text: str, what: str, value: str) -> int:
    try:
        return int(text, 0) if text.lower().startswith(("0x", "-0x")) else int(text)
    except ValueError:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text):
            raise RuleError("unsupported keyword: byte_extract variables", f"{what} {text}") from None
        raise RuleError("malformed rule", f"{what}:{value[:60]}") from None


def _byte_options(what: str, value: str, extras: list[str]) -> dict[str, object]:
    """The options both byte_test and byte_jump take, plus byte_jump's."""
    out: dict[str, object] = {"relative": False, "little": False, "string": None, "bitmask": None}
    i = 0
    while i < len(extras):
        word = extras[i]
        parts = word.split()
        if word == "relative":
            out["relative"] = True
        elif word == "little":
            out["little"] = True
        elif word == "big":
            out["little"] = False
        elif word == "string":
            out["string"] = "dec"
        elif word in ("dec", "hex", "oct"):
            out["string"] = word
        elif word == "dce":
            raise RuleError(f"unsupported keyword: {what} dce", value[:60])
        elif parts and parts[0] == "bitmask" and len(parts) == 2:
            out["bitmask"] = _byte_number(parts[1], what, value)
        elif what == "byte_jump" and word in ("align", "from_beginning", "from_end"):
            out[word] = True
        elif what == "byte_jump" and parts and parts[0] in ("multiplier", "post_offset") and len(parts) == 2:
            out[parts[0]] = _bounded(what, _byte_number(parts[1], what, value), -INT32_MAX, INT32_MAX)
        else:
            raise RuleError("malformed rule", f"{what}:{value[:60]} ({word!r})")
        i += 1
    return out


def _byte_test(b: _Builder, name: str, value: str | None) -> None:
    value = (value or "").strip()
    parts = [p.strip() for p in value.split(",")]
    if len(parts) < 4:
        raise RuleError("malformed rule", f"byte_test:{value[:60]}")
    nbytes = _byte_number(parts[0], name, value)
    op = parts[1].replace(" ", "")
    negated = op.startswith("!")
    op = op.lstrip("!") or "="  # `!` alone means "not equal"
    if op not in _BYTE_OPS:
        raise RuleError("malformed rule", f"byte_test operator {parts[1]!r}")
    opts = _byte_options(name, value, parts[4:])
    if nbytes == 0:
        # accepted by Suricata 7 (ET Open has some), with a meaning its docs do not give
        raise RuleError("unsupported keyword: byte_test of 0 bytes", value[:60])
    if not 1 <= nbytes <= (10 if opts["string"] else 8):
        raise RuleError("malformed rule", f"byte_test bytes {nbytes}")
    offset = _bounded(name, _byte_number(parts[3], name, value), -INT32_MAX, INT32_MAX)
    compared = _byte_number(parts[2], name, value)
    test = ByteTest(nbytes, op, compared, offset, negated=negated, **opts)  # type: ignore[arg-type]
    key = (b.last_match_key() if test.relative else None) or b.sticky_key
    b.add(key, test)


def _byte_jump(b: _Builder, name: str, value: str | None) -> None:
    value = (value or "").strip()
    parts = [p.strip() for p in value.split(",")]
    if len(parts) < 2:
        raise RuleError("malformed rule", f"byte_jump:{value[:60]}")
    nbytes = _byte_number(parts[0], name, value)
    opts = _byte_options(name, value, parts[2:])
    if not 1 <= nbytes <= (10 if opts["string"] else 8):
        raise RuleError("malformed rule", f"byte_jump bytes {nbytes}")
    offset = _bounded(name, _byte_number(parts[1], name, value), -INT32_MAX, INT32_MAX)
    jump = ByteJump(nbytes, offset, **opts)  # type: ignore[arg-type]
    key = (b.last_match_key() if jump.relative else None) or b.sticky_key
    b.add(key, jump)


def _pcre(b: _Builder, name: str, value: str | None) -> None:
    parsed = patterns.parse_pcre(value, stream=b.sticky == PAYLOAD)
    key = b.sticky_key
    if parsed.buffer is not None:
        if b.sticky != PAYLOAD and b.sticky != parsed.buffer:
            raise RuleError("malformed rule", f"pcre buffer flag for {parsed.buffer} inside sticky buffer {b.sticky}")
        key = (parsed.buffer, b.transforms if b.sticky == parsed.buffer else ())
        b.use_buffer(parsed.buffer)
    elif parsed.relative and b.sticky == PAYLOAD:
        # A relative pcre continues from the previous match, in that match's buffer.
        key = b.last_match_key() or PAYLOAD_KEY
    if parsed.relative and key not in b.match_keys():
        raise RuleError("malformed rule", "pcre /R (relative) needs a preceding match in its buffer")
    if key[0] != PAYLOAD and b.sticky == PAYLOAD:
        # Re-check in block mode: sticky buffers are scanned whole, not streamed.
        parsed = patterns.parse_pcre(value, stream=False)
    b.add(
        key,
        PcreMatch(
            parsed.source, parsed.hs_expression, parsed.hs_flags, parsed.negated, parsed.relative, parsed.options
        ),
    )


def _transform(b: _Builder, name: str, value: str | None) -> None:
    if b.sticky == PAYLOAD:
        raise RuleError("malformed rule", f"transform {name} needs a sticky buffer before it")
    if b.transforms_consumed:
        # Suricata: "transforms must directly follow stickybuffers".
        raise RuleError("malformed rule", f"transform {name} after matches in a transformed {b.sticky}")
    # After matches in the buffer, Suricata 7 applies the transform to the matches that
    # follow only (ET writes `dns.query; content:"rs-"; startswith; dotprefix; content:...`):
    # they inspect a transformed copy, the earlier ones the buffer as it was.
    b.transforms = (*b.transforms, name)


def _flow(b: _Builder, name: str, value: str | None) -> None:
    values: dict[str, str] = {}
    for item in (value or "").split(","):
        item = item.strip().lower()
        known = _FLOW_OPTIONS.get(item)
        if known is None:
            raise RuleError("malformed rule", f"flow:{item}")
        slot, setting = known
        if values.get(slot, setting) != setting:
            raise RuleError("malformed rule", f"flow: conflicting {values[slot]} and {setting}")
        values[slot] = setting
    b.flow = FlowConstraint(**values)  # type: ignore[arg-type]


def _flowbits(b: _Builder, name: str, value: str | None) -> None:
    value = (value or "").strip()
    command, _, names_text = value.partition(",")
    command = command.strip().lower()
    names_text = names_text.strip()
    if command == "noalert":
        if names_text:
            raise RuleError("malformed rule", f"flowbits:{value[:40]}")
        b.noalert = True
        return
    if command not in ("set", "isset", "isnotset", "unset", "toggle") or not names_text:
        raise RuleError("malformed rule", f"flowbits:{value[:40]}")
    if "&" in names_text:
        # `a&b` requires all of them: one op per bit says the same.
        for name in names_text.split("&"):
            b.flowbits.append(FlowbitOp(command, (name.strip(),)))  # type: ignore[arg-type]
        return
    names = tuple(n.strip() for n in names_text.split("|"))
    if any(not n for n in names) or (len(names) > 1 and command not in ("isset", "isnotset")):
        raise RuleError("malformed rule", f"flowbits:{value[:40]}")
    b.flowbits.append(FlowbitOp(command, names))  # type: ignore[arg-type]


def _noalert(b: _Builder, name: str, value: str | None) -> None:
    b.noalert = True


def _uint32(text: str) -> int:
    number = int(text)
    if not 0 <= number <= UINT32_MAX:
        raise ValueError(text)
    return number


def number_check(text: str, keyword: str) -> NumberCheck:
    """Suricata's integer syntax: `N`, `!N`, `<N`, `<=N`, `>N`, `>=N`, `N<>M`, `N-M`."""
    text = text.replace(" ", "")
    try:
        if "<>" in text or ("-" in text[1:] and text[0].isdigit()):
            low, high = text.split("<>") if "<>" in text else text.split("-", 1)
            if not 0 <= int(low) < int(high) <= UINT32_MAX:
                raise ValueError
            return NumberCheck("<>", int(low), int(high))
        for op in ("<=", ">=", "<", ">", "!", "="):
            if text.startswith(op):
                number = _uint32(text[len(op) :])
                return NumberCheck("!=" if op == "!" else op, number)  # type: ignore[arg-type]
        return NumberCheck("=", _uint32(text))
    except ValueError:
        raise RuleError("malformed rule", f"{keyword}:{text[:40]}") from None


def _dsize(b: _Builder, name: str, value: str | None) -> None:
    if b.dsize is not None:
        raise RuleError("malformed rule", "dsize given twice")
    b.dsize = number_check(value or "", "dsize")


def _bsize(b: _Builder, name: str, value: str | None) -> None:
    if b.sticky == PAYLOAD:
        raise RuleError("malformed rule", "bsize needs a sticky buffer")
    b.sizes[b.sticky_key] = number_check(value or "", "bsize")


def _urilen(b: _Builder, name: str, value: str | None) -> None:
    size_text, _, mode = (value or "").partition(",")
    mode = mode.strip() or "norm"
    if mode not in ("norm", "raw"):
        raise RuleError("malformed rule", f"urilen:{value}")
    buffer = "http.uri" if mode == "norm" else "http.uri.raw"
    b.use_buffer(buffer)
    b.sizes[(buffer, ())] = number_check(size_text, "urilen")


def _icmp(b: _Builder, name: str, value: str | None) -> None:
    check = number_check(value or "", name)
    if name == "itype":
        b.icmp_type = check
    else:
        b.icmp_code = check


# IP protocol names `ip_proto` takes (Suricata reads /etc/protocols; these are the ones rules use)
_IP_PROTOCOLS = {
    "hopopt": 0,
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "ipencap": 4,
    "tcp": 6,
    "udp": 17,
    "ipv6": 41,
    "ipv6-route": 43,
    "ipv6-frag": 44,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "ipv6-nonxt": 59,
    "ipv6-opts": 60,
    "ospf": 89,
    "pim": 103,
    "vrrp": 112,
    "sctp": 132,
}
_TRANSPORT_PROTOCOL = {"tcp": 6, "udp": 17, "icmp": 1, "sctp": 132}


def _ip_proto(b: _Builder, name: str, value: str | None) -> None:
    """`ip_proto:N` or a protocol's name: the IP header's protocol (the last next header for IPv6); the
    comparisons (<, >, !) are not supported."""
    text = (value or "").strip().lower()
    if text[:1] in ("<", ">", "!"):
        raise RuleError("unsupported keyword: ip_proto comparison", text[:40])
    if b.ip_proto is not None:
        raise RuleError("malformed rule", "ip_proto given twice")
    number = _IP_PROTOCOLS.get(text)
    if number is None:
        if not text.isdigit() or int(text) > 254:
            raise RuleError("malformed rule", f"ip_proto:{text[:40]} is neither a protocol number (0-254) nor a name")
        number = int(text)
    if (
        b.transport == "tcp/udp"
        and number not in (6, 17)
        or b.transport not in ("ip", "tcp/udp")
        and _TRANSPORT_PROTOCOL.get(b.transport) != number
    ):
        raise RuleError("conflicting protocol", f"ip_proto:{text} in a {b.protocol} rule")
    b.ip_proto = number


def _flags(b: _Builder, name: str, value: str | None) -> None:
    value = (value or "").strip().replace(" ", "")
    if not value or any(c not in _TCP_FLAG_CHARS for c in value.upper()):
        raise RuleError("malformed rule", f"flags:{value[:40]}")
    b.tcp_flags = value


def _threshold_fields(value: str | None) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in (value or "").split(","):
        key, _, setting = item.strip().partition(" ")
        fields[key.strip().lower()] = setting.strip().lower()
    return fields


def _threshold(b: _Builder, name: str, value: str | None) -> None:
    fields = _threshold_fields(value)
    kind = fields.get("type", "detection_filter" if name == "detection_filter" else "")
    track = fields.get("track", "")
    if (
        kind not in ("limit", "threshold", "both", "detection_filter")
        or track not in ("by_src", "by_dst", "by_rule", "by_both", "by_flow")
        or not is_decimal(fields.get("count", ""))
        or not is_decimal(fields.get("seconds", ""))
    ):
        raise RuleError("malformed rule", f"{name}:{(value or '')[:60]}")
    count = _bounded(name, int(fields["count"]), 0, UINT32_MAX)
    seconds = _bounded(name, int(fields["seconds"]), 0, UINT32_MAX)
    threshold = Threshold(kind, track, count, seconds)  # type: ignore[arg-type]
    if name == "detection_filter":
        b.detection_filter = threshold
    else:
        b.threshold = threshold


def _ignore(b: _Builder, name: str, value: str | None) -> None:
    # sid was read before the other options, so every error can name it.
    pass


_HANDLERS: dict[str, Callable[[_Builder, str, str | None], None]] = {
    "msg": _msg,
    "sid": _ignore,
    "rev": _rev,
    "gid": _gid,
    "classtype": _classtype,
    "priority": _priority,
    "metadata": _metadata,
    "reference": _reference,
    "target": _target,
    "content": _content,
    "nocase": _nocase,
    "offset": _absolute,
    "depth": _absolute,
    "distance": _relative,
    "within": _relative,
    "startswith": _startswith,
    "endswith": _endswith,
    "fast_pattern": _fast_pattern_option,
    "rawbytes": _rawbytes,
    "isdataat": _isdataat,
    "byte_test": _byte_test,
    "byte_jump": _byte_jump,
    "pcre": _pcre,
    "flow": _flow,
    "flowbits": _flowbits,
    "noalert": _noalert,
    "dsize": _dsize,
    "bsize": _bsize,
    "urilen": _urilen,
    "itype": _icmp,
    "ip_proto": _ip_proto,
    "icode": _icmp,
    "flags": _flags,
    "threshold": _threshold,
    "detection_filter": _threshold,
    **{name: _transform for name in TRANSFORMS},
}
