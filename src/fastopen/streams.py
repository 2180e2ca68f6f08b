"""asyncio streams with TCP Fast Open, on the kernel's stack or on any other :class:`Stack`.

``open_connection`` and ``start_server`` work like their asyncio namesakes, plus TFO: the client's
``first_flight`` (bytes the caller declares safe to replay) rides in the SYN; the server's listener
gets a fastopen backlog and optionally its own key ring. On both ends
``writer.get_extra_info("fastopen")`` returns a :class:`~fastopen.report.TfoReport`.

``stack=None`` means the kernel's stack (:class:`KernelStack`); a userspace stack implements the
same :class:`Stack` protocol and is passed as ``stack=``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl as _ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from fastopen.cookies import KeyRing
from fastopen.kernel import attempts, client, server, tcpinfo
from fastopen.kernel.client import SocketOption
from fastopen.report import OffReason, Side, TfoReport

#: The default buffer limit of asyncio streams.
LIMIT = 2**16

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]


class FastOpenStreamWriter(asyncio.StreamWriter):
    """A StreamWriter that answers ``get_extra_info("fastopen")`` with the connection's report.

    ``get_extra_info("peername")`` gives the peer's address even while the kernel defers the
    connect (``getpeername`` fails with ENOTCONN until the SYN has gone out).
    """

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        protocol: asyncio.BaseProtocol,
        reader: asyncio.StreamReader | None,
        loop: asyncio.AbstractEventLoop,
        *,
        report: Callable[[], TfoReport],
        peer: Any = None,
    ) -> None:
        super().__init__(transport, protocol, reader, loop)
        self._fastopen_report = report
        self._fastopen_peer = peer
        self._fastopen_extra: dict[str, Any] = {}
        self._fastopen_amend: list[Callable[[TfoReport], TfoReport]] = []

    def annotate(
        self, name: str, value: Any, amend: Callable[[TfoReport], TfoReport] | None = None
    ) -> None:
        """Add ``get_extra_info(name)`` and, with ``amend``, a change to the TFO report (for the
        layers above the stacks: the replay guard)."""
        self._fastopen_extra[name] = value
        if amend is not None:
            self._fastopen_amend.append(amend)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "fastopen":
            report = self._fastopen_report()
            for amend in self._fastopen_amend:
                report = amend(report)
            return report
        if name in self._fastopen_extra:
            return self._fastopen_extra[name]
        value = super().get_extra_info(name)
        if value is None and name == "peername" and self._fastopen_peer is not None:
            return self._fastopen_peer
        return default if value is None else value


async def _streams(
    sock: socket.socket,
    peer: Any,
    limit: int,
    *,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> tuple[asyncio.StreamReader, FastOpenStreamWriter]:
    """asyncio streams over a kernel socket fastopen connected (the socket is closed on failure)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
    try:
        transport, _ = await loop.create_connection(
            lambda: protocol, sock=sock, ssl=ssl, server_hostname=server_hostname
        )
    except BaseException:
        sock.close()
        raise
    writer = FastOpenStreamWriter(
        transport, protocol, reader, loop, report=lambda: attempts.report(sock), peer=peer
    )
    return reader, writer


class ServerGuard(Protocol):
    """What ``start_server(replay_guard=...)`` asks of a guard (``fastopen.replay.ReplayGuard``)."""

    def wrap(self, handler: Handler) -> Handler: ...

    async def listening(self, server: asyncio.AbstractServer) -> None: ...


