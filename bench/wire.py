"""The wire codec's cost per packet: checksum, parse and emit of a full data segment and a pure ACK.

Each figure is the median of ``--repeat`` timings of ``--number`` calls, in microseconds of CPU per
call.
The packets are what the engine sends in a bulk transfer: a 1,448-byte payload behind
``nop,nop,TS`` (a 1,500-byte IPv4 packet) and a pure ACK with the same options. "receive" is the
engine's chain (``parse_ip`` then ``TcpSegment.parse`` with the checksum verified), "send" is
``ip_packet`` (what ``Host.packets_to_send`` calls), "send, partial" the same with the checksum
left to the device (``partial_checksum=True``, for TUN offloads).

``--baseline REV`` loads ``src/fastopen/wire.py`` of git revision REV (``main``, say) beside the
working tree's and prints both and their ratio, measured in the same run.

    .venv/bin/python bench/wire.py [--baseline main] [--number 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from types import ModuleType
from typing import Any

from fastopen import wire

ROOT = Path(__file__).resolve().parent.parent
GOAL_US = 5.0  # "a codec that costs a few microseconds a packet"


def _baseline(rev: str) -> ModuleType:
    """``fastopen.wire`` as it is at git revision ``rev``, as a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:src/fastopen/wire.py"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    folder = Path(tempfile.mkdtemp(prefix="fastopen-wire-"))
    path = folder / "wire_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("wire_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["wire_baseline"] = module
    spec.loader.exec_module(module)
    return module


def _cases(w: Any) -> dict[str, Callable[[], object]]:
    src, dst = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")
    src6, dst6 = IPv6Address("fd00:f0::1"), IPv6Address("fd00:f0::2")
    nop = w.Nop()
    opts = (nop, nop, w.Timestamps(123456789, 987654321))
    data = w.TcpSegment(40000, 80, 1, 2, w.Flags.ACK | w.Flags.PSH, 512, opts, bytes(1448))
    ack = w.TcpSegment(80, 40000, 2, 1449, w.Flags.ACK, 512, opts)
    data_packet, ack_packet = w.ip_packet(src, dst, data), w.ip_packet(dst, src, ack)
    data6_packet = w.ip_packet(src6, dst6, data)
    raw = data_packet[20:]

    def receive(packet: bytes) -> Callable[[], object]:
        def run() -> object:
            ip = w.parse_ip(packet)
            return w.TcpSegment.parse(ip.payload, ip.src, ip.dst)

        return run

    cases: dict[str, Callable[[], object]] = {
        "checksum, 1,468 bytes": lambda: w.internet_checksum(raw),
        "receive data (IPv4)": receive(data_packet),
        "receive data (IPv6)": receive(data6_packet),
        "receive ACK": receive(ack_packet),
        "send data (IPv4)": lambda: w.ip_packet(src, dst, data),
        "send data (IPv6)": lambda: w.ip_packet(src6, dst6, data),
        "send ACK": lambda: w.ip_packet(dst, src, ack),
    }
    if "partial_checksum" in w.ip_packet.__code__.co_varnames:
        cases["send data, partial"] = lambda: w.ip_packet(src, dst, data, partial_checksum=True)
    return cases


def _time(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Median microseconds of CPU per call (the process's CPU time: the machine may be shared)."""
    times = timeit.repeat(fn, number=number, repeat=repeat, timer=time.process_time)
    return statistics.median(t / number * 1e6 for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="git revision to compare with")
    parser.add_argument("--number", type=int, default=20000, help="calls per timing")
    parser.add_argument("--repeat", type=int, default=5, help="timings per figure (median)")
    args = parser.parse_args()

    now = _cases(wire)
    before = _cases(_baseline(args.baseline)) if args.baseline else {}
    header = f"{'us per call':26} {'now':>8}"
    if before:
        header += f" {args.baseline:>10} {'ratio':>7}"
    print(header)
    per_packet = 0.0
    for name, fn in now.items():
        us = _time(fn, args.number, args.repeat)
        if name in ("receive data (IPv4)", "send ACK"):
            per_packet = max(per_packet, us)
        line = f"{name:26} {us:8.2f}"
        if name in before:
            old = _time(before[name], args.number, args.repeat)
            line += f" {old:10.2f} {old / us:6.1f}x"
        print(line)
    verdict = "met" if per_packet <= GOAL_US else "NOT met"
    print(f"goal: a few microseconds a packet (<= {GOAL_US:.0f} us to receive or send): {verdict}")


if __name__ == "__main__":
    main()
