"""The latency grid of the TFO paper: time to first byte, plain TCP and TFO, at several RTTs.

For each RTT (20, 100 and 200 ms by default) and each stack, a fresh lab link; ``--connections``
plain connections, one cookie request, then ``--connections`` TFO connections with the cookie,
each a 100-byte request and its answer (the demo's exchange). Prints the median and p95 time to
first byte and the ratio TFO/plain of the medians (goal: at most 0.52, the paper's figure for
a page of one round trip). Stacks are columns of the grid: the kernel's and the userspace
engine's (which takes the kernel's place in both namespaces), with the difference of their
medians (goal of issue 11: the userspace stack within 0.5 ms of the kernel). ``--rounds R``
takes each figure's connections in R rounds, the stacks in turn in each (a fresh lab each time):
this machine's own latency drifts by milliseconds over a minute, and stacks measured one after
the other would show that drift as their difference.

Needs root. ``.venv/bin/python bench/latency_grid.py [--connections 30] [--rounds 1]
[--rtt 20 --rtt 100 ...]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from fastopen.engine import ENGINE_BUILD
from fastopen.lab.demo import Kind, Sample, in_lab, measure, plan
from fastopen.lab.emulator import Lab, check_support
from fastopen.streams import STACKS

GOAL = 0.52
#: The userspace stack's medians within this many ms of the kernel's.
GAP_GOAL = 0.5


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _grid_cell(stack_name: str, rtt: float, connections: int) -> list[Sample]:
    stack = STACKS[stack_name]()
    with Lab(rtt=rtt) as lab, in_lab(stack, lab):
        return asyncio.run(measure(lab, stack, plan(connections), lab.server_addr.ipv4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=30, help="per kind, RTT and stack")
    parser.add_argument("--rtt", type=float, action="append", help="RTT in ms (repeatable)")
    parser.add_argument("--stack", action="append", choices=sorted(STACKS), help="(repeatable)")
    parser.add_argument("--rounds", type=int, default=1, help="stacks in turn, this many times")
    args = parser.parse_args()
    check_support("bench/latency_grid.py")
    rtts = args.rtt or [20.0, 100.0, 200.0]
    stacks = args.stack or sorted(STACKS)

    print(
        f"time to first byte, {args.connections} connections per figure in {args.rounds} "
        f"round(s), medians and p95 in ms; the engine {ENGINE_BUILD}"
    )
    header = f"{'RTT':>7}  {'stack':<10}{'plain':>17}{'TFO':>17}{'TFO/plain':>11}  goal"
    print(header)
    worst = 0.0
    worst_gap = 0.0
    for rtt_ms in rtts:
        medians: dict[str, tuple[float, float]] = {}
        taken: dict[str, list[Sample]] = {name: [] for name in stacks}
        for _ in range(args.rounds):
            for name in stacks:
                per_round = -(-args.connections // args.rounds)
                taken[name] += _grid_cell(name, rtt_ms / 1000, per_round)
        for name, samples in taken.items():
            plain = [s.ttfb * 1000 for s in samples if s.kind is Kind.PLAIN]
            tfo = [s.ttfb * 1000 for s in samples if s.kind is Kind.TFO_COOKIE]
            unused = sum(1 for s in samples if s.kind is Kind.TFO_COOKIE and not s.client.used)
            ratio = statistics.median(tfo) / statistics.median(plain)
            worst = max(worst, ratio)
            medians[name] = statistics.median(plain), statistics.median(tfo)
            cells = [f"{statistics.median(v):7.1f} / {_p95(v):6.1f}" for v in (plain, tfo)]
            note = f"  ({unused} TFO connections without SYN data!)" if unused else ""
            print(
                f"{rtt_ms:>4g} ms  {name:<10}{cells[0]:>17}{cells[1]:>17}{ratio:>11.2f}"
                f"  <= {GOAL}{note}"
            )
        if "kernel" in medians and "userspace" in medians:
            gaps = [u - k for u, k in zip(medians["userspace"], medians["kernel"], strict=True)]
            worst_gap = max(worst_gap, *gaps)
            print(
                f"{rtt_ms:>4g} ms  userspace - kernel: plain {gaps[0]:+.2f} ms, "
                f"TFO {gaps[1]:+.2f} ms  (goal: within {GAP_GOAL:g} ms)"
            )
    met = worst <= GOAL and worst_gap <= GAP_GOAL
    print("goal met" if met else "goal NOT met")


if __name__ == "__main__":
    main()
