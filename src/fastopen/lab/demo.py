"""The demo: time to first byte with and without TFO over an emulated link, on a TCP stack.

For each stack, a fresh :class:`~fastopen.lab.emulator.Lab` (so the client has no cookie yet):
a server in the server namespace, a client in the client namespace, both through the stack's
``fastopen.streams`` API, and three kinds of connection, each sending a 100-byte request and
reading the answer: plain TCP, TFO first contact (the SYN asks for a cookie) and TFO with the
cookie (the request rides in the SYN). The link records the packets, from which a ladder
diagram of one TFO exchange is drawn. Another stack (the userspace engine) is one more
``Stack`` object in ``stacks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import socket
import statistics
import tempfile
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN, TFO_COUNTERS
from fastopen.engine import Connected, EngineError, EngineSocket, Host
from fastopen.engine.link import Link
from fastopen.errors import FastOpenError
from fastopen.kernel.attempts import Attempt
from fastopen.lab.emulator import Lab
from fastopen.lab.ladder import Endpoint, Rung, rungs
from fastopen.lab.netns import CLIENT, SERVER, Addresses, Netns
from fastopen.pcap import CapturedPacket
from fastopen.report import OffReason, Side, TfoReport
from fastopen.runtime import NamespaceStacks, report
from fastopen.streams import KernelStack, Stack

PORT = 8080
_HEAD = b"GET /demo HTTP/1.1\r\nHost: fastopen-demo\r\nX-Pad: "
#: The client's first flight: 100 bytes, an idempotent GET (safe to replay, so it may ride in
#: the SYN).
REQUEST = _HEAD + b"x" * (100 - len(_HEAD) - 4) + b"\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nhello, world!\n"
#: Give up on one exchange after this long (the link is lossless, so only a bug gets here).
EXCHANGE_TIMEOUT = 10.0


class Kind(enum.Enum):
    """The three kinds of connection the demo times."""

    PLAIN = "plain TCP"
    TFO_FIRST = "TFO, first contact"
    TFO_COOKIE = "TFO with a cookie"


@dataclass(frozen=True)
class Sample:
    """One connection: its kind, time to first byte and what TFO did at both ends."""

    kind: Kind
    ttfb: float
    client: TfoReport
    server: TfoReport | None
    client_port: int


@dataclass
class StackResult:
    """The demo's figures for one stack."""

    stack: str
    client_ns: str
    server_ns: str
    samples: list[Sample] = field(default_factory=list)
    counters: dict[str, tuple[int, int]] = field(default_factory=dict)
    ladder: list[Rung] = field(default_factory=list)
    ladder_ends: tuple[Endpoint, Endpoint] | None = None

    def of(self, kind: Kind) -> list[Sample]:
        return [s for s in self.samples if s.kind is kind]

    def median(self, kind: Kind) -> float:
        return statistics.median(s.ttfb for s in self.of(kind))

    @property
    def ratio(self) -> float:
        """Time to first byte of TFO with a cookie over plain TCP (the paper's figure)."""
        return self.median(Kind.TFO_COOKIE) / self.median(Kind.PLAIN)


class _Server:
    """Answers each request with RESPONSE and keeps the server's TFO report by client port."""

    def __init__(self) -> None:
        self.reports: dict[int, TfoReport] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(len(REQUEST))
            self.reports[writer.get_extra_info("peername")[1]] = writer.get_extra_info("fastopen")
            writer.write(RESPONSE)
            await writer.drain()
        finally:
            writer.close()


async def _exchange(lab: Lab, stack: Stack, server: _Server, kind: Kind, address: str) -> Sample:
    with lab.client.entered():  # the client's socket is made in the client namespace
        start = time.perf_counter()
        reader, writer = await stack.open_connection(
            address, PORT, first_flight=REQUEST, fastopen=kind is not Kind.PLAIN
        )
    try:
        await reader.readexactly(1)
        ttfb = time.perf_counter() - start
        await reader.read()
        report: TfoReport = writer.get_extra_info("fastopen")
        port: int = writer.get_extra_info("sockname")[1]
    finally:
        writer.close()
    await writer.wait_closed()
    return Sample(kind, ttfb, report, server.reports.get(port), port)


