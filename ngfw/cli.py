"""The `ngfw` command: dataplane, lab, demo, and policy tooling."""

from __future__ import annotations

import argparse
import sys

from ngfw import __version__

# json, logging and typing are imported where used: `ngfw replay` starts in a tenth of a second and
# needs none of them
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return (host.strip("[]") or "0.0.0.0", int(port))


# ngfw.dataplane.failmode.FAIL_MODES, spelled here: building the parser imports nothing of the dataplane
FAIL_MODES = ("closed", "open")


def _wire(text: str) -> tuple[str, str, str | None]:
    """IF_A:IF_B[:MODE] -> (IF_A, IF_B, MODE or None); interface names cannot hold a colon."""
    a, sep, rest = text.partition(":")
    b, mode_sep, mode = rest.partition(":")
    if not sep or not a or not b or a == b:
        raise argparse.ArgumentTypeError(
            f"expected IF_A:IF_B[:closed|open] with two different interfaces, got {text!r}"
        )
    if mode_sep and mode not in FAIL_MODES:
        raise argparse.ArgumentTypeError(f"fail mode {mode!r} of wire {a}:{b} is neither closed nor open")
    return (a, b, mode or None)


def _segment(text: str) -> tuple[str, list[str]]:
    name, sep, ports = text.partition(":")
    members = [p for p in ports.split(",") if p]
    if not sep or not name or len(members) < 2:
        raise argparse.ArgumentTypeError(f"expected NAME:PORT,PORT[,...] with at least two ports, got {text!r}")
    return (name, members)


