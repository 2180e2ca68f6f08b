"""The packetdrill syntax of Linux's TFO suite: ICMP packets, flag options, poll and epoll,
nstat, the outbound aggregation of TSO/GSO packets, and packetdrill's ICMP names."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from fastopen.engine import Host
from fastopen.engine.icmp import IcmpError
from fastopen.packetdrill import ScriptError, ScriptSyntaxError, parse_script
from fastopen.packetdrill.packets import icmp_packet, icmp_type_and_code, spec_to_text
from fastopen.packetdrill.run import run_script
from fastopen.packetdrill.script import IcmpSpec, PacketSpec
from fastopen.packetdrill.shell import EngineStack, ShellCommands
from fastopen.wire import internet_checksum


def action(text: str) -> object:
    script = parse_script(text, "t.pkt", {"CODE": "host_unreachable"})
    assert len(script.events) == 1
    return script.events[0].action


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "+0 < icmp unreachable frag_needed mtu 800",
            IcmpSpec("unreachable", "frag_needed", 800, 0, 0),
        ),
        (
            "+.01 < icmp unreachable frag_needed mtu 840 [0:1000(1000)]",
            IcmpSpec("unreachable", "frag_needed", 840, 0, 1000),
        ),
        ("+0 < icmp unreachable CODE", IcmpSpec("unreachable", "host_unreachable", None, 0, 0)),
        (
            "+0 < icmp unreachable [5000:6000(1000)]",
            IcmpSpec("unreachable", None, None, 5000, 1000),
        ),
        (
            "+0 < icmp packet_too_big mtu 1400 [0:1440(1440)]",
            IcmpSpec("packet_too_big", None, 1400, 0, 1440),
        ),
    ],
)
def test_icmp_lines(text: str, expected: IcmpSpec) -> None:
    assert action(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "+0 > icmp unreachable host_unreachable",  # the runner sends ICMP, it expects none
        "+0 < icmp unreachable [10:5(3)]",
        "+0 < icmp",
    ],
)
def test_bad_icmp_lines(text: str) -> None:
    with pytest.raises(ScriptSyntaxError):
        parse_script(text, "t.pkt")


def test_icmp_names_as_packetdrill_resolves_them() -> None:
    assert icmp_type_and_code(4, IcmpSpec("unreachable", "frag_needed", 800, 0, 0)) == (3, 4)
    assert icmp_type_and_code(6, IcmpSpec("packet_too_big", None, 1400, 0, 0)) == (2, 0)
    assert icmp_type_and_code(4, IcmpSpec("type_3", "code_13", None, 0, 0)) == (3, 13)
    with pytest.raises(ValueError, match="bad ICMP type packet_too_big"):
        icmp_type_and_code(4, IcmpSpec("packet_too_big", None, 1400, 0, 0))
    with pytest.raises(ValueError, match="MTU is only valid"):
        icmp_type_and_code(4, IcmpSpec("unreachable", "host_unreachable", 800, 0, 0))
    with pytest.raises(ValueError, match="bad ICMP code"):
        icmp_type_and_code(4, IcmpSpec("unreachable", "no_route", None, 0, 0))


def test_an_icmp_name_of_the_other_family_fails_before_the_run() -> None:
    script = parse_script(
        "0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < icmp packet_too_big mtu 1400\n", "v4.pkt"
    )
    with pytest.raises(ScriptSyntaxError, match=r"v4\.pkt:2: bad ICMP type packet_too_big"):
        run_script(script)


def test_icmp_packets_quote_the_segment() -> None:
    local, remote = ipaddress.ip_address("198.18.0.1"), ipaddress.ip_address("198.18.0.2")
    packet = icmp_packet(IcmpError(4, 3, 4, local, remote, 40000, 8080, 123456, 1000))
    assert packet[9] == 1  # ICMP
    body = packet[20:]
    assert body[:2] == bytes([3, 4]) and struct.unpack("!H", body[6:8]) == (1000,)
    assert internet_checksum(body) == 0
    quoted = body[8:]
    assert quoted[12:16] == local.packed and quoted[16:20] == remote.packed
    assert struct.unpack("!HHI", quoted[20:28]) == (40000, 8080, 123456)
    v6l, v6r = ipaddress.ip_address("fd00::1"), ipaddress.ip_address("fd00::2")
    packet6 = icmp_packet(IcmpError(6, 2, 0, v6l, v6r, 40000, 8080, 7, 1400))
    body6 = packet6[40:]
    pseudo = v6r.packed + v6l.packed + struct.pack("!IxxxB", len(body6), 58)
    assert internet_checksum(pseudo + body6) == 0
    assert struct.unpack("!I", body6[4:8]) == (1400,)


def test_flag_options() -> None:
    script = parse_script("--tcp_ts_ecr_scaled --strict_segments\n", "t.pkt")
    assert script.options == {"tcp_ts_ecr_scaled": "", "strict_segments": ""}
    with pytest.raises(ScriptSyntaxError):
        parse_script("--tolerance_usecs=\n", "t.pkt")


CLIENT = """--local_ip=198.18.0.1 --remote_ip=198.18.0.2
`../common/defaults.sh
 sysctl -q net.ipv4.tcp_timestamps=0`
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)
   +0 > S 0:0(0) <mss 1460,nop,nop,sackOK,nop,wscale 8>
