"""The TFO client as Linux does it (REFERENCE.md), plus the FreeBSD negative cache and the
blackhole switch: one test per behaviour, one segment in, the segment out checked."""

from __future__ import annotations

import errno

import pytest
from engine_support import (
    CLIENT,
    COOKIE,
    DATA,
    ISN,
    PEER_ISN,
    SERVER,
    SERVER_ADDR,
    SOL_TCP,
    A,
    F,
    P,
    R,
    S,
    client,
    one,
    out,
    seg,
    sendto,
    syn_data_answered,
    synack,
    with_cookie,
)

from fastopen.constants import (
    MSG_FASTOPEN,
    TCP_FASTOPEN_CONNECT,
    TCP_FASTOPEN_NO_COOKIE,
    TCPI_OPT_SYN_DATA,
    TFO_CLIENT_NO_COOKIE,
)
from fastopen.engine import EngineError, EngineSocket, FastOpenClientFail, Host, NegativeReason
from fastopen.engine.info import TcpInfo
from fastopen.wire import FastOpen, TcpSegment

NEW_COOKIE = bytes(range(11, 19))


def info(sock: EngineSocket, now: float = 0.0) -> TcpInfo:
    """The socket's tcp_info (the fields these tests read are no times since events)."""
    return sock.tcp_info(now)


# -- cookie request --------------------------------------------------------------------------------


def test_no_cookie_cached_syn_is_a_cookie_request_without_data() -> None:
    h = client()
    sock, res = sendto(h)
    assert res == "EINPROGRESS"  # Linux: -1 EINPROGRESS, nothing of the data taken
    syn = one(h)
    assert syn.flags == S and syn.payload == b""
    assert syn.fastopen == FastOpen(b"")
    assert info(sock).tcpi_fastopen_client_fail == FastOpenClientFail.COOKIE_UNAVAILABLE


def test_cookie_and_server_mss_cached_per_server_then_syn_data_is_mss_minus_40() -> None:
    h = client()
    with_cookie(h, mss=940)
    assert h.cookie_cache.entries[CLIENT, SERVER].cookie == COOKIE
    assert h.cookie_cache.entries[CLIENT, SERVER].mss == 940
    _sock, res = sendto(h)
    assert res == 900  # what went into the SYN
    syn = one(h)
    assert syn.flags == S and syn.fastopen == FastOpen(COOKIE)
    assert syn.payload == DATA[:900]


def test_an_unreadable_fast_open_send_sends_a_cookie_request_and_einprogress() -> None:
    """Linux tcp_send_syn_data: the data cannot be copied (a NULL buffer), so its fallback sends
    a plain SYN with a cookie request, though a cookie is cached, and the send gives
    EINPROGRESS (syscall_bad_arg/fastopen-invalid-buf-ptr.pkt, measured on Linux 6.18): as
    MSG_FASTOPEN and as the first send after a deferred TCP_FASTOPEN_CONNECT."""
    h = client()
    with_cookie(h)
    for deferred in (False, True):
        sock = h.socket()
        if deferred:
            sock.setsockopt(SOL_TCP, TCP_FASTOPEN_CONNECT, 1)
            sock.connect(SERVER_ADDR, 0.0)  # a cookie: returns at once, nothing sent
            assert out(h) == []
        with pytest.raises(EngineError) as exc:
            sock.send_unreadable(0 if deferred else MSG_FASTOPEN, SERVER_ADDR, 0.0)
        assert exc.value.errno == errno.EINPROGRESS
        syn = one(h)
        assert (syn.flags, syn.payload, syn.fastopen) == (S, b"", FastOpen(b""))
        sock.close(0.0)
    plain = h.socket()
    with pytest.raises(EngineError) as exc:
        plain.send_unreadable(0, None, 0.0)
    assert exc.value.errno == errno.EPIPE  # the socket's state first (not connected)


