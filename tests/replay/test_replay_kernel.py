"""The replay guard on the kernel's stack, in namespaces: a replayed SYN (scapy, the same bytes) is
flagged and a POST in it gets 425 from ``fastopen serve``'s responder; ordinary TFO connections
from a few reused client ports are never flagged; Redis killed mid-run; the quarantine keeps the
listener's TFO off for one window."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from replayapp import replay_twice, request, running, tfo_request

import fastopen
from fastopen.constants import TCP_FASTOPEN
from fastopen.cookies import KeyRing
from fastopen.http.responder import serve_http
from fastopen.lab.netns import SERVER, Netns
from fastopen.lab.redis import RedisServer
from fastopen.replay import ReplayGuard
from fastopen.report import TfoReport
from fastopen.runtime import UserspaceStack

#: The redis client's timeouts: generous, the machine is shared (the default is 0.25 s).
TIMEOUT = 5
pytestmark = pytest.mark.live
PORT = 8080
#: A client address on the client's link that no namespace owns: the SYN-ACKs to it go nowhere
#: (no RST from a kernel that never sent the SYN), so only the test ends the connection.
SPOOFED = "198.18.0.9"

Log = list[tuple[str | None, int, TfoReport]]


def recorder(log: Log) -> Callable[[str, str | None, int, TfoReport], None]:
    lock = threading.Lock()

    def on_request(peer: str, method: str | None, status: int, report: TfoReport) -> None:
        with lock:
            log.append((method, status, report))

    return on_request


def wait_for(log: Log, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while len(log) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"the server saw {len(log)} requests, not {count}")
        time.sleep(0.01)


def check_replays(log: Log, guard: ReplayGuard) -> None:
    (m1, s1, r1), (m2, s2, r2), (m3, s3, r3), (m4, s4, r4) = log
    assert all(r.syn_data_received for r in (r1, r2, r3, r4))  # the cookie was good each time
    assert (m1, s1, r1.replay_suspected) == ("POST", 405, False)  # first delivery
    assert (m2, s2, r2.replay_suspected) == ("POST", 425, True)  # the replay: Too Early
    assert r2.replay_first_server == "srv"
    assert (m3, s3, r3.replay_suspected) == ("GET", 200, False)
    assert (m4, s4, r4.replay_suspected) == ("GET", 200, True)  # safe to replay: served, flagged
    assert guard.counters["recorded"] == 2 and guard.counters["suspected"] == 2
    assert guard.counters["no-isn"] == 0


def test_replayed_syn_is_flagged(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    ring = KeyRing.generate()
    guard = ReplayGuard(quarantine="off", server_id="srv")
    log: Log = []

    def start() -> object:
        return serve_http(
            SERVER.ipv4, PORT, keys=ring, replay_guard=guard, on_request=recorder(log)
        )

    with running(server, start, guard):  # type: ignore[arg-type]
        replay_twice(client, SPOOFED, SERVER.ipv4, PORT, ring, lambda n: wait_for(log, n))
    check_replays(log, guard)


def test_replayed_syn_is_flagged_on_the_userspace_stack(netns: Netns) -> None:
    """The engine gives the guard the client's ISN itself (no saved SYN to read)."""
    ring = KeyRing.generate()
    guard = ReplayGuard(quarantine="off", server_id="srv")
    log: Log = []
    with UserspaceStack.attach(
        netns, "fous0", ["198.18.1.2/24"], kernel_addresses=["198.18.1.1/24"]
    ) as stack:

        async def scenario() -> None:
            server = await serve_http(
                "198.18.1.2", PORT, keys=ring, stack=stack, replay_guard=guard,
                on_request=recorder(log),
            )  # fmt: skip
            async with server:
                # the engine's SYN-ACKs to 198.18.1.9 leave by the TUN and go nowhere
                await asyncio.to_thread(
                    replay_twice, netns, "198.18.1.9", "198.18.1.2", PORT, ring,
                    lambda n: wait_for(log, n),
                )  # fmt: skip

        asyncio.run(scenario())
    check_replays(log, guard)
    assert all(r.stack == "userspace" for _, _, r in log)


