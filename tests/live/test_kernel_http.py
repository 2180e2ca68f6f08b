"""HTTP with TFO through httpx (sync and async) and urllib3, against a TFO server in a namespace:
a GET, HEAD or OPTIONS request rides in the SYN once a cookie is cached; a POST never does."""

from __future__ import annotations

import asyncio
import http.server
from collections.abc import Iterator

import httpx
import pytest
from tfo import PORT, serving

import fastopen
from fastopen.http.httpx_transport import AsyncFastOpenTransport, FastOpenTransport
from fastopen.http.urllib3_pool import FastOpenPoolManager, response_report
from fastopen.lab.netns import SERVER, Netns
from fastopen.report import FailReason, OffReason, TfoReport

URL = f"http://{SERVER.ipv4}:{PORT}/"


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers every method with 200 and closes, so each request opens a new connection."""

    protocol_version = "HTTP/1.1"
    log: list[tuple[str, TfoReport]]

    def _answer(self) -> None:
        self.log.append((self.command, fastopen.report(self.request)))
        length = int(self.headers.get("Content-Length", "0"))
        body = b"got " + self.rfile.read(length) if length else b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
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
    reports: list[TfoReport | None],
    log: list[tuple[str, TfoReport]],
    before: dict[str, int],
    after: dict[str, int],
) -> None:
    """GET (cookie request), GET (in the SYN), POST (never), HEAD and OPTIONS (in the SYN)."""
    get1, get2, post, head, options = reports
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


def test_httpx_sync(served: tuple[Netns, Netns, list[tuple[str, TfoReport]]]) -> None:
    client, server, log = served
    before = server.counters()
    reports = []
    with httpx.Client(transport=FastOpenTransport()) as http:
        for method in METHODS:
            with client.entered():
                response = http.request(method, URL, content=b"x=1" if method == "POST" else None)
            assert response.status_code == 200
            assert response.content == {"POST": b"got x=1", "HEAD": b""}.get(method, b"hello")
            reports.append(response.extensions.get("fastopen"))
    check(reports, log, before, server.counters())


def test_httpx_async(served: tuple[Netns, Netns, list[tuple[str, TfoReport]]]) -> None:
    client, server, log = served
    before = server.counters()

    async def main() -> list[TfoReport | None]:
        reports = []
        async with httpx.AsyncClient(transport=AsyncFastOpenTransport()) as http:
            for method in METHODS:
                with client.entered():
                    response = await http.request(method, URL)
                assert response.status_code == 200
                reports.append(response.extensions.get("fastopen"))
        return reports

    check(asyncio.run(main()), log, before, server.counters())


def test_urllib3(served: tuple[Netns, Netns, list[tuple[str, TfoReport]]]) -> None:
    client, server, log = served
    before = server.counters()
    pool = FastOpenPoolManager()
    reports = []
    for method in METHODS:
        with client.entered():
            response = pool.request(method, URL, body=b"x=1" if method == "POST" else None)
        assert response.status == 200
        assert response.data == {"POST": b"got x=1", "HEAD": b""}.get(method, b"hello")
        reports.append(response_report(response))
    pool.clear()
    check(reports, log, before, server.counters())
