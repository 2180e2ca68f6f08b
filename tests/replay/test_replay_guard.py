"""The replay guard and its stores, without the network: fingerprints, verdicts, bounds, expiry,
the SQLite file shared by processes, Redis (a redis-server of the test's own) and its outages."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fastopen.lab.redis import RedisServer
from fastopen.replay import (
    Arrival,
    MemoryStore,
    Reason,
    RedisStore,
    ReplayGuard,
    ReplayStoreError,
    SqliteStore,
    StoreFull,
    open_store,
)
from fastopen.replay.syn import parse
from fastopen.report import Side, TfoReport

#: The redis client's timeouts: generous, the machine is shared (the default is 0.25 s).
TIMEOUT = 5
SYN_DATA = Arrival("8080", "198.18.0.1", 40000, 123456789, syn_data=True)


def again(arrival: Arrival, **changes: object) -> Arrival:
    fields = {
        "service": arrival.service,
        "client": arrival.client,
        "client_port": arrival.client_port,
        "isn": arrival.isn,
        "syn_data": arrival.syn_data,
        **changes,
    }
    return Arrival(**fields)  # type: ignore[arg-type]


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_fingerprint_keeps_what_a_replay_keeps() -> None:
    key = SYN_DATA.fingerprint()
    assert key is not None and len(key) == 16
    # a retransmitted SYN (its data after the handshake) and a replay: the same fingerprint
    assert again(SYN_DATA, syn_data=False).fingerprint() == key
    # a new connection from the same port (after TIME-WAIT) has a new ISN; others differ too
    for change in ({"isn": 123456790}, {"client_port": 40001}, {"client": "198.18.0.3"}):
        assert again(SYN_DATA, **change).fingerprint() != key
    assert again(SYN_DATA, service="443").fingerprint() != key
    assert again(SYN_DATA, isn=None).fingerprint() is None


async def _first_then_again(guard: ReplayGuard) -> None:
    first = await guard.check(SYN_DATA)
    assert (first.replay_suspected, first.reason) == (False, Reason.FIRST_DELIVERY)
    # the seed's third case: the retransmitted SYN reached another server, data after handshake
    second = await guard.check(again(SYN_DATA, syn_data=False))
    assert second.replay_suspected and second.reason is Reason.DUPLICATE
    assert second.first_server == "server-a"
    replayed = await guard.check(SYN_DATA)  # the same SYN, replayed
    assert replayed.replay_suspected and replayed.first_server == "server-a"
    fresh = await guard.check(again(SYN_DATA, isn=987654321))  # the port reused: new ISN
    assert (fresh.replay_suspected, fresh.reason) == (False, Reason.FIRST_DELIVERY)
    plain = await guard.check(again(SYN_DATA, client_port=40002, syn_data=False))
    assert (plain.replay_suspected, plain.reason) == (False, Reason.NOT_SEEN)
    assert guard.counters["recorded"] == 2 and guard.counters["suspected"] == 2


def test_memory_guard_verdicts() -> None:
    run(_first_then_again(ReplayGuard(quarantine="off", server_id="server-a")))


def test_blocking_check_from_threads(tmp_path: Path) -> None:
    """A synchronous server's threads (a WSGI worker's) share one guard: one first delivery, the
    rest flagged, on the guard's own loop (a SQLite store, opened there once)."""
    guard = ReplayGuard(f"sqlite:{tmp_path / 'replay.db'}", quarantine="off", server_id="w")
    with ThreadPoolExecutor(4) as pool:
        verdicts = list(pool.map(lambda _: guard.check_blocking(SYN_DATA), range(8)))
    assert sorted(v.reason.value for v in verdicts) == ["duplicate"] * 7 + ["first-delivery"]
    assert {v.first_server for v in verdicts if v.replay_suspected} == {"w"}
    assert guard.counters["checks"] == 8 and guard.counters["suspected"] == 7


def test_records_expire_after_the_window() -> None:
    async def scenario() -> None:
        guard = ReplayGuard(window=0.05, quarantine="off", server_id="server-a")
        assert not (await guard.check(SYN_DATA)).replay_suspected
        assert (await guard.check(SYN_DATA)).replay_suspected
        await asyncio.sleep(0.1)
        assert not (await guard.check(SYN_DATA)).replay_suspected

    run(scenario())


