"""Find and prepare the links a dataplane owns (pyroute2), and open TAP devices.

Every failure a user can cause (a missing interface, no permission, a TAP that cannot be
created) becomes a `PortError` with one sentence naming the interface.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import struct
from dataclasses import dataclass

# pyroute2 is imported where links are configured: a restarted dataplane whose links are set up already
# (ngfw.dataplane.runner) opens its rings without it, a sixth of a second earlier

log = logging.getLogger(__name__)

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_PROMISC = 0x100
IFF_UP = 0x1
SIOCGIFFLAGS = 0x8913
SIOCGIFMTU = 0x8921

# Receive offloads that coalesce frames into super-frames larger than the MTU.
SUPERFRAME_FEATURES = ("rx-gro", "rx-lro", "rx-gro-hw", "rx-gro-list", "rx-udp-gro-forwarding")


class PortError(Exception):
    """A port cannot be used; the message is one sentence naming the interface."""


@dataclass(frozen=True)
class Link:
    name: str
    ifindex: int
    mtu: int


def _no_permission(name: str) -> PortError:
    return PortError(
        f"no permission to configure {name}: run the dataplane as root (or with CAP_NET_ADMIN and CAP_NET_RAW)"
    )


def link_as_left(name: str) -> Link | None:
    """`name` as a previous dataplane left it -- up and promiscuous -- read without netlink (two ioctls); None
    when it is not there or not set up yet."""
    try:
        ifindex = socket.if_nametoindex(name)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            request = struct.pack("16s16x", name.encode()[:15])
            flags = struct.unpack_from("H", fcntl.ioctl(s, SIOCGIFFLAGS, request), 16)[0]
            mtu = struct.unpack_from("i", fcntl.ioctl(s, SIOCGIFMTU, request), 16)[0]
    except (OSError, UnicodeError):
        return None
    if flags & IFF_UP and flags & IFF_PROMISC and mtu > 0:
        return Link(name=name, ifindex=ifindex, mtu=mtu)
    return None


def prepare_link(name: str, min_mtu: int = 1500) -> Link:
    """Look up `name`, bring it up in promiscuous mode and turn off super-frame offloads."""
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            raise PortError(f"interface {name} does not exist (in this network namespace)")
        ifindex = found[0]
        try:
            ipr.link("set", index=ifindex, state="up")
            ipr.link("set", index=ifindex, flags=IFF_PROMISC, mask=IFF_PROMISC)
        except (OSError, NetlinkError) as exc:
            code = exc.code if isinstance(exc, NetlinkError) else exc.errno
            if code in (errno.EPERM, errno.EACCES):
                raise _no_permission(name) from None
            raise PortError(f"cannot bring {name} up: {os.strerror(code) if code else exc}") from None
        mtu = ipr.get_links(ifindex)[0].get_attr("IFLA_MTU") or 1500
    if mtu < min_mtu:
        log.warning(
            "interface %s has MTU %d, below %d: larger frames from the other side will be dropped as oversize",
            name,
            mtu,
            min_mtu,
        )
    disable_superframe_offloads(name)
    return Link(name=name, ifindex=ifindex, mtu=mtu)


def disable_superframe_offloads(name: str) -> list[str]:
    """Turn off receive offloads that would hand the ring frames above the MTU; returns what was changed."""
    from pyroute2.ethtool import Ethtool

    changed: list[str] = []
    eth = Ethtool()
    try:
        try:
            features = eth.get_features(name)
        except OSError as exc:
            log.warning("cannot read offloads of %s (%s); oversize frames will be counted and dropped", name, exc)
            return changed
        for feature_name in SUPERFRAME_FEATURES:
            feature = features.features.get(feature_name)
            if feature is not None and feature.enable and feature.available:
                feature.enable = False
                changed.append(feature_name)
        if changed:
            try:
                eth.set_features(name, features)
                log.warning(
                    "turned off %s on %s: the dataplane forwards frames, not super-frames", ", ".join(changed), name
                )
            except OSError as exc:
                log.warning(
                    "cannot turn off %s on %s (%s); oversize frames will be counted and dropped",
                    ", ".join(changed),
                    name,
                    exc,
                )
    finally:
        eth.close()
    return changed


def open_tap(name: str) -> tuple[int, Link]:
    """Create (or attach to) TAP device `name`, up and non-blocking; returns (fd, link)."""
    if len(name.encode()) > 15:
        raise PortError(f"TAP name {name} is longer than 15 bytes")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise PortError(f"cannot create TAP {name}: /dev/net/tun is missing (load the tun module)") from None
    except PermissionError:
        raise _no_permission(name) from None
    try:
        ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
        fcntl.ioctl(fd, TUNSETOFFLOAD, 0)  # no GSO/checksum offload: whole, checksummed frames only
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise _no_permission(name) from None
        raise PortError(f"cannot create TAP {name}: {exc.strerror or exc}") from None
    try:
        link = prepare_link(name)
    except PortError:
        os.close(fd)
        raise
    return fd, link


def tap_attached(fd: int) -> bool:
    """Whether TAP descriptor `fd` is still attached to a device (in any network namespace): a deleted device
    leaves its descriptors answering EBADFD."""
    try:
        fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    except OSError:
        return False
    return True
