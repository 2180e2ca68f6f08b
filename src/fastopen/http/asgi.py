"""TFO for ASGI servers: a middleware that puts each request's report in
``scope["extensions"]["fastopen"]``, for the connections a TFO listener accepted
(:mod:`fastopen.http.listeners`; :mod:`fastopen.http.uvicorn_server` and
:mod:`fastopen.http.hypercorn_server` set both up).

In the application, ``scope["extensions"]["fastopen"]`` is a
:class:`~fastopen.http.reports.RequestReport` (``in_syn``: the request came in the SYN's data,
so it may be a replay). The report needs the connection's socket, which ASGI servers keep to
themselves: the listener records what it accepts, so the loop must call its ``accept`` (asyncio's
own loop; uvloop accepts in C, and the helpers choose ``loop="asyncio"``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastopen.http.listeners import connection_at, request_report

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class FastOpenMiddleware:
    """ASGI middleware: ``scope["extensions"]["fastopen"]`` is the request's report, for the
    connections a :class:`~fastopen.http.listeners.FastOpenListener` accepted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            connection = connection_at(scope.get("server"), scope.get("client"))
            if connection is not None:
                tls = scope.get("scheme") in ("https", "wss")
                extensions = {
                    **(scope.get("extensions") or {}),
                    "fastopen": request_report(connection, tls=tls),
                }
                scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)
