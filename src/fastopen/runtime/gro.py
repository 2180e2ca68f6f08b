"""GRO in software: the segments of one read batch joined as Linux's GRO joins a NAPI poll's.

A TUN device hands the stack the packets the kernel forwards to it one by one (it coalesces only
what the namespace's own TCP sent as one TSO packet): a bulk transfer from another host arrives
as one packet per MSS. Linux's receive path merges such runs before TCP sees them
(``napi_gro_receive``, ``dev_gro_receive``, ``tcp_gro_receive`` in net/ipv4/tcp_offload.c), so
TCP makes one pass, and one ACK, for up to 64 KB: :class:`Gro` does that over the packets the
stack reads in one wake-up, then hands each run to the engine as one coalesced segment
(``Host.receive_segment(..., segs)``, as a GRO packet of the device's own comes).

It also filters ACKs as Linux's CAKE qdisc does with ``ack-filter`` (``cake_ack_filter`` in
net/sched/sch_cake.c): a pure ACK that the next segment of the batch, a pure ACK of the same
flow, makes redundant (it acknowledges as much or more, SACKs all it SACKed, and more when the
ACK is the same, with the same ECN flags and timestamps no older) never reaches TCP, which sees
the later one as a stretch ACK. A stack that is behind reads its ACKs in bunches: this spares it
a pass per ACK that would tell it nothing new. Duplicate ACKs, window updates and ACKs with
other options all go through; so do ACKs with SACK blocks (and the one before such an ACK)
until the batch has brought more than :data:`BEHIND` segments: each moves the loss state
machine, which Linux runs ACK by ACK (on the first duplicate ACKs of a loss, in Disorder, the
window's room goes as new data; recovery starts at the one that makes the loss certain; CAKE's
rules would hand TCP only the last, and the sender go into recovery without sending that
data); a stack that far behind takes them by CAKE's rules. The common pure ACK (IPv4,
timestamps its only option) is filtered from its bytes, against the one held, without being
parsed.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from fastopen.engine.cache import IPAddress
from fastopen.engine.seq import seq_le, seq_lt
from fastopen.runtime.tun import GSO_MAX_SIZE, HEADROOM
from fastopen.wire import (
    IPV4_HEADER_LEN,
    PROTO_TCP,
    Eol,
    Flags,
    Nop,
    Sack,
    TcpSegment,
    Timestamps,
    words,
)

#: Segments of one read batch after which its ACKs with SACK blocks are filtered too (the stack
#: is behind: CAKE's rules), where before each reaches TCP.
BEHIND = 8
#: Flags that may differ within a run (tcp_gro_receive masks them out of its comparison).
_MAY_DIFFER = int(Flags.CWR | Flags.FIN | Flags.PSH)
#: Flags that end a run on the segment carrying them (tcp_gro_receive's final flush).
_ENDS_RUN = int(Flags.URG | Flags.PSH | Flags.RST | Flags.SYN | Flags.FIN)
_CWR = int(Flags.CWR)
_LAST_FLAGS = int(Flags.FIN | Flags.PSH)
#: The flags of a pure ACK the filter may drop, less ECN's (cake_tcph_may_drop: ACK alone).
_ECN_FLAGS = int(Flags.ECE | Flags.CWR)
_ACK = int(Flags.ACK)
_ONES = 0xFFFF
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_TS = struct.Struct("!II")
#: A pure ACK that :meth:`Gro.join` may filter from its bytes: IPv4 without options, 52 bytes,
#: TCP header of 32 bytes with ACK alone, urgent pointer 0, then NOP, NOP, timestamps.
_FAST_LEN = IPV4_HEADER_LEN + 32
_FAST_TCP = b"\x80\x10"  # data offset 8, no reserved bits; ACK
_FAST_OPTIONS = b"\x00\x00\x01\x01\x08\x0a"  # urgent pointer; NOP, NOP, kind 8 length 10
_HALF = 0x80000000

Deliver = Callable[[IPAddress, IPAddress, TcpSegment, float, int], None]
Held = tuple[IPAddress, IPAddress, TcpSegment, float]


def _redundant(old: TcpSegment, new: TcpSegment, sack: bool) -> bool:
    """``old``, a pure ACK of ``new``'s flow, tells TCP nothing ``new`` (a pure ACK that came
    after it) does not: cake_tcph_may_drop and cake_ack_filter's tests. Its options are only
    timestamps, SACK blocks and padding, its timestamps no later than ``new``'s; ``new``
    acknowledges as much and SACKs all it SACKed, and more when the ACK is the same. Without
    ``sack`` (the batch is short), an ACK with SACK blocks, or the one before it, never is."""
    if (
        old.flags != new.flags
        or old.reserved
        or old.ecn != new.ecn
        or old.src_port != new.src_port
        or old.dst_port != new.dst_port
        or seq_lt(new.ack, old.ack)
    ):
        return False
    old_blocks: tuple[tuple[int, int], ...] = ()
    for option in old.options:
        if isinstance(option, Timestamps):
            ts = new.timestamps
            if ts is None or seq_lt(ts.tsval, option.tsval) or seq_lt(ts.tsecr, option.tsecr):
                return False
        elif isinstance(option, Sack):
            old_blocks = option.blocks
        elif not isinstance(option, (Nop, Eol)):
            return False
    new_blocks = new.sack_blocks
    if not old_blocks and not new_blocks:
        return new.ack != old.ack  # the same ACK again is a duplicate: it counts
    if not sack:
        return False
    for start, end in old_blocks:
        if not any(seq_le(s, start) and seq_le(end, e) for s, e in new_blocks):
            return False
    if new.ack != old.ack:
        return True
    return sum((e - s) & 0xFFFFFFFF for s, e in new_blocks) > sum(
        (e - s) & 0xFFFFFFFF for s, e in old_blocks
    )


def _fast_ack(packet: bytes) -> bool:
    """``packet`` is a pure ACK of the form :meth:`Gro.join` filters from its bytes."""
    return (
        len(packet) == _FAST_LEN
        and packet[0] == 0x45
        and packet[2:4] == b"\x00\x34"
        and not packet[6] & 0x3F
        and not packet[7]
        and packet.startswith(_FAST_TCP, 32)
        and packet.startswith(_FAST_OPTIONS, 38)
    )


def _pseudo(packet: bytes) -> int:
    """The sum of the pseudo-header of ``packet`` (IPv4), less the TCP length."""
    return int.from_bytes(packet[12:16], "big") + int.from_bytes(packet[16:20], "big") + PROTO_TCP


def _same_ip(packet: bytes, head: bytes) -> bool:
    """``packet`` (IPv4, or b"": not known) may join the run of ``head``'s as
    inet_gro_receive allows: the same TTL and DF (TOS is the segments' ``ecn``)."""
    return not packet or (packet[8] == head[8] and not (packet[6] ^ head[6]) & 0x40)


class Gro:
    """Joins runs of received segments of one flow, as Linux's ``tcp_gro_receive`` would, and
    passes each to ``deliver(src, dst, segment, now, segs)``: a segment as it came (``segs``
    1), or a run as one segment of ``segs`` segments, in the order they came.

    A run is held while it may grow: segments with payload, at the sequence number after the
    run's, with the same ports, addresses, IP ECN field (TOS), TTL and DF bit, flags
    (CWR, FIN and PSH aside), window, ACK and options (timestamps included, byte for byte in
    Linux), none longer than the first, and
    all of it within 64 KB. A segment with URG, PSH, RST, SYN or FIN, or shorter than the
    first, ends the run it joins; a CWR one starts a new one; one that does not fit delivers
    the held run and starts its own. One flow is held at a time (Linux holds up to eight):
    another flow's segment delivers the run first, so the order of all segments is kept.
    :meth:`flush` delivers what is held, at the end of the batch (Linux's ``napi_gro_flush``).

    A pure ACK is held too (``filtered`` counts those a later one made redundant, see the
    module docstring): the next segment either replaces it or has it delivered first. When it
    came as a plain IPv4 packet with timestamps alone, :meth:`join` replaces it with the next
    such ACK from that one's bytes (the segment delivered is made from the last one's values).

    A run started by :meth:`add` with its packet (IPv4 without options) takes the segments that
    follow in :meth:`join`, from their bytes: header against header, as tcp_gro_receive
    compares them, and the checksums verified, without parsing them.
    """

    __slots__ = (
        "_ack",
        "_acked",
        "_deliver",
        "_dst",
        "_end",
        "_ends",
        "_fast",
        "_fast_ack",
        "_fast_flow",
        "_fast_ip",
        "_fast_ip2",
        "_fast_now",
        "_fast_ts",
        "_fast_window",
        "_first",
        "_flags",
        "_head",
        "_headers",
        "_ip",
        "_ip2",
        "_now",
        "_options",
        "_parts",
        "_pseudo",
        "_seen",
        "_size",
        "_src",
        "_total",
        "_window",
        "filtered",
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
        #: The packet of the run's first segment when :meth:`join` may take the next ones.
        self._head: bytes | None = None
        self._headers = 0  # its IP and TCP headers' bytes
        #: Its header's bytes that the next ones' must equal (see :meth:`join`).
        self._ip = self._ip2 = self._ends = self._ack = self._window = self._options = b""
        #: The pseudo-header's sum, less the TCP length, of the run's first segment or of the
        #: pure ACK held (never both are held).
        self._pseudo = 0
        #: The pure ACK held, to be delivered unless the next segment makes it redundant.
        self._acked: Held | None = None
        #: Whether :meth:`join` may replace the pure ACK held from the next ACK's bytes; the
        #: header bytes those must equal (version to TOS; fragment bits to protocol; addresses,
        #: ports and sequence number); the values of the last that replaced it.
        self._fast = False
        self._fast_ip = self._fast_ip2 = self._fast_flow = b""
        self._fast_ack = self._fast_window = 0
        self._fast_ts = (0, 0)
        self._fast_now = 0.0
        #: Segments of this read batch so far (:meth:`end_batch` resets it).
        self._seen = 0
        self.filtered = 0

    def join(self, packet: bytes, now: float) -> bool:
        """``packet``, a whole IP packet read from the device at ``now``, joined to the run held
        when it is the run's next segment (what :meth:`add` would join, the IPv4 and TCP
        checksums right), or replacing the pure ACK held when it is a later one that makes it
        redundant (:meth:`_supersede`); else False, and nothing changed: it is to be parsed and
        given to :meth:`add`."""
        self._seen += 1
        head = self._head
        if head is None:
            return self._fast and self._supersede(packet, now)
        size = len(packet)
        headers = self._headers
        length = size - headers
        flags = packet[33] if size > 33 else 0
        if (
            length <= 0
            or length > self._size
            or self._total + length > GSO_MAX_SIZE - HEADROOM
            or (flags ^ self._flags) & ~_MAY_DIFFER
            or flags & _CWR
            # the header's bytes against the first's, as inet_gro_receive and tcp_gro_receive
            # compare them: version and length 0x45 and TOS (ECN included); fragment bits
            # (none, DF alike), TTL and protocol; addresses and ports; ACK, data offset and
            # reserved bits; window; urgent pointer (0) and options
            or not packet.startswith(self._ip, 0)
            or not packet.startswith(self._ip2, 6)
            or not packet.startswith(self._ends, 12)
            or not packet.startswith(self._ack, 28)
            or not packet.startswith(self._window, 34)
            or not packet.startswith(self._options, 38)
            or _U32.unpack_from(packet, 24)[0] != self._end
            or _U16.unpack_from(packet, 2)[0] != size
            or int.from_bytes(packet[:IPV4_HEADER_LEN], "big") % _ONES
        ):
            return False
        # a segment's words, its checksum and the pseudo-header's included, sum to a multiple
        # of 0xFFFF when it is right; the whole packet's sum is the segment's, as the IP
        # header's words sum to one (2**16 is 1 modulo 0xFFFF)
        if (self._pseudo + size - IPV4_HEADER_LEN + words(packet)) % _ONES:
            return False  # the parse says what is wrong with it
        self._parts.append(packet[headers:])
        self._total += length
        self._end = (self._end + length) & 0xFFFFFFFF
        self._flags |= flags & _LAST_FLAGS
        if length < self._size or flags & _ENDS_RUN:
            self.flush()
        return True

    def _supersede(self, packet: bytes, now: float) -> bool:
        """``packet`` replaces the pure ACK held, from its bytes: a pure ACK of the same form
        (see :func:`_fast_ack`), flow, sequence number, IP header (TTL, DF and TOS, ECN
        included) that acknowledges more, with timestamps no older, both checksums right: what
        :func:`_redundant` lets go, for the ACKs it sees most."""
        if (
            len(packet) != _FAST_LEN
            or not packet.startswith(self._fast_ip, 0)
            or not packet.startswith(self._fast_ip2, 6)
            or not packet.startswith(self._fast_flow, 12)
            or not packet.startswith(_FAST_TCP, 32)
            or not packet.startswith(_FAST_OPTIONS, 38)
        ):
            return False
        ack = _U32.unpack_from(packet, 28)[0]
        tsval, tsecr = ts = _TS.unpack_from(packet, 44)
        last_val, last_ecr = self._fast_ts
        if (
            not 0 < (ack - self._fast_ack) & 0xFFFFFFFF < _HALF
            or (tsval - last_val) & 0xFFFFFFFF >= _HALF
            or (tsecr - last_ecr) & 0xFFFFFFFF >= _HALF
            or int.from_bytes(packet[:IPV4_HEADER_LEN], "big") % _ONES
            # the TCP sum with the pseudo-header's (the IP header's words sum to 0 here)
            or (self._pseudo + 32 + words(packet)) % _ONES
        ):
            return False
        self._fast_ack, self._fast_ts, self._fast_now = ack, ts, now
        self._fast_window = _U16.unpack_from(packet, 34)[0]
        self.filtered += 1
        return True

    def _take_acked(self) -> Held | None:
        """The pure ACK held, no longer held: the last that replaced it in :meth:`join`, if one
        did, made from its values."""
        held = self._acked
        self._acked = None
        if not self._fast or held is None:
            return held
        self._fast = False
        src, dst, seg, _ = held
        if self._fast_ack == seg.ack:
            return held  # none replaced it (each acknowledges more)
        tsval, tsecr = self._fast_ts
        options = seg.options
        latest = TcpSegment(
            seg.src_port,
            seg.dst_port,
            seg.seq,
            self._fast_ack,
            seg.flags,
            self._fast_window,
            (options[0], options[1], Timestamps(tsval, tsecr)),
            b"",
            0,
            seg.reserved,
            seg.ecn,
        )
        return src, dst, latest, self._fast_now

    def _hold_ack(
        self, src: IPAddress, dst: IPAddress, seg: TcpSegment, now: float, packet: bytes
    ) -> None:
        """Hold the pure ACK ``seg`` (read at ``now`` in ``packet``, if given)."""
        self._acked = (src, dst, seg, now)
        if not _fast_ack(packet):
            return
        self._fast = True
        self._fast_ip, self._fast_ip2, self._fast_flow = packet[:4], packet[6:10], packet[12:28]
        self._fast_ack, self._fast_window, self._fast_now = seg.ack, seg.window, now
        self._fast_ts = _TS.unpack_from(packet, 44)
        self._pseudo = _pseudo(packet)

    def add(
        self, src: IPAddress, dst: IPAddress, seg: TcpSegment, now: float, packet: bytes = b""
    ) -> None:
        """A segment read from the device at ``now`` (its checksum verified), ``src`` to
        ``dst``; ``packet``, when given, is the IP packet it came in (then :meth:`join` may
        take the segments after it from their bytes)."""
        if not packet:
            self._seen += 1  # one given with its packet went through join first, and counted
        payload = seg.payload
        length = len(payload)
        flags = int(seg.flags)
        held = self._take_acked()
        if held is not None:
            if (
                not length
                and src is held[0]
                and dst is held[1]
                and _redundant(held[2], seg, self._seen > BEHIND)
            ):
                self._hold_ack(src, dst, seg, now, packet)
                self.filtered += 1
                return
            self._deliver(*held, 1)
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
                and seg.ecn == first.ecn
                and seg.options == first.options
                and self._total + length <= GSO_MAX_SIZE - HEADROOM
                and (self._head is None or _same_ip(packet, self._head))
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
            if not length and flags & ~_ECN_FLAGS == _ACK and not seg.urgent:
                self._hold_ack(src, dst, seg, now, packet)  # the next may make it redundant
                return
            self._deliver(src, dst, seg, now, 1)
            return
        self._first, self._src, self._dst, self._now = seg, src, dst, now
        self._parts = [payload]
        self._flags = flags
        self._size = self._total = length
        self._end = (seg.seq + length) & 0xFFFFFFFF
        if (
            packet[:1] == b"\x45"
            and int.from_bytes(packet[2:4], "big") == len(packet)
            and not packet[6] & 0x3F
            and not packet[7]
        ):
            self._head = packet
            self._headers = headers = IPV4_HEADER_LEN + (packet[32] >> 4) * 4
            self._ip, self._ip2, self._ends = packet[:2], packet[6:10], packet[12:24]
            self._ack, self._window = packet[28:33], packet[34:36]
            self._options = packet[38:headers]
            self._pseudo = _pseudo(packet)

    def end_batch(self) -> None:
        """The read batch is over: :meth:`flush`, and the next batch counts from 0."""
        self.flush()
        self._seen = 0

    def flush(self) -> None:
        """Deliver what is held, if anything: the pure ACK, or the run (one segment as it came,
        or the run joined). Never both: each delivers the other before it is held."""
        held = self._take_acked()
        if held is not None:
            self._deliver(*held, 1)
        first = self._first
        if first is None:
            return
        src, dst, parts = self._src, self._dst, self._parts
        self._first = self._src = self._dst = self._head = None
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
            first.ecn,
        )
        self._deliver(src, dst, joined, self._now, len(parts))
