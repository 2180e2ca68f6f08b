"""Round trips of the wire codec under hypothesis (options, segments, IPv4 and IPv6 packets), and a
cross-check against an independent dissector, scapy, in both directions."""

from __future__ import annotations

import dataclasses
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, in4_chksum
from scapy.layers.inet6 import IPv6, in6_chksum
from scapy.packet import Raw
from scapy.utils import checksum

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
    PlainSyn,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    UnknownOption,
    WindowScale,
    emit_options,
    internet_checksum,
    ip_packet,
    linux_syn_options,
    parse_ip,
    parse_options,
    parse_plain_syn,
    parse_tcp_packet,
)

U16 = st.integers(0, 0xFFFF)
U32 = st.integers(0, 0xFFFFFFFF)
#: kinds the codec has no class for (scapy decodes 14, 15, 19, 25, 28, 29 itself)
UNKNOWN_KINDS = st.integers(2, 255).filter(
    lambda k: k not in (2, 3, 4, 5, 8, 14, 15, 19, 25, 28, 29, 34, 254)
)

OPTION: st.SearchStrategy[TcpOption] = st.one_of(
    st.just(Nop()),
    st.builds(Mss, U16),
    st.builds(WindowScale, st.integers(0, 255)),
    st.just(SackPermitted()),
    st.builds(Sack, st.lists(st.tuples(U32, U32), min_size=1, max_size=4).map(tuple)),
    st.builds(Timestamps, U32, U32),
    st.builds(FastOpen, st.binary(max_size=18), st.booleans()),
    st.builds(UnknownOption, UNKNOWN_KINDS, st.binary(max_size=12)),
)


@st.composite
def option_lists(draw: st.DrawFn, aligned: bool = False) -> tuple[TcpOption, ...]:
    """Up to 40 bytes of options, maybe ending with an EOL and its padding; ``aligned`` pads with
    NOPs to a 4-byte boundary (as a header holds them)."""
    options: list[TcpOption] = []
    for option in draw(st.lists(OPTION, max_size=10)):
        if len(emit_options([*options, option])) <= 36:
            options.append(option)
    if draw(st.booleans()):
        options.append(Eol(draw(st.binary(max_size=3))))
    while aligned and len(emit_options(options)) % 4:
        if isinstance(options[-1], Eol):
            options[-1] = Eol(options[-1].padding + draw(st.binary(min_size=1, max_size=1)))
        else:
            options.append(Nop())
    return tuple(options)


SEGMENT = st.builds(
    TcpSegment,
    U16,
    U16,
    U32,
    U32,
    st.integers(0, 255).map(Flags),
    U16,
    option_lists(aligned=True),
    st.binary(max_size=64),
    U16,
    st.integers(0, 15),
)
V4_ADDRS = st.tuples(st.ip_addresses(v=4), st.ip_addresses(v=4))
V6_ADDR = st.ip_addresses(v=6).map(lambda a: IPv6Address(int(a)))
V6_ADDRS = st.tuples(V6_ADDR, V6_ADDR)
ADDRS: st.SearchStrategy[tuple[IPAddress, IPAddress]] = st.one_of(V4_ADDRS, V6_ADDRS)


def _extension(kind: int) -> st.SearchStrategy[Ipv6ExtensionHeader]:
    size = st.just(7) if kind == 44 else st.integers(0, 3).map(lambda k: 8 * k + 6)
    return size.flatmap(lambda n: st.binary(min_size=n, max_size=n)).map(
        lambda data: Ipv6ExtensionHeader(kind, data)
    )


@st.composite
def ipv6_packets(draw: st.DrawFn) -> IPv6Packet:
    chain = [draw(_extension(0))] if draw(st.booleans()) else []
    chain += draw(st.lists(st.sampled_from([43, 44, 60]).flatmap(_extension), max_size=3))
    return IPv6Packet(
        draw(V6_ADDR),
        draw(V6_ADDR),
        draw(st.integers(0, 255).filter(lambda p: p not in (0, 43, 44, 60))),
        draw(st.binary(max_size=64)),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 255)),
        draw(st.integers(0, 0xFFFFF)),
        tuple(chain),
    )


