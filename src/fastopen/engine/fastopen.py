"""TCP Fast Open, as Linux keeps it in ``net/ipv4/tcp_fastopen.c``.

Server: the fastopen queue of a listener (``max_qlen``, pending fast open requests, a reset child
counted 60 s more), admission of a SYN (``tcp_try_fastopen``: the cookie checked against the
primary and the backup key, or no cookie needed). Client: the cookie check before a SYN
(``tcp_fastopen_cookie_check``), what a SYN-ACK teaches the cookie cache
(``tcp_fastopen_cache_set``), the SYN data's room (``tcp_send_syn_data``) and blackhole detection
(``tcp_fastopen_active_disable``). Nothing here knows a connection or a socket: the TCB and the
socket pass what these functions decide on.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

from fastopen.constants import (
    TFO_CLIENT_NO_COOKIE,
    TFO_SERVER_COOKIE_NOT_REQD,
    TFO_SERVER_ENABLE,
    TFO_SERVER_WO_SOCKOPT1,
)
from fastopen.cookies import KeyRing, Match, cookie_input
from fastopen.engine.cache import CookieCache, IPAddress, NegativeReason
from fastopen.engine.info import FastOpenClientFail
from fastopen.engine.settings import Settings
from fastopen.wire import FastOpen, TcpSegment

#: Linux keeps a reset TFO child counted against the fastopen backlog this long.
FASTOPEN_RST_HOLD = 60.0
#: Linux MAX_TCP_OPTION_SPACE: what tcp_send_syn_data keeps free of SYN data for options.
OPTION_SPACE = 40
#: The longest blackhole pause: the timeout times 2^6 (Linux tcp_fastopen_active_should_disable).
MAX_BLACKHOLE_SHIFT = 6


# -- server ----------------------------------------------------------------------------------------


class FastOpenQueue:
    """A listener's pending fast open requests (Linux ``struct fastopen_queue``)."""

    __slots__ = ("_rst_hold", "max_qlen", "qlen")

    def __init__(self) -> None:
        self.max_qlen = 0
        self.qlen = 0
        #: when each reset child's place frees (made at the first: most listeners never hold one)
        self._rst_hold: deque[float] | None = None

    def listen(self, settings: Settings, backlog: int) -> None:
        """``listen()``: TFO_SERVER_WO_SOCKOPT1 gives a listener without TCP_FASTOPEN a
        fastopen backlog of its listen backlog (Linux tcp_fastopen_init_key_once's caller)."""
        bits = settings.tcp_fastopen
        if bits & TFO_SERVER_WO_SOCKOPT1 and bits & TFO_SERVER_ENABLE and not self.max_qlen:
            self.max_qlen = backlog

    def check(self, now: float, counters: Counter[str]) -> bool:
        """Linux tcp_fastopen_queue_check: room for one more pending request (a reset child's
        place frees once its 60 s are over)."""
        if self.max_qlen == 0:
            return False
        if self.qlen >= self.max_qlen:
            held = self._rst_hold
            if not held or held[0] > now:
                counters["TCPFastOpenListenOverflow"] += 1
                return False
            held.popleft()
            self.qlen -= 1
        return True

    def add(self) -> None:
        self.qlen += 1

    def remove(self, now: float, *, hold: bool) -> None:
        """Linux reqsk_fastopen_remove: a child left the queue; one reset before the
        application accepted it stays counted FASTOPEN_RST_HOLD seconds."""
        if hold:
            if self._rst_hold is None:
                self._rst_hold = deque()
            self._rst_hold.append(now + FASTOPEN_RST_HOLD)
        else:
            self.qlen -= 1


def server_admission(
    settings: Settings,
    queue: FastOpenQueue,
    keys: KeyRing,
    no_cookie: bool,
    src: IPAddress,
    dst: IPAddress,
    seg: TcpSegment,
    now: float,
    counters: Counter[str],
) -> tuple[bool, FastOpen | None]:
    """Linux tcp_try_fastopen for a SYN from ``src`` to ``dst``: (a child with the SYN data at
    once, the cookie option for the SYN-ACK)."""
    fo = seg.fastopen
    length = len(fo.cookie) if fo is not None and fo.valid else -1
    experimental = fo.experimental if fo is not None else False
    if length == 0:
        counters["TCPFastOpenCookieReqd"] += 1
    if not (
        settings.tcp_fastopen & TFO_SERVER_ENABLE
        and (seg.payload or length >= 0)
        and queue.check(now, counters)
    ):
        return False, None
    if settings.tcp_fastopen & TFO_SERVER_COOKIE_NOT_REQD or no_cookie:
        counters["TCPFastOpenPassive"] += 1
        return True, None
    if length < 0:
        return False, None
    packed = cookie_input(src.packed, dst.packed)  # bytes: no address parsing
    valid = FastOpen(keys.primary.cookie_packed(packed), experimental)
    if length == 0:
        return False, valid
    assert fo is not None
    match = keys.check_packed(fo.cookie, packed)
    if match is Match.NONE:
        counters["TCPFastOpenPassiveFail"] += 1
        return False, valid
    counters["TCPFastOpenPassive"] += 1
    if match is Match.BACKUP:
        counters["TCPFastOpenPassiveAltKey"] += 1
        return True, valid
    return True, None


# -- client ----------------------------------------------------------------------------------------


