"""The userspace stack and the kernel through the lab link: 50 ms RTT and 2% loss.

The lab's two namespaces are joined by the emulated link (``tun0`` on both sides). Each side also
gets a :class:`UserspaceStack` behind its own TUN device ``fous0``: 198.18.1.1 / fd00:f1::1 in the
client namespace, 198.18.1.2 / fd00:f1::2 in the server namespace. The namespaces forward between
the two devices, and route the other side's stack address over the link, so kernel and engine
talk across the impaired link both ways.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from conftest import require_namespaces

import fastopen
from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN
from fastopen.kernel import tcpinfo
from fastopen.lab.emulator import DEVICE, Lab
from fastopen.lab.netns import Netns
from fastopen.report import TfoReport
from fastopen.runtime import UserspaceStack

pytestmark = [pytest.mark.live, pytest.mark.timeout(90)]

PORT = 8080
ENGINE = {"client": ("198.18.1.1", "fd00:f1::1"), "server": ("198.18.1.2", "fd00:f1::2")}
REQUESTS = 4


def _side(ns: Netns, own: tuple[str, str], peer: Netns) -> UserspaceStack:
    """A stack owning ``own`` in ``ns``, reachable from ``peer`` across the link."""
    ns.sysctl("net.ipv4.ip_forward", 1)
    ns.sysctl("net.ipv6.conf.all.forwarding", 1)
    peer.ip("route", "replace", f"{own[0]}/32", "dev", DEVICE)
    peer.ip("-6", "route", "replace", f"{own[1]}/128", "dev", DEVICE)
    return UserspaceStack.attach(ns, "fous0", [f"{own[0]}/32", f"{own[1]}/128"])


@pytest.fixture
def lab() -> Iterator[tuple[Lab, UserspaceStack, UserspaceStack]]:
    """The lab, the client side's stack and the server side's stack."""
    require_namespaces()
    with Lab(rtt=0.05, loss=0.02, seed=7) as lab:
        client = _side(lab.client, ENGINE["client"], lab.server)
        with client:
            server = _side(lab.server, ENGINE["server"], lab.client)
            with server:
                yield lab, client, server


def kernel_request(ns: Netns, dst: str, data: bytes) -> tuple[bytes, bool]:
    """A kernel MSG_FASTOPEN request and its whole answer; was all SYN data acknowledged."""
    with ns.entered():
        sock = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET)
    with sock:
        sent = sock.sendto(data, MSG_FASTOPEN, (dst, PORT))
        sock.sendall(data[sent:])
        sock.settimeout(20)
        got = bytearray()
        while chunk := sock.recv(65536):
            got += chunk
        return bytes(got), tcpinfo.read(sock).syn_data


@pytest.mark.parametrize("family", [0, 1], ids=["ipv4", "ipv6"])
def test_kernel_client_engine_server_over_lab(
    lab: tuple[Lab, UserspaceStack, UserspaceStack], family: int
) -> None:
    the_lab, _, server_stack = lab
    address = ENGINE["server"][family]
    reports: list[TfoReport] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readexactly(len(b"request 0\r\n"))
        reports.append(writer.get_extra_info("fastopen"))
        writer.write(b"answer to " + data)
        writer.close()

    async def scenario() -> list[tuple[bytes, bool]]:
        async with await fastopen.start_server(handler, address, PORT, stack=server_stack):
            return [
                await asyncio.to_thread(
                    kernel_request, the_lab.client, address, b"request %d\r\n" % i
                )
                for i in range(REQUESTS)
            ]

    before = the_lab.client.counters()["TCPFastOpenActive"]
    results = asyncio.run(scenario())
    assert [answer for answer, _ in results] == [
        b"answer to request %d\r\n" % i for i in range(REQUESTS)
    ]
    in_syn = [acked for _, acked in results]
    assert not in_syn[0] and any(in_syn)  # a cookie first, then requests in the SYN
    assert the_lab.client.counters()["TCPFastOpenActive"] - before >= sum(in_syn)
    assert [r.syn_data_received for r in reports] == in_syn
    assert server_stack.host.counters["TCPFastOpenPassive"] == sum(in_syn)


def kernel_server(ns: Netns, address: str, count: int) -> list[bytes]:
    with ns.entered():
        lsock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    got = []
    with lsock:
        lsock.settimeout(30)
        lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
        lsock.bind((address, PORT))
        lsock.listen(16)
        for _ in range(count):
            conn, _ = lsock.accept()
            with conn:
                conn.settimeout(20)
                data = b""
                while not data.endswith(b"\r\n"):
                    data += conn.recv(100)
                got.append(data)
                conn.sendall(b"answer to " + data)
    return got


@pytest.mark.parametrize("family", [0, 1], ids=["ipv4", "ipv6"])
def test_engine_client_kernel_server_over_lab(
    lab: tuple[Lab, UserspaceStack, UserspaceStack], family: int
) -> None:
    the_lab, client_stack, _ = lab
    address = (the_lab.server_addr.ipv4, the_lab.server_addr.ipv6)[family]

    async def scenario() -> tuple[list[TfoReport], list[bytes]]:
        server = asyncio.create_task(
            asyncio.to_thread(kernel_server, the_lab.server, address, REQUESTS)
        )
        await asyncio.sleep(0.1)  # the listener is up
        reports = []
        for i in range(REQUESTS):
            request = b"request %d\r\n" % i
            reader, writer = await fastopen.open_connection(
                address, PORT, first_flight=request, stack=client_stack
            )
            assert await reader.read() == b"answer to " + request
            reports.append(writer.get_extra_info("fastopen"))
            writer.close()
        return reports, await server

    before = the_lab.server.counters()["TCPFastOpenPassive"]
    reports, received = asyncio.run(scenario())
    assert received == [b"request %d\r\n" % i for i in range(REQUESTS)]
    in_syn = [r.syn_data_acked for r in reports]
    assert reports[0].cookie_requested and any(in_syn)
    assert the_lab.server.counters()["TCPFastOpenPassive"] - before == sum(in_syn)
