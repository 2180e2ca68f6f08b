"""asyncio transports over engine sockets: the bridge between the engine and asyncio protocols.

An :class:`EngineTransport` is what ``loop.create_connection`` would hand a protocol, but its
socket is an :class:`~fastopen.engine.EngineSocket`: writes go into the engine (what its send
buffer has no room for waits here, with asyncio's flow control), data the engine delivers goes
to ``protocol.data_received``. The stack (:class:`Wire`) calls :meth:`EngineTransport.read_ready`,
:meth:`~EngineTransport.write_ready` and :meth:`~EngineTransport.closed` on engine events.
"""

from __future__ import annotations

import asyncio
import errno
from typing import Any, Protocol

from fastopen.engine import EngineError, EngineSocket, TcpState
from fastopen.engine.socket import SHUT_WR

#: Bytes asked of the engine per recv call: as much as asyncio's socket transports read at once
#: (``max_size``). A smaller read leaves the rest of a batch queued, and the queue's bytearray is
#: copied whole when it grows after a read took bytes off its front.
RECV_SIZE = 256 * 1024
#: asyncio's default write buffer limits.
HIGH_WATER = 64 * 1024
#: Bytes offered to the engine per send call at most: what waits is copied that much at a time,
#: not whole on every call (a 20 MB write would be copied again each time the engine takes some).
SEND_CHUNK = 256 * 1024


class Wire(Protocol):
    """What a transport needs from its stack."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def now(self) -> float:
        """The engine's clock (the loop's)."""
        ...

    def kick(self) -> None:
        """Send what the engine has to send and re-arm its timer, soon."""
        ...

    def forget(self, sock: EngineSocket) -> None:
        """``sock`` is closed: its events no longer concern this transport."""
        ...


class EngineTransport(asyncio.Transport):
    """A TCP connection of the userspace stack as an asyncio transport."""

    def __init__(
        self,
        wire: Wire,
        sock: EngineSocket,
        protocol: asyncio.Protocol,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(extra)
        self._wire = wire
        self._sock = sock
        self._protocol = protocol
        #: What waits for room in the engine: a bytearray, or a view of the bytes one write left
        #: (bytes cannot change: they wait as they are, not copied).
        self._buffer: bytearray | memoryview = bytearray()
        self._high = HIGH_WATER
        self._low = HIGH_WATER // 4
        self._protocol_paused = False
        self._reading = True
        self._eof_received = False
        self._eof_pending = False
        self._closing = False
        self._lost = False
        protocol.connection_made(self)
        self.read_ready()

    @property
    def sock(self) -> EngineSocket:
        return self._sock

    # -- events from the stack -------------------------------------------------------------------

    def read_ready(self) -> None:
        """Hand the protocol what the engine has received (data, end of stream, an error)."""
        sock, protocol = self._sock, self._protocol
        while self._reading and not self._closing:
            try:
                data = sock.recv_ready(RECV_SIZE, self._wire.now())
            except EngineError as exc:
                self._fatal(exc)
                break
            if data is None:
                break  # drained
            if not data:
                if not self._eof_received:
                    self._eof_received = True
                    if not protocol.eof_received():
                        self.close()
                break
            protocol.data_received(data)
        self._wire.kick()  # reading opened the receive window: a window update may be due

    def write_ready(self) -> None:
        """The engine's send buffer has room again: move the waiting bytes into it."""
        if self._buffer and not self._lost:
            sent, error = self._push(self._buffer)
            if error is not None:
                self._fatal(error)
                return
            if not sent:
                return
            self._consumed(sent)
            self._wire.kick()
            if self._protocol_paused and len(self._buffer) <= self._low:
                self._protocol_paused = False
                self._protocol.resume_writing()
        if not self._buffer:
            if self._eof_pending:
                self._shutdown()
            if self._closing and not self._lost:
                self._finish_close()

    def closed(self, error: int | None) -> None:
        """The engine dropped the connection (``error`` is the errno, None after an orderly end)."""
        self._buffer = bytearray()
        self._end(None if error is None else EngineError(error))

    # -- asyncio.WriteTransport ------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_pending:
            raise RuntimeError("cannot write after write_eof()")
        if not data or self._closing or self._lost:
            return
        rest = memoryview(data)
        if not self._buffer:
            sent, error = self._push(rest)
            if error is not None:
                self._fatal(error)
                return
            self._wire.kick()
            rest = rest[sent:]
        if rest:
            buf = self._buffer
            if not buf and isinstance(data, bytes):
                self._buffer = rest
            else:
                if isinstance(buf, memoryview):
                    buf = self._buffer = bytearray(buf)
                buf += rest
            if not self._protocol_paused and len(self._buffer) > self._high:
                self._protocol_paused = True
                self._protocol.pause_writing()

    def write_eof(self) -> None:
        if self._eof_pending or self._closing:
            return
        self._eof_pending = True
        if not self._buffer:
            self._shutdown()

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = HIGH_WATER if high is None else high
        self._low = self._high // 4 if low is None else low
        if not 0 <= self._low <= self._high:
            raise ValueError(f"high ({self._high}) must be >= low ({self._low}) must be >= 0")

    def abort(self) -> None:
        """Drop the connection with a RST, at once (nothing, once it is lost: asyncio's too)."""
        if self._lost:
            return  # closed and handed back to the engine (in TIME_WAIT, say), or reset
        self._buffer = bytearray()
        conn = self._sock.conn
        if conn is not None and conn.state is not TcpState.CLOSED:
            conn.abort(self._wire.now())
        self._closing = True
        self._finish_close()

    # -- asyncio.ReadTransport -------------------------------------------------------------------

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._wire.loop.call_soon(self.read_ready)

    # -- asyncio.BaseTransport -------------------------------------------------------------------

    def close(self) -> None:
        """Send what is buffered, then an orderly close (a FIN; the engine finishes it)."""
        if self._closing:
            return
        self._closing = True
        if not self._buffer:
            self._finish_close()

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    # -- internals -------------------------------------------------------------------------------

    def _consumed(self, sent: int) -> None:
        """``sent`` bytes of the buffer went into the engine."""
        buf = self._buffer
        if isinstance(buf, memoryview):
            self._buffer = buf[sent:] if sent < len(buf) else bytearray()
        else:
            del buf[:sent]

    def _push(self, data: bytes | bytearray | memoryview) -> tuple[int, EngineError | None]:
        """Hand the engine as much of ``data`` as it takes, :data:`SEND_CHUNK` at a time (the
        engine copies what it takes): how much it took, and the error that stopped it (None
        for a full send buffer)."""
        sent, now = 0, self._wire.now()
        with memoryview(data) as view:
            while sent < len(view):
                chunk = view[sent : sent + SEND_CHUNK]
                try:
                    took = self._sock.send(chunk, now)
                except EngineError as exc:
                    return sent, None if exc.errno == errno.EAGAIN else exc
                sent += took
                if took < len(chunk):
                    break
        return sent, None

    def _shutdown(self) -> None:
        try:
            self._sock.shutdown(SHUT_WR, self._wire.now())
        except EngineError as exc:
            self._fatal(exc)
            return
        self._wire.kick()

    def _finish_close(self) -> None:
        self._sock.close(self._wire.now())
        self._wire.kick()
        self._end(None)

    def _fatal(self, exc: EngineError) -> None:
        self._buffer = bytearray()
        self._closing = True
        self._sock.close(self._wire.now())
        self._wire.kick()
        self._end(exc)

    def _end(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._wire.forget(self._sock)
        self._wire.loop.call_soon(self._protocol.connection_lost, exc)
