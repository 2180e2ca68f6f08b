"""The wire codec on hand-made examples: option layouts as Linux writes them, options Linux keeps
but ignores, IPv6 extension headers, and a reason for every kind of malformed input."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest
from wirehelpers import COOKIE, V4, V6, fix_ipv4_checksum, pseudo_header

from fastopen.errors import MalformedPacket
from fastopen.wire import (
    ECN_ECT_0,
    PROTO_TCP,
    Eol,
    FastOpen,
    Flags,
    IPv4Packet,
    Ipv6ExtensionHeader,
    IPv6Packet,
    Mss,
    Nop,
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
    linux_synack_options,
    parse_ip,
    parse_options,
    parse_tcp_packet,
)

TS = Timestamps(0x01020304, 0)


def _syn(options: tuple[TcpOption, ...] = (), payload: bytes = b"") -> TcpSegment:
    return TcpSegment(40000, 80, 1000, 0, Flags.SYN, 64240, options, payload)


# -- Linux layouts -----------------------------------------------------------------------------
def test_reference_layout_without_timestamps_byte_for_byte() -> None:
    """REFERENCE.md: ``mss 1460,nop,nop,sackOK,nop,wscale N,FO ...,nop,nop``."""
    options = linux_syn_options(1460, wscale=7, fastopen=FastOpen(COOKIE))
    assert emit_options(options) == bytes.fromhex(
        "020405b4 01010402 01030307 220a3021b9d889017eeb 0101"
    )
    assert options == (
        Mss(1460), Nop(), Nop(), SackPermitted(), Nop(), WindowScale(7), FastOpen(COOKIE),
        Nop(), Nop(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # cookie request: FO of length 2, then two NOPs
        ({"wscale": 7, "fastopen": FastOpen()}, "020405b4 01010402 01030307 22020101"),
        # timestamps with SACK: sackOK,TS in one word
        ({"wscale": 7, "timestamps": TS}, "020405b4 0402080a 01020304 00000000 01030307"),
        # timestamps without SACK: nop,nop,TS
        ({"sack": False, "timestamps": TS}, "020405b4 0101080a 01020304 00000000"),
        # no timestamps, no SACK, no window scale: MSS alone
        ({"sack": False}, "020405b4"),
        # the experimental cookie request is 4 bytes: no padding
        ({"fastopen": FastOpen(experimental=True)}, "020405b4 01010402 fe04f989"),
        # experimental with an 8-byte cookie: 12 bytes, no padding
        (
            {"sack": False, "fastopen": FastOpen(COOKIE, experimental=True)},
            "020405b4 fe0cf989 3021b9d8 89017eeb",
        ),
        # 4- and 16-byte cookies are 2 mod 4 long (padded), a 6-byte one is not
        ({"sack": False, "fastopen": FastOpen(b"abcd")}, "020405b4 22066162 63640101"),
        ({"sack": False, "fastopen": FastOpen(b"abcdef")}, "020405b4 22086162 63646566"),
        # the longest: MSS, sackOK+TS, wscale, 16-byte cookie and padding = 40 bytes
        (
            {"wscale": 14, "timestamps": TS, "fastopen": FastOpen(bytes(range(16)))},
            "020405b4 0402080a 01020304 00000000 0103030e 2212" + bytes(range(16)).hex() + "0101",
        ),
    ],
)
def test_linux_layouts(kwargs: dict[str, object], expected: str) -> None:
    options = linux_syn_options(1460, **kwargs)  # type: ignore[arg-type]
    raw = emit_options(options)
    assert raw == bytes.fromhex(expected)
    assert len(raw) % 4 == 0 and len(raw) <= 40
    assert linux_synack_options(1460, **kwargs) == options  # type: ignore[arg-type]
    assert parse_options(raw) == options
    assert _syn(options).emit(*V4)[20:] == raw  # what a header carries (fast layouts included)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 18])
def test_linux_never_sends_an_invalid_cookie(length: int) -> None:
    with pytest.raises(ValueError, match="never sends"):
        linux_syn_options(1460, fastopen=FastOpen(bytes(length)))


# -- options Linux keeps but ignores -----------------------------------------------------------
#: cookie length -> whether Linux honours it (0 is a cookie request)
COOKIE_VALIDITY = {0: True, 1: False, 2: False, 3: False, 4: True, 5: False, 6: True, 8: True}
COOKIE_VALIDITY |= {15: False, 16: True, 17: False, 18: False, 32: False}


@pytest.mark.parametrize(("length", "valid"), COOKIE_VALIDITY.items())
def test_fastopen_cookie_validity(length: int, valid: bool) -> None:
    for experimental in (False, True):
        option = FastOpen(bytes(length), experimental)
        (parsed,) = parse_options(option.encode())
        assert parsed == option
        assert isinstance(parsed, FastOpen)
        assert parsed.valid is valid
        assert parsed.is_request is (length == 0)


@pytest.mark.parametrize(
    ("raw", "option"),
    [
        ("fe06abcd0102", UnknownOption(254, bytes.fromhex("abcd0102"))),  # no magic
        ("fe03f9", UnknownOption(254, b"\xf9")),  # too short for the magic
        ("fe02", UnknownOption(254)),
        ("020305", UnknownOption(2, b"\x05")),  # MSS of length 3
        ("0302", UnknownOption(3)),  # window scale without the shift
        ("040301", UnknownOption(4, b"\x01")),
        ("050600000000", UnknownOption(5, bytes(4))),  # SACK with half a block
        ("0806" + "00" * 4, UnknownOption(8, bytes(4))),
        ("1e0401ff", UnknownOption(30, b"\x01\xff")),  # MPTCP
    ],
)
def test_ignored_and_unknown_options_are_kept(raw: str, option: UnknownOption) -> None:
    assert parse_options(bytes.fromhex(raw)) == (option,)
    assert emit_options((option,)) == bytes.fromhex(raw)


def test_eol_keeps_what_follows_it() -> None:
    raw = bytes.fromhex("020405b400010203")
    assert parse_options(raw) == (Mss(1460), Eol(b"\x01\x02\x03"))
    assert emit_options(parse_options(raw)) == raw
    with pytest.raises(ValueError, match="EOL must be the last"):
        emit_options((Eol(), Nop()))


def test_sack_blocks() -> None:
    option = Sack(((1, 2), (0xFFFFFFFF, 5)))
    assert option.encode() == bytes.fromhex("05120000000100000002ffffffff00000005")
    assert parse_options(option.encode()) == (option,)


# -- segments ----------------------------------------------------------------------------------
@pytest.mark.parametrize("addrs", [V4, V6], ids=["v4", "v6"])
def test_segment_round_trip_and_accessors(addrs: tuple[IPv4Address, IPv4Address]) -> None:
    cookie = FastOpen(COOKIE)
    options = (*linux_syn_options(1460, wscale=7, timestamps=TS), cookie, Nop(), Nop())
    seg = TcpSegment(40000, 80, 0xFFFFFFFF, 7, Flags.SYN | Flags.ECE, 1, options, b"x", 3, 1)
    raw = seg.emit(*addrs)
    assert raw[12] == (20 + 32) // 4 << 4 | 1  # data offset and the AE bit
    assert internet_checksum(pseudo_header(*addrs, len(raw)) + raw) == 0  # it checks out
    assert TcpSegment.parse(raw, *addrs) == seg
    assert (seg.mss, seg.wscale, seg.timestamps, seg.sack_permitted) == (1460, 7, TS, True)
    assert seg.fastopen == cookie and seg.sack_blocks == ()
    assert _syn().fastopen is None and _syn().mss is None and not _syn().sack_permitted


def test_the_other_ones_complement_zero_is_taken() -> None:
    """A checksum computed as 0x0000 may arrive as 0xFFFF (Linux's incremental updates write it,
    and Linux takes both): it parses, and re-emits as 0x0000."""
    src, dst = V4
    first = TcpSegment(40000, 80, 1, 2, Flags.ACK, 1000, (), b"\x00\x00").emit(src, dst)
    word = first[16:18]  # a payload word equal to the checksum makes the checksum 0x0000
    zero = TcpSegment(40000, 80, 1, 2, Flags.ACK, 1000, (), word).emit(src, dst)
    assert zero[16:18] == b"\x00\x00"
    other = zero[:16] + b"\xff\xff" + zero[18:]
    assert TcpSegment.parse(other, src, dst).emit(src, dst) == zero
    wrong = zero[:16] + b"\xff\xfe" + zero[18:]
    with pytest.raises(MalformedPacket, match="bad TCP checksum"):
        TcpSegment.parse(wrong, src, dst)


def test_fastopen_accessor_returns_the_first_even_if_invalid() -> None:
    seg = _syn((FastOpen(b"odd"), FastOpen(COOKIE)))
    assert seg.fastopen == FastOpen(b"odd") and not seg.fastopen.valid


def test_emit_pads_options_with_zeros() -> None:
    raw = _syn((Mss(1460), WindowScale(7))).emit(*V4)
    assert raw[12] >> 4 == 7 and raw[20:28] == bytes.fromhex("020405b403030700")
    assert TcpSegment.parse(raw, *V4).options == (Mss(1460), WindowScale(7), Eol())


@pytest.mark.parametrize(
    "make",
    [
        lambda: Mss(65536),
        lambda: WindowScale(-1),
        lambda: Timestamps(2**32, 0),
        lambda: Sack(()),
        lambda: UnknownOption(1, b""),
        lambda: FastOpen(bytes(254)),
        lambda: TcpSegment(65536, 1, 0, 0, Flags.SYN, 0),
        lambda: TcpSegment(1, 1, 0, 0, Flags.SYN, 0, reserved=16),
        lambda: IPv4Packet(*V4, PROTO_TCP, b"", options=b"\x01"),
        lambda: IPv6Packet(*V6, 44, b""),
        lambda: IPv6Packet(*V6, 6, b"", extension_headers=(_ext(60), _ext(0))),
        lambda: Ipv6ExtensionHeader(6, bytes(6)),
        lambda: Ipv6ExtensionHeader(44, bytes(6)),
        lambda: _syn((*(Timestamps(1, 2),) * 4, Nop())).emit(*V4),  # 41 bytes of options
        lambda: _syn().emit(V4[0], V6[1]),
        lambda: ip_packet(V4[0], V6[1], _syn()),
    ],
)
def test_unencodable_values_raise_value_error(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make", "field", "bits"),
    [
        (lambda v: TcpSegment(v, 1, 0, 0, Flags.SYN, 0), "source port", 16),
        (lambda v: TcpSegment(1, v, 0, 0, Flags.SYN, 0), "destination port", 16),
        (lambda v: TcpSegment(1, 1, v, 0, Flags.SYN, 0), "sequence number", 32),
        (lambda v: TcpSegment(1, 1, 0, v, Flags.SYN, 0), "acknowledgment number", 32),
        (lambda v: TcpSegment(1, 1, 0, 0, v, 0), "flags", 8),
        (lambda v: TcpSegment(1, 1, 0, 0, Flags.SYN, v), "window", 16),
        (lambda v: TcpSegment(1, 1, 0, 0, Flags.SYN, 0, urgent=v), "urgent pointer", 16),
        (lambda v: TcpSegment(1, 1, 0, 0, Flags.SYN, 0, reserved=v), "reserved bits", 4),
        (lambda v: Timestamps(v, 0), "TSval", 32),
        (lambda v: Timestamps(0, v), "TSecr", 32),
        (lambda v: IPv4Packet(*V4, v, b""), "protocol", 8),
        (lambda v: IPv4Packet(*V4, 6, b"", ttl=v), "TTL", 8),
        (lambda v: IPv4Packet(*V4, 6, b"", tos=v), "TOS", 8),
        (lambda v: IPv4Packet(*V4, 6, b"", identification=v), "identification", 16),
        (lambda v: IPv4Packet(*V4, 6, b"", flags=v), "IPv4 flags", 3),
        (lambda v: IPv4Packet(*V4, 6, b"", fragment_offset=v), "fragment offset", 13),
        (lambda v: IPv6Packet(*V6, v, b""), "protocol", 8),
        (lambda v: IPv6Packet(*V6, 6, b"", hop_limit=v), "hop limit", 8),
        (lambda v: IPv6Packet(*V6, 6, b"", traffic_class=v), "traffic class", 8),
        (lambda v: IPv6Packet(*V6, 6, b"", flow_label=v), "flow label", 20),
    ],
)
def test_every_header_field_is_range_checked_by_name(
    make: Callable[[int], object], field: str, bits: int
) -> None:
    make((1 << bits) - 1)  # the largest value fits
    for bad in (1 << bits, -1):
        with pytest.raises(ValueError, match=f"^{field} {bad} does not fit in {bits} bits$"):
            make(bad)


# -- IP packets and extension headers -----------------------------------------------------------
def _ext(kind: int, size: int = 8) -> Ipv6ExtensionHeader:
    return Ipv6ExtensionHeader(kind, bytes(7) if kind == 44 else bytes(range(size - 2)))


def test_ipv4_with_options_round_trips() -> None:
    seg = _syn(linux_syn_options(1460, fastopen=FastOpen()))
    packet = IPv4Packet(*V4, PROTO_TCP, seg.emit(*V4), ttl=3, tos=0xB8, identification=9,
                        options=bytes.fromhex("07070400000000" "00"))  # fmt: skip
    raw = packet.emit()
    assert raw[0] == 0x47 and internet_checksum(raw[:28]) == 0
    parsed, parsed_seg = parse_tcp_packet(raw)
    assert parsed == packet and parsed_seg == seg and not parsed.is_fragment


def test_ipv6_extension_headers_are_skipped_and_kept() -> None:
    seg = _syn(linux_syn_options(1440, wscale=7, fastopen=FastOpen(COOKIE)), b"data")
    chain = (_ext(0, 16), _ext(60), _ext(43, 24), _ext(44), _ext(60))
    packet = IPv6Packet(*V6, PROTO_TCP, seg.emit(*V6), 7, 0x2E, 0xABCDE, chain)
    raw = packet.emit()
    assert raw[6] == 0 and raw[40] == 60 and raw[41] == 1  # hop-by-hop first, 16 bytes
    parsed, parsed_seg = parse_tcp_packet(raw)
    # the segment carries the ECN field of its traffic class (0x2E: ECT(0))
    assert parsed == packet and parsed_seg == dataclasses.replace(seg, ecn=ECN_ECT_0)
    assert parsed.emit() == raw and not parsed.is_fragment  # an atomic fragment is whole


def test_ip_packet_builds_both_families() -> None:
    for src, dst in (V4, V6):
        raw = ip_packet(src, dst, _syn(payload=b"hi"), ttl=9)
        packet, seg = parse_tcp_packet(raw)
        assert (packet.src, packet.dst, packet.ttl, seg.payload) == (src, dst, 9, b"hi")
    assert parse_ip(ip_packet(*V4, _syn())).flags == IPv4Packet.DF  # type: ignore[union-attr]


# -- malformed input: a reason for each --------------------------------------------------------
def _v4(**fields: object) -> bytes:
    return IPv4Packet(*V4, PROTO_TCP, _syn().emit(*V4), **fields).emit()  # type: ignore[arg-type]


def _patch(raw: bytes, offset: int, value: bytes, fix_ipv4: bool = False) -> bytes:
    out = bytearray(raw)
    out[offset : offset + len(value)] = value
    if fix_ipv4:
        fix_ipv4_checksum(out)
    return bytes(out)


SEG = _syn(linux_syn_options(1460, wscale=7)).emit(*V4)
V6_PKT = IPv6Packet(*V6, PROTO_TCP, _syn().emit(*V6), extension_headers=(_ext(0),)).emit()


@pytest.mark.parametrize(
    ("parse", "data", "reason"),
    [
        (TcpSegment.parse, SEG[:19], "truncated TCP header"),
        (TcpSegment.parse, _patch(SEG, 12, b"\x40"), "bad TCP data offset 4"),
        (TcpSegment.parse, _patch(SEG, 12, b"\xf0"), "runs past the segment"),
        (TcpSegment.parse, _patch(SEG, 21, b"\x01"), "has length 1 (below 2)"),
        (TcpSegment.parse, _patch(SEG, 30, b"\x05"), "kind 3 of length 5 overruns"),
        (TcpSegment.parse, _patch(SEG, 28, b"\x01\x01\x01\x03"), "kind 3 has no length byte"),
        (lambda d: TcpSegment.parse(d, *V4), _patch(SEG, 4, b"\x01"), "bad TCP checksum"),
        (lambda d: TcpSegment.parse(d, *V6), SEG, "bad TCP checksum"),
        (lambda d: TcpSegment.parse(d, V4[0], V6[1]), SEG, "same IP family"),
        (parse_ip, b"", "empty packet"),
        (parse_ip, b"\x50" + bytes(40), "IP version 5"),
        (IPv4Packet.parse, _v4()[:19], "truncated IPv4 header"),
        (IPv4Packet.parse, _v4()[:20], "total length 40 but the packet has 20"),
        (IPv4Packet.parse, _v4() + b"\x00", "total length 40 but the packet has 41"),
        (IPv4Packet.parse, _patch(_v4(), 0, b"\x65"), "IP version 6 in an IPv4 header"),
        (IPv4Packet.parse, _patch(_v4(), 0, b"\x44", fix_ipv4=True), "bad IPv4 IHL 4"),
        (IPv4Packet.parse, _patch(_v4(), 0, b"\x4f", fix_ipv4=True), "IHL 15 runs past"),
        (IPv4Packet.parse, _patch(_v4(), 8, b"\x01"), "bad IPv4 header checksum"),
        (parse_tcp_packet, _patch(_v4(), 9, b"\x11", fix_ipv4=True), "protocol 17 is not TCP"),
        (parse_tcp_packet, _v4(flags=1), "fragmented"),
        (parse_tcp_packet, _v4(fragment_offset=8), "fragmented"),
        (parse_tcp_packet, _patch(_v4(), 39, b"\x01", fix_ipv4=True), "bad TCP checksum"),
        (IPv6Packet.parse, V6_PKT[:39], "truncated IPv6 header"),
        (IPv6Packet.parse, _patch(V6_PKT, 0, b"\x40"), "IP version 4 in an IPv6 header"),
        (IPv6Packet.parse, V6_PKT[:-1], "payload length 28 but 27 bytes follow"),
        (IPv6Packet.parse, _patch(V6_PKT[:44], 4, b"\x00\x04"), "truncated IPv6 extension"),
        (IPv6Packet.parse, _patch(V6_PKT, 41, b"\x09"), "of 80 bytes overruns the packet"),
        (IPv6Packet.parse, _patch(V6_PKT, 40, b"\x00"), "hop-by-hop options header not first"),
        (
            parse_tcp_packet,
            IPv6Packet(*V6, 6, b"", extension_headers=(Ipv6ExtensionHeader(44, bytes(7)),)).emit()[
                :42
            ]
            + b"\x00\x09"
            + bytes(4),
            "fragmented",
        ),
        (parse_tcp_packet, _patch(V6_PKT, 40, b"\x3a"), "protocol 58 is not TCP"),
    ],
)
def test_malformed_input_has_a_reason(parse: object, data: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket, match=r"^malformed packet: ") as info:
        parse(data)  # type: ignore[operator]
    assert reason in info.value.reason


def test_segment_init_is_the_dataclass_one() -> None:
    """TcpSegment's quicker __init__ takes what the dataclass' takes: every field in order,
    by position or name, the same defaults."""
    params = inspect.signature(TcpSegment).parameters
    assert [(p.name, p.default) for p in params.values()] == [
        (f.name, f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty)
        for f in dataclasses.fields(TcpSegment)
    ]
    seg = TcpSegment(1, 2, seq=3, ack=4, flags=Flags.ACK, window=5, payload=b"x")
    assert (seg.options, seg.urgent, seg.reserved) == ((), 0, 0)
    assert dataclasses.replace(seg, seq=7) == TcpSegment(1, 2, 7, 4, Flags.ACK, 5, (), b"x")


def test_the_ecn_field_goes_into_and_comes_out_of_the_ip_header() -> None:
    """``TcpSegment.ecn``: ip_packet writes it in the TOS byte or traffic class, the parsers
    (the IPv4 fast path too) read it back."""
    from ipaddress import ip_address

    from fastopen.wire import ECN_CE, ip_packet, parse_ipv4_tcp

    for src, dst in (V4, V6):
        seg = dataclasses.replace(_syn(linux_syn_options(1460)), ecn=ECN_CE)
        raw = ip_packet(src, dst, seg)
        packet, parsed = parse_tcp_packet(raw)
        assert packet.ecn == ECN_CE and parsed.ecn == ECN_CE
        if src.version == 4:
            assert raw[1] == ECN_CE and internet_checksum(raw[:20]) == 0
            fast = parse_ipv4_tcp(raw, {ip_address(str(dst))})
            assert fast is not None and fast[2].ecn == ECN_CE
        else:
            assert (raw[1] >> 4) & 3 == ECN_CE
    with pytest.raises(ValueError, match="ECN field"):
        dataclasses.replace(_syn(()), ecn=4)
