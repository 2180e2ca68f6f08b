"""Two userspace stacks joined by a packet socket pair (each record a packet, as a TUN device
carries them), and one exchange between them: what the runtime tests share."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from fastopen.runtime import UserspaceStack

CLIENT, SERVER, PORT = "198.18.0.1", "198.18.0.2", 80
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def stack_pair(server_pcap: Path | None = None) -> tuple[UserspaceStack, UserspaceStack]:
    """A client stack at :data:`CLIENT` and a server stack at :data:`SERVER` (its packets
    written to ``server_pcap``), wired to each other."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (a, b):
        end.setblocking(False)
    client = UserspaceStack(a.detach(), [CLIENT])
    client.learn_paths = False
    return client, UserspaceStack(b.detach(), [SERVER], pcap=server_pcap)


def exchange(client: UserspaceStack, server: UserspaceStack, handler: Handler) -> bytes:
    """The client sends b"hello" to ``handler`` on the server and reads the answer to its end;
    both stacks are closed after."""

    async def main() -> bytes:
        async with await server.start_server(handler, SERVER, PORT):
            reader, writer = await client.open_connection(SERVER, PORT)
            writer.write(b"hello")
            answer = await reader.read()
            writer.close()
            return answer

    with client, server:
        return asyncio.run(main())
