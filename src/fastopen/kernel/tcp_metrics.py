"""The kernel's client cookie cache, through the ``tcp_metrics`` generic netlink family.

What ``ip tcp_metrics`` shows: per destination (and source) address, Linux keeps the TFO cookie
the server handed out, the server's MSS and the SYN losses seen, next to other TCP metrics.
Attributes and commands are those of ``include/uapi/linux/tcp_metrics.h``. The cache is per
network namespace: the netlink socket belongs to the namespace of the thread that opens it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from fastopen.errors import FastOpenError, KernelFeatureMissing, NeedsRoot
from fastopen.kernel import netlink

FAMILY = "tcp_metrics"
VERSION = 1
CMD_GET = 1
CMD_DEL = 2

# TCP_METRICS_ATTR_* (include/uapi/linux/tcp_metrics.h)
ADDR_IPV4 = 1
ADDR_IPV6 = 2
AGE = 3  # msecs, u64
FOPEN_MSS = 7  # u16
FOPEN_SYN_DROPS = 8  # u16
FOPEN_SYN_DROP_TS = 9  # msecs since the last drop, u64
FOPEN_COOKIE = 10
SADDR_IPV4 = 11
SADDR_IPV6 = 12

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One destination in the cache, with what TFO keeps about it."""

    destination: IPAddress
    source: IPAddress | None
    #: The server's cookie; empty when none is cached.
    cookie: bytes
    #: The MSS the server announced (0 when unknown).
    mss: int
    syn_drops: int
    #: Seconds since the last SYN loss (None when there was none).
    syn_drop_age: float | None
    #: Seconds since the entry was last updated.
    age: float

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": str(self.destination),
            "source": str(self.source) if self.source is not None else None,
            "cookie": self.cookie.hex(),
            "mss": self.mss,
            "syn_drops": self.syn_drops,
            "syn_drop_age": self.syn_drop_age,
            "age": self.age,
        }


def _number(value: bytes | None) -> int | None:
    return None if value is None else int.from_bytes(value, "little")


def _entry(attrs: list[tuple[int, bytes]]) -> CacheEntry:
    found = dict(attrs)
    dst = found.get(ADDR_IPV4) or found.get(ADDR_IPV6)
    src = found.get(SADDR_IPV4) or found.get(SADDR_IPV6)
    drop_ts = _number(found.get(FOPEN_SYN_DROP_TS))
    assert dst is not None, "a tcp_metrics entry without a destination"
    return CacheEntry(
        destination=ipaddress.ip_address(dst),
        source=ipaddress.ip_address(src) if src else None,
        cookie=found.get(FOPEN_COOKIE, b""),
        mss=_number(found.get(FOPEN_MSS)) or 0,
        syn_drops=_number(found.get(FOPEN_SYN_DROPS)) or 0,
        syn_drop_age=drop_ts / 1000 if drop_ts is not None else None,
        age=(_number(found.get(AGE)) or 0) / 1000,
    )


@contextmanager
def _socket() -> Iterator[tuple[socket.socket, int]]:
    """A generic netlink socket in this thread's namespace, and the tcp_metrics family id."""
    with netlink.open_socket(netlink.NETLINK_GENERIC) as sock:
        try:
            family = netlink.genl_family(sock, FAMILY)
        except netlink.NetlinkError as exc:
            if exc.errno == errno.ENOENT:
                raise KernelFeatureMissing(
                    "this kernel has no tcp_metrics netlink family",
                    hint="it needs CONFIG_INET and TCP metrics (any Linux since 3.10)",
                ) from None
            raise
        yield sock, family


def entries() -> list[CacheEntry]:
    """Every entry of the cache of the current network namespace (``ip tcp_metrics show``)."""
    with _socket() as (sock, family):
        replies = netlink.genl_request(sock, family, CMD_GET, VERSION, flags=netlink.NLM_F_DUMP)
    return [_entry(attrs) for attrs in replies]


def parse_address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise FastOpenError(
            f"{text!r} is not an IP address", hint="give an IPv4 or IPv6 address"
        ) from None


def flush(address: IPAddress | None = None) -> int:
    """Drop the entries for ``address`` (every source), or the whole cache; how many went.

    Needs root (CAP_NET_ADMIN). Flushing an address with no entry removes nothing and returns 0.
    """
    count = sum(1 for e in entries() if address is None or e.destination == address)
    attrs = b""
    if isinstance(address, ipaddress.IPv4Address):
        attrs = netlink.attribute(ADDR_IPV4, address.packed)
    elif isinstance(address, ipaddress.IPv6Address):
        attrs = netlink.attribute(ADDR_IPV6, address.packed)
    with _socket() as (sock, family):
        try:
            netlink.genl_request(sock, family, CMD_DEL, VERSION, attrs, flags=netlink.NLM_F_ACK)
        except netlink.NetlinkError as exc:
            if exc.errno == errno.EPERM:
                raise NeedsRoot(
                    "flushing the TFO cookie cache needs root", hint="run as root"
                ) from None
            if exc.errno == errno.ESRCH:  # no entry for that address
                return 0
            raise
    return count
