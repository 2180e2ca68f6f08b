"""The receive queue: the data a connection received in order that the application has not read,
kept as Linux keeps its ``sk_receive_queue``: the payloads as they came, one after the other.

Receiving a segment appends its payload (the same bytes object, not a copy); a read copies each
byte once, into the bytes it returns, and a read of exactly what one payload holds returns that
payload. One contiguous bytearray would copy every payload in, and copy all it holds again each
time it grew after a read had taken its head (CPython moves a bytearray's bytes to a fresh block
when it grows with a consumed head): behind a reader slower than the peer the queue holds up to
``tcp_rmem[2]``, and that copying took a quarter of a receiving stack's time.
"""

from __future__ import annotations

from collections import deque


class ReceiveQueue:
    """Bytes in order, as the payloads that brought them; ``len()`` is how many."""

    __slots__ = ("_chunks", "_head", "_size")

    def __init__(self, data: bytes | memoryview = b"") -> None:
        self._chunks: deque[bytes] = deque()
        self._head = 0  # the bytes of the first payload already read
        self._size = 0
        self.append(data)

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes | memoryview) -> None:
        """``data`` after what is queued (a memoryview is copied: what it shows may change)."""
        if data:
            self._chunks.append(data if isinstance(data, bytes) else bytes(data))
            self._size += len(data)

    def take(self, n: int) -> bytes:
        """The first ``n`` bytes (all of them when fewer are queued), no longer queued."""
        chunks = self._chunks
        n = min(n, self._size)
        if not n:
            return b""
        head = self._head
        first = chunks[0]
        if len(first) - head == n:
            chunks.popleft()
            self._head = 0
            self._size -= n
            return first[head:] if head else first
        parts: list[bytes | memoryview] = []
        left = n
        while left:
            first = chunks[0]
            rest = len(first) - head
            if rest <= left:
                parts.append(memoryview(first)[head:] if head else first)
                chunks.popleft()
                left -= rest
                head = 0
            else:
                parts.append(memoryview(first)[head : head + left])
                head += left
                left = 0
        self._head = head
        self._size -= n
        return b"".join(parts)

    def skip(self, n: int) -> None:
        """Drop the first ``n`` bytes (all of them when fewer are queued)."""
        chunks = self._chunks
        n = min(n, self._size)
        self._size -= n
        head = self._head + n
        while chunks and head >= len(chunks[0]):
            head -= len(chunks.popleft())
        self._head = head
