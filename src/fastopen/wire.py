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
one bit for bit, except that 0xFFFF is taken for a computed 0x0000: the other one's-complement
zero, which Linux takes too and which its incremental updates (GSO segmentation, a router's TTL
decrement) can write; such a packet re-emits with 0x0000.

:func:`linux_syn_options` and :func:`linux_synack_options` lay options out exactly as Linux's
``tcp_options_write`` (net/ipv4/tcp_output.c) does.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Container
from dataclasses import MISSING, dataclass, fields
from enum import IntFlag
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar, NamedTuple, TypeAlias, TypeVar, cast

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
TCPOPT_MD5SIG = 19
TCPOPT_FASTOPEN = 34
TCPOPT_EXP = 254
TCPOPT_FASTOPEN_MAGIC = 0xF989
TCP_FASTOPEN_COOKIE_MIN = 4
TCP_FASTOPEN_COOKIE_MAX = 16
#: The digest of a TCP MD5 signature option (RFC 2385; Linux TCP_MD5_DIGEST_LEN).
TCP_MD5_DIGEST_LEN = 16
#: The IP ECN field's codepoints (RFC 3168; Linux INET_ECN_*), the low two bits of the IPv4 TOS
#: byte or the IPv6 traffic class.
ECN_NOT_ECT, ECN_ECT_1, ECN_ECT_0, ECN_CE = 0, 1, 2, 3

_T = TypeVar("_T")
_U16 = struct.Struct("!H")
_TCP_HEADER = struct.Struct("!HHIIBBHHH")
_IPV4_HEADER = struct.Struct("!BBHHHBBHII")
_IPV6_HEADER = struct.Struct("!IHBB16s16s")
_TIMESTAMPS = struct.Struct("!II")
_FASTOPEN_MAGIC = _U16.pack(TCPOPT_FASTOPEN_MAGIC)


# -- checksums ---------------------------------------------------------------------------------
# A one's-complement sum of 16-bit words is the sum modulo 0xFFFF (2**16 = 1 mod 0xFFFF), so a
# buffer's sum is its value as one big-endian integer, modulo 0xFFFF: ``int.from_bytes`` does in
# C what a loop over words would do in Python. Sums of parts add up as long as each part starts
# at an even offset; a checksum field at an even offset weighs its own value.
_ONES = 0xFFFF
#: Bytes of each part :func:`words` sums (even): CPython takes the remainder of a long by 0xFFFF
#: one 30-bit digit at a time, a hardware division each; a full-sized packet's words as four
#: parts summed leave a quarter of the digits to divide (5.0 -> 3.7 us for 1,500 bytes).
_PART = 376


def words(data: bytes | memoryview) -> int:
    """A number congruent to the sum of ``data``'s 16-bit words modulo 0xFFFF (its checksum is
    right when that of all the words it covers is 0), ``data`` padded to an even length: its
    even-length parts as big-endian integers, summed."""
    size = len(data)
    total = start = 0
    while size - start > _PART:
        total += int.from_bytes(data[start : start + _PART], "big")
        start += _PART
    tail = int.from_bytes(data[start:], "big")
    return total + (tail << 8 if size & 1 else tail)


def _checksum(total: int) -> int:
    """The checksum of words whose plain sum is ``total`` (not all zeros): the complement of the
    folded sum, which is never zero (a sum that is a multiple of 0xFFFF folds to 0xFFFF)."""
    return _ONES - (total % _ONES or _ONES)


def internet_checksum(data: bytes | memoryview) -> int:
    """The RFC 1071 checksum of ``data`` (one's complement of the one's complement sum)."""
    total = words(data)
    return _checksum(total) if total else _ONES


