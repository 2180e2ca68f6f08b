"""The TFO server as Linux does it (REFERENCE.md): one test per behaviour, a SYN in at an injected
time, the SYN-ACK (or what else) out checked."""

from __future__ import annotations

import errno

import pytest
from engine_support import (
    CLIENT,
    ISN,
    OLD_RING,
    PEER_ISN,
    RING,
    SERVER,
    SERVER_ADDR,
    SOL_TCP,
    A,
    F,
    R,
    S,
    cookie_for,
    host,
    one,
    out,
    seg,
)

from fastopen.constants import (
    TCP_FASTOPEN,
    TCP_FASTOPEN_KEY,
    TCP_FASTOPEN_NO_COOKIE,
    TCPI_OPT_SYN_DATA,
    TCPI_OPT_TFO_CHILD,
    TFO_SERVER_COOKIE_NOT_REQD,
    TFO_SERVER_WO_SOCKOPT1,
)
from fastopen.cookies import KeyRing
from fastopen.engine import EngineError, EngineSocket, Host
from fastopen.wire import FastOpen, Flags, Mss, TcpOption, TcpSegment

REQ = b"GET / HTTP/1.0\r\n\r\n"


def server(qlen: int | None = 16, **kw: object) -> tuple[Host, EngineSocket]:
    kw.setdefault("tcp_fastopen", 0x3)
    h = host(SERVER, **kw)
    listener = h.socket()
    listener.bind(SERVER_ADDR)
    if qlen is not None:
        listener.setsockopt(SOL_TCP, TCP_FASTOPEN, qlen)
    listener.listen(128)
    return h, listener


def syn(
    fo: FastOpen | None,
    payload: bytes = b"",
    *,
    sport: int = 40000,
    flags: Flags = S,
    seq: int = PEER_ISN,
) -> TcpSegment:
    opts: tuple[TcpOption, ...] = (Mss(1460),)
    if fo is not None:
        opts += (fo,)
    return seg(flags, seq, 0, payload, opts, sport=sport, dport=80)


def send_syn(h: Host, s: TcpSegment, now: float = 0.0) -> TcpSegment:
    h.receive_segment(CLIENT, SERVER, s, now)
    return one(h)


def test_tfo_off_until_the_listener_enables_it() -> None:
    h, _listener = server(qlen=None)
    synack = send_syn(h, syn(FastOpen(b"")))
    assert synack.flags == S | A and synack.fastopen is None
    synack = send_syn(h, syn(FastOpen(cookie_for()), REQ, sport=40001))
    assert synack.ack == PEER_ISN + 1  # the data is not taken
    assert h.counters["TCPFastOpenPassive"] == 0


def test_sysctl_0x400_enables_every_listener_with_the_backlog() -> None:
    h, listener = server(qlen=None, tcp_fastopen=0x3 | TFO_SERVER_WO_SOCKOPT1)
    assert listener.getsockopt(SOL_TCP, TCP_FASTOPEN) == 128
    synack = send_syn(h, syn(FastOpen(cookie_for()), REQ))
    assert synack.ack == PEER_ISN + 1 + len(REQ)


def test_server_bit_off_means_no_tfo_even_with_the_socket_option() -> None:
    h, _listener = server(tcp_fastopen=0x1)
    synack = send_syn(h, syn(FastOpen(b"")))
    assert synack.fastopen is None
    assert h.counters["TCPFastOpenCookieReqd"] == 1  # counted before the checks, as Linux


def test_cookie_request_answered_with_the_cookie_of_the_key_ring() -> None:
    h, _listener = server()
    synack = send_syn(h, syn(FastOpen(b"")))
    assert synack.flags == S | A and synack.ack == PEER_ISN + 1
    assert synack.fastopen == FastOpen(RING.mint(CLIENT, SERVER))
    assert synack.options[-3:] == (FastOpen(RING.mint(CLIENT, SERVER)), *synack.options[-2:])
    assert h.counters["TCPFastOpenCookieReqd"] == 1
    assert h.counters["TCPFastOpenPassive"] == 0


