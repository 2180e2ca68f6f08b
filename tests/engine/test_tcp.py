"""TCP itself, the smoltcp way: handshake options as Linux, windows and segmentation, RTO and
backoff, out-of-order/duplicate/overlapping data, FIN and RST (RFC 5961), TIME-WAIT, keyed ISNs."""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable

import pytest
from engine_support import (
    CLIENT,
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
    connecting,
    fails_with,
    host,
    one,
    out,
    seg,
    synack,
)

from fastopen.constants import (
    TCPI_OPT_SACK,
    TCPI_OPT_TIMESTAMPS,
    TCPI_OPT_USEC_TS,
    TCPI_OPT_WSCALE,
)
from fastopen.engine import Closed, Connected, EngineError, EngineSocket, Host, Readable
from fastopen.engine.link import Link
from fastopen.engine.rtt import RttEstimator
from fastopen.engine.socket import (
    MSG_EOR,
    MSG_MORE,
    POLLOUT,
    SO_SNDBUF,
    SOL_SOCKET,
    TCP_CORK,
    TCP_NODELAY,
    TCP_NOTSENT_LOWAT,
    TCP_SYNCNT,
)
from fastopen.engine.window import SKB_TRUESIZE
from fastopen.wire import (
    Flags,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpSegment,
    Timestamps,
    WindowScale,
    ip_packet,
    parse_tcp_packet,
)


def connected(**kw: object) -> tuple[Host, EngineSocket, TcpSegment]:
    """A client host with one ESTABLISHED connection (peer MSS 1000, window 65535, no scaling)."""
    h = host(CLIENT, **kw)
    sock, syn = connecting(h)
    opts = (Mss(1000), SackPermitted())
    h.receive_segment(SERVER, CLIENT, seg(S | A, PEER_ISN, ISN + 1, options=opts), 0.1)
    ack = one(h)
    assert ack.flags == A and ack.seq == ISN + 1 and ack.ack == PEER_ISN + 1
    return h, sock, syn


def data(seq: int, payload: bytes, flags: Flags = A | P) -> TcpSegment:
    return seg(flags, seq, ISN + 1, payload)


# -- handshake -------------------------------------------------------------------------------------


def test_syn_options_as_linux_with_timestamps() -> None:
    h = host(CLIENT, timestamps=True, tsoffset=lambda *_: 7)
    sock = h.socket()
    with pytest.raises(EngineError):
        sock.connect(SERVER_ADDR, 2.5)
    syn = one(h)
    assert syn.options == (Mss(1460), SackPermitted(), Timestamps(2507, 0), Nop(), WindowScale(7))
    assert syn.window == 64240 and syn.seq == ISN


def test_usec_ts_route_counts_ts_values_in_microseconds() -> None:
    """Linux 6.7+ tp->tcp_usec_ts: only a destination whose route has features tcp_usec_ts."""
    routes = (ipaddress.ip_network("198.18.0.0/31"),)
    h = host(CLIENT, timestamps=True, tsoffset=lambda *_: 7, usec_ts_routes=routes)
    for address, tsval, usec in ((SERVER, 2_507, False), ("198.18.0.0", 2_500_007, True)):
        sock = h.socket()
        with pytest.raises(EngineError):
            sock.connect((str(address), 80), 2.5)
        syn = one(h)
        assert syn.timestamps == Timestamps(tsval, 0)
        assert bool(sock.tcp_info(2.5).tcpi_options & TCPI_OPT_USEC_TS) is usec


def test_syn_options_as_linux_without_timestamps() -> None:
    h = host(CLIENT)
    _, syn = connecting(h)
    assert syn.options == (Mss(1460), Nop(), Nop(), SackPermitted(), Nop(), WindowScale(7))


def test_negotiation_both_sides_must_offer() -> None:
    h = host(CLIENT, timestamps=True)
    sock, syn = connecting(h)
    # the peer offers only MSS: no SACK, no scaling, no timestamps
    h.receive_segment(SERVER, CLIENT, synack(syn, ISN + 1, mss=536), 0.0)
    ack = one(h)
    assert ack.options == ()
    info = sock.tcp_info(0.0)
    assert info.tcpi_options & (TCPI_OPT_SACK | TCPI_OPT_WSCALE | TCPI_OPT_TIMESTAMPS) == 0
    assert info.tcpi_snd_mss == 536
    # and with everything offered: mss minus the 12 bytes of timestamps
    h2 = host(CLIENT, timestamps=True)
    sock2 = h2.socket()
    with pytest.raises(EngineError):
        sock2.connect(SERVER_ADDR, 0.0)
    syn2 = one(h2)
    assert syn2.timestamps is not None
    opts = (Mss(1460), SackPermitted(), Timestamps(9, syn2.timestamps.tsval), Nop(), WindowScale(2))
    h2.receive_segment(
        SERVER, CLIENT, seg(S | A, PEER_ISN, ISN + 1, options=opts, dport=syn2.src_port), 0.0
    )
    ack2 = one(h2)
    assert ack2.options[:2] == (Nop(), Nop()) and ack2.timestamps is not None
    assert ack2.timestamps.tsecr == 9
    info2 = sock2.tcp_info(0.0)
    assert info2.tcpi_options & (TCPI_OPT_SACK | TCPI_OPT_WSCALE | TCPI_OPT_TIMESTAMPS) == 7
    assert info2.tcpi_snd_mss == 1448 and info2.tcpi_snd_wscale == 2 and ack2.window == 502


def test_bytes_in_bytes_out_with_checksums() -> None:
    h = host(CLIENT)
    sock = h.socket()
    with pytest.raises(EngineError):
        sock.connect(SERVER_ADDR, 0.0)
    packet = h.packets_to_send()[0]
    ip, syn = parse_tcp_packet(packet)
    assert ip.src == CLIENT and ip.dst == SERVER and syn.flags == S
    h.receive(ip_packet(SERVER, CLIENT, synack(syn, ISN + 1)), 0.0)
    assert sock.state.name == "ESTABLISHED"
    bad = bytearray(ip_packet(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1, b"x")))
    bad[-1] ^= 0xFF  # checksum no longer matches
    h.receive(bytes(bad), 0.0)
    assert h.counters["TcpInErrs"] == 1 and h.packets_to_send()[0:1] != []


