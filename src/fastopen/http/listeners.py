"""TFO listening sockets for HTTP servers one does not write oneself (uvicorn, hypercorn,
gunicorn), and the per-request report of a connection such a server accepted.

:func:`listen` makes a listening socket with TFO on (its fastopen backlog, optionally its own key
ring); :func:`adopt` turns TFO on for one a server made. Both return a :class:`FastOpenListener`,
whose ``accept`` records each connection (side, and its address for ASGI servers, which hand the
application addresses but no socket). :func:`request_report` is the one place a served request's
:class:`~fastopen.http.reports.RequestReport` is computed, for ASGI and WSGI alike.
"""

from __future__ import annotations

import os
import socket
import weakref
from pathlib import Path
from typing import Any

from fastopen.cookies import KeyRing
from fastopen.errors import FastOpenError
from fastopen.http.reports import Connection, RequestReport, SocketConnection
from fastopen.kernel import server
from fastopen.ops import keys as key_store
from fastopen.replay import syn
from fastopen.report import OffReason

#: Keys as the helpers take them: a ring, or the path of a key store (``fastopen key``'s file).
Keys = KeyRing | str | os.PathLike[str]

_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)

#: (local host, local port, peer host, peer port) of a connection, as the server sees it.
_Key = tuple[str, int, str, int]

_connections: weakref.WeakKeyDictionary[socket.socket, Connection] = weakref.WeakKeyDictionary()
_by_address: weakref.WeakValueDictionary[_Key, socket.socket] = weakref.WeakValueDictionary()


def key_ring(keys: Keys | None) -> KeyRing | None:
    """``keys`` as a ring: a path is read as a key store (mode 0600, see ``fastopen key``)."""
    if keys is None or isinstance(keys, KeyRing):
        return keys
    stored = key_store.load(Path(keys))
    if stored is None:
        raise FastOpenError(
            f"no key store at {os.fspath(keys)}", hint="write one with `fastopen key generate`"
        )
    return stored.ring


def _address(sockaddr: Any) -> tuple[str, int]:
    return str(sockaddr[0]), int(sockaddr[1])


def _track(sock: socket.socket, off: OffReason | None) -> Connection:
    """Record ``sock`` as accepted by a TFO listener (``fastopen.report`` then takes the server
    side) and start counting its requests."""
    server.accepted(sock, off)
    connection = SocketConnection(sock)
    _connections[sock] = connection
    return connection


class FastOpenListener(socket.socket):
    """A listening socket with TFO on whose ``accept`` records each connection it accepts."""

    #: Why TFO is off for this listener (the namespace's server bit clear), or None.
    fastopen_off: OffReason | None = None

    def accept(self) -> tuple[socket.socket, Any]:
        conn, peer = super().accept()
        _track(conn, self.fastopen_off)
        if conn.family in _TCP_FAMILIES:
            _by_address[(*_address(conn.getsockname()), *_address(peer))] = conn
        return conn, peer


def is_tcp(sock: Any) -> bool:
    """Whether ``sock`` is an IPv4 or IPv6 socket, whatever family its object claims
    (``socket.fromfd`` callers may guess wrong: uvicorn's ``fd`` says AF_UNIX)."""
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) in _TCP_FAMILIES


def adopt(
    sock: socket.socket,
    *,
    fastopen_backlog: int | None = None,
    keys: Keys | None = None,
    save_syn: bool = False,
) -> FastOpenListener:
    """TFO on for the listening socket ``sock`` (made by a server, or passed by systemd): its
    fastopen backlog (default ``net.core.somaxconn``) and, if given, its own key ring;
    ``save_syn``: the kernel keeps each SYN's headers for a replay guard
    (:func:`fastopen.replay.syn.enable`). Returns the same socket as a
    :class:`FastOpenListener`; ``sock`` itself is detached."""
    listener = FastOpenListener(fileno=sock.detach())  # the family the kernel says
    try:
        listener.fastopen_off = server.enable(
            listener, fastopen_backlog=fastopen_backlog, keys=key_ring(keys)
        )
        if save_syn:
            syn.enable(listener)
    except BaseException:
        listener.close()
        raise
    return listener


def listen(
    host: str,
    port: int,
    *,
    fastopen_backlog: int | None = None,
    keys: Keys | None = None,
    backlog: int = 2048,
    reuse_port: bool = False,
) -> FastOpenListener:
    """A socket listening at ``host``, ``port`` with TFO on (see :func:`adopt`)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return adopt(sock, fastopen_backlog=fastopen_backlog, keys=keys)


def accepted_at(local: Any, peer: Any) -> tuple[socket.socket, Connection] | None:
    """The socket and connection a :class:`FastOpenListener` accepted at ``local`` from
    ``peer``."""
    if local is None or peer is None:
        return None
    sock = _by_address.get((*_address(local), *_address(peer)))
    connection = None if sock is None else _connections.get(sock)
    return None if sock is None or connection is None else (sock, connection)


def connection_of(sock: socket.socket) -> Connection:
    """The connection of an accepted socket (a WSGI server's): recorded on first sight."""
    connection = _connections.get(sock)
    if connection is None:
        connection = _track(sock, server.server_off_reason())
    return connection


def request_report(connection: Connection, *, tls: bool) -> RequestReport:
    """The report of the next request a server read on ``connection``: it came in the SYN when it
    is the connection's first and the SYN's data was accepted (not over TLS, where the SYN
    carries the ClientHello). The one place a served request's report is computed."""
    connection.tls = tls
    return connection.request()