def test_valid_cookie_creates_a_child_at_once_that_reads_and_writes_before_the_third_ack() -> None:
    h, listener = server()
    synack = send_syn(h, syn(FastOpen(cookie_for()), REQ))
    assert synack.ack == PEER_ISN + 1 + len(REQ)  # the SYN-ACK acknowledges the data
    assert synack.fastopen is None  # primary key match: no cookie sent back
    assert h.counters["TCPFastOpenPassive"] == 1
    child, peer = listener.accept(0.0)
    assert peer == (str(CLIENT), 40000)
    assert child.state.name == "SYN_RECEIVED"
    assert child.recv(100, 0.0) == REQ
    assert child.send(b"HTTP/1.0 200 OK\r\n", 0.0) == 17
    answer = one(h)
    assert answer.seq == ISN + 1 and answer.payload == b"HTTP/1.0 200 OK\r\n"
    info = child.tcp_info(0.0)
    assert info.tcpi_options & TCPI_OPT_SYN_DATA and info.tcpi_options & TCPI_OPT_TFO_CHILD
    assert listener.fastopen_queue.qlen == 1  # pending until the third ACK
    h.receive_segment(
        CLIENT, SERVER, seg(A, PEER_ISN + 1 + len(REQ), ISN + 18, sport=40000, dport=80), 0.01
    )
    assert child.state.name == "ESTABLISHED" and listener.fastopen_queue.qlen == 0


def test_valid_cookie_without_data_still_makes_a_tfo_child() -> None:
    h, listener = server()
    synack = send_syn(h, syn(FastOpen(cookie_for())))
    assert synack.ack == PEER_ISN + 1
    child, _ = listener.accept(0.0)  # accepted before the third ACK
    info = child.tcp_info(0.0)
    assert info.tcpi_options & TCPI_OPT_TFO_CHILD and not info.tcpi_options & TCPI_OPT_SYN_DATA


def test_a_syn_with_fin_is_dropped_even_with_a_valid_cookie() -> None:
    """Linux 6.x tcp_rcv_state_process discards SYN+FIN in LISTEN (checked on the 6.18 kernel:
    tests/packetdrill/server-fin-in-syn.pkt); the same SYN without FIN is then accepted."""
    h, listener = server()
    h.receive_segment(CLIENT, SERVER, syn(FastOpen(cookie_for()), REQ, flags=S | F), 0.0)
    assert out(h) == [] and h.connections == {} and not listener.accept_queue
    synack = send_syn(h, syn(FastOpen(cookie_for()), REQ))
    assert synack.ack == PEER_ISN + 1 + len(REQ)
    child, _ = listener.accept(0.0)
    assert child.recv(100, 0.0) == REQ


def test_backup_key_cookie_accepted_and_the_primary_cookie_sent_back() -> None:
    h, _listener = server(keys=KeyRing(RING.primary, (OLD_RING.primary,)))
    synack = send_syn(h, syn(FastOpen(cookie_for(ring=OLD_RING)), REQ))
    assert synack.ack == PEER_ISN + 1 + len(REQ)
    assert synack.fastopen == FastOpen(RING.mint(CLIENT, SERVER))
    assert h.counters["TCPFastOpenPassiveAltKey"] == 1
    assert h.counters["TCPFastOpenPassive"] == 1


def test_invalid_cookie_ordinary_handshake_data_dropped_correct_cookie_returned() -> None:
    h, listener = server()
    synack = send_syn(h, syn(FastOpen(b"\x00" * 8), REQ))
    assert synack.ack == PEER_ISN + 1  # only the SYN
    assert synack.fastopen == FastOpen(RING.mint(CLIENT, SERVER))
    assert h.counters["TCPFastOpenPassiveFail"] == 1
    with pytest.raises(EngineError) as exc:
        listener.accept(0.0)  # no child before the handshake completes
    assert exc.value.errno == errno.EAGAIN
    h.receive_segment(CLIENT, SERVER, seg(A, PEER_ISN + 1, ISN + 1, sport=40000, dport=80), 0.0)
    child, _ = listener.accept(0.0)
    with pytest.raises(EngineError):
        child.recv(100, 0.0)  # the SYN data was dropped: nothing to read
    assert not child.tcp_info(0.0).tcpi_options & TCPI_OPT_TFO_CHILD


