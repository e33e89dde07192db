"""The control-plane commands of `ngfw`: control, apply, diff, commit, rollback, status, explain, ...

ngfw/cli.py only calls `register` (subparsers) and `dispatch`; everything else lives here.
Imports of the model and compiler happen inside the commands, so that `ngfw --help` and the
other commands stay fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

# json and typing are imported where used: `ngfw replay` builds its parser from here and starts faster
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CONTROL = "http://127.0.0.1:9660"
COMMANDS = (
    "control",
    "apply",
    "diff",
    "commit",
    "rollback",
    "status",
    "migrate",
    "explain",
    "discard",
    "rebase",
    "history",
    "audit",
    "get",
    "delete",
    "users",
)
# `ngfw get/delete KIND`: what a user may type -> the resource kind
KIND_NAMES = {
    "virtualsystem": "VirtualSystem",
    "virtualsystems": "VirtualSystem",
    "vsys": "VirtualSystem",
    "workload": "Workload",
    "workloads": "Workload",
    "vm": "Workload",
    "vms": "Workload",
    "group": "Group",
    "groups": "Group",
    "securitypolicy": "SecurityPolicy",
    "securitypolicies": "SecurityPolicy",
    "policy": "SecurityPolicy",
    "policies": "SecurityPolicy",
    "threatprofile": "ThreatProfile",
    "threatprofiles": "ThreatProfile",
    "signatureset": "SignatureSet",
    "signaturesets": "SignatureSet",
    "usergroup": "UserGroup",
    "usergroups": "UserGroup",
    "usersource": "UserSource",
    "usersources": "UserSource",
}


def client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--control",
        default=os.environ.get("NGFW_CONTROL", DEFAULT_CONTROL),
        metavar="URL",
        help=f"control API, http:// or https:// (default $NGFW_CONTROL or {DEFAULT_CONTROL})",
    )
    parser.add_argument("--token-file", metavar="FILE", help="file holding the bearer token (default $NGFW_TOKEN)")
    parser.add_argument(
        "--ca-file",
        default=os.environ.get("NGFW_CA_FILE") or None,
        metavar="FILE",
        help="CA certificate(s) (PEM) that control's https certificate must chain to "
        "(default $NGFW_CA_FILE, else the system's CAs)",
    )


def register(sub: Any) -> None:
    """Add the control-plane subcommands to `ngfw`'s subparsers."""
    ctl = sub.add_parser("control", help="run the control daemon (HTTP+JSON API), or manage its tokens")
    ctl.add_argument(
        "--config",
        metavar="FILE",
        help="read settings from a YAML file (the systemd unit's /etc/ngfw/control.yaml): each key is "
        "an option of this command, e.g. `listen: 10.0.0.5:9660`; options on the command line win",
    )
    ctl.add_argument("--listen", default="127.0.0.1:9660", metavar="HOST:PORT", help="API address (127.0.0.1:9660)")
    ctl.add_argument(
        "--store",
        default="sqlite:///var/lib/ngfw/control.db",
        metavar="URL",
        help="sqlite:///PATH (default sqlite:///var/lib/ngfw/control.db) or etcd://HOST:PORT[/PREFIX]",
    )
    ctl.add_argument(
        "--tokens",
        default="/etc/ngfw/tokens.json",
        metavar="FILE",
        help="tokens file: names, roles and sha256 digests (/etc/ngfw/tokens.json)",
    )
    ctl.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM, chain included)")
    ctl.add_argument("--tls-key", metavar="FILE", help="the private key of --tls-cert (PEM, unencrypted)")
    ctl.add_argument(
        "--client-ca",
        metavar="FILE",
        help="accept client certificates signed by this CA (PEM) as dataplane:HOST, HOST being the "
        "certificate's CN (else its first DNS name); bearer tokens keep working",
    )
    ctl.add_argument(
        "--syslog",
        metavar="HOST:PORT",
        help="receive syslog (UDP and TCP, RFC 3164/5424) on HOST:PORT: logins and logouts the "
        "UserSources' syslog profiles match map users to addresses (User-ID)",
    )
    ctl.add_argument(
        "--insecure-http",
        action="store_true",
        help="serve plain HTTP on a non-loopback --listen address (tokens cross the network in clear)",
    )
    ctl_sub = ctl.add_subparsers(dest="control_command")
    token = ctl_sub.add_parser("token", help="add, list or remove API tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    add = token_sub.add_parser("add", help="create a token, print it once; the file keeps its sha256 only")
    add.add_argument("name")
    add.add_argument("role", help="security-admin, tenant-admin:VSYS, vm-operator, viewer or dataplane[:HOST]")
    token_sub.add_parser("list", help="token names and roles")
    remove = token_sub.add_parser("remove", help="revoke a token")
    remove.add_argument("name")

    apply = sub.add_parser("apply", help="put resources from YAML files into your candidate configuration")
    apply.add_argument(
        "-f",
        "--filename",
        action="append",
        required=True,
        metavar="FILE|DIR",
        help="YAML file or directory (repeatable)",
    )
    apply.add_argument(
        "--identity",
        action="store_true",
        help="Workloads only: change bindings/labels at once, without a commit (vm-operator)",
    )
    client_options(apply)

    diff = sub.add_parser("diff", help="diff two configurations (default: running vs your candidate)")
    diff.add_argument("old", nargs="?", default="running", help="version number, running or candidate")
    diff.add_argument("new", nargs="?", default="candidate", help="version number, running or candidate")
    diff.add_argument("--json", action="store_true")
    client_options(diff)

    commit = sub.add_parser("commit", help="validate, compile and publish your candidate as the next version")
    commit.add_argument("-m", "--message", required=True)
    commit.add_argument("--base", type=int, metavar="N", help="refuse unless version N is still the running one")
    client_options(commit)

    rollback = sub.add_parser("rollback", help="publish a new version with the policy of version N")
    rollback.add_argument("version", type=int)
    rollback.add_argument("-m", "--message", default="")
    client_options(rollback)

    users = sub.add_parser("users", help="User-ID: map addresses (or a VM's addresses) to users, list the mappings")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    umap = users_sub.add_parser("map", help="say which user is behind an address or a VM (no policy commit)")
    umap.add_argument("target", metavar="ADDRESS|vm:NAME", help="an IP address, or vm:NAME / vm:VSYS/NAME")
    umap.add_argument("user", help="the user name")
    umap.add_argument("--ttl", type=float, metavar="S", help="seconds the mapping lasts (default: until unmapped)")
    umap.add_argument("--json", action="store_true")
    client_options(umap)
    unmap = users_sub.add_parser("unmap", help="end the mapping of an address or of a VM's addresses")
    unmap.add_argument("target", metavar="ADDRESS|vm:NAME")
    unmap.add_argument("--json", action="store_true")
    client_options(unmap)
    ulist = users_sub.add_parser("list", help="the mappings control holds: address, user, source, lifetime, groups")
    ulist.add_argument("--json", action="store_true")
    client_options(ulist)
    migrate = sub.add_parser("migrate", help="announce a workload's move to another host: its sessions go there first")
    migrate.add_argument("workload", help="the Workload's name")
    migrate.add_argument("--to", required=True, metavar="HOST", help="the host it moves to")
    migrate.add_argument("--vsys", help="its vsys, when its name is not unique")
    migrate.add_argument("--json", action="store_true")
    client_options(migrate)

    status = sub.add_parser("status", help="which version every host runs, and migrations in progress")
    status.add_argument("--json", action="store_true")
    status.add_argument(
        "--wait",
        type=int,
        metavar="VERSION",
        help="wait until every host runs VERSION (or a later one): exit 0 then, 1 (naming the "
        "hosts) if one refuses it or some are still behind after --timeout",
    )
    status.add_argument("--timeout", type=float, default=60.0, metavar="S", help="for --wait (default 60 s)")
    client_options(status)

    get = sub.add_parser("get", help="running resources: one per line, or the documents (-o yaml|json)")
    get.add_argument(
        "kind",
        metavar="KIND",
        help="VirtualSystem, Workload, Group, SecurityPolicy, ThreatProfile, "
        "SignatureSet, UserGroup or UserSource (any case, plural, or vsys, "
        "vm, policy)",
    )
    get.add_argument("name", nargs="?", metavar="[VSYS/]NAME", help="one resource (default: all of KIND)")
    get.add_argument("--vsys", help="only this vsys")
    get.add_argument(
        "-o",
        "--output",
        choices=("yaml", "json"),
        help="print the documents (default with NAME: yaml; without: one line each)",
    )
    get.add_argument("--candidate", action="store_true", help="from your candidate instead of the running version")
    client_options(get)

    delete = sub.add_parser(
        "delete",
        help="delete a resource from your candidate (commit to publish); "
        "--identity: remove a Workload at once, without a commit",
    )
    delete.add_argument("kind", metavar="KIND")
    delete.add_argument("name", metavar="[VSYS/]NAME")
    delete.add_argument("--vsys", help="its vsys, when its name is not unique")
    delete.add_argument(
        "--identity", action="store_true", help="a Workload, through the identity API (vm-operator): effective at once"
    )
    client_options(delete)

    explain = sub.add_parser("explain", help="which vsys, rule and application decide a flow, and why")
    explain.add_argument("--from", dest="source", required=True, metavar="vm:NAME|IP")
    explain.add_argument("--to", dest="destination", required=True, metavar="vm:NAME|IP")
    explain.add_argument("--service", required=True, metavar="tcp/PORT|udp/PORT|icmp")
    explain.add_argument("--app", metavar="NAME", help="the application App-ID would name (default: unknown)")
    explain.add_argument("--user", metavar="NAME", help="the user behind the source (default: none known)")
    explain.add_argument("--policy", metavar="PATH", help="explain against a policy file instead of control")
    explain.add_argument("--json", action="store_true")
    client_options(explain)

    for name, text in (
        ("discard", "throw your candidate away"),
        ("rebase", "move your candidate onto the running version, keeping your changes"),
    ):
        client_options(sub.add_parser(name, help=text))
    history = sub.add_parser("history", help="committed versions, newest first")
    history.add_argument("-n", type=int, default=20)
    client_options(history)
    audit = sub.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("-n", type=int, default=50)
    audit.add_argument("--json", action="store_true")
    client_options(audit)


def add_dataplane_options(parser: argparse.ArgumentParser) -> None:
    """`ngfw dataplane --control URL --host NAME [--token-file F]`."""
    parser.add_argument("--control", metavar="URL", help="take policy from ngfw control at URL (agent)")
    parser.add_argument(
        "--host",
        metavar="NAME",
        help="this host's name towards control (with --control) and in EVE records (`host`; default: the hostname)",
    )
    parser.add_argument("--token-file", metavar="FILE", help="dataplane token for control (default $NGFW_TOKEN)")
    parser.add_argument(
        "--bundle-cache",
        metavar="PATH",
        help="keep the last good bundle here; loaded at start when control is unreachable",
    )
    parser.add_argument(
        "--ca-file",
        default=os.environ.get("NGFW_CA_FILE") or None,
        metavar="FILE",
        help="with an https:// --control: the CA (PEM) control's certificate must chain to "
        "(default $NGFW_CA_FILE, else the system's CAs)",
    )
    parser.add_argument(
        "--client-cert",
        metavar="FILE",
        help="with an https:// --control: this host's certificate (PEM), signed by control's "
        "--client-ca and naming --host (CN or DNS name); replaces the token",
    )
    parser.add_argument("--client-key", metavar="FILE", help="the private key of --client-cert (PEM)")
    parser.add_argument(
        "--control-wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="at start, wait up to SECONDS for a policy from control (or --bundle-cache) and exit "
        "with an error if none comes (0, the default: start at once, dropping every frame "
        "until one comes)",
    )


def start_dataplane_agent(dp: Any, args: argparse.Namespace) -> Any:
    """Start the agent of `ngfw dataplane --control`; None without --control. Raises ValueError on bad options."""
    if not getattr(args, "control", None):
        return None
    from ngfw.control.agent import start_dataplane_agent as start
    from ngfw.control.client import read_token

    if not args.host:
        raise ValueError("--control needs --host NAME (this host's name towards control)")
    import logging
    from urllib.parse import urlsplit

    from ngfw.control.tls import is_loopback

    token = read_token(args.token_file)
    address = urlsplit(args.control).hostname or ""
    if args.control.startswith("http://") and token and not is_loopback(address):
        logging.getLogger("ngfw.agent").warning(
            "control URL %s is plain HTTP: this host's token crosses the network in clear (use https:// with "
            "--ca-file, and --client-cert/--client-key instead of a token)",
            args.control,
        )
    return start(
        dp,
        args.control,
        args.host,
        token,
        args.bundle_cache,
        ca_file=args.ca_file,
        client_cert=args.client_cert,
        client_key=args.client_key,
    )


def wait_for_policy(agent: Any, args: argparse.Namespace) -> str | None:
    """Block until the agent enforces a policy (from control, or the cached bundle it loaded at start), at
    most `--control-wait` s; None when it does, else the reason, in one sentence."""
    import logging

    log = logging.getLogger("ngfw.agent")
    if agent.current is not None and agent.connected:
        return None
    if agent.current is None:
        agent.wait_for(lambda a: a.current is not None, args.control_wait)
    if agent.current is not None:
        if not agent.connected:
            # the cached bundle: enforced now; the agent keeps asking control and says if it cannot reach it
            log.info(
                "enforcing the cached bundle version %d from %s until control %s answers",
                agent.current.version,
                args.bundle_cache,
                args.control,
            )
        return None
    reason = agent.last_error or "no answer"
    prefix = f"control at {agent.client.url} is "
    reason = reason[len(prefix) :] if reason.startswith(prefix) else reason  # said once below
    cache = (
        f"no usable cached bundle in {args.bundle_cache}"
        if args.bundle_cache
        else "no cached bundle (bundle-cache is not set)"
    )
    return f"control {args.control} gave no policy within {args.control_wait:g} s ({reason}), and {cache}"


def dispatch(args: argparse.Namespace) -> int | None:
    """Run a control-plane command; None when `args.command` is not one."""
    if args.command not in COMMANDS:
        return None
    if args.command == "control":
        return _control(args)
    if args.command == "explain" and args.policy:
        return _explain_offline(args)
    from ngfw.control.client import ControlClient, ControlError, ControlUnreachable, read_token

    try:
        client = ControlClient(
            args.control, read_token(args.token_file), ca_file=args.ca_file, ca_option=_ca_option(args.ca_file)
        )
        return int(_COMMANDS[args.command](client, args))
    except ControlError as exc:
        print(f"ngfw {args.command}: {exc.body.get('error', exc)} (HTTP {exc.status})", file=sys.stderr)
        for problem in exc.problems:
            where = ": ".join(x for x in (problem.get("resource"), problem.get("field")) if x)
            print(f"  {where}: {problem.get('message')}", file=sys.stderr)
        return 1
    except (ControlUnreachable, OSError, ValueError) as exc:  # ValueError: a bad URL, CA or certificate file
        print(f"ngfw {args.command}: {exc}", file=sys.stderr)
        return 1


def _ca_option(ca_file: str | None) -> str:
    """How the user gave the CA file, for messages that name it."""
    return "$NGFW_CA_FILE" if ca_file and ca_file == os.environ.get("NGFW_CA_FILE") else "--ca-file"


def _control(args: argparse.Namespace) -> int:
    from ngfw.control.auth import TokenFileError, add_token, read_tokens, remove_token

    try:
        if args.control_command == "token":
            if args.token_command == "add":
                token = add_token(args.tokens, args.name, args.role)
                print(token)
                print(
                    f"token {args.name!r} ({args.role}) added to {args.tokens}; it is shown only now", file=sys.stderr
                )
            elif args.token_command == "list":
                from pathlib import Path

                for entry in read_tokens(Path(args.tokens)):
                    print(f"{entry['name']:<24} {entry['role']:<28} {entry.get('created', '')}")
            elif not remove_token(args.tokens, args.name):
                print(f"ngfw control: no token named {args.name!r} in {args.tokens}", file=sys.stderr)
                return 1
            return 0
    except TokenFileError as exc:
        print(f"ngfw control: {exc}", file=sys.stderr)
        return 1
    return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    import logging
    import signal
    import threading

    from ngfw.control.auth import TokenFile, TokenFileError
    from ngfw.control.server import ControlServer, raise_open_files_limit
    from ngfw.control.service import Control
    from ngfw.control.store import StoreError, open_store
    from ngfw.control.tls import TlsConfigError, is_loopback, server_context

    host, _, port = args.listen.rpartition(":")
    if not (port.isascii() and port.isdigit()):
        print(f"ngfw control: --listen expects HOST:PORT, got {args.listen!r}", file=sys.stderr)
        return 2
    host = host.strip("[]") or "0.0.0.0"
    if (args.tls_cert or args.tls_key or args.client_ca) and not (args.tls_cert and args.tls_key):
        print("ngfw control: TLS needs both --tls-cert and --tls-key (--client-ca goes with them)", file=sys.stderr)
        return 2
    if args.tls_cert and args.insecure_http:
        print("ngfw control: --insecure-http and --tls-cert contradict each other: choose one", file=sys.stderr)
        return 2
    if not args.tls_cert and not args.insecure_http and not is_loopback(host):
        # a token sent in clear over a network is anyone's who can see that network
        print(
            f"ngfw control: --listen {args.listen} is not a loopback address: serve TLS (--tls-cert FILE "
            "--tls-key FILE) or accept plain HTTP with --insecure-http (tokens then cross the network in clear)",
            file=sys.stderr,
        )
        return 2
    try:
        context = server_context(args.tls_cert, args.tls_key, args.client_ca) if args.tls_cert else None
    except TlsConfigError as exc:
        print(f"ngfw control: {exc}", file=sys.stderr)
        return 1
    try:
        raise_open_files_limit()  # a connection is a file: systemd's soft limit of 1024 would cap them
        tokens = TokenFile(args.tokens)
        store = open_store(args.store)
        control = Control(store)
        server = ControlServer(control, tokens, host, int(port), ssl_context=context)
        if args.syslog:
            from ngfw.control.syslog import SyslogReceiver

            syslog_host, _, syslog_port = args.syslog.rpartition(":")
            if not (syslog_port.isascii() and syslog_port.isdigit()) or not syslog_host:
                print(f"ngfw control: --syslog expects HOST:PORT, got {args.syslog!r}", file=sys.stderr)
                return 2
            control.syslog = SyslogReceiver(control, syslog_host.strip("[]"), int(syslog_port))
    except (TokenFileError, StoreError, OSError) as exc:
        print(f"ngfw control: {exc}", file=sys.stderr)
        return 1
    from ngfw import systemd

    log = logging.getLogger("ngfw.control")
    version, identity = store.latest()
    log.info("control on %s, store %s: version %d, identity %d", server.url, args.store, version, identity)
    if context is None:
        where = (
            "loopback: only this host sees them"
            if is_loopback(host)
            else "--insecure-http: anyone on the network can read them"
        )
        log.warning(
            "control serves plain HTTP: bearer tokens cross in clear (%s); serve HTTPS with --tls-cert and --tls-key",
            where,
        )
    elif args.client_ca:
        log.info(
            "client certificates signed by %s authenticate as dataplane:HOST (HOST: the certificate's CN)",
            args.client_ca,
        )
    stopping = threading.Event()
    reloading = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopping.set()

    def reload(signum: int, frame: Any) -> None:
        reloading.set()
        stopping.set()  # wakes the main thread, which tells the two apart

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    from ngfw.control.ldap import DirectorySync

    directories = DirectorySync(control)  # UserGroups' directory members, refreshed while control runs
    server.start()
    directories.start()
    if control.syslog is not None:
        control.syslog.start()
        log.info("syslog on %s (UDP and TCP): logins map users", args.syslog)
    status = f"STATUS=serving {server.url}: version {version}, identity {identity}"
    systemd.notify("READY=1", status)
    # the watchdog is fed while the API answers on its own address
    watchdog = systemd.Watchdog.for_unit(_api_probe(server.url))
    if watchdog is not None:
        watchdog.start()
    while True:
        stopping.wait()
        if not reloading.is_set():
            break
        reloading.clear()
        stopping.clear()
        _reload_tokens(args.tokens, log)
        systemd.notify("READY=1", status)
    systemd.notify("STOPPING=1")
    if watchdog is not None:
        watchdog.stop()
    directories.stop()
    if control.syslog is not None:
        control.syslog.stop()
    server.stop()
    control.close()
    store.close()
    return 0


def _reload_tokens(path: str, log: Any) -> None:
    """SIGHUP: check the tokens file now (it is re-read whenever it changes anyway); listen and store
    addresses take a restart."""
    from pathlib import Path

    from ngfw.control.auth import TokenFileError, read_tokens

    try:
        log.info(
            "reload: %d tokens in %s; --listen and --store change with a restart", len(read_tokens(Path(path))), path
        )
    except TokenFileError as exc:
        log.error("reload: %s; the tokens read last stay in force", exc)


def _api_probe(url: str) -> Any:
    """A progress clock for the watchdog: CLOCK_MONOTONIC ns of the latest answer of GET /openapi.json."""
    import ssl
    import urllib.request

    probe_url = url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:") + "/openapi.json"
    # its own address: the answer matters, not whose certificate it is
    context = ssl._create_unverified_context() if probe_url.startswith("https:") else None
    last = [0]

    def progress_ns() -> int:
        try:
            with urllib.request.urlopen(probe_url, timeout=2, context=context) as response:
                response.read()
            last[0] = time.monotonic_ns()
        except OSError:
            pass
        return last[0]

    return progress_ns


def _read_documents(paths: list[str]) -> tuple[list[Any], list[str]]:
    """Every document of the files, with where it came from; SystemExit(1) on invalid YAML."""
    from pathlib import Path

    from ngfw.model.errors import PolicyError
    from ngfw.model.loader import policy_files
    from ngfw.model.yamldoc import YamlProblem, parse_documents

    documents: list[Any] = []
    sources: list[str] = []
    for path in paths:
        try:
            files = policy_files(Path(path))
        except PolicyError as exc:
            raise SystemExit(f"ngfw apply: {exc}") from None
        for file in files:
            try:
                parsed = parse_documents(file.read_text(encoding="utf-8"))
            except YamlProblem as exc:
                raise SystemExit(
                    f"ngfw apply: {file}:{exc.line}:{exc.column}: invalid YAML: {exc.message}; nothing was sent"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise SystemExit(f"ngfw apply: {file}: {exc}") from None
            for document in parsed:
                if document.data is not None:
                    documents.append(document.data)
                    sources.append(f"{file} document {document.index + 1} (line {document.line})")
    return documents, sources


def _apply(client: Any, args: argparse.Namespace) -> int:
    documents, sources = _read_documents(args.filename)
    if args.identity:
        for document, source in zip(documents, sources):
            metadata = document.get("metadata") if isinstance(document, dict) else None
            if not isinstance(document, dict) or document.get("kind") != "Workload" or not isinstance(metadata, dict):
                print(
                    f"ngfw apply --identity: {source}: only Workload documents change through identity", file=sys.stderr
                )
                return 1
            result = client.put_workload(str(metadata.get("vsys")), str(metadata.get("name")), document)
            print(
                f"Workload {metadata.get('vsys')}/{metadata.get('name')}: "
                f"{'identity revision ' + str(result['identity']) if result['changed'] else 'unchanged'}"
            )
        return 0
    result = client.apply_documents(documents, sources)
    for name in result["changed"]:
        print(f"candidate: {name}")
    if not result["changed"]:
        print("candidate: no changes")
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    return 0


def _diff(client: Any, args: argparse.Namespace) -> int:
    result = client.get("/diff", **{"from": args.old, "to": args.new})
    if args.json:
        _print_json(result)
        return 0
    if not result["changes"]:
        print(f"no differences between {result['from']} and {result['to']}")
    for change in result["changes"]:
        sys.stdout.write(change["diff"])
    return 0


def _commit(client: Any, args: argparse.Namespace) -> int:
    result = client.commit(args.message, args.base)
    print(
        f"committed version {result['version']} (identity {result['identity']}, {result['rules']} rules, "
        f"bundle sha256 {result['hash'][:12]})"
    )
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    return 0


def _rollback(client: Any, args: argparse.Namespace) -> int:
    result = client.post("/rollback", {"version": args.version, "message": args.message})
    print(f"version {result['version']} has the policy of version {args.version} (bundle sha256 {result['hash'][:12]})")
    return 0


def _lagging(status: dict[str, Any], version: int) -> tuple[list[str], list[str]]:
    """Hosts that do not run `version` (or a later one) yet, and those that refused or failed it, as phrases."""
    behind, refused = [], []
    for host in status["hosts"]:
        if host["version"] >= version:  # what it runs (a later refusal leaves that running)
            continue
        if host["status"] != "applied" and host.get("problem_version", 0) >= version:
            refused.append(f"{host['host']} {host['status']} {host['detail']} (it runs version {host['version']})")
        else:
            behind.append(f"{host['host']} runs version {host['version']}")
    return behind, refused


def _status_wait(client: Any, args: argparse.Namespace) -> int:
    """`ngfw status --wait VERSION`: a pipeline's gate. 0 once every host runs VERSION or later; 1 at once when
    a host refuses or fails it, or when hosts are still behind after --timeout; each names the hosts."""
    version = args.wait
    deadline = time.monotonic() + max(0.0, args.timeout)
    while True:
        result = client.get("/status")
        behind, refused = _lagging(result, version)
        if refused:
            print(f"ngfw status: version {version} was refused: " + "; ".join(refused), file=sys.stderr)
            return 1
        if result["hosts"] and not behind:
            print(f"version {version} on all {len(result['hosts'])} hosts ({result['summary']})")
            return 0
        if time.monotonic() >= deadline:
            break
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    if not result["hosts"]:
        print(
            f"ngfw status: no host has reported to control within {args.timeout:g} s: version {version} runs nowhere",
            file=sys.stderr,
        )
    else:
        committed = (
            ""
            if result["version"] >= version
            else f" (it is not committed: the running version is {result['version']})"
        )
        print(
            f"ngfw status: after {args.timeout:g} s, {len(behind)} of {len(result['hosts'])} hosts do not run "
            f"version {version}{committed}: " + "; ".join(behind),
            file=sys.stderr,
        )
    return 1


def _status(client: Any, args: argparse.Namespace) -> int:
    if args.wait is not None:
        return _status_wait(client, args)
    result = client.get("/status")
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['summary']} (identity revision {result['identity']})")
    for host in result["hosts"]:
        mark = "ok" if host["current"] else "BEHIND" if host["status"] == "applied" else host["status"].upper()
        age = time.time() - host["time"]
        detail = f"  {host['detail']}" if host["detail"] else ""
        sets = " ".join(f"{name}={digest[:12]}" for name, digest in sorted((host.get("signatures") or {}).items()))
        print(
            f"  {host['host']:<20} version {host['version']:<5} identity {host['identity']:<5} {mark:<8} "
            f"{age:.0f} s ago" + (f"  signatures {sets}" if sets else "") + detail
        )
    active, recent = result.get("migrations_active", []), result.get("migrations_recent", [])
    if active:
        print("migrations in progress:")
        for m in active:
            print(f"  {_migration_line(m)}")
    if recent:
        print("recent migrations:")
        for m in recent[:5]:
            print(f"  {_migration_line(m)}")
    for d in result.get("directories", []):
        groups = ", ".join(f"{g} ({n} users)" for g, n in d["groups"].items()) or "no groups"
        state = (
            f"STALE since the last refresh failed ({d['last_error']}): keeping the groups read last"
            if d["stale"]
            else "ok"
        )
        print(f"directory {d['source']} {d['url']}: {state}; {groups}; refreshes ok {d['ok']}, failed {d['failed']}")
    return 0


def _migration_line(m: dict[str, Any]) -> str:
    took = f", transfer {m['transfer_seconds'] * 1000:.0f} ms" if m.get("transfer_seconds") is not None else ""
    detail = f": {m['detail']}" if m.get("detail") else ""
    return (
        f"{m['id']} {m['vsys']}/{m['workload']} {m['from'] or '?'} -> {m['to']} ({m['mode']}) {m['state']}, "
        f"{m['sessions_moved']} sessions moved, {m['sessions_lost']} lost{took}{detail}"
    )


def _user_target(text: str) -> dict[str, str]:
    return {"vm": text[3:]} if text.startswith("vm:") else {"address": text}


def _users(client: Any, args: argparse.Namespace) -> int:
    import time

    if args.users_command == "map":
        body: dict[str, Any] = {**_user_target(args.target), "user": args.user}
        if args.ttl is not None:
            body["ttl"] = args.ttl
        result = client.request("PUT", "/identity/users", body)[1]
        if args.json:
            _print_json(result)
        else:
            for m in result["mapped"]:
                until = f" for {args.ttl:g} s" if args.ttl is not None else " until unmapped"
                print(f"{m['address']} ({'vm:' + m['vm'] if m['vm'] else 'no workload'}) -> {m['user']}{until}")
        return 0
    if args.users_command == "unmap":
        key, value = next(iter(_user_target(args.target).items()))
        result = client.request("DELETE", "/identity/users", query={key: value})[1]
        if args.json:
            _print_json(result)
        else:
            print(
                f"{len(result['unmapped'])} mapping{'s' if len(result['unmapped']) != 1 else ''} ended"
                + "".join(f"\n  {m['address']} -> {m['user']}" for m in result["unmapped"])
            )
        return 0
    result = client.get("/identity/users")
    if args.json:
        _print_json(result)
        return 0
    now = time.time()
    print(f"{'ADDRESS':<40} {'USER':<20} {'SOURCE':<14} {'EXPIRES':<10} {'VM':<24} GROUPS")
    for m in result["mappings"]:
        expires = "never" if m["expires"] is None else f"{max(0, m['expires'] - now):.0f}s"
        print(
            f"{m['address']:<40} {m['user']:<20} {m['source']:<14} {expires:<10} {m['vm'] or '-':<24} "
            f"{','.join(m['groups']) or '-'}"
        )
    counters = result["counters"]
    print(
        f"{len(result['mappings'])} mappings (revision {result['revision']}); unbound addresses refused "
        f"{counters['unbound_refused']}, accepted {counters['unbound_accepted']}"
    )
    if counters.get("restored") or counters.get("restored_expired"):
        print(
            f"restored at control's start: {counters['restored']} ({counters['restored_expired']} had expired "
            "while it was down)"
        )
    if counters.get("store_failures"):
        print(
            f"WARNING: {counters['store_failures']} writes of mappings to the store failed (see control's log); "
            "they are written with the next change"
        )
    return 0


def _migrate(client: Any, args: argparse.Namespace) -> int:
    body = {"workload": args.workload, "to": args.to}
    if args.vsys:
        body["vsys"] = args.vsys
    result = client.post("/migrations", body)
    if args.json:
        _print_json(result)
    else:
        print(f"migration {_migration_line(result['migration'])}")
    return 0


def _explain_result(
    policy: Any, documents: list[Any], args: argparse.Namespace, directory_groups: list[int] | None = None
) -> int:
    from ngfw.control.explain import ExplainError, explain, format_explanation

    try:
        result = explain(
            policy, documents, args.source, args.destination, args.service, args.app, args.user, directory_groups or ()
        )
    except ExplainError as exc:
        print(f"ngfw explain: {exc}", file=sys.stderr)
        return 2
    if args.json:
        _print_json(result)
    else:
        print("\n".join(format_explanation(result)))
    return 0


def _explain(client: Any, args: argparse.Namespace) -> int:
    from ngfw.control.documents import InvalidDocuments
    from ngfw.control.validation import compile_documents

    running = client.get("/running")
    try:
        policy = compile_documents(running["documents"], running["version"]).policy
    except InvalidDocuments as exc:
        print(f"ngfw explain: the running policy does not compile here: {exc}", file=sys.stderr)
        return 1
    groups: list[int] = []
    if args.user:
        from ngfw.compiler.principals import group_principal

        # the directory groups control knows the user to be in (a UserGroup's static members are in the policy)
        known = client.get("/identity/users").get("groups", {})
        groups = [group_principal(*g.split("/", 1)) for g in known.get(args.user.lower(), []) if "/" in g]
    return _explain_result(policy, running["documents"], args, groups)


def _explain_offline(args: argparse.Namespace) -> int:
    from ngfw.compiler.policy import compile_resources
    from ngfw.model.errors import PolicyError
    from ngfw.model.loader import load_resources
    from ngfw.model.resources import dump

    try:
        loaded = load_resources(args.policy)
        policy = compile_resources(loaded, 0)
    except PolicyError as exc:
        print(f"ngfw explain: {exc}", file=sys.stderr)
        return 1
    return _explain_result(policy, [dump(item.resource) for item in loaded], args)


def _discard(client: Any, args: argparse.Namespace) -> int:
    client.request("DELETE", "/candidate")
    print("candidate discarded")
    return 0


def _rebase(client: Any, args: argparse.Namespace) -> int:
    result = client.post("/candidate/rebase", {})
    print(f"candidate now based on version {result['base_version']}")
    return 0


def _history(client: Any, args: argparse.Namespace) -> int:
    for v in client.get("/versions", limit=args.n)["versions"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["created"]))
        rollback = f" (rollback to {v['rollback_of']})" if v.get("rollback_of") else ""
        print(f"{v['number']:>5}  {when}  {v['author']:<16} {v['message']}{rollback}")
    return 0


