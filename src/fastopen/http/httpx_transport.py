"""httpx transports (sync and async) that connect with TFO, through httpcore network backends.

A GET, HEAD or OPTIONS request opening a new connection rides in the SYN (when a cookie is
cached); any other method connects without SYN data. For https the TLS ClientHello, which is
always safe to replay, rides in the SYN whatever the method (sync: the ssl module's MemoryBIO;
asyncio: ``StreamWriter.start_tls``). Each response carries its request's report
(:class:`~fastopen.http.reports.RequestReport`: in the SYN or not, connection reused or not)::

    with httpx.Client(transport=FastOpenTransport()) as client:
        response = client.get("http://198.18.0.2/")
        print(response.extensions["fastopen"])

A deferred connect that fails (refused, unreachable, no SYN-ACK in time) raises
``httpx.ConnectError`` (or ``ConnectTimeout``), and ``retries`` retries it, as with
``httpx.HTTPTransport``.

The async backend runs on asyncio (not trio).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, TypeVar

import httpcore
import httpx

from fastopen.http import first_write_replay_safe
from fastopen.http.reports import Connection, SocketConnection, connect_deferred_now
from fastopen.kernel import attempts
from fastopen.kernel.client import SocketOption, connect_deferred, set_options
from fastopen.streams import FastOpenStreamWriter, open_deferred

T = TypeVar("T")

#: Whether the request about to open a connection may ride in its SYN (set per request).
_replay_safe: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "fastopen_replay_safe", default=False
)

_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class DeferredConnectError(httpcore.ConnectError):
    """The deferred connect of a fresh TFO connection failed at its first write or read.

    httpcore retries only failures inside ``connect_tcp`` and ``start_tls``; the transports
    retry these themselves (the request was replay safe, or it would not have been deferred).
    """


class DeferredConnectTimeout(httpcore.ConnectTimeout):
    """No SYN-ACK came for a deferred connect within the read or write timeout."""


#: What retries a failed deferred connect (httpx maps them to ConnectError, ConnectTimeout).
_DEFERRED_FAILURES = (DeferredConnectError, DeferredConnectTimeout)


@contextlib.contextmanager
def _mapped(
    timeout: type[Exception], other: type[Exception], connection: Connection | None = None
) -> Iterator[None]:
    """Turn socket and TLS errors into the httpcore exceptions httpx expects; on a connection
    whose connect is deferred, a failure of that connect into the connect errors."""
    try:
        yield
    except (OSError, ssl.SSLError) as exc:
        failed = None if connection is None else connection.connect_failure(exc)
        if failed is not None:
            deferred = (
                DeferredConnectTimeout if isinstance(failed, TimeoutError) else DeferredConnectError
            )
            raise deferred(f"connect failed: {failed}") from exc
        if isinstance(exc, TimeoutError):
            raise timeout(str(exc) or "timed out") from exc
        raise other(str(exc)) from exc


def _backoff() -> Iterator[float]:
    """httpcore's delays between connect retries: 0, 0.5, 1, 2, 4..."""
    yield 0.0
    for n in itertools.count():
        yield 0.5 * 2**n


def _readable(fd: int) -> bool:
    """Data (or EOF) waiting on socket ``fd``: a kept-alive connection the server has closed."""
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _peer(sock: socket.socket) -> Any:
    try:
        return sock.getpeername()
    except OSError:  # ENOTCONN while the kernel defers the connect
        attempt = attempts.recall(sock)
        return None if attempt is None else attempt.peer


def _local_address(local_address: str | None) -> tuple[str, int] | None:
    return None if local_address is None else (local_address, 0)


# -- sync --------------------------------------------------------------------------------------


class _Stream(httpcore.NetworkStream):
    """A sync stream that TLS runs over through :class:`TlsStream`."""

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return TlsStream(self, ssl_context, server_hostname, timeout)


class FastOpenStream(_Stream):
    """A kernel TCP socket whose first write may ride in the SYN."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._connection = SocketConnection(sock)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError, self._connection):
            self._sock.settimeout(timeout)
            data = self._sock.recv(max_bytes)
        if data:
            self._connection.received()
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError, self._connection):
            self._sock.settimeout(timeout)
            self._sock.sendall(buffer)

    def close(self) -> None:
        self._sock.close()

    def get_extra_info(self, info: str) -> Any:
        if info == "fastopen":
            return self._connection
        if info == "socket":
            return self._sock
        if info == "client_addr":
            return self._sock.getsockname()
        if info == "server_addr":
            return _peer(self._sock)
        if info == "is_readable":
            return _readable(self._sock.fileno())
        return None


class TlsStream(_Stream):
    """TLS over another stream with the ssl module's MemoryBIO.

    The handshake's first write (the ClientHello) is the first write of the stream below, so on
    a deferred TFO socket it rides in the SYN (``SSLContext.wrap_socket`` cannot do that: it takes
    a socket whose connect is deferred for an unconnected one).
    """

    def __init__(
        self,
        inner: httpcore.NetworkStream,
        context: ssl.SSLContext,
        server_hostname: str | None,
        timeout: float | None,
    ) -> None:
        self._inner = inner
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        connection: Connection = inner.get_extra_info("fastopen")
        connection.tls = True
        with _handshake(), _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            self._pump(self._tls.do_handshake, timeout)

    def _pump(self, operation: Callable[[], T], timeout: float | None) -> T:
        """Run a TLS operation, moving bytes between the stream below and the BIOs as it needs."""
        while True:
            try:
                result = operation()
            except ssl.SSLWantReadError:
                self._flush(timeout)
                data = self._inner.read(65536, timeout)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
            else:
                self._flush(timeout)
                return result

    def _flush(self, timeout: float | None) -> None:
        data = self._outgoing.read()
        if data:
            self._inner.write(data, timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            try:
                return self._pump(lambda: self._tls.read(max_bytes), timeout)
            except ssl.SSLZeroReturnError:
                return b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            self._pump(lambda: self._tls.write(buffer), timeout)

    def close(self) -> None:
        self._inner.close()

    def get_extra_info(self, info: str) -> Any:
        if info == "ssl_object":
            return self._tls
        return self._inner.get_extra_info(info)


@contextlib.contextmanager
def _handshake() -> Iterator[None]:
    """A deferred connect failing in the TLS handshake: httpcore's own retries cover it."""
    try:
        yield
    except DeferredConnectTimeout as exc:
        raise httpcore.ConnectTimeout(str(exc)) from exc
    except DeferredConnectError as exc:
        raise httpcore.ConnectError(str(exc)) from exc


