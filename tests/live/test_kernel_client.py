"""TFO on the kernel stack through fastopen's client and server API, with the kernel as judge:
the reports on both ends, the TcpExt counters and the data that arrived must all agree."""

from __future__ import annotations

import asyncio
import socket
import socketserver
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from tfo import PORT, cached_cookie, serving

import fastopen
from fastopen.cookies import KeyRing
from fastopen.lab.netns import CLIENT, SERVER, Netns
from fastopen.report import FailReason, OffReason, Side, TfoReport

OLD = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"
NEW = "01234567-89abcdef-fedcba98-76543210"


class Echo(socketserver.BaseRequestHandler):
    """Answers one read with ``echo:`` and what it read; records the server side's report."""

    reports: list[TfoReport]

    def handle(self) -> None:
        self.reports.append(fastopen.report(self.request))
        data = self.request.recv(1000)
        self.request.sendall(b"echo:" + data)


@contextmanager
def echo_server(ns: Netns) -> Iterator[list[TfoReport]]:
    """A ThreadingFastOpenTCPServer in ``ns`` on SERVER.ipv4:PORT; yields the server reports."""
    reports: list[TfoReport] = []
    with serving(ns, type("H", (Echo,), {"reports": reports})):
        yield reports


def exchange(ns: Netns, data: bytes = b"GET /") -> TfoReport:
    """One sync request from ``ns``: returns the client's report."""
    with ns.entered():
        sock = fastopen.create_connection((SERVER.ipv4, PORT), 5, first_flight=data)
    with sock:
        assert sock.getpeername() == (SERVER.ipv4, PORT)
        assert sock.recv(1000) == b"echo:" + data
        return fastopen.report(sock)


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def test_first_contact_requests_cookie_then_data_rides_in_syn(
    netns_pair: tuple[Netns, Netns],
) -> None:
    client, server = netns_pair
    with echo_server(server) as server_reports:
        c0, s0 = client.counters(), server.counters()
        first = exchange(client)
        c1, s1 = client.counters(), server.counters()
        second = exchange(client)
        c2, s2 = client.counters(), server.counters()

    assert first.side is Side.CLIENT and first.attempted and first.cookie_requested
    assert not first.syn_data_sent and not first.syn_data_acked
    assert first.fail_reason is FailReason.NO_COOKIE
    assert delta(s0, s1) == {"TCPFastOpenCookieReqd": 1}
    assert delta(c0, c1) == {}

    assert second.attempted and second.syn_data_sent and second.syn_data_acked
    assert not second.cookie_requested and second.fail_reason is None and second.used
    assert second.rtt is not None and second.rtt > 0
    assert delta(c1, c2) == {"TCPFastOpenActive": 1}
    assert delta(s1, s2) == {"TCPFastOpenPassive": 1}

    assert [r.side for r in server_reports] == [Side.SERVER, Side.SERVER]
    assert [(r.tfo_child, r.syn_data_received) for r in server_reports] == [
        (False, False),
        (True, True),
    ]
    assert "SYN data acknowledged yes" in str(second)
    assert second.to_dict()["fail_reason"] is None
    assert first.to_dict()["fail_reason"] == "no-cookie"