def test_keyed_isn_differs_per_connection_and_is_injectable() -> None:
    h = Host([CLIENT])
    isns = set()
    for _ in range(3):
        with pytest.raises(EngineError):
            h.socket().connect(SERVER_ADDR, 0.0)
        isns.add(one_seg(h).seq)
    assert len(isns) == 3
    h2 = Host([CLIENT], isn=lambda local, lport, remote, rport, now: 0xFFFFFFFF)
    with pytest.raises(EngineError):
        h2.socket().connect(SERVER_ADDR, 0.0)
    assert one_seg(h2).seq == 0xFFFFFFFF


def one_seg(h: Host) -> TcpSegment:
    return one(h)


def test_connect_to_closed_port_refused() -> None:
    h = host(CLIENT)
    sock, syn = connecting(h)
    h.receive_segment(SERVER, CLIENT, seg(R | A, 0, ISN + 1, dport=syn.src_port), 0.0)
    with pytest.raises(EngineError) as exc:
        sock.recv(10, 0.0)
    assert exc.value.errno == errno.ECONNREFUSED
    assert sock.recv(10, 0.0) == b""  # reported once, as Linux
    with pytest.raises(EngineError) as exc:
        sock.send(b"x", 0.0)
    assert exc.value.errno == errno.EPIPE


def test_segment_to_a_closed_port_gets_a_reset() -> None:
    h = host(SERVER)
    h.receive_segment(CLIENT, SERVER, seg(S, 77, sport=1234, dport=9), 0.0)
    rst = one(h)
    assert rst.flags == R | A and rst.seq == 0 and rst.ack == 78
    h.receive_segment(CLIENT, SERVER, seg(A, 77, 555, sport=1234, dport=9), 0.0)
    rst = one(h)
    assert rst.flags == R and rst.seq == 555


def test_socket_errors_as_linux() -> None:
    h = host(CLIENT)
    sock = h.socket()
    calls: list[tuple[Callable[[], object], int]] = [
        (lambda: sock.send(b"x", 0.0), errno.EPIPE),
        (lambda: sock.recv(1, 0.0), errno.ENOTCONN),
    ]
    for call, code in calls:
        with fails_with(code):
            call()
    listener = h.socket()
    listener.bind((str(CLIENT), 80))
    listener.listen(5)
    calls = [
        (lambda: listener.connect(SERVER_ADDR, 0.0), errno.EISCONN),
        (lambda: listener.accept(0.0), errno.EAGAIN),
        (lambda: listener.recv(1, 0.0), errno.ENOTCONN),
    ]
    for call, code in calls:
        with fails_with(code):
            call()
    other = h.socket()
    with pytest.raises(EngineError) as exc:
        other.bind((str(CLIENT), 80))
    assert exc.value.errno == errno.EADDRINUSE


# -- data ------------------------------------------------------------------------------------------


def test_segmentation_at_the_mss_and_the_peer_window() -> None:
    h, sock, _ = connected()
    sock.setsockopt(SOL_TCP, 1, 1)  # TCP_NODELAY
    assert sock.send(b"z" * 2500, 0.2) == 2500
    segs = out(h)
    assert [len(s.payload) for s in segs] == [1000, 1000, 500]
    assert [s.seq for s in segs] == [ISN + 1, ISN + 1001, ISN + 2001]
    assert segs[-1].flags == A | P


def test_send_window_limits_what_is_in_flight() -> None:
    """Linux tcp_mss_split_point and tcp_snd_wnd_test: whole MSS up to the peer's window; the
    rest of it waits, since the next MSS would not fit."""
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1, window=1500), 0.2)
    sock.send(b"w" * 4000, 0.2)
    assert [len(s.payload) for s in out(h)] == [1000]
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1001, window=1500), 0.3)
    assert [(s.seq, len(s.payload)) for s in out(h)] == [(ISN + 1001, 1000)]


def test_without_tso_a_write_goes_as_gso_packets_psh_on_their_last_segment() -> None:
    """Linux 6.x TCP always has GSO (sk_setup_caps, whatever the device): a device without TSO
    gets the first transmission as a packet of two segments (tcp_min_tso_segs), cut in
    software, PSH on its last, then the rest of the write, which ends it (tcp_mark_push)."""
    h, sock, _ = connected()
    assert sock.conn is not None and sock.conn._size_goal() > 1000
    sock.setsockopt(SOL_TCP, TCP_NODELAY, 1)
    sock.send(b"g" * 2500, 0.2)
    assert [(len(s.payload), s.flags) for s in out(h)] == [(1000, A), (1000, A | P), (500, A | P)]


def test_every_ack_of_new_data_measures_the_rtt_without_timestamps() -> None:
    """Linux tcp_clean_rtx_queue and tcp_ack_update_rtt: each ACK that delivers data never
    retransmitted gives a sample, from the sending time of the first piece it acknowledges
    (not one timed segment per round trip); one that acknowledges a retransmission gives none
    (Karn)."""
    h, sock, _ = connected()
    conn = sock.conn
    assert conn is not None
    sock.setsockopt(SOL_TCP, TCP_NODELAY, 1)
    for _ in range(3):
        sock.send(b"r" * 1000, 0.2)
    out(h)
    expected = RttEstimator()
    expected.sample(0.1)  # the SYN's
    for ack, now in ((ISN + 1001, 0.21), (ISN + 2001, 0.23)):
        h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ack), now)
        expected.sample(now - 0.2)
        assert (conn.rtt.srtt, conn.rtt.min_rtt) == pytest.approx((expected.srtt, 0.01))
    h.handle_timer(0.2 + conn.rtt.rto + 0.5)  # the last one again, by the timer
    out(h)
    before = conn.rtt.srtt
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 3001), 2.0)
    assert conn.rtt.srtt == before


def test_a_window_smaller_than_the_data_sends_nothing_until_it_opens() -> None:
    """Linux tcp_snd_wnd_test: with 10 bytes of window, 1000 bytes to send do not go in part
    (only a window probe would send a part); a window update sends them whole, and the time
    the window held them is tcpi_rwnd_limited (tcp_chrono_start(TCP_CHRONO_RWND_LIMITED)).
    tcpi_busy_time adds up all the chronograph's time (not the SYN's: tcp_connect puts it
    straight in the retransmission queue)."""
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1, window=10), 0.2)
    sock.send(b"w" * 1000, 0.2)
    assert out(h) == []
    info = sock.tcp_info(0.25)
    assert (info.tcpi_rwnd_limited, info.tcpi_busy_time) == (50_000, 50_000)
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1, window=2000), 0.3)
    assert [(s.seq, len(s.payload)) for s in out(h)] == [(ISN + 1, 1000)]
    info = sock.tcp_info(0.35)
    assert (info.tcpi_rwnd_limited, info.tcpi_busy_time) == (100_000, 150_000)
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1001, window=2000), 0.4)
    info = sock.tcp_info(0.5)  # all acknowledged at 0.4: the chronograph stopped
    assert (info.tcpi_rwnd_limited, info.tcpi_busy_time) == (100_000, 200_000)
    assert (info.tcpi_last_data_sent, info.tcpi_last_ack_recv) == (200, 100)


