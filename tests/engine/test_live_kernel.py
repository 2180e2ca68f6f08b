"""The engine against the Linux kernel: a TUN device in a namespace carries real packets between
the engine (198.18.0.2, in this process) and the kernel (198.18.0.1, in the namespace).

TFO both ways, twice each: a cookie request first (the cookie must be the one Linux mints with the
namespace key), then SYN data that the other side takes at once, seen in both sets of counters.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import select
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN, TCPI_OPT_TFO_CHILD
from fastopen.cookies import KeyRing
from fastopen.engine import Connected, EngineError, EngineSocket, Host
from fastopen.engine.bbr import Bbr
from fastopen.lab.netns import Netns
from fastopen.runtime.tun import open_tun

pytestmark = [pytest.mark.live, pytest.mark.timeout(30)]

KERNEL, ENGINE = "198.18.0.1", "198.18.0.2"
RING = KeyRing.from_text("a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4")
DEVICE = "fotun0"


@pytest.fixture
def wire(netns: Netns) -> Iterator[tuple[Netns, int]]:
    """A TUN device in the namespace, the kernel's side addressed 198.18.0.1/24."""
    fd = open_tun(netns, DEVICE)
    try:
        netns.sysctl(f"net.ipv6.conf.{DEVICE}.disable_ipv6", 1)
        netns.ip("link", "set", DEVICE, "up")
        netns.ip("addr", "add", f"{KERNEL}/24", "dev", DEVICE)
        netns.sysctl("net.ipv4.tcp_fastopen_key", RING.to_text())
        yield netns, fd
    finally:
        os.close(fd)


def run(host: Host, fd: int, done: Callable[[], bool], seconds: float = 5.0) -> None:
    """Move packets between the engine and the TUN device, in real time, until ``done()``."""
    deadline = time.monotonic() + seconds
    while not done():
        now = time.monotonic()
        assert now < deadline, "timed out"
        for packet in host.packets_to_send():
            os.write(fd, packet)
        timer = host.get_timer()
        wait = 0.005 if timer is None else min(0.005, max(0.0, timer - now))
        if select.select([fd], [], [], wait)[0]:
            with contextlib.suppress(BlockingIOError):
                while True:
                    host.receive(os.read(fd, 65535), time.monotonic())
        now = time.monotonic()
        if timer is not None and timer <= now:
            host.handle_timer(now)
        for packet in host.packets_to_send():
            os.write(fd, packet)


def kernel_accept(host: Host, fd: int, listener: socket.socket) -> socket.socket:
    got: list[socket.socket] = []

    def done() -> bool:
        with contextlib.suppress(BlockingIOError):
            got.append(listener.accept()[0])
        return bool(got)

    run(host, fd, done)
    got[0].setblocking(False)
    return got[0]


def kernel_read(host: Host, fd: int, sock: socket.socket, size: int) -> bytes:
    buf = bytearray()

    def done() -> bool:
        with contextlib.suppress(BlockingIOError):
            buf.extend(sock.recv(4096))
        return len(buf) >= size

    run(host, fd, done)
    return bytes(buf)


def engine_read(host: Host, fd: int, sock: EngineSocket, size: int | None = None) -> bytes:
    """Read ``size`` bytes, or (``size=None``) up to the end of the stream."""
    buf = bytearray()
    eof: list[bool] = []

    def done() -> bool:
        try:
            chunk = sock.recv(4096, time.monotonic())
        except EngineError as exc:
            assert exc.errno == errno.EAGAIN
            return False
        if not chunk:
            eof.append(True)
        buf.extend(chunk)
        return bool(eof) if size is None else len(buf) >= size

    run(host, fd, done)
    return bytes(buf)


def engine_client_exchange(host: Host, fd: int, listener: socket.socket, request: bytes) -> int:
    """One transaction from the engine to the kernel; returns what went into the SYN."""
    sock = host.socket()
    in_syn = 0
    try:
        in_syn = sock.sendto(request, MSG_FASTOPEN, (KERNEL, 8080), time.monotonic())
    except EngineError as exc:
        assert exc.errno == errno.EINPROGRESS
        run(host, fd, lambda: isinstance(host.next_event(), Connected))
        assert sock.send(request, time.monotonic()) == len(request)
    conn = kernel_accept(host, fd, listener)
    with conn:
        assert kernel_read(host, fd, conn, len(request)) == request
        conn.sendall(b"answer " + request)
    assert engine_read(host, fd, sock) == b"answer " + request
    sock.close(time.monotonic())
    run(
        host,
        fd,
        lambda: (
            not host.connections
            or all(c.state.name == "TIME_WAIT" for c in host.connections.values())
        ),
        2.0,
    )
    return in_syn


