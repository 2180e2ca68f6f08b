"""One TCP connection (a transmission control block) with the TCP Fast Open client and server.

Sans-I/O: every method takes ``now``; segments go out through the host, timers are deadlines the
host collects. State changes go through :func:`fastopen.engine.states.transition` only.
Linux is the model wherever RFCs leave room: option layout, initial windows, RTO bounds,
delayed ACKs, the TFO client and server paths (``net/ipv4/tcp_fastopen.c``).
"""

from __future__ import annotations

import errno
import socket as _socket
from dataclasses import replace
from typing import TYPE_CHECKING

from fastopen.constants import (
    TCPI_OPT_ECN,
    TCPI_OPT_SACK,
    TCPI_OPT_SYN_DATA,
    TCPI_OPT_TFO_CHILD,
    TCPI_OPT_TIMESTAMPS,
    TCPI_OPT_USEC_TS,
    TCPI_OPT_WSCALE,
)
from fastopen.engine import md5
from fastopen.engine.cache import IPAddress, NegativeReason
from fastopen.engine.cc import CaState
from fastopen.engine.context import ConnectionContext, ConnKey
from fastopen.engine.events import Closed, Connected, EngineError, Readable, Writable
from fastopen.engine.fastopen import client_synack
from fastopen.engine.handshake import (
    MSS_DEFAULT,
    TS_OPTION_LEN,
    Negotiated,
    initial_window,
    negotiate,
    ts_clock,
)
from fastopen.engine.icmp import MIN_PMTU, IcmpError
from fastopen.engine.info import Chrono, ChronoType, FastOpenClientFail, TcpInfo, since_ms
from fastopen.engine.ofo import OutOfOrderQueue
from fastopen.engine.rcvqueue import ReceiveQueue
from fastopen.engine.recovery import PROBE_DELACK, TIMEOUT_MIN, Recovery, Timer
from fastopen.engine.rtt import RTO_INIT, RTO_MAX, RTO_MIN, RttEstimator
from fastopen.engine.segmentation import (
    F_FIN,
    F_PSH,
    GSO_MAX_SIZE,
    RETRANS_ACKED,
    Frags,
    Iov,
    Piece,
    Skbs,
    cwnd_quota,
    pacing_rate,
    segments,
    tso_segs,
)
from fastopen.engine.seq import (
    ACK,
    CWR,
    ECE,
    FIN,
    HALF,
    MASK,
    PSH,
    RST,
    SYN,
    URG,
    seq_le,
    seq_lt,
)
from fastopen.engine.sndqueue import SendQueue
from fastopen.engine.states import TcpEvent, TcpState, transition
from fastopen.engine.urgent import URG_READ, URG_VALID, Urgent, check_urg, read_limit, take_byte
from fastopen.engine.window import (
    GROW_MIN_LEN,
    INIT_CWND,
    RCVBUF_LOCK,
    SKB_TRUESIZE,
    SNDBUF_LOCK,
    ReceiveSpace,
    established_clamp,
    sndbuf_for,
    win_from_space,
)
from fastopen.wire import (
    ECN_CE,
    ECN_ECT_0,
    ECN_NOT_ECT,
    FastOpen,
    Flags,
    Nop,
    Sack,
    TcpOption,
    TcpSegment,
    Timestamps,
    linux_syn_options,
    linux_synack_options,
)

if TYPE_CHECKING:
    from fastopen.engine.socket import EngineSocket

#: Linux TCP_DELACK_MIN, TCP_TIMEWAIT_LEN.
DELACK = 0.04
#: Linux TCP_DELACK_MAX: the longest an ACK is held back (a writer about to send, ...).
DELACK_MAX = 0.2
#: One jiffy at HZ=1000: a delayed ACK with no ato yet (no data received) goes one tick later.
JIFFY = 0.001
TIME_WAIT_LEN = 60.0
FIN_TIMEOUT = 60.0
#: Linux TCP_MAX_QUICKACKS.
MAX_QUICKACKS = 16
#: Linux TCP_PAWS_WINDOW: a TSval this many ticks older than TS.Recent still passes PAWS.
PAWS_WINDOW = 1
#: Linux TCP_PAWS_24DAYS (seconds): a TS.Recent this old is not checked (RFC 7323 5.5).
PAWS_24DAYS = 60 * 60 * 24 * 24
#: Linux TCP_PAWS_MSL (seconds): a RST is PAWS-checked only against a TS.Recent this young.
PAWS_MSL = 60
#: Linux TCP_RESOURCE_PROBE_INTERVAL (seconds): the probe timer after a local drop.
RESOURCE_PROBE_INTERVAL = 0.5
#: Linux tcp_tso_should_defer: no wait for an ACK expected later than this (seconds; or half an
#: SRTT when that is less).
TSO_DEFER_ACK_WAIT = 0.001
#: Linux tcp_max_tso_deferred_mss: with tcp_tso_win_divisor 0, room for more than this many
#: MSS sends a TSO packet at once.
MAX_TSO_DEFERRED_MSS = 3
#: Pacing waits only for a departure due more than this ahead: the runtime's timers are good to a
#: millisecond (epoll), and one due sooner would fire a whole one late, for every packet.
PACING_SLACK = 0.001
#: Linux tcp_orphan_retries (0: 8 while the RTO is below TCP_RTO_MAX).
ORPHAN_RETRIES = 8
#: Linux tp->nonagle's bits: TCP_NAGLE_OFF (TCP_NODELAY), TCP_NAGLE_CORK (TCP_CORK, or one
#: MSG_MORE send), TCP_NAGLE_PUSH (what waits goes now, Nagle or not).
NAGLE_OFF, NAGLE_CORK, NAGLE_PUSH = 1, 2, 4
#: Linux tp->ecn_flags (TCP_ECN_OK, TCP_ECN_QUEUE_CWR, TCP_ECN_DEMAND_CWR, TCP_ECN_SEEN),
#: and whether the SYN asked for ECN (tcp_ecn_send_syn, for tcp_ecn_rcv_synack).
ECN_OK, ECN_QUEUE_CWR, ECN_DEMAND_CWR, ECN_SEEN, ECN_ASKED = 1, 2, 4, 8, 16

S = TcpState
E = TcpEvent
_SYNCHRONIZED = frozenset(
    (S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSE_WAIT, S.CLOSING, S.LAST_ACK)
)
_CAN_RECEIVE = frozenset((S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT_1, S.FIN_WAIT_2))
_FIN_SENT = frozenset((S.FIN_WAIT_1, S.FIN_WAIT_2, S.CLOSING, S.LAST_ACK, S.TIME_WAIT))
#: Linux tcp_need_reset: the states in which tcp_disconnect sends a RST.
_NEED_RESET = frozenset((S.ESTABLISHED, S.CLOSE_WAIT, S.FIN_WAIT_1, S.FIN_WAIT_2, S.SYN_RECEIVED))
#: Linux tcp_reset_check: after the peer's FIN, a RST at RCV.NXT - 1 is accepted too.
_RST_AFTER_FIN = frozenset((S.CLOSE_WAIT, S.LAST_ACK, S.CLOSING))
#: Linux tcp_keepalive_timer probes these (and FIN-WAIT-2 is left to its own timer).
_KEEPALIVE_STATES = frozenset((S.ESTABLISHED, S.CLOSE_WAIT))


_NOP = Nop()
_FLAGS = [Flags(i) for i in range(256)]


def _appended(queue: SendQueue | bytes, data: bytes | memoryview) -> SendQueue:
    """The send queue ``queue`` with ``data`` after it: an empty bytes until its first data (an
    idle connection holds no queue), then a :class:`~fastopen.engine.sndqueue.SendQueue`."""
    if isinstance(queue, SendQueue):
        queue.append(data)
        return queue
    return SendQueue(data)


def _received(queue: ReceiveQueue | bytes, data: bytes | memoryview) -> ReceiveQueue:
    """``queue`` with ``data`` after it: an empty bytes until its first data (an idle connection
    holds no queue), then a :class:`~fastopen.engine.rcvqueue.ReceiveQueue`."""
    if isinstance(queue, ReceiveQueue):
        queue.append(data)
        return queue
    return ReceiveQueue(data)


def _copied(queue: SendQueue | bytes, start: int, end: int) -> bytes:
    """Bytes ``start`` to ``end`` of the send queue ``queue`` (b"" when it is empty)."""
    return queue.copy(start, end) if isinstance(queue, SendQueue) else b""


def _timed_out(elapsed: float, boundary: int, rto_base: float, user_timeout: float) -> bool:
    """Linux retransmits_timed_out: ``elapsed`` (ms ticks) reached TCP_USER_TIMEOUT when one is
    set, else tcp_model_timeout, the time ``boundary`` retransmissions take with an RTO
    doubling from ``rto_base`` up to 120 s."""
    if user_timeout:
        timeout = user_timeout
    else:
        thresh = int(RTO_MAX / rto_base).bit_length() - 1
        if boundary <= thresh:
            timeout = ((2 << boundary) - 1) * rto_base
        else:
            timeout = ((2 << thresh) - 1) * rto_base + (boundary - thresh) * RTO_MAX
    return round(elapsed * 1000) >= round(timeout * 1000)


