"""TCP MD5 signatures (RFC 2385) as Linux has them: TCP_MD5SIG keys, signed segments, the
check of arriving ones (TCPMD5NotFound, TCPMD5Unexpected, TCPMD5Failure; such a segment is
dropped) and the option layout beside a signature (tcp_syn_options, tcp_synack_options,
tcp_established_options)."""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import socket
import struct

import pytest

from fastopen.engine import EngineError, EngineSocket, Host, md5
from fastopen.engine.link import Link
from fastopen.engine.md5 import TCP_MD5SIG, TCP_MD5SIG_EXT, TCP_MD5SIG_LEN
from fastopen.wire import Md5Sig, Nop, Sack, TcpSegment, Timestamps, ip_packet, md5_digest

CLIENT, SERVER = "198.18.0.1", "198.18.0.2"
SERVER_ADDR = (SERVER, 80)
KEY = b"0123456789abcdef"
SOL_TCP = socket.IPPROTO_TCP


def md5sig(
    peer: str, key: bytes, *, family: int = socket.AF_INET, prefix: int | None = None
) -> bytes:
    """A struct tcp_md5sig for ``peer``, as an application packs it."""
    address = ipaddress.ip_address(peer)
    if family == socket.AF_INET:
        addr = struct.pack("=H2x4s", family, address.packed)
    else:
        addr = struct.pack("=H6x16s", family, address.packed)
    flags = 1 if prefix is not None else 0
    return struct.pack("=128sBBHi80s", addr, flags, prefix or 0, len(key), 0, key.ljust(80, b"\0"))


class Wire:
    """Two hosts on a link, with every segment that crossed it."""

    def __init__(self) -> None:
        self.client, self.server = Host([CLIENT]), Host([SERVER])
        self.seen: list[tuple[str, TcpSegment]] = []

        def tap(host: Host, src: object, dst: object, seg: TcpSegment) -> TcpSegment:
            self.seen.append((str(src), seg))
            return seg

        self.link = Link(self.client, self.server, delay=0.005, tap=tap)
        self.listener = self.server.socket()
        self.listener.bind(SERVER_ADDR)
        self.listener.listen(8)

    def connect(self, sock: EngineSocket) -> None:
        with pytest.raises(EngineError) as exc:
            sock.connect(SERVER_ADDR, self.link.now)
        assert exc.value.errno == errno.EINPROGRESS
        self.link.advance(1.0)

    def sent_by(self, address: str) -> list[TcpSegment]:
        self.link.flush()  # what the hosts sent since the last step, too
        return [seg for src, seg in self.seen if src == address]


def keyed_pair(client_key: bytes | None, server_key: bytes | None) -> tuple[Wire, EngineSocket]:
    wire = Wire()
    if server_key is not None:
        wire.listener.setsockopt(SOL_TCP, TCP_MD5SIG, md5sig(CLIENT, server_key))
    sock = wire.client.socket()
    if client_key is not None:
        sock.setsockopt(SOL_TCP, TCP_MD5SIG, md5sig(SERVER, client_key))
    wire.connect(sock)
    return wire, sock


