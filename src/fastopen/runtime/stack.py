"""The userspace stack: the engine on a TUN device, driven by one asyncio reader and one timer.

A :class:`UserspaceStack` owns addresses (IPv4 and IPv6) that the kernel of its namespace routes
into a TUN device. It reads every packet the kernel writes there into the engine
(``host.parse_packet``, then ``host.receive_segment`` with the runs of segments of each read
batch joined as Linux's GRO joins them, :mod:`fastopen.runtime.gro`), writes every packet the
engine makes back to the device, re-arms a single
``loop.call_at`` timer from ``host.get_timer()``, and turns engine events into asyncio
transports and streams. It implements :class:`fastopen.streams.Stack`, so
``fastopen.open_connection(..., stack=stack)`` and ``fastopen.start_server(..., stack=stack)``
work on it as on the kernel's stack, ``writer.get_extra_info("fastopen")`` included.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import ipaddress
import logging
import os
import secrets
import socket
import ssl as _ssl
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Unpack

from fastopen.constants import (
    MSG_FASTOPEN,
    TCP_FASTOPEN,
    TCP_FASTOPEN_KEY,
    TFO_CLIENT_ENABLE,
    TFO_COUNTERS,
    TFO_SERVER_ENABLE,
)
from fastopen.cookies import KeyRing
from fastopen.engine import (
    Accepted,
    Closed,
    Connected,
    EngineError,
    EngineSocket,
    Host,
    Readable,
    Writable,
)
from fastopen.engine.host import EPHEMERAL_HIGH, EPHEMERAL_LOW, ConnectionFault, Segment
from fastopen.engine.settings import SettingsChanges
from fastopen.engine.socket import AF_INET, AF_INET6, SO_REUSEADDR, SOL_SOCKET, SOL_TCP
from fastopen.errors import FastOpenError, KernelFeatureMissing, MalformedPacket
from fastopen.kernel import pathcache
from fastopen.kernel.attempts import Attempt, build_report
from fastopen.kernel.netns import THREAD_NS
from fastopen.kernel.tcpinfo import TcpInfo as KernelTcpInfo
from fastopen.pcap import write_pcap_header, write_pcap_record
from fastopen.report import OffReason, Side, TfoReport
from fastopen.runtime.gro import Gro
from fastopen.runtime.transport import EngineTransport
from fastopen.runtime.tun import (
    CHECKSUM_TRUSTED,
    GSO_MAX_SIZE,
    HEADROOM,
    VIRTIO_NET_HDR_F_NEEDS_CSUM,
    VIRTIO_NET_HDR_GSO_TCPV4,
    VIRTIO_NET_HDR_GSO_TCPV6,
    VNET_HDR,
    Namespace,
    ThreadNamespace,
    give_back,
    host_route,
    inside,
    open_tun,
    route_into,
    take_over,
)
from fastopen.streamwriter import LIMIT, FastOpenProtocol, FastOpenStreamWriter, Handler
from fastopen.wire import (
    PROTO_TCP,
    Flags,
    TcpSegment,
    ip_packet,
    parse_ip,
    split_segment,
    with_checksum,
)

_log = logging.getLogger("fastopen.runtime")

#: Packets read from the device per wake-up at most (then the loop serves others).
BATCH = 256
#: Larger than any packet the device can carry (a GSO packet and its virtio header included).
READ_SIZE = GSO_MAX_SIZE + 64
#: What may leave at once ahead of the pacing rate (Settings.pacing_burst): two TSO packets, as
#: Linux's TCP small queues let sit in a device's queue (tcp_small_queue_check).
PACING_BURST = 2 * GSO_MAX_SIZE
_ACK = int(Flags.ACK)
_LAST_FLAGS = int(Flags.PSH | Flags.FIN)


class UnsupportedOnUserspace(FastOpenError):
    """A feature of the kernel stack that the userspace stack does not have."""


def report(sock: EngineSocket, attempt: Attempt, now: float) -> TfoReport:
    """The TFO report of an engine connection, read from its ``tcp_info`` at ``now`` as the
    kernel's is."""
    info = sock.tcp_info(now)
    kernel_view = KernelTcpInfo(
        state=info.tcpi_state,
        options=info.tcpi_options,
        fastopen_client_fail=info.tcpi_fastopen_client_fail,
        rtt_us=info.tcpi_rtt,
        total_retrans=info.tcpi_total_retrans,
        snd_cwnd=info.tcpi_snd_cwnd,
        snd_ssthresh=info.tcpi_snd_ssthresh,
    )
    return dataclasses.replace(build_report(kernel_view, attempt), stack="userspace")


