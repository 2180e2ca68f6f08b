"""Hostile peers, as Linux 6.x meets them: one segment in at an injected time, what comes out
checked. MSS floor, SYN queue and SYN cookies, request sockets, challenge ACK limits, zero window
probes, a bounded out-of-order queue, and a fault in one connection contained."""

from __future__ import annotations

import errno
import ipaddress
import random
import tracemalloc

import pytest
from engine_support import (
    CLIENT,
    ISN,
    PEER_ISN,
    SERVER,
    SERVER_ADDR,
    SOL_TCP,
    A,
    P,
    R,
    S,
    cookie_for,
    host,
    one,
    out,
    seg,
)

from fastopen.constants import TCP_FASTOPEN
from fastopen.engine import Closed, ConnectionFault, EngineSocket, Host
from fastopen.engine.ofo import BLOCK_OVERHEAD
from fastopen.engine.syncookies import MSSTAB
from fastopen.wire import (
    FastOpen,
    Mss,
    Nop,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    WindowScale,
    ip_packet,
)

PORT = 40000


def server(backlog: int = 128, **kw: object) -> tuple[Host, EngineSocket]:
    kw.setdefault("tcp_fastopen", 0x3)
    h = host(SERVER, **kw)
    listener = h.socket()
    listener.bind(SERVER_ADDR)
    listener.setsockopt(SOL_TCP, TCP_FASTOPEN, 16)
    listener.listen(backlog)
    return h, listener


def syn_in(
    h: Host,
    now: float,
    addr: ipaddress.IPv4Address = CLIENT,
    port: int = PORT,
    options: tuple[TcpOption, ...] = (Mss(1460),),
    payload: bytes = b"",
) -> None:
    """A SYN from ``addr``:``port`` into ``h`` at ``now``."""
    h.receive_segment(
        addr, SERVER, TcpSegment(port, 80, PEER_ISN, 0, S, 65535, options, payload), now
    )


def spoofed(i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ipaddress.IPv4Address("198.19.0.0")) + i)


def established_server(**kw: object) -> tuple[Host, EngineSocket, EngineSocket]:
    """A server host with one accepted connection from CLIENT:PORT (no timestamps)."""
    h, listener = server(**kw)
    syn_in(h, 0.0, CLIENT)
    synack = one(h)
    h.receive_segment(
        CLIENT, SERVER, seg(A, PEER_ISN + 1, synack.seq + 1, sport=PORT, dport=80), 0.01
    )
    child, _ = listener.accept(0.01)
    return h, listener, child


# -- MSS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("timestamps", "mss"), [(False, 48), (True, 36)])
def test_a_tiny_mss_is_floored_at_tcp_min_snd_mss(timestamps: bool, mss: int) -> None:
    """Linux tcp_mtu_to_mss: MSS 12 becomes 48, less the timestamps' 12 bytes; data goes in
    segments of that size, and the retransmission timer and duplicate ACKs work on them."""
    h, listener = server(timestamps=timestamps)
    opts: tuple[TcpOption, ...] = (Mss(12),)
    if timestamps:
        opts += (Nop(), Nop(), Timestamps(1, 0))
    syn_in(h, 0.0, CLIENT, options=opts)
    synack = one(h)
    ts = (Nop(), Nop(), Timestamps(2, synack.timestamps.tsval)) if synack.timestamps else ()
    third = TcpSegment(PORT, 80, PEER_ISN + 1, synack.seq + 1, A, 65535, ts)
    h.receive_segment(CLIENT, SERVER, third, 0.01)
    child, _ = listener.accept(0.01)
    assert child.tcp_info(0.01).tcpi_snd_mss == mss
    child.send(b"x" * 1000, 0.02)
    sent = out(h)
    assert {len(s.payload) for s in sent} == {mss} and len(sent) >= 10  # the initial window
    t = h.get_timer()
    assert t is not None
    h.handle_timer(t)  # the RTO: one segment again, of that size
    again = one(h)
    assert again.seq == synack.seq + 1 and len(again.payload) == mss
    for _ in range(3):  # duplicate ACKs: a fast retransmission, no division by the MSS
        dup = TcpSegment(PORT, 80, PEER_ISN + 1, synack.seq + 1, A, 65535, ts)
        h.receive_segment(CLIENT, SERVER, dup, t + 0.01)
    assert child.tcp_info(t + 0.01).tcpi_snd_cwnd >= 1


