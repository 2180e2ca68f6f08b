"""How the probe sends its SYNs: the userspace engine (every option under control) or kernel
sockets (no root needed, kind 34 only)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from errno import ECONNREFUSED, ECONNRESET
from pathlib import Path
from typing import Protocol, TypeVar

from fastopen.constants import TCP_FASTOPEN_CONNECT
from fastopen.engine.cache import CacheEntry
from fastopen.engine.rtt import RTO_INIT
from fastopen.errors import FastOpenError
from fastopen.kernel import tcp_metrics, tcpinfo
from fastopen.kernel.netns import identify
from fastopen.probe.model import Outcome, Step, Target
from fastopen.runtime.stack import UserspaceStack
from fastopen.runtime.transport import EngineTransport

#: ``tcpi_fastopen_client_fail``: the SYN (with data) timed out and went again without it.
_SYN_RETRANSMITTED = 3
T = TypeVar("T")
#: Bytes of the answer read before the connection is closed.
READ = 4096


class Driver(Protocol):
    """Makes one probe connection and tells what its SYN got back."""

    name: str
    #: The TFO option kinds it can send (34, and 254 for the experimental form).
    kinds: tuple[int, ...]

    async def attempt(
        self,
        target: Target,
        step: Step,
        request: bytes,
        cookie: tuple[bytes, int] | None,
        timeout: float,
    ) -> Outcome: ...


async def _address(target: Target) -> tuple[int, tuple[str, int]]:
    """(family, address) of the target's first address (a literal at once, a name by DNS)."""
    try:
        ip = ipaddress.ip_address(target.host)
    except ValueError:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_STREAM
        )
        if not infos:
            raise FastOpenError(f"{target.host} has no address") from None
        family, _, _, _, addr = infos[0]
        return int(family), (str(addr[0]), int(addr[1]))
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    return family, (str(ip), target.port)


