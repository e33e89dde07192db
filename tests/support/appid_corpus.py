"""Flows of the App-ID reference corpus, read with scapy: the first payload packets of each labelled flow.

Shared by the parser tests and the corpus measurement (tests/support/measure_app_parsers.py). The result is
cached next to the fixtures, keyed by the corpus' labels file, because reading 107 captures with scapy is slow.
"""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

from ngfw.corpus import corpus

CORPUS = Path(os.environ.get("NGFW_APPID_CORPUS", str(corpus("appid"))))
CACHE = Path(__file__).resolve().parents[1] / "fixtures" / "appid" / ".corpus_flows.pickle"
MAX_PER_DIR = 3


@dataclass
class Flow:
    pcap: str
    l4: str
    a: str
    b: str
    app: str | None
    also: list[str]
    host: str | None
    ndpi: str
    client_port: int = 0
    server_port: int = 0
    # (to_server, payload) in capture order, at most MAX_PER_DIR payload packets per direction
    packets: list[tuple[bool, bytes]] = field(default_factory=list)

    @property
    def accepted(self) -> set[str]:
        return {self.app, *self.also} if self.app else set()


def _endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _innermost(pkt):  # type: ignore[no-untyped-def]
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    found = None
    layer = pkt
    while layer is not None and layer.__class__.__name__ != "NoPayload":
        if isinstance(layer, (IP, IPv6)):
            inner = layer.payload
            if isinstance(inner, (TCP, UDP)):
                found = (layer, inner)
        layer = layer.payload
    return found


def _read_pcap(path: Path) -> dict[frozenset[str], dict]:
    from scapy.all import PcapReader
    from scapy.layers.inet import TCP

    flows: dict[frozenset[str], dict] = {}
    try:
        reader = PcapReader(str(path))
    except Exception:
        return flows
    with reader:
        while True:
            try:
                pkt = reader.read_packet()
            except EOFError:
                break
            except Exception:
                continue
            if pkt is None:
                break
            try:
                hit = _innermost(pkt)
            except Exception:
                continue
            if hit is None:
                continue
            ip, l4 = hit
            src = _endpoint(ip.src, l4.sport)
            dst = _endpoint(ip.dst, l4.dport)
            key = frozenset((src, dst))
            f = flows.get(key)
            if f is None:
                f = flows[key] = {
                    "client": src,
                    "cport": l4.sport,
                    "sport": l4.dport,
                    "pkts": [],
                    "n": {True: 0, False: 0},
                    "next": {},
                    "syn_seen": False,
                }
            tcp = isinstance(l4, TCP)
            if tcp and (int(l4.flags) & 0x12) == 0x02 and not f["syn_seen"]:
                # the SYN sender is the client, whatever the capture showed first
                f["syn_seen"] = True
                if src != f["client"]:
                    f["client"], f["cport"], f["sport"] = src, l4.sport, l4.dport
                    f["pkts"] = [(not d, p) for d, p in f["pkts"]]
                    f["n"] = {True: f["n"][False], False: f["n"][True]}
            to_server = src == f["client"]
            data = bytes(l4.payload)
            if tcp and ip.__class__.__name__ == "IP":
                # drop Ethernet padding behind short IPv4 packets
                avail = ip.len - ip.ihl * 4 - l4.dataofs * 4
                data = data[: max(avail, 0)]
            if not data:
                continue
            if tcp:
                nxt = f["next"].get(to_server)
                if nxt is not None and l4.seq != nxt and ((l4.seq - nxt) & 0xFFFFFFFF) > 0x7FFFFFFF:
                    continue  # retransmission of bytes already seen
                f["next"][to_server] = (l4.seq + len(data)) & 0xFFFFFFFF
            if f["n"][to_server] >= MAX_PER_DIR:
                continue
            f["n"][to_server] += 1
            f["pkts"].append((to_server, data))
    return flows


def load_flows() -> list[Flow]:
    labels = CORPUS / "labels.jsonl"
    stamp = (labels.stat().st_mtime, labels.stat().st_size, MAX_PER_DIR)
    if CACHE.exists():
        try:
            with CACHE.open("rb") as fh:
                cached = pickle.load(fh)
            if cached["stamp"] == stamp:
                return cached["flows"]  # type: ignore[no-any-return]
        except Exception:
            pass
    rows = [json.loads(line) for line in labels.open()]
    by_pcap: dict[str, list[dict]] = {}
    for r in rows:
        by_pcap.setdefault(r["pcap"], []).append(r)
    out: list[Flow] = []
    for pcap, rs in sorted(by_pcap.items()):
        seen = _read_pcap(CORPUS / "pcaps" / pcap)
        for r in rs:
            fl = Flow(pcap, r["l4"], r["a"], r["b"], r["app"], r.get("also") or [], r.get("host"), r["ndpi"])
            raw = seen.get(frozenset((r["a"], r["b"])))
            if raw is not None:
                fl.client_port, fl.server_port, fl.packets = raw["cport"], raw["sport"], raw["pkts"]
            out.append(fl)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    with CACHE.open("wb") as fh:
        pickle.dump({"stamp": stamp, "flows": out}, fh)
    return out
