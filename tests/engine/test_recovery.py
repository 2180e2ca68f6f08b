"""Loss recovery as Linux 6.x does it, segment by segment: the SACK scoreboard, RACK-TLP
(tcp_recovery=1), PRR fast recovery, NewReno partial ACKs without SACK, duplicate ACKs as tcp_ack
judges them, tcp_enter_loss on a timeout, and the TcpExt counters; then whole transfers over a
lossy in-memory link."""

from __future__ import annotations

import errno
from collections import Counter
from typing import Any

import pytest
from engine_support import (
    CLIENT,
    ISN,
    PEER_ISN,
    SERVER,
    SOL_TCP,
    A,
    S,
    connecting,
    host,
    one,
    out,
    seg,
)

from fastopen.engine import EngineError, EngineSocket, Host
from fastopen.engine.cc import Reno, Window
from fastopen.engine.link import Link
from fastopen.engine.recovery import INFINITE_SSTHRESH
from fastopen.engine.segmentation import SentPieces
from fastopen.runtime.gro import Gro
from fastopen.wire import Mss, Sack, SackPermitted, TcpSegment

MSS = 1000
DATA = ISN + 1  # the first data byte


def established(sack: bool = True, **kw: object) -> tuple[Host, EngineSocket]:
    """A client connection (RTT 100 ms, peer MSS 1000, window 65535, SACK unless told), with
    TCP_NODELAY, running Reno unless told (the windows below are Reno's: half at a loss)."""
    kw.setdefault("congestion_control", "reno")
    h = host(CLIENT, **kw)
    sock, _ = connecting(h)
    opts = (Mss(MSS), SackPermitted()) if sack else (Mss(MSS),)
    h.receive_segment(SERVER, CLIENT, seg(S | A, PEER_ISN, ISN + 1, options=opts), 0.1)
    one(h)
    sock.setsockopt(SOL_TCP, 1, 1)
    return h, sock


def sent(h: Host, sock: EngineSocket, segments: int, now: float) -> list[TcpSegment]:
    """``segments`` MSS written at ``now``; what left."""
    sock.send(b"d" * (segments * MSS), now)
    return out(h)


def at(n: int) -> int:
    """Where the ``n``-th data segment (from 0) starts."""
    return DATA + n * MSS


def ack(h: Host, upto: int, now: float, *sacked: tuple[int, int], window: int = 65535) -> None:
    """The peer's ACK of ``upto`` with SACK blocks of segments ``[first, last)``."""
    opts = (Sack(tuple((at(a), at(b)) for a, b in sacked)),) if sacked else ()
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, upto, options=opts, window=window), now)


def seqs(segs: list[TcpSegment]) -> list[int]:
    """Which data segments these are (by number)."""
    return [(s.seq - DATA) // MSS for s in segs if s.payload]


# -- SACK recovery ---------------------------------------------------------------------------------


def test_an_ack_below_snd_una_still_tags_its_sack_blocks() -> None:
    """Linux tcp_ack's old_ack: a reordered ACK below SND.UNA goes on the scoreboard with what it
    SACKs (tcp_sacktag_write_queue), for loss recovery (fast_recovery/
    prr-ss-ack-below-snd_una-cubic.pkt: it lets PRR send 2 more MSS)."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, at(4), 0.3)
    assert sock.tcp_info(0.3).tcpi_sacked == 0
    ack(h, at(2), 0.31, (5, 9))  # late: acknowledges less than the ACK before it
    info = sock.tcp_info(0.31)
    assert (info.tcpi_sacked, info.tcpi_unacked) == (4, 6)


def test_sack_recovery_retransmits_every_hole_at_once() -> None:
    """Three holes SACKed around: RACK marks them all lost (sent before what was delivered,
    past the RTT) and recovery sends all three on that ACK, not one per round trip."""
    h, sock = established()
    assert seqs(sent(h, sock, 10, 0.2)) == list(range(10))
    ack(h, DATA, 0.3, (1, 3), (4, 6), (7, 10))
    assert seqs(out(h)) == [0, 3, 6]
    info = sock.tcp_info(0.3)
    assert (info.tcpi_ca_state, info.tcpi_sacked, info.tcpi_lost, info.tcpi_retrans) == (3, 7, 3, 3)
    assert h.counters["TCPSackRecovery"] == 1 and h.counters["TCPFastRetrans"] == 3
    ack(h, at(10), 0.4)
    info = sock.tcp_info(0.4)
    assert (info.tcpi_ca_state, info.tcpi_unacked, info.tcpi_lost, info.tcpi_retrans) == (0,) * 4
    assert info.tcpi_snd_ssthresh == 5 and info.tcpi_snd_cwnd < 10  # Reno: half of 10


def test_the_counters_of_sending_and_delivering() -> None:
    """Linux's TcpExt counters of one recovery: TCPOrigDataSent counts new segments only
    (tcp_event_new_data_sent), TCPDelivered what each ACK newly delivers, SACKed or acked, the
    SYN-ACK's SYN included (tcp_newly_delivered: tp->delivered's rise in tcp_ack), TCPPureAcks
    an ACK without data that tcp_ack's slow path takes (this one has SACK blocks), TCPHPAcks one
    that header prediction takes."""
    h, sock = established()
    assert h.counters["TCPDelivered"] == 1  # the SYN
    sent(h, sock, 10, 0.2)
    ack(h, DATA, 0.3, (1, 3), (4, 6), (7, 10))
    assert seqs(out(h)) == [0, 3, 6]
    ack(h, at(10), 0.4)
    counters = {k: h.counters[k] for k in ("TCPOrigDataSent", "TCPDelivered", "TCPPureAcks")}
    assert counters == {"TCPOrigDataSent": 10, "TCPDelivered": 11, "TCPPureAcks": 1}
    assert h.counters["TCPHPAcks"] == 1 and h.counters["TcpRetransSegs"] == 3
    assert sock.tcp_info(0.4).tcpi_delivered == 11


def test_prr_sends_in_proportion_to_what_is_delivered() -> None:
    """RFC 6937 (Linux tcp_cwnd_reduction): with the flight above ssthresh (5), the window
    lets out ceil(ssthresh * delivered / prior_cwnd) less what recovery sent."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, DATA, 0.3, (1, 4))  # three SACKed: segment 0 lost, its retransmission at once
    assert seqs(out(h)) == [0]
    assert sock.tcp_info(0.3).tcpi_snd_cwnd == 8  # in flight 6 + ceil(5 * 3 / 10) = 2
    sock.send(b"n" * (10 * MSS), 0.3)
    assert seqs(out(h)) == [10]
    ack(h, DATA, 0.31, (1, 5))  # ceil(5 * 4 / 10) - 2 sent: none
    assert out(h) == []
    ack(h, DATA, 0.32, (1, 6))  # ceil(5 * 5 / 10) - 2: one
    assert seqs(out(h)) == [11]


