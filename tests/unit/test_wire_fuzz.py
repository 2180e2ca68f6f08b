"""A seeded fuzz run of the parser: over 100,000 random and mutated packets (bit flips,
truncations, rewritten length fields, with and without checksums fixed up afterwards).

Only MalformedPacket may escape, with a reason; whatever parses re-emits to the same bytes."""

from __future__ import annotations

import random
import struct
from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address

from wirehelpers import COOKIE, V4, V6, fix_ipv4_checksum, pseudo_header

from fastopen.errors import MalformedPacket
from fastopen.wire import (
    PROTO_TCP,
    Eol,
    FastOpen,
    Flags,
    IPAddress,
    IPv4Packet,
    Ipv6ExtensionHeader,
    IPv6Packet,
    Mss,
    Nop,
    Sack,
    TcpSegment,
    Timestamps,
    UnknownOption,
    internet_checksum,
    ip_packet,
    linux_syn_options,
    linux_synack_options,
    parse_ip,
    parse_ipv4_tcp,
    parse_tcp_packet,
)

SEED = 7413
ROUNDS = 1500  # a round: one input per mutator and corpus packet (72 inputs, 108,000 in all)
TS = Timestamps(123456, 654321)


def _corpus() -> list[bytes]:
    syn = TcpSegment(40000, 80, 1, 0, Flags.SYN, 64240, (), b"GET / HTTP/1.1\r\n")
    segments = [
        TcpSegment(40000, 80, 1, 0, Flags.SYN, 64240, linux_syn_options(1460, fastopen=FastOpen())),
        TcpSegment(
            40000, 80, 1, 0, Flags.SYN, 64240,
            linux_syn_options(1460, wscale=7, timestamps=TS, fastopen=FastOpen(COOKIE)),
            b"GET / HTTP/1.1\r\n",
        ),
        TcpSegment(
            80, 40000, 9, 18, Flags.SYN | Flags.ACK, 65160,
            linux_synack_options(1440, wscale=7, fastopen=FastOpen(COOKIE, experimental=True)),
        ),
        TcpSegment(
            80, 40000, 9, 18, Flags.ACK, 501,
            (Nop(), Nop(), TS, Nop(), Nop(), Sack(((100, 200), (300, 400)))), b"x" * 30,
        ),
        TcpSegment(
            1, 2, 3, 4, Flags.PSH | Flags.ACK | Flags.URG, 5,
            (UnknownOption(30, b"\x01\x02"), FastOpen(b"odd"), Mss(536), Eol(b"\x00\x07")),
            b"\xff" * 7, urgent=3, reserved=1,
        ),
    ]  # fmt: skip
    packets = [ip_packet(*V4, seg) for seg in segments] + [ip_packet(*V6, seg) for seg in segments]
    packets.append(
        IPv4Packet(*V4, PROTO_TCP, syn.emit(*V4), options=bytes.fromhex("0703040000000000")).emit()
    )
    chain = (
        Ipv6ExtensionHeader(0, bytes(6)),
        Ipv6ExtensionHeader(43, bytes(range(14))),
        Ipv6ExtensionHeader(44, bytes(7)),
        Ipv6ExtensionHeader(60, bytes(6)),
    )
    packets.append(IPv6Packet(*V6, PROTO_TCP, syn.emit(*V6), extension_headers=chain).emit())
    return packets