+.010 < S. 0:0(0) ack 1 win 65535 <mss 1000,nop,nop,sackOK,nop,wscale 7>
   +0 > . 1:1(0) ack 1
"""


def test_tso_packets_are_aggregated_as_packetdrill_does() -> None:
    # The engine hands the device TSO packets of 2 segments here; the script's one packet of
    # 5000 bytes matches the pieces together, unless --strict_segments.
    body = "   +0 write(3, ..., 5000) = 5000\n   +0 > P. 1:5001(5000) ack 1\n"
    run_script(parse_script(CLIENT + body, "agg.pkt"))
    with pytest.raises(ScriptError, match="tcp_payload_len"):
        run_script(parse_script("--strict_segments\n" + CLIENT + body, "agg.pkt"))
    # the pieces must follow each other: a wrong sequence number is no aggregate
    with pytest.raises(ScriptError, match="tcp_seq"):
        run_script(parse_script(CLIENT + body.replace("1:5001", "2:5002"), "agg.pkt"))


def test_poll_and_epoll() -> None:
    body = """   +0 poll([{fd=3, events=POLLIN|POLLOUT, revents=POLLOUT}], 1, 0) = 1
   +0 epoll_create(1) = 4
   +0 epoll_ctl(4, EPOLL_CTL_ADD, 3, {events=EPOLLOUT|EPOLLET, fd=3}) = 0
   +0 epoll_wait(4, {events=EPOLLOUT, fd=3}, 1, 0) = 1
   +0 epoll_wait(4, {events=EPOLLOUT, fd=3}, 1, 0) = 0
   +0 epoll_ctl(4, EPOLL_CTL_MOD, 3, {events=EPOLLIN, fd=3}) = 0
// poll waits for the data, then returns within its timeout
   +0...0.020 poll([{fd=3, events=POLLIN, revents=POLLIN}], 1, 100) = 1
+.020 < P. 1:11(10) ack 1 win 502
   +0 > . 1:1(0) ack 11
   +0 epoll_wait(4, {events=EPOLLIN, fd=3}, 1, 0) = 1
"""
    run_script(parse_script(CLIENT + body, "poll.pkt"))
    wrong = CLIENT + "   +0 poll([{fd=3, events=POLLIN|POLLOUT, revents=POLLIN}], 1, 0) = 1\n"
    with pytest.raises(ScriptError, match="expected revents POLLIN but got POLLOUT"):
        run_script(parse_script(wrong, "poll.pkt"))
    timeout = CLIENT + "   +0...0.050 poll([{fd=3, events=POLLIN, revents=0}], 1, 50) = 0\n"
    run_script(parse_script(timeout, "poll.pkt"))


def test_nstat_reports_counters_that_moved() -> None:
    host = Host(["198.18.0.1"])
    shell = ShellCommands(EngineStack(host))
    assert shell.run("nstat > /dev/null") is None
    assert shell.run("nstat | grep TcpExtOutOfWindowIcmps > /dev/null") is not None
    host.counters["OutOfWindowIcmps"] += 1
    assert shell.run("nstat | grep TcpExtOutOfWindowIcmps > /dev/null") is None
    assert shell.run("nstat | grep TcpExtOutOfWindowIcmps") is not None  # seen: 0 since then
    assert shell.run("nstat -a | grep TcpExtOutOfWindowIcmps") is None
    assert shell.run("nstat | sort") is not None  # only nstat | grep is known


def test_no_flags_packet_and_ioctl() -> None:
    """``-`` is a segment with no flags at all; ioctl's ``[N]`` is the value it must write."""
    spec = action("+.01 < - 1:1001(1000) win 20000")
    assert isinstance(spec, PacketSpec) and spec.flags == "" and spec.length == 1000
    assert spec_to_text(spec) == "- 1:1001(1000) win 20000"
    body = """   +0 < - 1:11(10) win 502
   +0 ioctl(3, SIOCINQ, [0]) = 0
   +0 < P. 1:11(10) ack 1 win 502
   +0 > . 1:1(0) ack 11
   +0 ioctl(3, FIONREAD, [10]) = 0
   +0 write(3, ..., 20) = 20
   +0 > P. 1:21(20) ack 11
   +0 ioctl(3, SIOCOUTQ, [20]) = 0
   +0 ioctl(3, SIOCOUTQNSD, [0]) = 0
"""
    run_script(parse_script(CLIENT + body, "ioctl.pkt"))
    wrong = CLIENT + "   +0 ioctl(3, SIOCINQ, [5]) = 0\n"
    with pytest.raises(ScriptError, match="Bad ioctl optval: expected: 5 actual: 0"):
        run_script(parse_script(wrong, "ioctl.pkt"))