# -- SYN queue, request sockets, SYN cookies --------------------------------------------------


def test_a_syn_leaves_a_small_request_socket_not_a_connection() -> None:
    """Linux request_sock: a SYN without fast open is a few hundred bytes until its ACK."""
    h, listener = server(backlog=4096)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(2000):
        syn_in(h, 0.0, spoofed(i))
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    out(h)
    assert (
        h.connections == {} and len(h.requests) == 2000 and listener.listen_queue.syn_qlen == 2000
    )
    assert used / 2000 < 1500, f"{used / 2000:.0f} bytes per pending SYN"


def test_request_socket_retransmits_the_synack_and_gives_up() -> None:
    h, listener = server()
    syn_in(h, 0.0, CLIENT)
    first = one(h)
    syn_in(h, 0.5)  # the SYN again: the SYN-ACK again
    assert one(h).seq == first.seq
    times = []
    while (t := h.get_timer()) is not None:
        h.handle_timer(t)
        times.append(t)
        for s in out(h):
            assert s.flags == S | A and s.seq == first.seq
    assert times == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0]  # 5 retransmissions, then dropped
    assert (
        h.requests == {}
        and listener.listen_queue.syn_qlen == 0
        and listener.listen_queue.syn_young == 0
    )


def test_the_ack_of_a_request_makes_the_connection() -> None:
    h, listener = server()
    syn_in(h, 0.0, CLIENT)
    synack = one(h)
    data = TcpSegment(PORT, 80, PEER_ISN + 1, synack.seq + 1, A | P, 65535, (), b"hello")
    h.receive_segment(CLIENT, SERVER, data, 0.05)
    child, _ = listener.accept(0.05)
    assert child.recv(10, 0.05) == b"hello" and listener.listen_queue.syn_qlen == 0
    assert child.tcp_info(0.05).tcpi_rtt == 50000  # the SYN-ACK was timed


def full_queue(backlog: int = 4, **kw: object) -> tuple[Host, EngineSocket]:
    """A listener whose SYN queue is full: backlog + 1 pending SYNs (Linux 6.x: full when the
    queue is longer than the backlog)."""
    h, listener = server(backlog=backlog, **kw)
    for i in range(backlog + 1):
        syn_in(h, 0.0, spoofed(i))
    assert len(out(h)) == backlog + 1 and listener.listen_queue.syn_qlen == backlog + 1
    return h, listener


def test_a_full_syn_queue_answers_with_a_syn_cookie_and_no_fast_open() -> None:
    h, listener = full_queue()
    fo = FastOpen(cookie_for(CLIENT))
    syn_in(h, 1.0, CLIENT, options=(Mss(1400), fo), payload=b"data")
    synack = one(h)
    assert synack.fastopen is None and synack.ack == PEER_ISN + 1  # no TFO, data not acked
    assert synack.options == (Mss(1460),)  # without timestamps no room for wscale or SACK
    assert h.counters["SyncookiesSent"] == 1 and h.counters["TCPFastOpenPassive"] == 0
    assert len(h.requests) == 5 and h.connections == {}  # nothing kept for it
    cookie = h.syncookies.check(CLIENT, SERVER, PORT, 80, PEER_ISN + 1, synack.seq + 1, 1.0)
    assert cookie == MSSTAB[4][1]  # 1400 is kept as 1300
    ack = TcpSegment(PORT, 80, PEER_ISN + 1, synack.seq + 1, A | P, 65535, (), b"GET")
    h.receive_segment(CLIENT, SERVER, ack, 1.1)
    child, peer = listener.accept(1.1)
    assert peer == (str(CLIENT), PORT) and child.recv(10, 1.1) == b"GET"
    assert child.tcp_info(1.1).tcpi_snd_mss == 1300 and h.counters["SyncookiesRecv"] == 1


