"""The kernel's client cookie cache, through the ``tcp_metrics`` generic netlink family.

What ``ip tcp_metrics`` shows: per destination (and source) address, Linux keeps the TFO cookie
the server handed out, the server's MSS and the SYN losses seen, next to other TCP metrics.
Attributes and commands are those of ``include/uapi/linux/tcp_metrics.h``. The cache is per
network namespace: the netlink socket belongs to the namespace of the thread that opens it.
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, genlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

from fastopen.errors import FastOpenError, KernelFeatureMissing, NeedsRoot

FAMILY = "tcp_metrics"
VERSION = 1
CMD_GET = 1
CMD_DEL = 2

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class _TcpMetricsMsg(genlmsg):  # type: ignore[misc]  # pyroute2 is untyped
    prefix = "TCP_METRICS_ATTR_"
    nla_map = (
        ("TCP_METRICS_ATTR_UNSPEC", "none"),
        ("TCP_METRICS_ATTR_ADDR_IPV4", "ip4addr"),
        ("TCP_METRICS_ATTR_ADDR_IPV6", "ip6addr"),
        ("TCP_METRICS_ATTR_AGE", "uint64"),  # msecs
        ("TCP_METRICS_ATTR_TW_TSVAL", "uint32"),
        ("TCP_METRICS_ATTR_TW_TS_STAMP", "int32"),
        ("TCP_METRICS_ATTR_VALS", "hex"),  # nested RTT/cwnd metrics, not used here
        ("TCP_METRICS_ATTR_FOPEN_MSS", "uint16"),
        ("TCP_METRICS_ATTR_FOPEN_SYN_DROPS", "uint16"),
        ("TCP_METRICS_ATTR_FOPEN_SYN_DROP_TS", "uint64"),  # msecs since the last drop
        ("TCP_METRICS_ATTR_FOPEN_COOKIE", "cdata"),
        ("TCP_METRICS_ATTR_SADDR_IPV4", "ip4addr"),
        ("TCP_METRICS_ATTR_SADDR_IPV6", "ip6addr"),
        ("TCP_METRICS_ATTR_PAD", "hex"),
    )


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


def _entry(msg: Any) -> CacheEntry:
    dst = msg.get("TCP_METRICS_ATTR_ADDR_IPV4") or msg.get("TCP_METRICS_ATTR_ADDR_IPV6")
    src = msg.get("TCP_METRICS_ATTR_SADDR_IPV4") or msg.get("TCP_METRICS_ATTR_SADDR_IPV6")
    drop_ts = msg.get("TCP_METRICS_ATTR_FOPEN_SYN_DROP_TS")
    return CacheEntry(
        destination=ipaddress.ip_address(dst),
        source=ipaddress.ip_address(src) if src else None,
        cookie=bytes(msg.get("TCP_METRICS_ATTR_FOPEN_COOKIE") or b""),
        mss=int(msg.get("TCP_METRICS_ATTR_FOPEN_MSS") or 0),
        syn_drops=int(msg.get("TCP_METRICS_ATTR_FOPEN_SYN_DROPS") or 0),
        syn_drop_age=drop_ts / 1000 if drop_ts is not None else None,
        age=int(msg.get("TCP_METRICS_ATTR_AGE") or 0) / 1000,
    )


def _message(cmd: int) -> Any:
    msg = _TcpMetricsMsg()
    msg["cmd"] = cmd
    msg["version"] = VERSION
    return msg


@contextmanager
def _socket() -> Iterator[Any]:
    sock = GenericNetlinkSocket()
    try:
        try:
            sock.bind(FAMILY, _TcpMetricsMsg)
        except NetlinkError as exc:
            if exc.code == errno.ENOENT:
                raise KernelFeatureMissing(
                    "this kernel has no tcp_metrics netlink family",
                    hint="it needs CONFIG_INET and TCP metrics (any Linux since 3.10)",
                ) from None
            raise
        yield sock
    finally:
        sock.close()


def entries() -> list[CacheEntry]:
    """Every entry of the cache of the current network namespace (``ip tcp_metrics show``)."""
    with _socket() as sock:
        replies = sock.nlm_request(
            _message(CMD_GET), msg_type=sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_DUMP
        )
        return [_entry(msg) for msg in replies]


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
    msg = _message(CMD_DEL)
    if isinstance(address, ipaddress.IPv4Address):
        msg["attrs"].append(("TCP_METRICS_ATTR_ADDR_IPV4", str(address)))
    elif isinstance(address, ipaddress.IPv6Address):
        msg["attrs"].append(("TCP_METRICS_ATTR_ADDR_IPV6", str(address)))
    with _socket() as sock:
        try:
            sock.nlm_request(msg, msg_type=sock.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)
        except NetlinkError as exc:
            if exc.code == errno.EPERM:
                raise NeedsRoot(
                    "flushing the TFO cookie cache needs root", hint="run as root"
                ) from None
            if exc.code == errno.ESRCH:  # no entry for that address
                return 0
            raise
    return count
