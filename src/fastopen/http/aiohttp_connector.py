"""An aiohttp connector that connects with TFO, under the rule of every fastopen client.

A GET, HEAD or OPTIONS request that opens a connection rides in its SYN (when a cookie is
cached); any other method connects first, without SYN data. Over https the TLS ClientHello, always
safe to replay, rides in the SYN whatever the method. :class:`FastOpenResponse` gives each
response its per-request report, and turns a failed deferred connect (refused, unreachable) back
into ``aiohttp.ClientConnectorError``::

    async with aiohttp.ClientSession(
        connector=FastOpenConnector(), response_class=FastOpenResponse
    ) as session:
        async with session.get("http://198.18.0.2/") as response:
            print(response_report(response))

The connector replaces ``TCPConnector._wrap_create_connection``, a private method (hence the
upper bound on aiohttp): the socket is made by :func:`fastopen.kernel.client.open_socket`, one
address at a time (aiohttp moves on to the next address when one fails). No proxies.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import weakref
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

from fastopen.http import first_write_replay_safe
from fastopen.http.reports import SocketConnection, response_report
from fastopen.kernel import client

__all__ = ["FastOpenConnector", "FastOpenResponse", "response_report"]


class _Tracked:
    """A connection the connector made: its socket and the integrations' view of it."""

    def __init__(self, sock: socket.socket, tls: bool, key: Any) -> None:
        self.sock = sock
        #: aiohttp's ConnectionKey of the request that opened it (for ClientConnectorError).
        self.key = key
        self.connection = SocketConnection(sock, tls=tls)


_tracked: weakref.WeakKeyDictionary[ResponseHandler, _Tracked] = weakref.WeakKeyDictionary()


class FastOpenConnector(aiohttp.TCPConnector):
    """``aiohttp.TCPConnector`` whose connections open with TFO (see the module's rule)."""

    async def _wrap_create_connection(
        self,
        *args: Any,
        addr_infos: list[Any],
        req: aiohttp.ClientRequest,
        timeout: aiohttp.ClientTimeout,
        client_error: type[Exception] = aiohttp.ClientConnectorError,
        **kwargs: Any,
    ) -> tuple[asyncio.Transport, ResponseHandler]:
        address = addr_infos[0][4]
        tls = req.is_ssl()
        safe = first_write_replay_safe(req.method, tls=tls)
        try:
            async with asyncio.timeout(timeout.sock_connect):
                sock, _ = await client.open_socket(
                    address[0], address[1], deferred=True, replay_safe=safe
                )
                try:
                    transport, protocol = await self._loop.create_connection(
                        *args, **kwargs, sock=sock
                    )
                except BaseException:
                    sock.close()
                    raise
        except ssl.CertificateError as exc:
            raise aiohttp.ClientConnectorCertificateError(req.connection_key, exc) from exc
        except ssl.SSLError as exc:
            raise aiohttp.ClientConnectorSSLError(req.connection_key, exc) from exc
        except OSError as exc:
            if exc.errno is None and isinstance(exc, TimeoutError):
                raise
            raise client_error(req.connection_key, exc) from exc
        _tracked[protocol] = _Tracked(sock, tls, req.connection_key)
        return transport, protocol


class FastOpenResponse(aiohttp.ClientResponse):
    """A ``ClientResponse`` that records its request's
    :class:`~fastopen.http.reports.RequestReport` (read with :func:`response_report`)."""

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        tracked = None if connection.protocol is None else _tracked.get(connection.protocol)
        if tracked is None or tracked.sock.fileno() < 0:
            return await super().start(connection)
        with tracked.connection.held():  # the transport closes it when the response ends it
            try:
                response = await super().start(connection)
            except OSError as exc:  # aiohttp's ClientOSError keeps the errno
                failed = tracked.connection.connect_failure(exc)
                if failed is not None:
                    raise aiohttp.ClientConnectorError(tracked.key, failed) from exc
                raise
            tracked.connection.responded(self)
        return response
