"""TS.Recent and PAWS in the synchronized states as Linux 6.x keeps them (RFC 7323 4.3 and 5):
tcp_replace_ts_recent takes TS.Recent only from a segment that covers the last ACK sent
(not after rcv_wup), tcp_validate_incoming drops a segment whose TSval is older than TS.Recent
(tcp_paws_discard, with tcp_disordered_ack_check's exceptions), both in the fast path and in
the slow path."""

from __future__ import annotations

import select

import pytest
from engine_support import (
    CLIENT,
    ISN,
    PEER_ISN,
    SERVER,
    A,
    P,
    R,
    S,
    connecting,
    host,
    one,
    out,
    seg,
)

from fastopen.engine import EngineSocket, Host
from fastopen.engine.tcb import PAWS_24DAYS, Connection
from fastopen.wire import Flags, Mss, Nop, SackPermitted, TcpSegment, Timestamps

#: The peer's TSval in its SYN-ACK: TS.Recent once connected.
PEER_TS = 50_000
BASE = PEER_ISN + 1


@pytest.fixture(params=["fast", "slow"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the receive fast path and without it (the slow path alone)."""
    if request.param == "slow":
        monkeypatch.setattr(Connection, "_rcv_established", lambda conn, seg, now: False)
    return str(request.param)


def connected() -> tuple[Host, EngineSocket, int]:
    """A client with timestamps, ESTABLISHED; returns the host, the socket and the TSval the
    peer echoes (the SYN's)."""
    h = host(CLIENT, timestamps=True)
    sock, syn = connecting(h)
    assert syn.timestamps is not None
    echo = syn.timestamps.tsval
    opts = (Mss(1000), SackPermitted(), Timestamps(PEER_TS, echo))
    h.receive_segment(SERVER, CLIENT, seg(S | A, PEER_ISN, ISN + 1, options=opts), 0.1)
    assert echoed(one(h)) == PEER_TS
    return h, sock, echo


def ts_seg(
    flags: Flags, seq: int, tsval: int, echo: int, payload: bytes = b"", ack: int = ISN + 1
) -> TcpSegment:
    return seg(flags, seq, ack, payload, (Nop(), Nop(), Timestamps(tsval, echo)))


def echoed(ack: TcpSegment) -> int:
    assert ack.timestamps is not None
    return ack.timestamps.tsecr


def test_a_delayed_ack_echoes_the_first_segment_it_acknowledges(path: str) -> None:
    """RFC 7323 4.3: two segments under one delayed ACK, the ACK echoes the first's TSval
    (Linux: the second starts after rcv_wup, TS.Recent stays)."""
    h, sock, echo = connected()
    for i in range(16):  # the quick ACKs of a new connection
        h.receive_segment(SERVER, CLIENT, ts_seg(A | P, BASE + i, PEER_TS + i, echo, b"q"), 0.2)
        assert echoed(one(h)) == PEER_TS + i
    h.receive_segment(SERVER, CLIENT, ts_seg(A | P, BASE + 16, PEER_TS + 20, echo, b"e"), 0.3)
    assert out(h) == []  # delayed
    h.receive_segment(SERVER, CLIENT, ts_seg(A | P, BASE + 17, PEER_TS + 30, echo, b"f"), 0.3)
    ack = one(h)
    assert ack.ack == BASE + 18 and echoed(ack) == PEER_TS + 20
    assert sock.recv(100, 0.4) == b"q" * 16 + b"ef"


def test_an_older_tsval_within_the_paws_window_is_taken_but_not_echoed(path: str) -> None:
    """A TSval one tick older than TS.Recent passes PAWS (TCP_PAWS_WINDOW) but does not
    replace TS.Recent (tcp_replace_ts_recent checks with no window)."""
    h, sock, echo = connected()
    h.receive_segment(SERVER, CLIENT, ts_seg(A | P, BASE, PEER_TS - 1, echo, b"abc"), 0.2)
    ack = one(h)
    assert ack.ack == BASE + 3 and echoed(ack) == PEER_TS
    assert sock.recv(10, 0.3) == b"abc" and h.counters["PAWSEstab"] == 0


def test_paws_drops_an_old_segment_with_a_duplicate_ack(path: str) -> None:
    """Linux tcp_validate_incoming: data with a TSval older than TS.Recent is dropped and
    answered with a duplicate ACK (PAWSEstab); data is never rate limited, a pure ACK is
    (TCPACKSkippedPAWS)."""
    h, sock, echo = connected()
    old = PEER_TS - 1000
    for now in (0.2, 0.3):
        h.receive_segment(SERVER, CLIENT, ts_seg(A | P, BASE, old, echo, b"old"), now)
        ack = one(h)
        assert ack.flags == A and ack.ack == BASE and echoed(ack) == PEER_TS
    assert h.counters["PAWSEstab"] == 2 and sock.poll() & select.POLLIN == 0
    sock.send(b"x" * 10, 0.4)
    assert one(h).payload == b"x" * 10
    acking = ts_seg(A, BASE, old, echo, ack=ISN + 11)  # a pure ACK acknowledging new data
    h.receive_segment(SERVER, CLIENT, acking, 0.5)
    assert one(h).ack == BASE
    h.receive_segment(SERVER, CLIENT, acking, 0.6)  # within 500 ms: no second ACK
    assert out(h) == [] and h.counters["TCPACKSkippedPAWS"] == 1
    assert h.counters["PAWSEstab"] == 4
    assert sock.tcp_info(0.6).tcpi_unacked == 1  # the ACK was not taken


def test_paws_lets_a_reordered_duplicate_ack_through_and_counts_an_old_one(path: str) -> None:
    """tcp_disordered_ack_check: a duplicate ACK at RCV.NXT not updating the window, within
    an RTO worth of 1200 Hz ticks of TS.Recent, passes; a pure ACK before RCV.NXT is only
    counted (PAWSOldAck, no duplicate ACK); one beyond the replay window is PAWSEstab."""
    h, _sock, echo = connected()
    h.receive_segment(SERVER, CLIENT, ts_seg(A | P, BASE, PEER_TS + 10, echo, b"abc"), 0.2)
    assert echoed(one(h)) == PEER_TS + 10
    h.receive_segment(SERVER, CLIENT, ts_seg(A, BASE + 3, PEER_TS + 10, echo), 0.25)
    assert out(h) == []  # the window's last segment (SND.WL1) is now at RCV.NXT
    reordered = ts_seg(A, BASE + 3, PEER_TS + 5, echo)
    h.receive_segment(SERVER, CLIENT, reordered, 0.3)
    assert out(h) == [] and h.counters["PAWSEstab"] == 0
    h.receive_segment(SERVER, CLIENT, ts_seg(A, BASE, PEER_TS + 5, echo), 0.3)
    assert out(h) == [] and h.counters["PAWSOldAck"] == 1 and h.counters["PAWSEstab"] == 0
    replay = 1200  # the initial RTO, one second, in 1200 Hz ticks
    h.receive_segment(SERVER, CLIENT, ts_seg(A, BASE + 3, PEER_TS + 10 - replay - 1, echo), 0.4)
    assert one(h).ack == BASE + 3 and h.counters["PAWSEstab"] == 1


def test_a_reset_passes_paws(path: str) -> None:
    """Linux: "Reset is accepted even if it did not pass PAWS"."""
    h, sock, echo = connected()
    h.receive_segment(SERVER, CLIENT, ts_seg(R | A, BASE, PEER_TS - 1000, echo), 0.2)
    assert h.connections == {} and h.counters["PAWSEstab"] == 0
    sock.close(0.3)


def test_a_ts_recent_24_days_old_is_not_checked(path: str) -> None:
    """TCP_PAWS_24DAYS: the same old segment PAWS drops is taken once TS.Recent is 24 days
    old, and gives TS.Recent its TSval."""
    h, sock, echo = connected()
    old = PEER_TS - 1000
    h.receive_segment(SERVER, CLIENT, ts_seg(A | P, BASE, old, echo, b"old"), 1.0)
    assert one(h).ack == BASE and h.counters["PAWSEstab"] == 1
    later = 0.1 + PAWS_24DAYS
    h.receive_segment(SERVER, CLIENT, ts_seg(A | P, BASE, old, echo, b"old"), later)
    ack = one(h)
    assert ack.ack == BASE + 3 and echoed(ack) == old
    assert sock.recv(10, later) == b"old" and h.counters["PAWSEstab"] == 1