def test_a_writer_waiting_for_room_is_sndbuf_limited_once_all_is_sent() -> None:
    """Linux tcp_cwnd_validate: with everything queued sent, the window not the limit and the
    writer out of room (SOCK_NOSPACE), the send buffer limits (TCP_CHRONO_SNDBUF_LIMITED);
    the ACK that gives room again ends it (tcp_check_space). The first skb of the write takes
    the size goal (32,000) past the buffer of 4,608, the send fills what tcp_push_one left of it
    to the goal again (42,000 in all); the ACK at 0.35 sends the last of it."""
    h, sock, _ = connected()
    sock.setsockopt(SOL_SOCKET, SO_SNDBUF, 2304)  # 4608 (Linux doubles it)
    assert sock.send(b"b" * 100000, 0.2) == 42000
    assert sum(len(s.payload) for s in out(h)) == 10000
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 10001), 0.3)
    assert sum(len(s.payload) for s in out(h)) == 20000
    assert sock.tcp_info(0.3).tcpi_sndbuf_limited == 0
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 30001), 0.35)
    assert sum(len(s.payload) for s in out(h)) == 12000
    info = sock.tcp_info(0.4)
    assert (info.tcpi_sndbuf_limited, info.tcpi_busy_time) == (50_000, 200_000)
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 42001), 0.45)
    info = sock.tcp_info(0.5)
    assert (info.tcpi_sndbuf_limited, info.tcpi_busy_time, info.tcpi_rwnd_limited) == (
        100_000,
        250_000,
        0,
    )


def test_the_send_buffer_counts_each_skb_s_truesize() -> None:
    """Linux sk_wmem_queued: an skb costs its data and SKB_TRUESIZE (832, tcp_stream_alloc_skb)
    until it is acknowledged, sent or not; a send takes a new skb only while that is below the
    buffer (sk_stream_memory_free), and fills it to the size goal all the same. The peer's window
    of 4,000 makes a size goal of 2,000: in a buffer of 4,608, a second skb starts at 2,832 and
    a third not, whether the skbs left or wait for the window."""
    h = host(CLIENT)
    sock, _ = connecting(h)
    opts = (Mss(1000), SackPermitted())
    h.receive_segment(SERVER, CLIENT, seg(S | A, PEER_ISN, ISN + 1, options=opts, window=4000), 0.1)
    out(h)
    sock.setsockopt(SOL_SOCKET, SO_SNDBUF, 2304)  # 4608 (Linux doubles it)
    conn = sock.conn
    assert conn is not None and SKB_TRUESIZE == 832
    assert sock.send(b"a" * 10000, 0.2) == 4000
    assert sum(len(s.payload) for s in out(h)) == 4000  # two skbs, each cut in MSS segments
    assert conn.wmem_queued() == 4000 + 2 * 832 and not conn.writable()
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1001, window=4000), 0.3)
    assert conn.wmem_queued() == 3000 + 2 * 832 and not conn.writable()  # tcp_trim_head
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 2001, window=4000), 0.3)
    assert conn.wmem_queued() == 2000 + 832 and conn.writable()  # 1,776 free >= 1,416
    assert sock.send(b"b" * 10000, 0.4) == 2000
    assert sum(len(s.payload) for s in out(h)) == 2000
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 6001, window=0), 0.5)
    assert conn.wmem_queued() == 0
    assert sock.send(b"c" * 10000, 0.6) == 4000  # two skbs wait for the window
    assert out(h) == [] and conn.wmem_queued() == 4000 + 2 * 832
    with fails_with(errno.EAGAIN):
        sock.send(b"d", 0.6)


def test_tcp_info_times_since_the_last_data_and_ack() -> None:
    """Linux tcp_get_info: tcpi_last_data_recv, _sent and tcpi_last_ack_recv are the ms since
    lrcvtime, lsndtime and rcv_tstamp; the handshake (tcp_finish_connect) sets the first two."""
    h, sock, _ = connected()
    info = sock.tcp_info(1.1)
    assert (info.tcpi_last_data_recv, info.tcpi_last_data_sent, info.tcpi_last_ack_recv) == (
        1000,
        1000,
        1000,
    )
    h.receive_segment(SERVER, CLIENT, data(PEER_ISN + 1, b"d" * 100), 1.2)
    sock.send(b"s" * 100, 1.3)
    out(h)
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 101, ISN + 101), 1.35)
    info = sock.tcp_info(1.4)
    assert (info.tcpi_last_data_recv, info.tcpi_last_data_sent, info.tcpi_last_ack_recv) == (
        200,
        100,
        50,
    )


def test_nagle_holds_a_small_segment_while_one_is_unacked() -> None:
    h, sock, _ = connected()
    sock.send(b"a", 0.2)
    assert one(h).payload == b"a"
    sock.send(b"b", 0.2)
    assert out(h) == []
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 2), 0.3)
    assert one(h).payload == b"b"


def test_msg_more_corks_one_send_even_with_nodelay() -> None:
    """Linux tcp_push: MSG_MORE sends with TCP_NAGLE_CORK; the next send without it pushes
    all, with PSH."""
    h, sock, _ = connected()
    sock.setsockopt(SOL_TCP, TCP_NODELAY, 1)
    assert sock.sendto(b"a" * 40, MSG_MORE, None, 0.2) == 40
    assert sock.sendto(b"b" * 60, MSG_MORE, None, 0.21) == 60
    assert out(h) == []
    assert sock.sendto(b"c" * 5, 0, None, 0.22) == 5
    segment = one(h)
    assert (len(segment.payload), segment.flags) == (105, A | P)