async def _watched(lab: Lab, exchange: Coroutine[Any, Any, Sample], kind: Kind) -> Sample:
    """``exchange``, checking every tenth of a second that the link's forwarder still runs: a
    dead one is reported at once (:class:`~fastopen.lab.emulator.LabError`), not after the
    timeout."""
    task = asyncio.ensure_future(exchange)
    deadline = time.monotonic() + EXCHANGE_TIMEOUT
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.1)
            lab.check_forwarder()
            if not task.done() and time.monotonic() > deadline:
                raise FastOpenError(
                    f"no answer within {EXCHANGE_TIMEOUT:g} s on {kind.value}",
                    hint="the link is lossless: this is a bug, please report it",
                )
        return task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def plan(samples: int) -> list[Kind]:
    """``samples`` plain connections, a cookie request, ``samples`` connections with the cookie."""
    return [Kind.PLAIN] * samples + [Kind.TFO_FIRST] + [Kind.TFO_COOKIE] * samples


async def measure(lab: Lab, stack: Stack, kinds: Sequence[Kind], address: str) -> list[Sample]:
    """Time connections of ``kinds``, one after the other, from the client namespace to a
    server on ``stack`` in the server namespace."""
    server = _Server()
    with lab.server.entered():
        srv = await stack.start_server(server.handle, address, PORT)
    try:
        samples = []
        for kind in kinds:
            exchange = _exchange(lab, stack, server, kind, address)
            samples.append(await _watched(lab, exchange, kind))
        await asyncio.sleep(lab.config.rtt + 0.05)  # the last segments cross the link
    finally:
        srv.close()
        await srv.wait_closed()
    return samples


@contextlib.contextmanager
def in_lab(stack: Stack, lab: Lab) -> Iterator[None]:
    """The userspace stack takes the kernel's place in both namespaces of ``lab`` for the block
    (before any timing); the kernel's stack needs nothing."""
    if not isinstance(stack, NamespaceStacks):
        yield
        return
    with stack:
        for ns in (lab.client, lab.server):
            with ns.entered():
                stack.here()
        yield


def _counters(stack: Stack, ns: Netns) -> dict[str, int]:
    """The TFO counters of ``stack`` in ``ns``: the engine's, or the kernel's TcpExt."""
    return stack.counters(ns) if isinstance(stack, NamespaceStacks) else ns.counters()


def run_stack(
    stack: Stack, *, rtt: float = 0.1, samples: int = 3, ipv6: bool = False, seed: int = 0
) -> StackResult:
    """Time the three kinds of connection on ``stack`` over a fresh lab with this RTT."""
    with tempfile.TemporaryDirectory(prefix="fastopen-demo-") as tmp:
        capture = Path(tmp) / "link.pcap"
        with Lab(rtt=rtt, seed=seed, capture=capture) as lab, in_lab(stack, lab):
            result = StackResult(stack.name, lab.client.name, lab.server.name)
            server_addr: Addresses = lab.server_addr
            address = server_addr.ipv6 if ipv6 else server_addr.ipv4
            result.samples = asyncio.run(measure(lab, stack, plan(samples), address))
            client_counters, server_counters = (
                _counters(stack, lab.client),
                _counters(stack, lab.server),
            )
            result.counters = {
                name: (client_counters[name], server_counters[name]) for name in TFO_COUNTERS
            }
            shown = result.of(Kind.TFO_COOKIE)[-1]
            client_addr = lab.client_addr.ipv6 if ipv6 else lab.client_addr.ipv4
            ends = Endpoint(client_addr, shown.client_port), Endpoint(address, PORT)
            result.ladder = rungs(lab.packets(), *ends)
            result.ladder_ends = ends
    return result


def run(
    stacks: Sequence[Stack] | None = None,
    *,
    rtt: float = 0.1,
    samples: int = 3,
    ipv6: bool = False,
    seed: int = 0,
) -> list[StackResult]:
    """Run the demo on each stack (the kernel's by default)."""
    return [
        run_stack(stack, rtt=rtt, samples=samples, ipv6=ipv6, seed=seed)
        for stack in (stacks or [KernelStack()])
    ]


# -- without root: the engine pair over the virtual-time link -----------------------------------

#: The name the engine's results go by: not a wall-clock measurement.
VIRTUAL = "engine (virtual time)"


