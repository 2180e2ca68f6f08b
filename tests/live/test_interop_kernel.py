"""The userspace stack against the Linux kernel, curl and nginx, over a TUN device.

Each test makes a namespace with TFO on and a :class:`UserspaceStack` owning 198.18.1.2 and
fd00:f1::2 behind the TUN device ``fous0``; the kernel of the namespace has 198.18.1.1 and
fd00:f1::1 on it. Kernel peers (Python sockets, curl, nginx) run in that namespace; the stack runs
in the test's event loop. Every kernel call blocks in a thread, so the stack keeps running.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tfo import cached_cookie

import fastopen
from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN, TCP_FASTOPEN_CONNECT
from fastopen.cookies import Key, KeyRing
from fastopen.http.responder import serve_http
from fastopen.kernel import tcpinfo
from fastopen.lab.netns import Netns
from fastopen.lab.servers import NGINX_CONF
from fastopen.pcap import read_pcap
from fastopen.report import FailReason, TfoReport
from fastopen.runtime import UserspaceStack
from fastopen.wire import PROTO_TCP, parse_ip, parse_tcp_packet

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

STACK = {4: "198.18.1.2", 6: "fd00:f1::2"}
KERNEL = {4: "198.18.1.1", 6: "fd00:f1::1"}
PORT = 8080
RING = KeyRing.from_text("a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4")
OTHER = KeyRing.from_text("01020304-05060708-090a0b0c-0d0e0f10")


@pytest.fixture
def wire(netns: Netns, tmp_path: Path) -> Iterator[tuple[Netns, UserspaceStack]]:
    """The namespace and the stack (with a capture of its packets in ``tmp_path``)."""
    stack = UserspaceStack.attach(
        netns,
        "fous0",
        ["198.18.1.2/24", "fd00:f1::2/64"],
        kernel_addresses=["198.18.1.1/24", "fd00:f1::1/64"],
        pcap=tmp_path / "stack.pcap",
        keys=RING,
    )
    with stack:
        yield netns, stack


def kernel_socket(ns: Netns, version: int) -> socket.socket:
    with ns.entered():
        return socket.socket(socket.AF_INET if version == 4 else socket.AF_INET6)


def kernel_request(
    ns: Netns, version: int, data: bytes, *, connect: bool = False, answer: int | None = None
) -> tuple[bytes, tcpinfo.TcpInfo]:
    """One request from the kernel to the stack's server (blocking: run it in a thread).

    ``MSG_FASTOPEN``, or ``TCP_FASTOPEN_CONNECT`` then a write; reads the answer to the end, or
    ``answer`` bytes; returns it with the socket's TCP_INFO.
    """
    with kernel_socket(ns, version) as sock:
        sock.settimeout(10)
        if connect:
            sock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_CONNECT, 1)
            sock.connect((STACK[version], PORT))
            sock.sendall(data)
        else:
            sock.setblocking(True)  # without a cookie the kernel does the handshake first
            sent = sock.sendto(data, MSG_FASTOPEN, (STACK[version], PORT))
            sock.sendall(data[sent:])
        got = bytearray()
        while answer is None or len(got) < answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
        return bytes(got), tcpinfo.read(sock)


class Echo:
    """A server handler: reads ``size`` bytes, answers ``answer:`` + them, keeps the reports."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.received: list[bytes] = []
        self.reports: list[TfoReport] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await reader.readexactly(self.size)
            self.received.append(data)
            self.reports.append(writer.get_extra_info("fastopen"))
            writer.write(b"answer:" + data)
            await writer.drain()
        finally:
            writer.close()


