"""Pure-Python twins of the compiled fastpath's stages, for differential tests.

Each module answers the same question as one stage of `ngfw._fastpath.engine`, written from
the specifications (protocol RFCs, docs/policy.md) rather than from the C, so a test that feeds
both the same input finds where the fast code and the contract disagree. Slow and obvious on
purpose: nothing on the packet path imports this package.
"""