IPV4_PACKET = st.builds(
    IPv4Packet,
    st.ip_addresses(v=4),
    st.ip_addresses(v=4),
    st.integers(0, 255),
    st.binary(max_size=64),
    st.integers(0, 255),
    st.integers(0, 255),
    U16,
    st.integers(0, 7),
    st.integers(0, 0x1FFF),
    st.integers(0, 10).flatmap(lambda k: st.binary(min_size=4 * k, max_size=4 * k)),
)


# -- round trips -------------------------------------------------------------------------------
@given(option_lists())
def test_options_round_trip(options: tuple[TcpOption, ...]) -> None:
    raw = emit_options(options)
    assert parse_options(raw) == options
    assert emit_options(parse_options(raw)) == raw


@given(st.binary(max_size=40))
def test_any_options_bytes_parse_exactly_or_are_malformed(raw: bytes) -> None:
    try:
        options = parse_options(raw)
    except MalformedPacket:
        return
    assert emit_options(options) == raw


@given(SEGMENT, ADDRS)
def test_segment_round_trip(segment: TcpSegment, addrs: tuple[IPAddress, IPAddress]) -> None:
    src, dst = addrs
    raw = segment.emit(src, dst)
    assert TcpSegment.parse(raw, src, dst) == segment
    assert TcpSegment.parse(raw) == segment
    packet, parsed = parse_tcp_packet(ip_packet(src, dst, segment))
    assert parsed == segment and (packet.src, packet.dst, packet.protocol) == (src, dst, 6)


@given(st.binary(max_size=3000) | st.integers(0, 40).map(bytes))
def test_internet_checksum_is_scapys(data: bytes) -> None:
    """The one's-complement sum on int.from_bytes agrees with scapy's loop over words, odd
    lengths and all-zero buffers (checksum 0xFFFF) included."""
    assert internet_checksum(data) == checksum(data)
    assert internet_checksum(memoryview(data)) == checksum(data)


@given(SEGMENT, ADDRS)
def test_partial_checksum_is_completed_by_the_device(
    segment: TcpSegment, addrs: tuple[IPAddress, IPAddress]
) -> None:
    """``partial_checksum=True``: the field holds the pseudo-header's sum; a device summing the
    TCP bytes from there (virtio NEEDS_CSUM) writes the very checksum of the full packet."""
    full = ip_packet(*addrs, segment)
    partial = ip_packet(*addrs, segment, partial_checksum=True)
    start = 20 if addrs[0].version == 4 else 40
    completed = bytearray(partial)
    completed[start + 16 : start + 18] = struct.pack("!H", checksum(partial[start:]))
    assert bytes(completed) == full


@given(st.one_of(IPV4_PACKET, ipv6_packets()))
def test_ip_packet_round_trip(packet: IPv4Packet | IPv6Packet) -> None:
    raw = packet.emit()
    assert parse_ip(raw) == packet
    assert parse_ip(raw).emit() == raw


# -- plain SYNs, read without the full parse ---------------------------------------------------
PLAIN_OPTIONS: dict[type[TcpOption], st.SearchStrategy[TcpOption]] = {
    Mss: st.builds(Mss, U16),
    WindowScale: st.builds(WindowScale, st.integers(0, 255)),
    SackPermitted: st.just(SackPermitted()),
    Timestamps: st.builds(Timestamps, U32, U32),
}
PLAIN_KINDS = tuple(PLAIN_OPTIONS)


@st.composite
def plain_syn_options(draw: st.DrawFn) -> tuple[TcpOption, ...]:
    """Options a plain SYN may have: MSS, window scale, SACK permitted and timestamps, each at
    most once, in any order, NOPs between, padded with NOPs or an EOL."""
    kinds = draw(st.permutations(PLAIN_KINDS))[: draw(st.integers(0, len(PLAIN_KINDS)))]
    options: list[TcpOption] = []
    for kind in kinds:
        options += [Nop()] * draw(st.integers(0, 2))
        options.append(draw(PLAIN_OPTIONS[kind]))
    if draw(st.booleans()) and len(emit_options(options)) < 40:
        options.append(Eol(b"\x00" * (-(len(emit_options(options)) + 1) % 4)))
    while len(emit_options(options)) % 4:
        options.append(Nop())
    return tuple(options) if len(emit_options(options)) <= 40 else ()


