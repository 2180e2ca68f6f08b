"""What fastopen asked of the kernel for each socket, and the TFO report built from it.

``TCP_INFO`` tells what the kernel did; it cannot tell why TFO was not even tried (no first flight,
a request not safe to replay, the sysctl bit clear). fastopen records that per socket here, so
:func:`report` can say both.
"""

from __future__ import annotations

import socket
import weakref
from dataclasses import dataclass
from typing import Any

from fastopen.kernel import pathcache, tcpinfo
from fastopen.kernel.tcpinfo import TcpInfo
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


_attempts: weakref.WeakKeyDictionary[socket.socket, Attempt] = weakref.WeakKeyDictionary()


def remember(sock: socket.socket, attempt: Attempt) -> None:
    """Record how ``sock`` was set up (kept as long as the socket object lives)."""
    _attempts[sock] = attempt


def recall(sock: socket.socket) -> Attempt | None:
    return _attempts.get(sock)


def build_report(info: TcpInfo, attempt: Attempt | None) -> TfoReport:
    """The report for a socket in the state ``info``, set up as ``attempt`` says.

    Without an ``attempt`` (a socket fastopen did not make) the socket is taken as a client, and
    TFO as attempted when ``TCP_INFO`` shows a trace of it.
    """
    rtt = info.rtt_us / 1e6 if info.rtt_us else None
    side = attempt.side if attempt else Side.CLIENT
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
            note=attempt.note if attempt else None,
        )
    fail = info.fastopen_client_fail
    acked = info.syn_data
    attempted = attempt.attempted if attempt else (acked or fail != 0)
    fail_reason = None if acked else _CLIENT_FAIL.get(fail, FailReason.NOT_SENT)
    return TfoReport(
        side=side,
        attempted=attempted,
        cookie_requested=fail == 1,
        syn_data_sent=acked or fail in (2, 3),
        syn_data_acked=acked,
        fail_reason=fail_reason if attempted else FailReason.TFO_OFF,
        rtt=rtt,
    )


_learned: weakref.WeakSet[socket.socket] = weakref.WeakSet()
#: ``TCP_SYN_SENT``: the handshake is not over, so there is nothing to learn yet.
_SYN_SENT = 2


def report(sock: socket.socket) -> TfoReport:
    """What TFO did on ``sock`` (a kernel TCP socket), read from ``TCP_INFO`` now.

    The first report of a client socket after its handshake also teaches the path cache
    (:func:`fastopen.kernel.pathcache.learn`) what became of its SYN data.
    """
    info, attempt = tcpinfo.read(sock), recall(sock)
    built = build_report(info, attempt)
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