def test_msg_more_sends_whole_segments_without_psh() -> None:
    """Linux tcp_mss_split_point: corked, the small tail of a large send waits; what was
    sent under MSG_MORE was not pushed (tcp_mark_push), so a segment of it has no PSH, nor the
    tail that an ACK releases; a TSO packet of more than one segment has it all the same, on
    its last segment (as Linux 6.18 sends it: 1:2001 with PSH, 2001:3001 and 3001:3101
    without)."""
    h, sock, _ = connected()
    sock.setsockopt(SOL_TCP, TCP_NODELAY, 1)
    assert sock.sendto(b"m" * 3100, MSG_MORE, None, 0.2) == 3100
    segs = out(h)
    assert [(len(s.payload), s.flags) for s in segs] == [(1000, A), (1000, A | P), (1000, A)]
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 3001), 0.3)
    tail = one(h)
    assert (len(tail.payload), tail.flags) == (100, A)


def test_cork_holds_small_writes_until_uncorked() -> None:
    """Linux __tcp_sock_set_cork: TCP_CORK holds partial segments; clearing it pushes them."""
    h, sock, _ = connected()
    sock.setsockopt(SOL_TCP, TCP_CORK, 1)
    assert sock.getsockopt(SOL_TCP, TCP_CORK) == 1
    sock.send(b"x" * 40, 0.2)
    sock.send(b"y" * 40, 0.25)
    assert out(h) == []
    sock.setsockopt(SOL_TCP, TCP_CORK, 0, now=0.26)
    segment = one(h)
    assert (len(segment.payload), segment.flags) == (80, A | P)


def test_nodelay_pushes_what_the_cork_holds() -> None:
    """Linux __tcp_sock_set_nodelay sets TCP_NAGLE_PUSH: a corked queue goes out at once."""
    h, sock, _ = connected()
    sock.setsockopt(SOL_TCP, TCP_CORK, 1)
    sock.send(b"x" * 40, 0.2)
    assert out(h) == []
    sock.setsockopt(SOL_TCP, TCP_NODELAY, 1, now=0.21)
    assert len(one(h).payload) == 40


def test_corked_data_with_nothing_in_flight_goes_at_the_probe_timer() -> None:
    """Linux tcp_check_probe_timer and tcp_write_wakeup: corked data, no ACK to wait for; the
    probe timer (the RTO) sends it, with PSH."""
    h, sock, _ = connected()
    sock.setsockopt(SOL_TCP, TCP_CORK, 1)
    sock.send(b"x" * 40, 0.2)
    assert out(h) == []
    when = h.get_timer()
    assert when == pytest.approx(0.2 + sock.tcp_info(0.2).tcpi_rto / 1e6)
    h.handle_timer(when)
    segment = one(h)
    assert (len(segment.payload), segment.flags) == (40, A | P)


def test_notsent_lowat_stops_a_write_at_the_next_skb() -> None:
    """Linux tcp_stream_memory_free: with TCP_NOTSENT_LOWAT a send fills skbs of the size goal
    (half the peer's window, whole MSS) and takes no new one while the data not sent reaches
    the mark; POLLOUT waits for twice the unsent data to fall below it."""
    h, sock, _ = connected()
    sock.setsockopt(SOL_TCP, TCP_NOTSENT_LOWAT, 4000)
    assert sock.getsockopt(SOL_TCP, TCP_NOTSENT_LOWAT) == 4000
    # skbs of 32000 (65535 // 2 in whole MSS): the first, full, goes as far as the initial
    # window (tcp_push_one, 10000); its rest takes 10000 more; then 32000 are not sent
    assert sock.send(b"n" * 60000, 0.2) == 42000
    assert not sock.poll() & POLLOUT
    with fails_with(errno.EAGAIN):
        sock.send(b"n", 0.2)
    sent = sum(len(s.payload) for s in out(h))
    t = 0.3
    while sent < 42000:
        h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1 + sent), t)
        sent += sum(len(s.payload) for s in out(h))
        t += 0.1
    assert sock.poll() & POLLOUT


def test_notsent_lowat_sysctl_applies_without_the_option() -> None:
    """net.ipv4.tcp_notsent_lowat is the mark of sockets without TCP_NOTSENT_LOWAT."""
    _, sock, _ = connected(notsent_lowat=4000)
    assert sock.getsockopt(SOL_TCP, TCP_NOTSENT_LOWAT) == 0
    assert sock.send(b"n" * 60000, 0.2) == 42000
    _, plain, _ = connected()
    assert plain.send(b"n" * 40000, 0.2) == 40000


def test_rto_initial_one_second_exponential_backoff_then_rtt_estimate() -> None:
    h, sock, _ = connected()
    info = sock.tcp_info(0.0)
    assert info.tcpi_rtt == 100_000  # SYN to SYN-ACK
    assert info.tcpi_rto == pytest.approx(300_000)  # SRTT + max(4 RTTVAR, 200 ms)
    sock.send(b"x" * 10, 1.0)
    first = one(h)
    times = []
    t = 1.0
    for _ in range(3):
        t = h.get_timer() or 0.0
        h.handle_timer(t)
        again = one(h)
        assert again.seq == first.seq and again.payload == first.payload
        times.append(round(t - 1.0, 3))
    # with SACK the first is a tail loss probe, at the RTO (before 2 SRTT + 200 ms), which does
    # not back off (Linux tcp_schedule_loss_probe); then timeouts at 0.3, doubled: 0.6
    assert times == [0.3, 0.6, 1.2]
    assert sock.tcp_info(t).tcpi_total_retrans == 3
    assert (h.counters["TCPLossProbes"], h.counters["TCPTimeouts"]) == (1, 2)


def test_out_of_order_duplicate_and_overlapping_data_delivered_once_in_order() -> None:
    h, sock, _ = connected()
    base = PEER_ISN + 1
    text = bytes(range(200))
    h.receive_segment(SERVER, CLIENT, data(base + 100, text[100:150]), 0.2)
    dup = one(h)  # out of order: an immediate duplicate ACK with a SACK block
    assert dup.ack == base and Sack(((base + 100, base + 150),)) in dup.options
    h.receive_segment(SERVER, CLIENT, data(base + 120, text[120:200]), 0.2)  # overlaps
    out(h)
    h.receive_segment(SERVER, CLIENT, data(base, text[:60]), 0.2)
    h.receive_segment(SERVER, CLIENT, data(base + 40, text[40:110]), 0.2)  # fills the hole
    acks = out(h)
    assert acks[-1].ack == base + 200
    h.receive_segment(SERVER, CLIENT, data(base, text[:200]), 0.3)  # a full duplicate
    assert one(h).ack == base + 200
    assert sock.recv(1000, 0.3) == text