def test_memory_store_is_bounded_and_never_forgets_early() -> None:
    async def scenario() -> None:
        store = MemoryStore(max_entries=100)
        for i in range(100):
            assert await store.record(i.to_bytes(16, "big"), "a", 60.0) is None
        with pytest.raises(StoreFull):
            await store.record(b"x" * 16, "a", 60.0)
        assert len(store) == 100 and await store.lookup((0).to_bytes(16, "big")) == "a"
        # a flood against the guard: closed flags it, the records stay, nothing grows
        guard = ReplayGuard(store, quarantine="off")
        flood = [again(SYN_DATA, client_port=1000 + i) for i in range(1000)]
        verdicts = [await guard.check(a) for a in flood]
        assert all(v.replay_suspected and v.reason is Reason.STORE_UNAVAILABLE for v in verdicts)
        assert len(store) == 100
        short = MemoryStore(max_entries=10)
        for i in range(10):
            await short.record(i.to_bytes(16, "big"), "a", 0.01)
        await asyncio.sleep(0.02)
        assert await short.record(b"y" * 16, "b", 60.0) is None  # expired ones make room
        assert len(short) == 1

    run(scenario())


def test_quarantine_flags_syn_data_for_one_window() -> None:
    async def scenario() -> None:
        guard = ReplayGuard(window=0.2, quarantine="flag")
        verdict = await guard.check(SYN_DATA)
        assert verdict.replay_suspected and verdict.reason is Reason.QUARANTINE
        plain = await guard.check(again(SYN_DATA, client_port=1, syn_data=False))
        assert not plain.replay_suspected  # data after a handshake cannot be an early replay
        await asyncio.sleep(0.25)
        later = await guard.check(again(SYN_DATA, isn=5))
        assert not later.replay_suspected and later.reason is Reason.FIRST_DELIVERY
        assert guard.counters["quarantined"] == 1

    run(scenario())


def test_unknown_isn_follows_the_failure_policy() -> None:
    async def scenario() -> None:
        no_isn = again(SYN_DATA, isn=None)
        closed = await ReplayGuard(quarantine="off").check(no_isn)
        opened = await ReplayGuard(quarantine="off", on_unavailable="open").check(no_isn)
        assert closed.replay_suspected and closed.reason is Reason.NO_ISN
        assert not opened.replay_suspected and opened.reason is Reason.NO_ISN

    run(scenario())


def test_bad_settings_are_typed_errors() -> None:
    for spec in ("mem", "sqlite:", "http://x"):
        with pytest.raises(ReplayStoreError):
            open_store(spec)
    with pytest.raises(ReplayStoreError):
        ReplayGuard(window=0)
    with pytest.raises(ReplayStoreError):
        ReplayGuard(on_unavailable="maybe")  # type: ignore[arg-type]
    with pytest.raises(ReplayStoreError, match="cannot open"):
        SqliteStore("/nonexistent/folder/replay.db")


def test_report_carries_the_verdict() -> None:
    report = TfoReport(Side.SERVER, attempted=True, tfo_child=True, syn_data_received=True)
    assert report.replay_suspected is None and report.to_dict()["replay_suspected"] is None
    flagged = report.with_replay(True, "server-a")
    assert flagged.to_dict()["replay_suspected"] is True
    assert flagged.to_dict()["replay_first_server"] == "server-a"
    assert "replay suspected (first delivered by server-a)" in str(flagged)


def test_saved_syn_parse() -> None:
    ipv4 = bytes.fromhex("45000048000040004006" + "0000" + "c6120001c6120002")
    tcp = bytes.fromhex("9c40" + "1f90" + "075bcd15" + "00000000" + "5002faf0" + "00000000")
    saved = parse(ipv4[:2] + (20 + 20 + 32).to_bytes(2, "big") + ipv4[4:] + tcp)
    assert (saved.isn, saved.data_length) == (123456789, 32)
    ipv6 = bytes.fromhex("60000000") + (20 + 5).to_bytes(2, "big") + b"\x06\x40" + bytes(32)
    assert parse(ipv6 + tcp).data_length == 5
    for bad in (b"", b"\x45" + bytes(10), bytes.fromhex("60000000") + b"\x00\x10\x11" + bytes(40)):
        with pytest.raises(ValueError):
            parse(bad)


# -- SQLite: one file, several processes, kept across restarts ----------------------------------

