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
    """A socket call failed as Linux's would: ``.errno`` is Linux's errno for the situation."""

    def __init__(self, code: int, hint: str | None = None) -> None:
        name = _errno.errorcode.get(code, str(code))
        FastOpenError.__init__(self, f"{name}: {os.strerror(code)}", hint=hint)
        self.errno = code
        self.strerror = os.strerror(code)
        self.args = (code, self.strerror)


@dataclass(frozen=True, slots=True)
class Readable:
    """Data, end of stream or an error is there to read."""

    sock: EngineSocket


@dataclass(frozen=True, slots=True)
class Writable:
    """Room in the send buffer again, after a send ran out of it."""

    sock: EngineSocket


@dataclass(frozen=True, slots=True)
class Accepted:
    """A connection is ready to be accepted on this listener."""

    listener: EngineSocket


@dataclass(frozen=True, slots=True)
class Connected:
    """An active open completed (SYN-ACK received)."""

    sock: EngineSocket


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection is gone: ``error`` is None after an orderly close, else the errno."""

    sock: EngineSocket
    error: int | None


Event = Readable | Writable | Accepted | Connected | Closed
