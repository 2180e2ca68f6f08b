"""Congestion control over an engine pair in virtual time: the window Linux's formulas give.

One bulk sender over :class:`~fastopen.engine.link.Link` (RTT 100 ms, a 296-byte MTU so that
the receiver's 64 KB window never limits it), checked after every step against what RFC 3465,
RFC 5681 and RFC 9438 (as Linux's tcp_reno and tcp_cubic compute them) say the window is.
"""

from __future__ import annotations

import errno
import socket
from collections import Counter

import pytest
from engine_support import BulkTransfer, fails_with

from fastopen.engine import EngineSocket, Host
from fastopen.engine.cc import (
    CUBE_FACTOR,
    HYSTART_ACK_TRAIN,
    HYSTART_DELAY,
    RENO,
    CaState,
    Cubic,
    CubicAtRest,
    CubicParams,
    cube_root,
)
from fastopen.engine.host import Segment
from fastopen.engine.link import Link
from fastopen.engine.recovery import INIT_CWND, Recovery
from fastopen.engine.settings import Settings
from fastopen.kernel.attempts import Attempt
from fastopen.report import Side
from fastopen.runtime.stack import report

SERVER = ("198.18.0.2", 80)
SOL_TCP = socket.IPPROTO_TCP
TCP_CONGESTION = socket.TCP_CONGESTION
DELAY = 0.05  # one way: RTT 100 ms
MTU = 296
#: RFC 9438 (Linux: bic_scale 41 / 1024 * 10, beta 717 / 1024).
C = 0.4
BETA = 717 / 1024


class LossyLink(Link):
    """The link dropping the ``drop``-th data segment from the client (counting from 1)."""

    def __init__(self, *hosts: Host, drop: int = 0, delay: float = DELAY) -> None:
        super().__init__(*hosts, delay=delay)
        self.drop = drop
        self.data_segments = 0

    def _put(self, host: Host, item: bytes | Segment) -> None:
        if not isinstance(item, bytes) and item[2].payload and str(item[1]) == SERVER[0]:
            self.data_segments += 1
            if self.data_segments == self.drop:
                self.stats.dropped += 1
                return
        super()._put(host, item)


class Bulk(BulkTransfer):
    """A client sending as fast as its windows let it to a server reading all it gets; the
    client writes ``write`` bytes a round trip (None: always as much as it can)."""

    def __init__(
        self, cc: str, *, drop: int = 0, write: int | None = None, idle_restart: bool = True
    ) -> None:
        client = Host(
            ["198.18.0.1"], mtu=MTU, congestion_control=cc, slow_start_after_idle=idle_restart
        )
        server = Host(["198.18.0.2"], mtu=MTU)
        super().__init__(client, server, LossyLink(client, server, drop=drop), write)


def test_slow_start_grows_by_the_segments_each_ack_delivers() -> None:
    """RFC 3465 with Linux's tcp_slow_start: an ACK of two segments grows the window by two,
    so a window doubles in a round trip (10, 20, 40...), not by half as ACK counting does."""
    bulk = Bulk("reno")
    rec = bulk.recovery
    delivered0 = rec.delivered
    rounds: list[int] = []

    def check() -> None:
        assert rec.cwnd == INIT_CWND + rec.delivered - delivered0
        if not rounds or rounds[-1] != rec.cwnd:
            rounds.append(rec.cwnd)

    bulk.run(bulk.link.now + 0.35, check)
    assert rounds[:4] == [10, 20, 40, 80]


def test_reno_congestion_avoidance_one_segment_per_window_delivered() -> None:
    """Reno after a fast retransmit: ssthresh and cwnd half the window (tcp_reno_ssthresh),
    then one segment more per window of segments delivered (tcp_cong_avoid_ai), one a round
    trip."""
    bulk = Bulk("reno", drop=200)
    rec = bulk.recovery
    bulk.run(1.0)  # the loss and its recovery are over
    assert rec.prior_cwnd and rec.ssthresh == rec.prior_cwnd // 2
    assert bulk.link.stats.dropped == 1
    w0, credit0, delivered0, t0 = rec.cwnd, rec.cwnd_cnt, rec.delivered, bulk.link.now
    assert w0 > rec.ssthresh

    def check() -> None:
        credit, w = credit0 + rec.delivered - delivered0, w0
        while credit >= w:
            credit -= w
            w += 1
        assert rec.cwnd == w

    bulk.run(t0 + 1.0, check)  # ten round trips
    assert 9 <= rec.cwnd - w0 <= 11