def test_syn_data_without_cached_mss_uses_our_mss_minus_40() -> None:
    h = client()
    with_cookie(h, mss=0)  # a SYN-ACK without MSS option leaves the cached MSS unknown
    _sock, res = sendto(h)
    assert res == 1460 - 40


def test_syn_data_fully_acked_counts_active_and_sets_syn_data() -> None:
    h = client()
    with_cookie(h)
    sock, syn = syn_data_answered(h, b"x" * 100, 100, rtt=0.05)
    ack = one(h)
    assert ack.flags == A and ack.payload == b"" and ack.seq == syn.seq + 101
    assert h.counters["TCPFastOpenActive"] == 1
    assert info(sock).tcpi_options & TCPI_OPT_SYN_DATA
    assert info(sock).tcpi_fastopen_client_fail == 0
    assert info(sock).tcpi_rtt == 50_000  # the SYN's RTT


# -- the two ways in: MSG_FASTOPEN and TCP_FASTOPEN_CONNECT ----------------------------------------


def test_fastopen_connect_with_cookie_returns_at_once_and_syn_leaves_with_first_write() -> None:
    h = client()
    with_cookie(h)
    sock = h.socket()
    sock.setsockopt(SOL_TCP, TCP_FASTOPEN_CONNECT, 1)
    sock.connect(SERVER_ADDR, 0.0)  # returns 0: no EINPROGRESS
    assert out(h) == []
    assert sock.state.name == "SYN_SENT"
    with pytest.raises(EngineError) as exc:
        sock.connect(SERVER_ADDR, 0.0)
    assert exc.value.errno == errno.EISCONN  # Linux, deferred connect
    assert sock.send(b"hello", 0.0) == 5
    syn = one(h)
    assert syn.flags == S and syn.payload == b"hello" and syn.fastopen == FastOpen(COOKIE)


def test_fastopen_connect_without_cookie_sends_a_cookie_request_and_einprogress() -> None:
    h = client()
    sock = h.socket()
    sock.setsockopt(SOL_TCP, TCP_FASTOPEN_CONNECT, 1)
    with pytest.raises(EngineError) as exc:
        sock.connect(SERVER_ADDR, 0.0)
    assert exc.value.errno == errno.EINPROGRESS
    syn = one(h)
    assert syn.fastopen == FastOpen(b"") and syn.payload == b""
    for call, code in (
        (lambda: sock.send(b"x", 0.0), errno.EAGAIN),
        (lambda: sock.connect(SERVER_ADDR, 0.0), errno.EALREADY),
    ):
        with pytest.raises(EngineError) as exc:
            call()
        assert exc.value.errno == code


def test_client_bit_off_gives_eopnotsupp_both_ways() -> None:
    h = client(tcp_fastopen=0)
    _sock, res = sendto(h)
    assert res == errno.errorcode[errno.EOPNOTSUPP]
    with pytest.raises(EngineError) as exc:
        h.socket().setsockopt(SOL_TCP, TCP_FASTOPEN_CONNECT, 1)
    assert exc.value.errno == errno.EOPNOTSUPP


def test_msg_fastopen_errors_as_linux() -> None:
    h = client()
    sock = h.socket()
    with pytest.raises(EngineError) as exc:
        sock.sendto(b"x", MSG_FASTOPEN, None, 0.0)
    assert exc.value.errno == errno.EINVAL  # no address
    sock, _ = sendto(h)
    syn = one(h)
    with pytest.raises(EngineError) as exc:
        sock.sendto(b"x", MSG_FASTOPEN, SERVER_ADDR, 0.0)
    assert exc.value.errno == errno.EALREADY
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1), 0.0)
    out(h)
    # Linux (measured on 6.18): the socket is still SS_CONNECTING, so the first MSG_FASTOPEN
    # after the handshake sees it connected and sends as an ordinary send; then EISCONN
    assert sock.sendto(b"x", MSG_FASTOPEN, SERVER_ADDR, 0.0) == 1
    assert one(h).payload == b"x"
    with pytest.raises(EngineError) as exc:
        sock.sendto(b"x", MSG_FASTOPEN, SERVER_ADDR, 0.0)
    assert exc.value.errno == errno.EISCONN


