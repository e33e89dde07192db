"""The published JSON Schema stays in step with the models and accepts the examples."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ngfw.model.schema import json_schema

ROOT = Path(__file__).resolve().parents[3]
PUBLISHED = ROOT / "docs" / "policy-schema.json"


def test_published_schema_is_current() -> None:
    # Regenerate with: python -m ngfw.model.schema > docs/policy-schema.json
    assert json.loads(PUBLISHED.read_text()) == json_schema()


def test_schema_is_draft_2020_12_with_one_branch_per_kind() -> None:
    schema = json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    kinds = [
        schema["$defs"][branch["$ref"].rsplit("/", 1)[1]]["properties"]["kind"]["const"] for branch in schema["oneOf"]
    ]
    assert kinds == [
        "VirtualSystem",
        "Workload",
        "Group",
        "SecurityPolicy",
        "ThreatProfile",
        "SignatureSet",
        "UserGroup",
        "UserSource",
    ]


def test_schema_uses_the_names_users_write() -> None:
    defs = json_schema()["$defs"]
    assert "from" in defs["Rule"]["properties"] and "from_" not in defs["Rule"]["properties"]
    assert set(defs["Limits"]["properties"]) == {"maxSessions", "newSessionsPerSecond"}
    assert defs["Rule"]["additionalProperties"] is False


def test_examples_validate_against_the_schema() -> None:
    import jsonschema

    validator_class = jsonschema.Draft202012Validator
    validator_class.check_schema(json_schema())
    validator = validator_class(json_schema(), format_checker=validator_class.FORMAT_CHECKER)
    for example in sorted((ROOT / "rules" / "examples").glob("*.yaml")):
        for document in yaml.safe_load_all(example.read_text()):
            if document is not None:
                assert not list(validator.iter_errors(document)), (example, document)


def test_schema_rejects_what_the_loader_rejects_by_shape() -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(json_schema())
    rule = {"name": "a", "from": ["any"], "to": ["any"], "action": "permit"}
    document = {
        "apiVersion": "ngfw/v1",
        "kind": "SecurityPolicy",
        "metadata": {"name": "m", "vsys": "t"},
        "spec": {"rules": [rule]},
    }
    assert not validator.is_valid(document)
    rule["action"] = "allow"
    assert validator.is_valid(document)
    rule["from"] = ["10.0.0.0/8"]
    assert not validator.is_valid(document)