def test_syn_data_without_option_gets_an_ordinary_handshake() -> None:
    h, _listener = server()
    synack = send_syn(h, syn(None, REQ))
    assert synack.ack == PEER_ISN + 1 and synack.fastopen is None


@pytest.mark.parametrize("experimental", [False, True])
def test_option_kind_is_echoed(experimental: bool) -> None:
    h, _listener = server()
    synack = send_syn(h, syn(FastOpen(b"", experimental)))
    assert synack.fastopen == FastOpen(RING.mint(CLIENT, SERVER), experimental)
    synack = send_syn(h, syn(FastOpen(cookie_for(ring=OLD_RING), experimental), sport=40001))
    assert synack.fastopen == FastOpen(RING.mint(CLIENT, SERVER), experimental)


def test_fastopen_backlog_bounds_pending_requests_overflow_gets_no_cookie() -> None:
    h, listener = server(qlen=2)
    for port in (40000, 40001):
        assert send_syn(h, syn(FastOpen(cookie_for()), REQ, sport=port)).ack > PEER_ISN + 1
    assert listener.fastopen_queue.qlen == 2
    synack = send_syn(h, syn(FastOpen(cookie_for()), REQ, sport=40002))
    assert synack.ack == PEER_ISN + 1 and synack.fastopen is None  # ordinary handshake
    synack = send_syn(h, syn(FastOpen(b""), sport=40003))
    assert synack.fastopen is None  # even a cookie request gets no cookie
    assert h.counters["TCPFastOpenListenOverflow"] == 2
    # the third ACK of one child frees a place
    h.receive_segment(
        CLIENT, SERVER, seg(A, PEER_ISN + 1 + len(REQ), ISN + 1, sport=40000, dport=80), 0.0
    )
    out(h)
    assert send_syn(h, syn(FastOpen(cookie_for()), REQ, sport=40004)).ack > PEER_ISN + 1


def test_a_reset_pending_child_still_counts_for_60_seconds_once_accepted() -> None:
    """Linux reqsk_fastopen_remove: a pending child reset before accept() frees its place at
    once; one the application accepted stays counted for 60 s."""
    h, listener = server(qlen=1)
    send_syn(h, syn(FastOpen(cookie_for()), REQ, sport=39999), 0.0)
    h.receive_segment(CLIENT, SERVER, seg(R, PEER_ISN + 1 + len(REQ), sport=39999, dport=80), 0.5)
    assert listener.fastopen_queue.qlen == 0
    send_syn(h, syn(FastOpen(cookie_for()), REQ), 0.5)
    listener.accept(0.5)  # the reset one, as Linux: accept() returns it, reads give ECONNRESET
    assert listener.accept(0.5)[1][1] == 40000
    h.receive_segment(CLIENT, SERVER, seg(R, PEER_ISN + 1 + len(REQ), sport=40000, dport=80), 1.0)
    assert h.connections.get((SERVER, 80, CLIENT, 40000)) is None  # the child is gone
    synack = send_syn(h, syn(FastOpen(cookie_for()), REQ, sport=40001), 30.0)
    assert synack.ack == PEER_ISN + 1  # still counted: overflow
    synack = send_syn(h, syn(FastOpen(cookie_for()), REQ, sport=40002), 61.5)
    assert synack.ack == PEER_ISN + 1 + len(REQ)  # 60 s later the place is free again


def test_synack_retransmissions_carry_no_option() -> None:
    h, _listener = server()
    first = send_syn(h, syn(FastOpen(b"")))
    assert first.fastopen is not None
    assert h.get_timer() == pytest.approx(1.0)
    h.handle_timer(1.0)
    again = one(h)
    assert again.flags == S | A and again.seq == first.seq and again.fastopen is None
    # a TFO child's SYN-ACK too
    h2, _ = server()
    send_syn(h2, syn(FastOpen(cookie_for()), REQ))
    h2.handle_timer(1.0)
    again = one(h2)
    assert again.flags == S | A and again.fastopen is None and again.ack == PEER_ISN + 1 + len(REQ)


