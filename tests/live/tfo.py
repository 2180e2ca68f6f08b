"""Kernel TFO helpers for the live tests: a raw TFO listener and an echo server on one, a one-shot
``MSG_FASTOPEN`` request, a :class:`fastopen.ThreadingFastOpenTCPServer` serving in a thread, and
the cookie a namespace's kernel caches for a server.
"""

from __future__ import annotations

import re
import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import fastopen
from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN
from fastopen.lab.netns import SERVER, Netns
from fastopen.lab.servers import kernel_echo

PORT = 8080


def family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tfo_listener(ns: Netns, addr: str, port: int = PORT, qlen: int = 16) -> socket.socket:
    """A socket listening at ``addr``:``port`` in ``ns`` with TCP_FASTOPEN (backlog ``qlen``)."""
    with ns.entered():
        lsock = socket.socket(family(addr), socket.SOCK_STREAM)
    try:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, qlen)
        lsock.bind((addr, port))
        lsock.listen(qlen)
    except BaseException:
        lsock.close()
        raise
    return lsock


@contextmanager
def echo_server(ns: Netns, addr: str, port: int = PORT) -> Iterator[None]:
    """A TFO listener at ``addr``:``port`` in ``ns`` answering ``ok:`` + what it got (one read a
    connection) until the block ends (:func:`fastopen.lab.servers.kernel_echo`)."""
    with kernel_echo(ns, addr, port, tag=b"ok:"):
        yield


def request(ns: Netns, dst: str, data: bytes, src: str | None = None, port: int = PORT) -> bytes:
    """One TFO request from ``ns`` (``sendto(MSG_FASTOPEN)``, blocking); the server's answer."""
    with ns.entered():
        sock = socket.socket(family(dst), socket.SOCK_STREAM)
    with sock:
        # blocking (without a cookie the kernel completes the handshake first), bounded by the
        # kernel's own send timeout; then a Python timeout for the answer
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 5, 0))
        if src is not None:
            sock.bind((src, 0))
        sock.sendto(data, MSG_FASTOPEN, (dst, port))
        sock.settimeout(5)
        return sock.recv(100)


@contextmanager
def serving(
    ns: Netns, handler: type[socketserver.BaseRequestHandler], port: int = PORT
) -> Iterator[fastopen.ThreadingFastOpenTCPServer]:
    """A :class:`fastopen.ThreadingFastOpenTCPServer` at ``SERVER.ipv4``:``port`` in ``ns``,
    serving ``handler`` in a thread until the block ends."""
    with ns.entered():
        srv = fastopen.ThreadingFastOpenTCPServer((SERVER.ipv4, port), handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def cached_cookie(client: Netns, server_addr: str) -> str:
    """The TFO cookie (hex) the kernel of ``client`` caches for ``server_addr`` (tcp_metrics)."""
    out = client.run(["ip", "tcp_metrics", "show", server_addr]).stdout
    match = re.search(r"fo_cookie ([0-9a-f]+)", out)
    assert match, f"no cookie cached for {server_addr}: {out!r}"
    return match.group(1)
