"""Loss recovery and congestion state of one connection (Linux tcp_ack, tcp_fastretrans_alert).

Kept apart from the TCB as aioquic's ``recovery.py`` keeps it: the retransmission queue and SACK
scoreboard (:class:`~fastopen.engine.segmentation.SentPieces`), delivery accounting
(``tcpi_delivered``), the congestion state (``icsk_ca_state``: Open, Disorder, CWR, Recovery,
Loss), RACK-TLP as Linux's default (``tcp_recovery=1``, RFC 8985: loss by time, the reordering
timer, tail loss probes), NewReno without SACK (RFC 6582: a partial ACK retransmits the next
hole, duplicate ACKs counted as ``tcp_add_reno_sack``), Proportional Rate Reduction in recovery
(RFC 6937, ``tcp_cwnd_reduction``), a timeout's ``tcp_enter_loss`` with F-RTO (RFC 5682,
``tcp_frto=2``), and undoing a reduction that was not needed (``tcp_try_undo_*``: every
retransmission D-SACKed, RFC 3708, or an ACK echoing a timestamp from before the first
retransmission, RFC 3522; ``undo_marker``, ``undo_retrans``). How the window grows and how far
a loss cuts it is the congestion control's (:mod:`.cc`, Linux ``tcp_congestion_ops``):
:meth:`Recovery._grow`, :meth:`Recovery._loss_ssthresh` and the undo ask it, and it hears of the
state changes, RTT samples and transmissions after idle it needs. Each ACK also makes a delivery
rate sample (:mod:`.rate`, ``tcp_rate_gen``); an algorithm with ``cong_control`` (BBR) takes it
in place of the growth and PRR (Linux tcp_cong_control), and the stack's end-of-reduction
window and restart after idle leave its window alone.
"""

from __future__ import annotations

import enum
from collections import Counter

from fastopen.engine.cc import CaEvent, CaState, CongestionControl, in_slow_start
from fastopen.engine.rate import DeliveryRate
from fastopen.engine.segmentation import REORDERING, SentPieces
from fastopen.engine.seq import MASK, seq_le, seq_lt

#: Linux TCP_INIT_CWND (segments).
INIT_CWND = 10
#: Linux TCP_INFINITE_SSTHRESH.
INFINITE_SSTHRESH = 0x7FFFFFFF
#: Linux TCP_TIMEOUT_MIN (2 jiffies): added to the reordering timer and a loss probe's timeout.
TIMEOUT_MIN = 0.002
#: Linux TCP_RTO_MIN: added to a loss probe's timeout with one segment out (a delayed ACK).
PROBE_DELACK = 0.2
#: Linux TCP_RACK_RECOVERY_THRESH and the cap of rack.reo_wnd_steps.
REO_WND_PERSIST = 16
REO_WND_STEPS_MAX = 0xFF


class ReoWindow:
    """RACK's reordering window once a D-SACK came (Linux tp->rack.reo_wnd_steps,
    reo_wnd_persist, dsack_seen, last_delivered, and tp->dsack_dups): a connection that never
    had one keeps none (one step of min_rtt / 4, no persistence)."""

    __slots__ = ("dsack_dups", "dsack_seen", "last_delivered", "persist", "steps")

    def __init__(self) -> None:
        self.steps = 1
        self.persist = 0  # recoveries the widened window outlives (reo_wnd_persist)
        self.dsack_seen = False  # a D-SACK to widen it for, at the next round trip's ACK
        self.last_delivered = 0  # tp->delivered when it was last widened
        self.dsack_dups = 0  # segments D-SACKed, over the connection's life


class Timer(enum.IntEnum):
    """What the retransmission timer is set for (Linux icsk_pending)."""

    RTO = 0
    REO = 1  # ICSK_TIME_REO_TIMEOUT: RACK's reordering window ends
    PROBE = 2  # ICSK_TIME_LOSS_PROBE: a tail loss probe