def _audit(client: Any, args: argparse.Namespace) -> int:
    entries = client.get("/audit", limit=args.n)["entries"]
    if args.json:
        _print_json(entries)
        return 0
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
        who = f"{e['who']} ({e['role']})" if e["who"] else "(no token)"
        reason = e["detail"].get("reason", "")
        print(
            f"{when}  {who:<36} {e['action']:<18} {e['outcome']:<15} {e['target']}"
            + (f"  - {reason}" if reason else "")
        )
    return 0


def _kind(text: str) -> str:
    kind = KIND_NAMES.get(text.lower())
    if kind is None:
        raise ValueError(
            f"unknown kind {text!r}: VirtualSystem, Workload, Group, SecurityPolicy, ThreatProfile or SignatureSet"
        )
    return kind


def _vsys_and_name(kind: str, name: str, vsys: str | None) -> tuple[str | None, str]:
    """(vsys or None when not given, name) of `[VSYS/]NAME`; a VirtualSystem is its own vsys."""
    if "/" in name:
        given, _, name = name.partition("/")
        if vsys is not None and vsys != given:
            raise ValueError(f"{given}/{name} and --vsys {vsys} name different vsys")
        vsys = given
    if kind == "VirtualSystem":
        vsys = name
    if kind in ("SignatureSet", "UserSource"):
        vsys = ""  # site-wide
    return vsys, name


