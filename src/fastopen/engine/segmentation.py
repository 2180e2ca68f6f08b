"""How much data one transmission carries, and where the sent data is cut, as Linux 6.x does.

Linux hands the device one packet of many MSS at a time (TSO, or GSO in software): as much as
``tcp_tso_autosize`` allows at the pacing rate (about 1 ms of it, ``sk_pacing_shift`` 10, at
least ``tcp_min_tso_segs``) and ``tcp_cwnd_test`` lets out (at most half the congestion window
at once, so that two such packets are in flight). A piece has PSH when it ends what a send
pushed (``tcp_mark_push``); on the wire every packet of more than one segment carries PSH too (on
its last segment when the stack segments it itself), as Linux 6.18 sends them. What was sent
stays cut at those boundaries in the retransmission queue (:class:`SentPieces`); a retransmission
of part of a piece splits it, and only the part that ends the piece keeps its PSH
(``tcp_fragment``).

The queue is also the SACK scoreboard (RFC 6675 as Linux keeps it in ``tcp_skb_cb->sacked``): each
piece is SACKed, lost and/or retransmitted, with its last transmission time for RACK (RFC 8985,
``tcp_rack_detect_loss``); ``packets_out``, ``sacked_out``, ``lost_out`` and ``retrans_out`` are
kept as Linux keeps them, in segments (``tcp_skb_pcount``).

Before that, a send cuts the queued data in skbs (``tcp_sendmsg_locked``): at the size goal, and
with MSG_ZEROCOPY where the last skb runs out of page fragments (:class:`Frags`: each page of
each buffer of the send is one, at most ``MAX_SKB_FRAGS``; :class:`Iov`).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from itertools import accumulate

from fastopen.engine.rate import RETRANS_FLAGS, DeliveryRate
from fastopen.engine.seq import MASK, seq_le, seq_lt

#: Linux sk_pacing_shift (about 1 ms of the pacing rate per TSO packet), tcp_tso_rtt_log and
#: the GSO size of a device (GSO_LEGACY_MAX_SIZE).
PACING_SHIFT = 10
TSO_RTT_LOG = 9
GSO_MAX_SIZE = 65536


def pacing_rate(
    mss: int,
    cwnd: int,
    ssthresh: int,
    packets_out: int,
    srtt: float,
    ss_ratio: int,
    ca_ratio: int,
) -> float:
    """Linux tcp_update_pacing_rate, bytes a second: ``ss_ratio`` percent (tcp_pacing_ss_ratio,
    in slow start below half ssthresh) or ``ca_ratio`` percent (tcp_pacing_ca_ratio) of
    ``cwnd * mss / srtt``; 0 without an RTT sample (``sk_pacing_rate`` ~0UL: unlimited)."""
    if srtt <= 0:
        return 0.0
    ratio = ss_ratio if cwnd < ssthresh // 2 else ca_ratio
    return mss * ratio * max(cwnd, packets_out) / (100 * srtt)


def tso_segs(mss: int, rate: float, min_rtt: float, min_tso_segs: int) -> int:
    """Linux tcp_tso_autosize: segments per TSO packet, about 1 ms of the pacing ``rate``
    (bytes a second; 0, none yet: as large as GSO allows). A short ``min_rtt`` adds
    ``GSO_MAX_SIZE >> (min_rtt_us >> tcp_tso_rtt_log)`` bytes."""
    if not rate:
        size = GSO_MAX_SIZE
    else:
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


#: Linux MAX_SKB_FRAGS (CONFIG_MAX_SKB_FRAGS; also net.core.max_skb_frags's default, the bound
#: of a copy into an skb) and the size of a page of the buffers MSG_ZEROCOPY pins.
MAX_SKB_FRAGS = 17
PAGE_SIZE = 4096


class Iov:
    """The buffers of one sendmsg (msg_iov) as MSG_ZEROCOPY pins them in skbs: each of their
    pages is a fragment of its own (Linux zerocopy_fill_skb_from_iter takes a buffer's pages,
    and merges a page into the last fragment only where it continues it in memory, which
    separately allocated buffers, as packetdrill's, do not), each buffer taken as starting a
    page."""

    __slots__ = ("ends", "i")

    def __init__(self, lengths: Iterable[int]) -> None:
        self.ends = list(accumulate(lengths))  # where each buffer ends in the send's data
        self.i = 0  # the buffer the send is in

    def fragment(self, pos: int, size: int) -> int:
        """Of the ``size`` bytes at offset ``pos`` of the send's data (the send goes forward),
        how many one fragment holds: up to the end of their page or of their buffer."""
        ends = self.ends
        i = self.i
        while ends[i] <= pos:
            i += 1
        self.i = i
        offset = pos - (ends[i - 1] if i else 0)
        return min(PAGE_SIZE - offset % PAGE_SIZE, ends[i] - pos, size)


class Frags:
    """The page fragments of the write queue's last skb once it holds zerocopy pages (Linux
    skb_shinfo(skb)->frags of an skb_zcopy skb): where each ends, oldest first, and whether the
    last holds copied bytes (the socket's page frag, which the next copy extends:
    skb_can_coalesce). Only the fragments not sent yet count: a transmission of part of the skb
    took the others with it (tso_fragment)."""

    __slots__ = ("copied", "ends")

    def __init__(self, ends: list[int]) -> None:
        self.ends = ends
        self.copied = bool(ends)  # the skb's bytes so far were copied: one fragment

    def _unsent(self, nxt: int) -> list[int]:
        ends = self.ends
        while ends and seq_le(ends[0], nxt):
            ends.pop(0)
        return ends

    def copy(self, nxt: int, end: int) -> bool:
        """A copy of the bytes up to ``end`` (tcp_sendmsg_locked without zerocopy): they extend
        the last fragment when it holds copied bytes, else take a new one below
        ``MAX_SKB_FRAGS``; False when there is none (tcp_mark_push, a new skb)."""
        ends = self._unsent(nxt)
        if self.copied:
            ends[-1] = end
            return True
        if len(ends) >= MAX_SKB_FRAGS:
            return False
        ends.append(end)
        self.copied = True
        return True

    def pin(self, iov: Iov, pos: int, seq: int, size: int, nxt: int) -> int:
        """Linux skb_zerocopy_iter_stream: up to ``size`` bytes of the send's data from offset
        ``pos`` (queued from ``seq``) pinned, a fragment per page, while the skb has fewer than
        ``MAX_SKB_FRAGS``; the bytes taken (0: -EMSGSIZE, tcp_mark_push and a new skb)."""
        ends = self._unsent(nxt)
        taken = 0
        while taken < size and len(ends) < MAX_SKB_FRAGS:
            taken += iov.fragment(pos + taken, size - taken)
            ends.append((seq + taken) & MASK)
        if taken:
            self.copied = False
        return taken


class Skbs:
    """What the write queue's skbs are beyond their bytes, made when first needed: the ends no
    segment of new data crosses, oldest first (``cuts``): a record's end (MSG_EOR, Linux
    TCP_SKB_CB(skb)->eor: tcp_skb_can_collapse_to), where no send adds to the skb either, and
    the edges of an skb with zerocopy pages (skb_shift moves no fragment to or from one:
    tcp_grow_skb never joins it to its neighbour); and the last skb's :class:`Frags` once it
    holds zerocopy pages (``frags``, else None)."""

    __slots__ = ("cuts", "frags")

    def __init__(self) -> None:
        self.cuts: list[int] = []
        self.frags: Frags | None = None


#: Linux tcp_reordering (the initial degree) and tcp_max_reordering.
REORDERING = 3
MAX_REORDERING = 300
#: Piece flags: Linux TCPCB_SACKED_ACKED, TCPCB_LOST, TCPCB_SACKED_RETRANS (a retransmission in
#: flight), TCPCB_EVER_RETRANS; and the piece's PSH and FIN.
F_PSH = 1
F_SACKED = 2
F_LOST = 4
F_RETRANS = 8
F_EVER = 16
F_FIN = 32
assert RETRANS_FLAGS == F_RETRANS | F_EVER
#: SentPieces.first_ackt once an ACK acknowledged a retransmitted piece: no RTT sample (Karn).
RETRANS_ACKED = -1.0


def sent_after(a: Piece, t2: float, order2: int, end2: int) -> bool:
    """Linux tcp_skb_sent_after: piece ``a`` left after the transmission (t2, order2, end2);
    in one instant, by the transmissions' order, then (the segments of one) by sequence (Linux
    only estimates the order by end sequence)."""
    t1, order1 = a.xmit, a.order
    return t1 > t2 or (t1 == t2 and (order1 > order2 or (order1 == order2 and seq_lt(end2, a.end))))


class Piece:
    """One piece of the retransmission queue (a Linux skb): ``[start, end)``, its segments, its
    flags, when it last left and that transmission's number (the order in one instant), and the
    delivery state its last transmission noted (Linux ``tcp_skb_cb->tx``, :mod:`.rate`:
    ``delivered``, ``delivered_mstamp``, None once SACKed, ``first_tx`` and ``app_limited``)."""

    __slots__ = (
        "app_limited",
        "delivered",
        "delivered_mstamp",
        "end",
        "first_tx",
        "flags",
        "order",
        "pcount",
        "start",
        "xmit",
    )
    # set by DeliveryRate.skb_sent as the piece leaves (or copied by a split)
    delivered: int
    delivered_mstamp: float | None
    first_tx: float
    app_limited: bool

    def __init__(
        self, start: int, end: int, pcount: int, flags: int, xmit: float, order: int
    ) -> None:
        self.start, self.end, self.pcount, self.flags = start, end, pcount, flags
        self.xmit, self.order = xmit, order

    def data_len(self) -> int:
        """Bytes of data (the FIN takes a sequence number, not a byte)."""
        return ((self.end - self.start) & MASK) - (1 if self.flags & F_FIN else 0)


class SentPieces:
    """The retransmission queue and SACK scoreboard: what was sent and not yet acknowledged, in
    pieces as they left, oldest first, with the RACK state of the newest delivery and the
    delivery rate sampler (``rate``, made with the first piece sent or the first write).

    Created empty (no queue until the first piece is sent, and none once all is acknowledged)."""

    __slots__ = (
        "_pieces",
        "fack",
        "first_ackt",
        "first_sackt",
        "last_deliveredt",
        "lost_out",
        "orig_delivered",
        "packets_out",
        "prior_fack",
        "rack_advanced",
        "rack_end",
        "rack_order",
        "rack_rtt",
        "rack_xmit",
        "rate",
        "reord_seen",
        "reordering",
        "retrans_out",
        "sacked_out",
        "sends",
    )

    def __init__(self) -> None:
        self._pieces: deque[Piece] | None = None
        self.packets_out = self.sacked_out = self.lost_out = self.retrans_out = 0
        self.fack = 0  # Linux tcp_highest_sack_seq: the highest end SACKed (with sacked_out)
        # Linux tcp_ack's prior_fack: the highest SACKed before this ACK, else SND.UNA
        self.prior_fack: int | None = None
        # RACK (Linux tp->rack): the newest delivered transmission, its RTT, news since
        self.rack_xmit = 0.0
        self.rack_order = 0
        self.rack_end = 0
        self.sends = 0  # transmissions numbered, for RACK's order within one instant
        self.rack_rtt = 0.0
        self.rack_advanced = False
        self.orig_delivered = False  # Linux FLAG_ORIG_SACK_ACKED: never-retransmitted data came
        self.reord_seen = 0  # ACKs that showed reordering (Linux tp->reord_seen)
        self.reordering = REORDERING  # Linux tp->reordering: its degree, in segments
        self.rate: DeliveryRate | None = None
        # what this ACK delivered, for its RTT sample (Linux tcp_clean_rtx_queue's first_ackt,
        # tcp_sacktag_one's first_sackt): the sending time of the first never-retransmitted
        # piece it acknowledged (RETRANS_ACKED once it acknowledged a retransmitted one: Karn,
        # FLAG_RETRANS_DATA_ACKED), of the first it SACKed, and of the last it SACKed, else
        # acknowledged (last_sackt, else last_ackt: ca_rtt_us)
        self.first_ackt: float | None = None
        self.first_sackt: float | None = None
        self.last_deliveredt = 0.0

    # -- bookkeeping -------------------------------------------------------------------------------

    def _add(self, p: Piece) -> None:
        n, f = p.pcount, p.flags
        self.packets_out += n
        if f & F_SACKED:
            self.sacked_out += n
        if f & F_LOST:
            self.lost_out += n
        if f & F_RETRANS:
            self.retrans_out += n

    def _remove(self, p: Piece) -> None:
        n, f = p.pcount, p.flags
        self.packets_out -= n
        if f & F_SACKED:
            self.sacked_out -= n
        if f & F_LOST:
            self.lost_out -= n
        if f & F_RETRANS:
            self.retrans_out -= n

    @staticmethod
    def _count(p: Piece, mss: int) -> int:
        return max(segments(p.data_len(), mss), 1)

    def _split(self, i: int, at: int, mss: int) -> Piece:
        """Linux tcp_fragment: cut piece ``i`` at ``at``; the tail keeps PSH and FIN, both halves
        the rest of the flags and the time. Returns the head."""
        pieces = self._pieces
        assert pieces is not None
        p = pieces[i]
        self._remove(p)
        tail = Piece(at, p.end, 0, p.flags, p.xmit, p.order)
        tail.delivered, tail.delivered_mstamp = p.delivered, p.delivered_mstamp
        tail.first_tx, tail.app_limited = p.first_tx, p.app_limited
        p.end = at
        p.flags &= ~(F_PSH | F_FIN)
        p.pcount = self._count(p, mss)
        tail.pcount = self._count(tail, mss)
        self._add(p)
        self._add(tail)
        pieces.insert(i + 1, tail)
        return p

    def _mark_lost(self, p: Piece, counters: Counter[str]) -> int:
        """Linux tcp_mark_skb_lost: a retransmission in flight is lost too (TCPLostRetransmit);
        returns the segments newly lost."""
        f = p.flags
        if f & F_RETRANS:
            self.retrans_out -= p.pcount
            counters["TCPLostRetransmit"] += p.pcount
            p.flags = f = f & ~F_RETRANS
            if f & F_LOST:
                return 0
        if f & F_LOST:
            return 0
        p.flags = f | F_LOST
        self.lost_out += p.pcount
        rate = self.rate
        if rate is not None:
            rate.lost += p.pcount  # Linux tp->lost
        return p.pcount

    def _reorder(self, fack: int, low: int, mss: int) -> None:
        """Linux tcp_check_sack_reordering: ``low`` arrived after data up to ``fack``; the
        reordering degree grows to that distance in segments (at most tcp_max_reordering); one
        event for each ACK that shows it (tp->reord_seen)."""
        self.reord_seen += 1
        metric = (fack - low) & MASK
        if metric > self.reordering * mss:
            self.reordering = min(-(-metric // mss), MAX_REORDERING)

    def _delivered(self, p: Piece, now: float, min_rtt: float) -> None:
        """Linux tcp_rate_skb_delivered, then tcp_rack_advance: RACK learns from a newly
        delivered piece, unless it was retransmitted and the sample is below min_rtt (the
        original was delivered)."""
        rate = self.rate
        if rate is not None:
            rate.skb_delivered(p, bool(p.flags & F_SACKED), now)
        if not p.flags & F_EVER:
            self.orig_delivered = True
        rtt = now - p.xmit
        if p.flags & F_EVER and rtt < min_rtt:
            return
        self.rack_advanced = True
        self.rack_rtt = rtt
        if sent_after(p, self.rack_xmit, self.rack_order, self.rack_end):
            self.rack_xmit, self.rack_order, self.rack_end = p.xmit, p.order, p.end

    def skbs(self) -> int:
        """The pieces queued: the skbs of Linux's retransmission queue, each charged its
        truesize (:meth:`.Connection.wmem_queued`)."""
        pieces = self._pieces
        return len(pieces) if pieces is not None else 0

    # -- events ------------------------------------------------------------------------------------

    def begin_ack(self, una: int) -> None:
        """An ACK arrives at SND.UNA ``una``: what it shows is judged against the scoreboard
        before it (Linux tcp_highest_sack_seq: SND.UNA with nothing SACKed)."""
        self.prior_fack = self.fack if self.sacked_out else una
        self.orig_delivered = False
        self.first_ackt = self.first_sackt = None

    def sent(
        self,
        start: int,
        end: int,
        fin: bool,
        mss: int,
        now: float,
        psh: bool = True,
        delivered: int = 0,
    ) -> None:
        """New data ``[start, end)`` (its FIN included) left as one piece, with PSH or not,
        ``delivered`` segments delivered so far (tcp_rate_skb_sent notes it)."""
        if self._pieces is None:
            self._pieces = deque()
        rate = self.rate
        if rate is None:
            rate = self.rate = DeliveryRate()
        self.sends += 1
        flags = (F_PSH if psh else 0) | (F_FIN if fin else 0)
        p = Piece(start, end, 0, flags, now, self.sends)
        p.pcount = self._count(p, mss)
        rate.skb_sent(p, self.packets_out, delivered, now)
        self._pieces.append(p)
        self.packets_out += p.pcount

    def acked(self, una: int, mss: int, now: float, min_rtt: float) -> tuple[int, int]:
        """Everything below ``una`` is acknowledged (Linux tcp_clean_rtx_queue, tcp_trim_head):
        (segments acknowledged, those not SACKed before). A piece of one segment partly
        acknowledged stays whole (Linux trims only a TSO skb, tcp_tso_acked), so when the rest
        is acknowledged it starts below the SND.UNA before: a hole filled late, reordering."""
        pieces = self._pieces
        acked = fresh = 0
        reord: int | None = None  # the lowest never-retransmitted piece delivered here
        while pieces and seq_lt(pieces[0].start, una):
            p = pieces[0]
            start = p.start
            if seq_lt(una, p.end):  # partly: a TSO piece loses its head (tcp_tso_acked)
                if p.pcount == 1:
                    break
                self._remove(p)
                before = p.pcount
                p.start = una
                p.pcount = self._count(p, mss)
                self._add(p)
                gone = before - p.pcount
                acked += gone
                if gone:
                    self._ack_time(p)
                if not p.flags & F_SACKED:
                    fresh += gone
                    if gone:
                        self._delivered(p, now, min_rtt)
                        if not p.flags & F_EVER and reord is None:
                            reord = start
                break
            pieces.popleft()
            self._remove(p)
            acked += p.pcount
            self._ack_time(p)
            if not p.flags & F_SACKED:
                fresh += p.pcount
                self._delivered(p, now, min_rtt)
                if not p.flags & F_EVER and reord is None:
                    reord = start
        fack = self.prior_fack
        if reord is not None and fack is not None and seq_lt(reord, fack):
            # late, below what was SACKed before: one event for the ACK
            self._reorder(self.fack if self.sacked_out else una, reord, mss)
        if not pieces:
            self._pieces = None
        return acked, fresh

    def _ack_time(self, p: Piece) -> None:
        """Linux tcp_clean_rtx_queue: an acknowledged piece's sending time for the RTT, unless
        it was ever retransmitted (then this ACK gives none) or SACKed before."""
        if p.flags & RETRANS_FLAGS:
            self.first_ackt = RETRANS_ACKED
        elif not p.flags & F_SACKED and self.first_ackt != RETRANS_ACKED:
            if self.first_ackt is None:
                self.first_ackt = p.xmit
            if self.first_sackt is None:
                self.last_deliveredt = p.xmit

    def sack(self, blocks: list[tuple[int, int]], mss: int, now: float, min_rtt: float) -> int:
        """Linux tcp_sacktag_write_queue: mark the pieces ``blocks`` cover (cut at their edges);
        a SACKed piece is no longer lost nor in flight. Returns the segments newly SACKed."""
        pieces = self._pieces
        if not pieces:
            return 0
        newly = 0
        fack = self.fack if self.sacked_out else pieces[0].start
        reord: int | None = None  # the lowest such hole filled
        for start, end in blocks:
            i = 0
            while i < len(pieces):
                p = pieces[i]
                if seq_le(p.end, start) or p.flags & F_SACKED:
                    i += 1
                    continue
                if seq_le(end, p.start):
                    break
                # Linux tcp_match_skb_to_sack: cut at whole segments, SACK only whole ones
                if seq_lt(p.start, start):
                    cut = (p.start + -(-((start - p.start) & MASK) // mss) * mss) & MASK
                    if seq_lt(cut, p.end):
                        self._split(i, cut, mss)
                    i += 1
                    continue
                if seq_lt(end, p.end):
                    cut = (p.start + ((end - p.start) & MASK) // mss * mss) & MASK
                    if cut == p.start:
                        i += 1
                        continue
                    p = self._split(i, cut, mss)
                self._remove(p)
                if not p.flags & F_EVER and seq_lt(p.end, fack):
                    # a hole filled below the highest SACK
                    reord = p.start if reord is None or seq_lt(p.start, reord) else reord
                if not p.flags & RETRANS_FLAGS:  # Linux tcp_sacktag_one: first_sackt
                    self.last_deliveredt = p.xmit
                    if self.first_sackt is None:
                        self.first_sackt = p.xmit
                p.flags = (p.flags | F_SACKED) & ~(F_LOST | F_RETRANS)
                self._add(p)
                newly += p.pcount
                self._delivered(p, now, min_rtt)
                if seq_lt(self.fack, p.end) or self.sacked_out == p.pcount:
                    self.fack = p.end
                i += 1
        if reord is not None:
            self._reorder(self.fack, reord, mss)  # one event for the SACK (tcp_sacktag_write_queue)
        return newly

    def retransmitted_in(self, start: int, end: int) -> int:
        """The segments of the pieces within ``[start, end)`` sent more than once (Linux
        tcp_sacktag_one on a D-SACK block: TCPCB_RETRANS)."""
        n = 0
        for p in self._pieces or ():
            if seq_le(end, p.start):
                break
            if seq_le(start, p.start) and seq_le(p.end, end) and p.flags & RETRANS_FLAGS:
                n += p.pcount
        return n

    def rack_mark_lost(
        self, now: float, reo_wnd: float, counters: Counter[str]
    ) -> tuple[int, float]:
        """Linux tcp_rack_detect_loss: every piece sent before the newest delivered one and
        older than the RACK RTT plus ``reo_wnd`` is lost. (segments newly lost, seconds until
        the next one would be: 0 for none)."""
        self.rack_advanced = False
        lost = 0
        wait = 0.0
        for p in self._pieces or ():
            f = p.flags
            if f & F_SACKED or (f & F_LOST and not f & F_RETRANS):
                continue
            if sent_after(p, self.rack_xmit, self.rack_order, self.rack_end):
                if not f & F_RETRANS:
                    break  # the pieces after it were sent later still (Linux: tsorted order)
                continue
            if p.xmit == self.rack_xmit and p.order == self.rack_order and p.end == self.rack_end:
                continue
            remaining = p.xmit + self.rack_rtt + reo_wnd - now
            if remaining <= 1e-9:
                lost += self._mark_lost(p, counters)
            elif remaining > wait:
                wait = remaining
        return lost, wait

    def mark_all_lost(self, counters: Counter[str]) -> None:
        """Linux tcp_timeout_mark_lost: a timeout, every piece not SACKed is lost."""
        for p in self._pieces or ():
            if not p.flags & F_SACKED:
                self._mark_lost(p, counters)

    def unmark_lost(self) -> None:
        """Linux tcp_undo_cwnd_reduction(unmark_loss): the losses were not (a spurious RTO)."""
        for p in self._pieces or ():
            if p.flags & F_LOST:
                p.flags &= ~F_LOST
                self.lost_out -= p.pcount

    def mark_head_lost(self, mss: int, counters: Counter[str]) -> None:
        """Linux tcp_newreno_mark_lost: the first MSS of the head is lost."""
        pieces = self._pieces
        if not pieces or pieces[0].flags & (F_LOST | F_SACKED):
            return
        p = pieces[0]
        if p.data_len() > mss:
            p = self._split(0, (p.start + mss) & MASK, mss)
        self._mark_lost(p, counters)

    def mark_too_big(self, mss: int, counters: Counter[str]) -> None:
        """Linux tcp_simple_retransmit: the pieces cut in segments larger than ``mss`` are lost."""
        for p in self._pieces or ():
            if not p.flags & F_SACKED and p.data_len() > p.pcount * mss:
                self._mark_lost(p, counters)

    def to_retransmit(self) -> Piece | None:
        """The first piece lost and not yet retransmitted (tcp_xmit_retransmit_queue)."""
        for p in self._pieces or ():
            if p.flags & (F_LOST | F_RETRANS | F_SACKED) == F_LOST:
                return p
        return None

    def head(self) -> Piece | None:
        """The oldest piece not acknowledged."""
        return self._pieces[0] if self._pieces else None

    def tail(self, mss: int) -> Piece | None:
        """The newest piece, cut to its last segment (Linux tcp_send_loss_probe)."""
        pieces = self._pieces
        if not pieces:
            return None
        p = pieces[-1]
        if p.pcount > 1:
            at = (p.start + (p.pcount - 1) * mss) & MASK
            self._split(len(pieces) - 1, at, mss)
            p = pieces[-1]
        return p

    @staticmethod
    def trim_acked(p: Piece, una: int) -> None:
        """Linux __tcp_retransmit_skb's tcp_trim_head: a piece partly acknowledged (one
        segment, which :meth:`acked` leaves whole) goes again from ``una``."""
        if seq_lt(p.start, una):
            p.start = una

    def retransmitted(
        self, start: int, end: int, mss: int, now: float, delivered: int = 0, sent: bool = True
    ) -> Piece | None:
        """``[start, end)`` went again, from the start of a piece: the piece is cut at ``end``
        (the head loses PSH and FIN, as tcp_fragment gives them to the tail) and the head is
        marked retransmitted at ``now``, noting ``delivered`` (tcp_rate_skb_sent). Not
        ``sent`` (the device refused it): stamped ``now`` and ever retransmitted (no RTT
        sample from it), but not in flight again (__tcp_retransmit_skb's error path). Returns
        the head."""
        pieces = self._pieces
        if not pieces:
            return None
        for i, p in enumerate(pieces):
            if not seq_lt(start, p.end):
                continue
            if seq_lt(end, p.end):
                p = self._split(i, end, mss)
            self._remove(p)
            p.flags |= (F_RETRANS | F_EVER) if sent else F_EVER
            p.xmit = now
            self.sends += 1
            p.order = self.sends
            p.pcount = self._count(p, mss)
            self._add(p)
            if self.rate is not None and sent:
                self.rate.skb_sent(p, self.packets_out, delivered, now)
            return p
        return None
