"""uvicorn, hypercorn and gunicorn on TFO listeners (fastopen backlog, own key ring), with each
request's report reachable from the application: ASGI ``scope["extensions"]["fastopen"]`` and
WSGI ``environ["fastopen.report"]``. The client is fastopen's urllib3 pool in another namespace;
the server's kernel is the TFO peer."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastopen.constants import TCP_FASTOPEN, TCP_FASTOPEN_KEY
from fastopen.cookies import KeyRing
from fastopen.http.asgi import Receive, Scope, Send
from fastopen.http.hypercorn_server import FastOpenConfig, serve_hypercorn
from fastopen.http.urllib3_pool import FastOpenPoolManager
from fastopen.http.uvicorn_server import uvicorn_server
from fastopen.lab.netns import SERVER, Netns
from fastopen.ops import keys as key_store

PORT = 8090
URL = f"http://{SERVER.ipv4}:{PORT}/"
BACKLOG = 37


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers each request with its TFO report as JSON (``null`` when it has none)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    report = scope.get("extensions", {}).get("fastopen")
    body = json.dumps(None if report is None else report.to_dict()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def served_reports(client: Netns) -> list[dict[str, Any]]:
    """What the application reported for: a first request (a cookie request), then two on one
    new kept-alive connection (the first in the SYN, the second reused)."""
    with client.entered():
        first = FastOpenPoolManager()
        reports = [json.loads(first.request("GET", URL).data)]
        first.clear()
        pool = FastOpenPoolManager()
        reports += [json.loads(pool.request("GET", URL).data) for _ in range(2)]
        pool.clear()
    return reports


def check(reports: list[dict[str, Any]]) -> None:
    assert all(r is not None for r in reports), reports
    assert [(r["in_syn"], r["reused"]) for r in reports] == [
        (False, False),
        (True, False),
        (False, True),
    ]
    assert [r["connection"]["side"] for r in reports] == ["server"] * 3
    assert [r["connection"]["syn_data_received"] for r in reports] == [False, True, True]


def listener_settings(sock: socket.socket) -> tuple[int, KeyRing]:
    """The fastopen backlog and the key ring of a TFO listener, as the kernel has them."""
    qlen = sock.getsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN)
    return qlen, KeyRing.from_raw(sock.getsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN_KEY, 32))


@contextmanager
def in_thread(ns: Netns, main: Callable[[asyncio.Event], Any]) -> Iterator[None]:
    """Run ``main(stop)`` on an event loop in a thread inside ``ns`` until the block ends."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        async def go() -> None:
            box["loop"] = asyncio.get_running_loop()
            box["stop"] = stop = asyncio.Event()
            ready.set()
            await main(stop)

        with ns.entered():
            asyncio.run(go())

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert ready.wait(10)
        yield
    finally:
        if "loop" in box:
            box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(10)
        assert not thread.is_alive()


def wait_listening(ns: Netns, port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = ns.run(["ss", "-Hltn", f"sport = :{port}"]).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} in {ns.name}")


def test_uvicorn(netns_pair: tuple[Netns, Netns]) -> None:
    client, server = netns_pair
    ring = KeyRing.generate()
    with server.entered():
        userver, sock = uvicorn_server(
            app,
            host=SERVER.ipv4,
            port=PORT,
            fastopen_backlog=BACKLOG,
            keys=ring,
            log_level="warning",
        )
    assert listener_settings(sock) == (BACKLOG, ring)

    async def main(stop: asyncio.Event) -> None:
        task = asyncio.create_task(userver.serve(sockets=[sock]))
        await stop.wait()
        userver.should_exit = True
        await task

    with sock, in_thread(server, main):
        wait_listening(server, PORT)
        while not userver.started:
            time.sleep(0.01)
        check(served_reports(client))


def test_hypercorn(netns_pair: tuple[Netns, Netns], tmp_path: Path) -> None:
    client, server = netns_pair
    store = tmp_path / "tfo-key.json"
    with Netns("k") as scratch, scratch.entered():  # applies the new key there only
        ring = key_store.generate(store).ring
    config = FastOpenConfig()
    config.bind = [f"{SERVER.ipv4}:{PORT}"]
    config.fastopen_backlog = BACKLOG
    config.fastopen_keys = store
    config.accesslog = None
    made: list[socket.socket] = []
    create = config.create_sockets

    def recording() -> Any:
        sockets = create()
        made.extend(sockets.insecure_sockets)
        return sockets

    config.create_sockets = recording  # type: ignore[method-assign]

    async def main(stop: asyncio.Event) -> None:
        await serve_hypercorn(app, config, shutdown_trigger=stop.wait)

    with in_thread(server, main):
        wait_listening(server, PORT)
        assert [listener_settings(s) for s in made] == [(BACKLOG, ring)]
        check(served_reports(client))


WSGI_APP = """
import json
from fastopen.http.wsgi import FastOpenWSGIMiddleware

def inner(environ, start_response):
    report = environ.get("fastopen.report")
    body = json.dumps(None if report is None else report.to_dict()).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]

app = FastOpenWSGIMiddleware(inner)
"""

GUNICORN_CONF = """
from fastopen.http.wsgi import gunicorn_when_ready
when_ready = gunicorn_when_ready(fastopen_backlog={backlog}, keys={store!r})
worker_class = "gthread"
threads = 2
workers = 1
keepalive = 5
"""


def test_gunicorn_on_a_passed_socket(netns_pair: tuple[Netns, Netns], tmp_path: Path) -> None:
    """The listener is the test's (as systemd would pass it: ``--bind fd://N``); gunicorn's
    ``when_ready`` hook turns TFO on for it, with the key store's ring."""
    client, server = netns_pair
    store = tmp_path / "tfo-key.json"
    with Netns("k") as scratch, scratch.entered():
        ring = key_store.generate(store).ring
    (tmp_path / "wsgi_app.py").write_text(WSGI_APP)
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(textwrap.dedent(GUNICORN_CONF.format(backlog=BACKLOG, store=str(store))))
    with server.entered():
        sock = socket.create_server((SERVER.ipv4, PORT))
    with sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN) == 0
        proc = server.popen(
            [sys.executable, "-m", "gunicorn", "-c", str(conf), "--chdir", str(tmp_path),
             "--bind", f"fd://{sock.fileno()}", "wsgi_app:app"],
            pass_fds=[sock.fileno()],
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while sock.getsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN) == 0:
                assert proc.poll() is None, "gunicorn exited"
                assert time.monotonic() < deadline, "gunicorn never became ready"
                time.sleep(0.05)
            assert listener_settings(sock) == (BACKLOG, ring)
            check(served_reports(client))
        finally:
            proc.terminate()
            proc.wait(10)