def _vsys_of(document: dict[str, Any]) -> str:
    metadata = document.get("metadata", {})
    return str(metadata.get("name") if document.get("kind") == "VirtualSystem" else metadata.get("vsys", ""))


def _summary(document: dict[str, Any]) -> str:
    """One line's worth of a resource, for `ngfw get KIND`."""
    spec = document.get("spec") or {}
    kind = document.get("kind")
    if kind == "Workload":
        addresses = [f"{i.get('mac')} {','.join(i.get('ips', []))}" for i in spec.get("interfaces", [])]
        labels = ",".join(f"{k}={v}" for k, v in (document["metadata"].get("labels") or {}).items())
        host = f" host {spec['host']}" if spec.get("host") else ""
        return f"{'; '.join(addresses)}{host}" + (f"  [{labels}]" if labels else "")
    if kind == "SecurityPolicy":
        return f"{len(spec.get('rules', []))} rules"
    if kind == "Group":
        return f"selector {spec.get('selector', {})}"
    if kind == "VirtualSystem":
        return f"limits {spec.get('limits') or {}}"
    if kind == "UserGroup":
        members = spec.get("members") or []
        ldap = f"ldap {spec['ldap']['dn']}" if spec.get("ldap") else ""
        return "; ".join(x for x in (f"members {','.join(members)}" if members else "", ldap) if x)
    if kind == "UserSource":
        return ", ".join(k for k in ("syslog", "ldap", "unboundAddresses") if spec.get(k))
    if kind == "SignatureSet":
        return f"sha256 {spec.get('sha256', '')[:12]}" + (f"  {spec['description']}" if spec.get("description") else "")
    if kind == "ThreatProfile":
        lines = spec.get("thresholds") or []
        lines = [
            x
            for x in (lines.splitlines() if isinstance(lines, str) else lines)
            if x.strip() and not x.strip().startswith("#")
        ]
        return (
            f"signatures {','.join(spec.get('signatures') or []) or 'all'}, action {spec.get('action')}, "
            f"{len(spec.get('exceptions') or [])} exceptions, {len(lines)} threshold lines"
        )
    return ""