def _sockaddr(addr: tuple[str, int]) -> tuple[Any, ...]:
    """An address as asyncio shows it (IPv6 with flow info and scope id)."""
    return addr if ":" not in addr[0] else (addr[0], addr[1], 0, 0)


async def _resolve(host: str, port: int) -> list[tuple[int, tuple[str, int]]]:
    """(IP version, address) of each address of ``host``: a literal at once, a name by DNS."""
    try:
        return [(ipaddress.ip_address(host).version, (host, port))]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = [
        (4 if family == socket.AF_INET else 6, (str(addr[0]), int(addr[1])))
        for family, _, _, _, addr in infos
    ]
    return list(dict.fromkeys(found))


class UserspaceStack:
    """The engine as a TCP stack for asyncio, on a TUN device (see the module docstring).

    ``fd`` is a TUN descriptor (non-blocking, IFF_TUN | IFF_NO_PI) the stack closes when it
    closes; ``addresses`` are its own. ``offloads``: the descriptor has IFF_VNET_HDR and the
    checksum and TSO offloads (:func:`~fastopen.runtime.tun.open_tun`); the engine then sizes
    its segments for TSO (the ``tso`` setting) and the stack writes each of them, and each run
    of segments one pass makes, as one GSO packet of up to 64 KB, leaves TCP checksums to the
    device, and takes the coalesced packets the device hands over.
    ``pcap`` records every packet it sends and receives (GSO packets whole, checksums completed).
    Other keyword arguments are :class:`~fastopen.engine.Settings` fields (``tcp_fastopen`` is
    0x3 by default: client and server, as ``net.ipv4.tcp_fastopen=3``).
    """

    name = "userspace"

    def __init__(
        self,
        fd: int,
        addresses: Sequence[str],
        *,
        pcap: Path | None = None,
        offloads: bool = False,
        **sysctls: Unpack[SettingsChanges],
    ) -> None:
        changes = SettingsChanges(
            tcp_fastopen=0x3, tso=offloads, pacing=True, pacing_burst=PACING_BURST
        )
        changes.update(sysctls)
        # a random first ephemeral port, as Linux's differ from process to process: starting
        # where the last process did, a connect reuses its 4-tuple, which the peer may still hold
        # in TIME-WAIT, and a SYN that TIME-WAIT takes for an old one waits for its retransmission
        first = EPHEMERAL_LOW + secrets.randbelow(EPHEMERAL_HIGH - EPHEMERAL_LOW + 1)
        self.host = Host(addresses, first_port=first, **changes)
        self.fd = fd
        self.offloads = offloads
        #: The device's MTU: a packet the engine makes larger is cut (by the device, or here).
        self._mtu = self.host.settings.mtu
        #: Clients consult and teach the path cache (:mod:`fastopen.kernel.pathcache`) of the
        #: namespace the stack is in (:meth:`attach` sets it; by default the creating thread's).
        self.learn_paths = True
        self.path_host = pathcache.namespace_id()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transports: dict[EngineSocket, EngineTransport] = {}
        self._listeners: dict[EngineSocket, EngineServer] = {}
        self._connecting: dict[EngineSocket, _Connecting] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._kicked = False
        self._servicing = False
        #: Joins the runs of segments of one read batch (the TUN device does not, for packets
        #: the kernel forwards to it): one engine pass and one ACK per run, as Linux's GRO.
        self._gro = Gro(self._deliver)
        self._given_back: Callable[[], None] | None = None
        self._pcap: BinaryIO | None = None
        if pcap is not None:
            self._pcap = pcap.open("wb")
            write_pcap_header(self._pcap)

    @classmethod
    def attach(
        cls,
        ns: Namespace | None,
        tun: str,
        addresses: Sequence[str],
        *,
        kernel_addresses: Sequence[str] = (),
        pcap: Path | None = None,
        offloads: bool | None = False,
        **sysctls: Unpack[SettingsChanges],
    ) -> UserspaceStack:
        """A stack on a new TUN device ``tun`` in ``ns`` (None: this thread's namespace).

        ``addresses`` (``ADDR/PREFIX``) are the stack's; the kernel routes each prefix into the
        device. ``kernel_addresses`` (``ADDR/PREFIX``) are put on the device for the kernel;
        ``mtu`` (a setting) is the device's too. ``offloads``: True needs the device's checksum
        and TSO offloads, None uses them when the kernel has them, False (the default) goes
        without (a packet socket on the device then sees the packets as the wire will carry
        them, not segments of 64 KB with their checksums still to complete).
        """
        mtu = sysctls.get("mtu", 1500)
        own = [ipaddress.ip_interface(a) for a in addresses]
        if offloads is False:
            fd = open_tun(ns, tun)
        else:
            try:
                fd = open_tun(ns, tun, offloads=True)
                offloads = True
            except KernelFeatureMissing:
                if offloads:
                    raise
                fd, offloads = open_tun(ns, tun), False
        try:
            kernel = [ipaddress.ip_interface(a) for a in kernel_addresses]
            route_into(ns, tun, own, kernel_addresses=kernel, mtu=mtu)
            stack = cls(fd, [str(a.ip) for a in own], pcap=pcap, offloads=offloads, **sysctls)
            with inside(ns):
                stack.path_host = pathcache.namespace_id()
            return stack
        except BaseException:
            os.close(fd)
            raise

    @classmethod
    def replace_kernel(
        cls,
        ns: Namespace | None,
        tun: str = "fous0",
        *,
        pcap: Path | None = None,
        offloads: bool | None = False,
        **sysctls: Unpack[SettingsChanges],
    ) -> UserspaceStack:
        """A stack that takes over every global address of ``ns`` (None: this thread's
        namespace) from its kernel, which only routes them into ``tun`` from then on.

        Peers reach the stack at the addresses they knew; :meth:`close` gives them back.
        """
        where = ThreadNamespace() if ns is None else ns  # closing may happen elsewhere

        def give_all_back() -> None:
            try:
                give_back(where, taken)
            finally:
                if isinstance(where, ThreadNamespace):
                    where.close()

        try:
            taken = take_over(where)
        except BaseException:
            if isinstance(where, ThreadNamespace):
                where.close()
            raise
        try:
            stack = cls.attach(
                where,
                tun,
                [str(host_route(i)) for i in taken.interfaces],
                pcap=pcap,
                offloads=offloads,
                **sysctls,
            )
        except BaseException:
            give_all_back()
            raise
        stack._given_back = give_all_back
        return stack

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, close the device (it disappears) and the capture; give back the
        addresses taken over from the kernel."""
        if self.fd < 0:
            return
        try:
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.remove_reader(self.fd)
            if self._timer is not None:
                self._timer.cancel()
            self._flush()  # the last FINs and RSTs
        finally:  # whatever failed above, the device goes and the addresses go back
            os.close(self.fd)
            self.fd = -1
            if self._pcap is not None:
                self._pcap.close()
            given_back, self._given_back = self._given_back, None
            if given_back is not None:
                given_back()

    def __enter__(self) -> UserspaceStack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the Wire the transports use -------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def now(self) -> float:
        return self.loop.time()

    def kick(self) -> None:
        """After an application call: what it made is sent, and its events dispatched, by one
        service soon, for every call of this turn of the loop (the writes of one pass go
        together, as the calls of many connections' handlers in one turn make them)."""
        if self._servicing or self.fd < 0 or self._kicked:
            return  # the service under way, or the one to come, sends everything
        self._kicked = True
        self.loop.call_soon(self._service)

    def forget(self, sock: EngineSocket) -> None:
        self._transports.pop(sock, None)

    # -- the driver: one reader, one timer -------------------------------------------------------

    def _start(self) -> asyncio.AbstractEventLoop:
        """Bind to the running loop (again, after the previous loop closed)."""
        if self.fd < 0:
            raise FastOpenError("the userspace stack is closed")
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return loop
        if self._loop is not None and not self._loop.is_closed():
            raise FastOpenError(
                "the userspace stack already runs on another event loop",
                hint="use one stack per event loop",
            )
        self._loop = loop
        self._timer = None
        self._timer_at = None
        self._kicked = False
        loop.add_reader(self.fd, self._on_readable)
        return loop

    def _on_readable(self) -> None:
        """Up to :data:`BATCH` packets from the device into the engine, each at the time it is
        read (Linux stamps each segment as TCP takes it, tcp_mstamp_refresh: with one time for
        the batch, an ACK read late in a long batch would look up to the batch's length
        younger, and RACK and BBR's min_rtt take the shortest RTT samples); a run GRO joins
        (:class:`~fastopen.runtime.gro.Gro`) at the time its first segment was read."""
        host, fd, pcap, offloads, gro = self.host, self.fd, self._pcap, self.offloads, self._gro
        clock = self.loop.time
        now = clock()
        for _ in range(BATCH):
            try:
                packet = os.read(fd, READ_SIZE)
            except BlockingIOError:
                break
            now = clock()
            if offloads:
                flags, gso_type, _, gso_size, _, _ = VNET_HDR.unpack_from(packet)
                packet = packet[VNET_HDR.size :]
                if flags & CHECKSUM_TRUSTED or gso_type:
                    self._receive_trusted(packet, gso_size if gso_type else 0, now)
                    continue
            if pcap is not None:
                write_pcap_record(pcap, packet)
            if gro.join(packet, now):
                continue
            parsed = host.parse_packet(packet, now)
            if parsed is not None:
                gro.add(*parsed, now, packet)
        gro.end_batch()
        self._service()

    def _deliver(self, src: Any, dst: Any, seg: TcpSegment, now: float, segs: int) -> None:
        """A segment (``segs`` of the wire's, coalesced) to the engine; a fault is contained."""
        try:
            self.host.receive_segment(src, dst, seg, now, segs)
        except ConnectionFault as fault:
            self._contain(fault, now)

    def _receive_trusted(self, packet: bytes, gso_size: int, now: float) -> None:
        """A packet whose TCP checksum the device vouches for (it may be a partial one, to be
        completed): what :meth:`Host.receive` does, less the checksum. A coalesced one (GRO,
        segments of ``gso_size`` bytes) goes to TCP whole, as Linux's GRO hands it one skb:
        one pass and one ACK for its segments, not one per segment; a single one joins the
        batch's runs (:class:`~fastopen.runtime.gro.Gro`)."""
        host = self.host
        try:
            ip = parse_ip(packet)
            if ip.protocol != PROTO_TCP or ip.is_fragment or ip.dst not in host.addresses:
                return
            seg = TcpSegment.parse(ip.payload)
            if self._pcap is not None:
                write_pcap_record(self._pcap, with_checksum(packet))
        except MalformedPacket:
            host.counters["TcpInErrs"] += 1
            return
        segs = -(-len(seg.payload) // gso_size) if gso_size and seg.payload else 1
        if segs == 1:
            self._gro.add(ip.src, ip.dst, seg, now)
            return
        self._gro.flush()  # what came before it goes first
        self._deliver(ip.src, ip.dst, seg, now, segs)

    def _on_timer(self) -> None:
        when = self._timer_at
        self._timer = self._timer_at = None
        now = self.loop.time()
        now = now if when is None else max(now, when)
        while True:  # each fault takes its connection's timers out: this ends
            try:
                self.host.handle_timer(now)
                break
            except ConnectionFault as fault:
                self._contain(fault, now)
        self._service()

    def _contain(self, fault: ConnectionFault, now: float) -> None:
        """An engine bug inside one connection: that one is reset (and logged, once, as it is
        gone then); the stack, its timers and the other connections go on."""
        _log.error("engine failure: %s reset", fault.owner, exc_info=fault.__cause__)
        self.host.reset_faulty(fault, now)

    def _service(self) -> None:
        """Dispatch the engine's events, send its packets, re-arm its timer."""
        self._kicked = False
        if self.fd < 0:
            return
        self._servicing = True
        try:
            self._dispatch()
        finally:
            self._servicing = False
        self._flush()
        self._rearm()

    def _dispatch(self) -> None:
        host = self.host
        while (event := host.next_event()) is not None:
            if isinstance(event, Readable):
                transport = self._transports.get(event.sock)
                if transport is not None:
                    transport.read_ready()
            elif isinstance(event, Writable):
                transport = self._transports.get(event.sock)
                if transport is not None:
                    transport.write_ready()
            elif isinstance(event, Accepted):
                server = self._listeners.get(event.listener)
                if server is not None:
                    server.accept_ready()
            elif isinstance(event, Connected):
                connecting = self._connecting.pop(event.sock, None)
                if connecting is not None:
                    connecting.established(self.now())
            elif isinstance(event, Closed):
                connecting = self._connecting.pop(event.sock, None)
                if connecting is not None and not connecting.waiter.done():
                    connecting.waiter.set_exception(EngineError(event.error or errno.ECONNREFUSED))
                transport = self._transports.get(event.sock)
                if transport is not None:
                    transport.closed(event.error)

    def _rearm(self) -> None:
        """The loop's timer for the engine's next deadline. One armed for an earlier time stays
        (it fires, finds nothing due and arms the next): a deadline that moves later on every
        ACK, the retransmission timer's, costs no cancel and no new timer each pass."""
        when = self.host.get_timer()
        armed = self._timer_at
        if when == armed or (armed is not None and (when is None or when > armed)):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = None if when is None else self.loop.call_at(when, self._on_timer)

    def _flush(self) -> None:
        """Write what the engine has to send: with offloads, runs of segments as GSO packets and
        checksums left to the device; without, segments larger than a packet cut in software."""
        out = self.host.segments_to_send()
        if not out:
            return
        fd, pcap = self.fd, self._pcap
        if self.offloads:
            for src, dst, seg, gso_size in self._coalesced(out):
                packet = ip_packet(src, dst, seg, partial_checksum=True)
                if pcap is not None:
                    write_pcap_record(pcap, with_checksum(packet))
                ip_len = 20 if src.version == 4 else 40
                headers = ip_len + (packet[ip_len + 12] >> 4) * 4
                if not gso_size and len(packet) > self._mtu:  # the engine's own TSO
                    gso_size = self._mss(src, dst, seg, headers)
                if gso_size:
                    gso = VIRTIO_NET_HDR_GSO_TCPV4 if src.version == 4 else VIRTIO_NET_HDR_GSO_TCPV6
                else:
                    gso = 0
                header = VNET_HDR.pack(
                    VIRTIO_NET_HDR_F_NEEDS_CSUM, gso, headers, gso_size, ip_len, 16
                )
                # a full device queue loses the packet, as a wire would: TCP sends it again
                with contextlib.suppress(BlockingIOError):
                    os.writev(fd, (header, packet))
        else:
            for src, dst, seg in out:
                packets = [ip_packet(src, dst, seg)]
                if len(packets[0]) > self._mtu:  # the engine's own TSO: cut it here
                    mss = self._mss(src, dst, seg, len(packets[0]) - len(seg.payload))
                    packets = [ip_packet(src, dst, piece) for piece in split_segment(seg, mss)]
                for packet in packets:
                    if pcap is not None:
                        write_pcap_record(pcap, packet)
                    with contextlib.suppress(BlockingIOError):
                        os.write(fd, packet)
        if pcap is not None:
            pcap.flush()

    def _mss(self, src: Any, dst: Any, seg: TcpSegment, headers: int) -> int:
        """The payload bytes per packet of the connection ``seg`` belongs to: its ``snd_mss``,
        or what the MTU leaves beside ``headers`` bytes of headers."""
        conn = self.host.connections.get((src, seg.src_port, dst, seg.dst_port))
        return conn.snd_mss if conn is not None else self._mtu - headers

    def _coalesced(self, out: list[Segment]) -> list[tuple[Any, Any, TcpSegment, int]]:
        """``out`` as packets for a device with TSO: ``(src, dst, segment, gso_size)``.

        Each run of segments that the device would cut back into exactly those (as Linux's
        ``tcp_gso_segment``: the same flow, contiguous, the same ACK, window and options, the
        same IP header fields (ECN, TOS, DF), all of the same size but the last, PSH and FIN on
        the last only) is joined into one segment
        of up to 64 KB, to be cut into ``gso_size`` bytes; ``gso_size`` 0: one packet as it is
        (:meth:`_flush` cuts one larger than the MTU, the engine's own TSO, at the MSS).
        """
        packets: list[tuple[Any, Any, TcpSegment, int]] = []
        i, n = 0, len(out)
        while i < n:
            src, dst, first = out[i]
            size = len(first.payload)
            j = i + 1
            if size and int(first.flags) == _ACK and not first.urgent:
                limit = GSO_MAX_SIZE - HEADROOM
                total, prev = size, first
                while j < n and int(prev.flags) == _ACK and len(prev.payload) == size:
                    s2, d2, seg = out[j]
                    length = len(seg.payload)
                    if not (
                        s2 is src
                        and d2 is dst
                        and 0 < length <= size
                        and total + length <= limit
                        and int(seg.flags) & ~_LAST_FLAGS == _ACK
                        and seg.seq == (prev.seq + len(prev.payload)) & 0xFFFFFFFF
                        and seg.src_port == first.src_port
                        and seg.dst_port == first.dst_port
                        and seg.ack == first.ack
                        and seg.window == first.window
                        and seg.options == first.options
                        and seg.ecn == first.ecn  # new data and retransmissions differ
                        and seg.tos == first.tos
                        and seg.df == first.df
                    ):
                        break
                    total += length
                    prev = seg
                    j += 1
            if j - i > 1:
                last = out[j - 1][2]
                joined = TcpSegment(
                    first.src_port,
                    first.dst_port,
                    first.seq,
                    first.ack,
                    last.flags,
                    first.window,
                    first.options,
                    b"".join(seg.payload for _, _, seg in out[i:j]),
                    0,
                    first.reserved,
                    first.ecn,
                    first.tos,
                    first.df,
                )
                packets.append((src, dst, joined, size))
            else:
                packets.append((src, dst, first, 0))
            i = j
        return packets

    # -- connections -----------------------------------------------------------------------------

    def _streams(
        self,
        sock: EngineSocket,
        limit: int,
        attempt: Attempt,
        handler: Handler | None = None,
    ) -> tuple[asyncio.StreamReader, FastOpenStreamWriter]:
        reader = asyncio.StreamReader(limit=limit, loop=self.loop)
        protocol = FastOpenProtocol(
            reader, self.loop, report=lambda _: report(sock, attempt, self.now()), handler=handler
        )
        extra: dict[str, Any] = {
            "peername": _sockaddr(sock.getpeername()),
            "sockname": _sockaddr(sock.getsockname()),
        }
        if sock.conn is not None and sock.conn.listener is not None:
            extra["peer_isn"] = sock.conn.irs  # an accepted child: the client's ISN (replay guard)
        self._transports[sock] = EngineTransport(self, sock, protocol, extra)
        assert protocol.writer is not None
        return reader, protocol.writer

    async def open_connection(
        self,
        host: str,
        port: int,
        *,
        first_flight: bytes = b"",
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        local_addr: tuple[str, int] | None = None,
        fastopen: bool = True,
        limit: int = LIMIT,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect; ``first_flight`` rides in the SYN when a cookie is cached (MSG_FASTOPEN).

        Each address of ``host`` of a family the stack has is tried in turn.
        """
        if ssl is not None:
            raise UnsupportedOnUserspace(
                "TLS is not available on the userspace stack", hint="use the kernel stack"
            )
        self._start()
        families = {a.version for a in self.host.addresses}
        targets = [t for t in await _resolve(host, port) if t[0] in families]
        if not targets:
            raise EngineError(
                errno.ENETUNREACH,
                hint=f"{host} has no address of a family the userspace stack has "
                f"({', '.join(map(str, self.host.addresses))})",
            )
        error: OSError | None = None
        for version, addr in targets:
            family = AF_INET if version == 4 else AF_INET6
            try:
                return await self._connect(family, addr, first_flight, local_addr, fastopen, limit)
            except OSError as exc:
                error = exc
                if exc.errno in (errno.ECONNREFUSED, errno.ECONNRESET) and self._tfo_on(
                    addr, first_flight, fastopen
                ):
                    with contextlib.suppress(OSError):  # SYN data reset? A plain connect tells.
                        return await self._plain_after_reset(
                            family, addr, first_flight, local_addr, limit
                        )
        assert error is not None
        raise error

    def _tfo_on(self, addr: tuple[str, int], first_flight: bytes, fastopen: bool) -> bool:
        """Whether a connect to ``addr`` tries TFO and the path cache is in use."""
        if not self.learn_paths or self._off_reason(first_flight, fastopen) is not None:
            return False
        with pathcache.host(self.path_host):
            return pathcache.skip(addr) is None

    async def _plain_after_reset(
        self,
        family: int,
        addr: tuple[str, int],
        first_flight: bytes,
        local_addr: tuple[str, int] | None,
        limit: int,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Connect without TFO after a TFO connect was reset: a success tells the path cache
        that the path resets SYN data (a closed port refuses the plain connect too)."""
        with pathcache.host(self.path_host):
            pathcache.reset_seen(addr)
        try:
            return await self._connect(family, addr, first_flight, local_addr, True, limit)
        except OSError:
            with pathcache.host(self.path_host):
                pathcache.forget_reset(addr)
            raise

    def _off_reason(self, first_flight: bytes, fastopen: bool) -> OffReason | None:
        if not first_flight:
            return OffReason.NO_FIRST_FLIGHT
        if not fastopen:
            return OffReason.DISABLED_BY_CALLER
        if not self.host.settings.tcp_fastopen & TFO_CLIENT_ENABLE:
            return OffReason.CLIENT_SYSCTL_OFF
        return None

    async def _connect(
        self,
        family: int,
        addr: tuple[str, int],
        first_flight: bytes,
        local_addr: tuple[str, int] | None,
        fastopen: bool,
        limit: int,
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        loop = self.loop
        sock = self.host.socket(family)
        sock.setsockopt(SOL_TCP, socket.TCP_NODELAY, 1)
        off = self._off_reason(first_flight, fastopen)
        if off is None and self.learn_paths:
            with pathcache.host(self.path_host):
                off = pathcache.skip(addr)
        in_syn = 0
        try:
            if local_addr is not None:
                sock.bind(local_addr)
            try:
                if off is None:
                    in_syn = sock.sendto(first_flight, MSG_FASTOPEN, addr, self.now())
                else:
                    sock.connect(addr, self.now())
            except EngineError as exc:
                if exc.errno != errno.EINPROGRESS:
                    raise
            connecting = _Connecting(sock, loop.create_future(), first_flight[in_syn:])
            self._connecting[sock] = connecting
            self._service()
            sent = await connecting.waiter
        except BaseException:
            self._connecting.pop(sock, None)
            sock.write_pending = 0
            sock.close(self.now())
            self._service()
            raise
        note = None
        if off is OffReason.PATH_BLOCKED:
            with pathcache.host(self.path_host):
                note = pathcache.note(addr)
        attempt = Attempt(Side.CLIENT, attempted=off is None, off_reason=off, peer=addr, note=note)
        if self.learn_paths:
            loop.call_soon(self._learn, sock, attempt, addr)
        reader, writer = self._streams(sock, limit, attempt)
        if first_flight[in_syn + sent :]:
            writer.write(first_flight[in_syn + sent :])
        return reader, writer

    def _learn(self, sock: EngineSocket, attempt: Attempt, addr: tuple[str, int]) -> None:
        """Teach the path cache what became of the SYN data of ``sock``'s handshake, once the
        connect has returned: off the application's way to its first byte (the kernel stack's
        clients teach it at their first report)."""
        now = self.now()
        retransmitted = sock.tcp_info(now).tcpi_total_retrans > 0
        with pathcache.host(self.path_host):
            pathcache.learn(report(sock, attempt, now), addr, syn_retransmitted=retransmitted)

    async def start_server(
        self,
        handler: Handler,
        host: str | None = None,
        port: int | None = None,
        *,
        fastopen_backlog: int | None = None,
        keys: KeyRing | None = None,
        ssl: _ssl.SSLContext | None = None,
        backlog: int = 100,
        limit: int = LIMIT,
        sock: socket.socket | None = None,
        reuse_port: bool | None = None,
    ) -> EngineServer:
        """Listen on ``host`` (one of the stack's addresses; None, "", "0.0.0.0" or "::" for
        all of them, or those of one family) with TFO on.

        ``fastopen_backlog`` bounds pending fast open requests (default ``somaxconn`` of the
        engine); ``keys`` gives the listeners their own key ring (``TCP_FASTOPEN_KEY``).
        """
        if ssl is not None:
            raise UnsupportedOnUserspace(
                "TLS is not available on the userspace stack", hint="use the kernel stack"
            )
        if sock is not None or reuse_port:
            raise UnsupportedOnUserspace(
                "sock= and reuse_port= are kernel sockets' options",
                hint="give the userspace stack a host and a port",
            )
        if port is None:
            raise UnsupportedOnUserspace("the userspace stack needs a port to listen on")
        self._start()
        engine = self.host
        if host in (None, ""):
            chosen = list(engine.addresses)
        elif host in ("0.0.0.0", "::"):
            chosen = [a for a in engine.addresses if a.version == (4 if "." in host else 6)]
        else:
            chosen = [ipaddress.ip_address(host)]
        off = (
            None
            if engine.settings.tcp_fastopen & TFO_SERVER_ENABLE
            else OffReason.SERVER_SYSCTL_OFF
        )
        server = EngineServer(self, handler, limit, Attempt(Side.SERVER, off is None, off))
        try:
            for address in chosen:
                lsock = engine.socket(AF_INET if address.version == 4 else AF_INET6)
                server.listeners.append(lsock)
                lsock.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1)
                try:
                    lsock.bind((str(address), port))
                except EngineError as exc:
                    if exc.errno != errno.EADDRNOTAVAIL:
                        raise
                    raise EngineError(
                        exc.errno,
                        hint=f"the userspace stack owns "
                        f"{', '.join(map(str, engine.addresses))}, not {address}",
                    ) from None
                if keys is not None:
                    lsock.setsockopt(SOL_TCP, TCP_FASTOPEN_KEY, keys.to_raw())
                lsock.setsockopt(
                    SOL_TCP, TCP_FASTOPEN, fastopen_backlog or engine.settings.somaxconn
                )
                lsock.listen(backlog)
                self._listeners[lsock] = server
        except BaseException:
            server.close()
            raise
        return server

    def serve(self, server: EngineServer, lsock: EngineSocket) -> None:
        """Accept every connection waiting on ``lsock`` and start ``server``'s handler on it."""
        while True:
            try:
                child, _ = lsock.accept(self.now())
            except EngineError:
                return  # EAGAIN: none left
            child.setsockopt(SOL_TCP, socket.TCP_NODELAY, 1, self.now())
            self._streams(child, server.limit, server.attempt, server.handler)
            server.clients.add(self._transports[child])

    def unlisten(self, lsock: EngineSocket) -> None:
        self._listeners.pop(lsock, None)
        lsock.close(self.now())
        self.kick()


@dataclasses.dataclass
class _Connecting:
    """A connect under way, and the rest of its first flight (beyond what rode in the SYN).

    That rest is the blocked writer of Linux (``sk_write_pending``): the engine holds the ACK of
    the SYN-ACK for it, and it is handed to the engine in the same pass that reads the SYN-ACK,
    so the ACK carries it at once (not after the application's coroutine has resumed).
    """

    sock: EngineSocket
    waiter: asyncio.Future[int]
    rest: bytes

    def __post_init__(self) -> None:
        self.sock.write_pending = int(bool(self.rest))

    def established(self, now: float) -> None:
        """Send the rest; the waiter gets how many bytes of it the engine took."""
        self.sock.write_pending = 0
        if self.waiter.done():
            return  # cancelled: the connect is being undone
        sent = 0
        if self.rest:
            with contextlib.suppress(EngineError):  # the streams' write reports the error
                sent = self.sock.send(self.rest, now)
        self.waiter.set_result(sent)


class EngineServer(asyncio.AbstractServer):
    """The listeners of one ``start_server`` call on a :class:`UserspaceStack`."""

    def __init__(self, stack: UserspaceStack, handler: Handler, limit: int, attempt: Attempt):
        self.stack = stack
        self.handler = handler
        self.limit = limit
        self.attempt = attempt
        self.listeners: list[EngineSocket] = []
        #: the connections it accepted that are still open (asyncio.Server's ``_clients``)
        self.clients: weakref.WeakSet[EngineTransport] = weakref.WeakSet()
        self._loop = stack.loop
        self._serving = True
        self._closed = asyncio.Event()
        self._forever: asyncio.Future[None] | None = None

    @property
    def sockets(self) -> tuple[EngineSocket, ...]:
        """The listening engine sockets (``getsockname()`` gives each address and port)."""
        return tuple(self.listeners)

    def accept_ready(self) -> None:
        if self._serving:
            for lsock in self.listeners:
                self.stack.serve(self, lsock)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._serving = False
        for lsock in self.listeners:
            self.stack.unlisten(lsock)
        if self._forever is not None and not self._forever.done():
            self._forever.cancel()
        self._closed.set()

    def close_clients(self) -> None:
        """Close every connection it accepted (asyncio.Server.close_clients, Python 3.13)."""
        for transport in list(self.clients):
            transport.close()

    def abort_clients(self) -> None:
        """Abort every connection it accepted, with a RST (asyncio.Server.abort_clients)."""
        for transport in list(self.clients):
            transport.abort()

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    async def start_serving(self) -> None:
        if not self._closed.is_set() and not self._serving:
            self._serving = True
            self.accept_ready()

    async def serve_forever(self) -> None:
        if self._forever is not None:
            raise RuntimeError("the server is already being awaited on serve_forever()")
        if self._closed.is_set():
            raise RuntimeError("the server is closed")
        self._forever = self._loop.create_future()
        try:
            await self._forever
        finally:
            self.close()
            await self.wait_closed()
            self._forever = None

    async def wait_closed(self) -> None:
        await self._closed.wait()


class NamespaceStacks:
    """The userspace stack in place of the kernel, in each namespace it is used from.

    The first call from a thread in a network namespace makes a :class:`UserspaceStack` there
    with :meth:`UserspaceStack.replace_kernel`, so servers listen and clients connect from the
    addresses the kernel had: ``with ns.entered(): await stacks.start_server(...)``.
    :meth:`close` closes them all (and gives the addresses back).
    """

    name = "userspace"

    def __init__(self, tun: str = "fous0", **sysctls: Unpack[SettingsChanges]) -> None:
        self.tun = tun
        self.options = sysctls
        self.stacks: dict[int, UserspaceStack] = {}

    def here(self) -> UserspaceStack:
        """The stack of the namespace the calling thread is in (made on first use)."""
        key = os.stat(THREAD_NS).st_ino
        stack = self.stacks.get(key)
        if stack is None:
            stack = self.stacks[key] = UserspaceStack.replace_kernel(None, self.tun, **self.options)
        return stack

    async def open_connection(
        self, host: str, port: int, **options: Any
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """:meth:`UserspaceStack.open_connection` on the stack of this thread's namespace."""
        return await self.here().open_connection(host, port, **options)

    async def start_server(
        self, handler: Handler, host: str | None = None, port: int | None = None, **options: Any
    ) -> asyncio.AbstractServer:
        """:meth:`UserspaceStack.start_server` on the stack of this thread's namespace."""
        return await self.here().start_server(handler, host, port, **options)

    def counters(self, ns: Namespace) -> dict[str, int]:
        """The TFO counters (TcpExt names) of the stack in ``ns``; zeros if it has none."""
        with ns.entered():
            stack = self.stacks.get(os.stat(THREAD_NS).st_ino)
        return {name: 0 if stack is None else stack.host.counters[name] for name in TFO_COUNTERS}

    def close(self) -> None:
        for stack in self.stacks.values():
            stack.close()
        self.stacks.clear()

    def __enter__(self) -> NamespaceStacks:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
