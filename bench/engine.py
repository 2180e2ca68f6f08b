"""Engine transactions/s: client and server engines in memory, TFO and plain side by side.

One transaction: a SYN with a 100-byte request (in the SYN for TFO, after the handshake for plain),
a 1,000-byte answer, close both ways; TIME-WAIT is expired at the end by advancing virtual time
(its cost is counted). Segments go from host to host unencoded (``segments_to_send`` ->
``receive_segment``) and, as a second figure, as whole IP packets (emit with checksums, parse).
Goal: at least 5,000 TFO transactions/s on one core.

Then, side by side: a bulk transfer of ``--bulk`` MiB in memory (one connection, virtual time,
no delay), as segments and as IP packets, with the share of the CPU the wire codec takes in the
second (cProfile: functions of ``fastopen/wire.py`` against the whole pass); and the memory of an
idle established connection (tracemalloc: what ``--idle`` connections and their peers add,
halved: one end; goal of issue 11: at most 2 KB).

    .venv/bin/python bench/engine.py [--transactions 5000] [--bulk 20] [--idle 1000]
"""

from __future__ import annotations

import argparse
import cProfile
import errno
import pstats
import socket
import time

from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN
from fastopen.engine import (
    COMPILED,
    ENGINE_BUILD,
    Connected,
    EngineError,
    EngineSocket,
    Host,
    Readable,
)
from fastopen.engine.link import idle_connection_bytes

GOAL = 5000
#: Bytes per idle established connection (issue 11).
MEMORY_GOAL = 2048
SERVER = ("198.18.0.2", 80)
REQUEST = b"G" * 100
ANSWER = b"A" * 1000


class Bench:
    def __init__(self, encode: bool) -> None:
        self.client = Host(["198.18.0.1"], tcp_fastopen=0x1)
        self.server = Host(["198.18.0.2"], tcp_fastopen=0x2)
        self.encode = encode
        self.now = 0.0
        self.listener = self.server.socket()
        self.listener.bind(SERVER)
        self.listener.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 1024)
        self.listener.listen(1024)

    def pump(self) -> None:
        """Carry segments both ways until both hosts are quiet, serving the applications."""
        c, s, now = self.client, self.server, self.now
        while True:
            moved = False
            if self.encode:
                for packet in c.packets_to_send():
                    s.receive(packet, now)
                    moved = True
                for packet in s.packets_to_send():
                    c.receive(packet, now)
                    moved = True
            else:
                for src, dst, seg in c.segments_to_send():
                    s.receive_segment(src, dst, seg, now)
                    moved = True
                for src, dst, seg in s.segments_to_send():
                    c.receive_segment(src, dst, seg, now)
                    moved = True
            self.serve()
            if not moved:
                return

    def serve(self) -> None:
        now = self.now
        while (ev := self.server.next_event()) is not None:
            if isinstance(ev, Readable):
                child = ev.sock
                if child.conn is not None and child.conn.rcv_buf:
                    child.recv(65536, now)
                    child.send(ANSWER, now)
                    child.close(now)
            elif self.listener.accept_queue:
                self.listener.accept(now)
        while (ev := self.client.next_event()) is not None:
            if isinstance(ev, Connected) and ev.sock.conn is not None and not ev.sock.conn.syn_data:
                ev.sock.send(REQUEST, now)
            elif isinstance(ev, Readable) and not ev.sock.closed:
                sock = ev.sock
                try:
                    while sock.recv(65536, now):
                        pass
                except EngineError as exc:
                    if exc.errno != errno.EAGAIN:
                        raise
                    continue
                sock.close(now)

    def transaction(self, tfo: bool) -> None:
        sock = self.client.socket()
        try:
            if tfo:
                sock.sendto(REQUEST, MSG_FASTOPEN, SERVER, self.now)
            else:
                sock.connect(SERVER, self.now)
        except EngineError as exc:
            assert exc.errno == errno.EINPROGRESS
        self.pump()
        self.now += 0.0001

    def run(self, n: int, tfo: bool) -> float:
        if tfo:
            self.transaction(True)  # the first one gets the cookie
        start = time.perf_counter()
        for _ in range(n):
            self.transaction(tfo)
        self.now += 61.0
        self.client.handle_timer(self.now)
        self.server.handle_timer(self.now)
        elapsed = time.perf_counter() - start
        assert not self.client.connections and not self.server.connections
        if tfo:
            assert self.server.counters["TCPFastOpenPassive"] >= n
        return n / elapsed


