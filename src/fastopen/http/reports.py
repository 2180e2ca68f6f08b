"""Per-request TFO reports, and what the HTTP integrations track for each connection.

A :class:`~fastopen.report.TfoReport` describes a connection; several requests may share one
(keep-alive). A :class:`RequestReport` says, for one request, whether *it* rode in the SYN and
whether its connection was reused. Clients and servers alike make one through
:meth:`Connection.request`, the one place a request's report is computed.

A :class:`Connection` also knows whether its connect is still deferred (a cookie was cached, so
the kernel sends the SYN with the first write): an error before the peer has answered anything is
then the connect's failure, and :meth:`Connection.connect_failure` says so, so the integrations
raise their ecosystem's connect error (and retry policies keyed on it behave as without TFO).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from fastopen.kernel import attempts, tcpinfo
from fastopen.kernel.tcpinfo import HasSockopt
from fastopen.report import TfoReport

#: The errors of a connect that failed (RST to the SYN, no SYN-ACK, ICMP unreachable).
CONNECT_ERRNOS = frozenset(
    {errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH}
)

_TCP_SYN_SENT = 2


@dataclass(frozen=True, slots=True)
class RequestReport:
    """What TFO did for one HTTP request.

    ``connection`` is the report of the connection it went on, read when the request's response
    came (client) or when it arrived (server). ``index`` counts the requests before it on that
    connection; ``tls`` says the connection is TLS (the SYN then carries the ClientHello, never
    the request).
    """

    connection: TfoReport
    index: int = 0
    tls: bool = False

    @property
    def reused(self) -> bool:
        """The request went on a kept-alive connection that carried an earlier one."""
        return self.index > 0

    @property
    def in_syn(self) -> bool:
        """This request rode in the SYN and the other end accepted it there (it may be a replay:
        SYN data can be delivered twice)."""
        return not self.reused and not self.tls and self.connection.used

    @property
    def handshake_in_syn(self) -> bool:
        """The TLS ClientHello of this request's new connection rode in the SYN and was accepted."""
        return not self.reused and self.tls and self.connection.used

    @property
    def saved_round_trip(self) -> bool:
        """TFO saved this request a round trip (its data or its ClientHello rode in the SYN)."""
        return self.in_syn or self.handshake_in_syn

    def __str__(self) -> str:
        where = f"request {self.index + 1} on its connection" + (" (reused)" if self.reused else "")
        if self.in_syn:
            what = "rode in the SYN"
        elif self.handshake_in_syn:
            what = "its TLS ClientHello rode in the SYN"
        else:
            what = "not in the SYN"
        return f"{where}: {what}; connection: {self.connection}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "index": self.index,
            "reused": self.reused,
            "tls": self.tls,
            "in_syn": self.in_syn,
            "handshake_in_syn": self.handshake_in_syn,
            "connection": self.connection.to_dict(),
        }


class _Socket(HasSockopt, Protocol):
    """A socket, or asyncio's TransportSocket wrapper of one."""

    def getpeername(self) -> Any: ...


def connect_deferred_now(sock: _Socket) -> bool:
    """Whether the kernel still defers ``sock``'s connect (``getpeername``: ENOTCONN)."""
    try:
        sock.getpeername()
    except OSError as exc:
        return exc.errno == errno.ENOTCONN
    return False


class Connection:
    """One HTTP connection as the integrations see it: its report, requests and connect state.

    ``report`` reads the connection's :class:`TfoReport` now; ``sock`` (when the integration
    holds it) lets a timeout be told apart: still in SYN-SENT is a connect timeout. ``pending``
    is true while the connect is deferred and the peer has sent nothing yet.
    """

    def __init__(
        self,
        report: Callable[[], TfoReport],
        *,
        pending: bool,
        tls: bool = False,
        sock: HasSockopt | None = None,
    ) -> None:
        self._report = report
        self.pending = pending
        self.tls = tls
        self._sock = sock
        self.requests = 0

    def request(self) -> RequestReport:
        """The report of the next request on this connection (call once per request)."""
        index = self.requests
        self.requests += 1
        return RequestReport(self._report(), index=index, tls=self.tls)

    def received(self) -> None:
        """The peer has answered: the connect is done, later errors are not connect errors."""
        self.pending = False

    def connect_failure(self, exc: BaseException) -> OSError | None:
        """The failed connect behind ``exc`` (raised by the first I/O of a connection whose
        connect was deferred), or None when ``exc`` is not one.

        The error is taken from ``exc`` (a library may wrap it in its own OSError subclass) or
        from the socket's pending error (``SO_ERROR``); it is a connect failure when it is one of
        :data:`CONNECT_ERRNOS`, or a timeout while the socket is still in SYN-SENT.
        """
        if not self.pending or not isinstance(exc, OSError):
            return None
        if isinstance(exc, TimeoutError) and exc.errno is None:
            return exc if self._state() == _TCP_SYN_SENT else None
        code = exc.errno if exc.errno in CONNECT_ERRNOS else self._socket_error()
        if code in CONNECT_ERRNOS:  # as the socket module raises it: ConnectionRefusedError...
            return OSError(code, os.strerror(code))
        return None

    def _state(self) -> int | None:
        if self._sock is None:
            return None
        try:
            return tcpinfo.read(self._sock).state
        except OSError:
            return None

    def _socket_error(self) -> int:
        if self._sock is None:
            return 0
        try:
            raw = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR, 4)
        except OSError:
            return 0
        return int.from_bytes(raw, sys.byteorder)


class SocketConnection(Connection):
    """A :class:`Connection` over a kernel socket the integration holds (its report is read
    from ``TCP_INFO``, with what fastopen recorded when it made or accepted the socket)."""

    def __init__(self, sock: socket.socket, *, tls: bool = False) -> None:
        super().__init__(self._read, pending=connect_deferred_now(sock), tls=tls, sock=sock)
        self._socket = sock
        self._dup: socket.socket | None = None

    def _read(self) -> TfoReport:
        info = tcpinfo.read(self._socket if self._dup is None else self._dup)
        return attempts.build_report(info, attempts.recall(self._socket))

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Keep the socket readable for the block, though the library may close it meanwhile
        (http.client and aiohttp do, when a response ends its connection)."""
        with socket.socket(fileno=os.dup(self._socket.fileno())) as dup:
            self._dup = dup
            try:
                yield
            finally:
                self._dup = None

    def responded(self, response: Any) -> RequestReport:
        """``response`` (to the next request) has come: its report, recorded for
        :func:`response_report`."""
        self.received()
        report = self.request()
        attach(response, report)
        return report


#: The per-request reports of responses that carry no place for one (urllib3, aiohttp).
_responses: weakref.WeakKeyDictionary[Any, RequestReport] = weakref.WeakKeyDictionary()


def attach(response: Any, report: RequestReport) -> None:
    """Record ``report`` as the per-request report of ``response``."""
    _responses[response] = report


def response_report(response: Any) -> RequestReport | None:
    """The per-request TFO report of a response from any fastopen integration, or None.

    Takes an httpx response (``extensions["fastopen"]``), a urllib3 or aiohttp response, or a
    requests response (through its urllib3 ``raw``).
    """
    extensions = getattr(response, "extensions", None)
    report = extensions.get("fastopen") if isinstance(extensions, dict) else None
    if isinstance(report, RequestReport):
        return report
    found = _responses.get(response)
    if found is None and getattr(response, "raw", None) is not None:
        found = _responses.get(response.raw)
    return found
