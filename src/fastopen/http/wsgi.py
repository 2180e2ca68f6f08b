"""TFO for WSGI servers: a middleware that puts each request's report in
``environ["fastopen.report"]``, and gunicorn hooks for TFO on its listeners.

In ``gunicorn.conf.py``::

    from fastopen.http.wsgi import gunicorn_when_ready
    when_ready = gunicorn_when_ready(fastopen_backlog=256, keys="/var/lib/fastopen/tfo-key.json")

and in the application module::

    app = FastOpenWSGIMiddleware(app)

With ``FastOpenWSGIMiddleware(app, replay_guard="redis://...")`` (and ``save_syn=True`` on the
hook), each connection is checked once by the guard (``ReplayGuard.check_blocking``), the
report's ``connection.replay_suspected`` says the verdict, and the first request of a
suspected connection gets ``425 Too Early`` unless its method is safe to replay.

The report is a :class:`~fastopen.http.reports.RequestReport` (``in_syn``: the request came in
the SYN's data, so it may be a replay). The middleware finds the connection's socket where
gunicorn puts it (``environ["gunicorn.socket"]``, sync and gthread workers); ``when_ready`` reads
the arbiter's ``LISTENERS``, which gunicorn does not document (hence the upper bound on it).
Listeners passed by systemd or ``--bind fd://N`` get TFO the same way.
"""

from __future__ import annotations

import dataclasses
import socket
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from fastopen.http.asgi import TOO_EARLY, GuardSpec, open_guard
from fastopen.http.listeners import Keys, connection_of, is_tcp, key_ring, request_report
from fastopen.http.reports import Connection
from fastopen.http.responder import too_early
from fastopen.kernel import server
from fastopen.replay import Arrival, Verdict, syn

#: The environ key of the request's report.
ENVIRON_KEY = "fastopen.report"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastOpenWSGIMiddleware:
    """WSGI middleware: ``environ["fastopen.report"]`` is the request's report; with a
    ``replay_guard``, suspected replays that are not safe to replay get 425 Too Early."""

    def __init__(self, app: WSGIApp, *, replay_guard: GuardSpec | None = None) -> None:
        self.app = app
        self.replay_guard = open_guard(replay_guard)
        self._verdicts: weakref.WeakKeyDictionary[Connection, Verdict] = weakref.WeakKeyDictionary()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket) and is_tcp(sock):
            tls = environ.get("wsgi.url_scheme") == "https"
            connection = connection_of(sock)
            report = request_report(connection, tls=tls)
            guard = self.replay_guard
            if guard is not None:
                verdict = self._verdicts.get(connection)
                if verdict is None:  # a connection's requests come one after another
                    verdict = guard.check_blocking(Arrival.of_socket(sock, guard.service))
                    self._verdicts[connection] = verdict
                report = dataclasses.replace(report, connection=verdict.report(report.connection))
                method = environ.get("REQUEST_METHOD", "GET")
                if not report.reused and too_early(method, report.connection):
                    headers = [
                        ("Content-Type", "text/plain"),
                        ("Content-Length", str(len(TOO_EARLY))),
                    ]
                    start_response("425 Too Early", headers)
                    return [TOO_EARLY]
            environ[ENVIRON_KEY] = report
        return self.app(environ, start_response)


def gunicorn_when_ready(
    *, fastopen_backlog: int | None = None, keys: Keys | None = None, save_syn: bool = False
) -> Callable[[Any], None]:
    """A gunicorn ``when_ready`` hook that turns TFO on for every TCP listener of the arbiter:
    the fastopen backlog (default ``net.core.somaxconn``) and, if given, the listeners' own key
    ring (a ring or a key store's path, read once here); ``save_syn`` for a replay guard
    (:func:`fastopen.replay.syn.enable`)."""
    ring = key_ring(keys)

    def when_ready(arbiter: Any) -> None:
        for listener in arbiter.LISTENERS:
            if is_tcp(listener):
                server.enable(listener, fastopen_backlog=fastopen_backlog, keys=ring)
                if save_syn:
                    syn.enable(listener)

    return when_ready
