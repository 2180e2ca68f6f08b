"""Sequence arithmetic and TCP flag bits: the engine's leaf (Linux include/net/tcp.h before())."""

from __future__ import annotations

MASK = 0xFFFFFFFF
HALF = 0x80000000
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80


def seq_lt(a: int, b: int) -> bool:
    """``a`` before ``b`` in sequence space."""
    return ((a - b) & MASK) >= HALF


def seq_le(a: int, b: int) -> bool:
    """``a`` before or at ``b`` in sequence space."""
    return ((b - a) & MASK) < HALF
