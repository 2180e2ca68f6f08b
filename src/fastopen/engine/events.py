"""What the engine tells the application: frozen event dataclasses, and its one error type."""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastopen.errors import FastOpenError

if TYPE_CHECKING:
    from fastopen.engine.socket import EngineSocket


class EngineError(FastOpenError, OSError):
    """A socket call failed as Linux's would: ``.errno`` is Linux's errno for the situation.

    ``EngineError(code)`` is an instance of the :class:`OSError` subclass Python gives that errno
    (``EngineError(ECONNRESET)`` is a :class:`ConnectionResetError`, ``ETIMEDOUT`` a
    :class:`TimeoutError`, ``EAGAIN`` a :class:`BlockingIOError`...), so code written for the
    socket module's errors handles the engine's alike; it stays an :class:`EngineError`.
    """

    def __new__(cls, code: int, hint: str | None = None) -> EngineError:
        if cls is EngineError:
            cls = _BY_KIND.get(type(OSError(code, "")), EngineError)
        return super().__new__(cls, code, os.strerror(code))

    def __init__(self, code: int, hint: str | None = None) -> None:
        name = _errno.errorcode.get(code, str(code))
        FastOpenError.__init__(self, f"{name}: {os.strerror(code)}", hint=hint)
        self.errno = code
        self.strerror = os.strerror(code)
        self.args = (code, self.strerror)


class EngineBlockingIOError(EngineError, BlockingIOError):
    """EAGAIN, EINPROGRESS, EALREADY: the call would block, or the connect is under way."""


class EngineBrokenPipeError(EngineError, BrokenPipeError):
    """EPIPE: the connection can no longer send."""


class EngineConnectionAbortedError(EngineError, ConnectionAbortedError):
    """ECONNABORTED."""


class EngineConnectionRefusedError(EngineError, ConnectionRefusedError):
    """ECONNREFUSED: the peer answered the SYN with a RST."""


class EngineConnectionResetError(EngineError, ConnectionResetError):
    """ECONNRESET: the peer reset the connection."""


class EnginePermissionError(EngineError, PermissionError):
    """EACCES, EPERM."""


class EngineTimeoutError(EngineError, TimeoutError):
    """ETIMEDOUT: the connect or the connection gave up retransmitting."""


_BY_KIND: dict[type[OSError], type[EngineError]] = {
    kind.__bases__[1]: kind
    for kind in (
        EngineBlockingIOError,
        EngineBrokenPipeError,
        EngineConnectionAbortedError,
        EngineConnectionRefusedError,
        EngineConnectionResetError,
        EnginePermissionError,
        EngineTimeoutError,
    )
}


@dataclass(frozen=True, slots=True)
class SocketEvent:
    """Something happened on ``sock``."""

    sock: EngineSocket


@dataclass(frozen=True, slots=True)
class Readable(SocketEvent):
    """Data, end of stream or an error is there to read."""


@dataclass(frozen=True, slots=True)
class Writable(SocketEvent):
    """Room in the send buffer again, after a send ran out of it."""


@dataclass(frozen=True, slots=True)
class Connected(SocketEvent):
    """An active open completed (SYN-ACK received)."""


@dataclass(frozen=True, slots=True)
class Closed(SocketEvent):
    """The connection is gone: ``error`` is None after an orderly close, else the errno."""

    error: int | None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A connection is ready to be accepted on this listener."""

    listener: EngineSocket


Event = Readable | Writable | Accepted | Connected | Closed