class Recovery:
    """The scoreboard, delivery, the congestion state and window of one connection."""

    __slots__ = (
        "_cwnd_limited",
        "_cwnd_usage_seq",
        "_max_packets_out",
        "_prior_ssthresh",
        "_prr_delivered",
        "_reno_sacked",
        "_reo",
        "ca_state",
        "cc",
        "cwnd",
        "cwnd_cnt",
        "delivered",
        "delivered_ce",
        "frto",
        "high_seq",
        "lsndtime",
        "pieces",
        "prior_cwnd",
        "prr_out",
        "rexmit_new",
        "ssthresh",
        "timer",
        "tlp_high_seq",
        "undo_marker",
        "undo_retrans",
        "undo_tsval",
    )

    def __init__(self, cc: CongestionControl, now: float) -> None:
        self.cc = cc
        self.pieces = SentPieces()
        self.lsndtime = now  # Linux tp->lsndtime: when data last left
        self.cwnd = INIT_CWND
        self.ssthresh = INFINITE_SSTHRESH
        self.cwnd_cnt = 0  # Linux snd_cwnd_cnt: segments delivered toward the next increase
        # Linux tcp_cwnd_validate: whether the window was the limit in the current window of
        # data (until SND.UNA reaches cwnd_usage_seq), else the most segments that were out
        self._cwnd_limited = False
        self._max_packets_out = 0
        self._cwnd_usage_seq = 0
        self.delivered = 0  # Linux tp->delivered: segments acknowledged (SYN and FIN count)
        self.delivered_ce = 0  # Linux tp->delivered_ce: of them, acknowledged with ECE
        self._reno_sacked = 0  # without SACK: duplicate ACKs counted as delivered (sacked_out)
        self.ca_state = CaState.OPEN
        self.high_seq = 0  # Linux tp->high_seq: SND.NXT when recovery (or loss) started
        self.prior_cwnd = 0  # the window before the last reduction (PRR's base, an undo's)
        self._prr_delivered = 0
        self.prr_out = 0
        self._reo: ReoWindow | None = None
        self.tlp_high_seq: int | None = None  # SND.NXT after a loss probe, until it is answered
        self.timer = Timer.RTO
        # undo (Linux undo_marker, undo_retrans, retrans_stamp as a TSval, prior_ssthresh)
        self.undo_marker: int | None = None
        self.undo_retrans = 0
        self.undo_tsval: int | None = None
        self._prior_ssthresh = 0
        self.frto = False  # F-RTO after this timeout (Linux tp->frto)
        self.rexmit_new = False  # F-RTO step 2b: new data before retransmissions (REXMIT_NEW)

    # -- counts ------------------------------------------------------------------------------------

    @property
    def packets_out(self) -> int:
        """Segments sent and not yet acknowledged (Linux tp->packets_out)."""
        return self.pieces.packets_out

    @property
    def sacked_out(self) -> int:
        """Segments SACKed (without SACK: duplicate ACKs), Linux tp->sacked_out."""
        return self.pieces.sacked_out + self._reno_sacked

    def in_flight(self) -> int:
        """Linux tcp_packets_in_flight: out, less SACKed and lost, plus retransmitted."""
        p = self.pieces
        return p.packets_out - (p.sacked_out + self._reno_sacked + p.lost_out) + p.retrans_out

    # -- the two seams of congestion control -------------------------------------------------------

    def _grow(self, acked_segments: int, now: float) -> None:
        """Linux tcp_cong_avoid: the congestion control grows the window by the segments an
        ACK delivered (RFC 3465), only when the window is the limit (tcp_is_cwnd_limited; in
        slow start, also while it is below twice the most segments out)."""
        if self.is_cwnd_limited():
            self.cc.cong_avoid(self, acked_segments, now)

    def is_cwnd_limited(self) -> bool:
        """Linux tcp_is_cwnd_limited: the window was the limit (in slow start, also while it
        is below twice the most segments out)."""
        return self._cwnd_limited or (in_slow_start(self) and self.cwnd < 2 * self._max_packets_out)

    def _loss_ssthresh(self) -> int:
        """Linux tcp_init_cwnd_reduction and tcp_enter_loss: the congestion control's slow
        start threshold for a loss, the window before it kept for PRR and an undo."""
        self.prior_cwnd = self.cwnd
        self.cwnd_cnt = 0
        return self.cc.ssthresh(self)

    # -- what the congestion control hears -------------------------------------------------------

    def cwnd_validate(self, limited: bool, snd_una: int, snd_nxt: int) -> bool:
        """Linux tcp_cwnd_validate after a transmission: ``limited`` when the window stopped
        it (or what is in flight fills it). True when the network starves (the window is not
        the limit)."""
        limited = limited or self.in_flight() >= self.cwnd
        if (
            seq_le(self._cwnd_usage_seq, snd_una)
            or limited
            or (not self._cwnd_limited and self.packets_out > self._max_packets_out)
        ):
            self._cwnd_limited = limited
            self._max_packets_out = self.packets_out
            self._cwnd_usage_seq = snd_nxt
        return not self.is_cwnd_limited()

    def check_app_limited(self, unsent: int, mss: int) -> None:
        """Linux tcp_rate_check_app_limited at a write, ``unsent`` bytes waiting to go (the
        rate sampler is made here for a connection that writes before it sent)."""
        pieces = self.pieces
        rate = pieces.rate
        if rate is None:
            rate = pieces.rate = DeliveryRate()
        rate.check_app_limited(
            unsent,
            mss,
            self.in_flight(),
            self.cwnd,
            pieces.lost_out,
            pieces.retrans_out,
            self.delivered,
        )

    def data_sent(self, now: float) -> None:
        """Linux tcp_event_data_sent: data leaves (CA_EVENT_TX_START when none was in flight)."""
        if not self.packets_out:
            self.cc.cwnd_event(self, CaEvent.TX_START, now)
        self.lsndtime = now

    def restart_after_idle(self, now: float, rto: float) -> None:
        """Linux tcp_slow_start_after_idle_check and tcp_cwnd_restart (RFC 5681 4.1): data
        to send after more than an RTO with nothing in flight: ssthresh keeps 3/4 of the window,
        which halves per RTO idle, down to the initial window."""
        idle = now - self.lsndtime
        if self.packets_out or idle <= rto or self.cc.cong_control is not None:
            return  # (Linux tcp_slow_start_after_idle_check: not with cong_control)
        self.cc.cwnd_event(self, CaEvent.CWND_RESTART, now)
        cwnd = self.cwnd
        self.ssthresh = max(self.ssthresh, (cwnd >> 1) + (cwnd >> 2))
        restart = min(INIT_CWND, cwnd)
        idle -= rto
        while idle > 0 and cwnd > restart:
            cwnd >>= 1
            idle -= rto
        self.cwnd = max(cwnd, restart)

    def rtt_sample(self, rtt_us: int, una: int, snd_nxt: int, rate: float, now: float) -> None:
        """An ACK up to ``una`` gave an RTT sample (Linux pkts_acked, before tcp_cong_avoid);
        ``rate`` is the pacing rate."""
        self.cc.pkts_acked(self, rtt_us, una, snd_nxt, rate, now)

    # -- per ACK (Linux tcp_ack, tcp_fastretrans_alert, tcp_cong_control) -------------------------

    def reo_wnd(self, min_rtt: float, srtt: float) -> float:
        """Linux tcp_rack_reo_wnd: none in recovery or past the duplicate threshold until
        reordering is seen, else a quarter of min_rtt per step (DSACKs add steps), at most SRTT."""
        if not self.pieces.reord_seen and (
            self.ca_state >= CaState.RECOVERY or self.pieces.sacked_out >= self.pieces.reordering
        ):
            return 0.0
        steps = self._reo.steps if self._reo is not None else 1
        return min(min_rtt / 4 * steps, srtt)

    def check_dsack(
        self,
        blocks: tuple[tuple[int, int], ...],
        ack: int,
        prior_una: int,
        mss: int,
        max_window: int,
        total_retrans: int,
        counters: Counter[str],
    ) -> int:
        """Linux tcp_check_dsack with tcp_dsack_seen: a first SACK block below ``ack``
        (TCPDSACKRecv) or inside the second (TCPDSACKOfoRecv) reports data received twice
        (RFC 2883). Returns the segments it covers (TCPDSACKRecvSegs), 0 for none or for a
        dubious one (TCPDSACKIgnoredDubious: empty, larger than the peer's largest window, or
        more duplicates than retransmissions so far). One for data already acknowledged and
        above the undo marker counts against the retransmissions to undo, one in the window
        for the retransmitted pieces it covers; one of a loss probe (FLAG_DSACK_TLP) shows
        that nothing was lost; another, once reordering was seen, widens RACK's reordering
        window at the next round trip (:meth:`_update_reo_wnd`)."""
        start, end = blocks[0]
        if seq_lt(start, ack):
            counters["TCPDSACKRecv"] += 1
        elif len(blocks) > 1 and seq_le(blocks[1][0], start) and seq_le(end, blocks[1][1]):
            counters["TCPDSACKOfoRecv"] += 1
        else:
            return 0
        length = (end - start) & MASK
        if not seq_lt(start, end) or length > max_window:
            counters["TCPDSACKIgnoredDubious"] += 1
            return 0
        dups = -(-length // mss) if length > mss else 1
        probe = length <= mss and self.tlp_high_seq == end  # FLAG_DSACK_TLP
        reo = self._reo
        if reo is None:
            reo = self._reo = ReoWindow()
        reo.dsack_dups += dups
        if reo.dsack_dups > total_retrans:  # the sender never sent them twice
            counters["TCPDSACKIgnoredDubious"] += 1
            return 0
        if probe:
            if not seq_lt(ack, end):
                self.tlp_high_seq = None  # tcp_process_tlp_ack: the probe and the original came
        elif self.pieces.reord_seen:
            reo.dsack_seen = True
        counters["TCPDSACKRecvSegs"] += dups
        marker = self.undo_marker
        if marker is not None and self.undo_retrans > 0:
            if not seq_lt(prior_una, end):  # data already forgotten: dumb counting
                undone = dups if seq_lt(marker, end) else 0
            else:  # tcp_sacktag_one: the retransmitted pieces it covers, still queued
                low = prior_una if seq_lt(start, prior_una) else start
                undone = self.pieces.retransmitted_in(low, end)
            self.undo_retrans = max(self.undo_retrans - undone, 0)
        return dups

    def _update_reo_wnd(self, prior_delivered: int | None) -> None:
        """Linux tcp_rack_update_reo_wnd, on an ACK with a delivery sample: a D-SACK since a
        round trip after the last widening widens RACK's reordering window by a step for
        :data:`REO_WND_PERSIST` recoveries; once they are over, it is one step again."""
        reo = self._reo
        if reo is None or not prior_delivered:
            return
        if seq_lt(prior_delivered, reo.last_delivered):
            reo.dsack_seen = False  # a round trip has not passed since it was widened
        if reo.dsack_seen:
            reo.steps = min(reo.steps + 1, REO_WND_STEPS_MAX)
            reo.dsack_seen = False
            reo.last_delivered = self.delivered
            reo.persist = REO_WND_PERSIST
        elif not reo.persist:
            reo.steps = 1

    def on_ack(
        self,
        una: int,
        prior_una: int,
        snd_nxt: int,
        acked: int,
        delivered: int,
        dupack: bool,
        sack_ok: bool,
        mss: int,
        now: float,
        min_rtt: float,
        srtt: float,
        tsecr: int,
        counters: Counter[str],
        ece: bool = False,
    ) -> float:
        """One ACK: ``acked`` segments cumulatively acknowledged, ``delivered`` newly
        delivered (SACKed or acked, not SACKed before), ``dupack`` as Linux's tcp_ack judges it.
        ``tsecr`` is its timestamp echo (0: none), ``ece`` its ECN echo (FLAG_ECE). Moves the
        congestion state and sets the window; returns seconds until RACK's reordering window
        ends for a piece not yet lost (0: no timer)."""
        advanced = una != prior_una
        if not sack_ok:
            delivered = self._reno_delivery(acked, dupack)
        self.delivered += delivered
        pieces = self.pieces
        rate = pieces.rate
        self._update_reo_wnd(rate.prior_delivered if rate is not None else None)
        if self.tlp_high_seq is not None and seq_le(self.tlp_high_seq, una):
            self._tlp_acked(una, advanced, dupack, counters)
        lost_before = pieces.lost_out
        wait = 0.0
        if sack_ok and pieces.rack_advanced:
            wait = pieces.rack_mark_lost(now, self.reo_wnd(min_rtt, srtt), counters)[1]
        if self.ca_state is CaState.LOSS:
            self._process_loss(snd_nxt, advanced, dupack, delivered, tsecr, counters)
        state = self.ca_state
        if seq_le(self.high_seq, una) and state in (CaState.RECOVERY, CaState.LOSS, CaState.CWR):
            # Linux tcp_try_undo_recovery: NewReno holds Recovery until above high_seq
            if sack_ok or una != self.high_seq or state is not CaState.RECOVERY:
                if self._may_undo(tsecr):
                    self._undo(state is CaState.LOSS)
                    counters["TCPLossUndo" if state is CaState.LOSS else "TCPFullUndo"] += 1
                else:
                    if self.cc.cong_control is None and (
                        state is CaState.CWR
                        or (state is CaState.RECOVERY and self.undo_marker is not None)
                    ):
                        self.cwnd = self.ssthresh  # Linux tcp_end_cwnd_reduction
                    reo = self._reo
                    if state is not CaState.CWR and reo is not None and reo.persist:
                        reo.persist -= 1  # tcp_try_undo_recovery: the losses were real
                self.ca_state = CaState.OPEN
                self.frto = False
                self._reno_sacked = 0
        elif self.ca_state is CaState.RECOVERY:
            if advanced and not sack_ok:
                pieces.mark_head_lost(mss, counters)  # RFC 6582: a partial ACK, the next hole
            if self._try_undo_dsack(counters):
                self.ca_state = CaState.DISORDER if self.sacked_out else CaState.OPEN
                self.high_seq = snd_nxt
        if self.ca_state <= CaState.DISORDER:
            self._try_undo_dsack(counters)  # a D-SACK after the recovery ended, too
        if self.ca_state in (CaState.OPEN, CaState.DISORDER, CaState.CWR):
            if pieces.lost_out or (not sack_ok and self._reno_sacked + 1 > REORDERING):
                self.enter_recovery(prior_una, snd_nxt, sack_ok, mss, counters)
            elif ece or self.in_cwr:
                self.enter_cwr(snd_nxt)  # Linux tcp_try_to_open: CWR stays till high_seq
            elif self.sacked_out or pieces.lost_out:
                self.ca_state = CaState.DISORDER
            else:
                self.ca_state = CaState.OPEN
        newly_lost = pieces.lost_out - lost_before
        rate = pieces.rate
        if rate is not None:
            rate.gen(self.delivered, delivered, now, min_rtt)
        control = self.cc.cong_control
        if control is not None:  # Linux tcp_cong_control: the algorithm's own
            if rate is not None:
                rate.mss, rate.srtt = mss, srtt
                control(self, rate, now)
            return wait
        if self.ca_state in (CaState.RECOVERY, CaState.CWR):  # tcp_in_cwnd_reduction
            self._cwnd_reduction(delivered, newly_lost, advanced)
        elif advanced or (sack_ok and delivered and pieces.reordering > REORDERING):
            # Linux tcp_may_raise_cwnd: new data acked; with reordering above tcp_reordering,
            # any forward progress (FLAG_DATA_SACKED too); tcp_cong_avoid by acked_sacked
            self._grow(delivered, now)
        return wait

    def _process_loss(
        self,
        snd_nxt: int,
        advanced: bool,
        dupack: bool,
        delivered: int,
        tsecr: int,
        counters: Counter[str],
    ) -> None:
        """Linux tcp_process_loss: undo a timeout shown spurious (the timestamps, or F-RTO:
        data never retransmitted was delivered); F-RTO's step 2b sends new data on the first
        ACK, and a SACK or duplicate ACK after that shows the loss was real (RFC 5682)."""
        if self.frto and self.pieces.orig_delivered:
            counters["TCPSpuriousRTOs"] += 1
        elif not (advanced and self._may_undo(tsecr)):
            if self.frto:
                if seq_lt(self.high_seq, snd_nxt):
                    if (delivered and not advanced) or dupack:
                        self.frto = False  # step 3a: the loss was real
                elif advanced:
                    self.high_seq = snd_nxt
                    self.rexmit_new = True  # step 2b
            return
        self._undo(True)
        counters["TCPLossUndo"] += 1
        self.ca_state = CaState.OPEN
        self.frto = False

    def _try_undo_dsack(self, counters: Counter[str]) -> bool:
        """Linux tcp_try_undo_dsack: every retransmission since the reduction was D-SACKed,
        so none was needed: the reduction is undone (TCPDSACKUndo), and RACK keeps a widened
        reordering window through one recovery more."""
        if self.undo_marker is None or self.undo_retrans:
            return False
        reo = self._reo
        if reo is not None:
            reo.persist = min(reo.persist + 1, REO_WND_PERSIST)
        self._undo(False)
        counters["TCPDSACKUndo"] += 1
        return True

    def _may_undo(self, tsecr: int) -> bool:
        """Linux tcp_may_undo: a reduction to undo, every retransmission D-SACKed or the ACK
        echoing a timestamp from before the first one (tcp_packet_delayed)."""
        if self.undo_marker is None:
            return False
        if not self.undo_retrans:
            return True
        return bool(tsecr) and self.undo_tsval is not None and seq_lt(tsecr, self.undo_tsval)

    def _undo(self, unmark_loss: bool) -> None:
        """Linux tcp_undo_cwnd_reduction: the window and ssthresh as before (the congestion
        control's undo_cwnd), the losses unmarked after a timeout."""
        if unmark_loss:
            self.pieces.unmark_lost()
        self.cwnd = self.cc.undo_cwnd(self)
        if self._prior_ssthresh > self.ssthresh:
            self.ssthresh = self._prior_ssthresh
        self.undo_marker = None

    def _init_undo(self, una: int) -> None:
        """Linux tcp_init_undo: what a later undo restores from, and the retransmissions to
        see D-SACKed (none yet: -1 until the first)."""
        self.undo_marker = una
        self.undo_retrans = self.pieces.retrans_out or -1
        self.undo_tsval = None
        cwnd = self.cwnd
        self._prior_ssthresh = max(self.ssthresh, (cwnd >> 1) + (cwnd >> 2))
        self.prior_cwnd = cwnd

    def retransmitted(self, segments: int, tsval: int, sent: bool = True) -> None:
        """Linux tcp_retransmit_skb: one more retransmission to undo (undo_retrans), the first
        one's time (retrans_stamp, as the TSval it carried), even when it was not ``sent``;
        PRR counts what recovery sent (tcp_xmit_retransmit_queue)."""
        if self.undo_marker is not None:
            self.undo_retrans = max(self.undo_retrans, 0) + segments
            if self.undo_tsval is None:
                self.undo_tsval = tsval
        if sent and self.ca_state in (CaState.RECOVERY, CaState.CWR):  # tcp_in_cwnd_reduction
            self.prr_out += segments

    def _reno_delivery(self, acked: int, dupack: bool) -> int:
        """Without SACK: a duplicate ACK is one segment delivered (tcp_add_reno_sack); a
        cumulative ACK takes back those already counted (tcp_remove_reno_sacks)."""
        if dupack:
            if self._reno_sacked + 1 < self.pieces.packets_out:
                self._reno_sacked += 1
                return 1
            return 0
        if not acked:
            return 0
        sacked = self._reno_sacked
        self._reno_sacked = 0 if acked - 1 >= sacked else sacked - (acked - 1)
        return max(acked - sacked, 1)

    def _tlp_acked(self, una: int, advanced: bool, dupack: bool, counters: Counter[str]) -> None:
        """Linux tcp_process_tlp_ack: an ACK above the probe means a loss it repaired (the
        window comes down once, CWR); a duplicate for it means none was lost."""
        high = self.tlp_high_seq
        assert high is not None
        if seq_lt(high, una):
            self.tlp_high_seq = None
            counters["TCPLossProbeRecovery"] += 1
            if self.ca_state in (CaState.OPEN, CaState.DISORDER):
                self.ssthresh = self._loss_ssthresh()
                if self.cc.cong_control is None:  # Linux tcp_end_cwnd_reduction
                    self.cwnd = self.ssthresh
        elif dupack and not advanced:
            self.tlp_high_seq = None

    def enter_recovery(
        self, una: int, snd_nxt: int, sack_ok: bool, mss: int, counters: Counter[str]
    ) -> None:
        """Linux tcp_enter_recovery with tcp_init_cwnd_reduction: fast recovery to SND.NXT, the
        window to come down to ssthresh by PRR; without SACK the head is lost."""
        counters["TCPSackRecovery" if sack_ok else "TCPRenoRecovery"] += 1
        self._init_undo(una)
        self.high_seq = snd_nxt
        self.tlp_high_seq = None
        self.ssthresh = self._loss_ssthresh()
        self._prr_delivered = self.prr_out = 0
        self.ca_state = CaState.RECOVERY
        if not sack_ok:
            self.pieces.mark_head_lost(mss, counters)

    @property
    def in_cwr(self) -> bool:
        """In CWR: the window comes down after an ECN echo."""
        return self.ca_state is CaState.CWR

    def enter_cwr(self, snd_nxt: int) -> None:
        """Linux tcp_enter_cwr (an ECN echo): tcp_init_cwnd_reduction without a loss, the
        window to come down to ssthresh by PRR until SND.NXT is acknowledged; no undo."""
        if self.ca_state >= CaState.CWR:
            return
        self.undo_marker = None
        self.high_seq = snd_nxt
        self.tlp_high_seq = None
        self.ssthresh = self._loss_ssthresh()
        self._prr_delivered = self.prr_out = 0
        self.ca_state = CaState.CWR

    def _cwnd_reduction(self, delivered: int, newly_lost: int, advanced: bool) -> None:
        """Linux tcp_cwnd_reduction (PRR, RFC 6937): send in proportion to what was delivered
        while the flight is above ssthresh, then (slow start reduction bound) up to it."""
        if delivered <= 0 or not self.prior_cwnd:
            return
        self._prr_delivered += delivered
        in_flight = self.in_flight()
        delta = self.ssthresh - in_flight
        if delta < 0:
            dividend = self.ssthresh * self._prr_delivered + self.prior_cwnd - 1
            sndcnt = dividend // self.prior_cwnd - self.prr_out
        else:
            sndcnt = max(self._prr_delivered - self.prr_out, delivered)
            if advanced and not newly_lost:
                sndcnt += 1
            sndcnt = min(delta, sndcnt)
        sndcnt = max(sndcnt, 0 if self.prr_out else 1)  # the fast retransmit goes at once
        self.cwnd = max(in_flight + sndcnt, 1)

    def reo_timeout(
        self, una: int, snd_nxt: int, now: float, reo_wnd: float, counters: Counter[str]
    ) -> float:
        """Linux tcp_rack_reo_timeout: the reordering window ended; what is lost now starts
        recovery (with one segment's worth of PRR). Returns the next wait (0: none)."""
        pieces = self.pieces
        before = self.in_flight()
        wait = pieces.rack_mark_lost(now, reo_wnd, counters)[1]
        if self.in_flight() != before and self.ca_state is not CaState.RECOVERY:
            self.enter_recovery(una, snd_nxt, True, 0, counters)
            self._cwnd_reduction(1, 0, False)
        return wait

    def on_timeout(
        self, snd_nxt: int, una: int, first: bool, now: float, counters: Counter[str]
    ) -> None:
        """Linux tcp_enter_loss: the retransmission timer fired with data in flight. Every
        piece not SACKed is lost, a window of one, Loss state to SND.NXT."""
        state = self.ca_state
        if first:  # tcp_retransmit_timer's failure counters, at its first retransmission
            sack = self.pieces.sacked_out > 0 or self._reno_sacked == 0
            if state is CaState.RECOVERY:
                counters["TCPSackRecoveryFail" if sack else "TCPRenoRecoveryFail"] += 1
            elif state is CaState.LOSS:
                counters["TCPLossFailures"] += 1
            elif state is CaState.DISORDER or self.sacked_out:
                counters["TCPSackFailures" if sack else "TCPRenoFailures"] += 1
        if (
            state <= CaState.DISORDER
            or seq_le(self.high_seq, una)
            or (state is CaState.LOSS and first)
        ):
            self._init_undo(una)
            self.ssthresh = self._loss_ssthresh()
            self.cc.cwnd_event(self, CaEvent.LOSS, now)
        # F-RTO (tcp_frto=2) after a timeout out of recovery, or a repeated one
        self.frto = state < CaState.RECOVERY or not first
        self.rexmit_new = False
        self.pieces.mark_all_lost(counters)
        self._reno_sacked = 0
        self.cwnd = self.in_flight() + 1
        self.cwnd_cnt = 0
        self.high_seq = snd_nxt
        self.tlp_high_seq = None
        self.ca_state = CaState.LOSS
        self.cc.set_state(self, CaState.LOSS)

    def non_congestion_loss(self, snd_nxt: int) -> None:
        """Linux tcp_non_congestion_loss_retransmit (a smaller path MTU, SYN data not
        acknowledged): Loss state for the retransmissions, the window as it was."""
        if self.ca_state is not CaState.LOSS:
            self.high_seq = snd_nxt
            self.ca_state = CaState.LOSS
            self.cc.set_state(self, CaState.LOSS)

    def syn_data_acked(self) -> None:
        """Linux: SYN data counts as two packets in tcp_ack(), one delivery."""
        if self.delivered > 1:
            self.delivered -= 1

    def handshake_acked(self) -> None:
        """Linux: the SYN-ACK's delivery is not tracked in tcp_ack; the third ACK counts it."""
        self.delivered += 1
