"""Netlink requests with the socket module alone: a request, its replies, their attributes.

Enough for the families fastopen asks (``sock_diag`` for listeners, generic netlink's
``tcp_metrics`` for the cookie cache, rtnetlink for a route's features), with no event loop of
its own, so it works as well inside a running asyncio loop. A netlink socket belongs to the
network namespace of the thread that opens it.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import os
import socket
import struct
from collections.abc import Iterator

NETLINK_ROUTE = 0
NETLINK_SOCK_DIAG = 4
NETLINK_GENERIC = 16
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
#: The flags of ``ip route add``, ``change`` and ``replace``.
ROUTE_VERBS = {
    "add": NLM_F_CREATE | NLM_F_EXCL,
    "change": NLM_F_REPLACE,
    "replace": NLM_F_CREATE | NLM_F_REPLACE,
}
RTM_NEWROUTE = 24
RTA_DST = 1
RTA_OIF = 4
RTA_METRICS = 8
RTAX_FEATURES = 12
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
GENL_ID_CTRL = 0x10
CTRL_CMD_GETFAMILY = 3
CTRL_ATTR_FAMILY_ID = 1
CTRL_ATTR_FAMILY_NAME = 2

_HEADER = struct.Struct("=IHHII")
_ATTR = struct.Struct("=HH")
_GENL = struct.Struct("=BBxx")
_RTMSG = struct.Struct("=BBBBBBBBI")
_seq = itertools.count(1)


class NetlinkError(OSError):
    """The kernel answered a netlink request with an error (``.errno`` is its code)."""


def attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink attribute in ``data``."""
    offset = 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            return
        yield kind & 0x3FFF, data[offset + _ATTR.size : offset + length]
        offset += (length + 3) & ~3


def attribute(kind: int, payload: bytes) -> bytes:
    """One netlink attribute, padded."""
    raw = _ATTR.pack(_ATTR.size + len(payload), kind) + payload
    return raw + bytes(-len(raw) % 4)


def request(sock: socket.socket, kind: int, flags: int, payload: bytes) -> list[bytes]:
    """Send one request on ``sock``; the payloads of the replies (a dump's, or the one answer).

    Raises :class:`NetlinkError` with the kernel's errno when it refuses.
    """
    seq = next(_seq)
    sock.send(
        _HEADER.pack(_HEADER.size + len(payload), kind, flags | NLM_F_REQUEST, seq, 0) + payload
    )
    replies: list[bytes] = []
    while True:
        data = sock.recv(1 << 16)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, rtype, _, rseq, _ = _HEADER.unpack_from(data, offset)
            if length < _HEADER.size:
                raise NetlinkError(errno.EIO, "malformed netlink reply")
            body = data[offset + _HEADER.size : offset + length]
            offset += (length + 3) & ~3
            if rseq != seq:
                continue
            if rtype == NLMSG_DONE:
                return replies
            if rtype == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", body)
                if code:
                    raise NetlinkError(-code, os.strerror(-code))
                return replies  # an ACK
            replies.append(body)
            if not flags & (NLM_F_DUMP | NLM_F_ACK):
                return replies


def open_socket(protocol: int, groups: int = 0) -> socket.socket:
    """A netlink socket of ``protocol`` in this thread's network namespace, joined to the
    multicast ``groups`` (a bit mask of the family's groups) when given."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    if groups:
        try:
            sock.bind((0, groups))
        except BaseException:
            sock.close()
            raise
    return sock


def messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in ``data`` (one ``recv``: events of a group)."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            return
        yield kind, data[offset + _HEADER.size : offset + length]
        offset += (length + 3) & ~3


def genl_family(sock: socket.socket, name: str) -> int:
    """The id of the generic netlink family ``name`` (ENOENT when the kernel has none)."""
    payload = _GENL.pack(CTRL_CMD_GETFAMILY, 1) + attribute(
        CTRL_ATTR_FAMILY_NAME, name.encode() + b"\0"
    )
    for reply in request(sock, GENL_ID_CTRL, 0, payload):
        for kind, value in attributes(reply[_GENL.size :]):
            if kind == CTRL_ATTR_FAMILY_ID:
                return int(struct.unpack("=H", value[:2])[0])
    raise NetlinkError(errno.ENOENT, f"no generic netlink family {name}")


def genl_request(
    sock: socket.socket, family: int, cmd: int, version: int, attrs: bytes = b"", *, flags: int
) -> list[list[tuple[int, bytes]]]:
    """A generic netlink request; the attributes of each reply."""
    replies = request(sock, family, flags, _GENL.pack(cmd, version) + attrs)
    return [list(attributes(reply[_GENL.size :])) for reply in replies]


def set_route(
    sock: socket.socket,
    verb: str,
    network: ipaddress.IPv4Network | ipaddress.IPv6Network,
    ifindex: int,
    features: int,
) -> None:
    """``ip route add|change|replace NETWORK dev IFINDEX features BITS`` on a NETLINK_ROUTE
    socket: a link-scope route with the RTAX_FEATURES metric (iproute2 before 6.7 can say
    only ``ecn``, not ``tcp_usec_ts``)."""
    family = socket.AF_INET if network.version == 4 else socket.AF_INET6
    header = _RTMSG.pack(
        family, network.prefixlen, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_LINK, RTN_UNICAST, 0
    )
    attrs = attribute(RTA_DST, network.network_address.packed)
    attrs += attribute(RTA_OIF, struct.pack("=i", ifindex))
    if features:
        attrs += attribute(RTA_METRICS, attribute(RTAX_FEATURES, struct.pack("=I", features)))
    request(sock, RTM_NEWROUTE, ROUTE_VERBS[verb] | NLM_F_ACK, header + attrs)