def test_cubic_after_a_loss_follows_the_cubic_curve() -> None:
    """CUBIC: at a loss at W_max the window drops to beta W_max (717/1024), then follows
    W(t) = C (t - K)^3 + W_max with K = cbrt(W_max (1 - beta) / C): concave up to W_max at K,
    convex past it (RFC 9438 4.2; Linux bictcp_update)."""
    bulk = Bulk("cubic", drop=200)
    rec = bulk.recovery
    while not rec.prior_cwnd:
        assert bulk.step()
    w_max = rec.prior_cwnd
    assert rec.ssthresh == w_max * 717 // 1024
    # PRR brings the window down to ssthresh; the epoch starts with the first growth after
    while rec.ca_state is not CaState.OPEN or rec.cwnd <= rec.ssthresh:
        assert bulk.step()
    epoch = bulk.link.now
    k = (w_max * (1 - BETA) / C) ** (1 / 3)
    seen: list[tuple[float, int]] = []

    def check() -> None:
        t = bulk.link.now - epoch
        if t > 0.3:
            expected = C * (t - k) ** 3 + w_max
            assert abs(rec.cwnd - expected) <= max(3, 0.02 * w_max), (t, rec.cwnd, expected)
            seen.append((t, rec.cwnd))

    bulk.run(epoch + k + 2.0, check)
    assert bulk.link.stats.dropped == 1 and rec.ssthresh == w_max * 717 // 1024
    assert seen[-1][1] > w_max  # past K: probing above W_max
    assert bulk.client_host.counters["TCPHystartDelayDetect"] == 0


def test_hystart_ends_slow_start_on_a_delay_increase_before_any_loss() -> None:
    """HyStart (hystart_detect=3): when the smallest of the first 8 RTT samples of a round is
    more than an eighth of the minimum RTT above it (clamped to 4..16 ms; 12.5 ms at 100 ms),
    slow start ends there (ssthresh = cwnd) without a loss; 10 ms more does not."""
    for extra, detected in ((0.005, False), (0.010, True)):  # one way: RTT + 10 ms, + 20 ms
        bulk = Bulk("cubic")
        rec = bulk.recovery
        bulk.run(0.3)
        assert rec.cwnd >= 16 and rec.ssthresh == 0x7FFFFFFF
        bulk.link.delay = DELAY + extra
        bulk.run(0.7)
        counters = bulk.client_host.counters
        assert counters["TCPHystartDelayDetect"] == int(detected)
        retrans = bulk.sock.tcp_info(bulk.link.now).tcpi_total_retrans
        assert bulk.link.stats.dropped == 0 and retrans == 0
        if detected:
            assert rec.ssthresh == counters["TCPHystartDelayCwnd"] < rec.cwnd < 2 * rec.ssthresh
        else:
            assert rec.ssthresh == 0x7FFFFFFF


@pytest.mark.parametrize("cc", ["reno", "cubic"])
def test_no_growth_while_the_application_limits_the_sender(cc: str) -> None:
    """Linux tcp_is_cwnd_limited: a sender with 2 segments a round trip never fills its
    window of 10, so the window stays (slow start grows only below twice the most out)."""
    bulk = Bulk(cc, write=2 * (MTU - 52))
    for _ in range(20):
        bulk.run(bulk.link.now + 2 * DELAY)
        bulk.pump()
    info = bulk.sock.tcp_info(bulk.link.now)
    assert info.tcpi_delivered > 30
    assert info.tcpi_snd_cwnd == INIT_CWND


