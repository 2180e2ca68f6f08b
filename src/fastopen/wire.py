"""The wire codec: IPv4, IPv6 and TCP, parsed from untrusted bytes and emitted byte-exact.

Parsing is checked: any input that is not a well-formed packet raises
:class:`~fastopen.errors.MalformedPacket` with a reason, and no other exception escapes. What
parses is an immutable value (frozen, slotted dataclasses) that emits exactly the bytes it came
from: unknown TCP options are kept as ``(kind, data)``, bytes after an EOL option as its padding,
IPv4 options and IPv6 extension headers verbatim (smoltcp's ``src/wire/tcp.rs`` is the model).

Options that Linux parses but ignores are kept, not rejected: a Fast Open option with a cookie of
a length Linux ignores (odd, 2 or above 16) is a :class:`FastOpen` whose ``valid`` is false; a
known kind with a length Linux ignores (an MSS of length 3, say) and kind 254 without the Fast
Open magic are an :class:`UnknownOption`.

Stricter than Linux, so that what parses re-emits byte-exact: an option of length below 2 or
running past the header is malformed (Linux stops reading options there); IP length fields must
match the buffer (Linux trims bytes after the IP total length); a checksum must equal the computed
one bit for bit (Linux also takes 0xFFFF for a computed 0x0000, the other one's-complement zero).

:func:`linux_syn_options` and :func:`linux_synack_options` lay options out exactly as Linux's
``tcp_options_write`` (net/ipv4/tcp_output.c) does.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from enum import IntFlag
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, TypeAlias

from fastopen.errors import MalformedPacket

IPAddress: TypeAlias = IPv4Address | IPv6Address

PROTO_TCP = 6
#: IPv6 extension headers skipped to find the upper-layer header (RFC 8200 section 4).
IPV6_HOP_BY_HOP = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_DEST_OPTS = 60
_IPV6_EXTENSIONS = frozenset({IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_DEST_OPTS})

TCP_HEADER_LEN = 20
TCP_MAX_OPTIONS_LEN = 40
IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40

# TCP option kinds (include/net/tcp.h)
TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MSS = 2
TCPOPT_WINDOW = 3
TCPOPT_SACK_PERM = 4
TCPOPT_SACK = 5
TCPOPT_TIMESTAMP = 8
TCPOPT_FASTOPEN = 34
TCPOPT_EXP = 254
TCPOPT_FASTOPEN_MAGIC = 0xF989
TCP_FASTOPEN_COOKIE_MIN = 4
TCP_FASTOPEN_COOKIE_MAX = 16

_LITTLE_ENDIAN = sys.byteorder == "little"
_U16 = struct.Struct("!H")
_TCP_HEADER = struct.Struct("!HHIIBBHHH")
_IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
_IPV6_HEADER = struct.Struct("!IHBB16s16s")
_TIMESTAMPS = struct.Struct("!II")
_FASTOPEN_MAGIC = _U16.pack(TCPOPT_FASTOPEN_MAGIC)


# -- checksums ---------------------------------------------------------------------------------
def internet_checksum(data: bytes) -> int:
    """The RFC 1071 checksum of ``data`` (one's complement of the one's complement sum)."""
    if len(data) & 1:
        data = data + b"\x00"
    total = sum(memoryview(data).cast("H"))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    if _LITTLE_ENDIAN:
        total = ((total & 0xFF) << 8) | (total >> 8)
    return ~total & 0xFFFF


def _pseudo_header(src: IPAddress, dst: IPAddress, length: int) -> bytes:
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        if length > 0xFFFF:
            raise ValueError(f"a TCP segment of {length} bytes does not fit in IPv4")
        return src.packed + dst.packed + struct.pack("!BBH", 0, PROTO_TCP, length)
    if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
        return src.packed + dst.packed + struct.pack("!IxxxB", length, PROTO_TCP)
    raise ValueError(f"source {src} and destination {dst} are not of the same IP family")


def tcp_checksum(src: IPAddress, dst: IPAddress, segment: bytes) -> int:
    """The TCP checksum of ``segment`` (its checksum field zeroed) with the pseudo-header."""
    return internet_checksum(_pseudo_header(src, dst, len(segment)) + segment)


def _check_range(name: str, value: int, bits: int) -> None:
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} {value} does not fit in {bits} bits")


def _check_ranges(*fields: tuple[str, int, int]) -> None:
    """``_check_range`` of each (name, value, bits): the slow path of the headers' checks, which
    first test all their fields at once (a negative value or one of too many bits shifts to a
    non-zero number)."""
    for name, value, bits in fields:
        _check_range(name, value, bits)


# -- TCP options -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Eol:
    """End of option list (kind 0); ``padding`` is whatever follows it in the header, kept."""

    padding: bytes = b""

    def encode(self) -> bytes:
        return b"\x00" + self.padding


@dataclass(frozen=True, slots=True)
class Nop:
    """No operation (kind 1), used for alignment."""

    def encode(self) -> bytes:
        return b"\x01"


@dataclass(frozen=True, slots=True)
class Mss:
    """Maximum segment size (kind 2, length 4)."""

    value: int

    def __post_init__(self) -> None:
        _check_range("MSS", self.value, 16)

    def encode(self) -> bytes:
        return b"\x02\x04" + _U16.pack(self.value)


@dataclass(frozen=True, slots=True)
class WindowScale:
    """Window scale (kind 3, length 3). Kept as sent; Linux clamps shifts above 14."""

    shift: int

    def __post_init__(self) -> None:
        _check_range("window scale shift", self.shift, 8)

    def encode(self) -> bytes:
        return bytes((TCPOPT_WINDOW, 3, self.shift))


@dataclass(frozen=True, slots=True)
class SackPermitted:
    """SACK permitted (kind 4, length 2)."""

    def encode(self) -> bytes:
        return b"\x04\x02"


@dataclass(frozen=True, slots=True)
class Sack:
    """SACK blocks (kind 5): one or more ``(left edge, right edge)`` sequence numbers."""

    blocks: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.blocks) <= 31:
            raise ValueError(f"a SACK option holds 1 to 31 blocks, not {len(self.blocks)}")
        for left, right in self.blocks:
            _check_range("SACK edge", left, 32)
            _check_range("SACK edge", right, 32)

    def encode(self) -> bytes:
        edges = [edge for block in self.blocks for edge in block]
        return bytes((TCPOPT_SACK, 2 + 8 * len(self.blocks))) + struct.pack(
            f"!{len(edges)}I", *edges
        )


@dataclass(frozen=True, slots=True)
class Timestamps:
    """Timestamps (kind 8, length 10)."""

    tsval: int
    tsecr: int

    def __post_init__(self) -> None:
        if (self.tsval | self.tsecr) >> 32:
            _check_ranges(("TSval", self.tsval, 32), ("TSecr", self.tsecr, 32))

    def encode(self) -> bytes:
        return b"\x08\x0a" + _TIMESTAMPS.pack(self.tsval, self.tsecr)


@dataclass(frozen=True, slots=True)
class FastOpen:
    """TCP Fast Open (kind 34), or its experimental form (kind 254 with magic 0xF989).

    An empty cookie is a cookie request. Linux honours only a request or a cookie of 4 to 16
    bytes of even length (``valid``); it ignores the option otherwise, and so may the engine.
    """

    cookie: bytes = b""
    experimental: bool = False

    def __post_init__(self) -> None:
        limit = 251 if self.experimental else 253
        if len(self.cookie) > limit:
            raise ValueError(f"a Fast Open cookie is at most {limit} bytes, not {len(self.cookie)}")

    @property
    def valid(self) -> bool:
        """True for a cookie request or a cookie Linux accepts (4..16 bytes, even length)."""
        n = len(self.cookie)
        return n == 0 or (TCP_FASTOPEN_COOKIE_MIN <= n <= TCP_FASTOPEN_COOKIE_MAX and not n & 1)

    @property
    def is_request(self) -> bool:
        """True for a cookie request (no cookie)."""
        return not self.cookie

    def encode(self) -> bytes:
        if self.experimental:
            return bytes((TCPOPT_EXP, 4 + len(self.cookie))) + _FASTOPEN_MAGIC + self.cookie
        return bytes((TCPOPT_FASTOPEN, 2 + len(self.cookie))) + self.cookie


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """Any other option, kept as ``(kind, data)``: an unknown kind, a known kind with a length
    Linux ignores, or kind 254 without the Fast Open magic."""

    kind: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 2 <= self.kind <= 255:
            raise ValueError(f"option kind {self.kind} is not a kind with a length byte")
        if len(self.data) > 253:
            raise ValueError(f"option data is at most 253 bytes, not {len(self.data)}")

    def encode(self) -> bytes:
        return bytes((self.kind, 2 + len(self.data))) + self.data


TcpOption: TypeAlias = (
    Eol | Nop | Mss | WindowScale | SackPermitted | Sack | Timestamps | FastOpen | UnknownOption
)

_NOP = Nop()
_SACK_PERMITTED = SackPermitted()


def _parse_option(kind: int, data: bytes) -> TcpOption:
    """The option of ``kind`` with ``data`` (the bytes after the length byte)."""
    n = len(data)
    if kind == TCPOPT_MSS and n == 2:
        return Mss(_U16.unpack(data)[0])
    if kind == TCPOPT_WINDOW and n == 1:
        return WindowScale(data[0])
    if kind == TCPOPT_SACK_PERM and n == 0:
        return _SACK_PERMITTED
    if kind == TCPOPT_SACK and n and n % 8 == 0:
        edges = struct.unpack(f"!{n // 4}I", data)
        return Sack(tuple(zip(edges[::2], edges[1::2], strict=True)))
    if kind == TCPOPT_TIMESTAMP and n == 8:
        return Timestamps(*_TIMESTAMPS.unpack(data))
    if kind == TCPOPT_FASTOPEN:
        return FastOpen(data)
    if kind == TCPOPT_EXP and data[:2] == _FASTOPEN_MAGIC:
        return FastOpen(data[2:], experimental=True)
    return UnknownOption(kind, data)


def parse_options(data: bytes) -> tuple[TcpOption, ...]:
    """Parse a TCP options area. An option shorter than 2 or running past the end is malformed."""
    options: list[TcpOption] = []
    i, end = 0, len(data)
    while i < end:
        kind = data[i]
        if kind == TCPOPT_EOL:
            options.append(Eol(bytes(data[i + 1 :])))
            break
        if kind == TCPOPT_NOP:
            options.append(_NOP)
            i += 1
            continue
        if i + 1 >= end:
            raise MalformedPacket(f"TCP option kind {kind} has no length byte")
        length = data[i + 1]
        if length < 2:
            raise MalformedPacket(f"TCP option kind {kind} has length {length} (below 2)")
        if i + length > end:
            raise MalformedPacket(f"TCP option kind {kind} of length {length} overruns the header")
        options.append(_parse_option(kind, bytes(data[i + 2 : i + length])))
        i += length
    return tuple(options)


def emit_options(options: tuple[TcpOption, ...] | list[TcpOption]) -> bytes:
    """The bytes of ``options`` in order, no padding added (an EOL must come last)."""
    for option in options[:-1]:
        if isinstance(option, Eol):
            raise ValueError("EOL must be the last option (bytes after it are its padding)")
    return b"".join(option.encode() for option in options)


def _aligned(options: tuple[TcpOption, ...]) -> bytes:
    """The options area of a header: the options, padded with zeros to a 4-byte boundary."""
    raw = emit_options(options)
    if len(raw) & 3:
        raw += b"\x00" * (4 - (len(raw) & 3))
    if len(raw) > TCP_MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options take {len(raw)} bytes, more than {TCP_MAX_OPTIONS_LEN}")
    return raw


# -- Linux option layouts ----------------------------------------------------------------------
def linux_syn_options(
    mss: int,
    *,
    sack: bool = True,
    wscale: int | None = None,
    timestamps: Timestamps | None = None,
    fastopen: FastOpen | None = None,
) -> tuple[TcpOption, ...]:
    """The options of a Linux SYN, in ``tcp_options_write`` order and padding.

    MSS; then ``sackOK,TS`` (SACK permitted and timestamps), ``nop,nop,TS`` or ``nop,nop,sackOK``;
    then ``nop,wscale``; Fast Open last, followed by two NOPs when its length is 2 mod 4.
    """
    if fastopen is not None and not fastopen.valid:
        raise ValueError(f"Linux never sends a Fast Open cookie of {len(fastopen.cookie)} bytes")
    options: list[TcpOption] = [Mss(mss)]
    if timestamps is not None:
        options += [_SACK_PERMITTED] if sack else [_NOP, _NOP]
        options.append(timestamps)
    elif sack:
        options += [_NOP, _NOP, _SACK_PERMITTED]
    if wscale is not None:
        options += [_NOP, WindowScale(wscale)]
    if fastopen is not None:
        options.append(fastopen)
        if len(fastopen.encode()) & 3 == 2:
            options += [_NOP, _NOP]
    return tuple(options)


def linux_synack_options(
    mss: int,
    *,
    sack: bool = True,
    wscale: int | None = None,
    timestamps: Timestamps | None = None,
    fastopen: FastOpen | None = None,
) -> tuple[TcpOption, ...]:
    """The options of a Linux SYN-ACK (``tcp_synack_options``, written by ``tcp_options_write``).

    Pass only what the SYN offered and the listener enables: SACK, window scale and timestamps
    are echoed; ``fastopen`` is the cookie the server returns (in the kind the client used).
    The layout is the one of :func:`linux_syn_options`.
    """
    return linux_syn_options(
        mss, sack=sack, wscale=wscale, timestamps=timestamps, fastopen=fastopen
    )


# -- TCP segments ------------------------------------------------------------------------------
class Flags(IntFlag):
    """The eight TCP flags of byte 13 of the header."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """A TCP segment. ``reserved`` holds the four bits before the flags (bit 0 is AccECN's AE).

    Options are emitted in order and padded with zeros to a 4-byte boundary when needed.
    """

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: Flags
    window: int
    options: tuple[TcpOption, ...] = ()
    payload: bytes = b""
    urgent: int = 0
    reserved: int = 0

    def __post_init__(self) -> None:
        if (
            (self.src_port | self.dst_port | self.window | self.urgent) >> 16
            or (self.seq | self.ack) >> 32
            or self.flags >> 8
            or self.reserved >> 4
        ):
            _check_ranges(
                ("source port", self.src_port, 16),
                ("destination port", self.dst_port, 16),
                ("sequence number", self.seq, 32),
                ("acknowledgment number", self.ack, 32),
                ("flags", self.flags, 8),
                ("window", self.window, 16),
                ("urgent pointer", self.urgent, 16),
                ("reserved bits", self.reserved, 4),
            )

    @classmethod
    def parse(
        cls, data: bytes, src: IPAddress | None = None, dst: IPAddress | None = None
    ) -> TcpSegment:
        """Parse a segment; its checksum is verified when both ``src`` and ``dst`` are given."""
        if len(data) < TCP_HEADER_LEN:
            raise MalformedPacket(f"truncated TCP header ({len(data)} bytes)")
        sport, dport, seq, ack, offset, flags, window, checksum, urgent = _TCP_HEADER.unpack_from(
            data
        )
        header_len = (offset >> 4) * 4
        if header_len < TCP_HEADER_LEN:
            raise MalformedPacket(f"bad TCP data offset {offset >> 4} (below 5)")
        if header_len > len(data):
            raise MalformedPacket(
                f"TCP data offset {offset >> 4} runs past the segment ({len(data)} bytes)"
            )
        if src is not None and dst is not None:
            try:
                expected = tcp_checksum(src, dst, data[:16] + b"\x00\x00" + data[18:])
            except ValueError as exc:
                raise MalformedPacket(str(exc)) from None
            if checksum != expected:
                raise MalformedPacket(
                    f"bad TCP checksum 0x{checksum:04x} (expected 0x{expected:04x})"
                )
        return cls(
            sport,
            dport,
            seq,
            ack,
            Flags(flags),
            window,
            parse_options(data[TCP_HEADER_LEN:header_len]),
            bytes(data[header_len:]),
            urgent,
            offset & 0x0F,
        )

    def emit(self, src: IPAddress, dst: IPAddress) -> bytes:
        """The segment's bytes with the checksum computed over the pseudo-header of src, dst."""
        options = _aligned(self.options)
        header = _TCP_HEADER.pack(
            self.src_port,
            self.dst_port,
            self.seq,
            self.ack,
            ((TCP_HEADER_LEN + len(options)) << 2) | self.reserved,
            self.flags,
            self.window,
            0,
            self.urgent,
        )
        segment = header + options + self.payload
        checksum = tcp_checksum(src, dst, segment)
        return segment[:16] + _U16.pack(checksum) + segment[18:]

    # -- what the options say (the first option of each kind) -----------------------------------
    def _first(self, kind: type[TcpOption]) -> TcpOption | None:
        for option in self.options:
            if isinstance(option, kind):
                return option
        return None

    @property
    def fastopen(self) -> FastOpen | None:
        """The first Fast Open option (either kind), valid or not, or None."""
        option = self._first(FastOpen)
        return option if isinstance(option, FastOpen) else None

    @property
    def mss(self) -> int | None:
        option = self._first(Mss)
        return option.value if isinstance(option, Mss) else None

    @property
    def wscale(self) -> int | None:
        option = self._first(WindowScale)
        return option.shift if isinstance(option, WindowScale) else None

    @property
    def timestamps(self) -> Timestamps | None:
        option = self._first(Timestamps)
        return option if isinstance(option, Timestamps) else None

    @property
    def sack_permitted(self) -> bool:
        return self._first(SackPermitted) is not None

    @property
    def sack_blocks(self) -> tuple[tuple[int, int], ...]:
        option = self._first(Sack)
        return option.blocks if isinstance(option, Sack) else ()


# -- IP packets --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IPv4Packet:
    """An IPv4 packet. ``flags`` are the three bits before the fragment offset (DF = 2, MF = 1);
    ``options`` are the header's option bytes, kept verbatim (a multiple of 4, at most 40)."""

    src: IPv4Address
    dst: IPv4Address
    protocol: int
    payload: bytes
    ttl: int = 64
    tos: int = 0
    identification: int = 0
    flags: int = 2
    fragment_offset: int = 0
    options: bytes = b""

    version: ClassVar[int] = 4
    DF: ClassVar[int] = 2
    MF: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if (
            (self.protocol | self.ttl | self.tos) >> 8
            or self.identification >> 16
            or self.flags >> 3
            or self.fragment_offset >> 13
        ):
            _check_ranges(
                ("protocol", self.protocol, 8),
                ("TTL", self.ttl, 8),
                ("TOS", self.tos, 8),
                ("identification", self.identification, 16),
                ("IPv4 flags", self.flags, 3),
                ("fragment offset", self.fragment_offset, 13),
            )
        if len(self.options) & 3 or len(self.options) > 40:
            raise ValueError(f"IPv4 options must be 0..40 bytes in 4s, not {len(self.options)}")
        if IPV4_HEADER_LEN + len(self.options) + len(self.payload) > 0xFFFF:
            raise ValueError("IPv4 packet longer than 65535 bytes")

    @property
    def is_fragment(self) -> bool:
        """True unless the packet is whole (no more fragments, offset 0)."""
        return bool(self.flags & self.MF) or self.fragment_offset != 0

    @classmethod
    def parse(cls, data: bytes) -> IPv4Packet:
        """Parse a whole IPv4 packet: ``data`` must be exactly ``total length`` bytes."""
        if len(data) < IPV4_HEADER_LEN:
            raise MalformedPacket(f"truncated IPv4 header ({len(data)} bytes)")
        vihl, tos, total, ident, frag, ttl, proto, checksum, src, dst = _IPV4_HEADER.unpack_from(
            data
        )
        if vihl >> 4 != 4:
            raise MalformedPacket(f"IP version {vihl >> 4} in an IPv4 header")
        header_len = (vihl & 0x0F) * 4
        if header_len < IPV4_HEADER_LEN:
            raise MalformedPacket(f"bad IPv4 IHL {vihl & 0x0F} (below 5)")
        if total != len(data):
            raise MalformedPacket(f"IPv4 total length {total} but the packet has {len(data)} bytes")
        if header_len > total:
            raise MalformedPacket(f"IPv4 IHL {vihl & 0x0F} runs past the packet ({total} bytes)")
        header = data[:header_len]
        expected = internet_checksum(header[:10] + b"\x00\x00" + header[12:])
        if checksum != expected:
            raise MalformedPacket(
                f"bad IPv4 header checksum 0x{checksum:04x} (expected 0x{expected:04x})"
            )
        return cls(
            IPv4Address(src),
            IPv4Address(dst),
            proto,
            bytes(data[header_len:]),
            ttl,
            tos,
            ident,
            frag >> 13,
            frag & 0x1FFF,
            bytes(header[IPV4_HEADER_LEN:]),
        )

    def emit(self) -> bytes:
        """The packet's bytes, total length and header checksum computed."""
        header_len = IPV4_HEADER_LEN + len(self.options)
        header = (
            _IPV4_HEADER.pack(
                0x40 | header_len >> 2,
                self.tos,
                header_len + len(self.payload),
                self.identification,
                self.flags << 13 | self.fragment_offset,
                self.ttl,
                self.protocol,
                0,
                self.src.packed,
                self.dst.packed,
            )
            + self.options
        )
        checksum = internet_checksum(header)
        return header[:10] + _U16.pack(checksum) + header[12:] + self.payload


@dataclass(frozen=True, slots=True)
class Ipv6ExtensionHeader:
    """One IPv6 extension header, kept verbatim.

    ``kind`` is its type (0 hop-by-hop, 43 routing, 44 fragment, 60 destination options);
    ``data`` is the bytes after its next-header and length bytes (6, 14, 22... bytes), or for a
    fragment header the 7 bytes after its next-header byte.
    """

    kind: int
    data: bytes

    def __post_init__(self) -> None:
        if self.kind not in _IPV6_EXTENSIONS:
            raise ValueError(f"IPv6 next header {self.kind} is not an extension header")
        n = len(self.data)
        if self.kind == IPV6_FRAGMENT:
            if n != 7:
                raise ValueError(f"an IPv6 fragment header has 7 data bytes, not {n}")
        elif n % 8 != 6 or n > 2046:
            raise ValueError(f"IPv6 extension header data of {n} bytes is not 8k + 6 (k < 256)")

    @property
    def fragment_offset(self) -> int:
        """The fragment offset in 8-byte units (fragment headers only)."""
        return int(_U16.unpack_from(self.data, 1)[0]) >> 3

    @property
    def more_fragments(self) -> bool:
        """The M flag (fragment headers only)."""
        return bool(self.data[2] & 1)

    def encode(self, next_header: int) -> bytes:
        if self.kind == IPV6_FRAGMENT:
            return bytes((next_header,)) + self.data
        return bytes((next_header, (len(self.data) + 2) // 8 - 1)) + self.data


@dataclass(frozen=True, slots=True)
class IPv6Packet:
    """An IPv6 packet. ``protocol`` is the upper-layer protocol found after the extension
    headers (kept in order in ``extension_headers``); ``payload`` is what follows them."""

    src: IPv6Address
    dst: IPv6Address
    protocol: int
    payload: bytes
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    extension_headers: tuple[Ipv6ExtensionHeader, ...] = ()

    version: ClassVar[int] = 6

    def __post_init__(self) -> None:
        if (self.protocol | self.hop_limit | self.traffic_class) >> 8 or self.flow_label >> 20:
            _check_ranges(
                ("protocol", self.protocol, 8),
                ("hop limit", self.hop_limit, 8),
                ("traffic class", self.traffic_class, 8),
                ("flow label", self.flow_label, 20),
            )
        if self.protocol in _IPV6_EXTENSIONS:
            raise ValueError(
                f"protocol {self.protocol} is an extension header: use extension_headers"
            )
        for i, ext in enumerate(self.extension_headers):
            if ext.kind == IPV6_HOP_BY_HOP and i:
                raise ValueError("a hop-by-hop options header may only come first")

    @property
    def ttl(self) -> int:
        """The hop limit, by its IPv4 name."""
        return self.hop_limit

    @property
    def is_fragment(self) -> bool:
        """True when a fragment header says the packet is not whole."""
        return any(
            ext.kind == IPV6_FRAGMENT and (ext.fragment_offset or ext.more_fragments)
            for ext in self.extension_headers
        )

    @classmethod
    def parse(cls, data: bytes) -> IPv6Packet:
        """Parse a whole IPv6 packet (payload length = the bytes after the fixed header),
        skipping hop-by-hop, routing, fragment and destination options headers."""
        if len(data) < IPV6_HEADER_LEN:
            raise MalformedPacket(f"truncated IPv6 header ({len(data)} bytes)")
        first, length, next_header, hop_limit, src, dst = _IPV6_HEADER.unpack_from(data)
        if first >> 28 != 6:
            raise MalformedPacket(f"IP version {first >> 28} in an IPv6 header")
        if length != len(data) - IPV6_HEADER_LEN:
            raise MalformedPacket(
                f"IPv6 payload length {length} but {len(data) - IPV6_HEADER_LEN} bytes follow"
            )
        extensions: list[Ipv6ExtensionHeader] = []
        i = IPV6_HEADER_LEN
        while next_header in _IPV6_EXTENSIONS:
            if next_header == IPV6_HOP_BY_HOP and extensions:
                raise MalformedPacket("IPv6 hop-by-hop options header not first")
            if i + 8 > len(data):
                raise MalformedPacket(f"truncated IPv6 extension header {next_header}")
            size = 8 if next_header == IPV6_FRAGMENT else (data[i + 1] + 1) * 8
            if i + size > len(data):
                raise MalformedPacket(
                    f"IPv6 extension header {next_header} of {size} bytes overruns the packet"
                )
            skip = 1 if next_header == IPV6_FRAGMENT else 2
            extensions.append(Ipv6ExtensionHeader(next_header, bytes(data[i + skip : i + size])))
            next_header = data[i]
            i += size
        return cls(
            IPv6Address(src),
            IPv6Address(dst),
            next_header,
            bytes(data[i:]),
            hop_limit,
            (first >> 20) & 0xFF,
            first & 0xFFFFF,
            tuple(extensions),
        )

    def emit(self) -> bytes:
        """The packet's bytes, payload length and next-header chain computed."""
        kinds = [ext.kind for ext in self.extension_headers] + [self.protocol]
        chain = b"".join(ext.encode(kinds[i + 1]) for i, ext in enumerate(self.extension_headers))
        length = len(chain) + len(self.payload)
        if length > 0xFFFF:
            raise ValueError(f"IPv6 payload of {length} bytes (jumbograms are not supported)")
        header = _IPV6_HEADER.pack(
            6 << 28 | self.traffic_class << 20 | self.flow_label,
            length,
            kinds[0],
            self.hop_limit,
            self.src.packed,
            self.dst.packed,
        )
        return header + chain + self.payload


def parse_ip(data: bytes) -> IPv4Packet | IPv6Packet:
    """Parse a whole IPv4 or IPv6 packet, by the version in its first byte."""
    if not data:
        raise MalformedPacket("empty packet")
    version = data[0] >> 4
    if version == 4:
        return IPv4Packet.parse(data)
    if version == 6:
        return IPv6Packet.parse(data)
    raise MalformedPacket(f"IP version {version}")


def parse_tcp_packet(data: bytes) -> tuple[IPv4Packet | IPv6Packet, TcpSegment]:
    """Parse a whole IP packet carrying one TCP segment, its checksum verified.

    Fragments and other protocols are rejected (the engine does not reassemble).
    """
    packet = parse_ip(data)
    if packet.protocol != PROTO_TCP:
        raise MalformedPacket(f"IP protocol {packet.protocol} is not TCP")
    if packet.is_fragment:
        raise MalformedPacket("fragmented IP packet (reassembly is not supported)")
    return packet, TcpSegment.parse(packet.payload, packet.src, packet.dst)


def ip_packet(src: IPAddress, dst: IPAddress, segment: TcpSegment, ttl: int = 64) -> bytes:
    """A whole IP packet (v4 with DF, or v6 by the addresses' family) around ``segment``."""
    payload = segment.emit(src, dst)
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        return IPv4Packet(src, dst, PROTO_TCP, payload, ttl=ttl, flags=IPv4Packet.DF).emit()
    if isinstance(src, IPv6Address) and isinstance(dst, IPv6Address):
        return IPv6Packet(src, dst, PROTO_TCP, payload, hop_limit=ttl).emit()
    raise ValueError(f"source {src} and destination {dst} are not of the same IP family")