# -- RACK ------------------------------------------------------------------------------------------


def test_rack_waits_a_reordering_window_before_marking_a_segment_lost() -> None:
    """One segment SACKed past a hole: not lost before min_rtt / 4 (Linux tcp_rack_reo_wnd);
    the hole arriving meanwhile was reordering, not loss (TCPSACKReorder, tcpi_reordering)."""
    h, sock = established()
    sent(h, sock, 4, 0.2)
    ack(h, DATA, 0.3, (1, 2))
    assert out(h) == []
    timer = h.get_timer()
    assert timer is not None and 0.3 < timer < 0.35  # the reordering timer (25 ms + 2 ms)
    ack(h, at(2), 0.31)  # the late segment 0 came: acknowledged with 1
    h.handle_timer(timer)
    assert out(h) == []  # nothing was lost
    assert h.counters["TCPSACKReorder"] == 1 and h.counters["TcpRetransSegs"] == 0
    assert sock.tcp_info(timer).tcpi_ca_state == 0


def test_reordering_is_one_event_per_ack_however_many_pieces_came_late() -> None:
    """Linux tcp_check_sack_reordering, once per tcp_sacktag_write_queue and once per
    tcp_clean_rtx_queue: a SACK of a hole below the highest SACK is one event (degree 7);
    the ACK that then delivers both holes left (0-2 and 4-8) is one more (degree 10), not one a
    piece (tcpi_reord_seen, cubic-rack-reo-timeout-retrans-failed-incoming-data.pkt)."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, DATA, 0.21, (9, 10))
    ack(h, DATA, 0.21, (3, 4), (9, 10))
    info = sock.tcp_info(0.21)
    assert (info.tcpi_reord_seen, info.tcpi_reordering) == (1, 7)
    ack(h, at(10), 0.21)
    info = sock.tcp_info(0.21)
    assert (info.tcpi_reord_seen, info.tcpi_reordering) == (2, 10)
    assert h.counters["TCPSACKReorder"] == 2


def test_a_segment_acknowledged_in_two_parts_is_reordering_and_keeps_racks_window() -> None:
    """Linux tcp_clean_rtx_queue leaves a one-segment skb whole on a partial ACK (only a TSO
    skb is trimmed, tcp_tso_acked): the ACK of its rest delivers data from below the SND.UNA
    before it (prior_fack, tcp_highest_sack_seq), reordering (tcpi_reord_seen, TCPSACKReorder).
    Then three segments SACKed past a hole do not make it lost at once: RACK keeps min_rtt / 4
    of reordering window (tcp_rack_reo_wnd) and the reordering timer sends it
    (eor/no-coalesce-retrans.pkt: "timeout based retransmit")."""
    h, sock = established()
    sock.send(b"d" * 600, 0.2)
    out(h)
    ack(h, DATA + 300, 0.3)
    assert sock.tcp_info(0.3).tcpi_reord_seen == 0
    ack(h, DATA + 600, 0.3)
    assert sock.tcp_info(0.3).tcpi_reord_seen == 1 and h.counters["TCPSACKReorder"] == 1
    sock.send(b"d" * (4 * MSS), 0.3)
    assert [s.seq for s in out(h) if s.payload] == [DATA + 600 + n * MSS for n in range(4)]
    first = DATA + 600
    opts = (Sack(((first + MSS, first + 4 * MSS),)),)
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, first, options=opts), 0.4)
    assert out(h) == []
    timer = h.get_timer()
    assert timer == pytest.approx(0.4 + 0.025 + 0.002)  # min_rtt 100 ms / 4, TCP_TIMEOUT_MIN_US
    h.handle_timer(timer)
    assert [s.seq for s in out(h)] == [first]
    assert sock.tcp_info(timer).tcpi_ca_state == 3 and h.counters["TCPTimeouts"] == 0


def test_a_tso_packet_acknowledged_in_two_parts_is_not_reordering() -> None:
    """Linux tcp_tso_acked trims a TSO skb to SND.UNA on a partial ACK: its rest starts at the
    SND.UNA before the next ACK, no reordering."""
    h, sock = established()
    sent(h, sock, 2, 0.2)
    ack(h, at(1), 0.3)
    ack(h, at(2), 0.3)
    assert sock.tcp_info(0.3).tcpi_reord_seen == 0 and h.counters["TCPSACKReorder"] == 0


def test_a_segment_partly_acknowledged_goes_again_from_snd_una() -> None:
    """Linux __tcp_retransmit_skb trims the head of a retransmission to SND.UNA
    (tcp_trim_head): what was acknowledged of a one-segment piece does not go again."""
    h, sock = established()
    sock.send(b"d" * 600, 0.2)
    out(h)
    ack(h, DATA + 200, 0.3)
    timer = h.get_timer() or 0.0
    h.handle_timer(timer)
    again = one(h)
    assert (again.seq, len(again.payload)) == (DATA + 200, 400)


def test_with_reordering_above_tcp_reordering_a_sack_alone_grows_the_window() -> None:
    """Linux tcp_may_raise_cwnd: the window grows on ACKs of new data, and once the reordering
    degree is above tcp_reordering (3) on any forward progress, a SACK too: 10, the first SACK
    (degree 3) leaves it, the second (degree 7) adds its segment, the ACK of the 8 left
    makes 19."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, DATA, 0.21, (9, 10))
    assert sock.tcp_info(0.21).tcpi_snd_cwnd == 10
    ack(h, DATA, 0.21, (3, 4), (9, 10))
    assert sock.tcp_info(0.21).tcpi_snd_cwnd == 11
    ack(h, at(10), 0.21)
    assert sock.tcp_info(0.21).tcpi_snd_cwnd == 19


