"""The TCP Fast Open fields of Linux ``struct tcp_info`` (``getsockopt(IPPROTO_TCP, TCP_INFO)``)."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Protocol

from fastopen.kernel.constants import TCP_INFO, TCPI_OPT_SYN_DATA, TCPI_OPT_TFO_CHILD

# u8 state, ca_state, retransmits, probes, backoff, options, wscales, flags (bit 0
# delivery_rate_app_limited, bits 1-2 fastopen_client_fail); then 24 u32 up to tcpi_total_retrans.
_LAYOUT = struct.Struct("=8B24I")
SIZE = _LAYOUT.size  # 104
#: tcpi_pacing_rate, tcpi_max_pacing_rate, tcpi_bytes_acked (u64 each; Linux 4.1+).
_BYTES_ACKED = struct.Struct("=16xQ")
#: What :func:`read` asks for: up to tcpi_bytes_acked.
READ_SIZE = SIZE + _BYTES_ACKED.size  # 128
_RTT = 8 + 15  # index of tcpi_rtt (microseconds) among the unpacked fields
_TOTAL_RETRANS = 8 + 23
TCP_CLOSE = 7


class HasSockopt(Protocol):
    """A socket, or asyncio's TransportSocket wrapper of one."""

    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


@dataclass(frozen=True, slots=True)
class TcpInfo:
    """The parts of ``struct tcp_info`` that tell what TFO did."""

    state: int
    options: int
    fastopen_client_fail: int
    rtt_us: int
    total_retrans: int
    #: Bytes (SYN included) the peer acknowledged; None where the kernel does not say.
    bytes_acked: int | None = None

    @property
    def syn_data(self) -> bool:
        """Client: all SYN data acknowledged; server: SYN data accepted (TCPI_OPT_SYN_DATA)."""
        return bool(self.options & TCPI_OPT_SYN_DATA)

    @property
    def tfo_child(self) -> bool:
        """Server (Linux 6.16+): created from a valid cookie, with or without data."""
        return bool(self.options & TCPI_OPT_TFO_CHILD)

    @property
    def handshake_failed(self) -> bool:
        """The connection is closed and the peer never acknowledged its SYN: its connect failed
        (False where the kernel does not tell ``tcpi_bytes_acked``)."""
        return self.state == TCP_CLOSE and self.bytes_acked == 0

    @classmethod
    def parse(cls, raw: bytes) -> TcpInfo:
        """Parse a ``TCP_INFO`` answer (at least :data:`SIZE` bytes)."""
        if len(raw) < SIZE:
            raise ValueError(f"TCP_INFO gave {len(raw)} bytes, at least {SIZE} expected")
        fields = _LAYOUT.unpack_from(raw)
        return cls(
            state=fields[0],
            options=fields[5],
            fastopen_client_fail=(fields[7] >> 1) & 0x3,
            rtt_us=fields[_RTT],
            total_retrans=fields[_TOTAL_RETRANS],
            bytes_acked=_BYTES_ACKED.unpack_from(raw, SIZE)[0] if len(raw) >= READ_SIZE else None,
        )


def read(sock: HasSockopt) -> TcpInfo:
    """``TCP_INFO`` of a connected (or connecting) TCP socket."""
    return TcpInfo.parse(sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, READ_SIZE))
