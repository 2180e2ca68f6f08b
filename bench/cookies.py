"""Cookies per second: mint and check Linux-compatible TFO cookies from packed addresses.

Prints siphashc and pure Python side by side, measured in one run. Goal: at least 1,000,000
cookies/s on one core (siphashc).

    .venv/bin/python bench/cookies.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import ipaddress
import time
from collections.abc import Callable

from fastopen import cookies
from fastopen.cookies import KeyRing, Match

GOAL = 1_000_000


def _addresses(n: int) -> list[bytes]:
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    server = ipaddress.IPv4Address("198.19.0.1").packed
    return [ipaddress.IPv4Address(base + i).packed + server for i in range(n)]


def _rate(fn: Callable[[list[bytes]], int], inputs: list[bytes], seconds: float) -> float:
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn(inputs)
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per figure")
    args = parser.parse_args()

    ring = KeyRing.generate().rotated()  # a primary and a backup, as after a rotation
    inputs = _addresses(1000)
    backup_cookies = [ring.backups[0].cookie_packed(d) for d in inputs]

    def mint(batch: list[bytes]) -> int:
        key = ring.primary
        for data in batch:
            key.cookie_packed(data)
        return len(batch)

    def check(batch: list[bytes]) -> int:  # the worst case: a backup-key cookie, two hashes
        for data, cookie in zip(batch, backup_cookies, strict=True):
            if ring.check_packed(cookie, data) is not Match.BACKUP:
                raise AssertionError("backup cookie not recognised")
        return len(batch)

    rows = []
    original = cookies.siphash24
    try:
        for name, impl in (
            ("siphashc", cookies.siphash24_fast),
            ("pure Python", cookies.siphash24_py),
        ):
            if impl is None:
                continue
            cookies.siphash24 = impl
            rows.append(
                (name, _rate(mint, inputs, args.seconds), _rate(check, inputs, args.seconds))
            )
    finally:
        cookies.siphash24 = original

    print(f"{'implementation':<14} {'mint/s':>14} {'check/s (backup)':>18}")
    for name, mint_rate, check_rate in rows:
        print(f"{name:<14} {mint_rate:>14,.0f} {check_rate:>18,.0f}")
    if len(rows) == 2:
        print(f"siphashc / pure Python (mint): {rows[0][1] / rows[1][1]:.1f}x")
    fast_mint = rows[0][1]
    verdict = "met" if fast_mint >= GOAL else "NOT met"
    print(f"goal: >= {GOAL:,} cookies/s minted on one core: {verdict} ({fast_mint:,.0f}/s)")


if __name__ == "__main__":
    main()
