"""HTTP with TFO through httpx (sync and async), urllib3 and requests, against a TFO server in a
namespace: a GET, HEAD or OPTIONS request rides in the SYN once a cookie is cached; a POST never
does; per-request reports tell a request in the SYN from one on a reused connection; a deferred
connect that is refused raises each library's connect error, and retries retry it."""

from __future__ import annotations

import asyncio
import http.server
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
import requests
import urllib3
from tfo import PORT, cached_cookie, serving
from urllib3.exceptions import MaxRetryError, NewConnectionError

import fastopen
from fastopen.http.aiohttp_connector import FastOpenConnector, FastOpenResponse
from fastopen.http.httpx_transport import (
    AsyncFastOpenTransport,
    DeferredConnectError,
    FastOpenTransport,
)
from fastopen.http.reports import RequestReport, response_report
from fastopen.http.requests_adapter import FastOpenAdapter
from fastopen.http.urllib3_pool import FastOpenPoolManager
from fastopen.kernel.counters import parse_netstat
from fastopen.lab.netns import SERVER, Netns
from fastopen.report import FailReason, OffReason, TfoReport

URL = f"http://{SERVER.ipv4}:{PORT}/"
#: Nothing listens there (the cookie cached for the server's address serves every port).
HTTPS_URL = f"https://{SERVER.ipv4}:8443/"
#: Answered without closing: requests to it share one kept-alive connection.
KEEP = URL + "keep"


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers every method with 200 and closes (but on /keep), so each request opens a new
    connection."""

    protocol_version = "HTTP/1.1"
    log: list[tuple[str, TfoReport]]

    def _answer(self) -> None:
        self.log.append((self.command, fastopen.report(self.request)))
        length = int(self.headers.get("Content-Length", "0"))
        body = b"got " + self.rfile.read(length) if length else b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        if self.path != "/keep":
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_OPTIONS = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(
    netns_pair: tuple[Netns, Netns],
) -> Iterator[tuple[Netns, Netns, list[tuple[str, TfoReport]]]]:
    client, server = netns_pair
    log: list[tuple[str, TfoReport]] = []
    with serving(server, type("H", (Handler,), {"log": log})):
        yield client, server, log


def check(
    requests_: list[RequestReport | None],
    log: list[tuple[str, TfoReport]],
    before: dict[str, int],
    after: dict[str, int],
) -> None:
    """GET (cookie request), GET (in the SYN), POST (never), HEAD and OPTIONS (in the SYN)."""
    assert all(r is not None and not r.reused for r in requests_)
    assert [r.in_syn for r in requests_ if r] == [False, True, False, True, True]
    get1, get2, post, head, options = (r.connection if r else None for r in requests_)
    assert get1 is not None and get1.fail_reason is FailReason.NO_COOKIE
    assert get2 is not None and get2.syn_data_acked
    assert post is not None and not post.attempted and not post.syn_data_sent
    assert post.off_reason is OffReason.NOT_REPLAY_SAFE
    assert head is not None and head.syn_data_acked
    assert options is not None and options.syn_data_acked
    assert [(m, r.syn_data_received) for m, r in log] == [
        ("GET", False),
        ("GET", True),
        ("POST", False),
        ("HEAD", True),
        ("OPTIONS", True),
    ]
    assert after["TCPFastOpenPassive"] - before["TCPFastOpenPassive"] == 3
    assert after["TCPFastOpenPassiveFail"] == before["TCPFastOpenPassiveFail"]


METHODS = ("GET", "GET", "POST", "HEAD", "OPTIONS")


#: What a request with each method sends, and what the Handler answers.
BODY = {"POST": b"x=1"}
ANSWER = {"POST": b"got x=1", "HEAD": b""}

#: One request: method, body -> status, content and the response's report.
Send = Callable[[str, bytes | None], tuple[int, bytes, RequestReport | None]]


def each_method(client: Netns, send: Send) -> list[RequestReport | None]:
    """Send one request of each of METHODS from ``client``; check the answers; the reports."""
    reports = []
    for method in METHODS:
        with client.entered():
            status, content, report = send(method, BODY.get(method))
        assert status == 200
        assert content == ANSWER.get(method, b"hello")
        reports.append(report)
    return reports


def test_httpx_sync(served: tuple[Netns, Netns, list[tuple[str, TfoReport]]]) -> None:
    client, server, log = served
    before = server.counters()
    with httpx.Client(transport=FastOpenTransport()) as http:

        def send(method: str, body: bytes | None) -> tuple[int, bytes, RequestReport | None]:
            response = http.request(method, URL, content=body)
            return response.status_code, response.content, response_report(response)

        reports = each_method(client, send)
    check(reports, log, before, server.counters())


def test_httpx_async(served: tuple[Netns, Netns, list[tuple[str, TfoReport]]]) -> None:
    client, server, log = served
    before = server.counters()

    async def main() -> list[RequestReport | None]:
        reports = []
        async with httpx.AsyncClient(transport=AsyncFastOpenTransport()) as http:
            for method in METHODS:
                with client.entered():
                    response = await http.request(method, URL, content=BODY.get(method))
                assert response.status_code == 200
                assert response.content == ANSWER.get(method, b"hello")
                reports.append(response.extensions.get("fastopen"))
        return reports

    check(asyncio.run(main()), log, before, server.counters())


def test_urllib3(served: tuple[Netns, Netns, list[tuple[str, TfoReport]]]) -> None:
    client, server, log = served
    before = server.counters()
    pool = FastOpenPoolManager()

    def send(method: str, body: bytes | None) -> tuple[int, bytes, RequestReport | None]:
        response = pool.request(method, URL, body=body)
        return response.status, response.data, response_report(response)

    reports = each_method(client, send)
    pool.clear()
    check(reports, log, before, server.counters())


def test_requests(served: tuple[Netns, Netns, list[tuple[str, TfoReport]]]) -> None:
    client, server, log = served
    before = server.counters()
    with requests.Session() as session:
        session.mount("http://", FastOpenAdapter())

        def send(method: str, body: bytes | None) -> tuple[int, bytes, RequestReport | None]:
            response = session.request(method, URL, data=body)
            return response.status_code, response.content, response_report(response)

        reports = each_method(client, send)
    check(reports, log, before, server.counters())


def aiohttp_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=FastOpenConnector(), response_class=FastOpenResponse)


def test_aiohttp(served: tuple[Netns, Netns, list[tuple[str, TfoReport]]]) -> None:
    """The connector keeps the rule: the POST connects first (the server's TCP_INFO and its
    TFO counters show no SYN data for it) though a cookie is cached by then."""
    client, server, log = served
    before = server.counters()

    async def main() -> list[RequestReport | None]:
        reports = []
        async with aiohttp_session() as http:
            for method in METHODS:
                with client.entered():
                    async with http.request(method, URL, data=BODY.get(method)) as response:
                        assert response.status == 200
                        content = await response.read()
                assert content == ANSWER.get(method, b"hello")
                reports.append(response_report(response))
        return reports

    check(asyncio.run(main()), log, before, server.counters())


# -- per-request reports on a kept-alive connection ---------------------------------------------


def _httpx_sync(client: Netns) -> list[RequestReport | None]:
    with httpx.Client(transport=FastOpenTransport()) as http, client.entered():
        http.get(URL)  # the cookie
        return [response_report(http.get(KEEP)) for _ in range(3)]


def _httpx_async(client: Netns) -> list[RequestReport | None]:
    async def main() -> list[RequestReport | None]:
        async with httpx.AsyncClient(transport=AsyncFastOpenTransport()) as http:
            with client.entered():
                await http.get(URL)
                return [response_report(await http.get(KEEP)) for _ in range(3)]

    return asyncio.run(main())


def _urllib3(client: Netns) -> list[RequestReport | None]:
    pool = FastOpenPoolManager()
    with client.entered():
        pool.request("GET", URL)
        reports = [response_report(pool.request("GET", KEEP)) for _ in range(3)]
    pool.clear()
    return reports


def _requests(client: Netns) -> list[RequestReport | None]:
    with requests.Session() as session:
        session.mount("http://", FastOpenAdapter())
        with client.entered():
            session.get(URL)
            return [response_report(session.get(KEEP)) for _ in range(3)]


def _aiohttp(client: Netns) -> list[RequestReport | None]:
    async def main() -> list[RequestReport | None]:
        reports = []
        async with aiohttp_session() as http:
            with client.entered():
                async with http.get(URL) as response:
                    await response.read()
                for _ in range(3):
                    async with http.get(KEEP) as response:
                        await response.read()
                    reports.append(response_report(response))
        return reports

    return asyncio.run(main())


@pytest.mark.parametrize("run", [_httpx_sync, _httpx_async, _urllib3, _requests, _aiohttp])
def test_reports_per_request_on_a_kept_alive_connection(
    served: tuple[Netns, Netns, list[tuple[str, TfoReport]]],
    run: Callable[[Netns], list[RequestReport | None]],
) -> None:
    """Three GETs on one connection: the first rode in the SYN, the next two did not."""
    client, _, log = served
    reports = run(client)
    assert all(r is not None for r in reports)
    assert [(r.in_syn, r.reused, r.index) for r in reports if r] == [
        (True, False, 0),
        (False, True, 1),
        (False, True, 2),
    ]
    # the connection itself did take the SYN data: each report says so, and the server agrees
    assert all(r.connection.syn_data_acked for r in reports if r)
    assert [r.syn_data_received for _, r in log] == [False, True, True, True]
    assert "reused" in str(reports[1]) and "rode in the SYN" in str(reports[0])


# -- a deferred connect that is refused --------------------------------------------------------


def out_rsts(ns: Netns) -> int:
    """RSTs the kernel of ``ns`` has sent (each refused SYN gets one)."""
    with ns.entered():
        return parse_netstat(Path("/proc/thread-self/net/snmp").read_text())["Tcp"]["OutRsts"]


@pytest.fixture
def refused(netns_pair: tuple[Netns, Netns]) -> Iterator[tuple[Netns, Netns]]:
    """A cookie cached for the server, whose port then refuses connections."""
    client, server = netns_pair
    log: list[tuple[str, TfoReport]] = []
    with serving(server, type("H", (Handler,), {"log": log})), client.entered():
        assert FastOpenPoolManager().request("GET", URL).status == 200
    assert cached_cookie(client, SERVER.ipv4)
    yield client, server


def test_httpx_refused_deferred_connect_is_a_connect_error(
    refused: tuple[Netns, Netns],
) -> None:
    client, server = refused
    for transport in (httpx.HTTPTransport(retries=2), FastOpenTransport(retries=2)):
        rsts = out_rsts(server)
        with (
            httpx.Client(transport=transport) as http,
            client.entered(),
            pytest.raises(httpx.ConnectError) as caught,
        ):
            http.get(URL)
        assert out_rsts(server) - rsts == 3, transport  # the first try and two retries
    # with TFO the connect was deferred to the write that carried the GET
    assert isinstance(caught.value.__cause__, DeferredConnectError)
    assert "Connection refused" in str(caught.value)

    async def main() -> None:
        async with httpx.AsyncClient(transport=AsyncFastOpenTransport(retries=1)) as http:
            with client.entered(), pytest.raises(httpx.ConnectError) as caught:
                await http.get(URL)
        assert isinstance(caught.value.__cause__, DeferredConnectError)

    rsts = out_rsts(server)
    asyncio.run(main())
    assert out_rsts(server) - rsts == 2

    # https: the deferred connect fails in the TLS handshake, where httpcore's own retries
    # apply (and the transport's do not come on top)
    rsts = out_rsts(server)
    with (
        httpx.Client(transport=FastOpenTransport(retries=2)) as http,
        client.entered(),
        pytest.raises(httpx.ConnectError),
    ):
        http.get(HTTPS_URL)
    assert out_rsts(server) - rsts == 3


def test_urllib3_and_requests_refused_deferred_connect_is_a_new_connection_error(
    refused: tuple[Netns, Netns],
) -> None:
    client, server = refused
    for timeout in (None, 5.0):  # blocking: the write fails; with a timeout: the read does
        pool = FastOpenPoolManager(timeout=timeout)
        with client.entered(), pytest.raises(NewConnectionError) as caught:
            pool.request("GET", URL, retries=False)
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)

        rsts = out_rsts(server)
        retry = urllib3.Retry(connect=2, read=0, backoff_factor=0)
        with client.entered(), pytest.raises(MaxRetryError) as retried:
            pool.request("GET", URL, retries=retry)
        assert isinstance(retried.value.reason, NewConnectionError)
        assert out_rsts(server) - rsts == 3

    # https: the ClientHello rode in the SYN that was refused
    with client.entered(), pytest.raises(NewConnectionError) as caught:
        FastOpenPoolManager().request("GET", HTTPS_URL, retries=False)
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)

    with requests.Session() as session:
        session.mount("http://", FastOpenAdapter(max_retries=1))
        rsts = out_rsts(server)
        with client.entered(), pytest.raises(requests.ConnectionError) as refused_:
            session.get(URL, timeout=5)
        assert isinstance(refused_.value.args[0].reason, NewConnectionError)
        assert out_rsts(server) - rsts == 2


def test_aiohttp_refused_deferred_connect_is_a_connector_error(
    refused: tuple[Netns, Netns],
) -> None:
    client, server = refused

    async def main() -> None:
        async with aiohttp_session() as http:
            with client.entered(), pytest.raises(aiohttp.ClientConnectorError) as caught:
                await http.get(URL)
        assert isinstance(caught.value.os_error, ConnectionRefusedError)

    rsts = out_rsts(server)
    asyncio.run(main())
    assert out_rsts(server) - rsts == 1


def test_unanswered_deferred_connect_is_a_connect_timeout(refused: tuple[Netns, Netns]) -> None:
    """The server's address gone, its kernel drops the SYN: the deferred connect never ends,
    and the read timeout that catches it, in SYN-SENT, is the library's connect timeout."""
    client, server = refused
    server.ip("addr", "del", f"{SERVER.ipv4}/24", "dev", "eth0")
    with (
        httpx.Client(transport=FastOpenTransport(), timeout=1.0) as http,
        client.entered(),
        pytest.raises(httpx.ConnectTimeout),
    ):
        http.get(URL)
    with client.entered(), pytest.raises(urllib3.exceptions.ConnectTimeoutError) as caught:
        FastOpenPoolManager(timeout=1.0).request("GET", URL, retries=False)
    assert not isinstance(caught.value, NewConnectionError)