def test_a_connect_after_an_asynchronous_connect_completed_returns_once() -> None:
    """Linux __inet_stream_connect: EALREADY in SYN-SENT, 0 once connected, then EISCONN."""
    h = client()
    sock = h.socket()
    with pytest.raises(EngineError) as exc:
        sock.connect(SERVER_ADDR, 0.0)
    assert exc.value.errno == errno.EINPROGRESS
    syn = one(h)
    with pytest.raises(EngineError) as exc:
        sock.connect(SERVER_ADDR, 0.0)
    assert exc.value.errno == errno.EALREADY
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1), 0.0)
    sock.connect(SERVER_ADDR, 0.0)
    with pytest.raises(EngineError) as exc:
        sock.connect(SERVER_ADDR, 0.0)
    assert exc.value.errno == errno.EISCONN


# -- retransmissions and failures ------------------------------------------------------------------


def test_syn_retransmissions_carry_neither_data_nor_option() -> None:
    h = client()
    with_cookie(h)
    sock, _n = sendto(h)
    first = one(h)
    assert first.payload and first.fastopen is not None
    assert h.get_timer() == pytest.approx(1.0)  # Linux initial RTO
    h.handle_timer(1.0)
    again = one(h)
    assert again.flags == S and again.seq == first.seq
    assert again.payload == b"" and again.fastopen is None
    assert h.get_timer() == pytest.approx(2.0)  # Linux 6.x: SYN timeouts linear at first
    # the SYN-ACK to the retransmitted SYN acks only the SYN: client_fail 3
    h.receive_segment(SERVER, CLIENT, synack(first, first.seq + 1), 2.0)
    data = one(h)
    assert data.payload == first.payload
    assert info(sock).tcpi_fastopen_client_fail == FastOpenClientFail.SYN_RETRANSMITTED
    assert h.cookie_cache.entries[CLIENT, SERVER].syn_loss == 1  # cached, as Linux


def test_synack_acking_only_the_syn_sends_the_data_again_at_once_with_the_first_ack() -> None:
    h = client()
    with_cookie(h)
    sock, syn = syn_data_answered(h, b"q" * 300, 0)
    data = one(h)  # the data is the first ACK: no separate pure ACK
    assert data.flags & A and data.seq == syn.seq + 1 and data.payload == b"q" * 300
    assert data.ack == PEER_ISN + 1
    assert h.counters["TCPFastOpenActiveFail"] == 1
    assert h.counters["TCPFastOpenActive"] == 0
    assert info(sock).tcpi_fastopen_client_fail == FastOpenClientFail.DATA_NOT_ACKED
    assert not info(sock).tcpi_options & TCPI_OPT_SYN_DATA


def test_partial_acknowledgement_of_syn_data_resends_the_rest() -> None:
    h = client()
    with_cookie(h)
    sock, syn = syn_data_answered(h, b"r" * 300, 100)
    rest = one(h)
    assert rest.seq == syn.seq + 101 and rest.payload == b"r" * 200
    assert info(sock).tcpi_fastopen_client_fail == FastOpenClientFail.DATA_NOT_ACKED


def test_a_new_cookie_in_any_synack_replaces_the_cached_one() -> None:
    h = client()
    with_cookie(h)
    _sock, _n = sendto(h, b"x" * 10)
    syn = one(h)
    assert syn.fastopen == FastOpen(COOKIE)
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 11, cookie=FastOpen(NEW_COOKIE)), 0.0)
    assert h.cookie_cache.entries[CLIENT, SERVER].cookie == NEW_COOKIE
    out(h)
    _sock2, _ = sendto(h, b"y")
    assert one(h).fastopen == FastOpen(NEW_COOKIE)