def counters_delta(ns: Netns, before: dict[str, int]) -> dict[str, int]:
    return {k: v - before[k] for k, v in ns.counters().items() if v != before[k]}


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("connect", [False, True], ids=["msg_fastopen", "fastopen_connect"])
def test_kernel_client_engine_server(
    wire: tuple[Netns, UserspaceStack], version: int, connect: bool, tmp_path: Path
) -> None:
    ns, stack = wire
    request = b"GET / request %d\r\n" % version + b"x" * 300

    async def scenario() -> None:
        echo = Echo(len(request))
        server = await fastopen.start_server(echo, STACK[version], PORT, stack=stack)
        async with server:
            first, info1 = await asyncio.to_thread(
                kernel_request, ns, version, request, connect=connect
            )
            before = ns.counters()
            second, info2 = await asyncio.to_thread(
                kernel_request, ns, version, request, connect=connect
            )
        assert first == second == b"answer:" + request
        assert echo.received == [request, request]
        # the first connection fetched the cookie; the second request rode in the SYN
        assert not info1.syn_data and info1.fastopen_client_fail == 1
        assert info2.syn_data, handshakes(tmp_path / "stack.pcap")  # seen once in CI, on 3.12
        assert counters_delta(ns, before) == {"TCPFastOpenActive": 1}
        assert [r.syn_data_received for r in echo.reports] == [False, True]
        assert echo.reports[1].tfo_child and echo.reports[1].stack == "userspace"

    asyncio.run(scenario())
    assert stack.host.counters["TCPFastOpenCookieReqd"] == 1
    assert stack.host.counters["TCPFastOpenPassive"] == 1
    # the kernel caches the cookie the engine minted with its key
    cookie = RING.mint(KERNEL[version], STACK[version])
    assert cached_cookie(ns, STACK[version]) == cookie.hex()


def engine_cookie(stack: UserspaceStack, version: int) -> bytes:
    """The cookie the engine caches for the kernel's address."""
    _, cookie, _ = stack.host.cookie_cache.get(
        ipaddress.ip_address(STACK[version]), ipaddress.ip_address(KERNEL[version])
    )
    return cookie


def kernel_server(
    ns: Netns, version: int, count: int, keys: KeyRing | None = None, qlen: int = 16
) -> list[bytes]:
    """A kernel listener (TFO backlog ``qlen``, 0: TFO off) answering ``count`` requests
    (blocking: run it in a thread)."""
    lsock = kernel_socket(ns, version)
    got = []
    with lsock:
        lsock.settimeout(10)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((KERNEL[version], PORT))
        if keys is not None:
            lsock.setsockopt(socket.IPPROTO_TCP, 33, keys.to_raw())
        if qlen:
            lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, qlen)
        lsock.listen(16)
        for _ in range(count):
            conn, _ = lsock.accept()
            with conn:
                conn.settimeout(10)
                data = conn.recv(65536)
                got.append(data)
                conn.sendall(b"answer:" + data)
    return got


async def engine_request(stack: UserspaceStack, version: int, data: bytes) -> TfoReport:
    reader, writer = await fastopen.open_connection(
        KERNEL[version], PORT, first_flight=data, stack=stack
    )
    try:
        assert await reader.read() == b"answer:" + data
        report: TfoReport = writer.get_extra_info("fastopen")
    finally:
        writer.close()
    return report


async def listening(ns: Netns, version: int) -> None:
    """Wait until the kernel listens on ``PORT``."""
    for _ in range(100):
        out = ns.run(["ss", "-Hltn", f"sport = :{PORT}"]).stdout
        if out.strip():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the kernel server did not start")


@pytest.mark.parametrize("version", [4, 6])
def test_engine_client_kernel_server(wire: tuple[Netns, UserspaceStack], version: int) -> None:
    ns, stack = wire
    ns.sysctl("net.ipv4.tcp_fastopen_key", RING.to_text())
    request = b"GET / engine %d\r\n" % version

    async def scenario() -> list[TfoReport]:
        server = asyncio.create_task(asyncio.to_thread(kernel_server, ns, version, 2))
        await listening(ns, version)
        reports = [await engine_request(stack, version, request) for _ in range(2)]
        assert await server == [request, request]
        return reports

    before = ns.counters()
    first, second = asyncio.run(scenario())
    assert first.cookie_requested and first.fail_reason is FailReason.NO_COOKIE
    assert second.syn_data_acked and second.stack == "userspace"
    delta = counters_delta(ns, before)
    assert delta == {"TCPFastOpenCookieReqd": 1, "TCPFastOpenPassive": 1}
    assert engine_cookie(stack, version) == RING.mint(STACK[version], KERNEL[version])


def handshakes(pcap: Path) -> list[str]:
    """The SYNs and SYN-ACKs the stack saw and sent: when, who, flags, TFO option, data."""
    found = []
    for captured in read_pcap(pcap):
        if parse_ip(captured.data).protocol != PROTO_TCP:
            continue
        ip, seg = parse_tcp_packet(captured.data)
        if seg.flags & seg.flags.SYN:
            found.append(
                f"{captured.time:.6f} {ip.src}:{seg.src_port} {seg.flags!r} "
                f"{seg.fastopen} data {len(seg.payload)}"
            )
    return found


