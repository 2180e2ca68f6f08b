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
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fastopen.constants import TFO_COUNTERS
from fastopen.lab.emulator import Lab
from fastopen.lab.ladder import Endpoint, Rung, rungs
from fastopen.lab.netns import Addresses, Netns
from fastopen.report import TfoReport
from fastopen.runtime import NamespaceStacks
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
            samples.append(await asyncio.wait_for(exchange, EXCHANGE_TIMEOUT))
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
