"""A Host: one sans-I/O TCP stack, like one network namespace of a Linux kernel.

Inputs: :meth:`Host.receive` (whole IP packets), :meth:`Host.receive_icmp_unreachable`,
:meth:`Host.handle_timer` and the calls on its sockets, each with ``now`` (seconds, a float).
Outputs: :meth:`Host.packets_to_send`, :meth:`Host.get_timer`, :meth:`Host.next_event`.
It never reads a clock, touches a socket or starts a thread.
"""

from __future__ import annotations

import dataclasses
import errno
import heapq
import ipaddress
import itertools
import random
import secrets
import struct
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Unpack

from fastopen.constants import TFO_COUNTERS
from fastopen.cookies import siphash24
from fastopen.engine.bbr import Bbr
from fastopen.engine.cache import CookieCache, IPAddress, NegativeReason
from fastopen.engine.cc import RENO, CongestionControl, CubicAtRest
from fastopen.engine.context import Bound, ConnKey, Timed
from fastopen.engine.events import EngineError, Event, Readable
from fastopen.engine.fastopen import Blackhole, server_admission
from fastopen.engine.handshake import (
    TS_OPTION_LEN,
    Negotiated,
    advertised_mss,
    clamp_mss,
    initial_window,
    negotiate,
    negotiate_options,
)
from fastopen.engine.icmp import PMTU_EXPIRES, IcmpError
from fastopen.engine.md5 import Md5Key, inbound_ok, lookup
from fastopen.engine.request import RequestSock, synack_segment
from fastopen.engine.seq import ACK, FIN, MASK, RST, SYN
from fastopen.engine.settings import Settings, SettingsChanges
from fastopen.engine.socket import AF_INET, AF_INET6, EngineSocket
from fastopen.engine.states import S
from fastopen.engine.syncookies import VALID, SynCookies, decode_timestamp, timestamp
from fastopen.engine.tcb import Connection
from fastopen.errors import MalformedPacket
from fastopen.wire import (
    PROTO_TCP,
    Flags,
    PlainSyn,
    TcpSegment,
    ip_packet,
    parse_ip,
    parse_ipv4_tcp,
    parse_plain_syn,
)

#: Callback choosing the ISN: (local, local port, remote, remote port, now) -> 32-bit ISN.
IsnFunction = Callable[[IPAddress, int, IPAddress, int, float], int]
#: Callback choosing the timestamp offset of a connection: (local, remote) -> 32-bit offset.
TsOffsetFunction = Callable[[IPAddress, IPAddress], int]

EPHEMERAL_LOW, EPHEMERAL_HIGH = 32768, 60999
#: tcp_challenge_ack_limit's INT_MAX: the host-wide limit is off (Linux 6.x's default).
CHALLENGE_ACK_UNLIMITED = 0x7FFFFFFF
#: The MSS a SYN without the option gets a cookie for (Linux: TCP_MSS_DEFAULT, 536).
MSS_COOKIE_DEFAULT = 536
Segment = tuple[IPAddress, IPAddress, TcpSegment]


class ConnectionFault(Exception):
    """An input failed inside the engine (a bug, never a peer's doing): ``owner`` is the
    Connection or request socket it failed in (None: the listener or the host); ``cause``, the
    exception, is its ``__cause__`` (set here: compiled by mypyc, ``raise ... from`` sets none).
    :meth:`Host.reset_faulty` drops that one."""

    def __init__(self, owner: object, cause: BaseException) -> None:
        super().__init__(f"engine input failed in {owner!r}")
        self.owner = owner
        self.__cause__ = cause


