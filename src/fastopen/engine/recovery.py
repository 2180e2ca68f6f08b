"""Loss recovery and congestion state of one connection (Linux tcp_ack, tcp_fastretrans_alert).

Kept apart from the TCB as aioquic's ``recovery.py`` keeps it: the segments in flight (counted,
never derived by dividing by a segment size), delivery accounting (``tcpi_delivered``), duplicate
ACKs and fast retransmit, the congestion window (a window of one after a timeout). How the window
grows and how far a loss cuts it is the congestion control's (:mod:`.cc`): ``_grow`` and
``_loss_ssthresh`` are the two places that ask it. SACK scoreboard and RACK grow here.
"""

from __future__ import annotations

from collections import deque

from fastopen.engine.cc import CaEvent, CaState, CongestionControl
from fastopen.engine.seq import HALF, MASK, seq_le

#: Linux TCP_INIT_CWND (segments).
INIT_CWND = 10
#: RFC 5681: the duplicate ACKs that trigger a fast retransmit (Linux tcp_reordering default).
DUPACK_THRESHOLD = 3


class Recovery:
    """Segments in flight, delivery, duplicate ACKs and the congestion window."""

    __slots__ = (
        "_cwnd_limited",
        "_cwnd_usage_seq",
        "_max_packets_out",
        "_reno_sacked",
        "_sent_ends",
        "cc",
        "cwnd",
        "cwnd_cnt",
        "delivered",
        "dupacks",
        "lsndtime",
        "prior_cwnd",
        "ssthresh",
    )

    def __init__(self, cc: CongestionControl, now: float) -> None:
        self.cc = cc
        self.lsndtime = now  # Linux tp->lsndtime: when data last left
        self.cwnd = INIT_CWND
        self.ssthresh = 0x7FFFFFFF
        self.cwnd_cnt = 0  # Linux snd_cwnd_cnt: segments delivered toward the next increase
        self.prior_cwnd = 0  # the window before the last reduction (what an undo restores)
        # Linux tcp_cwnd_validate: whether the window was the limit in the current window of
        # data (until SND.UNA reaches cwnd_usage_seq), else the most segments that were out
        self._cwnd_limited = False
        self._max_packets_out = 0
        self._cwnd_usage_seq = 0
        self.dupacks = 0
        self.delivered = 0  # Linux tp->delivered: segments acknowledged (SYN and FIN count)
        self._sent_ends: deque[int] = deque()  # end of each segment sent once, oldest first
        self._reno_sacked = 0  # duplicate ACKs already counted as delivered (no SACK)

    @property
    def packets_out(self) -> int:
        """Segments sent and not yet acknowledged (Linux tp->packets_out)."""
        return len(self._sent_ends)

    def sent(self, end: int) -> None:
        """A new segment (not a retransmission) ending at ``end`` left."""
        self._sent_ends.append(end)

    def on_ack(self, ack: int, sack_ok: bool, now: float) -> None:
        """``ack`` acknowledged new data: delivery, the congestion window, no duplicates."""
        ends = self._sent_ends
        delivered = self.delivered
        if ends and ((ack - ends[0]) & MASK) < HALF:  # the oldest segment sent is acked
            self._count_delivered(ack, sack_ok)
        self.dupacks = 0
        self._grow(self.delivered - delivered, now)

    def cwnd_validate(self, limited: bool, snd_una: int, snd_nxt: int) -> None:
        """Linux tcp_cwnd_validate after a transmission: ``limited`` when the window stopped
        it (or what is in flight fills it)."""
        out = len(self._sent_ends)  # packets_out
        limited = limited or out >= self.cwnd
        if (
            limited
            or seq_le(self._cwnd_usage_seq, snd_una)
            or (not self._cwnd_limited and out > self._max_packets_out)
        ):
            self._cwnd_limited = limited
            self._max_packets_out = out
            self._cwnd_usage_seq = snd_nxt

    def _grow(self, acked_segments: int, now: float) -> None:
        """Linux tcp_cong_avoid: the congestion control grows the window by the segments an
        ACK delivered (RFC 3465), only when the window is the limit (tcp_is_cwnd_limited; in
        slow start, also while it is below twice the most segments out)."""
        cwnd = self.cwnd
        if self._cwnd_limited or (cwnd < self.ssthresh and cwnd < 2 * self._max_packets_out):
            self.cc.cong_avoid(self, acked_segments, now)

    def _loss_ssthresh(self) -> int:
        """Linux tcp_init_cwnd_reduction and tcp_enter_loss: the congestion control's slow
        start threshold for a loss, the window before it kept for an undo."""
        self.prior_cwnd = self.cwnd
        self.cwnd_cnt = 0
        return self.cc.ssthresh(self)

    def data_sent(self, now: float) -> None:
        """Linux tcp_event_data_sent: data leaves (CA_EVENT_TX_START when none was in flight)."""
        if not self._sent_ends:  # nothing in flight
            self.cc.cwnd_event(self, CaEvent.TX_START, now)
        self.lsndtime = now

    def restart_after_idle(self, now: float, rto: float) -> None:
        """Linux tcp_slow_start_after_idle_check and tcp_cwnd_restart (RFC 5681 4.1): data
        to send after more than an RTO with nothing in flight: ssthresh keeps 3/4 of the window,
        which halves per RTO idle, down to the initial window."""
        idle = now - self.lsndtime
        if self._sent_ends or idle <= rto:  # data in flight, or not idle long enough
            return
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

    def _count_delivered(self, ack: int, sack_ok: bool) -> None:
        """Linux tcp_clean_rtx_queue: each segment ``ack`` covers is delivered; without SACK
        (tcp_remove_reno_sacks) the duplicate ACKs already counted take their share."""
        ends = self._sent_ends
        segments = 0
        while ends and ((ack - ends[0]) & MASK) < HALF:
            ends.popleft()
            segments += 1
        if sack_ok:
            self.delivered += segments
            return
        sacked = self._reno_sacked
        self.delivered += max(segments - sacked, 1)
        self._reno_sacked = 0 if segments - 1 >= sacked else sacked - (segments - 1)

    def on_dupack(self, sack_ok: bool) -> bool:
        """A duplicate ACK; True when it is the one that calls for a fast retransmit."""
        self.dupacks += 1
        if not sack_ok and self._reno_sacked + 1 < len(self._sent_ends):
            self._reno_sacked += 1  # Linux tcp_add_reno_sack: a duplicate ACK, one delivered
            self.delivered += 1
        if self.dupacks == DUPACK_THRESHOLD:
            self.ssthresh = self._loss_ssthresh()
            self.cwnd = self.ssthresh
            return True
        return False

    def on_sack(self, sacked: int) -> bool:
        """An ACK whose SACK blocks cover ``sacked`` segments above SND.UNA; True when that
        starts recovery (Linux tcp_time_to_recover: more than tcp_reordering segments past
        the hole), the head then being lost."""
        if self.dupacks >= DUPACK_THRESHOLD or sacked + 1 <= DUPACK_THRESHOLD:
            return False
        self.dupacks = DUPACK_THRESHOLD
        self.ssthresh = self._loss_ssthresh()
        self.cwnd = self.ssthresh
        return True

    def on_timeout(self, first: bool, now: float) -> None:
        """The retransmission timer fired with data in flight: a window of one (RFC 5681); the
        threshold drops on the first timeout of a loss only (Linux tcp_enter_loss), and the
        congestion control enters CA_Loss."""
        if first:
            self.ssthresh = self._loss_ssthresh()
            self.cc.cwnd_event(self, CaEvent.LOSS, now)
        self.cwnd = 1
        self.cwnd_cnt = 0
        self.cc.set_state(self, CaState.LOSS)

    def syn_data_acked(self) -> None:
        """Linux: SYN data counts as two packets in tcp_ack(), one delivery."""
        if self.delivered > 1:
            self.delivered -= 1

    def handshake_acked(self) -> None:
        """Linux: the SYN-ACK's delivery is not tracked in tcp_ack; the third ACK counts it."""
        self.delivered += 1