def test_kind_34_first_then_254_once_then_34_again() -> None:
    h = client()
    kinds = []
    for _ in range(3):
        sock, _res = sendto(h)
        syn = one(h)
        assert syn.fastopen is not None and syn.fastopen.cookie == b""
        kinds.append(syn.fastopen.experimental)
        h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1), 0.0)  # no cookie back
        out(h)
        sock.close(0.0)
        out(h)
    assert kinds == [False, True, False]


def test_experimental_cookie_is_sent_back_in_its_own_kind() -> None:
    h = client()
    with_cookie(h, exp=True)
    sendto(h)
    assert one(h).fastopen == FastOpen(COOKIE, experimental=True)


@pytest.mark.parametrize("how", ["sysctl", "sockopt"])
def test_no_cookie_mode_sends_syn_data_without_any_option(how: str) -> None:
    h = client(tcp_fastopen=0x1 | (TFO_CLIENT_NO_COOKIE if how == "sysctl" else 0))
    sock = h.socket()
    if how == "sockopt":
        sock.setsockopt(SOL_TCP, TCP_FASTOPEN_NO_COOKIE, 1)
    assert sock.sendto(b"abc", MSG_FASTOPEN, SERVER_ADDR, 0.0) == 3
    syn = one(h)
    assert syn.payload == b"abc" and syn.fastopen is None


# -- beyond Linux: the negative cache (FreeBSD) ----------------------------------------------------


def test_negative_cache_synack_without_option_disables_tfo_then_fresh_request() -> None:
    h = client(negative_cache_time=900)
    _sock, _ = sendto(h)
    syn = one(h)
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1), 1.0)
    out(h)
    negative = h.cookie_cache.negative(2.0)
    assert [e.reason for e in negative.values()] == [NegativeReason.NO_OPTION]
    _sock2, res = sendto(h, now=500.0)
    syn2 = one(h)
    assert res == "EINPROGRESS" and syn2.fastopen is None  # a plain SYN
    _sock3, res = sendto(h, now=902.0)  # expired: a fresh cookie request
    assert one(h).fastopen is not None
    assert h.cookie_cache.negative(902.0) == {}


def test_negative_cache_invalid_cookie_length() -> None:
    h = client(negative_cache_time=900)
    _sock, _ = sendto(h)
    syn = one(h)
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1, cookie=FastOpen(b"abc")), 0.0)
    out(h)
    reasons = [e.reason for e in h.cookie_cache.negative(1.0).values()]
    assert reasons == [NegativeReason.BAD_COOKIE_LENGTH]
    assert h.cookie_cache.entries[CLIENT, SERVER].cookie == b""  # never cached


def test_negative_cache_syn_data_timeout() -> None:
    h = client(negative_cache_time=900)
    with_cookie(h)
    sendto(h)
    out(h)
    h.handle_timer(1.0)  # the SYN with data timed out
    out(h)
    reasons = [e.reason for e in h.cookie_cache.negative(1.0).values()]
    assert reasons == [NegativeReason.SYN_DATA_TIMEOUT]
    _sock, res = sendto(h, now=2.0)
    syn = one(h)
    assert res == "EINPROGRESS" and syn.payload == b"" and syn.fastopen is None


def test_negative_cache_icmp_unreachable_visible_and_resettable() -> None:
    h = client(negative_cache_time=900)
    with_cookie(h)
    h.receive_icmp_unreachable(str(SERVER), 5.0)
    assert [e.reason for e in h.cookie_cache.negative(5.0).values()] == [NegativeReason.UNREACHABLE]
    sendto(h, now=6.0)
    assert one(h).fastopen is None
    assert h.cookie_cache.reset_negative() == 1
    _sock, res = sendto(h, now=7.0)
    assert res == 1420 and one(h).fastopen == FastOpen(COOKIE)


# -- Linux's global blackhole switch ---------------------------------------------------------------


