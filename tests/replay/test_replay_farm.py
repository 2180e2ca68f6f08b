"""The seed's third duplicate case on the lab's farm: two servers behind the load balancer share a
TFO key and a Redis store; the first server's SYN-ACK is lost and the retransmitted SYN lands on
the other server. Without the guard both process the request; with it the second one is flagged
(with the first server's name) and a POST gets 425 Too Early."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from conftest import require_namespaces
from replayapp import App, request, serving, tfo_request

from fastopen.lab.farm import Farm
from fastopen.lab.redis import RedisServer
from fastopen.replay import Reason, ReplayGuard

#: The redis client's timeouts: generous, the machine is shared (the default is 0.25 s).
TIMEOUT = 5
pytestmark = pytest.mark.live
PORT = 8080


@pytest.fixture
def farm() -> Iterator[Farm]:
    require_namespaces()
    with Farm(servers=2, shared_key=True, policy=0) as farm:
        yield farm


def lose_the_first_syn_ack(farm: Farm, data: bytes) -> bytes:
    """The request in the SYN to server 0, whose SYN-ACKs are lost; the retransmitted SYN goes
    to server 1, which gets the request again after the handshake and answers."""
    farm.steer("round_robin")
    farm.drop_syn_acks(6, server=0)
    answer = tfo_request(farm.client, farm.vip, PORT, data)
    assert farm.syn_acks_dropped >= 1
    return answer


@pytest.mark.parametrize("guarded", [False, True], ids=["no-guard", "redis-guard"])
def test_lost_syn_ack_post_runs_once(farm: Farm, tmp_path: Path, guarded: bool) -> None:
    apps = [App("s0"), App("s1")]
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(tmp_path, timeout=TIMEOUT))
        for index, app in enumerate(apps):
            guard = None
            if guarded:  # Redis just started: quarantine is tested elsewhere
                guard = ReplayGuard(redis.url, window=10, quarantine="off", server_id=app.name)
            stack.enter_context(serving(farm.servers[index], farm.vip, PORT, app.handle, guard))
        warm = tfo_request(farm.client, farm.vip, PORT, request("GET"))  # a cookie from s0
        assert warm.endswith(b"s0 200")
        answer = lose_the_first_syn_ack(farm, request("POST", b"one coffee"))
    s0, s1 = apps
    # server 0 took the POST from the SYN (its answer never reached the client)
    assert [(s.method, s.status, s.report.syn_data_received) for s in s0.seen] == [
        ("GET", 200, False),  # the cookie request
        ("POST", 200, True),
    ]
    assert s0.orders == [b"one coffee"]
    (again,) = s1.seen
    assert again.method == "POST" and not again.report.syn_data_received  # after the handshake
    if not guarded:
        assert answer.endswith(b"s1 200")
        assert s1.orders == [b"one coffee"]  # the order was carried out twice
        assert again.report.replay_suspected is None and again.verdict is None
        return
    assert answer.endswith(b"s1 425") and answer.startswith(b"HTTP/1.1 425")
    assert s1.orders == []
    assert again.verdict is not None and again.verdict.reason is Reason.DUPLICATE
    assert again.report.replay_suspected is True
    assert again.report.replay_first_server == "s0"
    first = s0.seen[1]
    assert first.verdict is not None and first.verdict.reason is Reason.FIRST_DELIVERY
    assert first.report.replay_suspected is False


def test_lost_syn_ack_get_passes_flagged(farm: Farm, tmp_path: Path) -> None:
    """A GET (safe to replay) that came again is served, and the application sees the flag."""
    apps = [App("s0"), App("s1")]
    with ExitStack() as stack:
        redis = stack.enter_context(RedisServer(tmp_path, timeout=TIMEOUT))
        for index, app in enumerate(apps):
            guard = ReplayGuard(redis.url, window=10, quarantine="off", server_id=app.name)
            stack.enter_context(serving(farm.servers[index], farm.vip, PORT, app.handle, guard))
        tfo_request(farm.client, farm.vip, PORT, request("GET"))
        answer = lose_the_first_syn_ack(farm, request("GET"))
    assert answer.endswith(b"s1 200")
    (again,) = apps[1].seen
    assert again.report.replay_suspected is True and again.report.replay_first_server == "s0"
