"""What the wire codec's tests share: addresses and a cookie, and checksum helpers written apart
from :mod:`fastopen.wire` (a pseudo-header of their own), so that they check the codec."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from fastopen.wire import PROTO_TCP, IPAddress, internet_checksum

V4 = (IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2"))
V6 = (IPv6Address("fd00:f0::1"), IPv6Address("fd00:f0::2"))
COOKIE = bytes.fromhex("3021b9d889017eeb")


def pseudo_header(src: IPAddress, dst: IPAddress, length: int) -> bytes:
    """The TCP pseudo-header for a segment of ``length`` bytes from ``src`` to ``dst``."""
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, PROTO_TCP, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, PROTO_TCP)


def fix_ipv4_checksum(packet: bytearray) -> None:
    """Recompute, in place, the header checksum of the IPv4 packet ``packet`` (IHL as it says)."""
    ihl = (packet[0] & 15) * 4
    packet[10:12] = b"\x00\x00"
    packet[10:12] = struct.pack("!H", internet_checksum(bytes(packet[:ihl])))