def _third_timeout(h: Host, start: float) -> None:
    sendto(h, now=start)
    out(h)
    t = start
    for _ in range(3):
        t = h.get_timer() or 0.0
        h.handle_timer(t)
        out(h)


def test_blackhole_switch_off_by_default() -> None:
    h = client()
    with_cookie(h)
    _third_timeout(h, 0.0)
    assert h.counters["TCPFastOpenBlackhole"] == 0
    sendto(h, now=10.0)
    assert one(h).fastopen is not None


def test_blackhole_third_timeout_disables_client_tfo_for_the_timeout() -> None:
    h = client(blackhole_timeout=3600)
    with_cookie(h)
    _third_timeout(h, 0.0)
    assert h.counters["TCPFastOpenBlackhole"] == 1
    assert h.counters["TCPFastOpenActiveFail"] == 1
    _, res = sendto(h, now=100.0)
    syn = one(h)
    assert res == "EINPROGRESS" and syn.fastopen is None and syn.payload == b""
    _, res = sendto(h, now=3600.0 + 10)
    assert one(h).fastopen == FastOpen(COOKIE)


def test_syn_data_acked_then_second_data_isn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sequence space after SYN data: the next byte follows the SYN data."""
    h = client()
    with_cookie(h)
    sock, _n = sendto(h, b"a" * 10)
    syn = one(h)
    assert syn.seq == ISN
    h.receive_segment(SERVER, CLIENT, synack(syn, ISN + 11), 0.0)
    out(h)
    assert sock.send(b"b" * 5, 0.0) == 5
    nxt = one(h)
    assert nxt.seq == ISN + 11 and nxt.payload == b"b" * 5
    h.receive_segment(SERVER, CLIENT, seg(A | F, PEER_ISN + 1, ISN + 16, dport=syn.src_port), 0.1)
    h.handle_timer(0.15)  # the ACK of a FIN is a delayed one (Linux tcp_fin: ping-pong mode)
    assert one(h).ack == PEER_ISN + 2
    assert sock.recv(10, 0.2) == b""


def _established_tfo(h: Host, now: float) -> tuple[EngineSocket, TcpSegment]:
    sock, syn = syn_data_answered(h, b"x" * 10, 10, now, rtt=0.0)
    out(h)
    return sock, syn


def test_blackhole_a_lone_out_of_order_fin_then_data_clears_the_count() -> None:
    """Linux tcp_fastopen_active_disable_ofo_check, run when the socket is destroyed: a lone
    out-of-order FIN and no data disables client TFO; data on a connection opened after the
    period clears the count (checked as it enters TIME-WAIT)."""
    h = client(blackhole_timeout=60)
    with_cookie(h)
    sock, syn = _established_tfo(h, 1.0)
    # a FIN beyond a hole and no data at all: a middlebox ate the answer
    fin = seg(A | F, PEER_ISN + 1 + 500, syn.seq + 11, dport=syn.src_port)
    h.receive_segment(SERVER, CLIENT, fin, 1.1)
    out(h)
    assert h.counters["TCPFastOpenBlackhole"] == 0  # not while the socket lives
    h.receive_segment(SERVER, CLIENT, seg(R, PEER_ISN + 1, dport=syn.src_port), 1.2)
    assert h.counters["TCPFastOpenBlackhole"] == 1
    sock.close(1.2)
    _, res = sendto(h, now=30.0)
    assert res == "EINPROGRESS" and one(h).fastopen is None  # off for 60 s
    # after the period, data on a TFO connection clears the count (the next period is not doubled)
    sock, syn = _established_tfo(h, 70.0)
    h.receive_segment(
        SERVER, CLIENT, seg(A | P, PEER_ISN + 1, syn.seq + 11, b"ok", dport=syn.src_port), 70.1
    )
    out(h)
    assert sock.recv(10, 70.1) == b"ok"
    sock.close(70.2)
    fin = one(h)
    assert h.blackhole.disabled_before()
    last = seg(A | F, PEER_ISN + 3, fin.seq + 1, dport=syn.src_port)
    h.receive_segment(SERVER, CLIENT, last, 70.3)
    assert sock.conn is not None and sock.conn.state.name == "TIME_WAIT"
    assert not h.blackhole.disabled_before()


def test_blackhole_an_out_of_order_fin_after_close() -> None:
    """Linux tcp_rcv_state_process (FIN-WAIT-1 after close()): our FIN acked together with a FIN
    beyond a hole: a RST (TCPAbortOnData) and client TFO off."""
    h = client(blackhole_timeout=60)
    with_cookie(h)
    sock, syn = _established_tfo(h, 1.0)
    sock.close(1.1)
    fin = one(h)
    assert fin.flags & F
    h.receive_segment(
        SERVER, CLIENT, seg(A | F, PEER_ISN + 500, fin.seq + 1, dport=syn.src_port), 1.2
    )
    assert one(h).flags & R and h.connections == {}
    assert h.counters["TCPFastOpenBlackhole"] == 1


def test_blackhole_an_out_of_order_reset_instead_of_an_answer() -> None:
    """Linux tcp_validate_incoming: an in-window RST that is not at RCV.NXT on an active TFO
    connection that got no data gets a challenge ACK and disables client TFO; an exact RST
    (an ordinary reset) does not."""
    h = client(blackhole_timeout=60)
    with_cookie(h)
    _, syn = _established_tfo(h, 1.0)
    h.receive_segment(SERVER, CLIENT, seg(R, PEER_ISN + 1, dport=syn.src_port), 1.1)
    assert h.counters["TCPFastOpenBlackhole"] == 0 and h.connections == {}
    _, syn = _established_tfo(h, 2.0)
    h.receive_segment(SERVER, CLIENT, seg(R, PEER_ISN + 100, dport=syn.src_port), 2.1)
    challenge = one(h)
    assert challenge.flags == A and challenge.ack == PEER_ISN + 1
    assert h.counters["TCPFastOpenBlackhole"] == 1
    _, res = sendto(h, now=3.0)
    assert res == "EINPROGRESS" and one(h).fastopen is None


def test_blackhole_period_doubles_per_detection_up_to_64_times() -> None:
    h = client(blackhole_timeout=10)
    periods = []
    for n in range(8):
        h.blackhole.active_disable(1000.0 * n)
        off = 1000.0 * n
        while h.blackhole.should_disable(off):
            off += 1
        periods.append(off - 1000.0 * n)
    assert periods == [10, 20, 40, 80, 160, 320, 640, 640]


# -- Linux details: delivered and bytes_acked, SYN data floor, unsolicited cookies, a waiting writer


def test_delivered_and_bytes_acked_count_the_syn_as_linux() -> None:
    """Linux: the SYN counts in tcpi_delivered and tcpi_bytes_acked; SYN data fully acked
    counts once more in bytes but not in segments (tcp_rcv_fastopen_synack's --delivered)."""
    h = client()
    sock, _ = sendto(h)
    syn = one(h)
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1, cookie=FastOpen(COOKIE)), 0.01)
    assert (info(sock).tcpi_delivered, info(sock).tcpi_bytes_acked) == (1, 1)
    out(h)
    sock, syn = syn_data_answered(h, b"x" * 700, 0, 1.0)  # only the SYN acked
    assert (info(sock).tcpi_delivered, info(sock).tcpi_bytes_acked) == (1, 1)
    assert one(h).payload == b"x" * 700
    sock, syn = syn_data_answered(h, b"y" * 700, 700, 2.0)
    assert (info(sock).tcpi_delivered, info(sock).tcpi_bytes_acked) == (1, 701)
    assert info(sock).tcpi_delivered_ce == 0


