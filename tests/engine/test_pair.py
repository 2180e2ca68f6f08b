"""Two engines over an in-memory link with seeded loss, duplication and reordering (up to 20%).

10,000 transactions in all, TFO and plain alternating: a 100-byte request (in the SYN for TFO),
a 1,000-byte answer, close both ways. Every byte must arrive once and in order, and when virtual
time has run past TIME-WAIT no connection, timer or queued segment is left on either host.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass, field

import pytest

from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN
from fastopen.engine import (
    Accepted,
    Closed,
    Connected,
    EngineError,
    EngineSocket,
    Host,
    Readable,
    Writable,
)
from fastopen.engine.link import Link
from fastopen.wire import Flags, TcpSegment, parse_ip

SERVER = ("198.18.0.2", 80)
REQUEST, ANSWER = 100, 1000


def request(i: int) -> bytes:
    return (f"GET {i:08d} " * 10).encode()[:REQUEST]


def answer(req: bytes) -> bytes:
    return (req[::-1] * 11)[:ANSWER]


@dataclass
class Client:
    index: int
    sock: EngineSocket
    req: bytes
    sent: int = 0
    got: bytearray = field(default_factory=bytearray)


@dataclass
class Child:
    sock: EngineSocket
    got: bytearray = field(default_factory=bytearray)
    answered: bool = False


def run_pair(
    n: int, *, loss: float, dup: float, reorder: float, seed: int, encode: bool = False
) -> tuple[Host, Host, Link]:
    # At 20% loss each way a handshake exchange fails 36% of the time: Linux's 6 SYN and 5 SYN-ACK
    # retries would give up on about one connection in a thousand, so the lossy link gets 12.
    # The negative cache is off so that TFO keeps being tried on this lossy path.
    client_host = Host(
        ["198.18.0.1"], tcp_fastopen=0x1, negative_cache_time=0, syn_retries=12, synack_retries=12
    )
    server_host = Host(["198.18.0.2"], tcp_fastopen=0x2, syn_retries=12, synack_retries=12)
    link = Link(
        client_host,
        server_host,
        loss=loss,
        duplicate=dup,
        reorder=reorder,
        seed=seed,
        encode=encode,
    )
    listener = server_host.socket()
    listener.bind(SERVER)
    listener.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 1024)
    listener.listen(1024)
    clients: dict[EngineSocket, Client] = {}
    children: dict[EngineSocket, Child] = {}
    started = finished = 0
    concurrency = 64

    def push(c: Client) -> None:
        while c.sent < REQUEST:
            try:
                c.sent += c.sock.send(c.req[c.sent :], link.now)
            except EngineError as exc:
                assert exc.errno == errno.EAGAIN, exc
                return

    def start(i: int) -> None:
        sock = client_host.socket()
        c = Client(i, sock, request(i))
        clients[sock] = c
        try:
            if i % 2:
                c.sent = sock.sendto(c.req, MSG_FASTOPEN, SERVER, link.now)
            else:
                sock.connect(SERVER, link.now)
        except EngineError as exc:
            assert exc.errno == errno.EINPROGRESS, exc

    def client_read(c: Client) -> None:
        nonlocal finished
        while True:
            try:
                data = c.sock.recv(65536, link.now)
            except EngineError as exc:
                assert exc.errno == errno.EAGAIN, f"transaction {c.index}: {exc}"
                return
            if not data:
                assert bytes(c.got) == answer(c.req), f"transaction {c.index}: bad answer"
                c.sock.close(link.now)
                del clients[c.sock]
                finished += 1
                return
            c.got += data

    def server_read(ch: Child) -> None:
        while not ch.answered:
            try:
                data = ch.sock.recv(65536, link.now)
            except EngineError as exc:
                assert exc.errno == errno.EAGAIN, exc
                return
            assert data, "end of stream before the whole request"
            ch.got += data
            if len(ch.got) >= REQUEST:
                assert len(ch.got) == REQUEST
                assert ch.got.startswith(b"GET ") and bytes(ch.got) == request(int(ch.got[4:12]))
                assert ch.sock.send(answer(bytes(ch.got)), link.now) == ANSWER
                ch.sock.close(link.now)
                ch.answered = True
                del children[ch.sock]

    while finished < n:
        while started < n and len(clients) < concurrency:
            start(started)
            started += 1
        assert link.step(), f"stalled with {finished}/{n} done"
        while (ev := client_host.next_event()) is not None:
            if isinstance(ev, Connected | Writable) and ev.sock in clients:
                push(clients[ev.sock])
            elif isinstance(ev, Readable) and ev.sock in clients:
                client_read(clients[ev.sock])
            elif isinstance(ev, Closed) and ev.sock in clients:
                raise AssertionError(f"client connection closed: {ev.error}")
        while (ev := server_host.next_event()) is not None:
            if isinstance(ev, Accepted):
                while listener.accept_queue:
                    sock, _ = listener.accept(link.now)
                    children[sock] = Child(sock)
                    server_read(children[sock])
            elif isinstance(ev, Readable) and ev.sock in children:
                server_read(children[ev.sock])
    listener.close(link.now)
    # past TIME-WAIT and the last retransmissions of a FIN (backed off up to 120 s each)
    deadline = link.now + 3600.0
    while link.step(deadline):
        pass
    return client_host, server_host, link


def assert_nothing_left(*hosts: Host) -> None:
    for host in hosts:
        assert host.connections == {}
        assert host.get_timer() is None
        assert host.packets_to_send() == []


@pytest.mark.parametrize(
    ("loss", "dup", "reorder", "seed", "n"),
    [
        (0.0, 0.0, 0.0, 1, 600),
        (0.05, 0.05, 0.05, 2, 600),
        (0.1, 0.1, 0.2, 3, 600),
        (0.2, 0.2, 0.2, 4, 600),
        (0.2, 0.0, 0.1, 5, 600),
    ],
)
def test_transactions_every_byte_once_in_order(
    loss: float, dup: float, reorder: float, seed: int, n: int
) -> None:
    client, server, link = run_pair(n, loss=loss, dup=dup, reorder=reorder, seed=seed)
    assert_nothing_left(client, server)
    if loss:
        assert link.stats.dropped > 0
        assert client.counters["TcpRetransSegs"] + server.counters["TcpRetransSegs"] > 0
    # half of the transactions are TFO: the server took SYN data for many of them
    assert server.counters["TCPFastOpenPassive"] > n // 4
    assert client.counters["TCPFastOpenActive"] > n // 4


def test_transactions_as_ip_packets() -> None:
    """The same over whole IP packets (encode, checksum, parse) with loss and reordering."""
    client, server, _link = run_pair(200, loss=0.1, dup=0.1, reorder=0.1, seed=7, encode=True)
    assert_nothing_left(client, server)
    assert server.counters["TCPFastOpenPassive"] > 50


@pytest.mark.parametrize(("loss", "reorder", "seed"), [(0.0, 0.0, 11), (0.1, 0.2, 12)])
def test_bulk_transfer_both_ways_segmented_in_order(loss: float, reorder: float, seed: int) -> None:
    """200 kB each way through windows, segmentation, loss, SACKed holes and retransmissions."""
    size = 200_000
    a = Host(["198.18.0.1"], syn_retries=12)
    b = Host(["198.18.0.2"], synack_retries=12)
    link = Link(a, b, loss=loss, duplicate=loss, reorder=reorder, seed=seed)
    listener = b.socket()
    listener.bind(SERVER)
    listener.listen(8)
    up = bytes(i * 7 % 251 for i in range(size))
    down = bytes(i * 13 % 241 for i in range(size))
    client = a.socket()
    with pytest.raises(EngineError):
        client.connect(SERVER, 0.0)
    while not listener.accept_queue:
        assert link.step()
    server, _ = listener.accept(link.now)
    sent = {client: 0, server: 0}
    got: dict[EngineSocket, bytearray] = {client: bytearray(), server: bytearray()}
    source = {client: up, server: down}
    done = {client: False, server: False}

    def pump(sock: EngineSocket) -> None:
        data = source[sock]
        while sent[sock] < size:
            try:
                sent[sock] += sock.send(data[sent[sock] : sent[sock] + 50_000], link.now)
            except EngineError:
                return
        if not done[sock]:
            sock.shutdown(1, link.now)  # SHUT_WR: a FIN after the data
            done[sock] = True

    def drain(sock: EngineSocket) -> None:
        while True:
            try:
                chunk = sock.recv(4096, link.now)
            except EngineError:
                return
            if not chunk:
                return
            got[sock] += chunk

    pump(client)
    pump(server)
    while not (len(got[client]) == size == len(got[server])):
        assert link.step(), "stalled"
        for host in (a, b):
            while (ev := host.next_event()) is not None:
                if isinstance(ev, Readable):
                    drain(ev.sock)
                elif isinstance(ev, Writable | Connected):
                    pump(ev.sock)
    assert bytes(got[server]) == up and bytes(got[client]) == down
    assert client.recv(10, link.now) == b"" and server.recv(10, link.now) == b""
    client.close(link.now)
    server.close(link.now)
    listener.close(link.now)
    while link.step(link.now + 3600.0):
        pass
    assert_nothing_left(a, b)
    if loss:
        assert a.counters["TcpRetransSegs"] and b.counters["TcpRetransSegs"]


def test_recv_ready_is_recv_with_none_for_eagain() -> None:
    """EngineSocket.recv_ready: None where recv raises EAGAIN, the bytes, b"" at the end of the
    stream, and recv's other errors (ENOTCONN before a connection)."""
    a, b = Host(["198.18.0.1"]), Host(["198.18.0.2"])
    link = Link(a, b)
    listener = b.socket()
    listener.bind(SERVER)
    listener.listen(8)
    client = a.socket()
    with pytest.raises(EngineError) as unconnected:
        client.recv_ready(100, 0.0)
    assert unconnected.value.errno == errno.ENOTCONN
    with pytest.raises(EngineError):
        client.connect(SERVER, 0.0)
    while not listener.accept_queue:
        assert link.step()
    server, _ = listener.accept(link.now)
    link.advance(0.01)
    assert server.recv_ready(100, link.now) is None
    with pytest.raises(EngineError) as eagain:
        server.recv(100, link.now)
    assert eagain.value.errno == errno.EAGAIN
    client.send(b"x" * 10, link.now)
    client.shutdown(socket.SHUT_WR, link.now)
    link.advance(0.01)
    assert server.recv_ready(100, link.now) == b"x" * 10
    assert server.recv_ready(100, link.now) == b""


