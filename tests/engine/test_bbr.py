"""BBR and delivery rate sampling over an engine pair in virtual time, through a bottleneck.

One bulk sender over :class:`~fastopen.engine.link.Link` with a bottleneck ``rate`` (and a
drop-tail buffer of two BDPs), checked against what Linux's ``tcp_rate.c`` and ``tcp_bbr.c``
compute: the delivery rate is the bottleneck's, STARTUP fills the pipe and drains it into
PROBE_BW, the window and the pacing rate follow gain x BDP, PROBE_RTT comes 10 s after the
last new minimum RTT; and BBR keeps the bottleneck busy at a random loss that holds CUBIC down.
"""

from __future__ import annotations

import socket

import pytest
from engine_support import BulkTransfer

from fastopen.engine import Host
from fastopen.engine.bbr import (
    BBR_UNIT,
    CWND_GAIN,
    CWND_MIN_TARGET,
    DRAIN_GAIN,
    HIGH_GAIN,
    MIN_TSO_RATE,
    PACING_GAIN,
    Bbr,
    BbrMode,
    running_max,
)
from fastopen.engine.cc import CaState
from fastopen.engine.link import HEADERS, Link
from fastopen.engine.recovery import INFINITE_SSTHRESH
from fastopen.engine.tcb import Connection
from fastopen.engine.window import sndbuf_for

SOL_TCP = socket.IPPROTO_TCP
MSS = 1448  # MTU 1500 with timestamps
RATE = 1_500_000  # the bottleneck, bytes a second (headers included)
DELAY = 0.02  # one way: RTT 40 ms
#: What the bottleneck delivers of data: segments of MSS bytes take MSS + HEADERS.
GOODPUT = RATE * MSS / (MSS + HEADERS)


class Transfer(BulkTransfer):
    """A client sending as fast as its buffer lets it to a server reading all it gets."""

    def __init__(
        self,
        cc: str,
        *,
        rate: float = RATE,
        delay: float = DELAY,
        loss: float = 0.0,
        secret: bytes = b"b" * 16,
        write: int | None = None,
    ) -> None:
        client = Host(["198.18.0.1"], congestion_control=cc, secret=secret)
        server = Host(["198.18.0.2"], rmem_max=8 << 20)
        link = Link(
            client, server, delay=delay, rate=rate, buffer=int(rate * delay * 4), loss=loss, seed=3
        )
        super().__init__(client, server, link, write)

    @property
    def conn(self) -> Connection:
        conn = self.sock.conn
        assert conn is not None
        return conn

    @property
    def bbr(self) -> Bbr:
        cc = self.recovery.cc
        assert isinstance(cc, Bbr)
        return cc


def test_delivery_rate_is_the_bottleneck_rate_and_marks_app_limited_samples() -> None:
    """tcp_rate.c: a sender that keeps the pipe full reports the bottleneck's rate of data in
    tcpi_delivery_rate, not app-limited; one writing 10 KB a round trip reports a lower,
    app-limited rate (tcp_rate_check_app_limited at each write)."""
    bulk = Transfer("cubic")
    bulk.run(2.0)
    info = bulk.sock.tcp_info(bulk.link.now)
    assert info.tcpi_delivery_rate == pytest.approx(GOODPUT, rel=0.02)
    assert info.tcpi_delivery_rate_app_limited == 0

    light = Transfer("cubic", write=10_000)
    for i in range(10):
        light.run(0.1 * (i + 1))
        light.pump()
    info = light.sock.tcp_info(light.link.now)
    assert 0 < info.tcpi_delivery_rate < GOODPUT / 2
    assert info.tcpi_delivery_rate_app_limited == 1


