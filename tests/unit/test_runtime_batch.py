"""The userspace stack writes what the application's calls of one turn of the loop make in one
pass, after them: two stacks joined by a packet socket pair (each record a packet, as a TUN
device carries them), the server's packets counted in its capture."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stack_pair import exchange, stack_pair

from fastopen.pcap import read_pcap


def test_the_writes_of_one_turn_leave_together_after_it(tmp_path: Path) -> None:
    capture = tmp_path / "server.pcap"
    client, server = stack_pair(capture)
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

    assert exchange(client, server, handler) == b"one two three"
    assert counts[0] == 0 and counts[1] >= 3  # three data segments and the FIN
