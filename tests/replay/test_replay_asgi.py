"""The replay guard in the ASGI middleware, on a real uvicorn in a namespace: a kernel TFO client's
POST in the SYN is served; the same SYN replayed (scapy, the same bytes) gets 425 Too Early from
the middleware without reaching the application; a replayed GET is served with
``replay_suspected`` in the report the application reads."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from replayapp import replay_twice, request, tfo_request

from fastopen.cookies import KeyRing
from fastopen.http.asgi import Receive, Scope, Send
from fastopen.http.reports import RequestReport
from fastopen.http.uvicorn_server import uvicorn_server
from fastopen.lab.netns import SERVER, Netns
from fastopen.replay import ReplayGuard

pytestmark = pytest.mark.live
PORT = 8080
#: A client address no namespace owns: the SYN-ACKs to the replayed SYNs go nowhere.
SPOOFED = "198.18.0.9"


class App:
    """An ASGI application that records each request and the report it read."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, RequestReport]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.seen.append((scope["method"], scope["extensions"]["fastopen"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})


class Statuses:
    """Outermost layer: the status of every response the server sent, the middleware's too."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.sent: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                with self.lock:
                    self.sent.append((scope["method"], message["status"]))
            await send(message)

        await self.app(scope, receive, sending)

    def wait(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.sent) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"the server answered {len(self.sent)} requests, not {count}")
            time.sleep(0.01)


def test_uvicorn_answers_a_replayed_post_with_too_early(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    ring = KeyRing.generate()
    guard = ReplayGuard(quarantine="off", server_id="srv")
    app = App()
    with server.entered():
        userver, sock = uvicorn_server(
            app, host=SERVER.ipv4, port=PORT, keys=ring, replay_guard=guard, log_level="warning"
        )
    statuses = Statuses(userver.config.app)
    userver.config.app = statuses  # the middleware's answers are seen too
    stop = threading.Event()

    def run() -> None:
        async def main() -> None:
            task = asyncio.create_task(userver.serve(sockets=[sock]))
            while not stop.is_set():
                await asyncio.sleep(0.02)
            userver.should_exit = True
            await task
            await guard.close()

        with server.entered():
            asyncio.run(main())

    thread = threading.Thread(target=run)
    with sock:
        thread.start()
        try:
            while not userver.started:
                time.sleep(0.01)
            # a kernel TFO client: a GET for the cookie, then a POST in the SYN, served
            assert tfo_request(client, SERVER.ipv4, PORT, request("GET")).startswith(
                b"HTTP/1.1 200"
            )
            answer = tfo_request(client, SERVER.ipv4, PORT, request("POST", b"order 1"))
            assert answer.startswith(b"HTTP/1.1 200")
            replay_twice(client, SPOOFED, SERVER.ipv4, PORT, ring, lambda n: statuses.wait(n + 2))
        finally:
            stop.set()
            thread.join(20)
    assert not thread.is_alive()
    assert statuses.sent == [
        ("GET", 200),
        ("POST", 200),
        ("POST", 200),  # the scapy SYN's first delivery
        ("POST", 425),  # its replay: Too Early, from the middleware
        ("GET", 200),
        ("GET", 200),  # a replayed GET: safe to replay, served
    ]
    # the replayed POST never reached the application
    assert [method for method, _ in app.seen] == ["GET", "POST", "POST", "GET", "GET"]
    reports = [report for _, report in app.seen]
    assert [r.in_syn for r in reports] == [False, True, True, True, True]
    assert [r.connection.replay_suspected for r in reports] == [False, False, False, False, True]
    assert reports[-1].connection.replay_first_server == "srv"
    # recorded: the kernel client's POST, the scapy POST and GET (the first GET had no cookie)
    assert guard.counters["recorded"] == 3 and guard.counters["suspected"] == 2
    assert guard.counters["no-isn"] == 0
