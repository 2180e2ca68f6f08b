"""TFO for ASGI servers: a middleware that puts each request's report in
``scope["extensions"]["fastopen"]``, for the connections a TFO listener accepted
(:mod:`fastopen.http.listeners`; :mod:`fastopen.http.uvicorn_server` and
:mod:`fastopen.http.hypercorn_server` set both up).

In the application, ``scope["extensions"]["fastopen"]`` is a
:class:`~fastopen.http.reports.RequestReport` (``in_syn``: the request came in the SYN's data,
so it may be a replay). The report needs the connection's socket, which ASGI servers keep to
themselves: the listener records what it accepts, so the loop must call its ``accept`` (asyncio's
own loop; uvloop accepts in C, and the helpers choose ``loop="asyncio"``).

With a ``replay_guard`` (a :class:`fastopen.replay.ReplayGuard`, or a store as
``fastopen serve --replay-guard`` takes it), each new connection is checked once; the report's
``connection.replay_suspected`` says the verdict, and the first request of a suspected connection
gets ``425 Too Early`` without reaching the application unless its method is safe to replay
(:func:`fastopen.http.responder.too_early`). The listening sockets must save SYNs
(:func:`fastopen.replay.syn.enable`; the helpers do it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastopen.http.listeners import accepted_at, request_report
from fastopen.http.reports import Connection
from fastopen.http.responder import too_early
from fastopen.replay import Arrival, ReplayGuard, Verdict

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A replay guard as the helpers take it: a guard, or its store (``"memory"``, ``"sqlite:PATH"``,
#: a Redis URL).
GuardSpec = ReplayGuard | str

TOO_EARLY = b"too early: this request may be a replay\n"


def open_guard(spec: GuardSpec | None) -> ReplayGuard | None:
    """``spec`` as a guard (a store spec string opens a guard on that store)."""
    return ReplayGuard(spec) if isinstance(spec, str) else spec


class FastOpenMiddleware:
    """ASGI middleware: ``scope["extensions"]["fastopen"]`` is the request's report, for the
    connections a :class:`~fastopen.http.listeners.FastOpenListener` accepted; with a
    ``replay_guard``, suspected replays that are not safe to replay get 425 Too Early."""

    def __init__(self, app: ASGIApp, *, replay_guard: GuardSpec | None = None) -> None:
        self.app = app
        self.replay_guard = open_guard(replay_guard)
        self._verdicts: weakref.WeakKeyDictionary[Connection, asyncio.Future[Verdict]] = (
            weakref.WeakKeyDictionary()
        )

    async def _verdict(self, guard: ReplayGuard, connection: Connection, sock: Any) -> Verdict:
        """The guard's verdict for ``connection``: checked once, on its first request."""
        future = self._verdicts.get(connection)
        if future is None:
            future = asyncio.ensure_future(guard.check(Arrival.of_socket(sock, guard.service)))
            self._verdicts[connection] = future
        return await future

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            accepted = accepted_at(scope.get("server"), scope.get("client"))
            if accepted is not None:
                sock, connection = accepted
                tls = scope.get("scheme") in ("https", "wss")
                report = request_report(connection, tls=tls)
                if self.replay_guard is not None:
                    verdict = await self._verdict(self.replay_guard, connection, sock)
                    report = dataclasses.replace(
                        report, connection=verdict.report(report.connection)
                    )
                    method = scope.get("method", "GET")
                    if not report.reused and too_early(method, report.connection):
                        await self._too_early(send)
                        return
                extensions = {**(scope.get("extensions") or {}), "fastopen": report}
                scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)

    @staticmethod
    async def _too_early(send: Send) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(TOO_EARLY))]
        await send({"type": "http.response.start", "status": 425, "headers": headers})
        await send({"type": "http.response.body", "body": TOO_EARLY})
