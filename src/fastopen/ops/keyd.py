"""``fastopen keyd``: apply the farm keys on schedule and warn when the TFO counters mean trouble.

At start, at each interval boundary and every ``check_every`` seconds the daemon makes sure that
``net.ipv4.tcp_fastopen_key`` holds the ring :func:`fastopen.ops.farm.farm_keys` gives for the time
(it writes only when the kernel's ring differs). At each wake it also reads the counters and feeds
the :class:`~fastopen.ops.alerts.AlertMonitor`. It logs what it does, never a key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastopen.ops import keys, stats
from fastopen.ops.alerts import AlertMonitor
from fastopen.ops.farm import FarmKeys, farm_keys

log = logging.getLogger(__name__)


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class KeyDaemon:
    secret: bytes
    interval: int
    check_every: float = 60.0
    monitor: AlertMonitor = field(default_factory=AlertMonitor)
    clock: Callable[[], float] = time.time

    def apply(self) -> FarmKeys:
        """Give the kernel the ring of the current interval, unless it already has it."""
        farm = farm_keys(self.secret, self.interval, self.clock())
        if keys.kernel_ring() != farm.ring:
            keys.apply(farm.ring)
            log.info(
                "applied the farm key of interval %d (valid %s to %s; the previous one is backup)",
                farm.index,
                _utc(farm.start),
                _utc(farm.end),
            )
        return farm

    def run(self, stop: threading.Event) -> None:
        """Apply keys on schedule and watch the counters until ``stop`` is set."""
        farm = self.apply()
        before = stats.snapshot()
        log.info("keyd started: interval %d s, next key at %s", self.interval, _utc(farm.end))
        while not stop.wait(max(0.0, min(self.check_every, farm.end - self.clock()))):
            farm = self.apply()  # also puts the farm ring back if someone changed the key
            now = stats.snapshot()
            self.monitor.check(before.counters, now.counters, self.clock())
            before = now
        log.info("keyd stopped")
