"""The stateful fuzz (fastopen.engine.fuzz), a short seeded run: hostile segments near live
sequence space, random options, flags and sizes, timers and application calls into an engine
pair; no exception escapes, memory stays bounded, every timer stays filed, every stream delivers
what was written in order exactly once. ``bench/fuzz.py`` runs a million segments."""

from __future__ import annotations

import dataclasses

import pytest

from fastopen.engine import Host
from fastopen.engine.fuzz import Fuzz
from fastopen.wire import TcpSegment


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_seeded_fuzz_finds_nothing(seed: int) -> None:
    report = Fuzz(seed).run(steps=3000)
    assert not report.failures, "\n".join(report.failures)
    assert report.hostile > 500 and report.bytes_delivered > 100_000 and report.opened > 20


def test_the_fuzz_catches_a_stream_that_delivers_a_wrong_byte() -> None:
    """The invariants can fail: one data segment whose first byte the link changes (its tap; the
    engine, compiled or not, is left as it is) is read as bytes that are not the ones written."""
    fuzz = Fuzz(13)
    changed: list[int] = []

    def corrupt(host: Host, src: object, dst: object, seg: TcpSegment) -> TcpSegment:
        if len(seg.payload) > 1 and not changed:
            changed.append(seg.seq)
            wrong = bytes([seg.payload[0] ^ 0xFF]) + seg.payload[1:]
            return dataclasses.replace(seg, payload=wrong)
        return seg

    fuzz.link.tap = corrupt
    report = fuzz.run(steps=3000)
    assert changed
    assert any("not the ones written" in f for f in report.failures)


def test_a_hostile_syn_replays_the_peers_isn() -> None:
    """Seed 1012 once sent a SYN-ACK at another ISN, its ACK right, to a connection in SYN-SENT:
    the blind hijack any TCP takes (Linux tcp_rcv_synsent_state_process too), reported as a
    stream that lost its first 244 bytes. A hostile SYN now replays the peer's true one."""
    report = Fuzz(1012).run(steps=7000)
    assert not report.failures, "\n".join(report.failures)