def _pseudo_sum(src: IPAddress, dst: IPAddress, length: int) -> int:
    """The plain sum of the pseudo-header's words (RFC 9293 3.1, RFC 8200 8.1)."""
    if isinstance(src, IPv4Address) and isinstance(dst, IPv4Address):
        if length > 0xFFFF:
            raise ValueError(f"a TCP segment of {length} bytes does not fit in IPv4")
    elif not (isinstance(src, IPv6Address) and isinstance(dst, IPv6Address)):
        raise ValueError(f"source {src} and destination {dst} are not of the same IP family")
    return int(src) + int(dst) + PROTO_TCP + length


def tcp_checksum(src: IPAddress, dst: IPAddress, segment: bytes | memoryview) -> int:
    """The TCP checksum of ``segment`` (its checksum field zeroed) with the pseudo-header."""
    return _checksum(_pseudo_sum(src, dst, len(segment)) + words(segment))


def _setters(cls: type[object], head: str, tail: str) -> Callable[..., object]:
    """The function ``head`` (a ``def`` line), then each field of ``cls`` (a frozen, slotted
    dataclass) set on ``obj`` through its slot's descriptor, then ``tail``: written out as
    ``dataclasses`` writes ``__init__``, less its ``object.__setattr__`` per field (a loop
    over the fields would cost as much as that saves)."""
    scope: dict[str, object] = {"new": object.__new__, "cls": cls}
    for f in fields(cls):  # type: ignore[arg-type]
        scope[f"set_{f.name}"] = getattr(cls, f.name).__set__
        scope[f"default_{f.name}"] = f.default
    body = "".join(f"    set_{f.name}(obj, {f.name})\n" for f in fields(cls))  # type: ignore[arg-type]
    exec(f"{head}\n{body}{tail}", scope)
    return scope["function"]  # type: ignore[return-value]


def _maker(cls: type[_T]) -> Callable[..., _T]:
    """A constructor of ``cls`` (a frozen, slotted dataclass) from all its fields in order, that
    skips ``__init__`` and its checks: for values the parsers read from fields of the right
    widths, which are in range by construction."""
    names = ", ".join(f.name for f in fields(cls))  # type: ignore[arg-type]
    head = f"def function({names}):\n    obj = new(cls)"
    return _setters(cls, head, "    return obj\n")  # type: ignore[return-value]


def _quick_init(cls: type[_T]) -> type[_T]:
    """``cls`` (a frozen, slotted dataclass whose defaults are values) with the ``__init__``
    ``dataclasses`` wrote, checks (``__post_init__``) included, in two thirds of its time:
    for :class:`TcpSegment`, made for every segment sent."""
    params = ", ".join(
        f.name if f.default is MISSING else f"{f.name}=default_{f.name}"
        for f in fields(cls)  # type: ignore[arg-type]
    )
    post = "    obj.__post_init__()\n" if hasattr(cls, "__post_init__") else ""
    init = _setters(cls, f"def function(obj, {params}):", post)
    init.__name__, init.__qualname__ = "__init__", f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[method-assign,assignment]
    return cls


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
class Md5Sig:
    """TCP MD5 signature (kind 19, length 18, RFC 2385): the digest :func:`md5_digest` makes.
    Linux reads only an option of that length (tcp_parse_md5sig_option); one of another length
    is an :class:`UnknownOption`."""

    digest: bytes

    def __post_init__(self) -> None:
        if len(self.digest) != TCP_MD5_DIGEST_LEN:
            raise ValueError(f"an MD5 digest is {TCP_MD5_DIGEST_LEN} bytes, not {len(self.digest)}")

    def encode(self) -> bytes:
        return bytes((TCPOPT_MD5SIG, 2 + TCP_MD5_DIGEST_LEN)) + self.digest


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
    Eol
    | Nop
    | Mss
    | WindowScale
    | SackPermitted
    | Sack
    | Timestamps
    | FastOpen
    | Md5Sig
    | UnknownOption
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
    if kind == TCPOPT_MD5SIG and n == TCP_MD5_DIGEST_LEN:
        return Md5Sig(data)
    return UnknownOption(kind, data)