def test_cubic_and_reno_hooks_as_linux() -> None:
    """ssthresh on a loss, fast convergence (a loss below the last W_max remembers less),
    undo (the larger of the window and the one before the reduction), the cube root."""
    cubic = Cubic(Host(["198.18.0.1"]).counters, Settings())
    rec = Recovery(cubic, 0.0)
    rec.cwnd = 100
    assert rec._loss_ssthresh() == 70 and rec.prior_cwnd == 100
    rec.cwnd = 70
    assert cubic.undo_cwnd(rec) == 100
    # a loss at 80, below W_max 100: fast convergence remembers W_max = 80 (1 + beta) / 2
    rec.cwnd = 80
    assert rec._loss_ssthresh() == 56 and cubic._last_max_cwnd == 68
    rec.cwnd = rec.ssthresh = 56
    cubic.cong_avoid(rec, 1, 10.0)  # the epoch: the curve from 56 back to 68
    assert cubic._origin == 68 and cubic._k == cube_root(CUBE_FACTOR * 12)
    reno = Recovery(RENO, 0.0)
    reno.cwnd = 31
    assert reno._loss_ssthresh() == 15 and reno.cc.undo_cwnd(reno) == 31
    reno.cwnd = 3
    assert reno._loss_ssthresh() == 2
    assert [cube_root(n) for n in (0, 1, 7, 8, 26, 27, 10**18, 10**18 - 1)] == [
        0,
        1,
        1,
        2,
        2,
        3,
        10**6,
        10**6 - 1,
    ]


def test_cubic_connections_share_its_state_until_one_moves_it() -> None:
    """Connections whose CUBIC has not moved (idle ones) share their host's CubicAtRest: the
    first RTT sample, growth or loss gives a connection its own, and the shared state never
    moves (after a transfer with a loss it is still what cubictcp_init makes)."""
    bulk = Bulk("cubic", drop=30)
    host = bulk.client_host
    idle = [host.socket() for _ in range(2)]
    for sock in idle:
        with fails_with(errno.EINPROGRESS):
            sock.connect(SERVER, bulk.link.now)
    shared = [s.conn.recovery.cc for s in idle if s.conn is not None]
    assert len(shared) == 2 and shared[0] is shared[1] and isinstance(shared[0], CubicAtRest)
    bulk.run(bulk.link.now + 3.0)
    cc = bulk.recovery.cc
    assert type(cc) is Cubic and bulk.recovery.ssthresh < 0x7FFFFFFF  # the loss moved it
    fresh = Cubic(host.counters, host.settings)
    # its instance attributes: __slots__ in Python, __mypyc_attrs__ in the compiled engine
    fields = getattr(Cubic, "__mypyc_attrs__", None) or Cubic.__slots__
    assert len(fields) >= 18
    assert {n: getattr(shared[0], n) for n in fields} == {n: getattr(fresh, n) for n in fields}


def test_a_childs_cubic_takes_no_sample_from_the_ack_of_its_syn_ack() -> None:
    """Linux tcp_ack goes to no_queue when nothing was in the retransmission queue (a child's
    SYN-ACK is the request's, never queued): no pkts_acked, so HyStart's minimum delay waits
    for the first data acknowledged; the RTT estimate takes the handshake's sample."""
    client, server = Host(["198.18.0.1"]), Host(["198.18.0.2"])
    link = Link(client, server, delay=0.01)
    listener = server.socket()
    listener.bind(SERVER)
    listener.listen(1)
    sock = client.socket()
    with fails_with(errno.EINPROGRESS):
        sock.connect(SERVER, 0.0)
    link.advance(0.1)
    child = listener.accept(link.now)[0]
    conn = child.conn
    assert conn is not None and conn.rtt.srtt > 0
    assert isinstance(conn.recovery.cc, CubicAtRest) and conn.recovery.cc._delay_min == 0
    child.send(b"x" * 1000, link.now)
    link.advance(0.1)
    cc = conn.recovery.cc
    assert type(cc) is Cubic and 20_000 <= cc._delay_min < 21_000  # the data's RTT, 20 ms


