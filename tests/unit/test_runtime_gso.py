"""GSO without a device: the runs of segments the userspace stack joins into one GSO packet are
exactly what the device cuts back (``split_segment``, as Linux's ``tcp_gso_segment``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from fastopen.runtime import UserspaceStack
from fastopen.runtime.tun import VNET_HDR
from fastopen.wire import (
    ECN_ECT_0,
    Flags,
    Nop,
    TcpSegment,
    Timestamps,
    parse_tcp_packet,
    split_segment,
    with_checksum,
)

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


def test_a_run_keeps_one_ip_header(stack: UserspaceStack) -> None:
    """The IP header of a GSO packet is every segment's (tcp_gso_segment copies it): a run
    ends where the ECN field (new data ECT(0), a retransmission Not-ECT), the TOS or DF
    changes, and the joined segment keeps those of the run."""
    marked = [replace(data(1 + i * MSS, MSS), ecn=ECN_ECT_0, tos=0x28, df=False) for i in range(3)]
    plain = data(1 + 3 * MSS, MSS)
    retransmit = replace(data(1 + 4 * MSS, MSS), tos=0x28, df=False)
    packets = stack._coalesced([(A, B, seg) for seg in [*marked, plain, retransmit]])
    assert [(len(seg.payload), seg.ecn, seg.tos, seg.df) for _, _, seg, _ in packets] == [
        (3 * MSS, ECN_ECT_0, 0x28, False),
        (MSS, 0, 0, True),
        (MSS, 0, 0x28, False),
    ]
    assert split_segment(packets[0][2], MSS) == marked


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


def _stack_on_pipe(offloads: bool) -> tuple[UserspaceStack, int]:
    read, write = os.pipe()
    os.set_blocking(read, False)
    return UserspaceStack(write, [str(A)], offloads=offloads), read


@pytest.mark.parametrize("offloads", [False, True], ids=["software", "gso"])
def test_a_segment_larger_than_a_packet_is_cut_at_the_mss(offloads: bool) -> None:
    """A segment the engine makes larger than a packet (its TSO) leaves as one GSO packet of
    gso_size = the MSS with offloads, and cut into packets of the MSS in software without."""
    stack, read = _stack_on_pipe(offloads)
    big = data(1, 10 * 1460 + 5, ACK | PSH)
    stack.host.output(A, B, big)
    stack._flush()
    raw = os.read(read, 1 << 20)
    os.close(read)
    os.close(stack.fd)
    if offloads:
        flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(raw)
        assert (flags, gso_type, gso_size) == (1, 1, 1448)  # NEEDS_CSUM, TCPV4, the MSS
        assert (hdr_len, csum_start, csum_offset) == (20 + 32, 20, 16)
        packets = [with_checksum(raw[VNET_HDR.size :])]
    else:
        packets = []
        while raw:
            size = int.from_bytes(raw[2:4], "big")
            packets.append(raw[:size])
            raw = raw[size:]
        assert [len(p) for p in packets] == [1500] * 10 + [20 + 32 + 125]
    segments = [parse_tcp_packet(p)[1] for p in packets]
    assert b"".join(s.payload for s in segments) == big.payload
    if not offloads:
        assert segments == split_segment(big, 1448)