def test_per_listener_key_overrides_the_host_key() -> None:
    h, listener = server()
    listener.setsockopt(SOL_TCP, TCP_FASTOPEN_KEY, OLD_RING.to_raw())
    assert listener.getsockopt(SOL_TCP, TCP_FASTOPEN_KEY) == OLD_RING.to_raw()
    synack = send_syn(h, syn(FastOpen(b"")))
    assert synack.fastopen == FastOpen(OLD_RING.mint(CLIENT, SERVER))
    with pytest.raises(EngineError) as exc:
        listener.setsockopt(SOL_TCP, TCP_FASTOPEN_KEY, b"x" * 15)
    assert exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("how", ["sysctl", "sockopt"])
def test_no_cookie_mode_accepts_syn_data_without_option(how: str) -> None:
    bits = 0x3 | (TFO_SERVER_COOKIE_NOT_REQD if how == "sysctl" else 0)
    h, listener = server(tcp_fastopen=bits)
    if how == "sockopt":
        listener.setsockopt(SOL_TCP, TCP_FASTOPEN_NO_COOKIE, 1)
    synack = send_syn(h, syn(None, REQ))
    assert synack.ack == PEER_ISN + 1 + len(REQ) and synack.fastopen is None
    child, _ = listener.accept(0.0)
    assert child.recv(100, 0.0) == REQ


def test_tcp_fastopen_option_errors_as_linux() -> None:
    h, listener = server()
    with pytest.raises(EngineError) as exc:
        listener.setsockopt(SOL_TCP, TCP_FASTOPEN, -1)
    assert exc.value.errno == errno.EINVAL
    listener.setsockopt(SOL_TCP, TCP_FASTOPEN, 100000)
    assert (
        listener.getsockopt(SOL_TCP, TCP_FASTOPEN) == h.settings.somaxconn
    )  # min(qlen, somaxconn)


def test_disconnect_resets_a_tfo_child_and_frees_its_place_at_once() -> None:
    """Linux selftest tcp_fastopen_server_reset-after-disconnect: connect(AF_UNSPEC) on an
    accepted child in SYN-RECEIVED sends R. with the SYN data acked, frees the fastopen
    backlog at once, and the socket connects again with a plain SYN."""
    h, listener = server(qlen=1)
    send_syn(h, syn(FastOpen(cookie_for()), b"x" * 10), 0.0)
    child, _ = listener.accept(0.1)
    child.disconnect(0.1)
    rst = one(h)
    assert rst.flags == R | A and rst.seq == ISN + 1 and rst.ack == PEER_ISN + 11
    assert listener.fastopen_queue.qlen == 0 and child.conn is None
    with pytest.raises(EngineError) as exc:
        child.connect((str(CLIENT), 8080), 0.1)
    assert exc.value.errno == errno.EINPROGRESS
    again = one(h)
    assert again.flags == S and again.fastopen is None
    h.handle_timer(1.1)
    assert one(h).flags == S


def test_delivered_counts_the_synack_and_the_data_acked_by_the_third_ack() -> None:
    """Linux tcp_rcv_state_process (SYN-RECV): delivered++ for the SYN-ACK, which tcp_ack does
    not track; the child's SYN-ACK is not in bytes_acked (snd_una starts at ISS + 1)."""
    h, listener = server()
    send_syn(h, syn(FastOpen(cookie_for()), REQ))
    child, _ = listener.accept(0.0)
    assert child.send(b"answer", 0.0) == 6
    out(h)
    h.receive_segment(
        CLIENT, SERVER, seg(A, PEER_ISN + 1 + len(REQ), ISN + 7, sport=40000, dport=80), 0.1
    )
    assert (child.tcp_info(0.1).tcpi_delivered, child.tcp_info(0.1).tcpi_bytes_acked) == (2, 6)
