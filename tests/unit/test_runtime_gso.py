"""GSO without a device: the runs of segments the userspace stack joins into one GSO packet are
exactly what the device cuts back (``split_segment``, as Linux's ``tcp_gso_segment``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from fastopen.runtime import UserspaceStack
from fastopen.wire import Flags, Nop, TcpSegment, Timestamps, split_segment

A, B = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")
MSS = 1448
OPTS = (Nop(), Nop(), Timestamps(1000, 2000))
ACK, PSH, FIN = Flags.ACK, Flags.PSH, Flags.FIN


def data(seq: int, size: int, flags: Flags = ACK, window: int = 500) -> TcpSegment:
    return TcpSegment(40000, 80, seq, 7, flags, window, OPTS, bytes([seq & 0xFF]) * size)


@pytest.fixture
def stack() -> Iterator[UserspaceStack]:
    read, write = os.pipe()  # the stack is not started: nothing is read or written
    yield UserspaceStack(write, [str(A)], offloads=True)
    os.close(read)
    os.close(write)


def test_a_run_is_joined_and_cut_back_exactly(stack: UserspaceStack) -> None:
    run = [data(1 + i * MSS, MSS) for i in range(5)] + [data(1 + 5 * MSS, 700, ACK | PSH | FIN)]
    other = TcpSegment(80, 40001, 9, 9, ACK, 100, OPTS)
    moved = data(1 + 5 * MSS + 700, MSS, window=501)  # another window: not the same run
    out = [(A, B, seg) for seg in [*run, other, moved]]
    packets = stack._coalesced(out)
    assert [(len(seg.payload), gso) for _, _, seg, gso in packets] == [
        (5 * MSS + 700, MSS),
        (0, 0),
        (MSS, 0),
    ]
    joined = packets[0][2]
    assert joined.flags == ACK | PSH | FIN and joined.seq == 1
    assert split_segment(joined, MSS) == run


def test_runs_end_at_a_short_segment_a_gap_and_64_kb(stack: UserspaceStack) -> None:
    short = [data(1, MSS), data(1 + MSS, 100), data(1 + MSS + 100, MSS)]
    gap = [data(1, MSS), data(1 + MSS + 1, MSS)]
    many = [data(1 + i * MSS, MSS) for i in range(60)]
    for segments, sizes in (
        (short, [MSS + 100, MSS]),
        (gap, [MSS, MSS]),
        (many, [45 * MSS, 15 * MSS]),  # 45 segments of 1,448 bytes: the most below 64 KB
    ):
        packets = stack._coalesced([(A, B, seg) for seg in segments])
        assert [len(seg.payload) for _, _, seg, _ in packets] == sizes
        cut = [p for _, _, seg, gso in packets for p in split_segment(seg, gso or MSS)]
        assert cut == segments


def test_split_segment_flags_as_linux() -> None:
    seg = TcpSegment(1, 2, 0xFFFFFF00, 5, ACK | PSH | FIN | Flags.CWR, 9, (), b"x" * 1000)
    pieces = split_segment(seg, 300)
    assert [len(p.payload) for p in pieces] == [300, 300, 300, 100]
    assert [p.seq for p in pieces] == [0xFFFFFF00, 44, 344, 644]  # wrapped
    assert [p.flags for p in pieces] == [ACK | Flags.CWR, ACK, ACK, ACK | PSH | FIN]
    assert split_segment(seg, 1000) == [seg]
    with pytest.raises(ValueError, match="positive"):
        split_segment(seg, 0)
