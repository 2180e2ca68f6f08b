"""The userspace stack's transport keeps what the engine has no room for yet without copying
bytes (they cannot change), and copies what can (a bytearray the application reuses): two
stacks joined by a packet socket pair (one record a packet, as a TUN device carries them)."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc

from stack_pair import PORT, SERVER, exchange, stack_pair

BIG = hashlib.sha256(b"big").digest() * (1 << 17)  # 4 MiB


def test_a_big_write_waits_uncopied_and_a_reused_bytearray_as_it_was() -> None:
    client, server = stack_pair()
    added: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            writer.write(BIG)  # far more than the engine's send buffer takes at once
            added.append(tracemalloc.get_traced_memory()[0] - before)
        finally:
            tracemalloc.stop()
        tail = bytearray(b"tail")
        writer.write(tail)  # waits behind BIG: copied, so what follows does not change it
        tail[:] = b"XXXX"
        await writer.drain()
        reused = bytearray(BIG)
        writer.write(reused)  # more than the engine takes: the rest copied, not a view of it
        reused[:] = bytes(len(reused))
        await writer.drain()
        writer.close()

    got = exchange(client, server, handler)
    assert got == BIG + b"tail" + BIG
    # what waited was not copied: the engine's send buffer took its share, no 4 MiB more
    assert added and added[0] < len(BIG) // 4


def test_close_clients_ends_and_abort_clients_resets_what_the_server_accepted() -> None:
    """asyncio.Server's close_clients and abort_clients (Python 3.13) on the userspace stack's
    server: the first ends each accepted connection with a FIN, the second with a RST."""
    client, server = stack_pair()

    async def main() -> tuple[bytes, BaseException | None]:
        accepted: list[asyncio.StreamWriter] = []

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.append(writer)
            await reader.read()  # until the server closes or aborts it

        async with await server.start_server(handler, SERVER, PORT) as listening:
            r1, w1 = await client.open_connection(SERVER, PORT, first_flight=b"one")
            while not accepted:
                await asyncio.sleep(0.001)
            listening.close_clients()
            ended = await r1.read()  # EOF: an orderly close
            w1.close()
            r2, w2 = await client.open_connection(SERVER, PORT, first_flight=b"two")
            while len(accepted) < 2:
                await asyncio.sleep(0.001)
            listening.abort_clients()  # the first, closed, is left alone (in TIME_WAIT now)
            reset: BaseException | None = None
            try:
                await r2.read()
            except ConnectionResetError as exc:
                reset = exc
            w2.close()
            return ended, reset

    with client, server:
        ended, reset = asyncio.run(main())
    assert ended == b""
    assert isinstance(reset, ConnectionResetError)
