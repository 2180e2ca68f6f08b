"""The kernel's TcpExt counters from /proc/net/netstat, for the current network namespace."""

from __future__ import annotations

from pathlib import Path

from fastopen.constants import TFO_COUNTERS

# /proc/thread-self/net follows the calling thread's network namespace (setns is per thread).
NETSTAT = Path("/proc/thread-self/net/netstat")


def parse_netstat(text: str) -> dict[str, dict[str, int]]:
    """Parse /proc/net/netstat (pairs of header and value lines) into {section: {name: value}}."""
    lines = text.splitlines()
    result: dict[str, dict[str, int]] = {}
    for header, values in zip(lines[::2], lines[1::2], strict=False):
        section, _, names = header.partition(":")
        vsection, _, nums = values.partition(":")
        if section != vsection:
            continue
        result[section] = dict(zip(names.split(), (int(v) for v in nums.split()), strict=False))
    return result


def tcpext() -> dict[str, int]:
    """Every TcpExt counter of the current network namespace."""
    return parse_netstat(NETSTAT.read_text()).get("TcpExt", {})


def tfo_counters() -> dict[str, int]:
    """The TFO counters (Linux TcpExt names); a counter this kernel lacks reads 0."""
    ext = tcpext()
    return {name: ext.get(name, 0) for name in TFO_COUNTERS}
