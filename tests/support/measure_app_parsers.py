"""Measure the built-in App-ID parsers on the reference corpus (python3 -m tests.support.measure_app_parsers [-v],
from the repository).

For each labelled flow, the first <= 3 payload packets of each direction go through appid_parse in capture
order (ngfw._fastpath.parsers.parse_flow). Per application the parsers return: flows labelled with it that
were recognised, how many of its labelled hosts matched, and flows it was given wrongly.
"""

from __future__ import annotations

import collections
import sys

from ngfw._fastpath import parsers
from tests.support.appid_corpus import Flow, load_flows

L4 = {"TCP": 6, "UDP": 17}


def classify(flow: Flow) -> dict:
    return parsers.parse_flow(L4[flow.l4], flow.client_port, flow.server_port, flow.packets)


def host_matches(got: str | None, want: str) -> bool:
    return got is not None and got.lower() == want.lower()


def measure(verbose: bool = False) -> dict[str, dict[str, int]]:
    stats: dict[str, dict[str, int]] = collections.defaultdict(collections.Counter)  # type: ignore[arg-type]
    for flow in load_flows():
        if flow.l4 not in L4 or not flow.packets:
            continue
        res = classify(flow)
        got = res["app"]
        want = flow.app
        if want in parsers.APPS or any(a in parsers.APPS for a in flow.also):
            s = stats[want or "?"]
            s["flows"] += 1
            if got in flow.accepted:
                s["ok"] += 1
                if flow.host:
                    s["hosts"] += 1
                    s["host_ok"] += host_matches(res["host"], flow.host)
                    if verbose and not host_matches(res["host"], flow.host):
                        print(f"  host {want}: {flow.pcap} {flow.a} {flow.b} want {flow.host!r} got {res['host']!r}")
            elif verbose:
                print(
                    f"  miss {want}: {flow.pcap} {flow.l4} {flow.a} {flow.b} got {got} need_more={res['need_more']} "
                    f"{[(d, p[:24]) for d, p in flow.packets[:2]]}"
                )
        if got is not None and got not in flow.accepted:
            stats[got]["wrong"] += 1
            if verbose:
                print(f"  wrong {got}: {flow.pcap} {flow.l4} {flow.a} {flow.b} labelled {want} ({flow.ndpi})")
    return stats


def main() -> None:
    stats = measure("-v" in sys.argv)
    tot = collections.Counter()
    print(f"{'app':12} {'flows':>5} {'ok':>5} {'hosts':>5} {'host_ok':>7} {'wrong':>5}")
    for app, s in sorted(stats.items(), key=lambda kv: -kv[1]["flows"]):
        print(f"{app:12} {s['flows']:5} {s['ok']:5} {s['hosts']:5} {s['host_ok']:7} {s['wrong']:5}")
        tot.update(s)
    print(f"{'total':12} {tot['flows']:5} {tot['ok']:5} {tot['hosts']:5} {tot['host_ok']:7} {tot['wrong']:5}")


if __name__ == "__main__":
    main()
