"""IP_TOS and IP_MTU_DISCOVER (level SOL_IP): what the IP header of a socket's segments says,
and what a path MTU report does to a socket that asked for no DF."""

from __future__ import annotations

import errno
import ipaddress
import socket

import pytest
from engine_support import (
    CLIENT,
    PEER_ISN,
    SERVER,
    A,
    P,
    S,
    connecting,
    fails_with,
    host,
    one,
    out,
    seg,
    synack,
)

from fastopen.engine import Host
from fastopen.engine.icmp import ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, IcmpError
from fastopen.engine.socket import (
    IP_MTU_DISCOVER,
    IP_PMTUDISC_DO,
    IP_PMTUDISC_DONT,
    IP_PMTUDISC_OMIT,
    IP_PMTUDISC_PROBE,
    IP_PMTUDISC_WANT,
    IP_TOS,
)
from fastopen.wire import ECN_ECT_0, IPv4Packet, TcpSegment, ip_packet, parse_ip

SOL_IP = socket.IPPROTO_IP


def test_ip_tos_keeps_the_dscp_bits_and_mtu_discover_its_mode() -> None:
    """Linux __ip_sock_set_tos: on a TCP socket the ECN bits of IP_TOS are TCP's, so 0x13 reads
    back 0x10; IP_MTU_DISCOVER starts at WANT (ip_no_pmtu_disc=0) and takes DONT to OMIT."""
    sock = host(CLIENT).socket()
    assert sock.getsockopt(SOL_IP, IP_TOS) == 0
    assert sock.getsockopt(SOL_IP, IP_MTU_DISCOVER) == IP_PMTUDISC_WANT
    sock.setsockopt(SOL_IP, IP_TOS, 0x13)
    assert sock.getsockopt(SOL_IP, IP_TOS) == 0x10
    for mode in (IP_PMTUDISC_DONT, IP_PMTUDISC_OMIT, IP_PMTUDISC_DO):
        sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, mode)
        assert sock.getsockopt(SOL_IP, IP_MTU_DISCOVER) == mode
    for bad in (-1, 6):
        with fails_with(errno.EINVAL):
            sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, bad)
    with fails_with(errno.EINVAL):
        sock.setsockopt(SOL_IP, IP_TOS, b"\x10")
    assert sock.getsockopt(SOL_IP, IP_MTU_DISCOVER) == IP_PMTUDISC_DO


def test_the_segments_and_packets_carry_tos_and_df_as_the_socket_says() -> None:
    """DSCP 0x28 and DONT: the SYN says tos 0x28 without DF, in the packet too; DO and DSCP 0
    from then on: the next segment has DF and TOS 0. The ECN bits stay the segment's own."""
    h = host(CLIENT)
    sock = h.socket()
    sock.setsockopt(SOL_IP, IP_TOS, 0x28)
    sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)
    syn = connecting_with(h, sock)
    assert (syn.tos, syn.df) == (0x28, False)
    packet = parse_ip(ip_packet(CLIENT, SERVER, syn))
    assert isinstance(packet, IPv4Packet)
    assert (packet.tos, packet.flags) == (0x28, 0)  # no DF
    sock.setsockopt(SOL_IP, IP_TOS, 0)
    sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1), 0.01)
    ack = one(h)
    assert (ack.tos, ack.df) == (0, True)
    ect = TcpSegment(1, 2, 0, 0, A, 100, payload=b"x", ecn=ECN_ECT_0, tos=0x28, df=False)
    assert parse_ip(ip_packet(CLIENT, SERVER, ect)).tos == 0x28 | ECN_ECT_0
    with pytest.raises(ValueError, match="ECN bits"):
        TcpSegment(1, 2, 0, 0, A, 100, tos=0x29)


def connecting_with(h: Host, sock: object) -> TcpSegment:
    """The SYN of ``sock`` (of ``h``) connecting to the server."""
    with fails_with(errno.EINPROGRESS):
        sock.connect((str(SERVER), 80), 0.0)  # type: ignore[attr-defined]
    return one(h)


def test_a_listeners_tos_and_df_go_on_its_synack_and_its_childrens_segments() -> None:
    """Linux tcp_v4_send_synack (ip_build_and_send_pkt with the listener) and sk_clone_lock:
    the SYN-ACK and every segment of the child carry the listener's IP_TOS and DF."""
    server = host(SERVER)
    listener = server.socket()
    listener.setsockopt(SOL_IP, IP_TOS, 0xB8)
    listener.setsockopt(SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
    listener.bind(("0.0.0.0", 80))
    listener.listen(8)
    server.receive_segment(CLIENT, SERVER, seg(S, PEER_ISN, sport=40000, dport=80), 0.0)
    synack_seg = one(server)
    assert (synack_seg.tos, synack_seg.df) == (0xB8, False)
    ack = seg(A, PEER_ISN + 1, synack_seg.seq + 1, sport=40000, dport=80)
    server.receive_segment(CLIENT, SERVER, ack, 0.01)
    child, _ = listener.accept(0.01)
    child.send(b"answer", 0.02)
    (data,) = out(server)
    assert (data.tos, data.df, data.payload) == (0xB8, False, b"answer")
    assert child.getsockopt(SOL_IP, IP_TOS) == 0xB8


def test_ip_tos_is_ipv4s() -> None:
    """An IPv6 socket takes IP_TOS (for IPv4-mapped peers) but its IPv6 packets keep traffic
    class 0: that is IPV6_TCLASS's."""
    h = Host([ipaddress.ip_address("fd00::1")], timestamps=False)
    sock = h.socket(socket.AF_INET6)
    sock.setsockopt(SOL_IP, IP_TOS, 0x28)
    with fails_with(errno.EINPROGRESS):
        sock.connect(("fd00::2", 80), 0.0)
    assert one(h).tos == 0


@pytest.mark.parametrize(
    ("mode", "mss", "soft_error", "resent"),
    [
        (IP_PMTUDISC_WANT, 960, errno.EMSGSIZE, 2),
        (IP_PMTUDISC_DO, 960, errno.EMSGSIZE, 2),
        (IP_PMTUDISC_PROBE, 960, None, 2),  # no DF: no soft error, but the MSS follows
        (IP_PMTUDISC_DONT, 1460, None, 0),
        (IP_PMTUDISC_OMIT, 1460, None, 0),
    ],
)
def test_fragmentation_needed_lowers_the_mss_only_where_the_socket_accepts_it(
    mode: int, mss: int, soft_error: int | None, resent: int
) -> None:
    """Linux tcp_v4_mtu_reduced: the route learns the MTU whatever the mode (new connections
    start with it); the socket keeps a soft error only if its packets had DF, and lowers its
    MSS and resends what no longer fits at once unless it is DONT (or INTERFACE, OMIT:
    ip_sk_accept_pmtu)."""
    h = host(CLIENT)
    sock, syn = connecting(h)
    sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, mode)
    h.receive_segment(SERVER, CLIENT, synack(syn, syn.seq + 1), 0.01)
    out(h)
    sock.send(bytes(1200), 0.01)
    (data,) = out(h)
    assert (data.payload, data.flags) == (bytes(1200), A | P)
    report = IcmpError(4, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, CLIENT, SERVER, syn.src_port,
                       80, data.seq, mtu=1000)  # fmt: skip
    h.receive_icmp(report, 0.015)
    assert sock.conn is not None
    assert sock.conn.snd_mss == mss
    assert sock.conn.soft_error == soft_error
    assert len(out(h)) == resent
    assert h.pmtu[SERVER][0] == 1000
