"""The shipped App-ID catalogue loads, covers the corpus' apps, and compiles in Hyperscan."""

from __future__ import annotations

import json
import os
from pathlib import Path

import hyperscan
import pytest

from ngfw.compiler.apps import (
    APP_INCOMPLETE,
    APP_INSUFFICIENT_DATA,
    APP_UNKNOWN,
    APP_UNKNOWN_TCP,
    APP_UNKNOWN_UDP,
    DIR_TO_CLIENT,
    DIR_TO_SERVER,
    HS_FLAG_CASELESS,
    HS_FLAG_DOTALL,
    HS_FLAG_SINGLEMATCH,
    RESERVED,
    Catalogue,
    load_catalogue,
)
from ngfw.corpus import corpus

LABELS = Path(os.environ.get("NGFW_APPID_CORPUS", str(corpus("appid")))) / "labels.jsonl"


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def test_reserved_states_have_fixed_ids(catalogue: Catalogue) -> None:
    assert [a.name for a in catalogue.apps[: len(RESERVED)]] == list(RESERVED)
    assert catalogue.by_name["unknown"] == APP_UNKNOWN == 0
    assert catalogue.by_name["unknown-tcp"] == APP_UNKNOWN_TCP
    assert catalogue.by_name["unknown-udp"] == APP_UNKNOWN_UDP
    assert catalogue.by_name["incomplete"] == APP_INCOMPLETE
    assert catalogue.by_name["insufficient-data"] == APP_INSUFFICIENT_DATA
    assert all(a.kind == "reserved" for a in catalogue.apps[: len(RESERVED)])
    assert not any(s.app < len(RESERVED) for s in catalogue.signatures)


def test_ids_are_indexes(catalogue: Catalogue) -> None:
    assert all(app.id == index for index, app in enumerate(catalogue.apps))
    assert all(catalogue.apps[i].name == name for name, i in catalogue.by_name.items())
    assert len(catalogue.by_name) == len(catalogue.apps)


@pytest.mark.corpus
@pytest.mark.skipif(not LABELS.exists(), reason="App-ID corpus not present")
def test_covers_every_app_the_corpus_names(catalogue: Catalogue) -> None:
    names: set[str] = set()
    for line in LABELS.read_text().splitlines():
        label = json.loads(line)
        if label["app"]:
            names.add(label["app"])
            names.update(label["also"])
    missing = sorted(names - set(catalogue.by_name))
    assert not missing, f"apps named by labels.jsonl but not in the catalogue: {missing}"


@pytest.fixture(scope="module")
def database(catalogue: Catalogue) -> hyperscan.Database:
    """All signatures in one block-mode database, ids = signature ids, as the fastpath builds it."""
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[s.pattern.encode() for s in catalogue.signatures],
        ids=list(range(len(catalogue.signatures))),
        flags=[s.hs_flags for s in catalogue.signatures],
    )
    return database


def test_every_signature_compiles_into_one_block_database(catalogue: Catalogue, database: hyperscan.Database) -> None:
    for signature in catalogue.signatures:
        assert signature.hs_flags & (HS_FLAG_SINGLEMATCH | HS_FLAG_DOTALL) == HS_FLAG_SINGLEMATCH | HS_FLAG_DOTALL
        assert signature.l4 in (0, 6, 17)
        assert signature.direction in (0, 1, 2)


def _matching(catalogue: Catalogue, database: hyperscan.Database, payload: bytes, l4: int, direction: int) -> list[str]:
    """Apps whose signatures match `payload`, best priority first (the fastpath's choice, in Python)."""
    hits: list[int] = []
    database.scan(payload, match_event_handler=lambda sid, *_: hits.append(sid))
    usable = [
        catalogue.signatures[i]
        for i in hits
        if catalogue.signatures[i].l4 in (0, l4)
        and catalogue.signatures[i].direction in (0, direction)
        and len(payload) >= catalogue.signatures[i].min_len
    ]
    usable.sort(key=lambda s: -s.priority)
    return [catalogue.apps[s.app].name for s in usable]