def syn_options(pcap: Path, src: str) -> list[tuple[bool, bytes, bytes]]:
    """(experimental, cookie, payload) of each SYN from ``src`` carrying a TFO option."""
    found = []
    for captured in read_pcap(pcap):
        if parse_ip(captured.data).protocol != PROTO_TCP:
            continue  # the kernel's ICMPv6 chatter
        ip, seg = parse_tcp_packet(captured.data)
        fo = seg.fastopen
        if str(ip.src) == src and seg.flags == seg.flags.SYN and fo is not None:
            found.append((fo.experimental, fo.cookie, seg.payload))
    return found


def test_experimental_option_kernel_client(
    wire: tuple[Netns, UserspaceStack], tmp_path: Path
) -> None:
    """A cookie request the server ignores makes Linux try kind 254; the engine answers in it."""
    ns, stack = wire
    request = b"GET / experimental\r\n"

    async def scenario() -> Echo:
        echo = Echo(len(request))
        server = await fastopen.start_server(echo, STACK[4], PORT, stack=stack)
        async with server:
            stack.host.settings.tcp_fastopen = (
                0x1  # server TFO off: the cookie request gets no cookie
            )
            await asyncio.to_thread(kernel_request, ns, 4, request)
            stack.host.settings.tcp_fastopen = 0x3
            for _ in range(2):
                assert (await asyncio.to_thread(kernel_request, ns, 4, request))[0].endswith(
                    request
                )
        return echo

    echo = asyncio.run(scenario())
    cookie = RING.mint(KERNEL[4], STACK[4])
    assert syn_options(tmp_path / "stack.pcap", KERNEL[4]) == [
        (False, b"", b""),  # the standard cookie request, unanswered
        (True, b"", b""),  # then the experimental one, answered
        (True, cookie, request),  # the data rides with the experimental cookie
    ]
    assert [r.syn_data_received for r in echo.reports] == [False, False, True]


def test_experimental_option_engine_client(
    wire: tuple[Netns, UserspaceStack], tmp_path: Path
) -> None:
    """The engine client does as Linux: kind 254 after an unanswered cookie request; the kernel
    server answers in it and takes the data that rides with the experimental cookie."""
    ns, stack = wire
    stack.host.cookie_cache.negative_time = 0  # Linux's client, without FreeBSD's negative cache
    ns.sysctl("net.ipv4.tcp_fastopen_key", RING.to_text())
    request = b"GET / experimental\r\n"

    async def scenario() -> list[TfoReport]:
        reports = []
        for fastopen_qlen in (0, 16, 16):  # a listener without TFO first
            server = asyncio.create_task(
                asyncio.to_thread(kernel_server, ns, 4, 1, qlen=fastopen_qlen)
            )
            await listening(ns, 4)
            reports.append(await engine_request(stack, 4, request))
            assert await server == [request]
        return reports

    before = ns.counters()
    reports = asyncio.run(scenario())
    cookie = RING.mint(STACK[4], KERNEL[4])
    assert syn_options(tmp_path / "stack.pcap", STACK[4]) == [
        (False, b"", b""),
        (True, b"", b""),
        (True, cookie, request),
    ]
    assert [r.syn_data_acked for r in reports] == [False, False, True]
    # Linux counts a cookie request even at a listener without TFO
    assert counters_delta(ns, before) == {"TCPFastOpenCookieReqd": 2, "TCPFastOpenPassive": 1}


