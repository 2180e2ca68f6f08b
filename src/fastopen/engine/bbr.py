"""BBR congestion control (v1), as Linux 6.x's ``net/ipv4/tcp_bbr.c``.

BBR models the path from each ACK's delivery rate sample (:mod:`.rate`) rather than from
losses: the bottleneck bandwidth is the windowed maximum of the samples over 10 round trips
(``minmax_running_max``), the propagation delay the minimum RTT over 10 s; it paces at
``pacing_gain * bw`` and lets ``cwnd_gain * bw * min_rtt`` (plus what ACK aggregation and
TSO quantisation need) be in flight. Its modes:

* STARTUP: gains of 2/ln 2 (2.885) double the rate each round until three rounds in a row
  raise the bandwidth by less than 25 % (the pipe is full);
* DRAIN: the inverse pacing gain until what is in flight falls to one BDP;
* PROBE_BW: an 8-phase gain cycle (1.25, 0.75, then 1.0 six times, one min_rtt each; the first
  phase at random), cwnd gain 2;
* PROBE_RTT: after 10 s without a new minimum RTT, cwnd 4 for 200 ms and a round, then back.

Beside them: the long-term ("LT") bandwidth of two lossy intervals at a consistent rate (a
token-bucket policer), used for up to 48 rounds; packet conservation in the first round of
recovery and the window before it restored after (``bbr_save_cwnd``, ``bbr_undo_cwnd``); the
extra window for ACK aggregation (``bbr_update_ack_aggregation``); ``bbr_min_tso_segs`` and
``bbr_sndbuf_expand`` (3). Arithmetic is Linux's: bandwidth in segments per microsecond
scaled by 2^24 (``BW_SCALE``), gains by 256 (``BBR_UNIT``), times in jiffies of 1 ms for the
min_rtt window and PROBE_RTT. ``tcp_rate.c``'s ``is_ack_delayed`` is not modelled (an expired
min_rtt takes any sample). The random phase comes from the host's random source (seeded by
its secret: a test's fixed secret makes it repeat).
"""

from __future__ import annotations

import enum
from collections.abc import Callable

from fastopen.engine.cc import CaEvent, CaState, Window
from fastopen.engine.rate import DeliveryRate
from fastopen.engine.recovery import INFINITE_SSTHRESH, INIT_CWND
from fastopen.engine.segmentation import GSO_MAX_SIZE, PACING_SHIFT