_OTHER_PROCESS = """
import asyncio, sys
from fastopen.replay import Arrival, ReplayGuard
guard = ReplayGuard("sqlite:" + sys.argv[1], quarantine="off", server_id="server-b")
verdict = asyncio.run(guard.check(Arrival("8080", "198.18.0.1", 40000, 123456789, False)))
print(verdict.replay_suspected, verdict.first_server)
"""


def test_sqlite_store_is_shared_by_processes_and_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"

    async def first() -> None:
        guard = ReplayGuard(f"sqlite:{path}", window=30, server_id="server-a")
        assert guard.store.persistent
        verdict = await guard.check(SYN_DATA)
        # a new file knows nothing of the last window: quarantine
        assert verdict.reason is Reason.QUARANTINE and guard.quarantine_left() > 29
        await guard.close()

    run(first())
    out = subprocess.run(
        [sys.executable, "-c", _OTHER_PROCESS, str(path)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert out.stdout.split() == ["True", "server-a"]

    async def restarted() -> None:  # the same file after a restart of the server
        guard = ReplayGuard(f"sqlite:{path}", window=0.5, server_id="server-a")
        await asyncio.sleep(0.6)  # the file is older than a window: no quarantine
        assert await guard.start() < time.time()
        assert (await guard.check(again(SYN_DATA, isn=1))).reason is Reason.FIRST_DELIVERY
        await guard.close()

    run(restarted())


def test_sqlite_store_sweeps_expired_rows(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteStore(tmp_path / "r.db")
        for i in range(1024):
            await store.record(i.to_bytes(16, "big"), "a", 0.001 if i < 1000 else 60)
            if i == 999:
                await asyncio.sleep(0.01)
        rows = store._db.execute("SELECT count(*) FROM records").fetchone()[0]
        assert rows == 24
        await store.close()

    run(scenario())


# -- Redis ------------------------------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path, timeout=TIMEOUT) as server:
        yield server


def test_redis_store_one_command_a_check(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        guard = ReplayGuard(redis_server.url, window=30, server_id="server-a")
        other = ReplayGuard(redis_server.url, window=30, server_id="server-b")
        # Redis just started: what it forgot before is unknown, so both quarantine
        assert guard.quarantine_left() == 0 and await guard.start() > time.time() + 25
        guard.quarantine = other.quarantine = "off"
        guard._quarantine_until = other._quarantine_until = 0.0
        await _first_then_again(guard)
        # the other server of the farm sees the first delivery
        verdict = await other.check(again(SYN_DATA, syn_data=False))
        assert verdict.replay_suspected and verdict.first_server == "server-a"
        store = guard.store
        assert isinstance(store, RedisStore)
        raw = store._redis
        key = SYN_DATA.fingerprint()
        assert key is not None
        name = f"fastopen:replay:{{{key.hex()}}}"  # the hash tag: the fingerprint
        assert await raw.exists(name) == 1
        assert 25_000 < await raw.pttl(name) <= 30_000
        await guard.close()
        await other.close()

    run(scenario())


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_redis_killed_then_back(
    redis_server: RedisServer, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        guard = ReplayGuard(
            redis_server.url,
            window=5,
            on_unavailable=policy,  # type: ignore[arg-type]
            quarantine="flag",
            retry_after=0.05,
        )
        await guard.start()
        guard._quarantine_until = 0.0  # as if Redis had been up for a while
        assert not (await guard.check(SYN_DATA)).replay_suspected
        redis_server.stop()
        with caplog.at_level(logging.WARNING, logger="fastopen.replay"):
            verdicts = []
            for i in range(20):
                verdicts.append(await guard.check(again(SYN_DATA, isn=i)))
                await asyncio.sleep(0.01)
        assert {v.reason for v in verdicts} == {Reason.STORE_UNAVAILABLE}
        assert {v.replay_suspected for v in verdicts} == {policy == "closed"}
        assert guard.counters["unavailable"] >= 2
        down = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(down) == 1  # logged once per outage
        # an after-handshake connection passes either way
        plain = await guard.check(again(SYN_DATA, client_port=2, syn_data=False))
        assert not plain.replay_suspected
        redis_server.start()  # a new Redis: it forgot the last window
        await asyncio.sleep(0.06)
        back = await guard.check(again(SYN_DATA, isn=99))
        assert back.reason is Reason.QUARANTINE and guard.quarantine_left() > 2
        await guard.close()

    run(scenario())
