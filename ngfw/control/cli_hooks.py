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
COMMANDS = ("control", "apply", "diff", "commit", "rollback", "status", "migrate", "explain", "discard", "rebase", "history",
            "audit")


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--control", default=os.environ.get("NGFW_CONTROL", DEFAULT_CONTROL), metavar="URL",
                        help=f"control API (default $NGFW_CONTROL or {DEFAULT_CONTROL})")
    parser.add_argument("--token-file", metavar="FILE", help="file holding the bearer token (default $NGFW_TOKEN)")


def register(sub: Any) -> None:
    """Add the control-plane subcommands to `ngfw`'s subparsers."""
    ctl = sub.add_parser("control", help="run the control daemon (HTTP+JSON API), or manage its tokens")
    ctl.add_argument("--config", metavar="FILE",
                     help="read settings from a YAML file (the systemd unit's /etc/ngfw/control.yaml): each key is "
                          "an option of this command, e.g. `listen: 10.0.0.5:9660`; options on the command line win")
    ctl.add_argument("--listen", default="127.0.0.1:9660", metavar="HOST:PORT", help="API address (127.0.0.1:9660)")
    ctl.add_argument("--store", default="sqlite:///var/lib/ngfw/control.db", metavar="URL",
                     help="sqlite:///PATH (default sqlite:///var/lib/ngfw/control.db) or etcd://HOST:PORT[/PREFIX]")
    ctl.add_argument("--tokens", default="/etc/ngfw/tokens.json", metavar="FILE",
                     help="tokens file: names, roles and sha256 digests (/etc/ngfw/tokens.json)")
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
    apply.add_argument("-f", "--filename", action="append", required=True, metavar="FILE|DIR",
                       help="YAML file or directory (repeatable)")
    apply.add_argument("--identity", action="store_true",
                       help="Workloads only: change bindings/labels at once, without a commit (vm-operator)")
    _client_options(apply)

    diff = sub.add_parser("diff", help="diff two configurations (default: running vs your candidate)")
    diff.add_argument("old", nargs="?", default="running", help="version number, running or candidate")
    diff.add_argument("new", nargs="?", default="candidate", help="version number, running or candidate")
    diff.add_argument("--json", action="store_true")
    _client_options(diff)

    commit = sub.add_parser("commit", help="validate, compile and publish your candidate as the next version")
    commit.add_argument("-m", "--message", required=True)
    commit.add_argument("--base", type=int, metavar="N", help="refuse unless version N is still the running one")
    _client_options(commit)

    rollback = sub.add_parser("rollback", help="publish a new version with the policy of version N")
    rollback.add_argument("version", type=int)
    rollback.add_argument("-m", "--message", default="")
    _client_options(rollback)

    migrate = sub.add_parser("migrate", help="announce a workload's move to another host: its sessions go there first")
    migrate.add_argument("workload", help="the Workload's name")
    migrate.add_argument("--to", required=True, metavar="HOST", help="the host it moves to")
    migrate.add_argument("--vsys", help="its vsys, when its name is not unique")
    migrate.add_argument("--json", action="store_true")
    _client_options(migrate)

    status = sub.add_parser("status", help="which version every host runs, and migrations in progress")
    status.add_argument("--json", action="store_true")
    _client_options(status)

    explain = sub.add_parser("explain", help="which vsys, rule and application decide a flow, and why")
    explain.add_argument("--from", dest="source", required=True, metavar="vm:NAME|IP")
    explain.add_argument("--to", dest="destination", required=True, metavar="vm:NAME|IP")
    explain.add_argument("--service", required=True, metavar="tcp/PORT|udp/PORT|icmp")
    explain.add_argument("--app", metavar="NAME", help="the application App-ID would name (default: unknown)")
    explain.add_argument("--policy", metavar="PATH", help="explain against a policy file instead of control")
    explain.add_argument("--json", action="store_true")
    _client_options(explain)

    for name, text in (("discard", "throw your candidate away"),
                       ("rebase", "move your candidate onto the running version, keeping your changes")):
        _client_options(sub.add_parser(name, help=text))
    history = sub.add_parser("history", help="committed versions, newest first")
    history.add_argument("-n", type=int, default=20)
    _client_options(history)
    audit = sub.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("-n", type=int, default=50)
    audit.add_argument("--json", action="store_true")
    _client_options(audit)


