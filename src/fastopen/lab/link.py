"""The link emulator's forwarder: packets from one TUN device to the other, impaired on the way.

It runs in its own process (``python -m fastopen.lab.link``, started by
:class:`fastopen.lab.emulator.Lab`) so it never shares the GIL with the application under test.
It is handed the two TUN file descriptors and a control socket, reads every packet from one
device and writes it to the other after one-way delay, jitter, loss, duplication, reordering
and a rate limit (:class:`LinkConfig`).

Each direction draws from its own random generator seeded from ``seed``, four draws a packet in
a fixed order, so the n-th packet of a direction meets the same fate in every run with the same
seed, whatever the timing. Multicast packets (the kernel's neighbour discovery and MLD chatter,
sent at times of its choosing) pass untouched and draw nothing, so they do not shift the count.
Jitter never reorders (a packet never leaves before the one ahead of it); reordering is its own
knob: a packet picked for it is held back ``reorder_gap`` seconds so that the packets behind it
overtake it. The rate limit is a bottleneck queue of ``queue`` packets, tail-dropped when full.

Packets due later wait in a heap of (due time, packet); the forwarder sleeps in ``select`` with a
1 us timer slack, then spins for the last few microseconds. With nothing to impair it writes each
packet straight through. It can record every packet it reads (before impairment, as a capture on
the sender's interface would) to a pcap file, flushed packet by packet.

Control protocol (JSON, one message per SOCK_SEQPACKET datagram): ``{"op": "stats"}`` answers the
:class:`LinkStats` of both directions; ``{"op": "set", "config": {...}}`` changes the impairments.
The forwarder sends ``{"ready": true}`` once running and exits when the control socket closes
(its parent is gone), unless ``--detached``; SIGTERM stops it in any case.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import heapq
import json
import os
import random
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from fastopen.pcap import SNAPLEN, write_pcap_header, write_pcap_record

#: The two directions: packets from the client's device to the server's, and back.
DIRECTIONS = ("c2s", "s2c")
#: Wake this early for a packet due later, then spin (covers the scheduler's wake-up latency).
SPIN = 50e-6
#: Read at most this many packets from one device before looking at the other.
BATCH = 64
PR_SET_TIMERSLACK = 29


@dataclass(frozen=True)
class LinkConfig:
    """The impairments of the link, the same both ways. Times in seconds, rate in bits/s."""

    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_gap: float = 0.001
    rate: float | None = None
    queue: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability between 0 and 1, not {value}")
        for name in ("delay", "jitter", "reorder_gap"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("rate must be positive (None for no limit)")
        if self.queue < 1:
            raise ValueError("queue must hold at least one packet")

    @property
    def rtt(self) -> float:
        """The round trip time the link adds (twice the one-way delay)."""
        return 2 * self.delay

    @property
    def passthrough(self) -> bool:
        """Nothing delays packets: they can be written straight through."""
        return not (self.delay or self.jitter or self.reorder or self.rate)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkConfig:
        return cls(**data)

    def describe(self) -> str:
        """A one-line summary, e.g. ``rtt 100 ms, loss 1%, seed 0``."""
        parts = [f"rtt {self.rtt * 1000:g} ms"]
        if self.jitter:
            parts.append(f"jitter {self.jitter * 1000:g} ms")
        for name in ("loss", "duplicate", "reorder"):
            if value := getattr(self, name):
                parts.append(f"{name} {value * 100:g}%")
        if self.rate is not None:
            parts.append(f"rate {self.rate / 1e6:g} Mbit/s")
        parts.append(f"seed {self.seed}")
        return ", ".join(parts)


@dataclass
class LinkStats:
    """What the forwarder did with the packets of one direction.

    Multicast packets pass untouched and count only in ``multicast``; the other counts are of
    the unicast packets the impairments applied to.
    """

    multicast: int = 0
    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    overflowed: int = 0
    bytes: int = 0


def _multicast(packet: bytes) -> bool:
    """An IPv4 or IPv6 packet to a multicast address (neighbour discovery, MLD, IGMP)."""
    version = packet[0] >> 4 if packet else 0
    if version == 6:
        return len(packet) > 24 and packet[24] == 0xFF
    return version == 4 and len(packet) > 16 and 224 <= packet[16] <= 239


@dataclass
class _Direction:
    """The state of one direction of the link."""

    rng: random.Random
    out: int
    stats: LinkStats = field(default_factory=LinkStats)
    last_due: float = 0.0
    link_free: float = 0.0
    queued: int = 0


class Forwarder:
    """The forwarding loop between the client's TUN (``fd_c``) and the server's (``fd_s``)."""

    def __init__(
        self,
        fd_c: int,
        fd_s: int,
        config: LinkConfig,
        *,
        control: socket.socket | None = None,
        detached: bool = False,
        capture: BinaryIO | None = None,
    ) -> None:
        self.config = config
        self.control = control
        self.detached = detached
        self.capture = capture
        self.dirs = {
            fd_c: _Direction(random.Random(config.seed * 2), fd_s),
            fd_s: _Direction(random.Random(config.seed * 2 + 1), fd_c),
        }
        self.names = dict(zip(self.dirs, DIRECTIONS, strict=True))
        self.heap: list[tuple[float, int, int, bytes]] = []
        self.seq = 0
        self.running = True

    # -- control -------------------------------------------------------------------------------
    def stats(self) -> dict[str, LinkStats]:
        return {self.names[fd]: d.stats for fd, d in self.dirs.items()}

    def _control(self) -> None:
        assert self.control is not None
        try:
            message = self.control.recv(65536)
        except ConnectionError:
            message = b""
        if not message:
            self.control.close()
            self.control = None
            self.running = self.detached
            return
        request = json.loads(message)
        reply: dict[str, Any] = {"ok": True}
        if request.get("op") == "stats":
            reply["stats"] = {n: dataclasses.asdict(s) for n, s in self.stats().items()}
        elif request.get("op") == "set":
            self.config = LinkConfig.from_dict(request["config"])
        else:
            reply = {"ok": False, "error": f"unknown request {request!r}"}
        self.control.send(json.dumps(reply).encode())

    # -- packets -------------------------------------------------------------------------------
    def _record(self, packet: bytes) -> None:
        assert self.capture is not None
        write_pcap_record(self.capture, packet)
        self.capture.flush()

    def _admit(self, fd: int, packet: bytes, now: float) -> None:
        """Apply the impairments to one packet read from ``fd`` at ``now``."""
        cfg = self.config
        d = self.dirs[fd]
        if _multicast(packet):  # the kernel's own chatter: passes untouched, draws nothing
            d.stats.multicast += 1
            with contextlib.suppress(OSError):
                os.write(d.out, packet)
            return
        rng = d.rng.random
        u_loss, u_dup, u_reorder, u_jitter = rng(), rng(), rng(), rng()
        stats = d.stats
        stats.received += 1
        if u_loss < cfg.loss:
            stats.dropped += 1
            return
        copies = 1
        if u_dup < cfg.duplicate:
            stats.duplicated += 1
            copies = 2
        if cfg.passthrough:
            for _ in range(copies):
                self._write(d, packet)
            return
        depart = now
        if cfg.rate is not None:
            if d.queued >= cfg.queue:
                stats.overflowed += 1
                return
            depart = max(now, d.link_free)
            d.link_free = depart + len(packet) * 8 / cfg.rate
        due = depart + cfg.delay
        if cfg.jitter:
            due += cfg.jitter * (2 * u_jitter - 1)
        due = max(due, d.last_due, now)
        d.last_due = due
        if u_reorder < cfg.reorder:
            stats.reordered += 1
            due += cfg.reorder_gap
        for _ in range(copies):
            self.seq += 1
            d.queued += 1
            heapq.heappush(self.heap, (due, self.seq, fd, packet))

    def _write(self, d: _Direction, packet: bytes) -> None:
        try:
            os.write(d.out, packet)
        except OSError:  # the kernel refused it (malformed, device down): the link lost it
            d.stats.dropped += 1
            return
        d.stats.forwarded += 1
        d.stats.bytes += len(packet)

    def _send_due(self, now: float) -> None:
        heap = self.heap
        while heap and heap[0][0] <= now:
            _, _, fd, packet = heapq.heappop(heap)
            d = self.dirs[fd]
            d.queued -= 1
            self._write(d, packet)

    def _drain(self, fd: int) -> None:
        clock = time.monotonic
        for _ in range(BATCH):
            try:
                packet = os.read(fd, SNAPLEN)
            except BlockingIOError:
                return
            if self.capture is not None:
                self._record(packet)
            self._admit(fd, packet, clock())

    def run(self) -> None:
        """Forward until told to stop (control socket closed, or SIGTERM)."""
        inputs = list(self.dirs)
        clock = time.monotonic
        if self.control is not None:
            self.control.send(json.dumps({"ready": True}).encode())
        while self.running:
            rlist: list[Any] = inputs if self.control is None else [*inputs, self.control]
            timeout = None
            if self.heap:
                timeout = max(0.0, self.heap[0][0] - clock() - SPIN)
            ready, _, _ = select.select(rlist, [], [], timeout)
            for fd in ready:
                if fd is self.control:
                    self._control()
                else:
                    self._drain(fd)
            if self.heap:
                due = self.heap[0][0]
                now = clock()
                while now < due <= now + SPIN:  # the last microseconds: spin, do not sleep
                    now = clock()
                self._send_due(now)


def _precise_timers() -> None:
    """Ask the kernel to wake this process on time (timer slack 1 ns instead of 50 us)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fastopen.lab.link", description=__doc__)
    parser.add_argument("--client-fd", type=int, required=True, help="the client's TUN device")
    parser.add_argument("--server-fd", type=int, required=True, help="the server's TUN device")
    parser.add_argument("--control-fd", type=int, help="a SOCK_SEQPACKET control socket")
    parser.add_argument("--config", default="{}", help="the LinkConfig as JSON")
    parser.add_argument("--capture", type=Path, help="record every packet to this pcap file")
    parser.add_argument(
        "--detached", action="store_true", help="keep running when the control socket closes"
    )
    return parser.parse_args(argv)


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the link goes
    _precise_timers()
    control = None
    if args.control_fd is not None:
        control = socket.socket(fileno=args.control_fd)
    capture = None
    if args.capture is not None:
        capture = args.capture.open("wb")
        write_pcap_header(capture)
        capture.flush()
    forwarder = Forwarder(
        args.client_fd,
        args.server_fd,
        LinkConfig.from_dict(json.loads(args.config)),
        control=control,
        detached=args.detached,
        capture=capture,
    )
    try:
        forwarder.run()
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a late SIGTERM just ends the process
        if capture is not None:
            capture.close()


if __name__ == "__main__":
    main()