def test_bbr_startup_fills_the_pipe_drains_then_probes_bandwidth() -> None:
    """bbr_check_full_bw_reached and bbr_check_drain: STARTUP (gains 2.885) until three
    rounds without 25 % more bandwidth, DRAIN (pacing gain 1/2.885, ssthresh one BDP's flight),
    then PROBE_BW; the bandwidth estimate is the bottleneck's and min_rtt the path's."""
    bulk = Transfer("bbr")
    modes: list[BbrMode] = []
    gains: dict[BbrMode, set[tuple[int, int]]] = {}

    def check() -> None:
        bbr = bulk.bbr
        if not modes or modes[-1] is not bbr.mode:
            modes.append(bbr.mode)
        gains.setdefault(bbr.mode, set()).add((bbr.pacing_gain, bbr.cwnd_gain))

    assert bulk.recovery.ssthresh == INFINITE_SSTHRESH
    bulk.run(3.0, check)
    bbr = bulk.bbr
    assert modes[:3] == [BbrMode.STARTUP, BbrMode.DRAIN, BbrMode.PROBE_BW]
    assert gains[BbrMode.STARTUP] == {(HIGH_GAIN, HIGH_GAIN)}
    assert gains[BbrMode.DRAIN] == {(DRAIN_GAIN, HIGH_GAIN)}
    assert {cwnd for _, cwnd in gains[BbrMode.PROBE_BW]} == {CWND_GAIN}
    assert {pacing for pacing, _ in gains[BbrMode.PROBE_BW]} == set(PACING_GAIN)
    assert bbr.full_bw_reached
    assert bbr.bw_bytes() == pytest.approx(GOODPUT, rel=0.01)
    # the path's RTT: 2 x DELAY and one segment's serialisation
    assert bbr.min_rtt_us == pytest.approx((2 * DELAY + (MSS + HEADERS) / RATE) * 1e6, rel=0.01)
    assert bulk.recovery.ssthresh < INFINITE_SSTHRESH  # set as DRAIN began
    assert bulk.received >= 0.85 * GOODPUT * 3.0 - 200_000  # the startup's round trips


def test_bbr_window_and_pacing_rate_follow_gain_times_bdp() -> None:
    """bbr_set_pacing_rate and bbr_set_cwnd in PROBE_BW: the pacing rate is pacing_gain x bw,
    1 % below (bbr_pacing_margin_percent), the one the connection paces at; the window never
    passes cwnd_gain x BDP plus the quantisation budget and ACK aggregation, and comes down to
    it; what is in flight stays near one BDP."""
    bulk = Transfer("bbr")
    bulk.run(1.5)
    assert bulk.bbr.mode is BbrMode.PROBE_BW
    bdp_segments = GOODPUT * 2 * DELAY / MSS
    flights: list[int] = []

    def check() -> None:
        bbr = bulk.bbr
        bw = bbr.max_bw()
        expected = bw * MSS * bbr.pacing_gain / BBR_UNIT * 1e6 / (1 << 24) * 0.99
        assert bbr.pacing_rate == pytest.approx(expected, rel=1e-3, abs=2)
        assert bulk.conn._pacing_rate() == bbr.pacing_rate
        target = bbr.inflight(bw, CWND_GAIN) + 2 + max(bbr._extra_acked)
        assert bulk.recovery.cwnd <= target
        flights.append(bulk.recovery.in_flight())

    bulk.run(4.0, check)
    assert bulk.recovery.cwnd >= bbr_target(bulk) - 4
    assert 0.8 * bdp_segments < sum(flights) / len(flights) < 1.6 * bdp_segments


def bbr_target(bulk: Transfer) -> int:
    bbr = bulk.bbr
    return bbr.inflight(bbr.max_bw(), CWND_GAIN)