BW_SCALE = 24
BW_UNIT = 1 << BW_SCALE
BBR_SCALE = 8
BBR_UNIT = 1 << BBR_SCALE
HZ = 1000
#: Linux: CYCLE_LEN, bbr_bw_rtts, bbr_min_rtt_win_sec, bbr_probe_rtt_mode_ms, bbr_min_tso_rate
#: (bits a second), bbr_pacing_margin_percent.
CYCLE_LEN = 8
BW_RTTS = CYCLE_LEN + 2
MIN_RTT_WIN_SEC = 10
PROBE_RTT_MODE_MS = 200
MIN_TSO_RATE = 1_200_000
PACING_MARGIN_PERCENT = 1
#: bbr_high_gain (2/ln 2), bbr_drain_gain, bbr_cwnd_gain, bbr_pacing_gain, bbr_cycle_rand.
HIGH_GAIN = BBR_UNIT * 2885 // 1000 + 1
DRAIN_GAIN = BBR_UNIT * 1000 // 2885
CWND_GAIN = BBR_UNIT * 2
PACING_GAIN = (BBR_UNIT * 5 // 4, BBR_UNIT * 3 // 4) + (BBR_UNIT,) * 6
CYCLE_RAND = 7
#: bbr_cwnd_min_target, bbr_full_bw_thresh, bbr_full_bw_cnt.
CWND_MIN_TARGET = 4
FULL_BW_THRESH = BBR_UNIT * 5 // 4
FULL_BW_CNT = 3
#: The long-term estimator: bbr_lt_intvl_min_rtts, bbr_lt_loss_thresh (of 256: 20 %),
#: bbr_lt_bw_ratio, bbr_lt_bw_diff (bytes a second), bbr_lt_bw_max_rtts.
LT_INTVL_MIN_RTTS = 4
LT_LOSS_THRESH = 50
LT_BW_RATIO = BBR_UNIT // 8
LT_BW_DIFF = 4000 // 8
LT_BW_MAX_RTTS = 48
#: ACK aggregation: bbr_extra_acked_gain, bbr_extra_acked_win_rtts,
#: bbr_ack_epoch_acked_reset_thresh, bbr_extra_acked_max_us.
EXTRA_ACKED_GAIN = BBR_UNIT
EXTRA_ACKED_WIN_RTTS = 5
ACK_EPOCH_ACKED_RESET_THRESH = 1 << 20
EXTRA_ACKED_MAX_US = 100_000
#: Linux MAX_TCP_HEADER on x86-64 (bbr_tso_segs_goal keeps GSO_MAX_SIZE - 1 - it).
MAX_TCP_HEADER = 320
#: No min_rtt sample yet (Linux ~0U).
NO_RTT = 0xFFFFFFFF


class BbrMode(enum.IntEnum):
    """Linux ``enum bbr_mode``."""

    STARTUP = 0
    DRAIN = 1
    PROBE_BW = 2
    PROBE_RTT = 3


def running_max(s: list[int], win: int, t: int, meas: int) -> None:
    """Linux minmax_running_max (lib/win_minmax.c): the best, second and third best samples of
    the last ``win`` (here rounds) as ``[t0, v0, t1, v1, t2, v2]``; a new sample ``meas`` at
    ``t``."""
    if meas >= s[1] or t - s[4] > win:  # a new maximum, or nothing left in the window
        s[:] = [t, meas, t, meas, t, meas]
        return
    if meas >= s[3]:
        s[2:] = [t, meas, t, meas]
    elif meas >= s[5]:
        s[4:] = [t, meas]
    # minmax_subwin_update: the best ages out, and a quarter or half window refreshes the others
    dt = t - s[0]
    if dt > win:
        s[:] = [*s[2:], t, meas]
        if t - s[0] > win:
            s[:] = [*s[2:], t, meas]
    elif s[2] == s[0] and dt > win // 4:
        s[2:] = [t, meas, t, meas]
    elif s[4] == s[2] and dt > win // 2:
        s[4:] = [t, meas]


class Bbr:
    """Linux tcp_bbr: ``struct bbr`` of one connection and its ``tcp_congestion_ops``."""

    __slots__ = (
        "_ack_epoch_acked",
        "_ack_epoch_mstamp",
        "_bw",
        "_cycle_mstamp",
        "_extra_acked",
        "_extra_acked_win_idx",
        "_extra_acked_win_rtts",
        "_full_bw",
        "_full_bw_cnt",
        "_has_seen_rtt",
        "_idle_restart",
        "_lt_bw",
        "_lt_is_sampling",
        "_lt_last_delivered",
        "_lt_last_lost",
        "_lt_last_stamp",
        "_lt_rtt_cnt",
        "_lt_use_bw",
        "_mss",
        "_next_rtt_delivered",
        "_packet_conservation",
        "_prev_ca_state",
        "_prior_cwnd",
        "_probe_rtt_done_stamp",
        "_probe_rtt_round_done",
        "_random_below",
        "_round_start",
        "cwnd_gain",
        "cycle_idx",
        "full_bw_reached",
        "min_rtt_stamp",
        "min_rtt_us",
        "mode",
        "pacing_gain",
        "pacing_rate",
        "rtt_cnt",
    )

    def __init__(self, random_below: Callable[[int], int]) -> None:
        """A connection's BBR, ``random_below(n)`` drawing from [0, n); its state as
        :meth:`init` leaves it without an RTT, until the connection is established."""
        self._random_below = random_below
        self._mss = 0
        self._setup(INIT_CWND, 536, 0.0, 0.0, 0.0)

    @property
    def name(self) -> str:
        return "bbr"

    # -- the optional operations ---------------------------------------------------------------

    def init(self, w: Window, mss: int, srtt: float, min_rtt: float, now: float) -> None:
        """Linux bbr_init: STARTUP, no bandwidth yet, min_rtt from the handshake's, a pacing rate
        of high_gain * cwnd / SRTT; ssthresh unlimited."""
        w.ssthresh = INFINITE_SSTHRESH
        self._setup(w.cwnd, mss, srtt, min_rtt, now)

    def _setup(self, cwnd: int, mss: int, srtt: float, min_rtt: float, now: float) -> None:
        self._mss = mss
        self._prior_cwnd = 0
        self.rtt_cnt = 0
        self._next_rtt_delivered = 0
        self._prev_ca_state = CaState.OPEN
        self._packet_conservation = False
        self._probe_rtt_done_stamp: int | None = None
        self._probe_rtt_round_done = False
        self.min_rtt_us = int(min_rtt * 1e6) if min_rtt else NO_RTT
        self.min_rtt_stamp = int(now * HZ)
        self._bw = [0, 0, 0, 0, 0, 0]  # minmax_reset(&bw, 0, 0)
        self._has_seen_rtt = False
        self.pacing_rate = 0
        self._init_pacing_rate_from_rtt(cwnd, srtt)
        self._round_start = False
        self._idle_restart = False
        self.full_bw_reached = False
        self._full_bw = 0
        self._full_bw_cnt = 0
        self._cycle_mstamp = 0.0
        self.cycle_idx = 0
        self._lt_bw = 0
        self._lt_use_bw = False
        self._lt_is_sampling = False
        self._lt_last_stamp = int(now * HZ)  # bbr_reset_lt_bw_sampling_interval, from zeros
        self._lt_last_delivered = 0
        self._lt_last_lost = 0
        self._lt_rtt_cnt = 0
        self.mode = BbrMode.STARTUP
        self.pacing_gain = HIGH_GAIN
        self.cwnd_gain = HIGH_GAIN
        self._ack_epoch_mstamp = now
        self._ack_epoch_acked = 0
        self._extra_acked_win_rtts = 0
        self._extra_acked_win_idx = 0
        self._extra_acked = [0, 0]

    def min_tso_segs(self) -> int:
        """Linux bbr_min_tso_segs: one segment per TSO packet below 1.2 Mbit/s, else two."""
        return 1 if self.pacing_rate < MIN_TSO_RATE >> 3 else 2

    def sndbuf_expand(self) -> int:
        """Linux bbr_sndbuf_expand: 3 * cwnd, as BBR may slow-start even in recovery."""
        return 3

    def cong_control(self, w: Window, rs: DeliveryRate, now: float) -> None:
        """Linux bbr_main: the model from the sample, then the pacing rate and the window."""
        self._mss = rs.mss
        self._update_bw(w, rs)
        self._update_ack_aggregation(w, rs)
        if self.mode is BbrMode.PROBE_BW and self._is_next_cycle_phase(rs, now):
            self._advance_cycle_phase(rs)
        self._check_full_bw_reached(rs)
        self._check_drain(w, rs, now)
        self._update_min_rtt(w, rs, now)
        self._update_gains()
        bw = self._bw_estimate()
        self._set_pacing_rate(w.cwnd, bw, self.pacing_gain, rs.srtt)
        self._set_cwnd(w, rs, rs.acked_sacked, bw, self.cwnd_gain)

    # -- the common operations -----------------------------------------------------------------

    def cong_avoid(self, w: Window, acked: int, now: float) -> None:
        """BBR has none: ``cong_control`` takes its place (Linux never calls it)."""

    def pkts_acked(
        self, w: Window, rtt_us: int, una: int, snd_nxt: int, rate: float, now: float
    ) -> None:
        """BBR has none (its RTT is the rate sample's)."""

    def ssthresh(self, w: Window) -> int:
        """Linux bbr_ssthresh: entering recovery the window is saved; ssthresh stays."""
        self._save_cwnd(w)
        return w.ssthresh

    def undo_cwnd(self, w: Window) -> int:
        """Linux bbr_undo_cwnd: a spurious slow-down; full-pipe detection and the long-term
        sampling start again, the window stays."""
        self._full_bw = 0
        self._full_bw_cnt = 0
        rs = w.pieces.rate
        if rs is not None:
            self._reset_lt_bw_sampling(w, rs)
        return w.cwnd

    def set_state(self, w: Window, state: CaState) -> None:
        """Linux bbr_set_state: a timeout ends a round, with a loss for the LT sampler."""
        if state is CaState.LOSS:
            self._prev_ca_state = CaState.LOSS
            self._full_bw = 0
            self._round_start = True
            rs = w.pieces.rate
            if rs is not None:
                self._lt_bw_sampling(w, rs, 1, False)

    def cwnd_event(self, w: Window, event: CaEvent, now: float) -> None:
        """Linux bbr_cwnd_event: sending again after an app-limited idle time: pace at the
        estimated bandwidth in PROBE_BW (no need of more), PROBE_RTT may be done."""
        rs = w.pieces.rate
        if event is not CaEvent.TX_START or rs is None or not rs.app_limited:
            return
        self._idle_restart = True
        self._ack_epoch_mstamp = now
        self._ack_epoch_acked = 0
        if self.mode is BbrMode.PROBE_BW:
            self._set_pacing_rate(w.cwnd, self._bw_estimate(), BBR_UNIT, rs.srtt)
        elif self.mode is BbrMode.PROBE_RTT:
            self._check_probe_rtt_done(w, rs, now)

    # -- bandwidth, rates, windows -------------------------------------------------------------

    def max_bw(self) -> int:
        """Linux bbr_max_bw: the windowed maximum, segments per us << BW_SCALE."""
        return self._bw[1]

    def _bw_estimate(self) -> int:
        """Linux bbr_bw: the long-term bandwidth when policed, else the maximum."""
        return self._lt_bw if self._lt_use_bw else self._bw[1]

    def bw_bytes(self) -> int:
        """The bandwidth estimate in bytes a second (Linux bbr_get_info's bbr_bw)."""
        return self._bw_estimate() * self._mss * 1_000_000 >> BW_SCALE

    def _rate_bytes_per_sec(self, rate: int, gain: int) -> int:
        """Linux bbr_rate_bytes_per_sec: 1 % below ``rate * gain``, bytes a second."""
        rate = rate * self._mss * gain >> BBR_SCALE
        return rate * (1_000_000 // 100 * (100 - PACING_MARGIN_PERCENT)) >> BW_SCALE

    def _init_pacing_rate_from_rtt(self, cwnd: int, srtt: float) -> None:
        """Linux bbr_init_pacing_rate_from_rtt: high_gain * cwnd / SRTT (1 ms without one)."""
        if srtt > 0:
            rtt_us = max(int(srtt * 1e6), 1)
            self._has_seen_rtt = True
        else:
            rtt_us = 1000
        self.pacing_rate = self._rate_bytes_per_sec(cwnd * BW_UNIT // rtt_us, HIGH_GAIN)

    def _set_pacing_rate(self, cwnd: int, bw: int, gain: int, srtt: float) -> None:
        """Linux bbr_set_pacing_rate: ``gain * bw``; in STARTUP only ever up."""
        rate = self._rate_bytes_per_sec(bw, gain)
        if not self._has_seen_rtt and srtt > 0:
            self._init_pacing_rate_from_rtt(cwnd, srtt)
        if self.full_bw_reached or rate > self.pacing_rate:
            self.pacing_rate = rate

    def tso_segs_goal(self) -> int:
        """Linux bbr_tso_segs_goal: about 1 ms at the pacing rate, at most 127 segments."""
        size = min(self.pacing_rate >> PACING_SHIFT, GSO_MAX_SIZE - 1 - MAX_TCP_HEADER)
        return min(max(size // self._mss, self.min_tso_segs()), 0x7F)

    def _save_cwnd(self, w: Window) -> None:
        """Linux bbr_save_cwnd: the last good window, to restore after recovery or PROBE_RTT."""
        if self._prev_ca_state < CaState.RECOVERY and self.mode is not BbrMode.PROBE_RTT:
            self._prior_cwnd = w.cwnd
        else:
            self._prior_cwnd = max(self._prior_cwnd, w.cwnd)

    def bdp(self, bw: int, gain: int) -> int:
        """Linux bbr_bdp: ``gain * bw * min_rtt`` segments, rounded up (the initial window
        without an RTT)."""
        if self.min_rtt_us == NO_RTT:
            return INIT_CWND
        w = bw * self.min_rtt_us
        return ((w * gain >> BBR_SCALE) + BW_UNIT - 1) // BW_UNIT

    def _quantization_budget(self, cwnd: int) -> int:
        """Linux bbr_quantization_budget: three TSO packets more, an even count, two more in
        the probing phase."""
        cwnd += 3 * self.tso_segs_goal()
        cwnd = (cwnd + 1) & ~1
        if self.mode is BbrMode.PROBE_BW and self.cycle_idx == 0:
            cwnd += 2
        return cwnd

    def inflight(self, bw: int, gain: int) -> int:
        """Linux bbr_inflight."""
        return self._quantization_budget(self.bdp(bw, gain))

    def _packets_in_net_at_edt(self, inflight_now: int, rs: DeliveryRate, now: float) -> int:
        """Linux bbr_packets_in_net_at_edt: what will be in flight when the next departure
        (tcp_wstamp_ns) leaves, less what the bandwidth delivers until then."""
        interval_us = int((max(rs.edt, now) - now) * 1e6)
        interval_delivered = self._bw_estimate() * interval_us >> BW_SCALE
        inflight_at_edt = inflight_now
        if self.pacing_gain > BBR_UNIT:
            inflight_at_edt += self.tso_segs_goal()
        if interval_delivered >= inflight_at_edt:
            return 0
        return inflight_at_edt - interval_delivered

    def _ack_aggregation_cwnd(self) -> int:
        """Linux bbr_ack_aggregation_cwnd: the window for the data ACK aggregation delivers
        beyond the bandwidth (at most 100 ms of it), once the pipe was full."""
        if not self.full_bw_reached:
            return 0
        max_aggr_cwnd = self._bw_estimate() * EXTRA_ACKED_MAX_US // BW_UNIT
        aggr_cwnd = EXTRA_ACKED_GAIN * max(self._extra_acked) >> BBR_SCALE
        return min(aggr_cwnd, max_aggr_cwnd)

    def _set_cwnd(self, w: Window, rs: DeliveryRate, acked: int, bw: int, gain: int) -> None:
        """Linux bbr_set_cwnd with bbr_set_cwnd_to_recover_or_restore: packet conservation in
        the first round of recovery (what is in flight plus what was delivered), the saved
        window back after it; else slow start toward the target, down to it once full."""
        cwnd = w.cwnd
        if acked:
            if rs.losses > 0:
                cwnd = max(cwnd - rs.losses, 1)
            state, prev = w.ca_state, self._prev_ca_state
            if state is CaState.RECOVERY and prev is not CaState.RECOVERY:
                self._packet_conservation = True
                self._next_rtt_delivered = w.delivered  # the round starts now
                cwnd = w.in_flight() + acked
            elif prev >= CaState.RECOVERY and state < CaState.RECOVERY:
                cwnd = max(cwnd, self._prior_cwnd)
                self._packet_conservation = False
            self._prev_ca_state = state
            if self._packet_conservation:
                cwnd = max(cwnd, w.in_flight() + acked)
            else:
                target = self.bdp(bw, gain) + self._ack_aggregation_cwnd()
                target = self._quantization_budget(target)
                if self.full_bw_reached:
                    cwnd = min(cwnd + acked, target)
                elif cwnd < target or w.delivered < INIT_CWND:
                    cwnd += acked
                cwnd = max(cwnd, CWND_MIN_TARGET)
        w.cwnd = cwnd
        if self.mode is BbrMode.PROBE_RTT:
            w.cwnd = min(cwnd, CWND_MIN_TARGET)

    # -- the gain cycle and the modes ----------------------------------------------------------

    def _is_next_cycle_phase(self, rs: DeliveryRate, now: float) -> bool:
        """Linux bbr_is_next_cycle_phase: a phase lasts a min_rtt; probing (1.25) also until
        the flight reaches its target or a loss, draining (0.75) ends once it is one BDP."""
        full_length = int((rs.delivered_mstamp - self._cycle_mstamp) * 1e6) > self.min_rtt_us
        gain = self.pacing_gain
        if gain == BBR_UNIT:
            return full_length
        inflight = self._packets_in_net_at_edt(rs.prior_in_flight, rs, now)
        bw = self.max_bw()
        if gain > BBR_UNIT:
            return full_length and (rs.losses > 0 or inflight >= self.inflight(bw, gain))
        return full_length or inflight <= self.inflight(bw, BBR_UNIT)

    def _advance_cycle_phase(self, rs: DeliveryRate) -> None:
        """Linux bbr_advance_cycle_phase."""
        self.cycle_idx = (self.cycle_idx + 1) & (CYCLE_LEN - 1)
        self._cycle_mstamp = rs.delivered_mstamp

    def _reset_probe_bw_mode(self, rs: DeliveryRate) -> None:
        """Linux bbr_reset_probe_bw_mode: the cycle starts at a random phase (not draining)."""
        self.mode = BbrMode.PROBE_BW
        self.cycle_idx = CYCLE_LEN - 1 - self._random_below(CYCLE_RAND)
        self._advance_cycle_phase(rs)

    def _reset_mode(self, rs: DeliveryRate) -> None:
        """Linux bbr_reset_mode: STARTUP until the pipe was full, else PROBE_BW."""
        if not self.full_bw_reached:
            self.mode = BbrMode.STARTUP
        else:
            self._reset_probe_bw_mode(rs)

    # -- the long-term (policer) estimator -----------------------------------------------------

    def _reset_lt_bw_sampling_interval(self, w: Window, rs: DeliveryRate) -> None:
        self._lt_last_stamp = int(rs.delivered_mstamp * 1000)
        self._lt_last_delivered = w.delivered
        self._lt_last_lost = rs.lost
        self._lt_rtt_cnt = 0

    def _reset_lt_bw_sampling(self, w: Window, rs: DeliveryRate) -> None:
        self._lt_bw = 0
        self._lt_use_bw = False
        self._lt_is_sampling = False
        self._reset_lt_bw_sampling_interval(w, rs)

    def _lt_bw_interval_done(self, w: Window, rs: DeliveryRate, bw: int) -> None:
        """Linux bbr_lt_bw_interval_done: two intervals within 1/8 (or 4 kbit/s) of each
        other: policed at their mean rate."""
        lt_bw = self._lt_bw
        if lt_bw:
            diff = abs(bw - lt_bw)
            if (
                diff * BBR_UNIT <= LT_BW_RATIO * lt_bw
                or self._rate_bytes_per_sec(diff, BBR_UNIT) <= LT_BW_DIFF
            ):
                self._lt_bw = (bw + lt_bw) >> 1
                self._lt_use_bw = True
                self.pacing_gain = BBR_UNIT
                self._lt_rtt_cnt = 0
                return
        self._lt_bw = bw
        self._reset_lt_bw_sampling_interval(w, rs)

    def _lt_bw_sampling(self, w: Window, rs: DeliveryRate, losses: int, app_limited: bool) -> None:
        """Linux bbr_lt_bw_sampling: from the first loss, intervals of 4 to 16 rounds that end
        in a loss with 20 % of what was delivered lost give a long-term rate; with one in use,
        48 rounds of PROBE_BW and the cycle starts again."""
        if self._lt_use_bw:
            if self.mode is BbrMode.PROBE_BW and self._round_start:
                self._lt_rtt_cnt += 1
                if self._lt_rtt_cnt >= LT_BW_MAX_RTTS:
                    self._reset_lt_bw_sampling(w, rs)
                    self._reset_probe_bw_mode(rs)
            return
        if not self._lt_is_sampling:
            if not losses:
                return
            self._reset_lt_bw_sampling_interval(w, rs)
            self._lt_is_sampling = True
        if app_limited:
            self._reset_lt_bw_sampling(w, rs)
            return
        if self._round_start:
            self._lt_rtt_cnt += 1
        if self._lt_rtt_cnt < LT_INTVL_MIN_RTTS:
            return
        if self._lt_rtt_cnt > 4 * LT_INTVL_MIN_RTTS:
            self._reset_lt_bw_sampling(w, rs)
            return
        if not losses:
            return
        lost = rs.lost - self._lt_last_lost
        delivered = w.delivered - self._lt_last_delivered
        if not delivered or (lost << BBR_SCALE) < LT_LOSS_THRESH * delivered:
            return
        t = int(rs.delivered_mstamp * 1000) - self._lt_last_stamp
        if t < 1:
            return
        self._lt_bw_interval_done(w, rs, delivered * BW_UNIT // (t * 1000))

    # -- the model, per ACK --------------------------------------------------------------------

    def _update_bw(self, w: Window, rs: DeliveryRate) -> None:
        """Linux bbr_update_bw: a round ends when a piece sent after its start is delivered;
        a valid sample enters the max filter unless app-limited below the estimate."""
        self._round_start = False
        if rs.delivered < 0 or rs.interval_us <= 0:
            return
        prior = rs.prior_delivered
        if prior is not None and prior >= self._next_rtt_delivered:
            self._next_rtt_delivered = w.delivered
            self.rtt_cnt += 1
            self._round_start = True
            self._packet_conservation = False
        self._lt_bw_sampling(w, rs, rs.losses, rs.is_app_limited)
        bw = rs.delivered * BW_UNIT // rs.interval_us
        if not rs.is_app_limited or bw >= self._bw[1]:
            running_max(self._bw, BW_RTTS, self.rtt_cnt, bw)

    def _update_ack_aggregation(self, w: Window, rs: DeliveryRate) -> None:
        """Linux bbr_update_ack_aggregation: the most delivered beyond the bandwidth in an
        epoch, the larger of two windows of 5 rounds."""
        if rs.acked_sacked <= 0 or rs.delivered < 0 or rs.interval_us <= 0:
            return
        if self._round_start:
            self._extra_acked_win_rtts = min(0x1F, self._extra_acked_win_rtts + 1)
            if self._extra_acked_win_rtts >= EXTRA_ACKED_WIN_RTTS:
                self._extra_acked_win_rtts = 0
                self._extra_acked_win_idx ^= 1
                self._extra_acked[self._extra_acked_win_idx] = 0
        epoch_us = int((rs.delivered_mstamp - self._ack_epoch_mstamp) * 1e6)
        expected = self._bw_estimate() * epoch_us // BW_UNIT
        if (
            self._ack_epoch_acked <= expected
            or self._ack_epoch_acked + rs.acked_sacked >= ACK_EPOCH_ACKED_RESET_THRESH
        ):
            self._ack_epoch_acked = 0
            self._ack_epoch_mstamp = rs.delivered_mstamp
            expected = 0
        self._ack_epoch_acked = min(0xFFFFF, self._ack_epoch_acked + rs.acked_sacked)
        extra = min(self._ack_epoch_acked - expected, w.cwnd, 0xFFFF)
        idx = self._extra_acked_win_idx
        if extra > self._extra_acked[idx]:
            self._extra_acked[idx] = extra

    def _check_full_bw_reached(self, rs: DeliveryRate) -> None:
        """Linux bbr_check_full_bw_reached: three rounds (not app-limited) without 25 % more
        bandwidth: the pipe is full."""
        if self.full_bw_reached or not self._round_start or rs.is_app_limited:
            return
        max_bw = self._bw[1]
        if max_bw >= self._full_bw * FULL_BW_THRESH >> BBR_SCALE:
            self._full_bw = max_bw
            self._full_bw_cnt = 0
            return
        self._full_bw_cnt += 1
        self.full_bw_reached = self._full_bw_cnt >= FULL_BW_CNT

    def _check_drain(self, w: Window, rs: DeliveryRate, now: float) -> None:
        """Linux bbr_check_drain: full, STARTUP drains (ssthresh: one BDP's flight); drained,
        PROBE_BW."""
        if self.mode is BbrMode.STARTUP and self.full_bw_reached:
            self.mode = BbrMode.DRAIN
            w.ssthresh = self.inflight(self._bw[1], BBR_UNIT)
        if self.mode is BbrMode.DRAIN and self._packets_in_net_at_edt(
            w.in_flight(), rs, now
        ) <= self.inflight(self._bw[1], BBR_UNIT):
            self._reset_probe_bw_mode(rs)

    def _check_probe_rtt_done(self, w: Window, rs: DeliveryRate, now: float) -> None:
        """Linux bbr_check_probe_rtt_done: PROBE_RTT's time is up: the window back, the next
        one in 10 s."""
        done = self._probe_rtt_done_stamp
        jiffies = int(now * HZ)
        if done is None or jiffies <= done:
            return
        self.min_rtt_stamp = jiffies
        w.cwnd = max(w.cwnd, self._prior_cwnd)
        self._reset_mode(rs)

    def _update_min_rtt(self, w: Window, rs: DeliveryRate, now: float) -> None:
        """Linux bbr_update_min_rtt: the minimum RTT of 10 s; when it expires (not restarting
        from idle), PROBE_RTT: at most 4 in flight for 200 ms and a round, samples app-limited."""
        jiffies = int(now * HZ)
        expired = jiffies > self.min_rtt_stamp + MIN_RTT_WIN_SEC * HZ
        if rs.rtt_us >= 0 and (rs.rtt_us <= self.min_rtt_us or expired):
            self.min_rtt_us = rs.rtt_us
            self.min_rtt_stamp = jiffies
        if expired and not self._idle_restart and self.mode is not BbrMode.PROBE_RTT:
            self.mode = BbrMode.PROBE_RTT
            self._save_cwnd(w)
            self._probe_rtt_done_stamp = None
        if self.mode is BbrMode.PROBE_RTT:
            in_flight = w.in_flight()
            rs.app_limited = (w.delivered + in_flight) or 1
            if self._probe_rtt_done_stamp is None and in_flight <= CWND_MIN_TARGET:
                self._probe_rtt_done_stamp = jiffies + PROBE_RTT_MODE_MS * HZ // 1000
                self._probe_rtt_round_done = False
                self._next_rtt_delivered = w.delivered
            elif self._probe_rtt_done_stamp is not None:
                if self._round_start:
                    self._probe_rtt_round_done = True
                if self._probe_rtt_round_done:
                    self._check_probe_rtt_done(w, rs, now)
        if rs.delivered > 0:
            self._idle_restart = False

    def _update_gains(self) -> None:
        """Linux bbr_update_gains."""
        mode = self.mode
        if mode is BbrMode.STARTUP:
            self.pacing_gain = self.cwnd_gain = HIGH_GAIN
        elif mode is BbrMode.DRAIN:
            self.pacing_gain, self.cwnd_gain = DRAIN_GAIN, HIGH_GAIN
        elif mode is BbrMode.PROBE_BW:
            self.pacing_gain = BBR_UNIT if self._lt_use_bw else PACING_GAIN[self.cycle_idx]
            self.cwnd_gain = CWND_GAIN
        else:
            self.pacing_gain = self.cwnd_gain = BBR_UNIT
