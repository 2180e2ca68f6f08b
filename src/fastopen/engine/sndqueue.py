"""The send queue: the data the application gave a connection that its peer has not acknowledged,
sent or not (Linux's write queue and retransmission queue, ``sk_write_queue`` and ``tcp_rtx_queue``,
together): one bytearray that sending appends to and acknowledgments consume from the front.

The acknowledged head is not taken off at each ACK: it is let go all at once when it is at least
64 KB and half of what the bytearray holds, so each byte is moved at most once more. Deleting it at
each ACK, as a plain bytearray's ``del buf[:n]``, moved everything the queue held whenever it then
grew (CPython moves a bytearray's bytes to a fresh block when it grows with a consumed head, and
shrinks it to the exact size once under half full): with a window of data in flight that was about
eight bytes moved per byte sent, 15% of a sending stack's time.
"""

from __future__ import annotations

#: The acknowledged head is let go once it is this long (and half the bytearray).
COMPACT = 65536


class SendQueue:
    """Bytes in order; ``len()`` is how many, from the first not yet acknowledged."""

    __slots__ = ("_buf", "_head")

    def __init__(self, data: bytes | memoryview = b"") -> None:
        self._buf = bytearray(data)
        self._head = 0  # the acknowledged bytes still at the front of _buf

    def __len__(self) -> int:
        return len(self._buf) - self._head

    def append(self, data: bytes | memoryview) -> None:
        """``data`` after what is queued (copied)."""
        self._buf += data

    def copy(self, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` of the queue, as bytes (copied once)."""
        head = self._head
        with memoryview(self._buf) as view:
            return bytes(view[head + start : head + end])

    def trim(self, n: int) -> None:
        """The first ``n`` bytes are acknowledged: no longer queued."""
        buf = self._buf
        head = self._head + n
        if head >= len(buf):
            buf.clear()
            head = 0
        elif head >= COMPACT and 2 * head >= len(buf):
            del buf[:head]
            head = 0
        self._head = head
