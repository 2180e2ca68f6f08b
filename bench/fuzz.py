"""The engine's stateful fuzz at scale: a million segments (bounded: it stops there, or at the
time limit), over several seeds; prints what it found (see fastopen.engine.fuzz).

    .venv/bin/python bench/fuzz.py [--segments 1000000] [--seconds 1800] [--seed 1000]
"""

from __future__ import annotations

import argparse
import sys
import time

from fastopen.engine.fuzz import Fuzz

#: Segments per seed: each seed is a fresh pair of hosts with its own settings and link.
PER_SEED = 50_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=1800.0, help="time limit")
    parser.add_argument("--seed", type=int, default=1000, help="the first seed")
    args = parser.parse_args()
    start = time.monotonic()
    total = hostile = delivered = steps = 0
    failures: list[str] = []
    seed = args.seed
    while total < args.segments and time.monotonic() - start < args.seconds:
        report = Fuzz(seed).run(segments=min(PER_SEED, args.segments - total))
        total += report.segments
        hostile += report.hostile
        delivered += report.bytes_delivered
        steps += report.steps
        failures += report.failures
        print(report.line(), flush=True)
        seed += 1
    elapsed = time.monotonic() - start
    print(
        f"\n{total:,} segments ({hostile:,} hostile) over {seed - args.seed} seeds, "
        f"{steps:,} steps, {delivered:,} bytes delivered in order, in {elapsed:.0f} s "
        f"({total / elapsed:,.0f} segments/s): {len(failures)} failures"
    )
    for failure in failures:
        print(failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
