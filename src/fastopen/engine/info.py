"""What ``getsockopt(TCP_INFO)`` would show for an engine connection, with Linux's tcpi_* names,
and the chronograph of its busy and limited times (Linux tcp_chrono_start / tcp_chrono_stop)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fastopen.engine.cc import HZ


class FastOpenClientFail(enum.IntEnum):
    """``tcpi_fastopen_client_fail`` (Linux ``enum tfo_client_fail``)."""

    UNSPEC = 0
    COOKIE_UNAVAILABLE = 1
    DATA_NOT_ACKED = 2
    SYN_RETRANSMITTED = 3


def jiffies(now: float) -> int:
    """``now`` in jiffies (Linux tcp_jiffies32, at the engine's HZ)."""
    return int(now * HZ)


def since_ms(now: float, then: float) -> int:
    """Linux jiffies_to_msecs(tcp_jiffies32 - then), as tcp_get_info's tcpi_last_* fields."""
    return (jiffies(now) - jiffies(then)) * 1000 // HZ


class ChronoType(enum.IntEnum):
    """Linux ``enum tcp_chrono``: what the sender is doing; a higher one takes precedence."""

    UNSPEC = 0
    BUSY = 1  # data in flight or waiting to be sent
    RWND_LIMITED = 2  # the peer's window stopped it
    SNDBUF_LIMITED = 3  # the writer waits for room and everything queued was sent


class Chrono:
    """Linux tp->chrono_type, chrono_start and chrono_stat[]: jiffies spent in each
    :class:`ChronoType` (tcp_chrono_set), shown as tcpi_busy_time, tcpi_rwnd_limited and
    tcpi_sndbuf_limited. A connection makes one when its first chronograph starts."""

    __slots__ = ("busy", "kind", "rwnd", "sndbuf", "start_at")

    def __init__(self) -> None:
        self.kind = ChronoType.UNSPEC
        self.start_at = 0  # jiffies
        self.busy = self.rwnd = self.sndbuf = 0  # jiffies

    def _set(self, new: ChronoType, now: float) -> None:
        """Linux tcp_chrono_set: the current one's time is added up, ``new`` starts now."""
        at = jiffies(now)
        kind = self.kind
        if kind is ChronoType.BUSY:
            self.busy += at - self.start_at
        elif kind is ChronoType.RWND_LIMITED:
            self.rwnd += at - self.start_at
        elif kind is ChronoType.SNDBUF_LIMITED:
            self.sndbuf += at - self.start_at
        self.start_at = at
        self.kind = new

    def start(self, kind: ChronoType, now: float) -> None:
        """Linux tcp_chrono_start: ``kind`` starts unless a higher one runs."""
        if kind > self.kind:
            self._set(kind, now)

    def stop(self, kind: ChronoType, now: float, queues_empty: bool) -> None:
        """Linux tcp_chrono_stop: with nothing left to send or acknowledge the clock stops;
        else, when ``kind`` is the one running, the sender is back to busy."""
        if queues_empty:
            self._set(ChronoType.UNSPEC, now)
        elif kind == self.kind:
            self._set(ChronoType.BUSY, now)

    def stats_us(self, now: float) -> tuple[int, int, int]:
        """Linux tcp_get_info_chrono_stats: (tcpi_busy_time, the total of all three,
        tcpi_rwnd_limited, tcpi_sndbuf_limited), in microseconds, the running one up to now."""
        running = jiffies(now) - self.start_at
        kind = self.kind
        busy = self.busy + (running if kind is ChronoType.BUSY else 0)
        rwnd = self.rwnd + (running if kind is ChronoType.RWND_LIMITED else 0)
        sndbuf = self.sndbuf + (running if kind is ChronoType.SNDBUF_LIMITED else 0)
        us = 1_000_000 // HZ
        return (busy + rwnd + sndbuf) * us, rwnd * us, sndbuf * us


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """A snapshot of one connection; times in microseconds as Linux reports them."""

    tcpi_state: int
    tcpi_ca_state: int
    tcpi_retransmits: int
    tcpi_probes: int
    tcpi_backoff: int
    tcpi_options: int
    tcpi_snd_wscale: int
    tcpi_rcv_wscale: int
    tcpi_fastopen_client_fail: int
    tcpi_rto: int
    tcpi_ato: int
    tcpi_snd_mss: int
    tcpi_rcv_mss: int
    tcpi_unacked: int
    tcpi_sacked: int
    tcpi_reordering: int
    tcpi_lost: int
    tcpi_retrans: int
    tcpi_rtt: int
    tcpi_rttvar: int
    tcpi_snd_ssthresh: int
    tcpi_snd_cwnd: int
    tcpi_advmss: int
    tcpi_rcv_space: int
    tcpi_total_retrans: int
    tcpi_bytes_acked: int
    tcpi_bytes_received: int
    tcpi_segs_out: int
    tcpi_segs_in: int
    tcpi_data_segs_in: int
    tcpi_data_segs_out: int
    tcpi_snd_wnd: int
    tcpi_rcv_wnd: int
    tcpi_delivered: int
    tcpi_delivered_ce: int
    #: milliseconds since data last left, data last came, an ACK last came
    tcpi_last_data_sent: int
    tcpi_last_data_recv: int
    tcpi_last_ack_recv: int
    #: microseconds busy (sending or waiting to), of which limited by the peer's window and
    #: by the send buffer
    tcpi_busy_time: int
    tcpi_rwnd_limited: int
    tcpi_sndbuf_limited: int
    tcpi_delivery_rate: int
    tcpi_delivery_rate_app_limited: int
    #: times data was found delivered out of order (Linux tp->reord_seen)
    tcpi_reord_seen: int