_new_timestamps = _maker(Timestamps)
#: The options area of every segment after the SYN when timestamps are on: ``nop,nop,TS``.
_NOP_NOP_TS = b"\x01\x01\x08\x0a"


def parse_options(data: bytes) -> tuple[TcpOption, ...]:
    """Parse a TCP options area. An option shorter than 2 or running past the end is malformed."""
    if not data:
        return ()
    if len(data) == 12 and data[:4] == _NOP_NOP_TS:
        return (_NOP, _NOP, _new_timestamps(*_TIMESTAMPS.unpack_from(data, 4)))
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


#: The options of every Linux SYN and SYN-ACK with timestamps: ``mss,sackOK,TS,nop,wscale``.
_LINUX_SYN_TYPES = (Mss, SackPermitted, Timestamps, Nop, WindowScale)
#: Their bytes: ``02 04 MSS 04 02 08 0a TSval TSecr 01 03 03 shift``.
_LINUX_SYN = struct.Struct("!HHHHIIHBB")


def _aligned(options: tuple[TcpOption, ...]) -> bytes:
    """The options area of a header: the options, padded with zeros to a 4-byte boundary."""
    if not options:
        return b""
    if (
        len(options) == 3
        and type(options[2]) is Timestamps
        and type(options[0]) is type(options[1]) is Nop
    ):
        return _NOP_NOP_TS + _TIMESTAMPS.pack(options[2].tsval, options[2].tsecr)
    if len(options) == 5 and tuple(map(type, options)) == _LINUX_SYN_TYPES:
        mss, _, ts, _, ws = cast(tuple[Mss, SackPermitted, Timestamps, Nop, WindowScale], options)
        return _LINUX_SYN.pack(
            0x0204, mss.value, 0x0402, 0x080A, ts.tsval, ts.tsecr, 0x103, 3, ws.shift
        )
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


#: Every value of the flags byte, made once (an IntFlag call per packet costs a microsecond).
_FLAGS = tuple(Flags(i) for i in range(256))


@_quick_init
@dataclass(frozen=True, slots=True)
class TcpSegment:
    """A TCP segment. ``reserved`` holds the four bits before the flags (bit 0 is AccECN's AE).

    Options are emitted in order and padded with zeros to a 4-byte boundary when needed.
    ``ecn`` is not TCP's: it is the ECN field of the IP header that carries the segment (one of
    ``ECN_*``), as Linux keeps a received one in ``TCP_SKB_CB(skb)->ip_dsfield`` and gives a
    sent one to IP in the socket's TOS (INET_ECN_xmit); :func:`ip_packet` writes it, the
    parsers of IP packets fill it in. ``tos`` and ``df`` are what IP is told for a segment to
    send, from its socket: the DSCP bits of the TOS byte or traffic class (``IP_TOS`` less its
    ECN bits, which are ``ecn``'s) and, for IPv4, Don't Fragment (``IP_MTU_DISCOVER``); a
    parsed segment has their defaults.
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
    ecn: int = 0
    tos: int = 0
    df: bool = True

    def __post_init__(self) -> None:
        if (
            (self.src_port | self.dst_port | self.window | self.urgent) >> 16
            or (self.seq | self.ack) >> 32
            or self.flags >> 8
            or self.reserved >> 4
            or self.ecn >> 2
            or self.tos & ~0xFC
        ):
            if self.tos & 3:
                raise ValueError(f"TOS 0x{self.tos:02x} has ECN bits: they are the segment's ecn")
            _check_ranges(
                ("source port", self.src_port, 16),
                ("destination port", self.dst_port, 16),
                ("sequence number", self.seq, 32),
                ("acknowledgment number", self.ack, 32),
                ("flags", self.flags, 8),
                ("window", self.window, 16),
                ("urgent pointer", self.urgent, 16),
                ("reserved bits", self.reserved, 4),
                ("ECN field", self.ecn, 2),
                ("TOS", self.tos, 8),
            )

    @classmethod
    def parse(
        cls,
        data: bytes | memoryview,
        src: IPAddress | None = None,
        dst: IPAddress | None = None,
        ecn: int = 0,
    ) -> TcpSegment:
        """Parse a segment; its checksum is verified when both ``src`` and ``dst`` are given.
        ``ecn`` is the ECN field of the IP header it came in."""
        return _parse_segment(data, src, dst, None, ecn)

    def _header(self, checksum: int, options: bytes) -> bytes:
        return _TCP_HEADER.pack(
            self.src_port,
            self.dst_port,
            self.seq,
            self.ack,
            ((TCP_HEADER_LEN + len(options)) << 2) | self.reserved,
            self.flags,
            self.window,
            checksum,
            self.urgent,
        )

    def _sum(self, options: bytes) -> int:
        """The plain sum of the words of the header (checksum zero) and the payload."""
        return (
            self.src_port
            + self.dst_port
            + self.seq
            + self.ack
            + ((((TCP_HEADER_LEN + len(options)) << 2) | self.reserved) << 8 | int(self.flags))
            + self.window
            + self.urgent
            + int.from_bytes(options, "big")
            + words(self.payload)
        )

    def emit(self, src: IPAddress, dst: IPAddress) -> bytes:
        """The segment's bytes with the checksum computed over the pseudo-header of src, dst."""
        options = _aligned(self.options)
        length = TCP_HEADER_LEN + len(options) + len(self.payload)
        checksum = _checksum(_pseudo_sum(src, dst, length) + self._sum(options))
        return self._header(checksum, options) + options + self.payload

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


