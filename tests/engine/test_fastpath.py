"""The receive fast path (Linux tcp_rcv_established's header prediction) is taken, and it is
the slow path's behaviour: the same transfers run with it and without it put the same segments
on the wire, give the applications the same events and bytes and leave the same counters."""

from __future__ import annotations

import errno
import socket
from collections import Counter
from dataclasses import dataclass, field

import pytest
from engine_support import CLIENT, SERVER, SERVER_ADDR, host

from fastopen.engine import COMPILED, EngineError, EngineSocket, Host
from fastopen.engine.cache import IPAddress
from fastopen.engine.link import Link
from fastopen.engine.tcb import Connection
from fastopen.wire import TcpSegment

#: The counters only the fast path moves, and TCPPureAcks, which the slow path counts for the
#: pure ACKs the fast path counts in TCPHPAcks (tcp_ack: one or the other).
FAST_COUNTERS = ("TCPHPHits", "TCPHPAcks", "TCPPureAcks")


def _less_fast(counters: Counter[str]) -> dict[str, int]:
    return {k: v for k, v in counters.items() if k not in FAST_COUNTERS}


@dataclass
class Run:
    """What a transfer showed: every segment each host sent, the applications' events and
    bytes, the hosts' counters, and how many segments reached the slow path."""

    wire: list[tuple[float, str, TcpSegment]] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)
    got: dict[str, bytes] = field(default_factory=dict)
    counters: list[dict[str, int]] = field(default_factory=list)
    slow: int = 0


def transfer(
    *,
    fast: bool,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    read: int,
    rcvbuf: int | None = None,
    loss: float = 0.0,
    seed: int = 0,
    **settings: bool,
) -> Run:
    """``size`` bytes each way between two hosts (``settings`` for both), each application
    reading ``read`` bytes per event, then both close."""
    run = Run()
    with monkeypatch.context() as patch:
        slow_path = Connection._rcv_synchronized

        def counted(conn: Connection, seg: TcpSegment, now: float) -> None:
            run.slow += 1
            slow_path(conn, seg, now)

        patch.setattr(Connection, "_rcv_synchronized", counted)
        if not fast:
            patch.setattr(Connection, "_rcv_established", lambda conn, seg, now: False)
        a, b = host(CLIENT, **settings), host(SERVER, **settings)
        who = {a: "client", b: "server"}

        def tap(h: Host, src: IPAddress, dst: IPAddress, seg: TcpSegment) -> TcpSegment:
            run.wire.append((link.now, who[h], seg))
            return seg

        link = Link(a, b, loss=loss, duplicate=loss, reorder=loss, seed=seed, tap=tap)
        listener = b.socket()
        listener.bind(SERVER_ADDR)
        listener.listen(8)
        client = a.socket()
        if rcvbuf is not None:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # a small window
        with pytest.raises(EngineError):
            client.connect(SERVER_ADDR, 0.0)
        while not listener.accept_queue:
            assert link.step()
        server, _ = listener.accept(link.now)
        names: dict[object, str] = {client: "client", server: "server"}
        data = {client: bytes(i * 7 % 251 for i in range(size)), server: b"d" * size}
        sent_n = {client: 0, server: 0}
        got = {client: bytearray(), server: bytearray()}

        def pump(sock: EngineSocket) -> None:
            while sent_n[sock] < size:
                try:
                    sent_n[sock] += sock.send(data[sock][sent_n[sock] :], link.now)
                except EngineError as exc:
                    assert exc.errno == errno.EAGAIN
                    return

        def drain(sock: EngineSocket) -> None:
            try:
                got[sock] += sock.recv(read, link.now)
            except EngineError as exc:
                assert exc.errno == errno.EAGAIN

        pump(client)
        pump(server)
        while len(got[client]) < size or len(got[server]) < size:
            assert link.step(), "stalled"
            for h in (a, b):
                while (ev := h.next_event()) is not None:
                    sock = getattr(ev, "sock", None)
                    run.events.append((link.now, names.get(sock, "-"), type(ev).__name__))
                    if sock in got:
                        drain(sock)
                        pump(sock)
            for sock in got:  # a slow reader: what is left is read at the next step
                drain(sock)
        client.close(link.now)
        server.close(link.now)
        link.advance(120.0)
        assert a.connections == {} and b.connections == {}
        run.got = {names[s]: bytes(g) for s, g in got.items()}
        assert run.got == {"client": data[server], "server": data[client]}
        run.counters = [dict(a.counters), dict(b.counters)]
    return run


@pytest.mark.skipif(
    COMPILED,
    reason="turns the fast path off by replacing Connection's methods, which a class of the "
    "engine compiled by mypyc does not take (the same source is tested where it is not)",
)
@pytest.mark.parametrize(
    ("settings", "read", "rcvbuf", "loss", "seed"),
    [
        ({}, 1 << 20, None, 0.0, 0),
        ({"timestamps": True}, 1 << 20, None, 0.0, 0),
        ({"timestamps": True}, 3000, 8192, 0.0, 0),  # a slow reader: zero windows, probes
        ({"timestamps": True}, 1 << 20, None, 0.05, 1),  # holes, SACK, retransmissions
        ({"sack": False}, 20000, None, 0.05, 2),
        ({"timestamps": True, "tso": True}, 1 << 20, None, 0.02, 3),
    ],
)
def test_fast_path_is_the_slow_path(
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, bool],
    read: int,
    rcvbuf: int | None,
    loss: float,
    seed: int,
) -> None:
    kw = {"size": 150_000, "read": read, "rcvbuf": rcvbuf, "loss": loss, "seed": seed}
    fast = transfer(fast=True, monkeypatch=monkeypatch, **kw, **settings)  # type: ignore[arg-type]
    slow = transfer(fast=False, monkeypatch=monkeypatch, **kw, **settings)  # type: ignore[arg-type]
    assert fast.wire == slow.wire
    assert fast.events == slow.events
    for with_fast, without in zip(fast.counters, slow.counters, strict=True):
        assert _less_fast(with_fast) == _less_fast(without)
        assert with_fast["TCPPureAcks"] <= without["TCPPureAcks"]
    # the fast path took in-order data (counted when Linux predicts it too) and ACKs
    assert fast.slow < slow.slow
    assert sum(c.get("TCPHPHits", 0) for c in fast.counters) > 0
