"""Delivery rate sampling, as Linux 6.x's ``net/ipv4/tcp_rate.c``.

Every transmission of a piece of the retransmission queue notes how much the connection had
delivered and when (``tcp_rate_skb_sent``); when the piece is SACKed or acknowledged, the ACK's
rate sample takes the newest such note (``tcp_rate_skb_delivered``), and the sample is the data
delivered since over the longer of the send and the ACK phase of that interval (``tcp_rate_gen``:
``min(send rate, ACK rate)``, no sample below min_rtt). A sample taken while the application
left the pipe unfilled is marked app-limited (``tcp_rate_check_app_limited`` at each write).

:class:`DeliveryRate` holds what Linux keeps in ``tcp_sock`` for it (``delivered_mstamp``,
``first_tx_mstamp``, ``app_limited``, ``lost``, and the last sample ``tcpi_delivery_rate``
reports) together with the ``struct rate_sample`` of the ACK being processed, which a congestion
control with ``cong_control`` (BBR) reads. A connection has one from its first transmission of
data (or its first write), none while idle. Times are seconds (the engine's clock), intervals
microseconds as Linux counts them; ``delivered`` counts segments (``tp->delivered``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastopen.engine.segmentation import Piece

#: Piece flags (segmentation's F_RETRANS | F_EVER: Linux TCPCB_RETRANS), kept here to avoid a
#: cycle; segmentation asserts they agree.
RETRANS_FLAGS = 8 | 16


class DeliveryRate:
    """Linux tcp_rate.c's connection state and the rate sample of the current ACK."""

    __slots__ = (
        "acked_sacked",
        "app_limited",
        "delivered",
        "delivered_mstamp",
        "edt",
        "first_tx_mstamp",
        "interval_us",
        "is_app_limited",
        "is_retrans",
        "losses",
        "lost",
        "mss",
        "prior_delivered",
        "prior_in_flight",
        "prior_lost",
        "prior_mstamp",
        "rate_app_limited",
        "rate_delivered",
        "rate_interval_us",
        "rtt_us",
        "srtt",
    )

    def __init__(self) -> None:
        # the connection's (tcp_sock)
        self.delivered_mstamp = 0.0  # when tp->delivered last moved
        self.first_tx_mstamp = 0.0  # the send time of the newest piece delivered
        self.app_limited = 0  # tp->app_limited: delivered count that ends the bubble (0: none)
        self.lost = 0  # tp->lost: segments ever marked lost
        self.rate_delivered = 0  # the last sample kept for tcp_info (tcp_rate_gen)
        self.rate_interval_us = 0
        self.rate_app_limited = False
        # the ACK's (struct rate_sample), and what the stack knows as it processes it
        self.prior_delivered: int | None = None
        self.prior_mstamp: float | None = None
        self.interval_us = -1
        self.delivered = -1
        self.acked_sacked = 0
        self.losses = 0
        self.prior_lost = 0
        self.prior_in_flight = 0
        self.rtt_us = -1
        self.is_app_limited = False
        self.is_retrans = False
        self.mss = 0  # tp->mss_cache, the SRTT (seconds) and tcp_wstamp_ns as the ACK came
        self.srtt = 0.0
        self.edt = 0.0

    def begin(self, in_flight: int) -> None:
        """An ACK arrives (Linux tcp_ack: ``struct rate_sample rs = {}``, prior_in_flight, and
        tp->lost before it)."""
        self.prior_delivered = self.prior_mstamp = None
        self.is_app_limited = self.is_retrans = False
        self.rtt_us = self.interval_us = -1
        self.prior_in_flight = in_flight
        self.prior_lost = self.lost

    def skb_sent(self, p: Piece, packets_out: int, delivered: int, now: float) -> None:
        """Linux tcp_rate_skb_sent: piece ``p`` leaves (``packets_out`` before it): it notes
        the delivery state; with nothing out, the interval starts now."""
        if not packets_out:
            self.first_tx_mstamp = self.delivered_mstamp = now
        p.first_tx = self.first_tx_mstamp
        p.delivered_mstamp = self.delivered_mstamp
        p.delivered = delivered
        p.app_limited = self.app_limited != 0

    def skb_delivered(self, p: Piece, sacked: bool, now: float) -> None:
        """Linux tcp_rate_skb_delivered: piece ``p`` is (S)ACKed; the sample keeps the newest
        transmission's note (the highest prior delivered); a SACKed piece gives no second one
        when it is cumulatively acknowledged. The ACK's RTT (rs->rtt_us, tcp_ack_update_rtt's
        ca_rtt_us) is from the last piece delivered that was never retransmitted."""
        mstamp = p.delivered_mstamp
        if mstamp is None:
            return
        retrans = bool(p.flags & RETRANS_FLAGS)
        prior = self.prior_delivered
        if prior is None or p.delivered > prior:
            self.prior_delivered = p.delivered
            self.prior_mstamp = mstamp
            self.is_app_limited = p.app_limited
            self.is_retrans = retrans
            self.first_tx_mstamp = p.xmit
            self.interval_us = int((p.xmit - p.first_tx) * 1e6)
        if not retrans:
            self.rtt_us = int((now - p.xmit) * 1e6)
        if sacked:
            p.delivered_mstamp = None

    def gen(self, delivered_total: int, delivered: int, now: float, min_rtt: float) -> None:
        """Linux tcp_rate_gen: the ACK delivered ``delivered`` segments (``delivered_total``:
        tp->delivered after it). The sample: segments delivered since the newest piece's note,
        over the longer of its send and ACK phases (invalid, -1, without a note or below
        min_rtt); the last one not app-limited, or the highest app-limited, is kept."""
        if self.app_limited and delivered_total > self.app_limited:
            self.app_limited = 0  # the bubble is acknowledged and gone
        if delivered:
            self.delivered_mstamp = now
        self.acked_sacked = delivered
        self.losses = self.lost - self.prior_lost
        prior_mstamp = self.prior_mstamp
        prior = self.prior_delivered
        if prior_mstamp is None or prior is None:
            self.delivered = self.interval_us = -1
            return
        self.delivered = sample = delivered_total - prior
        interval = max(self.interval_us, int((now - prior_mstamp) * 1e6))
        if interval < int(min_rtt * 1e6):
            self.interval_us = -1
            return
        self.interval_us = interval
        if not self.is_app_limited or sample * self.rate_interval_us >= (
            self.rate_delivered * interval
        ):
            self.rate_delivered = sample
            self.rate_interval_us = interval
            self.rate_app_limited = self.is_app_limited

    def check_app_limited(
        self,
        unsent: int,
        mss: int,
        in_flight: int,
        cwnd: int,
        lost_out: int,
        retrans_out: int,
        delivered: int,
    ) -> None:
        """Linux tcp_rate_check_app_limited (at each write): less than a segment waits to go,
        the window is not the limit and every loss is retransmitted: the samples until what is
        in flight now is delivered are app-limited."""
        if unsent < mss and in_flight < cwnd and lost_out <= retrans_out:
            self.app_limited = (delivered + in_flight) or 1

    def delivery_rate(self, mss: int) -> int:
        """``tcpi_delivery_rate``: the kept sample in bytes a second (0: none yet)."""
        if not self.rate_interval_us:
            return 0
        return self.rate_delivered * mss * 1_000_000 // self.rate_interval_us
