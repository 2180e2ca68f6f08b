"""The services a connection and a socket need from their host: a narrow context.

:class:`~fastopen.engine.host.Host` implements both protocols; a :class:`Connection` and an
:class:`EngineSocket` see only these, never the host's tables (as a Linux ``struct sock`` reaches
its namespace through ``sock_net(sk)`` and a few helpers).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Protocol

from fastopen.engine.cache import CookieCache, IPAddress
from fastopen.engine.cc import CongestionControl
from fastopen.engine.events import Event
from fastopen.engine.fastopen import Blackhole
from fastopen.engine.settings import Settings
from fastopen.wire import TcpSegment

if TYPE_CHECKING:
    from fastopen.engine.socket import EngineSocket
    from fastopen.engine.tcb import Connection

#: A connection's 4-tuple: (local address, local port, remote address, remote port).
ConnKey = tuple[IPAddress, int, IPAddress, int]
#: A bound address: (local address or None for any, port).
Bound = tuple[IPAddress | None, int]


class Timed(Protocol):
    """Something with timers in the host's timer heap."""

    pushed_at: float | None

    def deadline(self) -> float | None: ...

    def on_timer(self, now: float) -> None: ...


class ConnectionContext(Protocol):
    """What a connection (or a request socket) needs: output, timers, events, counters, the
    cookie cache and blackhole switch, settings, and the minting of ISNs and TS offsets."""

    @property
    def settings(self) -> Settings: ...

    @property
    def counters(self) -> Counter[str]: ...

    @property
    def cookie_cache(self) -> CookieCache: ...

    @property
    def blackhole(self) -> Blackhole: ...

    def output(
        self, src: IPAddress, dst: IPAddress, segment: TcpSegment, segs: int = 1
    ) -> None: ...

    def send_reset_for(self, local: IPAddress, remote: IPAddress, seg: TcpSegment) -> None: ...

    def schedule(self, timed: Timed, when: float) -> None: ...

    def emit(self, event: Event) -> None: ...

    def adv_mss(self, local: IPAddress) -> int: ...

    def congestion_control(self, name: str) -> CongestionControl: ...

    def choose_isn(
        self, local: IPAddress, lport: int, remote: IPAddress, rport: int, now: float
    ) -> int: ...

    def choose_tsoffset(self, local: IPAddress, remote: IPAddress) -> int: ...

    def forget(self, key: ConnKey, owner: object) -> None: ...

    def update_pmtu(self, remote: IPAddress, mtu: int, now: float) -> None: ...

    def challenge_ack_allowed(self, now: float) -> bool: ...


class SocketContext(ConnectionContext, Protocol):
    """What a socket needs besides: addresses and ports, listening, new connections."""

    def has_address(self, ip: IPAddress) -> bool: ...

    def bind_port(self, sock: EngineSocket, ip: IPAddress | None, port: int) -> Bound: ...

    def release_port(self, sock: EngineSocket) -> None: ...

    def start_listening(self, sock: EngineSocket) -> None: ...

    def stop_listening(self, sock: EngineSocket, now: float) -> None: ...

    def new_connection(
        self, sock: EngineSocket, bound: Bound | None, remote: IPAddress, rport: int, now: float
    ) -> Connection: ...
