"""The wire codec against the Linux kernel: real SYNs and SYN-ACKs of a kernel TFO client and
server, captured on the server's veth, parse, re-emit byte-exact (checksums included), and carry
exactly the options ``linux_syn_options`` / ``linux_synack_options`` lay out."""

from __future__ import annotations

import dataclasses
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fastopen.constants import MSG_FASTOPEN, TCP_FASTOPEN
from fastopen.lab.netns import CLIENT, SERVER, Netns
from fastopen.wire import (
    PROTO_TCP,
    FastOpen,
    Flags,
    IPv4Packet,
    IPv6Packet,
    TcpSegment,
    linux_syn_options,
    linux_synack_options,
    parse_ip,
)

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
CAPTURE_TIMEOUT = 5.0
# MSS the kernel advertises on a 1500-byte veth: MTU minus IP and TCP headers
MSS = {socket.AF_INET: 1460, socket.AF_INET6: 1440}
ADDRS = {socket.AF_INET: (CLIENT.ipv4, SERVER.ipv4), socket.AF_INET6: (CLIENT.ipv6, SERVER.ipv6)}
FAMILIES = pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["v4", "v6"])


@dataclasses.dataclass(frozen=True)
class Captured:
    raw: bytes
    packet: IPv4Packet | IPv6Packet
    segment: TcpSegment


def _full_checksums(*namespaces: Netns) -> None:
    """veth leaves TCP checksums partial (offloaded): make the kernel compute them in software."""
    assert shutil.which("ethtool"), "ethtool is missing (it is in ./dev's APT_PACKAGES)"
    for ns in namespaces:
        ns.run(["ethtool", "-K", "eth0", "tx", "off"])


@contextmanager
def _capture(server: Netns) -> Iterator[socket.socket]:
    """A packet socket on the server's eth0 (both directions, IP packets without Ethernet)."""
    with server.entered():
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
    with sock:
        sock.bind(("eth0", ETH_P_ALL))
        yield sock


def _syns(sock: socket.socket, ports: set[int], count: int) -> list[Captured]:
    """The first ``count`` SYN and SYN-ACK packets to or from ``ports``, bounded in time."""
    found: list[Captured] = []
    deadline = time.monotonic() + CAPTURE_TIMEOUT
    while len(found) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"captured {len(found)} of {count} SYNs: {found}"
        sock.settimeout(remaining)
        raw, (_, ethertype, *_) = sock.recvfrom(65535)
        if ethertype not in (ETH_P_IP, ETH_P_IPV6):
            continue
        # every IP packet on the link parses and re-emits, MLD with its hop-by-hop header too
        packet = parse_ip(raw)
        assert packet.emit() == raw
        if packet.protocol != PROTO_TCP:
            continue
        segment = TcpSegment.parse(packet.payload, packet.src, packet.dst)  # checksum verified
        if segment.flags & Flags.SYN and ports & {segment.src_port, segment.dst_port}:
            found.append(Captured(raw, packet, segment))
    return found


def _listener(server: Netns, family: socket.AddressFamily, port: int, tfo: bool) -> socket.socket:
    with server.entered():
        lsock = socket.socket(family, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if tfo:
        lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 16)
    lsock.bind((ADDRS[family][1], port))
    lsock.listen(16)
    lsock.settimeout(10)
    return lsock


def _exchange(client: Netns, lsock: socket.socket, data: bytes) -> None:
    """One kernel TFO connection: ``sendto(data, MSG_FASTOPEN)``, the server echoes it."""
    received: list[bytes] = []

    def serve() -> None:
        conn, _ = lsock.accept()
        with conn:
            received.append(conn.recv(100))
            conn.sendall(received[-1])

    thread = threading.Thread(target=serve)
    thread.start()
    with client.entered():
        csock = socket.socket(lsock.family, socket.SOCK_STREAM)
    with csock:
        # blocking (a timeout would make it non-blocking and the sendto EINPROGRESS)
        csock.sendto(data, MSG_FASTOPEN, lsock.getsockname()[:2])
        csock.settimeout(10)
        assert csock.recv(100) == data
    thread.join(10)
    assert received == [data]


def _assert_exact(cap: Captured) -> None:
    """Our emit gives back the kernel's bytes: TCP checksum and the whole IP packet."""
    src, dst = cap.packet.src, cap.packet.dst
    tcp = cap.segment.emit(src, dst)
    assert tcp == cap.packet.payload, "TCP checksum or layout differs from the kernel's"
    assert dataclasses.replace(cap.packet, payload=tcp).emit() == cap.raw


