"""Engine transactions/s: client and server engines in memory, TFO and plain side by side.

One transaction: a SYN with a 100-byte request (in the SYN for TFO, after the handshake for plain),
a 1,000-byte answer, close both ways; TIME-WAIT is expired at the end by advancing virtual time
(its cost is counted). Segments go from host to host unencoded (``segments_to_send`` ->
``receive_segment``) and, as a second figure, as whole IP packets (emit with checksums, parse).
Goal: at least 5,000 TFO transactions/s on one core.

    .venv/bin/python bench/engine.py [--transactions 5000]
"""

from __future__ import annotations

import argparse
import errno
import socket
import time

from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN
from fastopen.engine import Connected, EngineError, Host, Readable

GOAL = 5000
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=5000)
    args = parser.parse_args()
    n = args.transactions
    print(f"engine transactions/s, {n} each (100-byte request, 1,000-byte answer, close)")
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


if __name__ == "__main__":
    main()
