"""A blocking sendmsg the engine takes in parts goes on with the rest of the same buffers (its
MSG_ZEROCOPY pages: one fragment per buffer, tests/engine/test_zerocopy.py)."""

from __future__ import annotations

from fastopen.packetdrill.runner import buffers_after


def test_the_rest_of_the_buffers() -> None:
    assert buffers_after([1, 1, 4, 2], 0) == [1, 1, 4, 2]
    assert buffers_after([1, 1, 4, 2], 2) == [4, 2]
    assert buffers_after([1, 1, 4, 2], 3) == [3, 2]
    assert buffers_after([1, 0, 4], 1) == [4]
    assert buffers_after([1, 1], 2) == []
