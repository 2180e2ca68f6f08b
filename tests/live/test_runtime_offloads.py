"""The userspace stack on a TUN device with offloads (IFF_VNET_HDR, checksum and TSO) and
without: 4 MiB both ways between a kernel client and an engine echo server, compared by hash,
and the capture shows which path the packets took (GSO packets larger than the MTU both ways
with offloads, none without; every packet's checksum complete).

Same topology as test_runtime_stack: the stack owns 198.18.1.2 behind ``fous0``.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from pathlib import Path

import pytest

import fastopen
from fastopen.lab.netns import Netns
from fastopen.pcap import read_pcap
from fastopen.runtime import UserspaceStack
from fastopen.wire import PROTO_TCP, parse_ip, parse_tcp_packet

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

STACK, KERNEL, PORT, MTU = "198.18.1.2", "198.18.1.1", 8080, 1500
BULK = hashlib.sha256(b"fastopen").digest() * (4 << 15)  # 4 MiB that no shift repeats


def _echo_through(ns: Netns, stack: UserspaceStack) -> bytes:
    """BULK from a kernel client to an engine echo server and back, sending while receiving."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 20):
            writer.write(data)
            await writer.drain()
        writer.close()

    def client() -> bytes:
        with ns.entered():
            sock = socket.socket()
        sock.settimeout(20)
        got = bytearray()
        with sock:
            sock.connect((STACK, PORT))

            def read() -> None:
                while chunk := sock.recv(1 << 20):
                    got.extend(chunk)

            reader = threading.Thread(target=read)
            reader.start()
            sock.sendall(BULK)
            sock.shutdown(socket.SHUT_WR)
            reader.join(30)
        return bytes(got)

    async def scenario() -> bytes:
        async with await fastopen.start_server(echo, STACK, PORT, stack=stack):
            return await asyncio.to_thread(client)

    return asyncio.run(scenario())


@pytest.mark.parametrize("offloads", [True, False], ids=["offloads", "no-offloads"])
def test_bulk_both_ways_with_and_without_offloads(
    netns: Netns, tmp_path: Path, offloads: bool
) -> None:
    pcap = tmp_path / "stack.pcap"
    with UserspaceStack.attach(
        netns,
        "fous0",
        [f"{STACK}/24"],
        kernel_addresses=[f"{KERNEL}/24"],
        mtu=MTU,
        pcap=pcap,
        offloads=offloads,
    ) as stack:
        assert stack.offloads is offloads
        got = _echo_through(netns, stack)
        assert stack.host.counters["TcpInErrs"] == 0
    assert hashlib.sha256(got).digest() == hashlib.sha256(BULK).digest()
    large = {STACK: 0, KERNEL: 0}  # TCP packets above the MTU, by who sent them
    for captured in read_pcap(pcap):
        if parse_ip(captured.data).protocol != PROTO_TCP:
            continue  # the kernel's IPv6 router solicitations
        ip, seg = parse_tcp_packet(captured.data)  # checksums verified: complete in the capture
        if len(captured.data) > MTU:  # more than one segment: a GSO packet
            large[str(ip.src)] += 1
            assert seg.payload
    if offloads:
        assert large[STACK] > 0, "the stack wrote no GSO packet"
        assert large[KERNEL] > 0, "the device handed over no coalesced packet"
    else:
        assert large == {STACK: 0, KERNEL: 0}
