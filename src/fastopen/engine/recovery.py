"""Loss recovery and congestion state of one connection (Linux tcp_ack, tcp_fastretrans_alert).

Kept apart from the TCB as aioquic's ``recovery.py`` keeps it: the segments in flight (counted,
never derived by dividing by a segment size), delivery accounting (``tcpi_delivered``), duplicate
ACKs and fast retransmit, the congestion window (NewReno: slow start, congestion avoidance, a
window of one after a timeout). Congestion control, SACK scoreboard and RACK grow here.
"""

from __future__ import annotations

from collections import deque

from fastopen.engine.seq import HALF, MASK

#: Linux TCP_INIT_CWND (segments).
INIT_CWND = 10
#: RFC 5681: the duplicate ACKs that trigger a fast retransmit (Linux tcp_reordering default).
DUPACK_THRESHOLD = 3


class Recovery:
    """Segments in flight, delivery, duplicate ACKs and the congestion window."""

    __slots__ = (
        "_cwnd_cnt",
        "_reno_sacked",
        "_sent_ends",
        "cwnd",
        "delivered",
        "dupacks",
        "ssthresh",
    )

    def __init__(self) -> None:
        self.cwnd = INIT_CWND
        self.ssthresh = 0x7FFFFFFF
        self._cwnd_cnt = 0
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

    def on_ack(self, ack: int, sack_ok: bool) -> None:
        """``ack`` acknowledged new data: delivery, the congestion window, no duplicates."""
        ends = self._sent_ends
        if ends and ((ack - ends[0]) & MASK) < HALF:  # the oldest segment sent is acked
            self._count_delivered(ack, sack_ok)
        self.dupacks = 0
        if self.cwnd < self.ssthresh:
            self.cwnd += 1  # slow start
        else:  # congestion avoidance: one segment per window of ACKs (RFC 5681)
            self._cwnd_cnt += 1
            if self._cwnd_cnt >= self.cwnd:
                self._cwnd_cnt = 0
                self.cwnd += 1

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
            self.ssthresh = max(self.packets_out // 2, 2)
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
        self.ssthresh = max(self.packets_out // 2, 2)
        self.cwnd = self.ssthresh
        return True

    def on_timeout(self) -> None:
        """The retransmission timer fired with data in flight: a window of one (RFC 5681)."""
        self.ssthresh = max(self.packets_out // 2, 2)
        self.cwnd = 1

    def syn_data_acked(self) -> None:
        """Linux: SYN data counts as two packets in tcp_ack(), one delivery."""
        if self.delivered > 1:
            self.delivered -= 1

    def handshake_acked(self) -> None:
        """Linux: the SYN-ACK's delivery is not tracked in tcp_ack; the third ACK counts it."""
        self.delivered += 1
