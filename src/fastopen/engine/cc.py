"""Congestion control of one connection, as Linux 6.x's ``tcp_congestion_ops``.

:class:`~fastopen.engine.recovery.Recovery` owns the window (``cwnd``, ``ssthresh``, the
additive-increase credit ``cwnd_cnt``, ``prior_cwnd``) and calls an algorithm through the hooks
Linux has: ``cong_avoid`` when an ACK delivered data while the window was the limit,
``ssthresh`` on a loss, ``undo_cwnd`` when a reduction proves spurious, ``pkts_acked`` with
the RTT sample of an ACK, ``set_state`` when the connection enters a new ``CaState`` and
``cwnd_event`` for a ``CaEvent`` (data sent with nothing in flight, a restart after idle).

An algorithm may also have the optional operations Linux's has (None when it has not, as a
NULL pointer in ``tcp_congestion_ops``): ``init`` as the connection is established,
``cong_control``, which takes the place of ``cong_avoid`` and the stack's window reduction and
pacing rate: it sets ``cwnd`` and its own ``pacing_rate`` from each ACK's rate sample
(:class:`~fastopen.engine.rate.DeliveryRate`) and the stack paces by it (Linux
``SK_PACING_NEEDED``), ``min_tso_segs`` and ``sndbuf_expand``.

Three algorithms, by their Linux names (``net.ipv4.tcp_congestion_control``, ``TCP_CONGESTION``):

* ``reno``: ``tcp_reno_cong_avoid`` (slow start by the segments each ACK delivers, RFC 3465
  with Linux's unlimited L; congestion avoidance ``tcp_cong_avoid_ai``: one segment per window
  of segments delivered), ``tcp_reno_ssthresh`` (half the window);
* ``cubic``: ``tcp_cubic.c`` (RFC 9438) with its module defaults: beta 717/1024,
  ``bic_scale`` 41, ``fast_convergence``, ``tcp_friendliness``, and HyStart as the host's
  :class:`CubicParams` say (Linux's defaults: ``hystart=1``, ``hystart_detect=3``: ACK train
  and delay increase, ``hystart_low_window=16``, ``hystart_ack_delta_us=2000``). Time is
  counted in jiffies of 1 ms (``HZ=1000``); the cube root is exact where ``cubic_root``
  approximates it by a table and one Newton step (they differ by at most a few 1/1024 s in
  K); the RTT samples are Linux's, one per ACK (``tcp_clean_rtx_queue``);
* ``bbr``: ``tcp_bbr.c`` (BBR v1), :mod:`fastopen.engine.bbr`, with ``cong_control``.

Stateless Reno is one shared instance; each CUBIC connection has its own (``__slots__``) from
the first hook that moves it, and shares its host's :class:`CubicAtRest` until then.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fastopen.engine.rate import DeliveryRate
from fastopen.engine.segmentation import GSO_MAX_SIZE, SentPieces
from fastopen.engine.seq import seq_lt

if TYPE_CHECKING:
    from fastopen.engine.settings import Settings

#: The algorithms the engine has, by Linux name (the default first, as Linux lists them).
NAMES = ("cubic", "reno", "bbr")
#: Linux TCP_CA_NAME_MAX: a name is at most 15 bytes and a NUL.
NAME_MAX = 16


class CaState(enum.IntEnum):
    """Linux ``enum tcp_ca_state`` (``tcpi_ca_state``)."""

    OPEN = 0
    DISORDER = 1
    CWR = 2
    RECOVERY = 3
    LOSS = 4


class CaEvent(enum.IntEnum):
    """Linux ``enum tcp_ca_event`` (the ones the engine raises)."""

    TX_START = 0  # data leaves with nothing in flight (tcp_event_data_sent)
    CWND_RESTART = 1  # the window restarts after idle (tcp_cwnd_restart)
    LOSS = 3  # a timeout (tcp_enter_loss)


class Window(Protocol):
    """What an algorithm reads and moves: Linux tp->snd_cwnd, snd_ssthresh, snd_cwnd_cnt,
    prior_cwnd (the window before the last reduction) and lsndtime (when data last left);
    ``cc``, the connection's algorithm (:class:`CubicAtRest` puts a connection's own there);
    what ``cong_control`` reads: icsk_ca_state, tp->delivered, the scoreboard (its ``rate``)
    and tcp_packets_in_flight."""

    cwnd: int
    ssthresh: int
    cwnd_cnt: int
    prior_cwnd: int
    lsndtime: float
    cc: CongestionControl
    ca_state: CaState
    delivered: int
    pieces: SentPieces

    def in_flight(self) -> int: ...


class CongestionControl(Protocol):
    """The hooks of Linux ``struct tcp_congestion_ops`` the engine calls."""

    @property
    def name(self) -> str: ...

    @property
    def init(self) -> Callable[[Window, int, float, float, float], None] | None:
        """Linux ca_ops->init, as the connection is established (tcp_init_transfer) or gets
        the algorithm then (tcp_reinit_congestion_control): (window, MSS, SRTT, min RTT,
        now)."""

    @property
    def cong_control(self) -> Callable[[Window, DeliveryRate, float], None] | None:
        """Linux ca_ops->cong_control: each ACK's rate sample sets the window and the pacing
        rate (None: cong_avoid, the stack's PRR and tcp_update_pacing_rate)."""

    @property
    def pacing_rate(self) -> float | None:
        """sk_pacing_rate as ``cong_control`` sets it, bytes a second (None: the stack's)."""

    @property
    def min_tso_segs(self) -> Callable[[], int] | None:
        """Linux ca_ops->min_tso_segs (None: tcp_min_tso_segs)."""

    @property
    def sndbuf_expand(self) -> Callable[[], int] | None:
        """Linux ca_ops->sndbuf_expand: send buffer per segment of window (None: 2)."""

    def cong_avoid(self, w: Window, acked: int, now: float) -> None:
        """An ACK delivered ``acked`` segments while cwnd-limited: grow the window."""

    def ssthresh(self, w: Window) -> int:
        """A loss: the new slow-start threshold."""

    def undo_cwnd(self, w: Window) -> int:
        """A reduction was spurious: the window to go back to."""

    def pkts_acked(
        self, w: Window, rtt_us: int, una: int, snd_nxt: int, rate: float, now: float
    ) -> None:
        """An ACK up to ``una`` (``snd_nxt`` the highest sequence sent) with an RTT sample;
        ``rate`` is the pacing rate (bytes a second, 0: none yet)."""

    def set_state(self, w: Window, state: CaState) -> None:
        """The connection enters ``state``."""

    def cwnd_event(self, w: Window, event: CaEvent, now: float) -> None:
        """``event`` happened (before ``w.lsndtime`` moves to ``now`` for TX_START)."""


def in_slow_start(w: Window) -> bool:
    """Linux tcp_in_slow_start."""
    return w.cwnd < w.ssthresh


def slow_start(w: Window, acked: int) -> int:
    """Linux tcp_slow_start: one segment per segment delivered up to ssthresh; what is left of
    ``acked`` past it goes to congestion avoidance."""
    cwnd = min(w.cwnd + acked, w.ssthresh)
    acked -= cwnd - w.cwnd
    w.cwnd = cwnd
    return acked


def cong_avoid_ai(w: Window, step: int, acked: int) -> None:
    """Linux tcp_cong_avoid_ai: one segment per ``step`` segments delivered (credit earned at a
    larger ``step`` is spent first)."""
    if w.cwnd_cnt >= step:
        w.cwnd_cnt = 0
        w.cwnd += 1
    w.cwnd_cnt += acked
    if w.cwnd_cnt >= step:
        delta = w.cwnd_cnt // step
        w.cwnd_cnt -= delta * step
        w.cwnd += delta


class Reno:
    """Linux tcp_reno (``tcp_cong.c``): slow start, then one segment per window delivered."""

    __slots__ = ()
    init = None
    cong_control = None
    pacing_rate = None
    min_tso_segs = None
    sndbuf_expand = None

    @property
    def name(self) -> str:
        return "reno"

    def cong_avoid(self, w: Window, acked: int, now: float) -> None:
        if in_slow_start(w):
            acked = slow_start(w, acked)
            if not acked:
                return
        cong_avoid_ai(w, w.cwnd, acked)

    def ssthresh(self, w: Window) -> int:
        return max(w.cwnd >> 1, 2)

    def undo_cwnd(self, w: Window) -> int:
        return max(w.cwnd, w.prior_cwnd)

    def pkts_acked(
        self, w: Window, rtt_us: int, una: int, snd_nxt: int, rate: float, now: float
    ) -> None:
        return None

    def set_state(self, w: Window, state: CaState) -> None:
        return None

    def cwnd_event(self, w: Window, event: CaEvent, now: float) -> None:
        return None


RENO = Reno()

#: Linux tcp_cubic.c: BICTCP_BETA_SCALE, BICTCP_HZ, the beta and bic_scale defaults; HZ.
BETA_SCALE = 1024
BICTCP_HZ = 10
BETA = 717
BIC_SCALE = 41
HZ = 1000
#: beta_scale (tcp_friendliness: 8 * (1024 + beta) / 3 / (1024 - beta)), cube_rtt_scale and
#: cube_factor (2^40 / (bic_scale * 10)), as cubictcp_register computes them.
FRIENDLY_SCALE = 8 * (BETA_SCALE + BETA) // 3 // (BETA_SCALE - BETA)
CUBE_RTT_SCALE = BIC_SCALE * 10
CUBE_FACTOR = (1 << (10 + 3 * BICTCP_HZ)) // CUBE_RTT_SCALE
#: HyStart's detections (hystart_detect bits): the ACK train, the delay increase.
HYSTART_ACK_TRAIN = 0x1
HYSTART_DELAY = 0x2
#: HyStart: HYSTART_MIN_SAMPLES and the bounds of the delay threshold (HYSTART_DELAY_MIN,
#: HYSTART_DELAY_MAX), microseconds.
HYSTART_MIN_SAMPLES = 8
HYSTART_DELAY_MIN_US = 4000
HYSTART_DELAY_MAX_US = 16000


@dataclass(slots=True)
class CubicParams:
    """The writable parameters of Linux's tcp_cubic module that the engine has
    (``/sys/module/tcp_cubic/parameters/NAME``, global in Linux, one host's here), with their
    defaults; read at every use, as the module reads its variables: ``hystart`` (HyStart on),
    ``hystart_detect`` (its detections, :data:`HYSTART_ACK_TRAIN` | :data:`HYSTART_DELAY`),
    ``hystart_low_window`` (the smallest window it acts on) and ``hystart_ack_delta_us`` (the
    most ACKs of a train are apart)."""

    hystart: int = 1
    hystart_detect: int = HYSTART_ACK_TRAIN | HYSTART_DELAY
    hystart_low_window: int = 16
    hystart_ack_delta_us: int = 2000


def cube_root(a: int) -> int:
    """The integer cube root of ``a`` (rounded down)."""
    if a < 8:
        return 1 if a else 0
    x = 1 << -(-a.bit_length() // 3)  # above the root: Newton's steps come down to it
    while True:
        y = (2 * x + a // (x * x)) // 3
        if y >= x:
            return x
        x = y


class Cubic:
    """Linux tcp_cubic with HyStart: W(t) = C (t - K)^3 + W_max after a loss, 0.7 W_max at
    the loss; never slower than Reno would be (tcp_friendliness)."""

    __slots__ = (
        "_ack_cnt",
        "_counters",
        "_curr_rtt",
        "_delay_min",
        "_end_seq",
        "_epoch_start",
        "_found",
        "_k",
        "_last_ack",
        "_last_cwnd",
        "_last_max_cwnd",
        "_last_time",
        "_origin",
        "_round_start",
        "_sample_cnt",
        "_settings",
        "_tcp_cwnd",
        "cnt",
    )
    init = None
    cong_control = None
    pacing_rate = None
    min_tso_segs = None
    sndbuf_expand = None

    def __init__(self, counters: Counter[str], settings: Settings) -> None:
        self._counters = counters
        #: the host's: the module parameters (``settings.cubic``) and whether the egress paces
        #: (``settings.pacing``, Linux sk_pacing_status), read at every use
        self._settings = settings
        self._reset()
        self._hystart_reset(None, 0)

    @property
    def name(self) -> str:
        return "cubic"

    def _reset(self) -> None:
        """Linux bictcp_reset: no curve, no minimum delay, HyStart not done."""
        self.cnt = 0  # segments delivered per segment of growth (ca->cnt)
        self._last_max_cwnd = 0
        self._last_cwnd = 0
        self._last_time: int | None = None
        self._origin = 0
        self._k = 0
        self._epoch_start: int | None = None  # jiffies; None: no epoch (Linux 0)
        self._ack_cnt = 0
        self._tcp_cwnd = 0
        self._delay_min = 0  # microseconds (0: no sample yet)
        self._found = False

    def _hystart_reset(self, snd_nxt: int | None, now_us: int) -> None:
        """Linux bictcp_hystart_reset: a new round ends when ``snd_nxt`` is acknowledged (None:
        at the next sample, which then starts the round)."""
        self._round_start = self._last_ack = now_us
        self._end_seq = snd_nxt
        self._curr_rtt = 0xFFFFFFFF
        self._sample_cnt = 0

    def cong_avoid(self, w: Window, acked: int, now: float) -> None:
        if in_slow_start(w):
            acked = slow_start(w, acked)
            if not acked:
                return
        self._update(w.cwnd, acked, int(now * HZ))
        cong_avoid_ai(w, self.cnt, acked)

    def _update(self, cwnd: int, acked: int, jiffies: int) -> None:
        """Linux bictcp_update: ``cnt`` from the cubic curve at one RTT from now, and from the
        Reno window the same ACKs would have grown (at most one cwnd per 2 segments)."""
        self._ack_cnt += acked
        last_time = self._last_time
        if self._last_cwnd == cwnd and last_time is not None and jiffies - last_time <= HZ // 32:
            return
        epoch = self._epoch_start
        if epoch is None or jiffies != last_time:
            self._last_cwnd = cwnd
            self._last_time = jiffies
            if epoch is None:
                epoch = self._epoch_start = jiffies
                self._ack_cnt = acked
                self._tcp_cwnd = cwnd
                if self._last_max_cwnd <= cwnd:
                    self._k = 0
                    self._origin = cwnd
                else:
                    self._k = cube_root(CUBE_FACTOR * (self._last_max_cwnd - cwnd))
                    self._origin = self._last_max_cwnd
            # t: the time since the epoch began plus the minimum RTT, in 1/1024 s
            t = jiffies - epoch + -(-self._delay_min * HZ // 1_000_000)
            t = (t << BICTCP_HZ) // HZ
            offs = abs(t - self._k)
            delta = (CUBE_RTT_SCALE * offs * offs * offs) >> (10 + 3 * BICTCP_HZ)
            target = self._origin - delta if t < self._k else self._origin + delta
            self.cnt = cwnd // (target - cwnd) if target > cwnd else 100 * cwnd
            if self._last_max_cwnd == 0 and self.cnt > 20:
                self.cnt = 20  # no loss yet: at least 5 % per RTT
        # tcp_friendliness: the window Reno would have, grown by the segments delivered
        delta = (cwnd * FRIENDLY_SCALE) >> 3
        if self._ack_cnt > delta:
            n = (self._ack_cnt - 1) // delta
            self._ack_cnt -= n * delta
            self._tcp_cwnd += n
        if self._tcp_cwnd > cwnd:
            max_cnt = cwnd // (self._tcp_cwnd - cwnd)
            self.cnt = min(self.cnt, max_cnt)
        self.cnt = max(self.cnt, 2)

    def ssthresh(self, w: Window) -> int:
        """Linux cubictcp_recalc_ssthresh: W_max (lower with fast convergence: a loss below
        the last W_max leaves room to others), and beta times the window."""
        self._epoch_start = None
        cwnd = w.cwnd
        if cwnd < self._last_max_cwnd:
            self._last_max_cwnd = cwnd * (BETA_SCALE + BETA) // (2 * BETA_SCALE)
        else:
            self._last_max_cwnd = cwnd
        return max(cwnd * BETA // BETA_SCALE, 2)

    def undo_cwnd(self, w: Window) -> int:
        return max(w.cwnd, w.prior_cwnd)  # Linux tcp_reno_undo_cwnd

    def set_state(self, w: Window, state: CaState) -> None:
        """Linux cubictcp_state: a timeout forgets the curve and starts HyStart again."""
        if state is CaState.LOSS:
            self._reset()
            self._hystart_reset(None, 0)

    def cwnd_event(self, w: Window, event: CaEvent, now: float) -> None:
        """Linux cubictcp_cwnd_event: sending again after an idle time, the epoch moves by that
        time (not past now), so the curve goes on from where the window stood."""
        if event is not CaEvent.TX_START or self._epoch_start is None:
            return
        jiffies = int(now * HZ)
        delta = jiffies - int(w.lsndtime * HZ)
        if delta > 0:
            self._epoch_start = min(self._epoch_start + delta, jiffies)

    def pkts_acked(
        self, w: Window, rtt_us: int, una: int, snd_nxt: int, rate: float, now: float
    ) -> None:
        """Linux cubictcp_acked: the minimum delay, and HyStart while in slow start (not for
        a second after a reduction: those samples still carry the queue)."""
        epoch = self._epoch_start
        if epoch is not None and int(now * HZ) - epoch < HZ:
            return
        delay = max(rtt_us, 1)
        if self._delay_min == 0 or self._delay_min > delay:
            self._delay_min = delay
        if not self._found and w.cwnd < w.ssthresh and self._settings.cubic.hystart:  # in SS
            self._hystart_update(w, delay, una, snd_nxt, rate, int(now * 1_000_000))

    def _hystart_update(
        self, w: Window, delay: int, una: int, snd_nxt: int, rate: float, now_us: int
    ) -> None:
        """Linux hystart_update: slow start ends (ssthresh = cwnd) when the ACKs of a round
        keep coming closely spaced for the minimum RTT (the pipe is full; plus the time two GSO
        packets take at the pacing rate, at most 1 ms: hystart_ack_delay), half of that when
        nothing paces the connection (SK_PACING_NONE: its ACKs come in trains of TSO bursts),
        or when the smallest of the first 8 RTTs of a round exceeds the minimum by an eighth of
        it (4 to 16 ms: a queue builds)."""
        end = self._end_seq
        if end is None or seq_lt(end, una):
            self._hystart_reset(snd_nxt, now_us)
        settings = self._settings
        params = settings.cubic
        if w.cwnd < params.hystart_low_window:
            return
        counters = self._counters
        detect = params.hystart_detect
        if detect & HYSTART_ACK_TRAIN and now_us - self._last_ack <= params.hystart_ack_delta_us:
            self._last_ack = now_us
            ack_delay = min(1000, int(GSO_MAX_SIZE * 4 * 1_000_000 / rate)) if rate else 0
            threshold = self._delay_min + ack_delay
            if not settings.pacing:  # cubic has no pacing rate of its own: fq's, or none
                threshold >>= 1
            if now_us - self._round_start > threshold:
                self._found = True
                counters["TCPHystartTrainDetect"] += 1
                counters["TCPHystartTrainCwnd"] += w.cwnd
                w.ssthresh = w.cwnd
        if not detect & HYSTART_DELAY:
            return
        if self._curr_rtt > delay:
            self._curr_rtt = delay
        if self._sample_cnt < HYSTART_MIN_SAMPLES:
            self._sample_cnt += 1
        else:
            threshold = min(max(self._delay_min >> 3, HYSTART_DELAY_MIN_US), HYSTART_DELAY_MAX_US)
            if self._curr_rtt > self._delay_min + threshold:
                self._found = True
                counters["TCPHystartDelayDetect"] += 1
                counters["TCPHystartDelayCwnd"] += w.cwnd
                w.ssthresh = w.cwnd


class CubicAtRest(Cubic):
    """CUBIC as a connection starts it (Linux cubictcp_init), one instance a host's
    connections share until each needs state of its own: an idle connection holds none. The
    hooks that move the state (an RTT sample, growth, a loss) first give the connection a
    :class:`Cubic` of its own (``w.cc``) and go to it; a timeout's reset leaves the state as it
    is, and the other hooks only read it."""

    __slots__ = ()

    def _own(self, w: Window) -> Cubic:
        cc = Cubic(self._counters, self._settings)
        w.cc = cc
        return cc

    def cong_avoid(self, w: Window, acked: int, now: float) -> None:
        self._own(w).cong_avoid(w, acked, now)

    def ssthresh(self, w: Window) -> int:
        return self._own(w).ssthresh(w)

    def pkts_acked(
        self, w: Window, rtt_us: int, una: int, snd_nxt: int, rate: float, now: float
    ) -> None:
        self._own(w).pkts_acked(w, rtt_us, una, snd_nxt, rate, now)

    def set_state(self, w: Window, state: CaState) -> None:
        return None  # bictcp_reset and bictcp_hystart_reset of a state that never moved