def _syn_rate(text: str) -> object:
    """N/s[,BURST] or off -> ngfw.dataplane.admission.Rate or None."""
    from ngfw.dataplane.admission import parse_rate

    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timeout(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        return (name, float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=SECONDS (e.g. udp=30), got {text!r}") from None


# commands whose parsers are all in this module; for them the control commands' parsers (most of the
# ~25 argparse parsers, a tenth of a replay's run) are not built
LOCAL_COMMANDS = frozenset({"dataplane", "lab", "demo", "policy", "replay", "rules", "apps", "schema", "sessions"})


def _top_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    parser = argparse.ArgumentParser(prog="ngfw", description="Virtualization-aware next-generation firewall dataplane")
    parser.add_argument("--version", action="version", version=f"ngfw {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser, parser.add_subparsers(dest="command", required=True)


def _add_signature_args(parser: argparse.ArgumentParser, rules_help: str) -> None:
    """`--rules` and `--var`, as the commands that load Suricata rules take them."""
    parser.add_argument("--rules", action="append", default=[], metavar="[NAME=]PATH", help=rules_help)
    parser.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a rule variable, e.g. HOME_NET=[10.0.0.0/8] (repeatable)",
    )


def _add_replay(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("replay", help="run the compiled pipeline over pcap/pcapng files, one record per flow")
    rp.add_argument("files", nargs="+", metavar="FILE")
    rp.add_argument("--policy", metavar="PATH", help="policy to decide flows with (default: allow everything)")
    rp.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_signature_args(
        rp,
        "inspect every flow with these Suricata rules (file or directory; repeatable) and "
        "print alert records next to flow records",
    )


def build_replay_parser() -> argparse.ArgumentParser:
    """`ngfw replay ...` alone: building every command's parser was a tenth of replaying a small capture."""
    parser, sub = _top_parser()
    _add_replay(sub)
    return parser


def build_sessions_parser() -> argparse.ArgumentParser:
    """`ngfw sessions ...` alone: an operator's command answers faster without every other command's parser."""
    from ngfw.dataplane import ops_cli

    parser, sub = _top_parser()
    ops_cli.add_sessions_parser(sub)
    return parser


def build_parser(with_control: bool = True) -> argparse.ArgumentParser:
    parser, sub = _top_parser()

    dp = sub.add_parser("dataplane", help="run the inline dataplane on wires and TAPs")
    dp.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from a YAML file (the systemd unit's /etc/ngfw/dataplane.yaml): each key is "
        "an option of this command, e.g. `wire: [ens4:ens5]`; options on the command line win",
    )
    dp.add_argument(
        "--wire",
        type=_wire,
        action="append",
        default=[],
        metavar="IF_A:IF_B[:MODE]",
        help="forward between two existing interfaces (repeatable); MODE closed or open overrides "
        "--fail-mode for this wire",
    )
    dp.add_argument(
        "--fail-mode",
        choices=FAIL_MODES,
        default="closed",
        help="what passes on a wire while no healthy dataplane runs: closed (nothing, the default) or "
        "open (the kernel forwards between its interfaces within a second of the dataplane dying "
        "or its packet loop stalling, until a dataplane takes the wire back; needs eBPF)",
    )
    dp.add_argument(
        "--tap",
        action="append",
        default=[],
        metavar="NAME",
        help="create or open a TAP device whose far side is a VM (repeatable)",
    )
    dp.add_argument(
        "--segment",
        type=_segment,
        action="append",
        default=[],
        metavar="NAME:PORT,PORT,...",
        help="switch frames by MAC learning among these ports (TAPs and interfaces); TAPs in no segment share one",
    )
    dp.add_argument("--policy", metavar="PATH", help="policy YAML file or directory (SIGHUP reloads it)")
    dp.add_argument("--metrics", type=_host_port, metavar="HOST:PORT", help="serve Prometheus metrics")
    dp.add_argument(
        "--eve",
        action="append",
        default=[],
        metavar="TARGET",
        help="write EVE JSON records (flow, drop, alert, stats, migration) to TARGET: a file path (appended; "
        "SIGHUP reopens it), syslog://HOST:PORT (RFC 5424 over UDP), syslog+tcp://HOST:PORT, "
        "syslog:///dev/log, unix:///PATH (stream socket) or unix+dgram:///PATH; repeatable",
    )
    dp.add_argument(
        "--eve-stats-interval",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="write a `stats` record (the dataplane's counters, Suricata's shape) this often (0: never)",
    )
    dp.add_argument(
        "--capture-dir",
        default="/var/log/ngfw/pcap",
        metavar="DIR",
        help="where `capture:` rules and threat profiles write pcap files, one directory per vsys (/var/log/ngfw/pcap)",
    )
    dp.add_argument(
        "--capture-file-size",
        type=float,
        default=16.0,
        metavar="MB",
        help="start a new capture file when one reaches this size (16)",
    )
    dp.add_argument(
        "--capture-max-size",
        type=float,
        default=256.0,
        metavar="MB",
        help="capture files each vsys keeps at most; the oldest go first (256)",
    )
    dp.add_argument(
        "--capture-ring",
        type=float,
        default=4.0,
        metavar="MB",
        help="memory the packet loop copies captured frames into before they are written (4)",
    )
    _add_signature_args(
        dp,
        "signature set NAME (default: `default`) from a Suricata rule file or directory "
        "(repeatable); policy rules reach it with `inspect:` (SIGHUP reloads it)",
    )
    dp.add_argument(
        "--signature-cache",
        metavar="DIR",
        help="where the signature sets the policy's SignatureSets name are kept, verified (default "
        "$NGFW_CACHE_DIR/signature-sets, or ~/.cache/ngfw/signature-sets)",
    )
    dp.add_argument(
        "--inspect-flows",
        type=int,
        default=None,
        metavar="N",
        help="flows inspected at once (inspection state, ~0.7 KB each beyond Hyperscan's stream "
        "state; default: the flow capacity)",
    )
    dp.add_argument("--flow-capacity", type=int, default=262144, metavar="N", help="flows the table holds (262144)")
    dp.add_argument(
        "--max-workload-loss",
        type=float,
        default=0.5,
        metavar="FRACTION",
        help="refuse a policy file reload that drops more than this share of the running workloads "
        "(0.5; 1 accepts any)",
    )
    dp.add_argument(
        "--state-dir",
        metavar="DIR",
        help="tmpfs directory where the flow table lives, so a dataplane restarted after a crash or an "
        "upgrade continues its sessions (default: /run/ngfw/<namespace>-<ports>, or under /dev/shm "
        "where /run is not tmpfs; `none`: sessions end with the process)",
    )
    dp.add_argument(
        "--socket",
        metavar="PATH",
        help="serve `ngfw sessions` and `ngfw policy hits` on this unix socket, root only (default: "
        "/run/ngfw/<namespace>-<ports>.sock, under /dev/shm/ngfw where /run is not tmpfs; `none`: "
        "no socket)",
    )
    dp.add_argument(
        "--timeout",
        type=_timeout,
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="idle timeout: tcp_syn, tcp_established, tcp_closing, tcp_closed, udp, icmp, other",
    )
    dp.add_argument(
        "--appid-budget",
        type=int,
        default=8,
        metavar="N",
        help="payload packets a flow waiting for its application may pass before it is decided (8)",
    )
    dp.add_argument(
        "--appid-max-pkts",
        type=int,
        default=8,
        metavar="N",
        help="payload packets after which an unidentified flow is decided (8)",
    )
    dp.add_argument(
        "--appid-buffers",
        type=int,
        default=1024,
        metavar="N",
        help="flows classified at once with reassembly buffers, 10 KB each (1024)",
    )
    dp.add_argument(
        "--bypass",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="flow bypass: the kernel forwards a wire's flows whose verdict is final (allowed, "
        "application known, inspection depth reached) for the rest of their life (on by default; "
        "needs eBPF, else the dataplane says so once and forwards every flow itself)",
    )
    dp.add_argument(
        "--syn-limit-per-source",
        type=_syn_rate,
        default="10000/s",
        metavar="N/s[,BURST]|off",
        help="SYN flood protection: new TCP connections (SYNs) one source address may open per second "
        "through a wire; the kernel drops the excess before it reaches the dataplane, so a flood "
        "from one address leaves room for everyone else (10000/s, a second's worth as burst; off: "
        "no limit; needs eBPF, else the dataplane says so once and admits every SYN)",
    )
    dp.add_argument(
        "--syn-limit-total",
        type=_syn_rate,
        default="off",
        metavar="N/s[,BURST]|off",
        help="SYNs all sources together may open per second through the wires (off, the default): "
        "against floods from many or spoofed addresses; legitimate SYNs are dropped in the "
        "flood's proportion, so size it to what the packet loop handles",
    )
    dp.add_argument(
        "--tx-thread",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="under load, flush the TX rings from a second thread: the kernel's work for the receiving "
        "side then overlaps with the packet loop (on by default; sparse traffic and turns of a few small "
        "frames are flushed by the loop itself, without the hand-over's wake-up)",
    )
    dp.add_argument(
        "--idle-spin-us",
        type=float,
        default=200.0,
        metavar="US",
        help="under load, keep polling the rings this long after the last frame before sleeping (200; "
        "0 sleeps at once: less CPU, more latency)",
    )
    dp.add_argument(
        "--idle-spin-quiet-us",
        type=float,
        default=20000.0,
        metavar="US",
        help="while traffic is sparse (under 5,000 frames/s), keep polling this long after the last "
        "frame (20000: interactive traffic does not wait for a wake-up, at the cost of a core while "
        "frames keep coming within it; 0: as under load)",
    )

    lab = sub.add_parser("lab", help="network-namespace lab: two workloads, the dataplane, a server")
    lab_sub = lab.add_subparsers(dest="action", required=True, metavar="{up,down,migrate}")
    lab_up = lab_sub.add_parser("up", help="build the lab (after removing leftovers of the same prefix)")
    lab_up.add_argument("--prefix", default="ngfw", help="namespace name prefix (ngfw)")
    lab_up.add_argument(
        "--hosts",
        type=int,
        choices=[1, 2],
        default=1,
        help="2: a second host with tenant-b's db1 and a management network for ngfw control",
    )
    lab_up.add_argument(
        "--vm-workloads",
        action="store_true",
        help="web1 and web2 are QEMU guests (Debian kernel, busybox) instead of namespaces",
    )
    lab_up.add_argument(
        "--fw-vm",
        action="store_true",
        help="the firewall is the ngfw VM image (deploy/vm/) under QEMU, enforcing the lab policy, "
        "instead of the fw namespace (TCG where KVM cannot run it: minutes to boot)",
    )
    lab_down = lab_sub.add_parser("down", help="remove the lab: namespaces, QEMU guests, TAPs")
    lab_down.add_argument("--prefix", default="ngfw", help="namespace name prefix (ngfw)")
    lab_migrate = lab_sub.add_parser(
        "migrate",
        help="move a workload to the other host as a hypervisor would (QEMU live migration for a "
        "VM, the link for a namespace); does nothing to ngfw",
    )
    lab_migrate.add_argument("workload", help="web1, web2 or db1")
    lab_migrate.add_argument("--to", required=True, metavar="HOST", help="host-a or host-b")
    lab_migrate.add_argument("--prefix", default="ngfw", help="namespace name prefix (ngfw)")

    demo = sub.add_parser("demo", help="bring the lab up, run the dataplane, drive real clients, tear down")
    demo.add_argument("--prefix", default="ngfw")
    demo.add_argument("--policy", help="policy to run (rules/examples/lab.yaml)")
    demo.add_argument(
        "--fw-vm",
        action="store_true",
        help="the firewall is the ngfw VM image under QEMU (built first if missing: deploy/vm/)",
    )

    pol = sub.add_parser("policy", help="policy tooling")
    pol_sub = pol.add_subparsers(dest="policy_command", required=True)
    check = pol_sub.add_parser("check", help="validate and compile a policy, print a summary or the errors")
    check.add_argument("path")
    check.add_argument("--json", action="store_true")
    from ngfw.dataplane import ops_cli  # argparse only: what the commands need is imported when they run

    ops_cli.add_policy_parsers(pol_sub)
    ops_cli.add_sessions_parser(sub)

    _add_replay(sub)

    rules = sub.add_parser("rules", help="threat signatures (Suricata rule syntax)")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    check_rules = rules_sub.add_parser("check", help="load rule files, print loaded/skipped counts by reason")
    # declared here, not imported from the rule compiler: every `ngfw` command would pay for its import
    check_rules.add_argument("files", nargs="+", metavar="FILE", help="Suricata rule files")
    check_rules.add_argument("--json", action="store_true", help='print {"loaded": N, "skipped": M, "reasons": {...}}')
    check_rules.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a rule variable, e.g. HOME_NET=[10.0.0.0/8] (repeatable)",
    )
    check_rules.add_argument(
        "--verbose", "-v", action="store_true", help="list every skipped rule with file, line, sid"
    )
    check_rules.add_argument(
        "--policy",
        metavar="PATH",
        help="also check the policy's threat profiles: every signature their exceptions and "
        "threshold.config lines name must be in FILE... (each one is listed)",
    )
    push = rules_sub.add_parser(
        "push",
        help="store a signature set in control (by its sha256) and name it in your "
        "candidate: every host fetches it, verifies it and runs it",
    )
    push.add_argument("name", help="the set's name, as threat profiles' `signatures` name it (et, local, ...)")
    push.add_argument("path", help="a .rules file, or a directory of them (suricata-update's output, ET Open)")
    push.add_argument("-m", "--message", help="commit at once with this message (else: review, then ngfw commit)")
    push.add_argument("--description", help="where the set comes from (kept in the SignatureSet resource)")
    from ngfw.control.cli_hooks import client_options

    client_options(push)

    apps = sub.add_parser("apps", help="list the applications App-ID knows (the catalogue in rules/apps/)")
    apps.add_argument("--json", action="store_true")

    sub.add_parser("schema", help="print the JSON Schema of the policy resources")

    from ngfw.control import cli_hooks as control_cli  # argparse only: the control commands import lazily

    control_cli.add_dataplane_options(dp)
    if with_control:
        control_cli.register(sub)
    return parser


def cmd_dataplane(args: argparse.Namespace) -> int:
    from ngfw.dataplane.admission import SynLimits
    from ngfw.dataplane.failmode import wire_modes
    from ngfw.dataplane.fastpath import FastpathMissing
    from ngfw.dataplane.ports import PortError
    from ngfw.dataplane.runner import Dataplane, PortPlan, serve
    from ngfw.dataplane.threats import RulesError
    from ngfw.model.errors import PolicyError

    # under systemd the settings come from --config: every error names that file too
    where = f"{args.config}: " if args.config else ""
    if not args.wire and not args.tap and not args.segment:
        print(
            f"ngfw dataplane: {where}give at least one --wire IF_A:IF_B, --tap NAME or --segment "
            f"({'wire: [IF_A:IF_B]' if args.config else 'no ports'})",
            file=sys.stderr,
        )
        return 2
    if args.fail_mode == "open" and not args.wire:
        print(
            f"ngfw dataplane: {where}--fail-mode open applies to wires, and this dataplane has no --wire",
            file=sys.stderr,
        )
        return 2
    plan = PortPlan(
        wires=[(a, b) for a, b, _ in args.wire],
        taps=args.tap,
        segments=dict(args.segment),
        fail_modes=wire_modes(args.wire, args.fail_mode),
    )
    from ngfw.dataplane.state import StateError, auto_state_dir

    state_dir = None if args.state_dir == "none" else (args.state_dir or auto_state_dir(plan))
    from ngfw.dataplane.runner import EveOptions

    for name in ("capture_file_size", "capture_max_size", "capture_ring"):
        value = getattr(args, name)
        if not 0 < value <= 1 << 20:
            print(f"ngfw dataplane: --{name.replace('_', '-')} {value:g}: give a size in MB above 0", file=sys.stderr)
            return 2
    if args.capture_ring > 1024:
        print(f"ngfw dataplane: --capture-ring {args.capture_ring:g}: at most 1024 MB", file=sys.stderr)
        return 2
    eve_options = EveOptions(
        targets=list(args.eve),
        stats_interval=args.eve_stats_interval,
        capture_dir=args.capture_dir,
        capture_file_bytes=int(args.capture_file_size * (1 << 20)),
        capture_vsys_bytes=int(args.capture_max_size * (1 << 20)),
        capture_ring_bytes=int(args.capture_ring * (1 << 20)),
    )
    try:
        dp = Dataplane(
            plan,
            policy_path=args.policy,
            eve_options=eve_options,
            flow_capacity=args.flow_capacity,
            state_dir=state_dir,
            host=getattr(args, "host", None),
            max_workload_loss=args.max_workload_loss,
            timeouts=dict(args.timeout),
            idle_spin_us=args.idle_spin_us,
            idle_spin_quiet_us=args.idle_spin_quiet_us,
            appid=dict(
                appid_budget=args.appid_budget, appid_max_pkts=args.appid_max_pkts, appid_slots=args.appid_buffers
            ),
            tx_thread=args.tx_thread,
            inspect_flows=args.inspect_flows,
            signature_cache=args.signature_cache,
            bypass=args.bypass,
            syn_limits=SynLimits(per_source=args.syn_limit_per_source, total=args.syn_limit_total),
        )
        if args.rules:
            from ngfw.compiler.rules_cli import parse_variables
            from ngfw.dataplane.threats import parse_rules_arg

            dp.load_signatures([parse_rules_arg(r) for r in args.rules], parse_variables(args.var))
        if args.policy:
            dp.load_file()
    except RulesError as exc:
        print(f"ngfw dataplane: {where}rules refused: {exc}", file=sys.stderr)
        return 1
    except (PortError, FastpathMissing, ValueError, StateError) as exc:
        print(f"ngfw dataplane: {where}{exc}", file=sys.stderr)
        return 1
    except PolicyError as exc:
        # the details first, then one line that names the file and the reason: the line `systemctl
        # status` (the journal's tail) shows
        if len(exc.problems) > 1:
            print("\n".join(exc.problems), file=sys.stderr)
        first = exc.problems[0] if exc.problems else "no reason given"
        more = f" (and {len(exc.problems) - 1} more problems, above)" if len(exc.problems) > 1 else ""
        print(f"ngfw dataplane: {where}policy {args.policy} refused: {first}{more}", file=sys.stderr)
        return 1
    try:
        from ngfw.control.cli_hooks import start_dataplane_agent, wait_for_policy

        agent = start_dataplane_agent(dp, args)  # --control: policy bundles from ngfw control, applied via dp.load
        if agent is not None and args.control_wait:
            problem = wait_for_policy(agent, args)
            if problem:
                agent.stop()
                dp.stop()
                print(f"ngfw dataplane: {where}{problem}", file=sys.stderr)
                return 1
    except (ValueError, OSError) as exc:
        print(f"ngfw dataplane: {where}{exc}", file=sys.stderr)
        return 2
    import logging

    if dp.policy is None:
        logging.getLogger("ngfw").warning("no --policy: every frame is dropped (reason no_policy) until one is loaded")
    else:
        logging.getLogger("ngfw").info(
            "policy version %d: %d vsys, %d workloads, %d rules",
            dp.policy.version,
            len(dp.policy.vsys),
            len(dp.policy.workloads),
            len(dp.policy.rules),
        )
    from ngfw.dataplane.opsocket import default_socket_path

    socket_path = None if args.socket == "none" else (args.socket or default_socket_path(plan))
    status = serve(dp, args.metrics, socket_path)
    import os

    # the sessions are saved and the logs closed: end now, without the interpreter tearing down the
    # tables, caches and threads one object at a time (over half a second that a restart waits for)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def cmd_policy_check(args: argparse.Namespace) -> int:
    import json

    from ngfw.compiler.lint import lint
    from ngfw.compiler.policy import load_policy, policy_digest
    from ngfw.model.errors import PolicyError

    try:
        policy = load_policy(args.path)
    except PolicyError as exc:
        if args.json:
            print(json.dumps({"ok": False, "errors": exc.problems}))
        else:
            print(exc, file=sys.stderr)
        return 1
    warnings = lint(policy)
    digest = policy_digest(policy)
    summary = {
        "ok": True,
        "digest": digest,
        "vsys": len(policy.vsys),
        "workloads": len(policy.workloads),
        "rules": len(policy.rules),
        "warnings": warnings,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{args.path}: ok: {summary['vsys']} vsys, {summary['workloads']} workloads, {summary['rules']} rules "
            f"(sha256 {digest[:12]})"
        )
        for warning in warnings:
            print(f"warning: {warning}")
    return 0


def cmd_apps(args: argparse.Namespace) -> int:
    from ngfw.compiler.catalogue import load_catalogue
    from ngfw.model.errors import PolicyError
    from ngfw.wire import PROTO_TCP

    try:
        catalogue = load_catalogue()
    except PolicyError as exc:
        print(f"ngfw apps: the catalogue does not load:\n{exc}", file=sys.stderr)
        return 1
    rows = []
    for app in catalogue.apps:
        ports = ", ".join(f"{'tcp' if l4 == PROTO_TCP else 'udp'}/{port}" for l4, port in app.ports)
        parent = catalogue.apps[app.parent].name if app.parent is not None else None
        rows.append(
            {
                "name": app.name,
                "kind": app.kind,
                "category": app.category,
                "risk": app.risk,
                "parent": parent,
                "ports": ports,
                "hosts": list(app.hosts),
            }
        )
    if args.json:
        import json

        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            over = f" (over {r['parent']})" if r["parent"] else ""
            print(f"{r['name']:<20} {r['kind']:<9} {r['category']:<22} risk {r['risk']}  {r['ports']}{over}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from ngfw.dataplane.fastpath import FastpathMissing
    from ngfw.dataplane.replay import Replayer, format_table

    policy = None
    if args.policy:
        # the policy model (pydantic) is imported only when a policy is given: replay starts faster
        from ngfw.compiler.policy import load_policy
        from ngfw.model.errors import PolicyError

        try:
            policy = load_policy(args.policy)
        except PolicyError as exc:
            print(f"ngfw replay: policy {args.policy} refused:\n{exc}", file=sys.stderr)
            return 1
    signatures = None
    if args.rules:
        from ngfw.compiler.catalogue import load_catalogue
        from ngfw.compiler.rules_cli import parse_variables
        from ngfw.dataplane.threats import RulesError, load_signature_sets, parse_rules_arg

        try:
            signatures = load_signature_sets(
                [parse_rules_arg(r) for r in args.rules],
                parse_variables(args.var),
                policy.catalogue if policy is not None else load_catalogue(),
            )
        except (RulesError, ValueError) as exc:
            print(f"ngfw replay: rules refused: {exc}", file=sys.stderr)
            return 1
        except FastpathMissing as exc:
            print(f"ngfw replay: {exc}", file=sys.stderr)
            return 1
        print(f"ngfw replay: {signatures.summary()}", file=sys.stderr)
    try:
        replayer = Replayer(policy, signatures=signatures)
    except FastpathMissing as exc:
        print(f"ngfw replay: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a profile names a signature set that was not given
        print(f"ngfw replay: {exc}", file=sys.stderr)
        return 1
    out = sys.stdout
    damaged = 0
    for path in args.files:
        if args.json and signatures is None:
            out.flush()
            out.buffer.write(replayer.replay_file_json(path))  # written by the extension, no dicts
        elif args.json:
            import orjson

            out.flush()
            out.buffer.write(b"".join(orjson.dumps(r) + b"\n" for r in replayer.replay_file(path)))
        else:
            for line in format_table(replayer.replay_file(path)):
                print(line, file=out)
        # a damaged file is named with the byte offset; the other files still run
        for problem in replayer.problems:
            print(f"ngfw replay: {problem}", file=sys.stderr)
        damaged += len(replayer.problems)
        replayer.problems.clear()
    return 1 if damaged else 0


def signal_default_pipe(argv: Sequence[str] | None) -> None:
    """`ngfw replay ... | head` ends quietly. Only as the program itself (no `argv` given): a caller of main() in
    its own process (the tests) keeps Python's handling, or its next write to a closed socket would kill it."""
    import signal

    if argv is None:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((w for w in words if not w.startswith("-")), None)
    if words and words[0] == "replay":
        args = build_replay_parser().parse_args(words)
    elif words and words[0] == "sessions":
        from ngfw.dataplane import ops_cli

        signal_default_pipe(argv)
        return ops_cli.cmd_sessions(build_sessions_parser().parse_args(words))  # logs nothing
    else:
        args = build_parser(with_control=command not in LOCAL_COMMANDS).parse_args(words)
    if args.command in ("apps", "replay", "schema", "policy", "rules"):
        signal_default_pipe(argv)
    if args.command == "replay":
        return cmd_replay(args)  # logs nothing: a warning would still reach stderr
    if getattr(args, "config", None):
        from ngfw.config import ConfigError, with_config

        parser = build_parser(with_control=command not in LOCAL_COMMANDS)
        try:
            args = parser.parse_args(with_config(words, args.command, parser, args.config))
        except ConfigError as exc:
            print(f"ngfw {args.command}: {exc}", file=sys.stderr)
            return 2
    import logging
    import os

    # under systemd the journal stamps every line itself
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format=stamp + "%(name)s %(levelname)s %(message)s"
    )
    if args.command == "dataplane":
        return cmd_dataplane(args)
    if args.command in ("lab", "demo"):
        try:
            import ngfw.lab  # noqa: F401
        except ModuleNotFoundError:
            print(
                f"ngfw {args.command}: the lab is development tooling and not part of this installation; run it "
                "from a clone of ngfw (README: Two commands)",
                file=sys.stderr,
            )
            return 2
    if args.command == "lab":
        from ngfw.lab.cli_hooks import lab_down_cmd, lab_migrate_cmd, lab_up_cmd

        if args.action == "up":
            return lab_up_cmd(args.prefix, args.hosts, vm_workloads=args.vm_workloads, fw_vm=args.fw_vm)
        if args.action == "migrate":
            return lab_migrate_cmd(args.prefix, args.workload, args.to)
        return lab_down_cmd(args.prefix)
    if args.command == "demo":
        from ngfw.lab.cli_hooks import demo_cmd

        return demo_cmd(prefix=args.prefix, policy=args.policy, fw_vm=args.fw_vm)
    if args.command == "sessions":
        from ngfw.dataplane import ops_cli

        return ops_cli.cmd_sessions(args)
    if args.command == "policy":
        from ngfw.dataplane import ops_cli

        if args.policy_command == "hits":
            return ops_cli.cmd_policy_hits(args)
        if args.policy_command == "unused":
            return ops_cli.cmd_policy_unused(args)
        return cmd_policy_check(args)
    if args.command == "apps":
        return cmd_apps(args)
    if args.command == "rules" and args.rules_command == "push":
        from ngfw.control.cli_hooks import rules_push

        return rules_push(args)
    if args.command == "rules":
        from ngfw.compiler.rules_cli import rules_check

        return rules_check(args.files, args.json, args.var, verbose=args.verbose, policy=args.policy)
    if args.command == "schema":
        import json

        from ngfw.model.schema import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    from ngfw.control.cli_hooks import dispatch

    result = dispatch(args)  # control, apply, diff, commit, rollback, status, explain, ...
    return 2 if result is None else result


if __name__ == "__main__":
    sys.exit(main())