class Blackhole:
    """Linux's global switch that turns client TFO off after a middlebox was detected
    (``tcp_fastopen_active_disable``; only when ``blackhole_timeout`` is set)."""

    __slots__ = ("_counters", "_settings", "_stamp", "_times")

    def __init__(self, settings: Settings, counters: Counter[str]) -> None:
        self._settings = settings
        self._counters = counters
        self._times = 0
        self._stamp = 0.0

    def active_disable(self, now: float) -> None:
        """A detection: client TFO pauses (longer each time)."""
        if not self._settings.blackhole_timeout:
            return
        self._times += 1
        self._stamp = now
        self._counters["TCPFastOpenBlackhole"] += 1

    def should_disable(self, now: float) -> bool:
        """Client TFO is off for timeout x 2^(n-1) (at most 64x) after the n-th detection."""
        timeout = self._settings.blackhole_timeout
        if not timeout or not self._times:
            return False
        multiplier = 1 << min(self._times - 1, MAX_BLACKHOLE_SHIFT)
        return now < self._stamp + multiplier * timeout

    def disabled_before(self) -> bool:
        """Client TFO was disabled and the period is over (Linux marks such connections)."""
        return self._times > 0

    def reset(self) -> None:
        """Forget past detections (Linux: after data flowed on a marked TFO connection)."""
        self._times = 0

    def connection_closed(
        self, *, data_in: bool, lone_ofo_fin: bool, marked: bool, now: float
    ) -> None:
        """Linux tcp_fastopen_active_disable_ofo_check, when an active TFO connection is
        destroyed (or enters TIME-WAIT): a lone out-of-order FIN and no data is a middlebox at
        work; data on a connection opened after a disable period clears the count."""
        if not data_in:
            if lone_ofo_fin:
                self.active_disable(now)
        elif marked:
            self.reset()


@dataclass(frozen=True, slots=True)
class ClientCookie:
    """What tcp_fastopen_cookie_check decided for one SYN."""

    usable: bool  # data may ride in the SYN
    option: FastOpen | None  # the option to send: a cookie, a request, or none
    cookie: bytes | None = None  # the cached cookie sent
    fail: FastOpenClientFail = FastOpenClientFail.UNSPEC
    marked: bool = (
        False  # opened after a blackhole period (Linux tcp_fastopen_active_should_disable)
    )


def client_cookie_check(
    settings: Settings,
    cache: CookieCache,
    blackhole: Blackhole,
    no_cookie: bool,
    path: tuple[IPAddress, IPAddress, int],
    now: float,
) -> ClientCookie:
    """Linux tcp_fastopen_cookie_check (plus the FreeBSD-style negative cache)."""
    local, remote, _ = path
    _, cookie, experimental = cache.get(local, remote)
    if blackhole.should_disable(now) or cache.disabled(path, now):
        return ClientCookie(False, None)
    marked = blackhole.disabled_before()
    if settings.tcp_fastopen & TFO_CLIENT_NO_COOKIE or no_cookie:
        return ClientCookie(True, None, marked=marked)
    if cookie:
        return ClientCookie(True, FastOpen(cookie, experimental), cookie, marked=marked)
    return ClientCookie(
        False,
        FastOpen(b"", experimental),
        fail=FastOpenClientFail.COOKIE_UNAVAILABLE,
        marked=marked,
    )


def syn_data_space(
    settings: Settings, cache: CookieCache, local: IPAddress, remote: IPAddress, path_mss: int
) -> int:
    """Linux tcp_send_syn_data: the MSS of the path clamped by the cached MSS (or ours), at
    least tcp_min_snd_mss, minus 40 bytes kept for options (MAX_TCP_OPTION_SPACE)."""
    cached, _, _ = cache.get(local, remote)
    return max(min(cached or path_mss, path_mss), settings.min_snd_mss) - OPTION_SPACE


def client_synack(
    cache: CookieCache,
    path: tuple[IPAddress, IPAddress, int],
    seg: TcpSegment,
    *,
    syn_fastopen: bool,
    syn_experimental: bool,
    syn_data: bool,
    fo_request: bool,
    cookie_sent: bool,
    retransmitted: bool,
    unacked: bool,
    now: float,
) -> None:
    """What a SYN-ACK to a TFO SYN teaches the cache (Linux tcp_rcv_fastopen_synack,
    tcp_fastopen_cache_set): the cookie, the MSS, SYN loss, Linux's ``try_exp``; a SYN-ACK
    without a usable option turns TFO off on the path (negative cache)."""
    fo = seg.fastopen if syn_fastopen else None  # an unsolicited cookie is ignored
    cookie: bytes | None = None
    length = -1
    bad_length = False
    if fo is not None:
        n = len(fo.cookie)
        if n == 0 or (4 <= n <= 16 and n % 2 == 0):
            length = n
            cookie = fo.cookie or None
        else:
            bad_length = True
    syn_drop = False
    try_exp = 0
    if retransmitted:
        syn_drop = length < 0 and unacked
    elif length < 0 and not syn_data:
        try_exp = 2 if syn_experimental else 1
    local, remote, _ = path
    cache.set(
        local,
        remote,
        mss=seg.mss or 0,
        cookie=cookie,
        experimental=fo.experimental if fo is not None else False,
        syn_lost=syn_drop,
        try_exp=try_exp,
        now=now,
    )
    if bad_length:
        cache.disable(path, NegativeReason.BAD_COOKIE_LENGTH, now)
    elif (fo_request or cookie_sent) and length <= 0 and (fo_request or unacked):
        cache.disable(path, NegativeReason.NO_OPTION, now)
