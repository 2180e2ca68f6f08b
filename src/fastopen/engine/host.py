"""A Host: one sans-I/O TCP stack, like one network namespace of a Linux kernel.

Inputs: :meth:`Host.receive` (whole IP packets), :meth:`Host.receive_icmp_unreachable`,
:meth:`Host.handle_timer` and the calls on its sockets, each with ``now`` (seconds, a float).
Outputs: :meth:`Host.packets_to_send`, :meth:`Host.get_timer`, :meth:`Host.next_event`.
It never reads a clock, touches a socket or starts a thread.
"""

from __future__ import annotations

import errno
import heapq
import ipaddress
import itertools
import secrets
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterable

from fastopen.cookies import KeyRing, Match, cookie_input, siphash24
from fastopen.engine.cache import NEGATIVE_TIME, CookieCache, IPAddress, NegativeReason
from fastopen.engine.events import Accepted, EngineError, Event, Readable
from fastopen.engine.socket import AF_INET, AF_INET6, EngineSocket
from fastopen.engine.tcb import ACK, FIN, MASK, RST, SYN, Connection
from fastopen.errors import MalformedPacket
from fastopen.kernel.constants import (
    TFO_COUNTERS,
    TFO_SERVER_COOKIE_NOT_REQD,
    TFO_SERVER_ENABLE,
    TFO_SERVER_WO_SOCKOPT1,
)
from fastopen.wire import PROTO_TCP, FastOpen, Flags, TcpSegment, ip_packet, parse_ip

#: Callback choosing the ISN: (local, local port, remote, remote port, now) -> 32-bit ISN.
IsnFunction = Callable[[IPAddress, int, IPAddress, int, float], int]
#: Callback choosing the timestamp offset of a connection: (local, remote) -> 32-bit offset.
TsOffsetFunction = Callable[[IPAddress, IPAddress], int]

EPHEMERAL_LOW, EPHEMERAL_HIGH = 32768, 60999
#: Linux keeps a reset TFO child counted against the fastopen backlog this long.
FASTOPEN_RST_HOLD = 60.0
Segment = tuple[IPAddress, IPAddress, TcpSegment]


