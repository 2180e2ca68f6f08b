"""The packetdrill script parser: times, packets, options, system calls, commands, errors."""

from __future__ import annotations

import pytest

from fastopen.packetdrill import ScriptSyntaxError, parse_script
from fastopen.packetdrill.script import (
    ELLIPSIS,
    Call,
    EventTime,
    KeyValue,
    ListExpr,
    Name,
    OrExpr,
    PacketSpec,
    Python,
    Quoted,
    Shell,
    StructExpr,
    Syscall,
    TimeKind,
)
from fastopen.wire import FastOpen, Mss, Nop, Sack, SackPermitted, Timestamps, WindowScale


def one(text: str) -> tuple[int, EventTime, object]:
    script = parse_script(text, "t.pkt")
    assert len(script.events) == 1
    ev = script.events[0]
    return ev.line, ev.time, ev.action


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0 close(3) = 0", EventTime(TimeKind.ABSOLUTE, 0.0)),
        ("0.750 close(3) = 0", EventTime(TimeKind.ABSOLUTE, 0.75)),
        ("+.1 close(3) = 0", EventTime(TimeKind.RELATIVE, 0.1)),
        ("* close(3) = 0", EventTime(TimeKind.ANY)),
        ("0.750~0.900 close(3) = 0", EventTime(TimeKind.ABSOLUTE, 0.75, 0.9)),
        ("+0.1~+0.2 close(3) = 0", EventTime(TimeKind.RELATIVE, 0.1, 0.2, True)),
        ("+0...0.300 close(3) = 0", EventTime(TimeKind.RELATIVE, 0.0, 0.3, True, True)),
        ("+0 ... .02 close(3) = 0", EventTime(TimeKind.RELATIVE, 0.0, 0.02, True, True)),
        ("0.1...0.2 close(3) = 0", EventTime(TimeKind.ABSOLUTE, 0.1, 0.2, False, True)),
    ],
)
def test_times(text: str, expected: EventTime) -> None:
    assert one(text)[1] == expected


def test_inbound_packet_with_every_option_kind() -> None:
    text = (
        "+0 < S. 5:15(10) ack 1 win 32792 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7,"
        "sack 1:2 3:4,FO 3021b9d889017eeb,FOEXP,FO,nop,nop>"
    )
    _, _, action = one(text)
    assert action == PacketSpec(
        "<",
        "S.",
        5,
        15,
        10,
        1,
        32792,
        (
            Mss(1460),
            SackPermitted(),
            Timestamps(100, 0),
            Nop(),
            WindowScale(7),
            Sack(((1, 2), (3, 4))),
            FastOpen(bytes.fromhex("3021b9d889017eeb")),
            FastOpen(b"", experimental=True),
            FastOpen(b""),
            Nop(),
            Nop(),
        ),
    )


def test_outbound_packet_any_options_and_no_window() -> None:
    _, _, action = one("+0 > P. 1:101(100) ack 11 <...>")
    assert isinstance(action, PacketSpec)
    assert (action.direction, action.window, action.options) == (">", None, None)
    _, _, plain = one("+0 > . 1:1(0) ack 1")
    assert isinstance(plain, PacketSpec) and plain.options == ()


def test_syscall_arguments_and_errno() -> None:
    _, _, action = one(
        "+0 sendto(3, ..., 1000, MSG_FASTOPEN|MSG_DONTWAIT, ..., ...) "
        "= -1 EINPROGRESS (Operation is now in progress)"
    )
    assert action == Syscall(
        "sendto",
        (
            3,
            ELLIPSIS,
            1000,
            OrExpr((Name("MSG_FASTOPEN"), Name("MSG_DONTWAIT"))),
            ELLIPSIS,
            ELLIPSIS,
        ),
        -1,
        "EINPROGRESS",
    )
    _, _, opt = one("+0 setsockopt(3, SOL_TCP, TCP_FASTOPEN, [1], 4) = 0")
    assert isinstance(opt, Syscall) and opt.args[3] == ListExpr((1,))


