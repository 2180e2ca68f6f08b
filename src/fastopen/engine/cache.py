"""The client's TFO cache: what Linux keeps in ``tcp_metrics``, plus a FreeBSD-style negative cache.

Positive entries are per (client address, server address), as Linux keys them: the cookie and
the option kind it came in, the server MSS, SYN losses, and Linux's ``try_exp`` (after a cookie
request that got no cookie, kind 254 is tried once, then kind 34 again).

Negative entries are per (client address, server address, server port), as FreeBSD keys them:
a SYN-ACK without the option, a cookie of an invalid length, a SYN-data timeout or an ICMP
unreachable disable TFO on that path for ``negative_time`` seconds (900 by default); the next
connection after that makes a fresh cookie request.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: FreeBSD's ``net.inet.tcp.fastopen.path_disable_time`` default.
NEGATIVE_TIME = 900.0


@dataclass(slots=True)
class CacheEntry:
    """One server, as seen from one client address (Linux ``struct tcp_fastopen_metrics``)."""

    mss: int = 0
    cookie: bytes = b""
    experimental: bool = False
    try_exp: int = 0
    syn_loss: int = 0
    last_syn_loss: float | None = None


class NegativeReason(enum.Enum):
    """Why TFO is off on a path."""

    NO_OPTION = "SYN-ACK without the TFO option"
    BAD_COOKIE_LENGTH = "cookie of an invalid length"
    SYN_DATA_TIMEOUT = "SYN with data timed out"
    UNREACHABLE = "ICMP unreachable"


@dataclass(frozen=True, slots=True)
class NegativeEntry:
    until: float
    reason: NegativeReason


PathKey = tuple[IPAddress, IPAddress, int]


class CookieCache:
    """The per-host client cache; ``negative_time=0`` turns the negative cache off (pure Linux)."""

    def __init__(self, negative_time: float = NEGATIVE_TIME) -> None:
        self.negative_time = negative_time
        self.entries: dict[tuple[IPAddress, IPAddress], CacheEntry] = {}
        self._negative: dict[PathKey, NegativeEntry] = {}

    # -- positive cache (Linux tcp_fastopen_cache_get / _set) --------------------------------------

    def get(self, client: IPAddress, server: IPAddress) -> tuple[int, bytes, bool]:
        """``(mss, cookie, experimental)`` for a SYN to ``server``: mss 0 and b"" when unknown."""
        entry = self.entries.get((client, server))
        if entry is None:
            return 0, b"", False
        experimental = entry.experimental if entry.cookie else entry.try_exp == 1
        return entry.mss, entry.cookie, experimental

    def set(
        self,
        client: IPAddress,
        server: IPAddress,
        *,
        mss: int,
        cookie: bytes | None,
        experimental: bool,
        syn_lost: bool,
        try_exp: int,
        now: float,
    ) -> None:
        """Record what a SYN-ACK taught (Linux ``tcp_fastopen_cache_set``)."""
        entry = self.entries.setdefault((client, server), CacheEntry())
        if mss:
            entry.mss = mss
        if cookie:
            entry.cookie = cookie
            entry.experimental = experimental
        elif try_exp > entry.try_exp and not entry.cookie and not entry.experimental:
            entry.try_exp = try_exp
        if syn_lost:
            entry.syn_loss += 1
            entry.last_syn_loss = now
        else:
            entry.syn_loss = 0

    def delete(self, server: IPAddress | None = None) -> int:
        """Forget entries (all, or those for ``server``), like ``ip tcp_metrics delete``."""
        doomed = [k for k in self.entries if server is None or k[1] == server]
        for key in doomed:
            del self.entries[key]
        return len(doomed)

    # -- negative cache (FreeBSD) ------------------------------------------------------------------

    def disable(self, path: PathKey, reason: NegativeReason, now: float) -> None:
        """Turn TFO off on ``path`` for ``negative_time`` seconds (no-op when that is 0).

        Port 0 stands for every port of the server (an ICMP unreachable names no port).
        """
        if self.negative_time > 0:
            self._negative[path] = NegativeEntry(now + self.negative_time, reason)

    def disabled(self, path: PathKey, now: float) -> bool:
        """Whether TFO is off on ``path``; an expired entry is dropped (a fresh request follows)."""
        if not self._negative:
            return False
        for key in (path, (path[0], path[1], 0)):
            entry = self._negative.get(key)
            if entry is None:
                continue
            if now < entry.until:
                return True
            del self._negative[key]
        return False

    def negative(self, now: float) -> dict[PathKey, NegativeEntry]:
        """The paths on which TFO is off at ``now``."""
        return {k: v for k, v in self._negative.items() if now < v.until}

    def reset_negative(self, server: IPAddress | None = None) -> int:
        """Clear negative entries (all, or those for ``server``); returns how many."""
        doomed = [k for k in self._negative if server is None or k[1] == server]
        for key in doomed:
            del self._negative[key]
        return len(doomed)
