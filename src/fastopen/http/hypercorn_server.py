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

from fastopen.errors import MissingExtra

try:
    import hypercorn.asyncio
    import hypercorn.config
except ImportError as exc:
    raise MissingExtra("hypercorn", "servers") from exc

from fastopen.http.asgi import ASGIApp, FastOpenMiddleware, GuardSpec
from fastopen.http.listeners import Keys, adopt, is_tcp


class FastOpenConfig(hypercorn.config.Config):
    """A hypercorn ``Config`` whose TCP sockets (``bind``, ``insecure_bind``, ``fd://``) have TFO
    on: set ``fastopen_backlog`` and ``fastopen_keys`` (a ring or a key store's path)."""

    fastopen_backlog: int | None = None
    fastopen_keys: Keys | None = None
    #: The kernel keeps each SYN's headers (for a replay guard; ``serve_hypercorn`` sets it).
    fastopen_save_syn: bool = False

    def create_sockets(self) -> hypercorn.config.Sockets:
        made = super().create_sockets()

        def tfo(socks: list[socket.socket]) -> list[socket.socket]:
            return [
                adopt(
                    s,
                    fastopen_backlog=self.fastopen_backlog,
                    keys=self.fastopen_keys,
                    save_syn=self.fastopen_save_syn,
                )
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
    replay_guard: GuardSpec | None = None,
) -> None:
    """``hypercorn.asyncio.serve`` of ``app`` (wrapped in :class:`FastOpenMiddleware`, with
    ``replay_guard`` if given) on the TFO sockets of ``config``."""
    if replay_guard is not None:
        config.fastopen_save_syn = True
    # hypercorn types scopes as TypedDicts; the middleware passes any scope through
    wrapped = cast(Any, FastOpenMiddleware(app, replay_guard=replay_guard))
    await hypercorn.asyncio.serve(wrapped, config, shutdown_trigger=shutdown_trigger, mode="asgi")
