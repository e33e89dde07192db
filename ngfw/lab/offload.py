"""Turn off checksum/segmentation/receive offloads on lab interfaces, as a benchmark setup would.

With offloads on, veth hands packet sockets super-frames and frames whose checksum is
"to be filled in later"; an inline dataplane reading AF_PACKET then sees packets no real
wire carries. Off, every frame on the path is a real, checksummed, MTU-sized frame.
"""

from __future__ import annotations

import logging
import warnings

from pyroute2 import Ethtool

from ngfw.lab.netns import in_netns

log = logging.getLogger(__name__)


def offload_feature(name: str) -> bool:
    """Whether an ethtool feature name is one we turn off ("ethtool -K dev rx off tx off tso off gso off gro off")."""
    return (
        name.startswith("tx-checksum")
        or name == "rx-checksum"
        or name.endswith("-segmentation")
        or name.startswith("tx-gso")
        or name.startswith("rx-gro")
        or name == "rx-lro"
        or name == "rx-udp-gro-forwarding"
    )


def disable_offloads(ns: str, ifnames: list[str]) -> list[str]:
    """Turn offloads off on `ifnames` in `ns`. Returns "ifname:feature" for each one still on (also warned)."""
    stuck: list[str] = []
    with in_netns(ns):
        eth = Ethtool()
        try:
            for ifname in ifnames:
                features = eth.get_features(ifname)
                wanted = [f for name, f in features.features.items() if offload_feature(name) and f.enable]
                for feature in wanted:
                    if feature.available:
                        feature.enable = False
                try:
                    eth.set_features(ifname, features)
                except OSError as exc:
                    warnings.warn(f"{ns}/{ifname}: cannot change offloads: {exc}", RuntimeWarning, stacklevel=2)
                after = eth.get_features(ifname).features
                for feature in wanted:
                    if after[feature.name].enable:
                        stuck.append(f"{ifname}:{feature.name}")
        finally:
            eth.close()
    if stuck:
        warnings.warn(f"{ns}: offloads that stay on: {', '.join(stuck)}", RuntimeWarning, stacklevel=2)
    return stuck
