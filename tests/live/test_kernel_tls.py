"""TLS over TFO: once a cookie is cached the ClientHello rides in the SYN (sync, asyncio, httpx
sync and async, urllib3, requests, aiohttp), whatever the method, proved by the server's report
and by the kernel counters of both namespaces; urllib3 still verifies the server with the
context it builds itself (a CA file)."""

from __future__ import annotations

import asyncio
import socketserver
import ssl
from pathlib import Path

import aiohttp
import httpx
import pytest
import requests
import trustme
import urllib3
from tfo import serving

import fastopen
from fastopen.http.aiohttp_connector import FastOpenConnector, FastOpenResponse
from fastopen.http.httpx_transport import AsyncFastOpenTransport, FastOpenTransport
from fastopen.http.reports import RequestReport, response_report
from fastopen.http.requests_adapter import FastOpenAdapter
from fastopen.http.urllib3_pool import FastOpenPoolManager
from fastopen.kernel.client import tls_connection
from fastopen.lab.netns import SERVER, Netns
from fastopen.report import FailReason, TfoReport

PORT = 8443
URL = f"https://{SERVER.ipv4}:{PORT}/"
REQUEST = f"GET / HTTP/1.1\r\nHost: {SERVER.ipv4}\r\nConnection: close\r\n\r\n".encode()
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"


class TlsHandler(socketserver.BaseRequestHandler):
    """Records the TFO report of the raw connection, then speaks HTTP/1.1 over TLS."""

    context: ssl.SSLContext
    log: list[TfoReport]

    def handle(self) -> None:
        self.log.append(fastopen.report(self.request))
        with self.context.wrap_socket(self.request, server_side=True) as tls:
            with tls.makefile("rb") as request:
                length = 0
                while (line := request.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    if name.lower() == b"content-length":
                        length = int(value)
                request.read(length)  # all of it: a close with unread data would send a RST
            tls.sendall(RESPONSE)


def test_client_hello_rides_in_the_syn(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SERVER.ipv4).configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    log: list[TfoReport] = []
    handler = type("H", (TlsHandler,), {"context": server_ctx, "log": log})

    def sync_tls() -> TfoReport:
        with client.entered():
            tls = tls_connection((SERVER.ipv4, PORT), client_ctx, timeout=5)
        with tls:
            tls.sendall(REQUEST)
            assert tls.recv(4096).endswith(b"hello")
            return fastopen.report(tls)

    async def asyncio_tls() -> TfoReport:
        with client.entered():
            reader, writer = await fastopen.open_connection(
                SERVER.ipv4, PORT, first_flight=REQUEST, ssl=client_ctx
            )
        # the transport was made while the kernel deferred the connect (getpeername: ENOTCONN)
        assert writer.get_extra_info("peername")[:2] == (SERVER.ipv4, PORT)
        assert (await reader.read()).endswith(b"hello")
        rep: TfoReport = writer.get_extra_info("fastopen")
        writer.close()
        return rep

    async def httpx_async() -> TfoReport:
        async with httpx.AsyncClient(transport=AsyncFastOpenTransport(verify=client_ctx)) as http:
            with client.entered():
                response = await http.get(f"https://{SERVER.ipv4}:{PORT}/")
        assert response.text == "hello"
        rep: TfoReport = response.extensions["fastopen"].connection
        return rep

    with serving(server, handler, PORT):
        first = sync_tls()  # no cookie yet: a cookie request
        c0, s0 = client.counters(), server.counters()
        reports = [sync_tls(), asyncio.run(asyncio_tls())]
        with httpx.Client(transport=FastOpenTransport(verify=client_ctx)) as http:
            with client.entered():
                # a POST over https: the ClientHello (not the request) is what rides in the SYN
                response = http.post(f"https://{SERVER.ipv4}:{PORT}/", content=b"x")
            assert response.text == "hello"
            reports.append(response.extensions["fastopen"].connection)
        reports.append(asyncio.run(httpx_async()))
        c1, s1 = client.counters(), server.counters()

    assert first.fail_reason is FailReason.NO_COOKIE
    assert all(r.syn_data_acked and r.fail_reason is None for r in reports), reports
    assert [r.syn_data_received for r in log] == [False, True, True, True, True]
    assert c1["TCPFastOpenActive"] - c0["TCPFastOpenActive"] == 4
    assert s1["TCPFastOpenPassive"] - s0["TCPFastOpenPassive"] == 4
    assert s1["TCPFastOpenPassiveFail"] == s0["TCPFastOpenPassiveFail"]


def test_client_hello_rides_in_the_syn_urllib3_requests_aiohttp(
    netns_pair: tuple[Netns, Netns], tmp_path: Path
) -> None:
    client, server = netns_pair
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SERVER.ipv4).configure_cert(server_ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    client_ctx = ssl.create_default_context(cafile=str(ca_file))
    log: list[TfoReport] = []
    handler = type("H", (TlsHandler,), {"context": server_ctx, "log": log})

    async def with_aiohttp() -> RequestReport | None:
        async with aiohttp.ClientSession(
            connector=FastOpenConnector(ssl=client_ctx), response_class=FastOpenResponse
        ) as session:
            with client.entered():
                async with session.post(URL, data=b"x") as response:
                    assert await response.read() == b"hello"
        return response_report(response)

    with serving(server, handler, PORT):
        pool = FastOpenPoolManager(ca_certs=str(ca_file))
        with client.entered():
            first = pool.request("GET", URL)  # no cookie yet: a cookie request
        c0, s0 = client.counters(), server.counters()
        reports = []
        with client.entered():
            for method in ("GET", "POST"):
                response = pool.request(method, URL, body=b"x" if method == "POST" else None)
                assert response.data == b"hello"
                reports.append(response_report(response))
            with requests.Session() as session:
                session.mount("https://", FastOpenAdapter())
                got = session.get(URL, verify=str(ca_file))
                assert got.text == "hello"
                reports.append(response_report(got))
        reports.append(asyncio.run(with_aiohttp()))
        c1, s1 = client.counters(), server.counters()
        # verification is on: a client that does not trust the CA fails the handshake
        with client.entered(), pytest.raises(urllib3.exceptions.MaxRetryError) as untrusted:
            FastOpenPoolManager().request("GET", URL, retries=1)

    assert isinstance(untrusted.value.reason, urllib3.exceptions.SSLError)
    first_report = response_report(first)
    assert first_report is not None and not first_report.handshake_in_syn
    assert all(r is not None and r.tls and r.handshake_in_syn and not r.in_syn for r in reports)
    assert [r.syn_data_received for r in log[:5]] == [False, True, True, True, True]
    assert c1["TCPFastOpenActive"] - c0["TCPFastOpenActive"] == 4
    assert s1["TCPFastOpenPassive"] - s0["TCPFastOpenPassive"] == 4
    assert s1["TCPFastOpenPassiveFail"] == s0["TCPFastOpenPassiveFail"]