class Host:
    """One TCP/IP stack: addresses, settings (its sysctls), listeners, connections, counters.

    ``settings`` (a :class:`~fastopen.engine.settings.Settings`, Linux defaults when None) and
    keyword arguments naming its fields (``Host(addresses, tcp_fastopen=0x2)``) give the
    sysctls; ``host.settings`` changes them later. ``isn`` and ``tsoffset`` replace the keyed
    (RFC 6528) ISN and timestamp offset; ``secret`` keys them. A Host implements the narrow
    contexts its connections and sockets see (:mod:`fastopen.engine.context`).
    """

    def __init__(
        self,
        addresses: Iterable[str | IPAddress],
        settings: Settings | None = None,
        *,
        isn: IsnFunction | None = None,
        tsoffset: TsOffsetFunction | None = None,
        secret: bytes | None = None,
        first_port: int = EPHEMERAL_LOW,
        **changes: Unpack[SettingsChanges],
    ) -> None:
        if not EPHEMERAL_LOW <= first_port <= EPHEMERAL_HIGH:
            raise ValueError(
                f"the first ephemeral port must be in {EPHEMERAL_LOW}-{EPHEMERAL_HIGH}, "
                f"not {first_port}"
            )
        self.addresses: list[IPAddress] = [ipaddress.ip_address(a) for a in addresses]
        if not self.addresses:
            raise ValueError("a Host needs at least one address")
        base = settings if settings is not None else Settings()
        self.settings = dataclasses.replace(base, **changes) if changes else base
        self.cookie_cache = CookieCache(self.settings.negative_cache_time)
        self.counters: Counter[str] = Counter({name: 0 for name in TFO_COUNTERS})
        self.blackhole = Blackhole(self.settings, self.counters)
        self._cubic = CubicAtRest(self.counters, self.settings)
        self.connections: dict[ConnKey, Connection] = {}
        #: Path MTUs learnt from ICMP, by destination: (MTU, when it expires).
        self.pmtu: dict[IPAddress, tuple[int, float]] = {}
        #: request sockets: SYNs answered without a connection yet (Linux's SYN_RECV reqsks)
        self.requests: dict[ConnKey, RequestSock] = {}
        self.listeners: dict[Bound, EngineSocket] = {}
        self._bound: dict[Bound, EngineSocket] = {}
        self._isn = isn
        self._tsoffset = tsoffset
        self._secret = secret or secrets.token_bytes(16)
        self._out: list[Segment] = []
        self._events: deque[Event] = deque()
        self._timers: list[tuple[float, int, Timed]] = []
        self._tick = itertools.count()
        #: The next ephemeral port tried, then up, wrapping (``first_port``). Linux starts at a
        #: keyed hash of the addresses plus a perturbation every connect advances, shared by all
        #: processes (__inet_hash_connect), so a new process does not start where the last one
        #: did; a new host here starts at ``first_port``, 32768 unless told (the userspace stack
        #: draws it: the peer may still hold the last process's 4-tuple in TIME-WAIT).
        self._next_port = first_port
        self.syncookies = SynCookies(self._secret)
        #: The host's random source (Linux get_random_u32_below), seeded by its secret.
        self._random = random.Random(self._secret)
        self._challenge_second = -1
        self._challenge_count = 0

    # -- sockets -----------------------------------------------------------------------------------

    def socket(self, family: int = AF_INET) -> EngineSocket:
        """A new TCP socket (non-blocking, like every engine socket)."""
        return EngineSocket(self, family)

    def congestion_control(self, name: str) -> CongestionControl:
        """The algorithm ``name`` for a connection (KeyError for one the engine has not; Linux:
        ENOENT): Reno's one instance, this host's CUBIC at rest, which its connections
        share until each needs state of its own, or a BBR of its own (its random phases from
        the host's random source)."""
        if name == "cubic":
            return self._cubic
        if name == "reno":
            return RENO
        if name == "bbr":
            return Bbr(self._random.randrange)
        raise KeyError(name)

    def adv_mss(self, local: IPAddress) -> int:
        return advertised_mss(self.settings.mtu, local.version)

    def has_address(self, ip: IPAddress) -> bool:
        return ip in self.addresses

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

    def stop_listening(self, sock: EngineSocket, now: float) -> None:
        if sock.bound is not None and self.listeners.get(sock.bound) is sock:
            del self.listeners[sock.bound]
        for child in list(sock.accept_queue):
            conn = child.conn
            if conn is not None and not conn.gone():
                conn.abort(now)
        sock.accept_queue.clear()
        # Linux inet_csk_listen_stop: what accept() took is the application's now (an accepted
        # TFO child finishes its handshake alone); request sockets are dropped silently
        for req in [r for r in self.requests.values() if r.listener is sock]:
            req.leave()

    # -- identifiers (RFC 6528) --------------------------------------------------------------------

    def new_connection(
        self, sock: EngineSocket, bound: Bound | None, remote: IPAddress, rport: int, now: float
    ) -> Connection:
        """An active open's connection: the source address and port chosen, in the table."""
        local = bound[0] if bound is not None else None
        if local is None:
            local = self.source_address(remote)
        lport = bound[1] if bound is not None else self.ephemeral_port(local, remote, rport)
        if (local, lport, remote, rport) in self.connections:
            raise EngineError(errno.EADDRNOTAVAIL)
        conn = Connection(self, sock, local, lport, remote, rport, now)
        self.connections[conn.key] = conn
        route = self.pmtu.get(remote)
        if route is not None:
            if now < route[1]:
                conn.clamp_mss(route[0] - (40 if remote.version == 4 else 60))
            else:
                del self.pmtu[remote]
        return conn

    def choose_isn(
        self, local: IPAddress, lport: int, remote: IPAddress, rport: int, now: float
    ) -> int:
        """ISN = F(4-tuple, secret) + a 64 ns clock (RFC 6528, as Linux secure_tcp_seq)."""
        if self._isn is not None:
            return self._isn(local, lport, remote, rport, now) & MASK
        data = local.packed + remote.packed + struct.pack("!HH", lport, rport)
        return (siphash24(self._secret, data) + (int(now * 1e9) >> 6)) & MASK

    def choose_tsoffset(self, local: IPAddress, remote: IPAddress) -> int:
        """A keyed per-pair timestamp offset (Linux secure_tcp_ts_off)."""
        if self._tsoffset is not None:
            return self._tsoffset(local, remote) & MASK
        return siphash24(self._secret, remote.packed + local.packed) & MASK

    # -- timers and events -------------------------------------------------------------------------

    def schedule(self, timed: Timed, when: float) -> None:
        timed.pushed_at = when
        heapq.heappush(self._timers, (when, next(self._tick), timed))

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
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _, timed = heapq.heappop(timers)
            if timed.pushed_at != when:
                continue
            timed.pushed_at = None
            try:
                timed.on_timer(now)
            except Exception as exc:  # a bug: the caller resets that one (reset_faulty)
                raise ConnectionFault(timed, exc) from exc

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def next_event(self) -> Event | None:
        """The next event for the application, or None."""
        return self._events.popleft() if self._events else None

    # -- output ------------------------------------------------------------------------------------

    def output(self, src: IPAddress, dst: IPAddress, segment: TcpSegment, segs: int = 1) -> None:
        """``segment`` to send, ``segs`` segments on the wire (a TSO one's: Linux counts
        OutSegs by tcp_skb_pcount)."""
        if self.settings.qdisc_drops:
            return  # the device's queue refuses it (Settings.qdisc_drops)
        self.counters["TcpOutSegs"] += segs
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

    def challenge_ack_allowed(self, now: float) -> bool:
        """Linux's host-wide challenge ACK budget: tcp_challenge_ack_limit per second (INT_MAX,
        Linux 6.x's default, is no limit; Linux draws the budget at random around the limit)."""
        limit = self.settings.challenge_ack_limit
        if limit >= CHALLENGE_ACK_UNLIMITED:
            return True
        second = int(now)
        if second != self._challenge_second:
            self._challenge_second = second
            self._challenge_count = limit
        if self._challenge_count <= 0:
            return False
        self._challenge_count -= 1
        return True

    # -- input -------------------------------------------------------------------------------------

    def receive(self, packet: bytes, now: float) -> None:
        """A whole IP packet for this host; malformed TCP is counted and dropped, others ignored."""
        parsed = self.parse_packet(packet, now)
        if parsed is not None:
            self.receive_segment(*parsed, now)

    def parse_packet(self, packet: bytes, now: float) -> Segment | None:
        """The first half of :meth:`receive`: the segment ``packet`` carries to this host, its
        checksums verified, for :meth:`receive_segment`; None when there is nothing to hand it:
        malformed TCP (counted and dropped), another protocol or host (ignored), or a plain
        SYN a listener under a SYN flood has answered at once (a SYN cookie)."""
        syn = parse_plain_syn(packet)
        if syn is not None and self._syn_cookie_at_once(syn, now):
            return None
        try:
            parsed: Segment | None = parse_ipv4_tcp(packet, self.addresses)  # one pass, mostly
            if parsed is None:
                ip = parse_ip(packet)
                if ip.protocol != PROTO_TCP or ip.is_fragment or ip.dst not in self.addresses:
                    return None  # not for this TCP (the engine does not reassemble fragments)
                parsed = ip.src, ip.dst, TcpSegment.parse(ip.payload, ip.src, ip.dst, ip.ecn)
        except MalformedPacket:
            self.counters["TcpInErrs"] += 1
            return None
        return parsed

    def receive_segment(
        self, src: IPAddress, dst: IPAddress, seg: TcpSegment, now: float, segs: int = 1
    ) -> None:
        """A parsed segment from ``src`` to ``dst`` (one of this host's addresses); ``segs``
        segments of the wire when it is a coalesced one (GRO's, counted as Linux counts them).

        An exception inside the engine (a bug) comes out as :class:`ConnectionFault` naming
        the connection it happened in; :meth:`reset_faulty` drops that one, the rest go on.
        """
        self.counters["TcpInSegs"] += segs
        key = (dst, seg.dst_port, src, seg.src_port)
        owner: object = None
        try:
            conn = owner = self.connections.get(key)
            if conn is not None:
                if conn.state is not S.TIME_WAIT:
                    # Linux tcp_v4_rcv: tcp_inbound_hash, but not for a TIME-WAIT socket
                    keys = conn.sock.options.md5_keys
                    if (keys or seg.options) and not inbound_ok(keys, src, dst, seg, self.counters):
                        return
                    conn.segment_arrives(seg, now)
                    return
                isn = conn.time_wait_isn(seg, now)
                if isn is None:
                    conn.segment_arrives(seg, now)
                    return
                listener = self._listener(dst, seg.dst_port)
                if listener is None:
                    conn.send_ack(now)  # Linux TCP_TW_SYN with no listener: TCP_TW_ACK
                    return
                if not self._md5_ok(listener.options.md5_keys, src, dst, seg):
                    return
                conn.end_time_wait(now)
                owner = None
                self._listen_input(listener, src, dst, seg, now, isn)
                return
            req = owner = self.requests.get(key)
            if req is not None:
                if not self._md5_ok(req.listener.options.md5_keys, src, dst, seg):
                    return
                if req.is_syn_again(seg):
                    req.send_synack(now)  # the SYN-ACK again, without the cookie option
                    return
                conn = owner = self._child_from_request(req, now)
                conn.segment_arrives(seg, now)
                return
            owner = None
            listener = self._listener(dst, seg.dst_port)
            if listener is not None:
                if self._md5_ok(listener.options.md5_keys, src, dst, seg):
                    self._listen_input(listener, src, dst, seg, now)
            else:
                self.send_reset_for(dst, src, seg)
        except Exception as exc:
            raise ConnectionFault(owner, exc) from exc

    def _md5_ok(
        self, keys: tuple[Md5Key, ...], src: IPAddress, dst: IPAddress, seg: TcpSegment
    ) -> bool:
        """Linux tcp_inbound_md5_hash for the socket of ``keys`` (a segment failing it is
        dropped, counted); at once true for an unkeyed socket and a segment without options."""
        if not keys and not seg.options:
            return True
        return inbound_ok(keys, src, dst, seg, self.counters)

    def reset_faulty(self, fault: ConnectionFault, now: float) -> None:
        """Drop what ``fault`` names (a RST to its peer, the application told ECONNRESET),
        so that one failing connection never stops the others or the timers."""
        owner = fault.owner
        if isinstance(owner, RequestSock):
            if self.requests.get(owner.key) is owner:
                owner.leave()
        elif isinstance(owner, Connection):
            owner.fail(now)

    def receive_icmp(self, error: IcmpError, now: float) -> None:
        """An ICMP or ICMPv6 error quoting a segment this host sent (Linux tcp_v4_err,
        tcp_v6_err): the connection it names takes it; one this host does not have counts as
        an ICMP input error."""
        conn = self.connections.get(error.key)
        if conn is not None:
            conn.icmp_error(error, now)
            return
        req = self.requests.get(error.key)
        if req is None:
            self.counters["IcmpInErrors"] += 1
        elif error.seq != req.iss:  # Linux tcp_req_err
            self.counters["OutOfWindowIcmps"] += 1
        elif error.aborts_request:
            self.counters["ListenDrops"] += 1  # dropped silently, as POSIX wants of accept()
            req.leave()

    def update_pmtu(self, remote: IPAddress, mtu: int, now: float) -> None:
        """A smaller path MTU to ``remote`` (a route exception, as Linux keeps one for
        ip_rt_mtu_expires, 10 minutes): new connections to it start with it too."""
        self.pmtu[remote] = (mtu, now + PMTU_EXPIRES)

    def receive_icmp_unreachable(self, dst: str | IPAddress, now: float) -> None:
        """An ICMP destination unreachable for ``dst``: TFO off to it (negative cache)."""
        remote = ipaddress.ip_address(dst)
        for local in self.addresses:
            if local.version == remote.version:
                self.cookie_cache.disable((local, remote, 0), NegativeReason.UNREACHABLE, now)

    def _listener(self, ip: IPAddress, port: int) -> EngineSocket | None:
        """The socket listening on ``ip``:``port``, or on the port of any address."""
        return self.listeners.get((ip, port)) or self.listeners.get((None, port))

    def _listen_input(
        self,
        listener: EngineSocket,
        src: IPAddress,
        dst: IPAddress,
        seg: TcpSegment,
        now: float,
        tw_isn: int | None = None,
    ) -> None:
        """Linux tcp_v4_do_rcv in LISTEN (tcp_conn_request for a SYN); ``tw_isn``, the ISN a
        TIME-WAIT of the same 4-tuple gave a SYN that reopens it (tcp_tw_isn)."""
        flags = int(seg.flags)
        if flags & RST:
            return
        if flags & ACK:
            if not flags & SYN and self._cookie_ack(listener, src, dst, seg, now):
                return
            self.send_reset_for(dst, src, seg)
            return
        if not flags & SYN or flags & FIN:
            return  # Linux tcp_rcv_state_process (6.x) discards a SYN with FIN in LISTEN
        # Linux tcp_conn_request: a full SYN queue (or tcp_syncookies=2) means SYN cookies
        settings = self.settings
        queue = listener.listen_queue
        want_cookie = settings.syncookies == 2 or queue.syn_qlen > queue.backlog
        if want_cookie:
            if not settings.syncookies:
                self.counters["TCPReqQFullDrop"] += 1
                self.counters["ListenDrops"] += 1
                return
            self.counters["TCPReqQFullDoCookies"] += 1
        if len(queue.accepted) >= max(queue.backlog, 1):
            self.counters["ListenOverflows"] += 1
            self.counters["ListenDrops"] += 1
            return
        key = (dst, seg.dst_port, src, seg.src_port)
        neg = negotiate(settings, seg, self.adv_mss(dst))
        if want_cookie:
            self._send_cookie(listener, key, seg.seq, seg.mss, neg, now)
            return
        keys = listener.options.md5_keys
        if keys and neg.sack_ok and lookup(keys, src) is not None:
            # Linux tcp_synack_options: with an MD5 signature and timestamps no SACK block
            # would fit, so a SYN-ACK that offers SACK leaves timestamps out
            neg = neg._replace(ts_ok=False)
        limit = settings.max_syn_backlog
        if tw_isn is None and not settings.syncookies and limit - queue.syn_qlen < limit >> 2:
            self.counters["ListenDrops"] += 1  # the last quarter is kept (Linux: for proven peers)
            return
        fastopen, reply = server_admission(
            settings,
            queue.fastopen,
            queue.keys or settings.keys,
            listener.fastopen_no_cookie,
            src,
            dst,
            seg,
            now,
            self.counters,
        )
        if tw_isn is None:
            iss = self.choose_isn(dst, seg.dst_port, src, seg.src_port, now)
        else:
            iss = tw_isn
        if not fastopen:
            req = RequestSock(self, listener, key, seg.seq, seg.window, neg, iss)
            self.requests[key] = req
            queue.syn_qlen += 1
            queue.syn_young += 1
            self.counters["TcpPassiveOpens"] += 1
            req.start(now, reply)
            return
        conn = self._child(listener, key, iss, now)
        child = conn.sock
        conn.accept_fastopen(listener, seg, now, reply)
        listener.fastopen_queue.add()
        listener.child_ready(child)
        if conn.rcv_buf:
            self.emit(Readable(child))

    def _child(self, listener: EngineSocket, key: ConnKey, iss: int, now: float) -> Connection:
        """A new child connection of ``listener`` in the table (its socket made for it)."""
        local, lport, remote, rport = key
        child = EngineSocket(self, AF_INET if local.version == 4 else AF_INET6)
        conn = Connection(self, child, local, lport, remote, rport, now, iss)
        child.conn = conn
        self.connections[conn.key] = conn  # the connection's own key: the request's goes with it
        return conn

    def _child_from_request(self, req: RequestSock, now: float) -> Connection:
        """A segment for a request socket: it becomes a full connection, which takes it."""
        del self.requests[req.key]
        req.pushed_at = None
        listener = req.listener
        if req.retransmits == 0:
            listener.listen_queue.syn_young -= 1
        conn = self._child(listener, req.key, req.iss, now)
        conn.from_request(
            listener,
            req.irs,
            req.neg,
            req.window,
            retransmits=req.retransmits,
            synack_at=req.sent_at,
            rto_at=req.deadline(),
        )
        return conn

    # -- SYN cookies (Linux syncookies.c) ----------------------------------------------------------

    def _syn_cookie_at_once(self, syn: PlainSyn, now: float) -> bool:
        """A plain SYN (the SYNs of a flood) to a listener that answers it with a SYN cookie:
        answered here as :meth:`receive_segment` and :meth:`_listen_input` would, without the
        packet parsed (Linux answers a flood in softirq). False: anything else, for the general
        path."""
        dst, dport = syn.dst, syn.dst_port
        key = (dst, dport, syn.src, syn.src_port)
        if key in self.connections or key in self.requests or dst not in self.addresses:
            return False
        listener = self._listener(dst, dport)
        if listener is None or listener.options.md5_keys:  # MD5: the general path checks it
            return False
        settings, queue = self.settings, listener.listen_queue
        if not settings.syncookies or (
            settings.syncookies != 2 and queue.syn_qlen <= queue.backlog
        ):
            return False
        if len(queue.accepted) >= max(queue.backlog, 1):
            return False
        try:
            counters = self.counters
            counters["TcpInSegs"] += 1
            counters["TCPReqQFullDoCookies"] += 1
            adv_mss = self.adv_mss(dst)
            neg = negotiate_options(
                settings, SYN, syn.mss, syn.wscale, syn.sack_permitted, syn.tsval, adv_mss
            )
            self._send_cookie(listener, key, syn.seq, syn.mss, neg, now)
        except Exception as exc:  # a bug: the caller goes on (the listener is not reset)
            raise ConnectionFault(None, exc) from exc
        return True

    def _send_cookie(
        self,
        listener: EngineSocket,
        key: ConnKey,
        seq: int,
        mss: int | None,
        neg: Negotiated,
        now: float,
    ) -> None:
        """A SYN-ACK whose ISN is a cookie; nothing is kept, and the SYN gets no fast open."""
        local, lport, remote, rport = key
        if not neg.ts_ok:  # Linux tcp_clear_options: no room to remember them without TS
            neg = neg._replace(wscale_ok=False, snd_wscale=0, sack_ok=False)
        isn, _ = self.syncookies.make(
            remote, local, rport, lport, seq, mss or MSS_COOKIE_DEFAULT, now
        )
        adv_mss = self.adv_mss(local)
        settings = self.settings
        rcv_wscale = settings.wscale if settings.window_scaling and neg.wscale_ok else 0
        tsval = None
        if neg.ts_ok:
            wscale = neg.snd_wscale if neg.wscale_ok else None
            cookie_ts = timestamp(int(now * 1000), wscale, neg.sack_ok, False)
            tsval = (cookie_ts + self.choose_tsoffset(local, remote)) & MASK
        rcv_wnd = initial_window(listener.rcvbuf, adv_mss - (TS_OPTION_LEN if neg.ts_ok else 0))
        synack = synack_segment(
            lport,
            rport,
            isn,
            seq,
            neg,
            adv_mss,
            rcv_wscale,
            rcv_wnd,
            tsval,
            ip_header=listener.options.ip_header(local.version),
        )
        self.output(local, remote, synack)
        listener.listen_queue.last_overflow = now
        self.counters["SyncookiesSent"] += 1

    def _cookie_ack(
        self, listener: EngineSocket, src: IPAddress, dst: IPAddress, seg: TcpSegment, now: float
    ) -> bool:
        """Linux cookie_v4_check: an ACK to a listener that returns a SYN cookie makes the
        connection (False: no cookie, the ACK gets a RST)."""
        settings = self.settings
        last = listener.listen_queue.last_overflow
        if not settings.syncookies or last is None or now - last > VALID:
            return False  # Linux tcp_synq_no_recent_overflow
        mss = self.syncookies.check(src, dst, seg.src_port, seg.dst_port, seg.seq, seg.ack, now)
        if not mss:
            self.counters["SyncookiesFailed"] += 1
            return False
        self.counters["SyncookiesRecv"] += 1
        ts = seg.timestamps
        key = (dst, seg.dst_port, src, seg.src_port)
        if ts is not None and settings.timestamps:
            offset = self.choose_tsoffset(dst, src)
            opts = decode_timestamp((ts.tsecr - offset) & MASK)
            if (opts.sack_ok and not settings.sack) or (
                opts.wscale_ok and not settings.window_scaling
            ):
                return False
            neg = Negotiated(
                opts.wscale_ok,
                opts.snd_wscale,
                opts.sack_ok,
                True,
                ts.tsval,
                clamp_mss(settings, mss, self.adv_mss(dst), True),
            )
        else:
            neg = Negotiated(
                False, 0, False, False, 0, clamp_mss(settings, mss, self.adv_mss(dst), False)
            )
        queue = listener.listen_queue
        if len(queue.accepted) >= max(queue.backlog, 1):
            self.counters["ListenOverflows"] += 1
            self.counters["ListenDrops"] += 1
            return True  # dropped: the peer's retransmission may find room
        self.counters["TcpPassiveOpens"] += 1
        conn = self._child(listener, key, (seg.ack - 1) & MASK, now)
        irs = (seg.seq - 1) & MASK
        conn.from_request(
            listener, irs, neg, seg.window, retransmits=0, synack_at=None, rto_at=None
        )
        conn.segment_arrives(seg, now)
        return True

    def forget(self, key: ConnKey, owner: object) -> None:
        """A connection closed, or a request socket went: out of its table."""
        if self.connections.get(key) is owner:
            del self.connections[key]
        elif self.requests.get(key) is owner:
            del self.requests[key]