def _listen_and_connect(client: Host, server: Host, link: Link) -> EngineSocket:
    """A listener on ``server`` port 80 and a connect from ``client`` begun (its SYN queued);
    the listener."""
    listener = server.socket()
    listener.bind(("198.18.0.2", 80))
    listener.listen(1)
    with pytest.raises(EngineError):
        client.socket().connect(("198.18.0.2", 80), link.now)
    return listener


def test_a_link_tap_sees_changes_or_drops_what_crosses() -> None:
    """Link's tap: every segment a host puts on the wire, before the impairments; what it
    returns is carried, None loses it (counted as dropped); not with encoded packets."""
    client, server = Host(["198.18.0.1"]), Host(["198.18.0.2"])
    seen: list[tuple[Host, TcpSegment]] = []

    def tap(host: Host, src: object, dst: object, seg: TcpSegment) -> TcpSegment | None:
        seen.append((host, seg))
        return None if seg.flags & Flags.SYN and not seg.flags & Flags.ACK else seg

    link = Link(client, server, tap=tap)
    listener = _listen_and_connect(client, server, link)
    link.advance(0.5)
    assert [h for h, _ in seen] == [client] and link.stats.dropped == 1
    assert server.counters["TcpPassiveOpens"] == 0 and not listener.accept_queue  # no SYN came
    with pytest.raises(ValueError, match="parsed segments"):
        Link(client, server, encode=True, tap=tap)


def test_a_link_capture_sees_each_encoded_packet_as_it_leaves() -> None:
    """Link's capture (``encode=True``): each IP packet a host puts on the wire, with the time
    it left: the SYN at 0, the SYN-ACK one delay later; not with parsed segments."""
    client, server = Host(["198.18.0.1"]), Host(["198.18.0.2"])
    captured: list[tuple[float, bytes]] = []
    link = Link(
        client, server, delay=0.01, encode=True, capture=lambda at, p: captured.append((at, p))
    )
    _listen_and_connect(client, server, link)
    link.advance(0.1)
    flags = [TcpSegment.parse(parse_ip(p).payload).flags for _, p in captured]
    assert flags[:3] == [Flags.SYN, Flags.SYN | Flags.ACK, Flags.ACK]
    assert [round(at, 6) for at, _ in captured[:3]] == [0.0, 0.01, 0.02]
    with pytest.raises(ValueError, match="encoded packets"):
        Link(client, server, capture=lambda at, p: None)