async def _in_thread(work: Callable[[], T]) -> T:
    """``work()`` (blocking calls) in a new thread, born in this thread's network namespace (the
    executor's threads may be in another namespace)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(done.set_exception, exc)
        else:
            loop.call_soon_threadsafe(done.set_result, result)

    threading.Thread(target=run, name="probe-netlink").start()
    return await done


def _handshake(
    outcome: Outcome,
    client_fail: int,
    total_retrans: int,
    acked: bool,
    request: bytes,
    seconds: float,
) -> None:
    """What ``TCP_INFO`` shows of the handshake, which took ``seconds``: was the first SYN
    answered (for SYN data: not retransmitted without its data; else: no retransmission at all,
    and the answer came before the SYN's retransmission timer, ``RTO_INIT``, would have fired),
    and the SYN data acked (all of the request: it fits in one SYN).

    The time matters because a server retransmits its SYN-ACK after the same 1 s, and Linux's
    retransmission carries no TFO option (``tcp_rtx_synack`` passes no cookie): behind a box that
    drops SYN-ACKs with the option, that plain SYN-ACK may beat the client's own retransmission
    and look like an answer to the first SYN, without a cookie."""
    if outcome.step is Step.DATA:
        outcome.first_syn_answered = client_fail != _SYN_RETRANSMITTED
    else:
        outcome.first_syn_answered = total_retrans == 0 and seconds < RTO_INIT
    outcome.syn_data_acked = len(request) if acked else 0


def _answer(outcome: Outcome, first: bytes, start: float) -> None:
    """The first bytes of the answer arrived (or not), and when."""
    outcome.ok = bool(first)
    if first:
        outcome.ttfb_ms = (time.monotonic() - start) * 1000


def _failed(outcome: Outcome, exc: BaseException) -> Outcome:
    if isinstance(exc, TimeoutError):
        outcome.error = "no answer"
    else:
        outcome.reset = isinstance(exc, OSError) and exc.errno in (ECONNREFUSED, ECONNRESET)
        outcome.error = f"{type(exc).__name__}: {exc}"
    return outcome


class UserspaceDriver:
    """Probe connections on the userspace engine: before each, the engine's cookie cache for the
    target is set so that the SYN carries exactly what the step asks (no option, a cookie
    request of kind 34 or 254, or the cookie with the data). The engine's negative cache and
    fastopen's path cache are off on its stack: a probe measures, it does not learn."""

    name = "userspace"
    kinds: tuple[int, ...] = (34, 254)

    def __init__(self, stack: UserspaceStack) -> None:
        self.stack = stack
        stack.learn_paths = False
        stack.host.cookie_cache.negative_time = 0

    @classmethod
    def here(cls, *, pcap: os.PathLike[str] | None = None) -> UserspaceDriver:
        """A driver on a stack that takes over the addresses of this thread's namespace (never
        the root namespace's: the host's real addresses are not the probe's to take)."""
        if identify().host:
            raise FastOpenError(
                "the userspace probe takes over the addresses of its namespace; "
                "it does not do that in the root namespace",
                hint="run it in a namespace (--netns NAME), or use --driver kernel",
            )
        stack = UserspaceStack.replace_kernel(None, pcap=None if pcap is None else Path(pcap))
        return cls(stack)

    def close(self) -> None:
        self.stack.close()

    async def attempt(
        self,
        target: Target,
        step: Step,
        request: bytes,
        cookie: tuple[bytes, int] | None,
        timeout: float,
    ) -> Outcome:
        _, (host, port) = await _address(target)
        server = ipaddress.ip_address(host)
        engine = self.stack.host
        local = engine.source_address(server)
        cache = engine.cookie_cache
        cache.delete(server)
        outcome = Outcome(step)
        if step is Step.REQUEST_34:
            outcome.sent_kind = 34
        elif step is Step.REQUEST_254:
            outcome.sent_kind = 254
            cache.entries[(local, server)] = CacheEntry(try_exp=1)
        elif step is Step.DATA:
            assert cookie is not None
            outcome.sent_kind = cookie[1]
            cache.entries[(local, server)] = CacheEntry(
                cookie=cookie[0], experimental=cookie[1] == 254
            )
        tfo = outcome.sent_kind is not None
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await self.stack.open_connection(
                    host, port, first_flight=request, fastopen=tfo
                )
                try:
                    seconds = time.monotonic() - start
                    transport = writer.transport
                    assert isinstance(transport, EngineTransport)
                    info = transport.sock.tcp_info(self.stack.now())
                    acked = writer.get_extra_info("fastopen").syn_data_acked
                    fail, retrans = info.tcpi_fastopen_client_fail, info.tcpi_total_retrans
                    _handshake(outcome, fail, retrans, acked, request, seconds)
                    _answer(outcome, await reader.read(READ), start)
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:
            _failed(outcome, exc)
        entry = cache.entries.get((local, server))
        if tfo and entry is not None and entry.cookie:
            outcome.cookie = entry.cookie
            outcome.cookie_kind = 254 if entry.experimental else 34
        return outcome


class KernelDriver:
    """Probe connections on kernel sockets: kind 34 only (the kernel chooses the kind), the
    cookie read from the kernel's cache (``tcp_metrics``); before a cookie request the cached
    entry is flushed, which needs root: without it a cached cookie turns the request into SYN
    data."""

    name = "kernel"
    kinds: tuple[int, ...] = (34,)

    async def attempt(
        self,
        target: Target,
        step: Step,
        request: bytes,
        cookie: tuple[bytes, int] | None,
        timeout: float,
    ) -> Outcome:
        family, addr = await _address(target)
        server = ipaddress.ip_address(addr[0])
        loop = asyncio.get_running_loop()
        outcome = Outcome(step)
        if step is Step.REQUEST_34 and os.geteuid() == 0:
            await _in_thread(lambda: tcp_metrics.flush(server))
        tfo = step in (Step.REQUEST_34, Step.DATA)
        sock = socket.socket(family, socket.SOCK_STREAM)
        start = time.monotonic()
        try:
            sock.setblocking(False)
            if tfo:
                outcome.sent_kind = 34
                sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, addr)  # deferred when a cookie is cached
                await loop.sock_sendall(sock, request)  # handshake done (or SYN data sent)
                seconds = time.monotonic() - start
                first = await loop.sock_recv(sock, READ)
            info = tcpinfo.read(sock)
            fail, retrans = info.fastopen_client_fail, info.total_retrans
            _handshake(outcome, fail, retrans, info.syn_data, request, seconds)
            _answer(outcome, first, start)
        except (OSError, TimeoutError) as exc:
            _failed(outcome, exc)
        finally:
            sock.close()
        if tfo:
            with contextlib.suppress(FastOpenError, OSError):
                cached = await _in_thread(tcp_metrics.entries)
                found = [e for e in cached if e.destination == server]
                if found and found[0].cookie:
                    outcome.cookie = found[0].cookie
        return outcome
