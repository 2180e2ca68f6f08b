"""fastopen.runtime: the engine on a real wire, a TUN device, with the asyncio streams API.

``UserspaceStack.attach(ns, "fous0", ["198.18.1.2/24", "fd00:f1::2/64"])`` makes a stack that
owns those addresses in ``ns``; pass it as ``stack=`` to :func:`fastopen.open_connection` and
:func:`fastopen.start_server`.
"""

from __future__ import annotations

from fastopen.runtime.stack import (
    EngineServer,
    NamespaceStacks,
    UnsupportedOnUserspace,
    UserspaceStack,
    report,
)
from fastopen.runtime.transport import EngineTransport
from fastopen.runtime.tun import open_tun, route_into

__all__ = [
    "EngineServer",
    "EngineTransport",
    "NamespaceStacks",
    "UnsupportedOnUserspace",
    "UserspaceStack",
    "open_tun",
    "report",
    "route_into",
]
