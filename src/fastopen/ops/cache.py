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
import threading
from collections.abc import Callable
from dataclasses import dataclass

from pyroute2 import IPRoute

from fastopen.errors import FastOpenError
from fastopen.kernel import tcp_metrics

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
_EVENTS = {"RTM_NEWADDR": "added", "RTM_DELADDR": "removed"}


def watch_addresses(
    stop: threading.Event,
    on_change: Callable[[AddressChange], None],
    on_ready: Callable[[], None] = lambda: None,
    *,
    poll: float = 0.2,
) -> None:
    """Flush the whole cache at each address added or removed in this network namespace, until
    ``stop`` is set; report each with ``on_change``. ``on_ready`` runs once listening."""
    with IPRoute() as ipr:
        ipr.bind(groups=_GROUPS)
        on_ready()
        while not stop.is_set():
            if select.select([ipr], [], [], poll)[0]:
                for msg in ipr.get():
                    event = _EVENTS.get(msg.get("event", ""))
                    if event is None:
                        continue
                    address = str(msg.get_attr("IFA_ADDRESS") or msg.get_attr("IFA_LOCAL"))
                    removed = tcp_metrics.flush()
                    log.info("address %s %s: flushed %d cached cookies", address, event, removed)
                    on_change(AddressChange(event, address, int(msg["index"]), removed))
