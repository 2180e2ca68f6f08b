"""Server TFO on the kernel's stack: listeners with a fastopen backlog and their own key ring."""

from __future__ import annotations

import logging
import socket
import socketserver
from typing import Any, Protocol

from fastopen.constants import TCP_FASTOPEN, TCP_FASTOPEN_KEY, TFO_SERVER_ENABLE
from fastopen.cookies import KeyRing
from fastopen.kernel import sysctl
from fastopen.kernel.attempts import Attempt, remember
from fastopen.kernel.tcpinfo import HasSockopt
from fastopen.report import OffReason, Side

log = logging.getLogger(__name__)


class Listener(HasSockopt, Protocol):
    """What :func:`enable` needs of a listening socket (asyncio's TransportSocket has it)."""

    def setsockopt(self, level: int, optname: int, value: int | bytes) -> None: ...


def server_off_reason() -> OffReason | None:
    """Why the kernel would refuse TFO to listeners of this namespace, or None."""
    if sysctl.read_int("net.ipv4.tcp_fastopen") & TFO_SERVER_ENABLE:
        return None
    return OffReason.SERVER_SYSCTL_OFF


def default_backlog() -> int:
    """The fastopen backlog a listener gets by default: ``net.core.somaxconn``."""
    return sysctl.read_int("net.core.somaxconn")


def enable(
    sock: Listener, *, fastopen_backlog: int | None = None, keys: KeyRing | None = None
) -> OffReason | None:
    """Turn TFO on for a listener: its fastopen backlog and, if given, its own key ring.

    Returns why TFO will not work for it anyway (the namespace's server bit clear), after
    logging a warning, or None.
    """
    qlen = default_backlog() if fastopen_backlog is None else fastopen_backlog
    sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, qlen)
    if keys is not None:
        sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_KEY, keys.to_raw())
    off = server_off_reason()
    if off is not None:
        log.warning("server TFO is off in this namespace: net.ipv4.tcp_fastopen lacks bit 0x2")
    return off


def accepted(sock: socket.socket, off: OffReason | None) -> None:
    """Record that ``sock`` was accepted by a TFO listener (so the report takes the server side)."""
    remember(sock, Attempt(Side.SERVER, attempted=off is None, off_reason=off))


class FastOpenTCPServer(socketserver.TCPServer):
    """``socketserver.TCPServer`` with TFO on its listener.

    Set ``fastopen_backlog`` (default ``net.core.somaxconn``) and ``fastopen_keys`` as class
    attributes or after construction with ``bind_and_activate=False``. In the handler,
    ``fastopen.report(self.request)`` tells whether the connection came in by TFO.
    """

    fastopen_backlog: int | None = None
    fastopen_keys: KeyRing | None = None
    #: Why TFO is off for this server's listener (set when it starts listening), or None.
    fastopen_off: OffReason | None = None
    allow_reuse_address = True

    def server_activate(self) -> None:
        self.fastopen_off = enable(
            self.socket, fastopen_backlog=self.fastopen_backlog, keys=self.fastopen_keys
        )
        super().server_activate()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = self.socket.accept()
        accepted(conn, self.fastopen_off)
        return conn, addr


class ThreadingFastOpenTCPServer(socketserver.ThreadingMixIn, FastOpenTCPServer):
    """:class:`FastOpenTCPServer` with a thread per connection."""

    daemon_threads = True
