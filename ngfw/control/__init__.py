"""The control plane: the `ngfw control` daemon, its store, roles, the dataplane agent and the CLI.

Desired state lives in a store (SQLite or etcd) as numbered policy versions plus an identity
revision (Workload bindings and labels, which change without a policy commit). Control
validates and compiles every change with `ngfw.compiler.policy`, publishes one bundle that
every host's agent fetches, verifies, compiles and applies, then acknowledges.
See docs/control.md.
"""
