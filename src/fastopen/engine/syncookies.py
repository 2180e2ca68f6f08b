"""SYN cookies, as Linux ``net/ipv4/syncookies.c`` makes and checks them.

When a listener's SYN queue is full (``tcp_syncookies=1``; always with 2) the SYN-ACK's ISN is a
cookie and the SYN leaves no state: ISN = H0(4-tuple) + peer ISN + count x 2^24 + ((H1(4-tuple,
count) + MSS index) mod 2^24), ``count`` the minute; the ACK's ``ack - 1`` gives the MSS index
back when the cookie is at most two minutes old. With timestamps, the low 6 bits of the
SYN-ACK's TSval carry the window scale (15: none), SACK (bit 4) and ECN (bit 5), and the ACK's
TS echo returns them. A cookie SYN never gets TFO.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from fastopen.cookies import siphash24
from fastopen.engine.cache import IPAddress
from fastopen.engine.seq import MASK

COOKIEBITS = 24
COOKIEMASK = (1 << COOKIEBITS) - 1
#: Linux TCP_SYNCOOKIE_PERIOD and MAX_SYNCOOKIE_AGE: a cookie is good for two minutes.
PERIOD = 60.0
MAX_AGE = 2
#: Linux TCP_SYNCOOKIE_VALID: cookie ACKs are looked at this long after the queue overflowed.
VALID = MAX_AGE * PERIOD
#: The MSS a cookie can say (Linux msstab, and the IPv6 one of net/ipv6/syncookies.c).
MSSTAB = {4: (536, 1300, 1440, 1460), 6: (1280 - 60, 1480 - 60, 1500 - 60, 9000 - 60)}
TSBITS = 6
_V4 = struct.Struct("!IIHHI")
TS_OPT_WSCALE_MASK = 0xF
TS_OPT_SACK = 1 << 4
TS_OPT_ECN = 1 << 5


class CookieOptions(NamedTuple):
    """What the TS echo of a cookie ACK says was negotiated."""

    wscale_ok: bool
    snd_wscale: int
    sack_ok: bool
    ecn_ok: bool


class SynCookies:
    """The cookies of one host (two SipHash keys, as Linux's syncookie_secret[2])."""

    __slots__ = ("_keys",)

    def __init__(self, secret: bytes) -> None:
        self._keys = (
            siphash24(secret, b"syncookie0").to_bytes(8, "little") * 2,
            siphash24(secret, b"syncookie1").to_bytes(8, "little") * 2,
        )

    def _hash(
        self, src: IPAddress, dst: IPAddress, sport: int, dport: int, count: int, c: int
    ) -> int:
        if src.version == 4:  # int() is much cheaper than .packed
            data = _V4.pack(int(src), int(dst), sport, dport, count & MASK)
        else:
            data = src.packed + dst.packed + struct.pack("!HHI", sport, dport, count & MASK)
        return siphash24(self._keys[c], data) & MASK

    def make(
        self, src: IPAddress, dst: IPAddress, sport: int, dport: int, seq: int, mss: int, now: float
    ) -> tuple[int, int]:
        """(the ISN for a SYN from ``src``:``sport`` with ``seq`` and ``mss``, the MSS it
        keeps: the largest of the table not above ``mss``)."""
        table = MSSTAB[src.version]
        index = len(table) - 1
        while index and mss < table[index]:
            index -= 1
        count = int(now // PERIOD)
        isn = (
            self._hash(src, dst, sport, dport, 0, 0)
            + seq
            + (count << COOKIEBITS)
            + ((self._hash(src, dst, sport, dport, count, 1) + index) & COOKIEMASK)
        )
        return isn & MASK, table[index]

    def check(
        self, src: IPAddress, dst: IPAddress, sport: int, dport: int, seq: int, ack: int, now: float
    ) -> int:
        """The MSS of the cookie an ACK (``seq``, ``ack``) returns, or 0 when it is none."""
        cookie = (ack - 1 - self._hash(src, dst, sport, dport, 0, 0) - (seq - 1)) & MASK
        count = int(now // PERIOD)
        diff = (count - (cookie >> COOKIEBITS)) & (MASK >> COOKIEBITS)
        if diff >= MAX_AGE:
            return 0
        index = (cookie - self._hash(src, dst, sport, dport, count - diff, 1)) & COOKIEMASK
        table = MSSTAB[src.version]
        return table[index] if index < len(table) else 0


def timestamp(now_ms: int, wscale: int | None, sack: bool, ecn: bool) -> int:
    """Linux cookie_init_timestamp: a TS value (before the connection's offset) not above
    ``now_ms`` whose low bits carry the options."""
    options = wscale if wscale is not None else TS_OPT_WSCALE_MASK
    if sack:
        options |= TS_OPT_SACK
    if ecn:
        options |= TS_OPT_ECN
    now_ms &= MASK
    ts = ((now_ms >> TSBITS) << TSBITS) | options
    if ts > now_ms:
        ts -= 1 << TSBITS
    return ts & MASK


def decode_timestamp(echo: int) -> CookieOptions:
    """Linux cookie_timestamp_decode: the options in a TS echo (the offset already taken off)."""
    wscale = echo & TS_OPT_WSCALE_MASK
    return CookieOptions(
        wscale_ok=wscale != TS_OPT_WSCALE_MASK,
        snd_wscale=wscale if wscale != TS_OPT_WSCALE_MASK else 0,
        sack_ok=bool(echo & TS_OPT_SACK),
        ecn_ok=bool(echo & TS_OPT_ECN),
    )