_new_segment = _maker(TcpSegment)


def _parse_segment(
    data: bytes | memoryview,
    src: IPAddress | None,
    dst: IPAddress | None,
    pseudo: int | None,
    ecn: int = 0,
) -> TcpSegment:
    """:meth:`TcpSegment.parse`; ``pseudo``, when known, is the pseudo-header's sum (then the
    checksum is verified whatever ``src`` and ``dst``)."""
    size = len(data)
    if size < TCP_HEADER_LEN:
        raise MalformedPacket(f"truncated TCP header ({size} bytes)")
    sport, dport, seq, ack, offset, flags, window, checksum, urgent = _TCP_HEADER.unpack_from(data)
    header_len = (offset >> 4) * 4
    if header_len < TCP_HEADER_LEN:
        raise MalformedPacket(f"bad TCP data offset {offset >> 4} (below 5)")
    if header_len > size:
        raise MalformedPacket(f"TCP data offset {offset >> 4} runs past the segment ({size} bytes)")
    if pseudo is None and src is not None and dst is not None:
        try:
            pseudo = _pseudo_sum(src, dst, size)
        except ValueError as exc:
            raise MalformedPacket(str(exc)) from None
    if pseudo is not None:
        # the field sits at an even offset: taking its value off the words' sum zeroes it
        expected = _ONES - ((pseudo + words(data) - checksum) % _ONES or _ONES)
        if checksum != expected and not (checksum == _ONES and expected == 0):
            raise MalformedPacket(f"bad TCP checksum 0x{checksum:04x} (expected 0x{expected:04x})")
    return _new_segment(
        sport,
        dport,
        seq,
        ack,
        _FLAGS[flags],
        window,
        parse_options(bytes(data[TCP_HEADER_LEN:header_len])),
        bytes(data[header_len:]),
        urgent,
        offset & 0x0F,
        ecn & 3,
        0,
        True,
    )


_LAST_ONLY = int(Flags.FIN | Flags.PSH)


