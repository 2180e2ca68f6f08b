"""Hosts joined by an in-memory wire with seeded loss, duplication and reordering, in virtual time.

The wire of the pair tests and of ``bench/engine.py``: each packet a host sends reaches the host
owning its destination address after ``delay`` seconds, unless the seeded random generator drops
it (``loss``), sends it twice (``duplicate``) or holds it back for a while (``reorder``, up to
``reorder_delay`` more). ``encode=True`` carries whole IP packets as bytes (``packets_to_send`` ->
``receive``); the default carries parsed segments (``segments_to_send`` -> ``receive_segment``).
With ``rate`` (bytes a second) each direction is a bottleneck of that rate: a packet waits for
the ones before it to the same host to be serialised, and one that would queue more than
``buffer`` bytes (0: no limit) is dropped (a drop-tail queue). A ``tap`` sees each parsed segment
a host puts on the wire, before the impairments: it returns the segment to carry (the same one,
or one it changed) or None to lose it there (a test's observer or its middlebox); with
``encode=True``, ``capture`` sees each packet so, with the time it leaves (the demo's record).
"""

from __future__ import annotations

import errno
import gc
import heapq
import itertools
import random
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

from fastopen.engine.cache import IPAddress
from fastopen.engine.events import EngineError
from fastopen.engine.host import Host, Segment
from fastopen.wire import TcpSegment, parse_ip

#: What a :class:`Link`'s tap is called with: the sending host, the source and destination
#: addresses and the segment; it returns the segment to carry, or None to drop it.
Tap = Callable[[Host, IPAddress, IPAddress, TcpSegment], TcpSegment | None]
#: What a :class:`Link`'s capture is called with (``encode=True``): the time and the packet.
Capture = Callable[[float, bytes], None]

#: IPv4 and TCP headers with timestamps: a parsed segment's bytes on a bottleneck, beside its
#: payload.
HEADERS = 52


@dataclass
class LinkStats:
    sent: int = 0
    delivered: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0


class Link:
    """A virtual clock and a wire between hosts (routed by destination address)."""

    def __init__(
        self,
        *hosts: Host,
        delay: float = 0.001,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_delay: float = 0.003,
        seed: int = 0,
        encode: bool = False,
        rate: float = 0.0,
        buffer: int = 0,
        tap: Tap | None = None,
        capture: Capture | None = None,
    ) -> None:
        if tap is not None and encode:
            raise ValueError("a tap sees parsed segments: not with encode=True")
        if capture is not None and not encode:
            raise ValueError("a capture sees encoded packets: only with encode=True")
        self.hosts = hosts
        self.now = 0.0
        self.delay = delay
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.reorder_delay = reorder_delay
        self.encode = encode
        self.rate = rate
        self.buffer = buffer
        self.tap = tap
        self.capture = capture
        self._busy: dict[Host, float] = {}  # when each direction's bottleneck is free again
        self.stats = LinkStats()
        self._random = random.Random(seed)
        self._route: dict[IPAddress, Host] = {a: h for h in hosts for a in h.addresses}
        self._wire: list[tuple[float, int, Host, bytes | Segment]] = []
        self._tick = itertools.count()

    def _put(self, host: Host, item: bytes | Segment) -> None:
        stats = self.stats
        stats.sent += 1
        rnd = self._random.random
        if self.loss and rnd() < self.loss:
            stats.dropped += 1
            return
        sent = self.now
        if self.rate:
            size = len(item) if isinstance(item, bytes) else len(item[2].payload) + HEADERS
            start = max(sent, self._busy.get(host, 0.0))
            if self.buffer and (start - sent) * self.rate + size > self.buffer:
                stats.dropped += 1
                return
            sent = self._busy[host] = start + size / self.rate
        copies = 1
        if self.duplicate and rnd() < self.duplicate:
            stats.duplicated += 1
            copies = 2
        for _ in range(copies):
            at = sent + self.delay
            if self.reorder and rnd() < self.reorder:
                stats.reordered += 1
                at += rnd() * self.reorder_delay
            heapq.heappush(self._wire, (at, next(self._tick), host, item))

    def flush(self) -> None:
        """Put on the wire what every host has to send."""
        route = self._route
        for host in self.hosts:
            if self.encode:
                capture = self.capture
                for packet in host.packets_to_send():
                    if capture is not None:
                        capture(self.now, packet)
                    dst = parse_ip(packet).dst
                    if dst in route:
                        self._put(route[dst], packet)
            else:
                tap = self.tap
                for src, dst, seg in host.segments_to_send():
                    if tap is not None:
                        carried = tap(host, src, dst, seg)
                        if carried is None:
                            self.stats.dropped += 1
                            continue
                        seg = carried
                    if dst in route:
                        self._put(route[dst], (src, dst, seg))

    def next_time(self) -> float | None:
        """When something happens next: a delivery or a host's timer."""
        times = [t for t in (h.get_timer() for h in self.hosts) if t is not None]
        if self._wire:
            times.append(self._wire[0][0])
        return min(times) if times else None

    def step(self, until: float | None = None) -> bool:
        """Advance to the next delivery or timer (not past ``until``); False when there is none."""
        self.flush()
        when = self.next_time()
        if when is None or (until is not None and when > until):
            if until is not None:
                self.now = max(self.now, until)
            return False
        self.now = max(self.now, when)
        now = self.now
        wire = self._wire
        while wire and wire[0][0] <= now:
            _, _, host, item = heapq.heappop(wire)
            self.stats.delivered += 1
            if isinstance(item, bytes):
                host.receive(item, now)
            else:
                host.receive_segment(item[0], item[1], item[2], now)
        for host in self.hosts:
            timer = host.get_timer()
            if timer is not None and timer <= now:
                host.handle_timer(now)
        self.flush()
        return True

    def advance(self, seconds: float) -> None:
        """Run everything due in the next ``seconds`` of virtual time."""
        until = self.now + seconds
        while self.step(until):
            pass


def idle_connection_bytes(n: int) -> float:
    """The heap one end of an idle established connection holds: ``n`` connections made over
    a link (both ends measured with tracemalloc, halved); for the memory test and
    bench/engine.py."""
    client, server = Host(["198.18.0.1"]), Host(["198.18.0.2"])
    address = ("198.18.0.2", 80)
    listener = server.socket()
    listener.bind(address)
    listener.listen(n)
    link = Link(client, server, delay=0.0)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        socks = []
        for _ in range(n):
            sock = client.socket()
            try:
                sock.connect(address, link.now)
            except EngineError as exc:
                if exc.errno != errno.EINPROGRESS:
                    raise
            socks.append(sock)
        link.advance(1.0)
        children = [listener.accept(link.now)[0] for _ in range(n)]
        while client.next_event() is not None or server.next_event() is not None:
            pass
        link.advance(1.0)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    if not all(c.state.name == "ESTABLISHED" for c in children) or len(socks) != n:
        raise RuntimeError("the idle connections did not all establish")
    return used / (2 * n)