def add_dataplane_options(parser: argparse.ArgumentParser) -> None:
    """`ngfw dataplane --control URL --host NAME [--token-file F]`."""
    parser.add_argument("--control", metavar="URL", help="take policy from ngfw control at URL (agent)")
    parser.add_argument("--host", metavar="NAME", help="this host's name towards control (with --control)")
    parser.add_argument("--token-file", metavar="FILE", help="dataplane token for control (default $NGFW_TOKEN)")
    parser.add_argument("--bundle-cache", metavar="PATH",
                        help="keep the last good bundle here; loaded at start when control is unreachable")
    parser.add_argument("--control-wait", type=float, default=0.0, metavar="SECONDS",
                        help="at start, wait up to SECONDS for a policy from control (or --bundle-cache) and exit "
                             "with an error if none comes (0, the default: start at once, dropping every frame "
                             "until one comes)")


def start_dataplane_agent(dp: Any, args: argparse.Namespace) -> Any:
    """Start the agent of `ngfw dataplane --control`; None without --control. Raises ValueError on bad options."""
    if not getattr(args, "control", None):
        return None
    from ngfw.control.agent import start_dataplane_agent as start
    from ngfw.control.client import read_token

    if not args.host:
        raise ValueError("--control needs --host NAME (this host's name towards control)")
    return start(dp, args.control, args.host, read_token(args.token_file), args.bundle_cache)


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
            log.info("enforcing the cached bundle version %d from %s until control %s answers",
                     agent.current.version, args.bundle_cache, args.control)
        return None
    reason = agent.last_error or "no answer"
    prefix = f"control at {agent.client.url} is "
    reason = reason[len(prefix):] if reason.startswith(prefix) else reason   # said once below
    cache = (f"no usable cached bundle in {args.bundle_cache}" if args.bundle_cache
             else "no cached bundle (bundle-cache is not set)")
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
        client = ControlClient(args.control, read_token(args.token_file))
        return int(_COMMANDS[args.command](client, args))
    except ControlError as exc:
        print(f"ngfw {args.command}: {exc.body.get('error', exc)} (HTTP {exc.status})", file=sys.stderr)
        for problem in exc.problems:
            where = ": ".join(x for x in (problem.get("resource"), problem.get("field")) if x)
            print(f"  {where}: {problem.get('message')}", file=sys.stderr)
        return 1
    except (ControlUnreachable, OSError) as exc:
        print(f"ngfw {args.command}: {exc}", file=sys.stderr)
        return 1


def _control(args: argparse.Namespace) -> int:
    from ngfw.control.auth import TokenFileError, add_token, read_tokens, remove_token

    try:
        if args.control_command == "token":
            if args.token_command == "add":
                token = add_token(args.tokens, args.name, args.role)
                print(token)
                print(f"token {args.name!r} ({args.role}) added to {args.tokens}; it is shown only now",
                      file=sys.stderr)
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

    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        print(f"ngfw control: --listen expects HOST:PORT, got {args.listen!r}", file=sys.stderr)
        return 2
    try:
        raise_open_files_limit()  # a connection is a file: systemd's soft limit of 1024 would cap them
        tokens = TokenFile(args.tokens)
        store = open_store(args.store)
        server = ControlServer(Control(store), tokens, host.strip("[]") or "0.0.0.0", int(port))
    except (TokenFileError, StoreError, OSError) as exc:
        print(f"ngfw control: {exc}", file=sys.stderr)
        return 1
    from ngfw import systemd

    log = logging.getLogger("ngfw.control")
    version, identity = store.latest()
    log.info("control on %s, store %s: version %d, identity %d", server.url, args.store, version, identity)
    stopping = threading.Event()
    reloading = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopping.set()

    def reload(signum: int, frame: Any) -> None:
        reloading.set()
        stopping.set()   # wakes the main thread, which tells the two apart

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    server.start()
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
    server.stop()
    store.close()
    return 0


