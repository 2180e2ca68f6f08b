"""The TCP state table is data, complete, and the generated diagram in docs/ is up to date."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from fastopen.engine.cache import CookieCache, NegativeReason
from fastopen.engine.states import (
    TRANSITIONS,
    IllegalTransition,
    TcpEvent,
    TcpState,
    mermaid,
    transition,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "tcp-states.md"
C = ipaddress.IPv4Address("198.18.0.1")
S = ipaddress.IPv4Address("198.18.0.2")


def test_generated_diagram_is_up_to_date() -> None:
    assert DOC.read_text() == mermaid(), (
        "run: python -m fastopen.engine.states > docs/tcp-states.md"
    )


def test_all_eleven_states_with_linux_numbers_are_reachable_from_closed() -> None:
    assert len(TcpState) == 11
    assert (TcpState.ESTABLISHED, TcpState.LISTEN, TcpState.CLOSING) == (1, 10, 11)
    seen = {TcpState.CLOSED}
    frontier = [TcpState.CLOSED]
    while frontier:
        state = frontier.pop()
        for (src, _), dst in TRANSITIONS.items():
            if src is state and dst not in seen:
                seen.add(dst)
                frontier.append(dst)
    assert seen == set(TcpState)


def test_every_state_but_closed_has_a_way_out_and_illegal_moves_raise() -> None:
    sources = {src for src, _ in TRANSITIONS}
    assert sources == set(TcpState)
    assert transition(TcpState.FIN_WAIT_2, TcpEvent.RCV_FIN) is TcpState.TIME_WAIT
    with pytest.raises(IllegalTransition):
        transition(TcpState.LISTEN, TcpEvent.RCV_FIN)


def test_cookie_cache_linux_try_exp_and_negative_entries_expire() -> None:
    cache = CookieCache(negative_time=900)
    cache.set(C, S, mss=1400, cookie=None, experimental=False, syn_lost=False, try_exp=1, now=0)
    assert cache.get(C, S) == (1400, b"", True)  # the next request goes as kind 254
    cache.set(C, S, mss=0, cookie=None, experimental=True, syn_lost=False, try_exp=2, now=0)
    assert cache.get(C, S) == (1400, b"", False)  # then back to 34 for good
    cache.set(C, S, mss=0, cookie=b"12345678", experimental=False, syn_lost=True, try_exp=0, now=5)
    assert cache.get(C, S) == (1400, b"12345678", False)
    assert cache.entries[C, S].syn_loss == 1
    cache.disable((C, S, 80), NegativeReason.NO_OPTION, 10.0)
    assert cache.disabled((C, S, 80), 909.0) and not cache.disabled((C, S, 443), 909.0)
    assert not cache.disabled((C, S, 80), 910.0)  # expired: dropped, a fresh request follows
    assert cache.negative(910.0) == {}
    assert CookieCache(negative_time=0).negative_time == 0
    off = CookieCache(negative_time=0)
    off.disable((C, S, 80), NegativeReason.UNREACHABLE, 0.0)
    assert not off.disabled((C, S, 80), 1.0)
    assert cache.delete(S) == 1 and cache.entries == {}