class Connection:
    """A TCB: sequence space, buffers, options, RTT, congestion window, timers and TFO state."""

    __slots__ = (
        "_adv_mss",
        "_ato",
        "_ato_pending",
        "_chrono",
        "_delack_at",
        "_dsack",
        "_ecn_flags",
        "_fin_queued",
        "_fin_seq",
        "_in_syn_queue",
        "_ka_at",
        "_ka_probes",
        "_last_oow",
        "_lrcv",
        "_lrcv_any",
        "_lsnd",
        "_pace_at",
        "_pingpong",
        "_probe_at",
        "_probes_since",
        "_quickack",
        "_rcv_fin_seq",
        "_rcv_tstamp",
        "_rcv_wup",
        "_rcvq",
        "_retrans_stamp",
        "_rto_at",
        "_syn_sent_at",
        "_synack_timed",
        "_ts_recent_stamp",
        "_tw_at",
        "_urg",
        "backoff",
        "bytes_acked",
        "bytes_received",
        "ctx",
        "data_segs_in",
        "data_segs_out",
        "error",
        "fastopen_client_fail",
        "fo_blackhole_check",
        "fo_cookie",
        "fo_pending",
        "fo_request",
        "irs",
        "iss",
        "listener",
        "local",
        "lport",
        "max_window",
        "ooo",
        "orphan",
        "probes_out",
        "psh_marks",
        "pushed_at",
        "pushed_seq",
        "rcv_adv",
        "rcv_buf",
        "rcv_nxt",
        "rcv_ssthresh",
        "rcv_wnd",
        "rcv_wnd_init",
        "rcv_wscale",
        "recovery",
        "remote",
        "retransmits",
        "rport",
        "rtt",
        "sack_ok",
        "segs_in",
        "segs_out",
        "shut_rd",
        "shut_wr",
        "skb_start",
        "skbs",
        "snd_buf",
        "snd_buf_seq",
        "snd_max",
        "snd_mss",
        "snd_nxt",
        "snd_sml",
        "snd_una",
        "snd_wl1",
        "snd_wl2",
        "snd_wnd",
        "snd_wscale",
        "sock",
        "soft_error",
        "state",
        "syn_acked",
        "syn_data",
        "syn_data_acked",
        "syn_fastopen",
        "syn_fastopen_exp",
        "tfo_child",
        "total_retrans",
        "ts_ok",
        "ts_recent",
        "tsoffset",
        "usec_ts",
        "want_write",
        "window_clamp",
        "wscale_ok",
    )

    def __init__(
        self,
        ctx: ConnectionContext,
        sock: EngineSocket,
        local: IPAddress,
        lport: int,
        remote: IPAddress,
        rport: int,
        now: float,
        iss: int | None = None,
    ) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.sock = sock
        self.listener: EngineSocket | None = None
        self.local, self.lport, self.remote, self.rport = local, lport, remote, rport
        self.state = S.CLOSED
        self.iss = ctx.choose_isn(local, lport, remote, rport, now) if iss is None else iss
        self.irs = 0
        self.snd_una = self.snd_nxt = self.snd_max = self.snd_sml = self.iss
        self.snd_wnd = 0
        self.snd_wl1 = self.snd_wl2 = 0
        self.max_window = 0
        self.snd_buf: SendQueue | bytes = b""  # a SendQueue while data waits (_appended)
        self.snd_buf_seq = (self.iss + 1) & MASK
        self._fin_queued = False
        self._fin_seq = 0
        #: The skbs' record ends, zerocopy edges and last fragments (made when first used).
        self.skbs: Skbs | None = None
        #: Linux tp->pushed_seq: the data up to here was pushed (tcp_mark_push: a send without
        #: MSG_MORE, or forced_push), for forced_push.
        self.pushed_seq = self.snd_buf_seq
        #: The ends of the unsent skbs that have PSH (Linux TCPHDR_PSH in their tcp_flags, set
        #: by tcp_mark_push), oldest first: a transmission that takes one ends it, or holds it
        #: whole (tcp_grow_skb ORs an eaten skb's flags into the one before), and carries PSH;
        #: the parts before it do not (tso_fragment gives PSH to the second part). Made when
        #: first used, None when empty.
        self.psh_marks: list[int] | None = None
        #: Where the last skb of the write queue starts (Linux tcp_write_queue_tail): a send
        #: fills it up to the size goal before it takes a new one (tcp_sendmsg_locked).
        self.skb_start = self.snd_buf_seq
        self.rcv_nxt = 0
        self.rcv_adv = 0
        self.rcv_buf: ReceiveQueue | bytes = b""
        self.ooo: OutOfOrderQueue | None = None  # made at the first hole, dropped when filled
        self._rcv_fin_seq: int | None = None
        mss = ctx.adv_mss(local)
        self._adv_mss = mss
        self.snd_mss = MSS_DEFAULT
        self.rcv_wscale = settings.wscale if settings.window_scaling else 0
        self._init_rcv_wnd(mss)
        self._rcvq: ReceiveSpace | None = None
        self.snd_wscale = 0
        self.wscale_ok = self.sack_ok = self.ts_ok = False
        self.ts_recent = 0
        #: Linux rx_opt.ts_recent_stamp: when TS.Recent was stored (whole seconds, as
        #: ktime_get_seconds); a child's, when it is made (tcp_create_openreq_child).
        self._ts_recent_stamp = int(now)
        self.tsoffset = ctx.choose_tsoffset(local, remote) if settings.timestamps else 0
        #: Linux tp->tcp_usec_ts: TS values in microseconds (the route's features tcp_usec_ts).
        self.usec_ts = settings.usec_ts(remote)
        self.rtt = RttEstimator()
        self.recovery = Recovery(ctx.congestion_control(sock.congestion), now)
        self.retransmits = 0
        self.backoff = 0  # Linux icsk_backoff: the RTO doublings (not the linear SYN timeouts)
        self._retrans_stamp = 0.0
        self.total_retrans = 0
        self._rto_at: float | None = None
        self._delack_at: float | None = None
        self._tw_at: float | None = None
        self._ka_at: float | None = None  # keepalive (SO_KEEPALIVE)
        self._ka_probes = 0
        self._probe_at: float | None = None
        self._probes_since: float | None = None  # Linux icsk_probes_tstamp: the first probe
        self.probes_out = 0  # Linux icsk_probes_out: zero window probes unanswered
        self._rcv_tstamp = now  # the last ACK's arrival (Linux tp->rcv_tstamp)
        self._chrono: Chrono | None = None  # made when the first chronograph starts
        #: Linux tcp_wstamp_ns while data is in flight: when the last transmission left (with
        #: pacing, the earliest the next may), and the pacing timer (tcp_pacing_check).
        self._lsnd: float | None = None
        self._pace_at: float | None = None
        self._syn_sent_at = 0.0
        self._synack_timed = True  # the handshake's ACK gives an RTT sample
        self._in_syn_queue = False  # counted in the listener's SYN queue
        self._last_oow: float | None = None  # no out-of-window ACK yet (Linux: 0)
        self.pushed_at: float | None = None
        # delayed ACKs, as Linux's icsk_ack: ato (0 until the first data), the quick ACKs left,
        # the ping-pong count (replies sent within ato of the last data) and lrcvtime
        self._ato = 0.0
        self._ato_pending = 0
        self._quickack = 0
        self._pingpong = 0
        self._rcv_wup = 0  # Linux rcv_wup: rcv_nxt when the last ACK went
        self._lrcv = now  # a child's is when it is made (tcp_create_openreq_child)
        self._lrcv_any = 0.0  # when the last segment came (Linux rcv_tstamp), for keepalive
        self.error: int | None = None
        self._dsack: tuple[int, int] | None = None  # a D-SACK block for the next ACK
        self._ecn_flags = 0  # Linux tp->ecn_flags: ECN_OK (``ecn_ok``), ECN_QUEUE_CWR, ...
        self._urg: Urgent | None = None  # urgent data to send or read (Linux urg_data, snd_up)
        #: Linux sk_err_soft: an ICMP error kept for a timeout to report.
        self.soft_error: int | None = None
        self.orphan = False
        self.shut_rd = self.shut_wr = False
        self.want_write = False
        # TCP Fast Open
        self.syn_fastopen = False
        self.syn_fastopen_exp = False
        self.syn_data = False
        self.syn_data_acked = False
        self.syn_acked = False
        self.fo_request = False
        self.fo_cookie: bytes | None = None
        self.fo_blackhole_check = False
        self.fastopen_client_fail = FastOpenClientFail.UNSPEC
        self.tfo_child = False
        self.fo_pending = False
        # statistics
        self.segs_in = self.segs_out = 0
        self.data_segs_in = self.data_segs_out = 0
        self.bytes_acked = self.bytes_received = 0

    # -- state and timers --------------------------------------------------------------------------

    def _move(self, event: TcpEvent) -> None:
        self.state = transition(self.state, event)

    def deadline(self) -> float | None:
        """When this connection's next timer is due (retransmission, delayed ACK, TIME-WAIT,
        keepalive, zero window probe)."""
        t = self._rto_at
        for d in (self._delack_at, self._tw_at, self._ka_at, self._probe_at, self._pace_at):
            if d is not None and (t is None or d < t):
                t = d
        return t

    def _rearm(self) -> None:
        t = self.deadline()
        if t is not None and (self.pushed_at is None or t < self.pushed_at):
            self.ctx.schedule(self, t)

    def _set_rto(self, now: float, retrans_stamp: float | None = None) -> None:
        """The retransmission timer, an RTO from ``now``; from the retransmission timer
        (``retrans_stamp``: when the retransmissions started) no later than TCP_USER_TIMEOUT
        after it, 1 ms once that has passed (Linux tcp_clamp_rto_to_user_timeout)."""
        rto = self.rtt.backed_off(self.backoff)
        user_timeout = self.sock.options.user_timeout
        if user_timeout and retrans_stamp is not None:
            remaining = round((retrans_stamp + user_timeout - now) * 1000)
            rto = min(rto, remaining / 1000) if remaining > 0 else 0.001
        self._rto_at = now + rto
        self.recovery.timer = Timer.RTO

    def _set_xmit_timer(self, now: float) -> None:
        """Linux tcp_set_xmit_timer: a tail loss probe (tcp_schedule_loss_probe: SACK, Open or
        CWR, after the handshake; 2 SRTT, plus TCP_RTO_MIN with one segment out for a delayed
        ACK, never after the RTO; only with tcp_early_retrans 3 or 4), else the
        retransmission timer."""
        rec = self.recovery
        srtt = self.rtt.srtt
        if (
            not self.sack_ok
            or self.ctx.settings.early_retrans not in (3, 4)
            or not rec.packets_out
            or rec.ca_state not in (CaState.OPEN, CaState.CWR)
            or not self.syn_acked
            or not srtt
        ):
            self._set_rto(now)
            return
        pto = 2 * srtt + (PROBE_DELACK if rec.packets_out == 1 else TIMEOUT_MIN)
        self._rto_at = now + min(pto, self.rtt.backed_off(self.backoff))
        rec.timer = Timer.PROBE

    def on_timer(self, now: float) -> None:
        """Fire every timer of this connection that is due at ``now``."""
        if self.state is S.CLOSED:
            return
        if self._tw_at is not None and now >= self._tw_at:
            self._tw_at = None
            if self.state is S.TIME_WAIT:
                self._move(E.TIME_WAIT_EXPIRED)
                self.destroy(now, None)
                return
            if self.state is S.FIN_WAIT_2:
                self._move(E.FIN_WAIT_2_TIMEOUT)
                self.destroy(now, None)
                return
        if self._delack_at is not None and now >= self._delack_at:
            self._delack_at = None
            # Linux tcp_delack_timer_handler, a delayed ACK missed: inflate the ato, or in
            # ping-pong mode leave it and deflate the ato
            if not self._pingpong:
                self._ato = min(self._ato * 2, self.rtt.rto)
            else:
                self._pingpong = 0
                self._ato = DELACK
            self.send_ack(now)
        if self._rto_at is not None and now >= self._rto_at:
            self._rto_at = None
            timer = self.recovery.timer
            if timer is Timer.REO:
                self._reo_timeout(now)
            elif timer is Timer.PROBE:
                self._send_loss_probe(now)
            else:
                self._on_rto(now)
        if self._ka_at is not None and now >= self._ka_at and not self.gone():
            self._ka_at = None
            self._keepalive_timer(now)
        if self._probe_at is not None and now >= self._probe_at and not self.gone():
            self._probe_at = None
            self._probe_timer(now)
        if self._pace_at is not None and now >= self._pace_at and not self.gone():
            self._pace_at = None
            self.output(now)  # Linux tcp_pace_kick: tcp_tsq_handler, tcp_write_xmit
        if not self.gone():
            self._rearm()

    def gone(self) -> bool:
        """The connection reached CLOSED (a method, so type checkers re-read the state)."""
        return self.state is S.CLOSED

    # -- sending -----------------------------------------------------------------------------------

    def _init_rcv_wnd(self, mss: int) -> None:
        """The window of our SYN or SYN-ACK for segments of ``mss`` (Linux
        tcp_select_initial_window): rcv_ssthresh starts there, the clamp at the most the scale
        can say."""
        self.rcv_wnd_init = self.rcv_wnd = self.rcv_ssthresh = initial_window(self.sock.rcvbuf, mss)
        self.window_clamp = 65535 << self.rcv_wscale

    def _rmem_alloc(self) -> int:
        """The receive memory in use (Linux sk_rmem_alloc): the queue and the out-of-order
        blocks' charge."""
        ooo = self.ooo
        return len(self.rcv_buf) + (ooo.charge if ooo is not None else 0)

    def _receive_window(self) -> int:
        """Linux tcp_receive_window: what is left of the window last advertised."""
        win = (self.rcv_adv - self.rcv_nxt) & MASK
        return win if win < HALF else 0

    def _select_window(self) -> int:
        """Linux __tcp_select_window: the free space (half the free buffer), at most
        rcv_ssthresh; under half the full space the quick ACKs stop, and below 1/16 of the
        buffer's window or one MSS it is zero (receiver SWS avoidance). Scaled, it is rounded
        up to the scale; unscaled, the last offer is kept while within one MSS of the space,
        else the space in whole MSS."""
        mss = self.snd_mss  # Linux icsk_ack.rcv_mss
        rcvbuf = self.sock.rcvbuf
        allowed = win_from_space(rcvbuf)
        free = win_from_space(rcvbuf - self._rmem_alloc())
        full = min(self.window_clamp, allowed)
        if mss > full:
            mss = full
            if mss <= 0:
                return 0
        ws = self.rcv_wscale
        if free < full >> 1:
            self._quickack = 0
            free = free >> ws << ws
            if free < allowed >> 4 or free < mss:
                return 0
        free = min(free, self.rcv_ssthresh)
        if ws:
            return (free + (1 << ws) - 1) >> ws << ws
        window = self.rcv_wnd
        if window <= free - mss or window > free:
            window = free - free % mss
        elif mss == full and free > window + (full >> 1):
            window = free
        return window

    def _window(self) -> int:
        """The window field for a non-SYN segment, as Linux tcp_select_window: never moving
        the right edge back (tcp_shrink_window 0), at most 65535 scaled."""
        ws = self.rcv_wscale
        cur = self._receive_window()
        win = self._select_window()
        if win < cur:
            win = (cur + (1 << ws) - 1) >> ws << ws
        field = min(win >> ws, 65535)
        self.rcv_wnd = field << ws
        self.rcv_adv = (self.rcv_nxt + self.rcv_wnd) & MASK
        return field

    def _tsopt(self, now: float, echo: int) -> Timestamps:
        return Timestamps((ts_clock(now, self.usec_ts) + self.tsoffset) & MASK, echo)

    @property
    def key(self) -> ConnKey:
        """(local, lport, remote, rport): the connection's key in its host's table."""
        return (self.local, self.lport, self.remote, self.rport)

    @property
    def ecn_ok(self) -> bool:
        """ECN negotiated (Linux TCP_ECN_OK)."""
        return bool(self._ecn_flags & ECN_OK)

    def _md5_key(self) -> bytes | None:
        """The TCP_MD5SIG key for the peer, if the socket has one (tcp_md5_do_lookup)."""
        keys = self.sock.options.md5_keys
        return md5.lookup(keys, self.remote) if keys else None

    def _options(self, now: float) -> tuple[TcpOption, ...]:
        """Linux's layout for segments after the SYN (tcp_established_options): ``nop,nop,TS``
        then ``nop,nop,sack`` with the blocks the space left holds (an MD5 signature, which
        :meth:`_emit` puts first, takes 20 of the 40 bytes)."""
        opts: tuple[TcpOption, ...] = ()
        if self.ts_ok:
            opts = (_NOP, _NOP, self._tsopt(now, self.ts_recent))
        dsack = self._dsack
        ooo = self.ooo
        if self.sack_ok and (ooo or dsack is not None):
            limit = 3 if self.ts_ok else 4
            if self.sock.options.md5_keys and self._md5_key() is not None:
                limit = 0 if self.ts_ok else 2
            if not limit:
                return opts
            blocks = ooo.sack_blocks(self.rcv_nxt, limit - (dsack is not None)) if ooo else ()
            if dsack is not None:  # RFC 2883: the duplicate first, once (Linux rx_opt.dsack)
                self._dsack = None
                blocks = (dsack, *blocks)
            opts += (_NOP, _NOP, Sack(blocks))
        return opts

    def _emit(
        self,
        seq: int,
        flags: int,
        payload: bytes = b"",
        options: tuple[TcpOption, ...] | None = None,
        now: float = 0.0,
    ) -> None:
        if flags & ACK:
            if self._ato_pending and self._quickack:
                self._quickack -= 1  # Linux tcp_dec_quickack_mode, in tcp_event_ack_sent
                if not self._quickack:
                    self._ato = DELACK
            self._ato_pending = 0
            self._delack_at = None
            self._rcv_wup = self.rcv_nxt
        if options is None:
            options = self._options(now)
        if flags & SYN:  # never scaled; the SYN-ACK opens the receive window
            window = self.rcv_wnd_init
            if flags & ACK:
                self.rcv_wnd = window
                self.rcv_adv = (self.rcv_nxt + window) & MASK
        else:
            window = self._window()
        urgent = 0
        urg = self._urg
        if urg is not None and urg.snd_up is not None and seq_lt(seq, urg.snd_up):
            # Linux tcp_transmit_skb: in urgent mode a segment before snd_up points at it
            # (0xFFFF when it is further than the field reaches)
            up = (urg.snd_up - seq) & MASK
            if up < 0x10000:
                urgent = up
            elif seq_lt(self.snd_nxt, (seq + 0xFFFF) & MASK):
                urgent = 0xFFFF
            if urgent:
                flags |= URG
        ecn = ECN_NOT_ECT
        if self._ecn_flags & ECN_OK and not flags & SYN:
            # Linux tcp_ecn_send: new data goes ECT(0) (INET_ECN_xmit), the first after a
            # reduction with CWR; ACKs and retransmissions go Not-ECT; ECE while CE is owed
            if payload and not seq_lt(seq, self.snd_nxt):
                ecn = ECN_ECT_0
                if self._ecn_flags & ECN_QUEUE_CWR:
                    self._ecn_flags &= ~ECN_QUEUE_CWR
                    flags |= CWR
            if self._ecn_flags & ECN_DEMAND_CWR:
                flags |= ECE
        tos, df = self.sock.options.ip_header(self.local.version)
        seg = TcpSegment(
            self.lport,
            self.rport,
            seq,
            self.rcv_nxt if flags & ACK else 0,
            _FLAGS[flags],
            window,
            options,
            payload,
            urgent,
            0,
            ecn,
            tos,
            df,
        )
        if self.sock.options.md5_keys:
            key = self._md5_key()
            if key is not None:
                seg = md5.sign(key, self.local, self.remote, seg)
        # Linux __tcp_transmit_skb: segs_out and data_segs_out count tcp_skb_pcount, the
        # segments a TSO packet becomes on the wire
        count = segments(len(payload), self.snd_mss) or 1
        self.segs_out += count
        if payload:
            self.data_segs_out += count
            queue = self.sock.errqueue
            if queue is not None and queue.stamps:
                queue.transmitted(seq, len(payload), now)  # SCM_TSTAMP_SCHED, SCM_TSTAMP_SND
        self.ctx.output(self.local, self.remote, seg, count)

    def send_ack(self, now: float) -> None:
        """A pure ACK, with the highest sequence sent (never one rewound for a retransmission)."""
        self._emit(self.snd_max, ACK, now=now)

    def send_rst(self, now: float) -> None:
        """Linux tcp_send_active_reset: through tcp_transmit_skb, so with the options of every
        segment (TS val and ecr)."""
        self._emit(self.snd_max, RST | ACK, now=now)
        self.ctx.counters["TcpOutRsts"] += 1

    def _send_syn(
        self, now: float, *, payload: bytes = b"", fastopen: FastOpen | None = None
    ) -> None:
        # Linux tcp_syn_options: no timestamps beside an MD5 signature
        timestamps = self.ctx.settings.timestamps and self._md5_key() is None
        ts = self._tsopt(now, 0) if timestamps else None
        options = linux_syn_options(
            self._adv_mss,
            sack=self.ctx.settings.sack,
            wscale=self.rcv_wscale if self.ctx.settings.window_scaling else None,
            timestamps=ts,
            fastopen=fastopen,
        )
        # Linux tcp_ecn_send_syn: tcp_ecn 1 asks for ECN in the first SYN; a retransmitted
        # SYN goes without (tcp_ecn_clear_syn, tcp_ecn_fallback)
        asked = self.ctx.settings.ecn == 1 and self.total_retrans == 0
        self._ecn_flags = ECN_ASKED if asked else 0
        flags = SYN | (ECE | CWR if asked else 0)
        self._emit(self.iss, flags, payload, options, now)

    def _send_synack(self, now: float, fastopen: FastOpen | None = None) -> None:
        ts = self._tsopt(now, self.ts_recent) if self.ts_ok else None
        options = linux_synack_options(
            self._adv_mss,
            sack=self.sack_ok,
            wscale=self.rcv_wscale if self.wscale_ok else None,
            timestamps=ts,
            fastopen=fastopen,
        )
        self._emit(self.iss, SYN | ACK | (ECE if self.ecn_ok else 0), b"", options, now)

    def push_pending(self, now: float) -> None:
        """Linux tcp_push_pending_frames: send what waits, with the socket's Nagle bits."""
        self.output(now)
        self._rearm()

    def output(self, now: float, nonagle: int | None = None, push_one: bool = False) -> None:
        """Send what the windows, Nagle and the state allow, as Linux tcp_write_xmit: new data
        in pieces of many MSS (:mod:`.segmentation`, PSH as :meth:`_transmit` gives it); then
        a FIN. ``nonagle`` is Linux's (the socket's unless a MSG_MORE send corks it);
        ``push_one`` is tcp_push_one's: one piece, never deferred for TSO. With data left and
        none in flight, the probe timer runs (Linux __tcp_push_pending_frames,
        tcp_check_probe_timer)."""
        st = self.state
        if st is S.SYN_SENT or st is S.CLOSED or st is S.LISTEN:
            return
        if st is S.SYN_RECEIVED and not self.tfo_child:
            return
        rec = self.recovery
        if not (self.snd_buf or self._fin_queued or rec.rexmit_new or rec.pieces.lost_out):
            return  # nothing to send or send again (a receiver's ACKs come this way)
        frto_new = rec.rexmit_new  # F-RTO (RFC 5682 step 2b): new data first, if it may go
        rec.rexmit_new = False
        if rec.pieces.lost_out and not frto_new:
            self._xmit_retransmit_queue(now)
        mss = self.snd_mss
        buf = self.snd_buf
        queued = len(buf)  # sending takes nothing off the queue: once for the loop
        end_data = (self.snd_buf_seq + queued) & MASK
        # what counts is data: a TFO child's SYN-ACK is not in its queue (Linux snd_una ISN + 1)
        una = (self.iss + 1) & MASK if self.snd_una == self.iss else self.snd_una
        wnd_edge = (una + self.snd_wnd) & MASK  # Linux tcp_snd_wnd_test (cwnd: tcp_cwnd_test)
        if nonagle is None:
            nonagle = self.sock.nonagle
        first_nxt = self.snd_nxt
        cwnd_limited = rwnd_limited = False
        send_head = self._unsent()  # Linux tcp_push_pending_frames: tcp_write_xmit runs
        skbs = self.skbs
        while True:
            nxt = self.snd_nxt
            off = (nxt - self.snd_buf_seq) & MASK
            unsent = queued - off if off < HALF else 0
            if unsent > 0:
                if self._paced(now):
                    break
                room = (wnd_edge - nxt) & MASK
                head = min(unsent, mss)  # Linux tcp_snd_wnd_test: the skb's first MSS fits
                if skbs is not None and skbs.cuts:
                    head = self._cut(skbs.cuts, nxt, head)
                if room >= HALF or room < head:
                    rwnd_limited = True
                    break
                in_flight = rec.in_flight()
                quota = cwnd_quota(rec.cwnd, in_flight)
                if not quota:
                    cwnd_limited = True
                    break
                goal = min(unsent, mss * self._tso_segs())
                if skbs is not None and skbs.cuts:
                    goal = self._cut(skbs.cuts, nxt, goal)
                size = min(goal, mss * quota)
                if size > room:  # Linux tcp_mss_split_point: whole MSS up to the window
                    size = room - room % mss
                if (
                    size < goal
                    and not push_one
                    and self._tso_should_defer(now, goal, room, in_flight)
                ):
                    # Linux: deferred for the congestion window, the window was the limit
                    cwnd_limited = (rec.cwnd - in_flight) * mss < room
                    break
                last = size == unsent
                partial = size % mss if last else 0
                if partial and self._nagle_check(nonagle):
                    if size < mss:  # Linux tcp_nagle_test: one small segment
                        if not nonagle & NAGLE_PUSH and not self._fin_queued:
                            break
                    else:  # Linux tcp_mss_split_point: the small tail waits
                        size -= partial
                        last = False
                flags = ACK
                if last and self._fin_queued and seq_le(self._fin_seq, (wnd_edge + 1) & MASK):
                    flags |= FIN
                if self._xmit_refused():
                    break
                self._transmit(nxt, flags, _copied(buf, off, off + size), now)
                if push_one:
                    break
                continue
            if (
                self._fin_queued
                and nxt == self._fin_seq
                and nxt == end_data
                and not self._xmit_refused()
            ):  # Linux tcp_cwnd_test: a FIN of one segment is never held by the window
                self._transmit(nxt, FIN | ACK, b"", now)
            break
        if (
            self.snd_una == self.snd_max
            and self._probe_at is None
            and self._rto_at is None
            and self._unsent()
        ):  # Linux tcp_check_probe_timer: nothing in flight to bring an ACK
            self._probe_at = now + self.rtt.backed_off(self.backoff)
        if send_head:  # Linux tcp_write_xmit: the window stopped it, or no longer
            if rwnd_limited:
                self._chrono_start(ChronoType.RWND_LIMITED, now)
            elif (chrono := self._chrono) is not None and chrono.kind:  # one runs
                chrono.stop(ChronoType.RWND_LIMITED, now, self._queues_empty())
        if cwnd_limited or self.snd_nxt != first_nxt:  # Linux tcp_write_xmit: sent or blocked
            starves = rec.cwnd_validate(cwnd_limited, self.snd_una, self.snd_max)
            if (
                starves
                and self.want_write
                and not self._unsent()
                and self.state in (S.ESTABLISHED, S.CLOSE_WAIT)
            ):  # Linux tcp_cwnd_validate: the starvation is the send buffer's
                self._chrono_start(ChronoType.SNDBUF_LIMITED, now)
        if frto_new and self.snd_max == rec.high_seq:  # nothing new could go: F-RTO ends
            rec.frto = False
            self._xmit_retransmit_queue(now)

    def _xmit_refused(self) -> bool:
        """Linux tcp_transmit_skb when the device's queue drops the packet (NET_XMIT_DROP,
        :attr:`Settings.qdisc_drops`): nothing leaves, the window comes down (tcp_enter_cwr)."""
        if not self.ctx.settings.qdisc_drops:
            return False
        self.recovery.enter_cwr(self.snd_nxt)
        return True

    def _nagle_check(self, nonagle: int) -> bool:
        """Linux tcp_nagle_check, for a segment short of an MSS: corked, or Nagle on and,
        as Minshall's variant, a small segment still unacknowledged."""
        if self._urg is not None and self._urg.snd_up is not None:
            return False  # Linux tcp_nagle_test: not for urgent data
        return bool(nonagle & NAGLE_CORK) or (not nonagle and seq_lt(self.snd_una, self.snd_sml))

    def _xmit_retransmit_queue(self, now: float) -> None:
        """Linux tcp_xmit_retransmit_queue: every lost piece not yet retransmitted goes again,
        oldest first, as far as the congestion window lets (PRR sets it in recovery), each up to
        a TSO packet (tcp_retransmit_skb)."""
        rec = self.recovery
        pieces = rec.pieces
        edge = (self.snd_una + self.snd_wnd) & MASK
        counter = "TCPSlowStartRetrans" if rec.ca_state is CaState.LOSS else "TCPFastRetrans"
        while True:
            piece = pieces.to_retransmit()
            if piece is None or self._paced(now):
                return
            room = rec.cwnd - rec.in_flight()
            if room <= 0:
                return
            if piece.start != self.snd_una and not seq_lt(piece.start, edge):
                return  # beyond the peer's window (only the head may go, as a probe)
            sent = self._retransmit(piece, min(room, self._tso_segs()), now)
            if not sent:
                return
            self.ctx.counters[counter] += sent

    def _retransmit(self, piece: Piece, segs: int, now: float) -> int:
        """Linux tcp_retransmit_skb: ``piece`` again, at most ``segs`` MSS of it (the piece is
        cut there: PSH and FIN stay with the part that ends it; more than one segment carries
        PSH, see :meth:`_transmit`). Returns the segments sent: none when the device refused
        it (counted as a retransmission all the same, and in TCPRetransFail)."""
        mss = self.snd_mss
        self.recovery.pieces.trim_acked(piece, self.snd_una)
        start = piece.start
        off = (start - self.snd_buf_seq) & MASK
        have = len(self.snd_buf) - off if off < HALF else 0
        size = min(piece.data_len(), segs * mss, max(have, 0))
        end = (start + size) & MASK
        cut = seq_lt(end, (piece.end - (1 if piece.flags & F_FIN else 0)) & MASK)
        flags = ACK
        if not cut:
            flags |= PSH if piece.flags & F_PSH else 0
            if piece.flags & F_FIN:
                flags |= FIN
                end = (end + 1) & MASK
        if not size and not flags & FIN:
            return 0
        data = _copied(self.snd_buf, off, off + size)
        if not data:
            flags &= ~PSH
        elif len(data) > mss:
            flags |= PSH
        rec = self.recovery
        sent = not self._xmit_refused()
        head = rec.pieces.retransmitted(start, end, mss, now, rec.delivered, sent)
        count = head.pcount if head is not None else 1
        self.total_retrans += count
        self.ctx.counters["TcpRetransSegs"] += count
        tsval = (ts_clock(now, self.usec_ts) + self.tsoffset) & MASK if self.ts_ok else 0
        rec.retransmitted(count, tsval, sent)
        if not sent:
            self.ctx.counters["TCPRetransFail"] += count
            if self._rto_at is None:
                self._set_rto(now)
            return 0
        self._emit_segments(start, flags, data, now)
        self._sent_at(len(data), now)
        if self._rto_at is None:
            self._set_rto(now)
        return count

    def _sent_at(self, size: int, now: float) -> None:
        """Linux __tcp_transmit_skb and tcp_update_skb_after_send: a transmission of ``size``
        bytes leaves at tcp_wstamp_ns (never before the last one); with pacing the next may
        leave ``size`` bytes later at the pacing rate, less up to half of that for the time
        this one was late (OS jitter), once 10 segments are out (sch_fq's first ones)."""
        prior = self._lsnd
        stamp = now if prior is None or prior < now else prior
        if self._pacing() and self.data_segs_out >= 10:
            rate = self._pacing_rate()
            if rate:
                length = size / rate
                credit = stamp - prior if prior is not None else 0.0
                stamp += length - min(length / 2, credit)
        self._lsnd = stamp

    def _pacing(self) -> bool:
        """Linux sk_pacing_status: the egress paces (fq: ``settings.pacing``), or TCP does
        (SK_PACING_NEEDED: a congestion control with its own pacing rate, BBR)."""
        return self.ctx.settings.pacing or self.recovery.cc.pacing_rate is not None

    def _pacing_rate(self) -> float:
        """Linux sk_pacing_rate, bytes a second: the congestion control's (cong_control), else
        tcp_update_pacing_rate's; 0 without an RTT."""
        rec = self.recovery
        rate = rec.cc.pacing_rate
        if rate is not None:
            return rate
        settings = self.ctx.settings
        return pacing_rate(
            self.snd_mss,
            rec.cwnd,
            rec.ssthresh,
            rec.packets_out,
            self.rtt.srtt,
            settings.pacing_ss_ratio,
            settings.pacing_ca_ratio,
        )

    def _paced(self, now: float) -> bool:
        """Linux tcp_pacing_check: with pacing, nothing leaves before tcp_wstamp_ns; the
        pacing timer sends then. A departure due within :data:`PACING_SLACK` goes now (Linux's
        hrtimer is good to a microsecond, an event loop's timers to a millisecond; a millisecond
        at the pacing rate is also what tcp_small_queue_check lets sit below TCP), or within
        the time the pacing rate takes for ``settings.pacing_burst`` bytes."""
        stamp = self._lsnd
        if stamp is None or stamp <= now + PACING_SLACK or not self._pacing():
            return False
        burst = self.ctx.settings.pacing_burst
        if burst and self.recovery.cc.pacing_rate is None:
            rate = self._pacing_rate()
            if rate:
                ahead = burst / rate
                if stamp <= now + ahead:
                    return False
                stamp -= ahead
        if self._pace_at is None:
            self._pace_at = stamp
        return True

    def _tso_should_defer(self, now: float, goal: int, room: int, in_flight: int) -> bool:
        """Linux tcp_tso_should_defer (TSO only): the windows leave room for less than the TSO
        packet due (``goal`` bytes), so wait for the ACKs in flight to open more rather than
        send a small packet; unless recovery is on, the last transmission was over 1 ms ago,
        the room is 1/tcp_tso_win_divisor of the window, the next ACK is likely to come too
        late (the oldest piece out is acknowledged, an SRTT after it left, in more than half an
        SRTT or 1 ms: Linux 6.18, "tcp: fix tcp_tso_should_defer() vs large RTT"), or a FIN
        waits behind."""
        if (
            not self.ctx.settings.tso
            or self.recovery.ca_state >= CaState.RECOVERY
            or self.retransmits
        ):
            return False
        sent = self._lsnd
        if sent is None or now - sent > 0.001 or self._fin_queued:
            return False
        cwnd, mss = self.recovery.cwnd, self.snd_mss
        limit = min(room, (cwnd - in_flight) * mss)
        if limit >= goal:
            return False
        divisor = self.ctx.settings.tso_win_divisor
        if divisor:
            if limit >= min(self.snd_wnd, cwnd * mss) // divisor:
                return False
        elif limit > MAX_TSO_DEFERRED_MSS * mss:
            return False
        head = self.recovery.pieces.head()
        if head is None:
            return False
        srtt = self.rtt.srtt
        return head.xmit + srtt - now <= min(srtt / 2, TSO_DEFER_ACK_WAIT)

    def mark_eor(self) -> None:
        """MSG_EOR: what the application queued so far ends a record."""
        self._add_cut(self.write_seq())

    def _skbs(self) -> Skbs:
        """:attr:`skbs`, made when first needed."""
        skbs = self.skbs
        if skbs is None:
            skbs = self.skbs = Skbs()
        return skbs

    def _add_cut(self, seq: int) -> None:
        """No segment of new data crosses ``seq`` (``Skbs.cuts``, in order: ``seq`` is the end
        of the queue or the start of its last skb)."""
        cuts = self._skbs().cuts
        if not cuts or cuts[-1] != seq:
            cuts.append(seq)

    @staticmethod
    def _cut(marks: list[int], nxt: int, size: int) -> int:
        """New data from ``nxt`` stops at the next cut of ``marks`` (Linux
        tcp_skb_can_collapse_to at a record end; tcp_grow_skb's skb_shift refused at a
        zerocopy skb's edge)."""
        while marks and seq_le(marks[0], nxt):
            marks.pop(0)
        if marks and seq_lt(marks[0], (nxt + size) & MASK):
            return (marks[0] - nxt) & MASK
        return size

    def _tso_segs(self) -> int:
        """Linux tcp_tso_segs: segments per TSO (or GSO: TCP always has it, sk_setup_caps)
        packet: tcp_tso_autosize at the pacing rate, at least the congestion control's
        min_tso_segs (else tcp_min_tso_segs)."""
        least = self.recovery.cc.min_tso_segs
        return tso_segs(
            self.snd_mss,
            self._pacing_rate(),
            self.rtt.min_rtt,
            least() if least is not None else self.ctx.settings.min_tso_segs,
        )

    def _transmit(self, seq: int, flags: int, data: bytes, now: float) -> None:
        """New data (or a FIN) as one piece: a single segment to a TSO device, else its MSS
        segments (PSH and FIN on the last, as GSO cuts it). The piece has PSH when it holds
        the end of a pushed skb (:attr:`psh_marks`) or ``flags`` asks for it (a window
        probe); on the wire also when it is more than one segment.

        Linux 6.18 as measured (this machine's kernel, the real packetdrill): the skb of a
        send has PSH at its end only (tcp_mark_push; tso_fragment and tcp_fragment give it
        to the second part), yet every transmission of more than one segment carries PSH, a
        retransmission too, while one of a single segment carries it only from its skb: a
        write of 10 MSS at 2 MSS per TSO packet sends 5 packets with PSH; their
        retransmissions, cut to one MSS, have none, except the part that ends the write."""
        end = (seq + len(data) + (1 if flags & FIN else 0)) & MASK
        mss = self.snd_mss
        rec = self.recovery
        if data:
            rec.data_sent(now)  # before it is out: CA_EVENT_TX_START after idle
        psh = self._take_push(seq, (seq + len(data)) & MASK) or bool(flags & PSH)
        rec.pieces.sent(seq, end, bool(flags & FIN), mss, now, psh, rec.delivered)
        if psh or len(data) > mss:  # see _psh_on_wire
            flags |= PSH
        if rec.ca_state in (CaState.RECOVERY, CaState.CWR):  # tcp_in_cwnd_reduction
            rec.prr_out += segments(len(data), mss) or 1
        if data and now - self._lrcv < self._ato:
            self._pingpong += 1  # Linux tcp_event_data_sent: a reply within ato
        self._emit_segments(seq, flags, data, now)
        # Linux tcp_event_new_data_sent: TCPOrigDataSent adds the skb's tcp_skb_pcount
        self.ctx.counters["TCPOrigDataSent"] += segments(len(data), mss) or 1
        self._sent_at(len(data), now)
        if len(data) % mss:
            self.snd_sml = end  # Linux tcp_minshall_update: new data not of whole MSS
        self.snd_nxt = end
        if seq_lt(self.snd_max, end):
            self.snd_max = end
        if self._rto_at is None or rec.timer is Timer.PROBE:
            self._set_xmit_timer(now)  # Linux tcp_write_xmit: tcp_schedule_loss_probe

    def _emit_segments(self, seq: int, flags: int, data: bytes, now: float) -> None:
        """One piece to a TSO device, else cut in MSS segments (PSH and FIN on the last)."""
        mss = self.snd_mss
        if self.ctx.settings.tso or len(data) <= mss:
            self._emit(seq, flags, data, now=now)
            return
        for i in range(0, len(data), mss):
            tail = i + mss >= len(data)
            part = flags if tail else flags & ~(PSH | FIN)
            self._emit((seq + i) & MASK, part, data[i : i + mss], now=now)

    # -- application side --------------------------------------------------------------------------

    def open_active(self, now: float, data: bytes, fastopen: FastOpen | None) -> int:
        """Send the SYN, with ``data`` in it when TFO allows (a cookie, or no-cookie mode).

        ``fastopen`` is the option to send (a cookie or a request). Returns the bytes in the SYN.
        """
        if self.state is S.CLOSED:  # else a deferred connect (already SYN-SENT) sends now
            self._move(E.APP_FASTOPEN if data else E.APP_CONNECT)
            self.ctx.counters["TcpActiveOpens"] += 1
        sent = b""
        if data:
            self.syn_data = True
            sent = data
            self.snd_buf = _appended(self.snd_buf, data)
        # Linux tcp_syn_options: syn_fastopen means the SYN carried the option (not the no-cookie
        # mode's bare SYN data, which the SYN-ACK path handles through syn_data)
        self.syn_fastopen = fastopen is not None
        self.syn_fastopen_exp = fastopen is not None and fastopen.experimental
        self.fo_request = fastopen is not None and not fastopen.cookie
        self._send_syn(now, payload=sent, fastopen=fastopen)
        if sent:
            self.ctx.counters["TCPOrigDataSent"] += 1  # Linux tcp_send_syn_data
        start = self.snd_buf_seq  # ISS + 1: where the data begins (the same int, not a copy)
        self.snd_nxt = self.snd_max = (start + len(sent)) & MASK if sent else start
        if sent:  # the SYN data: one piece of one segment (the SYN and its data: two in tcp_ack)
            # Linux tcp_send_syn_data: the data's skb has PSH
            rec = self.recovery
            rec.pieces.sent(start, self.snd_nxt, False, len(sent), now, True, rec.delivered)
        self._syn_sent_at = now
        self._set_rto(now)
        self._rearm()
        return len(sent)

    def defer_connect(self) -> None:
        """TCP_FASTOPEN_CONNECT with a cookie: SYN-SENT now, the SYN goes with the first write."""
        self._move(E.APP_CONNECT)
        self.ctx.counters["TcpActiveOpens"] += 1

    def send(
        self,
        data: bytes | memoryview,
        now: float,
        more: bool = False,
        oob: bool = False,
        iov: Iov | None = None,
    ) -> int:
        """Linux tcp_sendmsg_locked: ``data`` fills the last skb up to the size goal, then
        new ones, each up to the size goal, while what is queued is below the send buffer,
        truesize counted (:meth:`wmem_queued`), and the data not sent yet below
        TCP_NOTSENT_LOWAT (sk_stream_memory_free, before each new skb only: the last one may
        take the buffer past its size); a full skb alone in the queue goes
        at once (tcp_push_one), past half the largest window all is pushed (forced_push).
        Then tcp_push: PSH up to here unless ``more`` (MSG_MORE), which corks this one send;
        ``oob`` (MSG_OOB): the last byte taken is urgent (tcp_mark_urg). ``iov``: the
        buffers ``data`` joins, whose pages MSG_ZEROCOPY pins as the skbs' fragments (None:
        copied); an skb out of fragments gets PSH and the data goes on in a new one.
        Returns the bytes taken: fewer when the buffer filled (EAGAIN when none)."""
        total = len(data)
        goal = self._size_goal()
        copied = 0
        full = False  # the last skb ran out of fragments (Linux goto new_segment)
        frags = None if self.skbs is None else self.skbs.frags
        self.recovery.check_app_limited((self.write_seq() - self.snd_nxt) & MASK, self.snd_mss)
        if self.ctx.settings.slow_start_after_idle and total:
            self.recovery.restart_after_idle(now, self.rtt.rto)
        while copied < total:
            write_seq = (self.snd_buf_seq + len(self.snd_buf)) & MASK
            nxt = self.snd_nxt
            start = self.skb_start if seq_lt(nxt, self.skb_start) else nxt
            tail = (write_seq - start) & MASK if seq_lt(nxt, write_seq) else 0
            copy = goal - tail if tail and not full and not self._cut_at(write_seq) else 0
            grows = copy > 0  # the data joins the last skb
            if copy <= 0:  # Linux new_segment
                if not self._memory_free(self.wmem_queued(), 0):
                    break
                if write_seq == nxt:  # Linux tcp_add_write_queue_tail: the first unsent skb
                    self._chrono_start(ChronoType.BUSY, now)
                elif frags is not None:  # the skb before has zerocopy pages
                    self._add_cut(write_seq)
                if frags is not None:
                    frags = self._skbs().frags = None
                self.skb_start = write_seq
                self.sock.nonagle &= ~NAGLE_PUSH  # Linux tcp_skb_entail
                copy = goal
                tail = 0
                full = False
            copy = min(copy, total - copied)
            if iov is not None:  # Linux skb_zerocopy_iter_stream
                if frags is None:
                    if seq_lt(nxt, self.skb_start):
                        self._add_cut(self.skb_start)
                    frags = self._skbs().frags = Frags([write_seq] if grows else [])
                copy = frags.pin(iov, copied, write_seq, copy, nxt)
            elif grows and frags is not None:  # a copy into an skb with zerocopy pages
                copy = copy if frags.copy(nxt, (write_seq + copy) & MASK) else 0
            if not copy:  # out of fragments: Linux tcp_mark_push, goto new_segment
                self._mark_push()
                full = True
                continue
            marks = self.psh_marks
            pushed = False
            if grows and marks and marks[-1] == write_seq:
                # Linux: PSH is the skb's flag (TCP_SKB_CB(skb)->tcp_flags): the first copy of a
                # send clears it (if (!copied)), a later one keeps it as the skb grows
                pushed = copied > 0
                marks.pop()
                if not marks:
                    self.psh_marks = None
            self.snd_buf = _appended(self.snd_buf, data[copied : copied + copy])
            if pushed:
                self._add_mark((write_seq + copy) & MASK)
            copied += copy
            if copied == total or tail + copy < goal:
                continue
            if self._forced_push():
                self._mark_push()
                self.output(now, NAGLE_PUSH)
            elif seq_le(self.skb_start, self.snd_nxt):  # the skb is the send head
                self.output(now, push_one=True)
        if copied < total:  # Linux wait_for_space: what was taken goes, pushed
            self.want_write = True
            if not copied:
                raise EngineError(errno.EAGAIN)
            if oob:
                self._mark_urg()
            self._tx_timestamp()
            self._mark_push()
            self.output(now, NAGLE_PUSH)
        else:  # Linux tcp_push
            if oob:
                self._mark_urg()
            self._tx_timestamp()
            if not more or self._forced_push():
                self._mark_push()
            self.output(now, NAGLE_CORK if more else None)
        self._rearm()
        return copied

    def _tx_timestamp(self) -> None:
        """Linux tcp_tx_timestamp: SO_TIMESTAMPING marks the last byte queued (:mod:`.errqueue`)."""
        queue = self.sock.errqueue
        if queue is not None and queue.tsflags:
            queue.mark((self.write_seq() - 1) & MASK)

    def _mark_urg(self) -> None:
        """Linux tcp_mark_urg: the urgent pointer is the end of what is queued (snd_up)."""
        if self._urg is None:
            self._urg = Urgent()
        self._urg.snd_up = self.write_seq()

    def _size_goal(self) -> int:
        """Linux tcp_xmit_size_goal: how much data an skb takes, whole MSS, at least one: the
        device's GSO maximum within half the peer's largest window (tcp_bound_to_half_wnd).
        TCP has GSO on every device (sk_setup_caps sets NETIF_F_GSO for it: ``ethtool -K DEV
        gso off`` changes nothing here)."""
        mss = self.snd_mss
        size = GSO_MAX_SIZE
        cutoff = self.max_window >> 1 if self.max_window > MSS_DEFAULT else self.max_window
        if cutoff and size > cutoff:
            size = cutoff
        return max(size // mss * mss, mss)

    def _mark_push(self) -> None:
        """Linux tcp_mark_push: the last skb has PSH, pushed_seq is the end of the data."""
        end = (self.snd_buf_seq + len(self.snd_buf)) & MASK
        self.pushed_seq = end
        self._add_mark(end)

    def _add_mark(self, end: int) -> None:
        """The unsent skb that ends at ``end`` has PSH (:attr:`psh_marks`)."""
        marks = self.psh_marks
        if marks is None:
            self.psh_marks = [end]
            return
        i = len(marks)
        while i and seq_lt(end, marks[i - 1]):
            i -= 1
        if not i or marks[i - 1] != end:
            marks.insert(i, end)

    def _take_push(self, nxt: int, end: int) -> bool:
        """A transmission of the unsent ``[nxt, end)``: whether it carries PSH (it holds the
        end of a pushed skb); the marks it took are gone."""
        marks = self.psh_marks
        if not marks:
            return False
        push = False
        while marks and seq_le(marks[0], end):
            push = push or seq_lt(nxt, marks[0])
            marks.pop(0)
        if not marks:
            self.psh_marks = None
        return push

    def _forced_push(self) -> bool:
        """Linux forced_push: more than half the largest window was queued since the last
        push."""
        return seq_lt((self.pushed_seq + (self.max_window >> 1)) & MASK, self.write_seq())

    def _cut_at(self, seq: int) -> bool:
        """The skb ending at ``seq`` ends a record (MSG_EOR): nothing joins it (a cut there at a
        zerocopy skb's edge is the start of an skb still empty: a new one is the same)."""
        skbs = self.skbs
        return skbs is not None and bool(skbs.cuts) and skbs.cuts[-1] == seq

    def _memory_free(self, queued: int, wake: int) -> bool:
        """Linux __sk_stream_memory_free: what is queued (sk_wmem_queued, ``queued``) is below
        the send buffer, and tcp_stream_memory_free: the data not sent yet (doubled for a
        wakeup, ``wake`` 1) is below TCP_NOTSENT_LOWAT, the socket's or the host's
        (tcp_notsent_lowat)."""
        if queued >= self.sock.sndbuf:
            return False
        lowat = self.sock.options.notsent_lowat or self.ctx.settings.notsent_lowat
        end = (self.snd_buf_seq + len(self.snd_buf)) & MASK
        notsent = (end - self.snd_nxt) & MASK if seq_lt(self.snd_nxt, end) else 0
        return (notsent << wake) < lowat

    def recv(self, n: int, now: float, splice: bool = False) -> bytes:
        """Up to ``n`` bytes read (Linux tcp_recvmsg; ``splice``: tcp_read_sock), none past an
        urgent mark (an urgent byte at the start is left out unless SO_OOBINLINE; a splice
        stops at it); b"" when that is all there was."""
        buf = self.rcv_buf
        if not isinstance(buf, ReceiveQueue) or not buf:
            return b""
        urg = self._urg
        if urg is not None and urg.data:
            copied = (self.rcv_nxt - len(buf)) & MASK
            inline = self.sock.options.oobinline
            skip, n = read_limit(urg, copied, n, len(buf), inline=inline, splice=splice)
            buf.skip(skip)
            if seq_lt(urg.seq, (copied + skip + min(n, len(buf))) & MASK):
                urg.data = 0  # read past it (Linux: after(copied_seq, urg_seq))
                if urg.idle:
                    self._urg = None
        data = buf.take(n)
        if not buf:
            self.rcv_buf = b""  # drained: the queue goes
        self._rcv_space_adjust(now)
        if self.state in _SYNCHRONIZED and not self.fin_received():
            # Linux tcp_cleanup_rbuf: a window update when the window left is at most half
            # the clamp and reading at least doubles it
            left = self._receive_window()
            if 2 * left <= self.window_clamp:
                win = self._select_window()
                if win and win >= 2 * left:
                    self.send_ack(now)
        return data

    def recv_urgent(self, inline: bool, peek: bool) -> bytes:
        """recv(MSG_OOB): Linux tcp_recv_urg (see :meth:`EngineSocket.recv_oob`)."""
        urg = self._urg
        if inline or urg is None or not urg.data or urg.data == URG_READ:
            raise EngineError(errno.EINVAL)
        if self.state is S.CLOSED and self.error is None and not self.fin_received():
            raise EngineError(errno.ENOTCONN)
        if urg.data & URG_VALID:
            byte = bytes((urg.data & 0xFF,))
            if not peek:
                urg.data = URG_READ
            return byte
        if self.state is S.CLOSED or self.shut_rd or self.fin_received():
            return b""
        raise EngineError(errno.EAGAIN)

    def at_mark(self) -> bool:
        """SIOCATMARK: urgent data, and the next byte to read is it."""
        urg = self._urg
        copied = (self.rcv_nxt - len(self.rcv_buf)) & MASK
        return urg is not None and bool(urg.data) and urg.seq == copied

    def _rcv_space_adjust(self, now: float) -> None:
        """Linux tcp_rcv_space_adjust (receive-buffer autotuning, :class:`.ReceiveSpace`):
        the buffer grows up to tcp_rmem[2] unless tcp_moderate_rcvbuf is off or SO_RCVBUF
        locked it, and the window clamp follows."""
        rcvq = self._rcvq
        if rcvq is None:
            return
        sock = self.sock
        settings = self.ctx.settings
        limit = settings.rmem_max
        if not settings.moderate_rcvbuf or sock.options.buf_locks & RCVBUF_LOCK:
            limit = 0
        copied = self.bytes_received - len(self.rcv_buf)
        rcvbuf = rcvq.adjust(copied, now, self._advmss(), sock.rcvbuf, limit)
        if rcvbuf > sock.rcvbuf:
            sock.rcvbuf = rcvbuf
            self.window_clamp = win_from_space(rcvbuf)

    def _advmss(self) -> int:
        """The MSS we offer less the timestamps' room (Linux tp->advmss once established)."""
        return self._adv_mss - (TS_OPTION_LEN if self.ts_ok else 0)

    def _init_transfer(self, now: float) -> None:
        """Linux tcp_init_transfer, as the connection is established: the congestion control's
        init (tcp_init_congestion_control), then tcp_init_buffer_space: the send buffer
        for the initial window (unless SO_SNDBUF locked it), the window clamp at the
        receive buffer's full space less one segment, rcv_ssthresh within it."""
        self.init_congestion_control(now)
        if not self.sock.options.buf_locks & SNDBUF_LOCK:
            self._sndbuf_expand()
        clamp = established_clamp(self.window_clamp, self.sock.rcvbuf, self._advmss())
        self.window_clamp = clamp
        self.rcv_ssthresh = min(self.rcv_ssthresh, clamp)

    def init_congestion_control(self, now: float) -> None:
        """Linux tcp_init_congestion_control: the algorithm's init, if it has one."""
        rec = self.recovery
        init = rec.cc.init
        if init is not None:
            init(rec, self.snd_mss, self.rtt.srtt, self.rtt.min_rtt, now)

    def _sndbuf_expand(self) -> None:
        """Linux tcp_sndbuf_expand: room for twice the congestion window (the congestion
        control's sndbuf_expand times it), up to tcp_wmem[2]."""
        mss = self.snd_mss + (TS_OPTION_LEN if self.ts_ok else 0)  # rx_opt.mss_clamp
        rec = self.recovery
        expand = rec.cc.sndbuf_expand
        per_cwnd = expand() if expand is not None else 2
        need = min(sndbuf_for(mss, rec.cwnd, per_cwnd), self.ctx.settings.wmem_max)
        if self.sock.sndbuf < need:
            self.sock.sndbuf = need

    def _data_recv(self, ts: Timestamps | None, size: int, now: float) -> None:
        """In-order data queued (``ts``: its segment's timestamps): Linux tcp_event_data_recv's
        receiver RTT measures (tcp_rcv_rtt_measure, and tcp_rcv_rtt_measure_ts for a full
        segment), then the window grows (the autotuning state is made with the first data)."""
        rcvq = self._rcvq
        if rcvq is None:
            space = min(self.rcv_ssthresh, self.rcv_wnd, INIT_CWND * self._advmss())
            copied = self.bytes_received - len(self.rcv_buf)
            rcvq = self._rcvq = ReceiveSpace(space, copied, now)
        rcvq.measure_window(self.rcv_nxt, self.rcv_wnd, now)
        if ts is not None and self.ts_ok and ts.tsecr and size >= self.snd_mss:
            rcvq.measure_ts(ts.tsecr, int(now * 1000) + self.tsoffset - ts.tsecr)
        self._grow_window(size)

    def _grow_window(self, size: int) -> None:
        """Linux tcp_grow_window: for a segment of at least 128 bytes, rcv_ssthresh grows by
        two segments (or twice this one), up to the clamp and the free space, and the next ACK
        goes at once (icsk_ack.quick)."""
        if size < GROW_MIN_LEN:
            return
        room = min(self.window_clamp, win_from_space(self.sock.rcvbuf - self._rmem_alloc()))
        room -= self.rcv_ssthresh
        if room > 0:
            self.rcv_ssthresh += min(room, max(2 * self._advmss(), 2 * size))
            self._quickack |= 1

    def fin_received(self) -> bool:
        return self._rcv_fin_seq is not None and self.rcv_nxt == ((self._rcv_fin_seq + 1) & MASK)

    def close(self, now: float) -> None:
        """close(): RST if unread data (Linux), else a FIN after the queued data."""
        self.orphan = True
        st = self.state
        if st is S.SYN_SENT:
            self._move(E.APP_CLOSE)
            self.destroy(now, None, notify=False)
            return
        if self.rcv_buf and st in _SYNCHRONIZED:
            self.abort(now)
            return
        self.shut_rd = True
        self.shutdown_write(now)
        if self.state is S.FIN_WAIT_2 and self._tw_at is None:
            self._tw_at = now + FIN_TIMEOUT
            self._rearm()

    def _fastopen_ofo_check(self, now: float) -> None:
        """Linux tcp_fastopen_active_disable_ofo_check, when the socket is destroyed (or enters
        TIME-WAIT): a lone out-of-order FIN and no data on an active TFO connection is a
        middlebox at work; data on one opened after a disable period clears the count."""
        if self.listener is not None or not self.syn_fastopen:
            return
        self.ctx.blackhole.connection_closed(
            data_in=bool(self.data_segs_in),
            lone_ofo_fin=self._rcv_fin_seq is not None and not self.fin_received() and not self.ooo,
            marked=self.fo_blackhole_check,
            now=now,
        )

    def shutdown_write(self, now: float) -> None:
        if self.shut_wr or self.state not in _SYNCHRONIZED:
            return
        self.shut_wr = True
        self._fin_queued = True
        self._fin_seq = (self.snd_buf_seq + len(self.snd_buf)) & MASK
        self._move(E.APP_CLOSE_FIN)
        self.output(now)
        self._rearm()

    def abort(self, now: float, *, rst: bool = True) -> None:
        """Drop the connection at once (with a RST to the peer unless ``rst=False``)."""
        self.orphan = True
        if rst:
            self.send_rst(now)
        self._move(E.APP_ABORT)
        self.destroy(now, None, notify=False)

    def disconnect(self, now: float) -> None:
        """connect(AF_UNSPEC), Linux tcp_disconnect: a RST when one is owed (tcp_need_reset, or
        CLOSING/LAST-ACK with something unsent), then CLOSED; a TFO child frees its place in the
        fastopen backlog at once (reqsk_fastopen_remove without the 60 s hold)."""
        st = self.state
        unsent = self._fin_queued and seq_lt(self.snd_max, (self._fin_seq + 1) & MASK)
        if st in _NEED_RESET or (st in (S.CLOSING, S.LAST_ACK) and unsent):
            self.send_rst(now)
        self._move(E.APP_DISCONNECT)
        self.destroy(now, None, notify=False)

    def end_time_wait(self, now: float) -> None:
        """A new SYN for this 4-tuple ends TIME-WAIT (Linux TCP_TW_SYN): a listener takes it
        (inet_twsk_deschedule_put)."""
        self._move(E.RCV_SYN)
        self.destroy(now, None, notify=False)

    def destroy(self, now: float, error: int | None, *, notify: bool = True) -> None:
        """Leave for good (the state already CLOSED): out of the host's tables and the
        listener's fastopen queue; the application learns why."""
        if self.state is not S.TIME_WAIT:  # else checked when it entered TIME-WAIT
            self._fastopen_ofo_check(now)
        self._rto_at = self._delack_at = self._tw_at = self._ka_at = self._probe_at = None
        self._pace_at = None
        if error is not None and self.error is None:
            self.error = error
        self.pushed_at = None
        self._leave_queues(now, reset=error == errno.ECONNRESET)
        self.ctx.forget(self.key, self)
        if notify and not self.orphan:
            self.ctx.emit(Readable(self.sock))
            self.ctx.emit(Closed(self.sock, error))

    def _leave_queues(self, now: float, *, reset: bool) -> None:
        """Out of the listener's SYN queue and fastopen queue; a pending TFO child ``reset``
        after the application accepted it stays counted 60 s (Linux reqsk_fastopen_remove)."""
        listener = self.listener
        if listener is None:
            return
        if self._in_syn_queue:
            self._in_syn_queue = False
            listener.listen_queue.syn_qlen -= 1
        if self.fo_pending:
            self.fo_pending = False
            accepted = listener.listening and self.sock not in listener.accept_queue
            listener.fastopen_queue.remove(now, hold=reset and accepted)

    def fail(self, now: float) -> None:
        """Drop a connection the engine failed in (Host.reset_faulty): out of every table at
        once, a bare RST to the peer, ECONNRESET for the application; nothing else of its
        state is trusted."""
        self.state = S.CLOSED
        self._rto_at = self._delack_at = self._tw_at = self._probe_at = self.pushed_at = None
        self._pace_at = None
        self._leave_queues(now, reset=False)
        self.ctx.forget(self.key, self)
        tos, df = self.sock.options.ip_header(self.local.version)
        rst = TcpSegment(
            self.lport, self.rport, self.snd_max, self.rcv_nxt, _FLAGS[RST | ACK], 0, tos=tos, df=df
        )
        self.ctx.output(self.local, self.remote, rst)
        self.ctx.counters["TcpOutRsts"] += 1
        if self.error is None:
            self.error = errno.ECONNRESET
        if not self.orphan:
            self.ctx.emit(Readable(self.sock))
            self.ctx.emit(Closed(self.sock, errno.ECONNRESET))

    # -- options -----------------------------------------------------------------------------------

    def _negotiated(self, neg: Negotiated, window: int) -> None:
        """Take the options a SYN or SYN-ACK negotiated, and its (unscaled) window."""
        self.wscale_ok, self.snd_wscale, self.sack_ok = neg.wscale_ok, neg.snd_wscale, neg.sack_ok
        self.ts_ok, ts_recent, self.snd_mss = neg.ts_ok, neg.ts_recent, neg.snd_mss
        if self._md5_key() is not None:  # Linux tcp_current_mss: the signature's room
            self.snd_mss -= md5.MD5_OPTION_SPACE
        # a SYN-ACK's ECN is good only for a SYN that asked for it (Linux tcp_ecn_rcv_synack)
        asked = self._ecn_flags & ECN_ASKED
        if neg.ecn_ok and (self.state is not S.SYN_SENT or asked):
            self._ecn_flags |= ECN_OK
        if not neg.wscale_ok:
            self.rcv_wscale = 0
            self.window_clamp = min(self.window_clamp, 65535)
        if neg.ts_ok:
            self.ts_recent = ts_recent
        self.snd_wnd = window
        self.max_window = max(self.max_window, window)

    # -- passive open (child) ----------------------------------------------------------------------

    def _open_passive(self, listener: EngineSocket, irs: int, neg: Negotiated, window: int) -> None:
        """A child of ``listener`` for the peer's ISN ``irs``: what a SYN set up."""
        self.listener = listener
        self.sock.inherit(listener)  # a child is a clone of its listener (Linux sk_clone_lock)
        if self.recovery.cc.name != listener.congestion:  # and has its congestion control
            self.recovery.cc = self.ctx.congestion_control(listener.congestion)
        self.state = S.LISTEN  # a child starts as a clone of its listener (as in Linux)
        self.irs = irs
        self.rcv_nxt = self.rcv_adv = self._rcv_wup = (irs + 1) & MASK  # tcp_create_openreq_child
        self._negotiated(neg, window)
        user_mss = listener.options.user_mss
        if user_mss:  # Linux tcp_mss_clamp and rx_opt.mss_clamp: TCP_MAXSEG bounds both ways
            self.clamp_mss(user_mss)
            self.snd_mss = min(self.snd_mss, user_mss - (TS_OPTION_LEN if self.ts_ok else 0))
        self.usec_ts = self.usec_ts and neg.ts_ok  # Linux tcp_conn_request: req_usec_ts
        self._init_rcv_wnd(self._advmss())
        self.snd_wl1, self.snd_wl2 = irs, self.iss
        self.snd_nxt = self.snd_max = self.snd_buf_seq  # ISS + 1, after the SYN-ACK

    def accept_fastopen(
        self, listener: EngineSocket, seg: TcpSegment, now: float, reply: FastOpen | None
    ) -> None:
        """A TFO child of ``listener`` born from a SYN (never with FIN: the listener drops
        those): SYN-RECEIVED with the SYN data in, the SYN-ACK sent (with ``reply``, the
        cookie of the primary key when the SYN's matched the backup)."""
        self._open_passive(
            listener, seg.seq, negotiate(self.ctx.settings, seg, self._adv_mss), seg.window
        )
        self._move(E.RCV_SYN_VALID_COOKIE)
        self.ctx.counters["TcpPassiveOpens"] += 1
        self.tfo_child = True
        self.fo_pending = True
        self._init_transfer(now)  # Linux tcp_fastopen_create_child -> tcp_init_transfer
        if seg.payload:
            self.rcv_buf = _received(self.rcv_buf, seg.payload)
            self.rcv_nxt = (self.rcv_nxt + len(seg.payload)) & MASK
            self.bytes_received += len(seg.payload)
            self.syn_data_acked = True
        self._send_synack(now, reply)
        self._syn_sent_at = now
        self._set_rto(now)
        self._rearm()

    def from_request(
        self,
        listener: EngineSocket,
        irs: int,
        neg: Negotiated,
        window: int,
        *,
        retransmits: int,
        synack_at: float | None,
        rto_at: float | None,
    ) -> None:
        """A child made from a request socket (``synack_at``: when its first SYN-ACK left) or
        from a SYN cookie (None: no SYN-ACK to time, no timer): SYN-RECEIVED, in the listener's
        SYN queue until the handshake completes."""
        self._open_passive(listener, irs, neg, window)
        self.rcv_adv = (self.rcv_nxt + self.rcv_wnd_init) & MASK  # the SYN-ACK's
        self._move(E.RCV_SYN)
        self.retransmits = self.backoff = self.total_retrans = retransmits
        self._synack_timed = synack_at is not None
        self._syn_sent_at = synack_at or 0.0
        self._rto_at = rto_at
        self._in_syn_queue = synack_at is not None
        self._rearm()

    # -- receiving ---------------------------------------------------------------------------------

    def _wire_segs(self, size: int) -> int:
        """The wire's segments in ``size`` bytes of one received segment: 1, or as many as a
        coalesced one (GRO's) holds (Linux counts skb_shinfo(skb)->gso_segs)."""
        mss = self.snd_mss
        return -(-size // mss) if size > mss and mss else 1

    def segment_arrives(self, seg: TcpSegment, now: float) -> None:
        self.segs_in += self._wire_segs(len(seg.payload))
        self._lrcv_any = now
        if self._ka_probes:
            self._ka_probes = 0
            self.keepalive_changed(now)
        st = self.state
        if st is S.SYN_SENT:
            self._rcv_syn_sent(seg, now)
        elif st is not S.ESTABLISHED or not self._rcv_established(seg, now):
            self._rcv_synchronized(seg, now)
        if self.state is not S.CLOSED:
            self._rearm()

    def _rcv_syn_sent(self, seg: TcpSegment, now: float) -> None:
        flags = int(seg.flags)
        if flags & ACK:
            ack = seg.ack
            if seq_le(ack, self.iss) or seq_lt(self.snd_max, ack) or self._paws_rejects(seg, now):
                if not flags & RST:
                    self.ctx.send_reset_for(self.local, self.remote, seg)
                return
        if flags & RST:
            if flags & ACK:
                self._move(E.RCV_RST)
                self.destroy(now, errno.ECONNREFUSED)
            return
        if not flags & SYN:
            return
        self.irs = seg.seq
        self.rcv_nxt = self._rcv_wup = (seg.seq + 1) & MASK  # tcp_rcv_synsent_state_process
        self.rcv_adv = (self.rcv_nxt + self.rcv_wnd) & MASK  # what our SYN offered
        self._negotiated(negotiate(self.ctx.settings, seg, self._adv_mss), seg.window)
        self._ts_recent_stamp = int(now)  # tcp_store_ts_recent
        self.snd_wl1, self.snd_wl2 = seg.seq, seg.ack
        if not flags & ACK:  # simultaneous open
            self._move(E.RCV_SYN)
            self.snd_nxt = (self.iss + 1) & MASK
            self._send_synack(now)
            return
        self._move(E.RCV_SYN_ACK)
        self._init_transfer(now)  # Linux tcp_finish_connect -> tcp_init_transfer
        self._lrcv = now  # Linux lrcvtime: a reply within ato of it is ping-pong
        self.recovery.lsndtime = now  # Linux tcp_finish_connect: no restart on the first data
        self._rcv_tstamp = now  # Linux tcp_ack of the SYN-ACK
        self.keepalive_changed(now)  # Linux tcp_finish_connect
        if self.total_retrans == 0:  # Karn: no sample from a retransmitted SYN
            self.rtt.sample(now - self._syn_sent_at)
        self.retransmits = self.backoff = 0
        self._rto_at = None
        fo_fail = False
        before = self.segs_out  # one ACK for the SYN-ACK, whatever it carried
        if self.syn_fastopen or self.syn_data:
            fo_fail = self._rcv_fastopen_synack(seg, now)
            if not fo_fail and (seg.payload or flags & FIN):
                self._rcv_data(seg, flags, now)  # Linux tcp_fastopen_add_skb
        else:
            # data in a plain SYN-ACK is dropped, as Linux does
            self._synack_acked(seg, now)
        self.ctx.emit(Connected(self.sock))
        self.ctx.emit(Writable(self.sock))
        if fo_fail:  # Linux: the SYN data is lost, tcp_non_congestion_loss_retransmit
            self.recovery.pieces.mark_all_lost(self.ctx.counters)
            self.recovery.non_congestion_loss(self.snd_max)
        self.output(now)
        self._check_space(now)  # Linux tcp_rcv_state_process: tcp_data_snd_check
        if self.segs_out == before:
            if self.sock.write_pending and not fo_fail:
                self._hold_ack(now)
            else:
                self.send_ack(now)

    # -- ICMP (Linux tcp_v4_err, tcp_v6_err) ----------------------------------------------------

    def icmp_error(self, err: IcmpError, now: float) -> None:
        """An ICMP error about a segment of this connection. Out of the window (the sequence
        not between SND.UNA, the ISN while a TFO child's handshake runs, and SND.NXT) it only
        counts (OutOfWindowIcmps). Fragmentation needed lowers the path MTU and resends at
        once (tcp_v4_mtu_reduced). An error in a handshake (an active open, a TFO child not
        yet accepted) is hard, closing the connection with its errno; later it is soft, kept
        for a timeout to report, unless the socket asked for IP_RECVERR."""
        st = self.state
        ctx = self.ctx
        if st is S.CLOSED or st is S.TIME_WAIT or st is S.LISTEN:
            return
        una = self.iss if (self.tfo_child and not self.syn_acked) else self.snd_una
        if not seq_le(una, err.seq) or seq_lt(self.snd_nxt, err.seq):
            ctx.counters["OutOfWindowIcmps"] += 1
            return
        if err.pmtu:
            self._mtu_reduced(err, now)
            return
        code = err.errno()
        if code is None:
            return
        listener = self.listener
        accepted = listener is not None and self.sock not in listener.accept_queue
        if st is S.SYN_SENT or (st is S.SYN_RECEIVED and not (self.tfo_child and accepted)):
            self._move(E.RCV_ICMP_ERROR)
            self.destroy(now, code)
            return
        if self.sock.options.recverr:
            self.error = code
            self.sock.error_pending()
        else:
            self.soft_error = code

    def _mtu_reduced(self, err: IcmpError, now: float) -> None:
        """Linux tcp_v4_mtu_reduced / tcp_v6_mtu_reduced: a path MTU below the one in use
        lowers the MSS and resends what no longer fits, at once (tcp_simple_retransmit; a SYN
        with data goes again as a bare SYN, as after a timeout). An IPv4 socket whose
        IP_MTU_DISCOVER refuses it (DONT, INTERFACE, OMIT) leaves the learning to the route
        and keeps its MSS; one that sends without DF (DONT, PROBE) gets no soft error."""
        floor = MIN_PMTU[err.version]
        if err.mtu < floor:
            if err.version == 6:
                return  # tcp_v6_err ignores an MTU below IPV6_MIN_MTU
            mtu = floor
        else:
            mtu = err.mtu
        mss = mtu - (40 if err.version == 4 else 60)
        if mss >= self._adv_mss:
            return
        self.ctx.update_pmtu(self.remote, mtu, now)
        options = self.sock.options
        if err.version == 6 or options.dont_fragment:
            self.soft_error = errno.EMSGSIZE
        if err.version == 4 and not options.accepts_pmtu:
            return
        self.clamp_mss(mss)
        if self.state is S.SYN_SENT:
            self.total_retrans += 1
            self.ctx.counters["TcpRetransSegs"] += 1
            self._send_syn(now)  # without data and without the option
            self._set_rto(now)
            return
        if self.snd_una != self.snd_max and self.syn_acked:
            rec = self.recovery
            rec.pieces.mark_too_big(self.snd_mss, self.ctx.counters)
            if rec.pieces.lost_out:
                rec.non_congestion_loss(self.snd_max)
                self.output(now)
            self._rearm()

    # -- keepalive (Linux tcp_keepalive_timer) ------------------------------------------------

    def keepalive_changed(self, now: float) -> None:
        """SO_KEEPALIVE or its times changed: the keepalive timer restarts from the last
        segment received (off: it stops)."""
        self._ka_at = None
        self._ka_probes = 0
        if self.sock.options.keepalive and self.state in _KEEPALIVE_STATES:
            idle = self.sock.keepalive_setting(_socket.TCP_KEEPIDLE)
            last = self._lrcv_any or now
            self._ka_at = max(now, last + idle)
            self._rearm()

    def _keepalive_timer(self, now: float) -> None:
        """Idle for TCP_KEEPIDLE with nothing in flight: a probe (one byte below SND.UNA, no
        data) every TCP_KEEPINTVL; TCP_KEEPCNT unanswered ones reset the connection with
        ETIMEDOUT, or with TCP_USER_TIMEOUT set, a probe unanswered once that long has passed
        since the last segment received (Linux tcp_keepalive_timer)."""
        sock = self.sock
        if not sock.options.keepalive or self.state not in _KEEPALIVE_STATES:
            return
        idle = sock.keepalive_setting(_socket.TCP_KEEPIDLE)
        interval = sock.keepalive_setting(_socket.TCP_KEEPINTVL)
        if self.snd_una != self.snd_max or self.snd_buf:
            self._ka_at = now + idle  # the retransmission timer watches the connection
            return
        elapsed = now - self._lrcv_any
        if elapsed < idle and self._ka_probes == 0:
            self._ka_at = now + idle - elapsed
            return
        user_timeout = sock.options.user_timeout
        if (
            self._ka_probes > 0 and elapsed >= user_timeout
            if user_timeout
            else self._ka_probes >= sock.keepalive_setting(_socket.TCP_KEEPCNT)
        ):
            self.send_rst(now)
            self._move(E.APP_ABORT)
            self.destroy(now, errno.ETIMEDOUT)
            return
        self._ka_probes += 1
        self._emit((self.snd_una - 1) & MASK, ACK, now=now)
        self._ka_at = now + interval

    @property
    def adv_mss(self) -> int:
        """The MSS this end offers (Linux tp->advmss): the path's, clamped by TCP_MAXSEG."""
        return self._adv_mss

    def clamp_mss(self, mss: int) -> None:
        """TCP_MAXSEG (Linux user_mss) or a lower path MTU: offer and send at most ``mss``."""
        if mss < self._adv_mss:
            self._adv_mss = mss
            if self.state in (S.CLOSED, S.SYN_SENT, S.LISTEN):
                self._init_rcv_wnd(mss)  # the SYN's window for the smaller segments
            else:
                self.rcv_wnd_init = initial_window(self.sock.rcvbuf, mss)
            if self.state not in (S.CLOSED, S.SYN_SENT, S.LISTEN):
                self.snd_mss = min(self.snd_mss, mss - (TS_OPTION_LEN if self.ts_ok else 0))

    def write_seq(self) -> int:
        """Linux tp->write_seq: the sequence number after what the application queued (its FIN
        included)."""
        end = (self.snd_buf_seq + len(self.snd_buf)) & MASK
        return (end + 1) & MASK if self._fin_queued else end

    def writable(self) -> bool:
        """Linux __sk_stream_is_writeable: the free send buffer is at least half what is queued
        (sk_stream_wspace, sk_stream_min_wspace: truesize counted, :meth:`wmem_queued`), and
        twice the data not sent yet is below TCP_NOTSENT_LOWAT."""
        queued = self.wmem_queued()
        return self.sock.sndbuf - queued >= queued >> 1 and self._memory_free(queued, 1)

    def wmem_queued(self) -> int:
        """Linux sk_wmem_queued: the truesize of the skbs queued, sent or not. tcp_skb_entail
        charges a new skb :data:`SKB_TRUESIZE`, each byte copied into it one more;
        tcp_clean_rtx_queue gives an acknowledged skb's back (tcp_wmem_free_skb), tcp_trim_head
        the bytes of one acknowledged in part. So: the bytes queued, and SKB_TRUESIZE for each
        piece of the retransmission queue (tcp_fragment's cuts counted) and each skb not sent
        yet (:meth:`_unsent_skbs`)."""
        skbs = self.recovery.pieces.skbs() + self._unsent_skbs()
        return len(self.snd_buf) + skbs * SKB_TRUESIZE

    def _unsent_skbs(self) -> int:
        """The skbs of the write queue: the last one (:attr:`skb_start`), or what is left of it
        once a transmission cut it (tso_fragment), and before it the ones sends filled to the
        size goal (what a transmission left of the first of them is one skb: tcp_grow_skb
        takes from the next skb, tso_fragment cuts the rest off)."""
        end = (self.snd_buf_seq + len(self.snd_buf)) & MASK
        nxt = self.snd_nxt
        if not seq_lt(nxt, end):
            return 0
        before = (self.skb_start - nxt) & MASK if seq_lt(nxt, self.skb_start) else 0
        return 1 - (-before // self._size_goal())

    def _check_space(self, now: float) -> None:
        """Linux tcp_check_space, once what an ACK allowed went out (tcp_data_snd_check): for
        a writer that waits (SOCK_NOSPACE), tcp_new_space grows the send buffer for the window
        as the ACK left it, unless that window is full (tcp_should_expand_sndbuf: the buffer
        is then not the limit), and wakes the writer once there is room."""
        if not self.want_write:
            return
        rec = self.recovery
        if not self.sock.options.buf_locks & SNDBUF_LOCK and rec.in_flight() < rec.cwnd:
            self._sndbuf_expand()
        if self.writable():
            self._space_again(now)

    def _space_again(self, now: float) -> None:
        """Linux sk_stream_write_space from tcp_check_space: the waiting writer has room
        again (SOCK_NOSPACE clears), the send buffer no longer limits (tcp_chrono_stop)."""
        self.want_write = False
        self._chrono_stop(ChronoType.SNDBUF_LIMITED, now, self._queues_empty())
        self.ctx.emit(Writable(self.sock))

    def _hold_ack(self, now: float) -> None:
        """A writer is waiting for the connection (Linux sk_write_pending): the ACK of the SYN-ACK
        waits up to TCP_DELACK_MAX for its data, in quick ACK mode, so the data carries it."""
        self.enter_quickack()
        self._ato_pending = 1
        self._delack_at = now + DELACK_MAX

    def enter_quickack(self, count: int = MAX_QUICKACKS) -> None:
        """Linux tcp_enter_quickack_mode: ``count`` quick ACKs (at least), out of ping-pong."""
        self._quickack = max(self._quickack, count)
        self._pingpong = 0
        self._ato = DELACK

    def set_quickack(self, on: bool, now: float) -> None:
        """TCP_QUICKACK: on sends a pending ACK now and leaves ping-pong mode; off enters it."""
        if on:
            self.enter_quickack()
            if self._ato_pending and self.state in _SYNCHRONIZED:
                self.send_ack(now)
        else:
            self._pingpong = max(self._pingpong, 1)

    def _rtt_tsopt(self, now: float, tsecr: int) -> float | None:
        """Linux tcp_rtt_tsopt_us: the round trip a TS echo measures (seconds, at least one tick
        of the TS clock), None for an echo from the future."""
        ticks = (ts_clock(now, self.usec_ts) + self.tsoffset - tsecr) & MASK
        if ticks >= HALF:
            return None
        return max(ticks, 1) / (1_000_000 if self.usec_ts else 1000)

    def _paws_rejects(self, seg: TcpSegment, now: float) -> bool:
        """Linux tcp_rcv_synsent_state_process: a SYN-ACK whose TS echo is not a TSval we sent
        since the SYN (TcpExt PAWSActive) is answered with a RST."""
        ts = seg.timestamps
        if ts is None or not ts.tsecr or not self.ctx.settings.timestamps:
            return False
        first = ts_clock(self._syn_sent_at, self.usec_ts) + self.tsoffset  # the first SYN's TSval
        if ((ts_clock(now, self.usec_ts) + self.tsoffset - first) & MASK) >= (
            (ts.tsecr - first) & MASK
        ):
            return False
        self.ctx.counters["PAWSActive"] += 1
        return True

    # -- TS.Recent and PAWS (RFC 7323 4.3 and 5; Linux tcp_input.c) --------------------------------

    def _paws_check(self, tsval: int, win: int, now: float) -> bool:
        """Linux tcp_paws_check: ``tsval`` is at most ``win`` ticks older than TS.Recent, or
        TS.Recent is not to be trusted: stored 24 days ago (TCP_PAWS_24DAYS) or zero (some
        stacks send TSval 0 in their SYN)."""
        older = (self.ts_recent - tsval) & MASK
        return (
            older <= win
            or older >= HALF
            or int(now) >= self._ts_recent_stamp + PAWS_24DAYS
            or not self.ts_recent
        )

    def _store_ts_recent(self, tsval: int, now: float) -> None:
        """Linux tcp_store_ts_recent: TS.Recent, and when it was stored."""
        self.ts_recent = tsval
        self._ts_recent_stamp = int(now)

    def _replace_ts_recent(self, tsval: int, seq: int, now: float) -> None:
        """Linux tcp_replace_ts_recent (RFC 7323 4.3): TS.Recent comes from a segment that
        covers the last ACK sent (``seq`` not after rcv_wup, the RCV.NXT it acknowledged), so
        a delayed ACK echoes the oldest segment it acknowledges; never from an older TSval."""
        if not seq_lt(self._rcv_wup, seq) and self._paws_check(tsval, 0, now):
            self._store_ts_recent(tsval, now)

    def _paws_discard(self, seg: TcpSegment, tsval: int, flags: int, now: float) -> bool:
        """Linux tcp_validate_incoming's first check (RFC 7323 5.3 H1): a segment whose TSval
        is older than TS.Recent is dropped, unless a RST (always let through) or a duplicate
        ACK reordered by little (tcp_disordered_ack_check); True when dropped. A SYN gets a
        challenge ACK, an old pure ACK (before RCV.NXT) is only counted (PAWSOldAck), any
        other segment counts PAWSEstab and gets a duplicate ACK (tcp_send_dupack), rate
        limited as out-of-window ones are (TCPACKSkippedPAWS)."""
        if flags & RST or self._paws_check(tsval, PAWS_WINDOW, now):
            return False
        seq = seg.seq
        end = (seq + len(seg.payload) + (flags & SYN) // SYN + (flags & FIN)) & MASK
        counters = self.ctx.counters
        if flags & ACK and seq == end:
            if seq_lt(seq, self.rcv_nxt):
                counters["PAWSOldAck"] += 1  # tcp_disordered_ack_check: TCP_RFC7323_PAWS_ACK
                return True
            # tcp_tsval_replay: a reordered duplicate ACK within one RTO of TS ticks (usec TS
            # with usec resolution, else RFC 7323's slowest clock, 1200 Hz)
            rto = self.rtt.backed_off(self.backoff)
            replay = int(rto * 1_000_000) if self.usec_ts else int(rto * 1200)
            if (
                seq == self.rcv_nxt
                and seg.ack == self.snd_una
                and not self._window_news(seq, seg.window << self.snd_wscale)
                and (self.ts_recent - tsval) & MASK <= replay
            ):
                return False
        if flags & SYN:
            counters["TCPSYNChallenge"] += 1
            self._challenge_ack(now)  # RFC 5961 4.2
            return True
        counters["PAWSEstab"] += 1
        self._oow_ack(now, seq == end, seq, end, "TCPACKSkippedPAWS")
        return True

    # -- TFO client: the SYN-ACK (Linux tcp_rcv_fastopen_synack) -----------------------------------

    def _rcv_fastopen_synack(self, seg: TcpSegment, now: float) -> bool:
        """Learn from the SYN-ACK; True when SYN data must go again (TFO failed)."""
        ctx = self.ctx
        self._synack_acked(seg, now)
        unacked = self.syn_data and self.snd_una != self.snd_max
        client_synack(
            ctx.cookie_cache,
            (self.local, self.remote, self.rport),
            seg,
            syn_fastopen=self.syn_fastopen,
            syn_experimental=self.syn_fastopen_exp,
            syn_data=self.syn_data,
            fo_request=self.fo_request,
            cookie_sent=self.fo_cookie is not None,
            retransmitted=self.total_retrans > 0,
            unacked=unacked,
            now=now,
        )
        if unacked:
            self.fastopen_client_fail = (
                FastOpenClientFail.SYN_RETRANSMITTED
                if self.total_retrans
                else FastOpenClientFail.DATA_NOT_ACKED
            )
            ctx.counters["TCPFastOpenActiveFail"] += 1
            return True
        self.syn_data_acked = self.syn_data
        if self.syn_data_acked:
            ctx.counters["TCPFastOpenActive"] += 1
            self.recovery.syn_data_acked()
        return False

    # -- synchronized states -----------------------------------------------------------------------

    def _rcv_established(self, seg: TcpSegment, now: float) -> bool:
        """Linux tcp_rcv_established's fast path (header prediction), in ESTABLISHED: a segment
        with ACK alone (PSH ignored) at RCV.NXT acknowledging between SND.UNA and SND.MAX, with
        no option but ``nop,nop,TS`` when timestamps are on (none when off) and a TSval not
        older than TS.Recent (tcp_paws_check's quick test), while nothing is out of order, no
        FIN is pending and no zero window is probed (Linux pred_flags, tcp_fast_path_check);
        data must fit the receive buffer. A pure ACK goes straight to tcp_ack, in-order data
        straight to the queue, then tcp_event_data_recv and __tcp_ack_snd_check. Linux's
        prediction also wants the window unchanged (else its slow path updates it); here a
        new window (not zero) is taken as the slow path takes it, and only a segment Linux
        predicts counts: TCPHPHits for data, TCPHPAcks for an ACK advancing SND.UNA (another
        without data is one of TCPPureAcks, as tcp_ack counts it).

        What it does is what :meth:`_rcv_synchronized` does with such a segment, in the same
        order (the ACK first, so events come out alike), without the tests that cannot fail
        here; anything else goes there, nothing touched (False; Linux slow_path:
        tcp_validate_incoming, tcp_ack, tcp_data_queue). ESTABLISHED implies the SYN acked,
        no FIN queued and no orphan (close() leaves the state)."""
        flags = seg.flags
        seq = seg.seq
        if not (flags == ACK or flags == ACK | PSH) or seq != self.rcv_nxt:
            return False
        nwin = seg.window << self.snd_wscale
        ack = seg.ack
        una = self.snd_una
        if (
            not nwin
            or (ack - una) & MASK > (self.snd_max - una) & MASK
            or self.ooo is not None
            or self._rcv_fin_seq is not None
            or self._probe_at is not None
            or self._urg is not None  # Linux tcp_fast_path_check: not with urgent data
        ):
            return False
        payload = seg.payload
        plen = len(payload)
        if plen > self.sock.rcvbuf - len(self.rcv_buf):
            return False
        opts = seg.options
        ts: Timestamps | None = None
        if self.ts_ok:
            if len(opts) != 3:
                return False
            opt = opts[2]
            if (
                type(opt) is not Timestamps
                or type(opts[0]) is not Nop
                or type(opts[1]) is not Nop
                or (opt.tsval - self.ts_recent) & MASK >= HALF
            ):
                return False
            ts = opt
        elif opts:
            return False
        predicted = nwin == self.snd_wnd
        win_update = self._update_window(seq, ack, nwin, now)
        self._rcv_tstamp = now
        self.soft_error = None
        self.probes_out = 0  # tcp_ack_probe, no probe timer
        counters = self.ctx.counters
        if predicted and ack != una:
            counters["TCPHPAcks"] += 1
        elif not plen:  # Linux tcp_ack: not FLAG_DATA, outside its fast path
            counters["TCPPureAcks"] += 1
        dupack = ack == una and not plen and not win_update and una != self.snd_max
        if ts is not None and self.rcv_nxt == self._rcv_wup:
            # Linux: a predicted segment is at RCV.NXT, so tcp_replace_ts_recent's
            # !after(seq, rcv_wup) is rcv_nxt == rcv_wup (no ACK owed), and PAWS passed
            self._store_ts_recent(ts.tsval, now)
        self._ack((), ack, dupack, now, ts)
        if plen:
            if predicted:
                counters["TCPHPHits"] += 1
            self.data_segs_in += self._wire_segs(plen)
            self.rcv_buf = _received(self.rcv_buf, payload)
            self.rcv_nxt = (seq + plen) & MASK
            self._data_recv(ts, plen, now)
            self.bytes_received += plen
            self.ctx.emit(Readable(self.sock))
            self._schedule_ack(now, plen, seg.ecn, False)
        self.output(now)
        self._check_space(now)  # Linux tcp_data_snd_check
        return True

    def _rcv_synchronized(self, seg: TcpSegment, now: float) -> None:
        flags = int(seg.flags)
        st = self.state
        if st is S.TIME_WAIT:
            self._rcv_time_wait(seg, flags, now)
            return
        seq = seg.seq
        plen = len(seg.payload)
        ts = seg.timestamps if self.ts_ok else None
        if (
            ts is not None
            and (st is not S.SYN_RECEIVED or self.listener is None or self.tfo_child)
            and self._paws_discard(seg, ts.tsval, flags, now)
        ):
            return
        if (
            flags & (SYN | ACK | RST) == SYN | ACK
            and st is S.SYN_RECEIVED
            and self.listener is None
            and seq == self.irs
            and not plen
            and seg.ack == self.snd_max
        ):
            # Linux tcp_validate_incoming: in a simultaneous open, the peer's SYN-ACK for our
            # SYN completes the handshake; its SYN, a duplicate, gets a D-SACK
            self._rcv_synchronized(
                replace(seg, seq=self.rcv_nxt, flags=seg.flags & ~Flags.SYN), now
            )
            if self.sack_ok:
                self._dsack = (seq, (seq + 1) & MASK)
            self.enter_quickack()
            self.send_ack(now)
            return
        if flags & SYN and st is S.SYN_RECEIVED and seq == self.irs and not flags & RST:
            if self.tfo_child:
                self.send_ack(now)
            else:
                self._send_synack(now)  # a retransmitted SYN: the SYN-ACK again, no option
            return
        end = (seq + plen + (flags & SYN) // SYN + (flags & FIN)) & MASK
        wnd = (self.rcv_adv - self.rcv_nxt) & MASK
        if wnd >= HALF:
            wnd = 0
        if seq_lt(end, self.rcv_nxt) or seq_lt((self.rcv_nxt + wnd) & MASK, seq):
            if not flags & RST:
                self._oow_ack(now, seq == end, seq, end)  # out of window: a duplicate ACK
            elif st in _RST_AFTER_FIN and seq == (self.rcv_nxt - 1) & MASK:
                self._reset(now)  # Linux tcp_reset_check: a RST sent right after the peer's FIN
            return
        if flags & RST:
            if seq == self.rcv_nxt:
                self._reset(now)
                return
            if self.syn_fastopen and not self.data_segs_in and st is S.ESTABLISHED:
                # Linux tcp_validate_incoming: an out-of-order RST on an active TFO connection
                # that got no data is a middlebox at work (a blackhole detection)
                self.ctx.blackhole.active_disable(now)
            self._challenge_ack(now)  # RFC 5961 3.2
            return
        if flags & SYN:
            self.ctx.counters["TCPSYNChallenge"] += 1
            self._challenge_ack(now)  # RFC 5961 4.2
            return
        if not flags & ACK:
            return
        ack = seg.ack
        if not self.syn_acked:
            if seq_le(ack, self.snd_una) or seq_lt(self.snd_max, ack):
                self.ctx.send_reset_for(self.local, self.remote, seg)
                return
            self._handshake_done(now)
        if seq_lt(self.snd_max, ack):
            self.send_ack(now)  # acknowledges what was never sent
            return
        if seq_lt(ack, (self.snd_una - self.max_window) & MASK):
            self._challenge_ack(now)  # RFC 5961 5.2
            return
        win_update = self._update_window(seq, ack, seg.window << self.snd_wscale, now)
        self._rcv_tstamp = now
        self.soft_error = None  # Linux tcp_ack: something worked, no soft error to report
        self._ack_probe(now)
        if seq_le(self.snd_una, ack):
            # Linux tcp_ack: a duplicate acknowledges nothing new, carries no data and does
            # not update the window (FLAG_NOT_DUP), with data in flight
            dupack = (
                ack == self.snd_una
                and not plen
                and not flags & FIN
                and not win_update
                and self.snd_una != self.snd_max
            )
            if ts is not None:
                self._replace_ts_recent(ts.tsval, seq, now)  # tcp_ack: FLAG_UPDATE_TS_RECENT
            if not plen and not flags & FIN:  # tcp_ack, its slow path: not FLAG_DATA
                self.ctx.counters["TCPPureAcks"] += 1
            ece = bool(flags & ECE) and self.ecn_ok  # Linux tcp_ecn_rcv_ecn_echo: FLAG_ECE
            self._ack(seg.sack_blocks if self.sack_ok else (), ack, dupack, now, ts, ece)
            fin_acked = self._fin_queued and ack == ((self._fin_seq + 1) & MASK)
            if fin_acked and not self._fin_acked(now):
                return
        elif self.sack_ok and seg.sack_blocks:
            # Linux tcp_ack, old_ack: an ACK below SND.UNA (reordered) still tags what it SACKs,
            # for loss recovery (tcp_sacktag_write_queue, tcp_fastretrans_alert)
            self._ack(seg.sack_blocks, self.snd_una, False, now, None)
        if flags & URG:  # Linux tcp_urg: tcp_check_urg
            copied = (self.rcv_nxt - len(self.rcv_buf)) & MASK
            self._urg = check_urg(self._urg, seq, seg.urgent, copied, self.rcv_nxt)
        if plen or flags & FIN:
            if (
                flags & FIN
                and self.orphan
                and self.syn_fastopen
                and st is S.FIN_WAIT_1
                and seq_lt(self.rcv_nxt, (seq + plen) & MASK)
            ):
                # Linux tcp_rcv_state_process: an out-of-order FIN after close() in FIN-WAIT-1
                self.ctx.blackhole.active_disable(now)
            self._rcv_data(seg, flags, now)
        self.output(now)
        self._check_space(now)  # Linux tcp_data_snd_check

    def _fin_acked(self, now: float) -> bool:
        """Our FIN is acknowledged; False when the connection is gone."""
        st = self.state
        if st is S.FIN_WAIT_1:
            self._move(E.RCV_ACK_OF_FIN)
            if self.orphan:
                self._tw_at = now + FIN_TIMEOUT
        elif st is S.CLOSING:
            self._move(E.RCV_ACK_OF_FIN)
            self._tw_at = now + TIME_WAIT_LEN
            self._fastopen_ofo_check(now)
        elif st is S.LAST_ACK:
            self._move(E.RCV_ACK_OF_FIN)
            self.destroy(now, None)
            return False
        return True

    def _handshake_done(self, now: float) -> None:
        """The ACK of our SYN-ACK: the handshake is complete (whatever the state by now)."""
        self.syn_acked = True
        self.recovery.handshake_acked()
        if self.retransmits == 0 and self._synack_timed:
            self.rtt.sample(now - self._syn_sent_at)
        self.retransmits = self.backoff = 0
        self._rto_at = None
        if self.state is S.SYN_RECEIVED:
            self._move(E.RCV_ACK_OF_SYN)
        if not self.tfo_child:  # a fast open child's started with it (tcp_init_transfer)
            self._init_transfer(now)
            if self.listener is not None:  # Linux tcp_create_openreq_child makes it now
                self._lrcv = self.recovery.lsndtime = now
        self.keepalive_changed(now)
        listener = self.listener
        if listener is None:
            self.ctx.emit(Connected(self.sock))
            self.ctx.emit(Writable(self.sock))
            return
        self._leave_queues(now, reset=False)
        if not self.tfo_child:
            listener.child_ready(self.sock)

    def _update_window(self, seq: int, ack: int, nwin: int, now: float) -> bool:
        """Linux tcp_ack_update_window: the window ``nwin`` (scaled) of a segment at ``seq``
        acknowledging ``ack`` is taken unless an older segment's. True for FLAG_WIN_UPDATE
        (tcp_may_update_window, before the window moves: a later segment, or the same one
        offering more or nothing). A window that changes with data waiting to be sent checks
        for a restart after idle (tcp_slow_start_after_idle_check), as a write does."""
        wl1 = self.snd_wl1
        later = seq_lt(wl1, seq)
        win_update = self._window_news(seq, nwin)
        if later or (wl1 == seq and seq_le(self.snd_wl2, ack)):
            if nwin != self.snd_wnd:
                self.snd_wnd = nwin
                if self.ctx.settings.slow_start_after_idle and self.write_seq() != self.snd_nxt:
                    self.recovery.restart_after_idle(now, self.rtt.rto)
                if nwin > self.max_window:
                    self.max_window = nwin
            self.snd_wl1, self.snd_wl2 = seq, ack
        return win_update

    def _window_news(self, seq: int, nwin: int) -> bool:
        """Linux tcp_may_update_window for an ACK at SND.UNA: a segment at ``seq`` later than
        the window's last, or the same one offering more than SND.WND, or nothing."""
        wl1 = self.snd_wl1
        return seq_lt(wl1, seq) or (wl1 == seq and (nwin > self.snd_wnd or not nwin))

    def _ack(
        self,
        blocks: tuple[tuple[int, int], ...],
        ack: int,
        dupack: bool,
        now: float,
        ts: Timestamps | None,
        ece: bool = False,
    ) -> None:
        """Linux tcp_ack from SND.UNA on: SACK ``blocks`` (none unless SACK is on) on the
        scoreboard, then what ``ack`` acknowledges, then the congestion state (RACK, recovery,
        PRR; ``ece``: an ECN echo, FLAG_ECE, which brings the window down in CWR), then the
        timers."""
        rec = self.recovery
        delivered = 0
        prior_delivered = rec.delivered
        reord_seen = rec.pieces.reord_seen
        pieces = rec.pieces
        pieces.begin_ack(self.snd_una)
        rate = pieces.rate
        if rate is not None:  # a rate sample starts (and tcp_wstamp_ns, for cong_control)
            rate.begin(rec.in_flight())
            rate.edt = self._lsnd if self._lsnd is not None else now
        if blocks:
            delivered, dsacking = self._sacktag(blocks, ack, now)
            if dsacking:
                dupack = False  # Linux: FLAG_DSACKING_ACK, no duplicate
        prior_una = self.snd_una
        acked = 0
        if ack != prior_una:
            acked, fresh = self._process_ack(ack, now, ts, timer=False)
            delivered += fresh
        elif delivered and (sample := self._ack_rtt(now, ts, False)) is not None:
            # Linux tcp_clean_rtx_queue: a SACK alone measures too (sack_rtt_us)
            rec.rtt_sample(round(sample * 1e6), ack, self.snd_max, self._pacing_rate(), now)
        if rec.pieces.reord_seen != reord_seen:
            self.ctx.counters["TCPSACKReorder"] += 1  # Linux tcp_check_sack_reordering
        state = rec.ca_state
        if (
            ack == prior_una
            and not dupack
            and not delivered
            and state is CaState.OPEN
            and not ece
            and rec.cc.cong_control is None
        ):
            return  # nothing for loss recovery (Linux: not tcp_ack_is_dubious) nor cong_control
        rtt = self.rtt
        wait = rec.on_ack(
            ack,
            prior_una,
            self.snd_max,
            acked,
            delivered,
            dupack,
            self.sack_ok,
            self.snd_mss,
            now,
            rtt.min_rtt,
            rtt.srtt,
            ts.tsecr if ts is not None else 0,
            self.ctx.counters,
            ece,
        )
        self._newly_delivered(rec.delivered - prior_delivered, ece)
        if self.ecn_ok and rec.ca_state > state and rec.ca_state >= CaState.CWR:
            self._ecn_flags |= ECN_QUEUE_CWR  # tcp_init_cwnd_reduction: tcp_ecn_queue_cwr
        if self.snd_una == self.snd_max:
            self._rto_at = None
        elif wait:
            self._rto_at = now + wait + TIMEOUT_MIN  # Linux tcp_rack_reo_timeout's timer
            rec.timer = Timer.REO
        elif ack != prior_una or rec.timer is not Timer.RTO:
            self._set_xmit_timer(now)

    def _synack_acked(self, seg: TcpSegment, now: float) -> None:
        """What the SYN-ACK ``seg`` acknowledges (tcp_ack from tcp_rcv_synsent_state_process)."""
        newly = self._process_ack(seg.ack, now, rtt_sample=False)[1]
        self.recovery.delivered += newly
        self._newly_delivered(newly, False)  # FLAG_ECE is never a SYN's

    def _newly_delivered(self, newly: int, ece: bool) -> None:
        """``newly`` segments delivered by one ACK (``ece``: with an ECN echo, FLAG_ECE), as
        Linux's tcp_newly_delivered counts them in TCPDelivered, and with ECE in
        TCPDeliveredCE and tp->delivered_ce (tcp_count_delivered)."""
        counters = self.ctx.counters
        counters["TCPDelivered"] += newly
        if ece:
            self.recovery.delivered_ce += newly
            counters["TCPDeliveredCE"] += newly

    def _sacktag(
        self, blocks: tuple[tuple[int, int], ...], ack: int, now: float
    ) -> tuple[int, bool]:
        """Linux tcp_sacktag_write_queue: a D-SACK first (RFC 2883, Recovery.check_dsack),
        then the blocks within the data in flight go on the scoreboard. Returns (the segments
        delivered: newly SACKed, plus those D-SACKed, a spurious retransmission being delivered
        too; whether a D-SACK counted, FLAG_DSACKING_ACK)."""
        rec = self.recovery
        una, top = self.snd_una, self.snd_max
        dups = rec.check_dsack(
            blocks, ack, una, self.snd_mss, self.max_window, self.total_retrans, self.ctx.counters
        )
        clipped = []
        for start, end in blocks:
            if seq_lt(start, una):
                start = una
            if seq_lt(top, end):
                end = top
            if seq_lt(start, end):
                clipped.append((start, end))
        if not clipped:
            return dups, dups > 0
        return dups + rec.pieces.sack(clipped, self.snd_mss, now, self.rtt.min_rtt), dups > 0

    def _retransmit_head(self, now: float) -> bool:
        """The timeout's retransmission (Linux tcp_retransmit_skb of the queue's head, one
        segment): whatever the window, the first MSS at SND.UNA again. False: the device
        refused it."""
        head = self.recovery.pieces.head()
        return head is None or self._retransmit(head, 1, now) > 0

    def _reo_timeout(self, now: float) -> None:
        """RACK's reordering window ended (Linux tcp_rack_reo_timeout): what is lost goes."""
        rec = self.recovery
        rtt = self.rtt
        wait = rec.reo_timeout(
            self.snd_una, self.snd_max, now, rec.reo_wnd(rtt.min_rtt, rtt.srtt), self.ctx.counters
        )
        self.output(now)
        if wait:
            self._rto_at = now + wait + TIMEOUT_MIN
            rec.timer = Timer.REO
        elif rec.packets_out and (self._rto_at is None or rec.timer is not Timer.RTO):
            self._set_rto(now)

    def _send_loss_probe(self, now: float) -> None:
        """Linux tcp_send_loss_probe: one new segment if the window allows, else the last
        segment again, to draw an ACK (a SACK) that shows a tail loss without a timeout."""
        rec = self.recovery
        self._set_rto(now)
        if rec.tlp_high_seq is not None or not rec.packets_out:
            return  # one probe until it is answered
        mss = self.snd_mss
        off = (self.snd_nxt - self.snd_buf_seq) & MASK
        unsent = len(self.snd_buf) - off if off < HALF else 0
        room = (self.snd_una + self.snd_wnd - self.snd_nxt) & MASK
        if unsent > 0 and room < HALF and room >= min(unsent, mss):
            size = min(unsent, mss)
            flags = ACK
            if size == unsent and self._fin_queued:
                flags |= FIN
            self._transmit(self.snd_nxt, flags, _copied(self.snd_buf, off, off + size), now)
        else:
            tail = rec.pieces.tail(mss)
            if tail is None or not self._retransmit(tail, 1, now):
                return
        rec.tlp_high_seq = self.snd_nxt
        self.ctx.counters["TCPLossProbes"] += 1
        self._set_rto(now)

    def _process_ack(
        self,
        ack: int,
        now: float,
        ts: Timestamps | None = None,
        timer: bool = True,
        rtt_sample: bool = True,
    ) -> tuple[int, int]:
        """``ack`` acknowledges new data (or our SYN): drop it from the send buffer and the
        retransmission queue, take the ACK's RTT sample (:meth:`_ack_rtt`; not for a SYN-ACK,
        ``rtt_sample`` False, which the SYN's time gave) and re-arm the retransmission timer
        unless ``timer`` is False (:meth:`_ack` arms it once, after loss recovery, as Linux
        tcp_ack does). Returns (segments acknowledged, those newly delivered)."""
        # Linux tcp_snd_una_update: bytes_acked counts sequence space, SYN and FIN included
        # (a child starts with its SYN-ACK acknowledged: snd_una = ISS + 1)
        una = self.snd_una
        acked = (ack - una) & MASK
        syn = 0
        if una == self.iss:
            if self.listener is not None:
                acked -= 1
            else:
                syn = 1  # the SYN's delivery (a child's SYN-ACK: handshake_acked)
            self.syn_acked = True
        self.bytes_acked += acked
        off = (ack - self.snd_buf_seq) & MASK
        if off < HALF:
            n = min(off, len(self.snd_buf))
            if n:
                buf = self.snd_buf
                if isinstance(buf, SendQueue):
                    buf.trim(n)
                self.snd_buf = buf if buf else b""
                self.snd_buf_seq = (self.snd_buf_seq + n) & MASK
        self.snd_una = ack
        queue = self.sock.errqueue
        if queue is not None and queue.stamps:
            queue.acked(una, ack, now)  # Linux tcp_ack_tstamp
        urg = self._urg
        if urg is not None and urg.snd_up is not None and not seq_lt(ack, urg.snd_up):
            urg.snd_up = None  # Linux tcp_clean_rtx_queue: snd_up = snd_una, urgent mode over
            if urg.idle:
                self._urg = None
        if seq_lt(self.snd_nxt, ack):
            self.snd_nxt = ack
        self.retransmits = self.backoff = 0
        rec = self.recovery
        prior_packets = rec.packets_out
        segs, fresh = rec.pieces.acked(ack, self.snd_mss, now, self.rtt.min_rtt)
        rtt = self._ack_rtt(now, ts, True) if rtt_sample else None
        if prior_packets and self.snd_una == self.snd_max:
            # Linux tcp_clean_rtx_queue: the retransmission queue is empty
            self._chrono_stop(ChronoType.BUSY, now, self._queues_empty())
        # Linux pkts_acked, from tcp_clean_rtx_queue, which tcp_ack skips when nothing was in
        # the retransmission queue (no_queue: the ACK of a child's SYN-ACK)
        if rtt is not None and prior_packets:
            rec.rtt_sample(round(rtt * 1e6), ack, self.snd_max, self._pacing_rate(), now)
        if self.snd_una == self.snd_max:
            self._rto_at = self._lsnd = None
        elif timer:
            self._set_xmit_timer(now)
        return segs + syn, fresh + syn

    def _ack_rtt(self, now: float, ts: Timestamps | None, acked: bool) -> float | None:
        """Linux tcp_ack_update_rtt: the RTT this ACK measures, from the sending time of what
        it newly delivered (Karn: none when it acknowledges a retransmitted piece), else of
        what it newly SACKed, else (when it ``acked`` new data) from its TS echo; the last
        delivered piece's RTT goes to min_rtt and the congestion control (ca_rtt_us, returned;
        None without a sample)."""
        pieces = self.recovery.pieces
        seq_rtt = ca_rtt = None
        first = pieces.first_ackt
        if first is not None and first != RETRANS_ACKED:
            seq_rtt = now - first
        first = pieces.first_sackt
        if first is not None and seq_rtt is None:
            seq_rtt = now - first
        if seq_rtt is not None:
            ca_rtt = now - pieces.last_deliveredt
        else:
            if not (acked and ts is not None and ts.tsecr):
                return None
            seq_rtt = ca_rtt = self._rtt_tsopt(now, ts.tsecr)
            if seq_rtt is None:
                return None
        self.rtt.sample(seq_rtt, ca_rtt)
        return ca_rtt

    def _oow_ack(
        self, now: float, pure: bool, seq: int = 0, end: int = 0, skipped: str = "TCPACKSkippedSeq"
    ) -> None:
        """A duplicate ACK for an out-of-window segment; for a pure ACK at most one per 500 ms
        (Linux tcp_oow_rate_limited, tcp_invalid_ratelimit), so two ends cannot ACK forever.
        Old data (``seq`` before RCV.NXT) is reported in a D-SACK block (Linux
        tcp_send_dupack) and the quick ACKs start again. ``skipped`` counts a rate-limited one
        (TCPACKSkippedSeq, TCPACKSkippedPAWS)."""
        if pure:
            if self._rate_limited(now, skipped):
                return
        elif seq_lt(seq, self.rcv_nxt):
            self.ctx.counters["DelayedACKLost"] += 1
            self.enter_quickack()
            if self.sack_ok:
                self._dsack = (seq, end if seq_lt(end, self.rcv_nxt) else self.rcv_nxt)
        self.send_ack(now)

    def _rate_limited(self, now: float, counter: str) -> bool:
        """Linux __tcp_oow_rate_limited: at most one such ACK per tcp_invalid_ratelimit."""
        last = self._last_oow
        if last is not None and 0 <= now - last < self.ctx.settings.invalid_ratelimit:
            self.ctx.counters[counter] += 1
            return True
        self._last_oow = now
        return False

    def _challenge_ack(self, now: float) -> None:
        """Linux tcp_send_challenge_ack (RFC 5961): limited per socket like duplicate ACKs,
        then by the host-wide tcp_challenge_ack_limit per second."""
        if self._rate_limited(now, "TCPACKSkippedChallenge"):
            return
        if not self.ctx.challenge_ack_allowed(now):
            return
        self.ctx.counters["TCPChallengeACK"] += 1
        self.send_ack(now)

    def _reset(self, now: float) -> None:
        """An acceptable RST: the error Linux reports (tcp_reset)."""
        err = errno.EPIPE if self.state is S.CLOSE_WAIT else errno.ECONNRESET
        self.ctx.counters["TcpEstabResets"] += 1
        self._move(E.RCV_RST)
        self.destroy(now, err)

    def _rcv_time_wait(self, seg: TcpSegment, flags: int, now: float) -> None:
        """Linux tcp_timewait_state_process (6.x), but for a SYN that reopens the 4-tuple
        (:meth:`time_wait_isn`, which the host asks first): an in-window bare ACK (or RST)
        is the one segment TIME-WAIT takes quietly (the RST ends it, tcp_rfc1337 = 0; the
        ACK restarts the 2MSL timer and stores TS.Recent); every other segment is answered
        with an ACK, a pure one (or a SYN) at most one per tcp_invalid_ratelimit
        (TCPACKSkippedTimeWait), after a PAWS check (PAWSTimewait); an out-of-window RST is
        dropped."""
        seq = seg.seq
        end = (seq + len(seg.payload) + (flags & SYN) // SYN + (flags & FIN)) & MASK
        tsval = self._tw_tsval(seg)
        paws_reject = tsval is not None and self._paws_reject(tsval, flags, now)
        if not paws_reject and seq == self.rcv_nxt and (seq == end or flags & RST):
            if flags & RST:
                self._move(E.RCV_RST)
                self.destroy(now, None)
                return
            self._tw_at = now + TIME_WAIT_LEN
            if tsval is not None:
                self._store_ts_recent(tsval, now)
            return
        if paws_reject:
            self.ctx.counters["PAWSTimewait"] += 1
        if flags & RST:
            return
        if paws_reject or flags & ACK:
            self._tw_at = now + TIME_WAIT_LEN
        # tcp_oow_rate_limited: data without a SYN is not part of an ACK loop
        if (seq == end or flags & SYN) and self._rate_limited(now, "TCPACKSkippedTimeWait"):
            return
        self.send_ack(now)

    def _tw_tsval(self, seg: TcpSegment) -> int | None:
        """The TSval TIME-WAIT checks: only where timestamps were in use."""
        ts = seg.timestamps if self.ts_ok else None
        return None if ts is None else ts.tsval

    def _paws_reject(self, tsval: int, flags: int, now: float) -> bool:
        """Linux tcp_paws_reject: ``tsval`` older than TS.Recent; a RST only while TS.Recent
        is younger than TCP_PAWS_MSL (60 s)."""
        if self._paws_check(tsval, 0, now):
            return False
        return not (flags & RST and int(now) >= self._ts_recent_stamp + PAWS_MSL)

    def time_wait_isn(self, seg: TcpSegment, now: float) -> int | None:
        """A SYN in TIME-WAIT that may open a new connection (Linux TCP_TW_SYN): its sequence
        is beyond the old connection's, or (timestamps in use) its TSval is newer than
        TS.Recent, and PAWS accepts it. The ISN the new connection gets then (above any
        sequence the old one used: snd_nxt + 65537, never 0); None for any other segment."""
        flags = int(seg.flags)
        if self.state is not S.TIME_WAIT or flags & (SYN | ACK | RST) != SYN:
            return None
        tsval = self._tw_tsval(seg)
        if tsval is not None and self._paws_reject(tsval, flags, now):
            return None
        newer_ts = tsval is not None and (self.ts_recent - tsval) & MASK >= HALF
        if not (seq_lt(self.rcv_nxt, seg.seq) or newer_ts):
            return None
        return ((self.snd_nxt + 65535 + 2) & MASK) or 1

    # -- data and FIN ------------------------------------------------------------------------------

    def _rcv_data(self, seg: TcpSegment, flags: int, now: float) -> None:
        payload = seg.payload
        seq = seg.seq
        if flags & SYN:
            seq = (seq + 1) & MASK
        if self._urg is not None:
            take_byte(self._urg, seq, payload)  # Linux tcp_urg: the byte of a pointer seen
        fin_seq = (seq + len(payload)) & MASK
        st = self.state
        if st not in _CAN_RECEIVE:
            if payload or flags & FIN:
                self.send_ack(now)  # after the peer's FIN: only duplicates can come
            return
        if self.orphan and seq_lt(self.rcv_nxt, fin_seq):
            # new data, or a FIN beyond a hole, after close(): Linux tcp_reset and the reply
            # RST of tcp_v4_send_reset (TCPAbortOnData)
            self.ctx.counters["TCPAbortOnData"] += 1
            self.ctx.send_reset_for(self.local, self.remote, seg)
            self.abort(now, rst=False)
            return
        off = (self.rcv_nxt - seq) & MASK
        if off < HALF and off:
            payload = payload[off:] if off < len(payload) else b""
            seq = self.rcv_nxt
        limit = (self.sock.rcvbuf - len(self.rcv_buf)) - ((seq - self.rcv_nxt) & MASK)
        if len(payload) > limit:
            payload = payload[: max(limit, 0)]
            flags &= ~FIN
        delivered = 0
        if payload:
            if flags & CWR and self.ecn_ok:
                # Linux tcp_ecn_accept_cwr: the peer reduced its window, no more ECE owed
                self._ecn_flags &= ~ECN_DEMAND_CWR
            self.data_segs_in += self._wire_segs(len(payload))
            if seq == self.rcv_nxt:
                self.rcv_buf = _received(self.rcv_buf, payload)
                delivered = len(payload)
                self.rcv_nxt = (seq + delivered) & MASK
                self._data_recv(seg.timestamps, delivered, now)
                if self.ooo is not None:
                    more = self.ooo.take(self.rcv_nxt)
                    if not self.ooo:
                        self.ooo = None
                    self.rcv_buf = _received(self.rcv_buf, more)
                    self.rcv_nxt = (self.rcv_nxt + len(more)) & MASK
                    delivered += len(more)
            else:
                budget = self.sock.rcvbuf - len(self.rcv_buf)
                if self.ooo is None:
                    self.ooo = OutOfOrderQueue()
                if self.ecn_ok:
                    self._ecn_check_ce(seg.ecn)  # Linux tcp_data_queue_ofo
                if not self.ooo.insert(seq, payload, self.rcv_nxt, budget, self.ctx.counters):
                    flags &= ~FIN  # dropped for want of memory: its FIN too
                elif self.sack_ok:  # Linux: without SACK the window stays, for dupacks
                    self._grow_window(len(payload))
        if flags & FIN:
            self._rcv_fin_seq = fin_seq
        if delivered:
            self.bytes_received += delivered
        if self._rcv_fin_seq is not None and self.rcv_nxt == self._rcv_fin_seq:
            self.rcv_nxt = (self.rcv_nxt + 1) & MASK
            self.bytes_received += 1  # Linux tcp_rcv_nxt_update counts the FIN's sequence
            if delivered and self.ecn_ok:
                self._ecn_check_ce(seg.ecn)  # tcp_event_data_recv, before tcp_fin
            self._move(E.RCV_FIN)
            if self.state is S.TIME_WAIT:
                self._rto_at = None
                self._tw_at = now + TIME_WAIT_LEN
                self._fastopen_ofo_check(now)
            if self.state is S.CLOSE_WAIT and st is not S.CLOSE_WAIT:
                self._fin_ack(now)
            else:
                self.send_ack(now)
            self.ctx.emit(Readable(self.sock))
            return
        if delivered:
            self.ctx.emit(Readable(self.sock))
            if self.ooo:
                self.send_ack(now)
            else:
                # Linux tcp_ecn_accept_cwr: data with CWR is ACKed at once (ICSK_ACK_NOW)
                cwr = bool(flags & CWR) and self.ecn_ok
                self._schedule_ack(now, delivered, seg.ecn, cwr)
        else:
            self.send_ack(now)  # out of order or duplicate: ACK at once (with SACK blocks)

    def _ecn_check_ce(self, ecn: int) -> None:
        """Data on an ECN connection came with IP ECN field ``ecn``: Linux tcp_ecn_check_ce
        (CE: ECE on what goes until a CWR comes, and quick ACKs; Not-ECT after ECT was seen:
        likely a retransmission, quick ACKs)."""
        ecn_flags = self._ecn_flags
        if ecn == ECN_CE:
            if not ecn_flags & ECN_DEMAND_CWR:
                self.enter_quickack(2)
                ecn_flags |= ECN_DEMAND_CWR
            ecn_flags |= ECN_SEEN
        elif ecn != ECN_NOT_ECT:
            ecn_flags |= ECN_SEEN
        elif ecn_flags & ECN_SEEN:
            self.enter_quickack(2)
        self._ecn_flags = ecn_flags

    def _fin_ack(self, now: float) -> None:
        """Linux tcp_fin into CLOSE_WAIT enters ping-pong mode (the application's own FIN may
        carry the ACK), then __tcp_ack_snd_check: an ACK now when it covers more than a
        segment's worth (rcv_nxt - rcv_wup > rcv_mss) or with out-of-order data, else delayed."""
        self._pingpong = max(self._pingpong, 1)
        if ((self.rcv_nxt - self._rcv_wup) & MASK) > self.snd_mss or self.ooo:
            self.send_ack(now)
            return
        self._ato_pending += 1
        if self._delack_at is None:  # tcp_send_delayed_ack: an ato of 0 gives the next tick
            self._delack_at = now + (self._delack_timeout() if self._ato else JIFFY)

    def _schedule_ack(self, now: float, size: int, ecn: int, ack_now: bool) -> None:
        """``size`` bytes of in-order data arrived (the last in IP ECN field ``ecn``): Linux
        tcp_event_data_recv (ato, quick ACK mode at the start, tcp_ecn_check_ce) then
        __tcp_ack_snd_check: an ACK now when ``ack_now`` (ICSK_ACK_NOW), for a second
        segment's worth (one coalesced packet of many, GRO's, is as many segments) or in quick
        ACK mode (never in ping-pong mode: the reply carries it), else a delayed ACK."""
        self._ato_pending += self._wire_segs(size)
        if not self._ato:  # the first data: the delayed ACK engine starts in quick ACK mode
            self._quickack = MAX_QUICKACKS
            self._ato = DELACK
        else:
            gap = now - self._lrcv
            if gap <= DELACK / 2:
                self._ato = self._ato / 2 + DELACK / 2
            elif gap < self._ato:
                self._ato = min(self._ato / 2 + gap, self.rtt.rto)
            elif gap > self.rtt.rto:
                self._quickack = MAX_QUICKACKS
        self._lrcv = now
        if self.ecn_ok:
            self._ecn_check_ce(ecn)
        if ack_now or self._ato_pending >= 2 or (self._quickack and not self._pingpong):
            self.send_ack(now)
        elif self._delack_at is None:
            self._delack_at = now + self._delack_timeout()

    def _delack_timeout(self) -> float:
        """Linux tcp_send_delayed_ack: ato, at most 200 ms in ping-pong mode (500 ms else) and
        at most the SRTT (not under 40 ms)."""
        ato = self._ato
        if ato > DELACK:
            limit = DELACK_MAX if self._pingpong else 0.5
            if self.rtt.srtt:
                limit = min(limit, max(self.rtt.srtt, DELACK))
            ato = min(ato, limit)
        return min(ato, DELACK_MAX)

    # -- retransmission timeout --------------------------------------------------------------------

    def _on_rto(self, now: float) -> None:
        ctx = self.ctx
        st = self.state
        options = self.sock.options
        syncnt = options.syn_retries  # TCP_SYNCNT (a child has its listener's)
        user_timeout = options.user_timeout
        start: float | None = None  # when the retransmissions began (Linux retrans_stamp)
        if st is S.SYN_SENT:
            # Linux 6.x tcp_write_timeout: syn_retries plus the linear timeouts, or the time
            # syn_retries doubling RTOs from 1 s would take (1 + 2 + ... s), whichever comes first
            # (TCP_USER_TIMEOUT, when set, instead of that time)
            retries = syncnt or ctx.settings.syn_retries
            start = self._syn_sent_at
            expired = self.retransmits >= retries + ctx.settings.syn_linear_timeouts or (
                self.retransmits > 0 and _timed_out(now - start, retries, RTO_INIT, user_timeout)
            )
        elif not self.syn_acked:  # a TFO child gets one more (tcp_fastopen_synack_timer)
            expired = self.retransmits >= (
                syncnt or ctx.settings.synack_retries + (1 if self.tfo_child else 0)
            )
        elif self.snd_wnd == 0 and not self.orphan:
            # Linux: into a window shrunk to zero the retransmission is a probe; it gives up
            # only when no ACK came for TCP_RTO_MAX (TCP_USER_TIMEOUT's part in
            # tcp_rtx_probe0_timed_out is not modelled: no clamp either)
            expired = now - self._rcv_tstamp > RTO_MAX
        else:  # retries2, as the time that many doubling RTOs from 200 ms would take
            if self.retransmits == 0:
                self._retrans_stamp = now  # Linux retrans_stamp: the first retransmission
            start = self._retrans_stamp
            expired = self.retransmits > 0 and _timed_out(
                now - start, ctx.settings.retries2, RTO_MIN, user_timeout
            )
        if (
            self.listener is None
            and (self.syn_fastopen or self.syn_data or self.syn_data_acked)
            and (self.retransmits == 2 or (self.retransmits < 2 and expired))
        ):
            ctx.counters["TCPFastOpenActiveFail"] += 1
            ctx.blackhole.active_disable(now)  # Linux tcp_fastopen_active_detect_blackhole
        if expired:
            self._move(E.TIMEOUT)
            self.destroy(now, self.soft_error or errno.ETIMEDOUT)  # Linux tcp_write_err
            return
        ctx.counters["TCPTimeouts"] += 1
        if st is S.SYN_SENT and self.retransmits == 0 and self.syn_data:
            ctx.cookie_cache.disable(
                (self.local, self.remote, self.rport), NegativeReason.SYN_DATA_TIMEOUT, now
            )
        self.retransmits += 1
        # Linux 6.x tcp_retransmit_timer: SYN-SENT keeps the RTO for tcp_syn_linear_timeouts
        # retransmissions (1, 1, 1, 1, 1, 2, 4 s with the default 4), every other state doubles
        if st is not S.SYN_SENT or self.retransmits > ctx.settings.syn_linear_timeouts:
            self.backoff += 1
        if not self.syn_acked:
            self.total_retrans += 1
            ctx.counters["TcpRetransSegs"] += 1
            if st is S.SYN_SENT:
                self._send_syn(now)  # without data and without the option
            else:
                self._send_synack(now)  # without the option
            self._set_rto(now, start)  # (a child's SYN-ACK timer is not clamped)
            return
        if self.snd_una == self.snd_max:
            return  # nothing in flight (the zero window has its probe timer)
        # Linux tcp_retransmit_timer: tcp_enter_loss, the head again, the rest as ACKs come
        rec = self.recovery
        rec.on_timeout(self.snd_max, self.snd_una, self.retransmits == 1, now, ctx.counters)
        if self.ecn_ok:
            self._ecn_flags |= ECN_QUEUE_CWR  # tcp_enter_loss: tcp_ecn_queue_cwr
        if self._retransmit_head(now):
            self._set_rto(now, start)
        else:
            # the device refused it (NET_XMIT_DROP): again after TCP_RESOURCE_PROBE_INTERVAL,
            # the RTO not backed off
            self.backoff -= 1
            self._rto_at = now + RESOURCE_PROBE_INTERVAL

    def _probe_timer(self, now: float) -> None:
        """Linux tcp_probe_timer and tcp_send_probe0: data waits with nothing in flight.
        Within an open window (it waited for a cork) one MSS of it goes, with PSH
        (tcp_write_wakeup); behind a zero window, a segment one below SND.UNA (no data) makes
        the peer ACK with its window. The peer answering keeps the connection alive;
        ``retries2`` unanswered probes (8 for an orphan) end it, and so does TCP_USER_TIMEOUT
        from the first probe on, answered or not."""
        if self.snd_una != self.snd_max or not self._unsent():
            self.probes_out = 0
            self._probes_since = None
            return
        user_timeout = self.sock.options.user_timeout
        if self._probes_since is None:
            self._probes_since = now
        elif user_timeout and now - self._probes_since >= user_timeout:
            self._move(E.TIMEOUT)
            self.destroy(now, errno.ETIMEDOUT)
            return
        settings = self.ctx.settings
        limit = ORPHAN_RETRIES if self.orphan else settings.retries2
        if self.probes_out >= limit:
            self._move(E.TIMEOUT)
            self.destroy(now, errno.ETIMEDOUT)
            return
        if self._xmit_refused():  # tcp_write_wakeup failed locally: probe again soon
            self.probes_out += 1
            self._probe_at = now + self._probe0_when(now, RESOURCE_PROBE_INTERVAL)
            return
        nxt = self.snd_nxt
        room = (self.snd_una + self.snd_wnd - nxt) & MASK
        off = (nxt - self.snd_buf_seq) & MASK
        unsent = len(self.snd_buf) - off if off < HALF else 0
        if unsent > 0 and 0 < room < HALF:
            size = min(unsent, room, self.snd_mss)
            end = (nxt + size) & MASK
            if seq_lt(self.pushed_seq, end):
                self.pushed_seq = end
            if size < unsent and not self.psh_marks:
                # Linux tcp_write_wakeup: PSH on the skb before tcp_fragment, which gives it to
                # the rest too (there, the end of what is queued: the engine has no skb edges)
                self._add_mark((self.snd_buf_seq + len(self.snd_buf)) & MASK)
            flags = ACK | PSH
            if size == unsent and self._fin_queued:
                flags |= FIN
            self._transmit(nxt, flags, _copied(self.snd_buf, off, off + size), now)
            self._set_rto(now)  # Linux tcp_event_new_data_sent: tcp_rearm_rto
            self.probes_out = self.backoff = 0
            self._probes_since = None
            return
        self.ctx.counters["TCPWinProbe"] += 1
        self._emit((self.snd_una - 1) & MASK, ACK, now=now)
        self.probes_out += 1
        if self.backoff < settings.retries2:
            self.backoff += 1
        self._probe_at = now + self._probe0_when(now)

    def _probe0_when(self, now: float, when: float | None = None) -> float:
        """Linux tcp_probe0_when (or ``when``), within what is left of TCP_USER_TIMEOUT since
        the first probe (tcp_clamp_probe0_to_user_timeout, at least TCP_TIMEOUT_MIN)."""
        if when is None:
            when = self.rtt.backed_off(self.backoff)
        user_timeout = self.sock.options.user_timeout
        since = self._probes_since
        if not user_timeout or since is None:
            return when
        return min(when, max(user_timeout - max(now - since, 0.0), TIMEOUT_MIN))

    def _unsent(self) -> bool:
        """Data or a FIN waits to be sent."""
        off = (self.snd_nxt - self.snd_buf_seq) & MASK
        return (off < HALF and off < len(self.snd_buf)) or (
            self._fin_queued and self.snd_nxt == self._fin_seq
        )

    def _chrono_start(self, kind: ChronoType, now: float) -> None:
        """Linux tcp_chrono_start."""
        chrono = self._chrono
        if chrono is None:
            chrono = self._chrono = Chrono()
        chrono.start(kind, now)

    def _chrono_stop(self, kind: ChronoType, now: float, queues_empty: bool) -> None:
        """Linux tcp_chrono_stop (none started yet: nothing to stop)."""
        if self._chrono is not None:
            self._chrono.stop(kind, now, queues_empty)

    def _queues_empty(self) -> bool:
        """Linux tcp_rtx_and_write_queues_empty: nothing in flight, nothing to send."""
        return self.snd_una == self.snd_max and not self._unsent()

    def _ack_probe(self, now: float) -> None:
        """Linux tcp_ack_probe: an ACK while probing; an open window ends the probes (their
        backoff too), a closed one times the next probe from now."""
        self.probes_out = 0
        if self._probe_at is None:
            return
        if self.snd_wnd:
            self._probe_at = None
            self.backoff = 0
            self._probes_since = None
        else:
            self._probe_at = now + self._probe0_when(now)

    # -- introspection -----------------------------------------------------------------------------

    def info(self, now: float) -> TcpInfo:
        """Linux tcp_get_info at ``now``."""
        options = 0
        if self.ts_ok:
            options |= TCPI_OPT_TIMESTAMPS
        if self.sack_ok:
            options |= TCPI_OPT_SACK
        if self.wscale_ok:
            options |= TCPI_OPT_WSCALE
        if self.ecn_ok:
            options |= TCPI_OPT_ECN
        if self.syn_data_acked:
            options |= TCPI_OPT_SYN_DATA
        if self.tfo_child:
            options |= TCPI_OPT_TFO_CHILD
        if self.usec_ts:
            options |= TCPI_OPT_USEC_TS
        rec = self.recovery
        pieces = rec.pieces
        rate = pieces.rate
        unacked = pieces.packets_out
        if self.state is S.SYN_SENT:
            unacked += 1  # the SYN
        chrono = self._chrono
        busy, rwnd_limited, sndbuf_limited = chrono.stats_us(now) if chrono else (0, 0, 0)
        return TcpInfo(
            tcpi_state=int(self.state),
            tcpi_ca_state=int(rec.ca_state) or (CaState.LOSS if self.retransmits else 0),
            tcpi_retransmits=self.retransmits,
            tcpi_probes=self.probes_out,
            tcpi_backoff=self.backoff,
            tcpi_options=options,
            tcpi_snd_wscale=self.snd_wscale if self.wscale_ok else 0,
            tcpi_rcv_wscale=self.rcv_wscale if self.wscale_ok else 0,
            tcpi_fastopen_client_fail=int(self.fastopen_client_fail),
            tcpi_rto=int(self.rtt.backed_off(self.backoff) * 1e6),
            tcpi_ato=int(self._ato * 1e6),  # Linux icsk_ack.ato (0 before the first data)
            tcpi_snd_mss=self.snd_mss,
            tcpi_rcv_mss=self.snd_mss,
            tcpi_unacked=unacked,
            tcpi_lost=pieces.lost_out,
            tcpi_retrans=pieces.retrans_out,
            tcpi_sacked=rec.sacked_out,
            tcpi_reordering=pieces.reordering,
            tcpi_rtt=int(self.rtt.srtt * 1e6),
            tcpi_rttvar=int(self.rtt.rttvar * 1e6),
            tcpi_snd_ssthresh=min(self.recovery.ssthresh, 0x7FFFFFFF),
            tcpi_snd_cwnd=self.recovery.cwnd,
            tcpi_advmss=self._adv_mss - (TS_OPTION_LEN if self.ts_ok else 0),
            tcpi_rcv_space=self.rcv_wnd_init,
            tcpi_total_retrans=self.total_retrans,
            tcpi_bytes_acked=self.bytes_acked,
            tcpi_bytes_received=self.bytes_received,
            tcpi_segs_out=self.segs_out,
            tcpi_segs_in=self.segs_in,
            tcpi_data_segs_in=self.data_segs_in,
            tcpi_data_segs_out=self.data_segs_out,
            tcpi_snd_wnd=self.snd_wnd,
            tcpi_rcv_wnd=(self.rcv_adv - self.rcv_nxt) & MASK if self.state in _SYNCHRONIZED else 0,
            tcpi_delivered=self.recovery.delivered,
            tcpi_delivered_ce=self.recovery.delivered_ce,
            tcpi_last_data_sent=since_ms(now, rec.lsndtime),
            tcpi_last_data_recv=since_ms(now, self._lrcv),
            tcpi_last_ack_recv=since_ms(now, self._rcv_tstamp),
            tcpi_busy_time=busy,
            tcpi_rwnd_limited=rwnd_limited,
            tcpi_sndbuf_limited=sndbuf_limited,
            tcpi_delivery_rate=rate.delivery_rate(self.snd_mss) if rate is not None else 0,
            tcpi_delivery_rate_app_limited=int(rate.rate_app_limited) if rate is not None else 0,
            tcpi_reord_seen=pieces.reord_seen,
        )
