"""hypercorn on TFO listeners, with each request's report in ``scope["extensions"]["fastopen"]``.

::

    config = FastOpenConfig()
    config.bind = ["198.18.0.2:8000"]
    config.fastopen_backlog = 256
    config.fastopen_keys = "/var/lib/fastopen/tfo-key.json"
    asyncio.run(serve_hypercorn(app, config))

Only hypercorn's public API: ``Config.create_sockets`` and ``hypercorn.asyncio.serve``.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import hypercorn.asyncio
import hypercorn.config

from fastopen.http.asgi import ASGIApp, FastOpenMiddleware
from fastopen.http.listeners import Keys, adopt, is_tcp


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
                if is_tcp(s)
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
