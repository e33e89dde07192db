"""Suricata rule syntax -> signatures ready for Hyperscan (`load_rules`)."""

from ngfw.compiler.suricata.addresses import DEFAULT_VARIABLES
from ngfw.compiler.suricata.loader import load_rules
from ngfw.compiler.suricata.model import (
    PAYLOAD,
    AddressMatcher,
    BufferMatches,
    CompiledSignature,
    ContentMatch,
    DataAt,
    FastPattern,
    FlowbitOp,
    FlowConstraint,
    NumberCheck,
    PcreMatch,
    PortMatcher,
    RuleSet,
    Skipped,
    Threshold,
)

__all__ = [
    "DEFAULT_VARIABLES",
    "PAYLOAD",
    "AddressMatcher",
    "BufferMatches",
    "CompiledSignature",
    "ContentMatch",
    "DataAt",
    "FastPattern",
    "FlowConstraint",
    "FlowbitOp",
    "NumberCheck",
    "PcreMatch",
    "PortMatcher",
    "RuleSet",
    "Skipped",
    "Threshold",
    "load_rules",
]
