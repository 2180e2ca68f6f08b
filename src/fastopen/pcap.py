"""pcap files of raw IP packets (LINKTYPE_RAW), as tcpdump, tshark and Wireshark read them.

Written by the lab's link forwarder and by the userspace stack (everything it sends and
receives); read back by :func:`read_pcap`.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PCAP_HEADER = struct.Struct("<IHHiIII")
PCAP_RECORD = struct.Struct("<IIII")
PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_RAW = 101
SNAPLEN = 65535


@dataclass(frozen=True)
class CapturedPacket:
    """One captured packet, with the wall-clock time it was captured."""

    time: float
    data: bytes


def write_pcap_header(out: BinaryIO) -> None:
    out.write(PCAP_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW))


def write_pcap_record(out: BinaryIO, packet: bytes, when: float | None = None) -> None:
    """Append one packet, stamped ``when`` (wall-clock seconds; now by default)."""
    now = time.time() if when is None else when
    sec = int(now)
    size = len(packet)
    out.write(PCAP_RECORD.pack(sec, int((now - sec) * 1e6), size, size) + packet)


def read_pcap(path: Path) -> list[CapturedPacket]:
    """The packets of a raw-IP pcap file (a record still being written is left out)."""
    data = path.read_bytes()
    if len(data) < PCAP_HEADER.size:
        return []
    magic, *_, linktype = PCAP_HEADER.unpack_from(data)
    if magic != PCAP_MAGIC or linktype != LINKTYPE_RAW:
        raise ValueError(f"{path} is not a raw-IP pcap file")
    packets = []
    offset = PCAP_HEADER.size
    while offset + PCAP_RECORD.size <= len(data):
        sec, usec, incl, _ = PCAP_RECORD.unpack_from(data, offset)
        offset += PCAP_RECORD.size
        if offset + incl > len(data):
            break  # a record still being written
        packets.append(CapturedPacket(sec + usec / 1e6, data[offset : offset + incl]))
        offset += incl
    return packets