def split_segment(segment: TcpSegment, size: int) -> list[TcpSegment]:
    """``segment`` cut into segments of ``size`` payload bytes (the last one may be shorter), as
    Linux's ``tcp_gso_segment`` cuts a GSO packet: the header repeated with the sequence number
    advanced, FIN and PSH on the last segment only, CWR on the first only."""
    if size <= 0:
        raise ValueError(f"a segment size must be positive, not {size}")
    payload = segment.payload
    total = len(payload)
    if total <= size:
        return [segment]
    flags = int(segment.flags)
    middle = flags & ~(_LAST_ONLY | Flags.CWR)
    pieces = []
    for off in range(0, total, size):
        if off == 0:
            piece_flags = flags & ~_LAST_ONLY
        elif off + size >= total:
            piece_flags = flags & ~Flags.CWR
        else:
            piece_flags = middle
        pieces.append(
            _new_segment(
                segment.src_port,
                segment.dst_port,
                (segment.seq + off) & 0xFFFFFFFF,
                segment.ack,
                _FLAGS[piece_flags],
                segment.window,
                segment.options,
                payload[off : off + size],
                segment.urgent,
                segment.reserved,
                segment.ecn,
                segment.tos,
                segment.df,
            )
        )
    return pieces


# -- IP packets --------------------------------------------------------------------------------
_K = TypeVar("_K")
_A = TypeVar("_A")


class _Kept(dict[_K, _A]):
    """Addresses parsed, made once and kept (a packet's two cost microseconds to build), by
    their value in the header; at most :data:`ADDRESSES_KEPT`, then it starts again."""

    def __init__(self, make: Callable[[_K], _A]) -> None:
        super().__init__()
        self._make: Callable[[_K], _A] = make

    def __missing__(self, key: _K) -> _A:
        if len(self) >= ADDRESSES_KEPT:
            self.clear()
        addr = self[key] = self._make(key)
        return addr


ADDRESSES_KEPT = 4096
_V4: _Kept[int, IPv4Address] = _Kept(IPv4Address)
_V6: _Kept[bytes, IPv6Address] = _Kept(IPv6Address)


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
    def ecn(self) -> int:
        """The ECN field: the low two bits of the TOS byte (RFC 3168)."""
        return self.tos & 3

    @property
    def is_fragment(self) -> bool:
        """True unless the packet is whole (no more fragments, offset 0)."""
        return bool(self.flags & self.MF) or self.fragment_offset != 0

    @classmethod
    def parse(cls, data: bytes | memoryview) -> IPv4Packet:
        """Parse a whole IPv4 packet: ``data`` must be exactly ``total length`` bytes."""
        size = len(data)
        if size < IPV4_HEADER_LEN:
            raise MalformedPacket(f"truncated IPv4 header ({size} bytes)")
        vihl, tos, total, ident, frag, ttl, proto, checksum, src, dst = _IPV4_HEADER.unpack_from(
            data
        )
        if vihl >> 4 != 4:
            raise MalformedPacket(f"IP version {vihl >> 4} in an IPv4 header")
        header_len = (vihl & 0x0F) * 4
        if header_len < IPV4_HEADER_LEN:
            raise MalformedPacket(f"bad IPv4 IHL {vihl & 0x0F} (below 5)")
        if total != size:
            raise MalformedPacket(f"IPv4 total length {total} but the packet has {size} bytes")
        if header_len > total:
            raise MalformedPacket(f"IPv4 IHL {vihl & 0x0F} runs past the packet ({total} bytes)")
        options = bytes(data[IPV4_HEADER_LEN:header_len])
        expected = _checksum(
            (vihl << 8 | tos) + total + ident + frag + (ttl << 8 | proto) + src + dst
            + int.from_bytes(options, "big")
        )  # fmt: skip
        if checksum != expected and not (checksum == _ONES and expected == 0):
            raise MalformedPacket(
                f"bad IPv4 header checksum 0x{checksum:04x} (expected 0x{expected:04x})"
            )
        return _new_ipv4(
            _V4[src],
            _V4[dst],
            proto,
            bytes(data[header_len:]),
            ttl,
            tos,
            ident,
            frag >> 13,
            frag & 0x1FFF,
            options,
        )

    def _header(self, payload_len: int) -> bytes:
        """The header (options included) before a payload of ``payload_len`` bytes."""
        header_len = IPV4_HEADER_LEN + len(self.options)
        vihl, total = 0x40 | header_len >> 2, header_len + payload_len
        frag = self.flags << 13 | self.fragment_offset
        src, dst = int(self.src), int(self.dst)
        checksum = _checksum(
            (vihl << 8 | self.tos) + total + self.identification + frag
            + (self.ttl << 8 | self.protocol) + src + dst + int.from_bytes(self.options, "big")
        )  # fmt: skip
        return (
            _IPV4_HEADER.pack(
                vihl,
                self.tos,
                total,
                self.identification,
                frag,
                self.ttl,
                self.protocol,
                checksum,
                src,
                dst,
            )
            + self.options
        )

    def emit(self) -> bytes:
        """The packet's bytes, total length and header checksum computed."""
        return self._header(len(self.payload)) + self.payload


