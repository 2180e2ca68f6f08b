"""The out-of-order queue: data beyond RCV.NXT, as Linux keeps it (tcp_data_queue_ofo,
tcp_prune_ofo_queue).

Blocks are kept coalesced and sorted by their (unwrapped) start: a segment costs a binary search
and the merge with its neighbours. Memory is charged as Linux charges skb truesize, the data plus
a fixed overhead per block, against what the receive buffer has left; when a segment does not
fit, blocks above it are pruned from the highest down (OfoPruned), and if it still does not fit
it is dropped (TCPOFODrop). So the number of blocks is bounded by the receive buffer.

SACK blocks go out as RFC 2018 (and Linux tcp_sack_new_ofo_skb) orders them: the block holding
the segment received last first, then the others from the lowest.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter

from fastopen.engine.seq import MASK

#: What one block costs besides its data (about Linux's SKB_TRUESIZE overhead for a small skb).
BLOCK_OVERHEAD = 512


class OutOfOrderQueue:
    """Coalesced blocks of out-of-order data, sorted by sequence."""

    __slots__ = ("_data", "_ends", "_nxt_off", "_nxt_seq", "_recent", "_starts", "charge")

    def __init__(self) -> None:
        self._starts: list[int] = []  # unwrapped offsets
        self._ends: list[int] = []
        self._data: list[bytearray] = []
        self._nxt_seq = 0
        self._nxt_off = 0
        self._recent = -1  # the unwrapped offset of the last segment queued
        self.charge = 0  # bytes charged: data + BLOCK_OVERHEAD per block

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __len__(self) -> int:
        return len(self._starts)

    def _sync(self, rcv_nxt: int) -> None:
        """RCV.NXT moved (it only moves forward): unwrapped offsets follow it."""
        self._nxt_off += (rcv_nxt - self._nxt_seq) & MASK
        self._nxt_seq = rcv_nxt

    def _offset(self, seq: int) -> int:
        return self._nxt_off + ((seq - self._nxt_seq) & MASK)

    def insert(
        self, seq: int, data: bytes, rcv_nxt: int, budget: int, counters: Counter[str]
    ) -> bool:
        """Queue ``data`` at ``seq`` (beyond ``rcv_nxt``) within ``budget`` bytes of charge;
        False when it was dropped for want of room."""
        self._sync(rcv_nxt)
        start = self._offset(seq)
        end = start + len(data)
        starts, ends, datas = self._starts, self._ends, self._data
        i = bisect_right(starts, start) - 1
        if i >= 0 and ends[i] >= end:
            return True  # all of it is queued already (Linux: a D-SACK)
        grow = len(data) + BLOCK_OVERHEAD
        if self.charge + grow > budget and not self._prune(start, budget - grow, counters):
            counters["TCPOFODrop"] += 1
            return False
        counters["TCPOFOQueue"] += 1
        self._recent = start
        i = bisect_right(starts, start) - 1
        if i >= 0 and ends[i] >= start:  # overlaps or touches the block before: extend it
            datas[i] += data[ends[i] - start :]
            self.charge += end - ends[i]
            ends[i] = end
            counters["TCPOFOMerge"] += 1
        else:
            i += 1
            starts.insert(i, start)
            ends.insert(i, end)
            datas.insert(i, bytearray(data))
            self.charge += grow
        j = i + 1  # swallow the blocks the data reaches
        while j < len(starts) and starts[j] <= ends[i]:
            self.charge -= len(datas[j]) + BLOCK_OVERHEAD
            if ends[j] > ends[i]:
                tail = datas[j][ends[i] - starts[j] :]
                datas[i] += tail
                self.charge += len(tail)
                ends[i] = ends[j]
            j += 1
        if j > i + 1:
            del starts[i + 1 : j], ends[i + 1 : j], datas[i + 1 : j]
        return True

    def _prune(self, start: int, room: int, counters: Counter[str]) -> bool:
        """Linux tcp_prune_ofo_queue: drop blocks above ``start``, highest first, until the
        charge fits in ``room``; True when it does."""
        pruned = False
        while self._starts and self._starts[-1] > start and self.charge > room:
            self._starts.pop()
            self._ends.pop()
            self.charge -= len(self._data.pop()) + BLOCK_OVERHEAD
            pruned = True
        if pruned:
            counters["OfoPruned"] += 1
        return self.charge <= room

    def take(self, rcv_nxt: int) -> bytes:
        """The data that now follows ``rcv_nxt`` (b"" when the first block is beyond it)."""
        self._sync(rcv_nxt)
        starts = self._starts
        if not starts or starts[0] > self._nxt_off:
            return b""
        got = b""
        while starts and starts[0] <= self._nxt_off:
            start, end, block = starts.pop(0), self._ends.pop(0), self._data.pop(0)
            self.charge -= len(block) + BLOCK_OVERHEAD
            skip = self._nxt_off - start
            if end > self._nxt_off:
                got += block[skip:]
                self._nxt_off = end
                self._nxt_seq = (self._nxt_seq + (len(block) - skip)) & MASK
        return got

    def sack_blocks(self, rcv_nxt: int, limit: int) -> tuple[tuple[int, int], ...]:
        """At most ``limit`` blocks as SACK blocks (sequence numbers): the one holding the last
        segment queued first (RFC 2018), then the others from the lowest."""
        self._sync(rcv_nxt)
        base, off = self._nxt_seq, self._nxt_off
        starts, ends = self._starts, self._ends
        order = list(range(len(starts)))
        i = bisect_right(starts, self._recent) - 1
        if i > 0 and self._recent < ends[i]:
            order.insert(0, order.pop(i))
        return tuple(
            ((base + starts[k] - off) & MASK, (base + ends[k] - off) & MASK) for k in order[:limit]
        )

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()
        self._data.clear()
        self.charge = 0
