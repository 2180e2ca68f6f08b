"""The asyncio stream objects of a TFO connection, on any stack: one writer per transport.

:class:`FastOpenProtocol` is an :class:`asyncio.StreamReaderProtocol` that builds the
connection's only :class:`FastOpenStreamWriter` itself when its transport is made, and (on a
server) runs the handler with it. asyncio's own server protocol makes a plain ``StreamWriter``
that the handler would have to be given; a second writer wrapped around the same transport
leaves asyncio's to be collected, and from Python 3.13 on a collected writer closes its
transport. Here no other writer exists, and the protocol keeps its writer while the connection
lives (as asyncio does for the streams it hands a handler).

Both stacks use this module; :mod:`fastopen.streams` builds the stack-neutral API on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastopen.report import TfoReport

log = logging.getLogger("fastopen.streams")

#: The default buffer limit of asyncio streams.
LIMIT = 2**16

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None] | None]

#: The connection's TFO report, read when asked for (from the transport it rides on).
ReportSource = Callable[[asyncio.BaseTransport], TfoReport]


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
        report: ReportSource,
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
            report = self._fastopen_report(self.transport)
            for amend in self._fastopen_amend:
                report = amend(report)
            return report
        if name in self._fastopen_extra:
            return self._fastopen_extra[name]
        value = super().get_extra_info(name)
        if value is None and name == "peername" and self._fastopen_peer is not None:
            return self._fastopen_peer
        return default if value is None else value


class FastOpenProtocol(asyncio.StreamReaderProtocol):
    """The protocol of one TFO connection: its reader, its one writer, its handler if a server's.

    ``writer`` exists from ``connection_made`` on. ``handler(reader, writer)`` (a server's) runs
    as a task; when it fails the transport is closed, and a connection the peer reset or broke
    is logged in one line, not as an unhandled exception.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        loop: asyncio.AbstractEventLoop,
        *,
        report: ReportSource,
        handler: Handler | None = None,
        peer: Any = None,
    ) -> None:
        super().__init__(reader, loop=loop)
        self._reader = reader  # asyncio's client protocol holds its reader weakly
        self._report = report
        self._handler = handler
        self._peer = peer
        self._loop_ref = loop
        self._handler_task: asyncio.Task[None] | None = None
        self.writer: FastOpenStreamWriter | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert isinstance(transport, asyncio.WriteTransport)
        self.writer = FastOpenStreamWriter(
            transport, self, self._reader, self._loop_ref, report=self._report, peer=self._peer
        )
        if self._handler is None:
            return
        result = self._handler(self._reader, self.writer)
        if asyncio.iscoroutine(result):
            self._handler_task = self._loop_ref.create_task(result)
            self._handler_task.add_done_callback(self._handler_done)

    def _handler_done(self, task: asyncio.Task[None]) -> None:
        writer = self.writer
        transport = None if writer is None else writer.transport
        if task.cancelled():
            if transport is not None:
                transport.close()
            return
        exc = task.exception()
        if exc is None:
            return
        if isinstance(exc, ConnectionError):
            peer = None if writer is None else writer.get_extra_info("peername")
            log.info("connection from %s ended: %s", peer, exc)
        else:
            self._loop_ref.call_exception_handler(
                {
                    "message": "Unhandled exception in a fastopen server handler",
                    "exception": exc,
                    "transport": transport,
                    "protocol": self,
                }
            )
        if transport is not None:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._handler_task = None
