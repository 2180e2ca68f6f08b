"""SO_TIMESTAMPING's transmit timestamps as Linux gives them on the error queue: the last byte
of each send is marked (tcp_tx_timestamp); SCHED and SND when the segment carrying it leaves,
ACK when an ACK first covers it (tcp_ack_tstamp); OPT_ID keys count from SND.UNA at setsockopt."""

from __future__ import annotations

import errno
import socket

import pytest

from fastopen.engine import EngineError, EngineSocket, Host
from fastopen.engine.errqueue import (
    SCM_TSTAMP_ACK,
    SCM_TSTAMP_SCHED,
    SCM_TSTAMP_SND,
    SO_EE_ORIGIN_TIMESTAMPING,
    SOF_TIMESTAMPING_OPT_ID,
    SOF_TIMESTAMPING_SOFTWARE,
    SOF_TIMESTAMPING_TX_ACK,
    SOF_TIMESTAMPING_TX_SCHED,
    SOF_TIMESTAMPING_TX_SOFTWARE,
    Notice,
)
from fastopen.engine.link import Link
from fastopen.engine.socket import SO_TIMESTAMPING

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"
SERVER_ADDR = (SERVER, 80)
ALL = (
    SOF_TIMESTAMPING_TX_SCHED
    | SOF_TIMESTAMPING_TX_SOFTWARE
    | SOF_TIMESTAMPING_TX_ACK
    | SOF_TIMESTAMPING_SOFTWARE
    | SOF_TIMESTAMPING_OPT_ID
)


def connected() -> tuple[Link, EngineSocket, EngineSocket]:
    client, server = Host([CLIENT]), Host([SERVER])
    link = Link(client, server, delay=0.005)  # 10 ms RTT
    listener = server.socket()
    listener.bind(SERVER_ADDR)
    listener.listen(1)
    with pytest.raises(EngineError) as exc:
        listener.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, ALL)  # OPT_ID: not listening
    assert exc.value.errno == errno.EINVAL
    sock = client.socket()
    with pytest.raises(EngineError):
        sock.connect(SERVER_ADDR, 0.0)
    link.advance(0.1)
    child, _ = listener.accept(link.now)
    return link, sock, child


def drain(sock: EngineSocket) -> list[Notice]:
    notices = []
    while True:
        try:
            notices.append(sock.recv_error())
        except EngineError as exc:
            assert exc.errno == errno.EAGAIN
            return notices


def test_last_byte_of_each_send_is_stamped_sent_and_acked() -> None:
    link, sock, _ = connected()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # both sends go at once
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, ALL)
    sent_at = link.now
    assert sock.send(b"a" * 2000, sent_at) == 2000
    assert sock.send(b"b" * 2000, sent_at) == 2000
    link.advance(0.1)
    notices = drain(sock)
    assert all(n.origin == SO_EE_ORIGIN_TIMESTAMPING for n in notices)
    assert [(n.info, n.data) for n in notices] == [
        (SCM_TSTAMP_SCHED, 1999),
        (SCM_TSTAMP_SND, 1999),
        (SCM_TSTAMP_SCHED, 3999),
        (SCM_TSTAMP_SND, 3999),
        (SCM_TSTAMP_ACK, 1999),
        (SCM_TSTAMP_ACK, 3999),
    ]
    assert [n.when for n in notices[:4]] == [sent_at] * 4
    assert all(abs(n.when - sent_at - 0.010) < 1e-9 for n in notices[4:])  # one RTT later


def test_only_what_the_flags_ask_for() -> None:
    link, sock, _ = connected()
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, SOF_TIMESTAMPING_TX_ACK)
    sock.send(b"x" * 100, link.now)
    link.advance(0.1)
    assert [(n.info, n.data) for n in drain(sock)] == [(SCM_TSTAMP_ACK, 0)]  # no OPT_ID: 0
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, 0)
    sock.send(b"y" * 100, link.now)
    link.advance(0.1)
    assert drain(sock) == []
