"""Real TFO servers for lab namespaces: the kernel's (a threaded echo), nginx, the userspace stack.

Each is a context manager that starts the server in a namespace and stops it on every exit path.
The echo servers answer ``tag + request`` (one read a connection) and record each request.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from fastopen.constants import TCP_FASTOPEN
from fastopen.errors import FastOpenError, KernelFeatureMissing
from fastopen.lab.netns import Netns
from fastopen.runtime.stack import UserspaceStack

#: How long a server may take to start listening.
START_TIMEOUT = 10.0


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


@contextlib.contextmanager
def kernel_echo(
    ns: Netns, addr: str, port: int, *, tag: bytes = b"ok:", qlen: int = 64
) -> Iterator[list[bytes]]:
    """A kernel TFO listener at ``addr``:``port`` in ``ns``, served by a thread; yields the list
    of requests it got (the first read of each connection), in order."""
    with ns.entered():
        lsock = socket.socket(_family(addr), socket.SOCK_STREAM)
    got: list[bytes] = []
    stop = threading.Event()
    try:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, qlen)
        lsock.bind((addr, port))
        lsock.listen(qlen)
        lsock.settimeout(0.1)
    except BaseException:
        lsock.close()
        raise

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(3)
                try:
                    data = conn.recv(4096)
                    if data:
                        got.append(data)
                        conn.sendall(tag + data)
                except OSError:
                    continue

    thread = threading.Thread(target=serve, name=f"echo-{ns.name}", daemon=True)
    thread.start()
    try:
        yield got
    finally:
        stop.set()
        thread.join(5)
        lsock.close()


NGINX_CONF = """
daemon off; master_process off; worker_processes 1; pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}; proxy_temp_path {dir}; fastcgi_temp_path {dir};
    uwsgi_temp_path {dir}; scgi_temp_path {dir};
    server {{
        listen {listen} fastopen=64;
        location / {{ return 200 "nginx says hi\\n"; }}
    }}
}}
"""


def _listening(ns: Netns, addr: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise FastOpenError(f"nginx exited at once: {err.strip()}")
        with ns.entered():
            probe = socket.socket(_family(addr), socket.SOCK_STREAM)
        with probe:
            probe.settimeout(0.2)
            if probe.connect_ex((addr, port)) == 0:
                return
        time.sleep(0.05)
    raise FastOpenError(f"nginx did not listen at {addr}:{port} in {START_TIMEOUT:g} s")


@contextlib.contextmanager
def nginx(ns: Netns, addr: str, port: int) -> Iterator[None]:
    """nginx listening at ``addr``:``port`` in ``ns`` with TFO (``fastopen=64``), answering
    every request with ``200 nginx says hi``."""
    if shutil.which("nginx") is None:
        raise KernelFeatureMissing("nginx is missing", hint="apt-get install nginx-light")
    listen = f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
    with tempfile.TemporaryDirectory(prefix="fo-nginx-") as tmp:
        conf = Path(tmp) / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp, listen=listen))
        proc = ns.popen(["nginx", "-c", str(conf), "-p", tmp], stderr=subprocess.PIPE)
        try:
            _listening(ns, addr, port, proc)
            yield
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@contextlib.asynccontextmanager
async def userspace_echo(
    ns: Netns, addr: str, port: int, *, tag: bytes = b"ok:"
) -> AsyncIterator[list[bytes]]:
    """A server on the userspace stack, which takes over the addresses of ``ns`` for the block,
    at ``addr``:``port``; it runs on the calling event loop. Yields the requests it got."""
    got: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await reader.read(4096)
            if data:
                got.append(data)
                writer.write(tag + data)
                await writer.drain()
        finally:
            writer.close()

    with UserspaceStack.replace_kernel(ns) as stack:
        server = await stack.start_server(handle, addr, port)
        try:
            yield got
        finally:
            server.close()
            await server.wait_closed()
