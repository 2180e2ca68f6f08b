"""The replay guard: was this connection's first flight delivered before, here or on another server?

A server consults :meth:`ReplayGuard.check` for every new connection. A connection whose first
flight came in the SYN is *recorded* under its fingerprint; any connection (SYN data or not)
whose fingerprint is already recorded within the window is a *suspected replay*. The fingerprint
is what a retransmitted or replayed SYN keeps and a new connection does not: the service, the
client's address and port, and the client's initial sequence number (docs/replay.md says why).

With :meth:`ReplayGuard.wrap` and :meth:`ReplayGuard.listening` (what
``fastopen.start_server(..., replay_guard=...)`` calls) every handler runs after the check, and
``writer.get_extra_info("replay")`` is its :class:`Verdict`; the TFO report
(``get_extra_info("fastopen")``) carries ``replay_suspected`` and ``replay_first_server``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal

from fastopen.constants import TCP_FASTOPEN
from fastopen.kernel import tcpinfo
from fastopen.replay import syn
from fastopen.replay.stores import ReplayStoreError, Store, StoreUnavailable, open_store
from fastopen.report import TfoReport
from fastopen.streams import FastOpenStreamWriter, Handler

log = logging.getLogger(__name__)

#: The default window (seconds): Linux's client sends its last SYN retransmission 63 s after
#: the first SYN (``tcp_syn_retries`` 6: 1 + 2 + 4 + 8 + 16 + 32 s), with the same ISN.
WINDOW = 64.0

OnUnavailable = Literal["open", "closed"]
Quarantine = Literal["listener", "flag", "off"]


class Reason(enum.Enum):
    """Why a verdict is what it is."""

    #: The first flight came in the SYN and was recorded now: the first delivery.
    FIRST_DELIVERY = "first-delivery"
    #: No SYN data, and no record of this fingerprint: an ordinary connection.
    NOT_SEEN = "not-seen"
    #: The fingerprint was recorded within the window (by ``first_server``): a replay or a
    #: retransmitted SYN that reached a second server.
    DUPLICATE = "duplicate"
    #: SYN data while the guard quarantines it (the store forgot the last window).
    QUARANTINE = "quarantine"
    #: The store could not answer; the failure policy decided.
    STORE_UNAVAILABLE = "store-unavailable"
    #: The SYN's ISN is unknown (the connection came in before the listener saved SYNs).
    NO_ISN = "no-isn"


@dataclass(frozen=True, slots=True)
class Arrival:
    """What the guard needs to know of a new connection."""

    service: str
    client: str
    client_port: int
    #: The client's initial sequence number (from the SYN), None when not known.
    isn: int | None
    #: The first flight came in the SYN and was accepted (TFO delivered it at once).
    syn_data: bool

    @classmethod
    def of_socket(cls, sock: Any, service: str | None = None) -> Arrival:
        """A connection accepted on the kernel's stack (a socket, or asyncio's TransportSocket;
        a sync server's too): its saved SYN (read once; the listener needs
        :func:`fastopen.replay.syn.enable`) and ``TCP_INFO``."""
        client, client_port = _client(sock.getpeername())
        saved = syn.read(sock)
        # TCP_INFO tells whether SYN data was accepted; a SYN without data needs no asking
        carried = saved is None or saved.data_length > 0
        return cls(
            service or str(sock.getsockname()[1]),
            client,
            client_port,
            None if saved is None else saved.isn,
            carried and tcpinfo.read(sock).syn_data,
        )

    def fingerprint(self) -> bytes | None:
        """16 bytes naming this SYN: the same for its retransmissions and replays, not for new
        connections. None without the ISN."""
        if self.isn is None:
            return None
        text = f"{self.service}\0{self.client}\0{self.client_port}\0{self.isn}"
        return hashlib.blake2b(text.encode(), digest_size=16).digest()


@dataclass(frozen=True, slots=True)
class Verdict:
    """The guard's answer for one connection."""

    replay_suspected: bool
    reason: Reason
    syn_data: bool
    #: The server that recorded the first delivery (when the store knows it).
    first_server: str | None = None

    def report(self, report: TfoReport) -> TfoReport:
        """``report`` with this verdict's ``replay_suspected`` and ``replay_first_server``."""
        return report.with_replay(self.replay_suspected, self.first_server)


