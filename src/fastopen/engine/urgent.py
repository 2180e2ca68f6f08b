"""TCP urgent data (RFC 9293 3.8.5, BSD's reading of the pointer) as Linux has it: the
urgent pointer of a MSG_OOB send (tcp_mark_urg, written by tcp_transmit_skb) and of what
arrives (tcp_check_urg, tcp_urg), the out-of-band byte (recv MSG_OOB: tcp_recv_urg;
SO_OOBINLINE leaves it in the stream) and the mark reads stop at (tcp_recvmsg, tcp_read_sock,
SIOCATMARK).

A connection holds an :class:`Urgent` only while it has urgent data to send or to read; the
others hold None.
"""

from __future__ import annotations

from fastopen.engine.seq import MASK, seq_lt

#: Linux tp->urg_data: a pointer seen, its byte not yet (TCP_URG_NOTYET); the byte is here
#: (TCP_URG_VALID, ORed with it); it was read with MSG_OOB (TCP_URG_READ).
URG_NOTYET, URG_VALID, URG_READ = 0x200, 0x100, 0x400


class Urgent:
    """Linux tp->urg_seq and tp->urg_data (received urgent data: ``data`` 0 when none) and
    tp->snd_up (the urgent pointer to send; None when not in urgent mode)."""

    __slots__ = ("data", "seq", "snd_up")

    def __init__(self) -> None:
        self.seq = 0
        self.data = 0
        self.snd_up: int | None = None

    @property
    def idle(self) -> bool:
        """Nothing urgent either way: the connection can drop it."""
        return not self.data and self.snd_up is None


def check_urg(
    urg: Urgent | None, seq: int, pointer: int, copied_seq: int, rcv_nxt: int
) -> Urgent | None:
    """Linux tcp_check_urg for a segment at ``seq`` with URG and ``pointer``: the urgent byte
    is the one before seq + pointer (tcp_stdurg 0); one already read or before RCV.NXT, or
    not past the one known, changes nothing. Returns the (maybe new) state."""
    ptr = (seq + pointer - (1 if pointer else 0)) & MASK
    if seq_lt(ptr, copied_seq) or seq_lt(ptr, rcv_nxt):
        return urg
    if urg is not None and urg.data and not seq_lt(urg.seq, ptr):
        return urg
    if urg is None:
        urg = Urgent()
    urg.data = URG_NOTYET
    urg.seq = ptr
    return urg


def take_byte(urg: Urgent, seq: int, payload: bytes) -> None:
    """Linux tcp_urg: the urgent byte, when this segment (at ``seq``, data from its first
    byte) carries it."""
    if urg.data == URG_NOTYET:
        offset = (urg.seq - seq) & MASK
        if offset < len(payload):
            urg.data = URG_VALID | payload[offset]


def read_limit(
    urg: Urgent, copied_seq: int, n: int, queued: int, *, inline: bool, splice: bool
) -> tuple[int, int]:
    """How a read of ``n`` bytes at ``copied_seq`` with ``queued`` bytes meets the mark:
    ``(skip, n)``, the urgent byte left out when a read starts at it (tcp_recvmsg, not
    SO_OOBINLINE), then at most ``n`` bytes, none past a mark ahead; a splice (tcp_read_sock)
    stops at the mark whatever SO_OOBINLINE says, so at it reads nothing."""
    if not urg.data:
        return 0, n
    offset = (urg.seq - copied_seq) & MASK
    if offset >= queued:
        return 0, n
    if offset:
        return 0, min(n, offset)
    if splice:
        return 0, 0
    return (0, n) if inline else (1, n)