class _VirtualPair:
    """A client and a server engine joined by :class:`fastopen.engine.link.Link` (lossless,
    ``rtt`` round trip), the server answering each request with :data:`RESPONSE`."""

    def __init__(self, rtt: float, client: str, server: str, seed: int) -> None:
        self.packets: list[CapturedPacket] = []
        self.client = Host([client], tcp_fastopen=0x1)
        self.server = Host([server], tcp_fastopen=0x2)
        self.link = Link(
            self.client,
            self.server,
            delay=rtt / 2,
            seed=seed,
            encode=True,
            capture=lambda at, packet: self.packets.append(CapturedPacket(at, packet)),
        )
        self.server_addr = (server, PORT)
        self.listener = self.server.socket()
        self.listener.bind(self.server_addr)
        self.listener.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
        self.listener.listen(16)
        self.reports: dict[int, TfoReport] = {}
        self._requests: dict[EngineSocket, bytes] = {}

    def _serve(self) -> None:
        """Accept what is queued and answer every complete request (events only say when)."""
        now = self.link.now
        while self.server.next_event() is not None:
            pass
        while self.listener.accept_queue:
            child, _ = self.listener.accept(now)
            self._requests[child] = b""
        for child in list(self._requests):
            self._read_request(child, now)

    def _read_request(self, child: EngineSocket, now: float) -> None:
        with contextlib.suppress(EngineError):
            self._requests[child] += child.recv(65536, now)
        if len(self._requests[child]) >= len(REQUEST):
            port = child.getpeername()[1]
            self.reports[port] = report(child, Attempt(Side.SERVER, True), now)
            child.send(RESPONSE, now)
            child.close(now)
            del self._requests[child]

    def exchange(self, kind: Kind) -> Sample:
        link, now = self.link, self.link.now
        sock = self.client.socket()
        fastopen = kind is not Kind.PLAIN
        start, sent = now, False
        try:
            if fastopen:  # as Linux: without a cookie nothing is queued (EINPROGRESS)
                sent = sock.sendto(REQUEST, MSG_FASTOPEN, self.server_addr, now) == len(REQUEST)
            else:
                sock.connect(self.server_addr, now)
        except EngineError as exc:
            if exc.errno != errno.EINPROGRESS:
                raise
        answer, ttfb = b"", None
        while len(answer) < len(RESPONSE):
            if not link.step(start + EXCHANGE_TIMEOUT):
                raise FastOpenError(f"the engine pair stalled on {kind.value} (a bug)")
            self._serve()
            while (ev := self.client.next_event()) is not None:
                if isinstance(ev, Connected) and not sent:
                    sock.send(REQUEST, link.now)
                    sent = True
            with contextlib.suppress(EngineError):
                got = sock.recv(65536, link.now)
                if got and ttfb is None:
                    ttfb = link.now - start
                answer += got
        port = sock.getsockname()[1]
        off = None if fastopen else OffReason.DISABLED_BY_CALLER
        client_report = report(sock, Attempt(Side.CLIENT, fastopen, off), link.now)
        sock.close(link.now)
        link.advance(2 * link.delay + 0.001)  # the last segments cross the link
        self._serve()
        assert ttfb is not None
        return Sample(kind, ttfb, client_report, self.reports.get(port), port)


def run_virtual(
    *, rtt: float = 0.1, samples: int = 3, ipv6: bool = False, seed: int = 0
) -> StackResult:
    """The demo on the engine pair over the virtual-time link: no root, namespaces or TUN.

    The same three kinds of connection and the same figures, timed in the link's virtual time
    (exactly the round trips the segments take, no scheduling noise).
    """
    client_addr = CLIENT.ipv6 if ipv6 else CLIENT.ipv4
    server_addr = SERVER.ipv6 if ipv6 else SERVER.ipv4
    pair = _VirtualPair(rtt, client_addr, server_addr, seed)
    result = StackResult(VIRTUAL, "engine", "engine")
    result.samples = [pair.exchange(kind) for kind in plan(samples)]
    result.counters = {
        name: (pair.client.counters[name], pair.server.counters[name]) for name in TFO_COUNTERS
    }
    shown = result.of(Kind.TFO_COOKIE)[-1]
    ends = Endpoint(client_addr, shown.client_port), Endpoint(server_addr, PORT)
    result.ladder = rungs(sorted(pair.packets, key=lambda p: p.time), *ends)
    result.ladder_ends = ends
    return result
