"""Engine tests the smoltcp way: one segment in at an injected time, the segment out checked."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from fastopen.cookies import KeyRing
from fastopen.engine import Host
from fastopen.wire import FastOpen, Flags, Mss, TcpOption, TcpSegment

CLIENT = ipaddress.IPv4Address("198.18.0.1")
SERVER = ipaddress.IPv4Address("198.18.0.2")
SERVER_ADDR = (str(SERVER), 80)
SOL_TCP = socket.IPPROTO_TCP
ISN = 1000
PEER_ISN = 5000
RING = KeyRing.from_text("a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4")
OLD_RING = KeyRing.from_text("01010101-02020202-03030303-04040404")

S, A, F, R, P = Flags.SYN, Flags.ACK, Flags.FIN, Flags.RST, Flags.PSH


def host(addr: ipaddress.IPv4Address, **kw: Any) -> Host:
    """A host with a fixed ISN, no timestamps (shorter options) unless asked, fixed keys."""
    kw.setdefault("isn", lambda *_: ISN)
    kw.setdefault("timestamps", False)
    kw.setdefault("keys", RING)
    kw.setdefault("tsoffset", lambda *_: 0)
    return Host([addr], **kw)


def out(h: Host) -> list[TcpSegment]:
    """Every segment the host has to send (and forget them)."""
    return [seg for _, _, seg in h.segments_to_send()]


def one(h: Host) -> TcpSegment:
    """The one segment the host has to send."""
    segs = out(h)
    assert len(segs) == 1, f"expected one segment, got {segs}"
    return segs[0]


def seg(
    flags: Flags,
    seq: int,
    ack: int = 0,
    payload: bytes = b"",
    options: tuple[TcpOption, ...] = (),
    window: int = 65535,
    sport: int = 80,
    dport: int = 32768,
) -> TcpSegment:
    return TcpSegment(sport, dport, seq, ack, flags, window, options, payload)


def cookie_for(client: ipaddress.IPv4Address = CLIENT, ring: KeyRing = RING) -> bytes:
    return ring.mint(client, SERVER)


def synack(
    syn: TcpSegment, ack: int, *, cookie: FastOpen | None = None, mss: int = 1460
) -> TcpSegment:
    """The server's SYN-ACK to ``syn`` of the client host under test, acknowledging ``ack``."""
    opts: tuple[TcpOption, ...] = (Mss(mss),) if mss else ()
    if cookie is not None:
        opts += (cookie,)
    return seg(S | A, PEER_ISN, ack, options=opts, dport=syn.src_port)
