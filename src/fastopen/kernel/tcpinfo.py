"""The TCP Fast Open fields of Linux ``struct tcp_info`` (``getsockopt(IPPROTO_TCP, TCP_INFO)``)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Protocol

from fastopen.constants import TCP_INFO, TCPI_OPT_SYN_DATA, TCPI_OPT_TFO_CHILD

# u8 state, ca_state, retransmits, probes, backoff, options, wscales, flags (bit 0
# delivery_rate_app_limited, bits 1-2 fastopen_client_fail); then 24 u32 up to tcpi_total_retrans.
_LAYOUT = struct.Struct("=8B24I")
SIZE = _LAYOUT.size  # 104
_RTT = 8 + 15  # index of tcpi_rtt (microseconds) among the unpacked fields
_SND_SSTHRESH = 8 + 17
_SND_CWND = 8 + 18
#: Linux TCP_INFINITE_SSTHRESH: no loss, no HyStart exit yet (initial slow start).
INFINITE_SSTHRESH = 0x7FFFFFFF
_TOTAL_RETRANS = 8 + 23


class HasSockopt(Protocol):
    """A socket, or asyncio's TransportSocket wrapper of one."""

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """The parts of ``struct tcp_info`` that tell what TFO did, and the congestion window."""

    state: int
    options: int
    fastopen_client_fail: int
    rtt_us: int
    total_retrans: int
    snd_cwnd: int
    snd_ssthresh: int

    @property
    def syn_data(self) -> bool:
        """Client: all SYN data acknowledged; server: SYN data accepted (TCPI_OPT_SYN_DATA)."""
        return bool(self.options & TCPI_OPT_SYN_DATA)

    @property
    def tfo_child(self) -> bool:
        """Server (Linux 6.16+): created from a valid cookie, with or without data."""
        return bool(self.options & TCPI_OPT_TFO_CHILD)

    @classmethod
    def parse(cls, raw: bytes) -> TcpInfo:
        """Parse the first :data:`SIZE` bytes of a ``TCP_INFO`` answer."""
        if len(raw) < SIZE:
            raise ValueError(f"TCP_INFO gave {len(raw)} bytes, at least {SIZE} expected")
        fields = _LAYOUT.unpack_from(raw)
        return cls(
            state=fields[0],
            options=fields[5],
            fastopen_client_fail=(fields[7] >> 1) & 0x3,
            rtt_us=fields[_RTT],
            total_retrans=fields[_TOTAL_RETRANS],
            snd_cwnd=fields[_SND_CWND],
            snd_ssthresh=fields[_SND_SSTHRESH],
        )


def read(sock: HasSockopt) -> TcpInfo:
    """``TCP_INFO`` of a connected (or connecting) TCP socket."""
    return TcpInfo.parse(sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, SIZE))