class Host:
    """One TCP/IP stack: addresses, sysctl-like settings, listeners, connections, counters.

    ``tcp_fastopen`` takes the bits of ``net.ipv4.tcp_fastopen`` (default 0x1, as Linux).
    ``keys`` is the namespace's TFO key ring (``net.ipv4.tcp_fastopen_key``; random by default).
    ``blackhole_timeout`` is ``tcp_fastopen_blackhole_timeout_sec`` (0, off, as Linux 5.14+).
    ``syn_linear_timeouts`` is ``tcp_syn_linear_timeouts`` (Linux 6.x: SYNs are retransmitted
    that many times more, at the initial RTO, before the RTO doubles).
    ``negative_cache_time`` is the FreeBSD-style per-path disable time (0 turns it off).
    ``isn`` and ``tsoffset`` replace the keyed (RFC 6528) ISN and timestamp offset.
    """

    def __init__(
        self,
        addresses: Iterable[str | IPAddress],
        *,
        tcp_fastopen: int = 0x1,
        keys: KeyRing | None = None,
        timestamps: bool = True,
        sack: bool = True,
        window_scaling: bool = True,
        wscale: int = 7,
        mtu: int = 1500,
        rmem: int = 131072,
        wmem: int = 262144,
        somaxconn: int = 4096,
        syn_retries: int = 6,
        syn_linear_timeouts: int = 4,
        synack_retries: int = 5,
        retries2: int = 15,
        blackhole_timeout: float = 0.0,
        negative_cache_time: float = NEGATIVE_TIME,
        isn: IsnFunction | None = None,
        tsoffset: TsOffsetFunction | None = None,
        secret: bytes | None = None,
    ) -> None:
        self.addresses: list[IPAddress] = [ipaddress.ip_address(a) for a in addresses]
        if not self.addresses:
            raise ValueError("a Host needs at least one address")
        self.tcp_fastopen = tcp_fastopen
        self.keys = keys or KeyRing.generate()
        self.timestamps = timestamps
        self.sack = sack
        self.window_scaling = window_scaling
        self.wscale = wscale
        self.mtu = mtu
        self.rmem = rmem
        self.wmem = wmem
        self.somaxconn = somaxconn
        self.syn_retries = syn_retries
        self.syn_linear_timeouts = syn_linear_timeouts
        self.synack_retries = synack_retries
        self.retries2 = retries2
        self.blackhole_timeout = blackhole_timeout
        self.cookie_cache = CookieCache(negative_cache_time)
        self.counters: Counter[str] = Counter({name: 0 for name in TFO_COUNTERS})
        self.connections: dict[tuple[IPAddress, int, IPAddress, int], Connection] = {}
        self.listeners: dict[tuple[IPAddress | None, int], EngineSocket] = {}
        self._bound: dict[tuple[IPAddress | None, int], EngineSocket] = {}
        self._isn = isn
        self._tsoffset = tsoffset
        self._secret = secret or secrets.token_bytes(16)
        self._out: list[Segment] = []
        self._events: deque[Event] = deque()
        self._timers: list[tuple[float, int, Connection]] = []
        self._tick = itertools.count()
        self._next_port = EPHEMERAL_LOW
        self._bh_times = 0
        self._bh_stamp = 0.0
        self.last_now = 0.0

    # -- sockets -----------------------------------------------------------------------------------

    def socket(self, family: int = AF_INET) -> EngineSocket:
        """A new TCP socket (non-blocking, like every engine socket)."""
        return EngineSocket(self, family)

    def adv_mss(self, local: IPAddress) -> int:
        return self.mtu - (40 if local.version == 4 else 60)

    def source_address(self, remote: IPAddress) -> IPAddress:
        for addr in self.addresses:
            if addr.version == remote.version:
                return addr
        raise EngineError(errno.ENETUNREACH, hint="the host has no address of that family")

    def bind_port(
        self, sock: EngineSocket, ip: IPAddress | None, port: int
    ) -> tuple[IPAddress | None, int]:
        if port == 0:
            for _ in range(EPHEMERAL_HIGH - EPHEMERAL_LOW + 1):
                candidate = self._advance_port()
                if not self._port_taken(ip, candidate, sock):
                    port = candidate
                    break
            else:
                raise EngineError(errno.EADDRINUSE)
        elif self._port_taken(ip, port, sock):
            raise EngineError(errno.EADDRINUSE)
        self._bound[(ip, port)] = sock
        return ip, port

    def _port_taken(self, ip: IPAddress | None, port: int, sock: EngineSocket) -> bool:
        for (bip, bport), other in self._bound.items():
            if bport != port or other is sock:
                continue
            overlaps = ip is None or bip is None or bip == ip
            if overlaps and not (sock.reuseaddr and other.reuseaddr and not other.listening):
                return True
        return False

    def release_port(self, sock: EngineSocket) -> None:
        if sock.bound is not None and self._bound.get(sock.bound) is sock:
            del self._bound[sock.bound]

    def _advance_port(self) -> int:
        port = self._next_port
        self._next_port = port + 1 if port < EPHEMERAL_HIGH else EPHEMERAL_LOW
        return port

    def ephemeral_port(self, local: IPAddress, remote: IPAddress, rport: int) -> int:
        """A local port for a connect: free for this 4-tuple and not bound by a listener."""
        for _ in range(EPHEMERAL_HIGH - EPHEMERAL_LOW + 1):
            port = self._advance_port()
            if (local, port, remote, rport) in self.connections:
                continue
            if (local, port) in self._bound or (None, port) in self._bound:
                continue
            return port
        raise EngineError(errno.EADDRNOTAVAIL)

    def start_listening(self, sock: EngineSocket) -> None:
        assert sock.bound is not None
        self.listeners[sock.bound] = sock
        if (
            self.tcp_fastopen & TFO_SERVER_WO_SOCKOPT1
            and self.tcp_fastopen & TFO_SERVER_ENABLE
            and not sock.fastopen_max_qlen
        ):
            sock.fastopen_max_qlen = sock.backlog

    def stop_listening(self, sock: EngineSocket, now: float) -> None:
        if sock.bound is not None and self.listeners.get(sock.bound) is sock:
            del self.listeners[sock.bound]
        for child in list(sock.accept_queue):
            conn = child.conn
            if conn is not None and not conn.gone():
                conn.abort(now)
        sock.accept_queue.clear()
        embryos = [c for c in self.connections.values() if c.listener is sock and not c.syn_acked]
        for conn in embryos:
            conn.abort(now, rst=False)  # Linux drops request sockets silently

    # -- identifiers (RFC 6528) --------------------------------------------------------------------

    def choose_isn(self, local: IPAddress, lport: int, remote: IPAddress, rport: int) -> int:
        """ISN = F(4-tuple, secret) + a 64 ns clock (RFC 6528, as Linux secure_tcp_seq)."""
        if self._isn is not None:
            return self._isn(local, lport, remote, rport, self.last_now) & MASK
        data = local.packed + remote.packed + struct.pack("!HH", lport, rport)
        return (siphash24(self._secret, data) + (int(self.last_now * 1e9) >> 6)) & MASK

    def choose_tsoffset(self, local: IPAddress, remote: IPAddress) -> int:
        """A keyed per-pair timestamp offset (Linux secure_tcp_ts_off)."""
        if self._tsoffset is not None:
            return self._tsoffset(local, remote) & MASK
        return siphash24(self._secret, remote.packed + local.packed) & MASK

    # -- timers and events -------------------------------------------------------------------------

    def schedule(self, conn: Connection, when: float) -> None:
        conn.pushed_at = when
        heapq.heappush(self._timers, (when, next(self._tick), conn))

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` must be called, or None."""
        timers = self._timers
        while timers:
            when, _, conn = timers[0]
            if conn.pushed_at == when:
                due = conn.deadline()
                if due == when:
                    return when
                heapq.heappop(timers)  # the timer moved later (or stopped): file it again
                conn.pushed_at = None
                if due is not None:
                    self.schedule(conn, due)
                continue
            heapq.heappop(timers)
        return None

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        self.last_now = now
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _, conn = heapq.heappop(timers)
            if conn.pushed_at != when:
                continue
            conn.pushed_at = None
            conn.on_timer(now)

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def next_event(self) -> Event | None:
        """The next event for the application, or None."""
        return self._events.popleft() if self._events else None

    # -- output ------------------------------------------------------------------------------------

    def output(self, src: IPAddress, dst: IPAddress, segment: TcpSegment) -> None:
        self.counters["TcpOutSegs"] += 1
        self._out.append((src, dst, segment))

    def packets_to_send(self) -> list[bytes]:
        """The IP packets to send, in order (and forgets them)."""
        out, self._out = self._out, []
        return [ip_packet(src, dst, seg) for src, dst, seg in out]

    def segments_to_send(self) -> list[Segment]:
        """The same as :meth:`packets_to_send`, unencoded: ``(src, dst, TcpSegment)``.

        For in-memory links and runtimes that encode themselves; each goes to the peer's
        :meth:`receive_segment`.
        """
        out, self._out = self._out, []
        return out

    def send_reset_for(self, local: IPAddress, remote: IPAddress, seg: TcpSegment) -> None:
        """The RST answering ``seg`` when nothing here wants it (RFC 9293 3.10.7.1)."""
        flags = int(seg.flags)
        if flags & RST:
            return
        if flags & ACK:
            rst = TcpSegment(seg.dst_port, seg.src_port, seg.ack, 0, Flags.RST, 0)
        else:
            end = seg.seq + len(seg.payload) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
            rst = TcpSegment(seg.dst_port, seg.src_port, 0, end & MASK, Flags.RST | Flags.ACK, 0)
        self.counters["TcpOutRsts"] += 1
        self.output(local, remote, rst)

    # -- input -------------------------------------------------------------------------------------

    def receive(self, packet: bytes, now: float) -> None:
        """A whole IP packet for this host; malformed TCP is counted and dropped, others ignored."""
        try:
            ip = parse_ip(packet)
            if ip.protocol != PROTO_TCP or ip.is_fragment or ip.dst not in self.addresses:
                return  # not for this TCP (the engine does not reassemble fragments)
            seg = TcpSegment.parse(ip.payload, ip.src, ip.dst)
        except MalformedPacket:
            self.counters["TcpInErrs"] += 1
            return
        self.receive_segment(ip.src, ip.dst, seg, now)

    def receive_segment(self, src: IPAddress, dst: IPAddress, seg: TcpSegment, now: float) -> None:
        """A parsed segment from ``src`` to ``dst`` (one of this host's addresses)."""
        self.last_now = now
        self.counters["TcpInSegs"] += 1
        conn = self.connections.get((dst, seg.dst_port, src, seg.src_port))
        if conn is not None:
            if not conn.time_wait_reusable(seg):
                conn.segment_arrives(seg, now)
                return
            conn.end_time_wait()
        listener = self.listeners.get((dst, seg.dst_port)) or self.listeners.get(
            (None, seg.dst_port)
        )
        if listener is not None:
            self._listen_input(listener, src, dst, seg, now)
        else:
            self.send_reset_for(dst, src, seg)

    def receive_icmp_unreachable(self, dst: str | IPAddress, now: float) -> None:
        """An ICMP destination unreachable for ``dst``: TFO off to it (negative cache)."""
        self.last_now = now
        remote = ipaddress.ip_address(dst)
        for local in self.addresses:
            if local.version == remote.version:
                self.cookie_cache.disable((local, remote, 0), NegativeReason.UNREACHABLE, now)

    def _listen_input(
        self, listener: EngineSocket, src: IPAddress, dst: IPAddress, seg: TcpSegment, now: float
    ) -> None:
        flags = int(seg.flags)
        if flags & RST:
            return
        if flags & ACK:
            self.send_reset_for(dst, src, seg)
            return
        if not flags & SYN or flags & FIN:
            return  # Linux tcp_rcv_state_process (6.x) discards a SYN with FIN in LISTEN
        if len(listener.accept_queue) >= max(listener.backlog, 1):
            self.counters["ListenOverflows"] += 1
            self.counters["ListenDrops"] += 1
            return
        child = EngineSocket(self, AF_INET if dst.version == 4 else AF_INET6)
        conn = Connection(self, child, dst, seg.dst_port, src, seg.src_port)
        child.conn = conn
        self.connections[conn.key] = conn
        fastopen, reply = self._try_fastopen(listener, src, dst, seg, now)
        conn.accept_syn(listener, seg, now, fastopen=fastopen, reply=reply)
        if fastopen:
            listener.fastopen_qlen += 1
            self.enqueue_accept(listener, conn)
            if conn.rcv_buf:
                self.emit(Readable(child))

    def enqueue_accept(self, listener: EngineSocket, conn: Connection) -> None:
        listener.accept_queue.append(conn.sock)
        self.emit(Accepted(listener))

    # -- TCP Fast Open, server side (Linux tcp_try_fastopen) ---------------------------------------

    def _try_fastopen(
        self, listener: EngineSocket, src: IPAddress, dst: IPAddress, seg: TcpSegment, now: float
    ) -> tuple[bool, FastOpen | None]:
        """(a child with the SYN data at once, the cookie option for the SYN-ACK)."""
        fo = seg.fastopen
        length = len(fo.cookie) if fo is not None and fo.valid else -1
        experimental = fo.experimental if fo is not None else False
        syn_data = bool(seg.payload)
        if length == 0:
            self.counters["TCPFastOpenCookieReqd"] += 1
        if not (
            self.tcp_fastopen & TFO_SERVER_ENABLE
            and (syn_data or length >= 0)
            and self._fastopen_queue_check(listener, now)
        ):
            return False, None
        if self.tcp_fastopen & TFO_SERVER_COOKIE_NOT_REQD or listener.fastopen_no_cookie:
            self.counters["TCPFastOpenPassive"] += 1
            return True, None
        if length < 0:
            return False, None
        ring = listener.fastopen_keys or self.keys
        packed = cookie_input(src.packed, dst.packed)  # bytes: no address parsing
        valid = FastOpen(ring.primary.cookie_packed(packed), experimental)
        if length == 0:
            return False, valid
        assert fo is not None
        match = ring.check_packed(fo.cookie, packed)
        if match is Match.NONE:
            self.counters["TCPFastOpenPassiveFail"] += 1
            return False, valid
        self.counters["TCPFastOpenPassive"] += 1
        if match is Match.BACKUP:
            self.counters["TCPFastOpenPassiveAltKey"] += 1
            return True, valid
        return True, None

    def _fastopen_queue_check(self, listener: EngineSocket, now: float) -> bool:
        """Linux tcp_fastopen_queue_check: pending fast open requests bounded by max_qlen."""
        if listener.fastopen_max_qlen == 0:
            return False
        if listener.fastopen_qlen >= listener.fastopen_max_qlen:
            held = listener.fastopen_rst
            if not held or held[0] > now:
                self.counters["TCPFastOpenListenOverflow"] += 1
                return False
            held.popleft()
            listener.fastopen_qlen -= 1
        return True

    def forget(self, conn: Connection, *, reset: bool) -> None:
        """``conn`` is closed: out of the tables; a pending TFO child reset after the
        application accepted it stays counted 60 s (Linux reqsk_fastopen_remove)."""
        if self.connections.get(conn.key) is conn:
            del self.connections[conn.key]
        conn.pushed_at = None
        listener = conn.listener
        if listener is not None and conn.fo_pending:
            conn.fo_pending = False
            if reset and listener.listening and conn.sock not in listener.accept_queue:
                listener.fastopen_rst.append(self.last_now + FASTOPEN_RST_HOLD)
            else:
                listener.fastopen_qlen -= 1

    # -- TCP Fast Open, client side: Linux's global blackhole switch -------------------------------

    def fastopen_active_disable(self, now: float) -> None:
        """Linux tcp_fastopen_active_disable (only when ``blackhole_timeout`` is set)."""
        if not self.blackhole_timeout:
            return
        self._bh_times += 1
        self._bh_stamp = now
        self.counters["TCPFastOpenBlackhole"] += 1

    def fastopen_active_should_disable(self, now: float) -> bool:
        """Client TFO is off for timeout x 2^(n-1) (at most 64x) after the n-th detection."""
        if not self.blackhole_timeout or not self._bh_times:
            return False
        multiplier = 1 << min(self._bh_times - 1, 6)
        return now < self._bh_stamp + multiplier * self.blackhole_timeout

    def blackhole_disabled_before(self) -> bool:
        """Client TFO was disabled and the period is over (Linux marks such connections)."""
        return self._bh_times > 0

    def reset_blackhole(self) -> None:
        """Forget past detections (Linux: after data flowed on a marked TFO connection)."""
        self._bh_times = 0
