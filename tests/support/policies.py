"""Policies a test writes: YAML documents in the test's directory, compiled the way `ngfw dataplane` compiles
its policy file. The lab example (rules/examples/lab.yaml) gives the tenant, workloads and groups; a test
adds the SecurityPolicy its case needs."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ngfw.compiler.policy import load_policy
from ngfw.compiler.tables import CompiledPolicy

REPO = Path(__file__).resolve().parents[2]
LAB_POLICY = REPO / "rules" / "examples" / "lab.yaml"


def lab_policy(version: int = 1) -> CompiledPolicy:
    """The lab example as it is, compiled."""
    return load_policy(LAB_POLICY, version=version)


def lab_resources() -> str:
    """The lab example without its SecurityPolicy: the tenant, workloads and groups a test's rules name."""
    return LAB_POLICY.read_text().split("kind: SecurityPolicy")[0].rsplit("---", 1)[0]


def security_policy(rules: str, vsys: str = "tenant-a") -> str:
    """The SecurityPolicy of `vsys` whose rules are `rules`: YAML list items (`- {name: ...}`), indented as a
    test's triple-quoted string happens to be."""
    return (
        f"apiVersion: ngfw/v1\nkind: SecurityPolicy\nmetadata: {{name: main, vsys: {vsys}}}\nspec:\n  rules:\n"
        + textwrap.indent(textwrap.dedent(rules).strip() + "\n", "    ")
    )


def write_documents(directory: Path, *documents: str, name: str = "policy.yaml") -> Path:
    """One policy file of these YAML documents (each dedented), as an operator would write it."""
    path = directory / name
    path.write_text("---\n".join(textwrap.dedent(d).strip("\n") + "\n" for d in documents))
    return path


def compile_documents(directory: Path, *documents: str, version: int = 1, name: str = "policy.yaml") -> CompiledPolicy:
    """`write_documents`, then the file compiled as policy generation `version`."""
    return load_policy(write_documents(directory, *documents, name=name), version=version)


def lab_with_rules(directory: Path, rules: str, version: int = 1, name: str = "p.yaml") -> CompiledPolicy:
    """The lab's tenant, workloads and groups with `rules` as tenant-a's SecurityPolicy, compiled."""
    return compile_documents(directory, lab_resources(), security_policy(rules), version=version, name=name)


# Web to the lab server allowed and inspected by a shallow profile (a 64 KiB depth, the default is 1 MiB): a
# download is past it, and bypassed, after a few dozen segments (the flow bypass and workers tests)
SHALLOW_ALLOW = """
- {name: web-http, from: [group:web], to: [cidr:10.77.0.100/32], services: [tcp/80], action: allow, log: true,
   inspect: shallow}
- {name: default-deny, from: [any], to: [any], action: deny}
"""
SHALLOW_DENY = """
- {name: default-deny, from: [any], to: [any], action: deny}
"""
SHALLOW_PROFILE = """---
apiVersion: ngfw/v1
kind: ThreatProfile
metadata: {name: shallow, vsys: tenant-a}
spec: {depth: 65536}
"""
ADMIN_PAGE_SIGNATURE = (
    'alert http any any -> any any (msg:"LAB admin page"; http.uri; content:"/admin"; sid:9100001; rev:1;)\n'
)
