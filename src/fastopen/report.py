"""What TCP Fast Open did on one connection: a typed, stack-neutral report.

The kernel stack fills it from ``TCP_INFO`` (:func:`fastopen.report`); a userspace stack fills it
from its own connection state. Both hand it out as ``writer.get_extra_info("fastopen")``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any


class Side(enum.Enum):
    """Which end of the connection the report describes."""

    CLIENT = "client"
    SERVER = "server"


class FailReason(enum.Enum):
    """Why the first flight did not ride in the SYN (or was not acknowledged there)."""

    #: No cookie was cached for this server: the SYN carried a cookie request, the data went
    #: after the handshake (Linux ``tcpi_fastopen_client_fail`` = 1); the next connection can
    #: use it.
    NO_COOKIE = "no-cookie"
    #: The SYN carried data but the SYN-ACK acknowledged only the SYN (a stale or rejected cookie,
    #: a server with TFO off, a middlebox); the data was sent again (``client_fail`` = 2).
    DATA_NOT_ACKED = "data-not-acked"
    #: The SYN with data was lost and retransmitted without data (``client_fail`` = 3).
    SYN_RETRANSMITTED = "syn-retransmitted"
    #: TFO was switched on but the kernel put no data in the SYN (client TFO disabled by the
    #: kernel's blackhole detection, for instance).
    NOT_SENT = "not-sent"
    #: The caller had no data for the SYN (no first flight): it carried the cookie, or asked
    #: for one (:attr:`TfoReport.cookie_requested`), and nothing else.
    NO_DATA = "no-data"
    #: TFO was not even tried: see :attr:`TfoReport.off_reason`.
    TFO_OFF = "tfo-off"


class OffReason(enum.Enum):
    """Why TFO was not tried at all on this connection."""

    #: The caller gave no first flight, so nothing was declared safe to replay (the userspace
    #: stack; the kernel's still sends the cookie or a cookie request then).
    NO_FIRST_FLIGHT = "no-first-flight"
    #: The first request is not safe to replay (an HTTP method other than GET, HEAD, OPTIONS).
    NOT_REPLAY_SAFE = "not-replay-safe"
    #: The caller switched TFO off (``fastopen=False``).
    DISABLED_BY_CALLER = "disabled-by-caller"
    #: ``net.ipv4.tcp_fastopen`` lacks the client bit (0x1) in this network namespace.
    CLIENT_SYSCTL_OFF = "client-sysctl-off"
    #: ``net.ipv4.tcp_fastopen`` lacks the server bit (0x2) in this network namespace.
    SERVER_SYSCTL_OFF = "server-sysctl-off"
    #: The kernel has neither TCP_FASTOPEN_CONNECT nor MSG_FASTOPEN.
    KERNEL_UNSUPPORTED = "kernel-unsupported"
    #: SYN data failed on this path before; TFO is off on it until a backoff has passed
    #: (:mod:`fastopen.kernel.pathcache`; :attr:`TfoReport.note` says how often and how long).
    PATH_BLOCKED = "path-blocked"


_OFF_TEXT = {
    OffReason.NO_FIRST_FLIGHT: "no first flight was declared safe to replay",
    OffReason.NOT_REPLAY_SAFE: "the request is not safe to replay, so it never goes in a SYN",
    OffReason.DISABLED_BY_CALLER: "switched off by the caller",
    OffReason.CLIENT_SYSCTL_OFF: "client TFO is off (net.ipv4.tcp_fastopen lacks bit 0x1)",
    OffReason.SERVER_SYSCTL_OFF: "server TFO is off (net.ipv4.tcp_fastopen lacks bit 0x2)",
    OffReason.KERNEL_UNSUPPORTED: "this kernel has no TCP Fast Open",
    OffReason.PATH_BLOCKED: "TFO skipped: SYN data failed on this path before",
}

_FAIL_TEXT = {
    FailReason.NO_COOKIE: "no cookie cached yet: the SYN requested one, the data followed it",
    FailReason.DATA_NOT_ACKED: "the server did not acknowledge the SYN data (data sent again)",
    FailReason.SYN_RETRANSMITTED: "the SYN was retransmitted, without its data",
    FailReason.NOT_SENT: "the kernel sent no data in the SYN (TFO blackhole detection?)",
    FailReason.NO_DATA: "no first flight: the SYN carried no data",
    FailReason.TFO_OFF: "TFO not tried",
}


def _yes(value: bool | None) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


@dataclass(frozen=True, slots=True)
class TfoReport:
    """What TFO did on one connection, as one end saw it.

    Client: ``attempted`` (TFO was switched on for the connect), ``cookie_requested`` (the SYN
    asked for a cookie), ``syn_data_sent`` and ``syn_data_acked`` (the first flight rode in the
    SYN and the server acknowledged all of it), ``fail_reason`` when it did not.
    Server: ``tfo_child`` (the connection was created from a valid cookie), ``syn_data_received``
    (data arrived in the SYN and was accepted); ``attempted`` is true when either holds.
    A field a stack cannot know on this side is ``None``. ``rtt`` is the smoothed RTT in seconds;
    ``cwnd`` and ``ssthresh`` the congestion window and slow-start threshold in segments
    (``tcpi_snd_cwnd``, ``tcpi_snd_ssthresh``; ``ssthresh`` None while slow start has not ended).
    With a replay guard (server), ``replay_suspected`` tells whether this connection's first
    flight was delivered before (``replay_first_server`` recorded it); None without a guard.
    """

    side: Side
    attempted: bool
    cookie_requested: bool | None = None
    syn_data_sent: bool | None = None
    syn_data_acked: bool = False
    fail_reason: FailReason | None = None
    off_reason: OffReason | None = None
    tfo_child: bool = False
    syn_data_received: bool = False
    rtt: float | None = None
    cwnd: int | None = None
    ssthresh: int | None = None
    stack: str = "kernel"
    #: More about :attr:`off_reason` (the path cache's count and backoff), or None.
    note: str | None = None
    replay_suspected: bool | None = None
    replay_first_server: str | None = None

    def with_replay(self, suspected: bool, first_server: str | None = None) -> TfoReport:
        """This report with a replay guard's verdict."""
        return replace(self, replay_suspected=suspected, replay_first_server=first_server)

    @property
    def used(self) -> bool:
        """Data rode in the SYN and was accepted (the round trip TFO exists to save was saved)."""
        if self.side is Side.CLIENT:
            return self.syn_data_acked
        return self.syn_data_received

    def __str__(self) -> str:
        rtt = "" if self.rtt is None else f", rtt {self.rtt * 1000:.3f} ms"
        if self.cwnd is not None:
            rtt += f", cwnd {self.cwnd}"
            if self.ssthresh is not None:
                rtt += f", ssthresh {self.ssthresh}"
        if self.off_reason is not None:
            why = self.note or _OFF_TEXT[self.off_reason]
            return f"TFO off ({self.side.value}): {why}{rtt}"
        if self.side is Side.SERVER:
            replay = ""
            if self.replay_suspected:
                first = self.replay_first_server
                replay = ", replay suspected" + (f" (first delivered by {first})" if first else "")
            return (
                f"TFO server: came in by TFO {_yes(self.tfo_child)}, "
                f"SYN data received {_yes(self.syn_data_received)}{replay}{rtt}"
            )
        text = (
            f"TFO client: cookie requested {_yes(self.cookie_requested)}, "
            f"SYN data acknowledged {_yes(self.syn_data_acked)}"
        )
        if self.fail_reason is not None:
            text += f" ({_FAIL_TEXT[self.fail_reason]})"
        return text + rtt

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (enums as their string values)."""
        return {
            "side": self.side.value,
            "stack": self.stack,
            "attempted": self.attempted,
            "cookie_requested": self.cookie_requested,
            "syn_data_sent": self.syn_data_sent,
            "syn_data_acked": self.syn_data_acked,
            "fail_reason": None if self.fail_reason is None else self.fail_reason.value,
            "off_reason": None if self.off_reason is None else self.off_reason.value,
            "tfo_child": self.tfo_child,
            "syn_data_received": self.syn_data_received,
            "rtt": self.rtt,
            "cwnd": self.cwnd,
            "ssthresh": self.ssthresh,
            "note": self.note,
            "replay_suspected": self.replay_suspected,
            "replay_first_server": self.replay_first_server,
        }
