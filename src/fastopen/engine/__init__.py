"""fastopen.engine: a sans-I/O TCP endpoint with TCP Fast Open (RFC 7413), as Linux does it.

The engine never reads a clock, touches a socket or starts a thread. Inputs are application calls
on :class:`EngineSocket`, received packets and timer expiry, each with ``now``; outputs are
packets to send, events and the next timer. See docs/engine-api.md.
"""

from __future__ import annotations

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

__all__ = [
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