def test_engine_client_kernel_server(wire: tuple[Netns, int]) -> None:
    ns, fd = wire
    host = Host([ENGINE], tcp_fastopen=0x1, negative_cache_time=0)
    with ns.entered():
        listener = socket.socket()
    with listener:
        listener.bind((KERNEL, 8080))
        listener.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
        listener.listen(16)
        listener.setblocking(False)
        assert engine_client_exchange(host, fd, listener, b"first request") == 0
        # the cookie the kernel gave is the one Linux mints with the namespace key
        entry = host.cookie_cache.entries[
            ipaddress.ip_address(ENGINE), ipaddress.ip_address(KERNEL)
        ]
        assert entry.cookie == RING.mint(ENGINE, KERNEL)
        request = b"second request"
        assert engine_client_exchange(host, fd, listener, request) == len(request)
    assert host.counters["TCPFastOpenActive"] == 1
    assert ns.counters()["TCPFastOpenPassive"] == 1
    assert ns.counters()["TCPFastOpenCookieReqd"] == 1


def kernel_client_exchange(
    host: Host, fd: int, ns: Netns, listener: EngineSocket, request: bytes
) -> tuple[int, bool]:
    """One transaction from the kernel to the engine: (bytes in the SYN, a TFO child)."""
    with ns.entered():
        client = socket.socket()
    with client:
        client.setblocking(False)
        try:
            in_syn = client.sendto(request, MSG_FASTOPEN, (ENGINE, 80))
        except BlockingIOError:
            in_syn = 0
            run(host, fd, lambda: bool(select.select([], [client], [], 0)[1]))
            client.sendall(request)
        run(host, fd, lambda: bool(listener.accept_queue))
        child, peer = listener.accept(time.monotonic())
        assert peer[0] == KERNEL
        tfo_child = bool(child.tcp_info(time.monotonic()).tcpi_options & TCPI_OPT_TFO_CHILD)
        assert engine_read(host, fd, child, len(request)) == request
        child.send(b"answer " + request, time.monotonic())
        child.close(time.monotonic())
        answer = b"answer " + request
        assert kernel_read(host, fd, client, len(answer)) == answer
    return in_syn, tfo_child


def test_kernel_client_engine_server(wire: tuple[Netns, int]) -> None:
    ns, fd = wire
    host = Host([ENGINE], tcp_fastopen=0x2, keys=RING)
    listener = host.socket()
    listener.bind((ENGINE, 80))
    listener.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
    listener.listen(16)
    assert kernel_client_exchange(host, fd, ns, listener, b"kernel first") == (0, False)
    request = b"kernel second"
    assert kernel_client_exchange(host, fd, ns, listener, request) == (len(request), True)
    assert host.counters["TCPFastOpenCookieReqd"] == 1
    assert host.counters["TCPFastOpenPassive"] == 1
    assert ns.counters()["TCPFastOpenActive"] == 1
    listener.close(time.monotonic())


def test_engine_bbr_sends_bulk_to_the_kernel(wire: tuple[Netns, int]) -> None:
    """An engine client running BBR (paced at its own rate) sends 2 MiB to a kernel server:
    all of it arrives in order, and the sender has a delivery rate, a bandwidth estimate and a
    min_rtt from the kernel's ACKs."""
    ns, fd = wire
    host = Host([ENGINE], congestion_control="bbr")
    data = bytes(range(256)) * 8192
    got = bytearray()
    with ns.entered():
        listener = socket.socket()
    with listener:
        listener.bind((KERNEL, 8081))
        listener.listen(1)
        listener.setblocking(False)
        sock = host.socket()
        with pytest.raises(EngineError) as exc:
            sock.connect((KERNEL, 8081), time.monotonic())
        assert exc.value.errno == errno.EINPROGRESS
        run(host, fd, lambda: isinstance(host.next_event(), Connected))
        conn = kernel_accept(host, fd, listener)
        sent = 0

        def done() -> bool:
            nonlocal sent
            if sent < len(data):
                try:
                    sent += sock.send(data[sent : sent + 65536], time.monotonic())
                except EngineError as exc:
                    assert exc.errno == errno.EAGAIN
            with contextlib.suppress(BlockingIOError):
                got.extend(conn.recv(1 << 20))
            return len(got) >= len(data)

        with conn:
            run(host, fd, done, 20.0)
    assert bytes(got) == data
    assert sock.conn is not None
    bbr = sock.conn.recovery.cc
    assert isinstance(bbr, Bbr)
    assert sock.tcp_info(time.monotonic()).tcpi_delivery_rate > 0
    assert bbr.bw_bytes() > 0 and 0 < bbr.min_rtt_us < 1_000_000
    assert bbr.rtt_cnt > 3