class FastOpenBackend(httpcore.NetworkBackend):
    """An httpcore network backend on kernel TFO sockets (see the module's rule for SYN data)."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            sock = connect_deferred(
                (host, port),
                replay_safe=_replay_safe.get(),
                timeout=timeout,
                source_address=_local_address(local_address),
            )
            return FastOpenStream(set_options(sock, socket_options or ()))

    def sleep(self, seconds: float) -> None:
        httpcore.SyncBackend().sleep(seconds)


def _attach_report(response: httpx.Response) -> None:
    stream = response.extensions.get("network_stream")
    connection = None if stream is None else stream.get_extra_info("fastopen")
    if isinstance(connection, Connection):
        response.extensions["fastopen"] = connection.request()


def _deferred_failure(exc: httpx.ConnectError | httpx.ConnectTimeout) -> bool:
    return isinstance(exc.__cause__, _DEFERRED_FAILURES)


@contextlib.contextmanager
def _requesting(request: httpx.Request) -> Iterator[None]:
    safe = first_write_replay_safe(request.method, tls=request.url.scheme == "https")
    token = _replay_safe.set(safe)
    try:
        yield
    finally:
        _replay_safe.reset(token)


class _PoolOnFastOpen:
    """The constructor of both transports: httpx's transport options (no proxies or Unix
    sockets) for an httpcore pool whose network backend is a TFO one.

    ``HTTPTransport`` (and its async twin) maps httpx requests and responses onto the pool it
    keeps in ``_pool``; the transports keep that mapping and only build the pool themselves.
    """

    #: The httpcore pool (sync or async) and the network backend it gets.
    _pool_class: ClassVar[type[Any]]
    _backend_class: ClassVar[type[Any]]

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        local_address: str | None = None,
        retries: int = 0,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> None:
        self._pool: Any = self._pool_class(
            ssl_context=httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            http1=http1,
            http2=http2,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
            network_backend=self._backend_class(),
        )
        self._fastopen_retries = retries


class FastOpenTransport(_PoolOnFastOpen, httpx.HTTPTransport):
    """``httpx.HTTPTransport`` connecting with TFO; ``response.extensions["fastopen"]`` is the
    request's :class:`~fastopen.http.reports.RequestReport`. No proxies or Unix sockets."""

    _pool_class = httpcore.ConnectionPool
    _backend_class = FastOpenBackend

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        delays = _backoff()
        for retries_left in range(self._fastopen_retries, -1, -1):
            try:
                with _requesting(request):
                    response = super().handle_request(request)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if retries_left == 0 or not _deferred_failure(exc):
                    raise
                time.sleep(next(delays))
        _attach_report(response)
        return response


# -- asyncio -----------------------------------------------------------------------------------


class AsyncFastOpenStream(httpcore.AsyncNetworkStream):
    """asyncio streams over a kernel TFO socket whose first write may ride in the SYN."""

    def __init__(self, reader: asyncio.StreamReader, writer: FastOpenStreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        tsock = writer.get_extra_info("socket")
        self._connection = Connection(
            lambda: writer.get_extra_info("fastopen"),
            pending=connect_deferred_now(tsock),
            sock=tsock,
        )

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError, self._connection):
            async with asyncio.timeout(timeout):
                data = await self._reader.read(max_bytes)
        if data:
            self._connection.received()
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError, self._connection):
            async with asyncio.timeout(timeout):
                self._writer.write(buffer)
                await self._writer.drain()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self._connection.tls = True
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            await self._writer.start_tls(
                ssl_context, server_hostname=server_hostname, ssl_handshake_timeout=timeout
            )
        self._connection.received()
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "fastopen":
            return self._connection
        if info in ("ssl_object", "socket"):
            return self._writer.get_extra_info(info)
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "is_readable":
            tsock = self._writer.get_extra_info("socket")
            return _readable(-1 if tsock is None else tsock.fileno())
        return None


class AsyncFastOpenBackend(httpcore.AsyncNetworkBackend):
    """The asyncio twin of :class:`FastOpenBackend`."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await open_deferred(
                    host,
                    port,
                    replay_safe=_replay_safe.get(),
                    local_addr=_local_address(local_address),
                    socket_options=socket_options or (),
                )
        return AsyncFastOpenStream(reader, writer)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class AsyncFastOpenTransport(_PoolOnFastOpen, httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` connecting with TFO (asyncio only); see
    :class:`FastOpenTransport`."""

    _pool_class = httpcore.AsyncConnectionPool
    _backend_class = AsyncFastOpenBackend

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        delays = _backoff()
        for retries_left in range(self._fastopen_retries, -1, -1):
            try:
                with _requesting(request):
                    response = await super().handle_async_request(request)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if retries_left == 0 or not _deferred_failure(exc):
                    raise
                await asyncio.sleep(next(delays))
        _attach_report(response)
        return response
