"""A stateful fuzz of the engine: two hosts on an in-memory link, a hostile third party.

A seeded run mixes application calls (connects with and without TFO, sends, reads, shutdowns,
closes, accepts), the link's deliveries (with loss, duplication and reordering), timer firings,
jumps of the clock, and hostile segments: near the live sequence space of a connection (at and
around RCV.NXT, SND.UNA and the window edges) or anywhere, with random flags, options (tiny and
huge MSS, any window scale, SACK blocks, timestamps, fast open cookies of every length, unknown
kinds), windows and sizes, and floods of spoofed SYNs and ACKs at the listener. A hostile data
segment carries the sender's true bytes for its sequence (a third party that replays, splits and
overlaps what it saw), and no URG flag, so that the receiver's stream stays checkable.

After every step it checks the invariants: no exception escapes the engine; every connection
whose timer is set has it filed with its host (so it fires); memory stays bounded (the buffers
within tcp_rmem[2] and tcp_wmem[2], the queues and the out-of-order charge within the buffers,
a size goal more for the send queue, request sockets within
the SYN queue, the timer heap within a few entries per connection); and each direction of each
connection delivers a prefix of what was written: in order, exactly once, nothing else.
Used by ``tests/engine/test_fuzz.py`` (a short seeded run) and ``bench/fuzz.py`` (a million
segments).
"""

from __future__ import annotations

import errno
import ipaddress
import random
import traceback
from dataclasses import dataclass, field

from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN
from fastopen.engine.events import EngineError
from fastopen.engine.host import Host
from fastopen.engine.link import Link
from fastopen.engine.segmentation import GSO_MAX_SIZE
from fastopen.engine.seq import MASK
from fastopen.engine.settings import SettingsChanges
from fastopen.engine.socket import SHUT_WR, SOL_TCP, TCP_NODELAY, EngineSocket
from fastopen.engine.tcb import Connection
from fastopen.wire import (
    Eol,
    FastOpen,
    Flags,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    UnknownOption,
    WindowScale,
    emit_options,
)

CLIENT = ipaddress.IPv4Address("198.18.0.1")
SERVER = ipaddress.IPv4Address("198.18.0.2")
PORT = 80
#: Open connections at most at a time (client side).
MAX_OPEN = 8
#: A send writes at most this much.
MAX_WRITE = 6000
#: Timer heap entries allowed per live connection or request (lazy deletion leaves a few).
HEAP_PER_TIMED = 64
MSS_VALUES = (0, 1, 12, 47, 48, 88, 536, 1220, 1460, 9000, 65535)
DELTAS = (0, 1, -1, 2, -2, 100, -100, 1460, -1460, 65535, -65535, 1 << 20, -(1 << 20), 1 << 31)


@dataclass
class Stream:
    """One direction of one connection: what the sender wrote, what the receiver read."""

    written: bytearray = field(default_factory=bytearray)
    read: bytearray = field(default_factory=bytearray)


@dataclass
class Pair:
    """A connection as both ends see it."""

    client: EngineSocket
    server: EngineSocket | None = None
    up: Stream = field(default_factory=Stream)  # client -> server
    down: Stream = field(default_factory=Stream)  # server -> client
    client_iss: int | None = None
    server_iss: int | None = None
    closed: bool = False


@dataclass
class Report:
    seed: int
    steps: int = 0
    segments: int = 0  # delivered by the link plus injected
    hostile: int = 0
    opened: int = 0
    bytes_delivered: int = 0
    max_connections: int = 0
    max_requests: int = 0
    max_heap: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"seed {self.seed}: {self.steps} steps, {self.segments} segments "
            f"({self.hostile} hostile), {self.opened} connections, {self.bytes_delivered} bytes "
            f"delivered in order, at most {self.max_connections} connections, "
            f"{self.max_requests} request sockets, {self.max_heap} timer entries; "
            f"{len(self.failures)} failures"
        )


