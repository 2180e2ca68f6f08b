"""The stateful fuzz (fastopen.engine.fuzz), a short seeded run: hostile segments near live
sequence space, random options, flags and sizes, timers and application calls into an engine
pair; no exception escapes, memory stays bounded, every timer stays filed, every stream delivers
what was written in order exactly once. ``bench/fuzz.py`` runs a million segments."""

from __future__ import annotations

import pytest

from fastopen.engine import ofo
from fastopen.engine.fuzz import Fuzz


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_seeded_fuzz_finds_nothing(seed: int) -> None:
    report = Fuzz(seed).run(steps=3000)
    assert not report.failures, "\n".join(report.failures)
    assert report.hostile > 500 and report.bytes_delivered > 100_000 and report.opened > 20


def test_the_fuzz_catches_a_stream_that_delivers_a_byte_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The invariants can fail: an out-of-order queue that repeats a byte is caught."""
    take = ofo.OutOfOrderQueue.take

    def twice(self: ofo.OutOfOrderQueue, rcv_nxt: int) -> bytes:
        got = take(self, rcv_nxt)
        return got + got[:1]

    monkeypatch.setattr(ofo.OutOfOrderQueue, "take", twice)
    report = Fuzz(13).run(steps=3000)
    assert any("not the ones written" in f for f in report.failures)


def test_a_hostile_syn_replays_the_peers_isn() -> None:
    """Seed 1012 once sent a SYN-ACK at another ISN, its ACK right, to a connection in SYN-SENT:
    the blind hijack any TCP takes (Linux tcp_rcv_synsent_state_process too), reported as a
    stream that lost its first 244 bytes. A hostile SYN now replays the peer's true one."""
    report = Fuzz(1012).run(steps=7000)
    assert not report.failures, "\n".join(report.failures)
