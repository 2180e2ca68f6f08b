"""Middlebox names and parameters, probe targets and verdicts, path-cache backoff: no root."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from fastopen.errors import FastOpenError
from fastopen.kernel import pathcache
from fastopen.lab.middlebox import MIDDLEBOXES, Placed
from fastopen.probe import Outcome, Step, Target, Verdict, verdict
from fastopen.probe.drivers import _handshake


def test_middlebox_names_and_parameters() -> None:
    placed = Placed.parse("cgnat:pool=8,mapping=rotate")
    assert placed.box is MIDDLEBOXES["cgnat"]
    assert placed.params == {"pool": "8", "mapping": "rotate"}
    assert str(placed) == "cgnat:pool=8,mapping=rotate"
    assert str(Placed.parse("drop-syn-data")) == "drop-syn-data"
    with pytest.raises(FastOpenError, match="no middlebox named 'nope'"):
        Placed.parse("nope")
    with pytest.raises(FastOpenError, match="bad parameter 'size=3'") as info:
        Placed.parse("cgnat:size=3")
    assert info.value.hint == "its parameters: pool=4, mapping=random"


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("198.18.0.2", Target("198.18.0.2", 80)),
        ("198.18.0.2:8080", Target("198.18.0.2", 8080)),
        ("[fd00:f0::2]:443", Target("fd00:f0::2", 443)),
        ("fd00:f0::2", Target("fd00:f0::2", 80)),
        ("example.org:81", Target("example.org", 81)),
    ],
)
def test_targets(text: str, target: Target) -> None:
    assert Target.parse(text) == target


@pytest.mark.parametrize("text", ["host:0", "host:x", ":80", "[fd00::1]:99999"])
def test_bad_targets(text: str) -> None:
    with pytest.raises(FastOpenError):
        Target.parse(text)


def _o(step: Step, *, ok: bool = True, answered: bool = True, cookie: bytes | None = None,
       acked: int = 0) -> Outcome:  # fmt: skip
    return Outcome(step, ok=ok, first_syn_answered=answered, cookie=cookie, syn_data_acked=acked)


PLAIN = _o(Step.PLAIN)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([_o(Step.PLAIN, ok=False, answered=False)], Verdict.OFFLINE),
        ([PLAIN, _o(Step.REQUEST_34, answered=False), _o(Step.REQUEST_254, answered=False)],
         Verdict.SYN_OPTION_BLOCKED),
        ([PLAIN, _o(Step.REQUEST_34), _o(Step.REQUEST_254)], Verdict.NO_COOKIE),
        ([PLAIN, _o(Step.REQUEST_34, cookie=b"c" * 8), _o(Step.DATA, answered=False)],
         Verdict.SYN_DATA_BLOCKED),
        ([PLAIN, _o(Step.REQUEST_34, cookie=b"c" * 8), _o(Step.DATA)], Verdict.COOKIE_ONLY),
        ([PLAIN, _o(Step.REQUEST_34, cookie=b"c" * 8), _o(Step.DATA, acked=84)], Verdict.TFO),
        # a cookie that came only after a retransmitted SYN does not count
        ([PLAIN, _o(Step.REQUEST_34, answered=False, cookie=b"c" * 8)],
         Verdict.SYN_OPTION_BLOCKED),
    ],
)  # fmt: skip
def test_verdicts(outcomes: list[Outcome], expected: Verdict) -> None:
    assert verdict(outcomes) is expected


def test_backoff_doubles_and_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTOPEN_TFO_BACKOFF", "240")
    assert [pathcache.backoff(n) for n in (1, 2, 3)] == [240.0, 480.0, 960.0]
    assert pathcache.backoff(30) == pathcache.MAX_BACKOFF
    entry = pathcache.PathEntry("198.18.0.2", 80, 2, pathcache.Failure.LOST, 0.0, 480.0)
    assert entry.note(now=0.0) == (
        "TFO skipped: SYN data was lost on this path 2 times, retry in 8 min"
    )
    monkeypatch.setenv("FASTOPEN_TFO_BACKOFF", "soon")
    with pytest.raises(FastOpenError, match="not a positive number"):
        pathcache.backoff(1)


def test_the_path_cache_forgets_old_entries_and_the_files_of_gone_namespaces(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FASTOPEN_PATHS_DIR", str(tmp_path))
    day = pathcache.MAX_BACKOFF
    long_ago = time.time() - 3 * day
    pathcache.record("198.18.0.9", 81, pathcache.Failure.LOST, now=time.time() - day / 2)
    mine = pathcache.store_path()
    old = pathcache.PathEntry("198.18.0.9", 80, 3, pathcache.Failure.LOST, long_ago, long_ago + 960)
    data = json.loads(mine.read_text())
    mine.write_text(json.dumps({**data, "198.18.0.9:80": old.to_json()}))  # TFO back 2 days
    gone = tmp_path / "12345.json"  # a namespace that no longer exists, written 3 days ago
    gone.write_text(json.dumps({}))
    os.utime(gone, (long_ago, long_ago))
    recent = tmp_path / "12346.json"  # another namespace's, written today
    recent.write_text(json.dumps({}))
    assert sorted(e.port for e in pathcache.entries()) == [80, 81]
    pathcache.record("198.18.0.9", 82, pathcache.Failure.RESET)
    assert sorted(e.port for e in pathcache.entries()) == [81, 82]
    assert not gone.exists() and recent.exists()


@pytest.mark.parametrize(
    ("step", "fail", "retrans", "seconds", "answered"),
    [
        (Step.REQUEST_34, 0, 0, 0.002, True),
        (Step.REQUEST_34, 0, 1, 1.003, False),
        # the server's retransmitted SYN-ACK (no option) beat the client's own retransmission
        (Step.REQUEST_34, 0, 0, 1.001, False),
        (Step.PLAIN, 0, 0, 0.9, True),
        (Step.DATA, 3, 1, 1.004, False),  # the SYN went again without its data
        (Step.DATA, 0, 0, 0.002, True),
    ],
)
def test_first_syn_answered(
    step: Step, fail: int, retrans: int, seconds: float, answered: bool
) -> None:
    outcome = Outcome(step)
    _handshake(outcome, fail, retrans, True, b"HEAD", seconds)
    assert (outcome.first_syn_answered, outcome.syn_data_acked) == (answered, 4)
