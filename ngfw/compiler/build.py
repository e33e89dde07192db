"""What a policy was compiled from: the compiler's build record, kept apart from the fastpath's contract.

`CompiledPolicy` (ngfw.compiler.tables) is what the engine reads. Its `build` is this record, which the engine
never reads: the files the policy came from (`ngfw check`, a reload's paths), the resources (the policy's
digest, `ngfw.compiler.policy.policy_digest`; control's checks of profiles and identity updates) and each
Group's resource and members (identity updates recompute only the vsys whose workloads changed,
ngfw.compiler.identity). Plain data: this module imports neither the models nor the compiler.
"""

from __future__ import annotations

from ngfw.values import field, value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


@value
class BuildRecord:
    sources: tuple[str, ...] = ()  # files the policy came from, in load order
    # keyed by (vsys, name): the Group resources, and the workload indexes each one's members compiled to
    groups: dict[tuple[str, str], Any] = field(default_factory=dict, compare=False, repr=False)
    group_members: dict[tuple[str, str], frozenset[int]] = field(default_factory=dict, compare=False, repr=False)
    policy_resources: tuple[Any, ...] = field(default=(), compare=False, repr=False)  # every non-Workload resource
    workload_resources: tuple[Any, ...] = field(default=(), compare=False, repr=False)  # in workload-index order