def test_client_sysctl_off_falls_back_with_reason(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    client.sysctl("net.ipv4.tcp_fastopen", 0)
    with echo_server(server):
        before = server.counters()
        reports = [exchange(client) for _ in range(2)]
        after = server.counters()
    for rep in reports:
        assert not rep.attempted and rep.off_reason is OffReason.CLIENT_SYSCTL_OFF
        assert rep.fail_reason is FailReason.TFO_OFF and not rep.syn_data_acked
    assert delta(before, after) == {}  # not even a cookie request reached the server
    assert "net.ipv4.tcp_fastopen lacks bit 0x1" in str(reports[0])


def test_server_sysctl_off_falls_back_with_reason(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    server.sysctl("net.ipv4.tcp_fastopen", 1)  # client bit only
    with echo_server(server) as server_reports:
        reports = [exchange(client) for _ in range(2)]
    # the server never hands out a cookie, so every connection is a cookie request
    assert [r.fail_reason for r in reports] == [FailReason.NO_COOKIE] * 2
    assert all(r.attempted and not r.syn_data_acked for r in reports)
    assert all(r.off_reason is OffReason.SERVER_SYSCTL_OFF for r in server_reports)
    assert all(not r.attempted for r in server_reports)
    counters = server.counters()
    assert counters["TCPFastOpenCookieReqd"] == 2  # the requests arrive (and are counted)...
    assert counters["TCPFastOpenPassive"] == 0
    assert "fo_cookie" not in client.run(["ip", "tcp_metrics", "show", SERVER.ipv4]).stdout


def test_key_change_gives_data_not_acked_then_recovery(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    server.sysctl("net.ipv4.tcp_fastopen_key", OLD)
    with echo_server(server) as server_reports:
        exchange(client)  # cookie under OLD
        assert exchange(client).syn_data_acked
        server.sysctl("net.ipv4.tcp_fastopen_key", NEW)  # OLD dropped, no backup
        c0, s0 = client.counters(), server.counters()
        stale = exchange(client)
        c1, s1 = client.counters(), server.counters()
        recovered = exchange(client)

    assert stale.syn_data_sent and not stale.syn_data_acked
    assert stale.fail_reason is FailReason.DATA_NOT_ACKED and not stale.cookie_requested
    assert delta(c0, c1) == {"TCPFastOpenActiveFail": 1}
    assert delta(s0, s1) == {"TCPFastOpenPassiveFail": 1}
    assert recovered.syn_data_acked and recovered.fail_reason is None
    assert [r.syn_data_received for r in server_reports] == [False, True, False, True]


def test_without_a_first_flight_the_syn_still_carries_the_cookie(
    netns_pair: tuple[Netns, Netns],
) -> None:
    client, server = netns_pair
    with echo_server(server) as server_reports:
        with client.entered():
            first = fastopen.create_connection((SERVER.ipv4, PORT), 5)  # asks for a cookie
        with first:
            asked = fastopen.report(first)
            first.sendall(b"one")
            assert first.recv(100) == b"echo:one"
        with client.entered():
            sock = fastopen.create_connection((SERVER.ipv4, PORT), 5)  # carries it, no data
        with sock:
            rep = fastopen.report(sock)
            sock.sendall(b"late")
            assert sock.recv(100) == b"echo:late"
        with client.entered():
            off = fastopen.create_connection(
                (SERVER.ipv4, PORT), 5, first_flight=b"x", fastopen=False
            )
        with off:
            assert off.recv(100) == b"echo:x"
            assert fastopen.report(off).off_reason is OffReason.DISABLED_BY_CALLER
    assert asked.attempted and asked.cookie_requested and asked.fail_reason is FailReason.NO_DATA
    assert rep.attempted and not rep.cookie_requested and not rep.syn_data_sent
    assert rep.fail_reason is FailReason.NO_DATA and rep.off_reason is None
    assert "no first flight" in str(rep)
    assert not server_reports[0].tfo_child  # it only got a cookie
    assert server_reports[1].tfo_child and not server_reports[1].syn_data_received
    assert not server_reports[2].tfo_child


def test_timeout_is_the_second_argument_as_in_the_socket_module(
    netns_pair: tuple[Netns, Netns],
) -> None:
    client, server = netns_pair
    with echo_server(server), client.entered():
        sock = fastopen.create_connection((SERVER.ipv4, PORT), 2.5, (CLIENT.ipv4, 0))
        with sock:
            assert sock.gettimeout() == 2.5 and sock.getsockname()[0] == CLIENT.ipv4
        with pytest.raises(TypeError, match="first_flight="):
            fastopen.create_connection((SERVER.ipv4, PORT), b"data")  # type: ignore[arg-type]


def test_names_resolve(netns_pair: tuple[Netns, Netns]) -> None:
    client, _ = netns_pair
    with client.entered():
        lsock = socket.create_server(("127.0.0.1", 0))
        port = lsock.getsockname()[1]
        sock = fastopen.create_connection(("localhost", port), 5, first_flight=b"hi")
    with lsock, sock:
        conn, _ = lsock.accept()
        with conn:
            assert conn.recv(10) == b"hi"
        assert sock.getpeername() == ("127.0.0.1", port)


def test_asyncio_client_and_server_with_listener_keys(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    ring = KeyRing.from_text(NEW)
    server_reports: list[TfoReport] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_reports.append(writer.get_extra_info("fastopen"))
        writer.write(b"echo:" + await reader.read(100))
        await writer.drain()
        writer.close()

    async def main() -> list[TfoReport]:
        with server.entered():
            srv = await fastopen.start_server(handler, SERVER.ipv6, PORT, keys=ring)
        reports = []
        async with srv:
            for _ in range(2):
                with client.entered():
                    reader, writer = await fastopen.open_connection(
                        SERVER.ipv6, PORT, first_flight=b"ping"
                    )
                assert writer.get_extra_info("peername")[:2] == (SERVER.ipv6, PORT)
                assert await reader.read() == b"echo:ping"
                reports.append(writer.get_extra_info("fastopen"))
                writer.close()
        return reports

    reports = asyncio.run(main())
    assert [r.fail_reason for r in reports] == [FailReason.NO_COOKIE, None]
    assert reports[1].syn_data_acked
    assert [(r.tfo_child, r.syn_data_received) for r in server_reports] == [
        (False, False),
        (True, True),
    ]
    # the cookie the client cached was made with the listener's own key, not the namespace's
    assert cached_cookie(client, SERVER.ipv6) == ring.mint(CLIENT.ipv6, SERVER.ipv6).hex()
