"""Every catalogue problem names the file, the app and the field, and all are reported at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ngfw.compiler.apps import load_catalogue
from ngfw.model.errors import PolicyError

RESERVED = """\
apps:
  - {name: unknown}
  - {name: unknown-tcp}
  - {name: unknown-udp}
  - {name: incomplete}
  - {name: insufficient-data}
"""


def load(tmp_path: Path, text: str, reserved: bool = True) -> list[str]:
    if reserved:
        (tmp_path / "00-reserved.yaml").write_text(RESERVED)
    (tmp_path / "apps.yaml").write_text(textwrap.dedent(text))
    with pytest.raises(PolicyError) as info:
        load_catalogue(tmp_path)
    return info.value.problems


def test_minimal_catalogue_loads(tmp_path: Path) -> None:
    (tmp_path / "00-reserved.yaml").write_text(RESERVED)
    (tmp_path / "apps.yaml").write_text(
        "apps:\n  - {name: zabbix, ports: [tcp/10051], signatures: [{l4: tcp, pattern: '^ZBXD\\x01'}]}\n"
    )
    catalogue = load_catalogue(tmp_path)
    assert catalogue.apps[5].name == "zabbix"
    assert catalogue.signatures[0].app == 5 and catalogue.signatures[0].l4 == 6
    assert catalogue.default_ports == {(6, 10051): (5,)}


def test_bad_pattern_names_file_app_and_field(tmp_path: Path) -> None:
    problems = load(
        tmp_path,
        """\
        apps:
          - name: backref
            signatures:
              - {pattern: '^ok'}
              - {pattern: '^(a)\\1'}
        """,
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        f"{tmp_path / 'apps.yaml'}: app backref: signatures[1].pattern: Hyperscan cannot compile"
    )
    assert "unsupported" in problems[0].lower()


def test_schema_errors_are_all_reported(tmp_path: Path) -> None:
    problems = load(
        tmp_path,
        """\
        apps:
          - name: one
            risk: 9
            ports: [tcp/99999]
            signatures: [{pattern: '^x', direction: upstream}]
          - name: two
            hosts: ['Bad Host']
            colour: blue
        """,
    )
    text = "\n".join(problems)
    assert "app one: risk: " in text
    assert "app one: ports: " in text and "tcp/99999" in text
    assert "app one: signatures[0].direction: must be one of to_server, to_client, any" in text
    assert "app two: hosts: " in text
    assert "app two: colour: unknown field" in text


def test_duplicates_and_references(tmp_path: Path) -> None:
    problems = load(
        tmp_path,
        """\
        apps:
          - {name: imaps, parent: tsl, ports: [tcp/993]}
          - {name: imaps}
          - {name: a, hosts: [example.com], ip_protocol: 50}
          - {name: b, hosts: [example.com], ip_protocol: 50}
        """,
    )
    text = "\n".join(problems)
    assert "app imaps: name: already defined in" in text
    assert "app imaps: parent: no app named 'tsl'" in text
    assert "app b: hosts[0]: 'example.com' already belongs to a" in text
    assert "app b: ip_protocol: 50 already belongs to a" in text


def test_reserved_apps_are_required_and_plain(tmp_path: Path) -> None:
    problems = load(
        tmp_path,
        """\
        apps:
          - {name: unknown, signatures: [{pattern: '^x'}]}
        """,
        reserved=False,
    )
    text = "\n".join(problems)
    assert "app unknown-tcp: reserved app is missing" in text
    assert "app unknown: signatures: a reserved app is a classification state" in text


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    problems = load(tmp_path, "apps:\n  - {name: x\n")
    assert problems[0].startswith(f"{tmp_path / 'apps.yaml'}:")
    assert "invalid YAML" in problems[0]
