"""The PyTCP side of the benchmarks: run by the interpreter of the scratch venv that bench/pytcp.py
makes (PyTCP, ``pmd-pytcp`` on PyPI, is GPL: it is never a dependency of fastopen, only run here).

PyTCP opens TUN device DEVICE and owns ADDR/PREFIX on it; the caller brings the device up and
routes ADDR into it when this prints ``device``, and the workload starts when it prints
``ready``. Each line of its results is one JSON object. SIGINT (or SIGTERM) ends it.

    python pytcp_driver.py DEVICE ADDR/PREFIX serve PORT FILE    an HTTP/1.1 server of FILE
    python pytcp_driver.py DEVICE ADDR/PREFIX answer PORT        100-byte requests, 1,000 bytes
    python pytcp_driver.py DEVICE ADDR/PREFIX get HOST PORT PATH OUT TIMEOUT   one GET to OUT
    python pytcp_driver.py DEVICE ADDR/PREFIX idle PORT N        the heap N idle connections add
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import signal
import sys
import time
import tracemalloc
from typing import Any

from pmd_net_addr import Ip4IfAddr
from pmd_pytcp import socket as psocket
from pmd_pytcp import stack

REQUEST_LEN, ANSWER = 100, b"A" * 1000


def say(**what: Any) -> None:
    print(json.dumps(what), flush=True)


async def bound(sock: Any, address: tuple[str, int]) -> None:
    """Bind once the stack owns the address (after the device is up), within 15 s."""
    start = time.monotonic()
    while True:
        try:
            sock.bind(address)
            return
        except OSError:
            if time.monotonic() - start > 15:
                raise
            await asyncio.sleep(0.05)


async def serve(addr: str, port: int, body: bytes | None, stop: asyncio.Event) -> None:
    listener = psocket.socket(psocket.AF_INET4, psocket.SOCK_STREAM)
    await bound(listener, (addr, port))
    listener.setsockopt(psocket.IPPROTO_TCP, psocket.TCP_FASTOPEN, 64)
    listener.listen()
    served = 0
    head = b""
    if body is not None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)

    async def one(conn: Any) -> None:
        nonlocal served
        try:
            got = b""
            want = REQUEST_LEN if body is None else None
            while (want is None and b"\r\n\r\n" not in got) or (want and len(got) < want):
                chunk = await conn.recv()
                if not chunk:
                    return
                got += chunk
            await conn.send(ANSWER if body is None else head + body)
            served += 1
        finally:
            conn.close()

    async def accept() -> None:
        while True:
            conn, _ = await listener.accept()
            asyncio.get_running_loop().create_task(one(conn))

    print("ready", flush=True)
    task = asyncio.get_running_loop().create_task(accept())
    await stop.wait()
    task.cancel()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    say(served=served, cpu=usage.ru_utime + usage.ru_stime)


async def idle(addr: str, port: int, count: int, stop: asyncio.Event) -> None:
    listener = psocket.socket(psocket.AF_INET4, psocket.SOCK_STREAM)
    await bound(listener, (addr, port))
    listener.listen(backlog=count)
    held = []
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    print("ready", flush=True)
    while len(held) < count:
        held.append((await listener.accept())[0])
    await asyncio.sleep(0.5)  # the last ACKs
    gc.collect()
    say(per_connection=(tracemalloc.get_traced_memory()[0] - base) / count)
    await stop.wait()


async def get(
    addr: str, host: str, port: int, path: str, out: str, timeout: float, stop: asyncio.Event
) -> None:
    sock = psocket.socket(psocket.AF_INET4, psocket.SOCK_STREAM)
    await bound(sock, (addr, 0))
    print("ready", flush=True)
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    start = time.perf_counter()
    parts = []
    try:
        async with asyncio.timeout(timeout):
            await sock.connect((host, port))
            await sock.send(request)
            while chunk := await sock.recv():
                parts.append(chunk)
    except TimeoutError:
        say(timed_out=True)
        return
    total = time.perf_counter() - start
    sock.close()
    response = b"".join(parts)
    body = response.partition(b"\r\n\r\n")[2]
    with open(out, "wb") as f:
        f.write(body)
    say(total=total, body_bytes=len(body))


async def main(argv: list[str]) -> None:
    device, iface, mode, *rest = argv
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stack.init()
    stack.add_interface(
        **stack.initialize_interface__tun(device),
        ip4_support=True,
        ip4_host=Ip4IfAddr(iface),
        ip4_dhcp=False,
        ip6_support=False,
        ip6_gua_autoconfig=False,
    )
    await stack.start()
    print("device", flush=True)
    addr = iface.split("/")[0]
    try:
        if mode == "serve":
            with open(rest[1], "rb") as f:
                await serve(addr, int(rest[0]), f.read(), stop)
        elif mode == "answer":
            await serve(addr, int(rest[0]), None, stop)
        elif mode == "idle":
            tracemalloc.start()
            await idle(addr, int(rest[0]), int(rest[1]), stop)
        else:
            host, port, path, out, timeout = rest
            await get(addr, host, int(port), path, out, float(timeout), stop)
    finally:
        await stack.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
