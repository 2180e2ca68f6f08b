"""A socket's error queue (Linux ``sk_error_queue``), what recvmsg(MSG_ERRQUEUE) reads:
MSG_ZEROCOPY completions and SO_TIMESTAMPING's transmit timestamps, oldest first.

Zerocopy (msg_zerocopy_realloc, __msg_zerocopy_callback): every send that queued data takes
the next id; once the peer has acknowledged all of it, its id extends the newest notification
when that is a zerocopy one whose ids it follows, else it queues a new one. The skbs hold the
pinned pages (:class:`~fastopen.engine.segmentation.Frags`), but the engine's packets leave as
copies, as a TUN device copies them (skb_orphan_frags_rx: ee_code SO_EE_CODE_ZEROCOPY_COPIED).

Timestamps (tcp_tx_timestamp, __skb_tstamp_tx, tcp_ack_tstamp): a send on a socket with
SO_TIMESTAMPING's record flags marks the last byte it queued; the segment carrying it reports
SCM_TSTAMP_SCHED (SOF_TIMESTAMPING_TX_SCHED) and SCM_TSTAMP_SND (TX_SOFTWARE) when it leaves,
SCM_TSTAMP_ACK (TX_ACK) when an ACK first covers it; with OPT_ID the key is the byte's offset
from the sequence number SO_TIMESTAMPING was set at (snd_una; write_seq with OPT_ID_TCP).
The engine has no qdisc nor driver: the time of both is the time the segment is emitted.

A socket makes its queue when it first needs one; a connection's socket holds none.
"""

from __future__ import annotations

from typing import NamedTuple

from fastopen.engine.seq import MASK, seq_le, seq_lt

#: ee_origin of sock_extended_err (linux/errqueue.h), and the ee_info of a timestamp.
SO_EE_ORIGIN_TIMESTAMPING, SO_EE_ORIGIN_ZEROCOPY = 4, 5
SCM_TSTAMP_SND, SCM_TSTAMP_SCHED, SCM_TSTAMP_ACK = 0, 1, 2
#: SO_TIMESTAMPING's flags (linux/net_tstamp.h) the engine acts on; the mask of those Linux 6.x
#: takes (SOF_TIMESTAMPING_MASK up to SOF_TIMESTAMPING_OPT_RX_FILTER).
SOF_TIMESTAMPING_TX_HARDWARE = 1 << 0
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_TX_SCHED = 1 << 8
SOF_TIMESTAMPING_TX_ACK = 1 << 9
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
SOF_TIMESTAMPING_OPT_ID_TCP = 1 << 16
SOF_TIMESTAMPING_MASK = (1 << 18) - 1
#: SOF_TIMESTAMPING_TX_RECORD_MASK: the flags that mark a send's last byte.
TX_RECORD_MASK = (
    SOF_TIMESTAMPING_TX_HARDWARE
    | SOF_TIMESTAMPING_TX_SOFTWARE
    | SOF_TIMESTAMPING_TX_SCHED
    | SOF_TIMESTAMPING_TX_ACK
)


class Notice(NamedTuple):
    """One entry: its ee_origin, ee_info, ee_data and, for a timestamp, when (seconds)."""

    origin: int
    info: int
    data: int
    when: float = 0.0


class ErrorQueue:
    """The error queue of one socket, and the state that feeds it."""

    __slots__ = ("next_id", "pending", "ready", "stamps", "tsflags", "tskey")

    def __init__(self) -> None:
        self.next_id = 0
        self.pending: list[tuple[int, int]] = []  # zerocopy: (id, sequence number after it)
        self.ready: list[Notice] = []
        #: SO_TIMESTAMPING's flags and OPT_ID's base (Linux sk_tsflags, sk_tskey)
        self.tsflags = 0
        self.tskey = 0
        #: marked bytes: [sequence number, the SCM_TSTAMP_* bits still to report]
        self.stamps: list[list[int]] = []

    # -- zerocopy ----------------------------------------------------------------------------------

    def zerocopy_sent(self, end: int) -> None:
        self.pending.append((self.next_id, end))
        self.next_id = (self.next_id + 1) & MASK

    def zerocopy_acked(self, una: int | None) -> bool:
        """What ``una`` acknowledges (None: the connection is gone, every buffer freed);
        True when a notification came of it."""
        before = len(self.pending)
        while self.pending and (una is None or seq_le(self.pending[0][1], una)):
            ident, _ = self.pending.pop(0)
            last = self.ready[-1] if self.ready else None
            if (
                last is not None
                and last.origin == SO_EE_ORIGIN_ZEROCOPY
                and (last.data + 1) & MASK == ident
            ):
                self.ready[-1] = last._replace(data=ident)
            else:
                self.ready.append(Notice(SO_EE_ORIGIN_ZEROCOPY, ident, ident))
        return len(self.pending) < before

    # -- timestamps --------------------------------------------------------------------------------

    def set_timestamping(self, flags: int, snd_una: int, write_seq: int) -> None:
        """SO_TIMESTAMPING (sock_set_timestamping): OPT_ID, when newly set, takes its base."""
        if flags & SOF_TIMESTAMPING_OPT_ID and not self.tsflags & SOF_TIMESTAMPING_OPT_ID:
            self.tskey = write_seq if flags & SOF_TIMESTAMPING_OPT_ID_TCP else snd_una
        self.tsflags = flags

    def mark(self, last_byte: int) -> None:
        """tcp_tx_timestamp: a send's last byte, with what its flags ask to report."""
        flags = self.tsflags
        if not flags & TX_RECORD_MASK:
            return
        bits = 0
        if flags & SOF_TIMESTAMPING_TX_SCHED:
            bits |= 1 << SCM_TSTAMP_SCHED
        if flags & SOF_TIMESTAMPING_TX_SOFTWARE:
            bits |= 1 << SCM_TSTAMP_SND
        if flags & SOF_TIMESTAMPING_TX_ACK:
            bits |= 1 << SCM_TSTAMP_ACK
        self.stamps.append([last_byte, bits])

    def _report(self, seq: int, kind: int, now: float) -> None:
        key = (seq - self.tskey) & MASK if self.tsflags & SOF_TIMESTAMPING_OPT_ID else 0
        self.ready.append(Notice(SO_EE_ORIGIN_TIMESTAMPING, kind, key, now))

    def transmitted(self, seq: int, size: int, now: float) -> None:
        """A segment of ``size`` bytes at ``seq`` left: the marked bytes in it report SCHED
        then SND (dev_queue_xmit's, then the device's)."""
        for stamp in self.stamps:
            byte, bits = stamp
            if (byte - seq) & MASK < size:
                for kind in (SCM_TSTAMP_SCHED, SCM_TSTAMP_SND):
                    if bits & 1 << kind:
                        self._report(byte, kind, now)
                stamp[1] = bits & 1 << SCM_TSTAMP_ACK

    def acked(self, prior_una: int, una: int, now: float) -> None:
        """tcp_ack_tstamp: the marked bytes ``una`` newly acknowledges report ACK and go."""
        kept = []
        for stamp in self.stamps:
            byte, bits = stamp
            if seq_le(prior_una, byte) and seq_lt(byte, una):
                if bits & 1 << SCM_TSTAMP_ACK:
                    self._report(byte, SCM_TSTAMP_ACK, now)
            else:
                kept.append(stamp)
        self.stamps = kept
