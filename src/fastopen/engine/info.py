"""What ``getsockopt(TCP_INFO)`` would show for an engine connection, with Linux's tcpi_* names."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FastOpenClientFail(enum.IntEnum):
    """``tcpi_fastopen_client_fail`` (Linux ``enum tfo_client_fail``)."""

    UNSPEC = 0
    COOKIE_UNAVAILABLE = 1
    DATA_NOT_ACKED = 2
    SYN_RETRANSMITTED = 3


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
    tcpi_delivery_rate: int
    tcpi_delivery_rate_app_limited: int