def test_delayed_ack_after_the_quick_acks() -> None:
    h, _sock, _ = connected()
    base = PEER_ISN + 1
    for i in range(16):  # Linux: quick ACKs at the start of a connection
        h.receive_segment(SERVER, CLIENT, data(base + i, b"q"), 0.2)
        assert one(h).ack == base + i + 1
    h.receive_segment(SERVER, CLIENT, data(base + 16, b"d"), 0.3)
    assert out(h) == []
    assert h.get_timer() == pytest.approx(0.34)  # 40 ms
    h.handle_timer(0.34)
    assert one(h).ack == base + 17
    h.receive_segment(SERVER, CLIENT, data(base + 17, b"e"), 0.5)
    h.receive_segment(SERVER, CLIENT, data(base + 18, b"f"), 0.5)
    assert one(h).ack == base + 19  # every second segment


def test_zero_window_probe() -> None:
    """Linux tcp_send_probe0: behind a zero window the probe is a segment one below SND.UNA
    without data (the peer answers with its window); an ACK that opens the window lets the data
    go, and the probes stop."""
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1, window=0), 0.2)
    sock.send(b"p" * 10, 0.2)
    assert out(h) == []
    t = h.get_timer()
    assert t == pytest.approx(0.2 + 0.3)  # the RTO: SRTT 100 ms + max(4 RTTVAR, 200 ms)
    h.handle_timer(t)
    probe = one(h)
    assert probe.seq == ISN and probe.payload == b"" and probe.flags == A
    assert sock.tcp_info(t).tcpi_probes == 1 and h.counters["TCPWinProbe"] == 1
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1, window=100), t + 0.1)
    sent = one(h)
    assert sent.seq == ISN + 1 and sent.payload == b"p" * 10
    assert sock.tcp_info(t + 0.1).tcpi_probes == 0


@pytest.mark.parametrize("idle_restart", [True, False])
def test_a_window_opening_after_idle_restarts_the_window(idle_restart: bool) -> None:
    """Linux tcp_ack_update_window: a window that changes while data waits is a restart check
    too (tcp_slow_start_after_idle_check): data queued behind a zero window for more than an
    RTO since data last left goes out with the window halved per RTO idle, down to 10."""
    h, sock, _ = connected(slow_start_after_idle=idle_restart)
    sock.send(b"a" * 10_000, 0.2)
    assert len(out(h)) == 10
    rec = sock.conn.recovery if sock.conn else None
    assert rec is not None
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 10_001, window=0), 0.3)
    assert rec.cwnd == 20 and rec.lsndtime == 0.2
    sock.send(b"b" * 20_000, 0.3)  # not idle yet: the write restarts nothing
    t = 0.3
    for _ in range(3):  # window probes are not data: lsndtime stays
        t = h.get_timer() or 0.0
        h.handle_timer(t)
        assert one(h).payload == b""
    assert rec.cwnd == 20 and rec.lsndtime == 0.2
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 10_001, window=65535), t)
    sent = out(h)
    assert rec.cwnd == (10 if idle_restart else 20)
    assert len(sent) == rec.cwnd


# -- FIN, RST and TIME-WAIT ------------------------------------------------------------------------


def test_active_close_fin_wait_time_wait_60_seconds() -> None:
    h, sock, _ = connected()
    sock.close(1.0)
    fin = one(h)
    assert fin.flags == F | A and fin.seq == ISN + 1
    assert sock.state.name == "FIN_WAIT_1"
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 2), 1.1)
    assert sock.state.name == "FIN_WAIT_2"
    h.receive_segment(SERVER, CLIENT, seg(F | A, PEER_ISN + 1, ISN + 2), 1.2)
    assert one(h).ack == PEER_ISN + 2
    assert sock.state.name == "TIME_WAIT"
    assert h.get_timer() == pytest.approx(61.2)
    h.receive_segment(SERVER, CLIENT, seg(F | A, PEER_ISN + 1, ISN + 2), 2.0)  # lost ACK
    assert one(h).ack == PEER_ISN + 2 and h.get_timer() == pytest.approx(62.0)
    h.handle_timer(62.0)
    assert sock.state.name == "CLOSED" and h.connections == {}


def test_a_fin_after_a_full_window_leaves_at_once() -> None:
    """Linux tcp_cwnd_test: a FIN of one segment is never held by the congestion window, so
    shutdown with a full window of data in flight sends it at once."""
    h, sock, _ = connected()
    sock.send(b"w" * 10_000, 0.2)
    assert len(out(h)) == 10  # the initial window, all in flight
    sock.close(0.25)
    fin = one(h)
    assert fin.flags == F | A and fin.seq == ISN + 10_001 and not fin.payload


def test_simultaneous_close_goes_through_closing() -> None:
    h, sock, _ = connected()
    sock.close(1.0)
    out(h)
    h.receive_segment(SERVER, CLIENT, seg(F | A, PEER_ISN + 1, ISN + 1), 1.1)
    assert sock.state.name == "CLOSING"
    out(h)
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 2, ISN + 2), 1.2)
    assert sock.state.name == "TIME_WAIT"


def test_passive_close_close_wait_last_ack() -> None:
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, seg(F | A, PEER_ISN + 1, ISN + 1), 1.0)
    # Linux tcp_fin: CLOSE_WAIT in ping-pong mode, the ACK of the FIN is a delayed one; with no
    # data received yet (ato 0) it goes one tick later
    assert out(h) == [] and h.get_timer() == pytest.approx(1.001)
    h.handle_timer(1.001)
    assert one(h).ack == PEER_ISN + 2
    assert sock.state.name == "CLOSE_WAIT" and sock.recv(10, 1.0) == b""
    sock.close(1.1)
    assert one(h).flags == F | A and sock.state.name == "LAST_ACK"
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 2, ISN + 2), 1.2)
    assert h.connections == {}