def test_epoll_edge_triggered_once_per_wakeup_and_one_shot() -> None:
    """Linux ep_poll_callback: new data wakes an edge-triggered descriptor again although it
    was readable already; a one-shot one reports once until EPOLL_CTL_MOD; ``ptr=0`` is the
    epoll_data of an event that is not there."""
    body = """   +0 epoll_create(1) = 4
   +0 epoll_ctl(4, EPOLL_CTL_ADD, 3, {events=EPOLLIN|EPOLLET, fd=3}) = 0
   +0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
   +0 < P. 1:11(10) ack 1 win 502
   +0 > . 1:1(0) ack 11
   +0 epoll_wait(4, {events=EPOLLIN, fd=3}, 1, 0) = 1
   +0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
   +0 < P. 11:21(10) ack 1 win 502
   +0 epoll_wait(4, {events=EPOLLIN, fd=3}, 1, 0) = 1
   +0 epoll_ctl(4, EPOLL_CTL_MOD, 3, {events=EPOLLIN|EPOLLONESHOT, u64=7}) = 0
   +0 epoll_wait(4, {events=EPOLLIN, u64=7}, 1, 0) = 1
   +0 epoll_wait(4, {events=0, ptr=0}, 1, 0) = 0
   +0 epoll_ctl(4, EPOLL_CTL_MOD, 3, {events=EPOLLIN, fd=3}) = 0
   +0 epoll_wait(4, {events=EPOLLIN, fd=3}, 1, 0) = 1
"""
    run_script(parse_script(CLIENT + body, "epoll.pkt"))
    both = CLIENT + (
        "   +0 epoll_create(1) = 4\n"
        "   +0 epoll_ctl(4, EPOLL_CTL_ADD, 3, {events=EPOLLIN, fd=3, ptr=0}) = 0\n"
    )
    with pytest.raises(ScriptError, match="give one of fd, ptr, u32, u64"):
        run_script(parse_script(both, "epoll.pkt"))


ERRQUEUE = """   +0 recvmsg(3, {msg_name(...)=...,
                  msg_iov(1)=[{...,0}],
                  msg_flags=MSG_ERRQUEUE,
                  msg_control=[
                        {cmsg_level=SOL_IP,
                         cmsg_type=IP_RECVERR,
                         cmsg_data={ee_errno=0,
                                    ee_origin=SO_EE_ORIGIN_ZEROCOPY,
                                    ee_type=0,
                                    ee_code=SO_EE_CODE_ZEROCOPY_COPIED,
                                    ee_info=LO,
                                    ee_data=HI}}
                   ]}, MSG_ERRQUEUE) = 0
"""


def errqueue(lo: int, hi: int) -> str:
    return ERRQUEUE.replace("LO", str(lo)).replace("HI", str(hi))


