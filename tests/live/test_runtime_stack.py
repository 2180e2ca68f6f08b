"""The userspace stack's asyncio streams against the kernel: bulk data both ways through the
engine's send buffer and asyncio's flow control, half-close, abort, and its errors.

Same topology as test_interop_kernel: the stack owns 198.18.1.2 behind ``fous0`` in a fresh
namespace whose kernel has 198.18.1.1.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import ipaddress
import itertools
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
from hostspy import spy_on_receive
from tfo import request

import fastopen
from fastopen.engine import TcpState
from fastopen.lab.netns import CLIENT, SERVER, Netns
from fastopen.runtime import NamespaceStacks, UnsupportedOnUserspace, UserspaceStack
from fastopen.wire import TcpSegment

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

STACK, KERNEL, PORT = "198.18.1.2", "198.18.1.1", 8080
BULK = bytes(range(256)) * 4096  # 1 MiB, four times the engine's send buffer


@pytest.fixture
def wire(netns: Netns) -> Iterator[tuple[Netns, UserspaceStack]]:
    with UserspaceStack.attach(
        netns, "fous0", [f"{STACK}/24"], kernel_addresses=[f"{KERNEL}/24"]
    ) as stack:
        yield netns, stack


def kernel_socket(ns: Netns) -> socket.socket:
    with ns.entered():
        sock = socket.socket()
    sock.settimeout(20)
    return sock


def test_bulk_both_ways_with_half_close(wire: tuple[Netns, UserspaceStack]) -> None:
    """A kernel client uploads 1 MiB and half-closes; the engine server echoes it and closes."""
    ns, stack = wire

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    def client() -> bytes:
        with kernel_socket(ns) as sock:
            sock.connect((STACK, PORT))
            sock.sendall(BULK)
            sock.shutdown(socket.SHUT_WR)
            got = bytearray()
            while chunk := sock.recv(1 << 20):
                got += chunk
            return bytes(got)

    async def scenario() -> bytes:
        async with await fastopen.start_server(echo, STACK, PORT, stack=stack):
            return await asyncio.to_thread(client)

    got = asyncio.run(scenario())
    assert hashlib.sha256(got).digest() == hashlib.sha256(BULK).digest()


def test_each_packet_reaches_the_engine_at_the_time_it_is_read(
    wire: tuple[Netns, UserspaceStack],
) -> None:
    """A kernel client uploads 1 MiB: the device's packets come in batches, and each reaches
    the engine stamped when it was read, not when its batch began (Linux tcp_mstamp_refresh per
    segment; a run GRO joins, when its first segment was): the stamps never repeat, so no ACK
    read late in a long batch looks younger."""
    ns, stack = wire
    stamps: list[float] = []
    wire_segments: list[int] = []

    def note(
        src: ipaddress.IPv4Address | ipaddress.IPv6Address,
        dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
        seg: TcpSegment,
        now: float,
        segs: int,
    ) -> None:
        stamps.append(now)
        wire_segments.append(segs)

    spy_on_receive(stack, note)  # where host.receive and the offloads' path lead

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    def client() -> None:
        with kernel_socket(ns) as sock:
            sock.connect((STACK, PORT))
            sock.sendall(BULK)

    async def scenario() -> None:
        async with await fastopen.start_server(sink, STACK, PORT, stack=stack):
            await asyncio.to_thread(client)

    asyncio.run(scenario())
    assert sum(wire_segments) > 50 and len(stamps) > 10
    assert all(a < b for a, b in itertools.pairwise(stamps))


def test_engine_client_upload_and_write_eof(wire: tuple[Netns, UserspaceStack]) -> None:
    """The engine client writes 1 MiB (more than its send buffer holds), then write_eof();
    the kernel server answers with the digest of what it got."""
    ns, stack = wire

    def server(lsock: socket.socket) -> None:
        conn, _ = lsock.accept()
        with conn:
            conn.settimeout(20)
            digest = hashlib.sha256()
            while chunk := conn.recv(1 << 20):
                digest.update(chunk)
            conn.sendall(digest.digest())

    async def scenario() -> bytes:
        with kernel_socket(ns) as lsock:
            lsock.bind((KERNEL, PORT))
            lsock.listen()
            task = asyncio.create_task(asyncio.to_thread(server, lsock))
            reader, writer = await fastopen.open_connection(KERNEL, PORT, stack=stack)
            writer.write(BULK)
            assert writer.transport.get_write_buffer_size() > 0  # the engine took only part
            await writer.drain()
            writer.write_eof()
            answer = await reader.read()
            writer.close()
            await task
            return answer

    assert asyncio.run(scenario()) == hashlib.sha256(BULK).digest()


def test_rest_of_the_first_flight_leaves_with_the_handshake_ack(
    wire: tuple[Netns, UserspaceStack],
) -> None:
    """A plain connect with a first flight (Linux's blocked writer): the data, carrying the ACK
    of the SYN-ACK, is in flight at the end of the very pass that read the SYN-ACK, before the
    application's coroutine has resumed; the kernel server gets it exact."""
    ns, stack = wire
    flight = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    in_flight_when_established: list[int] = []
    read_pass = stack._on_readable

    def spy() -> None:
        connecting = list(stack._connecting.values())
        read_pass()
        for c in connecting:
            conn = c.sock.conn
            if conn is not None and conn.state is TcpState.ESTABLISHED:
                in_flight_when_established.append((conn.snd_nxt - conn.snd_una) & 0xFFFFFFFF)

    stack._on_readable = spy  # type: ignore[method-assign]

    async def scenario() -> bytes:
        with kernel_socket(ns) as lsock:
            lsock.bind((KERNEL, PORT))
            lsock.listen()
            accepted = asyncio.create_task(asyncio.to_thread(lsock.accept))
            _, writer = await fastopen.open_connection(
                KERNEL, PORT, first_flight=flight, fastopen=False, stack=stack
            )
            conn, _ = await accepted
            with conn:
                conn.settimeout(20)
                got = await asyncio.to_thread(conn.recv, 1000)
            writer.close()
            return got

    assert asyncio.run(scenario()) == flight
    assert in_flight_when_established == [len(flight)]


def test_abort_resets_the_kernel_peer(wire: tuple[Netns, UserspaceStack]) -> None:
    ns, stack = wire

    async def scenario() -> None:
        with kernel_socket(ns) as lsock:
            lsock.bind((KERNEL, PORT))
            lsock.listen()
            accepted = asyncio.create_task(asyncio.to_thread(lsock.accept))
            _, writer = await fastopen.open_connection(KERNEL, PORT, stack=stack)
            conn, _ = await accepted
            with conn:
                writer.transport.abort()
                with pytest.raises(ConnectionResetError):
                    await asyncio.to_thread(conn.recv, 100)

    asyncio.run(scenario())


def test_peer_reset_reaches_the_reader(wire: tuple[Netns, UserspaceStack]) -> None:
    ns, stack = wire

    async def scenario() -> None:
        with kernel_socket(ns) as lsock:
            lsock.bind((KERNEL, PORT))
            lsock.listen()
            accepted = asyncio.create_task(asyncio.to_thread(lsock.accept))
            reader, _ = await fastopen.open_connection(KERNEL, PORT, stack=stack)
            conn, _ = await accepted
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            conn.close()  # linger 0: a RST
            with pytest.raises(OSError) as caught:
                await reader.read()
            assert caught.value.errno == errno.ECONNRESET

    asyncio.run(scenario())


def test_errors(wire: tuple[Netns, UserspaceStack]) -> None:
    _, stack = wire

    async def scenario() -> None:
        with pytest.raises(OSError, match=r"owns 198\.18\.1\.2") as caught:
            await fastopen.start_server(lambda r, w: None, "198.18.9.9", PORT, stack=stack)
        assert caught.value.errno == errno.EADDRNOTAVAIL
        with pytest.raises(UnsupportedOnUserspace, match="TLS"):
            await fastopen.open_connection(
                KERNEL, PORT, stack=stack, ssl=ssl.create_default_context()
            )
        with pytest.raises(OSError) as caught:
            await fastopen.open_connection("fd00:f1::1", PORT, stack=stack)
        assert caught.value.errno == errno.ENETUNREACH  # the stack has no IPv6 address
        server = await stack.start_server(lambda r, w: None, None, PORT)
        assert [s.getsockname() for s in server.sockets] == [(STACK, PORT)]
        server.close()
        await server.wait_closed()
        assert not server.is_serving()

    asyncio.run(scenario())


def test_namespace_stacks_replace_the_kernel(netns_pair: tuple[Netns, Netns]) -> None:
    """Used from the server namespace, the stack takes over 198.18.0.2 (the kernel routes it into
    the TUN device): a kernel client across the veth reaches the engine at the address it knew,
    the second time with its request in the SYN; closing gives the address back."""
    client, server = netns_pair
    got: list[tuple[bytes, fastopen.TfoReport]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got.append((await reader.readexactly(7), writer.get_extra_info("fastopen")))
        writer.write(b"engine")
        writer.close()

    async def scenario(stacks: NamespaceStacks) -> list[bytes]:
        with server.entered():
            srv = await stacks.start_server(handler, SERVER.ipv4, PORT)
        async with srv:
            return [await asyncio.to_thread(request, client, SERVER.ipv4, b"request") for _ in "12"]

    with NamespaceStacks() as stacks:
        assert asyncio.run(scenario(stacks)) == [b"engine", b"engine"]
        (engine,) = stacks.stacks.values()
        assert [str(a) for a in engine.host.addresses] == [SERVER.ipv4, SERVER.ipv6]
        assert SERVER.ipv4 not in server.run(["ip", "addr"]).stdout
        assert stacks.counters(server)["TCPFastOpenPassive"] == 1
        assert stacks.counters(client)["TCPFastOpenPassive"] == 0  # no stack there
    assert [r.syn_data_received for _, r in got] == [False, True]
    assert f"inet {SERVER.ipv4}/24" in server.run(["ip", "addr"]).stdout  # given back
    assert server.sysctl("net.ipv4.ip_forward") == "0"


def test_taken_over_address_reaches_the_stack_past_the_kernels_time_wait(
    netns_pair: tuple[Netns, Netns],
) -> None:
    """The kernel of the server namespace served a connection and closed first (its socket
    stays in TIME_WAIT); once the stack has the address, a connection with the very same ports
    still reaches the engine: early demux, which would give the packet to that socket and so
    have it dropped instead of forwarded, is off while the address is taken (and back after)."""
    client, server = netns_pair
    source = (CLIENT.ipv4, 40123)

    def connect() -> bytes:
        with client.entered():
            sock = socket.socket()
        with sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.settimeout(5)
            sock.bind(source)
            sock.connect((SERVER.ipv4, PORT))
            sock.sendall(b"hi")
            return sock.recv(100)

    with server.entered():
        listener = socket.socket()
    with listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((SERVER.ipv4, PORT))
        listener.listen()
        thread = threading.Thread(target=connect)
        thread.start()
        conn, _ = listener.accept()
        conn.recv(2)
        conn.close()  # the server closes first: TIME_WAIT on its side
        thread.join(10)
    assert f"{source[0]}:{source[1]}" in server.run(["ss", "-tanH", "state", "time-wait"]).stdout

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(2)
        writer.write(b"engine")
        writer.close()

    async def scenario(stack: UserspaceStack) -> bytes:
        async with await fastopen.start_server(handler, SERVER.ipv4, PORT, stack=stack):
            return await asyncio.to_thread(connect)

    early_demux = server.sysctl("net.ipv4.tcp_early_demux")
    with UserspaceStack.replace_kernel(server) as stack:
        assert server.sysctl("net.ipv4.tcp_early_demux") == "0"
        assert asyncio.run(scenario(stack)) == b"engine"
    assert server.sysctl("net.ipv4.tcp_early_demux") == early_demux


def test_closing_gives_the_addresses_back_when_the_last_flush_fails(
    netns_pair: tuple[Netns, Netns], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last FINs and RSTs cannot be written (the device failed, say): close still closes
    the device and gives the taken addresses back, then says what failed; once closed, closing
    again does nothing."""
    _, server = netns_pair
    stack = UserspaceStack.replace_kernel(server)
    assert SERVER.ipv4 not in server.run(["ip", "addr"]).stdout

    def failing_flush() -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(stack, "_flush", failing_flush)
    with pytest.raises(OSError, match="Input/output error"):
        stack.close()
    assert stack.fd == -1
    assert f"inet {SERVER.ipv4}/24" in server.run(["ip", "addr"]).stdout  # given back
    assert "fous0" not in server.run(["ip", "link"]).stdout
    stack.close()