LINUX_SYN = TcpSegment(
    40000,
    80,
    1,
    0,
    Flags.SYN,
    64240,
    linux_syn_options(1460, wscale=7, timestamps=Timestamps(9, 0)),
)


def _plain(segment: TcpSegment) -> bool:
    """Whether :func:`parse_plain_syn` takes ``segment`` (in an IPv4 packet, no IP options)."""
    known = []
    for option in segment.options:
        if isinstance(option, Eol):
            break
        if not isinstance(option, Nop):
            known.append(type(option))
    return (
        segment.flags == Flags.SYN
        and not segment.payload
        and all(kind in PLAIN_KINDS for kind in known)
        and len(set(known)) == len(known)
    )


@given(
    st.one_of(SEGMENT, st.builds(TcpSegment, U16, U16, U32, U32, st.just(Flags.SYN), U16,
                                 plain_syn_options())),
    V4_ADDRS,
    st.none() | st.tuples(st.integers(0, 99), st.integers(0, 255)),
)  # fmt: skip
@example(LINUX_SYN, (IPv4Address("198.18.0.1"), IPv4Address("198.18.1.2")), None)
@example(LINUX_SYN, (IPv4Address("198.18.0.1"), IPv4Address("198.18.1.2")), (57, 0x10))
def test_a_plain_syn_says_what_the_full_parse_says(
    segment: TcpSegment, addrs: tuple[IPv4Address, IPv4Address], change: tuple[int, int] | None
) -> None:
    """parse_plain_syn takes exactly the plain SYNs (checksums right) and reads them as
    parse_tcp_packet and the segment's accessors do; anything else, a damaged byte included,
    is None."""
    raw = ip_packet(*addrs, segment)
    if change is not None:
        damaged = bytearray(raw)
        damaged[change[0] % len(raw)] ^= change[1]
        raw = bytes(damaged)
    syn = parse_plain_syn(raw)
    try:
        packet, parsed = parse_tcp_packet(raw)
    except MalformedPacket:
        assert syn is None
        return
    if not (_plain(parsed) and isinstance(packet, IPv4Packet) and not packet.options):
        assert syn is None
        return
    ts = parsed.timestamps
    assert syn == PlainSyn(
        packet.src,
        packet.dst,
        parsed.src_port,
        parsed.dst_port,
        parsed.seq,
        parsed.window,
        parsed.mss,
        parsed.wscale,
        parsed.sack_permitted,
        None if ts is None else ts.tsval,
    )


# -- scapy, an independent dissector -----------------------------------------------------------
def _scapy_option(option: TcpOption) -> tuple[Any, Any]:
    """The (name, value) scapy's TCP options field decodes ``option`` to."""
    match option:
        case Eol():
            return ("EOL", None)
        case Nop():
            return ("NOP", None)
        case Mss(value):
            return ("MSS", value)
        case WindowScale(shift):
            return ("WScale", shift)
        case SackPermitted():
            return ("SAckOK", b"")
        case Sack(blocks):
            return ("SAck", tuple(edge for block in blocks for edge in block))
        case Timestamps(tsval, tsecr):
            return ("Timestamp", (tsval, tsecr))
        case FastOpen(cookie, False):
            return ("TFO", struct.unpack("!II", cookie) if len(cookie) == 8 else cookie)
        case FastOpen(cookie, True):
            return (254, b"\xf9\x89" + cookie)
        case UnknownOption(kind, data):
            return (kind, data)
    raise AssertionError(option)


