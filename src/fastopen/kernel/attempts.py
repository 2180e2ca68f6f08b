"""What fastopen asked of the kernel for each socket, and the TFO report built from it.

``TCP_INFO`` tells what the kernel did; it cannot tell why TFO was not even tried (no first flight,
a request not safe to replay, the sysctl bit clear). fastopen records that per socket here, so
:func:`report` can say both.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import weakref
from dataclasses import dataclass
from typing import Any

from fastopen.kernel import netlink, pathcache, tcpinfo
from fastopen.kernel.tcpinfo import INFINITE_SSTHRESH, TcpInfo
from fastopen.report import FailReason, OffReason, Side, TfoReport

_CLIENT_FAIL = {
    1: FailReason.NO_COOKIE,
    2: FailReason.DATA_NOT_ACKED,
    3: FailReason.SYN_RETRANSMITTED,
}


@dataclass(frozen=True, slots=True)
class Attempt:
    """How a socket was set up: its side, whether TFO was switched on, and if not, why."""

    side: Side
    attempted: bool
    off_reason: OffReason | None = None
    #: The address connected to (``getpeername`` fails while the kernel defers the connect).
    peer: Any = None
    #: More about ``off_reason`` for the report (the path cache's count and backoff).
    note: str | None = None
    #: A client had data for the SYN (a first flight, or a first write to come).
    first_flight: bool = True


_attempts: weakref.WeakKeyDictionary[socket.socket, Attempt] = weakref.WeakKeyDictionary()


def remember(sock: socket.socket, attempt: Attempt) -> None:
    """Record how ``sock`` was set up (kept as long as the socket object lives)."""
    _attempts[sock] = attempt


def recall(sock: socket.socket) -> Attempt | None:
    return _attempts.get(sock)


# -- which side: the kernel's own answer ------------------------------------------------------

SO_NETNS_COOKIE = 71  # Linux 5.14
SOCK_DIAG_BY_FAMILY = 20
TCP_LISTEN = 10
#: struct inet_diag_req_v2: family, protocol, ext, pad, states, then inet_diag_sockid.
_REQ = struct.Struct("=BBBxI48x")
#: struct inet_diag_msg up to the sockid's source address: family, state, timer, retrans,
#: sport (big endian), dport, src[16].
_MSG = struct.Struct("=BBBB2H16s")


def _netns_cookie(sock: socket.socket) -> int | None:
    try:
        return int.from_bytes(sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8), "little")
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EINVAL):
            return None
        raise


def _listeners(diag: socket.socket, family: int) -> list[tuple[bytes, int]]:
    """(address bytes, port) of every TCP listener of ``family`` in ``diag``'s namespace."""
    payload = _REQ.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
    size = 4 if family == socket.AF_INET else 16
    found = []
    for reply in netlink.request(diag, SOCK_DIAG_BY_FAMILY, netlink.NLM_F_DUMP, payload):
        _, _, _, _, sport, _, src = _MSG.unpack_from(reply)
        found.append((src[:size], socket.ntohs(sport)))
    return found


def accepted_by_a_listener(sock: socket.socket) -> bool | None:
    """Whether ``sock`` is the passive end of its connection: a listener of its namespace holds
    its local port (at its address or at a wildcard one). None when this thread is in another
    namespace than the socket, or the kernel will not say (no sock_diag)."""
    family = sock.family
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        diag = netlink.open_socket(netlink.NETLINK_SOCK_DIAG)
    except OSError:
        return None
    with diag:
        mine = _netns_cookie(sock)
        if mine is not None and mine != _netns_cookie(diag):
            return None
        try:
            listeners = _listeners(diag, family)
        except OSError:
            return None
    local = sock.getsockname()
    address = ipaddress.ip_address(local[0].split("%")[0]).packed
    wildcard = bytes(len(address))
    return any(port == local[1] and addr in (address, wildcard) for addr, port in listeners)


def side_of(sock: socket.socket, info: TcpInfo) -> Side:
    """The side of a socket fastopen did not set up, from the kernel: a TFO child (Linux 6.16+
    marks it) or a socket on a listener's port is a server's; any other a client's."""
    if info.tfo_child or accepted_by_a_listener(sock):
        return Side.SERVER
    return Side.CLIENT


def build_report(info: TcpInfo, attempt: Attempt | None, side: Side | None = None) -> TfoReport:
    """The report for a socket in the state ``info``, set up as ``attempt`` says.

    Without an ``attempt`` (a socket fastopen did not make) the side is ``side`` (client if not
    given), and TFO is taken as attempted when ``TCP_INFO`` shows a trace of it.
    """
    rtt = info.rtt_us / 1e6 if info.rtt_us else None
    cwnd = info.snd_cwnd or None
    ssthresh = info.snd_ssthresh if info.snd_ssthresh < INFINITE_SSTHRESH else None
    side = attempt.side if attempt else (side or Side.CLIENT)
    off = attempt.off_reason if attempt else None
    if side is Side.SERVER:
        child, data = info.tfo_child, info.syn_data
        return TfoReport(
            side=side,
            attempted=child or data,
            syn_data_acked=data,
            off_reason=off,
            tfo_child=child,
            syn_data_received=data,
            rtt=rtt,
            cwnd=cwnd,
            ssthresh=ssthresh,
        )
    if off is not None:
        return TfoReport(
            side=side,
            attempted=False,
            cookie_requested=False,
            syn_data_sent=False,
            fail_reason=FailReason.TFO_OFF,
            off_reason=off,
            rtt=rtt,
            cwnd=cwnd,
            ssthresh=ssthresh,
            note=attempt.note if attempt else None,
        )
    fail = info.fastopen_client_fail
    acked = info.syn_data
    attempted = attempt.attempted if attempt else (acked or fail != 0)
    if acked:
        fail_reason = None
    elif attempt is not None and not attempt.first_flight and fail in (0, 1):
        fail_reason = FailReason.NO_DATA
    else:
        fail_reason = _CLIENT_FAIL.get(fail, FailReason.NOT_SENT)
    return TfoReport(
        side=side,
        attempted=attempted,
        cookie_requested=fail == 1,
        syn_data_sent=acked or fail in (2, 3),
        syn_data_acked=acked,
        fail_reason=fail_reason if attempted else FailReason.TFO_OFF,
        rtt=rtt,
        cwnd=cwnd,
        ssthresh=ssthresh,
    )


_learned: weakref.WeakSet[socket.socket] = weakref.WeakSet()
#: ``TCP_SYN_SENT``: the handshake is not over, so there is nothing to learn yet.
_SYN_SENT = 2


def report(sock: socket.socket, *, via: socket.socket | None = None) -> TfoReport:
    """What TFO did on ``sock`` (a kernel TCP socket), read from ``TCP_INFO`` now.

    Any socket will do, whoever made it: one accepted by another server (gunicorn, uvicorn,
    ``socket.create_server``) is recognised as the server's end by the kernel's own state.
    ``via`` is another descriptor of the same socket to read from (a duplicate held while a
    library closes ``sock``). The first report of a client socket after its handshake also
    teaches the path cache (:func:`fastopen.kernel.pathcache.learn`) what became of its SYN data.
    """
    live = sock if via is None else via
    info = tcpinfo.read(live)
    attempt = recall(sock)
    built = build_report(info, attempt, None if attempt else side_of(live, info))
    if (
        attempt is not None
        and attempt.side is Side.CLIENT
        and attempt.peer
        and info.state != _SYN_SENT
        and sock not in _learned
    ):
        _learned.add(sock)
        pathcache.learn(built, attempt.peer, syn_retransmitted=info.total_retrans > 0)
    return built
