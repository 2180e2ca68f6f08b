"""The lab link's own cost: added latency, delay error and packets/s of the forwarder.

Measured in one run, side by side with a veth pair (the kernel's own link, no forwarder):

- added latency per pass at delay 0: median UDP round trip through the lab link minus the same
  through veth, halved (goal: at most 50 us);
- delay error: a link with ``--delay`` each way; the median and p99 of how much later than
  2 x delay (plus the link's own round trip at delay 0) the round trip was, halved, per pass
  (goal: at most 0.5 ms);
- packets/s forwarded: a sender process blasts 64-byte UDP datagrams for ``--seconds`` through
  the link at delay 0 and at delay 1 ms (the heap path); the forwarder's own count over the
  window (goal: at least 100,000).

Needs root. ``.venv/bin/python bench/link.py [--pings 2000] [--seconds 1] [--delay 5]``
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time

from fastopen.lab.emulator import Lab, check_support
from fastopen.lab.netns import CLIENT, SERVER, Netns, veth_link

PORT = 7000
GOALS = {"latency": 50e-6, "delay_error": 0.5e-3, "pps": 100_000}

_ECHO = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(({SERVER.ipv4!r}, {PORT}))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(data, peer)
"""

_BLAST = f"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(({SERVER.ipv4!r}, {PORT + 1}))
payload, sent, end = b"x" * 36, 0, time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    for _ in range(100):
        try:
            s.send(payload)
        except OSError:
            pass
    sent += 100
print(sent)
"""


def _rtts(client: Netns, server: Netns, count: int) -> list[float]:
    """``count`` UDP round trips from ``client`` to an echo process in ``server``."""
    echo = server.popen([sys.executable, "-c", _ECHO])
    try:
        with client.entered():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            sock.settimeout(2)
            sock.connect((SERVER.ipv4, PORT))
            for _ in range(100):  # until the echo process answers
                try:
                    sock.send(b"warm")
                    sock.recv(64)
                    break
                except (TimeoutError, ConnectionRefusedError):
                    time.sleep(0.05)
            rtts = []
            for _ in range(count):
                start = time.perf_counter()
                sock.send(b"ping")
                sock.recv(64)
                rtts.append(time.perf_counter() - start)
        return rtts
    finally:
        echo.terminate()
        echo.wait()


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def _pps(seconds: float, delay: float) -> tuple[float, float]:
    """Packets/s the forwarder forwarded in the middle of a blast, and the sender's rate."""
    with Lab(delay=delay) as lab:
        with lab.server.entered():
            sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sink:
            sink.bind((SERVER.ipv4, PORT + 1))  # never read: the kernel drops what overflows
            warmup = 0.3  # the sender's interpreter starts
            blast = lab.client.popen(
                [sys.executable, "-c", _BLAST, str(seconds + 2 * warmup)],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(warmup)
            before, start = lab.stats().c2s.forwarded, time.perf_counter()
            time.sleep(seconds)
            after, end = lab.stats().c2s.forwarded, time.perf_counter()
            sent, _ = blast.communicate(timeout=seconds + 30)
    return (after - before) / (end - start), int(sent) / (seconds + 2 * warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pings", type=int, default=2000, help="round trips per figure")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each blast")
    parser.add_argument("--delay", type=float, default=5.0, help="one-way delay in ms")
    args = parser.parse_args()
    check_support("bench/link.py")
    delay = args.delay / 1000

    with Netns("bench-c") as client, Netns("bench-s") as server:
        veth_link(client, server, a_addr=CLIENT, b_addr=SERVER)
        veth = statistics.median(_rtts(client, server, args.pings))
    with Lab() as lab:
        tun = statistics.median(_rtts(lab.client, lab.server, args.pings))
    with Lab(delay=delay) as lab:
        delayed = _rtts(lab.client, lab.server, max(100, args.pings // 10))
    errors = [(rtt - tun - 2 * delay) / 2 for rtt in delayed]
    pps0, sent0 = _pps(args.seconds, 0.0)
    pps1, sent1 = _pps(args.seconds, 0.001)

    added = (tun - veth) / 2
    median_error, at = statistics.median(errors), f"{args.delay:g} ms"
    rows = [
        ("UDP round trip over veth (median)", f"{veth * 1e6:.1f} us", ""),
        ("UDP round trip over the lab link, delay 0", f"{tun * 1e6:.1f} us", ""),
        ("added latency per pass", f"{added * 1e6:.1f} us", "<= 50 us"),
        (f"delay error per pass at {at}, median", f"{median_error * 1e3:.3f} ms", "<= 0.5 ms"),
        (f"delay error per pass at {at}, p99", f"{_p(errors, 0.99) * 1e3:.3f} ms", ""),
        ("packets/s forwarded, delay 0", f"{pps0:,.0f} (sender {sent0:,.0f}/s)", ">= 100,000"),
        ("packets/s forwarded, delay 1 ms", f"{pps1:,.0f} (sender {sent1:,.0f}/s)", ">= 100,000"),
    ]  # fmt: skip
    width = max(len(r[0]) for r in rows)
    for name, value, goal in rows:
        print(f"{name:<{width}}  {value:>28}  {goal}")
    met = (
        added <= GOALS["latency"]
        and abs(median_error) <= GOALS["delay_error"]
        and min(pps0, pps1) >= GOALS["pps"]
    )
    print("goals met" if met else "goals NOT met")


if __name__ == "__main__":
    main()
