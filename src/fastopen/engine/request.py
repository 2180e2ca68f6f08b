"""Request sockets: what a listener keeps of a SYN until the handshake's ACK (Linux
``struct request_sock``, ``reqsk_timer_handler``).

A SYN that gets no fast open leaves only a :class:`RequestSock` (a few hundred bytes: the
4-tuple, both ISNs, the negotiated options, the SYN-ACK timer), counted in the listener's SYN
queue. The first segment for it other than a retransmitted SYN turns it into a full
:class:`~fastopen.engine.tcb.Connection` (the host does that), which takes the segment from
there; the SYN-ACK timer retransmits and finally drops it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastopen.engine import md5
from fastopen.engine.cache import IPAddress
from fastopen.engine.context import ConnectionContext
from fastopen.engine.handshake import TS_OPTION_LEN, Negotiated, initial_window, ts_clock
from fastopen.engine.rtt import RTO_INIT, RTO_MAX
from fastopen.engine.seq import MASK, RST, SYN
from fastopen.wire import FastOpen, Flags, TcpSegment, Timestamps, linux_synack_options

if TYPE_CHECKING:
    from fastopen.engine.socket import EngineSocket

#: Linux: with more than half the SYN queue taken, old requests get fewer retransmissions, but
#: never fewer than this (reqsk_timer_handler).
MIN_SYNACK_RETRIES = 2
#: Linux: the young-request rule starts at this queue length (max(8, backlog)).
MIN_PRUNE_QLEN = 8


class RequestSock:
    """One pending passive open that carried no fast open (Linux ``tcp_request_sock``)."""

    __slots__ = (
        "_rto_at",
        "adv_mss",
        "ctx",
        "irs",
        "iss",
        "key",
        "listener",
        "neg",
        "pushed_at",
        "rcv_wnd_init",
        "rcv_wscale",
        "retransmits",
        "sent_at",
        "tsoffset",
        "usec_ts",
        "window",
    )

    def __init__(
        self,
        ctx: ConnectionContext,
        listener: EngineSocket,
        key: tuple[IPAddress, int, IPAddress, int],
        irs: int,
        window: int,
        neg: Negotiated,
        iss: int,
    ) -> None:
        settings = ctx.settings
        local, _, remote, _ = key
        self.ctx = ctx
        self.listener = listener
        self.key = key
        self.irs = irs
        self.iss = iss
        self.neg = neg
        self.window = window
        self.adv_mss = ctx.adv_mss(local)
        user_mss = listener.options.user_mss
        if user_mss:  # Linux tcp_mss_clamp: the listener's TCP_MAXSEG
            self.adv_mss = min(self.adv_mss, user_mss)
        mss = self.adv_mss - (TS_OPTION_LEN if neg.ts_ok else 0)
        self.rcv_wnd_init = initial_window(listener.rcvbuf, mss)
        self.rcv_wscale = settings.wscale if settings.window_scaling and neg.wscale_ok else 0
        self.tsoffset = ctx.choose_tsoffset(local, remote) if neg.ts_ok else 0
        #: Linux req_usec_ts: a SYN with timestamps on a route with features tcp_usec_ts.
        self.usec_ts = neg.ts_ok and settings.usec_ts(remote)
        self.retransmits = 0
        self.sent_at = 0.0
        self._rto_at: float | None = None
        self.pushed_at: float | None = None

    def send_synack(
        self, now: float, fastopen: FastOpen | None = None, tsval: int | None = None
    ) -> None:
        """The SYN-ACK (``tsval``: a SYN cookie's TS value instead of the clock's)."""
        if self.neg.ts_ok:
            value = ts_clock(now, self.usec_ts) if tsval is None else tsval
            tsval = (value + self.tsoffset) & MASK
        local, lport, remote, rport = self.key
        seg = synack_segment(
            lport,
            rport,
            self.iss,
            self.irs,
            self.neg,
            self.adv_mss,
            self.rcv_wscale,
            self.rcv_wnd_init,
            tsval,
            fastopen,
            self.listener.options.ip_header(local.version),
        )
        keys = self.listener.options.md5_keys
        key = md5.lookup(keys, remote) if keys else None
        if key is not None:  # Linux tcp_v4_send_synack: the listener's key for the peer signs
            seg = md5.sign(key, local, remote, seg)
        self.ctx.output(local, remote, seg)

    def start(self, now: float, fastopen: FastOpen | None) -> None:
        """The first SYN-ACK (with the cookie option the SYN asked for, if any) and its timer."""
        self.sent_at = now
        self.send_synack(now, fastopen)
        self._rto_at = now + RTO_INIT
        self.ctx.schedule(self, self._rto_at)

    def is_syn_again(self, seg: TcpSegment) -> bool:
        """The peer sent its SYN again (our SYN-ACK was lost): answer with the SYN-ACK."""
        flags = int(seg.flags)
        return bool(flags & SYN) and not flags & RST and seg.seq == self.irs

    def deadline(self) -> float | None:
        return self._rto_at

    def _max_retries(self) -> int:
        """TCP_SYNCNT of the listener or tcp_synack_retries, fewer for old requests when the
        queue is more than half full of them (Linux reqsk_timer_handler)."""
        listener = self.listener
        retries = listener.options.syn_retries or self.ctx.settings.synack_retries
        queue = listener.listen_queue
        qlen = queue.syn_qlen
        if (qlen << 1) > max(MIN_PRUNE_QLEN, queue.backlog):
            young = queue.syn_young << 1
            while retries > MIN_SYNACK_RETRIES and qlen >= young:
                retries -= 1
                young <<= 1
        return retries

    def on_timer(self, now: float) -> None:
        """Retransmit the SYN-ACK (without the cookie option), or give up: the request goes."""
        if self._rto_at is None or now < self._rto_at:
            return
        if self.retransmits >= self._max_retries():
            self._rto_at = None
            self.leave()
            return
        if self.retransmits == 0:
            self.listener.listen_queue.syn_young -= 1
        self.retransmits += 1
        counters = self.ctx.counters
        counters["TCPTimeouts"] += 1
        counters["TcpRetransSegs"] += 1
        self.send_synack(now)
        self._rto_at = now + min(RTO_INIT * (1 << self.retransmits), RTO_MAX)
        self.ctx.schedule(self, self._rto_at)

    def leave(self) -> None:
        """Out of the host's table and the listener's SYN queue."""
        queue = self.listener.listen_queue
        queue.syn_qlen -= 1
        if self.retransmits == 0:
            queue.syn_young -= 1
        self._rto_at = None
        self.pushed_at = None
        self.ctx.forget(self.key, self)


_SYNACK = Flags.SYN | Flags.ACK
_SYNACK_ECE = _SYNACK | Flags.ECE


def synack_segment(
    lport: int,
    rport: int,
    iss: int,
    irs: int,
    neg: Negotiated,
    adv_mss: int,
    rcv_wscale: int,
    rcv_wnd_init: int,
    tsval: int | None,
    fastopen: FastOpen | None = None,
    ip_header: tuple[int, bool] = (0, True),
) -> TcpSegment:
    """The SYN-ACK answering a SYN with ``irs`` (Linux tcp_make_synack): ``tsval`` is its TS
    value, the connection's offset included (used when ``neg.ts_ok``), ``fastopen`` the cookie
    option the SYN asked for, ``ip_header`` its ``tos`` and ``df`` (the listener's,
    :meth:`~fastopen.engine.socket.SocketOptions.ip_header`, as ip_build_and_send_pkt
    takes them)."""
    options = linux_synack_options(
        adv_mss,
        sack=neg.sack_ok,
        wscale=rcv_wscale if neg.wscale_ok else None,
        timestamps=Timestamps(tsval, neg.ts_recent) if neg.ts_ok and tsval is not None else None,
        fastopen=fastopen,
    )
    return TcpSegment(
        lport,
        rport,
        iss,
        (irs + 1) & MASK,
        _SYNACK_ECE if neg.ecn_ok else _SYNACK,
        rcv_wnd_init,  # already at most 65535 (initial_window)
        options,
        tos=ip_header[0],
        df=ip_header[1],
    )
