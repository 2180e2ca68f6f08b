"""The SYN of a kernel-stack connection, as Linux saved it (``TCP_SAVE_SYN`` / ``TCP_SAVED_SYN``).

With ``TCP_SAVE_SYN`` (27) set on a listener, Linux keeps the network and TCP headers of each
SYN it answers (Linux 4.2+; TFO children included); ``getsockopt(TCP_SAVED_SYN)`` (28) on the
accepted socket returns them once and frees them. The headers give the client's ISN and, from
the IP length, how many bytes of data the SYN carried (the payload itself is not saved).
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from fastopen.kernel.server import Listener
from fastopen.kernel.tcpinfo import HasSockopt

TCP_SAVE_SYN = 27
TCP_SAVED_SYN = 28
#: Room for the largest IPv6 + TCP header (40 + 60) with space to spare.
SAVED_SYN_MAX = 512


@dataclass(frozen=True, slots=True)
class SavedSyn:
    """What the saved headers of a SYN say."""

    isn: int
    data_length: int


def enable(listener: Listener) -> None:
    """Make the kernel keep the headers of every SYN this listener answers from now on."""
    listener.setsockopt(socket.IPPROTO_TCP, TCP_SAVE_SYN, 1)


def parse(raw: bytes) -> SavedSyn:
    """The ISN and data length of a SYN from its saved IPv4 or IPv6 + TCP headers."""
    if not raw:
        raise ValueError("no saved SYN")
    version = raw[0] >> 4
    if version == 4:
        ip_len = (raw[0] & 0x0F) * 4
        total = struct.unpack_from("!H", raw, 2)[0]
        payload = total - ip_len
    elif version == 6 and len(raw) >= 40 and raw[6] == socket.IPPROTO_TCP:
        ip_len = 40
        payload = struct.unpack_from("!H", raw, 4)[0]
    else:
        raise ValueError(f"saved SYN: not an IPv4 or IPv6 + TCP header (version {version})")
    if len(raw) < ip_len + 20:
        raise ValueError(f"saved SYN: {len(raw)} bytes, too short for the headers")
    isn = struct.unpack_from("!I", raw, ip_len + 4)[0]
    tcp_len = (raw[ip_len + 12] >> 4) * 4
    if tcp_len < 20 or payload < tcp_len:
        raise ValueError("saved SYN: inconsistent header lengths")
    return SavedSyn(isn=isn, data_length=payload - tcp_len)


def read(sock: HasSockopt) -> SavedSyn | None:
    """The saved SYN of an accepted socket (only the first call has it), or None."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_SAVED_SYN, SAVED_SYN_MAX)
    except OSError:
        return None
    try:
        return parse(raw)
    except ValueError:
        return None