def test_a_syn_cookie_keeps_wscale_and_sack_in_the_timestamp() -> None:
    h, listener = full_queue(timestamps=True)
    opts = (Mss(1460), SackPermitted(), Timestamps(77, 0), Nop(), WindowScale(9))
    syn_in(h, 2.0, CLIENT, options=opts)
    synack = one(h)
    ts = synack.timestamps
    assert ts is not None and ts.tsval & 0x3F == 9 | 0x10  # wscale 9, SACK
    assert synack.wscale == 7 and synack.sack_permitted
    echo = (Nop(), Nop(), Timestamps(78, ts.tsval))
    h.receive_segment(
        CLIENT, SERVER, TcpSegment(PORT, 80, PEER_ISN + 1, synack.seq + 1, A, 100, echo), 2.1
    )
    child, _ = listener.accept(2.1)
    info = child.tcp_info(2.1)
    assert (info.tcpi_snd_wscale, info.tcpi_rcv_wscale) == (9, 7)
    assert info.tcpi_snd_wnd == 100 << 9 and info.tcpi_snd_mss == 1460 - 12


def test_an_ack_without_a_valid_cookie_gets_a_rst() -> None:
    h, _ = full_queue()
    syn_in(h, 1.0, CLIENT)
    synack = one(h)
    bad = TcpSegment(PORT, 80, PEER_ISN + 1, synack.seq + 2, A, 65535)
    h.receive_segment(CLIENT, SERVER, bad, 1.1)
    rst = one(h)
    assert rst.flags == R and rst.seq == synack.seq + 2
    assert h.counters["SyncookiesFailed"] == 1 and h.connections == {}


def test_a_cookie_is_good_in_its_minute_and_the_next() -> None:
    h, _ = full_queue()
    syn_in(h, 59.0, CLIENT)
    synack = one(h)
    late = TcpSegment(PORT, 80, PEER_ISN + 1, synack.seq + 1, A, 65535)
    assert h.syncookies.check(CLIENT, SERVER, PORT, 80, PEER_ISN + 1, synack.seq + 1, 119.9)
    assert not h.syncookies.check(CLIENT, SERVER, PORT, 80, PEER_ISN + 1, synack.seq + 1, 120.0)
    h.receive_segment(CLIENT, SERVER, late, 100.0)
    assert h.connections  # 41 s later: good (the minute it was made, or the next)


def test_without_syncookies_a_full_queue_drops_syns() -> None:
    h, _ = full_queue(syncookies=0)
    syn_in(h, 1.0, CLIENT)
    assert out(h) == [] and h.counters["TCPReqQFullDrop"] == 1 and h.counters["ListenDrops"] == 1


def test_syncookies_2_answers_every_syn_with_a_cookie() -> None:
    h, _ = server(syncookies=2)
    syn_in(h, 0.0, CLIENT)
    assert one(h).flags == S | A and h.requests == {} and h.counters["SyncookiesSent"] == 1


PLAIN_SYNS: list[tuple[TcpOption, ...]] = [
    (Mss(1460), SackPermitted(), Timestamps(77, 0), Nop(), WindowScale(7)),  # Linux's
    (Mss(1460), SackPermitted(), Nop(), WindowScale(15)),  # no timestamps, a shift above 14
    (Nop(), Nop(), Timestamps(5, 9), Mss(0)),
    (Mss(9000),),
    (),
]


@pytest.mark.parametrize("options", PLAIN_SYNS)
@pytest.mark.parametrize("settings", [{"timestamps": True}, {"timestamps": False, "sack": False}])
def test_a_plain_syn_read_from_its_bytes_gets_the_cookie_the_parsed_one_gets(
    options: tuple[TcpOption, ...], settings: dict[str, object]
) -> None:
    """Host.receive answers the SYNs of a flood without parsing them into segments (the cookie
    at once); the SYN-ACK and the counters are those of the general path."""
    hosts = [full_queue(secret=b"k" * 16, **settings)[0] for _ in range(2)]
    syn = TcpSegment(PORT, 80, PEER_ISN, 0, S, 64240, options)
    hosts[0].receive(ip_packet(CLIENT, SERVER, syn), 3.0)
    hosts[1].receive_segment(CLIENT, SERVER, syn, 3.0)
    at_once, parsed = (h.segments_to_send() for h in hosts)
    assert at_once == parsed and len(at_once) == 1 and at_once[0][2].flags == S | A
    assert hosts[0].counters == hosts[1].counters
    assert hosts[0].counters["SyncookiesSent"] == 1 and hosts[0].requests.keys() == (
        hosts[1].requests.keys()
    )