def test_a_retransmission_the_device_refuses_is_counted_but_not_in_flight() -> None:
    """Linux __tcp_retransmit_skb when tcp_transmit_skb fails (NET_XMIT_DROP,
    Settings.qdisc_drops): tcpi_total_retrans, TcpRetransSegs and TCPRetransFail count it,
    retrans_out (tcpi_retrans) does not, and recovery sent nothing (prr_out)."""
    h, sock = established()
    sent(h, sock, 4, 0.2)
    ack(h, DATA, 0.3, (3, 4))
    h.settings.qdisc_drops = True
    timer = h.get_timer() or 0.0
    h.handle_timer(timer)  # RACK's reordering timer: 0 to 2 lost, their retransmission refused
    assert out(h) == []
    info = sock.tcp_info(timer)
    assert (info.tcpi_ca_state, info.tcpi_lost, info.tcpi_retrans) == (3, 3, 0)
    refused = h.counters["TCPRetransFail"]
    assert refused >= 1 and info.tcpi_total_retrans == refused == h.counters["TcpRetransSegs"]
    assert h.counters["TCPFastRetrans"] == 0


def test_a_timeout_whose_retransmission_is_refused_tries_again_in_500_ms_unbacked_off() -> None:
    """Linux tcp_retransmit_timer: the head's retransmission refused locally, the timer is
    TCP_RESOURCE_PROBE_INTERVAL and the RTO does not back off; once the device takes it, the
    head goes and the RTO doubles."""
    h, sock = established(early_retrans=0)
    sent(h, sock, 2, 0.2)
    h.settings.qdisc_drops = True
    rto = h.get_timer() or 0.0
    h.handle_timer(rto)
    assert out(h) == [] and h.get_timer() == pytest.approx(rto + 0.5)
    info = sock.tcp_info(rto)
    assert (info.tcpi_backoff, info.tcpi_retransmits, info.tcpi_retrans) == (0, 1, 0)
    h.settings.qdisc_drops = False
    h.handle_timer(rto + 0.5)
    assert seqs(out(h)) == [0]
    info = sock.tcp_info(rto + 0.5)
    assert (info.tcpi_backoff, info.tcpi_retrans) == (1, 1)


def test_rack_reordering_timer_marks_the_hole_lost_when_it_ends() -> None:
    """Linux tcp_rack_reo_timeout: the window passes and the hole is still there: lost,
    recovery starts and the hole goes again."""
    h, sock = established()
    sent(h, sock, 4, 0.2)
    ack(h, DATA, 0.3, (3, 4))
    assert out(h) == []
    timer = h.get_timer() or 0.0
    h.handle_timer(timer)
    assert seqs(out(h)) == [0]
    assert sock.tcp_info(timer).tcpi_ca_state == 3 and sock.tcp_info(timer).tcpi_lost == 3
    assert h.counters["TCPSackRecovery"] == 1 and h.counters["TCPTimeouts"] == 0