# -- mutators: each takes the random generator and a valid packet --------------------------------
def _flip_bits(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _extend(rng: random.Random, data: bytes) -> bytes:
    return data + rng.randbytes(rng.randint(1, 16))


def _overwrite(rng: random.Random, data: bytes) -> bytes:
    start = rng.randrange(len(data))
    return data[:start] + rng.randbytes(rng.randint(1, 8)) + data[start + 8 :]


def _length_field(rng: random.Random, data: bytes) -> bytes:
    """Rewrite one length field: IPv4 IHL or total length, IPv6 payload length or an extension
    header length, TCP data offset, or the length byte of a TCP option."""
    out = bytearray(data)
    tcp = _tcp_offset(data)
    choices: list[int] = [tcp + 12]
    if data[0] >> 4 == 4:
        choices += [0, 2]
    else:
        choices += [4, 41]
    choices += range(tcp + 21, min(len(data), tcp + (data[tcp + 12] >> 4) * 4), 2)
    where = rng.choice(choices)
    if where == 0:
        out[0] = 0x40 | rng.randrange(16)
    elif where in (2, 4):
        out[where : where + 2] = struct.pack("!H", rng.choice([0, len(data) - 1, len(data) + 1]))
    elif where == tcp + 12:
        out[where] = rng.randrange(16) << 4 | (out[where] & 0x0F)
    else:
        out[where] = rng.choice([0, 1, 2, 3, out[where] + 1, out[where] + 2, 255]) & 0xFF
    return bytes(out)


def _random_bytes(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(rng.randbytes(rng.randint(0, 80)))
    if raw:
        raw[0] = rng.choice([0x45, 0x46, 0x60, raw[0]])
    return bytes(raw)


MUTATORS: list[Callable[[random.Random, bytes], bytes]] = [
    _flip_bits,
    _truncate,
    _extend,
    _overwrite,
    _length_field,
    _random_bytes,
]


def _tcp_offset(data: bytes) -> int:
    """Where the TCP header starts in a corpus packet (before mutation)."""
    packet = parse_ip(data)
    return len(data) - len(packet.payload)


def _fix_checksums(data: bytes, tcp: int) -> bytes:
    """Recompute the IPv4 header and TCP checksums of a mutated packet where its fields still
    allow it, so that the mutation reaches the checks behind the checksums."""
    out = bytearray(data)
    if len(out) >= 20 and out[0] >> 4 == 4 and 20 <= (out[0] & 15) * 4 <= len(out):
        fix_ipv4_checksum(out)
        src: IPAddress = IPv4Address(bytes(out[12:16]))
        dst: IPAddress = IPv4Address(bytes(out[16:20]))
    elif len(out) >= 40 and out[0] >> 4 == 6:
        src, dst = IPv6Address(bytes(out[8:24])), IPv6Address(bytes(out[24:40]))
    else:
        return bytes(out)
    if len(out) >= tcp + 18:
        segment = bytes(out[tcp : tcp + 16]) + b"\x00\x00" + bytes(out[tcp + 18 :])
        checksum = internet_checksum(pseudo_header(src, dst, len(segment)) + segment)
        out[tcp + 16 : tcp + 18] = struct.pack("!H", checksum)
    return bytes(out)


def _check(data: bytes, tcp: int, outcomes: Counter[str]) -> None:
    """Every parser on ``data``: MalformedPacket with a reason, or an exact re-emission."""
    try:
        packet = parse_ip(data)
    except MalformedPacket as exc:
        assert exc.reason
        outcomes["ip malformed"] += 1
    else:
        assert packet.emit() == data
        outcomes["ip parsed"] += 1
    try:
        packet, segment = parse_tcp_packet(data)
    except MalformedPacket as exc:
        assert exc.reason
        outcomes["tcp malformed"] += 1
    else:
        assert segment.emit(packet.src, packet.dst) == packet.payload
        outcomes["tcp parsed"] += 1
    _check_one_pass(data, outcomes)
    raw_segment = data[tcp:]
    try:
        segment = TcpSegment.parse(raw_segment)  # no addresses: options parsed whatever the sum
    except MalformedPacket as exc:
        assert exc.reason
        outcomes["segment malformed"] += 1
    else:
        emitted = segment.emit(*V4)
        assert emitted[:16] + emitted[18:] == raw_segment[:16] + raw_segment[18:]
        outcomes["segment parsed"] += 1


def _for_host(
    data: bytes, local: tuple[IPAddress, ...]
) -> tuple[IPAddress, IPAddress, TcpSegment] | str | None:
    """What a host reads of ``data`` through :func:`parse_ip` then :meth:`TcpSegment.parse`:
    the addresses and segment, a malformed packet's reason, None when not TCP for ``local``."""
    try:
        packet = parse_ip(data)
        if packet.protocol != PROTO_TCP or packet.is_fragment or packet.dst not in local:
            return None
        segment = TcpSegment.parse(packet.payload, packet.src, packet.dst, packet.ecn)
        return packet.src, packet.dst, segment
    except MalformedPacket as exc:
        return exc.reason


def _check_one_pass(data: bytes, outcomes: Counter[str]) -> None:
    """parse_ipv4_tcp, when it takes ``data``, reads what the two parsers read, the same
    reason for a malformed segment."""
    local = (V4[1],)
    try:
        fused: tuple[IPAddress, IPAddress, TcpSegment] | str | None = parse_ipv4_tcp(data, local)
    except MalformedPacket as exc:
        fused = exc.reason
    if fused is None:
        return
    assert fused == _for_host(data, local)
    outcomes["one pass " + ("malformed" if isinstance(fused, str) else "parsed")] += 1


def test_fuzz_only_malformed_packet_escapes_and_parses_are_exact() -> None:
    rng = random.Random(SEED)
    corpus = [(data, _tcp_offset(data)) for data in _corpus()]
    outcomes: Counter[str] = Counter()
    inputs = 0
    for _ in range(ROUNDS):
        for data, tcp in corpus:
            for mutate in MUTATORS:
                mutated = mutate(rng, data)
                if rng.random() < 0.5:
                    mutated = _fix_checksums(mutated, tcp)
                try:
                    _check(mutated, tcp, outcomes)
                except Exception as exc:  # name the input, whatever went wrong
                    raise AssertionError(f"{mutate.__name__}: {mutated.hex()}: {exc!r}") from exc
                inputs += 1
    assert inputs >= 100_000
    # the run reached both sides of every parser, so it exercised more than the first check
    for key in ("ip", "tcp", "segment", "one pass"):
        assert outcomes[f"{key} malformed"] > 1000 and outcomes[f"{key} parsed"] > 1000, outcomes