def test_fin_ack_rides_on_the_applications_fin() -> None:
    """A close() within the delayed ACK timeout: its FIN carries the ACK of the peer's FIN; a
    FIN after more than a segment not yet ACKed is ACKed at once (__tcp_ack_snd_check)."""
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, data(PEER_ISN + 1, b"x" * 100), 0.5)
    assert one(h).ack == PEER_ISN + 101  # quick ACK mode at the start; ato is 40 ms
    assert sock.recv(200, 0.6) == b"x" * 100
    h.receive_segment(SERVER, CLIENT, seg(F | A, PEER_ISN + 101, ISN + 1), 1.0)
    assert out(h) == [] and h.get_timer() == pytest.approx(1.04)
    sock.close(1.01)
    fin = one(h)
    assert fin.flags == F | A and fin.ack == PEER_ISN + 102
    h2, _, _ = connected()
    h2.receive_segment(SERVER, CLIENT, data(PEER_ISN + 1, bytes(1460), A | P | F), 1.0)
    assert one(h2).ack == PEER_ISN + 1462


def test_close_with_unread_data_sends_a_reset() -> None:
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, data(PEER_ISN + 1, b"unread"), 0.2)
    out(h)
    sock.close(0.3)
    rst = one(h)
    assert rst.flags & R and rst.seq == ISN + 1
    assert h.connections == {}


def test_msg_eor_ends_a_segment() -> None:
    """Linux TCP_SKB_CB(skb)->eor: no segment carries data from both sides of a MSG_EOR."""

    def pieces(flags: int) -> list[int]:
        h, sock, _ = connected()
        assert sock.send(bytes(20000), 0.2) == 20000
        flight = sum(len(s.payload) for s in out(h))  # the congestion window's worth
        assert sock.sendto(bytes(1500), flags, None, 0.2) == 1500
        assert sock.send(bytes(1000), 0.2) == 1000
        h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 1 + flight), 0.3)
        assert flight < 20000
        return [len(s.payload) for s in out(h)][-3:]

    assert pieces(MSG_EOR) == [1000, 500, 1000]
    assert pieces(0) == [1000, 1000, 500]


def test_active_reset_has_timestamps_a_reply_reset_none() -> None:
    """Linux tcp_send_active_reset goes through tcp_transmit_skb: the RST of close() with
    unread data carries TS val and ecr. Data after close() (TCPAbortOnData) is answered as
    tcp_v4_send_reset does: ``R`` at the segment's ACK, no options."""

    def with_timestamps() -> tuple[Host, EngineSocket, TcpSegment]:
        h = host(CLIENT, timestamps=True)
        sock, syn = connecting(h)
        assert syn.timestamps is not None
        opts = (Mss(1000), SackPermitted(), Timestamps(50, syn.timestamps.tsval))
        h.receive_segment(SERVER, CLIENT, seg(S | A, PEER_ISN, ISN + 1, options=opts), 0.1)
        out(h)
        return h, sock, syn

    h, sock, syn = with_timestamps()
    assert syn.timestamps is not None
    unread = seg(A | P, PEER_ISN + 1, ISN + 1, b"unread", (Nop(), Nop(), Timestamps(60, 1)))
    h.receive_segment(SERVER, CLIENT, unread, 1.0)
    out(h)
    sock.close(2.0)
    rst = one(h)
    assert rst.flags == R | A and rst.timestamps is not None
    assert rst.timestamps.tsval - syn.timestamps.tsval == 2000
    h2, sock2, _ = with_timestamps()
    sock2.close(1.0)
    assert one(h2).flags == F | A
    h2.receive_segment(SERVER, CLIENT, data(PEER_ISN + 1, b"late"), 1.1)
    reply = one(h2)
    assert (reply.flags, reply.seq, reply.options) == (R, ISN + 1, ())
    assert h2.counters["TCPAbortOnData"] == 1 and h2.connections == {}


@pytest.mark.parametrize("state", ["established", "close_wait"])
def test_rst_exact_sequence_resets(state: str) -> None:
    h, sock, _ = connected()
    seq = PEER_ISN + 1
    if state == "close_wait":
        h.receive_segment(SERVER, CLIENT, seg(F | A, seq, ISN + 1), 0.2)
        out(h)
        seq += 1
    h.receive_segment(SERVER, CLIENT, seg(R, seq), 0.3)
    events = []
    while (ev := h.next_event()) is not None:
        events.append(ev)
    assert Closed(sock, errno.EPIPE if state == "close_wait" else errno.ECONNRESET) in events
    assert h.connections == {}


def test_rst_in_window_but_not_exact_gets_a_challenge_ack() -> None:
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, seg(R, PEER_ISN + 100), 0.2)
    ack = one(h)
    assert ack.flags == A and ack.ack == PEER_ISN + 1  # RFC 5961 3.2
    assert sock.state.name == "ESTABLISHED"
    assert h.counters["TCPChallengeACK"] == 1
    h.receive_segment(SERVER, CLIENT, seg(R, PEER_ISN + 1_000_000), 0.2)  # out of window
    assert out(h) == [] and sock.state.name == "ESTABLISHED"


def test_syn_in_a_synchronized_state_gets_a_challenge_ack() -> None:
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, seg(S, PEER_ISN + 5), 0.2)
    ack = one(h)
    assert ack.flags == A and ack.ack == PEER_ISN + 1  # RFC 5961 4.2
    assert sock.state.name == "ESTABLISHED" and h.counters["TCPSYNChallenge"] == 1


def test_ack_of_unsent_data_is_answered_and_dropped() -> None:
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, seg(A, PEER_ISN + 1, ISN + 500, b"x"), 0.2)
    ack = one(h)
    assert ack.ack == PEER_ISN + 1  # the data was not taken
    with pytest.raises(EngineError):
        sock.recv(10, 0.2)


def syn_timeline(h: Host, sock: EngineSocket) -> tuple[list[float], float]:
    """Connect and let every SYN time out: (when SYNs went again, when the connect failed)."""
    with pytest.raises(EngineError):
        sock.connect(SERVER_ADDR, 0.0)
    out(h)
    sent: list[float] = []
    when = 0.0
    while (timer := h.get_timer()) is not None:
        when = timer
        h.handle_timer(when)
        segs = out(h)
        assert all(s.flags == S for s in segs)
        sent += [when] * len(segs)
    with pytest.raises(EngineError) as exc:
        sock.recv(1, when)
    assert exc.value.errno == errno.ETIMEDOUT
    return sent, when


