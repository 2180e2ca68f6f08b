"""A bounded flood of spoofed SYNs, for the lab: sources drawn inside 198.18.0.0/15 only, sent
with a raw socket from inside a namespace fastopen made (never from the root namespace), and a
capture of what the stack answers on its TUN device.

Used by ``tests/live/test_synflood.py`` and ``bench/synflood.py`` against ``fastopen serve
--stack userspace``: the engine's SYN queue fills, then every SYN gets a SYN cookie.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fastopen.errors import FastOpenError
from fastopen.kernel.netns import THREAD_NS
from fastopen.lab.netns import PREFIX, Netns
from fastopen.wire import (
    Flags,
    Mss,
    Nop,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    WindowScale,
    ip_packet,
    parse_tcp_packet,
)

#: Sources are drawn here only (the range reserved for benchmarking).
LAB_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
#: Linux's SYN options, as a kernel client sends them.
LINUX_SYN_OPTIONS: tuple[TcpOption, ...] = (
    Mss(1460),
    SackPermitted(),
    Timestamps(1, 0),
    Nop(),
    WindowScale(7),
)
ETH_P_ALL = 0x0003


@dataclass(frozen=True, slots=True)
class Syn:
    """One spoofed SYN: its source, port and ISN, and the IP packet."""

    src: ipaddress.IPv4Address
    sport: int
    seq: int
    packet: bytes


def spoofed_syns(
    dst: str,
    port: int,
    count: int,
    *,
    seed: int = 0,
    exclude: Iterable[str] = (),
    options: tuple[TcpOption, ...] = LINUX_SYN_OPTIONS,
) -> Iterator[Syn]:
    """``count`` SYNs to ``dst``:``port`` from random sources inside 198.18.0.0/15."""
    target = ipaddress.IPv4Address(dst)
    skip = {ipaddress.IPv4Address(a) for a in exclude} | {target}
    rng = random.Random(seed)
    base, size = int(LAB_NETWORK.network_address), LAB_NETWORK.num_addresses
    made = 0
    while made < count:
        src = ipaddress.IPv4Address(base + rng.randrange(1, size - 1))
        if src in skip:
            continue
        sport, seq = rng.randrange(1024, 65536), rng.randrange(1 << 32)
        seg = TcpSegment(sport, port, seq, 0, Flags.SYN, 64240, options)
        yield Syn(src, sport, seq, ip_packet(src, target, seg))
        made += 1


def _check_lab_namespace() -> None:
    """Refuse to flood from anywhere but a namespace fastopen made (``/run/netns/fo-*``)."""
    here = os.stat(THREAD_NS).st_ino
    if not any(p.stat().st_ino == here for p in Path("/run/netns").glob(f"{PREFIX}*")):
        raise FastOpenError(
            "a SYN flood is sent only from inside a lab namespace",
            hint="enter one first: with Netns(...) as ns, ns.entered(): ...",
        )


def send(packets: Iterable[bytes], dst: str, *, rate: float = 0.0) -> int:
    """Send whole IPv4 packets to ``dst`` with a raw socket (``rate`` packets/s at most;
    0: as fast as possible); returns how many. The calling thread must be in a lab namespace."""
    _check_lab_namespace()
    if ipaddress.IPv4Address(dst) not in LAB_NETWORK:
        raise FastOpenError(f"{dst} is not a lab address", hint="use 198.18.0.0/15")
    sent = 0
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw:
        for packet in packets:
            raw.sendto(packet, (dst, 0))
            sent += 1
            if rate and sent % 100 == 0:
                ahead = sent / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
    return sent


# include/uapi/linux/if_packet.h and asm-generic/socket.h (not in Python's socket module)
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
SO_RCVBUFFORCE = 33
TPACKET_STATS = struct.Struct("=II")  # struct tpacket_stats: tp_packets, tp_drops
#: The capture's receive buffer: a burst of a flood's SYN-ACKs (the kernel takes ~1 KB of it
#: for each small packet; the default of 208 KB held ~200 and lost the rest).
CAPTURE_BUFFER = 16 * 2**20


class Capture:
    """The TCP segments a stack writes to its TUN device (AF_PACKET; a TUN device has no link
    header), read by a thread until :meth:`stop`. Open it inside the lab namespace that owns
    the device.

    Only what the device hands the kernel is taken (PACKET_IGNORE_OUTGOING: the packets the
    kernel sends into the device, a flood's SYNs, are not copied), into a large buffer, and
    kept as bytes while the thread reads: :attr:`segments` parses them when asked, so that a
    burst is not lost while the reader works.
    """

    def __init__(self, device: str) -> None:
        _check_lab_namespace()
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self._sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CAPTURE_BUFFER)
        self._sock.bind((device, 0))
        self._sock.settimeout(0.2)
        self._raw: list[bytes] = []
        self._parsed: list[tuple[ipaddress.IPv4Address, TcpSegment]] = []
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self._raw.append(self._sock.recv(65536))
            except TimeoutError:
                continue
            except OSError:
                return

    @property
    def segments(self) -> list[tuple[ipaddress.IPv4Address, TcpSegment]]:
        """(destination, segment) of each IPv4 TCP packet captured so far, in order."""
        raw, end = self._raw, len(self._raw)
        for data in raw[self._seen : end]:
            try:
                ip, seg = parse_tcp_packet(data)
            except FastOpenError:
                continue
            if isinstance(ip.dst, ipaddress.IPv4Address):
                self._parsed.append((ip.dst, seg))
        self._seen = end
        return self._parsed

    @property
    def drops(self) -> int:
        """Packets the kernel could not queue for the capture (PACKET_STATISTICS, since the
        last call)."""
        stats = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, TPACKET_STATS.size)
        return int(TPACKET_STATS.unpack(stats)[1])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rss_bytes(pid: int) -> int:
    """The resident set size of process ``pid`` (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise FastOpenError(f"process {pid} has no VmRSS")


# -- a flood against `fastopen serve --stack userspace` -------------------------------------------

SERVE_ADDRESS, SERVE_PORT = "198.18.1.2", 8080
CURL_ADDRESS = "198.18.0.1"  # the namespace's kernel, on lo
PROBE_SOURCE = ipaddress.IPv4Address("198.19.200.7")
PROBE_PORT, PROBE_ISN = 50007, 777_000
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
#: SYNs sent in one burst before the probe: more than a SYN queue of `fastopen serve` holds.
REFILL = 250


@dataclass
class FloodResult:
    """What a flood against the userspace server showed."""

    sent: int
    synacks: int  # SYN-ACKs the stack put on its device
    rss_before: int
    rss_peak: int
    curl: list[tuple[str, float]]  # (HTTP status, seconds) of the requests during the flood
    probe: TcpSegment | None  # the answer to a SYN with wscale and SACK but no timestamps
    log: str  # the server's output (a line per request)
    queue_drops: int  # packets the TUN device's queue had no room for (the stack was behind)
    capture_drops: int  # packets the capture lost (SYN-ACKs not counted)

    @property
    def rss_growth(self) -> int:
        return self.rss_peak - self.rss_before


def is_probe(dst: ipaddress.IPv4Address, seg: TcpSegment) -> bool:
    """The server's answer to the probe SYN."""
    return dst == PROBE_SOURCE and seg.dst_port == PROBE_PORT and seg.ack == PROBE_ISN + 1


def device_drops(ns: Netns, device: str = "fous0") -> int:
    """Packets the kernel of ``ns`` dropped at ``device``'s queue (its TX dropped counter: for
    a TUN device, what its reader did not take in time)."""
    shown = ns.run(["ip", "-j", "-s", "link", "show", device]).stdout
    return int(json.loads(shown)[0]["stats64"]["tx"]["dropped"])


def synack_count(capture: Capture) -> int:
    """The SYN-ACKs captured so far."""
    return sum(1 for _, s in capture.segments if s.flags == Flags.SYN | Flags.ACK)


def worked_through(ns: Netns, capture: Capture, sent: int, timeout: float = 20.0) -> None:
    """Wait until the stack has worked through a flood of ``sent`` SYNs: each one answered or
    lost at the device's queue (a server behind would lose what is sent next, a probe, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if synack_count(capture) + device_drops(ns) >= sent:
            return
        time.sleep(0.1)
    raise FastOpenError(f"the stack did not work through {sent} SYNs in {timeout:g} s")


def start_userspace_server(ns: Netns) -> subprocess.Popen[str]:
    """``fastopen serve --stack userspace`` owning 198.18.1.2 behind fous0 in ``ns`` (whose
    kernel gets 198.18.0.1 for curl); returns once it serves."""
    ns.ip("addr", "add", f"{CURL_ADDRESS}/32", "dev", "lo")
    proc = ns.popen(
        [str(Path(sys.executable).with_name("fastopen")), "serve", "--stack", "userspace",
         "--address", f"{SERVE_ADDRESS}/24", "--body", "ok\n", SERVE_ADDRESS, str(SERVE_PORT)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        raise FastOpenError(f"fastopen serve did not start: {line!r}")
    return proc


def curl(ns: Netns) -> tuple[str, float]:
    """One request from the namespace's kernel: (HTTP status, total seconds)."""
    got = ns.run(
        ["curl", "-s", "-o", "/dev/null", "-m", "10", "-w", "%{http_code} %{time_total}",
         f"http://{SERVE_ADDRESS}:{SERVE_PORT}/"]
    ).stdout.split()  # fmt: skip
    return got[0], float(got[1])


def flood_userspace_server(ns: Netns, count: int, rate: float, seed: int = 1) -> FloodResult:
    """Flood a userspace server in ``ns`` with ``count`` spoofed SYNs at ``rate`` per second
    while curl asks it again and again; then a probe SYN (a SYN cookie answers it with the MSS
    only, Linux tcp_clear_options) and the cookie's ACK with a request (in the log if the
    cookie made the connection). The server is stopped at the end."""
    proc = start_userspace_server(ns)
    assert proc.stdout is not None
    lines: list[str] = []  # its log, read as it comes: a full pipe would stop the server
    drain = threading.Thread(target=lines.extend, args=(proc.stdout,), daemon=True)
    drain.start()
    try:
        curl(ns)  # warm
        rss_before = rss_bytes(proc.pid)
        peak = rss_before
        syns = [
            s.packet
            for s in spoofed_syns(
                SERVE_ADDRESS,
                SERVE_PORT,
                count,
                seed=seed,
                exclude=[CURL_ADDRESS, str(PROBE_SOURCE)],
            )
        ]
        served: list[tuple[str, float]] = []
        with ns.entered(), Capture("fous0") as capture:

            def flood() -> None:
                with ns.entered():
                    send(syns, SERVE_ADDRESS, rate=rate)

            flooder = threading.Thread(target=flood)
            flooder.start()
            while flooder.is_alive():
                served.append(curl(ns))
                peak = max(peak, rss_bytes(proc.pid))
            flooder.join()
            worked_through(ns, capture, len(syns))
            peak = max(peak, rss_bytes(proc.pid))
            server = ipaddress.IPv4Address(SERVE_ADDRESS)
            # the SYN queue may have room again (old requests expire sooner when it is more
            # than half full, as Linux's): a burst fills it before the probe
            refill = spoofed_syns(
                SERVE_ADDRESS, SERVE_PORT, REFILL, seed=seed + 1, exclude=[str(PROBE_SOURCE)]
            )
            send([s.packet for s in refill], SERVE_ADDRESS)
            opts = (Mss(1460), SackPermitted(), Nop(), WindowScale(7))
            probe = TcpSegment(PROBE_PORT, SERVE_PORT, PROBE_ISN, 0, Flags.SYN, 64240, opts)
            send([ip_packet(PROBE_SOURCE, server, probe)], SERVE_ADDRESS)
            answer = None
            deadline = time.monotonic() + 5
            while answer is None and time.monotonic() < deadline:
                time.sleep(0.05)
                answer = next((s for d, s in capture.segments if is_probe(d, s)), None)
            if answer is not None:
                cookie = (answer.seq + 1) & 0xFFFFFFFF
                flags = Flags.ACK | Flags.PSH
                ack = TcpSegment(
                    PROBE_PORT, SERVE_PORT, PROBE_ISN + 1, cookie, flags, 502, (), REQUEST
                )
                send([ip_packet(PROBE_SOURCE, server, ack)], SERVE_ADDRESS)
                time.sleep(0.5)
            synacks = synack_count(capture)
            capture_drops = capture.drops
        queue_drops = device_drops(ns)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        drain.join(timeout=10)
    return FloodResult(
        len(syns),
        synacks,
        rss_before,
        peak,
        served,
        answer,
        "".join(lines),
        queue_drops,
        capture_drops,
    )