@pytest.mark.parametrize(
    ("payload", "l4", "direction", "app"),
    [
        (b"ZBXD\x01\x10\x00\x00\x00\x00\x00\x00\x00agent.ping", 6, DIR_TO_SERVER, "zabbix"),
        (b"RFB 003.008\n", 6, DIR_TO_CLIENT, "vnc"),
        (b"@RSYNCD: 31.0\n", 6, DIR_TO_SERVER, "rsync"),
        (b"\xff" * 16 + b"\x00\x1d\x01\x04\xfd\xe9\x00\xb4\x02\x02\x02\x02\x00", 6, DIR_TO_SERVER, "bgp"),
        (b"\x00\x01rfc1350.txt\x00octet\x00", 17, DIR_TO_SERVER, "tftp"),
        (b"\x10\x11\x00\x04MQTT\x04\x02\x00<\x00\x05Bus41", 6, DIR_TO_SERVER, "mqtt"),
        (b"0045git-upload-pack /project.git\x00host=example.org\x00", 6, DIR_TO_SERVER, "git"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00", 6, DIR_TO_SERVER, "http2"),
        (b"AMQP\x00\x00\x09\x01", 6, DIR_TO_SERVER, "amqp"),
        (b"\x00\x9c\x00\x01\x1a\x2b\x3c\x4d\x00\x01\x00\x00", 6, DIR_TO_SERVER, "pptp"),
        (b"\x13BitTorrent protocol\x00\x00\x00\x00\x00\x10\x00\x05", 6, DIR_TO_SERVER, "bittorrent"),
        (b"J\x00\x00\x00\n8.0.36\x00\x0c\x00\x00\x00", 6, DIR_TO_CLIENT, "mysql"),
        (b"*1\r\n$4\r\nPING\r\n", 6, DIR_TO_SERVER, "redis"),
        (b"SETUP rtsp://10.0.0.1/track1 RTSP/1.0\r\nCSeq: 3\r\n", 6, DIR_TO_SERVER, "rtsp"),
        (b"\x05\x64\x08\xc4\x04\x00\x03\x00\xb4\xb8\xc0", 6, DIR_TO_SERVER, "dnp3"),
        (b"ES\x00\x00\x004\x00\x00\x00\x00\x00\x00\x00\x01\x08\x00\\\xc6c\x00\x00", 6, DIR_TO_SERVER, "elasticsearch"),
        (b"\x01\x00\x00\x00" + bytes(144), 17, DIR_TO_SERVER, "wireguard"),
        (b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n", 17, DIR_TO_SERVER, "ssdp"),
    ],
)
def test_signatures_recognise_their_protocol(
    catalogue: Catalogue, database: hyperscan.Database, payload: bytes, l4: int, direction: int, app: str
) -> None:
    found = _matching(catalogue, database, payload, l4, direction)
    assert found and found[0] == app, found


def test_wireguard_initiation_is_length_exact(catalogue: Catalogue, database: hyperscan.Database) -> None:
    assert "wireguard" not in _matching(catalogue, database, b"\x01\x00\x00\x00" + bytes(150), 17, DIR_TO_SERVER)


def test_nocase_sets_caseless(catalogue: Catalogue) -> None:
    caseless = [s for s in catalogue.signatures if s.hs_flags & HS_FLAG_CASELESS]
    assert caseless, "some shipped signatures are nocase"


def test_ip_protocols_and_ports(catalogue: Catalogue) -> None:
    assert catalogue.ip_protocols[1] == catalogue.by_name["icmp"]
    assert catalogue.ip_protocols[58] == catalogue.by_name["icmpv6"]
    assert catalogue.ip_protocols[50] == catalogue.ip_protocols[51] == catalogue.by_name["ipsec"]
    assert catalogue.default_ports[(6, 10051)] == (catalogue.by_name["zabbix"],)
    assert catalogue.default_ports[(6, 993)] == (catalogue.by_name["imaps"],)


def test_tls_children_by_port(catalogue: Catalogue) -> None:
    tls = catalogue.by_name["tls"]
    for port, child in [(993, "imaps"), (995, "pop3s"), (465, "smtps"), (990, "ftps"), (853, "dns-over-tls")]:
        assert catalogue.children_by_port[(tls, 6, port)] == catalogue.by_name[child]
        assert catalogue.apps[catalogue.by_name[child]].parent == tls


def test_host_rules_most_specific_first(catalogue: Catalogue) -> None:
    assert catalogue.match_host("github.com") == catalogue.by_name["github"]
    assert catalogue.match_host("API.GitHub.com.") == catalogue.by_name["github"]
    assert catalogue.match_host("notgithub.com") is None
    # mail.google.com is Gmail even though *.google.com is Google.
    assert catalogue.match_host("mail.google.com") == catalogue.by_name["gmail"]
    assert catalogue.match_host("www.google.com") == catalogue.by_name["google"]
    assert catalogue.app("github").kind == "service"
    assert catalogue.app("zabbix").kind == "protocol"


def test_digest_is_stable(catalogue: Catalogue) -> None:
    assert load_catalogue().digest == catalogue.digest
    assert len(catalogue.digest) == 64