def test_a_flood_keeps_memory_bounded_by_the_backlog() -> None:
    h, _ = server(backlog=64)
    for i in range(5000):
        syn_in(h, i * 0.001, spoofed(i))
        out(h)
    assert len(h.requests) == 65 and h.connections == {}
    assert h.counters["SyncookiesSent"] == 5000 - 65


# -- challenge ACKs ---------------------------------------------------------------------------


def test_in_window_rsts_draw_one_challenge_ack_per_500_ms() -> None:
    """1,000 in-window RSTs (not at RCV.NXT): Linux 6.18 answers one (tcp_invalid_ratelimit)."""
    h, _, child = established_server()
    out(h)
    for i in range(1000):
        h.receive_segment(
            CLIENT, SERVER, seg(R, PEER_ISN + 100 + i, sport=PORT, dport=80), 1.0 + i * 1e-4
        )
    acks = out(h)
    assert len(acks) == 1 and acks[0].flags == A
    assert h.counters["TCPChallengeACK"] == 1 and h.counters["TCPACKSkippedChallenge"] == 999
    h.receive_segment(CLIENT, SERVER, seg(R, PEER_ISN + 100, sport=PORT, dport=80), 1.6)
    assert one(h).flags == A and child.conn is not None and not child.conn.gone()


def test_the_host_wide_challenge_ack_limit() -> None:
    """tcp_challenge_ack_limit (off in Linux 6.x by default): per second for the whole host."""
    h, _ = server(challenge_ack_limit=2, invalid_ratelimit=0.0)
    for port in range(PORT, PORT + 4):
        syn_in(h, 0.0, CLIENT, port)
        synack = one(h)
        h.receive_segment(
            CLIENT, SERVER, seg(A, PEER_ISN + 1, synack.seq + 1, sport=port, dport=80), 0.0
        )
    for port in range(PORT, PORT + 4):
        h.receive_segment(CLIENT, SERVER, seg(R, PEER_ISN + 50, sport=port, dport=80), 5.2)
    assert len(out(h)) == 2 and h.counters["TCPChallengeACK"] == 2


# -- zero window ------------------------------------------------------------------------------


def test_zero_window_probes_back_off_and_keep_a_live_peer() -> None:
    """Linux tcp_probe_timer: probes (SND.UNA - 1, no data) double their interval; each answer
    resets the count, so an answering peer is probed for ever, a silent one is given up after
    tcp_retries2 probes."""
    h, _, child = established_server(retries2=3)
    h.receive_segment(
        CLIENT, SERVER, seg(A, PEER_ISN + 1, ISN + 1, window=0, sport=PORT, dport=80), 0.1
    )
    child.send(b"z" * 5000, 0.1)
    assert out(h) == []
    gaps = []
    last = 0.1
    for _ in range(6):  # answered: never given up
        t = h.get_timer()
        assert t is not None
        h.handle_timer(t)
        probe = one(h)
        assert probe.seq == ISN and probe.payload == b""
        gaps.append(round(t - last, 3))
        h.receive_segment(
            CLIENT, SERVER, seg(A, PEER_ISN + 1, ISN + 1, window=0, sport=PORT, dport=80), t
        )
        last = t
    r = gaps[0]  # doubling, the backoff capped at tcp_retries2 (3 here) as Linux
    assert gaps == pytest.approx([r, 2 * r, 4 * r, 8 * r, 8 * r, 8 * r])
    assert child.conn is not None and not child.conn.gone()
    while (t := h.get_timer()) is not None and child.conn is not None and not child.conn.gone():
        h.handle_timer(t)  # silent now: 3 more probes, then ETIMEDOUT
        out(h)
    assert child.conn is not None and child.conn.error == errno.ETIMEDOUT
    assert h.counters["TCPWinProbe"] == 6 + 3


