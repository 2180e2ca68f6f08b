"""The receive queue keeps payloads as they came: a read copies each byte once, a read of one
whole payload returns it as it is, and partial reads and skips across payloads keep the order."""

from __future__ import annotations

import random

from fastopen.engine.rcvqueue import ReceiveQueue


def test_a_read_of_one_whole_payload_is_that_payload() -> None:
    first, second = b"a" * 1448, b"b" * 2896
    queue = ReceiveQueue(first)
    queue.append(second)
    assert len(queue) == 4344
    assert queue.take(1448) is first  # not copied
    assert queue.take(10_000) is second
    assert len(queue) == 0 and not queue and queue.take(5) == b""


def test_reads_and_skips_across_payloads_keep_the_order() -> None:
    rng = random.Random(7)
    stream = bytes(rng.randrange(256) for _ in range(20_000))
    queue = ReceiveQueue()
    expected = bytearray()
    at = 0
    while at < len(stream) or queue:
        if at < len(stream) and rng.random() < 0.5:
            size = rng.randrange(1, 3000)
            queue.append(memoryview(stream)[at : at + size])  # copied: a view may change
            expected += stream[at : at + size]
            at += size
        n = rng.randrange(0, 2500)
        if rng.random() < 0.2:
            queue.skip(n)
            del expected[:n]
        else:
            assert queue.take(n) == expected[:n]
            del expected[:n]
        assert len(queue) == len(expected)
    assert not expected


def test_a_memoryview_is_copied_in() -> None:
    source = bytearray(b"hello")
    queue = ReceiveQueue(memoryview(source))
    source[:] = b"HELLO"
    assert queue.take(5) == b"hello"
