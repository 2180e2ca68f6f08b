"""The kernel client API against the kernel as judge, for sockets and failures fastopen did not
make: the side of sockets other servers accepted, cookie prefetch (tcp_metrics), and connects
deferred to the first write that fail as ``socket.create_connection`` fails."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from tfo import PORT, cached_cookie, echo_server, request

import fastopen
from fastopen.constants import TCP_FASTOPEN
from fastopen.lab.netns import CLIENT, SERVER, Netns
from fastopen.report import Side

pytestmark = pytest.mark.live


@contextmanager
def create_server(ns: Netns, *, tfo: bool) -> Iterator[list[socket.socket]]:
    """``socket.create_server`` in ``ns`` (TFO set by hand when ``tfo``), accepting into a list."""
    with ns.entered():
        lsock = socket.create_server((SERVER.ipv4, PORT))
    if tfo:
        lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
    lsock.settimeout(5)
    accepted: list[socket.socket] = []
    try:
        yield accepted
    finally:
        lsock.close()
        for conn in accepted:
            conn.close()


def test_sockets_accepted_by_any_server_report_the_server_side(
    netns_pair: tuple[Netns, Netns],
) -> None:
    client, server = netns_pair
    with server.entered():
        lsock = socket.create_server((SERVER.ipv4, PORT))
    with lsock:
        lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
        lsock.settimeout(5)
        served: list[tuple[socket.socket, bytes]] = []

        def serve(count: int) -> None:
            for _ in range(count):
                conn, _ = lsock.accept()
                data = conn.recv(100)
                conn.sendall(b"ok:" + data)
                served.append((conn, data))

        thread = threading.Thread(target=serve, args=(2,))
        thread.start()
        try:
            assert request(client, SERVER.ipv4, b"one") == b"ok:one"  # asks for a cookie
            assert request(client, SERVER.ipv4, b"two") == b"ok:two"  # rides in the SYN
        finally:
            thread.join(10)
        with client.entered():
            plain = socket.create_connection((SERVER.ipv4, PORT), 5)
        conn, _ = lsock.accept()
        with plain, conn:
            # from outside either namespace the kernel cannot be asked: a FastOpenTCPServer
            # would know, a socket nobody recorded is a client's as before
            with server.entered():
                reports = [fastopen.report(c) for c, _ in served] + [fastopen.report(conn)]
            with client.entered():
                client_side = fastopen.report(plain)
        for c, _ in served:
            c.close()
    assert [r.side for r in reports] == [Side.SERVER] * 3
    assert not reports[0].tfo_child and not reports[0].syn_data_received
    assert reports[1].tfo_child and reports[1].syn_data_received and reports[1].used
    assert "TFO server: came in by TFO yes, SYN data received yes" in str(reports[1])
    assert not reports[2].tfo_child and reports[2].side is Side.SERVER
    assert client_side.side is Side.CLIENT


def test_prefetch_gets_a_cookie_without_data(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    with echo_server(server, SERVER.ipv4):
        with client.entered():
            before = fastopen.has_cookie(SERVER.ipv4, PORT)
            got = fastopen.prefetch_cookie(SERVER.ipv4, PORT)
            after = fastopen.has_cookie(SERVER.ipv4, PORT)
            sock = fastopen.create_connection((SERVER.ipv4, PORT), 5, first_flight=b"GET")
        with sock:
            assert sock.recv(100) == b"ok:GET"
            rep = fastopen.report(sock)
    assert (before, got, after) == (False, True, True)
    assert cached_cookie(client, SERVER.ipv4)
    assert rep.syn_data_acked and not rep.cookie_requested  # the first data rode in the SYN


def test_prefetch_asyncio_and_a_server_without_tfo(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair

    async def prefetch() -> tuple[bool, bool, bool]:
        before = await fastopen.ahas_cookie(SERVER.ipv4, PORT)
        got = await fastopen.aprefetch_cookie(SERVER.ipv4, PORT)
        return before, got, await fastopen.ahas_cookie(SERVER.ipv4, PORT)

    with create_server(server, tfo=False), client.entered():
        no_tfo = asyncio.run(prefetch())
    with create_server(server, tfo=True), client.entered():
        tfo = asyncio.run(prefetch())
    assert no_tfo == (False, False, False)  # the server gave no cookie: prefetch says so
    assert tfo == (False, True, True)


def _error(connect: Callable[[], object]) -> BaseException:
    try:
        sock = connect()
    except Exception as exc:
        return exc
    sock.close()  # type: ignore[attr-defined]
    raise AssertionError("connected")


def _open(first_flight: bytes) -> Callable[[], object]:
    async def go() -> None:
        _, writer = await fastopen.open_connection(SERVER.ipv4, PORT, first_flight=first_flight)
        writer.close()

    return lambda: asyncio.run(go())


CONNECTS: dict[str, Callable[[float | None], Callable[[], object]]] = {
    "sync-data": lambda t: (
        lambda: fastopen.create_connection((SERVER.ipv4, PORT), t, first_flight=b"GET")
    ),
    "sync-blocking-data": lambda t: (
        lambda: fastopen.create_connection((SERVER.ipv4, PORT), None, first_flight=b"GET")
    ),
    "sync-no-data": lambda t: lambda: fastopen.create_connection((SERVER.ipv4, PORT), t),
    "asyncio-data": lambda t: _open(b"GET"),
    "asyncio-no-data": lambda t: _open(b""),
}


@pytest.mark.parametrize("how", list(CONNECTS))
def test_a_refused_deferred_connect_raises_the_connect_error(
    netns_pair: tuple[Netns, Netns], how: str
) -> None:
    client, server = netns_pair
    with echo_server(server, SERVER.ipv4), client.entered():
        assert fastopen.prefetch_cookie(SERVER.ipv4, PORT)  # so the next connect is deferred
    with client.entered():
        assert fastopen.has_cookie(SERVER.ipv4, PORT)
        expected = _error(lambda: socket.create_connection((SERVER.ipv4, PORT), 5))
        got = _error(CONNECTS[how](5))
    assert type(expected) is ConnectionRefusedError
    assert type(got) is ConnectionRefusedError, repr(got)


def test_an_unanswered_deferred_connect_times_out(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    with echo_server(server, SERVER.ipv4), client.entered():
        assert fastopen.prefetch_cookie(SERVER.ipv4, PORT)
    server.ip("route", "add", "blackhole", CLIENT.ipv4)  # the SYN-ACK never leaves the server
    with client.entered():
        expected = _error(lambda: socket.create_connection((SERVER.ipv4, PORT), 0.5))
        got = _error(CONNECTS["sync-data"](0.5))
    assert isinstance(expected, TimeoutError) and isinstance(got, TimeoutError)


def test_an_unreachable_host_fails_as_the_socket_module_says(
    netns_pair: tuple[Netns, Netns],
) -> None:
    client, server = netns_pair
    with echo_server(server, SERVER.ipv4), client.entered():
        assert fastopen.prefetch_cookie(SERVER.ipv4, PORT)
    client.ip("route", "add", "unreachable", SERVER.ipv4)
    with client.entered():
        expected = _error(lambda: socket.create_connection((SERVER.ipv4, PORT), 5))
        got = _error(CONNECTS["sync-data"](5))
        agot = _error(CONNECTS["asyncio-data"](5))
    assert isinstance(expected, OSError) and expected.errno is not None
    for exc in (got, agot):
        assert type(exc) is type(expected) and isinstance(exc, OSError)
        assert exc.errno == expected.errno
