"""Connections per second through the lab link: the userspace server against the kernel's asyncio
server, side by side, TFO on.

Each connection: a 100-byte request in the SYN (TFO, the cookie fetched once before), a 1,000-byte
answer, the server closes. The load is the same for every server: ``--concurrency`` clients of
fastopen's asyncio API on the kernel stack of the lab's client namespace, for ``--seconds``. The
server runs in the server namespace in a process of its own (RTT 0): fastopen's ``start_server`` on
the kernel stack, or on the userspace stack that takes the namespace's address over (with the TUN
device's offloads), or PyTCP in the kernel's place (bench/pytcp.py; TFO on its listener too).
Prints connections/s, the server's CPU per connection (its user + system time over the connections
it served: the machine may be shared) and the ratios userspace / kernel, the median of ``--runs``
rounds (goal of issue 11: userspace >= 1.0x the kernel).

Then the memory of an idle established connection on the server, userspace and PyTCP: what
``--idle`` connections that a kernel client opens and leaves idle add to the server process's
Python heap (tracemalloc), over their number: the engine, its asyncio transport and streams for
fastopen, PyTCP's socket and session for PyTCP (the engine alone: bench/engine.py).

Needs root. ``.venv/bin/python bench/connections.py [--seconds 3] [--runs 3] [--no-pytcp]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import signal
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pytcp import PyTcp, install

import fastopen
from fastopen.engine import ENGINE_BUILD
from fastopen.lab.emulator import Lab, check_support
from fastopen.lab.netns import Netns
from fastopen.runtime import UserspaceStack
from fastopen.streams import Stack

PORT = 8080
REQUEST = b"G" * 100
ANSWER = b"A" * 1000
GOAL = 1.0


def serve(stack_name: str, host: str) -> None:
    """The server process: serve until SIGINT, then print what it served and its CPU."""
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        try:
            await reader.readexactly(len(REQUEST))
            writer.write(ANSWER)
            await writer.drain()
            served += 1
        finally:
            writer.close()

    async def run(stack: Stack | None) -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        async with await fastopen.start_server(handler, host, PORT, stack=stack):
            print("ready", flush=True)
            await stop.wait()

    if stack_name == "userspace":
        with UserspaceStack.replace_kernel(None, "fous0", offloads=None) as stack:
            asyncio.run(run(stack))
    else:
        asyncio.run(run(None))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"served": served, "cpu": usage.ru_utime + usage.ru_stime}), flush=True)


def idle(host: str, count: int) -> None:
    """The userspace server process of the memory figure: ``count`` connections, then the
    heap they added, over ``count``."""
    held: list[asyncio.StreamWriter] = []
    done = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        if len(held) == count:
            done.set()
        await reader.read()

    async def run(stack: UserspaceStack) -> None:
        stop = asyncio.Event()  # the parent's SIGINT, once it has read the figure
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
        async with await fastopen.start_server(handler, host, PORT, stack=stack):
            gc.collect()
            base = tracemalloc.get_traced_memory()[0]
            print("ready", flush=True)
            await done.wait()
            await asyncio.sleep(0.5)  # the last ACKs
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - base
            print(json.dumps({"per_connection": used / count}), flush=True)
            for writer in held:
                writer.transport.abort()
            await stop.wait()

    tracemalloc.start()
    with UserspaceStack.replace_kernel(None, "fous0", offloads=None) as stack:
        asyncio.run(run(stack))


_HOLD = """
import socket, sys, time
socks = [socket.create_connection((sys.argv[1], int(sys.argv[2]))) for _ in range(int(sys.argv[3]))]
time.sleep(600)
"""


def _idle_round(lab: Lab, server: subprocess.Popen[str], count: int) -> float:
    """Bytes per idle connection the server process (started, said ready) reports."""
    assert server.stdout is not None
    hold = lab.client.popen(
        [sys.executable, "-c", _HOLD, lab.server_addr.ipv4, str(PORT), str(count)]
    )
    try:
        line = server.stdout.readline()
        return float(json.loads(line)["per_connection"])
    finally:
        hold.kill()
        hold.wait()


def _idle(lab: Lab, python: Path | None, count: int) -> dict[str, float]:
    me = str(Path(__file__).resolve())
    host = lab.server_addr.ipv4
    found = {}
    server = lab.server.popen(
        [sys.executable, me, "--idle-server", host, str(count)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the userspace server did not start")
        found["userspace"] = _idle_round(lab, server, count)
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)
    if python is not None:
        with PyTcp(python, lab.server, host, "idle", str(PORT), str(count)) as peer:
            assert peer.proc is not None
            found["pytcp"] = _idle_round(lab, peer.proc, count)
    return found


def load(host: str, seconds: float, concurrency: int) -> None:
    """The client process: connections as fast as it can, then print how many were done."""

    async def one() -> None:
        async with asyncio.timeout(10):
            reader, writer = await fastopen.open_connection(host, PORT, first_flight=REQUEST)
            try:
                got = await reader.read()
                if len(got) != len(ANSWER):
                    raise SystemExit(f"an answer of {len(got)} bytes")
            finally:
                writer.close()

    async def run() -> int:
        await one()  # the cookie
        done = 0
        end = time.monotonic() + seconds

        failed = 0

        async def worker() -> None:
            nonlocal done, failed
            while time.monotonic() < end:
                try:
                    await one()
                except (TimeoutError, OSError):
                    failed += 1
                    continue
                done += 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        took = time.monotonic() - start
        print(json.dumps({"done": done, "failed": failed, "seconds": took}), flush=True)
        return done

    asyncio.run(run())


def _client(lab: Lab, host: str, seconds: float, concurrency: int) -> dict[str, float]:
    me = str(Path(__file__).resolve())
    args = [sys.executable, me, "--load", host, str(seconds), str(concurrency)]
    return _run(lab.client, args, seconds + 60)


def _pytcp_round(
    lab: Lab, python: Path, seconds: float, concurrency: int
) -> tuple[float, float, float]:
    host = lab.server_addr.ipv4
    with PyTcp(python, lab.server, host, "answer", str(PORT)) as peer:
        client = _client(lab, host, seconds, concurrency)
        served = peer.stop()
    return _rates(client, served, "pytcp")


def _rates(
    client: dict[str, float], served: dict[str, float], stack: str
) -> tuple[float, float, float]:
    if client["failed"]:
        print(f"  ({stack}: {client['failed']:g} connections failed or took over 10 s)")
    rate = client["done"] / client["seconds"]
    return rate, served["cpu"] / max(served["served"], 1) * 1e6, client["failed"]


def _round(lab: Lab, stack: str, seconds: float, concurrency: int) -> tuple[float, float, float]:
    """(connections/s, server CPU us per connection, failed) of one round against ``stack``."""
    me = str(Path(__file__).resolve())
    host = lab.server_addr.ipv4
    server = lab.server.popen(
        [sys.executable, me, "--serve", stack, host], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit(f"the {stack} server did not start")
        client = _client(lab, host, seconds, concurrency)
    finally:
        server.send_signal(signal.SIGINT)
        out, _ = server.communicate(timeout=30)
    return _rates(client, json.loads(out.strip().splitlines()[-1]), stack)


def _run(ns: Netns, args: list[str], timeout: float) -> dict[str, float]:
    proc = ns.run(args, timeout=timeout)
    result: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="of load per round")
    parser.add_argument("--runs", type=int, default=3, help="rounds (medians)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients at once")
    parser.add_argument("--no-pytcp", action="store_true", help="leave PyTCP out")
    parser.add_argument("--idle", type=int, default=200, help="idle connections (0: none)")
    parser.add_argument("--serve", nargs=2, metavar=("STACK", "HOST"), help=argparse.SUPPRESS)
    parser.add_argument("--idle-server", nargs=2, metavar=("HOST", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--load", nargs=3, metavar=("HOST", "S", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return
    if args.idle_server:
        idle(args.idle_server[0], int(args.idle_server[1]))
        return
    if args.load:
        load(args.load[0], float(args.load[1]), int(args.load[2]))
        return
    check_support("bench/connections.py")
    python, why = (None, "--no-pytcp") if args.no_pytcp else install()
    if python is None:
        print(f"PyTCP left out: {why}")
    stacks = ("kernel", "userspace") + (("pytcp",) if python is not None else ())
    rates: dict[str, list[float]] = {s: [] for s in stacks}
    cpus: dict[str, list[float]] = {s: [] for s in stacks}
    with Lab(rtt=0.0) as lab:
        for _ in range(args.runs):
            for stack in stacks:
                if stack == "pytcp":
                    assert python is not None
                    rate, cpu, _ = _pytcp_round(lab, python, args.seconds, args.concurrency)
                else:
                    rate, cpu, _ = _round(lab, stack, args.seconds, args.concurrency)
                rates[stack].append(rate)
                cpus[stack].append(cpu)
        memory = _idle(lab, python, args.idle) if args.idle else {}
    print(
        f"connections/s through the lab link (RTT 0), TFO, {args.concurrency} kernel clients, "
        f"{args.seconds:g} s per round, median of {args.runs} (min-max); the engine "
        f"{ENGINE_BUILD}"
    )
    for stack in stacks:
        r, c = rates[stack], cpus[stack]
        print(
            f"  {stack:10} {statistics.median(r):8.0f}/s ({min(r):.0f}-{max(r):.0f})   "
            f"server CPU {statistics.median(c):6.0f} us per connection"
        )
    ratio = statistics.median(rates["userspace"]) / statistics.median(rates["kernel"])
    cpu_ratio = statistics.median(cpus["userspace"]) / statistics.median(cpus["kernel"])
    verdict = "met" if ratio >= GOAL else "NOT met"
    print(f"  userspace / kernel: {ratio:.2f} (goal >= {GOAL:g}: {verdict}); CPU {cpu_ratio:.2f}x")
    if "pytcp" in rates:
        ahead = statistics.median(rates["userspace"]) / statistics.median(rates["pytcp"])
        verdict = "ahead" if ahead > 1 else "NOT ahead"
        print(f"  userspace / pytcp: {ahead:.2f} ({verdict} of PyTCP)")
    for stack, size in memory.items():
        print(f"memory per idle connection on the {stack} server: {size:,.0f} bytes")
    if "pytcp" in memory:
        verdict = "ahead" if memory["userspace"] < memory["pytcp"] else "NOT ahead"
        print(f"  userspace / pytcp: {memory['userspace'] / memory['pytcp']:.2f} ({verdict})")


if __name__ == "__main__":
    main()