def test_bbr_probe_rtt_ten_seconds_after_the_last_new_min_rtt() -> None:
    """bbr_update_min_rtt: the path's delay grows (a route change), so no sample reaches the
    minimum again; 10 s after the last one PROBE_RTT caps the window at 4 for at least 200 ms
    and a round, then the window comes back and min_rtt is the new path's."""
    bulk = Transfer("bbr", rate=600_000)
    bulk.run(2.0)
    stamp = bulk.bbr.min_rtt_stamp
    old_min = bulk.bbr.min_rtt_us
    bulk.link.delay = DELAY * 1.5
    entered: list[float] = []
    left: list[float] = []
    windows: list[int] = []

    def check() -> None:
        bbr = bulk.bbr
        if bbr.mode is BbrMode.PROBE_RTT:
            if not entered:
                entered.append(bulk.link.now)
            windows.append(bulk.recovery.cwnd)
        elif entered and not left:
            left.append(bulk.link.now)

    bulk.run(stamp / 1000 + 11.0, check)
    assert entered and left
    assert entered[0] == pytest.approx(stamp / 1000 + 10.0, abs=0.2)
    assert max(windows) <= CWND_MIN_TARGET
    assert left[0] - entered[0] >= 0.2
    bbr = bulk.bbr
    assert bbr.mode is BbrMode.PROBE_BW
    assert bbr.min_rtt_us > old_min * 1.3  # the new path's
    assert bulk.recovery.cwnd > 4 * CWND_MIN_TARGET


def test_bbr_keeps_the_pipe_full_at_random_loss_where_cubic_cannot() -> None:
    """At 1 % random loss and RTT 40 ms BBR's model ignores the losses (no policer: the
    long-term estimator finds no consistent lossy rate) and keeps the bottleneck busy, while
    CUBIC halves its window at every loss."""
    got = {}
    for cc in ("bbr", "cubic"):
        bulk = Transfer(cc, rate=3_000_000, loss=0.01)
        bulk.run(4.0)
        got[cc] = bulk.received / 4.0
        if cc == "bbr":
            assert not bulk.bbr._lt_use_bw
            assert bulk.bbr.bw_bytes() == pytest.approx(3_000_000 * MSS / (MSS + HEADERS), rel=0.05)
    assert got["bbr"] > 0.8 * 3_000_000 * MSS / (MSS + HEADERS)
    assert got["bbr"] > 3 * got["cubic"]


def test_bbr_long_term_bandwidth_of_a_policer_for_48_rounds() -> None:
    """bbr_lt_bw_sampling: a bottleneck with a two-packet buffer drops what comes faster than
    its rate, as a token-bucket policer does; two lossy intervals (20 % lost) at a consistent
    rate make BBR pace at their mean (lt_bw, gain 1 in PROBE_BW) for 48 rounds, then the
    sampling and the gain cycle start again."""
    bulk = Transfer("bbr", rate=1_000_000)
    bulk.link.buffer = 3000
    spans: list[list[int]] = []

    def check() -> None:
        bbr = bulk.bbr
        if bbr._lt_use_bw:
            if not spans or len(spans[-1]) == 2:
                spans.append([bbr.rtt_cnt])
            assert bbr._bw_estimate() == bbr._lt_bw
            if bbr.mode is BbrMode.PROBE_BW:
                assert bbr.pacing_gain == BBR_UNIT
        elif spans and len(spans[-1]) == 1:
            spans[-1].append(bbr.rtt_cnt)

    bulk.run(6.0, check)
    assert spans and len(spans[0]) == 2
    assert spans[0][1] - spans[0][0] == 48


def test_bbr_packet_conservation_in_the_first_round_of_recovery() -> None:
    """bbr_set_cwnd_to_recover_or_restore: entering recovery, the window is what is in flight
    plus what the ACK delivered (less what it marked lost), never cut to a fraction; leaving
    it, the window saved at the loss (bbr_save_cwnd) comes back."""
    bulk = Transfer("bbr", rate=3_000_000, loss=0.01)
    prior_state = [CaState.OPEN]
    entries: list[tuple[int, int, int]] = []
    exits: list[tuple[int, int]] = []

    def check() -> None:
        rec = bulk.recovery
        state = rec.ca_state
        if state is CaState.RECOVERY and prior_state[0] is not CaState.RECOVERY:
            rs = rec.pieces.rate
            assert rs is not None
            entries.append((rec.cwnd, rec.in_flight(), rs.acked_sacked))
        elif prior_state[0] is CaState.RECOVERY and state is CaState.OPEN:
            exits.append((rec.cwnd, bulk.bbr._prior_cwnd))
        prior_state[0] = state

    bulk.run(3.0, check)
    assert len(entries) > 5 and exits
    for cwnd, in_flight, acked in entries:
        # what was in flight as the ACK came, plus what it delivered; the transmissions it
        # allowed are in flight now
        assert in_flight <= cwnd <= in_flight + acked
    for cwnd, prior in exits:
        assert cwnd >= min(prior, bbr_target(bulk))


