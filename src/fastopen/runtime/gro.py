"""GRO in software: the segments of one read batch joined as Linux's GRO joins a NAPI poll's.

A TUN device hands the stack the packets the kernel forwards to it one by one (it coalesces only
what the namespace's own TCP sent as one TSO packet): a bulk transfer from another host arrives
as one packet per MSS. Linux's receive path merges such runs before TCP sees them
(``napi_gro_receive``, ``dev_gro_receive``, ``tcp_gro_receive`` in net/ipv4/tcp_offload.c), so
TCP makes one pass, and one ACK, for up to 64 KB: :class:`Gro` does that over the packets the
stack reads in one wake-up, then hands each run to the engine as one coalesced segment
(``Host.receive_segment(..., segs)``, as a GRO packet of the device's own comes).
"""

from __future__ import annotations

from collections.abc import Callable

from fastopen.engine.cache import IPAddress
from fastopen.runtime.tun import GSO_MAX_SIZE, HEADROOM
from fastopen.wire import Flags, TcpSegment

#: Flags that may differ within a run (tcp_gro_receive masks them out of its comparison).
_MAY_DIFFER = int(Flags.CWR | Flags.FIN | Flags.PSH)
#: Flags that end a run on the segment carrying them (tcp_gro_receive's final flush).
_ENDS_RUN = int(Flags.URG | Flags.PSH | Flags.RST | Flags.SYN | Flags.FIN)
_CWR = int(Flags.CWR)
_LAST_FLAGS = int(Flags.FIN | Flags.PSH)

Deliver = Callable[[IPAddress, IPAddress, TcpSegment, float, int], None]


class Gro:
    """Joins runs of received segments of one flow, as Linux's ``tcp_gro_receive`` would, and
    passes each to ``deliver(src, dst, segment, now, segs)``: a segment as it came (``segs``
    1), or a run as one segment of ``segs`` segments, in the order they came.

    A run is held while it may grow: segments with payload, at the sequence number after the
    run's, with the same ports, addresses, flags (CWR, FIN and PSH aside), window, ACK and
    options (timestamps included, byte for byte in Linux), none longer than the first, and
    all of it within 64 KB. A segment with URG, PSH, RST, SYN or FIN, or shorter than the
    first, ends the run it joins; a CWR one starts a new one; one that does not fit delivers
    the held run and starts its own. One flow is held at a time (Linux holds up to eight):
    another flow's segment delivers the run first, so the order of all segments is kept.
    :meth:`flush` delivers what is held, at the end of the batch (Linux's ``napi_gro_flush``).
    """

    __slots__ = (
        "_deliver",
        "_dst",
        "_end",
        "_first",
        "_flags",
        "_now",
        "_parts",
        "_size",
        "_src",
        "_total",
    )

    def __init__(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._first: TcpSegment | None = None
        self._src: IPAddress | None = None
        self._dst: IPAddress | None = None
        self._parts: list[bytes] = []
        self._flags = 0
        self._size = 0
        self._total = 0
        self._end = 0
        self._now = 0.0

    def add(self, src: IPAddress, dst: IPAddress, seg: TcpSegment, now: float) -> None:
        """A segment read from the device at ``now`` (its checksum verified), ``src`` to
        ``dst``."""
        payload = seg.payload
        length = len(payload)
        flags = int(seg.flags)
        first = self._first
        if first is not None:
            if (
                src is self._src
                and dst is self._dst
                and seg.seq == self._end
                and 0 < length <= self._size
                and not flags & _CWR
                and (flags ^ self._flags) & ~_MAY_DIFFER == 0
                and seg.ack == first.ack
                and seg.window == first.window
                and seg.src_port == first.src_port
                and seg.dst_port == first.dst_port
                and seg.reserved == first.reserved
                and seg.options == first.options
                and self._total + length <= GSO_MAX_SIZE - HEADROOM
            ):
                self._parts.append(payload)
                self._total += length
                self._end = (self._end + length) & 0xFFFFFFFF
                self._flags |= flags & _LAST_FLAGS
                if length < self._size or flags & _ENDS_RUN:
                    self.flush()
                return
            self.flush()
        if not length or flags & _ENDS_RUN or seg.urgent:
            self._deliver(src, dst, seg, now, 1)
            return
        self._first, self._src, self._dst, self._now = seg, src, dst, now
        self._parts = [payload]
        self._flags = flags
        self._size = self._total = length
        self._end = (seg.seq + length) & 0xFFFFFFFF

    def flush(self) -> None:
        """Deliver the run held, if any: one segment as it came, or the run joined."""
        first = self._first
        if first is None:
            return
        src, dst, parts = self._src, self._dst, self._parts
        self._first = self._src = self._dst = None
        self._parts = []
        assert src is not None and dst is not None
        if len(parts) == 1:
            self._deliver(src, dst, first, self._now, 1)
            return
        joined = TcpSegment(
            first.src_port,
            first.dst_port,
            first.seq,
            first.ack,
            Flags(self._flags),
            first.window,
            first.options,
            b"".join(parts),
            0,
            first.reserved,
        )
        self._deliver(src, dst, joined, self._now, len(parts))