@FAMILIES
@pytest.mark.parametrize("timestamps", [0, 1], ids=["no-ts", "ts"])
def test_kernel_syn_and_synack_layout(
    netns_pair: tuple[Netns, Netns], family: socket.AddressFamily, timestamps: int
) -> None:
    client, server = netns_pair
    client.sysctl("net.ipv4.tcp_timestamps", timestamps)
    _full_checksums(client, server)
    port = 8080
    with _capture(server) as cap_sock, _listener(server, family, port, tfo=True) as lsock:
        _exchange(client, lsock, b"first")  # no cookie yet: a cookie request, data after
        _exchange(client, lsock, b"second, in the SYN")  # the cookie and the data in the SYN
        syn1, synack1, syn2, synack2 = _syns(cap_sock, {port}, 4)

    for cap in (syn1, synack1, syn2, synack2):
        _assert_exact(cap)
    mss = MSS[family]
    assert [c.segment.flags & (Flags.SYN | Flags.ACK) for c in (syn1, synack1, syn2, synack2)] == [
        Flags.SYN,
        Flags.SYN | Flags.ACK,
        Flags.SYN,
        Flags.SYN | Flags.ACK,
    ]
    for syn, synack in ((syn1, synack1), (syn2, synack2)):
        assert (syn.segment.timestamps is not None) == bool(timestamps)
        assert syn.segment.wscale is not None and synack.segment.wscale is not None

    # (a) the cookie request, and the SYN-ACK that carries the cookie
    assert syn1.segment.payload == b""
    assert syn1.segment.options == linux_syn_options(
        mss, wscale=syn1.segment.wscale, timestamps=syn1.segment.timestamps, fastopen=FastOpen()
    )
    fo = synack1.segment.fastopen
    assert fo is not None and fo.valid and len(fo.cookie) == 8 and not fo.experimental
    assert synack1.segment.options == linux_synack_options(
        mss, wscale=synack1.segment.wscale, timestamps=synack1.segment.timestamps, fastopen=fo
    )
    if not timestamps:  # REFERENCE.md: mss 1460,nop,nop,sackOK,nop,wscale N,FO ...,nop,nop
        wscale = syn1.segment.wscale
        assert syn1.packet.payload[20:] == bytes.fromhex(
            f"0204{mss:04x}01010402010303{wscale:02x}22020101"
        )

    # (b) the SYN with the cookie and the data, and the SYN-ACK acknowledging the data
    assert syn2.segment.payload == b"second, in the SYN"
    assert syn2.segment.options == linux_syn_options(
        mss, wscale=syn2.segment.wscale, timestamps=syn2.segment.timestamps, fastopen=fo
    )
    assert synack2.segment.ack == (syn2.segment.seq + 1 + len(syn2.segment.payload)) % 2**32
    assert synack2.segment.fastopen is None  # a primary-key match sends no cookie back
    assert synack2.segment.options == linux_synack_options(
        mss, wscale=synack2.segment.wscale, timestamps=synack2.segment.timestamps
    )


@FAMILIES
def test_kernel_experimental_option_layout(
    netns_pair: tuple[Netns, Netns], family: socket.AddressFamily
) -> None:
    """A cookie request answered without a cookie makes Linux try kind 254 next: the request
    ``FE 04 F9 89``, the server's answer in that kind, then the cookie and data in it."""
    client, server = netns_pair
    _full_checksums(client, server)
    plain, fast = 8081, 8082
    with (
        _capture(server) as cap_sock,
        _listener(server, family, plain, tfo=False) as plain_sock,
        _listener(server, family, fast, tfo=True) as fast_sock,
    ):
        _exchange(client, plain_sock, b"no tfo here")
        _exchange(client, fast_sock, b"exp request")
        _exchange(client, fast_sock, b"exp cookie and data")
        caps = _syns(cap_sock, {plain, fast}, 6)

    for cap in caps:
        _assert_exact(cap)
    syn0, synack0, syn1, synack1, syn2, synack2 = (c.segment for c in caps)
    mss = MSS[family]
    assert syn0.fastopen == FastOpen() and synack0.fastopen is None
    assert syn1.fastopen == FastOpen(experimental=True)
    assert syn1.options == linux_syn_options(
        mss, wscale=syn1.wscale, timestamps=syn1.timestamps, fastopen=FastOpen(experimental=True)
    )
    fo = synack1.fastopen
    assert fo is not None and fo.experimental and fo.valid and len(fo.cookie) == 8
    assert synack1.options == linux_synack_options(
        mss, wscale=synack1.wscale, timestamps=synack1.timestamps, fastopen=fo
    )
    assert syn2.payload == b"exp cookie and data"
    assert syn2.options == linux_syn_options(
        mss, wscale=syn2.wscale, timestamps=syn2.timestamps, fastopen=fo
    )
    assert synack2.ack == (syn2.seq + 1 + len(syn2.payload)) % 2**32