def test_multiline_syscall_with_string_and_struct() -> None:
    script = parse_script(
        "// key\n"
        "   +0 setsockopt(3, SOL_TCP, TCP_FASTOPEN_KEY,\n"
        '                 "\\xf7\\x63ab", 4) = 0\n'
        "+0 sendmsg(4, {msg_name(...)=..., msg_iov(1)=[{..., 100}], msg_flags=0}, 0) = 100\n",
        "t.pkt",
    )
    first, second = script.events
    assert first.line == 2
    assert isinstance(first.action, Syscall)
    assert first.action.args[3] == Quoted(b"\xf7\x63ab")
    assert second.line == 4
    assert isinstance(second.action, Syscall)
    msg = second.action.args[1]
    assert isinstance(msg, StructExpr)
    assert msg.items[1] == KeyValue(Call("msg_iov", (1,)), ListExpr((StructExpr((ELLIPSIS, 100)),)))


def test_options_commands_python_and_comments_keep_line_numbers() -> None:
    script = parse_script(
        "/* a block\n comment */ --local_ip=198.18.0.1 --remote_ip=198.18.0.2\n"
        "`../common/defaults.sh\n sysctl -q net.ipv4.tcp_fastopen=0x3`\n"
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3 // trailing\n"
        "+0 %{\nassert tcpi_state == 1\n}%\n",
        "t.pkt",
    )
    assert script.options == {"local_ip": "198.18.0.1", "remote_ip": "198.18.0.2"}
    shell, sock, block = script.events
    assert shell.line == 3 and isinstance(shell.action, Shell)
    assert "tcp_fastopen=0x3" in shell.action.command
    assert sock.line == 5 and isinstance(sock.action, Syscall) and sock.action.result == 3
    assert block.line == 6 and isinstance(block.action, Python)
    assert "tcpi_state == 1" in block.action.code


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("0 close(3) = 0\n+0 < S 0:10(5) win 1", 2, "does not hold 5 bytes"),
        ("\n\n+0 > S 0:0(0) <mss 1460,bogus 3>", 3, "bad TCP option 'bogus 3'"),
        ("+0 < S 0:0(0) win 100 <...>", 1, "cannot use <...>"),
        ("+0 close(3) 0", 1, "expected '= RESULT'"),
        ("+0 frobnicate", 1, "cannot parse"),
        ("hello", 1, "expected a time"),
        ("+0 `sysctl", 1, "unterminated backtick"),
        ("--ip_version=ipv6 remote_ip=fd00::2", 1, "bad option 'remote_ip=fd00::2'"),
    ],
)
def test_syntax_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ScriptSyntaxError) as info:
        parse_script(text, "bad.pkt")
    assert info.value.line == line
    assert str(info.value).startswith(f"bad.pkt:{line}: ")
    assert message in str(info.value)


def test_ip_ecn_urgent_pointer_and_md5_as_packetdrill_writes_them() -> None:
    """``[ect0]`` before the flags (packetdrill's ip_info), ``urg N`` after the window, and
    ``md5 HEX`` (up to 16 bytes; fewer make an option of that length, as new_md5_option)."""
    from fastopen.packetdrill.script import ECT01
    from fastopen.wire import ECN_CE, ECN_ECT_0, TCPOPT_MD5SIG, Md5Sig, UnknownOption

    _, _, out = one("+0 > [ect0] P. 1:1001(1000) ack 1")
    assert isinstance(out, PacketSpec) and out.ecn == ECN_ECT_0 and out.urgent == 0
    _, _, out = one("+0 > [ect01] . 1:1(0) ack 1")
    assert isinstance(out, PacketSpec) and out.ecn == ECT01
    _, _, inbound = one(
        "+0 < [ce] U. 1:101(100) ack 1 win 257 urg 100 <md5 000102030405060708090a0b0c0d0e0f>"
    )
    assert isinstance(inbound, PacketSpec)
    assert (inbound.ecn, inbound.urgent) == (ECN_CE, 100)
    assert inbound.options == (Md5Sig(bytes(range(16))),)
    _, _, short = one("+0 < . 1:1(0) ack 1 win 257 <md5 0001>")
    assert isinstance(short, PacketSpec)
    assert short.options == (UnknownOption(TCPOPT_MD5SIG, b"\x00\x01"),)
    for bad in (
        "+0 < [ect01] . 1:1(0) ack 1 win 257",  # outbound only
        "+0 < [ect2] . 1:1(0) ack 1 win 257",
        "+0 < . 1:1(0) ack 1 win 257 urg 65536",
        "+0 < . 1:1(0) ack 1 win 257 <md5 " + "00" * 17 + ">",
    ):
        with pytest.raises(ScriptSyntaxError):
            parse_script(bad, "t.pkt")
