"""How much data one transmission carries, and where the sent data is cut, as Linux 6.x does.

Linux hands the device one packet of many MSS at a time (TSO, or GSO in software): as much as
``tcp_tso_autosize`` allows at the pacing rate (about 1 ms of it, ``sk_pacing_shift`` 10, at
least ``tcp_min_tso_segs``) and ``tcp_cwnd_test`` lets out (at most half the congestion window
at once, so that two such packets are in flight). Every first transmission of new data carries
PSH (on the last segment when the stack segments it itself). What was sent stays cut at those
boundaries in the retransmission queue (:class:`SentPieces`); a retransmission of part of a
piece splits it, and only the part that ends the piece carries its PSH (``tcp_fragment``).
"""

from __future__ import annotations

from collections import deque

from fastopen.engine.seq import MASK, seq_le, seq_lt

#: Linux sk_pacing_shift (about 1 ms of the pacing rate per TSO packet), tcp_tso_rtt_log, the
#: GSO size of a device (GSO_LEGACY_MAX_SIZE), tcp_pacing_ss_ratio and tcp_pacing_ca_ratio.
PACING_SHIFT = 10
TSO_RTT_LOG = 9
GSO_MAX_SIZE = 65536
PACING_SS_RATIO = 2.0
PACING_CA_RATIO = 1.2


def pacing_rate(mss: int, cwnd: int, ssthresh: int, packets_out: int, srtt: float) -> float:
    """Linux tcp_update_pacing_rate, bytes a second: 200 % (slow start) or 120 % of
    ``cwnd * mss / srtt``; 0 without an RTT sample (``sk_pacing_rate`` ~0UL: unlimited)."""
    if srtt <= 0:
        return 0.0
    ratio = PACING_SS_RATIO if cwnd < ssthresh // 2 else PACING_CA_RATIO
    return mss * ratio * max(cwnd, packets_out) / srtt


def tso_segs(
    mss: int,
    cwnd: int,
    ssthresh: int,
    packets_out: int,
    srtt: float,
    min_rtt: float,
    min_tso_segs: int,
) -> int:
    """Linux tcp_tso_autosize with tcp_update_pacing_rate: segments per TSO packet.

    At the :func:`pacing_rate`, about 1 ms of it; without an RTT sample a packet is as large as
    GSO allows. A short ``min_rtt`` adds ``GSO_MAX_SIZE >> (min_rtt_us >> tcp_tso_rtt_log)``
    bytes."""
    if srtt <= 0:
        size = GSO_MAX_SIZE
    else:
        rate = pacing_rate(mss, cwnd, ssthresh, packets_out, srtt)
        size = int(rate) >> PACING_SHIFT
        if min_rtt > 0:
            r = int(min_rtt * 1e6) >> TSO_RTT_LOG
            if r < 32:
                size += GSO_MAX_SIZE >> r
        size = min(size, GSO_MAX_SIZE)
    return max(size // mss, min_tso_segs)


def cwnd_quota(cwnd: int, in_flight: int) -> int:
    """Linux tcp_cwnd_test: the segments one transmission may add (at most half the window)."""
    if in_flight >= cwnd:
        return 0
    return min(max(cwnd >> 1, 1), cwnd - in_flight)


def segments(length: int, mss: int) -> int:
    """Linux tcp_skb_pcount: the segments ``length`` bytes take at ``mss``."""
    return -(-length // mss) if length > 0 else 0


class SentPieces:
    """The retransmission queue's boundaries: the end of each piece of data sent, whether it
    carries PSH and whether it was retransmitted (``tcp_skb_cb`` flags and TCPCB_RETRANS).

    A piece starts where the previous one ends (the first one at SND.UNA)."""

    __slots__ = ("_pieces",)

    def __init__(self) -> None:
        self._pieces: deque[list[int]] = deque()  # [end, psh, retransmitted]

    def sent(self, end: int) -> None:
        """New data up to ``end`` left as one piece (with PSH)."""
        self._pieces.append([end, 1, 0])

    def acked(self, una: int) -> None:
        """Everything up to ``una`` is acknowledged."""
        pieces = self._pieces
        while pieces and seq_le(pieces[0][0], una):
            pieces.popleft()

    def find(self, seq: int) -> tuple[int, bool] | None:
        """(end, psh) of the piece that holds ``seq``; None past the last piece."""
        for end, psh, _ in self._pieces:
            if seq_lt(seq, end):
                return end, bool(psh)
        return None

    def retransmitted(self, start: int, end: int) -> None:
        """``[start, end)`` went again: the piece holding it is cut at ``end`` (the head loses
        PSH, as tcp_fragment gives it to the tail), and the head is marked retransmitted."""
        pieces = self._pieces
        for i, piece in enumerate(pieces):
            if not seq_lt(start, piece[0]):
                continue
            if seq_lt(end, piece[0]):
                pieces.insert(i, [end, 0, 1])
            else:
                piece[2] = 1
            return

    def in_flight(self, una: int, mss: int) -> tuple[int, int]:
        """(segments, retransmitted segments) of the pieces after ``una`` (Linux packets_out
        and retrans_out, by tcp_skb_pcount)."""
        total = retrans = 0
        start = una
        for end, _, rtx in self._pieces:
            if seq_le(end, una):
                continue
            n = segments((end - start) & MASK, mss)
            total += n
            if rtx:
                retrans += n
            start = end
        return total, retrans
