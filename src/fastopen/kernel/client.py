"""Client TFO on the kernel's stack: connect so that a replay-safe first flight rides in the SYN.

The way in is ``TCP_FASTOPEN_CONNECT`` (Linux 4.11+): ``connect`` returns at once when a cookie is
cached and the SYN leaves with the first write; without a cookie the SYN carries a cookie request.
Where that option is missing the first flight goes through ``sendto(MSG_FASTOPEN)``, and where TFO
is off (sysctl bit 0x1 clear) or missing, through a plain connect. Each socket records which way
it went and why (:mod:`fastopen.kernel.attempts`), so the report can say so.
"""

from __future__ import annotations

import asyncio
import enum
import errno
import select
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, TypeVar

from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN_CONNECT
from fastopen.kernel import pathcache
from fastopen.kernel.attempts import Attempt, remember, report
from fastopen.report import OffReason, Side

Address = tuple[Any, ...]

#: A ``setsockopt`` argument tuple (the forms httpcore passes on).
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

_SocketT = TypeVar("_SocketT", bound=socket.socket)


class _Way(enum.Enum):
    CONNECT_OPTION = "TCP_FASTOPEN_CONNECT"
    SENDTO = "MSG_FASTOPEN"
    PLAIN = "connect"


def _choose(sock: socket.socket, off: OffReason | None) -> tuple[_Way, OffReason | None]:
    """Switch TFO on for ``sock`` unless ``off`` says why not; the way in and the reason if off."""
    if off is not None:
        return _Way.PLAIN, off
    try:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            return _Way.PLAIN, OffReason.CLIENT_SYSCTL_OFF
        if exc.errno in (errno.ENOPROTOOPT, errno.EINVAL):  # before Linux 4.11
            return _Way.SENDTO, None
        raise
    return _Way.CONNECT_OPTION, None


def _choose_deferred(sock: socket.socket, off: OffReason | None) -> tuple[_Way, OffReason | None]:
    """:func:`_choose` for a connect whose data comes later (``MSG_FASTOPEN`` cannot wait)."""
    way, why = _choose(sock, off)
    if way is _Way.SENDTO:
        return _Way.PLAIN, OffReason.KERNEL_UNSUPPORTED
    return way, why


def _sendto_off_reason(exc: OSError) -> OffReason | None:
    """The reason a ``sendto(MSG_FASTOPEN)`` on an unconnected socket failed for want of TFO."""
    if exc.errno == errno.EOPNOTSUPP:
        return OffReason.CLIENT_SYSCTL_OFF
    if exc.errno in (errno.ENOTCONN, errno.EPIPE, errno.EINVAL):  # flag unknown to the kernel
        return OffReason.KERNEL_UNSUPPORTED
    return None


def _record(sock: socket.socket, way: _Way, off: OffReason | None, peer: Address) -> None:
    note = pathcache.note(peer) if off is OffReason.PATH_BLOCKED else None
    attempt = Attempt(Side.CLIENT, attempted=way is not _Way.PLAIN, off_reason=off, peer=peer)
    remember(sock, replace(attempt, note=note) if note else attempt)


def _check_error(sock: socket.socket) -> None:
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, f"connect failed: {errno.errorcode.get(err, err)}")


def _first_flight_off(first_flight: bytes, fastopen: bool) -> OffReason | None:
    if not fastopen:
        return OffReason.DISABLED_BY_CALLER
    if not first_flight:
        return OffReason.NO_FIRST_FLIGHT
    return None


def set_options(
    sock: socket.socket, options: Iterable[SocketOption | tuple[int, int, int | bytes]]
) -> socket.socket:
    """``sock`` with each ``setsockopt`` argument tuple of ``options`` (httpcore's or urllib3's
    forms) applied; closed if one fails."""
    try:
        for option in options:
            sock.setsockopt(*option)
    except BaseException:
        sock.close()
        raise
    return sock