def test_key_rotation_across_stacks(wire: tuple[Netns, UserspaceStack]) -> None:
    """Both ways, a cookie of the old key is accepted as the backup's and replaced."""
    ns, stack = wire
    request = b"GET / rotation\r\n"
    rotated = RING.rotated(Key.from_text("11111111-22222222-33333333-44444444"))

    async def engine_server_side() -> Echo:
        echo = Echo(len(request))
        async with await fastopen.start_server(echo, STACK[4], PORT, stack=stack, keys=RING):
            await asyncio.to_thread(kernel_request, ns, 4, request)
        async with await fastopen.start_server(echo, STACK[4], PORT, stack=stack, keys=rotated):
            _, info = await asyncio.to_thread(kernel_request, ns, 4, request)
        assert info.syn_data
        return echo

    echo = asyncio.run(engine_server_side())
    assert echo.reports[1].syn_data_received
    assert stack.host.counters["TCPFastOpenPassiveAltKey"] == 1
    # the SYN-ACK carried the new primary's cookie, which the kernel now caches
    assert cached_cookie(ns, STACK[4]) == rotated.mint(KERNEL[4], STACK[4]).hex()

    async def kernel_server_side() -> TfoReport:
        server = asyncio.create_task(asyncio.to_thread(kernel_server, ns, 4, 1, RING))
        await listening(ns, 4)
        await engine_request(stack, 4, request)
        await server
        server = asyncio.create_task(asyncio.to_thread(kernel_server, ns, 4, 1, rotated))
        await listening(ns, 4)
        report = await engine_request(stack, 4, request)
        await server
        return report

    before = ns.counters()
    assert asyncio.run(kernel_server_side()).syn_data_acked
    assert counters_delta(ns, before) == {
        "TCPFastOpenCookieReqd": 1,  # the engine's first contact with the kernel server
        "TCPFastOpenPassive": 1,
        "TCPFastOpenPassiveAltKey": 1,
    }
    assert engine_cookie(stack, 4) == rotated.mint(STACK[4], KERNEL[4])


def test_invalid_cookie_both_ways(wire: tuple[Netns, UserspaceStack]) -> None:
    """A cookie the server does not know: ordinary handshake, the data sent again, exact."""
    ns, stack = wire
    request = b"GET / invalid cookie\r\n" + b"y" * 500

    async def kernel_client_side() -> tcpinfo.TcpInfo:
        echo = Echo(len(request))
        async with await fastopen.start_server(echo, STACK[4], PORT, stack=stack, keys=OTHER):
            await asyncio.to_thread(kernel_request, ns, 4, request)
        async with await fastopen.start_server(echo, STACK[4], PORT, stack=stack, keys=RING):
            answer, info = await asyncio.to_thread(kernel_request, ns, 4, request)
        assert answer == b"answer:" + request and echo.received[-1] == request
        assert not echo.reports[-1].syn_data_received
        return info

    before = ns.counters()
    info = asyncio.run(kernel_client_side())
    assert not info.syn_data and info.fastopen_client_fail == 2
    assert counters_delta(ns, before)["TCPFastOpenActiveFail"] == 1
    assert stack.host.counters["TCPFastOpenPassiveFail"] == 1

    async def engine_client_side() -> TfoReport:
        server = asyncio.create_task(asyncio.to_thread(kernel_server, ns, 4, 1, OTHER))
        await listening(ns, 4)
        await engine_request(stack, 4, request)  # caches OTHER's cookie
        ns.sysctl("net.ipv4.tcp_fastopen_key", RING.to_text())
        await server
        server = asyncio.create_task(asyncio.to_thread(kernel_server, ns, 4, 1))
        await listening(ns, 4)
        report = await engine_request(stack, 4, request)
        assert await server == [request]
        return report

    before = ns.counters()
    report = asyncio.run(engine_client_side())
    assert not report.syn_data_acked and report.fail_reason is FailReason.DATA_NOT_ACKED
    assert counters_delta(ns, before)["TCPFastOpenPassiveFail"] == 1


def test_fastopen_backlog_overflow(wire: tuple[Netns, UserspaceStack]) -> None:
    """A burst of 6 SYNs with data at a listener whose fastopen backlog is 2: 2 ride in the SYN,
    4 overflow to an ordinary handshake; every request still arrives exactly."""
    ns, stack = wire
    burst = 6

    async def scenario() -> Echo:
        echo = Echo(12)
        server = await fastopen.start_server(echo, STACK[4], PORT, stack=stack, fastopen_backlog=2)
        async with server:
            await asyncio.to_thread(kernel_request, ns, 4, b"cookie fetch")
            # the burst is sent from the loop's own thread: the stack reads it in one batch
            socks = [kernel_socket(ns, 4) for _ in range(burst)]
            for i, sock in enumerate(socks):
                sock.setblocking(False)
                assert sock.sendto(b"burst req %02d" % i, MSG_FASTOPEN, (STACK[4], PORT)) == 12
            try:
                for sock in socks:
                    sock.setblocking(True)
                    sock.settimeout(10)
                    await asyncio.to_thread(sock.recv, 100)
            finally:
                for sock in socks:
                    sock.close()
        return echo

    echo = asyncio.run(scenario())
    assert sorted(echo.received[1:]) == [b"burst req %02d" % i for i in range(burst)]
    assert sum(r.syn_data_received for r in echo.reports) == 2
    assert stack.host.counters["TCPFastOpenPassive"] == 2
    assert stack.host.counters["TCPFastOpenListenOverflow"] == burst - 2


