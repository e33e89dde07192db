"""Operator commands against running dataplanes: `ngfw sessions [clear]`, `ngfw policy hits|unused`.

On this host through the dataplane's socket (ngfw.dataplane.opsocket; `--socket PATH`, else the one of this
network namespace), or fleet-wide through control (`--control URL`, ngfw.control.operations). Listings are
streamed page by page: the first rows print while later pages are still being read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from ngfw.dataplane.eve import DEFAULT_RULE
from ngfw.dataplane.sessions import FILTER_FIELDS, PAGE_DEFAULT, FilterError, SessionFilter

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# ---------------------------------------------------------------- parsers


def _access_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--socket",
        metavar="PATH",
        help="the dataplane's socket (default: the one of the dataplane running in this network namespace)",
    )
    parser.add_argument("--control", metavar="URL", help="every host, through ngfw control at URL")
    parser.add_argument("--host", metavar="NAME", help="with --control: this host only")
    parser.add_argument("--token-file", metavar="FILE", help="with --control: bearer token (default $NGFW_TOKEN)")
    parser.add_argument(
        "--ca-file",
        metavar="FILE",
        help="with an https:// --control: the CA its certificate must "
        "chain to (default $NGFW_CA_FILE, else the system's CAs)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def add_sessions_parser(sub: Any) -> None:
    fields = "\n".join(f"  {name:<7} {what}" for name, what in FILTER_FIELDS.items())
    sp = sub.add_parser(
        "sessions",
        help="list a running dataplane's live flows; `ngfw sessions clear FILTER` ends them",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="ngfw sessions [FIELD=VALUE ...]          list live flows\n"
        "ngfw sessions clear FIELD=VALUE ... | all  end them (TCP: a RST both ways, as `reject` sends)",
        epilog=f"filter fields:\n{fields}",
    )
    sp.add_argument("filter", nargs="*", metavar="FIELD=VALUE", help="select flows (every word must match)")
    sp.add_argument("--vsys", help="as vsys=V")
    sp.add_argument("--vm", metavar="NAME", help="as vm=NAME")
    sp.add_argument("--app", help="as app=A")
    sp.add_argument("--rule", help="as rule=R")
    sp.add_argument("--limit", type=int, metavar="N", help="print at most N sessions")
    sp.add_argument("--silent", action="store_true", help="clear: end TCP connections without resetting them")
    _access_options(sp)


def add_policy_parsers(pol_sub: Any) -> None:
    hits = pol_sub.add_parser("hits", help="per rule: flows decided, first and last hit (from the dataplanes)")
    hits.add_argument("--vsys")
    hits.add_argument("--gone", action="store_true", help="also rules no longer in the policy (local only)")
    _access_options(hits)
    unused = pol_sub.add_parser("unused", help="rules with no hit in the last DAYS days (on any host)")
    unused.add_argument("--days", type=float, default=30.0, help="the period (30)")
    unused.add_argument("--vsys")
    _access_options(unused)


# ---------------------------------------------------------------- sessions


def cmd_sessions(args: argparse.Namespace) -> int:
    words = list(args.filter)
    clearing = bool(words) and words[0] == "clear"
    if clearing:
        words = words[1:]
    everything = words == ["all"]
    if everything:
        words = []
    for name in ("vsys", "vm", "app", "rule"):
        value = getattr(args, name)
        if value:
            words.append(f"{name}={value}")
    try:
        flt = SessionFilter.parse(words)
    except FilterError as exc:
        return _usage(exc)
    if clearing and flt.empty and not everything:
        return _usage("ngfw sessions clear needs a filter (FIELD=VALUE ...), or `all` to end every flow")
    if args.limit is not None and args.limit < 1:
        return _usage("--limit must be at least 1")
    try:
        if args.control:
            return _fleet_clear(args, flt, everything) if clearing else _fleet_sessions(args, flt)
        return _local_clear(args, flt, everything) if clearing else _local_sessions(args, flt)
    except BrokenPipeError:
        return EXIT_OK  # `ngfw sessions | head`


def _local_sessions(args: argparse.Namespace, flt: SessionFilter) -> int:
    from ngfw.dataplane.opsocket import OperationsError, SocketError

    try:
        with _open(args) as client:
            return _print_sessions(client.sessions(flt.as_dict(), PAGE_DEFAULT), args)
    except OperationsError as exc:
        return _usage(exc) if exc.kind == "filter" else _fail(exc)
    except SocketError as exc:
        return _fail(exc)


def _local_clear(args: argparse.Namespace, flt: SessionFilter, everything: bool) -> int:
    from ngfw.dataplane.opsocket import OperationsError, SocketError

    try:
        with _open(args) as client:
            done = client.call({"op": "clear", "filter": flt.as_dict(), "silent": args.silent, "all": everything})
    except OperationsError as exc:
        return _usage(exc) if exc.kind == "filter" else _fail(exc)
    except SocketError as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps({"cleared": done["cleared"], "resets": done["resets"]}))
    else:
        print(_cleared_line(flt, done["cleared"], done["resets"]))
    return EXIT_OK


def _fleet_sessions(args: argparse.Namespace, flt: SessionFilter) -> int:
    client = _control(args)
    if client is None:
        return EXIT_FAILED
    from ngfw.control.client import ControlError, ControlUnreachable

    def stream() -> Iterator[dict[str, Any]]:
        query = {**flt.as_dict(), "limit": str(PAGE_DEFAULT)}
        answer = client.get("/sessions", **query, **({"host": args.host} if args.host else {}))
        pending = []
        for missing in answer["missing"]:
            print(f"ngfw sessions: host {missing['host']}: {missing['reason']}", file=sys.stderr)
        for entry in answer["hosts"]:
            if "error" in entry:
                print(f"ngfw sessions: host {entry['host']}: {entry['error']}", file=sys.stderr)
                continue
            yield from entry["sessions"]
            if entry["cursor"]:
                pending.append((entry["host"], entry["cursor"]))
        for host, cursor in pending:  # the rest of each host's table, page by page
            seen: set[int] = set()
            while cursor:
                page = client.get("/sessions", **query, host=host, cursor=str(cursor))
                entry = next((e for e in page["hosts"] if e["host"] == host), None)
                if entry is None or "error" in entry:
                    reason = entry["error"] if entry else next((m["reason"] for m in page["missing"]), "no answer")
                    print(f"ngfw sessions: host {host}: {reason}", file=sys.stderr)
                    break
                for record in entry["sessions"]:
                    if record["flow_id"] not in seen:
                        seen.add(record["flow_id"])
                        yield record
                cursor = entry["cursor"]

    try:
        return _print_sessions(stream(), args, fleet=True)
    except ControlError as exc:
        return _control_error(exc)
    except ControlUnreachable as exc:
        return _fail(exc)


def _fleet_clear(args: argparse.Namespace, flt: SessionFilter, everything: bool) -> int:
    client = _control(args)
    if client is None:
        return EXIT_FAILED
    from ngfw.control.client import ControlError, ControlUnreachable

    body: dict[str, Any] = {"filter": flt.as_dict(), "silent": args.silent, "all": everything}
    if args.host:
        body["host"] = args.host
    try:
        answer = client.post("/sessions/clear", body)
    except ControlError as exc:
        return _control_error(exc)
    except ControlUnreachable as exc:
        return _fail(exc)
    for missing in answer["missing"]:
        print(f"ngfw sessions clear: host {missing['host']}: {missing['reason']}", file=sys.stderr)
    if args.json:
        print(json.dumps(answer))
        return EXIT_OK if not answer["missing"] else EXIT_FAILED
    for entry in answer["hosts"]:
        if "error" in entry:
            print(f"  {entry['host']:<16} {entry['error']}")
        else:
            print(f"  {entry['host']:<16} {entry['cleared']} cleared, {entry['resets']} to be reset")
    print(_cleared_line(flt, answer["cleared"], answer["resets"]))
    return EXIT_OK if not answer["missing"] else EXIT_FAILED


def _cleared_line(flt: SessionFilter, cleared: int, resets: int) -> str:
    return (
        f"{cleared} session{'s' if cleared != 1 else ''} cleared ({flt.words()}); {resets} TCP "
        f"connection{'s' if resets != 1 else ''} reset both ways at their next segment"
    )


COLUMNS = (
    ("FLOW ID", 19),
    ("VSYS", 10),
    ("CLIENT", 28),
    ("USER", 12),
    ("SERVER", 24),
    ("PROTO", 5),
    ("APP", 22),
    ("RULE", 20),
    ("STATE", 11),
    ("AGE", 7),
    ("PKTS C/S", 13),
    ("BYTES C/S", 15),
)


def _print_sessions(records: Iterator[dict[str, Any]], args: argparse.Namespace, fleet: bool = False) -> int:
    import orjson

    out = sys.stdout
    n = 0
    hosts: set[str] = set()
    if not args.json:
        head = ("HOST".ljust(12) + " " if fleet else "") + " ".join(name.ljust(width) for name, width in COLUMNS)
        out.write(head + " FLAGS\n")
    for record in records:
        if args.limit is not None and n >= args.limit:
            break
        n += 1
        hosts.add(record.get("host") or "")
        if args.json:
            out.write(orjson.dumps(record).decode() + "\n")
        else:
            out.write(session_row(record, fleet) + "\n")
        if n % 200 == 0:
            out.flush()
    if not args.json:
        where = f" on {len(hosts)} host{'s' if len(hosts) != 1 else ''}" if fleet else ""
        out.write(
            f"{n} session{'s' if n != 1 else ''}{where}"
            + (f" (--limit {args.limit})" if args.limit is not None and n >= args.limit else "")
            + "\n"
        )
    out.flush()
    return EXIT_OK


def session_row(r: dict[str, Any], fleet: bool = False) -> str:
    def end(vm: str | None, ip: str, port: int) -> str:
        address = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
        return f"{vm} {address}" if vm else address

    app = r["app"] or ("(classifying)" if r.get("classifying") else "")
    if r["app_proto"] and r["app_proto"] != r["app"]:
        app = f"{r['app']}/{r['app_proto']}"
    if r["app_host"]:
        app = f"{app} {r['app_host']}"
    state = r["state"] if r["action"] == "allow" else f"{r['action']}:{r['state']}"
    flags = [name for name in ("inspected", "bypass", "classifying", "migrating", "cut") if r.get(name)]
    if r.get("threat"):
        flags.append(f"threat-{r['threat']}")
    cells = (
        str(r["flow_id"]),
        r["vsys"] or "-",
        end(r["src_vm"], r["src_ip"], r["src_port"]),
        r.get("src_user") or "-",
        end(r["dest_vm"], r["dest_ip"], r["dest_port"]),
        r["proto"].lower(),
        app or "-",
        r["rule"] or "-",
        state,
        _duration(r["age"]),
        f"{r['pkts_toserver']}/{r['pkts_toclient']}",
        f"{_size(r['bytes_toserver'])}/{_size(r['bytes_toclient'])}",
    )
    line = " ".join(cell.ljust(width) for cell, (_, width) in zip(cells, COLUMNS))
    if fleet:
        line = (r.get("host") or "?").ljust(12) + " " + line
    return f"{line} {','.join(flags) or '-'}"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _size(n: int) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if n < 1024 or unit == "T":
            return f"{n}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


# ---------------------------------------------------------------- rule hits


def cmd_policy_hits(args: argparse.Namespace) -> int:
    rules, hosts, missing = _hits(args, gone=args.gone)
    if rules is None:
        return EXIT_FAILED
    if args.json:
        for rule in rules:
            print(json.dumps(rule))
        return EXIT_OK
    print(f"{'VSYS':<12} {'RULE':<28} {'HITS':>10}  {'FIRST HIT':<19}  {'LAST HIT':<19}  COUNTED SINCE")
    for rule in rules:
        since = min((h["since"] for h in rule["hosts"].values()), default=None) if "hosts" in rule else rule["since"]
        gone = "" if rule.get("running", True) else "  (not in the policy now)"
        print(
            f"{rule['vsys']:<12} {rule['rule']:<28} {rule['hits']:>10}  {_when(rule['first']):<19}  "
            f"{_when(rule['last']):<19}  {_when(since)}{gone}"
        )
    _print_missing("policy hits", missing, hosts)
    return EXIT_OK


def cmd_policy_unused(args: argparse.Namespace) -> int:
    if not 0 < args.days <= 3650:
        return _usage("--days must be more than 0 and at most 3650")
    if args.control:
        client = _control(args)
        if client is None:
            return EXIT_FAILED
        from ngfw.control.client import ControlError, ControlUnreachable

        try:
            answer = client.get("/rules/unused", days=str(args.days), **({"vsys": args.vsys} if args.vsys else {}))
        except ControlError as exc:
            return _control_error(exc)
        except ControlUnreachable as exc:
            return _fail(exc)
        unused, hosts, missing = answer["unused"], answer["hosts"], answer["missing"]
    else:
        rules, hosts, missing = _hits(args, gone=False)
        if rules is None:
            return EXIT_FAILED
        now = time.time()
        horizon = now - args.days * 86400
        unused = [
            {
                "vsys": r["vsys"],
                "rule": r["rule"],
                "last": r["last"],
                "hits": r["hits"],
                "tracked_seconds": now - r["since"],
            }
            for r in rules
            if r["last"] is None or r["last"] < horizon
        ]
    unused = [u for u in unused if u["rule"] != DEFAULT_RULE]  # the catch-all is never a rule to delete
    if args.json:
        for entry in unused:
            print(json.dumps(entry))
        return EXIT_OK
    where = f"on any of {len(hosts)} hosts" if args.control else "on this dataplane"
    print(f"rules with no hit in the last {args.days:g} days {where}:")
    for entry in unused:
        tracked = entry["tracked_seconds"] / 86400
        note = "" if tracked >= args.days else f"  (counted for {tracked:.1f} days only)"
        last = f"last hit {_when(entry['last'])}" if entry["last"] else "never hit"
        print(f"  {entry['vsys']:<12} {entry['rule']:<28} {last}{note}")
    if not unused:
        print("  (none)")
    _print_missing("policy unused", missing, hosts)
    return EXIT_OK if not missing else EXIT_FAILED


def _hits(args: argparse.Namespace, gone: bool) -> tuple[list[dict[str, Any]] | None, list[str], list[dict[str, str]]]:
    if args.control:
        client = _control(args)
        if client is None:
            return None, [], []
        from ngfw.control.client import ControlError, ControlUnreachable

        query = {k: v for k, v in (("vsys", args.vsys), ("host", args.host)) if v}
        try:
            answer = client.get("/rules/hits", **query)
        except ControlError as exc:
            _control_error(exc)
            return None, [], []
        except ControlUnreachable as exc:
            _fail(exc)
            return None, [], []
        return answer["rules"], answer["hosts"], answer["missing"]
    from ngfw.dataplane.opsocket import OperationsError, SocketError

    try:
        with _open(args) as client:
            answer = client.call({"op": "hits", "vsys": args.vsys, "gone": gone})
    except (OperationsError, SocketError) as exc:
        _fail(exc)
        return None, [], []
    return answer["rules"], [answer["host"]], []


def _print_missing(command: str, missing: list[dict[str, str]], hosts: list[str]) -> None:
    for entry in missing:
        print(
            f"ngfw {command}: host {entry['host']}: {entry['reason']} (its hits are not counted here)", file=sys.stderr
        )


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


# ---------------------------------------------------------------- plumbing


def _open(args: argparse.Namespace) -> Any:
    from ngfw.dataplane.opsocket import OperationsClient, find_socket

    return OperationsClient(args.socket or find_socket())


def _control(args: argparse.Namespace) -> Any:
    import os

    from ngfw.control.client import ControlClient, read_token

    ca_file = args.ca_file or os.environ.get("NGFW_CA_FILE") or None
    try:
        return ControlClient(
            args.control,
            read_token(args.token_file),
            ca_file=ca_file,
            ca_option="--ca-file" if args.ca_file else "$NGFW_CA_FILE",
        )
    except OSError as exc:
        _fail(f"token file {args.token_file}: {exc.strerror or exc}")
    except ValueError as exc:  # a bad URL, CA file or certificate
        _fail(exc)
    return None


def _control_error(exc: Any) -> int:
    print(f"ngfw: {exc.body.get('error', exc)} (HTTP {exc.status})", file=sys.stderr)
    return EXIT_USAGE if exc.status == 400 else EXIT_FAILED


def _usage(message: object) -> int:
    print(f"ngfw: {message}", file=sys.stderr)
    return EXIT_USAGE


def _fail(message: object) -> int:
    print(f"ngfw: {message}", file=sys.stderr)
    return EXIT_FAILED
