"""Connections per second on loopback: fastopen's sync and asyncio clients against its asyncio
server, plain TCP and TFO side by side, measured in one run. Goal: TFO at least as fast as plain.

Each connection sends a small request (in the SYN with TFO), reads the whole response and sees
the server close. Runs in a ``fo-`` namespace of its own (root needed), removed on every exit.

    .venv/bin/python bench/kernel_connections.py [--seconds 2.0]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections.abc import Callable

import fastopen
from fastopen.lab.netns import Netns, enable_tfo

HOST = "127.0.0.1"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


class Server:
    """fastopen's asyncio server, on its own event loop in a thread inside the namespace."""

    def __init__(self, ns: Netns) -> None:
        self.ns = ns
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(RESPONSE)
        await writer.drain()
        writer.close()  # the server closes first: TIME_WAIT stays off the client's ports

    def _run(self) -> None:
        with self.ns.entered():
            server = self._loop.run_until_complete(
                fastopen.start_server(self._handle, HOST, 0, backlog=1024)
            )
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    def __enter__(self) -> Server:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def sync_rate(port: int, tfo: bool, seconds: float) -> tuple[float, float]:
    """Connections/s of the sync client, and the share of them with the request in the SYN."""
    done = in_syn = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        with fastopen.create_connection(
            (HOST, port), 5, first_flight=REQUEST, fastopen=tfo
        ) as sock:
            in_syn += fastopen.report(sock).syn_data_acked
            while sock.recv(4096):
                pass
        done += 1
    return done / elapsed, in_syn / done


def async_rate(port: int, tfo: bool, seconds: float) -> tuple[float, float]:
    """The same with the asyncio client."""

    async def run() -> tuple[float, float]:
        done = in_syn = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            reader, writer = await fastopen.open_connection(
                HOST, port, first_flight=REQUEST, fastopen=tfo
            )
            in_syn += writer.get_extra_info("fastopen").syn_data_acked
            await reader.read()
            writer.close()
            done += 1
        return done / elapsed, in_syn / done

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per cell")
    args = parser.parse_args()

    clients: dict[str, Callable[[int, bool, float], tuple[float, float]]] = {
        "sync": sync_rate,
        "asyncio": async_rate,
    }
    with Netns("bench") as ns:
        enable_tfo(ns)
        ns.sysctl("net.ipv4.ip_local_port_range", "1024 65000")
        with Server(ns) as server, ns.entered():
            # one TFO connection first, so that a cookie is cached for every TFO cell
            fastopen.create_connection((HOST, server.port), 5, first_flight=REQUEST).close()
            print(f"{'client':8} {'plain conn/s':>13} {'TFO conn/s':>11} {'TFO/plain':>10}  in SYN")
            for name, rate in clients.items():
                plain, _ = rate(server.port, False, args.seconds)
                tfo, in_syn = rate(server.port, True, args.seconds)
                print(f"{name:8} {plain:13.0f} {tfo:11.0f} {tfo / plain:10.2f}  {in_syn:.0%}")


if __name__ == "__main__":
    main()
