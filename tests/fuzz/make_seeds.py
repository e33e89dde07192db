"""Writes tests/fuzz/seeds/TARGET/: a small starting corpus per target from the shared corpora (App-ID
captures, suricata-verify captures and rules, ET Open) and the repository's rules and fixtures.

Run once when a target's input format changes: `python -m tests.fuzz.make_seeds`. The seeds are
committed (a few MB at most); what libFuzzer learns from them stays in build/fuzz/TARGET/corpus.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ngfw.corpus import corpus
from tests.fuzz.targets import records
from tests.fuzz.targets.appid import PORTS as APPID_PORTS
from tests.fuzz.targets.inspect import PORTS as INSPECT_PORTS

REPO = Path(__file__).resolve().parents[2]
SEEDS = REPO / "tests" / "fuzz" / "seeds"
MAX_CAPTURE = 12_000  # bytes of a capture seed
MAX_FLOWS = 400  # flows from the App-ID corpus, per flow target
ET_OPEN_EVERY = 97  # one ET Open rule in this many


def _write(target: str, data: bytes) -> None:
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


def captures() -> list[Path]:
    found = sorted((corpus("appid") / "pcaps").glob("*.pcap*")) + sorted(corpus("suricata-verify").glob("*/*.pcap"))
    found += sorted((REPO / "tests" / "fixtures").glob("*/*.pcap*"))
    return [p for p in found if p.stat().st_size <= MAX_CAPTURE]


def pcap_seeds() -> None:
    for path in captures():
        _write("pcap", path.read_bytes())


def decode_seeds() -> None:
    from scapy.all import PcapReader

    for path in captures():
        try:
            with PcapReader(str(path)) as reader:
                frames = [bytes(p) for _, p in zip(range(6), reader) if p.__class__.__name__ == "Ether"]
        except Exception:  # scapy reads fewer link types than the fastpath
            continue
        if frames:
            _write("decode", records.join([(i & 1, f) for i, f in enumerate(frames)]))


def _port_index(ports: tuple[int, ...], port: int) -> int:
    return ports.index(port) if port in ports else len(ports) - 1


def flow_seeds() -> None:
    from ngfw._fastpath.parsers import PARSERS
    from tests.support.appid_corpus import load_flows

    flows = [f for f in load_flows() if f.packets][:MAX_FLOWS]
    for f in flows:
        tcp = f.l4 == "TCP"
        body = records.join([(0 if to_server else 1, payload) for to_server, payload in f.packets])
        parser = PARSERS.index(f.app) if f.app in PARSERS else len(PARSERS)
        _write("appid", bytes([parser, (0x80 if tcp else 0) | _port_index(APPID_PORTS, f.server_port)]) + body)
        _write("inspect", bytes([(0 if tcp else 0x80) | _port_index(INSPECT_PORTS, f.server_port)]) + body)


def rule_seeds() -> None:
    texts = [
        p.read_text(errors="replace")
        for p in [
            *sorted((REPO / "rules").rglob("*.rules")),
            *sorted((REPO / "tests" / "fixtures" / "rules").glob("*.rules")),
            REPO / "tests" / "fuzz" / "inspect.rules",
            *sorted(corpus("suricata-verify").glob("*/test.rules")),
        ]
    ]
    lines = [line for t in texts for line in t.splitlines() if line.strip() and not line.startswith("#")]
    et = [
        line
        for p in sorted(corpus("et-open").glob("*.rules"))
        for line in p.read_text(errors="replace").splitlines()
        if line.startswith(("alert", "drop"))
    ]
    lines += et[::ET_OPEN_EVERY]
    for i in range(0, len(lines), 2):
        _write("suricata", ("\n".join(lines[i : i + 2]) + "\n").encode())


def policy_seeds() -> None:
    for path in sorted((REPO / "rules" / "examples").glob("*.yaml")):
        _write("policy", path.read_bytes())
    documents = (REPO / "rules" / "examples" / "lab.yaml").read_text().split("\n---\n")
    for i in range(len(documents)):
        _write("policy", "\n---\n".join(documents[: i + 1]).encode())


def control_seeds() -> None:
    from tests.fuzz.targets.control import CONTENT_TYPES, ROLES, RUNNING, build_routes_for_seeds

    json_type = CONTENT_TYPES.index("application/json") << 4
    yaml_type = CONTENT_TYPES.index("application/yaml") << 4
    bodies = {
        "/candidate/apply": json.dumps({"documents": RUNNING}).encode(),
        "/candidate/resources/{kind}/{vsys}/{name}": json.dumps(RUNNING[2]).encode(),
        "/commit": b'{"message": "fuzz", "base": 1}',
        "/rollback": b'{"version": 1, "message": "back", "base": 1}',
        "/identity/workloads/{vsys}/{name}": json.dumps(RUNNING[1]).encode(),
        "/acks": b'{"host": "host-a", "version": 1, "identity": 1, "hash": "00", "status": "applied"}',
    }
    params = {
        "/candidate/resources/{kind}/{vsys}/{name}": [b"Group", b"tenant-a", b"web"],
        "/versions/{number}": [b"1"],
        "/identity/workloads/{vsys}/{name}": [b"tenant-a", b"web-01"],
    }
    queries = {
        "/versions": b"limit=5",
        "/diff": b"from=1&to=candidate",
        "/bundle": b"host=host-a&known=x&version=1",
        "/audit": b"limit=3",
    }
    for index, route in enumerate(build_routes_for_seeds()):
        path_values = (params.get(route.path, []) + [b"", b"", b""])[:3]
        for role in (0, ROLES.index("dataplane:host-a")):
            fields = [*path_values, queries.get(route.path, b""), bodies.get(route.path, b"")]
            _write("control", bytes([index, json_type | role]) + b"\0".join(fields))
    yaml_text = "\n---\n".join(json.dumps(d) for d in RUNNING).encode()
    apply_index = [r.path for r in build_routes_for_seeds()].index("/candidate/apply")
    _write("control", bytes([apply_index, yaml_type]) + b"\0\0\0\0" + yaml_text)


def main() -> None:
    shutil.rmtree(SEEDS, ignore_errors=True)
    for make in (pcap_seeds, decode_seeds, flow_seeds, rule_seeds, policy_seeds, control_seeds):
        make()
    for d in sorted(SEEDS.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files) // 1024} KiB")


if __name__ == "__main__":
    main()
