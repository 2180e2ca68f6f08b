"""A urllib3 pool manager whose connections use TFO, for http:// and https://.

http://: a GET, HEAD or OPTIONS request that opens a connection rides in its SYN (when a cookie is
cached); other methods connect without SYN data. https://: the TLS ClientHello, always safe to
replay, rides in the SYN whatever the method (the socket is wrapped before its connect, with the
very context urllib3 builds for the connection); with ``assert_fingerprint``, ``assert_hostname``
or a proxy urllib3 checks the peer before any handshake could run, so those connect without TFO.

``response_report(response)`` is the per-request report
(:class:`~fastopen.http.reports.RequestReport`) of a response::

    http = FastOpenPoolManager()
    response = http.request("GET", "http://198.18.0.2/")
    print(response_report(response))

A deferred connect that fails raises ``NewConnectionError`` (``ConnectTimeoutError`` when no
SYN-ACK came in time) as without TFO, so ``Retry(connect=...)`` retries it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Mapping
from typing import Any

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

from fastopen.http import replay_safe
from fastopen.http.reports import SocketConnection, response_report
from fastopen.kernel.client import connect_deferred, set_options, tls_connection

__all__ = [
    "FastOpenHTTPConnection",
    "FastOpenHTTPConnectionPool",
    "FastOpenHTTPSConnection",
    "FastOpenHTTPSConnectionPool",
    "FastOpenPoolManager",
    "response_report",
]


class _FastOpen(HTTPConnection):
    """What the http and https connections share: the method of the request being sent, the
    connection's state, connect errors as urllib3 raises them, and per-request reports."""

    _fastopen_method = ""
    _fastopen: SocketConnection | None = None

    def _timeout(self) -> float | None:
        return self.timeout if isinstance(self.timeout, int | float) else None

    def _connect_error(self, exc: OSError) -> Exception:
        """The urllib3 error for a connect that failed with ``exc``."""
        if isinstance(exc, socket.gaierror):
            return NameResolutionError(self.host, self, exc)
        if isinstance(exc, TimeoutError):
            return ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self._timeout()})"
            )
        return NewConnectionError(self, f"Failed to establish a new connection: {exc}")

    def _raise_if_connect_failed(self, exc: BaseException) -> None:
        failed = None if self._fastopen is None else self._fastopen.connect_failure(exc)
        if failed is not None:
            raise self._connect_error(failed) from exc

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._fastopen_method = method  # the socket opens inside, when the head is sent
        try:
            super().request(method, url, body, headers, **kwargs)
        except OSError as exc:  # a blocking first write waits for the deferred handshake
            self._raise_if_connect_failed(exc)
            raise

    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        if self.sock is None or self._fastopen is None:
            return super().getresponse()
        with self._fastopen.held():  # http.client closes the socket when the response ends it
            try:
                response = super().getresponse()
            except OSError as exc:
                self._raise_if_connect_failed(exc)
                raise
            self._fastopen.responded(response)
        return response


class FastOpenHTTPConnection(_FastOpen):
    """An ``HTTPConnection`` that opens its socket with TFO when the request is safe to replay."""

    def _new_conn(self) -> socket.socket:
        try:
            sock = connect_deferred(
                (self._dns_host, self.port),
                replay_safe=replay_safe(self._fastopen_method),
                timeout=self._timeout(),
                source_address=self.source_address,
            )
        except OSError as exc:
            raise self._connect_error(exc) from exc
        self._fastopen = SocketConnection(sock)
        return set_options(sock, self.socket_options or ())


class FastOpenHTTPSConnection(_FastOpen, HTTPSConnection):
    """An ``HTTPSConnection`` whose ClientHello rides in the SYN (see the module's text)."""

    #: While urllib3 builds and wraps its TLS context: give it a socket that is not connected.
    _fastopen_probe = False

    def _tfo_possible(self) -> bool:
        return not (self.assert_fingerprint or self.assert_hostname or self.proxy)

    def _new_conn(self) -> socket.socket:
        if self._fastopen_probe:  # wrapped without a handshake, then closed: see connect()
            return socket.socket()
        return super()._new_conn()

    def connect(self) -> None:
        if not self._tfo_possible():
            super().connect()
            return
        # urllib3 makes the TLS context (verification, ALPN, certificates) inside connect() and
        # wraps the socket _new_conn gives; an unconnected socket is wrapped without a handshake,
        # so connect() returns at once with the context it made. That context then wraps the
        # TFO socket before its deferred connect, so the ClientHello is the SYN's data.
        self._fastopen_probe = True
        try:
            super().connect()
        finally:
            self._fastopen_probe = False
        probe = self.sock
        assert isinstance(probe, ssl.SSLSocket)
        context, hostname = probe.context, probe.server_hostname
        probe.close()
        self.sock = None
        try:
            tls = tls_connection(
                (self._dns_host, self.port),
                context,
                server_hostname=hostname,
                timeout=self._timeout(),
                source_address=self.source_address,
            )
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):  # urllib3 turns it into its SSLError
                raise
            raise self._connect_error(exc) from exc
        self._fastopen = SocketConnection(tls, tls=True)  # handshake done: not pending
        self.sock = set_options(tls, self.socket_options or ())


class FastOpenHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = FastOpenHTTPConnection


class FastOpenHTTPSConnectionPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = FastOpenHTTPSConnection


class FastOpenPoolManager(urllib3.PoolManager):
    """``urllib3.PoolManager`` with TFO for http:// and https:// (see the module's text)."""

    def __init__(self, num_pools: int = 10, headers: Mapping[str, str] | None = None, **kw: Any):
        super().__init__(num_pools, headers, **kw)
        self.pool_classes_by_scheme = {
            "http": FastOpenHTTPConnectionPool,
            "https": FastOpenHTTPSConnectionPool,
        }
