"""TFO for ASGI servers: a middleware that puts each request's report in
``scope["extensions"]["fastopen"]``, and uvicorn and hypercorn on TFO listeners.

::

    # uvicorn: a Server and its TFO listener (fastopen backlog 256, the key store's ring)
    server, listener = uvicorn_server(app, host="198.18.0.2", port=8000, fastopen_backlog=256,
                                      keys="/var/lib/fastopen/tfo-key.json")
    server.run(sockets=[listener])

    # hypercorn: its Config with TFO on the sockets it binds
    config = FastOpenConfig()
    config.bind = ["198.18.0.2:8000"]
    asyncio.run(serve_hypercorn(app, config))

In the application, ``scope["extensions"]["fastopen"]`` is a
:class:`~fastopen.http.reports.RequestReport` (``in_syn``: the request came in the SYN's data,
so it may be a replay). The report needs the connection's socket, which ASGI servers keep to
themselves: the listener records what it accepts, so the loop must call its ``accept`` (asyncio's
own loop; uvloop accepts in C, and the helpers choose ``loop="asyncio"``).
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, cast

import hypercorn.asyncio
import hypercorn.config
import uvicorn

from fastopen.http.listeners import Keys, adopt, connection_at, request_report

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_TCP = (socket.AF_INET, socket.AF_INET6)


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


def uvicorn_server(
    app: ASGIApp,
    *,
    fastopen_backlog: int | None = None,
    keys: Keys | None = None,
    **config: Any,
) -> tuple[uvicorn.Server, socket.socket]:
    """A ``uvicorn.Server`` for ``app`` (wrapped in :class:`FastOpenMiddleware`) and the socket
    it is to serve on, bound as ``config`` says (``host``, ``port``, ``fd``...; any
    ``uvicorn.Config`` argument) with TFO on: run it with ``server.run(sockets=[sock])`` or
    ``await server.serve(sockets=[sock])``."""
    config.setdefault("loop", "asyncio")
    uconfig = uvicorn.Config(FastOpenMiddleware(app), **config)
    sock = uconfig.bind_socket()
    if sock.family in _TCP:
        sock = adopt(sock, fastopen_backlog=fastopen_backlog, keys=keys)
    return uvicorn.Server(uconfig), sock


class FastOpenConfig(hypercorn.config.Config):
    """A hypercorn ``Config`` whose TCP sockets (``bind``, ``insecure_bind``, ``fd://``) have TFO
    on: set ``fastopen_backlog`` and ``fastopen_keys`` (a ring or a key store's path)."""

    fastopen_backlog: int | None = None
    fastopen_keys: Keys | None = None

    def create_sockets(self) -> hypercorn.config.Sockets:
        made = super().create_sockets()

        def tfo(socks: list[socket.socket]) -> list[socket.socket]:
            return [
                adopt(s, fastopen_backlog=self.fastopen_backlog, keys=self.fastopen_keys)
                if s.family in _TCP
                else s
                for s in socks
            ]

        return hypercorn.config.Sockets(
            secure_sockets=tfo(made.secure_sockets),
            insecure_sockets=tfo(made.insecure_sockets),
            quic_sockets=made.quic_sockets,
        )


async def serve_hypercorn(
    app: ASGIApp,
    config: FastOpenConfig,
    *,
    shutdown_trigger: Callable[..., Awaitable[Any]] | None = None,
) -> None:
    """``hypercorn.asyncio.serve`` of ``app`` (wrapped in :class:`FastOpenMiddleware`) on the
    TFO sockets of ``config``."""
    # hypercorn types scopes as TypedDicts; the middleware passes any scope through
    wrapped = cast(Any, FastOpenMiddleware(app))
    await hypercorn.asyncio.serve(wrapped, config, shutdown_trigger=shutdown_trigger, mode="asgi")
