"""Hostile peers against ``fastopen serve --stack userspace`` in a namespace, from scapy-like raw
sockets: a bounded flood of spoofed SYNs (answered with SYN cookies once the SYN queue is full,
the server's memory bounded, a curl client served meanwhile), and a peer announcing MSS 12
(served in 48-byte segments while another connection's timers go on)."""

from __future__ import annotations

import ipaddress
import time

from fastopen.lab.netns import Netns
from fastopen.lab.synflood import (
    PROBE_ISN,
    PROBE_PORT,
    PROBE_SOURCE,
    REQUEST,
    SERVE_ADDRESS,
    SERVE_PORT,
    Capture,
    curl,
    flood_userspace_server,
    send,
    spoofed_syns,
    start_userspace_server,
)
from fastopen.wire import Flags, Mss, TcpSegment, ip_packet

#: The flood of the test (bench/synflood.py measures 100,000) and its rate: about what the engine
#: answers on one loaded core (the bench tries more).
FLOOD, RATE = 20_000, 5_000
#: SYNs sent at once (as fast as a raw socket sends): more than a TUN device queues by default.
BURST = 800
#: `fastopen serve` listens with a backlog of 100: its SYN queue holds 101 (Linux 6.x).
SYN_QUEUE = 101
SERVER, PORT = SERVE_ADDRESS, SERVE_PORT
GET = REQUEST


def test_a_syn_flood_gets_syn_cookies_and_curl_is_served(netns: Netns) -> None:
    result = flood_userspace_server(netns, FLOOD, RATE)
    times = sorted(t * 1000 for _, t in result.curl)
    print(
        f"\n{result.sent} spoofed SYNs at {RATE}/s: {result.synacks} SYN-ACKs, RSS "
        f"{result.rss_before / 2**20:.1f} MB + {result.rss_growth / 2**20:.1f} MB at most; "
        f"{len(times)} curl requests during the flood: median {times[len(times) // 2]:.1f} ms, "
        f"max {times[-1]:.1f} ms"
    )
    assert result.curl and all(code == "200" for code, _ in result.curl)
    assert result.synacks > 10 * SYN_QUEUE  # far more answered than the SYN queue holds
    assert result.rss_growth < 20 * 2**20
    probe = result.probe  # the SYN cookie: the MSS only (no room for wscale, SACK)
    assert probe is not None and probe.flags == Flags.SYN | Flags.ACK
    assert probe.ack == PROBE_ISN + 1 and probe.options == (Mss(1460),)
    assert f"{PROBE_SOURCE}:{PROBE_PORT} GET 200" in result.log  # the cookie's ACK made it


def test_a_burst_of_syns_is_answered_in_full(netns: Netns) -> None:
    """More SYNs at once than a TUN device queues by default (500): the stack's device queues
    them all (TXQUEUELEN) and the capture keeps every SYN-ACK (none of the SYNs)."""
    proc = start_userspace_server(netns)
    burst = list(spoofed_syns(SERVER, PORT, BURST, seed=7))
    with netns.entered(), Capture("fous0") as capture:
        send([s.packet for s in burst], SERVER)
        deadline = time.monotonic() + 10
        while len(capture.segments) < BURST and time.monotonic() < deadline:
            time.sleep(0.05)
        drops = capture.drops
    proc.terminate()
    proc.communicate(timeout=10)
    answered = {(d, s.dst_port) for d, s in capture.segments if s.flags == Flags.SYN | Flags.ACK}
    assert answered == {(s.src, s.sport) for s in burst}
    assert len(capture.segments) == BURST and drops == 0


def test_an_mss_12_peer_gets_48_byte_segments_while_other_timers_fire(netns: Netns) -> None:
    """Linux floors the MSS at tcp_min_snd_mss (48); the engine never divides by it, and the
    retransmission timer of a connection that never answers keeps firing meanwhile."""
    proc = start_userspace_server(netns)
    peer = ipaddress.IPv4Address("198.19.12.12")
    server = ipaddress.IPv4Address(SERVER)
    with netns.entered(), Capture("fous0") as capture:
        # a connection left half-open: its SYN-ACK is retransmitted at 1 s, 3 s, ...
        silent = ipaddress.IPv4Address("198.19.99.99")
        half = TcpSegment(50099, PORT, 1, 0, Flags.SYN, 64240, (Mss(1460),))
        send([ip_packet(silent, server, half)], SERVER)
        syn = TcpSegment(50012, PORT, 9_000, 0, Flags.SYN, 65535, (Mss(12),))
        send([ip_packet(peer, server, syn)], SERVER)
        time.sleep(0.3)
        synack = next(s for d, s in capture.segments if d == peer)
        ack = TcpSegment(50012, PORT, 9_001, synack.seq + 1, Flags.ACK | Flags.PSH, 65535, (), GET)
        send([ip_packet(peer, server, ack)], SERVER)
        time.sleep(0.5)
        data = [s for d, s in capture.segments if d == peer and s.payload]
        acked = synack.seq + 1 + sum(len(s.payload) for s in data)
        fin_ack = TcpSegment(50012, PORT, 9_001 + len(GET), acked, Flags.ACK, 65535)
        send([ip_packet(peer, server, fin_ack)], SERVER)
        time.sleep(2.5)
        again = [s for d, s in capture.segments if d == silent and s.flags == Flags.SYN | Flags.ACK]
        data = [s for d, s in capture.segments if d == peer and s.payload]
    sizes = [len(s.payload) for s in data]  # retransmissions included
    first = sorted({s.seq: len(s.payload) for s in data}.items())
    assert max(sizes) == 48 and len(first) >= 2, sizes
    assert all(n == 48 for _, n in first[:-1]), first  # the response cut in 48-byte segments
    assert len(again) >= 2  # the first SYN-ACK and its retransmission at 1 s (then 3 s)
    # the stack still serves
    assert curl(netns)[0] == "200"
    proc.terminate()
    proc.communicate(timeout=10)
