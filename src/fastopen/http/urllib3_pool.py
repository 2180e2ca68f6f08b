"""A urllib3 pool manager whose http:// connections use TFO.

A GET, HEAD or OPTIONS request that opens a connection rides in its SYN (when a cookie is
cached); other methods connect without SYN data. https:// goes through urllib3's own connections,
without TFO: urllib3 wraps an already connected socket, and a deferred one looks unconnected to
the ssl module (use :mod:`fastopen.http.httpx_transport` for the ClientHello in the SYN).
``response_report(response)`` is the report of the connection a response came on::

    http = FastOpenPoolManager()
    response = http.request("GET", "http://198.18.0.2/")
    print(response_report(response))
"""

from __future__ import annotations

import socket
import weakref
from collections.abc import Mapping
from typing import Any

from fastopen.errors import MissingExtra

try:
    import urllib3
    from urllib3.connection import HTTPConnection
    from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
except ImportError as exc:
    raise MissingExtra("urllib3", "http") from exc

from fastopen.http import replay_safe
from fastopen.kernel import attempts, tcpinfo
from fastopen.kernel.client import connect_deferred, set_options
from fastopen.report import TfoReport

_reports: weakref.WeakKeyDictionary[urllib3.BaseHTTPResponse, TfoReport] = (
    weakref.WeakKeyDictionary()
)


def response_report(response: urllib3.BaseHTTPResponse) -> TfoReport | None:
    """The TFO report of the connection ``response`` came on (None if it was not ours)."""
    return _reports.get(response)


class FastOpenHTTPConnection(HTTPConnection):
    """An ``HTTPConnection`` that opens its socket with TFO when the request is safe to replay."""

    _fastopen_method = ""

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._fastopen_method = method  # the socket opens inside, when the head is sent
        super().request(method, url, body, headers, **kwargs)

    def _new_conn(self) -> socket.socket:
        timeout = self.timeout if isinstance(self.timeout, int | float) else None
        try:
            sock = connect_deferred(
                (self._dns_host, self.port),
                replay_safe=replay_safe(self._fastopen_method),
                timeout=timeout,
                source_address=self.source_address,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={timeout})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        return set_options(sock, self.socket_options or ())

    def getresponse(self) -> urllib3.HTTPResponse:  # type: ignore[override]
        sock = self.sock
        if sock is None:
            return super().getresponse()
        # http.client closes the socket here when the response ends the connection: read
        # TCP_INFO (once the response has come) through a duplicate of it
        with sock.dup() as dup:
            response = super().getresponse()
            _reports[response] = attempts.build_report(tcpinfo.read(dup), attempts.recall(sock))
        return response


class FastOpenHTTPConnectionPool(urllib3.HTTPConnectionPool):
    ConnectionCls = FastOpenHTTPConnection


class FastOpenPoolManager(urllib3.PoolManager):
    """``urllib3.PoolManager`` with TFO for http:// (see the module's rule for SYN data)."""

    def __init__(self, num_pools: int = 10, headers: Mapping[str, str] | None = None, **kw: Any):
        super().__init__(num_pools, headers, **kw)
        self.pool_classes_by_scheme = {
            **self.pool_classes_by_scheme,
            "http": FastOpenHTTPConnectionPool,
        }