def test_tcp_congestion_get_set_and_enoent() -> None:
    """TCP_CONGESTION as Linux: the host's tcp_congestion_control by default, a name to its
    NUL, ENOENT for an algorithm not there, EINVAL for no name; a connection switches at once
    (its window kept); a child has its listener's."""
    h = Host(["198.18.0.1"])
    sock = h.socket()
    assert sock.getsockopt(SOL_TCP, TCP_CONGESTION) == b"cubic".ljust(16, b"\0")
    sock.setsockopt(SOL_TCP, TCP_CONGESTION, b"reno\0junk")
    assert sock.getsockopt(SOL_TCP, TCP_CONGESTION) == b"reno".ljust(16, b"\0")
    with fails_with(errno.ENOENT):
        sock.setsockopt(SOL_TCP, TCP_CONGESTION, b"vegas")
    sock.setsockopt(SOL_TCP, TCP_CONGESTION, b"bbr")
    assert sock.getsockopt(SOL_TCP, TCP_CONGESTION) == b"bbr".ljust(16, b"\0")
    with fails_with(errno.EINVAL):
        sock.setsockopt(SOL_TCP, TCP_CONGESTION, b"")
    assert Host(["198.18.0.1"], congestion_control="reno").socket().getsockopt(
        SOL_TCP, TCP_CONGESTION
    ) == b"reno".ljust(16, b"\0")
    with fails_with(errno.ENOENT):
        Host(["198.18.0.1"], congestion_control="vegas").socket()

    bulk = Bulk("cubic")
    bulk.run(0.4)
    rec = bulk.recovery
    cwnd = rec.cwnd
    bulk.sock.setsockopt(SOL_TCP, TCP_CONGESTION, b"reno")
    assert rec.cc is RENO and rec.cwnd == cwnd

    a, b = Host(["198.18.0.1"]), Host(["198.18.0.2"], congestion_control="reno")
    link = Link(a, b)
    listener = b.socket()
    listener.setsockopt(SOL_TCP, TCP_CONGESTION, b"cubic")
    listener.bind(SERVER)
    listener.listen(1)
    client = a.socket()
    with fails_with(errno.EINPROGRESS):
        client.connect(SERVER, 0.0)
    while not listener.accept_queue:
        assert link.step()
    child: EngineSocket = listener.accept(link.now)[0]
    assert child.getsockopt(SOL_TCP, TCP_CONGESTION) == b"cubic".ljust(16, b"\0")
    assert child.conn is not None and isinstance(child.conn.recovery.cc, Cubic)


def test_the_tfo_report_of_an_engine_socket_shows_its_window() -> None:
    """The userspace stack's report reads tcpi_snd_cwnd and tcpi_snd_ssthresh as the kernel's."""
    bulk = Bulk("cubic", drop=200)
    bulk.run(1.0)
    rec = bulk.recovery
    rep = report(bulk.sock, Attempt(Side.CLIENT, attempted=False), bulk.link.now)
    assert rep.stack == "userspace"
    assert (rep.cwnd, rep.ssthresh) == (rec.cwnd, rec.ssthresh) and rec.ssthresh < rec.cwnd


@pytest.mark.parametrize("idle_restart", [True, False])
def test_the_window_restarts_after_idle(idle_restart: bool) -> None:
    """tcp_slow_start_after_idle (Linux tcp_cwnd_restart, RFC 5681 4.1): data to send after
    more than an RTO of silence meets a window halved per RTO idle, down to the initial 10,
    and ssthresh at least 3/4 of the window it had; with the sysctl off, the window stays."""
    bulk = Bulk("reno", write=60_000, idle_restart=idle_restart)
    bulk.run(1.0)  # all sent and acknowledged
    conn = bulk.sock.conn
    assert conn is not None and conn.snd_una == conn.snd_max
    rec = bulk.recovery
    cwnd, rto, sent_at = rec.cwnd, conn.rtt.rto, rec.lsndtime
    assert cwnd > 4 * INIT_CWND
    bulk.run(sent_at + 2.5 * rto)
    bulk.sock.send(b"again", bulk.link.now)
    if idle_restart:  # idle 2.5 RTO: halved twice (Linux: while (idle -= rto) > 0)
        assert rec.cwnd == max(cwnd >> 2, INIT_CWND)
        assert rec.ssthresh == 0x7FFFFFFF  # max(ssthresh, 3/4 cwnd): no loss yet
    else:
        assert rec.cwnd == cwnd


