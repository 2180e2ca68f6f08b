"""The send queue gives back the bytes it was given at every offset while acknowledgments consume
its front, and lets the acknowledged head go in one step once it is long, not at each ACK."""

from __future__ import annotations

import random

from fastopen.engine.sndqueue import COMPACT, SendQueue


def test_copies_at_any_offset_while_the_front_is_acknowledged() -> None:
    rng = random.Random(11)
    stream = bytes(rng.randrange(256) for _ in range(400_000))
    queue = SendQueue(memoryview(stream)[:1000])
    given, acked = 1000, 0
    while acked < len(stream):
        if given < len(stream) and rng.random() < 0.6:
            size = rng.randrange(1, 30_000)
            queue.append(memoryview(stream)[given : given + size])
            given = min(given + size, len(stream))
        else:
            n = rng.randrange(0, len(queue) + 1)
            queue.trim(n)
            acked += n
        assert len(queue) == given - acked
        start = rng.randrange(0, len(queue) + 1)
        end = rng.randrange(start, len(queue) + 1)
        assert queue.copy(start, end) == stream[acked + start : acked + end]
    assert not queue


def test_the_acknowledged_head_goes_in_one_step_once_long() -> None:
    queue = SendQueue(bytes(4 * COMPACT))
    buf = queue._buf
    queue.trim(COMPACT - 1)  # short: kept at the front, nothing moved
    assert len(buf) == 4 * COMPACT and len(queue) == 3 * COMPACT + 1
    queue.trim(COMPACT + 1)  # 2 x COMPACT acknowledged, half of what the bytearray holds: gone
    assert queue._buf is buf and len(buf) == 2 * COMPACT == len(queue)
    queue.trim(2 * COMPACT)
    assert len(buf) == 0 and not queue