_new_ipv4 = _maker(IPv4Packet)


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
    def ecn(self) -> int:
        """The ECN field: the low two bits of the traffic class (RFC 3168)."""
        return self.traffic_class & 3

    @property
    def is_fragment(self) -> bool:
        """True when a fragment header says the packet is not whole."""
        return any(
            ext.kind == IPV6_FRAGMENT and (ext.fragment_offset or ext.more_fragments)
            for ext in self.extension_headers
        )

    @classmethod
    def parse(cls, data: bytes | memoryview) -> IPv6Packet:
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
        return _new_ipv6(
            _V6[src],
            _V6[dst],
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


_new_ipv6 = _maker(IPv6Packet)


def parse_ip(data: bytes | memoryview) -> IPv4Packet | IPv6Packet:
    """Parse a whole IPv4 or IPv6 packet, by the version in its first byte."""
    if not data:
        raise MalformedPacket("empty packet")
    version = data[0] >> 4
    if version == 4:
        return IPv4Packet.parse(data)
    if version == 6:
        return IPv6Packet.parse(data)
    raise MalformedPacket(f"IP version {version}")


def md5_digest(key: bytes, src: IPAddress, dst: IPAddress, segment: TcpSegment) -> bytes:
    """The RFC 2385 signature of ``segment`` from ``src`` to ``dst`` with ``key``, as Linux's
    tcp_v4_md5_hash_skb (tcp_v6_md5_hash_skb) makes it: MD5 over the pseudo-header
    (tcp_v4_md5_hash_headers; IPv6's has a 32-bit length and next header), the 20 bytes of the
    TCP header with a zero checksum and without options (tcp_md5_hash_header), the payload,
    then the key. The options' length counts in the pseudo-header and the data offset."""
    options = _aligned(segment.options)
    length = TCP_HEADER_LEN + len(options) + len(segment.payload)
    if isinstance(src, IPv4Address):
        pseudo = src.packed + dst.packed + struct.pack("!xBH", PROTO_TCP, length)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!II", length, PROTO_TCP)
    data = pseudo + segment._header(0, options) + segment.payload + key
    return hashlib.md5(data, usedforsecurity=False).digest()


def parse_tcp_packet(data: bytes | memoryview) -> tuple[IPv4Packet | IPv6Packet, TcpSegment]:
    """Parse a whole IP packet carrying one TCP segment, its checksum verified.

    Fragments and other protocols are rejected (the engine does not reassemble).
    """
    packet = parse_ip(data)
    if packet.protocol != PROTO_TCP:
        raise MalformedPacket(f"IP protocol {packet.protocol} is not TCP")
    if packet.is_fragment:
        raise MalformedPacket("fragmented IP packet (reassembly is not supported)")
    return packet, TcpSegment.parse(packet.payload, packet.src, packet.dst, packet.ecn)


_DF = IPv4Packet.DF << 13


def ip_packet(
    src: IPAddress,
    dst: IPAddress,
    segment: TcpSegment,
    ttl: int = 64,
    *,
    partial_checksum: bool = False,
) -> bytes:
    """A whole IP packet (v4, or v6 by the addresses' family) around ``segment``, with its
    ``tos`` and ``ecn`` in the TOS byte (traffic class) and, for v4, DF as its ``df`` says.

    ``partial_checksum``: the TCP checksum field holds the folded sum of the pseudo-header only
    (not complemented), for a device that sums the rest (virtio's ``NEEDS_CSUM``, at offset 16 of
    the TCP header); that is also what a GSO packet carries, the pseudo-header with its whole
    length.
    """
    if ttl >> 8 or ttl < 0:
        _check_range("TTL", ttl, 8)
    options = _aligned(segment.options)
    length = TCP_HEADER_LEN + len(options) + len(segment.payload)
    pseudo = _pseudo_sum(src, dst, length)
    if partial_checksum:
        checksum = pseudo % _ONES or _ONES
    else:
        checksum = _checksum(pseudo + segment._sum(options))
    tcp = segment._header(checksum, options)
    if isinstance(src, IPv4Address):
        total = IPV4_HEADER_LEN + length
        if total > 0xFFFF:
            raise ValueError("IPv4 packet longer than 65535 bytes")
        s, d = int(src), int(dst)
        tos = segment.tos | segment.ecn
        frag = _DF if segment.df else 0
        head = (0x45 << 8 | tos) + total + frag + (ttl << 8 | PROTO_TCP) + s + d
        ip = _IPV4_HEADER.pack(0x45, tos, total, 0, frag, ttl, PROTO_TCP, _checksum(head), s, d)
    else:
        if length > 0xFFFF:
            raise ValueError(f"IPv6 payload of {length} bytes (jumbograms are not supported)")
        first = 6 << 28 | (segment.tos | segment.ecn) << 20
        ip = _IPV6_HEADER.pack(first, length, PROTO_TCP, ttl, src.packed, dst.packed)
    return b"".join((ip, tcp, options, segment.payload))


def parse_ipv4_tcp(
    data: bytes, local: Container[IPAddress]
) -> tuple[IPv4Address, IPv4Address, TcpSegment] | None:
    """The addresses and the segment of ``data`` if it is a whole IPv4 packet without options,
    not a fragment, its header checksum right, carrying TCP to one of the ``local`` addresses:
    what :func:`parse_ip` then :meth:`TcpSegment.parse` (its checksum verified) give, the same
    :class:`~fastopen.errors.MalformedPacket` for a bad segment, without making the IPv4
    packet; None for anything else (:func:`parse_ip` says what it is)."""
    if len(data) < IPV4_HEADER_LEN + TCP_HEADER_LEN or data[0] != 0x45:
        return None
    _, tos, total, _, frag, _, proto, _, src, dst = _IPV4_HEADER.unpack_from(data)
    # a header's words, its checksum included, sum to a multiple of 0xFFFF when it is right
    if (
        total != len(data)
        or frag & 0x3FFF
        or proto != PROTO_TCP
        or int.from_bytes(data[:IPV4_HEADER_LEN], "big") % _ONES
    ):
        return None
    dst_ip = _V4[dst]
    if dst_ip not in local:
        return None
    pseudo = src + dst + PROTO_TCP + total - IPV4_HEADER_LEN
    segment = _parse_segment(memoryview(data)[IPV4_HEADER_LEN:], None, None, pseudo, tos)
    return _V4[src], dst_ip, segment


class PlainSyn(NamedTuple):
    """What a bare IPv4 SYN carries that a listener answers (:func:`parse_plain_syn`)."""

    src: IPv4Address
    dst: IPv4Address
    src_port: int
    dst_port: int
    seq: int
    window: int
    mss: int | None
    wscale: int | None
    sack_permitted: bool
    tsval: int | None  # None: no timestamps option


#: An IPv4 header without options, then a TCP header.
_IPV4_TCP_HEADERS = struct.Struct("!BBHHHBBHIIHHIIBBHHH")
_SYN = int(Flags.SYN)
#: The MSS, TSval and window scale of :data:`_LINUX_SYN_TYPES` options.
_LINUX_SYN_FIELDS = struct.Struct("!2xH4xI4x3xB")


def parse_plain_syn(data: bytes) -> PlainSyn | None:
    """The few fields a listener needs of ``data`` if it is a plain SYN: IPv4 without options
    or fragmentation, the SYN flag alone, no payload, checksums right, and options among MSS,
    window scale, SACK permitted and timestamps, each at most once, with NOP and EOL; else
    None (:func:`parse_tcp_packet` then says what it is, or why it is malformed).

    What a SYN flood sends, read without building packets, segments or options: it says
    exactly what those would (:meth:`TcpSegment.mss` and the other accessors).
    """
    size = len(data)
    if size < IPV4_HEADER_LEN + TCP_HEADER_LEN or data[0] != 0x45 or data[33] != _SYN:
        return None
    _, _, total, _, frag, _, proto, _, src, dst, sport, dport, seq, _, offset, _, window, _, _ = (
        _IPV4_TCP_HEADERS.unpack_from(data)
    )
    end = IPV4_HEADER_LEN + (offset >> 4) * 4
    if total != size or end != size or frag & 0x3FFF or proto != PROTO_TCP or end < 40:
        return None
    # a header's words, its checksum included, sum to a multiple of 0xFFFF when it is right
    if int.from_bytes(data[:IPV4_HEADER_LEN], "big") % _ONES:
        return None
    pseudo = src + dst + PROTO_TCP + size - IPV4_HEADER_LEN
    if (pseudo + int.from_bytes(data[IPV4_HEADER_LEN:], "big")) % _ONES:
        return None
    src_ip, dst_ip = _V4[src], _V4[dst]
    if (  # Linux's layout (_LINUX_SYN_TYPES)
        end == 60
        and data[40:42] == b"\x02\x04"
        and data[44:48] == b"\x04\x02\x08\x0a"
        and data[56:59] == b"\x01\x03\x03"
    ):
        mss, tsval, wscale = _LINUX_SYN_FIELDS.unpack_from(data, 40)
        return PlainSyn(src_ip, dst_ip, sport, dport, seq, window, mss, wscale, True, tsval)
    mss = wscale = tsval = None
    sack = False
    i = 40
    while i < end:
        kind = data[i]
        if kind == TCPOPT_EOL:
            break
        if kind == TCPOPT_NOP:
            i += 1
            continue
        length = data[i + 1] if i + 1 < end else 0
        if kind == TCPOPT_MSS and length == 4 and mss is None and i + 4 <= end:
            mss = data[i + 2] << 8 | data[i + 3]
        elif kind == TCPOPT_WINDOW and length == 3 and wscale is None and i + 3 <= end:
            wscale = data[i + 2]
        elif kind == TCPOPT_SACK_PERM and length == 2 and not sack:
            sack = True
        elif kind == TCPOPT_TIMESTAMP and length == 10 and tsval is None and i + 10 <= end:
            tsval = int.from_bytes(data[i + 2 : i + 6], "big")
        else:
            return None
        i += length
    return PlainSyn(src_ip, dst_ip, sport, dport, seq, window, mss, wscale, sack, tsval)


def with_checksum(packet: bytes) -> bytes:
    """``packet`` (IPv4 or IPv6, TCP) with its TCP checksum computed over what the field held
    zeroed: what a device that completes checksums (virtio ``NEEDS_CSUM``) puts on the wire."""
    ip = parse_ip(packet)
    if ip.protocol != PROTO_TCP or len(ip.payload) < TCP_HEADER_LEN:
        raise MalformedPacket("not a TCP packet")
    start = len(packet) - len(ip.payload)
    segment = ip.payload
    try:
        checksum = tcp_checksum(ip.src, ip.dst, segment[:16] + b"\x00\x00" + segment[18:])
    except ValueError as exc:
        raise MalformedPacket(str(exc)) from None
    return packet[: start + 16] + _U16.pack(checksum) + packet[start + 18 :]