def test_cubic_moves_its_epoch_over_an_idle_time() -> None:
    """Linux cubictcp_cwnd_event(CA_EVENT_TX_START): data sent again after an idle time moves
    the epoch by that time (never past now), so the curve goes on where it stood."""
    cubic = Cubic(Host(["198.18.0.1"]).counters, Settings())
    rec = Recovery(cubic, 0.0)
    rec.cwnd = 100
    rec.ssthresh = rec._loss_ssthresh()
    rec.cwnd = rec.ssthresh
    cubic.cong_avoid(rec, 1, 10.0)  # the epoch starts at 10 s
    rec.pieces.sent(0, 1000, False, 1000, 10.3)
    rec.data_sent(10.3)  # in flight already: no TX_START
    rec.pieces.acked(1000, 1000, 10.4, 0.1)
    assert cubic._epoch_start == 10_000 and rec.packets_out == 0
    rec.data_sent(10.8)  # 0.5 s after the last data: nothing was in flight
    assert cubic._epoch_start == 10_500 and rec.lsndtime == 10.8
    rec.pieces.sent(1000, 2000, False, 1000, 12.0)
    rec.data_sent(12.0)  # with data in flight: no TX_START
    assert cubic._epoch_start == 10_500
    rec.pieces.acked(2000, 1000, 12.1, 0.1)
    rec.data_sent(20.0)  # 8 s idle after the data sent at 12 s
    assert cubic._epoch_start == 18_500


def train(
    params: CubicParams, rate: float = 0.0, cwnd: int = 20, *, paced: bool = False
) -> tuple[int, Counter[str]]:
    """ACKs 100 us apart on a 100 us path: after how many slow start ended (0: not in 19);
    ``paced``: the egress paces (fq, ``Settings.pacing``)."""
    counters: Counter[str] = Counter()
    cubic = Cubic(counters, Settings(cubic=params, pacing=paced))
    rec = Recovery(cubic, 0.0)
    rec.cwnd = cwnd
    now, una = 1.0, 1000
    for n in range(1, 20):
        cubic.pkts_acked(rec, 100, una + n, una + 100, rate, now + n * 100e-6)
        if rec.ssthresh == rec.cwnd:
            return n, counters
    return 0, counters


@pytest.mark.parametrize(
    ("rate", "paced", "acks"), [(0.0, False, 2), (10e6, False, 7), (0.0, True, 3), (10e6, True, 13)]
)
def test_hystart_ack_train(rate: float, paced: bool, acks: int) -> None:
    """HyStart's ACK train: ACKs at most 2 ms apart for longer than the minimum RTT end slow
    start; the span also gets hystart_ack_delay (two GSO packets at the pacing rate, at most
    1 ms). Half of that when nothing paces (Linux SK_PACING_NONE: no fq), so a 100 us path
    at a pacing rate of 10 MB/s needs (100 + 1000) / 2 = 550 us of train unpaced, 1,100 us
    behind fq; with no pacing rate yet 50 us and 100 us."""
    n, counters = train(CubicParams(), rate, paced=paced)
    assert n == acks and counters["TCPHystartTrainDetect"] == 1
    assert counters["TCPHystartTrainCwnd"] == 20


def test_hystart_module_parameters() -> None:
    """tcp_cubic's hystart, hystart_detect, hystart_low_window and hystart_ack_delta_us
    (Settings.cubic): HyStart off, or without the ACK train detection, the train does not end
    slow start; below hystart_low_window it does not act; ACKs further apart than
    hystart_ack_delta_us are no train."""
    assert train(CubicParams())[0] == 2
    assert train(CubicParams(hystart=0))[0] == 0
    assert train(CubicParams(hystart_detect=HYSTART_DELAY))[0] == 0
    assert train(CubicParams(hystart_detect=HYSTART_ACK_TRAIN))[0] == 2
    assert train(CubicParams(hystart_low_window=21))[0] == 0
    assert train(CubicParams(hystart_ack_delta_us=99))[0] == 0


def test_hystart_delay_detection_only_with_its_hystart_detect_bit() -> None:
    """hystart_detect=1 (the ACK train alone): a delay increase that ends slow start with
    the default 3 does not; the host's parameters reach its connections (a module parameter
    of Linux, Settings.cubic of the engine)."""
    for detect, detected in ((HYSTART_ACK_TRAIN | HYSTART_DELAY, 1), (HYSTART_ACK_TRAIN, 0)):
        bulk = Bulk("cubic")
        bulk.client_host.settings.cubic.hystart_detect = detect
        rec = bulk.recovery
        bulk.run(0.3)
        bulk.link.delay = DELAY + 0.010
        bulk.run(0.7)
        assert bulk.client_host.counters["TCPHystartDelayDetect"] == detected
        assert (rec.ssthresh == 0x7FFFFFFF) == (not detected)
