"""Urgent data between two engines as Linux has it: MSG_OOB marks the last byte sent
(tcp_mark_urg, URG and the pointer until it is acknowledged); the receiver's reads stop at the
mark and leave the byte out, recv(MSG_OOB) gives it once (tcp_recv_urg); a splice stops at the
mark (tcp_read_sock) instead of looping; a pointer past the data waits for its byte."""

from __future__ import annotations

import errno
import ipaddress
import socket

import pytest

from fastopen.engine import EngineError, EngineSocket, Host
from fastopen.engine.link import Link
from fastopen.engine.socket import MSG_OOB, SIOCATMARK, SO_OOBINLINE
from fastopen.wire import Flags, TcpSegment

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"
SERVER_ADDR = (SERVER, 80)


def pair() -> tuple[Link, EngineSocket, EngineSocket, list[TcpSegment]]:
    """A connection from a client to a server engine: the link, the client's socket, the
    server's child and what the client sent."""
    client, server = Host([CLIENT]), Host([SERVER])
    sent: list[TcpSegment] = []

    def tap(host: Host, src: object, dst: object, seg: TcpSegment) -> TcpSegment:
        if host is client:
            sent.append(seg)
        return seg

    link = Link(client, server, delay=0.005, tap=tap)
    listener = server.socket()
    listener.bind(SERVER_ADDR)
    listener.listen(1)
    sock = client.socket()
    with pytest.raises(EngineError):
        sock.connect(SERVER_ADDR, 0.0)
    link.advance(0.1)
    child, _ = listener.accept(link.now)
    return link, sock, child, sent


def test_msg_oob_goes_out_of_band() -> None:
    link, sock, child, sent = pair()
    assert sock.send(b"abcdefghi!", link.now, MSG_OOB) == 10
    link.flush()
    seg = sent[-1]
    assert seg.flags & Flags.URG and seg.urgent == 10  # the byte before seq + 10: "!"
    link.advance(0.1)
    assert child.ioctl(SIOCATMARK) == 0
    assert child.recv(100, link.now) == b"abcdefghi"  # the read stops at the mark
    assert child.ioctl(SIOCATMARK) == 1
    assert child.recv_oob() == b"!"
    with pytest.raises(EngineError) as exc:
        child.recv_oob()  # read once (TCP_URG_READ)
    assert exc.value.errno == errno.EINVAL
    assert sock.send(b"more", link.now) == 4
    link.flush()
    assert sent[-1].payload == b"more"
    assert not sent[-1].flags & Flags.URG  # acknowledged: out of urgent mode
    link.advance(0.1)
    assert child.recv(100, link.now) == b"more"  # the urgent byte is not in the stream


def test_oobinline_keeps_the_byte_in_the_stream() -> None:
    link, sock, child, _ = pair()
    child.setsockopt(socket.SOL_SOCKET, SO_OOBINLINE, 1)
    sock.send(b"xyz", link.now, MSG_OOB)
    sock.send(b"123", link.now)
    link.advance(0.1)
    assert child.recv(100, link.now) == b"xy"
    with pytest.raises(EngineError) as exc:
        child.recv_oob()
    assert exc.value.errno == errno.EINVAL
    assert child.recv(100, link.now) == b"z123"


def test_splice_stops_at_the_mark_and_the_byte_may_come_later() -> None:
    """tcp_splice_loop_test.pkt's case, and a pointer beyond the segment (TCP_URG_NOTYET)."""
    link, sock, child, _ = pair()
    server = link.hosts[1]
    conn = child.conn
    assert conn is not None and sock.conn is not None
    c, s = ipaddress.ip_address(CLIENT), ipaddress.ip_address(SERVER)
    seq, ack = conn.rcv_nxt, conn.snd_nxt
    port = sock.conn.lport
    urg = Flags.URG | Flags.ACK
    # the pointer names the 8th byte; only 5 come with it
    first = TcpSegment(port, 80, seq, ack, urg, 500, (), b"01234", 8)
    server.receive_segment(c, s, first, 1.0)
    assert child.recv(100, 1.0) == b"01234"
    with pytest.raises(EngineError) as exc:
        child.recv_oob()  # on its way: never blocks
    assert exc.value.errno == errno.EAGAIN
    server.receive_segment(
        c, s, TcpSegment(port, 80, seq + 5, ack, Flags.ACK, 500, (), b"56789"), 1.01
    )
    assert child.recv(100, 1.01, splice=True) == b"56"
    assert child.recv(100, 1.01, splice=True) == b""  # at the mark: nothing, no loop
    assert child.recv_oob() == b"7"
    assert child.recv(100, 1.01) == b"89"