class Stack(Protocol):
    """A TCP stack that speaks TFO through asyncio streams (the kernel's, or a userspace one)."""

    name: str

    async def open_connection(
        self,
        host: str,
        port: int,
        *,
        first_flight: bytes = b"",
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        local_addr: tuple[str, int] | None = None,
        fastopen: bool = True,
        limit: int = LIMIT,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect; ``first_flight`` (declared safe to replay) may ride in the SYN."""
        ...

    async def start_server(
        self,
        handler: Handler,
        host: str | None,
        port: int,
        *,
        fastopen_backlog: int | None = None,
        keys: KeyRing | None = None,
        ssl: _ssl.SSLContext | None = None,
        backlog: int = 100,
        limit: int = LIMIT,
    ) -> asyncio.AbstractServer:
        """Listen with TFO on; ``handler(reader, writer)`` runs for each connection."""
        ...


class KernelStack:
    """The Linux kernel's own TCP stack, with TFO through its socket interface.

    Client: ``TCP_FASTOPEN_CONNECT``, falling back to ``MSG_FASTOPEN`` and to a plain connect
    (the reason is in the report). With ``ssl`` the TLS ClientHello (always safe to replay) is
    the data that rides in the SYN and ``first_flight`` follows the handshake; only the first
    address of the name is tried when the connect is deferred. Server: ``TCP_FASTOPEN`` with a
    fastopen backlog of ``net.core.somaxconn`` unless given, and ``TCP_FASTOPEN_KEY`` for ``keys``.
    """

    name = "kernel"

    async def open_connection(
        self,
        host: str,
        port: int,
        *,
        first_flight: bytes = b"",
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        local_addr: tuple[str, int] | None = None,
        fastopen: bool = True,
        limit: int = LIMIT,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sock, peer = await client.open_socket(
            host,
            port,
            b"" if ssl else first_flight,
            fastopen=fastopen,
            deferred=ssl is not None,
            local_addr=local_addr,
        )
        reader, writer = await _streams(
            sock, peer, limit, ssl=ssl, server_hostname=(server_hostname or host) if ssl else None
        )
        if ssl and first_flight:
            writer.write(first_flight)
        return reader, writer

    async def start_server(
        self,
        handler: Handler,
        host: str | None,
        port: int,
        *,
        fastopen_backlog: int | None = None,
        keys: KeyRing | None = None,
        ssl: _ssl.SSLContext | None = None,
        backlog: int = 100,
        limit: int = LIMIT,
    ) -> asyncio.AbstractServer:
        loop = asyncio.get_running_loop()

        def connected(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> Awaitable[None] | None:
            tsock = writer.get_extra_info("socket")
            fwriter = FastOpenStreamWriter(
                writer.transport,
                writer.transport.get_protocol(),
                reader,
                loop,
                report=lambda: attempts.build_report(tcpinfo.read(tsock), attempt),
            )
            return handler(reader, fwriter)

        def factory() -> asyncio.StreamReaderProtocol:
            reader = asyncio.StreamReader(limit=limit, loop=loop)
            return asyncio.StreamReaderProtocol(reader, connected, loop=loop)

        srv = await loop.create_server(
            factory, host, port, ssl=ssl, backlog=backlog, reuse_address=True, start_serving=False
        )
        off: OffReason | None = None
        try:
            for lsock in srv.sockets:
                off = server.enable(lsock, fastopen_backlog=fastopen_backlog, keys=keys)
        except BaseException:
            srv.close()
            raise
        attempt = attempts.Attempt(Side.SERVER, attempted=off is None, off_reason=off)
        await srv.start_serving()
        return srv


def _userspace() -> Stack:
    """The userspace engine in place of the kernel, in each namespace it is used from."""
    from fastopen.runtime import NamespaceStacks  # the runtime builds on this module

    return NamespaceStacks()


#: The stacks by name (``fastopen serve/get/demo --stack``, bench/latency_grid.py).
STACKS: dict[str, Callable[[], Stack]] = {"kernel": KernelStack, "userspace": _userspace}

_KERNEL = KernelStack()


async def open_connection(
    host: str,
    port: int,
    *,
    first_flight: bytes = b"",
    stack: Stack | None = None,
    ssl: _ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    local_addr: tuple[str, int] | None = None,
    fastopen: bool = True,
    limit: int = LIMIT,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a connection like :func:`asyncio.open_connection`, with TFO.

    ``first_flight`` is sent at once and rides in the SYN when a cookie is cached; passing it
    declares it safe to replay (SYN data may be delivered twice). Without it TFO is not used.
    Every address ``host`` resolves to is tried. ``writer.get_extra_info("fastopen")`` is the
    connection's :class:`~fastopen.report.TfoReport`.
    """
    return await (stack or _KERNEL).open_connection(
        host,
        port,
        first_flight=first_flight,
        ssl=ssl,
        server_hostname=server_hostname,
        local_addr=local_addr,
        fastopen=fastopen,
        limit=limit,
    )


async def start_server(
    handler: Handler,
    host: str | None,
    port: int,
    *,
    fastopen_backlog: int | None = None,
    keys: KeyRing | None = None,
    stack: Stack | None = None,
    ssl: _ssl.SSLContext | None = None,
    backlog: int = 100,
    limit: int = LIMIT,
    replay_guard: ServerGuard | None = None,
) -> asyncio.AbstractServer:
    """Start a server like :func:`asyncio.start_server`, with TFO on its listeners.

    ``fastopen_backlog`` bounds pending fast open requests (default ``net.core.somaxconn``);
    ``keys`` gives the listeners their own key ring instead of the namespace's key.
    ``replay_guard`` (a :class:`fastopen.replay.ReplayGuard`) checks every connection before
    ``handler`` runs: ``writer.get_extra_info("replay")`` is its verdict.
    """
    if replay_guard is not None:
        handler = replay_guard.wrap(handler)
    server = await (stack or _KERNEL).start_server(
        handler,
        host,
        port,
        fastopen_backlog=fastopen_backlog,
        keys=keys,
        ssl=ssl,
        backlog=backlog,
        limit=limit,
    )
    if replay_guard is not None:
        try:
            await replay_guard.listening(server)
        except BaseException:
            server.close()
            raise
    return server


async def open_deferred(
    host: str,
    port: int,
    *,
    replay_safe: bool,
    local_addr: tuple[str, int] | None = None,
    socket_options: Iterable[SocketOption] = (),
    limit: int = LIMIT,
) -> tuple[asyncio.StreamReader, FastOpenStreamWriter]:
    """Kernel-stack streams whose first write rides in the SYN (when ``replay_safe``).

    For protocol libraries that write their first flight themselves (an HTTP client, or TLS with
    ``writer.start_tls``): with a cookie cached the connect stays deferred until that write.
    """
    sock, peer = await client.open_socket(
        host, port, deferred=True, replay_safe=replay_safe, local_addr=local_addr
    )
    return await _streams(client.set_options(sock, socket_options), peer, limit)
