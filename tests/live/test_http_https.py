"""https with TFO through urllib3, requests and aiohttp: once a cookie is cached the TLS
ClientHello rides in the SYN whatever the method, and urllib3 still verifies the server with the
context it builds itself (a CA file), proved by the server's TCP_INFO and its counters."""

from __future__ import annotations

import asyncio
import socketserver
import ssl
from pathlib import Path

import aiohttp
import pytest
import requests
import trustme
import urllib3
from tfo import serving

import fastopen
from fastopen.http.aiohttp_connector import FastOpenConnector, FastOpenResponse
from fastopen.http.reports import RequestReport, response_report
from fastopen.http.requests_adapter import FastOpenAdapter
from fastopen.http.urllib3_pool import FastOpenPoolManager
from fastopen.lab.netns import SERVER, Netns
from fastopen.report import TfoReport

PORT = 8443
URL = f"https://{SERVER.ipv4}:{PORT}/"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"


class TlsHandler(socketserver.BaseRequestHandler):
    """Records the TFO report of the raw connection, then answers one request over TLS."""

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
                request.read(length)
            tls.sendall(RESPONSE)


def test_client_hello_rides_in_the_syn(netns_pair: tuple[Netns, Netns], tmp_path: Path) -> None:
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
