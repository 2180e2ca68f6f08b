"""Packets in packetdrill's text form, and the outbound packet matcher.

The matcher compares a segment the engine sent, already mapped into script space (sequence
and ack numbers relative, TS val rebased), with the script's expectation, as packetdrill's
``verify_outbound_live_packet`` does: flags, seq, ack, payload length, window (when the script
gives one), and the options in order (unless ``<...>``); TS val within the tolerance when a
timestamp tick is configured, TS ecr not checked.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from fastopen.engine.icmp import IcmpError
from fastopen.packetdrill.script import ECN_NAMES, ECT01, IcmpSpec, PacketSpec
from fastopen.wire import (
    ECN_ECT_0,
    ECN_ECT_1,
    PROTO_TCP,
    Eol,
    FastOpen,
    Flags,
    IPv4Packet,
    IPv6Packet,
    Md5Sig,
    Mss,
    Nop,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    UnknownOption,
    WindowScale,
    internet_checksum,
)

#: packetdrill's flag letters, in the order it prints them.
FLAG_LETTERS = (
    ("S", Flags.SYN),
    ("F", Flags.FIN),
    ("R", Flags.RST),
    ("P", Flags.PSH),
    ("E", Flags.ECE),
    ("W", Flags.CWR),
    ("U", Flags.URG),
    (".", Flags.ACK),
)


def flags_from_text(text: str) -> Flags:
    flags = Flags(0)
    letters = dict(FLAG_LETTERS)
    for ch in text:
        flags |= letters[ch]
    return flags


def flags_to_text(flags: Flags) -> str:
    return "".join(letter for letter, bit in FLAG_LETTERS if flags & bit)


def option_to_text(option: TcpOption) -> str:
    """One option as packetdrill writes it (``mss 1460``, ``FO abcd1234``, ``TS val 1 ecr 0``)."""
    match option:
        case Nop():
            return "nop"
        case Eol():
            return "eol"
        case Mss(value):
            return f"mss {value}"
        case WindowScale(shift):
            return f"wscale {shift}"
        case SackPermitted():
            return "sackOK"
        case Sack(blocks):
            return "sack " + " ".join(f"{a}:{b}" for a, b in blocks)
        case Timestamps(tsval, tsecr):
            return f"TS val {tsval} ecr {tsecr}"
        case FastOpen(cookie, experimental):
            name = "FOEXP" if experimental else "FO"
            return f"{name} {cookie.hex()}" if cookie else name
        case Md5Sig(digest):
            return f"md5 {digest.hex()}"
        case UnknownOption(kind, data):
            return f"opt{kind} {data.hex()}" if data else f"opt{kind}"
    raise AssertionError(option)


def options_to_text(options: tuple[TcpOption, ...] | None) -> str:
    if options is None:
        return " <...>"
    if not options:
        return ""
    return " <" + ",".join(option_to_text(o) for o in options) + ">"


#: The IP ECN field as packetdrill writes it (``[ect0]``), by codepoint.
ECN_TEXT = {code: f"[{name}] " for name, code in ECN_NAMES.items()} | {ECT01: "[ect01] "}


def spec_to_text(spec: PacketSpec) -> str:
    ecn = ECN_TEXT[spec.ecn] if spec.ecn is not None else ""
    text = f"{ecn}{spec.flags or '-'} {spec.seq}:{spec.end}({spec.length})"
    if spec.ack is not None:
        text += f" ack {spec.ack}"
    if spec.window is not None:
        text += f" win {spec.window}"
    if spec.urgent:
        text += f" urg {spec.urgent}"
    return text + options_to_text(spec.options)


def segment_to_text(seg: TcpSegment) -> str:
    """A segment (in script space) as packetdrill prints an actual packet, its IP ECN field
    first when it has one."""
    flags = flags_to_text(seg.flags) or "-"
    end = (seg.seq + len(seg.payload)) & 0xFFFFFFFF
    ecn = ECN_TEXT[seg.ecn] if seg.ecn else ""
    text = f"{ecn}{flags} {seg.seq}:{end}({len(seg.payload)})"
    if seg.flags & Flags.ACK:
        text += f" ack {seg.ack}"
    text += f" win {seg.window}"
    if seg.urgent:
        text += f" urg {seg.urgent}"
    return text + options_to_text(seg.options)


def _field(name: str, expected: int, actual: int) -> str | None:
    if expected == actual:
        return None
    return (
        f"live packet field {name}: expected: {expected} (0x{expected:x})"
        f" vs actual: {actual} (0x{actual:x})"
    )


def compare(spec: PacketSpec, actual: TcpSegment, *, ts_tolerance_ticks: int | None) -> str | None:
    """None when ``actual`` (script space) is what ``spec`` expects, else packetdrill's reason.

    ``ts_tolerance_ticks`` is how far TS val may stray (None: TS val is not checked). The IP
    ECN field comes first, as packetdrill's verify_outbound_live_tos checks it before TCP's.
    """
    if spec.ecn == ECT01:
        if actual.ecn not in (ECN_ECT_0, ECN_ECT_1):
            return f"live packet field ip_ecn: expected: 0x1 or 0x2 vs actual: 0x{actual.ecn:x}"
    elif spec.ecn is not None:
        problem = _field("ip_ecn", spec.ecn, actual.ecn)
        if problem:
            return problem
    expected_flags = flags_from_text(spec.flags)
    for _, bit in FLAG_LETTERS:
        name = f"tcp_{(bit.name or '').lower()}"
        problem = _field(name, int(bool(expected_flags & bit)), int(bool(actual.flags & bit)))
        if problem:
            return problem
    checks = [
        ("tcp_seq", spec.seq, actual.seq),
        ("tcp_payload_len", spec.length, len(actual.payload)),
    ]
    if expected_flags & Flags.ACK:
        checks.append(("tcp_ack_seq", spec.ack or 0, actual.ack))
    if spec.window is not None:
        checks.append(("tcp_window", spec.window, actual.window))
    checks.append(("tcp_urg_ptr", spec.urgent, actual.urgent))
    for name, expected, got in checks:
        problem = _field(name, expected, got)
        if problem:
            return problem
    if spec.options is None:
        return None
    return _compare_options(spec.options, actual.options, ts_tolerance_ticks)


def _compare_options(
    expected: tuple[TcpOption, ...], actual: tuple[TcpOption, ...], ts_tolerance: int | None
) -> str | None:
    if len(expected) != len(actual):
        return "bad outbound TCP options"
    for want, got in zip(expected, actual, strict=True):
        if type(want) is not type(got):
            return "bad outbound TCP options"
        if isinstance(want, Timestamps) and isinstance(got, Timestamps):
            if ts_tolerance is not None and abs(want.tsval - got.tsval) > ts_tolerance:
                return f"bad outbound TCP timestamp value {got.tsval}, expected {want.tsval}"
            continue
        if want != got:
            return f"bad value outbound TCP option {option_to_text(got).split()[0]}"
    return None


# -- ICMP ------------------------------------------------------------------------------------------

#: IP protocol numbers of ICMP and ICMPv6.
PROTO_ICMP, PROTO_ICMPV6 = 1, 58
#: packetdrill's ICMPv4 destination-unreachable codes (RFC 1700), by name.
ICMPV4_UNREACHABLE_CODES = {
    name: code
    for code, name in enumerate(
        (
            "net_unreachable",
            "host_unreachable",
            "protocol_unreachable",
            "port_unreachable",
            "frag_needed",
            "source_route_failed",
            "net_unknown",
            "host_unknown",
            "source_host_isolated",
            "net_prohibited",
            "host_prohibited",
            "net_unreachable_for_tos",
            "host_unreachable_for_tos",
            "packet_filtered",
            "precedence_violation",
            "precedence_cutoff",
        )
    )
}
#: packetdrill's ICMP types by name and address family, each with its table of codes (if any).
ICMP_TYPES: dict[int, dict[str, tuple[int, dict[str, int]]]] = {
    4: {
        "echo_reply": (0, {}),
        "unreachable": (3, ICMPV4_UNREACHABLE_CODES),
        "source_quench": (4, {}),
        "redirect": (5, {}),
        "echo_request": (8, {}),
        "time_exceeded": (11, {}),
        "parameter_problem": (12, {}),
        "timestamp_request": (13, {}),
        "timestamp_reply": (14, {}),
        "information_request": (15, {}),
        "information_reply": (16, {}),
        "address_mask_request": (17, {}),
        "address_mask_reply": (18, {}),
    },
    6: {
        "unreachable": (
            1,
            {
                "net_unreachable": 0,
                "no_route": 0,
                "admin_prohibited": 1,
                "not_neighbour": 2,
                "address_unreachable": 3,
                "port_unreachable": 4,
            },
        ),
        "packet_too_big": (2, {}),
        "time_exceeded": (3, {"exceeded_hop_limit": 0, "exceeded_frag_time": 1}),
        "parameter_problem": (
            4,
            {"header_field": 0, "unknown_next_header": 1, "unknown_option": 2},
        ),
        "echo_request": (128, {}),
        "echo_reply": (129, {}),
    },
}


def icmp_type_and_code(version: int, spec: IcmpSpec) -> tuple[int, int]:
    """The type and code bytes of ``spec`` for IP ``version``, as packetdrill's
    ``parse_icmp_type_and_code`` and ``set_icmpv4_header`` check them; ValueError says why not."""
    known = ICMP_TYPES[version]
    codes: dict[str, int] = {}
    if spec.type_.startswith("type_") and spec.type_[5:].isdigit():
        type_ = int(spec.type_[5:])
    elif spec.type_ in known:
        type_, codes = known[spec.type_]
    else:
        raise ValueError(f"bad ICMP type {spec.type_}")
    if spec.code is None:
        code = 0
    elif spec.code.startswith("code_") and spec.code[5:].isdigit():
        code = int(spec.code[5:])
    elif spec.code in codes:
        code = codes[spec.code]
    else:
        raise ValueError(f"bad ICMP code {spec.code}")
    if type_ > 255 or code > 255:
        raise ValueError(f"bad ICMP type or code {spec.type_} {spec.code}")
    if spec.mtu is not None:
        frag_needed = (type_, code) == ((3, 4) if version == 4 else (2, 0))
        if not frag_needed:
            kind = "unreachable-frag_needed" if version == 4 else "packet_too_big-0"
            raise ValueError(f"ICMPv{version} MTU is only valid for {kind}")
        if spec.mtu >= (1 << (16 if version == 4 else 32)):
            raise ValueError(f"ICMPv{version} MTU out of range")
    return type_, code


def icmp_packet(error: IcmpError) -> bytes:
    """The IP packet of an ICMP (or ICMPv6) error from the script's peer, quoting the IP header
    and the first 8 bytes of the TCP header of a segment the stack sent, as packetdrill's
    ``new_icmp_packet`` builds it (an MTU in the fifth to eighth byte when there is one)."""
    sent = struct.pack("!HHI", error.sport, error.dport, error.seq)
    if isinstance(error.src, IPv4Address) and isinstance(error.dst, IPv4Address):
        quoted = IPv4Packet(error.src, error.dst, PROTO_TCP, sent + bytes(12)).emit()[:28]
        rest = struct.pack("!HH", 0, error.mtu)
        body = bytes([error.type, error.code, 0, 0]) + rest + quoted
        csum = internet_checksum(body)
        body = body[:2] + struct.pack("!H", csum) + body[4:]
        return IPv4Packet(error.dst, error.src, PROTO_ICMP, body).emit()
    if isinstance(error.src, IPv6Address) and isinstance(error.dst, IPv6Address):
        quoted = IPv6Packet(error.src, error.dst, PROTO_TCP, sent + bytes(12)).emit()[:48]
        body = bytes([error.type, error.code, 0, 0]) + struct.pack("!I", error.mtu) + quoted
        pseudo = (
            error.dst.packed + error.src.packed + struct.pack("!IxxxB", len(body), PROTO_ICMPV6)
        )
        csum = internet_checksum(pseudo + body)
        body = body[:2] + struct.pack("!H", csum) + body[4:]
        return IPv6Packet(error.dst, error.src, PROTO_ICMPV6, body).emit()
    raise ValueError("the quoted segment's addresses are not of one IP family")
