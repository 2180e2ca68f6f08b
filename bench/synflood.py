"""SYN flood against `fastopen serve --stack userspace` in a throwaway namespace: 100,000 spoofed
SYNs (sources in 198.18.0.0/15), the server's RSS growth from /proc, SYN cookies once its SYN
queue is full, and curl served during the flood (latency printed). Bounded in count and time.

    .venv/bin/python bench/synflood.py [--count 100000] [--rate 5000 --rate 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys

from fastopen.lab.netns import Netns
from fastopen.lab.synflood import PROBE_PORT, PROBE_SOURCE, flood_userspace_server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rate", type=float, action="append", help="SYNs per second")
    args = parser.parse_args()
    for rate in args.rate or [5000.0, 20000.0]:
        with Netns("flood") as ns:
            ns.sysctl("net.ipv4.tcp_fastopen", 3)
            r = flood_userspace_server(ns, args.count, rate)
        times = [t * 1000 for _, t in r.curl]
        ok = sum(1 for code, _ in r.curl if code == "200")
        cookie = r.probe is not None and len(r.probe.options) == 1
        made = f"{PROBE_SOURCE}:{PROBE_PORT} GET 200" in r.log
        print(
            f"{r.sent:,} SYNs at {rate:,.0f}/s: {r.synacks:,} SYN-ACKs; RSS "
            f"{r.rss_before / 2**20:.1f} MB, growth {r.rss_growth / 2**20:.1f} MB (goal < 20); "
            f"curl {ok}/{len(times)} served, median {statistics.median(times):.1f} ms, "
            f"p90 {statistics.quantiles(times, n=10)[-1]:.1f} ms, max {max(times):.1f} ms "
            f"(goal < 50 ms); probe answered by a SYN cookie: {cookie}, its ACK made the "
            f"connection: {made}; packets lost at the TUN queue {r.queue_drops:,}, by the "
            f"capture {r.capture_drops:,}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