def test_a_window_shrunk_to_zero_under_data_is_probed_by_the_retransmission() -> None:
    """Linux tcp_retransmit_timer: data in flight, window now zero: the head goes again (one
    segment), and the connection lives while ACKs come."""
    h, _, child = established_server(retries2=2)
    child.send(b"d" * 3000, 0.1)
    first = out(h)
    assert len(first) == 3
    h.receive_segment(
        CLIENT, SERVER, seg(A, PEER_ISN + 1, ISN + 1, window=0, sport=PORT, dport=80), 0.15
    )
    for _ in range(5):
        t = h.get_timer()
        assert t is not None
        h.handle_timer(t)
        again = out(h)  # the head again (and once a fast retransmission after three dupacks)
        assert again and {(s.seq, len(s.payload)) for s in again} == {(ISN + 1, 1460)}
        h.receive_segment(
            CLIENT, SERVER, seg(A, PEER_ISN + 1, ISN + 1, window=0, sport=PORT, dport=80), t
        )
    assert child.conn is not None and not child.conn.gone()


# -- out-of-order queue -----------------------------------------------------------------------


def test_out_of_order_one_byte_segments_are_bounded_by_the_receive_buffer() -> None:
    """32,000 one-byte segments with holes: the queue keeps what the receive buffer pays for
    (data plus Linux's per-skb overhead) and prunes the highest, never growing without bound."""
    h, _, child = established_server(rmem=131072)
    conn = child.conn
    assert conn is not None
    for i in range(32000):
        h.receive_segment(
            CLIENT, SERVER, seg(A, PEER_ISN + 2 + 2 * i, ISN + 1, b"o", sport=PORT, dport=80), 1.0
        )
        out(h)
        assert conn.ooo is None or conn.ooo.charge <= 131072
    assert conn.ooo is not None and 0 < len(conn.ooo) <= 131072 // BLOCK_OVERHEAD
    assert h.counters["TCPOFODrop"] > 0 or h.counters["OfoPruned"] > 0


def test_out_of_order_data_is_delivered_in_order_exactly_once() -> None:
    rng = random.Random(7)
    h, _, child = established_server(rmem=540000)
    data = bytes(rng.randrange(256) for _ in range(20000))
    pieces = []
    pos = 0
    while pos < len(data):
        n = rng.randrange(1, 700)
        pieces.append((pos, data[pos : pos + n]))
        pos += n
    pieces += [(p, d) for p, d in rng.sample(pieces, 40)]  # duplicates
    pieces += [(p + 3, d[3:]) for p, d in rng.sample(pieces, 40) if len(d) > 3]  # overlaps
    rng.shuffle(pieces)
    for p, d in pieces:
        h.receive_segment(
            CLIENT, SERVER, seg(A, PEER_ISN + 1 + p, ISN + 1, d, sport=PORT, dport=80), 1.0
        )
        out(h)
    got = b""
    while chunk := child.recv(100000, 1.0):
        got += chunk
        if len(got) >= len(data):
            break
    assert got == data and not child.conn.ooo  # type: ignore[union-attr]


# -- a fault is contained ---------------------------------------------------------------------


def test_a_fault_in_one_connection_is_reset_and_the_others_keep_their_timers() -> None:
    """A bug inside one connection comes out as ConnectionFault naming it; reset_faulty drops
    it (RST, ECONNRESET for the application) and every other timer still fires."""
    h, listener, child = established_server()
    syn_in(h, 0.0, CLIENT, PORT + 1)
    other_synack = one(h)
    conn = child.conn
    assert conn is not None
    child.send(b"x", 0.1)
    out(h)

    # a bug: its congestion control has none of the hooks, so its next timer fails (an object
    # the compiled engine takes too: the attribute is a protocol's)
    conn.recovery.cc = object()  # type: ignore[assignment]
    with pytest.raises(ConnectionFault) as fault:
        while (t := h.get_timer()) is not None:
            h.handle_timer(t)
    assert fault.value.owner is conn and isinstance(fault.value.__cause__, AttributeError)
    h.reset_faulty(fault.value, 1.0)
    rst = [s for s in out(h) if s.flags & R]
    assert len(rst) == 1 and rst[0].dst_port == PORT
    events = []
    while (e := h.next_event()) is not None:
        events.append(e)
    assert Closed(child, errno.ECONNRESET) in events and conn.key not in h.connections
    t = h.get_timer()  # the other handshake's SYN-ACK timer still runs
    assert t is not None
    h.handle_timer(t)
    assert one(h).seq == other_synack.seq
    assert listener.listen_queue.syn_qlen == 1