def digest_of(seg: TcpSegment, src: str, dst: str, key: bytes) -> bytes:
    """RFC 2385's digest from the packet's bytes: pseudo-header, the TCP header with a zero
    checksum and no options, the payload, the key."""
    packet = ip_packet(ipaddress.ip_address(src), ipaddress.ip_address(dst), seg)
    tcp = packet[20:]
    header_len = (tcp[12] >> 4) * 4
    pseudo = packet[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
    header = tcp[:16] + b"\0\0" + tcp[18:20]
    return hashlib.md5(pseudo + header + tcp[header_len:] + key).digest()


def test_keyed_ends_sign_every_segment_and_talk() -> None:
    wire, sock = keyed_pair(KEY, KEY)
    child, _ = wire.listener.accept(wire.link.now)
    assert sock.send(b"x" * 3000, wire.link.now) == 3000
    wire.link.advance(1.0)
    assert child.recv(10_000, wire.link.now) == b"x" * 3000
    for src, seg in wire.seen:
        dst = SERVER if src == CLIENT else CLIENT
        sig = seg.options[2]
        assert isinstance(sig, Md5Sig), seg
        assert sig.digest == digest_of(seg, src, dst, KEY)
    assert wire.server.counters["TCPMD5Failure"] == 0


def test_layout_beside_a_signature() -> None:
    """tcp_syn_options: no timestamps in a signed SYN; tcp_synack_options: a SYN-ACK that
    offers SACK leaves timestamps out; tcp_current_mss: the segments are 20 bytes shorter."""
    wire, sock = keyed_pair(KEY, KEY)
    syn = wire.sent_by(CLIENT)[0]
    synack = wire.sent_by(SERVER)[0]
    for seg in (syn, synack):  # tcp_options_write: nop,nop,md5 first
        assert [type(o) for o in seg.options[:3]] == [Nop, Nop, Md5Sig]
    assert syn.timestamps is None and synack.timestamps is None
    assert syn.sack_permitted and synack.sack_permitted
    assert sock.send(b"y" * 5000, wire.link.now) == 5000
    wire.link.advance(1.0)
    sizes = {len(seg.payload) for seg in wire.sent_by(CLIENT) if seg.payload}
    assert max(sizes) == 1460 - 20


def test_sack_blocks_fit_beside_a_signature() -> None:
    """Without timestamps, 20 bytes are left for SACK: two blocks (tcp_established_options)."""
    wire, sock = keyed_pair(KEY, KEY)
    child, _ = wire.listener.accept(wire.link.now)
    conn = child.conn
    assert conn is not None
    now = wire.link.now
    base = conn.rcv_nxt
    for hole in range(4):  # four out-of-order pieces with holes between
        seq = (base + 100 + hole * 200) & 0xFFFFFFFF
        seg = TcpSegment(sock.conn.lport, 80, seq, conn.snd_nxt, 0x10, 1000, (), b"z" * 100)
        signed = md5.sign(KEY, ipaddress.ip_address(CLIENT), ipaddress.ip_address(SERVER), seg)
        wire.server.receive_segment(
            ipaddress.ip_address(CLIENT), ipaddress.ip_address(SERVER), signed, now
        )
    acks = [seg for seg in wire.sent_by(SERVER) if seg.sack_blocks]
    assert acks and max(len(seg.sack_blocks) for seg in acks) == 2
    assert all(isinstance(seg.options[2], Md5Sig) for seg in acks)
    assert not any(isinstance(o, Timestamps) for seg in acks for o in seg.options)
    assert all(any(isinstance(o, Sack) for o in seg.options) for seg in acks)


@pytest.mark.parametrize(
    ("client_key", "server_key", "counter"),
    [
        (None, KEY, "TCPMD5NotFound"),
        (KEY, None, "TCPMD5Unexpected"),
        (KEY, b"another key 1234", "TCPMD5Failure"),
    ],
)
def test_a_segment_failing_the_check_is_dropped(
    client_key: bytes | None, server_key: bytes | None, counter: str
) -> None:
    wire, sock = keyed_pair(client_key, server_key)
    assert wire.server.counters[counter] >= 1
    assert not wire.sent_by(SERVER)  # no SYN-ACK, no RST: the SYNs were dropped
    assert sock.conn is not None and sock.conn.state.name == "SYN_SENT"


def test_signed_ack_to_an_unkeyed_request_is_dropped() -> None:
    """md5/md5-only-on-client-ack.pkt: the handshake's ACK carrying an MD5 option goes to a
    listener without keys: dropped (TCPMD5Unexpected), the request stays; a plain ACK then
    completes it."""
    wire = Wire()
    c, s = ipaddress.ip_address(CLIENT), ipaddress.ip_address(SERVER)
    now = 0.0
    wire.server.receive_segment(c, s, TcpSegment(5000, 80, 0, 0, 0x02, 32792), now)
    (synack,) = wire.sent_by(SERVER)
    sig = Md5Sig(bytes(range(16)))
    ack = TcpSegment(5000, 80, 1, (synack.seq + 1) & 0xFFFFFFFF, 0x10, 514, (sig,))
    wire.server.receive_segment(c, s, ack, now + 0.01)
    assert wire.server.counters["TCPMD5Unexpected"] == 1
    assert wire.server.requests and not wire.server.connections
    wire.server.receive_segment(c, s, TcpSegment(5000, 80, 1, ack.ack, 0x10, 514), now + 0.02)
    child, _ = wire.listener.accept(now + 0.02)
    assert child.conn is not None and child.conn.state.name == "ESTABLISHED"


def test_digest_is_rfc2385s() -> None:
    src, dst = ipaddress.ip_address(CLIENT), ipaddress.ip_address(SERVER)
    seg = TcpSegment(1, 2, 3, 4, 0x18, 5, (Md5Sig(bytes(16)),), b"payload")
    assert md5_digest(KEY, src, dst, seg) == digest_of(seg, CLIENT, SERVER, KEY)


def test_setsockopt_refuses_what_linux_refuses() -> None:
    host = Host([CLIENT])
    sock = host.socket()
    for bad in (
        md5sig(SERVER, KEY)[: TCP_MD5SIG_LEN - 1],  # short
        md5sig("fd00::1", KEY, family=socket.AF_INET6),  # another family
        md5sig(SERVER, b"k" * 81)[:132] + struct.pack("=H", 81) + md5sig(SERVER, KEY)[134:],
        md5sig(SERVER, KEY, prefix=33),
    ):
        with pytest.raises(EngineError) as exc:
            sock.setsockopt(SOL_TCP, TCP_MD5SIG_EXT, bad)
        assert exc.value.errno == errno.EINVAL
    sock.setsockopt(SOL_TCP, TCP_MD5SIG_EXT, md5sig("198.18.0.0", KEY, prefix=15))
    sock.setsockopt(SOL_TCP, TCP_MD5SIG, md5sig(SERVER, b"longer match key"))
    assert [k.network.prefixlen for k in sock.options.md5_keys] == [15, 32]
    sock.setsockopt(SOL_TCP, TCP_MD5SIG, md5sig(SERVER, b""))  # an empty key deletes
    assert [k.network.prefixlen for k in sock.options.md5_keys] == [15]
