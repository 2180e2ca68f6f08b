"""uvicorn on a TFO listener, with each request's report in ``scope["extensions"]["fastopen"]``.

::

    server, sock = uvicorn_server(app, host="198.18.0.2", port=8000, fastopen_backlog=256,
                                  keys="/var/lib/fastopen/tfo-key.json")
    server.run(sockets=[sock])

Only uvicorn's public API: ``Config.bind_socket`` and ``Server.run``/``serve(sockets=...)``.
"""

from __future__ import annotations

import socket
from typing import Any

from fastopen.errors import MissingExtra

try:
    import uvicorn
except ImportError as exc:
    raise MissingExtra("uvicorn", "servers") from exc

from fastopen.http.asgi import ASGIApp, FastOpenMiddleware, GuardSpec
from fastopen.http.listeners import Keys, adopt, is_tcp


def uvicorn_server(
    app: ASGIApp,
    *,
    fastopen_backlog: int | None = None,
    keys: Keys | None = None,
    replay_guard: GuardSpec | None = None,
    **config: Any,
) -> tuple[uvicorn.Server, socket.socket]:
    """A ``uvicorn.Server`` for ``app`` (wrapped in :class:`FastOpenMiddleware`) and the socket
    it is to serve on, bound as ``config`` says (``host``, ``port``, ``fd``...; any
    ``uvicorn.Config`` argument) with TFO on: run it with ``server.run(sockets=[sock])`` or
    ``await server.serve(sockets=[sock])``. ``replay_guard``: see :class:`FastOpenMiddleware`."""
    config.setdefault("loop", "asyncio")
    uconfig = uvicorn.Config(FastOpenMiddleware(app, replay_guard=replay_guard), **config)
    sock = uconfig.bind_socket()
    if is_tcp(sock):
        sock = adopt(
            sock,
            fastopen_backlog=fastopen_backlog,
            keys=keys,
            save_syn=replay_guard is not None,
        )
    return uvicorn.Server(uconfig), sock