def _reload_tokens(path: str, log: Any) -> None:
    """SIGHUP: check the tokens file now (it is re-read whenever it changes anyway); listen and store
    addresses take a restart."""
    from pathlib import Path

    from ngfw.control.auth import TokenFileError, read_tokens

    try:
        log.info("reload: %d tokens in %s; --listen and --store change with a restart", len(read_tokens(Path(path))),
                 path)
    except TokenFileError as exc:
        log.error("reload: %s; the tokens read last stay in force", exc)


def _api_probe(url: str) -> Any:
    """A progress clock for the watchdog: CLOCK_MONOTONIC ns of the latest answer of GET /openapi.json."""
    import urllib.request

    probe_url = url.replace("://0.0.0.0:", "://127.0.0.1:").replace("://[::]:", "://[::1]:") + "/openapi.json"
    last = [0]

    def progress_ns() -> int:
        try:
            with urllib.request.urlopen(probe_url, timeout=2) as response:
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
                raise SystemExit(f"ngfw apply: {file}:{exc.line}:{exc.column}: invalid YAML: {exc.message}; "
                                 "nothing was sent") from None
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
                print(f"ngfw apply --identity: {source}: only Workload documents change through identity",
                      file=sys.stderr)
                return 1
            result = client.put_workload(str(metadata.get("vsys")), str(metadata.get("name")), document)
            print(f"Workload {metadata.get('vsys')}/{metadata.get('name')}: "
                  f"{'identity revision ' + str(result['identity']) if result['changed'] else 'unchanged'}")
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
    print(f"committed version {result['version']} (identity {result['identity']}, {result['rules']} rules, "
          f"bundle sha256 {result['hash'][:12]})")
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    return 0


def _rollback(client: Any, args: argparse.Namespace) -> int:
    result = client.post("/rollback", {"version": args.version, "message": args.message})
    print(f"version {result['version']} has the policy of version {args.version} "
          f"(bundle sha256 {result['hash'][:12]})")
    return 0


def _status(client: Any, args: argparse.Namespace) -> int:
    result = client.get("/status")
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['summary']} (identity revision {result['identity']})")
    for host in result["hosts"]:
        mark = "ok" if host["current"] else "BEHIND" if host["status"] == "applied" else host["status"].upper()
        age = time.time() - host["time"]
        detail = f"  {host['detail']}" if host["detail"] else ""
        print(f"  {host['host']:<20} version {host['version']:<5} identity {host['identity']:<5} {mark:<8} "
              f"{age:.0f} s ago{detail}")
    active, recent = result.get("migrations_active", []), result.get("migrations_recent", [])
    if active:
        print("migrations in progress:")
        for m in active:
            print(f"  {_migration_line(m)}")
    if recent:
        print("recent migrations:")
        for m in recent[:5]:
            print(f"  {_migration_line(m)}")
    return 0


def _migration_line(m: dict[str, Any]) -> str:
    took = f", transfer {m['transfer_seconds'] * 1000:.0f} ms" if m.get("transfer_seconds") is not None else ""
    detail = f": {m['detail']}" if m.get("detail") else ""
    return (f"{m['id']} {m['vsys']}/{m['workload']} {m['from'] or '?'} -> {m['to']} ({m['mode']}) {m['state']}, "
            f"{m['sessions_moved']} sessions moved, {m['sessions_lost']} lost{took}{detail}")


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


def _explain_result(policy: Any, documents: list[Any], args: argparse.Namespace) -> int:
    from ngfw.control.explain import ExplainError, explain, format_explanation

    try:
        result = explain(policy, documents, args.source, args.destination, args.service, args.app)
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
    return _explain_result(policy, running["documents"], args)


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
        print(f"{when}  {who:<36} {e['action']:<18} {e['outcome']:<15} {e['target']}"
              + (f"  - {reason}" if reason else ""))
    return 0


_COMMANDS = {"apply": _apply, "diff": _diff, "commit": _commit, "rollback": _rollback, "status": _status,
             "migrate": _migrate,
             "explain": _explain, "discard": _discard, "rebase": _rebase, "history": _history, "audit": _audit}


def _print_json(value: Any) -> None:
    import json

    print(json.dumps(value, indent=1))
