"""The client cookie cache (the kernel's ``tcp_metrics``): flushing by prefix, as
``ip tcp_metrics flush PREFIX`` does, and flushing whenever the host's addresses change.

A cookie identifies the client to the server that issued it (RFC 7413, section 7.3): a host that
moves to another network (a new address) and comes back to a server with its old cookie is
recognisable across the move. Flushing the cache on every address change (the privacy rule
users ask for) costs one round trip per server afterwards.
"""

from __future__ import annotations

import ipaddress
import logging
import select
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from fastopen.errors import FastOpenError
from fastopen.kernel import netlink, tcp_metrics

log = logging.getLogger(__name__)

Prefix = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_prefix(text: str) -> Prefix:
    """An address (a /32 or /128) or a prefix, ``198.18.0.0/15`` or ``fd00::/8``."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise FastOpenError(
            f"{text!r} is not an address or a prefix",
            hint="give an address or a prefix, e.g. 198.18.0.1, 198.18.0.0/15 or fd00::/8",
        ) from None


def flush(prefix: Prefix | None = None) -> int:
    """Drop the cached entries whose destination is in ``prefix`` (every entry without one);
    how many went. Needs root."""
    if prefix is None:
        return tcp_metrics.flush()
    destinations = {e.destination for e in tcp_metrics.entries() if e.destination in prefix}
    return sum(tcp_metrics.flush(address) for address in sorted(destinations, key=str))


@dataclass(frozen=True, slots=True)
class AddressChange:
    """One address that came or went, and what the flush that followed removed."""

    event: str  # "added" or "removed"
    address: str
    interface: int
    flushed: int


#: Netlink multicast groups of address changes (RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR).
_GROUPS = 0x10 | 0x100
#: RTM_NEWADDR, RTM_DELADDR (linux/rtnetlink.h).
_EVENTS = {20: "added", 21: "removed"}
#: struct ifaddrmsg: family, prefix length, flags, scope, interface index.
_IFADDRMSG = struct.Struct("=BBBBI")
IFA_ADDRESS, IFA_LOCAL = 1, 2


#: RT_SCOPE_UNIVERSE: an address servers can see (not a link-local or host one).
_SCOPE_GLOBAL = 0


def _address_change(payload: bytes) -> tuple[str, int] | None:
    """The address and interface index of an RTM_NEWADDR / RTM_DELADDR message; None for an
    address of link or host scope (an IPv6 link-local one appears when a link comes up: no server
    ever sees it, so it says nothing about where the host is)."""
    family, _, _, scope, index = _IFADDRMSG.unpack_from(payload)
    if scope != _SCOPE_GLOBAL:
        return None
    found = dict(netlink.attributes(payload[_IFADDRMSG.size :]))
    raw = found.get(IFA_LOCAL) or found.get(IFA_ADDRESS) or b""
    try:
        address = socket.inet_ntop(family, raw)
    except (OSError, ValueError):
        address = raw.hex()
    return address, index


def watch_addresses(
    stop: threading.Event,
    on_change: Callable[[AddressChange], None],
    on_ready: Callable[[], None] = lambda: None,
    *,
    poll: float = 0.2,
) -> None:
    """Flush the whole cache at each global address added or removed in this network namespace
    (link-local and host addresses are ignored: servers never see them), until
    ``stop`` is set; report each with ``on_change``. ``on_ready`` runs once listening."""
    with netlink.open_socket(netlink.NETLINK_ROUTE, _GROUPS) as sock:
        on_ready()
        while not stop.is_set():
            if not select.select([sock], [], [], poll)[0]:
                continue
            for kind, payload in netlink.messages(sock.recv(1 << 16)):
                event = _EVENTS.get(kind)
                if event is None or len(payload) < _IFADDRMSG.size:
                    continue
                change = _address_change(payload)
                if change is None:
                    continue
                address, index = change
                removed = tcp_metrics.flush()
                log.info("address %s %s: flushed %d cached cookies", address, event, removed)
                on_change(AddressChange(event, address, index, removed))