def test_syn_retransmitted_at_a_linear_then_doubling_rto_until_syn_retries_plus_linear() -> None:
    """Linux 6.x (tcp_syn_linear_timeouts = 4): SYN RTOs 1, 1, 1, 1, 1, 2, 4 ... s, and
    syn_retries + 4 retransmissions before ETIMEDOUT (131 s with the default 6)."""
    h = host(CLIENT)
    sent = [1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 11.0, 19.0, 35.0, 67.0]
    assert syn_timeline(h, h.socket()) == (sent, 131.0)
    h = host(CLIENT, syn_retries=2, syn_linear_timeouts=0)  # the Linux 5.x timing
    assert syn_timeline(h, h.socket()) == ([1.0, 3.0], 7.0)


def test_syn_sent_also_gives_up_after_the_time_syn_retries_doublings_take() -> None:
    """Linux retransmits_timed_out: with syn_retries 2 the connect fails after 1 + 2 + 4 s even
    though the linear timeouts would allow more SYNs."""
    h = host(CLIENT, syn_retries=2)
    assert syn_timeline(h, h.socket()) == ([1.0, 2.0, 3.0, 4.0, 5.0], 7.0)


def test_tcp_syncnt_sets_the_syn_retries_of_one_socket() -> None:
    h = host(CLIENT, syn_linear_timeouts=0)
    sock = h.socket()
    assert sock.getsockopt(SOL_TCP, TCP_SYNCNT) == 6  # the host's until set
    for bad in (0, 128):
        with pytest.raises(EngineError) as exc:
            sock.setsockopt(SOL_TCP, TCP_SYNCNT, bad)
        assert exc.value.errno == errno.EINVAL
    sock.setsockopt(SOL_TCP, TCP_SYNCNT, 1)
    assert sock.getsockopt(SOL_TCP, TCP_SYNCNT) == 1
    assert syn_timeline(h, sock) == ([1.0], 3.0)
    h = host(CLIENT)  # with the linear timeouts: SYNs at 0, 1 and 2 s, ETIMEDOUT at 3 s
    sock = h.socket()
    sock.setsockopt(SOL_TCP, TCP_SYNCNT, 1)
    assert syn_timeline(h, sock) == ([1.0, 2.0], 3.0)


def test_passive_open_events_and_accept() -> None:
    server = host(SERVER)
    client = host(CLIENT)
    listener = server.socket()
    listener.bind(SERVER_ADDR)
    listener.listen(8)
    link = Link(client, server)
    sock = client.socket()
    with pytest.raises(EngineError):
        sock.connect(SERVER_ADDR, 0.0)
    link.advance(0.01)
    assert isinstance(client.next_event(), Connected)
    child, addr = listener.accept(link.now)
    assert addr[0] == str(CLIENT) and child.getpeername() == addr
    assert child.state.name == "ESTABLISHED"
    sock.send(b"ping", link.now)
    link.advance(0.01)
    events = []
    while (ev := server.next_event()) is not None:
        events.append(ev)
    assert Readable(child) in events and child.recv(10, link.now) == b"ping"


def test_ipv6_connection() -> None:
    a = Host(["fd00:f0::1"], isn=lambda *_: ISN)
    b = Host(["fd00:f0::2"])
    listener = b.socket(10)
    listener.bind(("fd00:f0::2", 80))
    listener.listen(8)
    link = Link(a, b, encode=True)
    sock = a.socket(10)
    with pytest.raises(EngineError):
        sock.connect(("fd00:f0::2", 80), 0.0)
    link.advance(0.01)
    child, _ = listener.accept(link.now)
    assert child.getsockname() == ("fd00:f0::2", 80)
    assert sock.tcp_info(link.now).tcpi_snd_mss == 1500 - 60 - 12
    assert ipaddress.ip_address(sock.getsockname()[0]).version == 6


def test_out_of_window_pure_acks_get_rate_limited_duplicate_acks() -> None:
    h, _, _ = connected()
    h.receive_segment(SERVER, CLIENT, data(PEER_ISN + 1, b"abc"), 0.2)
    out(h)
    old = seg(A, PEER_ISN, ISN + 1)  # before rcv_nxt: out of window
    h.receive_segment(SERVER, CLIENT, old, 0.3)
    assert one(h).ack == PEER_ISN + 4
    h.receive_segment(SERVER, CLIENT, old, 0.4)  # within 500 ms: no second ACK (no ACK loop)
    assert out(h) == [] and h.counters["TCPACKSkippedSeq"] == 1
    h.receive_segment(SERVER, CLIENT, old, 0.9)
    assert one(h).ack == PEER_ISN + 4


def test_pure_ack_carries_the_highest_sequence_sent_during_a_retransmission() -> None:
    h, sock, _ = connected()
    sock.setsockopt(SOL_TCP, 1, 1)
    sock.send(b"x" * 3000, 0.2)
    assert len(out(h)) == 3
    h.handle_timer(h.get_timer() or 0.0)  # a tail loss probe: the last segment again
    assert one(h).seq == ISN + 2001
    h.handle_timer(h.get_timer() or 0.0)  # RTO: the first segment again
    assert one(h).seq == ISN + 1
    h.receive_segment(SERVER, CLIENT, data(PEER_ISN + 1, b"hi"), 1.0)
    assert one(h).seq == ISN + 3001  # not the rewound ISN + 1001


def plain_server() -> tuple[Host, EngineSocket]:
    """A server listening on port 80, with one handshake from port 40000 done at 0.1 s."""
    h = host(SERVER)
    listener = h.socket()
    listener.bind(SERVER_ADDR)
    listener.listen(8)
    h.receive_segment(CLIENT, SERVER, seg(S, PEER_ISN, sport=40000, dport=80), 0.0)
    synack = one(h)
    h.receive_segment(
        CLIENT, SERVER, seg(A, PEER_ISN + 1, synack.seq + 1, sport=40000, dport=80), 0.1
    )
    return h, listener


def test_a_newer_syn_reuses_a_time_wait_connection() -> None:
    h, listener = plain_server()
    child, _ = listener.accept(0.1)
    child.close(0.2)  # the server closes first: it will hold TIME-WAIT
    fin = one(h)
    h.receive_segment(
        CLIENT, SERVER, seg(F | A, PEER_ISN + 1, fin.seq + 1, sport=40000, dport=80), 0.3
    )
    out(h)
    assert child.state.name == "TIME_WAIT"
    h.receive_segment(CLIENT, SERVER, seg(S, PEER_ISN + 100_000, sport=40000, dport=80), 1.0)
    again = one(h)
    assert again.flags == S | A and again.ack == PEER_ISN + 100_001
    assert child.state.name == "CLOSED"