class Fuzz:
    """One seeded fuzz run (see the module docstring)."""

    def __init__(self, seed: int) -> None:
        self.rng = rng = random.Random(seed)
        self.report = Report(seed)
        common: SettingsChanges = {
            "timestamps": rng.random() < 0.7,
            "sack": rng.random() < 0.8,
            "window_scaling": rng.random() < 0.8,
            "rmem": rng.choice((16384, 131072, 540000)),
            "wmem": rng.choice((16384, 262144)),
            "mtu": rng.choice((576, 1280, 1500)),
            "negative_cache_time": rng.choice((0.0, 900.0)),
            "pacing": seed % 2 == 1,  # odd seeds pace (no draw: the others stay as they were)
            # seeds 3, 7, 11...: BBR (its own pacing and cong_control), the others CUBIC
            "congestion_control": "bbr" if seed % 4 == 3 else "cubic",
        }
        self.client = Host([CLIENT], secret=b"c" * 16, **common)  # TFO client (0x1)
        self.server = Host([SERVER], secret=b"s" * 16, **common)
        self.server.settings.tcp_fastopen = 0x3
        self.link = Link(
            self.client,
            self.server,
            delay=rng.choice((0.0005, 0.01, 0.05)),
            loss=rng.choice((0.0, 0.01, 0.05)),
            duplicate=rng.choice((0.0, 0.01)),
            reorder=rng.choice((0.0, 0.05)),
            seed=seed,
        )
        self.listener = self.server.socket()
        self.listener.bind((str(SERVER), PORT))
        self.listener.setsockopt(SOL_TCP, TCP_FASTOPEN, rng.choice((1, 4, 64)))
        self.backlog = rng.choice((2, 8, 128))
        self.listener.listen(self.backlog)
        self.pairs: list[Pair] = []
        self.by_port: dict[int, Pair] = {}

    # -- the run -----------------------------------------------------------------------------------

    def run(self, steps: int | None = None, segments: int | None = None) -> Report:
        """Run until ``steps`` steps or ``segments`` segments (whichever is given first)."""
        report = self.report
        actions = (
            (self.open, 3),
            (self.write, 8),
            (self.read, 8),
            (self.accept, 4),
            (self.finish, 1),
            (self.deliver, 30),
            (self.jump, 2),
            (self.hostile, 12),
            (self.flood, 1),
        )
        funcs = [f for f, _ in actions]
        weights = [w for _, w in actions]
        while (steps is None or report.steps < steps) and (
            segments is None or report.segments < segments
        ):
            action = self.rng.choices(funcs, weights)[0]
            try:
                action()
                self.check()
            except Exception:
                report.failures.append(f"step {report.steps}: {traceback.format_exc()}")
                if len(report.failures) >= 5:
                    break
            report.steps += 1
            report.segments = self.link.stats.delivered + report.hostile
        return report

    @property
    def now(self) -> float:
        return self.link.now

    # -- application calls -------------------------------------------------------------------------

    def open(self) -> None:
        live = [p for p in self.pairs if not p.closed]
        if len(live) >= MAX_OPEN:
            return
        sock = self.client.socket()
        if self.rng.random() < 0.3:
            sock.setsockopt(SOL_TCP, TCP_NODELAY, 1, self.now)
        pair = Pair(sock)
        self.pairs.append(pair)
        self.report.opened += 1
        data = self.rng.randbytes(self.rng.randrange(0, 3000))
        try:
            if self.rng.random() < 0.6:
                sent = sock.sendto(data, MSG_FASTOPEN, (str(SERVER), PORT), self.now)
                pair.up.written += data[:sent]
            else:
                sock.connect((str(SERVER), PORT), self.now)
        except EngineError as exc:
            if exc.errno not in (errno.EINPROGRESS, errno.EADDRNOTAVAIL):
                raise
        conn = sock.conn
        if conn is not None:
            pair.client_iss = conn.iss
            self.by_port[conn.lport] = pair

    def _live_socket(self) -> tuple[Pair, EngineSocket, Stream, Stream] | None:
        """A random end of a random connection: (pair, socket, its send stream, its receive)."""
        live = [p for p in self.pairs if not p.closed]
        if not live:
            return None
        pair = self.rng.choice(live)
        if pair.server is not None and self.rng.random() < 0.5:
            return pair, pair.server, pair.down, pair.up
        return pair, pair.client, pair.up, pair.down

    def write(self) -> None:
        picked = self._live_socket()
        if picked is None:
            return
        _, sock, out, _ = picked
        data = self.rng.randbytes(self.rng.randrange(1, MAX_WRITE))
        try:
            n = sock.send(data, self.now)
        except EngineError:
            return  # EAGAIN, EPIPE, ENOTCONN...: nothing was written
        out.written += data[:n]

    def read(self) -> None:
        picked = self._live_socket()
        if picked is None:
            return
        _, sock, _, incoming = picked
        try:
            got = sock.recv(self.rng.randrange(1, 70000), self.now)
        except EngineError:
            return
        start = len(incoming.read)
        if got != incoming.written[start : start + len(got)]:
            raise AssertionError(f"bytes {start}..{start + len(got)} are not the ones written")
        incoming.read += got
        self.report.bytes_delivered += len(got)

    def accept(self) -> None:
        while True:
            try:
                child, (_, port) = self.listener.accept(self.now)
            except EngineError:
                return
            pair = self.by_port.get(port)
            if pair is None or pair.server is not None or pair.closed:
                child.close(self.now)  # a flood's child (a cookie guessed) or a stale one
                continue
            pair.server = child
            assert child.conn is not None
            pair.server_iss = child.conn.iss

    def finish(self) -> None:
        picked = self._live_socket()
        if picked is None:
            return
        pair, sock, _, _ = picked
        choice = self.rng.random()
        try:
            if choice < 0.4:
                sock.shutdown(SHUT_WR, self.now)
            elif choice < 0.8:
                sock.close(self.now)
                pair.closed = True
            else:
                sock.disconnect(self.now)
                pair.closed = True
        except EngineError:
            pass

    # -- the link and the clock --------------------------------------------------------------------

    def deliver(self) -> None:
        self.link.step()

    def jump(self) -> None:
        self.link.advance(self.rng.choice((0.2, 1.0, 5.0, 61.0)))

    # -- the hostile third party -------------------------------------------------------------------

    def hostile(self) -> None:
        rng = self.rng
        target = self.server if rng.random() < 0.5 else self.client
        conns = list(target.connections.values())
        conn = rng.choice(conns) if conns and rng.random() < 0.9 else None
        seg = self._craft(target, conn)
        src = CLIENT if target is self.server else SERVER
        dst = SERVER if target is self.server else CLIENT
        self.report.hostile += 1
        target.receive_segment(src, dst, seg, self.now)
        self.link.flush()

    def _craft(self, target: Host, conn: Connection | None) -> TcpSegment:
        rng = self.rng
        flags = (
            rng.randrange(256)
            if rng.random() < 0.3
            else rng.choice((0x10, 0x10, 0x18, 0x11, 0x04, 0x14, 0x02, 0x12, 0x01, 0x19))
        )
        if conn is None:
            sport = rng.choice((PORT, rng.randrange(1, 65536)))
            dport = rng.choice((PORT, rng.randrange(1, 65536)))
            seq, ack = rng.randrange(1 << 32), rng.randrange(1 << 32)
            payload = rng.randbytes(rng.randrange(0, 100)) if rng.random() < 0.2 else b""
        else:
            sport, dport = conn.rport, conn.lport
            seq = (conn.rcv_nxt + rng.choice(DELTAS) + rng.randrange(-3, 4)) & MASK
            base = rng.choice((conn.snd_una, conn.snd_nxt, conn.snd_max, conn.iss))
            ack = (base + rng.choice(DELTAS) // 64 + rng.randrange(-2, 3)) & MASK
            seq, payload = self._true_bytes(target, conn, seq)
            flags &= ~Flags.URG  # urgent data takes its byte out of the stream (as on Linux)
            if flags & Flags.SYN:
                replay = self._replayed_syn(target, conn)
                if replay is None:
                    flags &= ~Flags.SYN
                else:
                    seq, payload = replay
        options = self._options(seq)
        window = rng.choice((0, 1, 100, 65535, rng.randrange(65536)))
        return TcpSegment(sport, dport, seq, ack, Flags(flags), window, options, payload)

    def _replayed_syn(self, target: Host, conn: Connection) -> tuple[int, bytes] | None:
        """A SYN to a connection replays the peer's own: its ISN, its true bytes after it (or
        none); None when the peer has sent none to replay. A SYN at any other ISN that a
        connection in SYN-SENT takes (its ACK right) is the blind hijack no TCP can tell from
        the real SYN-ACK, and after it no stream is checkable."""
        peer = self.client if target is self.server else self.server
        key = (conn.remote, conn.rport, conn.local, conn.lport)
        sender = peer.connections.get(key) or peer.requests.get(key)
        if sender is None:
            return None
        pair = self.by_port.get(conn.lport if target is self.client else conn.rport)
        payload = b""
        if pair is not None and self.rng.random() < 0.5:
            stream, iss = (
                (pair.up, pair.client_iss) if peer is self.client else (pair.down, pair.server_iss)
            )
            if iss == sender.iss:
                payload = bytes(stream.written[: self.rng.choice((1, 100, 1460))])
        return sender.iss, payload

    def _true_bytes(self, target: Host, conn: Connection, seq: int) -> tuple[int, bytes]:
        """A payload of the sender's true bytes around ``seq`` (or none)."""
        rng = self.rng
        pair = self.by_port.get(conn.lport if target is self.client else conn.rport)
        if pair is None or rng.random() < 0.4:
            return seq, b""
        if target is self.server:
            stream, iss = pair.up, pair.client_iss
        else:
            stream, iss = pair.down, pair.server_iss
        if iss is None or not stream.written:
            return seq, b""
        offset = (seq - iss - 1) & MASK
        if offset >= len(stream.written):
            offset = rng.randrange(len(stream.written))
        size = rng.choice((1, 2, 100, 536, 1460, 4000))
        return (iss + 1 + offset) & MASK, bytes(stream.written[offset : offset + size])

    def _options(self, seq: int) -> tuple[TcpOption, ...]:
        rng = self.rng
        pool: list[TcpOption] = []
        for _ in range(rng.choice((0, 0, 1, 2, 3, 5))):
            kind = rng.randrange(8)
            if kind == 0:
                pool.append(Mss(rng.choice(MSS_VALUES)))
            elif kind == 1:
                pool.append(WindowScale(rng.randrange(256)))
            elif kind == 2:
                pool.append(SackPermitted())
            elif kind == 3:
                blocks = tuple(
                    ((seq + a) & MASK, (seq + a + b) & MASK)
                    for a, b in (
                        (rng.randrange(-5000, 70000), rng.randrange(0, 5000))
                        for _ in range(rng.randrange(1, 4))
                    )
                )
                pool.append(Sack(blocks))
            elif kind == 4:
                pool.append(Timestamps(rng.randrange(1 << 32), rng.randrange(1 << 32)))
            elif kind == 5:
                pool.append(FastOpen(rng.randbytes(rng.randrange(0, 17)), rng.random() < 0.3))
            elif kind == 6:
                pool.append(
                    UnknownOption(
                        rng.choice((5, 8, 30, 99, 253)), rng.randbytes(rng.randrange(0, 10))
                    )
                )
            else:
                pool.append(Nop())
        if rng.random() < 0.05:
            pool.append(Eol())  # the end of the list (what follows is padding)
        while pool and len(emit_options(pool)) > 40:
            pool.pop(-2 if isinstance(pool[-1], Eol) and len(pool) > 1 else -1)
        return tuple(pool)

    def flood(self) -> None:
        """Spoofed SYNs (and ACKs guessing cookies) at the listener."""
        rng = self.rng
        for _ in range(rng.randrange(1, 50)):
            src = ipaddress.IPv4Address(
                int(ipaddress.IPv4Address("198.19.0.0")) + rng.randrange(1 << 16)
            )
            flags = Flags.SYN if rng.random() < 0.8 else Flags.ACK
            opts = self._options(0)
            seg = TcpSegment(
                rng.randrange(1024, 65536),
                PORT,
                rng.randrange(1 << 32),
                rng.randrange(1 << 32),
                flags,
                65535,
                opts,
            )
            self.report.hostile += 1
            self.server.receive_segment(src, SERVER, seg, self.now)
        self.server.segments_to_send()  # the answers go to addresses nobody owns

    # -- invariants --------------------------------------------------------------------------------

    def check(self) -> None:
        report = self.report
        for host in (self.client, self.server):
            timed = list(host.connections.values()) + list(host.requests.values())
            for item in timed:
                due = item.deadline()
                if due is not None and (item.pushed_at is None or item.pushed_at > due + 1e-9):
                    raise AssertionError(f"{item!r}: timer at {due} not filed ({item.pushed_at})")
            for conn in host.connections.values():
                settings = host.settings
                rcvbuf, sndbuf = conn.sock.rcvbuf, conn.sock.sndbuf
                if rcvbuf > max(settings.rmem_max, settings.rmem):
                    raise AssertionError(f"receive buffer of {rcvbuf} > tcp_rmem[2]")
                if sndbuf > max(settings.wmem_max, settings.wmem):
                    raise AssertionError(f"send buffer of {sndbuf} > tcp_wmem[2]")
                if len(conn.rcv_buf) > rcvbuf:
                    raise AssertionError(f"receive queue {len(conn.rcv_buf)} > {rcvbuf}")
                # a new skb needs the queue below the buffer; it takes up to a size goal
                if len(conn.snd_buf) > sndbuf + GSO_MAX_SIZE + 1:
                    raise AssertionError(f"send queue {len(conn.snd_buf)} > {sndbuf}")
                if conn.ooo is not None and conn.ooo.charge > rcvbuf:
                    raise AssertionError(f"out-of-order charge {conn.ooo.charge} > {rcvbuf}")
            heap = len(host._timers)  # the invariant is about the heap itself
            if heap > HEAP_PER_TIMED * (len(timed) + 1):
                raise AssertionError(f"timer heap of {heap} for {len(timed)} connections")
            report.max_heap = max(report.max_heap, heap)
            report.max_connections = max(report.max_connections, len(host.connections))
        if len(self.server.requests) > self.backlog + 1:
            raise AssertionError(f"{len(self.server.requests)} request sockets > backlog")
        report.max_requests = max(report.max_requests, len(self.server.requests))
        for pair in self.pairs:
            if (
                not pair.closed
                and _gone(pair.client)
                and (pair.server is None or _gone(pair.server))
            ):
                pair.closed = True
        for pair in [p for p in self.pairs if p.closed]:
            for sock in (pair.client, pair.server):
                if sock is not None:
                    sock.close(self.now)
            client = pair.client.conn
            if client is not None and self.by_port.get(client.lport) is pair:
                del self.by_port[client.lport]
        self.pairs = [p for p in self.pairs if not p.closed]


def _gone(sock: EngineSocket) -> bool:
    conn = sock.conn
    return conn is None or conn.gone()
