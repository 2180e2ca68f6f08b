"""fastopen.engine: a sans-I/O TCP endpoint with TCP Fast Open (RFC 7413), as Linux does it.

The engine never reads a clock, touches a socket or starts a thread. Inputs are application calls
on :class:`EngineSocket`, received packets and timer expiry, each with ``now``; outputs are
packets to send, events and the next timer. See docs/engine-api.md.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES

from fastopen.engine import tcb as _tcb
from fastopen.engine.cache import CacheEntry, CookieCache, NegativeEntry, NegativeReason
from fastopen.engine.events import (
    Accepted,
    Closed,
    Connected,
    EngineError,
    Event,
    Readable,
    SocketEvent,
    Writable,
)
from fastopen.engine.host import ConnectionFault, Host
from fastopen.engine.info import FastOpenClientFail, TcpInfo
from fastopen.engine.settings import Settings
from fastopen.engine.socket import EngineSocket
from fastopen.engine.states import TRANSITIONS, TcpEvent, TcpState

#: whether this engine was compiled by mypyc (``FASTOPEN_MYPYC=1`` at build time, see setup.py)
#: or runs as Python source; the compiled engine is the same code, a few times faster
COMPILED = _tcb.__file__ is not None and _tcb.__file__.endswith(tuple(EXTENSION_SUFFIXES))
#: the same in words, as the benchmarks print it
ENGINE_BUILD = "compiled by mypyc" if COMPILED else "as Python source"

__all__ = [
    "COMPILED",
    "ENGINE_BUILD",
    "TRANSITIONS",
    "Accepted",
    "CacheEntry",
    "Closed",
    "Connected",
    "ConnectionFault",
    "CookieCache",
    "EngineError",
    "EngineSocket",
    "Event",
    "FastOpenClientFail",
    "Host",
    "NegativeEntry",
    "NegativeReason",
    "Readable",
    "Settings",
    "SocketEvent",
    "TcpEvent",
    "TcpInfo",
    "TcpState",
    "Writable",
]
