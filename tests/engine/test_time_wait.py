"""TIME-WAIT as Linux 6.x keeps it (tcp_timewait_state_process, tcp_v4_rcv's do_time_wait),
on a server that closed first and holds it: which SYN reopens the 4-tuple and with what ISN,
the 2MSL timer an in-window ACK restarts, PAWS, and the ACK a SYN gets with no listener.
(tests/packetdrill/server-time-wait.pkt runs the rest on the engine and on Linux.)"""

from __future__ import annotations

import pytest
from engine_support import CLIENT, PEER_ISN, SERVER, A, F, R, S, host, one, out, seg

from fastopen.engine import EngineSocket, Host
from fastopen.wire import Flags, Mss, Nop, SackPermitted, TcpSegment, Timestamps

PORT = 40000
#: The client's TSval in its SYN; each later segment's is higher.
TS0 = 10_000


def ts_seg(flags: Flags, seq: int, tsval: int, ack: int = 0) -> TcpSegment:
    opts = (Nop(), Nop(), Timestamps(tsval, 0))
    return seg(flags, seq, ack, options=opts, sport=PORT, dport=80)


def syn(seq: int, tsval: int) -> TcpSegment:
    opts = (Mss(1460), SackPermitted(), Timestamps(tsval, 0))
    return seg(S, seq, options=opts, sport=PORT, dport=80)


def time_wait(listening: bool = True) -> tuple[Host, EngineSocket, int]:
    """A server with timestamps whose child closed first and reached TIME-WAIT at 0.3 s;
    returns the host, the child and the child's snd_nxt (after its FIN)."""
    h = host(SERVER, timestamps=True)
    listener = h.socket()
    listener.bind(("198.18.0.2", 80))
    listener.listen(8)
    h.receive_segment(CLIENT, SERVER, syn(PEER_ISN, TS0), 0.0)
    synack = one(h)
    h.receive_segment(CLIENT, SERVER, ts_seg(A, PEER_ISN + 1, TS0 + 1, synack.seq + 1), 0.1)
    child, _ = listener.accept(0.1)
    if not listening:
        listener.close(0.1)
    child.close(0.2)
    fin = one(h)
    h.receive_segment(CLIENT, SERVER, ts_seg(F | A, PEER_ISN + 1, TS0 + 2, fin.seq + 1), 0.3)
    assert one(h).ack == PEER_ISN + 2
    assert child.state.name == "TIME_WAIT"
    return h, child, fin.seq + 1


def test_a_newer_syn_reopens_with_an_isn_above_the_old_connection() -> None:
    """TCP_TW_SYN: the new connection's ISN is the old snd_nxt + 65537 (tcp_tw_isn)."""
    h, child, snd_nxt = time_wait()
    h.receive_segment(CLIENT, SERVER, syn(PEER_ISN + 100_000, TS0 + 3), 1.0)
    again = one(h)
    assert again.flags == S | A and again.ack == PEER_ISN + 100_001
    assert again.seq == snd_nxt + 65537
    assert child.state.name == "CLOSED"


def test_a_syn_with_an_older_sequence_but_a_newer_tsval_reopens() -> None:
    h, child, snd_nxt = time_wait()
    h.receive_segment(CLIENT, SERVER, syn(PEER_ISN - 4_000, TS0 + 3), 1.0)
    again = one(h)
    assert again.flags == S | A and again.seq == snd_nxt + 65537
    assert child.state.name == "CLOSED"


@pytest.mark.parametrize(("offset", "tsval"), [(-4_000, TS0 + 2), (100_000, TS0)])
def test_an_old_syn_is_acked_and_time_wait_stays(offset: int, tsval: int) -> None:
    """Neither newer in sequence nor in TSval, or newer in sequence but failing PAWS (TSval
    older than TS.Recent): an out-of-window segment, answered with an ACK of the old
    connection (TcpExtPAWSTimewait for the second)."""
    h, child, snd_nxt = time_wait()
    h.receive_segment(CLIENT, SERVER, syn(PEER_ISN + offset, tsval), 1.0)
    ack = one(h)
    assert ack.flags == A and ack.seq == snd_nxt and ack.ack == PEER_ISN + 2
    assert child.state.name == "TIME_WAIT"
    assert h.counters["PAWSTimewait"] == (tsval < TS0 + 2)


def test_a_newer_syn_with_no_listener_gets_an_ack() -> None:
    """TCP_TW_SYN with no listener falls through to TCP_TW_ACK (not a RST)."""
    h, child, snd_nxt = time_wait(listening=False)
    h.receive_segment(CLIENT, SERVER, syn(PEER_ISN + 100_000, TS0 + 3), 1.0)
    ack = one(h)
    assert ack.flags == A and ack.seq == snd_nxt and ack.ack == PEER_ISN + 2
    assert child.state.name == "TIME_WAIT"


def test_an_in_window_bare_ack_restarts_2msl_quietly() -> None:
    """The one segment TIME-WAIT takes without an answer: at RCV.NXT, no data; the timer
    starts again (inet_twsk_reschedule) and TS.Recent is its TSval."""
    h, child, _ = time_wait()
    assert h.get_timer() == pytest.approx(60.3)
    h.receive_segment(CLIENT, SERVER, ts_seg(A, PEER_ISN + 2, TS0 + 5, 0), 10.0)
    assert out(h) == [] and h.get_timer() == pytest.approx(70.0)
    h.receive_segment(CLIENT, SERVER, syn(PEER_ISN - 4_000, TS0 + 5), 11.0)
    assert one(h).flags == A  # TSval TS0 + 5 is not newer than TS.Recent: no reopening
    h.handle_timer(70.0)
    assert child.state.name == "CLOSED" and h.connections == {}


def test_a_rst_ends_time_wait_only_at_rcv_nxt() -> None:
    h, child, snd_nxt = time_wait()
    h.receive_segment(CLIENT, SERVER, ts_seg(R | A, PEER_ISN + 7, TS0 + 3, snd_nxt), 1.0)
    assert out(h) == [] and child.state.name == "TIME_WAIT"
    h.receive_segment(CLIENT, SERVER, ts_seg(R | A, PEER_ISN + 2, TS0 + 4, snd_nxt), 1.1)
    assert child.state.name == "CLOSED" and h.connections == {}
