"""The outbound packet matcher and packetdrill's text form of packets."""

from __future__ import annotations

from fastopen.packetdrill.packets import compare, segment_to_text, spec_to_text
from fastopen.packetdrill.script import parse_packet
from fastopen.wire import FastOpen, Flags, Mss, Nop, SackPermitted, TcpSegment, Timestamps

SYNACK = TcpSegment(
    8080,
    40000,
    0,
    11,
    Flags.SYN | Flags.ACK,
    64240,
    (Mss(1460), Nop(), Nop(), SackPermitted()),
)


def test_matching_packet_and_its_text() -> None:
    expected = parse_packet(">", "S. 0:0(0) ack 11 <mss 1460,nop,nop,sackOK>", "t.pkt", 1)
    assert compare(expected, SYNACK, ts_tolerance_ticks=None) is None
    assert segment_to_text(SYNACK) == "S. 0:0(0) ack 11 win 64240 <mss 1460,nop,nop,sackOK>"
    assert spec_to_text(expected) == "S. 0:0(0) ack 11 <mss 1460,nop,nop,sackOK>"


def test_each_field_is_checked() -> None:
    def why(text: str) -> str | None:
        return compare(parse_packet(">", text, "t.pkt", 1), SYNACK, ts_tolerance_ticks=None)

    assert why("S 0:0(0) <mss 1460,nop,nop,sackOK>") == (
        "live packet field tcp_ack: expected: 0 (0x0) vs actual: 1 (0x1)"
    )
    assert "tcp_seq" in (why("S. 5:5(0) ack 11 <...>") or "")
    assert "tcp_ack_seq: expected: 1 (0x1) vs actual: 11 (0xb)" in (
        why("S. 0:0(0) ack 1 <...>") or ""
    )
    assert "tcp_payload_len" in (why("S. 0:10(10) ack 11 <...>") or "")
    assert "tcp_window" in (why("S. 0:0(0) ack 11 win 100 <...>") or "")
    assert why("S. 0:0(0) ack 11 win 64240 <...>") is None
    assert why("S. 0:0(0) ack 11 <mss 1460,sackOK>") == "bad outbound TCP options"
    assert why("S. 0:0(0) ack 11 <mss 1400,nop,nop,sackOK>") == "bad value outbound TCP option mss"


def test_fastopen_cookie_and_kind_are_compared() -> None:
    seg = TcpSegment(1, 2, 0, 1, Flags.SYN | Flags.ACK, 100, (FastOpen(b"\xab\xcd\x12\x34"),))
    assert (
        compare(
            parse_packet(">", "S. 0:0(0) ack 1 <FO abcd1234>", "t", 1), seg, ts_tolerance_ticks=None
        )
        is None
    )
    assert compare(
        parse_packet(">", "S. 0:0(0) ack 1 <FO abcd1235>", "t", 1), seg, ts_tolerance_ticks=None
    )
    assert compare(
        parse_packet(">", "S. 0:0(0) ack 1 <FOEXP abcd1234>", "t", 1), seg, ts_tolerance_ticks=None
    )
    assert segment_to_text(seg).endswith("<FO abcd1234>")


def test_ts_val_within_tolerance_and_ecr_unchecked() -> None:
    seg = TcpSegment(1, 2, 1, 1, Flags.ACK, 100, (Nop(), Nop(), Timestamps(104, 7)))
    loose = parse_packet(">", ". 1:1(0) ack 1 <nop,nop,TS val 100 ecr 0>", "t", 1)
    assert compare(loose, seg, ts_tolerance_ticks=None) is None
    assert compare(loose, seg, ts_tolerance_ticks=4) is None
    assert compare(loose, seg, ts_tolerance_ticks=3) == (
        "bad outbound TCP timestamp value 104, expected 100"
    )


def test_ip_ecn_and_urgent_pointer_are_checked_as_packetdrill_checks_them() -> None:
    """verify_outbound_live_tos first (``[ect01]``: either ECT), then the TCP fields, the
    urgent pointer always (0 when the script gives none)."""
    import dataclasses

    from fastopen.packetdrill.packets import compare
    from fastopen.packetdrill.script import ECT01, PacketSpec
    from fastopen.wire import ECN_ECT_0, ECN_ECT_1, ECN_NOT_ECT, Flags, TcpSegment

    seg = TcpSegment(1, 2, 1, 1, Flags.ACK | Flags.PSH, 100, (), b"x" * 10, ecn=ECN_ECT_0)
    spec = PacketSpec(">", "P.", 1, 11, 10, 1, None, None, ECN_ECT_0)
    assert compare(spec, seg, ts_tolerance_ticks=None) is None
    problem = compare(spec, dataclasses.replace(seg, ecn=ECN_NOT_ECT), ts_tolerance_ticks=None)
    assert problem is not None and problem.startswith("live packet field ip_ecn")
    either = dataclasses.replace(spec, ecn=ECT01)
    assert compare(either, dataclasses.replace(seg, ecn=ECN_ECT_1), ts_tolerance_ticks=None) is None
    assert compare(either, dataclasses.replace(seg, ecn=ECN_NOT_ECT), ts_tolerance_ticks=None)
    unchecked = dataclasses.replace(spec, ecn=None)
    assert (
        compare(unchecked, dataclasses.replace(seg, ecn=ECN_NOT_ECT), ts_tolerance_ticks=None)
        is None
    )
    urgent = dataclasses.replace(seg, flags=seg.flags | Flags.URG, urgent=10)
    problem = compare(dataclasses.replace(spec, flags="UP."), urgent, ts_tolerance_ticks=None)
    assert problem is not None and "tcp_urg_ptr" in problem
    wanted = dataclasses.replace(spec, flags="UP.", urgent=10)
    assert compare(wanted, urgent, ts_tolerance_ticks=None) is None