def _get(client: Any, args: argparse.Namespace) -> int:
    """`ngfw get KIND [[VSYS/]NAME]`: running (or --candidate) resources."""
    import json

    import yaml

    kind = _kind(args.kind)
    vsys, name = _vsys_and_name(kind, args.name, args.vsys) if args.name else (args.vsys, None)
    source = client.get("/candidate") if args.candidate else client.get("/running")
    where = "your candidate" if args.candidate else f"the running configuration (version {source['version']})"
    found = [
        d
        for d in source["documents"]
        if d.get("kind") == kind
        and (name is None or d["metadata"]["name"] == name)
        and (vsys is None or _vsys_of(d) == vsys)
    ]
    if not found and name is not None:
        site = kind in ("VirtualSystem", "SignatureSet", "UserSource")
        print(f"ngfw get: no {kind} {vsys + '/' if vsys and not site else ''}{name} in {where}", file=sys.stderr)
        return 1
    output = args.output or ("yaml" if name is not None else None)
    if output == "json":
        print(json.dumps(found, indent=1))
    elif output == "yaml":
        sys.stdout.write(yaml.safe_dump_all(found, sort_keys=False))
    else:
        for d in found:
            label = (
                d["metadata"]["name"]
                if kind in ("VirtualSystem", "SignatureSet", "UserSource")
                else f"{_vsys_of(d)}/{d['metadata']['name']}"
            )
            print(f"{kind} {label:<32} {_summary(d)}".rstrip())
        if not found:
            print(f"no {kind} in {where}", file=sys.stderr)
    return 0


