"""The cost of the SYN-data replay guard, per store, side by side with no guard, in one run.

1. Per check: ``ReplayGuard.check`` for a connection whose first flight came in the SYN (a
   record: one ``SET NX PX GET`` on Redis) and for one without (a lookup: one ``GET``), for the
   memory store, an SQLite file and Redis on this host (a redis-server of the bench's own, on a
   unix socket in a temporary folder). Goals: <= 20 us in memory, <= 0.3 ms with Redis.
2. Connections per second: fastopen's asyncio server (``start_server(..., replay_guard=)``) and
   its asyncio TFO client on one event loop, on the loopback of a ``fo-`` namespace of its own
   (root needed; removed on every exit), each request in the SYN; no guard, then each store.

    .venv/bin/python bench/replay.py [--checks 20000] [--seconds 2.0]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import tempfile
import time
from pathlib import Path

import fastopen
from fastopen.lab.netns import Netns, enable_tfo
from fastopen.lab.redis import RedisServer
from fastopen.replay import Arrival, ReplayGuard

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
MEMORY_GOAL, REDIS_GOAL = 20e-6, 0.3e-3


def bare_round_trip(path: Path, count: int, repeats: int) -> float:
    """Seconds per ``PING`` on a blocking unix socket: the machine's floor for any Redis client."""
    best = 1.0
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(count):
                sock.sendall(b"PING\r\n")
                if sock.recv(64) != b"+PONG\r\n":
                    raise SystemExit("redis-server did not answer PING")
            best = min(best, (time.perf_counter() - start) / count)
    return best


def guard_for(store: str) -> ReplayGuard:
    return ReplayGuard(store, window=600, quarantine="off", server_id="bench")


async def per_check(store: str, count: int, repeats: int) -> tuple[float, float]:
    """Seconds per check, the best of ``repeats`` runs (the machine is shared): a record (SYN
    data, a new fingerprint) and a lookup (data after the handshake, a recorded fingerprint)."""
    guard = guard_for(store)
    await guard.start()
    best = [1.0, 1.0]
    try:
        for run in range(repeats):
            for kind, syn_data in enumerate((True, False)):
                arrivals = [
                    Arrival("80", "198.18.0.1", 1024 + i % 60000, run * count + i, syn_data)
                    for i in range(count)
                ]
                start = time.perf_counter()
                for arrival in arrivals:
                    await guard.check(arrival)
                best[kind] = min(best[kind], (time.perf_counter() - start) / count)
        expected = count * repeats
        counters = guard.counters
        if counters["unavailable"] or (counters["recorded"], counters["suspected"]) != (
            expected,
            expected,
        ):
            raise SystemExit(f"{store}: unexpected verdicts {dict(counters)}")
        return best[0], best[1]
    finally:
        await guard.close()


class Timed:
    """The bench's handler, with the time from accept to the handler (the guard's share of it:
    saved SYN, TCP_INFO, the check, the verdict on the writer) summed per connection."""

    def __init__(self, guard: ReplayGuard | None) -> None:
        self.inner = handle if guard is None else guard.wrap(self.handle)
        self.started = 0.0
        self.spent = 0.0

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.started = time.perf_counter()
        await self.inner(reader, writer)  # type: ignore[misc]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.spent += time.perf_counter() - self.started
        await handle(reader, writer)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(RESPONSE)
    await writer.drain()
    writer.close()  # the server closes first: TIME_WAIT stays off the client's ports


async def connections(store: str | None, seconds: float) -> tuple[float, float, float]:
    """Connections/s with the guard on ``store`` (None: no guard), the share flagged, and the
    guard's time per connection (measured in the server). The guard is wired in as
    ``start_server(replay_guard=...)`` does it: ``wrap`` the handler, then ``listening``."""
    guard = None if store is None else guard_for(store)
    timed = Timed(guard)
    server = await fastopen.start_server(timed, HOST, 0, backlog=1024)
    if guard is not None:
        await guard.listening(server)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await fastopen.open_connection(HOST, port, first_flight=REQUEST)
        await reader.read()  # the cookie
        writer.close()
        done = 0
        timed.spent = 0.0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            reader, writer = await fastopen.open_connection(HOST, port, first_flight=REQUEST)
            await reader.read()
            writer.close()
            done += 1
        flagged = 0.0 if guard is None else guard.counters["suspected"] / done
        return done / elapsed, flagged, timed.spent / done
    finally:
        server.close()
        await server.wait_closed()
        if guard is not None:
            await guard.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000, help="checks per run, store, kind")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per connection cell")
    parser.add_argument("--repeats", type=int, default=3, help="runs (the best one counts)")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="fastopen-replay-") as tmp,
        RedisServer(Path(tmp)) as redis,
    ):
        stores = {"memory": "memory", "sqlite": f"sqlite:{tmp}/replay.db", "redis": redis.url}
        goals = {"memory": MEMORY_GOAL, "redis": REDIS_GOAL}
        print(f"per check, best of {args.repeats} x {args.checks}:  record (SYN data)   lookup")
        for name, store in stores.items():
            record, lookup = asyncio.run(per_check(store, args.checks, args.repeats))
            goal = goals.get(name)
            verdict = (
                ""
                if goal is None
                else f"goal <= {goal * 1e6:.0f} us: "
                + ("met" if max(record, lookup) <= goal else "MISSED")
            )
            print(f"  {name:8} {record * 1e6:27.1f} us {lookup * 1e6:7.1f} us   {verdict}")
        floor = bare_round_trip(redis.socket, args.checks, args.repeats)
        print(f"  (a bare Redis round trip here, blocking socket and PING: {floor * 1e6:.1f} us)")
        with Netns("bench") as ns:
            enable_tfo(ns)
            ns.sysctl("net.ipv4.ip_local_port_range", "1024 65000")
            cells: dict[str, str | None] = {"no guard": None, **stores}
            best = dict.fromkeys(cells, 0.0)
            flagged = dict.fromkeys(cells, 0.0)
            spent = dict.fromkeys(cells, 1.0)
            with ns.entered():
                for _ in range(args.repeats):  # rounds interleave the cells: load hits all alike
                    for name, store in cells.items():
                        rate, share, guard_time = asyncio.run(connections(store, args.seconds))
                        best[name] = max(best[name], rate)
                        flagged[name] = max(flagged[name], share)
                        spent[name] = min(spent[name], guard_time)
            base = best["no guard"]
            print(
                f"connections/s, best of {args.repeats} (TFO; asyncio client and server, one loop)"
            )
            for name, rate in best.items():
                cost = (1 / rate - 1 / base) * 1e6
                extra = "" if name == "no guard" else (
                    f"  {rate / base:5.2f} x no guard ({cost:+5.0f} us), guard in the server"
                    f" {(spent[name] - spent['no guard']) * 1e6:5.1f} us a connection,"
                    f" flagged {flagged[name]:.0%}"
                )  # fmt: skip
                print(f"  {name:8} {rate:8.0f}{extra}")


if __name__ == "__main__":
    main()
