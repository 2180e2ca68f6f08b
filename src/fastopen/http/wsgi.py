"""TFO for WSGI servers: a middleware that puts each request's report in
``environ["fastopen.report"]``, and gunicorn hooks for TFO on its listeners.

In ``gunicorn.conf.py``::

    from fastopen.http.wsgi import gunicorn_when_ready
    when_ready = gunicorn_when_ready(fastopen_backlog=256, keys="/var/lib/fastopen/tfo-key.json")

and in the application module::

    app = FastOpenWSGIMiddleware(app)

The report is a :class:`~fastopen.http.reports.RequestReport` (``in_syn``: the request came in
the SYN's data, so it may be a replay). The middleware finds the connection's socket where
gunicorn puts it (``environ["gunicorn.socket"]``, sync and gthread workers); ``when_ready`` reads
the arbiter's ``LISTENERS``, which gunicorn does not document (hence the upper bound on it).
Listeners passed by systemd or ``--bind fd://N`` get TFO the same way.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

from fastopen.http.listeners import Keys, connection_of, is_tcp, key_ring, request_report
from fastopen.kernel import server

#: The environ key of the request's report.
ENVIRON_KEY = "fastopen.report"

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FastOpenWSGIMiddleware:
    """WSGI middleware: ``environ["fastopen.report"]`` is the request's report."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        sock = environ.get("gunicorn.socket")
        if isinstance(sock, socket.socket) and is_tcp(sock):
            tls = environ.get("wsgi.url_scheme") == "https"
            environ[ENVIRON_KEY] = request_report(connection_of(sock), tls=tls)
        return self.app(environ, start_response)


def gunicorn_when_ready(
    *, fastopen_backlog: int | None = None, keys: Keys | None = None
) -> Callable[[Any], None]:
    """A gunicorn ``when_ready`` hook that turns TFO on for every TCP listener of the arbiter:
    the fastopen backlog (default ``net.core.somaxconn``) and, if given, the listeners' own key
    ring (a ring or a key store's path, read once here)."""
    ring = key_ring(keys)

    def when_ready(arbiter: Any) -> None:
        for listener in arbiter.LISTENERS:
            if is_tcp(listener):
                server.enable(listener, fastopen_backlog=fastopen_backlog, keys=ring)

    return when_ready