def test_syn_data_never_below_the_minimum_mss() -> None:
    """Linux __tcp_mtu_to_mss: a tiny cached MSS is raised to tcp_min_snd_mss (48), minus 40."""
    h = client()
    with_cookie(h, mss=44)
    _, res = sendto(h)
    assert res == 48 - 40


def test_no_cookie_mode_ignores_an_unsolicited_cookie() -> None:
    """Linux tcp_rcv_fastopen_synack: a SYN that carried no option learns no cookie."""
    h = client(tcp_fastopen=0x1 | TFO_CLIENT_NO_COOKIE)
    _, res = sendto(h, b"x" * 10)
    syn = one(h)
    assert res == 10 and syn.fastopen is None
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 11, cookie=FastOpen(COOKIE)), 0.01)
    assert h.cookie_cache.entries[CLIENT, SERVER].cookie == b""
    assert h.counters["TCPFastOpenActive"] == 1


def test_a_waiting_writer_gets_the_ack_of_the_synack_with_its_data() -> None:
    """Linux sk_write_pending: the ACK of the SYN-ACK waits for the blocked writer, so the rest of
    the data carries it (P. 901:1901); with nothing written it goes after TCP_DELACK_MAX."""
    h = client()
    with_cookie(h, mss=940)
    sock, res = sendto(h, DATA[:1900])
    syn = one(h)
    assert res == 900
    sock.write_pending += 1  # the application blocks in sendto for the other 1000 bytes
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 901), 0.01)
    assert out(h) == []
    assert sock.send(DATA[900:1900], 0.01) == 1000
    sock.write_pending -= 1
    data = out(h)
    assert [(s.seq - syn.seq, len(s.payload), s.flags) for s in data] == [(901, 1000, A | P)]
    # no data after all: the ACK leaves 200 ms later
    h = client()
    with_cookie(h, mss=940)
    sock, _ = sendto(h, DATA[:1900], now=1.0)
    syn = one(h)
    sock.write_pending = 1
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1 + len(syn.payload)), 1.01)
    assert out(h) == [] and h.get_timer() == pytest.approx(1.21)
    h.handle_timer(1.21)
    ack = one(h)
    assert ack.flags == A and ack.seq == syn.seq + 1 + len(syn.payload) and ack.ack == PEER_ISN + 1


