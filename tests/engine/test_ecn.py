"""ECN (RFC 3168) as Linux has it once negotiated: new data leaves ECT(0), ACKs and
retransmissions Not-ECT (tcp_ecn_send); a CE mark makes the receiver echo ECE until the sender's
CWR (tcp_ecn_check_ce, tcp_ecn_accept_cwr); the echo brings the sender's window down once per
window (tcp_enter_cwr, PRR in CWR) and its next new data carries CWR."""

from __future__ import annotations

import dataclasses
import errno

import pytest

from fastopen.engine import EngineError, Host
from fastopen.engine.cc import CaState
from fastopen.engine.link import Link
from fastopen.wire import ECN_CE, ECN_ECT_0, ECN_NOT_ECT, Flags, TcpSegment

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"
SERVER_ADDR = (SERVER, 80)


class Pair:
    """A client (tcp_ecn=1) and a server (the default, 2) on a link; ``mark`` turns the
    client's n-th data segment CE (a router's doing), ``drop`` loses it."""

    def __init__(self, *, mark: int | None = None, drop: int | None = None) -> None:
        self.client, self.server = Host([CLIENT], ecn=1), Host([SERVER])
        self.sent: list[tuple[str, TcpSegment]] = []
        data_segments = 0

        def tap(host: Host, src: object, dst: object, seg: TcpSegment) -> TcpSegment | None:
            nonlocal data_segments
            name = "client" if host is self.client else "server"
            if name == "client" and seg.payload:
                data_segments += 1
                if data_segments == drop:
                    self.sent.append((name, seg))
                    return None
                if data_segments == mark:
                    seg = dataclasses.replace(seg, ecn=ECN_CE)
            self.sent.append((name, seg))
            return seg

        self.link = Link(self.client, self.server, delay=0.005, tap=tap)
        listener = self.server.socket()
        listener.bind(SERVER_ADDR)
        listener.listen(4)
        self.sock = self.client.socket()
        with pytest.raises(EngineError) as exc:
            self.sock.connect(SERVER_ADDR, 0.0)
        assert exc.value.errno == errno.EINPROGRESS
        self.link.advance(0.1)
        self.child, _ = listener.accept(self.link.now)

    def segments(self, name: str) -> list[TcpSegment]:
        self.link.flush()  # what the hosts sent since the last step, too
        return [seg for who, seg in self.sent if who == name]


def test_negotiated_ecn_marks_new_data_only() -> None:
    pair = Pair(drop=2)
    assert pair.sock.conn is not None and pair.sock.conn.ecn_ok
    syn, synack = pair.segments("client")[0], pair.segments("server")[0]
    assert syn.flags & (Flags.ECE | Flags.CWR) == Flags.ECE | Flags.CWR
    assert synack.flags & (Flags.ECE | Flags.CWR) == Flags.ECE
    assert syn.ecn == synack.ecn == ECN_NOT_ECT  # RFC 3168: never on a SYN or SYN-ACK
    pair.sock.send(b"d" * 5000, pair.link.now)
    pair.link.advance(5.0)
    assert pair.child.recv(10_000, pair.link.now) == b"d" * 5000
    data = [seg for seg in pair.segments("client") if seg.payload]
    first_seen: set[int] = set()
    for seg in data:
        retransmission = seg.seq in first_seen
        first_seen.add(seg.seq)
        assert seg.ecn == (ECN_NOT_ECT if retransmission else ECN_ECT_0), seg
    assert len(first_seen) < len(data)  # the dropped one went again, Not-ECT
    acks = [seg for seg in pair.segments("server") if not seg.payload][1:]
    assert acks and all(seg.ecn == ECN_NOT_ECT for seg in acks)


def test_ce_is_echoed_until_cwr_and_the_sender_reduces_once() -> None:
    pair = Pair(mark=1)
    conn = pair.sock.conn
    assert conn is not None
    cwnd = conn.recovery.cwnd
    pair.sock.send(b"c" * 1000, pair.link.now)
    pair.link.advance(0.006)  # the CE-marked segment arrived, its ACK is on the way
    echo = pair.segments("server")[-1]
    assert echo.flags & Flags.ECE and not echo.payload
    pair.link.advance(0.006)
    assert conn.recovery.ca_state is CaState.CWR
    assert conn.recovery.ssthresh < cwnd  # CUBIC's ssthresh from tcp_init_cwnd_reduction
    pair.sock.send(b"n" * 1000, pair.link.now)
    pair.sock.send(b"m" * 1000, pair.link.now)
    pair.link.advance(1.0)
    new_data = [seg for seg in pair.segments("client") if seg.payload][1:]
    assert [bool(seg.flags & Flags.CWR) for seg in new_data] == [True, False]
    server_after = pair.segments("server")
    last = server_after[-1]
    assert not last.flags & Flags.ECE  # the CWR stopped the echo
    assert conn.recovery.ca_state is CaState.OPEN  # SND.NXT at the echo is acknowledged
    assert pair.child.recv(10_000, pair.link.now) == b"c" * 1000 + b"n" * 1000 + b"m" * 1000
    # the one segment the echo acknowledged was delivered with ECE (tcp_count_delivered)
    assert pair.sock.tcp_info(pair.link.now).tcpi_delivered_ce == 1
    assert pair.client.counters["TCPDeliveredCE"] == 1


def test_data_with_cwr_is_acked_at_once() -> None:
    """tcp_ecn_accept_cwr: ICSK_ACK_NOW, even in ping-pong mode, where plain data waits for the
    delayed ACK (or the reply)."""

    def acks_after(flags: Flags) -> int:
        pair = Pair()
        conn, sock = pair.child.conn, pair.sock.conn
        assert conn is not None and sock is not None and conn.ecn_ok
        pair.child.setsockopt(6, 12, 0, pair.link.now)  # TCP_QUICKACK 0: ping-pong mode
        before = len(pair.segments("server"))
        seg = TcpSegment(sock.lport, 80, conn.rcv_nxt, conn.snd_nxt, flags, 500, (), b"w" * 10)
        pair.server.receive_segment(sock.local, sock.remote, seg, pair.link.now)
        return len(pair.segments("server")) - before

    assert acks_after(Flags.ACK | Flags.PSH) == 0  # delayed
    assert acks_after(Flags.ACK | Flags.PSH | Flags.CWR) == 1
