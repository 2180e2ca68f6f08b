"""Warnings when the TFO counters that mean trouble rise: what it means and what to do.

``fastopen stats --watch`` and ``fastopen keyd`` feed successive counter readings to an
:class:`AlertMonitor`, which logs a warning (Python logging: the journal under systemd) for a rise
of ``TCPFastOpenListenOverflow``, ``TCPFastOpenPassiveFail`` or ``TCPFastOpenBlackhole``, at most
once per ``min_interval`` seconds per counter and stack; rises in between are summed into the next
warning. Both stacks are watched: the kernel's counters and the userspace stack's (``stack`` says
which), so a userspace listener's backlog overflow is reported as the kernel's is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Advice:
    meaning: str
    action: str


WATCHED: dict[str, Advice] = {
    "TCPFastOpenListenOverflow": Advice(
        "a listener's queue of pending fast open requests (its TCP_FASTOPEN qlen) was full, so "
        "SYNs got an ordinary handshake without a cookie",
        "raise the listener's TCP_FASTOPEN qlen (capped by net.core.somaxconn), make the "
        "application accept faster, or look for a SYN flood",
    ),
    "TCPFastOpenPassiveFail": Advice(
        "SYNs carried cookies that none of this server's keys made; their data was dropped and "
        "the clients lost a round trip",
        "after a key change, rotate with `fastopen key rotate` (the old key stays a backup); in a "
        "farm, give every server the same keys (`fastopen keyd`); check that the key survived a "
        "reboot (`fastopen status`)",
    ),
    "TCPFastOpenBlackhole": Advice(
        "the kernel saw TFO connections die on the path (a middlebox dropping SYN data) and "
        "turned client TFO off for net.ipv4.tcp_fastopen_blackhole_timeout_sec, doubling each time",
        "find the middlebox (capture the SYNs with data and see where they vanish), or set the "
        "blackhole timeout to 0 if the detection misfires",
    ),
}


@dataclass(frozen=True, slots=True)
class Alert:
    counter: str
    rise: int
    message: str


@dataclass
class AlertMonitor:
    """Rate-limited warnings for the counters in :data:`WATCHED`, per stack."""

    min_interval: float = 300.0
    _last: dict[tuple[str, str], float] = field(default_factory=dict, init=False)
    _pending: dict[tuple[str, str], int] = field(default_factory=dict, init=False)

    def check(
        self,
        before: Mapping[str, int],
        after: Mapping[str, int],
        now: float,
        stack: str = "kernel",
    ) -> list[Alert]:
        """Log (and return) a warning for each watched counter that rose, unless rate-limited."""
        alerts = []
        for name, advice in WATCHED.items():
            key = (stack, name)
            rise = after.get(name, 0) - before.get(name, 0)
            if rise > 0:
                self._pending[key] = self._pending.get(key, 0) + rise
            pending = self._pending.get(key, 0)
            last = self._last.get(key)
            if pending == 0 or (last is not None and now - last < self.min_interval):
                continue
            where = "" if stack == "kernel" else f" ({stack} stack)"
            message = (
                f"{name}{where} rose by {pending}: {advice.meaning}. What to do: {advice.action}."
            )
            log.warning("%s", message)
            alerts.append(Alert(name, pending, message))
            self._last[key] = now
            self._pending[key] = 0
        return alerts
