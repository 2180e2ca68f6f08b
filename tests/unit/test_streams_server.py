"""fastopen.start_server on the kernel's loopback: the handler's writer is the connection's only
writer (Python 3.13 closes the transport of a writer that is collected), and a peer's reset ends
the connection with one log line, not an unhandled-exception traceback."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import struct

import pytest

import fastopen
from fastopen.constants import TCP_FASTOPEN
from fastopen.report import Side


async def _serve(handler: fastopen.streams.Handler) -> tuple[asyncio.AbstractServer, int]:
    server = await fastopen.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_the_handlers_writer_outlives_a_collection() -> None:
    async def main() -> tuple[bytes, Side]:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            gc.collect()  # a second writer dropped by then would have closed the transport
            data = await reader.readexactly(5)
            report = writer.get_extra_info("fastopen")
            writer.write(b"got " + data + b" " + report.side.value.encode())
            await writer.drain()
            writer.close()

        server, port = await _serve(handler)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"hello")
            answer = await reader.read()
            writer.close()
            r2, w2 = await fastopen.open_connection("127.0.0.1", port, first_flight=b"howdy")
            gc.collect()
            side = w2.get_extra_info("fastopen").side
            second = await r2.read()
            w2.close()
        return answer + b"|" + second, side

    answer, side = asyncio.run(main())
    assert answer == b"got hello server|got howdy server"
    assert side is Side.CLIENT


def test_a_peer_reset_is_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ended = asyncio.Event()

    async def main() -> None:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(1)  # the client sends one byte, then resets
                await asyncio.sleep(0.05)
                writer.write(b"x" * 100)
                await writer.drain()
                await reader.read(100)
            finally:
                ended.set()

        server, port = await _serve(handler)
        async with server:
            client = socket.create_connection(("127.0.0.1", port), 5)
            client.sendall(b"a")
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()  # a RST
            await asyncio.wait_for(ended.wait(), 5)
            await asyncio.sleep(0.05)  # the handler's task is done: its callback has run

    asyncio.run(main())
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "Unhandled exception" in m or "Traceback" in m]
    ended_lines = [r for r in caplog.records if r.name == "fastopen.streams"]
    assert len(ended_lines) == 1 and ended_lines[0].exc_info is None
    assert "reset" in ended_lines[0].getMessage().lower()


def test_start_server_takes_a_socket_and_reuse_port() -> None:
    async def main() -> tuple[int, int, list[bytes]]:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"hi")
            await writer.drain()
            writer.close()

        lsock = socket.create_server(("127.0.0.1", 0))
        port = lsock.getsockname()[1]
        given = await fastopen.start_server(handler, sock=lsock, fastopen_backlog=7)
        one = await fastopen.start_server(handler, "127.0.0.1", 0, reuse_port=True)
        shared_port = one.sockets[0].getsockname()[1]
        two = await fastopen.start_server(handler, "127.0.0.1", shared_port, reuse_port=True)
        answers = []
        async with given, one, two:
            qlen = given.sockets[0].getsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN)
            listeners = len(two.sockets)
            for where in (port, shared_port):
                reader, writer = await asyncio.open_connection("127.0.0.1", where)
                answers.append(await reader.read())
                writer.close()
        return qlen, listeners, answers

    qlen, listeners, answers = asyncio.run(main())
    assert qlen == 7 and listeners == 1 and answers == [b"hi", b"hi"]