def _scapy_view(options: tuple[TcpOption, ...]) -> list[tuple[Any, Any]]:
    view = []
    for option in options:
        view.append(_scapy_option(option))
        if isinstance(option, Eol):
            break  # scapy drops what follows an EOL
    return view


def _assert_agree(raw: bytes, packet: IPv4Packet | IPv6Packet, segment: TcpSegment) -> None:
    """scapy reads ``raw`` to the same fields, options and checksums as we do."""
    theirs: Any = IP(raw) if packet.version == 4 else IPv6(raw)
    tcp = theirs[TCP]
    assert (ip_address(theirs.src), ip_address(theirs.dst)) == (packet.src, packet.dst)
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack) == (
        segment.src_port,
        segment.dst_port,
        segment.seq,
        segment.ack,
    )
    # scapy's flags are 9 bits, AccECN's AE (our reserved bit 0) on top; its reserved are 3
    assert (int(tcp.flags), tcp.window, tcp.urgptr, tcp.reserved) == (
        segment.flags | (segment.reserved & 1) << 8,
        segment.window,
        segment.urgent,
        segment.reserved >> 1,
    )
    assert tcp.options == _scapy_view(segment.options)
    assert bytes(tcp.payload) == segment.payload
    # scapy's own checksum routines over the bytes (checksum fields zeroed) give the ones we wrote
    offset = len(raw) - len(packet.payload)
    tcp_bytes = raw[offset : offset + 16] + b"\x00\x00" + raw[offset + 18 :]
    if packet.version == 4:
        assert tcp.chksum == in4_chksum(PROTO_TCP, theirs, tcp_bytes)
        assert theirs.chksum == checksum(raw[:10] + b"\x00\x00" + raw[12:offset])
    else:
        assert tcp.chksum == in6_chksum(PROTO_TCP, theirs, tcp_bytes)  # type: ignore[no-untyped-call]


@settings(max_examples=150)
@given(SEGMENT, ADDRS)
def test_scapy_reads_what_we_emit(segment: TcpSegment, addrs: tuple[IPAddress, IPAddress]) -> None:
    raw = ip_packet(*addrs, segment)
    packet, parsed = parse_tcp_packet(raw)
    assert parsed == segment
    _assert_agree(raw, packet, segment)


SCAPY_OPTION = st.one_of(
    st.just(("NOP", None)),
    st.builds(lambda v: ("MSS", v), U16),
    st.builds(lambda v: ("WScale", v), st.integers(0, 255)),
    st.just(("SAckOK", b"")),
    st.lists(U32, min_size=2, max_size=8)
    .filter(lambda e: len(e) % 2 == 0)
    .map(lambda e: ("SAck", tuple(e))),
    st.builds(lambda a, b: ("Timestamp", (a, b)), U32, U32),
    st.builds(lambda a, b: ("TFO", (a, b)), U32, U32),
    st.binary(max_size=16).map(lambda c: ("TFO", c)),
)


@settings(max_examples=150)
@given(
    st.lists(SCAPY_OPTION, max_size=6),
    st.booleans(),
    U16,
    U16,
    U32,
    U32,
    st.integers(0, 255),
    st.binary(max_size=32),
)
def test_we_read_what_scapy_builds(
    options: list[tuple[Any, Any]],
    v6: bool,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes,
) -> None:
    while len(TCP(options=options).build()) > 60:
        options = options[:-1]
    ip = (
        IPv6(src="fd00:f0::1", dst="fd00:f0::2")
        if v6
        else IP(src="198.18.0.1", dst="198.18.0.2", flags="DF")
    )
    tcp = TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, options=options)
    raw = bytes(ip / tcp / Raw(payload)) if payload else bytes(ip / tcp)
    packet, segment = parse_tcp_packet(raw)  # scapy's checksums verify
    assert packet.src == (IPv6Address("fd00:f0::1") if v6 else IPv4Address("198.18.0.1"))
    assert packet.protocol == PROTO_TCP and segment.payload == payload
    _assert_agree(raw, packet, segment)
    assert dataclasses.replace(packet, payload=segment.emit(packet.src, packet.dst)).emit() == raw