def test_closing_a_listener_resets_the_connections_not_accepted() -> None:
    h, listener = plain_server()
    h.receive_segment(CLIENT, SERVER, seg(S, PEER_ISN, sport=40001, dport=80), 0.1)  # an embryo
    out(h)
    listener.close(0.2)
    rst = one(h)  # only the established one is reset; the embryo goes silently
    assert rst.flags & R and rst.dst_port == 40000
    assert h.connections == {} and h.get_timer() is None


# -- Linux details ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("rmem", "window"), [(131072, 64240), (540000, 65535), (1000, 500)])
def test_initial_window_is_half_the_receive_buffer_rounded_to_the_mss(
    rmem: int, window: int
) -> None:
    """Linux tcp_select_initial_window (measured on 6.18: 64240 with the stock tcp_rmem,
    65535 with packetdrill's 540000)."""
    h = host(CLIENT, rmem=rmem)
    with pytest.raises(EngineError):
        h.socket().connect(SERVER_ADDR, 0.0)
    assert one(h).window == window


def test_a_reset_right_after_the_peers_fin_is_accepted() -> None:
    """Linux tcp_reset_check: in CLOSE-WAIT a RST at RCV.NXT - 1 (sent with the FIN's sequence)
    resets; elsewhere it is out of window."""
    h, sock, _ = connected()
    h.receive_segment(SERVER, CLIENT, data(PEER_ISN + 1, b"", A | F), 0.2)
    h.handle_timer(0.25)  # the ACK of a FIN is a delayed one (Linux tcp_fin: ping-pong mode)
    assert one(h).ack == PEER_ISN + 2
    h.receive_segment(SERVER, CLIENT, seg(R, PEER_ISN + 1), 0.3)
    assert h.connections == {}
    with pytest.raises(EngineError) as exc:
        sock.send(b"x", 0.3)
    assert exc.value.errno == errno.EPIPE


def test_data_in_a_plain_synack_is_dropped() -> None:
    """Linux queues SYN-ACK data only for TCP Fast Open; a plain SYN-ACK's data is acked away."""
    h = host(CLIENT)
    sock, _ = connecting(h)
    h.receive_segment(SERVER, CLIENT, seg(S | A, PEER_ISN, ISN + 1, b"early"), 0.1)
    assert one(h).ack == PEER_ISN + 1
    with pytest.raises(EngineError) as exc:
        sock.recv(10, 0.1)
    assert exc.value.errno == errno.EAGAIN


def test_a_synack_echoing_a_timestamp_never_sent_is_answered_with_a_reset() -> None:
    """Linux PAWS in SYN-SENT (TcpExt PAWSActive): RST, and a good SYN-ACK still connects."""
    h = host(CLIENT, timestamps=True)
    sock, syn = connecting(h)
    assert syn.timestamps is not None
    bad = seg(S | A, PEER_ISN, ISN + 1, options=(Mss(1460), Timestamps(7, 9999)))
    h.receive_segment(SERVER, CLIENT, bad, 0.01)
    rst = one(h)
    assert rst.flags == R and rst.seq == ISN + 1 and sock.state.name == "SYN_SENT"
    assert h.counters["PAWSActive"] == 1
    good = seg(S | A, PEER_ISN, ISN + 1, options=(Mss(1460), Timestamps(7, syn.timestamps.tsval)))
    h.receive_segment(SERVER, CLIENT, good, 0.02)
    assert one(h).flags == A and sock.state.name == "ESTABLISHED"


def test_a_coalesced_segment_is_acknowledged_at_once_and_counted_as_its_segments() -> None:
    """Linux GRO hands TCP one skb for many segments: __tcp_ack_snd_check ACKs it at once (more
    than a segment's worth), and tcpi_segs_in / tcpi_data_segs_in and TcpInSegs count its
    segments (gso_segs). Out of quick ACK mode, one segment alone waits for the delayed ACK."""
    h, sock, _ = connected()
    conn = sock.conn
    assert conn is not None
    now, nxt = 0.2, PEER_ISN + 1
    for _ in range(20):  # each ACKed in quick ACK mode, then 1 in 2: leave quick ACK mode
        now += 0.001
        h.receive_segment(SERVER, CLIENT, data(nxt, b"q" * 1000), now)
        nxt += 1000
        out(h)
        sock.recv(65536, now)
    now += 0.001
    h.receive_segment(SERVER, CLIENT, data(nxt, b"a" * 1000), now)
    assert [s for s in out(h) if s.flags & A] == []  # one segment: the ACK is delayed
    nxt += 1000
    now += 0.5
    h.handle_timer(now)
    assert [s.ack for s in out(h)] == [nxt]  # the delayed ACK
    before = (conn.segs_in, conn.data_segs_in, h.counters["TcpInSegs"])
    h.receive_segment(SERVER, CLIENT, data(nxt, b"g" * 4000), now + 0.001, segs=4)
    acks = [s for s in out(h) if s.flags & A]
    assert acks and acks[-1].ack == nxt + 4000
    after = (conn.segs_in, conn.data_segs_in, h.counters["TcpInSegs"])
    assert [b - a for a, b in zip(before, after, strict=True)] == [4, 4, 4]


def test_a_device_that_drops_everything_keeps_the_data_and_probes_every_500_ms() -> None:
    """Linux tcp_transmit_skb on NET_XMIT_DROP (tc qdisc ... pfifo limit 0,
    Settings.qdisc_drops): nothing leaves, the data stays unsent, the window comes down
    (CWR), and the probe timer tries again every TCP_RESOURCE_PROBE_INTERVAL with no backoff,
    each try counted in tcpi_probes; once the device takes packets the next try sends."""
    h, sock, _ = connected()
    h.settings.qdisc_drops = True
    assert sock.send(b"x" * 100, 1.0) == 100
    assert out(h) == [] and sock.conn is not None and sock.conn.snd_nxt == ISN + 1
    first = h.get_timer()
    assert first is not None and first > 1.0
    h.handle_timer(first)
    assert out(h) == [] and h.get_timer() == pytest.approx(first + 0.5)
    h.handle_timer(first + 0.5)
    info = sock.tcp_info(first + 0.5)
    assert (info.tcpi_probes, info.tcpi_backoff, info.tcpi_ca_state) == (2, 0, 2)
    h.settings.qdisc_drops = False
    h.handle_timer(first + 1.0)
    sent = one(h)
    assert sent.seq == ISN + 1 and len(sent.payload) == 100
