"""What both a request socket and a connection need to answer a SYN: option negotiation and the
initial window (Linux tcp_openreq_init, tcp_select_initial_window, tcp_mtu_to_mss)."""

from __future__ import annotations

import functools
from typing import NamedTuple

from fastopen.engine.seq import ACK, CWR, ECE
from fastopen.engine.settings import Settings
from fastopen.wire import TcpSegment

#: Linux TCP_MSS_DEFAULT: the MSS of a peer that sent none.
MSS_DEFAULT = 536
#: The room the timestamps option takes in every segment (nop, nop, TS).
TS_OPTION_LEN = 12
#: Linux TCP_MAX_WSCALE.
MAX_WSCALE = 14


def ts_clock(now: float, usec: bool) -> int:
    """Linux tcp_clock_ts: the clock of TS values, in milliseconds (TCP_TS_HZ 1000), or in
    microseconds for a connection whose route has ``features tcp_usec_ts`` (tp->tcp_usec_ts)."""
    return int(now * 1_000_000) if usec else int(now * 1000)


@functools.lru_cache(maxsize=64)
def initial_window(rcvbuf: int, mss: int) -> int:
    """The window of a SYN or SYN-ACK, as Linux tcp_select_initial_window offers it: the space
    of the receive buffer (half of it: tcp_win_from_space with the default scaling ratio),
    rounded down to the MSS, at most 65535 (64240 for the default 131072, 65535 for 540000);
    windows after the handshake are scaled and grow (:mod:`.window`). Cached: connections
    share the few values, and an idle one holds no int of its own."""
    space = rcvbuf // 2
    if space > mss > 0:
        space -= space % mss
    return min(space, 65535)


class Negotiated(NamedTuple):
    """The options a SYN (or SYN-ACK) and our settings agree on."""

    wscale_ok: bool
    snd_wscale: int
    sack_ok: bool
    ts_ok: bool
    ts_recent: int
    snd_mss: int  # the payload of a full segment (timestamps' room taken off)
    #: ECN: a SYN with ECE and CWR to a host with tcp_ecn 1 or 2, or a SYN-ACK with ECE alone
    #: (the SYN-ACK's is only good for a connection that asked, tcp_ecn 1).
    ecn_ok: bool = False


@functools.lru_cache(maxsize=64)
def advertised_mss(mtu: int, version: int) -> int:
    """The MSS a host offers on a device of ``mtu`` (Linux ipv4_default_advmss and
    ip6_default_advmss: the MTU less the IP and TCP headers). Cached: connections share the
    few values, and an idle one holds no int of its own."""
    return mtu - (40 if version == 4 else 60)


@functools.lru_cache(maxsize=64)
def _payload(mss: int, ts_ok: bool) -> int:
    """A full segment's payload at ``mss`` (the timestamps' room off). Cached: connections
    share the few values, and an idle one holds no int of its own."""
    return mss - (TS_OPTION_LEN if ts_ok else 0)


def clamp_mss(settings: Settings, peer_mss: int, adv_mss: int, ts_ok: bool) -> int:
    """Linux tcp_mtu_to_mss: the smaller MSS, never below tcp_min_snd_mss, then the
    timestamps' room off (a peer's MSS of 12 gives 48, 36 with timestamps)."""
    return _payload(max(min(peer_mss, adv_mss), settings.min_snd_mss), ts_ok)


def negotiate(settings: Settings, seg: TcpSegment, adv_mss: int) -> Negotiated:
    """Negotiate from a SYN or SYN-ACK as Linux does (both sides must offer)."""
    ts = seg.timestamps
    return negotiate_options(
        settings,
        int(seg.flags),
        seg.mss,
        seg.wscale,
        seg.sack_permitted,
        None if ts is None else ts.tsval,
        adv_mss,
    )


def negotiate_options(
    settings: Settings,
    flags: int,
    mss: int | None,
    wscale: int | None,
    sack_permitted: bool,
    tsval: int | None,
    adv_mss: int,
) -> Negotiated:
    """:func:`negotiate` from what the segment's options say (``tsval`` None: no timestamps)."""
    wscale_ok = wscale is not None and settings.window_scaling
    ts_ok = tsval is not None and settings.timestamps
    return Negotiated(
        wscale_ok,
        min(wscale, MAX_WSCALE) if wscale is not None and wscale_ok else 0,
        sack_permitted and settings.sack,
        ts_ok,
        tsval if tsval is not None and ts_ok else 0,
        clamp_mss(settings, mss or MSS_DEFAULT, adv_mss, ts_ok),
        ecn_setup(settings, flags),
    )


def ecn_setup(settings: Settings, flags: int) -> bool:
    """Linux tcp_ecn_create_request (a SYN: ECE and CWR, tcp_ecn 1 or 2) and
    tcp_ecn_rcv_synack (a SYN-ACK: ECE without CWR)."""
    if not flags & ECE:
        return False
    if flags & ACK:
        return not flags & CWR
    return bool(flags & CWR) and settings.ecn in (1, 2)
