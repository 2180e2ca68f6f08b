"""Engine tests the smoltcp way: one segment in at an injected time, the segment out checked."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fastopen.constants import MSG_FASTOPEN
from fastopen.cookies import KeyRing
from fastopen.engine import Connected, EngineError, EngineSocket, Host, Readable, Writable
from fastopen.engine.link import Link
from fastopen.engine.recovery import Recovery
from fastopen.wire import FastOpen, Flags, Mss, TcpOption, TcpSegment

CLIENT = ipaddress.IPv4Address("198.18.0.1")
SERVER = ipaddress.IPv4Address("198.18.0.2")
SERVER_ADDR = (str(SERVER), 80)
SOL_TCP = socket.IPPROTO_TCP
ISN = 1000
PEER_ISN = 5000
RING = KeyRing.from_text("a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4")
OLD_RING = KeyRing.from_text("01010101-02020202-03030303-04040404")

S, A, F, R, P = Flags.SYN, Flags.ACK, Flags.FIN, Flags.RST, Flags.PSH


def host(addr: ipaddress.IPv4Address, **kw: Any) -> Host:
    """A host with a fixed ISN, no timestamps (shorter options) unless asked, fixed keys."""
    kw.setdefault("isn", lambda *_: ISN)
    kw.setdefault("timestamps", False)
    kw.setdefault("keys", RING)
    kw.setdefault("tsoffset", lambda *_: 0)
    return Host([addr], **kw)


@contextlib.contextmanager
def fails_with(code: int) -> Iterator[None]:
    """The block raises EngineError with errno ``code``."""
    with pytest.raises(EngineError) as exc:
        yield
    assert exc.value.errno == code, errno.errorcode.get(exc.value.errno or 0)


def connecting(h: Host) -> tuple[EngineSocket, TcpSegment]:
    """A new socket of ``h`` connecting to the server (EINPROGRESS), and its SYN."""
    sock = h.socket()
    with fails_with(errno.EINPROGRESS):
        sock.connect(SERVER_ADDR, 0.0)
    return sock, one(h)


def out(h: Host) -> list[TcpSegment]:
    """Every segment the host has to send (and forget them)."""
    return [seg for _, _, seg in h.segments_to_send()]


def one(h: Host) -> TcpSegment:
    """The one segment the host has to send."""
    segs = out(h)
    assert len(segs) == 1, f"expected one segment, got {segs}"
    return segs[0]


def seg(
    flags: Flags,
    seq: int,
    ack: int = 0,
    payload: bytes = b"",
    options: tuple[TcpOption, ...] = (),
    window: int = 65535,
    sport: int = 80,
    dport: int = 32768,
) -> TcpSegment:
    return TcpSegment(sport, dport, seq, ack, flags, window, options, payload)


def cookie_for(client: ipaddress.IPv4Address = CLIENT, ring: KeyRing = RING) -> bytes:
    return ring.mint(client, SERVER)


def synack(
    syn: TcpSegment, ack: int, *, cookie: FastOpen | None = None, mss: int = 1460
) -> TcpSegment:
    """The server's SYN-ACK to ``syn`` of the client host under test, acknowledging ``ack``."""
    opts: tuple[TcpOption, ...] = (Mss(mss),) if mss else ()
    if cookie is not None:
        opts += (cookie,)
    return seg(S | A, PEER_ISN, ack, options=opts, dport=syn.src_port)


# -- the TFO client side ---------------------------------------------------------------------------

COOKIE = bytes(range(1, 9))
NEW_COOKIE = bytes(range(11, 19))
DATA = bytes(range(256)) * 8  # 2048 bytes


def client(**kw: object) -> Host:
    kw.setdefault("negative_cache_time", 0)
    return host(CLIENT, **kw)


def sendto(h: Host, data: bytes = DATA, now: float = 0.0) -> tuple[EngineSocket, int | str]:
    sock = h.socket()
    try:
        return sock, sock.sendto(data, MSG_FASTOPEN, SERVER_ADDR, now)
    except EngineError as exc:
        return sock, errno.errorcode[exc.errno or 0]


def with_cookie(h: Host, cookie: bytes = COOKIE, mss: int = 1460, exp: bool = False) -> None:
    """Learn a cookie the way Linux does: a cookie request answered (then the server resets)."""
    sock, res = sendto(h)
    assert res == "EINPROGRESS"
    syn = one(h)
    fo = FastOpen(cookie, exp)
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1, cookie=fo, mss=mss), 0.0)
    out(h)
    h.receive_segment(SERVER, CLIENT, seg(R, PEER_ISN + 1, dport=syn.src_port), 0.0)
    assert h.connections == {} and h.get_timer() is None
    sock.close(0.0)


def syn_data_answered(
    h: Host, data: bytes, acked: int, now: float = 0.0, rtt: float = 0.01
) -> tuple[EngineSocket, TcpSegment]:
    """SYN data (a cookie cached), then a SYN-ACK acknowledging ``acked`` bytes of it."""
    sock, _ = sendto(h, data, now)
    syn = one(h)
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1 + acked), now + rtt)
    return sock, syn


class BulkTransfer:
    """A client sending over ``link`` as fast as its windows let it (or ``write`` bytes a
    round trip) to a server on port 80 reading all it gets (``received`` counts it)."""

    def __init__(
        self, client_host: Host, server_host: Host, link: Link, write: int | None = None
    ) -> None:
        self.client_host, self.server_host, self.link, self.write = (
            client_host,
            server_host,
            link,
            write,
        )
        address = (str(server_host.addresses[0]), 80)
        listener = server_host.socket()
        listener.bind(address)
        listener.listen(1)
        self.sock = client_host.socket()
        with fails_with(errno.EINPROGRESS):
            self.sock.connect(address, 0.0)
        while not listener.accept_queue:
            assert self.link.step()
        self.server, _ = listener.accept(self.link.now)
        self.received = 0
        self.pump()

    @property
    def recovery(self) -> Recovery:
        conn = self.sock.conn
        assert conn is not None
        return conn.recovery

    def pump(self) -> None:
        if self.write is not None:
            self.sock.send(b"w" * self.write, self.link.now)
            return
        while True:
            try:
                self.sock.send(b"x" * 65536, self.link.now)
            except EngineError as exc:
                assert exc.errno == errno.EAGAIN
                return

    def step(self, until: float | None = None) -> bool:
        """One step of the link (False: nothing happens before ``until``)."""
        if not self.link.step(until):
            return False
        for h in (self.client_host, self.server_host):
            while (ev := h.next_event()) is not None:
                if isinstance(ev, Readable) and ev.sock is self.server:
                    self._drain()
                elif (
                    isinstance(ev, Writable | Connected)
                    and ev.sock is self.sock
                    and self.write is None
                ):
                    self.pump()
        return True

    def _drain(self) -> None:
        try:
            while data := self.server.recv(1 << 20, self.link.now):
                self.received += len(data)
        except EngineError as exc:
            assert exc.errno == errno.EAGAIN

    def run(self, until: float, check: Callable[[], None] = lambda: None) -> None:
        while self.step(until):
            check()