def test_curl_against_engine_http(wire: tuple[Netns, UserspaceStack], tmp_path: Path) -> None:
    """``curl --tcp-fastopen`` twice at the engine's HTTP responder: the second GET is SYN data."""
    ns, stack = wire
    reports: list[TfoReport] = []
    body = b"hello from the userspace stack\n"

    def curl() -> subprocess.CompletedProcess[str]:
        return ns.run(
            ["curl", "-sS", "--tcp-fastopen", "--max-time", "10", f"http://{STACK[4]}:{PORT}/"]
        )

    async def scenario() -> list[str]:
        server = await serve_http(
            STACK[4], PORT, body=body, stack=stack, on_request=lambda *a: reports.append(a[3])
        )
        async with server:
            outs = [(await asyncio.to_thread(curl)).stdout for _ in range(2)]
        return outs

    before = ns.counters()
    assert asyncio.run(scenario()) == [body.decode()] * 2
    assert counters_delta(ns, before) == {"TCPFastOpenActive": 1}
    assert [r.syn_data_received for r in reports] == [False, True]
    # the GET that rode in the SYN is byte for byte the one curl wrote
    syns = syn_options(tmp_path / "stack.pcap", KERNEL[4])
    assert syns[1][2].startswith(b"GET / HTTP/1.1\r\nHost: 198.18.1.2:8080\r\n")


def test_engine_client_against_nginx(wire: tuple[Netns, UserspaceStack]) -> None:
    ns, stack = wire
    request = b"GET / HTTP/1.1\r\nHost: nginx\r\nConnection: close\r\n\r\n"
    with tempfile.TemporaryDirectory(prefix="fo-nginx-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp, listen=f"{KERNEL[4]}:{PORT}"))
        nginx = ns.popen(["nginx", "-c", str(conf), "-p", tmp], stderr=subprocess.PIPE)

        async def scenario() -> list[tuple[bytes, TfoReport]]:
            await listening(ns, 4)
            got = []
            for _ in range(2):
                reader, writer = await fastopen.open_connection(
                    KERNEL[4], PORT, first_flight=request, stack=stack
                )
                got.append((await reader.read(), writer.get_extra_info("fastopen")))
                writer.close()
            return got

        before = ns.counters()
        try:
            (first, r1), (second, r2) = asyncio.run(scenario())
        finally:
            nginx.terminate()
            nginx.wait(5)
    assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"nginx says hi\n")
    assert second == first.replace(first.split(b"Date: ")[1][:29], second.split(b"Date: ")[1][:29])
    assert r1.cookie_requested and r2.syn_data_acked
    assert counters_delta(ns, before) == {"TCPFastOpenCookieReqd": 1, "TCPFastOpenPassive": 1}


def test_refused_connection(wire: tuple[Netns, UserspaceStack]) -> None:
    _, stack = wire

    async def scenario() -> None:
        with pytest.raises(OSError) as caught:
            await fastopen.open_connection(KERNEL[4], 1, first_flight=b"x", stack=stack)
        assert caught.value.errno == errno.ECONNREFUSED

    asyncio.run(scenario())


def test_capture_readable_by_tshark(wire: tuple[Netns, UserspaceStack], tmp_path: Path) -> None:
    ns, stack = wire
    request = b"GET / tshark\r\n"

    async def scenario() -> None:
        echo = Echo(len(request))
        async with await fastopen.start_server(echo, STACK[6], PORT, stack=stack):
            for _ in range(2):
                await asyncio.to_thread(kernel_request, ns, 6, request)

    asyncio.run(scenario())
    out = subprocess.run(
        ["tshark", "-r", str(tmp_path / "stack.pcap"), "-Y", "tcp.options.tfo.cookie",
         "-T", "fields", "-e", "ipv6.src", "-e", "tcp.flags.str", "-e", "tcp.len",
         "-e", "tcp.options.tfo.cookie"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.split("\n")  # fmt: skip
    cookie = RING.mint(KERNEL[6], STACK[6]).hex()
    rows = [line.split("\t") for line in out if line]
    assert [r[0] for r in rows] == [STACK[6], KERNEL[6]]  # the SYN-ACK, then the SYN with data
    assert rows[1][2] == str(len(request))
    assert {r[3].replace(":", "") for r in rows} == {cookie}