def test_bbr_by_socket_option_sndbuf_and_its_random_phase() -> None:
    """TCP_CONGESTION "bbr" on an established connection initialises it (bbr_init: ssthresh
    unlimited, a pacing rate of 2.885 x cwnd / SRTT); a BBR connection's send buffer is three
    windows (bbr_sndbuf_expand); the first PROBE_BW phase is drawn from the host's random
    source (its secret: the same secret, the same phases) and is never the draining one."""
    bulk = Transfer("cubic")
    bulk.run(0.3)
    srtt = bulk.conn.rtt.srtt
    bulk.sock.setsockopt(SOL_TCP, socket.TCP_CONGESTION, b"bbr", bulk.link.now)
    bbr = bulk.bbr
    rec = bulk.recovery
    assert rec.ssthresh == INFINITE_SSTHRESH and bbr.mode is BbrMode.STARTUP
    assert bbr.pacing_rate == pytest.approx(
        rec.cwnd * MSS / srtt * HIGH_GAIN / BBR_UNIT * 0.99, 1e-3
    )
    bulk.run(2.0)
    assert bbr.mode is BbrMode.PROBE_BW

    fresh = Transfer("bbr")
    mss = fresh.conn.snd_mss + 12  # rx_opt.mss_clamp: with the timestamps option
    assert fresh.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= sndbuf_for(mss, 10, 3)
    assert sndbuf_for(mss, 10, 3) == 3 * sndbuf_for(mss, 10) // 2

    def phases(secret: bytes) -> list[int]:
        cc = Host(["198.18.0.1"], secret=secret).congestion_control("bbr")
        assert isinstance(cc, Bbr)
        return [cc._random_below(7) for _ in range(20)]

    assert phases(b"a" * 16) == phases(b"a" * 16) != phases(b"c" * 16)
    draws = iter([0, 6, 3])
    bbr = Bbr(lambda n: next(draws))
    rate_sample = bulk.recovery.pieces.rate
    assert rate_sample is not None
    starts = []
    for _ in range(3):
        bbr._reset_probe_bw_mode(rate_sample)
        starts.append(bbr.cycle_idx)
    assert starts == [0, 2, 5]  # 7 - draw, then the next phase: never 1 (gain 0.75)


def test_bbr_min_tso_segs_by_pacing_rate() -> None:
    """bbr_min_tso_segs: one segment per TSO packet below 1.2 Mbit/s of pacing, else two."""
    bbr = Bbr(lambda n: 0)
    bbr.pacing_rate = MIN_TSO_RATE // 8 - 1
    assert bbr.min_tso_segs() == 1
    bbr.pacing_rate = MIN_TSO_RATE // 8
    assert bbr.min_tso_segs() == 2


def test_running_max_keeps_the_best_of_the_window() -> None:
    """lib/win_minmax.c's running max over 10 rounds: a new best replaces all; the best ages
    out after the window and the second best takes its place."""
    s = [0] * 6
    running_max(s, 10, 1, 100)
    assert s[1] == 100
    running_max(s, 10, 2, 50)
    running_max(s, 10, 5, 80)
    assert s[1] == 100
    running_max(s, 10, 12, 10)  # round 1's sample is 11 rounds old
    assert s[1] == 80
    running_max(s, 10, 13, 200)
    assert s == [13, 200] * 3