def _client(peer: Any) -> tuple[str, int]:
    host, port = peer[0], peer[1]
    if host.startswith("::ffff:") and "." in host:  # a v4-mapped peer is the IPv4 client
        host = host.removeprefix("::ffff:")
    return host, int(port)


class ReplayGuard:
    """Records first deliveries of SYN data in a store and flags what comes again.

    ``store``: ``"memory"`` (default), ``"sqlite:PATH"``, a Redis URL, or a store object.
    ``window``: how long a record lasts (the clients' SYN retransmission time). ``on_unavailable``:
    when the store cannot answer, ``"closed"`` flags the connection if its first flight came in
    the SYN, ``"open"`` lets it pass; either way it is counted and logged once per outage.
    ``quarantine``: for one window after the store's memory begins (a memory store: now; a
    Redis that restarted: its start; unreachable: now), SYN data is not acted on: ``"listener"``
    keeps the listeners' TFO off until then and flags SYN data that still arrives, ``"flag"``
    only flags it, ``"off"`` does neither. ``server_id`` names this server in the store
    (default host name and process id); ``service`` separates services sharing a store
    (default: the listening port).
    """

    def __init__(
        self,
        store: str | Store = "memory",
        *,
        window: float = WINDOW,
        on_unavailable: OnUnavailable = "closed",
        quarantine: Quarantine = "listener",
        server_id: str | None = None,
        service: str | None = None,
        retry_after: float = 1.0,
    ) -> None:
        if window <= 0:
            raise ReplayStoreError(f"the replay window must be positive, not {window}")
        if on_unavailable not in ("open", "closed"):
            raise ReplayStoreError(f"on_unavailable is 'open' or 'closed', not {on_unavailable!r}")
        if quarantine not in ("listener", "flag", "off"):
            raise ReplayStoreError(f"quarantine is 'listener', 'flag' or 'off', not {quarantine!r}")
        self.store = open_store(store)
        self.window = window
        self.on_unavailable: OnUnavailable = on_unavailable
        self.quarantine: Quarantine = quarantine
        self.server_id = server_id or f"{socket.gethostname()}/{os.getpid()}"
        self.service = service
        self.retry_after = retry_after
        #: Counts: checks, recorded, suspected, quarantined, unavailable, no-isn.
        self.counters: Counter[str] = Counter()
        self._quarantine_until: float | None = None  # wall clock; None: not known yet
        self._down_until = 0.0  # monotonic: skip the store until then after a failure
        self._down = False
        self._loop: asyncio.AbstractEventLoop | None = None  # check_blocking's, and its pid
        self._loop_pid = 0
        self._loop_lock = threading.Lock()

    # -- quarantine ------------------------------------------------------------------------------

    async def start(self) -> float:
        """Ask the store since when it remembers; returns when the quarantine ends (wall clock)."""
        try:
            since = await self.store.since()
        except StoreUnavailable as exc:
            self._failed(exc)
            since = time.time()
        return self._forgot_before(since)

    def _forgot_before(self, since: float) -> float:
        """The store remembers since ``since``: quarantine until one window after it."""
        until = since + self.window if self.quarantine != "off" else 0.0
        self._quarantine_until = max(self._quarantine_until or 0.0, until)
        return self._quarantine_until

    def quarantine_left(self) -> float:
        """Seconds of quarantine left (0 when none, or before :meth:`start`)."""
        if self._quarantine_until is None:
            return 0.0
        return max(0.0, self._quarantine_until - time.time())

    # -- the check -------------------------------------------------------------------------------

    def _failed(self, exc: Exception) -> None:
        self.counters["unavailable"] += 1
        self._down_until = time.monotonic() + self.retry_after
        if not self._down:
            self._down = True
            log.warning(
                "replay store %s unavailable (%s): failing %s until it answers",
                self.store.name,
                exc,
                self.on_unavailable,
            )

    def _unavailable(self, arrival: Arrival, reason: Reason = Reason.STORE_UNAVAILABLE) -> Verdict:
        """The failure policy's verdict: the store cannot clear this connection."""
        suspected = arrival.syn_data and self.on_unavailable == "closed"
        self.counters["suspected"] += suspected
        return Verdict(suspected, reason, arrival.syn_data)

    async def check(self, arrival: Arrival) -> Verdict:
        """The verdict for a new connection (one store round trip; never raises)."""
        self.counters["checks"] += 1
        if self._quarantine_until is None:
            await self.start()
        key = arrival.fingerprint()
        if key is None:
            self.counters["no-isn"] += 1
            return self._unavailable(arrival, Reason.NO_ISN)
        if self._down:
            if time.monotonic() < self._down_until:
                return self._unavailable(arrival)
            try:
                since = await self.store.since()  # it may have restarted (and forgotten)
            except StoreUnavailable as exc:
                self._failed(exc)
                return self._unavailable(arrival)
            self._down = False
            log.warning("replay store %s answers again", self.store.name)
            self._forgot_before(since)
        try:
            if arrival.syn_data:
                old = await self.store.record(
                    key, f"{self.server_id} {time.time():.6f}", self.window
                )
            else:
                old = await self.store.lookup(key)
        except StoreUnavailable as exc:
            self._failed(exc)
            return self._unavailable(arrival)
        if old is not None:
            self.counters["suspected"] += 1
            return Verdict(True, Reason.DUPLICATE, arrival.syn_data, old.rsplit(" ", 1)[0] or None)
        if arrival.syn_data:
            self.counters["recorded"] += 1
            if self.quarantine_left() > 0:
                self.counters["quarantined"] += 1
                self.counters["suspected"] += 1
                return Verdict(True, Reason.QUARANTINE, True)
            return Verdict(False, Reason.FIRST_DELIVERY, True)
        return Verdict(False, Reason.NOT_SEEN, False)

    def check_blocking(self, arrival: Arrival) -> Verdict:
        """:meth:`check` for a synchronous server (a WSGI worker, any of its threads): it runs on
        the guard's own event loop, in a thread of its own started on first use (in each process:
        a forked worker starts its own)."""
        with self._loop_lock:
            if self._loop is None or self._loop_pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="replay-guard", daemon=True).start()
                self._loop, self._loop_pid = loop, os.getpid()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(self.check(arrival), loop).result()

    # -- on a server -----------------------------------------------------------------------------

    def arrival(self, writer: asyncio.StreamWriter) -> Arrival:
        """What a server's new connection shows the guard (reads the saved SYN: call once)."""
        isn = writer.get_extra_info("peer_isn")  # the userspace stack knows it
        sock = writer.get_extra_info("socket")
        if isn is None and sock is not None:  # the kernel's
            return Arrival.of_socket(sock, self.service)
        client, client_port = _client(writer.get_extra_info("peername"))
        service = self.service or str(writer.get_extra_info("sockname")[1])
        report = writer.get_extra_info("fastopen")
        syn_data = bool(report is not None and report.syn_data_received)
        return Arrival(service, client, client_port, isn, syn_data)

    def wrap(self, handler: Handler) -> Handler:
        """``handler`` run after the check, with the verdict on its writer."""

        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            verdict = await self.check(self.arrival(writer))
            if isinstance(writer, FastOpenStreamWriter):
                writer.annotate("replay", verdict, verdict.report)
            result = handler(reader, writer)
            if isinstance(result, Awaitable):
                await result

        return guarded

    async def listening(self, server: asyncio.AbstractServer) -> None:
        """Prepare a server's listeners: save SYNs (kernel), and quarantine their TFO."""
        left = self.quarantine_left() if self._quarantine_until is not None else None
        if left is None:
            await self.start()
            left = self.quarantine_left()
        sockets: Any = getattr(
            server, "sockets", ()
        )  # TransportSockets (kernel) or EngineSockets (userspace)
        for lsock in sockets:
            with contextlib.suppress(OSError):  # the userspace stack gives the ISN itself
                syn.enable(lsock)
        if self.quarantine != "listener" or left <= 0:
            return
        qlens = [(lsock, lsock.getsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN)) for lsock in sockets]
        for lsock, _ in qlens:
            lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, 0)
        log.warning(
            "replay store %s forgot the last %.0f s: TFO off on the listeners for %.1f s",
            self.store.name,
            self.window,
            left,
        )

        def reopen() -> None:
            for lsock, qlen in qlens:
                with contextlib.suppress(OSError):  # closed meanwhile
                    lsock.setsockopt(socket.IPPROTO_TCP, TCP_FASTOPEN, qlen)
            log.warning("quarantine over: TFO back on the listeners")

        asyncio.get_running_loop().call_later(left, reopen)

    async def close(self) -> None:
        await self.store.close()