def ordinary_connections(
    ns: Netns, guard: ReplayGuard, count: int, ports: list[int], kill: Callable[[], None] | None
) -> list[TfoReport]:
    """``count`` GETs in the SYN from ``ports`` (reused: the server closes first, so its side
    keeps the TIME-WAIT and the next SYN from the port reopens it); the server's reports."""
    log: Log = []

    def start() -> object:
        return serve_http("127.0.0.1", PORT, replay_guard=guard, on_request=recorder(log))

    get = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def worker(port: int, n: int) -> None:
        for _ in range(n):
            for _ in range(1000):
                try:
                    reader, writer = await fastopen.open_connection(
                        "127.0.0.1", PORT, first_flight=get, local_addr=("127.0.0.1", port)
                    )
                    break
                except OSError:  # the port's last connection is not quite closed yet
                    await asyncio.sleep(0.001)
            else:
                pytest.fail(f"port {port} stayed busy")
            answer = await reader.read()
            assert answer.startswith(b"HTTP/1.1 200 ")
            writer.close()
            await writer.wait_closed()

    async def clients() -> None:
        per_port = count // len(ports)
        half = [asyncio.create_task(worker(p, per_port // 2)) for p in ports]
        await asyncio.gather(*half)
        if kill is not None:
            kill()
        rest = [asyncio.create_task(worker(p, per_port - per_port // 2)) for p in ports]
        await asyncio.gather(*rest)

    with running(ns, start, guard), ns.entered():  # type: ignore[arg-type]
        asyncio.run(clients())
        wait_for(log, count)
    return [report for _, _, report in log]


@pytest.mark.parametrize("store,count", [("memory", 2_000), ("redis", 1_000)])
def test_ordinary_clients_are_never_flagged(
    netns: Netns, tmp_path: Path, store: str, count: int
) -> None:
    with RedisServer(tmp_path, timeout=TIMEOUT) as redis:
        guard = ReplayGuard(
            "memory" if store == "memory" else redis.url, window=120, quarantine="off"
        )
        reports = ordinary_connections(netns, guard, count, [41000, 41001, 41002, 41003], None)
    assert len(reports) == count
    in_syn = sum(r.syn_data_received for r in reports)
    assert in_syn >= count - 4  # only each port's first connection asked for the cookie
    assert [r for r in reports if r.replay_suspected] == []
    assert guard.counters["suspected"] == 0 and guard.counters["recorded"] == in_syn


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_redis_killed_mid_run(netns: Netns, tmp_path: Path, policy: str) -> None:
    redis = RedisServer(tmp_path, timeout=TIMEOUT).start()
    try:
        guard = ReplayGuard(
            redis.url,
            window=120,
            quarantine="off",
            on_unavailable=policy,  # type: ignore[arg-type]
        )
        reports = ordinary_connections(netns, guard, 200, [42000, 42001], redis.stop)
        # a POST in the SYN while Redis is down: 425 when failing closed
        log: Log = []
        post = ReplayGuard(redis.url, quarantine="off", on_unavailable=policy)  # type: ignore[arg-type]

        def start() -> object:
            return serve_http("127.0.0.1", PORT + 1, replay_guard=post, on_request=recorder(log))

        with running(netns, start, post):
            tfo_request(netns, "127.0.0.1", PORT + 1, request("GET"))  # the cookie
            answer = tfo_request(netns, "127.0.0.1", PORT + 1, request("POST"))
    finally:
        redis.stop()
    assert len(reports) == 200  # every request was answered, before and after the kill
    before, after = reports[:100], reports[100:]
    assert not any(r.replay_suspected for r in before)
    flagged = [r.replay_suspected for r in after if r.syn_data_received]
    assert len(flagged) >= 98 and set(flagged) == {policy == "closed"}
    assert guard.counters["unavailable"] >= 1
    expected = b"HTTP/1.1 425 " if policy == "closed" else b"HTTP/1.1 405 "
    assert answer.startswith(expected)
    assert log[-1][2].syn_data_received


def test_quarantine_keeps_the_listener_tfo_off(netns: Netns) -> None:
    guard = ReplayGuard(window=1.5)  # a memory store: it knows nothing of the last window
    log: Log = []
    servers: list[asyncio.AbstractServer] = []

    async def start() -> asyncio.AbstractServer:
        server = await serve_http("127.0.0.1", PORT, replay_guard=guard, on_request=recorder(log))
        servers.append(server)
        return server

    def qlen() -> int:
        (lsock,) = servers[0].sockets
        value: int = lsock.getsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN)
        return value

    with running(netns, start, guard):
        started = time.monotonic()
        assert qlen() == 0 and guard.quarantine_left() > 1
        for _ in range(2):  # no cookie is given out, no SYN data is taken
            tfo_request(netns, "127.0.0.1", PORT, request("GET"))
        assert time.monotonic() - started < 1.5
        time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
        assert qlen() > 0 and guard.quarantine_left() == 0
        for _ in range(2):  # a cookie, then the request in the SYN
            tfo_request(netns, "127.0.0.1", PORT, request("GET"))
    assert [r.syn_data_received for _, _, r in log] == [False, False, False, True]
    assert not any(r.replay_suspected for _, _, r in log)
    assert guard.counters["quarantined"] == 0 and guard.counters["recorded"] == 1
