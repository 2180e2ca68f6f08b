"""Running probes: each target's connections in order, many targets at once, within bounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from fastopen.errors import FastOpenError
from fastopen.probe.drivers import Driver
from fastopen.probe.model import Outcome, Probe, Result, Step, Target, summarize


class RateLimit:
    """At most ``rate`` starts a second, spread evenly (shared by every target)."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise FastOpenError(f"rate {rate} is not positive")
        self.interval = 1.0 / rate
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


async def run(
    targets: Sequence[Target], driver: Driver, settings: Probe | None = None
) -> list[Result]:
    """Probe every target with ``driver`` (:mod:`fastopen.probe.drivers`), concurrently within
    the bounds of ``settings``; one :class:`Result` each, in the order given."""
    settings = settings or Probe()
    if settings.concurrency < 1 or settings.repeat < 1:
        raise FastOpenError("concurrency and repeat must be at least 1")
    limit = RateLimit(settings.rate)
    gate = asyncio.Semaphore(settings.concurrency)
    # The cookie caches are per server address: targets on one host take turns.
    hosts = {t.host: asyncio.Lock() for t in targets}

    async def one(target: Target) -> Result:
        async with hosts[target.host], gate:
            return await probe_target(target, driver, settings, limit)

    return list(await asyncio.gather(*(one(t) for t in targets)))


async def probe_target(target: Target, driver: Driver, settings: Probe, limit: RateLimit) -> Result:
    """The connections of one probe, in order, within ``settings.timeout``."""
    outcomes: list[Outcome] = []
    request = settings.request_for(target)

    async def step(kind: Step, cookie: tuple[bytes, int] | None = None) -> Outcome:
        await limit.wait()
        outcome = await driver.attempt(target, kind, request, cookie, settings.attempt_timeout)
        outcomes.append(outcome)
        return outcome

    error = None
    try:
        async with asyncio.timeout(settings.timeout):
            plain = await step(Step.PLAIN)
            if plain.ok:
                requests = [await step(Step.REQUEST_34)]
                if 254 in driver.kinds:
                    requests.append(await step(Step.REQUEST_254))
                got = [r for r in requests if r.cookie and r.first_syn_answered]
                if got:
                    cookie = got[0].cookie
                    assert cookie is not None
                    kind = got[0].cookie_kind or got[0].sent_kind or 34
                    for _ in range(settings.repeat):
                        data = await step(Step.DATA, (cookie, kind))
                        if data.cookie:  # a refused cookie comes back replaced
                            cookie, kind = data.cookie, data.cookie_kind or kind
                await step(Step.PLAIN_AFTER)
    except TimeoutError:
        error = f"stopped at the time bound of {settings.timeout:g} s"
    result = summarize(target, outcomes, driver.name)
    result.error = error
    return result
