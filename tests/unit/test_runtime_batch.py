"""The userspace stack writes what the application's calls of one turn of the loop make in one
pass, after them: two stacks joined by a packet socket pair (each record a packet, as a TUN
device carries them), the server's packets counted in its capture."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from fastopen.pcap import read_pcap
from fastopen.runtime import UserspaceStack

CLIENT, SERVER, PORT = "198.18.0.1", "198.18.0.2", 80


def test_the_writes_of_one_turn_leave_together_after_it(tmp_path: Path) -> None:
    capture = tmp_path / "server.pcap"
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (a, b):
        end.setblocking(False)
    client = UserspaceStack(a.detach(), [CLIENT])
    client.learn_paths = False
    server = UserspaceStack(b.detach(), [SERVER], pcap=capture)
    counts: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readexactly(5)
        before = len(read_pcap(capture))
        for chunk in (b"one ", b"two ", b"three"):
            writer.write(chunk)
        writer.close()
        counts.append(len(read_pcap(capture)) - before)  # nothing sent during the calls
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        counts.append(len(read_pcap(capture)) - before)  # all of it, in the pass after them

    async def main() -> bytes:
        async with await server.start_server(handler, SERVER, PORT):
            reader, writer = await client.open_connection(SERVER, PORT)
            writer.write(b"hello")
            answer = await reader.read()
            writer.close()
            return answer

    with client, server:
        assert asyncio.run(main()) == b"one two three"
    assert counts[0] == 0 and counts[1] >= 3  # three data segments and the FIN