def _delete(client: Any, args: argparse.Namespace) -> int:
    """`ngfw delete KIND [VSYS/]NAME`: from your candidate (like the API), or a Workload at once (--identity)."""
    from urllib.parse import quote

    kind = _kind(args.kind)
    vsys, name = _vsys_and_name(kind, args.name, args.vsys)
    if args.identity and kind != "Workload":
        print(f"ngfw delete --identity: only Workloads change through identity (not a {kind})", file=sys.stderr)
        return 1
    if vsys is None:  # the one of that kind and name there is
        documents = client.get("/identity")["workloads"] if args.identity else client.get("/candidate")["documents"]
        where = "the running identity" if args.identity else "your candidate"
        matches = sorted({_vsys_of(d) for d in documents if d.get("kind") == kind and d["metadata"]["name"] == name})
        if not matches:
            print(f"ngfw delete: no {kind} named {name!r} in {where}", file=sys.stderr)
            return 1
        if len(matches) > 1:
            print(
                f"ngfw delete: {kind} {name!r} exists in vsys {', '.join(matches)}: name one (VSYS/{name} or --vsys)",
                file=sys.stderr,
            )
            return 1
        vsys = matches[0]
    if args.identity:
        result = client.request("DELETE", f"/identity/workloads/{quote(vsys, safe='')}/{quote(name, safe='')}")[1]
        print(f"Workload {vsys}/{name} removed: identity revision {result['identity']} (no commit needed)")
        return 0
    path = f"/candidate/resources/{quote(kind, safe='')}/{quote(vsys or '-', safe='')}/{quote(name, safe='')}"
    result = client.request("DELETE", path)[1]
    print(
        f"candidate: deleted {kind} {vsys}/{name}"
        if kind not in ("VirtualSystem", "SignatureSet", "UserSource")
        else f"candidate: deleted {kind} {name}"
    )
    for warning in result.get("warnings", []):
        print(f"warning: {warning}")
    print("(commit to publish it: ngfw commit -m MESSAGE)")
    return 0