def test_repeated_syn_losses_are_counted_but_do_not_disable_tfo() -> None:
    """Linux 6.x tcp_fastopen_cookie_check no longer has 4.x's rule (syn_loss > 1 within
    60 s << syn_loss: no SYN data): the count is kept for tcp_metrics, SYN data still goes."""
    h = client()
    with_cookie(h)
    for n, start in enumerate((1.0, 10.0), 1):
        _, res = sendto(h, b"z" * 100, now=start)
        syn = one(h)
        assert res == 100
        h.handle_timer(start + 1.0)  # the SYN with data is lost: a bare SYN goes again
        assert one(h).payload == b""
        h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1), start + 1.01)
        assert one(h).payload == b"z" * 100  # the data again, with the first ACK
        h.receive_segment(
            SERVER, CLIENT, seg(A, PEER_ISN + 1, syn.seq + 101, dport=syn.src_port), start + 1.02
        )
        assert h.cookie_cache.entries[CLIENT, SERVER].syn_loss == n
    _, res = sendto(h, b"z" * 100, now=20.0)
    assert res == 100 and one(h).fastopen == FastOpen(COOKIE)


def test_data_in_the_synack_is_queued_and_acked_once() -> None:
    """Linux tcp_fastopen_add_skb: a TFO SYN-ACK's data is queued for the application, and one
    ACK answers it (packetdrill's fastopen/client/synack-data.pkt)."""
    h = client()
    with_cookie(h)
    sock, syn = sendto(h, b"x" * 100)[0], one(h)
    answer = seg(S | A, PEER_ISN, syn.seq + 101, b"d" * 1400, (), dport=syn.src_port)
    h.receive_segment(SERVER, CLIENT, answer, 0.01)
    ack = one(h)
    assert ack.flags == A and ack.ack == PEER_ISN + 1401
    assert sock.recv(2000, 0.01) == b"d" * 1400
