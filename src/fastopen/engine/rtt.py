"""Round-trip time estimation and the retransmission timeout (RFC 6298 with Linux's bounds).

One :class:`RttEstimator` per connection, as smoltcp's ``RttEstimator`` and aioquic's
``QuicPacketRecovery`` keep it: samples from timestamps (every ACK) or from one timed segment at
a time (Karn's rule: never from a retransmission), SRTT, RTTVAR and the RTO.
"""

from __future__ import annotations

from fastopen.engine.seq import seq_le

#: Linux TCP_TIMEOUT_INIT, TCP_RTO_MIN, TCP_RTO_MAX (seconds).
RTO_INIT = 1.0
RTO_MIN = 0.2
RTO_MAX = 120.0
#: Linux caps the backoff shift (icsk_backoff) where the RTO reaches RTO_MAX anyway.
MAX_BACKOFF_SHIFT = 15


class RttEstimator:
    """SRTT, RTTVAR and RTO of one connection, and the segment being timed."""

    __slots__ = ("_timed_at", "_timed_seq", "min_rtt", "rto", "rttvar", "srtt")

    def __init__(self) -> None:
        self.srtt = 0.0
        self.rttvar = 0.0
        self.min_rtt = 0.0  # the smallest sample (Linux tcp_min_rtt, here over the lifetime)
        self.rto = RTO_INIT
        self._timed_seq: int | None = None
        self._timed_at = 0.0

    def sample(self, rtt: float) -> None:
        """RFC 6298 with Linux's floor: RTO = SRTT + max(4 RTTVAR, 200 ms), at most 120 s."""
        if not self.min_rtt or rtt < self.min_rtt:
            self.min_rtt = rtt
        if self.srtt == 0.0:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = min(max(self.srtt + max(4 * self.rttvar, RTO_MIN), RTO_MIN), RTO_MAX)

    def time_segment(self, end: int, now: float) -> None:
        """Time the segment ending at ``end`` sent at ``now``, unless one is timed already."""
        if self._timed_seq is None:
            self._timed_seq, self._timed_at = end, now

    def forget_timed(self) -> None:
        """A retransmission happened: the timed segment gives no sample (Karn)."""
        self._timed_seq = None

    def on_ack(self, ack: int, now: float) -> float | None:
        """``ack`` arrived: a sample (returned) when it covers the timed segment."""
        seq = self._timed_seq
        if seq is None or not seq_le(seq, ack):
            return None
        rtt = now - self._timed_at
        self.sample(rtt)
        self._timed_seq = None
        return rtt

    def backed_off(self, backoff: int) -> float:
        """The RTO after ``backoff`` doublings, at most RTO_MAX."""
        return min(self.rto * (1 << min(backoff, MAX_BACKOFF_SHIFT)), RTO_MAX)