def test_msg_zerocopy_notifications_on_the_error_queue() -> None:
    """Linux __msg_zerocopy_callback: one id per MSG_ZEROCOPY send, its notification once the
    data is acknowledged, consecutive ids in one notification; POLLERR while one waits."""
    body = (
        "   +0 setsockopt(3, SOL_SOCKET, SO_ZEROCOPY, [1], 4) = 0\n"
        "   +0 recvmsg(3, {msg_name(...)=..., msg_iov(1)=[{...,0}], msg_flags=0,"
        " msg_control=[]}, MSG_ERRQUEUE) = -1 EAGAIN (Resource temporarily unavailable)\n"
        "   +0 send(3, ..., 1000, MSG_ZEROCOPY) = 1000\n"
        "   +0 > P. 1:1001(1000) ack 1\n"
        "   +0 send(3, ..., 1000, MSG_ZEROCOPY) = 1000\n"
        "   +0 > P. 1001:2001(1000) ack 1\n"
        "   +0 poll([{fd=3, events=POLLOUT, revents=POLLOUT}], 1, 0) = 1\n"
        "+.01 < . 1:1(0) ack 2001 win 502\n"
        "   +0 poll([{fd=3, events=POLLOUT, revents=POLLOUT|POLLERR}], 1, 0) = 1\n"
        + errqueue(0, 1)
        + "   +0 send(3, ..., 1000, MSG_ZEROCOPY) = 1000\n"
        "   +0 > P. 2001:3001(1000) ack 1\n"
        "+.01 < . 1:1(0) ack 3001 win 502\n" + errqueue(2, 2)
    )
    run_script(parse_script(CLIENT + body, "zc.pkt"))
    wrong = CLIENT + body.replace("ee_data=1}", "ee_data=0}")
    with pytest.raises(ScriptError, match="cmsg_data ee_data: expected 0 but got 1"):
        run_script(parse_script(wrong, "zc.pkt"))
    # without SO_ZEROCOPY, MSG_ZEROCOPY is an ordinary send: nothing on the error queue
    plain = body.split("\n", 1)[1].split("+.01 < . 1:1(0) ack 2001")[0]
    nothing = (
        CLIENT
        + plain
        + "+.01 < . 1:1(0) ack 2001 win 502\n"
        + (
            "   +0 recvmsg(3, {msg_name(...)=..., msg_iov(1)=[{...,0}], msg_flags=0,"
            " msg_control=[]}, MSG_ERRQUEUE) = -1 EAGAIN (Resource temporarily unavailable)\n"
        )
    )
    run_script(parse_script(nothing, "zc.pkt"))


def test_python_blocks_know_tcp_ca_states() -> None:
    body = "   +0 %{ assert tcpi_ca_state == TCP_CA_Open and TCP_CA_Recovery == 3 }%\n"
    run_script(parse_script(CLIENT + body, "ca.pkt"))


def test_tcp_inq_cmsg() -> None:
    """Linux tcp_inq_hint: a recvmsg on a TCP_INQ socket says what is left to read, the FIN's
    sequence number counted (1 once the stream ended)."""
    recvmsg = (
        "   +0 recvmsg(3, {msg_name(...)=..., msg_iov(1)=[{..., SIZE}], msg_flags=0,"
        " msg_control=[{cmsg_level=SOL_TCP, cmsg_type=TCP_CM_INQ, cmsg_data=LEFT}]}, 0) = SIZE\n"
    )
    body = (
        "   +0 setsockopt(3, SOL_TCP, TCP_INQ, [1], 4) = 0\n"
        "   +0 getsockopt(3, SOL_TCP, TCP_INQ, [1], [4]) = 0\n"
        "   +0 < P. 1:101(100) ack 1 win 502\n"
        "   +0 > . 1:1(0) ack 101\n"
        + recvmsg.replace("SIZE", "40").replace("LEFT", "60")
        + "   +0 < F. 101:101(0) ack 1 win 502\n"
        + recvmsg.replace("SIZE", "60").replace("LEFT", "1")
    )
    run_script(parse_script(CLIENT + body, "inq.pkt"))
    with pytest.raises(ScriptError, match="cmsg_data: expected 59 but got 60"):
        run_script(parse_script(CLIENT + body.replace("cmsg_data=60", "cmsg_data=59"), "inq.pkt"))
    off = CLIENT + body.replace("[1], 4", "[0], 4").replace("[1], [4]", "[0], [4]")
    with pytest.raises(ScriptError, match="expected 1 cmsgs but got 0"):
        run_script(parse_script(off, "inq.pkt"))


def test_null_buffers_are_efault() -> None:
    """The kernel cannot copy from or into NULL: EFAULT, nothing queued or consumed; a socket
    with nothing to read says so first (EAGAIN); length 0 is no copy at all."""
    body = """   +0 write(3, NULL, 1000) = -1 EFAULT (Bad address)
   +0 send(3, NULL, 0, 0) = 0
   +0 recv(3, NULL, 1000, 0) = -1 EAGAIN (Resource temporarily unavailable)
   +0 < P. 1:11(10) ack 1 win 502
   +0 > . 1:1(0) ack 11
   +0 recvfrom(3, NULL, 1000, 0, ..., ...) = -1 EFAULT (Bad address)
   +0 read(3, ..., 1000) = 10
   +0 ioctl(3, SIOCOUTQ, [0]) = 0
"""
    run_script(parse_script(CLIENT + body, "null.pkt"))
