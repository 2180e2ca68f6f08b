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
from pathlib import Path

from fastopen.ops import keys, stats
from fastopen.ops.alerts import AlertMonitor
from fastopen.ops.farm import FarmKeys, farm_keys

log = logging.getLogger(__name__)


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class KeyDaemon:
    """Keeps the farm ring in the kernel of the calling thread's namespace, and in ``store`` (the
    namespace's key store, so that ``fastopen key show`` knows the key is keyd's)."""

    secret: bytes
    interval: int
    check_every: float = 60.0
    monitor: AlertMonitor = field(default_factory=AlertMonitor)
    clock: Callable[[], float] = time.time
    store: Path | None = None

    def apply(self) -> FarmKeys:
        """Give the kernel the ring of the current interval, unless it already has it.

        The previous interval's ring being replaced is the schedule (logged at INFO); any other
        key is someone else's doing (a sysctl by hand, another tool) and is logged as a warning.
        """
        farm = farm_keys(self.secret, self.interval, self.clock())
        kernel = keys.kernel_ring()
        stored = keys.load(self.store) if self.store is not None else None
        wanted = keys.Stored(farm.ring, farm.start, "keyd", farm.index)
        if kernel == farm.ring and (self.store is None or stored == wanted):
            return farm
        if self.store is not None:
            keys.install(self.store, wanted)
        elif kernel != farm.ring:
            keys.apply(farm.ring)
        if kernel == farm.ring:
            return farm
        previous = farm_keys(self.secret, self.interval, farm.start - 1).ring
        if kernel is None or kernel == previous:
            log.info(
                "applied the farm key of interval %d (valid %s to %s; the previous one is backup)",
                farm.index,
                _utc(farm.start),
                _utc(farm.end),
            )
        else:
            log.warning(
                "the kernel held a key that is not the farm's (set by sysctl or another tool?): "
                "replaced it with the farm key of interval %d (valid %s to %s); clients holding "
                "cookies of the replaced key lose one round trip",
                farm.index,
                _utc(farm.start),
                _utc(farm.end),
            )
        return farm

    def run(self, stop: threading.Event) -> None:
        """Apply keys on schedule and watch the counters until ``stop`` is set."""
        farm = self.apply()
        before = stats.snapshots()
        log.info("keyd started: interval %d s, next key at %s", self.interval, _utc(farm.end))
        while not stop.wait(max(0.0, min(self.check_every, farm.end - self.clock()))):
            farm = self.apply()  # also puts the farm ring back if someone changed the key
            now = stats.snapshots()
            stats.check_alerts(self.monitor, before, now)
            before = now
        log.info("keyd stopped")
