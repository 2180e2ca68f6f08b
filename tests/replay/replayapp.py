"""Servers for the replay tests: an application that processes POSTs (it records each order) and
reads the replay guard's flag itself, running on its own event loop in a thread entered into a
network namespace; and a kernel TFO client that puts any request in the SYN."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

import fastopen
from fastopen.constants import MSG_FASTOPEN
from fastopen.cookies import KeyRing
from fastopen.http.responder import parse_head, too_early
from fastopen.lab.netns import Netns
from fastopen.replay import ReplayGuard, Verdict
from fastopen.report import TfoReport


@dataclass
class Seen:
    """One request as the application saw it."""

    method: str
    status: int
    report: TfoReport
    verdict: Verdict | None


@dataclass
class App:
    """What one server's application did: every request it saw, the orders it carried out."""

    name: str
    seen: list[Seen] = field(default_factory=list)
    orders: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
            parsed = parse_head(raw[:-4])
            if parsed is None:
                return
            method, _, _, headers = parsed
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            report: TfoReport = writer.get_extra_info("fastopen")
            if too_early(method, report):
                status = 425
            else:
                status = 200
                if method == "POST":
                    self.orders.append(body)
            self.seen.append(Seen(method, status, report, writer.get_extra_info("replay")))
            answer = f"{self.name} {status}".encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Length: {len(answer)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextmanager
def serving(
    ns: Netns,
    host: str,
    port: int,
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any],
    guard: ReplayGuard | None,
) -> Iterator[asyncio.AbstractEventLoop]:
    """``fastopen.start_server(handler, host, port, replay_guard=guard)`` in ``ns``, on an event
    loop of its own in a thread, until the block ends (the guard is closed then)."""
    with running(
        ns, lambda: fastopen.start_server(handler, host, port, replay_guard=guard), guard
    ) as loop:
        yield loop


@contextmanager
def running(
    ns: Netns,
    start: Callable[[], Awaitable[asyncio.AbstractServer]],
    guard: ReplayGuard | None,
) -> Iterator[asyncio.AbstractEventLoop]:
    """The server ``start()`` makes, in ``ns``, on an event loop of its own in a thread, until the
    block ends (``guard`` is closed then)."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        state["loop"], state["stop"] = loop, stop
        try:
            server = await start()
        except BaseException as exc:
            state["error"] = exc
            ready.set()
            raise
        ready.set()
        async with server:
            await stop
        if guard is not None:
            await guard.close()

    def run() -> None:
        with ns.entered():
            try:
                asyncio.run(main())
            except BaseException as exc:  # reported to the test by the ready check
                state.setdefault("error", exc)
                ready.set()

    thread = threading.Thread(target=run, name=f"replay-{ns.name}")
    thread.start()
    try:
        if not ready.wait(20) or "error" in state:
            raise RuntimeError(f"the server in {ns.name} did not start: {state.get('error')}")
        yield state["loop"]
    finally:
        loop = state.get("loop")
        if loop is not None and not state["stop"].done():
            loop.call_soon_threadsafe(
                lambda: state["stop"].done() or state["stop"].set_result(None)
            )
        thread.join(20)


def request(method: str, body: bytes = b"") -> bytes:
    return (
        f"{method} /order HTTP/1.1\r\nHost: farm\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )


def tfo_request(ns: Netns, host: str, port: int, data: bytes, timeout: float = 8) -> bytes:
    """Send ``data`` in the SYN (``MSG_FASTOPEN``, whatever it is) from ``ns``; the answer."""
    with ns.entered():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
        sock.sendto(data, MSG_FASTOPEN, (host, port))
        sock.settimeout(timeout)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


def replay_twice(
    ns: Netns, spoofed: str, server: str, port: int, ring: KeyRing, wait: Callable[[int], None]
) -> None:
    """From ``ns``, a POST then a GET in a SYN with a good cookie from ``spoofed`` to
    ``server``, each sent twice as the very same bytes (scapy); after each copy
    ``wait(copies so far)`` returns once the server has answered it, then a RST ends it."""
    cookie = ring.primary.cookie(ipaddress.ip_address(spoofed), ipaddress.ip_address(server))
    with ns.entered():
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    with raw:
        for n, (method, sport, isn) in enumerate(
            [("POST", 40000, 0x1234_5678), ("GET", 40001, 0x2345_6789)]
        ):
            data = request(method)
            ip = IP(src=spoofed, dst=server)
            syn = bytes(
                ip
                / TCP(sport=sport, dport=port, flags="S", seq=isn, window=64240,
                      options=[("MSS", 1460), ("SAckOK", b""), ("TFO", cookie)])
                / Raw(data)
            )  # fmt: skip
            rst = bytes(ip / TCP(sport=sport, dport=port, flags="R", seq=isn + 1 + len(data)))
            for copy in range(2):  # the SYN, then the very same bytes again
                raw.sendto(syn, (server, 0))
                wait(2 * n + copy + 1)
                raw.sendto(rst, (server, 0))  # the first connection is over
                time.sleep(0.05)
