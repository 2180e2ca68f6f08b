"""Cookie prefetch: get a server's TFO cookie before there is data to send, and know if one is held.

RFC 7413 section 4.1.1 leaves the client free to ask for a cookie on a connection of its own;
the seed asks for "an API for the application to detect whether a cookie was successfully
obtained". :func:`prefetch_cookie` makes a connection that carries no data (its SYN asks for a
cookie, or carries the one cached) and closes it; :func:`has_cookie` reads the answer where the
kernel keeps it, the ``tcp_metrics`` cache of the calling thread's network namespace. Linux keeps
one cookie per server address (and source address), whatever the port.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from fastopen.kernel import tcp_metrics
from fastopen.kernel.client import create_connection, open_socket


def _held(addresses: list[Any]) -> bool:
    wanted = {ipaddress.ip_address(str(a[0]).split("%")[0]) for a in addresses}
    return any(e.cookie and e.destination in wanted for e in tcp_metrics.entries())


def has_cookie(host: str, port: int) -> bool:
    """Whether the kernel holds a TFO cookie for (an address of) ``host`` in this namespace."""
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
    return _held([info[4] for info in infos])


def prefetch_cookie(host: str, port: int, *, timeout: float | None = 10.0) -> bool:
    """Get a cookie from ``host``, ``port`` without sending data; whether one is held now.

    The connection's SYN asks for a cookie (or carries the one cached), the handshake completes
    and the connection is closed at once; the server's application sees a connection that sends
    nothing. Connect errors are raised as :func:`socket.create_connection` raises them.
    """
    with create_connection((host, port), timeout) as sock:
        peer = sock.getpeername()
    return _held([peer])


async def ahas_cookie(host: str, port: int) -> bool:
    """:func:`has_cookie` for asyncio (the name is resolved without blocking the loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return _held([info[4] for info in infos])


async def aprefetch_cookie(host: str, port: int) -> bool:
    """:func:`prefetch_cookie` for asyncio (bound it with ``asyncio.timeout`` if need be)."""
    sock, peer = await open_socket(host, port)
    sock.close()
    return _held([peer])
