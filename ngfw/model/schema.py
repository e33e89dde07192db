"""The JSON Schema (draft 2020-12) of a policy document, for editors and CI.

One schema covers every kind (`oneOf`, told apart by the `kind` constant). It is
published as docs/policy-schema.json; regenerate that file with
`python -m ngfw.model.schema > docs/policy-schema.json` (a unit test fails when it
is stale). The schema checks shape and syntax; the loader checks more (multicast
MACs, port ranges, references, App-ID features), so passing the schema is
necessary, not sufficient.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ngfw.model.resources import API_VERSION, KINDS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation"]]] = [(model, "validation") for model in KINDS.values()]
    refs, definitions = models_json_schema(models, by_alias=True, ref_template="#/$defs/{model}")
    return {
        "$schema": SCHEMA_DIALECT,
        "title": f"ngfw policy resource ({API_VERSION})",
        "description": "One YAML/JSON document of an ngfw policy: " + ", ".join(KINDS) + ".",
        "oneOf": [refs[key] for key in models],
        "$defs": definitions["$defs"],
    }


def main() -> None:
    json.dump(json_schema(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