class _Bulk(Bench):
    """One connection carrying data from the client to the server, whose application reads all
    it gets (``pump`` serves it)."""

    def __init__(self, encode: bool) -> None:
        super().__init__(encode)
        self.child: EngineSocket | None = None
        self.got = 0

    def serve(self) -> None:
        if self.child is None:
            if self.listener.accept_queue:
                self.child, _ = self.listener.accept(self.now)
            return
        try:
            while data := self.child.recv(1 << 20, self.now):
                self.got += len(data)
        except EngineError as exc:
            if exc.errno != errno.EAGAIN:
                raise


def bulk(megabytes: int, encode: bool) -> float:
    """MB/s of one in-memory transfer of ``megabytes`` MiB (the CPU it takes, in wall time):
    what each host sends goes straight to the other, time moves only to the next timer."""
    bench = _Bulk(encode)
    c, s = bench.client, bench.server
    sock = c.socket()
    try:
        sock.connect(SERVER, bench.now)
    except EngineError as exc:
        assert exc.errno == errno.EINPROGRESS
    bench.pump()
    total, chunk = megabytes << 20, b"b" * 65536
    sent = 0
    start = time.perf_counter()
    while bench.got < total:
        while sent < total:
            try:
                sent += sock.send(chunk[: total - sent], bench.now)
            except EngineError:
                break
        bench.pump()
        due = [t for t in (c.get_timer(), s.get_timer()) if t is not None]
        if bench.got < total and due:  # quiet: on to the next timer (a delayed ACK, say)
            bench.now = max(bench.now, min(due))
            c.handle_timer(bench.now)
            s.handle_timer(bench.now)
    return total / (time.perf_counter() - start) / 1e6


def codec_share(megabytes: int) -> tuple[float, float | None]:
    """The share of the CPU of an in-memory transfer of IP packets spent in the wire codec and
    in the engine (cProfile: the time of the calls into each from outside it, what they call
    included; None for a compiled engine, whose functions cProfile does not see)."""
    profile = cProfile.Profile()
    profile.runcall(bulk, megabytes, True)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    whole = sum(row[2] for row in stats.values())

    def entered(part: str) -> float:
        return sum(
            ct
            for (path, _, _), (_, _, _, _, callers) in stats.items()
            if part in path
            for (caller, _, _), (_, _, _, ct) in callers.items()
            if part not in caller
        )

    codec = entered("fastopen/wire.py")
    if COMPILED:
        return codec / whole, None
    return codec / whole, (entered("fastopen/engine/") - codec) / whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=5000)
    parser.add_argument("--bulk", type=int, default=20, help="MiB of the in-memory transfer")
    parser.add_argument("--idle", type=int, default=1000, help="idle connections measured")
    args = parser.parse_args()
    n = args.transactions
    print(
        f"engine transactions/s, {n} each (100-byte request, 1,000-byte answer, close); the "
        f"engine {ENGINE_BUILD}"
    )
    for encode in (False, True):
        path = "IP packets (emit+parse)" if encode else "segments (in memory)"
        tfo = Bench(encode).run(n, tfo=True)
        plain = Bench(encode).run(n, tfo=False)
        print(
            f"  {path:24}  TFO {tfo:8,.0f}/s   plain {plain:8,.0f}/s   TFO/plain {tfo / plain:.2f}"
        )
        if not encode:
            verdict = "met" if tfo >= GOAL else "NOT met"
            print(f"  goal {GOAL:,} TFO transactions/s on one core: {verdict}")

    segments, packets = bulk(args.bulk, False), bulk(args.bulk, True)
    print(
        f"bulk in memory, {args.bulk} MiB: segments {segments:.1f} MB/s, IP packets "
        f"{packets:.1f} MB/s (packets/segments {packets / segments:.2f})"
    )
    codec, engine = codec_share(max(1, args.bulk // 4))
    rest = (
        "the engine and the rest the other (compiled, cProfile sees none of its functions)"
        if engine is None
        else f"engine {engine:.0%}"
    )
    print(f"  CPU of the IP-packet transfer (cProfile): codec {codec:.0%}, {rest}")
    per_end = idle_connection_bytes(args.idle)
    verdict = "met" if per_end <= MEMORY_GOAL else "NOT met"
    print(
        f"memory per idle established connection (one end, {args.idle} connections): "
        f"{per_end:,.0f} bytes (goal <= {MEMORY_GOAL:,}: {verdict})"
    )


if __name__ == "__main__":
    main()