def test_a_lost_retransmission_is_found_by_time_and_sent_again() -> None:
    """RACK: a retransmission older than a delivered later transmission by the RTT is lost too
    (TCPLostRetransmit), without waiting for the timeout."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, DATA, 0.3, (1, 4))
    assert seqs(out(h)) == [0]  # the retransmission (lost again, say)
    sock.send(b"n" * MSS, 0.3)
    ack(h, DATA, 0.31, (1, 5))  # PRR lets the new segment go
    assert seqs(out(h)) == [10]
    ack(h, DATA, 0.45, (1, 11))  # segment 10, sent after the retransmission, came
    assert 0 in seqs(out(h))
    assert h.counters["TCPLostRetransmit"] == 1


def test_rack_orders_the_transmissions_of_one_instant_as_they_left() -> None:
    """New data then a retransmission in the same instant: the new data SACKed does not make
    the retransmission lost (it left after; Linux's end-sequence estimate would say before)."""
    board, counters = SentPieces(), Counter[str]()
    board.sent(0, 1000, False, MSS, 0.0)
    board.sent(1000, 2000, False, MSS, 0.0)
    board.mark_all_lost(counters)
    board.sent(2000, 3000, False, MSS, 1.0)
    board.retransmitted(0, 1000, MSS, 1.0)
    assert board.sack([(2000, 3000)], MSS, 1.1, 0.1) == 1
    board.rack_mark_lost(1.1, 0.0, counters)
    assert (board.retrans_out, board.lost_out, counters["TCPLostRetransmit"]) == (1, 2, 0)


def test_the_receiver_reports_the_newest_block_first() -> None:
    """RFC 2018 (Linux tcp_sack_new_ofo_skb): the first SACK block holds the segment that
    arrived last, so a sender learns of it even when more blocks exist than fit."""
    h, _ = established()
    base = PEER_ISN + 1
    for start in (1000, 3000, 5000, 7000, 2000):
        h.receive_segment(SERVER, CLIENT, seg(A, base + start, DATA, b"x" * 500), 0.3)
    blocks = next(o for o in out(h)[-1].options if isinstance(o, Sack)).blocks
    assert blocks[0] == (base + 2000, base + 2500)
    assert blocks[1:] == (
        (base + 1000, base + 1500),
        (base + 3000, base + 3500),
        (base + 5000, base + 5500),
    )


# -- the RTT the congestion control sees ----------------------------------------------------------


class RttSpy:
    """Reno, noting the RTT each pkts_acked gets (microseconds). It wraps Reno: a class of the
    compiled engine (mypyc) takes no subclass written in Python."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._reno = Reno()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reno, name)

    def pkts_acked(
        self, w: Window, rtt_us: int, una: int, snd_nxt: int, rate: float, now: float
    ) -> None:
        self.samples.append(rtt_us)


def rtt_spy(sock: EngineSocket) -> list[int]:
    """The RTT samples the connection's congestion control gets from now on."""
    assert sock.conn is not None
    spy = RttSpy()
    sock.conn.recovery.cc = spy
    return spy.samples


def test_every_ack_gives_the_congestion_control_the_rtt_of_what_it_delivered() -> None:
    """Linux tcp_clean_rtx_queue and tcp_ack_update_rtt (rs->rtt_us, pkts_acked's sample):
    without timestamps, every ACK of data never retransmitted gives the time since the last
    piece it acknowledged left, a SACK since the last piece it SACKed left (not one timed
    segment a round trip): HyStart counts its 8 samples a round by ACKs. The ACK of what was
    retransmitted gives none (Karn, FLAG_RETRANS_DATA_ACKED)."""
    h, sock = established()
    samples = rtt_spy(sock)
    sent(h, sock, 4, 0.2)
    ack(h, at(1), 0.3)
    ack(h, at(2), 0.31)
    sent(h, sock, 2, 0.31)
    ack(h, at(2), 0.35, (5, 6))
    assert samples == [100_000, 110_000, 40_000]
    assert seqs(out(h)) == [2]  # RACK: sent 110 ms before the SACKed one, lost
    ack(h, at(6), 0.37)  # with segment 2's retransmission
    assert samples == [100_000, 110_000, 40_000]


def test_an_ack_of_a_retransmission_gives_the_congestion_control_no_rtt() -> None:
    """Karn (Linux FLAG_RETRANS_DATA_ACKED): the ACK of a retransmitted segment, without
    timestamps, is no RTT sample for the congestion control."""
    h, sock = established(early_retrans=0)
    samples = rtt_spy(sock)
    sent(h, sock, 1, 0.2)
    rto = h.get_timer() or 0.0
    h.handle_timer(rto)
    assert seqs(out(h)) == [0]
    ack(h, at(1), rto + 0.1)
    assert samples == []


# -- tail loss probe -------------------------------------------------------------------------------


def test_tail_loss_probe_recovers_a_lost_tail_without_a_timeout() -> None:
    """The last two segments lost: 2 SRTT on, a probe sends the last again (TCPLossProbes);
    its SACK shows the other lost and fast recovery repairs it: no RTO."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, at(8), 0.3)
    probe_at = h.get_timer() or 0.0
    assert probe_at < 0.3 + sock.tcp_info(0.3).tcpi_rto / 1e6
    h.handle_timer(probe_at)
    assert seqs(out(h)) == [9]
    assert h.counters["TCPLossProbes"] == 1
    ack(h, at(8), probe_at + 0.1, (9, 10))
    assert seqs(out(h)) == [8]
    ack(h, at(10), probe_at + 0.2)
    assert h.counters["TCPTimeouts"] == 0 and sock.tcp_info(probe_at + 0.2).tcpi_unacked == 0


@pytest.mark.parametrize("early_retrans", [0, 1, 2, 3, 4])
def test_only_tcp_early_retrans_3_or_4_arms_a_loss_probe(early_retrans: int) -> None:
    """Linux tcp_schedule_loss_probe: net.ipv4.tcp_early_retrans 3 or 4 (3 the default) arm a
    probe at 2 SRTT; 0 to 2 none, the retransmission timer runs (cubic-bulk-166k.pkt turns
    TLP off so)."""
    h, sock = established(early_retrans=early_retrans)
    sent(h, sock, 10, 0.2)
    ack(h, at(8), 0.3)
    timer = h.get_timer() or 0.0
    rto = sock.tcp_info(0.3).tcpi_rto / 1e6
    h.handle_timer(timer)
    assert seqs(out(h)) == [9 if early_retrans >= 3 else 8]
    if early_retrans >= 3:
        assert timer < 0.3 + rto and h.counters["TCPLossProbes"] == 1
    else:
        assert timer == pytest.approx(0.3 + rto, abs=1e-6)
        assert h.counters["TCPLossProbes"] == 0 and h.counters["TCPTimeouts"] == 1


def test_a_probe_answered_above_it_was_a_repaired_loss() -> None:
    """Linux tcp_process_tlp_ack: the ACK covers the probe and more: the probe repaired a loss
    (TCPLossProbeRecovery), the window comes down once."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, at(9), 0.3)
    h.handle_timer(h.get_timer() or 0.0)
    assert seqs(out(h)) == [9]
    cwnd = sock.tcp_info(0.3).tcpi_snd_cwnd
    sock.send(b"n" * MSS, 0.7)  # new data after the probe
    out(h)
    ack(h, at(11), 0.8)
    assert h.counters["TCPLossProbeRecovery"] == 1
    assert sock.tcp_info(0.8).tcpi_snd_cwnd < cwnd


# -- without SACK ----------------------------------------------------------------------------------


def test_newreno_partial_ack_retransmits_the_next_hole_and_stays_in_recovery() -> None:
    """RFC 6582: three duplicate ACKs, the head again (TCPRenoRecovery); an ACK of part of the
    window retransmits the next hole at once; recovery ends at what was sent when it began."""
    h, sock = established(sack=False)
    sent(h, sock, 10, 0.2)
    ack(h, at(1), 0.3)
    for t in (0.30, 0.31, 0.32):
        ack(h, at(1), t)  # segments 2, 3, 4 arrived (1 and 5 lost)
    assert seqs(out(h)) == [1]
    assert h.counters["TCPRenoRecovery"] == 1 and sock.tcp_info(0.32).tcpi_ca_state == 3
    ack(h, at(5), 0.4)  # a partial ACK: up to the second hole
    assert seqs(out(h)) == [5]
    assert sock.tcp_info(0.4).tcpi_ca_state == 3
    ack(h, at(10), 0.5)
    # NewReno holds until above (tcp_try_undo_recovery)
    assert sock.tcp_info(0.5).tcpi_ca_state == 3
    assert seqs(sent(h, sock, 1, 0.5)) == [10]
    ack(h, at(11), 0.6)
    assert sock.tcp_info(0.6).tcpi_ca_state == 0


def test_duplicate_acks_count_whatever_their_window_unless_it_grows() -> None:
    """Linux tcp_ack (FLAG_NOT_DUP): an ACK that acknowledges nothing, carries no data and does
    not update the window is a duplicate, with a smaller window too; a larger window is a
    window update and no duplicate."""
    h, sock = established(sack=False)
    sent(h, sock, 10, 0.2)
    ack(h, at(1), 0.3, window=64000)
    out(h)
    ack(h, at(1), 0.30, window=63000)
    ack(h, at(1), 0.31, window=62000)
    assert out(h) == []
    ack(h, at(1), 0.32, window=64000)  # grows: a window update
    assert out(h) == []
    ack(h, at(1), 0.33, window=63000)
    assert seqs(out(h)) == [1]


# -- timeouts --------------------------------------------------------------------------------------


def test_timeout_marks_everything_lost_and_resends_by_slow_start_skipping_sacked() -> None:
    """Linux tcp_enter_loss: a timeout in recovery (TCPSackRecoveryFail) marks every segment
    not SACKed lost; they go again as the window opens from one (TCPSlowStartRetrans),
    SACKed ones never."""
    h, sock = established()
    sent(h, sock, 6, 0.2)
    ack(h, DATA, 0.3, (3, 4), (5, 6))
    h.handle_timer(h.get_timer() or 0.0)  # RACK's reordering timer: recovery
    assert sock.tcp_info(0.3).tcpi_ca_state == 3
    out(h)
    t = 0.0
    while not h.counters["TCPTimeouts"]:
        t = h.get_timer() or 0.0
        h.handle_timer(t)
    assert seqs(out(h)) == [0]
    info = sock.tcp_info(t)
    assert (info.tcpi_ca_state, info.tcpi_snd_cwnd, info.tcpi_lost) == (4, 1, 4)
    assert h.counters["TCPSackRecoveryFail"] == 1
    ack(h, at(1), 2.0, (3, 4), (5, 6))
    assert seqs(out(h)) == [1, 2]  # slow start: two; 3 and 5 are SACKed
    ack(h, at(3), 2.1, (3, 4), (5, 6))
    assert seqs(out(h)) == [4]
    assert h.counters["TCPSlowStartRetrans"] == 3


def test_frto_undoes_a_spurious_timeout() -> None:
    """F-RTO (RFC 5682, tcp_frto=2): after the timeout's retransmission is acknowledged, new
    data goes instead of more retransmissions; an ACK then for data never retransmitted shows
    the timeout was spurious: the window comes back (TCPSpuriousRTOs, TCPLossUndo)."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    assert seqs(sent(h, sock, 3, 0.2)) == []  # the congestion window is full
    while not h.counters["TCPTimeouts"]:  # the ACKs are only late: a probe, then the RTO
        h.handle_timer(h.get_timer() or 0.0)
    assert seqs(out(h)) == [10, 0]  # the probe is new data (the peer's window allows it)
    ack(h, at(1), 1.0)
    assert seqs(out(h)) == [11, 12]  # step 2b: new data, not segment 1 again
    ack(h, at(2), 1.01)
    info = sock.tcp_info(1.01)
    assert (info.tcpi_ca_state, info.tcpi_lost) == (0, 0) and info.tcpi_snd_cwnd >= 10
    assert h.counters["TCPSpuriousRTOs"] == 1 and h.counters["TCPLossUndo"] == 1
    ack(h, at(13), 1.02)
    assert h.counters["TcpRetransSegs"] == 1  # the timeout's, nothing more


def test_dsack_of_every_retransmission_undoes_recovery() -> None:
    """RFC 3708 (Linux tcp_try_undo_dsack): the one retransmission of a recovery D-SACKed,
    it was reordering: the window reduction is undone (TCPDSACKUndo)."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, DATA, 0.3, (1, 4))
    assert seqs(out(h)) == [0] and sock.tcp_info(0.3).tcpi_ca_state == 3
    ack(h, at(4), 0.31)  # segment 0 came (late, the original)
    ack(h, at(4), 0.4, (0, 1))  # and its retransmission: a D-SACK
    assert h.counters["TCPDSACKUndo"] == 1
    assert sock.tcp_info(0.4).tcpi_snd_cwnd >= 10


def test_a_dsack_of_data_never_sent_twice_is_dubious() -> None:
    """Linux tcp_check_dsack / tcp_dsack_seen: a first SACK block below the ACK is a D-SACK
    (TCPDSACKRecv), inside the second one too (TCPDSACKOfoRecv); with more duplicates than
    the sender retransmitted it is ignored (TCPDSACKIgnoredDubious): no TCPDSACKRecvSegs and
    RACK's reordering window stays one step of min_rtt / 4."""
    h, sock = established()
    sent(h, sock, 6, 0.2)
    ack(h, at(1), 0.3, (0, 1))  # segment 0 came twice, but it left once
    ack(h, at(1), 0.305, (3, 4), (3, 5))  # segment 3 too, inside the second block
    n = h.counters
    assert (n["TCPDSACKRecv"], n["TCPDSACKOfoRecv"], n["TCPDSACKIgnoredDubious"]) == (1, 1, 2)
    assert n["TCPDSACKRecvSegs"] == 0
    timer = h.get_timer() or 0.0
    assert timer == pytest.approx(0.305 + 0.025 + 0.002)  # hole 1: one step (min_rtt 100 ms)


def test_dsacks_after_reordering_widen_the_reordering_window_a_round_trip_later() -> None:
    """Linux tcp_rack_update_reo_wnd: reordering seen (a hole filled by its original), then a
    retransmission D-SACKed (TCPDSACKRecvSegs; its data already acknowledged, so every
    retransmission is accounted for: TCPDSACKUndo); the next ACK that delivers data widens
    RACK's reordering window to two steps of min_rtt / 4, the ACK carrying the D-SACK not."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, at(1), 0.3, (2, 3))
    ack(h, at(3), 0.305)  # segment 1 came late: reordering (TCPSACKReorder)
    ack(h, at(3), 0.31, (4, 7))  # a hole at 3: one step, 25 ms
    assert h.get_timer() == pytest.approx(0.31 + 0.025 + 0.002)
    h.handle_timer(h.get_timer() or 0.0)
    assert seqs(out(h)) == [3] and sock.tcp_info(0.34).tcpi_ca_state == 3
    ack(h, at(7), 0.34)  # the original of 3
    ack(h, at(7), 0.35, (3, 4))  # and its retransmission: a D-SACK
    n = h.counters
    assert (n["TCPDSACKRecv"], n["TCPDSACKRecvSegs"], n["TCPDSACKUndo"]) == (1, 1, 1)
    assert n["TCPDSACKIgnoredDubious"] == 0
    ack(h, at(8), 0.36)  # delivers segment 7: the window widens now
    ack(h, at(8), 0.37, (9, 10))  # a hole at 8
    assert h.get_timer() == pytest.approx(0.37 + 0.05 + 0.002)


def test_dsacks_in_the_window_and_below_it_both_count_for_the_undo() -> None:
    """Linux tcp_sacktag_one and tcp_check_dsack: two retransmissions in one recovery, the
    first D-SACKed while still in the window (inside the second block: TCPDSACKOfoRecv), the
    other once acknowledged (below the ACK: TCPDSACKRecv); with both accounted for, the
    reduction is undone (TCPDSACKUndo) and the window is back."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, at(0), 0.3, (1, 2), (3, 6))  # 0 and 2 lost
    assert seqs(out(h)) == [0]
    ack(h, at(0), 0.305, (1, 2), (3, 7))
    assert seqs(out(h)) == [2]
    ack(h, at(0), 0.31, (2, 3), (1, 7))  # the original of 2 came, then its retransmission
    assert h.counters["TCPDSACKOfoRecv"] == 1 and h.counters["TCPDSACKUndo"] == 0
    ack(h, at(7), 0.32)  # the original of 0
    ack(h, at(7), 0.33, (0, 1))  # and its retransmission
    n = h.counters
    assert (n["TCPDSACKRecv"], n["TCPDSACKRecvSegs"], n["TCPDSACKUndo"]) == (1, 2, 1)
    info = sock.tcp_info(0.33)
    assert info.tcpi_ca_state == 0 and info.tcpi_snd_cwnd >= 10


def test_a_dsack_of_the_loss_probe_shows_nothing_was_lost() -> None:
    """Linux tcp_process_tlp_ack (FLAG_DSACK_TLP): the probe's segment D-SACKed, so the
    original and the probe both came: no loss to repair, the window stays
    (TCPLossProbeRecovery not counted when later data is acknowledged, no slow start
    threshold set)."""
    h, sock = established()
    sent(h, sock, 10, 0.2)
    ack(h, at(9), 0.3)
    h.handle_timer(h.get_timer() or 0.0)
    assert seqs(out(h)) == [9] and h.counters["TCPLossProbes"] == 1
    ack(h, at(10), 0.75)  # the original of 9, late
    ack(h, at(10), 0.76, (9, 10))  # and the probe: its D-SACK
    assert h.counters["TCPDSACKRecvSegs"] == 1
    sock.send(b"n" * MSS, 0.77)
    out(h)
    ack(h, at(11), 0.8)
    assert h.counters["TCPLossProbeRecovery"] == 0
    assert sock.tcp_info(0.8).tcpi_snd_ssthresh == INFINITE_SSTHRESH


# -- whole transfers -------------------------------------------------------------------------------


def transfer(size: int, *, sack: bool, loss: float, seed: int) -> tuple[Host, float]:
    """``size`` bytes from a client to a server over a 20 ms RTT link with ``loss``; the client
    host and the virtual time the transfer took."""
    c = Host([str(CLIENT)], sack=sack)
    s = Host([str(SERVER)], sack=sack)
    listener = s.socket()
    listener.bind((str(SERVER), 80))
    listener.listen(1)
    link = Link(c, s, delay=0.01, loss=loss, seed=seed)
    sock = c.socket()
    try:
        sock.connect((str(SERVER), 80), link.now)
    except EngineError as exc:
        assert exc.errno == errno.EINPROGRESS
    link.advance(1.0)
    child, _ = listener.accept(link.now)
    start = link.now
    written = got = 0
    while got < size:
        while written < size:
            try:
                written += sock.send(b"z" * min(size - written, 65536), link.now)
            except EngineError:
                break
        assert link.step()
        try:
            while data := child.recv(1 << 20, link.now):
                got += len(data)
        except EngineError as exc:
            assert exc.errno == errno.EAGAIN
    return c, link.now - start


def test_a_lossy_transfer_recovers_by_sack_not_by_timeouts() -> None:
    """1% loss both ways: every loss is repaired by fast recovery or a probe; timeouts stay
    rare (Linux: at 1% loss and 20 ms, RTO waits were 90% of the time before RACK-TLP)."""
    c, _ = transfer(1 << 20, sack=True, loss=0.01, seed=3)
    n = c.counters
    assert n["TCPSackRecovery"] > 0 and n["TCPFastRetrans"] > 0
    assert n["TCPTimeouts"] <= 1


def test_a_lossy_transfer_without_sack_recovers_by_newreno() -> None:
    c, _ = transfer(1 << 19, sack=False, loss=0.01, seed=5)
    assert c.counters["TCPRenoRecovery"] > 0 and c.counters["TCPSackRecovery"] == 0


# -- TSO deferral and the window's growth ----------------------------------------------------------


def test_a_tso_sender_that_defers_for_the_window_still_grows_it() -> None:
    """Linux tcp_tso_should_defer marks a deferral for the congestion window as cwnd-limited:
    in congestion avoidance at cwnd 5 with 2-segment TSO packets, an ACK of 2 lets 2 go and the
    last free segment waits for the next ACK (in flight 4 of 5 from then on). The window still
    grows, by one segment a window (Reno); left unmarked, it stayed at 5 (seen at 1% loss)."""
    h, sock = established(tso=True)
    conn = sock.conn
    assert conn is not None
    rec = conn.recovery
    rec.cwnd, rec.ssthresh = 5, 4
    now = 0.2
    assert sum(len(s.payload) for s in sent(h, sock, 400, now)) == 5 * MSS
    acked = 3  # an ACK of 3: 2 go at once, the third waits
    now += 0.1
    ack(h, at(acked), now)
    assert sum(len(s.payload) for s in out(h)) == 2 * MSS
    for _ in range(30):
        now += 0.1
        acked += 2
        ack(h, at(acked), now)
        out(h)
    assert rec.cwnd >= 11, rec.cwnd  # 5 + one per window over 60 segments (7 unmarked)


@pytest.mark.parametrize("pacing", [False, True])
def test_with_pacing_a_window_leaves_at_the_pacing_rate(pacing: bool) -> None:
    """Linux tcp_update_skb_after_send and tcp_pacing_check (an egress that paces, as fq): past
    the first 10 segments, each TSO packet (2 segments here) may leave only its length after
    the one before at the pacing rate, 200% of cwnd * mss / srtt in slow start: 2 * 20 * 1000
    bytes / 100 ms, 5 ms per packet; the pacing timer sends the next. Without pacing (pfifo,
    packetdrill's) the 20 segments the ACK allows leave at once."""
    h, sock = established(pacing=pacing)
    assert len(sent(h, sock, 100, 0.2)) == 10  # the first 10: never paced
    ack(h, at(10), 0.3)  # cwnd 20
    left = {0.3: sum(1 for s in out(h) if s.payload)}
    while (when := h.get_timer()) is not None and when < 0.39:
        h.handle_timer(when)
        if got := sum(1 for s in out(h) if s.payload):
            left[round(when, 6)] = got
    if not pacing:
        assert left == {0.3: 20}
    else:
        assert left == {round(0.3 + 0.005 * i, 6): 2 for i in range(10)}


@pytest.mark.parametrize("cc", ["cubic", "bbr"])
def test_a_pacing_burst_leaves_at_once_then_the_rate_takes_over(cc: str) -> None:
    """Settings.pacing_burst (the userspace stack's stand-in for Linux's TCP small queues, on a
    device that shows it no queue): up to that many bytes leave ahead of the pacing rate, the
    rest at the rate. As above, the 20 segments an ACK allows at 5 ms per TSO packet of 2: a
    burst of 6,000 bytes lets 4 packets go at once (the 4th due 15 ms ahead: 6,000 bytes at
    the rate), then one each 5 ms, as the rate refills it. BBR paces itself: no burst."""
    h, sock = established(pacing=True, pacing_burst=6000, congestion_control=cc)
    assert len(sent(h, sock, 100, 0.2)) == 10
    ack(h, at(10), 0.3)
    left = {0.3: sum(1 for s in out(h) if s.payload)}
    while (when := h.get_timer()) is not None and when < 0.39:
        h.handle_timer(when)
        if got := sum(1 for s in out(h) if s.payload):
            left[round(when, 6)] = left.get(round(when, 6), 0) + got
    if cc == "bbr":
        assert left[0.3] <= 2
    else:
        assert left == {0.3: 8} | {round(0.305 + 0.005 * i, 6): 2 for i in range(6)}


@pytest.mark.parametrize(("ss_ratio", "gap"), [(100, 0.01), (400, 0.0025)])
def test_tcp_pacing_ss_ratio_sets_the_slow_start_rate(ss_ratio: int, gap: float) -> None:
    """tcp_pacing_ss_ratio (Linux tcp_update_pacing_rate): in slow start the pacing rate is
    that percentage of cwnd * mss / srtt: 100% of 20 * 1000 bytes / 100 ms, 10 ms per TSO
    packet of 2 segments; 400%, 2.5 ms (200%, the default, 5 ms as above)."""
    h, sock = established(pacing=True, pacing_ss_ratio=ss_ratio)
    sent(h, sock, 100, 0.2)
    ack(h, at(10), 0.3)
    left = [0.3] if sum(1 for s in out(h) if s.payload) == 2 else []
    while (when := h.get_timer()) is not None and len(left) < 5:
        h.handle_timer(when)
        if sum(1 for s in out(h) if s.payload) == 2:
            left.append(when)
    assert left == pytest.approx([0.3 + gap * i for i in range(5)])


def test_tcp_pacing_ca_ratio_from_half_ssthresh() -> None:
    """tcp_pacing_ca_ratio: from cwnd >= ssthresh / 2 on (nearing the end of slow start, and
    in congestion avoidance) the rate is that percentage of cwnd * mss / srtt instead."""
    _, sock = established(pacing=True, pacing_ss_ratio=300, pacing_ca_ratio=150)
    conn = sock.conn
    assert conn is not None
    rec, srtt = conn.recovery, conn.rtt.srtt
    rec.cwnd, rec.ssthresh = 20, 42
    assert conn._pacing_rate() == pytest.approx(3.0 * 20 * MSS / srtt)
    rec.ssthresh = 41  # 41 / 2 = 20, in integers as Linux
    assert conn._pacing_rate() == pytest.approx(1.5 * 20 * MSS / srtt)


def test_a_tso_packet_counts_its_segments() -> None:
    """Linux __tcp_transmit_skb: segs_out, data_segs_out and OutSegs add tcp_skb_pcount, so five TSO
    packets of 2 segments are the 10 segments sch_fq lets go unpaced, and the one after them
    waits for the pacing rate: of the 4 segments an ACK of 2 allows, 2 go at once, 2 after
    half a packet's time (the rest is credit for being late): 2 * 12 * 1000 bytes / 93.75 ms."""
    h, sock = established(pacing=True, tso=True)
    assert [len(s.payload) for s in sent(h, sock, 100, 0.2)] == [2 * MSS] * 5
    info = sock.tcp_info(0.2)
    assert (info.tcpi_data_segs_out, info.tcpi_segs_out) == (10, 12)  # and the SYN, the ACK
    assert h.counters["TcpOutSegs"] == 12  # OutSegs as well (TCP_MIB_OUTSEGS)
    ack(h, at(2), 0.25)
    assert [len(s.payload) for s in out(h)] == [2 * MSS]
    while not (got := [len(s.payload) for s in out(h) if s.payload]):
        when = h.get_timer()
        assert when is not None
        h.handle_timer(max(when, 0.25))
    assert got == [2 * MSS] and when == pytest.approx(0.25 + 2 * MSS / 256_000 / 2)


def test_pacing_sends_at_once_what_is_due_within_a_millisecond() -> None:
    """An event loop's timers are good to a millisecond: at 2.4 MB/s (cwnd 200 over 100 ms,
    120% in congestion avoidance) two TSO packets of 2,000 bytes, 0.83 ms apart, leave at
    once; waiting for the second, the pacing timer would fire 1 ms late for every packet."""
    h, sock = established(pacing=True, tso=True)
    conn = sock.conn
    assert conn is not None
    assert sum(len(s.payload) for s in sent(h, sock, 1000, 0.2)) == 10 * MSS
    ack(h, at(10), 0.3)
    out(h)
    conn.recovery.cwnd, conn.recovery.ssthresh = 200, 100
    ack(h, at(12), 0.4)
    assert [len(s.payload) for s in out(h) if s.payload] == [2 * MSS, 2 * MSS]


def test_a_stretch_ack_from_the_filter_leaves_tcp_where_the_acks_would() -> None:
    # a sender in slow start, its ACKs one per two segments, read in one batch (the userspace
    # stack's GRO and ACK filter, fastopen.runtime.gro) or one by one
    ends = []
    for batched in (False, True):
        h = host(CLIENT, congestion_control="cubic")
        sock, _ = connecting(h)
        synack = seg(S | A, PEER_ISN, ISN + 1, options=(Mss(MSS), SackPermitted()))
        h.receive_segment(SERVER, CLIENT, synack, 0.1)
        one(h)
        sock.send(b"d" * 40_000, 0.1)
        assert len(out(h)) == 10
        gro = Gro(h.receive_segment)
        for i in range(1, 6):
            ack = seg(A, PEER_ISN + 1, ISN + 1 + i * 2000)
            if batched:
                gro.add(SERVER, CLIENT, ack, 0.2)
            else:
                h.receive_segment(SERVER, CLIENT, ack, 0.2)
        gro.flush()
        assert gro.filtered == (4 if batched else 0)
        info = sock.tcp_info(0.2)
        ends.append((info.tcpi_snd_cwnd, info.tcpi_bytes_acked, len(out(h))))
    assert ends[0] == ends[1] == (20, 10_001, 20)  # cwnd 10 + 10 acked; 20 in flight again