def _resolve(address: tuple[str, int]) -> list[tuple[Any, ...]]:
    infos = socket.getaddrinfo(address[0], address[1], 0, socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no address found for {address[0]}")
    return infos


# -- sync --------------------------------------------------------------------------------------


def _wait_established(sock: socket.socket) -> None:
    """Wait (within the socket's timeout) until the handshake completes; raise its error."""
    timeout = sock.gettimeout()
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    if not poller.poll(None if timeout is None else int(timeout * 1000)):
        raise TimeoutError("timed out waiting for the SYN-ACK")
    _check_error(sock)


def _connect_sync(
    sock: socket.socket, peer: Address, first_flight: bytes, off: OffReason | None
) -> None:
    way, off = _choose(sock, off)
    if way is _Way.SENDTO:
        try:
            sent = sock.sendto(first_flight, MSG_FASTOPEN, peer)
        except BlockingIOError:  # with a timeout and no cookie: a cookie request, no data
            sent = 0
        except OSError as exc:
            off = _sendto_off_reason(exc)
            if off is None:
                raise
            way, sent = _Way.PLAIN, 0
            sock.connect(peer)
        _record(sock, way, off, peer)
        sock.sendall(first_flight[sent:])
    else:
        _record(sock, way, off, peer)
        sock.connect(peer)  # with a cookie cached and the option set: deferred until the write
        sock.sendall(first_flight)
    _wait_established(sock)


def _first_connected(
    address: tuple[str, int],
    timeout: float | None,
    source_address: tuple[str, int] | None,
    connect: Callable[[socket.socket, Address], _SocketT],
) -> _SocketT:
    """Try each address ``address`` resolves to in turn: ``connect`` gets a fresh socket (with
    ``timeout``, bound to ``source_address``) and the peer. The first success, or the last error.
    """
    last: OSError | None = None
    for family, type_, proto, _, peer in _resolve(address):
        sock = socket.socket(family, type_, proto)
        try:
            sock.settimeout(timeout)
            if source_address is not None:
                sock.bind(source_address)
            return connect(sock, peer)
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    assert last is not None
    raise last


def create_connection(
    address: tuple[str, int],
    first_flight: bytes = b"",
    *,
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
    fastopen: bool = True,
) -> socket.socket:
    """Connect to ``address`` (a name or an address, and a port), sending ``first_flight``.

    ``first_flight`` is the caller's declaration that those bytes are safe to replay (SYN data
    may be delivered twice); only then is TFO used, and they go out in one write so they can ride
    in the SYN. Every address the name resolves to is tried in turn. The socket returned is
    connected (its handshake complete); ``fastopen.report(sock)`` tells what TFO did.
    """
    off = _first_flight_off(first_flight, fastopen)

    def connect(sock: socket.socket, peer: Address) -> socket.socket:
        why = off or pathcache.skip(peer)
        try:
            _connect_sync(sock, peer, first_flight, why)
        except (ConnectionRefusedError, ConnectionResetError):
            if why is not None:
                raise
            # SYN data answered with a reset? A plain connect tells (a closed port refuses it too).
            plain = socket.socket(sock.family, sock.type, sock.proto)
            try:
                plain.settimeout(timeout)
                if source_address is not None:
                    plain.bind(source_address)
                _connect_sync(plain, peer, first_flight, OffReason.PATH_BLOCKED)
            except BaseException:
                plain.close()
                raise
            sock.close()
            pathcache.reset_seen(peer)
            _record(plain, _Way.PLAIN, OffReason.PATH_BLOCKED, peer)  # with the note now
            return plain
        report(sock)  # teaches the path cache
        return sock

    return _first_connected(address, timeout, source_address, connect)


def connect_deferred(
    address: tuple[str, int],
    *,
    replay_safe: bool,
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
) -> socket.socket:
    """A socket whose first write rides in the SYN when ``replay_safe`` and a cookie is cached.

    For protocol libraries that write the first flight themselves (HTTP clients, TLS). Without a
    cookie the handshake (with a cookie request) completes here; with one, ``connect`` returns at
    once and only the first address is tried, as the cookie proves it answered before.
    """
    off = None if replay_safe else OffReason.NOT_REPLAY_SAFE

    def connect(sock: socket.socket, peer: Address) -> socket.socket:
        way, why = _choose_deferred(sock, off or pathcache.skip(peer))
        _record(sock, way, why, peer)
        sock.connect(peer)
        return sock

    return _first_connected(address, timeout, source_address, connect)


def tls_connection(
    address: tuple[str, int],
    context: ssl.SSLContext,
    *,
    server_hostname: str | None = None,
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
    fastopen: bool = True,
) -> ssl.SSLSocket:
    """A TLS connection whose ClientHello rides in the SYN when a cookie is cached.

    A ClientHello is always safe to replay. The socket is wrapped before it connects, so the
    handshake's first write is the deferred connect's first write. Every address is tried.
    """
    off = None if fastopen else OffReason.DISABLED_BY_CALLER

    def connect(raw: socket.socket, peer: Address) -> ssl.SSLSocket:
        way, why = _choose_deferred(raw, off or pathcache.skip(peer))
        tls = context.wrap_socket(raw, server_hostname=server_hostname or address[0])
        try:  # ``raw`` is detached now: ``tls`` holds the socket
            _record(tls, way, why, peer)
            tls.connect(peer)  # deferred with a cookie: the ClientHello goes out with the SYN
        except BaseException:
            tls.close()
            raise
        return tls

    return _first_connected(address, timeout, source_address, connect)


# -- asyncio -----------------------------------------------------------------------------------


async def _writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` is writable (its handshake done), then raise its error if any."""
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    fd = sock.fileno()
    loop.add_writer(fd, ready)
    try:
        await fut
    finally:
        loop.remove_writer(fd)
    _check_error(sock)


async def _connect_async(
    loop: asyncio.AbstractEventLoop,
    sock: socket.socket,
    peer: Address,
    first_flight: bytes,
    off: OffReason | None,
    *,
    wait: bool,
) -> None:
    way, off = _choose(sock, off) if first_flight else _choose_deferred(sock, off)
    if way is _Way.SENDTO:
        try:
            sent = sock.sendto(first_flight, MSG_FASTOPEN, peer)
        except BlockingIOError:  # no cookie: the SYN carries a cookie request, no data
            sent = 0
        except OSError as exc:
            off = _sendto_off_reason(exc)
            if off is None:
                raise
            way = _Way.PLAIN
        if way is _Way.SENDTO:
            _record(sock, way, off, peer)
            await _writable(loop, sock)
            await loop.sock_sendall(sock, first_flight[sent:])
            return
    _record(sock, way, off, peer)
    await loop.sock_connect(sock, peer)
    if first_flight:
        await loop.sock_sendall(sock, first_flight)
    if wait:
        await _writable(loop, sock)


async def open_socket(
    host: str,
    port: int,
    first_flight: bytes = b"",
    *,
    fastopen: bool = True,
    deferred: bool = False,
    replay_safe: bool = True,
    local_addr: tuple[str, int] | None = None,
) -> tuple[socket.socket, Address]:
    """A non-blocking socket connected to ``host``, ``port``; and the address it went to.

    Without ``deferred`` this is the asyncio twin of :func:`create_connection`: the first flight
    (if any) is sent and the handshake waited for. With ``deferred`` (nothing sent yet, the caller
    has a first write such as a TLS ClientHello) the connect is left deferred when a cookie is
    cached and the caller declares that write ``replay_safe``, so that it rides in the SYN.
    """
    loop = asyncio.get_running_loop()
    if deferred:
        off = None if fastopen else OffReason.DISABLED_BY_CALLER
        if off is None and not replay_safe:
            off = OffReason.NOT_REPLAY_SAFE
    else:
        off = _first_flight_off(first_flight, fastopen)
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no address found for {host}")
    last: OSError | None = None
    for family, type_, proto, _, peer in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setblocking(False)
            if local_addr is not None:
                sock.bind(local_addr)
            why = off or pathcache.skip(peer)
            await _connect_async(loop, sock, peer, first_flight, why, wait=not deferred)
            if not deferred:
                report(sock)  # teaches the path cache
        except (ConnectionRefusedError, ConnectionResetError) as exc:
            sock.close()
            last = exc
            if why is None and not deferred:  # SYN data reset? Try once without TFO.
                plain = socket.socket(family, type_, proto)
                try:
                    plain.setblocking(False)
                    if local_addr is not None:
                        plain.bind(local_addr)
                    await _connect_async(
                        loop, plain, peer, first_flight, OffReason.PATH_BLOCKED, wait=True
                    )
                except OSError:
                    plain.close()
                    continue
                except BaseException:
                    plain.close()
                    raise
                pathcache.reset_seen(peer)
                _record(plain, _Way.PLAIN, OffReason.PATH_BLOCKED, peer)  # with the note now
                return plain, peer
            continue
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock, peer
    assert last is not None
    raise last
