"""Round-trip time estimation and the retransmission timeout (RFC 6298 with Linux's bounds).

One :class:`RttEstimator` per connection, as smoltcp's ``RttEstimator`` and aioquic's
``QuicPacketRecovery`` keep it: SRTT, RTTVAR and the RTO from the samples every ACK gives (Linux
tcp_ack_update_rtt: the sending time of what it delivered, Karn's rule, else its TS echo; the
connection takes them).
"""

from __future__ import annotations

#: Linux TCP_TIMEOUT_INIT, TCP_RTO_MIN, TCP_RTO_MAX (seconds).
RTO_INIT = 1.0
RTO_MIN = 0.2
RTO_MAX = 120.0
#: Linux caps the backoff shift (icsk_backoff) where the RTO reaches RTO_MAX anyway.
MAX_BACKOFF_SHIFT = 15


class RttEstimator:
    """SRTT, RTTVAR, RTO and min RTT of one connection."""

    __slots__ = ("min_rtt", "rto", "rttvar", "srtt")

    def __init__(self) -> None:
        self.srtt = 0.0
        self.rttvar = 0.0
        self.min_rtt = 0.0  # the smallest sample (Linux tcp_min_rtt, here over the lifetime)
        self.rto = RTO_INIT

    def sample(self, rtt: float, ca_rtt: float | None = None) -> None:
        """RFC 6298 with Linux's floor: RTO = SRTT + max(4 RTTVAR, 200 ms), at most 120 s;
        min_rtt from ``ca_rtt`` when given (Linux tcp_update_rtt_min: the last delivered
        piece's RTT), else ``rtt``."""
        least = rtt if ca_rtt is None else ca_rtt
        if not self.min_rtt or least < self.min_rtt:
            self.min_rtt = least
        if self.srtt == 0.0:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - rtt)
            self.srtt = 0.875 * self.srtt + 0.125 * rtt
        self.rto = min(max(self.srtt + max(4 * self.rttvar, RTO_MIN), RTO_MIN), RTO_MAX)

    def backed_off(self, backoff: int) -> float:
        """The RTO after ``backoff`` doublings, at most RTO_MAX."""
        return min(self.rto * (1 << min(backoff, MAX_BACKOFF_SHIFT)), RTO_MAX)