def rules_push(args: argparse.Namespace) -> int:
    """`ngfw rules push NAME PATH [-m MESSAGE]`: the set's archive to control (once per content), a
    SignatureSet NAME naming its sha256 into your candidate, and a commit with -m."""
    from ngfw.compiler.signature_archive import ArchiveError, compress, pack_path, sha256
    from ngfw.control.client import ControlClient, ControlError, ControlUnreachable, read_token
    from ngfw.model import syntax

    try:
        syntax.check_name(args.name)
    except ValueError as exc:
        print(f"ngfw rules push: set name {args.name!r}: {exc}", file=sys.stderr)
        return 2
    try:
        archive = pack_path(args.path)
    except ArchiveError as exc:
        print(f"ngfw rules push: {exc}", file=sys.stderr)
        return 1
    digest = sha256(archive)
    try:
        client = ControlClient(
            args.control, read_token(args.token_file), ca_file=args.ca_file, ca_option=_ca_option(args.ca_file)
        )
        status, meta = client.push_signature_set(digest, compress(archive))
        stored = "stored" if status == 201 else "already stored"
        skipped = f", {meta['skipped']} skipped" if meta.get("skipped") else ""
        print(
            f"signature set {args.name}: sha256 {digest} ({meta['rules']} rules{skipped}, {len(meta['files'])} "
            f"files, {len(archive) / 1e6:.1f} MB) {stored} in control"
        )
        spec: dict[str, Any] = {"sha256": digest}
        if args.description:
            spec["description"] = args.description
        document = {"apiVersion": "ngfw/v1", "kind": "SignatureSet", "metadata": {"name": args.name}, "spec": spec}
        result = client.apply_documents([document], [f"ngfw rules push {args.name} {args.path}"])
        print(
            f"candidate: {', '.join(result['changed'])}"
            if result["changed"]
            else f"candidate: SignatureSet {args.name} already names it"
        )
        for warning in result["warnings"]:
            print(f"warning: {warning}")
        if args.message:
            if not result["changed"] and client.get("/candidate")["changes"] == []:
                print("nothing to commit: the running version names this set already")
                return 0
            committed = client.commit(args.message)
            print(
                f"committed version {committed['version']} (bundle sha256 {committed['hash'][:12]}): every host "
                "fetches the set, verifies it and runs it (ngfw status shows which)"
            )
        else:
            print("(commit to distribute it: ngfw commit -m MESSAGE)")
        return 0
    except ControlError as exc:
        print(f"ngfw rules push: {exc.body.get('error', exc)} (HTTP {exc.status})", file=sys.stderr)
        for problem in exc.problems:
            where = ": ".join(x for x in (problem.get("resource"), problem.get("field")) if x)
            print(f"  {where}: {problem.get('message')}", file=sys.stderr)
        return 1
    except (ControlUnreachable, OSError, ValueError) as exc:
        print(f"ngfw rules push: {exc}", file=sys.stderr)
        return 1


_COMMANDS = {
    "apply": _apply,
    "diff": _diff,
    "commit": _commit,
    "rollback": _rollback,
    "status": _status,
    "migrate": _migrate,
    "users": _users,
    "explain": _explain,
    "discard": _discard,
    "rebase": _rebase,
    "history": _history,
    "audit": _audit,
    "get": _get,
    "delete": _delete,
}


def _print_json(value: Any) -> None:
    import json

    print(json.dumps(value, indent=1))
