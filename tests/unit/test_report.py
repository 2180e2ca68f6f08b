"""TfoReport: built from TCP_INFO as the kernel lays it out, told to humans and to JSON."""

from __future__ import annotations

import json
import socket
import struct

import pytest

from fastopen.constants import TCPI_OPT_SYN_DATA, TCPI_OPT_TFO_CHILD
from fastopen.kernel.attempts import Attempt, build_report
from fastopen.kernel.tcpinfo import SIZE, TcpInfo, read
from fastopen.report import FailReason, OffReason, Side, TfoReport

CLIENT = Attempt(Side.CLIENT, attempted=True)
SERVER = Attempt(Side.SERVER, attempted=True)


def tcp_info(
    options: int = 0,
    client_fail: int = 0,
    rtt_us: int = 250,
    cwnd: int = 0,
    ssthresh: int = 0x7FFFFFFF,
) -> TcpInfo:
    """TCP_INFO bytes as Linux writes them, parsed."""
    head = bytes([1, 0, 0, 0, 0, options, 0x77, client_fail << 1 | 1])  # app_limited bit set
    words = [0] * 24
    words[15] = rtt_us
    words[17] = ssthresh
    words[18] = cwnd
    words[23] = 2  # total_retrans
    return TcpInfo.parse(head + struct.pack("=24I", *words) + b"\0" * 64)


def test_parse_reads_the_tfo_fields() -> None:
    info = tcp_info(TCPI_OPT_SYN_DATA | TCPI_OPT_TFO_CHILD, client_fail=3, rtt_us=1234)
    assert (info.state, info.fastopen_client_fail, info.rtt_us, info.total_retrans) == (
        1,
        3,
        1234,
        2,
    )
    assert info.syn_data and info.tfo_child
    with pytest.raises(ValueError, match="at least 104"):
        TcpInfo.parse(b"\0" * 100)


def test_layout_matches_the_running_kernel() -> None:
    """A loopback connection: ESTABLISHED (1), a measured RTT, no TFO trace."""
    with socket.create_server(("127.0.0.1", 0)) as lsock:
        sock = socket.create_connection(lsock.getsockname())
        conn, _ = lsock.accept()
        with sock, conn:
            sock.sendall(b"x")
            assert conn.recv(1) == b"x"
            info = read(sock)
    assert SIZE == 104 and info.state == 1 and info.rtt_us > 0
    assert not info.syn_data and info.fastopen_client_fail == 0
    assert info.snd_cwnd >= 10 and info.snd_ssthresh == 0x7FFFFFFF  # TCP_INIT_CWND on, no loss


def test_the_report_shows_the_congestion_window() -> None:
    """tcpi_snd_cwnd and tcpi_snd_ssthresh (None while slow start has not ended)."""
    first = build_report(tcp_info(cwnd=10), None)
    assert (first.cwnd, first.ssthresh) == (10, None)
    assert str(first).endswith("rtt 0.250 ms, cwnd 10")
    later = build_report(tcp_info(cwnd=35, ssthresh=30), None)
    assert (later.cwnd, later.ssthresh) == (35, 30)
    assert str(later).endswith(", cwnd 35, ssthresh 30")
    assert later.to_dict()["cwnd"] == 35 and later.to_dict()["ssthresh"] == 30


@pytest.mark.parametrize(
    ("options", "fail", "reason", "requested", "sent", "acked"),
    [
        (TCPI_OPT_SYN_DATA, 0, None, False, True, True),
        (0, 1, FailReason.NO_COOKIE, True, False, False),
        (0, 2, FailReason.DATA_NOT_ACKED, False, True, False),
        (0, 3, FailReason.SYN_RETRANSMITTED, False, True, False),
        (0, 0, FailReason.NOT_SENT, False, False, False),
    ],
)
def test_client_reports(
    options: int,
    fail: int,
    reason: FailReason | None,
    requested: bool,
    sent: bool,
    acked: bool,
) -> None:
    rep = build_report(tcp_info(options, fail), CLIENT)
    assert rep.side is Side.CLIENT and rep.attempted
    assert (rep.fail_reason, rep.cookie_requested, rep.syn_data_sent, rep.syn_data_acked) == (
        reason,
        requested,
        sent,
        acked,
    )
    assert rep.used is acked and rep.rtt == pytest.approx(250e-6)


def test_off_reason_wins_over_tcp_info() -> None:
    rep = build_report(tcp_info(), Attempt(Side.CLIENT, False, OffReason.CLIENT_SYSCTL_OFF))
    assert not rep.attempted and rep.fail_reason is FailReason.TFO_OFF
    assert str(rep).startswith("TFO off (client): client TFO is off (net.ipv4.tcp_fastopen lacks")


def test_server_reports() -> None:
    both = build_report(tcp_info(TCPI_OPT_SYN_DATA | TCPI_OPT_TFO_CHILD), SERVER)
    assert both.attempted and both.tfo_child and both.syn_data_received and both.used
    assert both.cookie_requested is None and both.syn_data_sent is None
    child_only = build_report(tcp_info(TCPI_OPT_TFO_CHILD), SERVER)
    assert child_only.tfo_child and not child_only.syn_data_received and not child_only.used
    plain = build_report(tcp_info(), SERVER)
    assert not plain.attempted
    assert str(both) == "TFO server: came in by TFO yes, SYN data received yes, rtt 0.250 ms"


def test_a_socket_fastopen_did_not_make_is_read_as_a_client() -> None:
    assert build_report(tcp_info(TCPI_OPT_SYN_DATA), None).attempted
    plain = build_report(tcp_info(), None)
    assert not plain.attempted and plain.fail_reason is FailReason.TFO_OFF
    assert plain.off_reason is None


def test_text_and_json() -> None:
    rep = TfoReport(
        side=Side.CLIENT,
        attempted=True,
        cookie_requested=True,
        syn_data_sent=False,
        fail_reason=FailReason.NO_COOKIE,
        rtt=0.1,
    )
    assert str(rep) == (
        "TFO client: cookie requested yes, SYN data acknowledged no "
        "(no cookie cached yet: the SYN requested one, the data followed it), rtt 100.000 ms"
    )
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["fail_reason"] == "no-cookie" and data["side"] == "client"
    assert data["stack"] == "kernel" and data["off_reason"] is None
    assert set(data) == {
        "side",
        "stack",
        "attempted",
        "cookie_requested",
        "syn_data_sent",
        "syn_data_acked",
        "fail_reason",
        "off_reason",
        "tfo_child",
        "syn_data_received",
        "rtt",
        "cwnd",
        "ssthresh",
        "note",
        "replay_suspected",
        "replay_first_server",
    }
